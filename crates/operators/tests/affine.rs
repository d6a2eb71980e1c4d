//! `Affine`: `x -> G(scale x + shift)` passes every capability of `G` through: the vjp against
//! finite differences, the adjoint identity, per-row failures, and `as_linear` only without a
//! shift.

#![allow(clippy::unwrap_used)]

use diffinv_operators::{
    check_batch, Affine, Differentiable, FnForward, ForwardModel, MatrixOperator, OperatorError,
};
use ndarray::{array, Array1, Array2, ArrayView2};
use proptest::prelude::*;

/// A small nonlinear differentiable model: `G(x) = (x0 x1, sin x2, x0^2 + x2)`.
struct Toy;

impl ForwardModel for Toy {
    fn input_shape(&self) -> Vec<usize> {
        vec![3]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![3]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, OperatorError> {
        check_batch(x, 3, "forward input")?;
        let mut y = Array2::zeros((x.nrows(), 3));
        for (i, r) in x.outer_iter().enumerate() {
            y[[i, 0]] = r[0] * r[1];
            y[[i, 1]] = r[2].sin();
            y[[i, 2]] = r[0] * r[0] + r[2];
        }
        Ok(y)
    }
    fn as_differentiable(&self) -> Option<&dyn Differentiable> {
        Some(self)
    }
}

impl Differentiable for Toy {
    fn vjp(
        &self,
        x: ArrayView2<'_, f32>,
        v: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>, OperatorError> {
        let mut g = Array2::zeros((x.nrows(), 3));
        for i in 0..x.nrows() {
            let (a, b, c) = (x[[i, 0]], x[[i, 1]], x[[i, 2]]);
            g[[i, 0]] = b * v[[i, 0]] + 2.0 * a * v[[i, 2]];
            g[[i, 1]] = a * v[[i, 0]];
            g[[i, 2]] = c.cos() * v[[i, 1]] + v[[i, 2]];
        }
        Ok(g)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `<v, (G(x + h e_j) - G(x - h e_j)) / 2h> = (J^T v)_j`, scalar and per-component.
    #[test]
    fn vjp_matches_finite_differences(
        x in prop::collection::vec(-1.0f32..1.0, 3),
        v in prop::collection::vec(-1.0f32..1.0, 3),
        scale in prop::collection::vec(0.3f32..2.0, 3),
        shift in prop::collection::vec(-1.0f32..1.0, 3),
    ) {
        let models = [
            Affine::new(Toy, scale[0], shift[0]).unwrap(),
            Affine::per_component(Toy, Array1::from(scale.clone()), Array1::from(shift.clone())).unwrap(),
        ];
        for g in &models {
            let xa = Array2::from_shape_vec((1, 3), x.clone()).unwrap();
            let va = Array2::from_shape_vec((1, 3), v.clone()).unwrap();
            let vjp = g.as_differentiable().expect("Toy is differentiable").vjp(xa.view(), va.view()).unwrap();
            let h = 1e-2f32;
            for j in 0..3 {
                let (mut xp, mut xm) = (xa.clone(), xa.clone());
                xp[[0, j]] += h;
                xm[[0, j]] -= h;
                let yp = g.forward(xp.view()).unwrap();
                let ym = g.forward(xm.view()).unwrap();
                let fd = (dot(yp.as_slice().unwrap(), &v) - dot(ym.as_slice().unwrap(), &v)) / (2.0 * h as f64);
                prop_assert!((fd - vjp[[0, j]] as f64).abs() < 2e-2 * (1.0 + fd.abs()), "j {}: fd {} vjp {}", j, fd, vjp[[0, j]]);
            }
        }
    }

    /// `<A' x, y> = <x, A'^T y>` for `A' x = A (scale ⊙ x)`.
    #[test]
    fn adjoint_identity_through_the_wrapper(
        a in prop::collection::vec(-1.0f32..1.0, 12),
        x in prop::collection::vec(-1.0f32..1.0, 4),
        y in prop::collection::vec(-1.0f32..1.0, 3),
        scale in prop::collection::vec(-2.0f32..2.0, 4),
    ) {
        let op = MatrixOperator::new(Array2::from_shape_vec((3, 4), a).unwrap()).unwrap();
        let g = Affine::per_component(op, Array1::from(scale), Array1::zeros(4)).unwrap();
        let lin = g.as_linear().expect("zero shift keeps it linear");
        let xa = Array2::from_shape_vec((1, 4), x.clone()).unwrap();
        let ya = Array2::from_shape_vec((1, 3), y.clone()).unwrap();
        let ax = lin.forward(xa.view()).unwrap();
        let aty = lin.adjoint(ya.view()).unwrap();
        let lhs = dot(ax.as_slice().unwrap(), &y);
        let rhs = dot(&x, aty.as_slice().unwrap());
        prop_assert!((lhs - rhs).abs() < 1e-5 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
        // The vjp of a linear map is its adjoint.
        let vjp = g.as_differentiable().unwrap().vjp(xa.view(), ya.view()).unwrap();
        prop_assert_eq!(vjp, aty);
    }
}

#[test]
fn a_shift_makes_it_affine_not_linear() {
    let op = MatrixOperator::new(array![[1.0f32, 2.0], [3.0, 4.0]]).unwrap();
    let g = Affine::new(&op, 2.0, 0.5).unwrap();
    assert!(g.as_linear().is_none());
    assert!(matches!(
        diffinv_operators::LinearOperator::adjoint(&g, array![[1.0f32, 0.0]].view()),
        Err(OperatorError::Unsupported(_))
    ));
    // Forward is A (2 x + 0.5).
    assert_eq!(
        g.forward(array![[1.0f32, 0.0]].view()).unwrap(),
        array![[3.5f32, 9.5]]
    );
    // The vjp is still exact: 2 A^T v.
    let v = g
        .as_differentiable()
        .unwrap()
        .vjp(array![[1.0f32, 0.0]].view(), array![[1.0f32, 1.0]].view())
        .unwrap();
    assert_eq!(v, array![[8.0f32, 12.0]]);
    // Zero shift: linear again, adjoint 2 A^T.
    let h = Affine::new(&op, 2.0, 0.0).unwrap();
    assert_eq!(
        h.as_linear()
            .unwrap()
            .adjoint(array![[1.0f32, 1.0]].view())
            .unwrap(),
        array![[8.0f32, 12.0]]
    );
}

#[test]
fn per_row_failures_pass_through() {
    // Fails in physical units (x < 0), which the normalised input -1 maps to; z = 0 maps to 1.
    let g = FnForward::fallible(1, 1, |x: &[f32]| {
        if x[0] < 0.0 {
            Err(format!("negative input {}", x[0]))
        } else {
            Ok(vec![x[0].sqrt()])
        }
    });
    let a = Affine::new(g, 2.0, 1.0).unwrap();
    let out = a
        .forward_partial(array![[0.0f32], [-1.0], [1.5]].view())
        .unwrap();
    assert_eq!(out.y[[0, 0]], 1.0);
    assert_eq!(out.y[[2, 0]], 2.0);
    assert!(out.y[[1, 0]].is_nan());
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].row, 1);
    assert_eq!(out.failures[0].reason, "negative input -1");
    assert!(matches!(
        a.forward(array![[-1.0f32]].view()),
        Err(OperatorError::SampleFailed { row: 0, .. })
    ));
    // A black box stays a black box.
    assert!(a.as_differentiable().is_none() && a.as_linear().is_none());
}

#[test]
fn rejects_bad_parameters_and_inputs() {
    let op = MatrixOperator::new(Array2::eye(3)).unwrap();
    assert!(matches!(
        Affine::new(&op, f32::NAN, 0.0),
        Err(OperatorError::InvalidParameter { name: "scale", .. })
    ));
    assert!(matches!(
        Affine::new(&op, 1.0, f32::INFINITY),
        Err(OperatorError::InvalidParameter { name: "shift", .. })
    ));
    assert!(matches!(
        Affine::per_component(&op, Array1::ones(2), Array1::zeros(3)),
        Err(OperatorError::InvalidParameter { name: "scale", .. })
    ));
    let g = Affine::new(&op, 1.0, 0.0).unwrap();
    assert!(matches!(
        g.forward(array![[1.0f32, 2.0]].view()),
        Err(OperatorError::Shape { .. })
    ));
    assert!(matches!(
        g.forward(array![[1.0f32, f32::NAN, 0.0]].view()),
        Err(OperatorError::NonFiniteInput { row: 0, .. })
    ));
    let v = g.as_differentiable().unwrap().vjp(
        array![[1.0f32, 2.0, 3.0]].view(),
        array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]].view(),
    );
    assert!(matches!(v, Err(OperatorError::Rows { .. })));
}
