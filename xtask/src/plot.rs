//! Minimal PNG figures (scatter panels and line plots) drawn with the `image` crate, so that
//! `cargo xtask reproduce` needs no plotting stack.

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

const BG: Rgb<u8> = Rgb([255, 255, 255]);
const AXIS: Rgb<u8> = Rgb([160, 160, 160]);

/// One panel of a scatter figure: a title-less set of points and a colour.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Reference points drawn first in grey (e.g. exact posterior samples).
    pub reference: Vec<(f64, f64)>,
    /// Colour of `points`.
    pub color: [u8; 3],
}

/// Draw panels side by side, all with the same axis limits (computed from every point),
/// each `size x size` pixels, and write a PNG.
pub fn scatter_panels(path: &Path, panels: &[Panel], size: u32) -> Result<()> {
    let all = panels
        .iter()
        .flat_map(|p| p.points.iter().chain(p.reference.iter()));
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0.is_nan() || x1.is_nan() || x0 >= x1 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    if y0.is_nan() || y1.is_nan() || y0 >= y1 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let pad = 8u32;
    let w = panels.len() as u32 * (size + pad) + pad;
    let h = size + 2 * pad;
    let mut img = RgbImage::from_pixel(w.max(1), h, BG);
    for (k, p) in panels.iter().enumerate() {
        let ox = pad + k as u32 * (size + pad);
        for i in 0..size {
            img.put_pixel(ox + i, pad, AXIS);
            img.put_pixel(ox + i, pad + size - 1, AXIS);
            img.put_pixel(ox, pad + i, AXIS);
            img.put_pixel(ox + size - 1, pad + i, AXIS);
        }
        let map = |x: f64, y: f64| -> Option<(u32, u32)> {
            if !(x.is_finite() && y.is_finite()) {
                return None;
            }
            let u = ((x - x0) / (x1 - x0) * (size - 5) as f64) as u32 + 2;
            let v = ((y1 - y) / (y1 - y0) * (size - 5) as f64) as u32 + 2;
            Some((ox + u.min(size - 3), pad + v.min(size - 3)))
        };
        for &(x, y) in &p.reference {
            if let Some((u, v)) = map(x, y) {
                img.put_pixel(u, v, Rgb([190, 190, 190]));
            }
        }
        for &(x, y) in &p.points {
            if let Some((u, v)) = map(x, y) {
                for (du, dv) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    img.put_pixel(u + du, v + dv, Rgb(p.color));
                }
            }
        }
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// One line: its `(x, y)` points and RGB colour.
pub type Series = (Vec<(f64, f64)>, [u8; 3]);

/// A line plot of several series `(x_i, y_i)` on shared axes (log scale on y if `log_y`).
pub fn line_plot(
    path: &Path,
    series: &[Series],
    log_y: bool,
    width: u32,
    height: u32,
) -> Result<()> {
    let ty = |y: f64| if log_y { y.max(1e-300).log10() } else { y };
    let pts = series
        .iter()
        .flat_map(|(s, _)| s.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(ty(y));
        y1 = y1.max(ty(y));
    }
    if x0.is_nan() || x1.is_nan() || x0 >= x1 {
        x1 = x0 + 1.0;
    }
    if y0.is_nan() || y1.is_nan() || y0 >= y1 {
        y1 = y0 + 1.0;
    }
    let mut img = RgbImage::from_pixel(width, height, BG);
    for i in 0..width {
        img.put_pixel(i, height - 1, AXIS);
    }
    for j in 0..height {
        img.put_pixel(0, j, AXIS);
    }
    for (s, color) in series {
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in s {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let u = (x - x0) / (x1 - x0) * (width - 3) as f64 + 1.0;
            let v = (y1 - ty(y)) / (y1 - y0) * (height - 3) as f64 + 1.0;
            if let Some((pu, pv)) = prev {
                let steps = ((u - pu).abs().max((v - pv).abs()) as usize).max(1);
                for t in 0..=steps {
                    let a = t as f64 / steps as f64;
                    let (qu, qv) = (pu + a * (u - pu), pv + a * (v - pv));
                    img.put_pixel(
                        (qu as u32).min(width - 1),
                        (qv as u32).min(height - 1),
                        Rgb(*color),
                    );
                }
            }
            prev = Some((u, v));
        }
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}
