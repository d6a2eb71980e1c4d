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
    if s.is_nan() || s <= 0.0 {
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
        if d < 2 || !d.is_multiple_of(2) {
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

    /// The exact vector-Jacobian product of the mixture denoiser (second-order Tweedie):
    ///
    /// `dD/dx = Cov[x_0 | x_sigma = x] / sigma^2`, with the mixture posterior covariance
    /// `Cov = sum_c pi_c (S_c + m_c m_c^T) - D D^T`, `m_c = D_c(x; sigma)` and the component
    /// posterior covariance `S_c = sigma^2 Sigma_c (Sigma_c + sigma^2 I)^{-1}`. Written as
    ///
    /// `J v = sum_c pi_c (v - sigma^2 (Sigma_c + sigma^2 I)^{-1} v) + sigma^{-2} sum_c pi_c (m_c - D) <m_c - D, v>`,
    ///
    /// (the second sum is the between-component covariance, formed from centred means for
    /// accuracy). `J` is symmetric, so the vjp is `J v`. Computed in f64, `O(C d)` per row for
    /// diagonal components and `O(C d^2)` for full ones; no `d x d` matrix is formed.
    fn vjp(&self, x: ArrayView2<'_, f32>, sigma: f32, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "vjp point")?;
        check_input(v, self.dim(), "vjp cotangent")?;
        if v.nrows() != x.nrows() {
            return Err(PriorError::Shape { what: "vjp cotangent rows", expected: x.nrows(), got: v.nrows() });
        }
        check_sigma(sigma)?;
        let s = sigma as f64;
        let noisy = self.comps.iter().map(|c| c.noisy(s)).collect::<Result<Vec<_>>>()?;
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0)).into_par_iter().zip(v.axis_iter(Axis(0)))).for_each(|(mut o, (xr, vr))| {
            let xv: Vec<f64> = xr.iter().map(|a| *a as f64).collect();
            let vv: Vec<f64> = vr.iter().map(|a| *a as f64).collect();
            let mut res = vec![0.0; xv.len()];
            self.vjp_row(&noisy, s, &xv, &vv, &mut res);
            for (a, b) in o.iter_mut().zip(res) {
                *a = b as f32;
            }
        });
        Ok(out)
    }
}

impl GaussianMixture {
    /// `J(x) v` for one row in f64 (see the `vjp` of the [`Denoiser`] impl).
    fn vjp_row(&self, noisy: &[crate::gaussian::Noisy], sigma: f64, x: &[f64], v: &[f64], out: &mut [f64]) {
        use crate::gaussian::Noisy;
        let d = x.len();
        let k = self.comps.len();
        let s2 = sigma * sigma;
        let mut logits = vec![0.0; k];
        let mut dens = vec![0.0; k * d];
        for c in 0..k {
            logits[c] = self.log_w[c] + self.comps[c].eval_noisy(&noisy[c], sigma, x, &mut dens[c * d..(c + 1) * d]);
        }
        let lse = log_sum_exp(&logits);
        let pi: Vec<f64> = logits.iter().map(|l| (l - lse).exp()).collect();
        let mut mean = vec![0.0; d];
        for c in 0..k {
            if pi[c] > 0.0 {
                for (m, dv) in mean.iter_mut().zip(&dens[c * d..(c + 1) * d]) {
                    *m += pi[c] * dv;
                }
            }
        }
        out.iter_mut().for_each(|o| *o = 0.0);
        let mut z = vec![0.0; d];
        for c in 0..k {
            if pi[c] <= 0.0 {
                continue;
            }
            // Within-component part: pi_c (v - sigma^2 (Sigma_c + sigma^2 I)^{-1} v).
            match &noisy[c] {
                Noisy::Diagonal { var, .. } => {
                    for i in 0..d {
                        z[i] = v[i] / var[i];
                    }
                }
                Noisy::Full { chol, .. } => {
                    z.copy_from_slice(v);
                    crate::linalg::solve_lower_in_place(chol.view(), &mut z);
                    crate::linalg::solve_upper_t_in_place(chol.view(), &mut z);
                }
            }
            // Between-component part: pi_c (m_c - D) <m_c - D, v> / sigma^2.
            let mc = &dens[c * d..(c + 1) * d];
            let proj: f64 = (0..d).map(|i| (mc[i] - mean[i]) * v[i]).sum::<f64>() / s2;
            for i in 0..d {
                out[i] += pi[c] * (v[i] - s2 * z[i] + (mc[i] - mean[i]) * proj);
            }
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};
    use proptest::prelude::*;

    fn mixture(d: usize) -> GaussianMixture {
        let c1 = Gaussian::isotropic(Array1::from_shape_fn(d, |i| if i % 2 == 0 { -2.0 } else { 1.0 }), 0.5).unwrap();
        let c2 = Gaussian::diagonal(Array1::from_shape_fn(d, |i| 1.5 - 0.3 * i as f64), Array1::from_shape_fn(d, |i| 0.2 + 0.1 * i as f64)).unwrap();
        // A full covariance with off-diagonal coupling.
        let mut cov = Array2::<f64>::eye(d) * 0.8;
        for i in 0..d - 1 {
            cov[[i, i + 1]] = 0.3;
            cov[[i + 1, i]] = 0.3;
        }
        let c3 = Gaussian::full(Array1::from_shape_fn(d, |i| 0.5 * i as f64), cov).unwrap();
        GaussianMixture::new(&[0.3, 0.5, 0.2], vec![c1, c2, c3]).unwrap()
    }

    /// `D(x)` in f64 (the same code path as `denoise`, without the f32 round trip).
    fn denoise_f64(g: &GaussianMixture, x: &[f64], sigma: f64) -> Vec<f64> {
        let noisy: Vec<_> = g.comps.iter().map(|c| c.noisy(sigma).unwrap()).collect();
        let mut out = vec![0.0; x.len()];
        g.denoise_row(&noisy, sigma, x, &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// `J v` against central finite differences of `D` (f64, step `h = 1e-5 max(sigma, 1)`):
        /// `J^T v = sum_j v_j dD_j/dx` and `dD_j/dx_i ~ (D_j(x + h e_i) - D_j(x - h e_i)) / 2h`,
        /// truncation error O(h^2) and round-off ~1e-11 / h, so a 1e-6 relative tolerance.
        #[test]
        fn vjp_matches_finite_differences(
            x in proptest::collection::vec(-4.0f64..4.0, 3),
            v in proptest::collection::vec(-1.0f64..1.0, 3),
            sigma in 0.05f64..5.0,
        ) {
            let g = mixture(3);
            let noisy: Vec<_> = g.comps.iter().map(|c| c.noisy(sigma).unwrap()).collect();
            let mut jv = vec![0.0; 3];
            g.vjp_row(&noisy, sigma, &x, &v, &mut jv);
            let h = 1e-5 * sigma.max(1.0);
            let scale = jv.iter().fold(1.0f64, |m, a| m.max(a.abs()));
            for i in 0..3 {
                let mut xp = x.clone();
                xp[i] += h;
                let mut xm = x.clone();
                xm[i] -= h;
                let (dp, dm) = (denoise_f64(&g, &xp, sigma), denoise_f64(&g, &xm, sigma));
                let fd: f64 = (0..3).map(|j| v[j] * (dp[j] - dm[j]) / (2.0 * h)).sum();
                prop_assert!((fd - jv[i]).abs() <= 1e-6 * scale, "i {i}: fd {fd} vs vjp {}", jv[i]);
            }
        }
    }

    /// The public f32 path agrees with the f32 finite differences of `denoise` to 2e-2
    /// (h = 1e-2 in f32: round-off ~6e-8 / h plus O(h^2) truncation), and a one-component
    /// mixture reproduces the Gaussian denoiser's Jacobian.
    #[test]
    fn f32_vjp_and_single_component() {
        let g = mixture(4);
        let x = array![[0.3f32, -1.0, 2.0, 0.5], [-2.0, 1.0, 0.0, 3.0]];
        let v = array![[1.0f32, 0.5, -0.5, 0.2], [0.0, 1.0, 0.0, -1.0]];
        let sigma = 0.7f32;
        let jv = g.vjp(x.view(), sigma, v.view()).unwrap();
        let h = 1e-2f32;
        for r in 0..2 {
            for i in 0..4 {
                let mut xp = x.clone();
                xp[[r, i]] += h;
                let mut xm = x.clone();
                xm[[r, i]] -= h;
                let (dp, dm) = (g.denoise(xp.view(), sigma).unwrap(), g.denoise(xm.view(), sigma).unwrap());
                let fd: f32 = (0..4).map(|j| v[[r, j]] * (dp[[r, j]] - dm[[r, j]]) / (2.0 * h)).sum();
                approx::assert_abs_diff_eq!(fd, jv[[r, i]], epsilon = 2e-2);
            }
        }
        // One component: J = Sigma (Sigma + sigma^2 I)^{-1}, diagonal here: var / (var + sigma^2).
        let one = GaussianMixture::new(&[1.0], vec![Gaussian::diagonal(array![1.0, -1.0], array![2.0, 0.5]).unwrap()]).unwrap();
        let jv = one.vjp(array![[5.0f32, 3.0]].view(), 1.0, array![[1.0f32, 1.0]].view()).unwrap();
        approx::assert_abs_diff_eq!(jv[[0, 0]], 2.0 / 3.0, epsilon = 1e-6);
        approx::assert_abs_diff_eq!(jv[[0, 1]], 0.5 / 1.5, epsilon = 1e-6);
        assert!(g.vjp(x.view(), sigma, array![[1.0f32, 0.0, 0.0, 0.0]].view()).is_err());
    }
}
