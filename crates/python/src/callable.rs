//! A Python callable as a forward model.
//!
//! [`PyForward`] implements [`ForwardModel`] for any callable `f(x) -> y` mapping an `(n, d)`
//! float32 array to an `(n, m)` array. The solver runs with the GIL released; `forward_partial`
//! takes the GIL once per batch (one call per ensemble batch, never one per row), hands the
//! callable a fresh C-contiguous float32 array and checks what comes back:
//!
//! - any real dtype is accepted and converted to float32; a shape other than `(n, m)` is a
//!   broken contract and stops the run with a `ValueError` naming both shapes;
//! - a row holding NaN or inf is a failed sample (the solvers' failure policy:
//!   `Evaluator::forward_robust` excludes it from that step's statistics);
//! - an exception stops the run by default: it is stored, the solver sees
//!   [`OperatorError::Stopped`], and `solve` re-raises the original exception with its
//!   traceback. With `on_error="fail-rows"` it fails that batch's rows instead (the run goes on
//!   while some rows of each block survive);
//! - when the run's cancel flag is set (Ctrl-C), the next call returns
//!   [`OperatorError::Interrupted`] without calling Python.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use diffinv_operators::{BatchOutput, ForwardModel, OperatorError, SampleFailure};
use ndarray::{Array2, ArrayView2};
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{f32_array, shape_str};

/// What an exception raised by the callable does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the run and re-raise the exception (the default).
    Raise,
    /// Fail every row of the batch; the solver's failure policy decides what happens next.
    FailRows,
}

/// A Python callable as a [`ForwardModel`]; see the module documentation.
pub struct PyForward {
    func: Py<PyAny>,
    input_shape: Vec<usize>,
    m: usize,
    on_error: OnError,
    cancel: Arc<AtomicBool>,
    error: Mutex<Option<PyErr>>,
}

impl PyForward {
    /// Wrap `func` for inputs of shape `input_shape` (flattened to `d` values per row) and
    /// measurements of `m` values.
    pub fn new(
        func: Py<PyAny>,
        input_shape: Vec<usize>,
        m: usize,
        on_error: OnError,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        Self {
            func,
            input_shape,
            m,
            on_error,
            cancel,
            error: Mutex::new(None),
        }
    }

    /// The exception that stopped the run, if any (taken: a second call returns `None`).
    pub fn take_error(&self) -> Option<PyErr> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn has_error(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Keep the first exception; the run then stops.
    fn stop(&self, err: PyErr, what: String) -> OperatorError {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(err);
        }
        OperatorError::Stopped(what)
    }

    fn call(&self, py: Python<'_>, x: ArrayView2<'_, f32>) -> Result<BatchOutput, OperatorError> {
        let n = x.nrows();
        let arr = x.as_standard_layout().into_owned().into_pyarray(py);
        let out = match self.func.bind(py).call1((arr,)) {
            Ok(out) => out,
            Err(e) => {
                let what = format!("the Python forward model raised {}", describe(py, &e));
                return match self.on_error {
                    OnError::Raise => Err(self.stop(e, what)),
                    OnError::FailRows => Ok(BatchOutput {
                        y: Array2::from_elem((n, self.m), f32::NAN),
                        failures: (0..n)
                            .map(|row| SampleFailure {
                                row,
                                reason: what.clone(),
                            })
                            .collect(),
                    }),
                };
            }
        };
        let y = match f32_array(&out, "the forward model's output") {
            Ok(y) => y,
            Err(e) => {
                let what = format!("the Python forward model returned an unusable value: {}", describe(py, &e));
                return Err(self.stop(e, what));
            }
        };
        if y.shape() != [n, self.m] {
            let msg = format!(
                "the forward model returned an array of shape {} for an input of shape {}; expected {} \
                 ({} = the length of the measurement y)",
                shape_str(y.shape()),
                shape_str(&[n, x.ncols()]),
                shape_str(&[n, self.m]),
                self.m
            );
            return Err(self.stop(PyValueError::new_err(msg.clone()), msg));
        }
        let y: Array2<f32> = y
            .into_dimensionality()
            .map_err(|e| OperatorError::Stopped(e.to_string()))?;
        let failures = y
            .outer_iter()
            .enumerate()
            .filter(|(_, r)| r.iter().any(|v| !v.is_finite()))
            .map(|(row, _)| SampleFailure {
                row,
                reason: "the Python forward model returned NaN or inf".into(),
            })
            .collect();
        Ok(BatchOutput { y, failures })
    }
}

/// `TypeName: message` of an exception.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let name = e
        .get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an exception".into());
    format!("{name}: {}", e.value(py))
}

impl ForwardModel for PyForward {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.m]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        let out = self.forward_partial(x)?;
        match out.failures.into_iter().next() {
            Some(SampleFailure { row, reason }) => Err(OperatorError::SampleFailed { row, reason }),
            None => Ok(out.y),
        }
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<BatchOutput> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(OperatorError::Interrupted);
        }
        if self.has_error() {
            return Err(OperatorError::Stopped(
                "the Python forward model raised earlier in this run".into(),
            ));
        }
        let d: usize = self.input_shape.iter().product();
        if x.ncols() != d {
            return Err(OperatorError::Shape {
                what: "forward input",
                expected: d,
                got: x.ncols(),
            });
        }
        Python::with_gil(|py| self.call(py, x))
    }
}
