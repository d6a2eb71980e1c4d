//! PNG figures of `cargo xtask` (training loss curves), drawn by
//! diffinv-figures (titles, axes with ticks and labels, legends).
//!
//! A figure that cannot be drawn (e.g. no finite point) is reported on stderr and skipped: a
//! figure never fails a run.

use std::path::Path;

use anyhow::Result;
use diffinv_figures::FigureError;
pub use diffinv_figures::{LinePlot, Series};

fn skip_on_error(path: &Path, r: std::result::Result<(), FigureError>) -> Result<()> {
    if let Err(e) = r {
        eprintln!("warning: figure {} not written: {e}", path.display());
    }
    Ok(())
}


/// A line plot of named series (see [`diffinv_figures::line_plot`]).
pub fn line_plot(path: &Path, plot: &LinePlot, series: &[Series]) -> Result<()> {
    skip_on_error(path, diffinv_figures::line_plot(path, plot, series))
}
