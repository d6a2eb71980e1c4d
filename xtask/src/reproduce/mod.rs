//! `cargo xtask reproduce [TABLE ...] [--quick | --full] [--out DIR] [--seed S]`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `cargo xtask reproduce`.
#[derive(Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// Tables to reproduce (default: all).
    pub tables: Vec<String>,
    /// Quick preset (the default).
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// Full preset (hours on a 2-core machine; see docs/reproduction.md).
    #[arg(long)]
    pub full: bool,
    /// Output folder.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Every table this command knows.
pub const TABLES: &[&str] = &[];

/// Run the requested tables.
pub fn run(args: ReproduceArgs) -> Result<()> {
    let tables: Vec<String> =
        if args.tables.is_empty() { TABLES.iter().map(|s| s.to_string()).collect() } else { args.tables.clone() };
    for t in &tables {
        match t.as_str() {
            other => bail!("unknown table {other:?}; known: {}", TABLES.join(", ")),
        }
    }
    Ok(())
}
