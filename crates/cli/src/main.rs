//! The `diffinv` command-line program (see the crate documentation of `diffinv_cli`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use diffinv_cli::{methods, run, CliError};

#[derive(Parser, Debug)]
#[command(
    name = "diffinv",
    version,
    about = "Solve inverse problems with diffusion-model priors: EnKG, CPS and 23 other methods, \
             with built-in forward models or your own simulator in any language"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Solve the problem of a run file and write its results folder.
    Run {
        /// The run file (TOML; docs/cli.md lists every key).
        config: PathBuf,
        /// The results folder (default: `[run] out`, else results/<file stem> next to the file).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The seed (default: `[run] seed`, else 0).
        #[arg(long)]
        seed: Option<u64>,
        /// Continue an interrupted run from the results folder's checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop after N steps as if interrupted (tests of --resume).
        #[arg(long, hide = true)]
        stop_after: Option<usize>,
    },
    /// Validate a run file, start its workers, time one step and print the plan; solve nothing.
    Check {
        /// The run file.
        config: PathBuf,
        /// The results folder the run would write (only its state is reported).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the methods, or one method's configuration keys and defaults.
    Methods {
        /// A method name.
        name: Option<String>,
        /// Every method and key as Markdown tables (docs/cli.md).
        #[arg(long)]
        markdown: bool,
    },
}

/// Ctrl-C and SIGTERM set the flag (the run stops after saving its last finished step); a
/// second one exits at once with status 130.
fn cancel_flag() -> Result<Arc<AtomicBool>, CliError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| CliError::Usage(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(flag)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprintln!("diffinv: a subcommand is needed: run, check or methods (see `diffinv --help`)");
                return ExitCode::from(2);
            }
            // clap's message up to its usage block, on one line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let first = first.join(" ");
            eprintln!(
                "diffinv: {} (see `diffinv --help`)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let result: Result<(), CliError> = (|| match cli.command {
        Command::Run {
            config,
            out,
            seed,
            resume,
            stop_after,
        } => {
            let flag = cancel_flag()?;
            let args = run::RunArgs {
                config,
                out,
                seed,
                resume,
                stop_after,
            };
            let dir = run::run(&args, flag)?;
            eprintln!("diffinv: done; results in {}", dir.display());
            Ok(())
        }
        Command::Check { config, out } => {
            let flag = cancel_flag()?;
            println!("{}", run::check(&config, out.as_deref(), flag)?);
            Ok(())
        }
        Command::Methods { name, markdown } => {
            match (name, markdown) {
                (Some(_), true) => {
                    return Err(CliError::Usage(
                        "--markdown lists every method: give no NAME".into(),
                    ))
                }
                (Some(n), false) => print!("{}", methods::show(&n)?),
                (None, true) => print!("{}", methods::markdown()),
                (None, false) => print!("{}", methods::table()),
            }
            Ok(())
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diffinv: {e}");
            ExitCode::from(e.exit_code().clamp(1, 255) as u8)
        }
    }
}
