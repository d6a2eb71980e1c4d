//! PNG figures of the tables, drawn by diffinv-figures (panel titles, row labels, colour bars
//! with units; misfit curves with axes, ticks and a legend).
//!
//! A figure that cannot be drawn (e.g. no finite misfit value) is reported on stderr and
//! skipped: a figure never fails a table run.

use std::path::Path;

use anyhow::Result;
pub use diffinv_figures::{ColorBar, Colormap, ImageRow, Panel};
use diffinv_figures::{FigureError, LinePlot, Series};
pub use diffinv_figures::{ScatterOptions, ScatterPanel};

fn skip_on_error(path: &Path, r: std::result::Result<(), FigureError>) -> Result<()> {
    if let Err(e) = r {
        eprintln!("warning: figure {} not written: {e}", path.display());
    }
    Ok(())
}

/// Rows of image panels (see [`diffinv_figures::image_grid`]), each image scaled by `zoom`,
/// under `title`.
pub fn grid(path: &Path, title: &str, rows: &[ImageRow], zoom: usize) -> Result<()> {
    skip_on_error(path, diffinv_figures::image_grid(path, title, rows, zoom))
}

/// Data misfit against step of named methods: x = step, y = mean negative log-likelihood on a
/// log axis; the first curve red, the second blue (as the reports say), further ones from the
/// palette.
pub fn misfit_curves(
    path: &Path,
    title: &str,
    curves: &[(String, Vec<(usize, f64)>)],
) -> Result<()> {
    let colours = [[200u8, 40, 40], [0, 90, 200]];
    let series: Vec<Series> = curves
        .iter()
        .enumerate()
        .map(|(k, (name, v))| Series {
            name: name.clone(),
            points: v.iter().map(|(s, m)| (*s as f64, *m)).collect(),
            color: colours.get(k).copied(),
        })
        .collect();
    let plot = LinePlot {
        title: title.to_string(),
        x_label: "step".into(),
        y_label: "mean negative log-likelihood".into(),
        log_y: true,
        width: 720,
        height: 420,
    };
    skip_on_error(path, diffinv_figures::line_plot(path, &plot, &series))
}

/// Scatter panels side by side with shared axis limits (see
/// [`diffinv_figures::scatter_panels`]).
pub fn scatter_panels(path: &Path, opts: &ScatterOptions, panels: &[ScatterPanel]) -> Result<()> {
    skip_on_error(path, diffinv_figures::scatter_panels(path, opts, panels))
}
