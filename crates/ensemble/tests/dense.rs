//! The fast products against dense f64 computations, typed errors, and a golden value.
//!
//! Tolerance: a length-`k` f32 dot product computed in any order satisfies
//! `|fl(a.b) - a.b| <= gamma_k sum |a_i b_i|` with `gamma_k ~ k eps` (Higham, Thm 3.1), so every
//! entry is checked against `TOL_FACTOR * (k + 2) * eps_f32 * (|A| |B|)_ij`, the bound computed
//! in f64 from absolute values (with a tiny absolute floor for entries that are exactly zero).

use diffinv_ensemble::{
    anomalies, combine, combine_anomalies, cross_covariance, gram, kalman_direction, kalman_step, kalman_step_in, mean, reference, EnsembleError, KalmanForm,
};
use ndarray::{s, Array2, ArrayView2, ShapeBuilder};
use proptest::prelude::*;

const EPS: f64 = f32::EPSILON as f64;
const TOL_FACTOR: f64 = 2.0;

fn to64(a: ArrayView2<'_, f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

fn abs64(a: &Array2<f64>) -> Array2<f64> {
    a.mapv(f64::abs)
}

/// Exact (f64) anomalies of an f32 matrix.
fn anom64(a: &Array2<f64>) -> Array2<f64> {
    let mu = a.mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(a.ncols()));
    a - &mu
}

/// Check `got` against `exact` entrywise with bound `TOL_FACTOR (k + 2) eps bound_ij`.
fn check(got: ArrayView2<'_, f32>, exact: &Array2<f64>, bound: &Array2<f64>, k: usize, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.dim(), exact.dim(), "{} shape", what);
    for ((idx, &g), (&e, &b)) in got.indexed_iter().zip(exact.iter().zip(bound.iter())) {
        let tol = TOL_FACTOR * (k as f64 + 2.0) * EPS * b + 1e-30;
        prop_assert!((f64::from(g) - e).abs() <= tol, "{} at {:?}: got {} exact {} tol {}", what, idx, g, e, tol);
    }
    Ok(())
}

/// A random f32 matrix with values in [-scale, scale] plus an offset, in C or F order.
fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = Array2<f32>> {
    (proptest::collection::vec(-1.0f32..1.0, rows * cols), -3.0f32..3.0, any::<bool>()).prop_map(move |(v, off, f)| {
        let v: Vec<f32> = v.into_iter().map(|x| x + off).collect();
        if f {
            Array2::from_shape_vec((rows, cols).f(), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
        } else {
            Array2::from_shape_vec((rows, cols), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
        }
    })
}

/// Sizes that hit 1 and non-multiples of the tile sizes (256, 512) and of gemm's register
/// blocks, while keeping the case count small.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 2usize..40, Just(257usize), Just(515usize)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn gram_matches_dense((na, nb, k) in (size(), prop_oneof![Just(1usize), 2usize..300], prop_oneof![Just(1usize), 2usize..600])
        .prop_filter("keep cases small", |(a, b, k)| a * b * k <= 40_000_000),
        seed in any::<u64>()) {
        let a = det_matrix(na, k, seed, false);
        let b = det_matrix(nb, k, seed ^ 0x9e37, true);
        let g = gram(a.view(), b.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (a64, b64) = (to64(a.view()), to64(b.view()));
        let exact = a64.dot(&b64.t());
        let bound = abs64(&a64).dot(&abs64(&b64).t());
        check(g.view(), &exact, &bound, k, "gram")?;
        // a reversed-row view goes through the copying path
        let rev = a.slice(s![..;-1, ..]);
        let gr = gram(rev, b.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let exact_r = to64(rev).dot(&b64.t());
        check(gr.view(), &exact_r, &abs64(&to64(rev)).dot(&abs64(&b64).t()), k, "gram reversed")?;
    }

    #[test]
    fn combine_matches_dense(c in (prop_oneof![Just(1usize), 2usize..20, Just(513usize)], size()).prop_flat_map(|(nc, n)| matrix(nc, n)),
        d in prop_oneof![Just(1usize), 2usize..100, Just(600usize)], seed in any::<u64>()) {
        let n = c.ncols();
        let x = det_matrix(n, d, seed, false);
        let (c64, x64) = (to64(c.view()), to64(x.view()));
        let got = combine(c.view(), x.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(got.view(), &c64.dot(&x64), &abs64(&c64).dot(&abs64(&x64)), n, "combine")?;
        // anomalies: the subtraction adds at most one rounding per entry of X - 1 xbar^T,
        // and the f32 mean one more, so bound with |X| + |xbar|.
        let got = combine_anomalies(c.view(), x.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let xa = anom64(&x64);
        let xabs = abs64(&x64) + &abs64(&x64).mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(d));
        check(got.view(), &c64.dot(&xa), &abs64(&c64).dot(&xabs), n + 2, "combine_anomalies")?;
    }

    #[test]
    fn kalman_matches_dense(n in size(), d in prop_oneof![Just(1usize), 2usize..64, Just(700usize)],
        m in prop_oneof![Just(1usize), 2usize..64, Just(300usize)], seed in any::<u64>()) {
        let x = det_matrix(n, d, seed, false);
        let y = det_matrix(n, m, seed.wrapping_add(1), true);
        let r = det_matrix(n, m, seed.wrapping_add(2), false);
        let kd = kalman_direction(x.view(), y.view(), r.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (x64, y64, r64) = (to64(x.view()), to64(y.view()), to64(r.view()));
        let (dxa, dya) = (anom64(&x64), anom64(&y64));
        let nf = n as f64;
        let c = r64.dot(&dya.t()) / nf;
        // |Y - 1 ybar^T| computed in f32 is off by at most eps (|Y| + |ybar|) per entry.
        let yabs = abs64(&y64) + &abs64(&y64).mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(m));
        let cabs = abs64(&r64).dot(&yabs.t()) / nf;
        check(kd.c.view(), &c, &cabs, m + 2, "C")?;
        // dx = C dXa; the error of C (bounded by (m+4) eps cabs) propagates through |dXa|.
        let xabs = abs64(&x64) + &abs64(&x64).mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(d));
        let exact = c.dot(&dxa);
        let bound = cabs.dot(&xabs);
        check(kd.dx.view(), &exact, &bound, m + n + 6, "dx")?;
        // and the crate's reference implementation agrees to the same bound
        let rf = reference::kalman_direction(x.view(), y.view(), r.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(rf.dx.view(), &exact, &bound, m + n + 6, "reference dx")?;
        let cc = cross_covariance(r.view(), y.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(cc, kd.c);
        // The factored form: dx = R (dY^T dXa / N); its entries are sums over m of sums over n.
        let fs = kalman_step_in(KalmanForm::Factored, x.view(), y.view(), r.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let fbound = abs64(&r64).dot(&yabs.t().dot(&xabs)) / nf;
        check(fs.dx.view(), &exact, &fbound, m + n + 6, "factored dx")?;
        // ||C||_F^2 = tr((R^T R)(dY^T dY)) / N^2, within the same kind of bound on its terms.
        let c2: f64 = c.iter().map(|v| v * v).sum();
        let c2abs: f64 = (abs64(&r64).t().dot(&abs64(&r64)) * yabs.t().dot(&yabs)).sum() / (nf * nf);
        let tol = TOL_FACTOR * 2.0 * (n as f64 + 4.0) * EPS * c2abs + 1e-30;
        prop_assert!((fs.c_norm.powi(2) - c2).abs() <= tol, "factored ||C||^2 {} exact {} tol {}", fs.c_norm.powi(2), c2, tol);
        let gs = kalman_step_in(KalmanForm::Gram, x.view(), y.view(), r.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&gs.dx, &kd.dx);
        prop_assert!((gs.c_norm.powi(2) - c2).abs() <= tol, "Gram ||C||^2 {} exact {} tol {}", gs.c_norm.powi(2), c2, tol);
        // kalman_step picks the form by shape only.
        let auto = kalman_step(x.view(), y.view(), r.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(auto.form, KalmanForm::cheaper(n, m));
        prop_assert_eq!(auto.dx, if auto.form == KalmanForm::Gram { gs.dx } else { fs.dx });
    }
}

/// A deterministic pseudo-random matrix (cheaper for proptest than shrinking large vectors),
/// with a common offset so that means are non-trivial; `fortran` picks the memory order.
fn det_matrix(rows: usize, cols: usize, seed: u64, fortran: bool) -> Array2<f32> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let off = next() * 3.0;
    let v: Vec<f32> = (0..rows * cols).map(|_| next() + off).collect();
    Array2::from_shape_vec((rows, cols).set_f(fortran), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
}

#[test]
fn golden_two_particles() {
    // x = [1, 3], y = [0, 2], r = [1, -1]: ybar = 1, dy = [-1, 1], C_jk = r_j dy_k / 2,
    // C = [[-1/2, 1/2], [1/2, -1/2]]; xbar = 2, dxa = [-1, 1]; dx = [1, -1].
    let x = ndarray::arr2(&[[1.0f32], [3.0]]);
    let y = ndarray::arr2(&[[0.0f32], [2.0]]);
    let r = ndarray::arr2(&[[1.0f32], [-1.0]]);
    let kd = kalman_direction(x.view(), y.view(), r.view()).expect("valid shapes");
    assert_eq!(kd.c, ndarray::arr2(&[[-0.5f32, 0.5], [0.5, -0.5]]));
    assert_eq!(kd.dx, ndarray::arr2(&[[1.0f32], [-1.0]]));
}

#[test]
fn mean_and_anomalies() {
    let x = ndarray::arr2(&[[1.0f32, -2.0, 10.0], [3.0, 2.0, 10.0], [5.0, 3.0, 10.0]]);
    let mu = mean(x.view()).expect("non-empty");
    assert_eq!(mu, ndarray::arr1(&[3.0f32, 1.0, 10.0]));
    let a = anomalies(x.view()).expect("non-empty");
    assert_eq!(a, ndarray::arr2(&[[-2.0f32, -3.0, 0.0], [0.0, 1.0, 0.0], [2.0, 2.0, 0.0]]));
    // anomalies sum to zero over the ensemble, column by column
    for v in a.sum_axis(ndarray::Axis(0)) {
        approx::assert_abs_diff_eq!(v, 0.0f32, epsilon = 1e-6);
    }
    // a wide matrix spanning several column bands of the parallel mean
    let w = Array2::from_shape_fn((3, 2500), |(i, j)| (i * 2500 + j) as f32);
    let mw = mean(w.view()).expect("non-empty");
    for j in 0..2500 {
        assert_eq!(mw[j], (2500 + j) as f32);
    }
}

#[test]
fn typed_errors_no_panics() {
    let e0 = Array2::<f32>::zeros((0, 4));
    let a = Array2::<f32>::ones((3, 4));
    let b = Array2::<f32>::ones((3, 5));
    assert_eq!(mean(e0.view()), Err(EnsembleError::Empty));
    assert_eq!(anomalies(e0.view()).err(), Some(EnsembleError::Empty));
    assert_eq!(gram(e0.view(), a.view()).err(), Some(EnsembleError::Empty));
    assert_eq!(gram(a.view(), e0.view()).err(), Some(EnsembleError::Empty));
    assert_eq!(gram(a.view(), b.view()).err(), Some(EnsembleError::Shape { what: "gram columns", expected: 4, got: 5 }));
    assert!(matches!(combine(a.view(), b.view()), Err(EnsembleError::Shape { expected: 4, got: 3, .. })));
    assert!(matches!(combine_anomalies(a.view(), b.view()), Err(EnsembleError::Shape { .. })));
    let c0 = Array2::<f32>::zeros((2, 0));
    assert_eq!(combine(c0.view(), e0.view()).err(), Some(EnsembleError::Empty));
    assert_eq!(cross_covariance(a.view(), b.view()).err(), Some(EnsembleError::Shape { what: "cross-covariance columns", expected: 5, got: 4 }));
    assert_eq!(cross_covariance(e0.view(), e0.view()).err(), Some(EnsembleError::Empty));
    // EnKG: empty ensemble, wrong rows of y / r, mismatched measurement sizes
    let y = Array2::<f32>::ones((3, 2));
    assert_eq!(kalman_direction(e0.view(), y.view(), y.view()).err(), Some(EnsembleError::Empty));
    let y2 = Array2::<f32>::ones((2, 2));
    assert_eq!(kalman_direction(a.view(), y2.view(), y.view()).err(), Some(EnsembleError::Shape { what: "rows of y", expected: 3, got: 2 }));
    assert_eq!(kalman_direction(a.view(), y.view(), y2.view()).err(), Some(EnsembleError::Shape { what: "rows of r", expected: 3, got: 2 }));
    let r3 = Array2::<f32>::ones((3, 3));
    assert_eq!(kalman_direction(a.view(), y.view(), r3.view()).err(), Some(EnsembleError::Shape { what: "columns of r", expected: 2, got: 3 }));
    // zero-width state or measurement is well defined (empty/zero results), not an error
    let x0 = Array2::<f32>::zeros((3, 0));
    let kd = kalman_direction(x0.view(), y.view(), y.view()).expect("zero-width state");
    assert_eq!(kd.dx.dim(), (3, 0));
    let m0 = Array2::<f32>::zeros((3, 0));
    let kd = kalman_direction(a.view(), m0.view(), m0.view()).expect("zero-width measurement");
    assert_eq!(kd.c, Array2::<f32>::zeros((3, 3)));
    assert_eq!(kd.dx, Array2::<f32>::zeros((3, 4)));
}
