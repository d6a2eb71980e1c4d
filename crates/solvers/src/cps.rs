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
//!
//! Noise: chain `c`'s `M x d` candidate draws of repetition `rep` at step `i` come from one
//! stream `(seed, CANDIDATE, i R + rep, c)` through the f32 ziggurat
//! ([`fill_normal_f32`](diffinv_priors::rng::fill_normal_f32)), so a run is bit-identical for
//! any thread count. Per guided repetition the solver's own work is `B M d` normal draws plus
//! three passes over the `B M d` candidates (build, combine, norm) and `B M p` for the
//! seeking weights; the candidate buffers are kept between steps.

use diffinv_priors::rng::{fill_normal_f32, stream, tags};
use diffinv_priors::EdmSchedule;
use ndarray::{ArrayView2, Axis};
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
    /// Replace the first guided step by the clean estimate, `x_{i+1} = D(x_i; sigma_i)`, as the
    /// reference does: APS_R (deng-ai-lab/CPS `algo/aps_r.py`) guides only steps with
    /// `i > int(K threshold)`, so step `i = int(K threshold)` (step 0 with its default
    /// threshold 0) falls through to its final branch, which returns the denoised state.
    /// Default `false`: that step is a guided step like the others, as the method is described
    /// (docs/algorithms.md measures both).
    pub reference_first_step: bool,
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
            reference_first_step: false,
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
    /// The step APS_R replaces by the clean estimate (`i = int(K threshold)`), when
    /// [`CpsConfig::reference_first_step`] is set.
    fn is_reference_first_step(&self, i: usize) -> bool {
        self.cfg.reference_first_step
            && i == (self.cfg.guidance_start * self.cfg.num_steps as f64).floor() as usize
    }
}

impl Solver for Cps {
    type Config = CpsConfig;
    type State = State;
    /// The candidate buffers `eps` and `x_k` (`B M d` floats each), kept between steps.
    type Prepared = std::sync::Mutex<(Vec<f32>, Vec<f32>)>;

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
        Ok(std::sync::Mutex::new((Vec::new(), Vec::new())))
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
        let (b, m, d) = (state.x.nrows(), self.cfg.num_candidates, state.x.ncols());
        let mut misfit = None;
        let guided = sigma_next > 0.0 && self.guided(i) && !self.is_reference_first_step(i);
        if sigma_next <= 0.0 || self.is_reference_first_step(i) {
            state.x = eval.denoise(state.x.view(), sigma, i)?;
        } else {
            let f = sigma * sigma - sigma_next * sigma_next;
            let sf = f.sqrt() as f32;
            let reps = if guided { self.repetitions(i) } else { 1 };
            for rep in 0..reps {
                // Unconditional drift: mu = x + f (D(x) - x) / sigma^2.
                let den = eval.denoise(state.x.view(), sigma, i)?;
                let g = (f / (sigma * sigma)) as f32;
                // In standard layout whatever the state's (its rows are slices below).
                let mut mu = state.x.as_standard_layout().into_owned();
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
                // Candidates: row c * M + k is chain c, candidate k; eps and x_k = mu_c +
                // sqrt(f) eps_k are written in one pass into buffers reused across steps.
                let mut guard = prep.lock().map_err(|_| SolverError::Config("CPS scratch poisoned".into()))?;
                let (eps, cand) = &mut *guard;
                let len = b * m * d;
                eps.resize(len, 0.0);
                cand.resize(len, 0.0);
                // One stream per chain and repetition draws that chain's M x d candidate noise.
                // The passes below run on plain slices (ndarray's row iterators do not
                // vectorise); `mu` is in standard layout.
                let layout_err = || SolverError::Config("CPS buffers: an array is not contiguous".into());
                let mu_s = mu.as_slice().ok_or_else(layout_err)?;
                eps[..len]
                    .par_chunks_mut((m * d).max(1))
                    .zip(cand[..len].par_chunks_mut((m * d).max(1)))
                    .enumerate()
                    .for_each(|(c, (e, x))| {
                        let mut rng = stream(state.seed, tags::CANDIDATE, draw, c as u64);
                        fill_normal_f32(&mut rng, e);
                        let mu_c = &mu_s[c * d..(c + 1) * d];
                        for (xr, er) in x.chunks_mut(d.max(1)).zip(e.chunks(d.max(1))) {
                            for ((o, &ev), &u) in xr.iter_mut().zip(er).zip(mu_c) {
                                *o = ev * sf + u;
                            }
                        }
                    });
                let shape_err = |e: ndarray::ShapeError| SolverError::Config(format!("CPS buffers: {e}"));
                let eps_s = &eps[..len];
                let cand = ArrayView2::from_shape((b * m, d), &cand[..len]).map_err(shape_err)?;
                let x0 = eval.denoise(cand, sigma_next, i)?;
                // Failure policy: a failed candidate is left out of its chain's combination.
                let fr = eval.forward_robust(x0.view(), i, m)?;
                let nll = eval.nll(fr.y.view(), i)?;
                let lin = eval.linearize(fr, m, self.cfg.linearization, i)?;
                let (y, rgrad) = (lin.y, lin.r);
                misfit = Some(nll.iter().map(|v| *v as f64).sum::<f64>() / nll.len() as f64);
                // Each chain's seeking direction from its own candidates, applied to its row
                // of mu (chains in parallel): rbar and ybar are the candidates' means (f64),
                // c_k = <rbar, y_k - ybar> / M, g = sum_k c_k eps_k, x_next = mu - h g / ||g||.
                let p = y.ncols();
                let reach = f.sqrt() * (d as f64).sqrt();
                let (y, rgrad) = (y.as_standard_layout(), rgrad.as_standard_layout());
                let (ys, rs) = (y.as_slice().ok_or_else(layout_err)?, rgrad.as_slice().ok_or_else(layout_err)?);
                let mut next = mu;
                next.axis_iter_mut(Axis(0))
                    .into_par_iter()
                    .enumerate()
                    .for_each_init(
                        || (vec![0f64; p], vec![0f64; p], vec![0f32; d]),
                        |(rbar, ybar, g), (c, mut row)| {
                            rbar.fill(0.0);
                            ybar.fill(0.0);
                            for k in c * m..(c + 1) * m {
                                for ((rb, yb), (&rv, &yv)) in rbar
                                    .iter_mut()
                                    .zip(ybar.iter_mut())
                                    .zip(rs[k * p..(k + 1) * p].iter().zip(&ys[k * p..(k + 1) * p]))
                                {
                                    *rb += rv as f64;
                                    *yb += yv as f64;
                                }
                            }
                            let inv_m = 1.0 / m as f64;
                            rbar.iter_mut().chain(ybar.iter_mut()).for_each(|v| *v *= inv_m);
                            g.fill(0.0);
                            for k in c * m..(c + 1) * m {
                                let ck: f64 = rbar
                                    .iter()
                                    .zip(ybar.iter())
                                    .zip(&ys[k * p..(k + 1) * p])
                                    .map(|((rb, yb), &yv)| rb * (yv as f64 - yb))
                                    .sum::<f64>()
                                    * inv_m;
                                let ck = ck as f32;
                                for (gv, &ev) in g.iter_mut().zip(&eps_s[k * d..(k + 1) * d]) {
                                    *gv += ck * ev;
                                }
                            }
                            let norm = g.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt();
                            if norm > 0.0 && norm.is_finite() {
                                let h = (reach / norm) as f32;
                                for (x, &gv) in row.iter_mut().zip(g.iter()) {
                                    *x -= h * gv;
                                }
                            }
                        },
                    );
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::problem::Evaluator;
    use crate::tests_common::gmm_problem_2d;
    use ndarray::{Array2, ShapeBuilder};

    /// The candidate and seeking passes read the state's rows as slices: a state held in
    /// column-major layout (as a Fortran-ordered array handed in from outside would be) takes the
    /// same steps, bit for bit, as its row-major copy, through guided, restarted and final steps.
    #[test]
    fn a_column_major_state_steps_like_its_row_major_copy() {
        let p = gmm_problem_2d();
        let cps = Cps::new(CpsConfig {
            num_samples: 5,
            num_candidates: 4,
            num_steps: 12,
            restarts: 2,
            restart_window: (0.0, 0.5),
            ..Default::default()
        })
        .unwrap();
        let eval = Evaluator::new(p.problem());
        let prep = cps.prepare(&eval).unwrap();
        let mut row_major = cps.init(&eval, &prep, 4).unwrap();
        let mut col_major = row_major.clone();
        let mut x = Array2::<f32>::zeros(row_major.x.raw_dim().f());
        x.assign(&row_major.x);
        assert!(x.as_slice().is_none(), "the copy is column-major");
        col_major.x = x;
        while row_major.step < 12 {
            cps.step(&eval, &prep, &mut row_major).unwrap();
            cps.step(&eval, &prep, &mut col_major).unwrap();
            assert_eq!(row_major.x, col_major.x, "step {}", row_major.step);
        }
    }
}
