//! Unconditional sampling from the prior: the baseline row of every table.

use diffinv_priors::sampler::{euler_step, initial_noise, reverse_sde};
use diffinv_priors::{EdmSchedule, OdeMethod};
use ndarray::Zip;
use serde::{Deserialize, Serialize};

use crate::problem::{prior_error, Evaluator};
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnconditionalMethod {
    /// PF-ODE, Euler.
    #[default]
    Euler,
    /// PF-ODE, Heun (Karras et al. 2022, Algorithm 1).
    Heun,
    /// Reverse SDE, Euler-Maruyama.
    Sde,
}

/// Hyperparameters of [`Unconditional`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnconditionalConfig {
    /// Number of samples.
    pub num_samples: usize,
    /// Number of noise levels.
    pub num_steps: usize,
    /// Sampler.
    pub method: UnconditionalMethod,
    /// Noise schedule.
    pub schedule: EdmSchedule,
}

impl Default for UnconditionalConfig {
    fn default() -> Self {
        Self {
            num_samples: 512,
            num_steps: 80,
            method: UnconditionalMethod::Euler,
            schedule: EdmSchedule::default(),
        }
    }
}

/// Samples the prior, ignoring the measurement.
#[derive(Debug, Clone)]
pub struct Unconditional {
    cfg: UnconditionalConfig,
    sigmas: Vec<f64>,
}

impl Unconditional {
    /// Build the sampler, validating the configuration.
    pub fn new(cfg: UnconditionalConfig) -> Result<Self> {
        if cfg.num_samples == 0 || cfg.num_steps == 0 {
            return Err(SolverError::Config(
                "num_samples and num_steps must be at least 1".into(),
            ));
        }
        let sigmas = cfg
            .schedule
            .sigmas(cfg.num_steps)
            .map_err(|e| SolverError::Config(e.to_string()))?;
        Ok(Self { cfg, sigmas })
    }
}

impl Solver for Unconditional {
    type Config = UnconditionalConfig;
    type State = State;
    type Prepared = ();

    fn config(&self) -> &UnconditionalConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "unconditional".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn prepare(&self, _eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        Ok(())
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<State> {
        Ok(State {
            x: initial_noise(
                self.cfg.num_samples,
                eval.problem().dim(),
                self.cfg.schedule.sigma_max,
                seed,
            ),
            step: 0,
            seed,
        })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: &mut State,
    ) -> Result<StepInfo> {
        let i = state.step;
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        match self.cfg.method {
            UnconditionalMethod::Sde => {
                let prior = eval.counted_prior();
                state.x = reverse_sde(
                    &prior,
                    state.x.view(),
                    &self.sigmas[i..i + 2],
                    state.seed,
                    i as u64,
                )
                .map_err(|e| prior_error(e, i))?;
            }
            method => {
                let d = eval.denoise(state.x.view(), sigma, i)?;
                let x_euler = euler_step(state.x.view(), d.view(), sigma, sigma_next);
                if method == UnconditionalMethod::Heun && sigma_next > 0.0 {
                    let d2 = eval.denoise(x_euler.view(), sigma_next, i)?;
                    let h = (sigma_next - sigma) as f32;
                    Zip::from(&mut state.x)
                        .and(&d)
                        .and(&x_euler)
                        .and(&d2)
                        .for_each(|x, &dc, &xe, &dn| {
                            *x += 0.5
                                * h
                                * ((*x - dc) / sigma as f32 + (xe - dn) / sigma_next as f32);
                        });
                } else {
                    state.x = x_euler;
                }
            }
        }
        state.step += 1;
        let _ = OdeMethod::Euler;
        Ok(StepInfo {
            step: i,
            sigma,
            guided: false,
            misfit: None,
        })
    }
}
