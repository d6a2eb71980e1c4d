//! The [`Runner`]: drives a [`Solver`](crate::Solver) step by step and owns the observers (progress bar,
//! per-step log) and the cost ledger, like argmin's `Executor`.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::problem::{CostSummary, Evaluator, Problem};
use crate::solver::{DynSolver, DynState, StateView, StepInfo};
use crate::{Result, SolverError};

/// Watches a run. Observers see the step's report, a read-only view of the solver's state and
/// the cost so far; they cannot change the run.
pub trait Observer {
    /// Called once before the first step.
    fn on_start(&mut self, _solver: &str, _steps: usize) {}
    /// Called after every step.
    fn on_step(&mut self, _info: &StepInfo, _state: StateView<'_>, _cost: &CostSummary) {}
    /// Called once after the last step.
    fn on_finish(&mut self, _cost: &CostSummary) {}
}

/// An observer lent to a runner (so that the caller reads it afterwards).
impl<O: Observer + ?Sized> Observer for &mut O {
    fn on_start(&mut self, solver: &str, steps: usize) {
        (**self).on_start(solver, steps)
    }
    fn on_step(&mut self, info: &StepInfo, state: StateView<'_>, cost: &CostSummary) {
        (**self).on_step(info, state, cost)
    }
    fn on_finish(&mut self, cost: &CostSummary) {
        (**self).on_finish(cost)
    }
}

/// Keeps every step's report with the cost after it: the per-step log of a run, for tables
/// and plots (the runner's [`RunOutput::log`] holds the reports alone).
#[derive(Debug, Default, Clone)]
pub struct StepLog {
    /// `(report, cost after the step, spread of the particles)` for every step, where the
    /// spread is the root-mean-square distance of the particles to their mean.
    pub entries: Vec<(StepInfo, CostSummary, f64)>,
}

impl Observer for StepLog {
    fn on_step(&mut self, info: &StepInfo, state: StateView<'_>, cost: &CostSummary) {
        let x = state.particles;
        let spread = if x.nrows() > 1 {
            let mean = x.mean_axis(ndarray::Axis(0));
            let ss: f64 = x
                .outer_iter()
                .map(|r| {
                    r.iter()
                        .zip(mean.iter().flatten())
                        .map(|(a, b)| ((*a - *b) as f64).powi(2))
                        .sum::<f64>()
                })
                .sum();
            (ss / x.nrows() as f64).sqrt()
        } else {
            0.0
        };
        self.entries.push((info.clone(), *cost, spread));
    }
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
    fn on_step(&mut self, info: &StepInfo, _state: StateView<'_>, _cost: &CostSummary) {
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

/// The shapes of the problem a checkpoint was written for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemShape {
    /// Shape of one unknown (the forward model's input shape).
    pub input_shape: Vec<usize>,
    /// Shape of one measurement.
    pub output_shape: Vec<usize>,
}

impl ProblemShape {
    /// The shapes of `problem`.
    pub fn of(problem: &Problem<'_>) -> Self {
        Self {
            input_shape: problem.forward.input_shape(),
            output_shape: problem.forward.output_shape(),
        }
    }
}

/// What [`Runner::with_checkpoint`] writes: everything needed to continue the run
/// bit-identically (the solvers keep no generator state; every draw is keyed by
/// `(seed, purpose, step, particle)`), and what it belongs to (the solver's name, its full
/// configuration, the problem's shapes and the seed), so that resuming another run is an error
/// naming what differs instead of a silent continuation.
///
/// On disk: the 16-byte magic `DIFFINV-CKPT-v2\n`, the length of a JSON header (8 bytes, little
/// endian), the header (everything but the state) and the solver's state in bincode (raw
/// little-endian floats: 4 bytes a value, against ~11 in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The solver's name.
    pub solver: String,
    /// The solver's configuration.
    pub config: serde_json::Value,
    /// The problem's shapes.
    pub problem: ProblemShape,
    /// The run's seed.
    pub seed: u64,
    /// Index of the next step to run.
    pub step: usize,
    /// The cost ledger at that point.
    pub cost: CostSummary,
    /// One entry per finished step.
    pub log: Vec<StepInfo>,
    /// The solver's state, encoded by [`DynSolver::encode_state`].
    #[serde(skip)]
    pub state: Vec<u8>,
}

const MAGIC: &[u8; 16] = b"DIFFINV-CKPT-v2\n";

impl Checkpoint {
    /// Read a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| {
            SolverError::Config(format!("reading checkpoint {}: {why}", path.display()))
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if bytes.len() < 24 || &bytes[..16] != MAGIC {
            return Err(bad("not a diffinv checkpoint (wrong magic bytes)".into()));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[16..24]);
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| bad(e.to_string()))?;
        let end = 24usize
            .checked_add(len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("truncated header".into()))?;
        let mut c: Checkpoint =
            serde_json::from_slice(&bytes[24..end]).map_err(|e| bad(e.to_string()))?;
        c.state = bytes[end..].to_vec();
        Ok(c)
    }
    /// Write atomically (a temporary file, synced to the disk, renamed over `path`), so a run
    /// killed while writing leaves the previous checkpoint intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            SolverError::Config(format!("writing checkpoint {}: {e}", path.display()))
        };
        let header = serde_json::to_vec(self)
            .map_err(|e| SolverError::Config(format!("serialising checkpoint: {e}")))?;
        let mut bytes = Vec::with_capacity(24 + header.len() + self.state.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&self.state);
        // `PATH.tmp`, flushed to the disk (fsync) and renamed over `path`: a kill, or a lost
        // node, at any moment leaves either the previous checkpoint or this one, whole.
        diffinv_operators::npy::write_atomic_bytes(path, &bytes)
            .map_err(|e| io(std::io::Error::other(e.to_string())))
    }
    /// `Ok` when this checkpoint belongs to `solver` run with `seed` on a problem of `shape`;
    /// else an error naming the first field that differs.
    pub fn check_matches(
        &self,
        path: &Path,
        solver: &dyn DynSolver,
        seed: u64,
        shape: &ProblemShape,
    ) -> Result<()> {
        let refuse = |what: String| {
            SolverError::Config(format!(
                "checkpoint {} belongs to another run: {what} (delete it to start afresh)",
                path.display()
            ))
        };
        let name = solver.name();
        if self.solver != name {
            return Err(refuse(format!(
                "solver: checkpoint {:?}, this run {name:?}",
                self.solver
            )));
        }
        if self.seed != seed {
            return Err(refuse(format!(
                "seed: checkpoint {}, this run {seed}",
                self.seed
            )));
        }
        if let Some((field, was, now)) = first_difference("config", &self.config, &solver.config_value()?) {
            return Err(refuse(format!("{field}: checkpoint {was}, this run {now}")));
        }
        if &self.problem != shape {
            return Err(refuse(format!(
                "problem shapes: checkpoint {:?} -> {:?}, this run {:?} -> {:?}",
                self.problem.input_shape,
                self.problem.output_shape,
                shape.input_shape,
                shape.output_shape
            )));
        }
        Ok(())
    }
}

/// The first path at which two JSON values differ, with both values (`"-"` when absent).
fn first_difference(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(&p, u, v),
                    (u, v) => Some((
                        p,
                        u.map_or("-".into(), |u| u.to_string()),
                        v.map_or("-".into(), |v| v.to_string()),
                    )),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(&format!("{path}[{i}]"), u, v)),
        _ if a == b => None,
        _ => Some((path.to_string(), a.to_string(), b.to_string())),
    }
}

/// Runs a solver on a problem.
pub struct Runner<'a> {
    problem: Problem<'a>,
    observers: Vec<Box<dyn Observer + 'a>>,
    checkpoint: Option<PathBuf>,
    checkpoint_interval: std::time::Duration,
    max_steps: Option<usize>,
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    checkpoint_writer: bool,
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
            cancel: None,
            checkpoint_writer: true,
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
    /// Whether this runner writes the checkpoint of [`with_checkpoint`](Self::with_checkpoint)
    /// (default `true`). With `false` it still resumes from the file when it exists, but never
    /// writes it: the runners of the ranks of an MPI job (diffinv-mpi) step the same solver with
    /// the same seed and hold the same state, so one rank writes the checkpoint that every rank
    /// resumes from.
    pub fn with_checkpoint_writer(mut self, write: bool) -> Self {
        self.checkpoint_writer = write;
        self
    }
    /// Stop after at most `n` steps in this invocation (what a kill does, made
    /// deterministic for tests): [`run`](Self::run) then [`run_partial`](Self::run_partial) returns `Ok(None)`.
    pub fn stop_after(mut self, n: usize) -> Self {
        self.max_steps = Some(n);
        self
    }
    /// Stop the run when `flag` becomes true (set it from a Ctrl-C or SIGTERM handler). The
    /// runner looks at it before every step: it then writes the checkpoint if the last finished
    /// step is not saved yet and returns [`SolverError::Interrupted`]. A forward model that
    /// watches the same flag (diffinv-process's worker pool does) abandons its batch at once
    /// with [`OperatorError::Interrupted`](diffinv_operators::OperatorError::Interrupted),
    /// which also ends the run as `Interrupted`; the step it was in is then not finished and
    /// not saved, so pair the flag with a checkpoint saved after every step (the default
    /// interval) to lose nothing: `--resume` redoes only the interrupted step and ends with the
    /// same samples as an uninterrupted run.
    pub fn with_cancel(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.cancel = Some(flag);
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

    /// Check the solver's requirements, prepare, initialise and run `solver` to the end with
    /// `seed`.
    pub fn run(&mut self, solver: &dyn DynSolver, seed: u64) -> Result<RunOutput> {
        self.run_partial(solver, seed)?.ok_or_else(|| {
            SolverError::Config("the run was stopped before its last step (stop_after)".into())
        })
    }

    /// Like [`run`](Self::run), but `Ok(None)` when [`stop_after`](Self::stop_after) stopped
    /// the run early (its checkpoint, if any, holds the last finished step).
    pub fn run_partial(&mut self, solver: &dyn DynSolver, seed: u64) -> Result<Option<RunOutput>> {
        let name = solver.name();
        self.problem.check(&name, &solver.requires())?;
        let shape = ProblemShape::of(&self.problem);
        let resumed = match &self.checkpoint {
            Some(path) if path.exists() => {
                let c = Checkpoint::load(path)?;
                c.check_matches(path, solver, seed, &shape)?;
                Some(c)
            }
            _ => None,
        };
        let (eval, prep, mut state, mut log) = match resumed {
            Some(c) => {
                let eval = Evaluator::resuming(self.problem, c.cost);
                let prep = solver.prepare(&eval)?;
                let state = solver.decode_state(&c.state)?;
                if state.view().step != c.step {
                    return Err(SolverError::Config(format!(
                        "checkpoint of {name}: its state is at step {} but its header says {}",
                        state.view().step,
                        c.step
                    )));
                }
                (eval, prep, state, c.log)
            }
            None => {
                let eval = Evaluator::new(self.problem);
                let prep = solver.prepare(&eval)?;
                let state = solver.init(&eval, &prep, seed)?;
                (eval, prep, state, Vec::new())
            }
        };
        let config = match &self.checkpoint {
            Some(_) => solver.config_value()?,
            None => serde_json::Value::Null,
        };
        let writer = self.checkpoint_writer;
        let save = |path: &Path, state: &DynState, log: &[StepInfo], cost: CostSummary| {
            if !writer {
                return Ok(());
            }
            Checkpoint {
                solver: name.clone(),
                config: config.clone(),
                problem: shape.clone(),
                seed,
                step: state.view().step,
                cost,
                log: log.to_vec(),
                state: solver.encode_state(state)?,
            }
            .save(path)
        };
        let steps = solver.num_steps();
        for o in &mut self.observers {
            o.on_start(&name, steps);
        }
        let mut done_here = 0usize;
        let mut last_save = std::time::Instant::now();
        let mut unsaved = false;
        while state.view().step < steps {
            if self.max_steps.is_some_and(|m| done_here >= m) {
                if let (Some(path), true) = (&self.checkpoint, unsaved) {
                    save(path, &state, &log, eval.cost())?;
                }
                return Ok(None);
            }
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            {
                if let (Some(path), true) = (&self.checkpoint, unsaved) {
                    save(path, &state, &log, eval.cost())?;
                }
                return Err(SolverError::Interrupted {
                    step: state.view().step,
                });
            }
            done_here += 1;
            let before = state.view().step;
            let info = solver.step(&eval, &prep, &mut state)?;
            if state.view().step != before + 1 {
                return Err(SolverError::Config(format!(
                    "solver {name} did not advance its step counter at step {before}"
                )));
            }
            let cost = eval.cost();
            for o in &mut self.observers {
                o.on_step(&info, state.view(), &cost);
            }
            log.push(info);
            if let Some(path) = &self.checkpoint {
                if last_save.elapsed() >= self.checkpoint_interval {
                    save(path, &state, &log, cost)?;
                    last_save = std::time::Instant::now();
                    unsaved = false;
                } else {
                    unsaved = true;
                }
            }
        }
        let samples = solver.finish(&eval, &prep, state)?;
        let cost = eval.cost();
        for o in &mut self.observers {
            o.on_finish(&cost);
        }
        Ok(Some(RunOutput { samples, cost, log }))
    }
}
