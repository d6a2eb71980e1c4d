//! `cargo xtask bench NAME`: side-by-side comparisons with a PyTorch implementation of the
//! same computation (`process`: with the same model run in-process), on the same machine, in
//! one run.

mod ensemble;
mod mpi;
mod ns;
mod process;
mod python;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark: `ensemble`, `mpi`, `ns`, `process` or `python`.
    pub name: String,
    /// Run a shorter version (fewer repetitions), for smoke tests.
    #[arg(long)]
    pub quick: bool,
}

/// Dispatch to the named benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.name.as_str() {
        "ensemble" => ensemble::run(&args),
        "ns" => ns::run(&args),
        "process" => process::run(&args),
        "python" => python::run(&args),
        "mpi" => mpi::run(&args),
        other => bail!("unknown benchmark {other:?}; known: ensemble, mpi, ns, process, python"),
    }
}
