//! `cargo xtask data NAME`: generate a data set.

mod images;
mod ns;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `cargo xtask data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Which data set: `ns` (Navier-Stokes vorticity) or `images` (natural-image patches).
    pub name: String,
    /// Extra options of the generator.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Dispatch to the named generator.
pub fn run(args: DataArgs) -> Result<()> {
    match args.name.as_str() {
        "ns" => ns::run(&args),
        "images" => images::run(&args),
        other => bail!("unknown data set {other:?}; known: ns, images"),
    }
}
