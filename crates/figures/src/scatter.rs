//! 2-D scatter panels side by side, with shared axis limits.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::{
    check_side, ensure_font, fmt_axis, save, style, FigureError, Result, FAMILY, PALETTE, TEXT,
};

/// One scatter panel.
#[derive(Debug, Clone)]
pub struct ScatterPanel {
    /// Title above the panel (e.g. the method name).
    pub title: String,
    /// Points `(x, y)`; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Reference points drawn first, in grey (e.g. exact posterior samples); may be empty.
    pub reference: Vec<(f64, f64)>,
    /// RGB colour of `points`; `None` takes the palette colour of the panel's index.
    pub color: Option<[u8; 3]>,
}

/// Figure-level options of [`scatter_panels`].
#[derive(Debug, Clone)]
pub struct ScatterOptions {
    /// Figure title (empty: none).
    pub title: String,
    /// x-axis label (under every panel).
    pub x_label: String,
    /// y-axis label (left of every panel).
    pub y_label: String,
    /// Legend name of the points (shown in the first panel if non-empty).
    pub points_label: String,
    /// Legend name of the reference points (shown in the first panel if non-empty).
    pub reference_label: String,
    /// Side of each panel in pixels, axes and labels included (at least 120).
    pub size: u32,
    /// Panels per row; `0`: all in one row. Further panels wrap onto new rows.
    pub columns: usize,
}

impl Default for ScatterOptions {
    fn default() -> Self {
        Self {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            points_label: String::new(),
            reference_label: String::new(),
            size: 280,
            columns: 0,
        }
    }
}

/// Reference points' colour.
pub const REFERENCE: RGBColor = RGBColor(185, 185, 185);

const TITLE_H: u32 = 34;

fn finite(p: &&(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// Draw `panels` side by side (`columns` per row) with the same axis limits (from every finite
/// point, 5% margin) and write a PNG to `path`: `size * columns` wide, `size` high per row plus
/// the title band.
pub fn scatter_panels(path: &Path, opts: &ScatterOptions, panels: &[ScatterPanel]) -> Result<()> {
    if panels.is_empty() {
        return Err(FigureError::Empty("no panels".into()));
    }
    check_side("panel size", opts.size, 120)?;
    let cols = if opts.columns == 0 {
        panels.len()
    } else {
        opts.columns.min(panels.len())
    };
    let nrows = panels.len().div_ceil(cols);
    let width = u32::try_from(cols)
        .unwrap_or(u32::MAX)
        .saturating_mul(opts.size);
    check_side("figure width", width, 1)?;
    let title_h = if opts.title.is_empty() { 0 } else { TITLE_H };
    let height = u32::try_from(nrows)
        .unwrap_or(u32::MAX)
        .saturating_mul(opts.size)
        .saturating_add(title_h);
    check_side("figure height", height, 1)?;
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in panels
        .iter()
        .flat_map(|p| p.points.iter().chain(&p.reference))
        .filter(finite)
    {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return Err(FigureError::NoData("every point is non-finite".into()));
    }
    let widen = |a: f64, b: f64| {
        if b > a {
            let m = 0.05 * (b - a);
            (a - m, b + m)
        } else {
            let d = a.abs().max(1.0) * 0.5;
            (a - d, b + d)
        }
    };
    let ((x0, x1), (y0, y1)) = (widen(x0, x1), widen(y0, y1));
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let (top, body) = root.split_vertically(title_h);
        if title_h > 0 {
            top.draw_text(
                &opts.title,
                &style(18, HPos::Center, VPos::Center),
                ((width / 2) as i32, (title_h / 2) as i32),
            )?;
        }
        let areas = body.split_evenly((nrows, cols));
        for (k, (p, area)) in panels.iter().zip(&areas).enumerate() {
            let c = p.color.unwrap_or(PALETTE[k % PALETTE.len()]);
            let color = RGBColor(c[0], c[1], c[2]);
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, (FAMILY, 15.0).into_font().color(&TEXT))
                .margin(8)
                .x_label_area_size(if opts.x_label.is_empty() { 24 } else { 42 })
                .y_label_area_size(if opts.y_label.is_empty() { 40 } else { 58 })
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(opts.x_label.as_str())
                .y_desc(opts.y_label.as_str())
                .axis_desc_style((FAMILY, 13.0).into_font().color(&TEXT))
                .label_style((FAMILY, 12.0).into_font().color(&TEXT))
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&|v| fmt_axis(*v))
                .y_label_formatter(&|v| fmt_axis(*v))
                .light_line_style(RGBColor(240, 240, 240))
                .bold_line_style(RGBColor(225, 225, 225))
                .axis_style(RGBColor(90, 90, 90))
                .draw()?;
            let refs = chart.draw_series(
                p.reference
                    .iter()
                    .filter(finite)
                    .map(|&q| Circle::new(q, 1, REFERENCE.filled())),
            )?;
            let legend = k == 0;
            if legend && !opts.reference_label.is_empty() && !p.reference.is_empty() {
                refs.label(opts.reference_label.as_str())
                    .legend(|(x, y)| Circle::new((x + 8, y), 3, REFERENCE.filled()));
            }
            let pts = chart.draw_series(
                p.points
                    .iter()
                    .filter(finite)
                    .map(|&q| Circle::new(q, 1, color.filled())),
            )?;
            if legend && !opts.points_label.is_empty() {
                pts.label(opts.points_label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
            }
            if legend && (!opts.points_label.is_empty() || !opts.reference_label.is_empty()) {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(150, 150, 150))
                    .label_font((FAMILY, 12.0).into_font().color(&TEXT))
                    .draw()?;
            }
        }
        root.present()?;
    }
    save(path, buf, width, height)
}
