//! Building blocks shared by the gradient-based solvers (DPS, MCG, PiGDM, RED-diff, MO, TDS):
//! seeded noise, the gradient of the data term through the denoiser, the observation of an
//! isotropic Gaussian likelihood, and batched conjugate gradients on `r^2 A A^T + s^2 I`.

use diffinv_priors::rng::tags as prior_tags;
use diffinv_priors::sampler::euler_step;
use ndarray::{Array1, Array2, ArrayView2, Zip};

use crate::kernels::{check_finite, normal_rows, row_norms, sde_drift};
use crate::mo::{refine, MoConfig};
use crate::cg::{conjugate_gradient, CgOptions};
use crate::problem::Evaluator;
use crate::Result;

/// Purpose tags of the draws made by the gradient-based solvers (disjoint from
/// `diffinv_priors::rng::tags`, which end at 8).
pub mod tags {
    /// Noise of the SGLD inner loop of MO.
    pub const SGLD: u64 = 0x6d6f_0001;
    /// Re-noising of the MO projection.
    pub const MO_RENOISE: u64 = 0x6d6f_0002;
    /// The `eps` of a RED-diff iteration.
    pub const REDDIFF: u64 = 0x7264_0001;
    /// The noisy measurement `y_t` of MCG.
    pub const MCG_MEASUREMENT: u64 = 0x6d63_0001;
    /// Resampling uniforms of the SMC sampler.
    pub const RESAMPLE: u64 = 0x736d_0001;
}






/// The data term through the denoiser at every row of `x`:
/// `x0 = D(x; sigma)`, `r = dL/dy (G(x0))`, and, if asked, the chain
/// `grad_x L(G(D(x))) = (dD/dx)^T (dG/dx0)^T r` (one forward-model vjp and one denoiser vjp),
/// or, with `normalise`, the same chain applied to `r / ||r||` per row.
///
/// For the Gaussian likelihood `r = (G(x0) - y) / sigma_y^2`, so the normalised chain is
/// `grad_x ||y - G(D(x))||` exactly, whatever `sigma_y` (the DPS direction).
#[derive(Debug, Clone)]
pub struct DataGradient {
    /// `D(x; sigma)`.
    pub x0: Array2<f32>,
    /// Negative log-likelihood of `G(x0)`, per row.
    pub nll: Array1<f32>,
    /// The chain rule gradient (or the normalised direction), `(N, d)`.
    pub grad: Array2<f32>,
}

impl DataGradient {
    /// Mean negative log-likelihood.
    pub fn misfit(&self) -> f64 {
        self.nll.iter().map(|v| *v as f64).sum::<f64>() / self.nll.len().max(1) as f64
    }
}


/// Compute [`DataGradient`] at `x` and `sigma` (see there).
pub fn data_gradient(
    eval: &Evaluator<'_>,
    x: ArrayView2<'_, f32>,
    sigma: f64,
    normalise: bool,
    step: usize,
) -> Result<DataGradient> {
    let x0 = eval.denoise(x, sigma, step)?;
    let y = eval.forward(x0.view(), step)?;
    let mut r = eval.likelihood_grad(y.view(), step)?;
    let nll = eval.nll(y.view(), step)?;
    if normalise {
        let norms = row_norms(r.view());
        Zip::from(r.rows_mut()).and(&norms).for_each(|mut row, &n| {
            let s = if n > 0.0 && n.is_finite() {
                (1.0 / n) as f32
            } else {
                0.0
            };
            row.mapv_inplace(|v| v * s);
        });
    }
    let u = eval.forward_vjp(x0.view(), r.view(), step)?;
    let grad = eval.denoise_vjp(x, sigma, u.view(), step)?;
    check_finite(grad.view(), step)?;
    Ok(DataGradient { x0, nll, grad })
}

/// The observation `y` and inverse variance `1/s^2` of an isotropic Gaussian likelihood
/// `L(u) = ||u - y||^2 / (2 s^2)`, taken from the likelihood's
/// [`as_gaussian`](diffinv_operators::Likelihood::as_gaussian) capability once per run (in the
/// solvers' `prepare`).
///
/// `diffinv_operators::GaussianLikelihood` with `sigma_y = 0` reads as `s = 1` (its own
/// convention for noiseless data).
#[derive(Debug, Clone)]
pub struct GaussianData {
    /// The observation `y`.
    pub y: Array1<f32>,
    /// `1 / s^2`.
    pub inv_var: f64,
}

impl GaussianData {
    /// The observation and noise level of the problem's isotropic Gaussian likelihood
    /// ([`Capability::GaussianLikelihood`](crate::Capability)), or a
    /// [`SolverError::Problem`] naming `method`.
    pub fn probe(eval: &Evaluator<'_>, method: &str) -> Result<Self> {
        let g = eval.problem().require_gaussian(method)?;
        Ok(Self {
            y: g.observation().to_owned(),
            inv_var: g.inv_var() as f64,
        })
    }
    /// The noise standard deviation `s`.
    pub fn sigma_y(&self) -> f64 {
        (1.0 / self.inv_var).sqrt()
    }
}



/// Solve `(r2 A A^T + s2 I) z = b` for every row of `b` `(N, m)` by conjugate gradients
/// ([`crate::cg::conjugate_gradient`], from `z = 0`), with `A` applied only through the counted
/// `forward` and `adjoint` of a linear problem (each iteration costs one of each per row).
/// Returns `z` and the largest number of iterations any row ran. The iteration cap returns the
/// last iterate (CG decreases the error in the `M`-norm monotonically, so it is the best
/// estimate so far); a semi-definite `M` (e.g. `A A^T` of an inpainting mask) stops a row at
/// breakdown.
pub fn cg_solve(
    eval: &Evaluator<'_>,
    b: ArrayView2<'_, f32>,
    r2: f64,
    s2: f64,
    opts: &CgOptions,
    step: usize,
) -> Result<(Array2<f32>, usize)> {
    let apply = |v: ArrayView2<'_, f32>| -> Result<Array2<f32>> {
        let at = eval.adjoint(v, step)?;
        let aat = eval.forward(at.view(), step)?;
        let mut out = aat * (r2 as f32);
        out.scaled_add(s2 as f32, &v);
        Ok(out)
    };
    let x0 = Array2::<f32>::zeros(b.raw_dim());
    let sol = conjugate_gradient(apply, b, x0.view(), opts).map_err(|e| e.at_step(step))?;
    check_finite(sol.x.view(), step)?;
    let it = sol.iterations.iter().copied().max().unwrap_or(0);
    Ok((sol.x, it))
}

/// The DDPM-to-VE factor `sqrt((1 + sigma^2)(1 + sigma_next^2))`, or 1.
pub(crate) fn ddpm_factor(enabled: bool, sigma: f64, sigma_next: f64) -> f64 {
    if enabled {
        ((1.0 + sigma * sigma) * (1.0 + sigma_next * sigma_next)).sqrt()
    } else {
        1.0
    }
}

/// DPS-MO's MO plug-in for one [`dps_update`]: its configuration, the Gaussian data, the host
/// schedule's `sigma_min` (the default floor of the projection level) and whether DPS's own
/// gradient step is kept besides the MO step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoStep<'a> {
    pub cfg: &'a MoConfig,
    pub data: &'a GaussianData,
    pub sigma_min: f64,
    pub dps_step: bool,
}

/// One DPS step from `x` at `sigma` to `sigma_next` (see the module docs); returns the next
/// state and the mean misfit of the clean estimates. Shared with MCG.
///
/// With MO: `x0 = D(x; sigma)`, `x0' = refine(x0)`, the Euler step of the PF-ODE with `x0'`,
/// and, only with `dps_step`, DPS's gradient step (which needs the denoiser's vjp).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dps_update(
    eval: &Evaluator<'_>,
    x: &Array2<f32>,
    sigma: f64,
    sigma_next: f64,
    zeta: f64,
    ddpm_scaling: bool,
    mo: Option<MoStep<'_>>,
    seed: u64,
    step: usize,
) -> Result<(Array2<f32>, f64)> {
    if let Some(m) = mo.filter(|m| !m.dps_step) {
        let x0 = eval.denoise(x.view(), sigma, step)?;
        let level = m.cfg.level(sigma, sigma_next, m.sigma_min);
        let (x0, misfit) = refine(eval, m.data, x0.view(), level, m.cfg, seed, step)?;
        let next = euler_step(x.view(), x0.view(), sigma, sigma_next);
        check_finite(next.view(), step)?;
        return Ok((next, misfit));
    }
    let dg = data_gradient(eval, x.view(), sigma, true, step)?;
    let mut next = match mo {
        Some(m) => {
            let level = m.cfg.level(sigma, sigma_next, m.sigma_min);
            let (x0, _) = refine(eval, m.data, dg.x0.view(), level, m.cfg, seed, step)?;
            euler_step(x.view(), x0.view(), sigma, sigma_next)
        }
        None => {
            let mut next = x.clone();
            sde_drift(&mut next, dg.x0.view(), sigma, sigma_next);
            if sigma_next > 0.0 {
                let f = sigma * sigma - sigma_next * sigma_next;
                let z = normal_rows(x.nrows(), x.ncols(), seed, prior_tags::SDE, step as u64, 0);
                next.scaled_add(f.sqrt() as f32, &z);
            }
            next
        }
    };
    let h = zeta * ddpm_factor(ddpm_scaling, sigma, sigma_next);
    next.scaled_add(-(h as f32), &dg.grad);
    check_finite(next.view(), step)?;
    Ok((next, dg.misfit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Problem;
    use approx::assert_abs_diff_eq;
    use diffinv_operators::{GaussianLikelihood, MatrixOperator};
    use diffinv_priors::{Gaussian, GaussianPrior};
    use ndarray::array;

    #[test]
    fn probe_reads_the_gaussian_likelihood_and_cg_solves() {
        let prior = GaussianPrior::new(Gaussian::isotropic(array![0.0, 0.0, 0.0], 1.0).unwrap());
        let a = array![[1.0f32, 0.5, 0.0], [0.0, 1.0, -1.0]];
        let op = MatrixOperator::new(a.clone()).unwrap();
        let lik = GaussianLikelihood::new(array![0.7f32, -1.2], 0.25).unwrap();
        let problem = Problem::new(&prior, &op, &lik).unwrap();
        let eval = Evaluator::new(problem);
        let data = GaussianData::probe(&eval, "test").unwrap();
        assert_abs_diff_eq!(data.sigma_y(), 0.25, epsilon = 1e-5);
        assert_abs_diff_eq!(data.y[1], -1.2, epsilon = 1e-5);
        // (r2 A A^T + s2 I) z = b against a dense solve.
        let b = array![[1.0f32, 2.0], [-0.5, 0.25]];
        let (z, _) = cg_solve(
            &eval,
            b.view(),
            0.7,
            0.1,
            &CgOptions {
                tol: 1e-7,
                max_iters: 10,
            },
            0,
        )
        .unwrap();
        let aat = a.dot(&a.t()) * 0.7 + Array2::<f32>::eye(2) * 0.1;
        let back = z.dot(&aat.t());
        for (u, v) in back.iter().zip(b.iter()) {
            assert_abs_diff_eq!(u, v, epsilon = 1e-5);
        }
    }
}

/// Shared fixtures of the solver tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use diffinv_operators::{GaussianLikelihood, MatrixOperator};
    use diffinv_priors::{Gaussian, GaussianPosterior, GaussianPrior};
    use ndarray::{array, Array1, Array2, Axis};

    use crate::Problem;

    /// Prior `N(0, I_3)`, `y = A x + 0.3 n` with two measurements, and the exact posterior.
    pub(crate) struct LinearGaussian {
        pub prior: GaussianPrior,
        pub op: MatrixOperator,
        pub lik: GaussianLikelihood,
        pub post_mean: Array1<f64>,
        pub post_cov: Array2<f64>,
    }

    pub(crate) fn linear_gaussian() -> LinearGaussian {
        let g = Gaussian::isotropic(array![0.0, 0.0, 0.0], 1.0).unwrap();
        let a = array![[1.0, 0.5, 0.0], [0.0, 1.0, -1.0]];
        let y = array![1.2, -0.8];
        let post = GaussianPosterior::new(&g, a.view(), y.view(), 0.3).unwrap();
        LinearGaussian {
            prior: GaussianPrior::new(g),
            op: MatrixOperator::new(a.mapv(|v| v as f32)).unwrap(),
            lik: GaussianLikelihood::new(y.mapv(|v| v as f32), 0.3).unwrap(),
            post_mean: post.mean().to_owned(),
            post_cov: post.covariance(),
        }
    }

    impl LinearGaussian {
        pub(crate) fn problem(&self) -> Problem<'_> {
            Problem::new(&self.prior, &self.op, &self.lik).unwrap()
        }
        /// RMS error of `mean` against the exact posterior mean.
        pub(crate) fn mean_error(&self, mean: &Array1<f64>) -> f64 {
            ((mean - &self.post_mean).mapv(|v| v * v).sum() / mean.len() as f64).sqrt()
        }
        /// The same error for the prior mean (zero).
        pub(crate) fn prior_mean_error(&self) -> f64 {
            self.mean_error(&Array1::zeros(self.post_mean.len()))
        }
        /// Exact posterior marginal variances.
        pub(crate) fn post_var(&self) -> Array1<f64> {
            self.post_cov.diag().to_owned()
        }
    }

    /// Sample mean and per-coordinate variance (f64).
    pub(crate) fn moments(x: &Array2<f32>) -> (Array1<f64>, Array1<f64>) {
        let x = x.mapv(|v| v as f64);
        let mean = x.mean_axis(Axis(0)).unwrap();
        let var = x.var_axis(Axis(0), 1.0);
        (mean, var)
    }
}
