//! Naive reference implementations, kept for tests and as executable documentation.
//!
//! Each function computes the same quantity as its namesake at the crate root with
//! ndarray's `dot` and whole-matrix temporaries (the anomalies of `X` are materialised).
//! They are neither parallel-deterministic by construction nor fast; use the crate-root
//! functions in production code.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{EnsembleError, KalmanDirection, Result};

/// `xbar = (1/N) sum_j x_j` with ndarray's `mean_axis` (f32 accumulation).
pub fn mean(x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
    x.mean_axis(Axis(0)).ok_or(EnsembleError::Empty)
}

/// `x_j - xbar` for every row.
pub fn anomalies(x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let m = mean(x)?;
    Ok(&x - &m)
}

/// `A B^T` with ndarray's `dot`.
pub fn gram(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if a.ncols() != b.ncols() {
        return Err(EnsembleError::Shape { what: "gram columns", expected: a.ncols(), got: b.ncols() });
    }
    Ok(a.dot(&b.t()))
}

/// `C X` with ndarray's `dot`.
pub fn combine(c: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if c.ncols() != x.nrows() {
        return Err(EnsembleError::Shape { what: "combine inner dimension", expected: c.ncols(), got: x.nrows() });
    }
    Ok(c.dot(&x))
}

/// EnKG direction with materialised anomalies: `C = R (Y - 1 ybar^T)^T / N`,
/// `dx = C (X - 1 xbar^T)`.
pub fn kalman_direction(
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    r: ArrayView2<'_, f32>,
) -> Result<KalmanDirection> {
    let n = x.nrows();
    if n == 0 {
        return Err(EnsembleError::Empty);
    }
    if y.nrows() != n {
        return Err(EnsembleError::Shape { what: "rows of y", expected: n, got: y.nrows() });
    }
    if r.nrows() != n {
        return Err(EnsembleError::Shape { what: "rows of r", expected: n, got: r.nrows() });
    }
    let dy = anomalies(y)?;
    let dxa = anomalies(x)?;
    let c = gram(r, dy.view())? / n as f32;
    let dx = combine(c.view(), dxa.view())?;
    Ok(KalmanDirection { dx, c })
}
