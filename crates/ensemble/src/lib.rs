//! # diffinv-ensemble
//!
//! Ensemble statistics and Kalman-type updates in N x N Gram form.
//!
//! (Initial reference implementation; the optimised version replaces the bodies.)

use ndarray::{Array1, Array2, ArrayView2, Axis};
use thiserror::Error;

/// Errors of the ensemble crate.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EnsembleError {
    /// Mismatched shapes.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Size passed.
        got: usize,
    },
    /// An empty ensemble.
    #[error("the ensemble is empty")]
    Empty,
}

/// Result type of this crate.
pub type Result<T, E = EnsembleError> = std::result::Result<T, E>;

/// Ensemble mean `xbar = (1/N) sum_j x_j` of the rows of `x` `(N, d)`.
pub fn mean(x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
    x.mean_axis(Axis(0)).ok_or(EnsembleError::Empty)
}

/// Anomalies `x_j - xbar`, shape `(N, d)`.
pub fn anomalies(x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let m = mean(x)?;
    Ok(&x - &m)
}

/// Gram matrix `G = A B^T`, `(N_a, N_b)` from `A (N_a, k)` and `B (N_b, k)`.
pub fn gram(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if a.ncols() != b.ncols() {
        return Err(EnsembleError::Shape { what: "gram columns", expected: a.ncols(), got: b.ncols() });
    }
    Ok(a.dot(&b.t()))
}

/// `C X`, `(N_c, d)` from `C (N_c, N)` and `X (N, d)`.
pub fn combine(c: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if c.ncols() != x.nrows() {
        return Err(EnsembleError::Shape { what: "combine inner dimension", expected: c.ncols(), got: x.nrows() });
    }
    Ok(c.dot(&x))
}

/// The statistically linearised gradient of EnKG (papers/002, eq. 14-16) in Gram form.
#[derive(Debug, Clone)]
pub struct KalmanDirection {
    /// `dx_j = sum_k C_jk (x_k - xbar)`, `(N, d)`.
    pub dx: Array2<f32>,
    /// `C_jk = <r_j, y_k - ybar> / N`, `(N, N)`.
    pub c: Array2<f32>,
}

/// Compute [`KalmanDirection`] from particles `x (N, d)`, measurements `y (N, m)` and residual
/// gradients `r (N, m)`.
pub fn kalman_direction(
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    r: ArrayView2<'_, f32>,
) -> Result<KalmanDirection> {
    let n = x.nrows();
    if n == 0 {
        return Err(EnsembleError::Empty);
    }
    if y.nrows() != n || r.nrows() != n {
        return Err(EnsembleError::Shape { what: "ensemble rows", expected: n, got: y.nrows().min(r.nrows()) });
    }
    let dy = anomalies(y)?;
    let dxa = anomalies(x)?;
    let c = gram(r, dy.view())? / n as f32;
    let dx = combine(c.view(), dxa.view())?;
    Ok(KalmanDirection { dx, c })
}
