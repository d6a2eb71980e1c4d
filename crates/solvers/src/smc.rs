//! An asymptotically exact sequential Monte Carlo sampler: the Twisted Diffusion Sampler (TDS;
//! Wu, Trippe, Naesseth, Blei & Cunningham, NeurIPS 2023, Algorithm 1).
//!
//! Why TDS rather than MCGdiff (Cardoso et al. 2024): TDS needs only the likelihood, the
//! forward model's vjp and the denoiser's vjp, so it serves any differentiable problem
//! (MCGdiff needs a linear-Gaussian measurement and the SVD of `A`); both are exact as the
//! particle count grows.
//!
//! Twist tempering: with a sharp likelihood the plain twist over-steers at high noise (the
//! twisted drift moves the clean estimate by about `f / sigma_y^2` times the residual, more
//! than the residual itself, and the particles oscillate away). For an isotropic Gaussian
//! likelihood the twist therefore uses the PiGDM variance, `N(y; G(D(x)), (sigma_y^2 + r_i^2) I)`
//! with `r_i^2 = sigma_i^2 c / (sigma_i^2 + c)` (`c = data_variance`), i.e. `log p~_i =
//! -kappa_i L` with `kappa_i = sigma_y^2 / (sigma_y^2 + r_i^2)`; the last twist is the exact
//! likelihood (`kappa = 1`). Any twist leaves the sampler exact: it changes only the variance
//! of the weights.
//!
//! The model is the discretised reverse SDE of the prior in the EDM/VE convention,
//! `p(x_{i+1} | x_i) = N(x_i + f_i s_i(x_i), f_i I)`, `s_i = (D(x; sigma_i) - x) / sigma_i^2`,
//! `f_i = sigma_i^2 - sigma_{i+1}^2`, started from `N(0, sigma_max^2 I)`. The twisting
//! functions are the DPS-like likelihoods of the clean estimate,
//! `log p~_i(y | x) = -L(G(D(x; sigma_i)))`, with gradient `t_i = -(dD/dx)^T (dG/dx0)^T dL/dy`.
//! The proposal is the twisted transition `q(x_{i+1} | x_i) = N(x_i + f_i (s_i + t_i), f_i I)`
//! and the incremental weight
//!
//! `w_{i+1} = p(x_{i+1} | x_i) p~_{i+1}(y | x_{i+1}) / (q(x_{i+1} | x_i) p~_i(y | x_i))`,
//!
//! with `log p - log q = -(sqrt(f) <z, t> + f ||t||^2 / 2)` for the proposal noise `z`. The
//! weights are resampled (systematic resampling) when the effective sample size falls below
//! `ess_threshold N`, and always on the last step. The last level is `sigma_min`: there the
//! twist is the true likelihood of the returned clean estimate, so the weighted particles
//! target `p(x_{sigma_min}) p(y | D(x; sigma_min))`, and the output `D(x; sigma_min)`
//! converges to the model's posterior as `N` grows (exact up to the time discretisation and
//! `sigma_min`).
//!
//! State rows are `[x | c]` with the carried log weight
//! `c = W + log p/q - log p~_i(x_i)` (`W` the accumulated log weight since the last
//! resampling), so a saved state resumes exactly. Cost per step: one denoiser evaluation,
//! one forward evaluation, one forward vjp and one denoiser vjp per particle.

use diffinv_priors::rng::{stream, tags as prior_tags};
use diffinv_priors::sampler::initial_noise;
use diffinv_priors::EdmSchedule;
use ndarray::{Array1, Array2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::kernels::check_common;
use crate::guidance::{data_gradient, tags, GaussianData};
use crate::kernels::{check_finite, normal_rows, row_dots};
use crate::problem::{Capability, Evaluator};
use crate::solver::{Solver, StepInfo};
use crate::{Result, SolverError};

/// Hyperparameters of [`Smc`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmcConfig {
    /// Number of particles `N` (also the number of samples returned).
    pub num_particles: usize,
    /// Number of noise levels (default 100).
    pub num_steps: usize,
    /// Resample when `ESS < ess_threshold N` (default 0.5, as in TDS).
    pub ess_threshold: f64,
    /// Data variance `c` of the tempered twist (default 1; see the module docs).
    pub data_variance: f64,
    /// Noise schedule.
    pub schedule: EdmSchedule,
}

impl Default for SmcConfig {
    fn default() -> Self {
        Self {
            num_particles: 256,
            num_steps: 100,
            ess_threshold: 0.5,
            data_variance: 1.0,
            schedule: EdmSchedule::default(),
        }
    }
}

/// The TDS sampler.
#[derive(Debug, Clone)]
pub struct Smc {
    cfg: SmcConfig,
    sigmas: Vec<f64>,
}

impl Smc {
    /// Build the sampler, validating the configuration.
    pub fn new(cfg: SmcConfig) -> Result<Self> {
        let sigmas = check_common("SMC", cfg.num_particles, cfg.num_steps, &cfg.schedule)?;
        if !(0.0..=1.0).contains(&cfg.ess_threshold) {
            return Err(SolverError::Config(format!(
                "ess_threshold must be in [0, 1], got {}",
                cfg.ess_threshold
            )));
        }
        if !(cfg.data_variance.is_finite() && cfg.data_variance > 0.0) {
            return Err(SolverError::Config(format!(
                "data_variance must be finite and > 0, got {}",
                cfg.data_variance
            )));
        }
        Ok(Self { cfg, sigmas })
    }
}

/// Systematic resampling: ancestor indices for normalised weights `w` and one uniform `u`.
pub fn systematic_resample(w: &[f64], u: f64) -> Vec<usize> {
    let n = w.len();
    let mut out = Vec::with_capacity(n);
    let mut cum = 0.0;
    let mut j = 0;
    for k in 0..n {
        let target = (k as f64 + u) / n as f64;
        while j + 1 < n && cum + w[j] < target {
            cum += w[j];
            j += 1;
        }
        out.push(j);
    }
    out
}

/// Normalised weights and effective sample size of log weights.
fn normalise(lw: &Array1<f64>) -> (Vec<f64>, f64) {
    let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lw.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|v| v / s).collect();
    let ess = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
    (w, ess)
}

fn gather(x: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    x.select(Axis(0), idx)
}

/// The state of [`Smc`]: the particles and their carried log-weights (the incremental weights
/// not yet consumed by a resampling), stored in single precision as they always were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmcState {
    /// Particles, `(N, d)`.
    pub x: Array2<f32>,
    /// Carried log-weights, `(N,)`.
    pub log_weights: Array1<f32>,
    /// Index of the next step.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

crate::solver::impl_solver_state!(SmcState);

impl Solver for Smc {
    type Config = SmcConfig;
    type State = SmcState;
    /// The noise variance of a Gaussian likelihood (the twist's damping), if it is one.
    type Prepared = Option<GaussianData>;

    fn config(&self) -> &SmcConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        format!("SMC (N={})", self.cfg.num_particles)
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Gradient]
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        Ok(GaussianData::probe(eval, "SMC").ok())
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<SmcState> {
        let x = initial_noise(
            self.cfg.num_particles,
            eval.problem().dim(),
            self.cfg.schedule.sigma_max,
            seed,
        );
        Ok(SmcState {
            x,
            log_weights: Array1::zeros(self.cfg.num_particles),
            step: 0,
            seed,
        })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &Self::Prepared,
        state: &mut SmcState,
    ) -> Result<StepInfo> {
        let i = state.step;
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        let d = eval.problem().dim();
        let n = state.x.nrows();
        let x = state.x.clone();
        let carry: Array1<f64> = state.log_weights.mapv(|v| v as f64);
        // Twist at the current particles: log p~_i = -L(G(D(x))), gradient -J^T dL/dy.
        let last = sigma_next <= 0.0;
        let kappa = match (last, prep) {
            (false, Some(data)) => {
                let c = self.cfg.data_variance;
                let r2 = sigma * sigma * c / (sigma * sigma + c);
                let s2 = 1.0 / data.inv_var;
                s2 / (s2 + r2)
            }
            _ => 1.0,
        };
        let mut dg = data_gradient(eval, x.view(), sigma, false, i)?;
        dg.grad.mapv_inplace(|v| v * kappa as f32);
        let ell: Array1<f64> = dg.nll.mapv(|v| -kappa * v as f64);
        let lw = &carry + &ell;
        let (w, ess) = normalise(&lw);
        let resample = last || ess < self.cfg.ess_threshold * n as f64;
        let (x, x0, grad, ell, acc) = if resample {
            let u: f64 = stream(state.seed, tags::RESAMPLE, i as u64, 0).random();
            let idx = systematic_resample(&w, u);
            (
                gather(&x, &idx),
                gather(&dg.x0, &idx),
                gather(&dg.grad, &idx),
                ell.select(Axis(0), &idx),
                Array1::<f64>::zeros(n),
            )
        } else {
            (x, dg.x0, dg.grad, ell, lw)
        };
        let misfit = Some(dg.nll.iter().map(|v| *v as f64).sum::<f64>() / n as f64);
        if last {
            // Output the clean estimates of the resampled particles.
            state.x = x0;
            state.log_weights = Array1::zeros(n);
            state.step += 1;
            return Ok(StepInfo {
                step: i,
                sigma,
                guided: true,
                misfit,
            });
        }
        // Twisted proposal: x' = x + f (s + t) + sqrt(f) z, with t = -grad.
        let f = sigma * sigma - sigma_next * sigma_next;
        let z = normal_rows(n, d, state.seed, prior_tags::SDE, i as u64, 0);
        let mut next = x.clone();
        crate::kernels::sde_drift(&mut next, x0.view(), sigma, sigma_next);
        next.scaled_add(-(f as f32), &grad);
        next.scaled_add(f.sqrt() as f32, &z);
        check_finite(next.view(), i)?;
        // log p - log q = -(sqrt(f) <z, t> + f ||t||^2 / 2), t = -grad.
        let zt = row_dots(z.view(), grad.view()).mapv(|v| -v);
        let tt = row_dots(grad.view(), grad.view());
        let log_pq = zt.mapv(|v| -f.sqrt() * v) - tt.mapv(|v| 0.5 * f * v);
        let new_carry = &acc + &log_pq - &ell;
        let c = new_carry.mapv(|v| v as f32);
        if let Some(p) = c.iter().position(|v| !v.is_finite()) {
            return Err(SolverError::NonFiniteState {
                particle: p,
                step: i,
            });
        }
        state.x = next;
        state.log_weights = c;
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma,
            guided: true,
            misfit,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guidance::testing::{linear_gaussian, moments};
    use crate::{Problem, Runner};
    use diffinv_metrics::{sliced_wasserstein, SlicedWassersteinConfig};
    use diffinv_operators::{GaussianLikelihood, MatrixOperator};
    use diffinv_priors::{Gaussian, GaussianMixture};
    use ndarray::array;

    #[test]
    fn systematic_resampling_follows_the_weights() {
        let idx = systematic_resample(&[0.5, 0.0, 0.25, 0.25], 0.5);
        assert_eq!(idx, vec![0, 0, 2, 3]);
        let idx = systematic_resample(&[0.0, 1.0], 0.1);
        assert_eq!(idx, vec![1, 1]);
    }

    /// Linear-Gaussian problem, 2000 particles, 100 steps: mean within 0.06 of the exact
    /// posterior mean and marginal variances within 15% (the particle approximation after
    /// resampling has an effective size below N; no systematic bias beyond discretisation).
    #[test]
    fn linear_gaussian_moments() {
        let lg = linear_gaussian();
        let cfg = SmcConfig {
            num_particles: 2000,
            num_steps: 100,
            ..Default::default()
        };
        let out = Runner::new(lg.problem())
            .run(&Smc::new(cfg).unwrap(), 9)
            .unwrap();
        let (mean, var) = moments(&out.samples);
        let pv = lg.post_var();
        eprintln!("SMC mean {mean} vs {}, var {var} vs {pv}", lg.post_mean);
        for j in 0..3 {
            approx::assert_abs_diff_eq!(mean[j], lg.post_mean[j], epsilon = 0.06);
            approx::assert_abs_diff_eq!(var[j] / pv[j], 1.0, epsilon = 0.15);
        }
    }

    /// Gaussian-mixture prior (4 modes in 2-D) with one linear measurement whose posterior
    /// splits 40/60 between two modes: the sliced Wasserstein distance to 4000 exact
    /// posterior draws falls as the particle count grows (averaged over 8 seeds, since the
    /// split fluctuates from run to run: measured 1.40, 0.82, 0.66 for N = 16, 128, 1024,
    /// against 0.47 for 1024 exact draws), and at N = 1024 the mass of the left mode, averaged
    /// over the seeds, is within 0.04 of the exact 0.40 (measured 0.412: the weights, not only
    /// the sample count, do the work).
    #[test]
    fn sliced_wasserstein_falls_with_the_particle_count() {
        let comps = [(-3.0, -3.0), (-3.0, 3.0), (3.0, -3.0), (3.0, 3.0)]
            .iter()
            .map(|&(a, b)| Gaussian::isotropic(array![a, b], 0.5).unwrap())
            .collect();
        let prior = GaussianMixture::new(&[0.1, 0.2, 0.3, 0.4], comps).unwrap();
        let a = array![[1.0, 0.5]];
        let y = array![0.0];
        let post = prior.posterior(a.view(), y.view(), 0.5).unwrap();
        let left_exact = post.weights()[0] + post.weights()[1];
        let reference = post.sample(4000, 77);
        let op = MatrixOperator::new(a.mapv(|v| v as f32)).unwrap();
        let lik = GaussianLikelihood::new(y.mapv(|v| v as f32), 0.5).unwrap();
        let problem = Problem::new(&prior, &op, &lik).unwrap();
        let sw_cfg = SlicedWassersteinConfig {
            projections: 200,
            seed: 1,
        };
        let seeds = 8;
        let mut sws = Vec::new();
        let mut left = 0.0;
        for n in [16usize, 128, 1024] {
            let mut tot = 0.0;
            for seed in 0..seeds {
                // Data variance of the mixture per coordinate: 9 + 0.5.
                let cfg = SmcConfig {
                    num_particles: n,
                    num_steps: 100,
                    data_variance: 9.5,
                    ..Default::default()
                };
                let out = Runner::new(problem)
                    .run(&Smc::new(cfg).unwrap(), seed)
                    .unwrap();
                tot += sliced_wasserstein(out.samples.view(), reference.view(), sw_cfg).unwrap();
                if n == 1024 {
                    left += out.samples.column(0).iter().filter(|v| **v < 0.0).count() as f64
                        / n as f64;
                }
            }
            sws.push(tot / seeds as f64);
        }
        left /= seeds as f64;
        eprintln!(
            "SMC SW by N (16, 128, 1024): {sws:?}; left-mode mass {left} (exact {left_exact})"
        );
        assert!(sws[0] > sws[1] && sws[1] > sws[2], "SW by N: {sws:?}");
        assert!(sws[2] < 0.6 * sws[0], "SW by N: {sws:?}");
        approx::assert_abs_diff_eq!(left, left_exact, epsilon = 0.04);
    }
}
