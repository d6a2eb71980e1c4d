//! The [`ForwardModel`] trait and its capabilities.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::{OperatorError, Result};

/// A batched forward model `x -> y = G(x)`.
///
/// Row `i` of the input is particle `i`, flattened from [`input_shape`](Self::input_shape);
/// row `i` of the output is `G(x_i)`, flattened from [`output_shape`](Self::output_shape).
pub trait ForwardModel: Send + Sync {
    /// Shape of one input sample, without the batch axis (e.g. `[C, H, W]`).
    fn input_shape(&self) -> Vec<usize>;
    /// Shape of one output sample, without the batch axis.
    fn output_shape(&self) -> Vec<usize>;
    /// Number of values in one input sample, `d`.
    fn input_dim(&self) -> usize {
        self.input_shape().iter().product()
    }
    /// Number of values in one measurement, `m`.
    fn output_dim(&self) -> usize {
        self.output_shape().iter().product()
    }
    /// Evaluate the model on every row. Any failing sample makes the whole call fail with an
    /// error naming the row ([`OperatorError::SampleFailed`]).
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>>;

    /// Evaluate the model on every row, reporting per-sample failures instead of failing the
    /// whole batch. Rows of failed samples are filled with NaN in `y` and listed in `failures`.
    ///
    /// The default implementation calls [`forward`](Self::forward) and converts a
    /// `SampleFailed` error into a one-row retry per sample; models that can isolate failures
    /// cheaply (the Navier-Stokes solver) override it.
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        match self.forward(x) {
            Ok(y) => Ok(BatchOutput {
                y,
                failures: Vec::new(),
            }),
            Err(OperatorError::SampleFailed { .. }) => {
                let m = self.output_dim();
                let mut y = Array2::<f32>::from_elem((x.nrows(), m), f32::NAN);
                let mut failures = Vec::new();
                for (i, row) in x.outer_iter().enumerate() {
                    let one = row.insert_axis(Axis(0));
                    match self.forward(one) {
                        Ok(yi) => y.row_mut(i).assign(&yi.row(0)),
                        Err(OperatorError::SampleFailed { reason, .. }) => {
                            failures.push(SampleFailure { row: i, reason })
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(BatchOutput { y, failures })
            }
            Err(e) => Err(e),
        }
    }

    /// Capability: this model as a linear operator with its adjoint `A^T`, when it is one.
    /// Solvers that need `A^T` (DDS's conjugate gradients, PiGDM, DAPS, the classical solvers)
    /// find it here; a linear model's vector-Jacobian product is `v -> A^T v`, so a model that
    /// answers this needs no separate [`Differentiable`] implementation. Default: `None` (a black box).
    fn as_linear(&self) -> Option<&dyn LinearOperator> {
        None
    }
    /// Capability: this model with its vector-Jacobian product `J_G(x)^T v`, when it has one
    /// (the gradient-based solvers: DPS, RED-diff, MCG, ...). Default: `None` (a black box).
    fn as_differentiable(&self) -> Option<&dyn Differentiable> {
        None
    }
}

/// A linear forward model `y = A x` with its adjoint.
pub trait LinearOperator: ForwardModel {
    /// The adjoint `A^T y`, row by row: input `(N, m)`, output `(N, d)`.
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>>;
}

/// A differentiable forward model.
pub trait Differentiable: ForwardModel {
    /// The vector-Jacobian product `J_G(x_i)^T v_i` for every row `i`:
    /// `x` is `(N, d)`, `v` is `(N, m)`, the result `(N, d)`.
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>>;
}

/// Outcome of [`ForwardModel::forward_partial`].
#[derive(Debug, Clone)]
pub struct BatchOutput {
    /// `(N, m)` measurements; rows listed in `failures` are NaN.
    pub y: Array2<f32>,
    /// The samples that failed, in increasing row order.
    pub failures: Vec<SampleFailure>,
}

/// One failed sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleFailure {
    /// Particle (row) index.
    pub row: usize,
    /// Why it failed.
    pub reason: String,
}

/// Check that `x` has `cols` columns and only finite values; `what` names the argument in
/// the error.
pub fn check_batch(x: ArrayView2<'_, f32>, cols: usize, what: &'static str) -> Result<()> {
    if x.ncols() != cols {
        return Err(OperatorError::Shape {
            what,
            expected: cols,
            got: x.ncols(),
        });
    }
    for (row, r) in x.outer_iter().enumerate() {
        if r.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::NonFiniteInput { what, row });
        }
    }
    Ok(())
}

/// A black-box forward model from a plain per-sample closure `Fn(&[f32]) -> Vec<f32>`.
///
/// This is how a user plugs in their own simulator: the closure receives one flattened sample
/// and returns its flattened measurement. Rows are evaluated in parallel with rayon. A returned
/// vector of the wrong length or with non-finite values becomes a typed error naming the row.
///
/// ```
/// use diffinv_operators::{FnForward, ForwardModel};
/// use ndarray::array;
/// let g = FnForward::new(2, 1, |x: &[f32]| vec![x[0] * x[1]]);
/// let y = g.forward(array![[2.0f32, 3.0], [1.0, -1.0]].view()).unwrap();
/// assert_eq!(y, array![[6.0f32], [-1.0]]);
/// ```
pub struct FnForward<F> {
    d: usize,
    m: usize,
    f: F,
}

impl<F> std::fmt::Debug for FnForward<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnForward")
            .field("d", &self.d)
            .field("m", &self.m)
            .finish()
    }
}

impl<F> FnForward<F>
where
    F: Fn(&[f32]) -> Vec<f32> + Send + Sync,
{
    /// Wrap a closure mapping `d` inputs to `m` outputs.
    pub fn new(d: usize, m: usize, f: F) -> Self {
        Self { d, m, f }
    }

    fn eval_row(&self, row: usize, x: ArrayView1<'_, f32>) -> Result<Array1<f32>> {
        let owned;
        let slice = match x.as_slice() {
            Some(s) => s,
            None => {
                owned = x.to_vec();
                &owned
            }
        };
        let y = (self.f)(slice);
        if y.len() != self.m {
            return Err(OperatorError::SampleFailed {
                row,
                reason: format!("closure returned {} values, expected {}", y.len(), self.m),
            });
        }
        if let Some(j) = y.iter().position(|v| !v.is_finite()) {
            return Err(OperatorError::SampleFailed {
                row,
                reason: format!("closure returned a non-finite value at output index {j}"),
            });
        }
        Ok(Array1::from(y))
    }
}

impl<F> ForwardModel for FnForward<F>
where
    F: Fn(&[f32]) -> Vec<f32> + Send + Sync,
{
    fn input_shape(&self) -> Vec<usize> {
        vec![self.d]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.m]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.d, "forward input")?;
        let rows: Vec<Result<Array1<f32>>> = (0..x.nrows())
            .into_par_iter()
            .map(|i| self.eval_row(i, x.row(i)))
            .collect();
        let mut y = Array2::<f32>::zeros((x.nrows(), self.m));
        for (i, r) in rows.into_iter().enumerate() {
            y.row_mut(i).assign(&r?);
        }
        Ok(y)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        check_batch(x, self.d, "forward input")?;
        let rows: Vec<Result<Array1<f32>>> = (0..x.nrows())
            .into_par_iter()
            .map(|i| self.eval_row(i, x.row(i)))
            .collect();
        let mut y = Array2::<f32>::from_elem((x.nrows(), self.m), f32::NAN);
        let mut failures = Vec::new();
        for (i, r) in rows.into_iter().enumerate() {
            match r {
                Ok(v) => y.row_mut(i).assign(&v),
                Err(OperatorError::SampleFailed { row, reason }) => {
                    failures.push(SampleFailure { row, reason })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(BatchOutput { y, failures })
    }
}

/// A dense matrix `A` of shape `(m, d)` as a linear, differentiable forward model.
#[derive(Debug, Clone)]
pub struct MatrixOperator {
    a: Array2<f32>,
}

impl MatrixOperator {
    /// Wrap the matrix `a` of shape `(m, d)`.
    pub fn new(a: Array2<f32>) -> Result<Self> {
        if a.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::InvalidParameter {
                name: "a",
                reason: "matrix has non-finite entries".into(),
            });
        }
        Ok(Self { a })
    }
    /// The matrix.
    pub fn matrix(&self) -> &Array2<f32> {
        &self.a
    }
}

impl ForwardModel for MatrixOperator {
    fn as_linear(&self) -> Option<&dyn crate::LinearOperator> {
        Some(self)
    }
    fn as_differentiable(&self) -> Option<&dyn crate::Differentiable> {
        Some(self)
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![self.a.ncols()]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.a.nrows()]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.a.ncols(), "forward input")?;
        Ok(x.dot(&self.a.t()))
    }
}

impl LinearOperator for MatrixOperator {
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y, self.a.nrows(), "adjoint input")?;
        Ok(y.dot(&self.a))
    }
}

impl Differentiable for MatrixOperator {
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.a.ncols(), "vjp point")?;
        if v.nrows() != x.nrows() {
            return Err(OperatorError::Rows {
                what: "vjp cotangent",
                expected: x.nrows(),
                got: v.nrows(),
            });
        }
        self.adjoint(v)
    }
}
