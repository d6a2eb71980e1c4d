//! Rust errors to Python exceptions, and the guard that keeps panics on the Rust side.
//!
//! diffinv's own exceptions are defined in Python (`diffinv/_errors.py`) so that they can
//! inherit from both `DiffinvError` and the built-in a user expects: `ConfigError` and
//! `ProblemError` are `ValueError`s, `SolverError` a `RuntimeError`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use diffinv_metrics::MetricError;
use diffinv_operators::OperatorError;
use diffinv_priors::PriorError;
use diffinv_solvers::SolverError;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyNotImplementedError, PyRuntimeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// One of the exceptions of `diffinv/_errors.py`.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `ConfigError` (a `ValueError`).
    Config,
    /// `ProblemError` (a `ValueError`).
    Problem,
    /// `SolverError` (a `RuntimeError`).
    Solver,
}

/// Raise `kind` with `msg`. Falls back to the built-in base class when the pure-Python half of
/// the package is not importable (the extension module used on its own).
pub fn raise(kind: Kind, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    let name = match kind {
        Kind::Config => "ConfigError",
        Kind::Problem => "ProblemError",
        Kind::Solver => "SolverError",
    };
    Python::with_gil(|py| {
        let ty = py
            .import("diffinv._errors")
            .and_then(|m| m.getattr(name))
            .and_then(|t| t.downcast_into::<PyType>().map_err(PyErr::from));
        match (ty, kind) {
            (Ok(t), _) => PyErr::from_type(t, msg),
            (Err(_), Kind::Solver) => PyRuntimeError::new_err(msg),
            (Err(_), _) => PyValueError::new_err(msg),
        }
    })
}

/// A solver error as the exception a Python user expects.
pub fn solver_err(e: SolverError) -> PyErr {
    match e {
        SolverError::Config(_) => raise(Kind::Config, e.to_string()),
        SolverError::Problem(_) => raise(Kind::Problem, e.to_string()),
        SolverError::Interrupted { .. } => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => raise(Kind::Solver, e.to_string()),
    }
}

/// An operator error: bad input is a `ValueError`, a model that stopped a `RuntimeError`.
pub fn operator_err(e: OperatorError) -> PyErr {
    match e {
        OperatorError::Unsupported(_) => PyNotImplementedError::new_err(e.to_string()),
        OperatorError::Stopped(_) | OperatorError::SampleFailed { .. } => {
            PyRuntimeError::new_err(e.to_string())
        }
        OperatorError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A prior error: a missing file is `FileNotFoundError`, a libtorch failure `RuntimeError`,
/// everything else (shapes, parameters, non-finite input) `ValueError`.
pub fn prior_err(e: PriorError) -> PyErr {
    match &e {
        PriorError::Load { path, .. } if !Path::new(path).exists() => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        PriorError::Backend(_) => PyRuntimeError::new_err(e.to_string()),
        PriorError::Unsupported(_) => PyNotImplementedError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A metric error (shapes, empty input, bad parameter) is a `ValueError`.
pub fn metric_err(e: MetricError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Run `f`, turning a panic into a `RuntimeError` instead of letting it unwind into the
/// interpreter. Every long computation of the module runs under it.
pub fn no_panic<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_err(payload)))
}

/// The exception for a caught panic's payload.
pub fn panic_err(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    PyRuntimeError::new_err(format!(
        "internal error in diffinv (a bug, please report it): {msg}"
    ))
}
