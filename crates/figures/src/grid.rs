//! Image grids with panel titles, row labels and colour bars.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::{
    check_side, ensure_font, fmt_tick, nice_ticks, save, style, text_size, vertical, Colormap,
    FigureError, Result, MAX_SIDE,
};

/// Which colour bar shows a panel's colour scale.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ColorBar {
    /// The row's colour bar (drawn at the right end of the row when [`ImageRow::unit`] is set).
    /// All panels of a row using it must share colour map and range.
    #[default]
    Row,
    /// A horizontal colour bar of its own under the panel, with this unit label (e.g. for an
    /// observation with its own range).
    Own(String),
    /// No colour bar (e.g. a binary mask).
    Hidden,
}

/// One image panel: a row-major `h x w` image, its colour map and value range, a title.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title drawn above the image (e.g. the method name).
    pub title: String,
    /// Values, row-major, `h * w` of them; non-finite values are drawn in [`crate::MISSING`].
    pub data: Vec<f32>,
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// Colour map.
    pub cmap: Colormap,
    /// Value mapped to the low end of the colour map.
    pub lo: f32,
    /// Value mapped to the high end (`lo == hi` is allowed: a constant image).
    pub hi: f32,
    /// Which colour bar shows this panel's scale.
    pub bar: ColorBar,
}

impl Panel {
    /// A panel shown by its row's colour bar.
    pub fn new(
        title: impl Into<String>,
        data: Vec<f32>,
        h: usize,
        w: usize,
        cmap: Colormap,
        lo: f32,
        hi: f32,
    ) -> Self {
        Self {
            title: title.into(),
            data,
            h,
            w,
            cmap,
            lo,
            hi,
            bar: ColorBar::Row,
        }
    }

    /// The same panel with another colour bar choice.
    pub fn with_bar(mut self, bar: ColorBar) -> Self {
        self.bar = bar;
        self
    }
}

/// One row of an image grid.
#[derive(Debug, Clone, Default)]
pub struct ImageRow {
    /// Label drawn vertically at the left of the row (e.g. "reconstruction", "|error|").
    pub label: Option<String>,
    /// Unit label of the row's colour bar (e.g. "vorticity", "|error|"); `None`: no row bar.
    pub unit: Option<String>,
    /// Panels, left to right; `None` leaves a blank cell.
    pub panels: Vec<Option<Panel>>,
}

impl ImageRow {
    /// A row with a label and a row colour bar with unit `unit`.
    pub fn new(
        label: impl Into<String>,
        unit: impl Into<String>,
        panels: Vec<Option<Panel>>,
    ) -> Self {
        let label = label.into();
        let unit = unit.into();
        Self {
            label: (!label.is_empty()).then_some(label),
            unit: (!unit.is_empty()).then_some(unit),
            panels,
        }
    }
}

const PAD: u32 = 10;
const GAP: u32 = 10;
const FS_TITLE: u32 = 18;
const FS_LABEL: u32 = 14;
const FS_TICK: u32 = 12;
/// Panel title band height.
const TB: u32 = FS_LABEL + 10;
/// Horizontal (own) colour bar height.
const HBAR: u32 = 10;
/// Band under a row with own colour bars: gap, bar, tick marks, tick labels, unit label.
const OWN_BAND: u32 = 4 + HBAR + 4 + FS_TICK + 4 + FS_LABEL + 6;
/// Vertical (row) colour bar width.
const VBAR: u32 = 14;
const ROW_GAP: u32 = 8;
const GRAY: RGBColor = RGBColor(150, 150, 150);

fn validate(rows: &[ImageRow], zoom: usize) -> Result<()> {
    if rows.is_empty() {
        return Err(FigureError::Empty("no rows".into()));
    }
    if zoom == 0 || zoom > 64 {
        return Err(FigureError::Size(format!(
            "zoom = {zoom} (must be in 1..=64)"
        )));
    }
    let mut any = false;
    for (r, row) in rows.iter().enumerate() {
        let mut shared: Option<(Colormap, f32, f32)> = None;
        for p in row.panels.iter().flatten() {
            any = true;
            if p.h == 0 || p.w == 0 {
                return Err(FigureError::ZeroSize {
                    title: p.title.clone(),
                    h: p.h,
                    w: p.w,
                });
            }
            if p.h.checked_mul(p.w) != Some(p.data.len()) {
                return Err(FigureError::Shape {
                    title: p.title.clone(),
                    len: p.data.len(),
                    h: p.h,
                    w: p.w,
                });
            }
            if !(p.lo.is_finite() && p.hi.is_finite()) || p.lo > p.hi {
                return Err(FigureError::Range {
                    what: format!("panel {:?}", p.title),
                    lo: p.lo as f64,
                    hi: p.hi as f64,
                });
            }
            if p.bar == ColorBar::Row && row.unit.is_some() {
                let s = (p.cmap, p.lo, p.hi);
                match shared {
                    None => shared = Some(s),
                    Some(t) if t != s => return Err(FigureError::MixedScales { row: r }),
                    _ => {}
                }
            }
        }
    }
    if !any {
        return Err(FigureError::Empty("every panel is blank".into()));
    }
    Ok(())
}

/// Pixel size of a panel's image in a `cell x cell` box (aspect kept, longer side = cell).
fn image_px(p: &Panel, cell: u32) -> (u32, u32) {
    let m = p.h.max(p.w) as f64;
    let ph = ((p.h as f64 / m) * cell as f64).round().max(1.0) as u32;
    let pw = ((p.w as f64 / m) * cell as f64).round().max(1.0) as u32;
    (pw, ph)
}

/// Raw RGB canvas.
struct Canvas {
    buf: Vec<u8>,
    w: u32,
    h: u32,
}

impl Canvas {
    fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = 3 * (y as usize * self.w as usize + x as usize);
            self.buf[i..i + 3].copy_from_slice(&c);
        }
    }

    fn frame(&mut self, x: u32, y: u32, w: u32, h: u32) {
        let c = [GRAY.0, GRAY.1, GRAY.2];
        for i in 0..w + 2 {
            self.put(x + i - 1, y - 1, c);
            self.put(x + i - 1, y + h, c);
        }
        for j in 0..h + 2 {
            self.put(x - 1, y + j - 1, c);
            self.put(x + w, y + j - 1, c);
        }
    }

    /// Nearest-neighbour resampling of the panel into `pw x ph` at `(x, y)`.
    fn image(&mut self, p: &Panel, x: u32, y: u32, pw: u32, ph: u32) {
        let span = if p.hi > p.lo { p.hi - p.lo } else { 1.0 };
        for i in 0..ph {
            let si = (i as usize * p.h / ph as usize).min(p.h - 1);
            for j in 0..pw {
                let sj = (j as usize * p.w / pw as usize).min(p.w - 1);
                let v = p.data[si * p.w + sj];
                let t = if v.is_finite() {
                    (v - p.lo) / span
                } else {
                    f32::NAN
                };
                self.put(x + j, y + i, p.cmap.rgb(t));
            }
        }
        self.frame(x, y, pw, ph);
    }

    /// Colour bar of `cmap` over `(x, y, w, h)`: left to right if horizontal, else bottom to top.
    fn bar(&mut self, cmap: Colormap, x: u32, y: u32, w: u32, h: u32, horizontal: bool) {
        for i in 0..h {
            for j in 0..w {
                let t = if horizontal {
                    j as f32 / (w.max(2) - 1) as f32
                } else {
                    1.0 - i as f32 / (h.max(2) - 1) as f32
                };
                self.put(x + j, y + i, cmap.rgb(t));
            }
        }
        self.frame(x, y, w, h);
    }
}

/// Ticks of a colour bar: positions in `[0, 1]` along the bar and labels.
fn bar_ticks(lo: f32, hi: f32, len: u32, per_px: u32) -> Vec<(f64, String)> {
    let (lo, hi) = (lo as f64, hi as f64);
    if hi <= lo {
        return vec![(0.5, fmt_tick(lo, 2))];
    }
    let target = (len / per_px).clamp(2, 8) as usize;
    let (ticks, dec) = nice_ticks(lo, hi, target);
    ticks
        .into_iter()
        .map(|v| ((v - lo) / (hi - lo), fmt_tick(v, dec)))
        .collect()
}

/// Draw `rows` of image panels, each image scaled so that its longer side is
/// `zoom * (largest side of any panel)` pixels, and write a PNG to `path`.
///
/// Layout: an optional figure `title` (empty: none) on top; per row, the panel titles above the
/// images, the row label (if any) vertically on the left, the row colour bar (if the row has a
/// unit) on the right with ticks and the unit above it, and under each panel with
/// [`ColorBar::Own`] a horizontal bar with ticks and its unit.
pub fn image_grid(path: &Path, title: &str, rows: &[ImageRow], zoom: usize) -> Result<()> {
    validate(rows, zoom)?;
    ensure_font()?;
    let side = rows
        .iter()
        .flat_map(|r| r.panels.iter().flatten())
        .map(|p| p.h.max(p.w))
        .max()
        .unwrap_or(1);
    let cell = side
        .checked_mul(zoom)
        .filter(|c| *c <= MAX_SIDE as usize)
        .ok_or_else(|| FigureError::Size(format!("panel side {side} x zoom {zoom} too large")))?
        as u32;
    let ncols = rows.iter().map(|r| r.panels.len()).max().unwrap_or(0);

    // Column widths: image, title, own-bar unit label.
    let mut colw = vec![cell; ncols];
    for row in rows {
        for (c, p) in row.panels.iter().enumerate() {
            let Some(p) = p else { continue };
            colw[c] = colw[c].max(text_size(&p.title, FS_LABEL)?.0 + 6);
            if let ColorBar::Own(u) = &p.bar {
                colw[c] = colw[c].max(text_size(u, FS_LABEL)?.0 + 6);
            }
        }
    }
    let has_label = rows.iter().any(|r| r.label.is_some());
    let label_w = if has_label { FS_LABEL + 12 } else { 0 };
    // Row colour bars: bar, tick marks, widest tick label; the unit sits above the bar.
    let mut rbar_w = 0u32;
    for row in rows {
        let Some(unit) = &row.unit else { continue };
        let Some(p) = row.panels.iter().flatten().find(|p| p.bar == ColorBar::Row) else {
            continue;
        };
        let mut w = VBAR + 4 + 3;
        let mut widest = 0;
        for (_, s) in bar_ticks(p.lo, p.hi, cell, 28) {
            widest = widest.max(text_size(&s, FS_TICK)?.0);
        }
        w += widest;
        rbar_w = rbar_w.max(w).max(text_size(unit, FS_LABEL)?.0 + 2);
    }
    let title_h = if title.is_empty() { 0 } else { FS_TITLE + 14 };
    let row_h: Vec<u32> = rows
        .iter()
        .map(|r| {
            let own = r
                .panels
                .iter()
                .flatten()
                .any(|p| matches!(p.bar, ColorBar::Own(_)));
            TB + cell + if own { OWN_BAND } else { 0 } + ROW_GAP
        })
        .collect();
    let width = PAD as u64
        + label_w as u64
        + colw.iter().map(|w| *w as u64).sum::<u64>()
        + GAP as u64 * ncols.saturating_sub(1) as u64
        + if rbar_w > 0 { (GAP + rbar_w) as u64 } else { 0 }
        + PAD as u64;
    // A long figure title widens the figure rather than being clipped.
    let width = width.max(text_size(title, FS_TITLE)?.0 as u64 + 2 * PAD as u64);
    let height = (2 * PAD + title_h) as u64 + row_h.iter().map(|h| *h as u64).sum::<u64>();
    let (width, height) = (
        u32::try_from(width).unwrap_or(u32::MAX),
        u32::try_from(height).unwrap_or(u32::MAX),
    );
    check_side("figure width", width, 1)?;
    check_side("figure height", height, 1)?;
    let colx: Vec<u32> = colw
        .iter()
        .scan(PAD + label_w, |x, w| {
            let here = *x;
            *x += w + GAP;
            Some(here)
        })
        .collect();
    let rbar_x = PAD + label_w + colw.iter().sum::<u32>() + GAP * ncols as u32;

    // Pixels first, then text and tick marks on top.
    let mut cv = Canvas {
        buf: vec![255; width as usize * height as usize * 3],
        w: width,
        h: height,
    };
    let mut texts: Vec<(String, TextStyle<'static>, (i32, i32))> = Vec::new();
    let mut marks: Vec<((i32, i32), (i32, i32))> = Vec::new();
    if !title.is_empty() {
        texts.push((
            title.to_string(),
            style(FS_TITLE, HPos::Center, VPos::Center),
            ((width / 2) as i32, (PAD + title_h / 2) as i32),
        ));
    }
    let mut y0 = PAD + title_h;
    for (r, row) in rows.iter().enumerate() {
        let img_y = y0 + TB;
        if let Some(l) = &row.label {
            texts.push((
                l.clone(),
                vertical(FS_LABEL),
                ((PAD + label_w / 2) as i32, (img_y + cell / 2) as i32),
            ));
        }
        for (c, p) in row.panels.iter().enumerate() {
            let Some(p) = p else { continue };
            let (pw, ph) = image_px(p, cell);
            let ix = colx[c] + (colw[c] - pw) / 2;
            let iy = img_y + (cell - ph) / 2;
            cv.image(p, ix, iy, pw, ph);
            texts.push((
                p.title.clone(),
                style(FS_LABEL, HPos::Center, VPos::Center),
                ((colx[c] + colw[c] / 2) as i32, (y0 + TB / 2) as i32),
            ));
            if let ColorBar::Own(unit) = &p.bar {
                let by = img_y + cell + 4;
                // Inset so that the end tick labels stay under the panel.
                let inset = if pw >= 80 { 14 } else { 0 };
                let (bx, bw) = (ix + inset, pw - 2 * inset);
                cv.bar(p.cmap, bx, by, bw, HBAR, true);
                for (t, s) in bar_ticks(p.lo, p.hi, bw, 45) {
                    let x = bx as i32 + (t * (bw.max(2) - 1) as f64).round() as i32;
                    let yb = (by + HBAR) as i32;
                    marks.push(((x, yb), (x, yb + 3)));
                    texts.push((
                        s,
                        style(FS_TICK, HPos::Center, VPos::Center),
                        (x, yb + 4 + FS_TICK as i32 / 2 + 1),
                    ));
                }
                texts.push((
                    unit.clone(),
                    style(FS_LABEL, HPos::Center, VPos::Center),
                    (
                        (colx[c] + colw[c] / 2) as i32,
                        (by + HBAR + 4 + FS_TICK + 4 + FS_LABEL / 2 + 1) as i32,
                    ),
                ));
            }
        }
        if let (Some(unit), Some(p)) = (
            &row.unit,
            row.panels.iter().flatten().find(|p| p.bar == ColorBar::Row),
        ) {
            cv.bar(p.cmap, rbar_x, img_y, VBAR, cell, false);
            for (t, s) in bar_ticks(p.lo, p.hi, cell, 28) {
                let y = img_y as i32 + ((1.0 - t) * (cell.max(2) - 1) as f64).round() as i32;
                let xb = (rbar_x + VBAR) as i32;
                marks.push(((xb, y), (xb + 3, y)));
                texts.push((s, style(FS_TICK, HPos::Left, VPos::Center), (xb + 6, y)));
            }
            texts.push((
                unit.clone(),
                style(FS_LABEL, HPos::Left, VPos::Center),
                (rbar_x as i32, (y0 + TB / 2) as i32),
            ));
        }
        y0 += row_h[r];
    }
    {
        let root = BitMapBackend::with_buffer(&mut cv.buf, (width, height)).into_drawing_area();
        for (a, b) in marks {
            root.draw(&PathElement::new(vec![a, b], TEXT_MARK))?;
        }
        for (s, st, pos) in &texts {
            root.draw_text(s, st, *pos)?;
        }
        root.present()?;
    }
    save(path, cv.buf, width, height)
}

const TEXT_MARK: RGBColor = RGBColor(60, 60, 60);
