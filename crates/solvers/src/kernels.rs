//! The solvers' shared kernels, crate-private and written once: seeded noise rows, the
//! Euler-Maruyama drift of the reverse VE SDE, row norms and dots, finiteness checks, the Adam
//! step and the common schedule checks.
//!
//! The reverse-SDE baselines (DPS-GSG, DPG, SCG) step the VE (EDM) reverse SDE and map from the
//! reference's VP coordinates:
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
use diffinv_priors::EdmSchedule;
use ndarray::{Array1, Array2, ArrayView2, AsArray, Axis, Ix2, Zip};
use rayon::prelude::*;

use crate::solver::AdamMoments;
use crate::{Result, SolverError};

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

/// Euclidean norm of every row (f64 accumulation).
pub(crate) fn row_norms(x: ArrayView2<'_, f32>) -> Array1<f64> {
    x.map_axis(Axis(1), |r| {
        r.iter()
            .map(|v| (*v as f64) * (*v as f64))
            .sum::<f64>()
            .sqrt()
    })
}

/// Row-wise dot products (f64 accumulation).
pub(crate) fn row_dots(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array1<f64> {
    Zip::from(a.rows()).and(b.rows()).map_collect(|ra, rb| {
        ra.iter()
            .zip(rb.iter())
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum::<f64>()
    })
}

/// `x <- x + f (d - x) / sigma^2` in place: the drift of one Euler-Maruyama step of the reverse
/// VE SDE from `sigma` with `f = sigma^2 - sigma_next^2` and `d = D(x; sigma)` ([`drift`] with
/// `sde = true`, without the copy).
pub(crate) fn sde_drift(x: &mut Array2<f32>, den: ArrayView2<'_, f32>, sigma: f64, sigma_next: f64) {
    let g = ((sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)) as f32;
    Zip::from(x).and(den).for_each(|a, &d| *a += g * (d - *a));
}

/// A non-finite row of `x` as [`SolverError::NonFiniteState`] at `step`.
pub(crate) fn check_finite<'a>(x: impl AsArray<'a, f32, Ix2>, step: usize) -> Result<()> {
    match crate::problem::first_non_finite_row(x.into()) {
        Some(particle) => Err(SolverError::NonFiniteState { particle, step }),
        None => Ok(()),
    }
}

/// Mean of the finite values of `l` (0 when none is finite): the misfit of a step whose failed
/// rows carry NaN ([`Evaluator::nll_each`](crate::Evaluator::nll_each)).
pub(crate) fn finite_mean(l: &Array1<f32>) -> f64 {
    let (sum, n) = l
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0usize), |(s, n), v| (s + *v as f64, n + 1));
    sum / n.max(1) as f64
}

/// One Adam step (Kingma & Ba 2015, with bias correction at `t = step + 1`) on the parameters
/// `p` with moments `(m, v)` carried in the solver's state, so that a saved state resumes
/// exactly: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
pub(crate) fn adam_step(
    p: &mut Array2<f32>,
    moments: &mut AdamMoments,
    grad: ArrayView2<'_, f32>,
    step: usize,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
) {
    let (b1, b2) = betas;
    let t = (step + 1) as i32;
    let c1 = (1.0 - b1.powi(t)) as f32;
    let c2 = (1.0 - b2.powi(t)) as f32;
    let (lr, ae) = (lr as f32, eps as f32);
    let (b1, b2) = (b1 as f32, b2 as f32);
    Zip::from(p)
        .and(&mut moments.m)
        .and(&mut moments.v)
        .and(grad)
        .for_each(|p, m, v, &g| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + ae);
        });
}

/// Check the settings shared by the DPS family.
pub(crate) fn check_common(
    method: &str,
    num_samples: usize,
    num_steps: usize,
    schedule: &EdmSchedule,
) -> Result<Vec<f64>> {
    if num_samples == 0 {
        return Err(SolverError::Config(format!(
            "{method} needs at least one sample"
        )));
    }
    if num_steps < 2 {
        return Err(SolverError::Config(format!(
            "{method} needs at least 2 steps, got {num_steps}"
        )));
    }
    schedule
        .sigmas(num_steps)
        .map_err(|e| SolverError::Config(e.to_string()))
}
