//! Samplers of the diffusion prior in the EDM (variance-exploding) convention.
//!
//! Probability-flow ODE (Karras et al. 2022, eq. 4 with `s(t) = 1`, `sigma(t) = t`):
//! `dx/dsigma = (x - D(x; sigma)) / sigma`.
//! Reverse SDE (Song et al. 2021, VE): `dx = -d[sigma^2] score(x) + sqrt(d[sigma^2]/dt) dw`,
//! with `score(x) = (D(x; sigma) - x) / sigma^2`.

use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rng::{fill_normal, stream, tags};
use crate::schedule::karras_sigmas;
use crate::{Denoiser, PriorError, Result};

/// Deterministic integrator of the probability-flow ODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OdeMethod {
    /// First-order Euler (one denoiser evaluation per step).
    #[default]
    Euler,
    /// Heun's second-order method (Karras et al. 2022, Algorithm 1; two evaluations per step
    /// except the last, which is an Euler step to sigma = 0).
    Heun,
}

/// `N(0, sigma_max^2 I)` initial noise, row `i` from stream `(seed, INIT, 0, i)`.
pub fn initial_noise(n: usize, d: usize, sigma_max: f64, seed: u64) -> Array2<f32> {
    let mut x = Array2::<f32>::zeros((n, d));
    x.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(i, mut row)| {
        let mut rng = stream(seed, tags::INIT, 0, i as u64);
        let mut buf = vec![0.0f32; d];
        fill_normal(&mut rng, &mut buf);
        for (a, b) in row.iter_mut().zip(buf) {
            *a = b * sigma_max as f32;
        }
    });
    x
}

/// One Euler step of the PF-ODE from `sigma` to `sigma_next` given `denoised = D(x; sigma)`:
/// `x + (sigma_next - sigma) (x - denoised) / sigma`.
pub fn euler_step(x: ArrayView2<'_, f32>, denoised: ArrayView2<'_, f32>, sigma: f64, sigma_next: f64) -> Array2<f32> {
    let h = ((sigma_next - sigma) / sigma) as f32;
    let mut out = x.to_owned();
    Zip::from(&mut out).and(&denoised).for_each(|o, &d| *o += h * (*o - d));
    out
}

/// Integrate the PF-ODE through the noise levels `sigmas` (decreasing, the last may be 0).
pub fn pf_ode(den: &dyn Denoiser, x: ArrayView2<'_, f32>, sigmas: &[f64], method: OdeMethod) -> Result<Array2<f32>> {
    check_sigmas(sigmas)?;
    let mut x = x.to_owned();
    for w in sigmas.windows(2) {
        let (s, s_next) = (w[0], w[1]);
        let d = den.denoise(x.view(), s as f32)?;
        let x_euler = euler_step(x.view(), d.view(), s, s_next);
        x = match method {
            OdeMethod::Heun if s_next > 0.0 => {
                // Trapezoidal correction: x + (s_next - s) (d_cur + d_next) / 2.
                let d2 = den.denoise(x_euler.view(), s_next as f32)?;
                let h = (s_next - s) as f32;
                let mut out = x.clone();
                Zip::from(&mut out).and(&d).and(&x_euler).and(&d2).for_each(|o, &dc, &xe, &dn| {
                    let slope_cur = (*o - dc) / s as f32;
                    let slope_next = (xe - dn) / s_next as f32;
                    *o += h * 0.5 * (slope_cur + slope_next);
                });
                out
            }
            _ => x_euler,
        };
    }
    Ok(x)
}

/// Estimate the clean sample of every particle at noise `sigma_start` by a short deterministic
/// PF-ODE solve: `n_steps` Karras levels from `sigma_start` down to `sigma_min` (exponent `rho`),
/// then to 0, with Euler steps. With `n_steps = 1` it is one denoiser call, `D(x; sigma_start)`.
///
/// This is the `x_0` estimate of EnKG (arXiv 2409.20175, Algorithm 2): the map from `x_t` to `x_0`
/// is the deterministic PF-ODE flow, so `G(x_0(x_t))` is a function of `x_t`.
pub fn clean_estimate(
    den: &dyn Denoiser,
    x: ArrayView2<'_, f32>,
    sigma_start: f64,
    n_steps: usize,
    sigma_min: f64,
    rho: f64,
) -> Result<Array2<f32>> {
    if n_steps <= 1 || sigma_start <= sigma_min {
        return den.denoise(x, sigma_start as f32);
    }
    let sigmas = karras_sigmas(sigma_start, sigma_min, rho, n_steps)?;
    pf_ode(den, x, &sigmas, OdeMethod::Euler)
}

/// Euler-Maruyama discretisation of the reverse VE SDE through `sigmas`:
///
/// `x_{i+1} = x_i + (sigma_i^2 - sigma_{i+1}^2) score(x_i; sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z_i`,
///
/// and, on the last step to `sigma = 0`, `x = D(x; sigma_i)` (no noise). The noise of step `i`
/// (counted from `step_offset`) and row `r` comes from stream `(seed, SDE, step_offset + i, r)`.
pub fn reverse_sde(den: &dyn Denoiser, x: ArrayView2<'_, f32>, sigmas: &[f64], seed: u64, step_offset: u64) -> Result<Array2<f32>> {
    check_sigmas(sigmas)?;
    let mut x = x.to_owned();
    for (i, w) in sigmas.windows(2).enumerate() {
        let (s, s_next) = (w[0], w[1]);
        let d = den.denoise(x.view(), s as f32)?;
        if s_next <= 0.0 {
            x = d;
            continue;
        }
        let f = s * s - s_next * s_next;
        let g = (f / (s * s)) as f32; // f * score = f (D - x) / s^2
        let sq = f.sqrt() as f32;
        let step = step_offset + i as u64;
        x.axis_iter_mut(Axis(0)).into_par_iter().zip(d.axis_iter(Axis(0))).enumerate().for_each(|(r, (mut xr, dr))| {
            let mut rng = stream(seed, tags::SDE, step, r as u64);
            let mut z = vec![0.0f32; xr.len()];
            fill_normal(&mut rng, &mut z);
            for ((xv, dv), zv) in xr.iter_mut().zip(dr.iter()).zip(z) {
                *xv += g * (*dv - *xv) + sq * zv;
            }
        });
    }
    Ok(x)
}

fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    if sigmas.len() < 2 {
        return Err(PriorError::InvalidParameter { name: "sigmas", reason: "need at least two noise levels".into() });
    }
    for w in sigmas.windows(2) {
        if !(w[0] > w[1] && w[1] >= 0.0 && w[0].is_finite()) {
            return Err(PriorError::InvalidParameter {
                name: "sigmas",
                reason: format!("noise levels must be finite, decreasing and >= 0 (got {} then {})", w[0], w[1]),
            });
        }
    }
    Ok(())
}
