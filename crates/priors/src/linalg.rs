//! Small dense f64 linear algebra: Cholesky factorisation and triangular solves.
//!
//! Used for the exact Gaussian and Gaussian-mixture denoisers and posteriors. Covariances are
//! never inverted explicitly: every `S^{-1} v` is two triangular solves with the Cholesky factor.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::{PriorError, Result};

/// Lower Cholesky factor `L` with `L L^T = a` of a symmetric positive definite matrix.
pub fn cholesky(a: ArrayView2<'_, f64>, what: &str) -> Result<Array2<f64>> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(PriorError::Shape { what: "cholesky: square matrix", expected: n, got: a.ncols() });
    }
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut s = a[[j, j]];
        for k in 0..j {
            s -= l[[j, k]] * l[[j, k]];
        }
        if s.is_nan() || s <= 0.0 || !s.is_finite() {
            return Err(PriorError::NotPositiveDefinite { what: what.to_string(), pivot: j });
        }
        let d = s.sqrt();
        l[[j, j]] = d;
        for i in (j + 1)..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / d;
        }
    }
    Ok(l)
}

/// Solve `L z = b` for lower-triangular `L`, in place.
pub fn solve_lower_in_place(l: ArrayView2<'_, f64>, b: &mut [f64]) {
    let n = b.len();
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[[i, k]] * b[k];
        }
        b[i] = s / l[[i, i]];
    }
}

/// Solve `L^T z = b` for lower-triangular `L`, in place.
pub fn solve_upper_t_in_place(l: ArrayView2<'_, f64>, b: &mut [f64]) {
    let n = b.len();
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in (i + 1)..n {
            s -= l[[k, i]] * b[k];
        }
        b[i] = s / l[[i, i]];
    }
}

/// `(L L^T)^{-1} b` by two triangular solves.
pub fn cholesky_solve(l: ArrayView2<'_, f64>, b: ArrayView1<'_, f64>) -> Array1<f64> {
    let mut z = b.to_vec();
    solve_lower_in_place(l, &mut z);
    solve_upper_t_in_place(l, &mut z);
    Array1::from(z)
}

/// `log det(L L^T) = 2 sum_i log L_ii`.
pub fn cholesky_logdet(l: ArrayView2<'_, f64>) -> f64 {
    2.0 * l.diag().iter().map(|v| v.ln()).sum::<f64>()
}

/// `L z` for lower-triangular `L`.
pub fn lower_mul(l: ArrayView2<'_, f64>, z: &[f64], out: &mut [f64]) {
    let n = z.len();
    for i in 0..n {
        let mut s = 0.0;
        for k in 0..=i {
            s += l[[i, k]] * z[k];
        }
        out[i] = s;
    }
}

/// Check that a matrix is square and symmetric to a relative tolerance.
pub fn check_symmetric(a: ArrayView2<'_, f64>, what: &'static str) -> Result<()> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(PriorError::Shape { what, expected: n, got: a.ncols() });
    }
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    for i in 0..n {
        for j in 0..i {
            if (a[[i, j]] - a[[j, i]]).abs() > 1e-10 * scale || !a[[i, j]].is_finite() {
                return Err(PriorError::InvalidParameter {
                    name: what,
                    reason: format!("not symmetric at ({i}, {j})"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    #[test]
    fn cholesky_reconstructs_and_solves() {
        let a = array![[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]];
        let l = cholesky(a.view(), "a").unwrap();
        let llt = l.dot(&l.t());
        for (x, y) in llt.iter().zip(a.iter()) {
            assert_abs_diff_eq!(x, y, epsilon = 1e-12);
        }
        let b = array![1.0, -2.0, 0.5];
        let z = cholesky_solve(l.view(), b.view());
        let back = a.dot(&z);
        for (x, y) in back.iter().zip(b.iter()) {
            assert_abs_diff_eq!(x, y, epsilon = 1e-12);
        }
        assert_abs_diff_eq!(cholesky_logdet(l.view()), 4.0f64.ln() + (l[[1, 1]] * l[[2, 2]]).powi(2).ln(), epsilon = 1e-12);
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        let a = array![[1.0, 2.0], [2.0, 1.0]];
        assert!(matches!(cholesky(a.view(), "a"), Err(PriorError::NotPositiveDefinite { pivot: 1, .. })));
    }
}
