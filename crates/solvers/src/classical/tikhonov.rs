//! Tikhonov regularisation (Tikhonov & Arsenin 1977; see the survey "Inverse
//! Problems with Generative Priors", ICLR 2026 blog track, section 2):
//!
//! `x* = argmin_x L(A x) + lambda ||x||^2 / 2`, i.e. `(A^T W A + lambda I) x = A^T W y`,
//!
//! the MAP estimate under the prior `N(0, I / lambda)`, solved by conjugate gradients on the
//! normal equations with `A` and `A^T` only. Each solver step is one CG solve (to `cg.tol`,
//! at most `cg.max_iters` iterations) warm-started at the current estimate, so extra steps act
//! as CG restarts; the default is one step.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::problem::Capability;
use crate::cg::{CgOptions, LinearGaussianData};
use crate::problem::Evaluator;
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

/// Hyperparameters of [`Tikhonov`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TikhonovConfig {
    /// Regularisation weight `lambda > 0` (in the units of the likelihood, which already
    /// includes `1 / sigma_y^2`). Default 1.
    pub lambda: f64,
    /// Number of (restarted) CG solves. Default 1.
    pub num_steps: usize,
    /// CG settings (default: at most 200 iterations, relative tolerance `1e-6`).
    pub cg: CgOptions,
}

impl Default for TikhonovConfig {
    fn default() -> Self {
        Self {
            lambda: 1.0,
            num_steps: 1,
            cg: CgOptions {
                max_iters: 200,
                tol: 1e-6,
            },
        }
    }
}

/// The Tikhonov solver.
#[derive(Debug, Clone)]
pub struct Tikhonov {
    cfg: TikhonovConfig,
}

impl Tikhonov {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: TikhonovConfig) -> Result<Self> {
        if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
            return Err(SolverError::Config(format!(
                "lambda must be finite and > 0, got {}",
                cfg.lambda
            )));
        }
        if cfg.num_steps == 0 {
            return Err(SolverError::Config("num_steps must be at least 1".into()));
        }
        if !(cfg.cg.tol.is_finite() && cfg.cg.tol >= 0.0) {
            return Err(SolverError::Config(format!(
                "cg.tol must be finite and >= 0, got {}",
                cfg.cg.tol
            )));
        }
        Ok(Self { cfg })
    }
}

impl Solver for Tikhonov {
    type Config = TikhonovConfig;
    type State = State;
    /// `A^T W y` and the likelihood's weight, computed once.
    type Prepared = LinearGaussianData;

    fn config(&self) -> &TikhonovConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "Tikhonov".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Linear]
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        LinearGaussianData::new(eval, "Tikhonov", 0)
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
        let zero = Array2::<f32>::zeros(state.x.raw_dim());
        let sol = data.prox(
            eval,
            zero.view(),
            self.cfg.lambda,
            state.x.view(),
            &self.cfg.cg,
            i,
        )?;
        state.x = sol.x;
        let (_, misfit) = data.gradient(eval, state.x.view(), i)?;
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma: 0.0,
            guided: true,
            misfit: Some(misfit),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cg::fixtures::{linear_gaussian, max_abs, solve};
    use crate::{Problem, Runner};

    /// Equals the dense closed form `(A^T W A + lambda I)^{-1} A^T W y` (f64 elimination),
    /// to 1e-4 (CG in f32 with relative tolerance 1e-6 on a condition number below 1e3).
    #[test]
    fn equals_the_dense_closed_form() {
        let p = linear_gaussian(12, 7, 0.1, false, 21);
        let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
        for lambda in [0.5, 10.0] {
            let s = Tikhonov::new(TikhonovConfig {
                lambda,
                ..Default::default()
            })
            .unwrap();
            let out = Runner::new(problem).run(&s, 0).unwrap();
            let w = 1.0 / (p.sigma_y * p.sigma_y);
            let mut m = p.a.t().dot(&p.a) * w;
            for k in 0..12 {
                m[[k, k]] += lambda;
            }
            let exact = solve(&m, &(p.a.t().dot(&p.y) * w));
            let got = out.samples.row(0).mapv(f64::from);
            let err = max_abs(&got, &exact);
            assert!(
                err < 1e-4 * (1.0 + exact.iter().fold(0.0f64, |a, v| a.max(v.abs()))),
                "lambda {lambda}: error {err}"
            );
            assert_eq!(out.samples.nrows(), 1);
        }
        assert!(Tikhonov::new(TikhonovConfig {
            lambda: 0.0,
            ..Default::default()
        })
        .is_err());
    }
}
