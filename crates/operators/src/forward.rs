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

/// A reference to a forward model is one (e.g. to wrap a `&dyn ForwardModel` in
/// [`Affine`](crate::Affine)); every method, capabilities included, forwards.
impl<T: ForwardModel + ?Sized> ForwardModel for &T {
    fn input_shape(&self) -> Vec<usize> {
        (**self).input_shape()
    }
    fn output_shape(&self) -> Vec<usize> {
        (**self).output_shape()
    }
    fn input_dim(&self) -> usize {
        (**self).input_dim()
    }
    fn output_dim(&self) -> usize {
        (**self).output_dim()
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        (**self).forward(x)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        (**self).forward_partial(x)
    }
    fn as_linear(&self) -> Option<&dyn LinearOperator> {
        (**self).as_linear()
    }
    fn as_differentiable(&self) -> Option<&dyn Differentiable> {
        (**self).as_differentiable()
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

/// A black-box forward model from a plain per-sample closure `Fn(&[f32]) -> Vec<f32>`
/// ([`FnForward::new`]) or a fallible one `Fn(&[f32]) -> Result<Vec<f32>, E>`
/// ([`FnForward::fallible`]).
///
/// This is how a user plugs in their own simulator: the closure receives one flattened sample
/// and returns its flattened measurement. Rows are evaluated in parallel with rayon.
///
/// - A measurement with a non-finite value, or an `Err` from a fallible closure, is a failure
///   of that sample: [`OperatorError::SampleFailed`] naming the row, which
///   [`ForwardModel::forward_partial`] turns into a failed row for the solvers' failure policy.
/// - A measurement of the wrong length is a broken contract (a bug in the closure), reported as
///   [`OperatorError::OutputLength`] naming the row, the length returned and the length
///   expected; `forward_partial` propagates it instead of marking the row failed.
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

/// A per-sample function that [`FnForward`] can drive: one flattened sample in, its measurement
/// or the reason it failed out. Implemented for every `Fn(&[f32]) -> Vec<f32>` (never fails) and
/// for [`Fallible`]; you never need to implement it yourself.
pub trait RowFn: Send + Sync {
    /// Evaluate one sample; `Err(reason)` marks that sample as failed.
    fn eval_row(&self, x: &[f32]) -> std::result::Result<Vec<f32>, String>;
}

impl<F> RowFn for F
where
    F: Fn(&[f32]) -> Vec<f32> + Send + Sync,
{
    fn eval_row(&self, x: &[f32]) -> std::result::Result<Vec<f32>, String> {
        Ok(self(x))
    }
}

/// A fallible per-sample closure `Fn(&[f32]) -> Result<Vec<f32>, E>`, as wrapped by
/// [`FnForward::fallible`].
pub struct Fallible<G>(G);

impl<G, E> RowFn for Fallible<G>
where
    G: Fn(&[f32]) -> std::result::Result<Vec<f32>, E> + Send + Sync,
    E: std::fmt::Display,
{
    fn eval_row(&self, x: &[f32]) -> std::result::Result<Vec<f32>, String> {
        (self.0)(x).map_err(|e| e.to_string())
    }
}

impl<F> FnForward<F>
where
    F: Fn(&[f32]) -> Vec<f32> + Send + Sync,
{
    /// Wrap an infallible closure mapping `d` inputs to `m` outputs.
    pub fn new(d: usize, m: usize, f: F) -> Self {
        Self { d, m, f }
    }
}

impl<G> FnForward<Fallible<G>> {
    /// Wrap a fallible closure mapping `d` inputs to `m` outputs. An `Err(e)` for a sample
    /// makes that sample fail ([`OperatorError::SampleFailed`] with `e`'s message), so
    /// [`forward_partial`](ForwardModel::forward_partial) reports the row as failed (NaN) and
    /// the other rows as usual, and the solvers' failure policy handles it, with no NaN
    /// coming from the closure.
    ///
    /// ```
    /// use diffinv_operators::{FnForward, ForwardModel, OperatorError};
    /// use ndarray::array;
    /// // A "simulator" that diverges for negative input.
    /// let g = FnForward::fallible(1, 1, |x: &[f32]| {
    ///     if x[0] < 0.0 { Err(format!("diverged at x = {}", x[0])) } else { Ok(vec![x[0].sqrt()]) }
    /// });
    /// let out = g.forward_partial(array![[4.0f32], [-1.0], [9.0]].view()).unwrap();
    /// assert_eq!(out.y[[0, 0]], 2.0);
    /// assert_eq!(out.y[[2, 0]], 3.0);
    /// assert_eq!(out.failures.len(), 1);
    /// assert_eq!(out.failures[0].row, 1);
    /// assert!(out.failures[0].reason.contains("diverged at x = -1"));
    /// // The whole-batch call fails with an error naming the row.
    /// assert!(matches!(
    ///     g.forward(array![[-1.0f32]].view()),
    ///     Err(OperatorError::SampleFailed { row: 0, .. })
    /// ));
    /// ```
    pub fn fallible<E>(d: usize, m: usize, f: G) -> Self
    where
        G: Fn(&[f32]) -> std::result::Result<Vec<f32>, E> + Send + Sync,
        E: std::fmt::Display,
    {
        Self {
            d,
            m,
            f: Fallible(f),
        }
    }
}

impl<F: RowFn> FnForward<F> {
    fn eval_row(&self, row: usize, x: ArrayView1<'_, f32>) -> Result<Array1<f32>> {
        let owned;
        let slice = match x.as_slice() {
            Some(s) => s,
            None => {
                owned = x.to_vec();
                &owned
            }
        };
        let y = self
            .f
            .eval_row(slice)
            .map_err(|reason| OperatorError::SampleFailed { row, reason })?;
        if y.len() != self.m {
            return Err(OperatorError::OutputLength {
                row,
                got: y.len(),
                expected: self.m,
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

    /// Evaluate every row in parallel, each to its measurement or its error.
    fn eval_rows(&self, x: ArrayView2<'_, f32>) -> Result<Vec<Result<Array1<f32>>>> {
        check_batch(x, self.d, "forward input")?;
        Ok((0..x.nrows())
            .into_par_iter()
            .map(|i| self.eval_row(i, x.row(i)))
            .collect())
    }
}

impl<F: RowFn> ForwardModel for FnForward<F> {
    fn input_shape(&self) -> Vec<usize> {
        vec![self.d]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.m]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let rows = self.eval_rows(x)?;
        let mut y = Array2::<f32>::zeros((x.nrows(), self.m));
        // A contract violation anywhere wins over a sample failure, whatever the row order.
        if let Some(Err(e)) = rows
            .iter()
            .find(|r| matches!(r, Err(e) if !matches!(e, OperatorError::SampleFailed { .. })))
        {
            return Err(e.clone());
        }
        for (i, r) in rows.into_iter().enumerate() {
            y.row_mut(i).assign(&r?);
        }
        Ok(y)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        let rows = self.eval_rows(x)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn wrong_output_length_is_a_contract_violation_not_a_sample_failure() {
        // Row 1 returns 3 values instead of 2; row 2 returns NaN (a real sample failure).
        let g = FnForward::new(1, 2, |x: &[f32]| match x[0] as i32 {
            1 => vec![0.0; 3],
            2 => vec![f32::NAN, 0.0],
            _ => vec![x[0], -x[0]],
        });
        let x = array![[0.0f32], [1.0], [2.0]];
        let expect = OperatorError::OutputLength {
            row: 1,
            got: 3,
            expected: 2,
        };
        assert_eq!(g.forward(x.view()).unwrap_err(), expect);
        assert_eq!(g.forward_partial(x.view()).unwrap_err(), expect);
        let msg = expect.to_string();
        assert!(
            msg.contains("row 1") && msg.contains("returned 3") && msg.contains("expected 2"),
            "{msg}"
        );
        // The trait's default forward_partial (one-row retries) propagates it too.
        struct Default<'a, F: RowFn>(&'a FnForward<F>);
        impl<F: RowFn> ForwardModel for Default<'_, F> {
            fn input_shape(&self) -> Vec<usize> {
                self.0.input_shape()
            }
            fn output_shape(&self) -> Vec<usize> {
                self.0.output_shape()
            }
            fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
                self.0.forward(x)
            }
        }
        let x = array![[2.0f32], [1.0]];
        assert!(matches!(
            Default(&g).forward_partial(x.view()),
            Err(OperatorError::OutputLength { .. })
        ));
        // Without the broken row, the NaN row is a per-sample failure.
        let out = g.forward_partial(array![[0.0f32], [2.0]].view()).unwrap();
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].row, 1);
        assert!(out.failures[0].reason.contains("non-finite"));
    }

    #[test]
    fn fallible_closure_errors_mark_rows_failed() {
        #[derive(Debug)]
        struct Diverged(f32);
        impl std::fmt::Display for Diverged {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "solver diverged at t = {}", self.0)
            }
        }
        let g = FnForward::fallible(2, 1, |x: &[f32]| {
            if x[0] > 0.0 {
                Ok(vec![x[0] + x[1]])
            } else {
                Err(Diverged(0.5))
            }
        });
        let x = array![[1.0f32, 2.0], [-1.0, 0.0], [3.0, 4.0], [0.0, 1.0]];
        let out = g.forward_partial(x.view()).unwrap();
        assert_eq!(out.y[[0, 0]], 3.0);
        assert_eq!(out.y[[2, 0]], 7.0);
        assert!(out.y[[1, 0]].is_nan() && out.y[[3, 0]].is_nan());
        assert_eq!(
            out.failures,
            vec![
                SampleFailure {
                    row: 1,
                    reason: "solver diverged at t = 0.5".into()
                },
                SampleFailure {
                    row: 3,
                    reason: "solver diverged at t = 0.5".into()
                },
            ]
        );
        assert_eq!(
            g.forward(x.view()).unwrap_err(),
            OperatorError::SampleFailed {
                row: 1,
                reason: "solver diverged at t = 0.5".into()
            }
        );
        // A fallible closure is held to the same length contract.
        let bad = FnForward::fallible(1, 2, |_: &[f32]| Ok::<_, String>(vec![1.0]));
        assert!(matches!(
            bad.forward_partial(array![[0.0f32]].view()),
            Err(OperatorError::OutputLength {
                row: 0,
                got: 1,
                expected: 2
            })
        ));
        // Shapes are still checked first.
        assert!(matches!(
            g.forward(array![[1.0f32]].view()),
            Err(OperatorError::Shape { .. })
        ));
    }
}
