//! Line plots: axes with ticks and labels, linear or log y, a legend, a title.

use std::path::Path;

use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter,
};
use plotters::prelude::*;

use crate::{check_side, ensure_font, fmt_axis, save, FigureError, Result, FAMILY, PALETTE, TEXT};

/// One named curve.
#[derive(Debug, Clone)]
pub struct Series {
    /// Name shown in the legend (empty: not in the legend).
    pub name: String,
    /// Points `(x, y)`; non-finite points (and `y <= 0` on a log axis) are skipped, breaking
    /// the line there.
    pub points: Vec<(f64, f64)>,
    /// RGB colour; `None` takes the next colour of a colour-blind friendly palette.
    pub color: Option<[u8; 3]>,
}

impl Series {
    /// A series with the palette colour.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            color: None,
        }
    }

    /// The same series in colour `rgb`.
    pub fn with_color(mut self, rgb: [u8; 3]) -> Self {
        self.color = Some(rgb);
        self
    }
}

/// Axes, title and size of a line plot.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// Title above the plot (empty: none).
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Width in pixels (at least 200).
    pub width: u32,
    /// Height in pixels (at least 150).
    pub height: u32,
}

impl Default for LinePlot {
    fn default() -> Self {
        Self {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            log_y: false,
            width: 720,
            height: 420,
        }
    }
}

/// Finite points of `s` (positive y if `log_y`), split into runs at skipped points.
fn runs(s: &Series, log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &(x, y) in &s.points {
        if x.is_finite() && y.is_finite() && (!log_y || y > 0.0) {
            if let Some(last) = out.last_mut() {
                last.push((x, y));
            }
        } else if out.last().is_some_and(|r| !r.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Draw `series` on shared axes and write a PNG to `path`.
///
/// The axes span the finite points (with a small margin; a log axis is widened to whole
/// decades when it spans less than one). Errors: no series, no plottable point, bad size.
pub fn line_plot(path: &Path, plot: &LinePlot, series: &[Series]) -> Result<()> {
    if series.is_empty() {
        return Err(FigureError::Empty("no series".into()));
    }
    check_side("width", plot.width, 200)?;
    check_side("height", plot.height, 150)?;
    let all: Vec<Vec<Vec<(f64, f64)>>> = series.iter().map(|s| runs(s, plot.log_y)).collect();
    let pts = all.iter().flatten().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return Err(FigureError::NoData(if plot.log_y {
            "every point is non-finite or has y <= 0 (log axis)".into()
        } else {
            "every point is non-finite".into()
        }));
    }
    if x1 <= x0 {
        let d = x0.abs().max(1.0) * 0.5;
        (x0, x1) = (x0 - d, x1 + d);
    }
    // x ticks: "nice" values; integers only when every x is an integer (steps, epochs).
    let integral = all.iter().flatten().flatten().all(|p| p.0.fract() == 0.0);
    let (mut xt, _) = crate::nice_ticks(x0, x1, 8);
    if integral && xt.iter().any(|v| v.fract() != 0.0) {
        xt.retain(|v| v.fract() == 0.0);
    }
    ensure_font()?;
    let (w, h) = (plot.width, plot.height);
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        if plot.log_y {
            let (mut l0, mut l1) = (y0.log10(), y1.log10());
            if l1 - l0 < 1e-6 {
                (l0, l1) = (l0 - 0.5, l1 + 0.5);
            } else {
                let m = 0.04 * (l1 - l0);
                (l0, l1) = (l0 - m, l1 + m);
            }
            let (a, b) = (10f64.powf(l0), 10f64.powf(l1));
            draw(
                &root,
                plot,
                series,
                &all,
                Ticked::new(x0, x1, xt.clone()),
                (a..b).log_scale().with_key_points(log_ticks(a, b)),
            )?;
        } else {
            if y1 <= y0 {
                let d = y0.abs().max(1.0) * 0.5;
                (y0, y1) = (y0 - d, y1 + d);
            }
            let m = 0.05 * (y1 - y0);
            draw(
                &root,
                plot,
                series,
                &all,
                Ticked::new(x0, x1, xt.clone()),
                Ticked::new(y0 - m, y1 + m, crate::nice_ticks(y0 - m, y1 + m, 8).0),
            )?;
        }
        root.present()?;
    }
    save(path, buf, w, h)
}

/// A linear axis over `[lo, hi]` whose labelled ticks are given (no light grid lines).
#[derive(Debug, Clone)]
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Self { lo, hi, ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        let p = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        // Far-off values (never drawn: the chart clips) stay in i32.
        p.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks of a log axis over `[a, b]` (`0 < a < b`): powers of ten (every n-th one over many
/// decades), else 1-2-5 or 1..9 times powers of ten, else linear "nice" ticks (narrow ranges).
pub(crate) fn log_ticks(a: f64, b: f64) -> Vec<f64> {
    let (e0, e1) = (a.log10().floor() as i32, b.log10().ceil() as i32);
    let inside = |v: &f64| *v >= a * (1.0 - 1e-9) && *v <= b * (1.0 + 1e-9);
    let with = |ms: &[f64], every: i32| -> Vec<f64> {
        (e0..=e1)
            .filter(|e| e.rem_euclid(every) == 0 || ms.len() > 1)
            .flat_map(|e| ms.iter().map(move |m| m * 10f64.powi(e)))
            .filter(inside)
            .collect()
    };
    let decades = e1 - e0;
    if decades > 2 {
        let every = (decades / 8 + 1).max(1);
        let t = with(&[1.0], every);
        if t.len() >= 3 {
            return t;
        }
    }
    for ms in [
        &[1.0, 2.0, 5.0][..],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
    ] {
        let t = with(ms, 1);
        if t.len() >= 3 {
            return t;
        }
    }
    crate::nice_ticks(a, b, 5).0
}

fn draw<X, Y>(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    plot: &LinePlot,
    series: &[Series],
    runs: &[Vec<Vec<(f64, f64)>>],
    x: X,
    y: Y,
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut b = ChartBuilder::on(root);
    b.margin(12)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(if plot.y_label.is_empty() { 52 } else { 72 });
    if !plot.title.is_empty() {
        b.caption(&plot.title, (FAMILY, 18.0).into_font().color(&TEXT));
    }
    let mut chart = b.build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .axis_desc_style((FAMILY, 15.0).into_font().color(&TEXT))
        .label_style((FAMILY, 13.0).into_font().color(&TEXT))
        .x_labels(40)
        .y_labels(40)
        .x_label_formatter(&|v| fmt_axis(*v))
        .y_label_formatter(&|v| fmt_axis(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .axis_style(RGBColor(90, 90, 90))
        .draw()?;
    let mut named = false;
    for (k, (s, rs)) in series.iter().zip(runs).enumerate() {
        let c = s.color.unwrap_or(PALETTE[k % PALETTE.len()]);
        let color = RGBColor(c[0], c[1], c[2]);
        // Long (noisy) curves in thin lines: thick strokes of many short steep segments leave
        // speckles.
        let n: usize = rs.iter().map(Vec::len).sum();
        let style = color.stroke_width(if n > 400 { 1 } else { 2 });
        let mut first = true;
        // An empty series still gets its legend entry.
        let parts: Vec<&[(f64, f64)]> = if rs.is_empty() {
            vec![&[]]
        } else {
            rs.iter().map(Vec::as_slice).collect()
        };
        for part in parts {
            let ann = chart.draw_series(LineSeries::new(part.iter().copied(), style))?;
            if first && !s.name.is_empty() {
                named = true;
                ann.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            first = false;
        }
    }
    if named {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(150, 150, 150))
            .label_font((FAMILY, 13.0).into_font().color(&TEXT))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::log_ticks;

    #[test]
    fn log_axis_ticks() {
        assert_eq!(log_ticks(50.0, 60000.0), vec![100.0, 1000.0, 10000.0]);
        let t = log_ticks(0.07, 0.45);
        assert!(
            t.len() >= 3 && t.contains(&0.1) && t.contains(&0.2),
            "{t:?}"
        );
        assert!(log_ticks(100.0, 130.0).len() >= 2);
        assert!(log_ticks(1e-20, 1e20).len() <= 12);
    }
}
