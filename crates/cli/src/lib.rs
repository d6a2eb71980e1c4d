//! # diffinv-cli
//!
//! The `diffinv` program: solve an inverse problem described in a TOML run file, with any
//! method of the registry ([`diffinv_solvers::registry`]), an analytic or trained diffusion
//! prior, and a built-in forward model or a simulator in any language run as a pool of worker
//! processes ([`diffinv_process`]).
//!
//! - `diffinv run FILE [--out DIR] [--seed S] [--resume]`: solve; write `samples.npy`,
//!   `mean.npy`, `std.npy`, `summary.json`, `steps.csv`, a figure, and a checkpoint that
//!   `--resume` continues from (bit-identically) after Ctrl-C, a kill or a crash.
//! - `diffinv check FILE`: validate every key, start the workers, time one step, print the plan.
//! - `diffinv methods [NAME] [--markdown]`: the registry, with every key's default.
//!
//! The run file's keys are documented in `docs/cli.md`; [`config`] parses and validates them.
//!
//! With the feature `mpi`, `mpirun -n P diffinv run FILE` runs one copy per rank: every rank
//! steps the same solver, every forward evaluation is sharded over the ranks
//! ([`diffinv_mpi::ShardedForward`]), and rank 0 alone writes the results folder
//! (docs/distributed.md). [`run::run`] takes the ranks as any [`diffinv_mpi::Collective`].

pub mod config;
pub mod methods;
pub mod output;
pub mod run;
pub mod setup;

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop the program. `Display` is one line that says what to fix.
#[derive(Debug, Error)]
pub enum CliError {
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The run file is not valid TOML.
    #[error("{}: {reason}", path.display())]
    Syntax {
        /// The run file.
        path: PathBuf,
        /// Where and why.
        reason: String,
    },
    /// A key of the run file is missing, unknown, of the wrong type or out of range.
    #[error("{key}: {reason}")]
    Config {
        /// The key, dotted (`forward.timeout_s`).
        key: String,
        /// Why.
        reason: String,
    },
    /// The worker processes could not start or stopped.
    #[error("{0}")]
    Process(String),
    /// The method refused the problem, or failed while solving it.
    #[error("{0}")]
    Solver(#[from] diffinv_solvers::SolverError),
    /// A command-line usage error.
    #[error("{0}")]
    Usage(String),
    /// The results folder is in a state this command cannot continue from.
    #[error("{0}")]
    Output(String),
    /// Another rank of an MPI job failed where every rank had to succeed (reading the run file
    /// or the results folder, starting its workers); that rank reports the cause.
    #[error("rank {rank}: {message}")]
    Elsewhere {
        /// The rank that failed.
        rank: usize,
        /// Its message.
        message: String,
    },
    /// Ctrl-C or SIGTERM stopped the run; the checkpoint holds `step` finished steps.
    #[error(
        "interrupted after {step} of {steps} steps; the checkpoint in {} holds them: continue with `diffinv run {} --resume{}`{}",
        out.display(), config.display(), out_flag,
        if *ranks > 1 { " (under MPI with any number of ranks, or without)" } else { "" }
    )]
    Interrupted {
        /// Finished steps.
        step: usize,
        /// Steps of the run.
        steps: usize,
        /// The results folder.
        out: PathBuf,
        /// The run file.
        config: PathBuf,
        /// ` --out DIR` when the folder came from the command line.
        out_flag: String,
        /// The MPI ranks of the run (1 without MPI).
        ranks: usize,
    },
}

impl CliError {
    /// The process exit status for this error: 2 for a bad run file or usage, 130 for an
    /// interruption, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Syntax { .. } | CliError::Config { .. } | CliError::Usage(_) => 2,
            CliError::Interrupted { .. } => 130,
            _ => 1,
        }
    }
}
