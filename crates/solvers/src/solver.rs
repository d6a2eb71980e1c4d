//! The [`Solver`] trait: a state machine stepped over noise levels (in the manner of argmin's
//! `Solver::next_iter`), driven by the [`Runner`](crate::Runner).

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::problem::Evaluator;
use crate::Result;

/// The state a solver carries from one step to the next. It holds no generator state: every
/// random draw is derived from `(seed, purpose, step, particle)` (see `diffinv_priors::rng`), so
/// that a state saved after step `k` resumes bit-identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Current particles (or chains), `(N, d)`.
    pub x: Array2<f32>,
    /// Index of the next step to run.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

/// What a step reports to the observers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    /// Step index.
    pub step: usize,
    /// Noise level at the start of the step.
    pub sigma: f64,
    /// Whether the measurement guided this step.
    pub guided: bool,
    /// Mean negative log-likelihood of the clean estimates evaluated this step, if any.
    pub misfit: Option<f64>,
}

/// A sampler or inverse-problem solver over the noise levels of a diffusion prior.
pub trait Solver: Send + Sync {
    /// Short name (the row label of a results table).
    fn name(&self) -> String;
    /// Number of steps [`step`](Self::step) will be called.
    fn num_steps(&self) -> usize;
    /// Check the configuration against the problem, before any compute.
    fn validate(&self, eval: &Evaluator<'_>) -> Result<()>;
    /// The initial state (draws the initial noise).
    fn init(&self, eval: &Evaluator<'_>, seed: u64) -> Result<State>;
    /// Advance `state` by one step; `state.step` is the index of this step on entry and must
    /// be incremented by the solver.
    fn step(&self, eval: &Evaluator<'_>, state: &mut State) -> Result<StepInfo>;
    /// The final samples (default: the state's particles).
    fn finish(&self, _eval: &Evaluator<'_>, state: State) -> Result<Array2<f32>> {
        Ok(state.x)
    }
}
