//! Manifold Constrained Gradient (MCG; Chung, Sim, Ryu & Ye, NeurIPS 2022, Algorithm 1 with the
//! general projection of its section 3): a DPS step followed by a projection onto the
//! (noised) measurement set, for a linear forward model `A`.
//!
//! `x' = DPS step from x_i` (see [`crate::dps`]: stochastic step and `- zeta w grad ||y - A x0||`),
//! `y_{i+1} = y + sigma_{i+1} A z`, `z ~ N(0, I)` (a draw of `A x_{i+1}` given `A x_0 = y`
//! in the VE parametrisation; `y` itself on the last step),
//! `x_{i+1} = x' + A^T (A A^T)^{-1} (y_{i+1} - A x')`.
//!
//! The paper writes the projection for inpainting-like operators (`A A^T = I`) as
//! `P^T y_t + (I - P^T P) x'`; the general form above is the orthogonal projection onto
//! `{x : A x = y_t}`, with `(A A^T)^{-1}` applied by conjugate gradients using only `A` and
//! `A^T`. MCG is a noiseless method: with `sigma_y > 0` the
//! projection fits the noise in `y` (the bias that motivated DPS); it is applied as written.

use diffinv_priors::EdmSchedule;
use serde::{Deserialize, Serialize};

use crate::cg::CgOptions;
use crate::problem::Capability;
use crate::guidance::dps_update;
use crate::kernels::check_common;
use crate::guidance::{cg_solve, tags, GaussianData};
use crate::kernels::{check_finite, normal_rows};
use crate::problem::Evaluator;
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

/// Hyperparameters of [`Mcg`]. Defaults: 1000 steps and `zeta = 1` (as DPS; the MCG paper's
/// step `alpha` is also normalised by the residual norm), CG to a relative residual of 1e-5
/// in at most 50 iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McgConfig {
    /// Number of independent chains (samples).
    pub num_samples: usize,
    /// Number of noise levels `K`.
    pub num_steps: usize,
    /// Step size `zeta` on `grad ||y - A x0||`.
    pub zeta: f64,
    /// Apply the DDPM-to-VE factor of [`crate::dps`].
    pub ddpm_scaling: bool,
    /// Relative residual tolerance of the conjugate-gradient solve of `A A^T c = r`.
    pub cg_tol: f64,
    /// Iteration cap of the conjugate-gradient solve.
    pub cg_max_iter: usize,
    /// Noise schedule.
    pub schedule: EdmSchedule,
}

impl Default for McgConfig {
    fn default() -> Self {
        Self {
            num_samples: 1,
            num_steps: 1000,
            zeta: 1.0,
            ddpm_scaling: true,
            cg_tol: 1e-5,
            cg_max_iter: 50,
            schedule: EdmSchedule::default(),
        }
    }
}

/// The MCG solver.
#[derive(Debug, Clone)]
pub struct Mcg {
    cfg: McgConfig,
    sigmas: Vec<f64>,
}

impl Mcg {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: McgConfig) -> Result<Self> {
        let sigmas = check_common("MCG", cfg.num_samples, cfg.num_steps, &cfg.schedule)?;
        if !(cfg.zeta.is_finite() && cfg.zeta >= 0.0) {
            return Err(SolverError::Config(format!(
                "zeta must be finite and >= 0, got {}",
                cfg.zeta
            )));
        }
        if !(cfg.cg_tol.is_finite() && cfg.cg_tol > 0.0) || cfg.cg_max_iter == 0 {
            return Err(SolverError::Config(
                "cg_tol must be > 0 and cg_max_iter >= 1".into(),
            ));
        }
        Ok(Self { cfg, sigmas })
    }
}

impl Solver for Mcg {
    type Config = McgConfig;
    type State = State;
    /// The observation and noise level of the Gaussian likelihood.
    type Prepared = GaussianData;

    fn config(&self) -> &McgConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "MCG".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Linear, Capability::Gradient, Capability::GaussianLikelihood]
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        GaussianData::probe(eval, "MCG")
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<State> {
        Ok(State::initial_noise(
            self.cfg.num_samples,
            eval.problem().dim(),
            self.cfg.schedule.sigma_max,
            seed,
        ))
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &Self::Prepared,
        state: &mut State,
    ) -> Result<StepInfo> {
        let i = state.step;
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        let (mut next, misfit) = dps_update(
            eval,
            &state.x,
            sigma,
            sigma_next,
            self.cfg.zeta,
            self.cfg.ddpm_scaling,
            None,
            state.seed,
            i,
        )?;
        // Projection onto {x : A x = y_{i+1}}.
        let data = prep;
        let (n, d) = next.dim();
        let mut target = ndarray::Array2::<f32>::zeros((n, data.y.len()));
        for mut row in target.rows_mut() {
            row.assign(&data.y);
        }
        if sigma_next > 0.0 {
            let z = normal_rows(n, d, state.seed, tags::MCG_MEASUREMENT, i as u64, 0);
            let az = eval.forward(z.view(), i)?;
            target.scaled_add(sigma_next as f32, &az);
        }
        let ax = eval.forward(next.view(), i)?;
        let resid = target - ax;
        let (c, _) = cg_solve(
            eval,
            resid.view(),
            1.0,
            0.0,
            &CgOptions {
                tol: self.cfg.cg_tol,
                max_iters: self.cfg.cg_max_iter,
            },
            i,
        )?;
        let back = eval.adjoint(c.view(), i)?;
        next += &back;
        check_finite(next.view(), i)?;
        state.x = next;
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma,
            guided: true,
            misfit: Some(misfit),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guidance::testing::{linear_gaussian, moments};
    use crate::{Problem, Runner};
    use diffinv_operators::{FnForward, ForwardModel};

    /// MCG ends exactly on the measurement set (`A x = y` to CG accuracy), and on the
    /// linear-Gaussian problem its mean lies within a documented bias of 0.3 (RMS) of the exact
    /// posterior mean (measured 0.08): the projection fits the measurement noise (sigma_y = 0.3).
    #[test]
    fn final_samples_satisfy_the_measurement_and_bias_is_bounded() {
        let lg = linear_gaussian();
        let problem = lg.problem();
        let cfg = McgConfig {
            num_samples: 256,
            num_steps: 100,
            zeta: 0.1,
            ..Default::default()
        };
        let out = Runner::new(problem)
            .run(&Mcg::new(cfg).unwrap(), 5)
            .unwrap();
        let ax = lg.op.forward(out.samples.view()).unwrap();
        for row in ax.outer_iter() {
            for (a, b) in row.iter().zip(lg.lik.observation()) {
                approx::assert_abs_diff_eq!(a, b, epsilon = 1e-3);
            }
        }
        let (mean, _) = moments(&out.samples);
        let err = lg.mean_error(&mean);
        eprintln!(
            "{}:{} mean error {err:.4}, prior-mean error {:.4}",
            file!(),
            line!(),
            lg.prior_mean_error()
        );
        assert!(err < 0.3, "MCG mean error {err}");
        // Not linear: refused before any compute.
        let f = FnForward::new(3, 2, |x: &[f32]| vec![x[0], x[1]]);
        let black = Problem::new(&lg.prior, &f, &lg.lik).unwrap();
        assert!(matches!(
            Runner::new(black).run(&Mcg::new(McgConfig::default()).unwrap(), 0),
            Err(SolverError::Problem(_))
        ));
    }
}
