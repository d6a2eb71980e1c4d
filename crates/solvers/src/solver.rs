//! The [`Solver`] trait: a state machine stepped over noise levels, in the manner of argmin's
//! `Solver<O, I: State>` (a solver owns its configuration, declares what it needs from the
//! problem, prepares once per problem and advances a typed, serialisable state), and the
//! object-safe [`DynSolver`] that stores any solver by name (the [registry](crate::registry)).

use std::any::Any;
use std::fmt::Debug;

use ndarray::{Array2, ArrayView2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::{Capability, Evaluator};
use crate::{Result, SolverError};

/// What a solver's state must offer: serialisation (checkpoints) and a read-only view of the
/// particles for the observers.
///
/// A state holds no generator state: every random draw is derived from
/// `(seed, purpose, step, particle)` (see `diffinv_priors::rng`), so that a state saved after
/// step `k` resumes bit-identically.
pub trait SolverState: Clone + Debug + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// The current particles (or chains, or iterates), `(N, d)`.
    fn particles(&self) -> ArrayView2<'_, f32>;
    /// Index of the next step to run.
    fn step(&self) -> usize;
    /// The run's seed.
    fn seed(&self) -> u64;
}

/// `SolverState` for a state struct with the fields `x: Array2<f32>` (the particles),
/// `step: usize` and `seed: u64`.
macro_rules! impl_solver_state {
    ($t:ty) => {
        impl $crate::solver::SolverState for $t {
            fn particles(&self) -> ndarray::ArrayView2<'_, f32> {
                self.x.view()
            }
            fn step(&self) -> usize {
                self.step
            }
            fn seed(&self) -> u64 {
                self.seed
            }
        }
    };
}
pub(crate) use impl_solver_state;

/// The state of the solvers that carry nothing but their particles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Current particles (or chains), `(N, d)`.
    pub x: Array2<f32>,
    /// Index of the next step to run.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

impl State {
    /// `n` particles of pure noise at the top of the schedule, `x = sigma_max z` with `z` drawn
    /// from the seeded per-row streams (the start of every diffusion sampler).
    pub fn initial_noise(n: usize, d: usize, sigma_max: f64, seed: u64) -> Self {
        Self {
            x: diffinv_priors::sampler::initial_noise(n, d, sigma_max, seed),
            step: 0,
            seed,
        }
    }
}

crate::solver::impl_solver_state!(State);

/// The first and second moments of an Adam optimiser (Kingma & Ba 2015) over `(N, d)`
/// parameters, carried in the state of the optimisation-based solvers (RED-diff, DMPlug) so
/// that a saved run resumes exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamMoments {
    /// First moment `m`, `(N, d)`.
    pub m: Array2<f32>,
    /// Second moment `v`, `(N, d)`.
    pub v: Array2<f32>,
}

impl AdamMoments {
    /// Zero moments for parameters of shape `(n, d)`.
    pub fn zeros(n: usize, d: usize) -> Self {
        Self {
            m: Array2::zeros((n, d)),
            v: Array2::zeros((n, d)),
        }
    }
}

/// The state of a solver that optimises its particles with Adam: the parameters `x` and the
/// optimiser's moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// The parameters being optimised, `(N, d)` (RED-diff's mean `mu`, DMPlug's latent).
    pub x: Array2<f32>,
    /// Adam's moments.
    pub adam: AdamMoments,
    /// Index of the next step to run.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

crate::solver::impl_solver_state!(AdamState);

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
///
/// The [`Runner`](crate::Runner) calls, in order: [`requires`](Self::requires) (checked against
/// the problem's [capabilities](crate::Problem::capabilities) before any compute),
/// [`prepare`](Self::prepare) once per problem, [`init`](Self::init) (or a checkpoint's state),
/// [`step`](Self::step) until [`num_steps`](Self::num_steps), and [`finish`](Self::finish).
pub trait Solver: Send + Sync {
    /// The configuration (serde, unknown keys are errors); a checkpoint records it and a resume
    /// with a different one is refused, naming the field.
    type Config: Clone + Debug + Serialize + DeserializeOwned;
    /// What the solver carries from one step to the next.
    type State: SolverState;
    /// What [`prepare`](Self::prepare) computes once per problem (likelihood data, factored
    /// matrices); `()` when nothing.
    type Prepared: Send + Sync + 'static;

    /// Short name (the row label of a results table).
    fn name(&self) -> String;
    /// The configuration the solver was built with.
    fn config(&self) -> &Self::Config;
    /// Number of steps [`step`](Self::step) will be called.
    fn num_steps(&self) -> usize;
    /// What the problem must offer (checked by the runner before [`prepare`](Self::prepare)).
    fn requires(&self) -> Vec<Capability> {
        Vec::new()
    }
    /// Check the configuration against the problem and compute what every step needs, once.
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared>;
    /// The initial state (draws the initial noise).
    fn init(&self, eval: &Evaluator<'_>, prep: &Self::Prepared, seed: u64) -> Result<Self::State>;
    /// Advance `state` by one step; `state.step` is the index of this step on entry and must
    /// be incremented by the solver.
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &Self::Prepared,
        state: &mut Self::State,
    ) -> Result<StepInfo>;
    /// The final samples (default: the state's particles).
    fn finish(
        &self,
        _eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: Self::State,
    ) -> Result<Array2<f32>> {
        Ok(state.particles().to_owned())
    }
}

/// A read-only view of a solver's state for the observers.
#[derive(Debug, Clone, Copy)]
pub struct StateView<'s> {
    /// The particles, `(N, d)`.
    pub particles: ArrayView2<'s, f32>,
    /// Index of the next step.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

/// A solver's state behind [`DynSolver`]: the typed state, erased.
pub struct DynState(Box<dyn ErasedState>);

impl std::fmt::Debug for DynState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.view();
        f.debug_struct("DynState")
            .field("particles", &v.particles.dim())
            .field("step", &v.step)
            .finish()
    }
}

impl DynState {
    /// The observers' view.
    pub fn view(&self) -> StateView<'_> {
        self.0.view()
    }
    /// The typed state, if it is an `S`.
    pub fn downcast_ref<S: SolverState>(&self) -> Option<&S> {
        self.0.as_any().downcast_ref::<S>()
    }
}

trait ErasedState: Send + Sync {
    fn view(&self) -> StateView<'_>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<S: SolverState> ErasedState for S {
    fn view(&self) -> StateView<'_> {
        StateView {
            particles: self.particles(),
            step: SolverState::step(self),
            seed: self.seed(),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// What [`DynSolver::prepare`] computed, erased.
pub struct DynPrepared(Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for DynPrepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynPrepared")
    }
}

/// The object-safe face of every [`Solver`] (a blanket implementation): what the registry, the
/// runner, the command-line program and the Python package hold. States and prepared data are
/// erased; a state or prepared value of another solver is an error, never a panic.
pub trait DynSolver: Send + Sync {
    /// See [`Solver::name`].
    fn name(&self) -> String;
    /// The configuration as a JSON value (what a checkpoint records).
    fn config_value(&self) -> Result<serde_json::Value>;
    /// See [`Solver::num_steps`].
    fn num_steps(&self) -> usize;
    /// See [`Solver::requires`].
    fn requires(&self) -> Vec<Capability>;
    /// See [`Solver::prepare`].
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<DynPrepared>;
    /// See [`Solver::init`].
    fn init(&self, eval: &Evaluator<'_>, prep: &DynPrepared, seed: u64) -> Result<DynState>;
    /// See [`Solver::step`].
    fn step(&self, eval: &Evaluator<'_>, prep: &DynPrepared, state: &mut DynState)
        -> Result<StepInfo>;
    /// See [`Solver::finish`].
    fn finish(&self, eval: &Evaluator<'_>, prep: &DynPrepared, state: DynState)
        -> Result<Array2<f32>>;
    /// Serialise a state (binary, for checkpoints).
    fn encode_state(&self, state: &DynState) -> Result<Vec<u8>>;
    /// Read a state written by [`encode_state`](Self::encode_state).
    fn decode_state(&self, bytes: &[u8]) -> Result<DynState>;
}

fn foreign(name: &str, what: &str) -> SolverError {
    SolverError::Config(format!("{name} was handed a {what} of another solver"))
}

impl<S: Solver> DynSolver for S {
    fn name(&self) -> String {
        Solver::name(self)
    }
    fn config_value(&self) -> Result<serde_json::Value> {
        serde_json::to_value(Solver::config(self))
            .map_err(|e| SolverError::Config(format!("serialising the configuration: {e}")))
    }
    fn num_steps(&self) -> usize {
        Solver::num_steps(self)
    }
    fn requires(&self) -> Vec<Capability> {
        Solver::requires(self)
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<DynPrepared> {
        Ok(DynPrepared(Box::new(Solver::prepare(self, eval)?)))
    }
    fn init(&self, eval: &Evaluator<'_>, prep: &DynPrepared, seed: u64) -> Result<DynState> {
        let p = prep
            .0
            .downcast_ref::<S::Prepared>()
            .ok_or_else(|| foreign(&Solver::name(self), "prepared value"))?;
        Ok(DynState(Box::new(Solver::init(self, eval, p, seed)?)))
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        prep: &DynPrepared,
        state: &mut DynState,
    ) -> Result<StepInfo> {
        let p = prep
            .0
            .downcast_ref::<S::Prepared>()
            .ok_or_else(|| foreign(&Solver::name(self), "prepared value"))?;
        let s = state
            .0
            .as_any_mut()
            .downcast_mut::<S::State>()
            .ok_or_else(|| foreign(&Solver::name(self), "state"))?;
        Solver::step(self, eval, p, s)
    }
    fn finish(
        &self,
        eval: &Evaluator<'_>,
        prep: &DynPrepared,
        state: DynState,
    ) -> Result<Array2<f32>> {
        let p = prep
            .0
            .downcast_ref::<S::Prepared>()
            .ok_or_else(|| foreign(&Solver::name(self), "prepared value"))?;
        let s = state
            .0
            .into_any()
            .downcast::<S::State>()
            .map_err(|_| foreign(&Solver::name(self), "state"))?;
        Solver::finish(self, eval, p, *s)
    }
    fn encode_state(&self, state: &DynState) -> Result<Vec<u8>> {
        let s = state
            .0
            .as_any()
            .downcast_ref::<S::State>()
            .ok_or_else(|| foreign(&Solver::name(self), "state"))?;
        bincode::serialize(s).map_err(|e| SolverError::Config(format!("encoding the state: {e}")))
    }
    fn decode_state(&self, bytes: &[u8]) -> Result<DynState> {
        let s: S::State = bincode::deserialize(bytes).map_err(|e| {
            SolverError::Config(format!(
                "the checkpoint's state is not a state of {}: {e}",
                Solver::name(self)
            ))
        })?;
        Ok(DynState(Box::new(s)))
    }
}

impl std::fmt::Debug for dyn DynSolver + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynSolver")
            .field("name", &self.name())
            .field("steps", &self.num_steps())
            .finish()
    }
}
