//! [`Affine`]: a forward model composed with an affine change of variables of its input,
//! `x -> G(scale * x + shift)`, so that a prior trained in a normalised space drives a forward
//! model in physical units.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{
    check_batch, BatchOutput, Differentiable, ForwardModel, LinearOperator, OperatorError, Result,
};

/// `x -> G(scale ⊙ x + shift)` for a forward model `G` with input dimension `d`, where `scale`
/// and `shift` are scalars ([`Affine::new`]) or vectors of length `d` applied per component
/// ([`Affine::per_component`]).
///
/// Every capability of `G` passes through:
/// - [`forward`](ForwardModel::forward) and [`forward_partial`](ForwardModel::forward_partial)
///   evaluate `G` at the mapped points, so per-row failures of `G` are preserved row for row;
/// - [`as_differentiable`](ForwardModel::as_differentiable) is `Some` when `G` has a
///   vector-Jacobian product (or is linear), with
///   `vjp(x, v) = scale ⊙ J_G(scale ⊙ x + shift)^T v`;
/// - [`as_linear`](ForwardModel::as_linear) is `Some` only when `G` is linear **and the shift is
///   zero**, with adjoint `y -> scale ⊙ A^T y`. With a nonzero shift the composite map
///   `x -> A (scale ⊙ x) + A shift` is affine, not linear, so it reports `None` (solvers that need
///   an adjoint must then work in the physical space, or use the vjp, which is still exact).
///
/// ```
/// use diffinv_operators::{Affine, ForwardModel, MatrixOperator};
/// use ndarray::array;
/// let a = MatrixOperator::new(array![[1.0f32, 2.0], [0.0, 1.0]]).unwrap();
/// // The prior lives in z = (x - 10) / 4, i.e. x = 4 z + 10.
/// let g = Affine::new(a, 4.0, 10.0).unwrap();
/// let y = g.forward(array![[0.0f32, 1.0]].view()).unwrap();
/// assert_eq!(y, array![[38.0f32, 14.0]]); // A (10, 14)
/// assert!(g.as_linear().is_none(), "a shifted map is affine, not linear");
/// let v = g.as_differentiable().unwrap().vjp(array![[0.0f32, 1.0]].view(), array![[1.0f32, 0.0]].view());
/// assert_eq!(v.unwrap(), array![[4.0f32, 8.0]]); // 4 A^T (1, 0)
/// ```
#[derive(Debug, Clone)]
pub struct Affine<F> {
    inner: F,
    scale: Array1<f32>,
    shift: Array1<f32>,
    zero_shift: bool,
}

fn check_finite(name: &'static str, v: &Array1<f32>) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(j) => Err(OperatorError::InvalidParameter {
            name,
            reason: format!("component {j} is {}, must be finite", v[j]),
        }),
        None => Ok(()),
    }
}

impl<F: ForwardModel> Affine<F> {
    /// `x -> inner(scale * x + shift)` with scalar `scale` and `shift` (both finite).
    pub fn new(inner: F, scale: f32, shift: f32) -> Result<Self> {
        let d = inner.input_dim();
        Self::per_component(
            inner,
            Array1::from_elem(d, scale),
            Array1::from_elem(d, shift),
        )
    }

    /// `x -> inner(scale ⊙ x + shift)` with per-component `scale` and `shift`, each of length
    /// `inner.input_dim()` and finite.
    pub fn per_component(inner: F, scale: Array1<f32>, shift: Array1<f32>) -> Result<Self> {
        let d = inner.input_dim();
        for (name, v) in [("scale", &scale), ("shift", &shift)] {
            if v.len() != d {
                return Err(OperatorError::InvalidParameter {
                    name,
                    reason: format!("has {} components, the model's input has {d}", v.len()),
                });
            }
            check_finite(name, v)?;
        }
        let zero_shift = shift.iter().all(|&s| s == 0.0);
        Ok(Self {
            inner,
            scale,
            shift,
            zero_shift,
        })
    }

    /// The wrapped model.
    pub fn inner(&self) -> &F {
        &self.inner
    }
    /// The per-component scale.
    pub fn scale(&self) -> &Array1<f32> {
        &self.scale
    }
    /// The per-component shift.
    pub fn shift(&self) -> &Array1<f32> {
        &self.shift
    }

    /// The mapped batch `scale ⊙ x + shift`, row by row (`x` checked first).
    pub fn to_inner(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.scale.len(), "forward input")?;
        let mut z = x.to_owned();
        z *= &self.scale.view().insert_axis(Axis(0));
        z += &self.shift.view().insert_axis(Axis(0));
        Ok(z)
    }

    fn scale_rows(&self, mut g: Array2<f32>) -> Array2<f32> {
        g *= &self.scale.view().insert_axis(Axis(0));
        g
    }
}

impl<F: ForwardModel> ForwardModel for Affine<F> {
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.inner.output_shape()
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.inner.forward(self.to_inner(x)?.view())
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        self.inner.forward_partial(self.to_inner(x)?.view())
    }
    /// `Some` only when the inner model is linear and the shift is zero (see the type's docs).
    fn as_linear(&self) -> Option<&dyn LinearOperator> {
        if self.zero_shift && self.inner.as_linear().is_some() {
            Some(self)
        } else {
            None
        }
    }
    /// `Some` when the inner model has a vjp or is linear.
    fn as_differentiable(&self) -> Option<&dyn Differentiable> {
        if self.inner.as_differentiable().is_some() || self.inner.as_linear().is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl<F: ForwardModel> LinearOperator for Affine<F> {
    /// `scale ⊙ A^T y`; [`OperatorError::Unsupported`] when the shift is nonzero or the inner
    /// model is not linear.
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if !self.zero_shift {
            return Err(OperatorError::Unsupported(
                "the adjoint of an affine map with a nonzero shift",
            ));
        }
        let lin = self
            .inner
            .as_linear()
            .ok_or(OperatorError::Unsupported("adjoint"))?;
        Ok(self.scale_rows(lin.adjoint(y)?))
    }
}

impl<F: ForwardModel> Differentiable for Affine<F> {
    /// `scale ⊙ J_G(scale ⊙ x + shift)^T v`; [`OperatorError::Unsupported`] when the inner model
    /// has neither a vjp nor an adjoint.
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let z = self.to_inner(x)?;
        if v.nrows() != x.nrows() {
            return Err(OperatorError::Rows {
                what: "vjp cotangent",
                expected: x.nrows(),
                got: v.nrows(),
            });
        }
        let g = if let Some(diff) = self.inner.as_differentiable() {
            diff.vjp(z.view(), v)?
        } else if let Some(lin) = self.inner.as_linear() {
            lin.adjoint(v)?
        } else {
            return Err(OperatorError::Unsupported("vjp"));
        };
        Ok(self.scale_rows(g))
    }
}
