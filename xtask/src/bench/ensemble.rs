//! `cargo xtask bench ensemble` (to be written).
use anyhow::{bail, Result};
use super::BenchArgs;
/// Run the benchmark.
pub fn run(_args: &BenchArgs) -> Result<()> {
    bail!("not written yet")
}
