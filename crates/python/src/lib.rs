//! # diffinv-python
//!
//! The compiled half of the Python package `diffinv` (the module `diffinv._diffinv`; the pure
//! Python half, `python/diffinv/__init__.py`, re-exports it and adds `solve`'s result type).
//! Everything a user touches from Python is here: the priors (analytic, and with the `torch`
//! feature the trained and TorchScript ones), the built-in forward models as callable objects,
//! Python callables as forward models ([`callable::PyForward`]), the likelihoods, the metrics,
//! and `solve`, which runs any method of the one registry
//! (`diffinv_solvers::registry`) with the GIL released.
//!
//! Conventions at the boundary (docs/python.md):
//! - every array argument is converted with `numpy.asarray(x, dtype=float32)` (copied when it is
//!   not already a C-contiguous float32 array; ints and other float widths are accepted, complex,
//!   object and string arrays are a `TypeError` naming the argument);
//! - wrong shapes and non-finite values are a `ValueError` naming the argument and both shapes;
//! - no Rust panic crosses into Python: the long computations run under
//!   [`errors::no_panic`], which turns a panic into a `RuntimeError`.

use pyo3::prelude::*;

pub mod callable;
pub mod convert;
pub mod errors;
pub mod likelihoods;
pub mod metrics;
pub mod operators;
pub mod priors;
pub mod solve;

/// The compiled module `diffinv._diffinv`.
#[pymodule]
fn _diffinv(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let _ = py;
    m.add("HAS_TORCH", cfg!(feature = "torch"))?;
    m.add("TORCH_VERSION", priors::TORCH_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    priors::register(m)?;
    operators::register(m)?;
    likelihoods::register(m)?;
    metrics::register(m)?;
    solve::register(m)?;
    Ok(())
}
