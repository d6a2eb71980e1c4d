//! Gaussian priors with exact denoisers, and their conditioning on linear measurements.
//!
//! For `x_0 ~ N(mu, Sigma)` and `x = x_0 + sigma eps`, the noisy marginal is
//! `N(mu, Sigma + sigma^2 I)` and Tweedie's formula gives the exact denoiser
//!
//! `D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu) = x - sigma^2 z`,
//! with `z = (Sigma + sigma^2 I)^{-1} (x - mu)`,
//!
//! computed with a Cholesky factorisation of `Sigma + sigma^2 I` (full covariance) or
//! elementwise (diagonal). No covariance is ever inverted.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::denoiser::{check_input, check_sigma};
use crate::linalg::{cholesky, cholesky_logdet, check_symmetric, lower_mul, solve_lower_in_place, solve_upper_t_in_place};
use crate::rng::fill_normal_f64;
use crate::{Denoiser, PriorError, Result};

const LOG_2PI: f64 = 1.837_877_066_409_345_5;

/// A covariance matrix.
#[derive(Debug, Clone)]
pub enum Covariance {
    /// `diag(v)`, all `v_i > 0`.
    Diagonal(Array1<f64>),
    /// A dense symmetric positive definite matrix with its lower Cholesky factor.
    Full {
        /// The matrix.
        matrix: Array2<f64>,
        /// Its lower Cholesky factor.
        chol: Array2<f64>,
    },
}

impl Covariance {
    /// Dense copy of the matrix.
    pub fn to_dense(&self) -> Array2<f64> {
        match self {
            Covariance::Diagonal(v) => Array2::from_diag(v),
            Covariance::Full { matrix, .. } => matrix.clone(),
        }
    }
}

/// A multivariate normal `N(mean, cov)` in dimension `d`.
#[derive(Debug, Clone)]
pub struct Gaussian {
    mean: Array1<f64>,
    cov: Covariance,
}

/// `Sigma + sigma^2 I` factorised for one noise level.
#[derive(Debug, Clone)]
pub(crate) enum Noisy {
    Diagonal { var: Array1<f64>, logdet: f64 },
    Full { chol: Array2<f64>, logdet: f64 },
}

impl Gaussian {
    /// `N(mean, diag(var))`.
    pub fn diagonal(mean: Array1<f64>, var: Array1<f64>) -> Result<Self> {
        if mean.len() != var.len() {
            return Err(PriorError::Shape { what: "variance length", expected: mean.len(), got: var.len() });
        }
        if mean.iter().any(|v| !v.is_finite()) {
            return Err(PriorError::InvalidParameter { name: "mean", reason: "non-finite entry".into() });
        }
        if var.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(PriorError::InvalidParameter { name: "variance", reason: "entries must be finite and > 0".into() });
        }
        Ok(Self { mean, cov: Covariance::Diagonal(var) })
    }

    /// `N(mean, I)`.
    pub fn isotropic(mean: Array1<f64>, var: f64) -> Result<Self> {
        let d = mean.len();
        Self::diagonal(mean, Array1::from_elem(d, var))
    }

    /// `N(mean, cov)` with a dense symmetric positive definite covariance.
    pub fn full(mean: Array1<f64>, cov: Array2<f64>) -> Result<Self> {
        if cov.nrows() != mean.len() {
            return Err(PriorError::Shape { what: "covariance rows", expected: mean.len(), got: cov.nrows() });
        }
        if mean.iter().any(|v| !v.is_finite()) {
            return Err(PriorError::InvalidParameter { name: "mean", reason: "non-finite entry".into() });
        }
        check_symmetric(cov.view(), "covariance")?;
        let chol = cholesky(cov.view(), "covariance")?;
        Ok(Self { mean, cov: Covariance::Full { matrix: cov, chol } })
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }
    /// The mean.
    pub fn mean(&self) -> ArrayView1<'_, f64> {
        self.mean.view()
    }
    /// The covariance.
    pub fn covariance(&self) -> &Covariance {
        &self.cov
    }

    /// One draw `mu + L z`, `z ~ N(0, I)`, written to `out`.
    pub fn sample_into(&self, rng: &mut ChaCha8Rng, out: &mut [f64]) {
        let d = self.dim();
        let mut z = vec![0.0; d];
        fill_normal_f64(rng, &mut z);
        match &self.cov {
            Covariance::Diagonal(v) => {
                for (((o, m), vi), zi) in out.iter_mut().zip(&self.mean).zip(v).zip(&z).take(d) {
                    *o = m + vi.sqrt() * zi;
                }
            }
            Covariance::Full { chol, .. } => {
                lower_mul(chol.view(), &z, out);
                for (o, m) in out.iter_mut().zip(&self.mean).take(d) {
                    *o += m;
                }
            }
        }
    }

    /// `Sigma v`.
    pub fn cov_mul(&self, v: &[f64], out: &mut [f64]) {
        match &self.cov {
            Covariance::Diagonal(var) => {
                for i in 0..v.len() {
                    out[i] = var[i] * v[i];
                }
            }
            Covariance::Full { matrix, .. } => {
                let r = matrix.dot(&ArrayView1::from(v));
                out.copy_from_slice(r.as_slice().unwrap_or(&r.to_vec()));
            }
        }
    }

    pub(crate) fn noisy(&self, sigma: f64) -> Result<Noisy> {
        let s2 = sigma * sigma;
        match &self.cov {
            Covariance::Diagonal(v) => {
                let var = v.mapv(|x| x + s2);
                let logdet = var.iter().map(|x| x.ln()).sum();
                Ok(Noisy::Diagonal { var, logdet })
            }
            Covariance::Full { matrix, .. } => {
                let mut m = matrix.clone();
                for i in 0..m.nrows() {
                    m[[i, i]] += s2;
                }
                let chol = cholesky(m.view(), "Sigma + sigma^2 I")?;
                let logdet = cholesky_logdet(chol.view());
                Ok(Noisy::Full { chol, logdet })
            }
        }
    }

    /// For one row `x`: the log density of `N(x; mu, Sigma + sigma^2 I)` and, in `den`, the
    /// exact denoiser `x - sigma^2 (Sigma + sigma^2 I)^{-1} (x - mu)`.
    pub(crate) fn eval_noisy(&self, noisy: &Noisy, sigma: f64, x: &[f64], den: &mut [f64]) -> f64 {
        let d = x.len();
        let s2 = sigma * sigma;
        for i in 0..d {
            den[i] = x[i] - self.mean[i];
        }
        match noisy {
            Noisy::Diagonal { var, logdet } => {
                let mut q = 0.0;
                for i in 0..d {
                    let r = den[i];
                    let z = r / var[i];
                    q += r * z;
                    den[i] = x[i] - s2 * z;
                }
                -0.5 * (q + logdet + d as f64 * LOG_2PI)
            }
            Noisy::Full { chol, logdet } => {
                // z = (L L^T)^{-1} r; r^T z = |L^{-1} r|^2.
                solve_lower_in_place(chol.view(), den);
                let q: f64 = den.iter().map(|v| v * v).sum();
                solve_upper_t_in_place(chol.view(), den);
                for i in 0..d {
                    den[i] = x[i] - s2 * den[i];
                }
                -0.5 * (q + logdet + d as f64 * LOG_2PI)
            }
        }
    }

    /// Log density `log N(x; mu, Sigma)`.
    pub fn log_density(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        if x.len() != self.dim() {
            return Err(PriorError::Shape { what: "point", expected: self.dim(), got: x.len() });
        }
        let noisy = match &self.cov {
            Covariance::Diagonal(v) => Noisy::Diagonal { var: v.clone(), logdet: v.iter().map(|x| x.ln()).sum() },
            Covariance::Full { chol, .. } => Noisy::Full { chol: chol.clone(), logdet: cholesky_logdet(chol.view()) },
        };
        let mut tmp = vec![0.0; self.dim()];
        Ok(self.eval_noisy(&noisy, 0.0, &x.to_vec(), &mut tmp))
    }
}

/// A Gaussian prior `N(mu, Sigma)` as a [`Denoiser`] with the exact closed form.
#[derive(Debug, Clone)]
pub struct GaussianPrior {
    g: Gaussian,
}

impl GaussianPrior {
    /// Wrap a Gaussian.
    pub fn new(g: Gaussian) -> Self {
        Self { g }
    }
    /// The Gaussian.
    pub fn gaussian(&self) -> &Gaussian {
        &self.g
    }
    /// `n` independent draws, row `i` from stream `(seed, SAMPLE, 0, i)`.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        sample_rows(n, self.g.dim(), seed, |rng, out| self.g.sample_into(rng, out))
    }
}

impl Denoiser for GaussianPrior {
    fn dim(&self) -> usize {
        self.g.dim()
    }
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "denoiser input")?;
        check_sigma(sigma)?;
        let s = sigma as f64;
        let noisy = self.g.noisy(s)?;
        let d = self.dim();
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0))).for_each(|(mut o, xr)| {
            let xv: Vec<f64> = xr.iter().map(|v| *v as f64).collect();
            let mut den = vec![0.0; d];
            self.g.eval_noisy(&noisy, s, &xv, &mut den);
            for (a, b) in o.iter_mut().zip(den) {
                *a = b as f32;
            }
        });
        Ok(out)
    }
    /// `dD/dx = Sigma (Sigma + sigma^2 I)^{-1} = I - sigma^2 (Sigma + sigma^2 I)^{-1}` is
    /// symmetric, so the vjp is `v - sigma^2 (Sigma + sigma^2 I)^{-1} v`.
    fn vjp(&self, x: ArrayView2<'_, f32>, sigma: f32, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "vjp point")?;
        check_input(v, self.dim(), "vjp cotangent")?;
        if v.nrows() != x.nrows() {
            return Err(PriorError::Shape { what: "vjp cotangent rows", expected: x.nrows(), got: v.nrows() });
        }
        check_sigma(sigma)?;
        let s = sigma as f64;
        let noisy = self.g.noisy(s)?;
        let d = self.dim();
        // With mean zero, eval_noisy(v) returns v - sigma^2 (Sigma + sigma^2 I)^{-1} v.
        let zero_mean = Gaussian { mean: Array1::zeros(d), cov: self.g.cov.clone() };
        let mut out = Array2::<f32>::zeros(v.raw_dim());
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(v.axis_iter(Axis(0))).for_each(|(mut o, vr)| {
            let vv: Vec<f64> = vr.iter().map(|a| *a as f64).collect();
            let mut r = vec![0.0; d];
            zero_mean.eval_noisy(&noisy, s, &vv, &mut r);
            for (a, b) in o.iter_mut().zip(r) {
                *a = b as f32;
            }
        });
        Ok(out)
    }
}

/// `n` rows of dimension `d`, row `i` filled by `f` with the stream `(seed, SAMPLE, 0, i)`.
pub(crate) fn sample_rows<F>(n: usize, d: usize, seed: u64, f: F) -> Array2<f32>
where
    F: Fn(&mut ChaCha8Rng, &mut [f64]) + Sync,
{
    let mut out = Array2::<f32>::zeros((n, d));
    out.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(i, mut row)| {
        let mut rng = crate::rng::stream(seed, crate::rng::tags::SAMPLE, 0, i as u64);
        let mut buf = vec![0.0; d];
        f(&mut rng, &mut buf);
        for (a, b) in row.iter_mut().zip(buf) {
            *a = b as f32;
        }
    });
    out
}

/// The Gaussian `N(mu, Sigma)` conditioned on `y = A x + sigma_y n`, `n ~ N(0, I)`:
///
/// `S = A Sigma A^T + sigma_y^2 I`, `K = Sigma A^T S^{-1}`,
/// `mu' = mu + K (y - A mu)`, `Sigma' = Sigma - K A Sigma`,
/// and the evidence `p(y) = N(y; A mu, S)`.
///
/// Draws use Matheron's rule (exact, no `d x d` factorisation):
/// `x' = x + Sigma A^T S^{-1} (y - A x - e)` with `x ~ N(mu, Sigma)`, `e ~ N(0, sigma_y^2 I)`.
#[derive(Debug, Clone)]
pub struct GaussianPosterior {
    prior: Gaussian,
    a: Array2<f64>,
    y: Array1<f64>,
    sigma_y: f64,
    /// `Sigma A^T`, `(d, m)`.
    sat: Array2<f64>,
    /// Cholesky factor of `S`.
    s_chol: Array2<f64>,
    mean: Array1<f64>,
    log_evidence: f64,
}

impl GaussianPosterior {
    /// Condition `prior` on `y = A x + sigma_y n`.
    pub fn new(prior: &Gaussian, a: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>, sigma_y: f64) -> Result<Self> {
        let d = prior.dim();
        if a.ncols() != d {
            return Err(PriorError::Shape { what: "A columns", expected: d, got: a.ncols() });
        }
        if a.nrows() != y.len() {
            return Err(PriorError::Shape { what: "measurement length", expected: a.nrows(), got: y.len() });
        }
        if !(sigma_y >= 0.0 && sigma_y.is_finite()) {
            return Err(PriorError::InvalidParameter { name: "sigma_y", reason: format!("must be finite and >= 0, got {sigma_y}") });
        }
        let m = a.nrows();
        let mut sat = Array2::<f64>::zeros((d, m));
        let mut col = vec![0.0; d];
        for j in 0..m {
            let arow = a.row(j).to_vec();
            prior.cov_mul(&arow, &mut col);
            sat.column_mut(j).assign(&ArrayView1::from(&col[..]));
        }
        let mut s = a.dot(&sat);
        // Symmetrise against round-off before factorising.
        let st = s.t().to_owned();
        s = (&s + &st) * 0.5;
        for i in 0..m {
            s[[i, i]] += sigma_y * sigma_y;
        }
        let s_chol = cholesky(s.view(), "A Sigma A^T + sigma_y^2 I")?;
        let resid = &y - &a.dot(&prior.mean);
        let w = crate::linalg::cholesky_solve(s_chol.view(), resid.view());
        let mean = &prior.mean + &sat.dot(&w);
        let q = resid.dot(&w);
        let log_evidence = -0.5 * (q + cholesky_logdet(s_chol.view()) + m as f64 * LOG_2PI);
        Ok(Self { prior: prior.clone(), a: a.to_owned(), y: y.to_owned(), sigma_y, sat, s_chol, mean, log_evidence })
    }

    /// Posterior mean `mu'`.
    pub fn mean(&self) -> ArrayView1<'_, f64> {
        self.mean.view()
    }
    /// `log N(y; A mu, S)`.
    pub fn log_evidence(&self) -> f64 {
        self.log_evidence
    }
    /// Dense posterior covariance `Sigma - Sigma A^T S^{-1} A Sigma` (`d x d`; for tests and
    /// small problems).
    pub fn covariance(&self) -> Array2<f64> {
        let d = self.prior.dim();
        let mut out = self.prior.covariance().to_dense();
        // Sigma A^T S^{-1} A Sigma = (L^{-1} A Sigma)^T (L^{-1} A Sigma).
        let mut b = self.sat.t().to_owned(); // (m, d) = A Sigma
        for k in 0..d {
            let mut c = b.column(k).to_vec();
            solve_lower_in_place(self.s_chol.view(), &mut c);
            b.column_mut(k).assign(&ArrayView1::from(&c[..]));
        }
        out -= &b.t().dot(&b);
        out
    }
    /// One exact draw by Matheron's rule, written to `out`.
    pub fn sample_into(&self, rng: &mut ChaCha8Rng, out: &mut [f64]) {
        self.prior.sample_into(rng, out);
        let m = self.y.len();
        let mut e = vec![0.0; m];
        fill_normal_f64(rng, &mut e);
        let x = ArrayView1::from(&*out);
        let ax = self.a.dot(&x);
        let r: Array1<f64> = (0..m).map(|j| self.y[j] - ax[j] - self.sigma_y * e[j]).collect();
        let w = crate::linalg::cholesky_solve(self.s_chol.view(), r.view());
        let dx = self.sat.dot(&w);
        for (o, v) in out.iter_mut().zip(dx.iter()) {
            *o += v;
        }
    }
    /// `n` exact draws.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        sample_rows(n, self.prior.dim(), seed, |rng, out| self.sample_into(rng, out))
    }
}
