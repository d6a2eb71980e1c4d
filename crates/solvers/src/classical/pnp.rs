//! Denoiser-based classical solvers with the diffusion prior's denoiser `D(.; sigma)` at a fixed
//! level `sigma`.
//!
//! **PnP-ADMM** (Venkatakrishnan, Bouman & Wohlberg 2013; Chan, Wang & Elgendy 2017): ADMM on
//! `min L(A x) + R(z)` s.t. `x = z` with penalty `rho`, the proximal map of `R / rho` replaced by
//! the denoiser:
//!
//! `x <- argmin_x L(A x) + rho ||x - (z - u)||^2 / 2` (CG), `z <- D(x + u; sigma)`,
//! `u <- u + x - z`.
//!
//! When `D(.; sigma)` is the exact MMSE denoiser of a Gaussian prior it equals the proximal map
//! of `sigma^2 (-log p)` (mean = mode), so with `rho = 1 / sigma^2` (the default,
//! `rho_scale = 1`) PnP-ADMM converges to the exact MAP, which for a linear-Gaussian problem is
//! the posterior mean. Other `rho` weight the prior by `rho sigma^2` (the ADMM `z`-step is the
//! proximal map of `g / rho`, and the denoiser is that of `sigma^2 R`, so `g = rho sigma^2 R`).
//!
//! **RED** (Romano, Elad & Milanfar 2017, eq. 13 and the fixed-point iteration of section 5.2):
//! the regulariser `lambda x^T (x - D(x)) / 2` with gradient `lambda (x - D(x))`; the first-order
//! condition `A^T grad L(A x) + lambda (x - D(x)) = 0` is iterated as
//!
//! `x <- (A^T W A + lambda I)^{-1} (A^T W y + lambda D(x; sigma))` (CG).
//!
//! With a Gaussian prior `N(mu, S)`, `x - D(x) = sigma^2 (S + sigma^2 I)^{-1} (x - mu)`, so with
//! `lambda = 1 / sigma^2` (the default) RED returns the MAP under the inflated prior
//! `N(mu, S + sigma^2 I)`: its bias against the exact posterior mean vanishes as `sigma -> 0`.
//!
//! Both carry no randomness; their state for PnP-ADMM is `[x | z | u]` (`3 d` columns).

use ndarray::{Array2, Zip};
use serde::{Deserialize, Serialize};


use crate::cg::{CgOptions, LinearGaussianData};
use crate::problem::{Capability, Evaluator};
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

fn check_plug_and_play(sigma: f64, scale: f64, steps: usize, cg: &CgOptions) -> Result<()> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(SolverError::Config(format!(
            "sigma must be finite and > 0, got {sigma}"
        )));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(SolverError::Config(format!(
            "the weight scale must be finite and > 0, got {scale}"
        )));
    }
    if steps == 0 {
        return Err(SolverError::Config("num_steps must be at least 1".into()));
    }
    if !(cg.tol.is_finite() && cg.tol >= 0.0) {
        return Err(SolverError::Config(format!(
            "cg.tol must be finite and >= 0, got {}",
            cg.tol
        )));
    }
    Ok(())
}

/// Hyperparameters of [`PnpAdmm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PnpAdmmConfig {
    /// Denoiser level `sigma` (default 0.1, for data of unit scale).
    pub sigma: f64,
    /// `rho = rho_scale / sigma^2` (default 1: exact MAP for an exact MMSE Gaussian denoiser).
    pub rho_scale: f64,
    /// ADMM iterations (default 100).
    pub num_steps: usize,
    /// CG settings of the data step (default: at most 100 iterations, tolerance 1e-6).
    pub cg: CgOptions,
}

impl Default for PnpAdmmConfig {
    fn default() -> Self {
        Self {
            sigma: 0.1,
            rho_scale: 1.0,
            num_steps: 100,
            cg: CgOptions {
                max_iters: 100,
                tol: 1e-6,
            },
        }
    }
}

/// Plug-and-play ADMM.
#[derive(Debug, Clone)]
pub struct PnpAdmm {
    cfg: PnpAdmmConfig,
}

impl PnpAdmm {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: PnpAdmmConfig) -> Result<Self> {
        check_plug_and_play(cfg.sigma, cfg.rho_scale, cfg.num_steps, &cfg.cg)?;
        Ok(Self { cfg })
    }
}

/// The state of [`PnpAdmm`]: the data-prox iterate `x`, the denoised splitting variable `z`
/// and the scaled dual variable `u`, each `(1, d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmmState {
    /// Data-prox iterate `x`.
    pub x: Array2<f32>,
    /// Splitting variable `z = D(x + u)`.
    pub z: Array2<f32>,
    /// Scaled dual variable `u`.
    pub u: Array2<f32>,
    /// Index of the next step.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

crate::solver::impl_solver_state!(AdmmState);

impl Solver for PnpAdmm {
    type Config = PnpAdmmConfig;
    type State = AdmmState;
    /// `A^T W y` and the likelihood's weight, computed once.
    type Prepared = LinearGaussianData;

    fn config(&self) -> &PnpAdmmConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "PnP-ADMM".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Linear]
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        LinearGaussianData::new(eval, "PnP-ADMM", 0)
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<AdmmState> {
        let zeros = Array2::zeros((1, eval.problem().dim()));
        Ok(AdmmState {
            x: zeros.clone(),
            z: zeros.clone(),
            u: zeros,
            step: 0,
            seed,
        })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &Self::Prepared,
        state: &mut AdmmState,
    ) -> Result<StepInfo> {
        let i = state.step;
        let data = prep;
        let (x, z) = (&state.x, &state.z);
        let u = state.u.clone();
        let rho = self.cfg.rho_scale / (self.cfg.sigma * self.cfg.sigma);
        let x_new = data
            .prox(eval, (z - &u).view(), rho, x.view(), &self.cfg.cg, i)?
            .x;
        let z_new = eval.denoise((&x_new + &u).view(), self.cfg.sigma, i)?;
        let mut u_new = u;
        Zip::from(&mut u_new)
            .and(&x_new)
            .and(&z_new)
            .for_each(|a, &xn, &zn| *a += xn - zn);
        for a in [&x_new, &z_new, &u_new] {
            crate::kernels::check_finite(a, i)?;
        }
        state.x = x_new;
        state.z = z_new;
        state.u = u_new;
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma: self.cfg.sigma,
            guided: true,
            misfit: None,
        })
    }
    fn finish(
        &self,
        eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: AdmmState,
    ) -> Result<Array2<f32>> {
        let _ = eval;
        Ok(state.x)
    }
}

/// Hyperparameters of [`Red`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedConfig {
    /// Denoiser level `sigma` (default 0.1).
    pub sigma: f64,
    /// `lambda = lambda_scale / sigma^2` (default 1).
    pub lambda_scale: f64,
    /// Fixed-point iterations (default 100).
    pub num_steps: usize,
    /// CG settings of each solve (default: at most 100 iterations, tolerance 1e-6).
    pub cg: CgOptions,
}

impl Default for RedConfig {
    fn default() -> Self {
        Self {
            sigma: 0.1,
            lambda_scale: 1.0,
            num_steps: 100,
            cg: CgOptions {
                max_iters: 100,
                tol: 1e-6,
            },
        }
    }
}

/// Regularisation by denoising, fixed-point iteration.
#[derive(Debug, Clone)]
pub struct Red {
    cfg: RedConfig,
}

impl Red {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: RedConfig) -> Result<Self> {
        check_plug_and_play(cfg.sigma, cfg.lambda_scale, cfg.num_steps, &cfg.cg)?;
        Ok(Self { cfg })
    }
}

impl Solver for Red {
    type Config = RedConfig;
    type State = State;
    /// `A^T W y` and the likelihood's weight, computed once.
    type Prepared = LinearGaussianData;

    fn config(&self) -> &RedConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "RED".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Linear]
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        LinearGaussianData::new(eval, "RED", 0)
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<State> {
        Ok(State {
            x: Array2::zeros((1, eval.problem().dim())),
            step: 0,
            seed,
        })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &Self::Prepared,
        state: &mut State,
    ) -> Result<StepInfo> {
        let i = state.step;
        let data = prep;
        let lambda = self.cfg.lambda_scale / (self.cfg.sigma * self.cfg.sigma);
        let den = eval.denoise(state.x.view(), self.cfg.sigma, i)?;
        state.x = data
            .prox(eval, den.view(), lambda, state.x.view(), &self.cfg.cg, i)?
            .x;
        crate::kernels::check_finite(&state.x, i)?;
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma: self.cfg.sigma,
            guided: true,
            misfit: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cg::fixtures::{linear_gaussian, max_abs, solve};
    use crate::{Problem, Runner};

    /// With the exact Gaussian denoiser and `rho = 1 / sigma^2`, PnP-ADMM converges to the MAP
    /// of the linear-Gaussian problem, i.e. the exact posterior mean (checked to 2e-3 after 300
    /// iterations; measured error below).
    #[test]
    fn pnp_admm_converges_to_the_exact_map() {
        let p = linear_gaussian(8, 4, 0.1, false, 5);
        let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
        let s = PnpAdmm::new(PnpAdmmConfig {
            sigma: 0.5,
            num_steps: 300,
            ..Default::default()
        })
        .unwrap();
        let out = Runner::new(problem).run(&s, 0).unwrap();
        let err = max_abs(&out.samples.row(0).mapv(f64::from), &p.post_mean);
        eprintln!("PnP-ADMM: error against the posterior mean {err:e}");
        assert!(err < 2e-3, "error {err}");
        // A different rho converges to the MAP with the prior weighted by rho sigma^2: here 2,
        // i.e. the prior precision doubled.
        let s2 = PnpAdmm::new(PnpAdmmConfig {
            sigma: 0.5,
            rho_scale: 2.0,
            num_steps: 300,
            ..Default::default()
        })
        .unwrap();
        let out2 = Runner::new(problem).run(&s2, 0).unwrap();
        let w = 1.0 / (p.sigma_y * p.sigma_y);
        let prec = solve_inv(&p.prior_cov) * 2.0;
        let m = p.a.t().dot(&p.a) * w + &prec;
        let rhs = p.a.t().dot(&p.y) * w + prec.dot(&p.prior_mean);
        let exact2 = solve(&m, &rhs);
        let err2 = max_abs(&out2.samples.row(0).mapv(f64::from), &exact2);
        assert!(err2 < 2e-3, "error {err2}");
    }

    fn solve_inv(m: &Array2<f64>) -> Array2<f64> {
        let n = m.nrows();
        let mut inv = Array2::<f64>::zeros((n, n));
        for k in 0..n {
            let mut e = ndarray::Array1::<f64>::zeros(n);
            e[k] = 1.0;
            inv.column_mut(k).assign(&solve(m, &e));
        }
        inv
    }

    /// RED with the exact Gaussian denoiser and `lambda = 1 / sigma^2` converges to the MAP under
    /// the inflated prior `N(mu, S + sigma^2 I)` (closed form, to 2e-3), whose distance to the
    /// exact posterior mean is the documented bias (it shrinks with sigma). The fixed point
    /// contracts slowly in the null space of `A` (factor `s / (s + sigma^2)` per iteration for a
    /// prior eigenvalue `s`), hence 1500 iterations.
    #[test]
    fn red_converges_to_the_inflated_prior_map() {
        let p = linear_gaussian(8, 4, 0.1, false, 5);
        let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
        let w = 1.0 / (p.sigma_y * p.sigma_y);
        let mut biases = Vec::new();
        for sigma in [0.5, 0.3] {
            let s = Red::new(RedConfig {
                sigma,
                num_steps: 1500,
                ..Default::default()
            })
            .unwrap();
            let out = Runner::new(problem).run(&s, 0).unwrap();
            let mut infl = p.prior_cov.clone();
            for k in 0..8 {
                infl[[k, k]] += sigma * sigma;
            }
            let prec = solve_inv(&infl);
            let m = p.a.t().dot(&p.a) * w + &prec;
            let rhs = p.a.t().dot(&p.y) * w + prec.dot(&p.prior_mean);
            let exact = solve(&m, &rhs);
            let got = out.samples.row(0).mapv(f64::from);
            let err = max_abs(&got, &exact);
            assert!(err < 2e-3, "sigma {sigma}: error {err}");
            biases.push(max_abs(&got, &p.post_mean));
        }
        eprintln!("RED bias against the posterior mean (sigma 0.5, 0.3): {biases:?}");
        assert!(biases[1] < biases[0]);
        assert!(Red::new(RedConfig {
            sigma: 0.0,
            ..Default::default()
        })
        .is_err());
    }
}
