//! The [`Runner`]: drives a [`Solver`] step by step and owns the observers (progress bar,
//! per-step log) and the cost ledger, like argmin's `Executor`.

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use crate::problem::{CostSummary, Evaluator, Problem};
use crate::solver::{Solver, StepInfo};
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

/// Runs a solver on a problem.
pub struct Runner<'a> {
    problem: Problem<'a>,
    observers: Vec<Box<dyn Observer + 'a>>,
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
        }
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
        let eval = Evaluator::new(self.problem);
        solver.validate(&eval)?;
        let mut state = solver.init(&eval, seed)?;
        let steps = solver.num_steps();
        let name = solver.name();
        for o in &mut self.observers {
            o.on_start(&name, steps);
        }
        let mut log = Vec::with_capacity(steps);
        while state.step < steps {
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
        }
        let samples = solver.finish(&eval, state)?;
        let cost = eval.cost();
        for o in &mut self.observers {
            o.on_finish(&cost);
        }
        Ok(RunOutput { samples, cost, log })
    }
}
