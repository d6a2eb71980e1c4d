//! The [`Runner`]: drives a [`Solver`] step by step and owns the observers (progress bar,
//! per-step log) and the cost ledger, like argmin's `Executor`.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::problem::{CostSummary, Evaluator, Problem};
use crate::solver::{Solver, State, StepInfo};
use crate::{Result, SolverError};

/// Watches a run.
pub trait Observer {
    /// Called once before the first step.
    fn on_start(&mut self, _solver: &str, _steps: usize) {}
    /// Called after every step.
    fn on_step(&mut self, _info: &StepInfo, _cost: &CostSummary) {}
    /// Called once after the last step.
    fn on_finish(&mut self, _cost: &CostSummary) {}
}

/// An indicatif progress bar on stderr showing the step, noise level and data misfit
/// (hidden automatically when stderr is not a terminal).
#[derive(Debug, Default)]
pub struct ProgressObserver {
    bar: Option<ProgressBar>,
}

impl Observer for ProgressObserver {
    fn on_start(&mut self, solver: &str, steps: usize) {
        let bar = ProgressBar::new(steps as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(solver.to_string());
        self.bar = Some(bar);
    }
    fn on_step(&mut self, info: &StepInfo, _cost: &CostSummary) {
        if let Some(bar) = &self.bar {
            match info.misfit {
                Some(m) => bar.set_message(format!("sigma {:.3} misfit {:.4}", info.sigma, m)),
                None => bar.set_message(format!("sigma {:.3}", info.sigma)),
            }
            bar.inc(1);
        }
    }
    fn on_finish(&mut self, _cost: &CostSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// What a finished run returns.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The samples, `(N, d)`.
    pub samples: Array2<f32>,
    /// Everything the run spent.
    pub cost: CostSummary,
    /// One entry per step.
    pub log: Vec<StepInfo>,
}

/// What [`Runner::with_checkpoint`] writes after every step: everything needed to continue
/// the run bit-identically (the solvers keep no generator state; every draw is keyed by
/// `(seed, purpose, step, particle)`), plus the cost so far and the step log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The solver's name (a checkpoint of another solver is refused).
    pub solver: String,
    /// The solver's state after the last finished step (it holds the seed).
    pub state: State,
    /// The cost ledger at that point.
    pub cost: CostSummary,
    /// One entry per finished step.
    pub log: Vec<StepInfo>,
}

impl Checkpoint {
    /// Read a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SolverError::Config(format!("reading checkpoint {}: {e}", path.display()))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| SolverError::Config(format!("parsing checkpoint {}: {e}", path.display())))
    }
    /// Write atomically (a temporary file renamed over `path`), so a run killed while writing
    /// leaves the previous checkpoint intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            SolverError::Config(format!("writing checkpoint {}: {e}", path.display()))
        };
        let text = serde_json::to_string(self)
            .map_err(|e| SolverError::Config(format!("serialising checkpoint: {e}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Runs a solver on a problem.
pub struct Runner<'a> {
    problem: Problem<'a>,
    observers: Vec<Box<dyn Observer + 'a>>,
    checkpoint: Option<PathBuf>,
    checkpoint_interval: std::time::Duration,
    max_steps: Option<usize>,
}

impl std::fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("problem", &self.problem)
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl<'a> Runner<'a> {
    /// A runner for `problem` with no observers.
    pub fn new(problem: Problem<'a>) -> Self {
        Self {
            problem,
            observers: Vec::new(),
            checkpoint: None,
            checkpoint_interval: std::time::Duration::ZERO,
            max_steps: None,
        }
    }
    /// Checkpoint to `path` after every step, and resume from it when it exists: a run killed
    /// at any point continues from its last finished step and ends with the same samples as an
    /// uninterrupted run with the same seed (the wall time and the observers' view of the
    /// skipped steps excepted).
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }
    /// Write the checkpoint only when at least `interval` has passed since the last one (and
    /// always when [`stop_after`](Self::stop_after) ends the run early), instead of after every
    /// step: a kill then loses at most `interval` of work, and large states (an EnKG ensemble of
    /// 1024 images is 47 MB of JSON) are not serialised at every cheap step. The result of a
    /// resumed run is unchanged (it continues from whichever step was saved).
    pub fn with_checkpoint_interval(mut self, interval: std::time::Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }
    /// Stop after at most `n` steps in this invocation (what a kill does, made
    /// deterministic for tests): [`run`](Self::run) then [`run_partial`](Self::run_partial) returns `Ok(None)`.
    pub fn stop_after(mut self, n: usize) -> Self {
        self.max_steps = Some(n);
        self
    }
    /// Add an observer.
    pub fn observe(mut self, o: impl Observer + 'a) -> Self {
        self.observers.push(Box::new(o));
        self
    }
    /// Add a progress bar.
    pub fn with_progress(self) -> Self {
        self.observe(ProgressObserver::default())
    }

    /// Validate, initialise and run `solver` to the end with `seed`.
    pub fn run(&mut self, solver: &dyn Solver, seed: u64) -> Result<RunOutput> {
        self.run_partial(solver, seed)?.ok_or_else(|| {
            SolverError::Config("the run was stopped before its last step (stop_after)".into())
        })
    }

    /// Like [`run`](Self::run), but `Ok(None)` when [`stop_after`](Self::stop_after) stopped
    /// the run early (its checkpoint, if any, holds the last finished step).
    pub fn run_partial(&mut self, solver: &dyn Solver, seed: u64) -> Result<Option<RunOutput>> {
        let name = solver.name();
        let resumed = match &self.checkpoint {
            Some(path) if path.exists() => {
                let c = Checkpoint::load(path)?;
                if c.solver != name || c.state.seed != seed {
                    return Err(SolverError::Config(format!(
                        "checkpoint {} is of {} with seed {}, not {name} with seed {seed}",
                        path.display(),
                        c.solver,
                        c.state.seed
                    )));
                }
                Some(c)
            }
            _ => None,
        };
        let (eval, mut state, mut log) = match resumed {
            Some(c) => {
                let eval = Evaluator::resuming(self.problem, c.cost);
                solver.validate(&eval)?;
                (eval, c.state, c.log)
            }
            None => {
                let eval = Evaluator::new(self.problem);
                solver.validate(&eval)?;
                let state = solver.init(&eval, seed)?;
                (eval, state, Vec::new())
            }
        };
        let steps = solver.num_steps();
        for o in &mut self.observers {
            o.on_start(&name, steps);
        }
        let mut done_here = 0usize;
        let mut last_save = std::time::Instant::now();
        let mut unsaved = false;
        while state.step < steps {
            if self.max_steps.is_some_and(|m| done_here >= m) {
                if let (Some(path), true) = (&self.checkpoint, unsaved) {
                    Checkpoint {
                        solver: name.clone(),
                        state: state.clone(),
                        cost: eval.cost(),
                        log: log.clone(),
                    }
                    .save(path)?;
                }
                return Ok(None);
            }
            done_here += 1;
            let before = state.step;
            let info = solver.step(&eval, &mut state)?;
            if state.step != before + 1 {
                return Err(SolverError::Config(format!(
                    "solver {name} did not advance its step counter at step {before}"
                )));
            }
            let cost = eval.cost();
            for o in &mut self.observers {
                o.on_step(&info, &cost);
            }
            log.push(info);
            if let Some(path) = &self.checkpoint {
                if last_save.elapsed() >= self.checkpoint_interval {
                    Checkpoint {
                        solver: name.clone(),
                        state: state.clone(),
                        cost,
                        log: log.clone(),
                    }
                    .save(path)?;
                    last_save = std::time::Instant::now();
                    unsaved = false;
                } else {
                    unsaved = true;
                }
            }
        }
        let samples = solver.finish(&eval, state)?;
        let cost = eval.cost();
        for o in &mut self.observers {
            o.on_finish(&cost);
        }
        Ok(Some(RunOutput { samples, cost, log }))
    }
}
