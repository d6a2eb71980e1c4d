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
    // Started by mpirun/srun: one rank of an MPI job (docs/distributed.md).
    let job = match Job::start(&cli.command) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("diffinv: {e}");
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
    };
    let (rank, ranks) = (job.rank(), job.size());
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
            let dir = run::run(&args, flag, job.comm())?;
            if rank == 0 {
                eprintln!("diffinv: done; results in {}", dir.display());
            }
            Ok(())
        }
        // Under MPI rank 0 checks (for a run on `ranks` ranks); the others have nothing to do.
        Command::Check { .. } if rank > 0 => Ok(()),
        Command::Check { config, out } => {
            let flag = cancel_flag()?;
            println!("{}", run::check(&config, out.as_deref(), flag, ranks)?);
            Ok(())
        }
        Command::Methods { .. } if rank > 0 => Ok(()),
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
    job.finish(result)
}

/// How long a rank that failed on its own waits for the others to stop before it aborts the
/// whole MPI job (they may be inside a collective it will never join): 30 s, or
/// `DIFFINV_MPI_PATIENCE_S`.
#[cfg(feature = "mpi")]
fn patience() -> std::time::Duration {
    let s = std::env::var("DIFFINV_MPI_PATIENCE_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(30.0);
    std::time::Duration::from_secs_f64(s)
}

/// This process's part in an MPI job, or none.
struct Job {
    #[cfg(feature = "mpi")]
    world: Option<diffinv_mpi::MpiWorld>,
}

impl Job {
    /// Start MPI when an MPI launcher started this process (and the command runs a problem).
    #[cfg(feature = "mpi")]
    fn start(_command: &Command) -> Result<Self, CliError> {
        if !diffinv_mpi::launched() {
            return Ok(Self { world: None });
        }
        let world = diffinv_mpi::MpiWorld::init().map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Self { world: Some(world) })
    }

    /// Without MPI: refuse to be one of many copies of `diffinv run` (each would solve the
    /// whole problem and write the same folder).
    #[cfg(not(feature = "mpi"))]
    fn start(command: &Command) -> Result<Self, CliError> {
        match (command, diffinv_mpi::launcher_size()) {
            (Command::Run { .. }, Some(n)) if n > 1 => Err(CliError::Usage(format!(
                "this diffinv was built without MPI but was started as one of {n} processes \
                 (mpirun, srun): build it with `--features mpi` (docs/distributed.md), or start \
                 it once without the launcher"
            ))),
            _ => Ok(Self {}),
        }
    }

    fn rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return w.rank();
        }
        0
    }

    fn size(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return w.size();
        }
        1
    }

    fn comm(&self) -> Option<Arc<dyn diffinv_mpi::Collective>> {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return Some(w.comm());
        }
        None
    }

    /// Report `result` and exit. Under MPI the ranks end together: each waits for the others
    /// (a rank that failed on its own waits [`patience`], then aborts the job, since the others
    /// may be waiting for it inside a collective), rank 0 reports its error (the others' only
    /// when rank 0 succeeded) and every rank exits with the job's status, the first non-zero
    /// one in rank order.
    fn finish(self, result: Result<(), CliError>) -> ExitCode {
        let code = match &result {
            Ok(()) => 0,
            Err(e) => e.exit_code().clamp(1, 255),
        };
        #[cfg(feature = "mpi")]
        if let Some(world) = self.world {
            let rank = world.rank();
            let wait = (code != 0).then(patience);
            if !world.finish_together(wait) {
                if let Err(e) = &result {
                    eprintln!("diffinv: rank {rank}: {e}");
                }
                eprintln!(
                    "diffinv: rank {rank}: the other ranks did not stop within {:.0} s: aborting the MPI job",
                    patience().as_secs_f64()
                );
                world.abort(code);
            }
            let codes = world.exchange(code as u64);
            if let Err(e) = &result {
                if rank == 0 {
                    eprintln!("diffinv: {e}");
                } else if codes.first() == Some(&0) {
                    eprintln!("diffinv: rank {rank}: {e}");
                }
            }
            let job = codes.iter().copied().find(|&c| c != 0).unwrap_or(0);
            drop(world);
            return ExitCode::from(job.clamp(0, 255) as u8);
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("diffinv: {e}");
                ExitCode::from(code as u8)
            }
        }
    }
}
