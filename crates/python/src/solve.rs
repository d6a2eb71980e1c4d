//! `solve` and `methods`: the one method registry (`diffinv_solvers::registry`) from Python.
//!
//! A run goes on a worker thread with the GIL released; the calling thread waits in slices of
//! 50 ms (GIL released) and checks for signals between them. Ctrl-C sets the runner's cancel
//! flag ([`Runner::with_cancel`]): the run stops before its next step, or at the next call of a
//! Python forward model, and `solve` raises `KeyboardInterrupt`. A Python forward model runs on
//! the worker thread and takes the GIL only for its call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use diffinv_operators::{Affine, ForwardModel, OperatorError};
use diffinv_solvers::{registry, Problem, RunOutput, Runner, SolverError, StepLog};
use numpy::IntoPyArray;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::callable::{OnError, PyForward};
use crate::convert::json_to_py;
use crate::errors::{operator_err, panic_err, raise, solver_err, Kind};
use crate::likelihoods::Likelihood;
use crate::operators::Operator;
use crate::priors::Prior;

/// Register `methods` and `_solve`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(methods, m)?)?;
    m.add_function(wrap_pyfunction!(_solve, m)?)?;
    Ok(())
}

/// Every method of the registry, in its fixed order (derivative-free first), as dictionaries
/// with `name`, `summary` (what it is, its paper and arXiv id), `family` (`derivative-free`,
/// `gradient-based`, `classical`, `baseline`), `defaults` (every configuration key with its
/// default value) and `requires` (the capabilities it needs of a problem: `gradient`,
/// `linear`, `gaussian-likelihood`).
#[pyfunction]
fn methods(py: Python<'_>) -> PyResult<Vec<PyObject>> {
    registry::registry()
        .iter()
        .map(|m| {
            let d = PyDict::new(py);
            d.set_item("name", m.name)?;
            d.set_item("summary", m.summary)?;
            let family = serde_json::to_value(m.family)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            d.set_item("family", family)?;
            d.set_item("defaults", json_to_py(py, m.default_config())?)?;
            let req: Vec<&str> = m.requires().iter().map(|c| c.name()).collect();
            d.set_item("requires", req)?;
            Ok(d.into_any().unbind())
        })
        .collect()
}

/// Why a run on the worker thread ended without samples.
enum RunError {
    Solver(SolverError),
    Operator(OperatorError),
}

type RunResult = Result<(RunOutput, StepLog), RunError>;

/// The forward model of a run: a built-in operator, or a Python callable.
enum Forward {
    Builtin(Arc<dyn ForwardModel>),
    Python(PyForward),
}

/// Run `method` on the problem (prior, forward, likelihood) with `seed`; the implementation of
/// `diffinv.solve` (which documents it). Returns `(samples, cost, steps, config)`.
#[pyfunction]
#[pyo3(signature = (method, prior, forward, likelihood, seed, progress, on_error, config_json))]
#[allow(clippy::too_many_arguments)]
fn _solve<'py>(
    py: Python<'py>,
    method: &str,
    prior: &Bound<'py, Prior>,
    forward: &Bound<'py, PyAny>,
    likelihood: &Bound<'py, Likelihood>,
    seed: u64,
    progress: bool,
    on_error: &str,
    config_json: &str,
) -> PyResult<(PyObject, PyObject, PyObject, PyObject)> {
    let on_error = match on_error {
        "raise" => OnError::Raise,
        "fail-rows" => OnError::FailRows,
        other => {
            return Err(PyValueError::new_err(format!(
                "on_error must be \"raise\" or \"fail-rows\", got {other:?}"
            )))
        }
    };
    let config: serde_json::Value = serde_json::from_str(config_json)
        .map_err(|e| raise(Kind::Config, format!("the configuration is not valid JSON: {e}")))?;
    let solver = registry::build(method, &config).map_err(solver_err)?;
    let full_config = solver.config_value().map_err(solver_err)?;

    let p = prior.get();
    let den = p.inner.clone();
    let (shift, scale, normalised) = (p.shift, p.scale, p.normalised());
    let lik = likelihood.get().inner.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let fwd = if let Ok(op) = forward.downcast::<Operator>() {
        Forward::Builtin(op.get().inner.clone())
    } else if forward.is_callable() {
        Forward::Python(PyForward::new(
            forward.clone().unbind(),
            p.shape.clone(),
            lik.measurement_dim(),
            on_error,
            cancel.clone(),
        ))
    } else {
        return Err(PyTypeError::new_err(format!(
            "forward must be a diffinv operator or a callable mapping an (n, d) float32 array to an (n, m) array, got {}",
            forward.get_type().qualname()?
        )));
    };

    let run = || -> RunResult {
        let g: &dyn ForwardModel = match &fwd {
            Forward::Builtin(op) => op.as_ref(),
            Forward::Python(f) => f,
        };
        let affine;
        let g: &dyn ForwardModel = if normalised {
            affine = Affine::new(g, scale, shift).map_err(RunError::Operator)?;
            &affine
        } else {
            g
        };
        let problem = Problem::new(den.as_ref(), g, lik.as_ref()).map_err(RunError::Solver)?;
        let mut log = StepLog::default();
        let mut runner = Runner::new(problem).with_cancel(cancel.clone()).observe(&mut log);
        if progress {
            runner = runner.with_progress();
        }
        let out = runner.run(solver.as_ref(), seed).map_err(RunError::Solver);
        drop(runner);
        out.map(|o| (o, log))
    };

    let (outcome, interrupt) = run_interruptibly(py, &cancel, run);

    // The callable's own exception wins: it is what the user needs to see, with its traceback.
    if let Forward::Python(f) = &fwd {
        if let Some(err) = f.take_error() {
            let step = match &outcome {
                Ok(Err(RunError::Solver(SolverError::Forward { step, .. }))) => format!(" at step {step}"),
                _ => String::new(),
            };
            let note = format!("raised by the forward model called by {}{step} (diffinv.solve)", solver.name());
            let _ = err.value(py).call_method1("add_note", (note,));
            return Err(err);
        }
    }
    if let Some(k) = interrupt {
        return Err(k);
    }
    let (out, log) = match outcome {
        Err(payload) => return Err(panic_err(payload)),
        Ok(Err(RunError::Solver(e))) => return Err(solver_err(e)),
        Ok(Err(RunError::Operator(e))) => return Err(operator_err(e)),
        Ok(Ok(v)) => v,
    };
    let mut samples = out.samples;
    if normalised {
        samples.mapv_inplace(|z| scale * z + shift);
    }
    let samples = samples.into_pyarray(py).into_any().unbind();
    let cost = cost_dict(py, &out.cost)?;
    let steps = PyList::empty(py);
    for (info, c, spread) in &log.entries {
        let d = PyDict::new(py);
        d.set_item("step", info.step)?;
        d.set_item("sigma", info.sigma)?;
        d.set_item("guided", info.guided)?;
        d.set_item("misfit", info.misfit)?;
        d.set_item("spread", *spread)?;
        d.set_item("fwd_total", c.fwd_total)?;
        d.set_item("den_total", c.den_total)?;
        d.set_item("failed", c.failed)?;
        d.set_item("seconds", c.seconds)?;
        steps.append(d)?;
    }
    let config = json_to_py(py, &full_config)?;
    Ok((samples, cost, steps.into_any().unbind(), config))
}

fn cost_dict(py: Python<'_>, c: &diffinv_solvers::CostSummary) -> PyResult<PyObject> {
    let v = serde_json::to_value(c)
        .map_err(|e| PyValueError::new_err(format!("serialising the cost: {e}")))?;
    let d = json_to_py(py, &v)?;
    d.bind(py).set_item("overhead_seconds", c.overhead_seconds())?;
    Ok(d)
}

/// Run `work` on a scoped worker thread while this thread waits with the GIL released, checking
/// for signals every 50 ms. The first `KeyboardInterrupt` (or other signal exception) sets
/// `cancel` and is returned once the worker has stopped. A panic on the worker is returned as
/// its payload.
fn run_interruptibly<T: Send>(
    py: Python<'_>,
    cancel: &AtomicBool,
    work: impl FnOnce() -> T + Send,
) -> (std::thread::Result<T>, Option<PyErr>) {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let mut interrupt: Option<PyErr> = None;
    let outcome = std::thread::scope(|s| {
        let handle = s.spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(work));
            let _ = tx.send(());
            r
        });
        loop {
            let done = py.allow_threads(|| {
                let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
                !matches!(
                    rx.recv_timeout(Duration::from_millis(50)),
                    Err(mpsc::RecvTimeoutError::Timeout)
                )
            });
            if done {
                break;
            }
            if let Err(e) = py.check_signals() {
                cancel.store(true, Ordering::SeqCst);
                if interrupt.is_none() {
                    interrupt = Some(e);
                }
            }
        }
        py.allow_threads(move || handle.join())
            .and_then(|r| r)
    });
    (outcome, interrupt)
}

