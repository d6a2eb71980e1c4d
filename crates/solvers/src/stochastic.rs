//! Shared pieces of the reverse-SDE baselines (DPS-GSG, DPG, SCG): the Euler-Maruyama step of
//! the VE (EDM) reverse SDE and the map from the reference's VP coordinates.
//!
//! With `f_i = sigma_i^2 - sigma_{i+1}^2` and the score `(D(x; sigma_i) - x) / sigma_i^2`,
//!
//! `x_{i+1} = x_i + f_i score + sqrt(f_i) z` (SDE), `x_{i+1} = x_i + f_i score / 2` (PF-ODE),
//!
//! the discretisation the enkg-pytorch reference applies (`x * scaling + factor * score
//! (+ sqrt(factor) eps)`) written for `s(t) = 1`.
//!
//! The reference runs the VP process `x_vp = s x` with `s(sigma) = 1 / sqrt(1 + sigma^2)`, so
//! a displacement `dx_vp` is `dx_vp / s` here and a gradient `grad_{x_vp}` is `grad_x / s`:
//! a guidance term `c * v` added to the VP score reads `s c v` in VE score units, and a DPS
//! step `-zeta grad_{x_vp} phi` reads `-zeta (1 + sigma^2) grad_x phi`.

use diffinv_priors::rng::{fill_normal, stream};
use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

/// `s(sigma) = 1 / sqrt(1 + sigma^2)`, the VP scaling at EDM noise level `sigma`.
pub(crate) fn vp_scale(sigma: f64) -> f64 {
    1.0 / (1.0 + sigma * sigma).sqrt()
}

/// `x + c f (D - x) / sigma^2` with `c = 1` (SDE drift) or `c = 1/2` (PF-ODE).
pub(crate) fn drift(
    x: ArrayView2<'_, f32>,
    den: ArrayView2<'_, f32>,
    sigma: f64,
    sigma_next: f64,
    sde: bool,
) -> Array2<f32> {
    let f = sigma * sigma - sigma_next * sigma_next;
    let c = if sde { 1.0 } else { 0.5 };
    let g = (c * f / (sigma * sigma)) as f32;
    let mut out = x.to_owned();
    Zip::from(&mut out)
        .and(&den)
        .for_each(|o, &d| *o += g * (d - *o));
    out
}

/// Add `scale * z_r` to row `r`, `z_r` from stream `(seed, tag, step, row_offset + r)`.
pub(crate) fn add_noise(
    x: &mut Array2<f32>,
    scale: f32,
    seed: u64,
    tag: u64,
    step: u64,
    row_offset: u64,
) {
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut row)| {
            let mut rng = stream(seed, tag, step, row_offset + r as u64);
            let mut z = vec![0.0f32; row.len()];
            fill_normal(&mut rng, &mut z);
            for (a, b) in row.iter_mut().zip(z) {
                *a += scale * b;
            }
        });
}

/// Standard normal rows `(n, d)`, row `r` from stream `(seed, tag, step, row_offset + r)`.
pub(crate) fn normal_rows(
    n: usize,
    d: usize,
    seed: u64,
    tag: u64,
    step: u64,
    row_offset: u64,
) -> Array2<f32> {
    let mut z = Array2::<f32>::zeros((n, d));
    add_noise(&mut z, 1.0, seed, tag, step, row_offset);
    z
}

/// Euclidean norm of each row, in f64.
pub(crate) fn row_norms(x: ArrayView2<'_, f32>) -> Vec<f64> {
    x.outer_iter()
        .map(|r| {
            r.iter()
                .map(|v| (*v as f64) * (*v as f64))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}
