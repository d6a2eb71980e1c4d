//! Conversions at the boundary: array-likes to owned `ndarray`s (one documented rule for every
//! argument), shape checks with messages that name the argument and both shapes, and JSON
//! values to Python objects.

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use numpy::{Element, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// `numpy.asarray(obj)` checked to hold real numbers, then `numpy.asarray(.., dtype, order="C")`
/// (a copy only when `obj` is not already a C-contiguous array of that dtype).
fn numeric_array<'py>(obj: &Bound<'py, PyAny>, what: &str, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,)).map_err(|e| {
        PyValueError::new_err(format!("{what}: cannot be read as an array ({e})"))
    })?;
    let dt = arr.getattr("dtype")?;
    let kind: String = dt.getattr("kind")?.extract()?;
    if !matches!(kind.as_str(), "f" | "i" | "u" | "b") {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an array of real numbers (float, int or bool), got dtype {}",
            dt.str()?
        )));
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    kwargs.set_item("order", "C")?;
    np.call_method("asarray", (arr,), Some(&kwargs))
}

/// Any array-like of real numbers as an owned `T` array (`dtype` is numpy's name of `T`).
fn owned<T: Element + Copy>(obj: &Bound<'_, PyAny>, what: &str, dtype: &str) -> PyResult<ArrayD<T>> {
    let a = numeric_array(obj, what, dtype)?;
    let a = a
        .downcast_into::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{what}: numpy did not return a {dtype} array")))?;
    let ro = a.readonly();
    Ok(ro.as_array().to_owned())
}

/// Any array-like of real numbers as an owned float32 array (of any shape).
pub fn f32_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayD<f32>> {
    owned::<f32>(obj, what, "float32")
}

/// Any array-like of real numbers as an owned float64 array (of any shape).
pub fn f64_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayD<f64>> {
    owned::<f64>(obj, what, "float64")
}

/// `(2, 3)`-style rendering of a shape, as numpy prints it.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A 1-D array of length `len` (when given): `ValueError` naming `what` and both shapes.
pub fn vector<T: Clone>(a: ArrayD<T>, what: &str, len: Option<usize>) -> PyResult<Array1<T>> {
    let shape = a.shape().to_vec();
    let ok = shape.len() == 1 && len.is_none_or(|l| shape[0] == l);
    if !ok {
        let want = len.map_or("(n,)".to_string(), |l| format!("({l},)"));
        return Err(PyValueError::new_err(format!(
            "{what} must have shape {want}, got {}",
            shape_str(&shape)
        )));
    }
    a.into_dimensionality().map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// A 2-D array with `cols` columns (when given): `ValueError` naming `what` and both shapes.
pub fn matrix<T: Clone>(a: ArrayD<T>, what: &str, cols: Option<usize>) -> PyResult<Array2<T>> {
    let shape = a.shape().to_vec();
    let ok = shape.len() == 2 && cols.is_none_or(|c| shape[1] == c);
    if !ok {
        let want = cols.map_or("(n, d)".to_string(), |c| format!("(n, {c})"));
        return Err(PyValueError::new_err(format!(
            "{what} must have shape {want}, got {}",
            shape_str(&shape)
        )));
    }
    a.into_dimensionality().map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// `ValueError` when `a` holds a NaN or an infinity, naming `what` and the first index.
pub fn check_finite(a: &ArrayD<f32>, what: &str) -> PyResult<()> {
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        let idx = unravel(i, a.shape());
        return Err(PyValueError::new_err(format!(
            "{what} contains NaN or inf (first at index {})",
            shape_str(&idx)
        )));
    }
    Ok(())
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, s) in shape.iter().enumerate().rev() {
        let s = (*s).max(1);
        idx[k] = i % s;
        i /= s;
    }
    idx
}

/// How a batch argument was shaped, so that the result can be shaped the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchForm {
    /// One flat sample `(d,)`: the result is `(m,)`.
    Single,
    /// A flat batch `(n, d)`: the result is `(n, m)`.
    Flat,
    /// One sample in the model's shape (e.g. `(C, H, W)`): the result in the output shape.
    SingleShaped,
    /// A batch in the model's shape `(n, C, H, W)`: the result `(n, *output_shape)`.
    Shaped,
}

/// Read a batch for a model with input shape `input`: `(d,)`, `(n, d)`, `input` or
/// `(n, *input)`; for one-channel images `(1, H, W)` also `(H, W)` and `(n, H, W)`. Returns the
/// flat `(n, d)` batch and how it was shaped.
pub fn batch(a: ArrayD<f32>, what: &str, input: &[usize]) -> PyResult<(Array2<f32>, BatchForm)> {
    let d: usize = input.iter().product();
    let shape = a.shape().to_vec();
    let squeezed: &[usize] = match input {
        [1, rest @ ..] if rest.len() >= 2 => rest,
        _ => input,
    };
    let (n, form) = if shape.len() == 1 && shape[0] == d {
        (1, BatchForm::Single)
    } else if shape.len() == 2 && shape[1] == d {
        (shape[0], BatchForm::Flat)
    } else if input.len() > 1 && (shape == input || shape == squeezed) {
        (1, BatchForm::SingleShaped)
    } else if input.len() > 1
        && ((shape.len() == input.len() + 1 && shape[1..] == *input)
            || (shape.len() == squeezed.len() + 1 && shape[1..] == *squeezed))
    {
        (shape[0], BatchForm::Shaped)
    } else {
        let shaped = if input.len() > 1 {
            let inner: Vec<String> = input.iter().map(|s| s.to_string()).collect();
            format!(", {} or (n, {})", shape_str(input), inner.join(", "))
        } else {
            String::new()
        };
        return Err(PyValueError::new_err(format!(
            "{what} must have shape ({d},) or (n, {d}){shaped}, got {}",
            shape_str(&shape)
        )));
    };
    let flat = a
        .into_shape_with_order(IxDyn(&[n, d]))
        .and_then(|a| a.into_dimensionality())
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
    Ok((flat, form))
}

/// Shape a flat `(n, m)` result like the batch it came from ([`batch`]).
pub fn unbatch(y: Array2<f32>, form: BatchForm, output: &[usize]) -> PyResult<ArrayD<f32>> {
    let n = y.nrows();
    let shape: Vec<usize> = match form {
        BatchForm::Single => vec![y.ncols()],
        BatchForm::Flat => vec![n, y.ncols()],
        BatchForm::SingleShaped => output.to_vec(),
        BatchForm::Shaped => std::iter::once(n).chain(output.iter().copied()).collect(),
    };
    y.into_dyn()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| PyValueError::new_err(format!("reshaping the result: {e}")))
}

/// A JSON value as the equivalent Python object (through the `json` module).
pub fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<PyObject> {
    let text = serde_json::to_string(v)
        .map_err(|e| PyValueError::new_err(format!("serialising a configuration: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}
