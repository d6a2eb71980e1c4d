//! Labelled PNG figures: one job, draw PNGs a person can read.
//!
//! - [`image_grid`]: rows of image panels (a title per panel, optional row labels) with colour
//!   bars (one per row and/or one per panel) showing tick values and a unit label;
//! - [`line_plot`]: curves with axes, ticks, axis labels, a legend and a title, linear or log y;
//! - [`scatter_panels`]: 2-D scatter panels side by side with shared axis limits, per-panel
//!   titles and optional reference points in grey.
//!
//! Inputs are plain data structs; every function validates them and returns a typed
//! [`FigureError`] instead of panicking (empty input, non-finite ranges, zero-size or
//! mis-shaped images). Non-finite data values are skipped (curves, scatter) or drawn in a
//! "missing" colour (images).
//!
//! Text is drawn with plotters' `ab_glyph` backend and DejaVu Sans embedded in the crate
//! (`fonts/DejaVuSans.ttf`, licence in `fonts/LICENSE`), so no system font is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

mod grid;
mod lines;
mod scatter;

pub use grid::{image_grid, ColorBar, ImageRow, Panel};
pub use lines::{line_plot, LinePlot, Series};
pub use scatter::{scatter_panels, ScatterOptions, ScatterPanel};

/// Errors of the figure functions.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// Nothing to draw (no rows, no panels, no series).
    #[error("nothing to draw: {0}")]
    Empty(String),
    /// Every point is non-finite (or non-positive on a log axis).
    #[error("no plottable point: {0}")]
    NoData(String),
    /// An image panel with zero height or width.
    #[error("panel {title:?}: zero-size image ({h} x {w})")]
    ZeroSize {
        /// Panel title.
        title: String,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// An image panel whose data length is not `h * w`.
    #[error("panel {title:?}: {len} values for a {h} x {w} image")]
    Shape {
        /// Panel title.
        title: String,
        /// Number of values.
        len: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A value range that is not finite or has `lo > hi`.
    #[error("{what}: invalid value range [{lo}, {hi}]")]
    Range {
        /// Where.
        what: String,
        /// Low end.
        lo: f64,
        /// High end.
        hi: f64,
    },
    /// Panels sharing one row colour bar with different colour maps or ranges.
    #[error("row {row}: panels sharing the row colour bar differ in colour map or range (give them their own bar)")]
    MixedScales {
        /// Row index.
        row: usize,
    },
    /// A figure size (or zoom) too small or too large.
    #[error("bad size: {0}")]
    Size(String),
    /// The embedded font could not be loaded.
    #[error("the embedded font could not be loaded")]
    Font,
    /// Drawing failed.
    #[error("drawing: {0}")]
    Draw(String),
    /// Writing the PNG failed.
    #[error("writing {path}: {source}")]
    Write {
        /// Output path.
        path: PathBuf,
        /// Cause.
        source: image::ImageError,
    },
}

/// Result of the figure functions.
pub type Result<T> = std::result::Result<T, FigureError>;

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for FigureError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        FigureError::Draw(e.to_string())
    }
}

/// Colour maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Blue-white-red; give it a range symmetric about 0 (vorticity) so that white is 0.
    Diverging,
    /// Black-red-yellow-white (intensity, errors).
    Hot,
    /// Black to white (natural images).
    Gray,
}

/// Colour of non-finite image values (absent from every colour map).
pub const MISSING: [u8; 3] = [255, 0, 255];

impl Colormap {
    /// RGB colour at `t` in `[0, 1]` (clamped; non-finite gives [`MISSING`]).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        if !t.is_finite() {
            return MISSING;
        }
        let t = t.clamp(0.0, 1.0);
        let b = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        match self {
            Colormap::Diverging => {
                if t < 0.5 {
                    let s = t / 0.5;
                    [b(s), b(s), 255]
                } else {
                    let s = (1.0 - t) / 0.5;
                    [255, b(s), b(s)]
                }
            }
            Colormap::Hot => [b(3.0 * t), b(3.0 * t - 1.0), b(3.0 * t - 2.0)],
            Colormap::Gray => [b(t), b(t), b(t)],
        }
    }
}

/// Font family name the embedded font is registered under.
pub(crate) const FAMILY: &str = "sans-serif";
/// Text colour (the tests look for it).
pub const TEXT: RGBColor = RGBColor(0, 0, 0);
/// Largest figure side in pixels.
pub(crate) const MAX_SIDE: u32 = 16_384;

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Register the embedded font (once) under every family name plotters may ask for.
pub(crate) fn ensure_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        ["sans-serif", "serif", "monospace"].iter().all(|name| {
            plotters::style::register_font(name, FontStyle::Normal, FONT).is_ok()
                && plotters::style::register_font(name, FontStyle::Bold, FONT).is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(FigureError::Font)
    }
}

/// Text style of `size` pixels, anchored at `(h, v)`.
pub(crate) fn style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size as f64).into_font())
        .color(&TEXT)
        .pos(Pos::new(h, v))
}

/// The same style rotated a quarter turn anticlockwise (reads bottom to top).
pub(crate) fn vertical(size: u32) -> TextStyle<'static> {
    style(size, HPos::Center, VPos::Center).transform(FontTransform::Rotate270)
}

/// Width and height in pixels of `text` at `size`.
pub(crate) fn text_size(text: &str, size: u32) -> Result<(u32, u32)> {
    if text.is_empty() {
        return Ok((0, 0));
    }
    (FAMILY, size as f64)
        .into_font()
        .box_size(text)
        .map_err(|e| FigureError::Draw(e.to_string()))
}

/// About `target` "nice" ticks (steps of 1, 2, 2.5 or 5 times a power of ten) in `[lo, hi]`,
/// at least two when the range is not empty, and the number of decimals to print them with.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (vec![lo], decimals_for(lo.abs().max(1e-12)));
    }
    let target = target.max(2) as f64;
    let e = ((hi - lo) / target).log10().floor() as i32;
    let mut best: Option<(f64, f64, f64)> = None; // (score, step, mantissa)
    for k in e - 1..=e + 1 {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let step = m * 10f64.powi(k);
            let count = ((hi / step + 1e-9).floor() - (lo / step - 1e-9).ceil() + 1.0).max(0.0);
            if count < 2.0 {
                continue;
            }
            // Closest to the target; ties go to the larger step.
            let score = (count - target).abs() - step * 1e-12;
            if best.is_none_or(|b| score < b.0 - 1e-9 || (score - b.0).abs() <= 1e-9 && step > b.1)
            {
                best = Some((score, step, m));
            }
        }
    }
    let Some((_, step, m)) = best else {
        return (vec![lo, hi], decimals_for((hi - lo).abs().max(1e-12)) + 1);
    };
    let mut ticks = Vec::new();
    let mut k = (lo / step - 1e-9).ceil();
    while k * step <= hi + step * 1e-9 && ticks.len() < 64 {
        let v = k * step;
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1.0;
    }
    let extra = usize::from(m == 2.5);
    (ticks, decimals_for(step) + extra)
}

fn decimals_for(step: f64) -> usize {
    (-step.log10().floor()).max(0.0) as usize
}

/// A tick value with `dec` decimals, or in short scientific notation when very large or small.
pub(crate) fn fmt_tick(v: f64, dec: usize) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.dec$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".to_string()
    } else {
        s
    }
}

/// Compact label for an axis value (log axes, auto ticks): trims trailing zeros.
pub(crate) fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}").replace(".0e", "e");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Check a figure side.
pub(crate) fn check_side(what: &str, v: u32, min: u32) -> Result<()> {
    if v < min || v > MAX_SIDE {
        return Err(FigureError::Size(format!(
            "{what} = {v} (must be in {min}..={MAX_SIDE})"
        )));
    }
    Ok(())
}

/// Write an RGB buffer as PNG.
pub(crate) fn save(path: &Path, buf: Vec<u8>, w: u32, h: u32) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| FigureError::Draw("buffer size mismatch".into()))?;
    img.save(path).map_err(|source| FigureError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Default series colours (colour-blind friendly, Okabe-Ito).
pub(crate) const PALETTE: [[u8; 3]; 7] = [
    [0, 114, 178],
    [213, 94, 0],
    [0, 158, 115],
    [204, 121, 167],
    [230, 159, 0],
    [86, 180, 233],
    [0, 0, 0],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let (t, d) = nice_ticks(-2.7, 2.7, 5);
        assert_eq!(t, vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
        let (t, _) = nice_ticks(-100.0, 100.0, 2);
        assert!(t.len() >= 2, "{t:?}");
        assert_eq!(d, 0);
        let (t, d) = nice_ticks(0.0, 0.5, 4);
        assert_eq!(t.first().copied(), Some(0.0));
        assert!(t.len() >= 3 && t.len() <= 6, "{t:?}");
        assert_eq!(fmt_tick(t[1], d), "0.25");
        assert_eq!(fmt_tick(-0.0, 1), "0");
        assert_eq!(fmt_tick(123456.0, 0), "1.2e5");
        assert_eq!(fmt_axis(1000.0), "1000");
        assert_eq!(fmt_axis(0.25), "0.25");
        let (t, _) = nice_ticks(1.0, 1.0, 5);
        assert_eq!(t, vec![1.0]);
    }

    #[test]
    fn colormaps() {
        assert_eq!(Colormap::Diverging.rgb(0.5), [255, 255, 255]);
        assert_eq!(Colormap::Diverging.rgb(0.0), [0, 0, 255]);
        assert_eq!(Colormap::Diverging.rgb(1.0), [255, 0, 0]);
        assert_eq!(Colormap::Hot.rgb(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Gray.rgb(0.0), [0, 0, 0]);
        assert_eq!(Colormap::Gray.rgb(f32::NAN), MISSING);
    }
}
