//! Gaussian-mixture priors with the exact denoiser and the exact posterior under linear
//! Gaussian measurements.
//!
//! For `p(x_0) = sum_c w_c N(x_0; mu_c, Sigma_c)` and `x = x_0 + sigma eps`:
//!
//! `p_sigma(x) = sum_c w_c N(x; mu_c, Sigma_c + sigma^2 I)`,
//! `D(x; sigma) = E[x_0 | x] = sum_c pi_c(x) D_c(x; sigma)`,
//! `pi_c(x) = w_c N(x; mu_c, Sigma_c + sigma^2 I) / p_sigma(x)` (computed by log-sum-exp),
//! `D_c(x; sigma) = x - sigma^2 (Sigma_c + sigma^2 I)^{-1} (x - mu_c)`.
//!
//! Under `y = A x_0 + sigma_y n` the posterior is again a mixture: each component is
//! conditioned as in [`GaussianPosterior`] and reweighted by its evidence,
//! `w'_c ∝ w_c N(y; A mu_c, A Sigma_c A^T + sigma_y^2 I)`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::denoiser::{check_input, check_sigma};
use crate::gaussian::{sample_rows, Gaussian, GaussianPosterior};
use crate::{Denoiser, PriorError, Result};

/// A Gaussian mixture `sum_c w_c N(mu_c, Sigma_c)`.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    log_w: Vec<f64>,
    weights: Vec<f64>,
    comps: Vec<Gaussian>,
}

fn normalise_weights(w: &[f64]) -> Result<Vec<f64>> {
    if w.is_empty() {
        return Err(PriorError::InvalidParameter { name: "weights", reason: "a mixture needs at least one component".into() });
    }
    if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(PriorError::InvalidParameter { name: "weights", reason: "weights must be finite and >= 0".into() });
    }
    let s: f64 = w.iter().sum();
    if !(s > 0.0) {
        return Err(PriorError::InvalidParameter { name: "weights", reason: "weights sum to zero".into() });
    }
    Ok(w.iter().map(|v| v / s).collect())
}

/// `log sum_c exp(a_c)`, stable.
pub fn log_sum_exp(a: &[f64]) -> f64 {
    let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + a.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

impl GaussianMixture {
    /// Mixture of `comps` with weights `weights` (normalised here; zero weights allowed).
    pub fn new(weights: &[f64], comps: Vec<Gaussian>) -> Result<Self> {
        if weights.len() != comps.len() {
            return Err(PriorError::Shape { what: "number of weights", expected: comps.len(), got: weights.len() });
        }
        let weights = normalise_weights(weights)?;
        let d = comps[0].dim();
        for c in &comps {
            if c.dim() != d {
                return Err(PriorError::Shape { what: "component dimension", expected: d, got: c.dim() });
            }
        }
        let log_w = weights.iter().map(|w| w.ln()).collect();
        Ok(Self { log_w, weights, comps })
    }

    /// The benchmark mixture of Cardoso et al. (MCGdiff, ICLR 2024, section 4.1): 25 unit-covariance
    /// components in dimension `d` (even, at least 2) with means `(8i, 8j, 8i, 8j, ...)`,
    /// `i, j in {-2, ..., 2}`, and the given weights.
    pub fn mcgdiff_grid(d: usize, weights: &[f64]) -> Result<Self> {
        if d < 2 || d % 2 != 0 {
            return Err(PriorError::InvalidParameter { name: "d", reason: format!("must be even and >= 2, got {d}") });
        }
        let mut comps = Vec::with_capacity(25);
        for i in -2i32..=2 {
            for j in -2i32..=2 {
                let mean = Array1::from_shape_fn(d, |k| if k % 2 == 0 { 8.0 * i as f64 } else { 8.0 * j as f64 });
                comps.push(Gaussian::isotropic(mean, 1.0)?);
            }
        }
        Self::new(weights, comps)
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.comps.len()
    }
    /// Whether the mixture has no components (never true for a constructed mixture).
    pub fn is_empty(&self) -> bool {
        self.comps.is_empty()
    }
    /// Normalised weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Components.
    pub fn components(&self) -> &[Gaussian] {
        &self.comps
    }

    /// Mixture mean `sum_c w_c mu_c`.
    pub fn mean(&self) -> Array1<f64> {
        let mut m = Array1::zeros(self.dim_());
        for (w, c) in self.weights.iter().zip(&self.comps) {
            m.scaled_add(*w, &c.mean());
        }
        m
    }

    fn dim_(&self) -> usize {
        self.comps[0].dim()
    }

    /// Draw a component index from the weights.
    fn pick(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for (k, w) in weights.iter().enumerate() {
            acc += w;
            if u < acc {
                return k;
            }
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// `n` independent draws from the mixture, row `i` from stream `(seed, SAMPLE, 0, i)`.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        sample_rows(n, self.dim_(), seed, |rng, out| {
            let k = Self::pick(&self.weights, rng);
            self.comps[k].sample_into(rng, out);
        })
    }

    /// The posterior under `y = A x + sigma_y n`.
    pub fn posterior(&self, a: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>, sigma_y: f64) -> Result<GmmPosterior> {
        let posts = self
            .comps
            .iter()
            .map(|c| GaussianPosterior::new(c, a, y, sigma_y))
            .collect::<Result<Vec<_>>>()?;
        let logits: Vec<f64> = posts.iter().zip(&self.log_w).map(|(p, lw)| lw + p.log_evidence()).collect();
        let lse = log_sum_exp(&logits);
        let weights: Vec<f64> = logits.iter().map(|l| (l - lse).exp()).collect();
        Ok(GmmPosterior { weights, posts })
    }

    /// Denoise one row (f64), returning the log marginal density `log p_sigma(x)`.
    fn denoise_row(&self, noisy: &[crate::gaussian::Noisy], sigma: f64, x: &[f64], out: &mut [f64]) -> f64 {
        let d = x.len();
        let k = self.comps.len();
        let mut logits = vec![0.0; k];
        let mut dens = vec![0.0; k * d];
        for c in 0..k {
            logits[c] = self.log_w[c] + self.comps[c].eval_noisy(&noisy[c], sigma, x, &mut dens[c * d..(c + 1) * d]);
        }
        let lse = log_sum_exp(&logits);
        out.iter_mut().for_each(|v| *v = 0.0);
        for c in 0..k {
            let p = (logits[c] - lse).exp();
            if p > 0.0 {
                for (o, v) in out.iter_mut().zip(&dens[c * d..(c + 1) * d]) {
                    *o += p * v;
                }
            }
        }
        lse
    }

    /// `log p_sigma(x)` for every row (`sigma = 0` gives the mixture density itself).
    pub fn log_density(&self, x: ArrayView2<'_, f64>, sigma: f64) -> Result<Array1<f64>> {
        let noisy = self.comps.iter().map(|c| c.noisy(sigma)).collect::<Result<Vec<_>>>()?;
        let d = self.dim_();
        if x.ncols() != d {
            return Err(PriorError::Shape { what: "point", expected: d, got: x.ncols() });
        }
        let mut tmp = vec![0.0; d];
        Ok(x.outer_iter().map(|r| self.denoise_row(&noisy, sigma, &r.to_vec(), &mut tmp)).collect())
    }
}

impl Denoiser for GaussianMixture {
    fn dim(&self) -> usize {
        self.dim_()
    }
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "denoiser input")?;
        check_sigma(sigma)?;
        let s = sigma as f64;
        let noisy = self.comps.iter().map(|c| c.noisy(s)).collect::<Result<Vec<_>>>()?;
        let d = self.dim();
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0))).for_each(|(mut o, xr)| {
            let xv: Vec<f64> = xr.iter().map(|v| *v as f64).collect();
            let mut den = vec![0.0; d];
            self.denoise_row(&noisy, s, &xv, &mut den);
            for (a, b) in o.iter_mut().zip(den) {
                *a = b as f32;
            }
        });
        Ok(out)
    }
}

/// The exact posterior of a [`GaussianMixture`] under a linear Gaussian measurement.
#[derive(Debug, Clone)]
pub struct GmmPosterior {
    weights: Vec<f64>,
    posts: Vec<GaussianPosterior>,
}

impl GmmPosterior {
    /// Posterior component weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Posterior components.
    pub fn components(&self) -> &[GaussianPosterior] {
        &self.posts
    }
    /// Posterior mean `sum_c w'_c mu'_c`.
    pub fn mean(&self) -> Array1<f64> {
        let mut m = Array1::zeros(self.posts[0].mean().len());
        for (w, p) in self.weights.iter().zip(&self.posts) {
            m.scaled_add(*w, &p.mean());
        }
        m
    }
    /// `n` exact draws, row `i` from stream `(seed, SAMPLE, 0, i)`.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        let d = self.posts[0].mean().len();
        sample_rows(n, d, seed, |rng, out| {
            let k = GaussianMixture::pick(&self.weights, rng);
            self.posts[k].sample_into(rng, out);
        })
    }
}
