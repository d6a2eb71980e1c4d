//! `cargo xtask data ns` (to be written).
use anyhow::{bail, Result};
use super::DataArgs;
/// Generate the data set.
pub fn run(_args: &DataArgs) -> Result<()> {
    bail!("not written yet")
}
