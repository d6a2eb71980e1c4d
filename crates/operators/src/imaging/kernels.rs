//! Blur kernels: the truncated Gaussian of DPS/EnKG and a seeded random-trajectory motion kernel.

use ndarray::Array2;
use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Triangular};

use super::resample::{lanczos3, Resample1d};
use crate::{OperatorError, Result};

#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87, the MSRV is 1.85
fn check_size(size: usize) -> Result<()> {
    if size % 2 == 0 {
        return Err(OperatorError::InvalidParameter {
            name: "kernel_size",
            reason: format!("must be odd and >= 1, got {size}"),
        });
    }
    Ok(())
}

/// The Gaussian blur kernel of DPS/EnKG, `size x size` (61 x 61 with `std = 3.0` there):
///
/// `k[i, j] = g(i - r) g(j - r)`, `r = size / 2`, with
/// `g(t) = exp(-t^2 / (2 std^2)) / sum_{|s| <= R} exp(-s^2 / (2 std^2))` for `|t| <= R` and 0
/// beyond, where `R = min(floor(4 std + 1/2), r)`.
///
/// This is exactly what the references build with `scipy.ndimage.gaussian_filter` applied to a
/// centred delta (scipy truncates at 4 standard deviations, `R = 12` for `std = 3`), so the
/// 61 x 61 kernel has a 25 x 25 non-zero core. It sums to 1 (to rounding).
pub fn gaussian_kernel(size: usize, std: f64) -> Result<Array2<f32>> {
    check_size(size)?;
    if !(std.is_finite() && std > 0.0) {
        return Err(OperatorError::InvalidParameter {
            name: "std",
            reason: format!("must be finite and > 0, got {std}"),
        });
    }
    let r = size / 2;
    let big_r = ((4.0 * std + 0.5).floor() as usize).min(r);
    let g: Vec<f64> = (0..size)
        .map(|i| {
            let t = i as f64 - r as f64;
            if t.abs() <= big_r as f64 {
                (-t * t / (2.0 * std * std)).exp()
            } else {
                0.0
            }
        })
        .collect();
    let z: f64 = g.iter().sum();
    Ok(Array2::from_shape_fn((size, size), |(i, j)| {
        (g[i] * g[j] / (z * z)) as f32
    }))
}

/// Numerical slack of the trajectory sampler (the `eps` of the reference generator).
const EPS: f64 = 0.1;

/// A random motion-blur kernel of `size x size` pixels and `intensity` in `[0, 1]`
/// (DPS: 61 x 61, intensity 0.5), drawn from `ChaCha8Rng::seed_from_u64(seed)`.
///
/// This is our own implementation of the trajectory model of the `motionblur` package
/// (LeviBorodenko), which DPS uses for its motion-deblur task. On a supersampled canvas of side
/// `S = 2 size` with diagonal `D = sqrt(2) S`:
///
/// 1. path length `L = 0.75 D (U(0,1) + U(0, intensity^2))`;
/// 2. step lengths `beta(1, 30) (1 - intensity + 0.1) D`, keeping steps shorter than `L`,
///    drawn until their sum reaches `L`;
/// 3. a maximal angle `a_max ~ U(0, intensity pi)` and a jitter probability `p ~ beta(2, 20)`;
///    the first step direction is `U(-a_max, a_max)`, each further direction has magnitude
///    `Triangular(0, a_max + 0.1, mode intensity a_max)` and flips the sign of the previous
///    one with probability `p` (directions are absolute, not turns);
/// 4. the path is the cumulative sum of the complex steps `len e^{i angle}`, centred on its
///    centre of mass, rotated by `U(0, pi)` and moved to the canvas centre;
/// 5. rasterised as a 1-pixel polyline (`max(1, floor(D/150))` px wide; each segment sampled
///    every 1/4 px, the nearest pixel set to 1, points off the canvas dropped), blurred with a
///    Gaussian of std `max(1, floor(0.01 D))` px (truncated at 3 std), downsampled by 2 with an
///    antialiased Lanczos-3 filter (PIL `LANCZOS`), negatives clipped, and normalised to sum 1.
///
/// Differences from the package: the rasteriser is ours (not PIL's `ImageDraw.line`), the
/// Gaussian blur is a true Gaussian (PIL uses box approximations) and the kernel is kept in
/// floating point instead of being quantised to 8 bits; so the kernels are equal in law only
/// approximately, and a given seed does not reproduce a kernel of the package.
/// If a trajectory leaves nothing on the canvas, a new one is drawn from the same stream.
pub fn motion_kernel(size: usize, intensity: f64, seed: u64) -> Result<Array2<f32>> {
    check_size(size)?;
    if !(0.0..=1.0).contains(&intensity) {
        return Err(OperatorError::InvalidParameter {
            name: "intensity",
            reason: format!("must be in [0, 1], got {intensity}"),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _attempt in 0..64 {
        let path = trajectory(size, intensity, &mut rng)?;
        if let Some(k) = render(size, &path) {
            return Ok(k);
        }
    }
    Err(OperatorError::InvalidParameter {
        name: "seed",
        reason: "no motion trajectory hit the kernel canvas in 64 attempts".into(),
    })
}

fn dist_err(e: impl std::fmt::Display) -> OperatorError {
    OperatorError::InvalidParameter {
        name: "intensity",
        reason: format!("distribution: {e}"),
    }
}

/// Points of the trajectory on the supersampled canvas, `x` = column, `y` = row.
fn trajectory(size: usize, intensity: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Complex64>> {
    let s = 2.0 * size as f64;
    let diag = (2.0f64).sqrt() * s;
    let max_len = 0.75 * diag * (rng.random::<f64>() + intensity * intensity * rng.random::<f64>());
    let step_dist = Beta::new(1.0, 30.0).map_err(dist_err)?;
    let mut steps = Vec::new();
    let mut total = 0.0;
    // Each accepted step is shorter than max_len; the expected step is about D/31 * 1.1, so the
    // loop ends after a few hundred steps. The cap guards against pathological parameters.
    while total < max_len && steps.len() < 1_000_000 {
        let st = step_dist.sample(rng) * (1.0 - intensity + EPS) * diag;
        if st < max_len {
            steps.push(st);
            total += st;
        }
    }
    if steps.is_empty() {
        // max_len == 0 (both uniforms drew 0): a single point.
        steps.push(0.0);
    }
    let max_angle = rng.random::<f64>() * intensity * std::f64::consts::PI;
    let jitter = Beta::new(2.0, 20.0).map_err(dist_err)?.sample(rng);
    let tri = Triangular::new(0.0, max_angle + EPS, intensity * max_angle).map_err(dist_err)?;
    let mut angles = Vec::with_capacity(steps.len());
    angles.push(if max_angle > 0.0 {
        rng.random_range(-max_angle..max_angle)
    } else {
        0.0
    });
    while angles.len() < steps.len() {
        let a = tri.sample(rng);
        let prev_sign = if angles[angles.len() - 1] < 0.0 {
            -1.0
        } else {
            1.0
        };
        let flip = rng.random::<f64>() < jitter;
        angles.push(if flip { -prev_sign * a } else { prev_sign * a });
    }
    let mut path = Vec::with_capacity(steps.len());
    let mut acc = Complex64::new(0.0, 0.0);
    for (l, a) in steps.iter().zip(&angles) {
        acc += Complex64::from_polar(*l, *a);
        path.push(acc);
    }
    let com = path.iter().sum::<Complex64>() / path.len() as f64;
    let rot = Complex64::from_polar(1.0, rng.random::<f64>() * std::f64::consts::PI);
    let centre = Complex64::new(s / 2.0, s / 2.0);
    Ok(path.into_iter().map(|p| (p - com) * rot + centre).collect())
}

/// Rasterise, blur, downsample and normalise; `None` if nothing landed on the canvas.
fn render(size: usize, path: &[Complex64]) -> Option<Array2<f32>> {
    let n = 2 * size;
    let diag = (2.0f64).sqrt() * n as f64;
    let width = ((diag / 150.0).floor() as usize).max(1);
    let mut canvas = vec![0.0f64; n * n];
    let mut plot = |p: Complex64| {
        let (cx, cy) = (p.re.floor() as i64, p.im.floor() as i64);
        let lo = -((width as i64 - 1) / 2);
        for dy in lo..lo + width as i64 {
            for dx in lo..lo + width as i64 {
                let (x, y) = (cx + dx, cy + dy);
                if x >= 0 && y >= 0 && (x as usize) < n && (y as usize) < n {
                    canvas[y as usize * n + x as usize] = 1.0;
                }
            }
        }
    };
    plot(path[0]);
    for seg in path.windows(2) {
        let d = seg[1] - seg[0];
        let pieces = ((d.norm() * 4.0).ceil() as usize).max(1);
        for t in 1..=pieces {
            plot(seg[0] + d * (t as f64 / pieces as f64));
        }
    }
    if canvas.iter().all(|&v| v == 0.0) {
        return None;
    }
    // Gaussian blur, separable, zero outside the canvas.
    let sigma = ((0.01 * diag).floor()).max(1.0);
    let rad = (3.0 * sigma).ceil() as i64;
    let g: Vec<f64> = (-rad..=rad)
        .map(|t| (-(t * t) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let blur_1d = |src: &[f64], dst: &mut [f64], stride: usize, step: usize| {
        // lines indexed by `stride`, samples by `step`
        for line in 0..n {
            for i in 0..n {
                let mut acc = 0.0;
                for (t, gv) in g.iter().enumerate() {
                    let j = i as i64 + t as i64 - rad;
                    if j >= 0 && (j as usize) < n {
                        acc += gv * src[line * stride + j as usize * step];
                    }
                }
                dst[line * stride + i * step] = acc / gs;
            }
        }
    };
    let mut tmp = vec![0.0f64; n * n];
    blur_1d(&canvas, &mut tmp, n, 1);
    blur_1d(&tmp, &mut canvas, 1, n);
    // Antialiased Lanczos-3 downsampling by 2 (PIL LANCZOS), separable.
    let r = Resample1d::antialiased(n, size, 3.0, lanczos3);
    let mut half = vec![0.0f64; n * size];
    for row in 0..n {
        for j in 0..size {
            half[row * size + j] = r.weights[j]
                .iter()
                .enumerate()
                .map(|(t, w)| *w as f64 * canvas[row * n + r.start[j] + t])
                .sum();
        }
    }
    let mut k = Array2::<f64>::zeros((size, size));
    for i in 0..size {
        for j in 0..size {
            let v: f64 = r.weights[i]
                .iter()
                .enumerate()
                .map(|(t, w)| *w as f64 * half[(r.start[i] + t) * size + j])
                .sum();
            k[[i, j]] = v.max(0.0);
        }
    }
    let total: f64 = k.sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    Some(k.mapv(|v| (v / total) as f32))
}
