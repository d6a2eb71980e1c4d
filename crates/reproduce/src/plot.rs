//! PNG figures: image grids and misfit-against-step curves (no text: the panel order is
//! written next to each figure in the Markdown report).

use std::path::Path;

use anyhow::Result;
use image::{Rgb, RgbImage};

/// Colour maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Blue-white-red, symmetric around 0 (vorticity).
    Diverging,
    /// Black-red-yellow-white (intensity, errors).
    Hot,
    /// Black to white (natural images).
    Gray,
}

/// One panel: a row-major `h x w` image, its colour map and value range.
#[derive(Debug, Clone)]
pub struct Tile {
    /// Values, row-major.
    pub data: Vec<f32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Colour map.
    pub cmap: Colormap,
    /// Value mapped to the low end.
    pub lo: f32,
    /// Value mapped to the high end.
    pub hi: f32,
}

fn colour(c: Colormap, t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let b = |v: f32| (v.clamp(0.0, 1.0) * 255.0) as u8;
    match c {
        Colormap::Diverging => {
            if t < 0.5 {
                let s = t / 0.5;
                Rgb([b(s), b(s), 255])
            } else {
                let s = (1.0 - t) / 0.5;
                Rgb([255, b(s), b(s)])
            }
        }
        Colormap::Hot => Rgb([b(3.0 * t), b(3.0 * t - 1.0), b(3.0 * t - 2.0)]),
        Colormap::Gray => Rgb([b(t), b(t), b(t)]),
    }
}

/// Draw `rows` of tiles (a `None` leaves a blank), each tile scaled by `zoom`, 4-pixel gaps.
pub fn grid(path: &Path, rows: &[Vec<Option<Tile>>], zoom: usize) -> Result<()> {
    let cell = rows
        .iter()
        .flatten()
        .flatten()
        .map(|t| t.h.max(t.w))
        .max()
        .unwrap_or(1)
        * zoom;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1);
    let gap = 4;
    let (wi, hi) = (cols * (cell + gap) + gap, rows.len() * (cell + gap) + gap);
    let mut img = RgbImage::from_pixel(wi as u32, hi as u32, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let Some(t) = tile else { continue };
            let (x0, y0) = (gap + c * (cell + gap), gap + r * (cell + gap));
            let (zy, zx) = (cell / t.h.max(1), cell / t.w.max(1));
            let span = if t.hi > t.lo { t.hi - t.lo } else { 1.0 };
            for i in 0..t.h * zy {
                for j in 0..t.w * zx {
                    let v = t.data[(i / zy) * t.w + j / zx];
                    img.put_pixel(
                        (x0 + j) as u32,
                        (y0 + i) as u32,
                        colour(t.cmap, (v - t.lo) / span),
                    );
                }
            }
        }
    }
    img.save(path)?;
    Ok(())
}

/// A curve: points and an RGB colour.
pub type Series = (Vec<(f64, f64)>, [u8; 3]);

/// Curves `(x, y)` with colours on a log-y axis (non-positive values are dropped), with a light
/// grid at every power of ten.
pub fn log_lines(path: &Path, series: &[Series], width: u32, height: u32) -> Result<()> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.0.iter().copied())
        .filter(|p| p.1 > 0.0 && p.1.is_finite())
        .collect();
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    if pts.is_empty() {
        img.save(path)?;
        return Ok(());
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (l0, l1) = pts.iter().fold((f64::MAX, f64::MIN), |a, p| {
        (a.0.min(p.1.log10()), a.1.max(p.1.log10()))
    });
    let (l0, l1) = (l0.floor(), l1.ceil().max(l0.floor() + 1.0));
    let m = 20.0;
    let px = |x: f64| m + (x - x0) / (x1 - x0).max(1e-12) * (width as f64 - 2.0 * m);
    let py = |l: f64| height as f64 - m - (l - l0) / (l1 - l0) * (height as f64 - 2.0 * m);
    let mut decade = l0;
    while decade <= l1 {
        let y = py(decade).round() as u32;
        for x in m as u32..width - m as u32 {
            if y < height {
                img.put_pixel(x, y, Rgb([220, 220, 220]));
            }
        }
        decade += 1.0;
    }
    for (s, c) in series {
        let v: Vec<(f64, f64)> = s
            .iter()
            .copied()
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .map(|p| (px(p.0), py(p.1.log10())))
            .collect();
        for w in v.windows(2) {
            let n = ((w[1].0 - w[0].0).abs().max((w[1].1 - w[0].1).abs()) as usize).max(1);
            for k in 0..=n {
                let t = k as f64 / n as f64;
                let (x, y) = (
                    w[0].0 + t * (w[1].0 - w[0].0),
                    w[0].1 + t * (w[1].1 - w[0].1),
                );
                for (dx, dy) in [(0i64, 0i64), (1, 0), (0, 1)] {
                    let (xi, yi) = (x as i64 + dx, y as i64 + dy);
                    if xi >= 0 && yi >= 0 && (xi as u32) < width && (yi as u32) < height {
                        img.put_pixel(xi as u32, yi as u32, Rgb(*c));
                    }
                }
            }
        }
    }
    img.save(path)?;
    Ok(())
}
