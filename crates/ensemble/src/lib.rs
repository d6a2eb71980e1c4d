//! # diffinv-ensemble
//!
//! Ensemble statistics and Kalman-type updates in `N x N` Gram form.
//!
//! An ensemble is an `(N, d)` f32 matrix `X`, one particle `x_j` per row. Every product here
//! is expressed through `N x N` (or `N x M`) Gram matrices, so that cross-covariances between
//! a `d`-dimensional state and an `m`-dimensional measurement cost `O(N^2 (d + m))` flops and
//! `O(N (d + m) + N^2)` memory: a `d x d` or `d x m` matrix is never formed.
//!
//! | function | math | flops | bytes (floor) |
//! |---|---|---|---|
//! | [`mean`] | `xbar = (1/N) sum_j x_j` | `N d` | `4 N d` read |
//! | [`anomalies`] | `X - 1 xbar^T` | `2 N d` | `4 N d` read + `4 N d` written |
//! | [`gram`] | `A B^T` | `2 N_a N_b k` | `4 k (N_a + N_b) + 4 N_a N_b` |
//! | [`combine`] | `C X` | `2 N_c N d` | `4 (N_c N + N d + N_c d)` |
//! | [`kalman_direction`] | EnKG, below | `2 N^2 (d + m) + O(N (d + m))` | `4 (2 N d + 3 N m + N^2)` |
//! | [`kalman_step`] | the same `dX` and `\|C\|_F`, factored when `2 m < N` | `4 N m (d + m) + O(N (d + m))` | `4 (2 N d + 3 N m + m d)` |
//!
//! The products run on the `gemm` crate's micro-kernels, cut into output tiles whose
//! boundaries depend only on the shapes; rayon distributes the tiles. Each output element is
//! therefore summed in the same order whatever the thread count: results are bit-identical for
//! any `RAYON_NUM_THREADS` (see `kernel` and docs/performance-ensemble.md).
//!
//! The naive implementations (ndarray `dot`, materialised anomalies) live in [`reference`](mod@reference).

mod kernel;
pub mod reference;

pub use kernel::{Tiles, COMBINE_TILES, GRAM_TILES};

use ndarray::{s, Array1, Array2, ArrayView2, Axis, CowArray, Ix2};
use rayon::prelude::*;
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

/// Columns per task of the column reductions ([`mean`]): fixed, so the summation order of a
/// column does not depend on the thread count.
const MEAN_COLS: usize = 1024;

/// Use `v` as is when `gemm` can read it directly (every axis of length > 1 has a positive
/// stride), else a standard-layout copy (negative or broadcast strides).
fn gemm_friendly<'a>(v: ArrayView2<'a, f32>) -> CowArray<'a, f32, Ix2> {
    let ok = v.shape().iter().zip(v.strides()).all(|(&len, &st)| len <= 1 || st > 0);
    if ok {
        CowArray::from(v)
    } else {
        CowArray::from(v.as_standard_layout().into_owned())
    }
}

/// Ensemble mean `xbar = (1/N) sum_j x_j` of the rows of `x` `(N, d)`.
///
/// Accumulates in f64, in row order, in parallel over fixed bands of columns (so the result
/// does not depend on the thread count). Flops `N d`, bytes read `4 N d`.
///
/// # Errors
/// [`EnsembleError::Empty`] when `N = 0`.
pub fn mean(x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
    let n = x.nrows();
    if n == 0 {
        return Err(EnsembleError::Empty);
    }
    let d = x.ncols();
    let mut out = Array1::<f32>::zeros(d);
    let inv = 1.0 / n as f64;
    out.axis_chunks_iter_mut(Axis(0), MEAN_COLS).into_par_iter().enumerate().for_each(|(band, mut o)| {
        let j0 = band * MEAN_COLS;
        let w = o.len();
        let mut acc = vec![0.0f64; w];
        for row in x.slice(s![.., j0..j0 + w]).rows() {
            match row.as_slice() {
                Some(r) => acc.iter_mut().zip(r).for_each(|(a, &v)| *a += f64::from(v)),
                None => acc.iter_mut().zip(row.iter()).for_each(|(a, &v)| *a += f64::from(v)),
            }
        }
        o.iter_mut().zip(&acc).for_each(|(o, &a)| *o = (a * inv) as f32);
    });
    Ok(out)
}

/// Anomalies `X - 1 xbar^T`: row `j` is `x_j - xbar`, shape `(N, d)`.
///
/// Flops `2 N d`; bytes `8 N d` read, `4 N d` written. Parallel over rows (elementwise, so
/// thread-count independent).
///
/// # Errors
/// [`EnsembleError::Empty`] when `N = 0`.
pub fn anomalies(x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let mu = mean(x)?;
    Ok(centered(x, &mu))
}

/// `X - 1 mu^T` in standard layout, parallel over rows.
fn centered(x: ArrayView2<'_, f32>, mu: &Array1<f32>) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(x.raw_dim());
    out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0))).for_each(|(mut o, xr)| {
        o.iter_mut().zip(xr.iter()).zip(mu.iter()).for_each(|((o, &v), &m)| *o = v - m);
    });
    out
}

/// Gram matrix `G = A B^T`, `G_ij = <a_i, b_j>`, shape `(N_a, N_b)` from `A (N_a, k)` and
/// `B (N_b, k)`.
///
/// Flops `2 N_a N_b k`; bytes floor `4 (k (N_a + N_b) + N_a N_b)`. Tiled in
/// [`GRAM_TILES`] output blocks, bit-identical for any thread count.
///
/// # Errors
/// [`EnsembleError::Shape`] when the column counts differ; [`EnsembleError::Empty`] when
/// either operand has no rows.
pub fn gram(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    gram_scaled(1.0, a, b)
}

/// `G = alpha A B^T` (see [`gram`]); the scaling is fused into the product.
///
/// # Errors
/// As [`gram`].
pub fn gram_scaled(alpha: f32, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if a.ncols() != b.ncols() {
        return Err(EnsembleError::Shape { what: "gram columns", expected: a.ncols(), got: b.ncols() });
    }
    if a.nrows() == 0 || b.nrows() == 0 {
        return Err(EnsembleError::Empty);
    }
    let (a, b) = (gemm_friendly(a), gemm_friendly(b));
    let mut g = Array2::<f32>::zeros((a.nrows(), b.nrows()));
    kernel::gram_into(g.view_mut(), a.view(), b.view(), alpha, GRAM_TILES);
    Ok(g)
}

/// `C X`, shape `(N_c, d)` from coefficients `C (N_c, N)` and an ensemble `X (N, d)`:
/// row `i` is `sum_k C_ik x_k`.
///
/// Flops `2 N_c N d`; bytes floor `4 (N_c N + N d + N_c d)`. Tiled in [`COMBINE_TILES`]
/// output blocks, bit-identical for any thread count.
///
/// # Errors
/// [`EnsembleError::Shape`] when `C` has not `N` columns; [`EnsembleError::Empty`] when the
/// ensemble (`N`) or `C` has no rows.
pub fn combine(c: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    check_combine(c, x)?;
    let (c, x) = (gemm_friendly(c), gemm_friendly(x));
    let mut out = Array2::<f32>::zeros((c.nrows(), x.ncols()));
    kernel::combine_into(out.view_mut(), c.view(), x.view(), None, 1.0, COMBINE_TILES);
    Ok(out)
}

fn check_combine(c: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<()> {
    if c.ncols() != x.nrows() {
        return Err(EnsembleError::Shape { what: "combine inner dimension", expected: c.ncols(), got: x.nrows() });
    }
    if x.nrows() == 0 || c.nrows() == 0 {
        return Err(EnsembleError::Empty);
    }
    Ok(())
}

/// `C (X - 1 xbar^T)`: the combination of the *anomalies* of `X`, row `i` is
/// `sum_k C_ik (x_k - xbar)`, without materialising the `(N, d)` anomaly matrix.
///
/// Each tile task centres only its own `N x 512` column band of `X` (in a per-worker
/// buffer), so the extra memory is `O(N)` per worker and the subtraction is exact, unlike the
/// algebraically equal `C X - (C 1) xbar^T`, which cancels catastrophically when
/// `|xbar| >> |x_k - xbar|` (a tight ensemble late in the diffusion).
///
/// Flops `2 N_c N d + N d (1 + N_c / 512)`; bytes floor as [`combine`].
///
/// # Errors
/// As [`combine`].
pub fn combine_anomalies(c: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    check_combine(c, x)?;
    let mu = mean(x)?;
    let (c, x) = (gemm_friendly(c), gemm_friendly(x));
    let mu = mu.as_slice().ok_or(EnsembleError::Empty)?;
    let mut out = Array2::<f32>::zeros((c.nrows(), x.ncols()));
    kernel::combine_into(out.view_mut(), c.view(), x.view(), Some(mu), 1.0, COMBINE_TILES);
    Ok(out)
}

/// Cross-covariance coefficients `C = (1/N) R (Y - 1 ybar^T)^T`, `C_jk = <r_j, y_k - ybar> / N`,
/// shape `(N_r, N)` from `R (N_r, m)` and an ensemble of measurements `Y (N, m)`.
///
/// Flops `2 N_r N m + 2 N m`; memory `4 N m` for the anomalies of `Y` plus the output.
///
/// # Errors
/// [`EnsembleError::Shape`] when the column counts differ; [`EnsembleError::Empty`] when `Y`
/// or `R` has no rows.
pub fn cross_covariance(r: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    if r.ncols() != y.ncols() {
        return Err(EnsembleError::Shape { what: "cross-covariance columns", expected: y.ncols(), got: r.ncols() });
    }
    let n = y.nrows();
    let dy = anomalies(y)?;
    gram_scaled(1.0 / n as f32, r, dy.view())
}

/// The statistically linearised gradient of EnKG (Zheng et al., "Ensemble Kalman Diffusion
/// Guidance", arXiv 2409.20175, eq. 14-16) in Gram form.
#[derive(Debug, Clone)]
pub struct KalmanDirection {
    /// `dx_j = sum_k C_jk (x_k - xbar)`, `(N, d)`.
    pub dx: Array2<f32>,
    /// `C_jk = <r_j, y_k - ybar> / N`, `(N, N)`.
    pub c: Array2<f32>,
}

/// Compute [`KalmanDirection`] from particles `x (N, d)`, measurements `y (N, m)` and residual
/// gradients `r (N, m)` (`r_j = dL/dy` at `y_j`).
///
/// EnKG (arXiv 2409.20175, eq. 14-16) replaces the gradient `J_j^T r_j` of the data misfit by its
/// ensemble (statistically linearised) estimate
///
/// ```text
/// dx_j = (1/N) sum_k <r_j, y_k - ybar> (x_k - xbar) = sum_k C_jk (x_k - xbar),
/// C    = (1/N) R (Y - 1 ybar^T)^T                    (N x N),
/// dX   = C (X - 1 xbar^T)                             (N x d),
/// ```
///
/// i.e. the cross-covariance `Cov(x, y) r_j` without ever forming the `d x m` covariance.
///
/// Cost: `2 N^2 m` flops for `C` and `2 N^2 d` for `dX`, plus `O(N (d + m))` for the means and
/// anomalies; memory `O(N (d + m) + N^2)`: the anomalies of `Y` (`N x m`) are materialised, those
/// of `X` are formed one `N x 512` column band at a time inside the product
/// ([`combine_anomalies`]). Bit-identical for any thread count.
///
/// # Errors
/// [`EnsembleError::Empty`] when `N = 0`; [`EnsembleError::Shape`] when `y` or `r` has not `N`
/// rows or `r` and `y` differ in columns.
pub fn kalman_direction(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, r: ArrayView2<'_, f32>) -> Result<KalmanDirection> {
    // The tiled version validates every shape.
    kalman_direction_tiled(x, y, r, GRAM_TILES, COMBINE_TILES)
}

/// [`kalman_direction`] with explicit output tiles for the two products (for tuning and the
/// benchmarks; the default tiles are [`GRAM_TILES`] and [`COMBINE_TILES`]). The result is
/// bit-identical for any thread count for fixed tiles.
///
/// # Errors
/// As [`kalman_direction`].
pub fn kalman_direction_tiled(
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    r: ArrayView2<'_, f32>,
    gram_tiles: Tiles,
    combine_tiles: Tiles,
) -> Result<KalmanDirection> {
    let n = x.nrows();
    check_kalman_shapes(n, y, r)?;
    let dy = anomalies(y)?;
    let (r, x) = (gemm_friendly(r), gemm_friendly(x));
    let mut c = Array2::<f32>::zeros((n, n));
    kernel::gram_into(c.view_mut(), r.view(), dy.view(), 1.0 / n as f32, gram_tiles);
    let xbar = mean(x.view())?;
    let xbar = xbar.as_slice().ok_or(EnsembleError::Empty)?;
    let mut dx = Array2::<f32>::zeros((n, x.ncols()));
    kernel::combine_into(dx.view_mut(), c.view(), x.view(), Some(xbar), 1.0, combine_tiles);
    Ok(KalmanDirection { dx, c })
}

/// The EnKG step without its coefficient matrix: the direction `dX = C (X - 1 xbar^T)` of
/// [`kalman_direction`] and the Frobenius norm `||C||_F` that the adaptive step size divides by.
#[derive(Debug, Clone)]
pub struct KalmanStep {
    /// `dx_j = sum_k C_jk (x_k - xbar)`, `(N, d)`.
    pub dx: Array2<f32>,
    /// `||C||_F` with `C = (1/N) R (Y - 1 ybar^T)^T` (accumulated in f64).
    pub c_norm: f64,
    /// Which of the two equal forms computed it.
    pub form: KalmanForm,
}

/// The two algebraically equal ways [`kalman_step`] evaluates `dX = (1/N) R dY^T dX_a`
/// (`dY`, `dX_a` the anomalies of `Y` and `X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KalmanForm {
    /// `C = (1/N) R dY^T` (`N x N`), then `C dX_a`: `2 N^2 (m + d)` flops.
    Gram,
    /// `P = (1/N) dY^T dX_a` (`m x d`), then `R P`; `||C||_F^2 = tr((R^T R)(dY^T dY)) / N^2` from
    /// two `m x m` products: `4 N m (d + m)` flops.
    Factored,
}

impl KalmanForm {
    /// The cheaper form for `N` particles and `m` measurements: [`KalmanForm::Factored`] when
    /// `4 N m (d + m) < 2 N^2 (d + m)`, i.e. `2 m < N` (whatever `d`).
    pub fn cheaper(n: usize, m: usize) -> Self {
        if 2 * m < n {
            KalmanForm::Factored
        } else {
            KalmanForm::Gram
        }
    }
}

/// [`kalman_direction`]'s `dX` and `||C||_F`, in the cheaper of the two forms
/// ([`KalmanForm::cheaper`]): the `N x N` Gram form, or, when the measurements are fewer than
/// half the particles (`2 m < N`), the factored form
///
/// ```text
/// P  = (1/N) (Y - 1 ybar^T)^T (X - 1 xbar^T)        (m x d),   dX = R P,
/// ||C||_F^2 = (1/N^2) sum_ab (R^T R)_ab (dY^T dY)_ab  (two m x m products),
/// ```
///
/// which is `dX = C (X - 1 xbar^T)` with the products re-associated, `C = (1/N) R dY^T`. Cost
/// `4 N m (d + m)` flops instead of `2 N^2 (d + m)` (at `N = 256`, `m = 2`, `d = 8`: 20 k
/// instead of 1.3 M). The two forms agree to rounding (the summation order differs); each is
/// bit-identical for any thread count, and the form depends only on the shapes.
///
/// # Errors
/// As [`kalman_direction`].
pub fn kalman_step(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, r: ArrayView2<'_, f32>) -> Result<KalmanStep> {
    kalman_step_in(KalmanForm::cheaper(x.nrows(), y.ncols()), x, y, r)
}

/// [`kalman_step`] in a given form (for tests and benchmarks).
///
/// # Errors
/// As [`kalman_direction`].
pub fn kalman_step_in(form: KalmanForm, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, r: ArrayView2<'_, f32>) -> Result<KalmanStep> {
    if form == KalmanForm::Gram {
        let kd = kalman_direction(x, y, r)?;
        let c_norm = kd.c.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt();
        return Ok(KalmanStep { dx: kd.dx, c_norm, form });
    }
    let n = x.nrows();
    check_kalman_shapes(n, y, r)?;
    let m = y.ncols();
    let dy = anomalies(y)?;
    let (r, x) = (gemm_friendly(r), gemm_friendly(x));
    let xbar = mean(x.view())?;
    let xbar = xbar.as_slice().ok_or(EnsembleError::Empty)?;
    // P = (1/N) dY^T (X - 1 xbar^T), (m x d).
    let mut p = Array2::<f32>::zeros((m, x.ncols()));
    kernel::combine_into(p.view_mut(), dy.t(), x.view(), Some(xbar), 1.0 / n as f32, COMBINE_TILES);
    // dX = R P, (N x d).
    let mut dx = Array2::<f32>::zeros((n, x.ncols()));
    kernel::combine_into(dx.view_mut(), r.view(), p.view(), None, 1.0, COMBINE_TILES);
    // ||C||_F^2 = tr((R^T R)(dY^T dY)) / N^2, both m x m and symmetric.
    let mut rr = Array2::<f32>::zeros((m, m));
    kernel::gram_into(rr.view_mut(), r.t(), r.t(), 1.0, GRAM_TILES);
    let mut yy = Array2::<f32>::zeros((m, m));
    kernel::gram_into(yy.view_mut(), dy.t(), dy.t(), 1.0, GRAM_TILES);
    let tr: f64 = rr.iter().zip(yy.iter()).map(|(a, b)| *a as f64 * *b as f64).sum();
    let c_norm = tr.max(0.0).sqrt() / n as f64;
    Ok(KalmanStep { dx, c_norm, form })
}

fn check_kalman_shapes(n: usize, y: ArrayView2<'_, f32>, r: ArrayView2<'_, f32>) -> Result<()> {
    if n == 0 {
        return Err(EnsembleError::Empty);
    }
    if y.nrows() != n {
        return Err(EnsembleError::Shape { what: "rows of y", expected: n, got: y.nrows() });
    }
    if r.nrows() != n {
        return Err(EnsembleError::Shape { what: "rows of r", expected: n, got: r.nrows() });
    }
    if r.ncols() != y.ncols() {
        return Err(EnsembleError::Shape { what: "columns of r", expected: y.ncols(), got: r.ncols() });
    }
    Ok(())
}

/// Flops of [`kalman_direction`] counted as in the benchmarks: `2 N^2 (d + m)` for the two
/// products (the `O(N (d + m))` means and anomalies are not counted).
pub fn kalman_flops(n: usize, d: usize, m: usize) -> f64 {
    2.0 * (n as f64).powi(2) * (d as f64 + m as f64)
}
