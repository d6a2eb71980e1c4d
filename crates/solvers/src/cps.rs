//! Constrained Particle Seeking (CPS; AAAI 2026, arXiv 2603.01837).
//!
//! One chain per sample follows the reverse SDE of the prior (Euler-Maruyama in the EDM/VE
//! convention, `f_i = sigma_i^2 - sigma_{i+1}^2`):
//!
//! `mu = x + f_i score(x; sigma_i)`,  `x_next = mu + sqrt(f_i) eps`.
//!
//! At a guided step, instead of one draw of `eps`, `M` candidates `x_k = mu + sqrt(f_i) eps_k` are
//! drawn, each is denoised once, `x0_k = D(x_k; sigma_{i+1})`, and evaluated, `y_k = G(x0_k)`.
//! With the mean residual gradient `rbar = (1/M) sum_k dL/dy (y_k)` and the measurement anomalies
//! `y_k - ybar` (by default both taken in the likelihood's whitened-residual space,
//! [`Linearization::Residual`]), the cross-covariance weights `c_k = <rbar, y_k - ybar> / M` give the seeking
//! direction `g = sum_k c_k eps_k` (a statistically linearised gradient of the loss with
//! respect to the noise). The constrained update keeps the chosen noise on the high-density
//! shell `||eps|| = sqrt(d)`:
//!
//! `x_next = mu - sqrt(f_i) sqrt(d) g / ||g||`.
//!
//! Restarts: for steps in the early window (`lo < i/K < hi`, default 0.1% to 20%) the step is
//! repeated `restarts` times; between repetitions the state is re-noised from `sigma_{i+1}`
//! back to `sigma_i`, `x <- x_next + sqrt(f_i) z`, which makes the result robust to a poor
//! initial noise. The last step returns `D(x; sigma_{K-1})`.

use diffinv_ensemble::{combine, gram};
use diffinv_priors::rng::{fill_normal, stream, tags};
use diffinv_priors::EdmSchedule;
use ndarray::{s, Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernels::add_noise;
use crate::problem::{Evaluator, Linearization};
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

/// Hyperparameters of [`Cps`]. Defaults follow the reference (deng-ai-lab/CPS,
/// `algo/aps_r.py`, `configs/algorithm/aps_r.yaml`): 64 candidates, 5 repetitions in the first
/// 20% of the steps, guidance from the start. The reference runs 500 VP steps; here the EDM
/// schedule with 200 steps is the default (configurable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpsConfig {
    /// Number of independent chains (samples) `B`.
    pub num_samples: usize,
    /// Candidates per chain and step `M`.
    pub num_candidates: usize,
    /// Number of noise levels `K`.
    pub num_steps: usize,
    /// Repetitions of a step inside the restart window (1 disables restarts).
    pub restarts: usize,
    /// Restart window `(lo, hi)` as fractions of `K`: steps with `lo < i/K < hi` restart.
    pub restart_window: (f64, f64),
    /// Fraction of the first steps that are unguided plain SDE steps.
    pub guidance_start: f64,
    /// Measurement space of the statistical linearisation (see [`Linearization`]; default the
    /// likelihood's whitened residual).
    pub linearization: Linearization,
    /// Noise schedule.
    pub schedule: EdmSchedule,
}

impl Default for CpsConfig {
    fn default() -> Self {
        Self {
            num_samples: 1,
            num_candidates: 64,
            num_steps: 200,
            restarts: 5,
            restart_window: (0.001, 0.2),
            guidance_start: 0.0,
            linearization: Linearization::Residual,
            schedule: EdmSchedule::default(),
        }
    }
}

/// The CPS solver.
#[derive(Debug, Clone)]
pub struct Cps {
    cfg: CpsConfig,
    sigmas: Vec<f64>,
}

impl Cps {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: CpsConfig) -> Result<Self> {
        if cfg.num_samples == 0 {
            return Err(SolverError::Config("CPS needs at least one chain".into()));
        }
        if cfg.num_candidates < 2 {
            return Err(SolverError::Config(format!(
                "CPS needs at least 2 candidates, got {}",
                cfg.num_candidates
            )));
        }
        if cfg.num_steps < 2 {
            return Err(SolverError::Config(format!(
                "CPS needs at least 2 steps, got {}",
                cfg.num_steps
            )));
        }
        if cfg.restarts == 0 {
            return Err(SolverError::Config(
                "restarts must be at least 1 (1 disables them)".into(),
            ));
        }
        let (lo, hi) = cfg.restart_window;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return Err(SolverError::Config(format!(
                "restart_window must satisfy 0 <= lo <= hi <= 1, got ({lo}, {hi})"
            )));
        }
        if !(0.0..=1.0).contains(&cfg.guidance_start) {
            return Err(SolverError::Config(format!(
                "guidance_start must be in [0, 1], got {}",
                cfg.guidance_start
            )));
        }
        let sigmas = cfg
            .schedule
            .sigmas(cfg.num_steps)
            .map_err(|e| SolverError::Config(e.to_string()))?;
        Ok(Self { cfg, sigmas })
    }
    fn repetitions(&self, i: usize) -> usize {
        let t = i as f64 / self.cfg.num_steps as f64;
        let (lo, hi) = self.cfg.restart_window;
        if t > lo && t < hi {
            self.cfg.restarts
        } else {
            1
        }
    }
    fn guided(&self, i: usize) -> bool {
        i as f64 >= self.cfg.guidance_start * self.cfg.num_steps as f64
    }
}


/// One chain's seeking step: the step length and the direction.
type SeekStep = (f32, Array2<f32>);

impl Solver for Cps {
    type Config = CpsConfig;
    type State = State;
    type Prepared = ();

    fn config(&self) -> &CpsConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        "CPS".into()
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn prepare(&self, _eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        Ok(())
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
        _prep: &Self::Prepared,
        state: &mut State,
    ) -> Result<StepInfo> {
        let i = state.step;
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        let (b, m, d) = (state.x.nrows(), self.cfg.num_candidates, state.x.ncols());
        let mut misfit = None;
        let guided = sigma_next > 0.0 && self.guided(i);
        if sigma_next <= 0.0 {
            state.x = eval.denoise(state.x.view(), sigma, i)?;
        } else {
            let f = sigma * sigma - sigma_next * sigma_next;
            let sf = f.sqrt() as f32;
            let reps = if guided { self.repetitions(i) } else { 1 };
            for rep in 0..reps {
                // Unconditional drift: mu = x + f (D(x) - x) / sigma^2.
                let den = eval.denoise(state.x.view(), sigma, i)?;
                let g = (f / (sigma * sigma)) as f32;
                let mut mu = state.x.clone();
                ndarray::Zip::from(&mut mu)
                    .and(&den)
                    .for_each(|x, &dv| *x += g * (dv - *x));
                // Draw identity of this repetition: step i, repetition rep.
                let draw = (i * self.cfg.restarts.max(1) + rep) as u64;
                if !guided {
                    add_noise(&mut mu, sf, state.seed, tags::SDE, draw, 0);
                    state.x = mu;
                    break;
                }
                // Candidates: row c * M + k is chain c, candidate k.
                let mut eps = Array2::<f32>::zeros((b * m, d));
                eps.axis_iter_mut(Axis(0))
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(r, mut row)| {
                        let mut rng = stream(state.seed, tags::CANDIDATE, draw, r as u64);
                        let mut z = vec![0.0f32; d];
                        fill_normal(&mut rng, &mut z);
                        row.assign(&ndarray::ArrayView1::from(&z[..]));
                    });
                // x_k = mu_c + sqrt(f) eps_k, one pass over the candidates.
                let mut cand = Array2::<f32>::zeros((b * m, d));
                cand.axis_iter_mut(Axis(0))
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(r, mut row)| {
                        ndarray::Zip::from(&mut row)
                            .and(eps.row(r))
                            .and(mu.row(r / m))
                            .for_each(|o, &e, &u| *o = e * sf + u);
                    });
                let x0 = eval.denoise(cand.view(), sigma_next, i)?;
                // Failure policy: a failed candidate is left out of its chain's combination.
                let fr = eval.forward_robust(x0.view(), i, m)?;
                let nll = eval.nll(fr.y.view(), i)?;
                let lin = eval.linearize(fr, m, self.cfg.linearization, i)?;
                let (y, rgrad) = (lin.y, lin.r);
                misfit = Some(nll.iter().map(|v| *v as f64).sum::<f64>() / nll.len() as f64);
                // Each chain's seeking direction from its own candidates (chains in parallel).
                let steps: Vec<Result<Option<SeekStep>>> = (0..b)
                    .into_par_iter()
                    .map(|c| {
                        let rows = s![c * m..(c + 1) * m, ..];
                        let yc = y.slice(rows);
                        let rbar = rgrad
                            .slice(rows)
                            .mean_axis(Axis(0))
                            .ok_or(SolverError::Config("no candidates".into()))?;
                        let ybar = yc
                            .mean_axis(Axis(0))
                            .ok_or(SolverError::Config("no candidates".into()))?;
                        let dy = &yc - &ybar;
                        let coef = gram(rbar.view().insert_axis(Axis(0)), dy.view())
                            .map_err(|source| SolverError::Ensemble { step: i, source })?
                            / m as f32;
                        let gdir = combine(coef.view(), eps.slice(rows))
                            .map_err(|source| SolverError::Ensemble { step: i, source })?;
                        let norm = gdir
                            .iter()
                            .map(|v| (*v as f64) * (*v as f64))
                            .sum::<f64>()
                            .sqrt();
                        Ok((norm > 0.0 && norm.is_finite())
                            .then(|| ((f.sqrt() * (d as f64).sqrt() / norm) as f32, gdir)))
                    })
                    .collect();
                let mut next = mu;
                for (c, step) in steps.into_iter().enumerate() {
                    if let Some((h, gdir)) = step? {
                        next.row_mut(c).scaled_add(-h, &gdir.row(0));
                    }
                }
                if rep + 1 < reps {
                    // Restart: re-noise from sigma_{i+1} back to sigma_i.
                    add_noise(&mut next, sf, state.seed, tags::RESTART, draw, 0);
                }
                state.x = next;
            }
        }
        if let Some(p) = crate::problem::first_non_finite_row(state.x.view()) {
            return Err(SolverError::NonFiniteState {
                particle: p,
                step: i,
            });
        }
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma,
            guided,
            misfit,
        })
    }
}
