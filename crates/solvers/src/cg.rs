//! Matrix-free conjugate gradients, batched over rows, and the quadratic data term of a linear
//! problem with a Gaussian likelihood.
//!
//! [`conjugate_gradient`] solves `M x_i = b_i` for every row `i` of `b` with the same symmetric
//! positive (semi-)definite operator `M`, given only the map `V -> V M` on a batch (`M` applied
//! to every row). It is the Krylov solver of DDS (Chung, Lee & Ye 2024, section 3.2: a few CG
//! steps on the normal equations, started at the Tweedie estimate), of DiffPIR's data step for a
//! linear operator, and of the Tikhonov and PnP-ADMM baselines.
//!
//! [`LinearGaussianData`] is the data term `f(x) = L(A x)` of a linear forward model `A` with a
//! quadratic likelihood `L(u) = (u - y)^T W (u - y) / 2` (for [`GaussianLikelihood`]
//! `W = I / sigma_y^2`, or `I` when `sigma_y = 0`). It reaches `W` and `y` only through the
//! likelihood's gradient, which is affine: `grad L(u) = W (u - y)`, so
//! `W v = grad L(v) - grad L(0)` and `W y = -grad L(0)`. Its normal matrix `A^T W A` is applied
//! with one forward and one adjoint evaluation, both counted by the [`Evaluator`].
//!
//! [`GaussianLikelihood`]: diffinv_operators::GaussianLikelihood

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use thiserror::Error;

use crate::problem::Evaluator;
use crate::{Result, SolverError};

/// Stopping rule of [`conjugate_gradient`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgOptions {
    /// Maximum number of iterations (operator applications after the initial residual).
    /// Default 50.
    pub max_iters: usize,
    /// Relative tolerance: row `i` stops when `||b_i - M x_i|| <= tol ||b_i||`. Default `1e-6`.
    /// `0` runs exactly `max_iters` iterations (DDS's fixed `M` steps).
    pub tol: f64,
}

impl Default for CgOptions {
    fn default() -> Self {
        Self {
            max_iters: 50,
            tol: 1e-6,
        }
    }
}

/// The result of [`conjugate_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct CgSolution {
    /// The iterates, `(N, d)`.
    pub x: Array2<f32>,
    /// Iterations run per row.
    pub iterations: Vec<usize>,
    /// Final residual norm `||b_i - M x_i||` per row (the recursively updated residual).
    pub residual_norms: Vec<f64>,
    /// Whether row `i` met the tolerance.
    pub converged: Vec<bool>,
}

/// What can stop [`conjugate_gradient`].
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CgError {
    /// A bad option (e.g. a negative or non-finite tolerance).
    #[error("invalid CG option: {0}")]
    Options(String),
    /// Shapes of `b`, the start or the operator's output disagree.
    #[error("CG shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which array.
        what: &'static str,
        /// Expected `(rows, cols)`.
        expected: (usize, usize),
        /// Shape passed.
        got: (usize, usize),
    },
    /// The operator is not positive semi-definite: `p^T M p < 0`.
    #[error("CG: the operator is indefinite on row {row} (p^T M p = {curvature:e} at iteration {iteration})")]
    Indefinite {
        /// Row of the batch.
        row: usize,
        /// Iteration.
        iteration: usize,
        /// The negative curvature found.
        curvature: f64,
    },
    /// A non-finite value appeared in a row.
    #[error("CG: non-finite value in row {row} at iteration {iteration}")]
    NonFinite {
        /// Row of the batch.
        row: usize,
        /// Iteration.
        iteration: usize,
    },
    /// The operator itself failed.
    #[error("CG operator failed: {0}")]
    Operator(SolverError),
}

impl CgError {
    /// The solver error for a failure at solver step `step`: a non-finite row becomes
    /// [`SolverError::NonFiniteState`] naming the particle, an operator failure is passed
    /// through, the rest are [`SolverError::Problem`].
    pub fn at_step(self, step: usize) -> SolverError {
        match self {
            CgError::Operator(e) => e,
            CgError::NonFinite { row, .. } => SolverError::NonFiniteState {
                particle: row,
                step,
            },
            CgError::Options(msg) => SolverError::Config(msg),
            other => SolverError::Problem(format!("at step {step}: {other}")),
        }
    }
}

/// Conjugate gradients (Hestenes & Stiefel 1952) for `M x_i = b_i`, every row `i` at once.
///
/// `apply(V)` must return `V M` for a batch `V` `(N, d)` (i.e. `M v` per row; `M` symmetric
/// positive semi-definite and `b_i` in its range). Starting from `x0`, with `r = b - M x`,
/// `p = r`, each iteration takes
///
/// `alpha = r^T r / p^T M p`, `x += alpha p`, `r -= alpha M p`,
/// `beta = r_new^T r_new / r^T r`, `p = r + beta p`,
///
/// so that after `k` iterations `x_i` minimises `x^T M x / 2 - b_i^T x` over
/// `x0_i + span{r0, M r0, ..., M^{k-1} r0}`. Rows stop independently when
/// `||r_i|| <= tol ||b_i||` (their direction is then zero, so the batched operator call is not
/// split); scalars are accumulated in `f64`. A row whose curvature `p^T M p` is within f32
/// round-off of zero (`1e-5 |p|^2 ||M||`) stops (breakdown of a semi-definite `M`); a clearly negative curvature is
/// [`CgError::Indefinite`]. `max_iters` reached without meeting the tolerance
/// is not an error: see [`CgSolution::converged`]. The operator is called once for the initial
/// residual (skipped when `x0` is zero) and once per iteration.
pub fn conjugate_gradient<F>(
    mut apply: F,
    b: ArrayView2<'_, f32>,
    x0: ArrayView2<'_, f32>,
    opts: &CgOptions,
) -> std::result::Result<CgSolution, CgError>
where
    F: FnMut(ArrayView2<'_, f32>) -> Result<Array2<f32>>,
{
    if !(opts.tol.is_finite() && opts.tol >= 0.0) {
        return Err(CgError::Options(format!(
            "tol must be finite and >= 0, got {}",
            opts.tol
        )));
    }
    let (n, d) = b.dim();
    if x0.dim() != (n, d) {
        return Err(CgError::Shape {
            what: "start x0",
            expected: (n, d),
            got: x0.dim(),
        });
    }
    if let Some(row) =
        crate::problem::first_non_finite_row(b).or_else(|| crate::problem::first_non_finite_row(x0))
    {
        return Err(CgError::NonFinite { row, iteration: 0 });
    }
    let mut call =
        |v: ArrayView2<'_, f32>, iteration: usize| -> std::result::Result<Array2<f64>, CgError> {
            let out = apply(v).map_err(CgError::Operator)?;
            if out.dim() != (n, d) {
                return Err(CgError::Shape {
                    what: "operator output",
                    expected: (n, d),
                    got: out.dim(),
                });
            }
            if let Some(row) = crate::problem::first_non_finite_row(out.view()) {
                return Err(CgError::NonFinite { row, iteration });
            }
            Ok(out.mapv(f64::from))
        };
    let mut x = x0.mapv(f64::from);
    let mut r = b.mapv(f64::from);
    if x0.iter().any(|v| *v != 0.0) {
        let mx = call(x0, 0)?;
        r -= &mx;
    }
    let bnorm: Vec<f64> = b
        .outer_iter()
        .map(|row| {
            row.iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    // A zero right-hand side has the solution 0: measure the residual absolutely then.
    let thresh: Vec<f64> = bnorm
        .iter()
        .map(|bn| opts.tol * if *bn > 0.0 { *bn } else { 1.0 })
        .collect();
    let mut rs: Vec<f64> = r.outer_iter().map(|row| row.dot(&row)).collect();
    let mut active: Vec<bool> = (0..n).map(|i| rs[i].sqrt() > thresh[i]).collect();
    let mut converged: Vec<bool> = active.iter().map(|a| !a).collect();
    let mut iterations = vec![0usize; n];
    let mut p = r.clone();
    let mut mnorm = vec![0.0f64; n];
    for it in 1..=opts.max_iters {
        if !active.iter().any(|a| *a) {
            break;
        }
        let mut p32 = p.mapv(|v| v as f32);
        for (i, mut row) in p32.outer_iter_mut().enumerate() {
            if !active[i] {
                row.fill(0.0);
            }
        }
        let mp = call(p32.view(), it)?;
        for i in 0..n {
            if !active[i] {
                continue;
            }
            let curv = p.row(i).dot(&mp.row(i));
            if !curv.is_finite() {
                return Err(CgError::NonFinite {
                    row: i,
                    iteration: it,
                });
            }
            // Curvatures within the round-off of an f32 operator, |p^T M p| <= 1e-5 |p|^2 ||M||
            // (||M|| estimated by the largest ||M p|| / ||p|| seen on this row), are a breakdown
            // (the direction lies numerically in the null space of a semi-definite M, e.g. once
            // the Krylov space of A^T A is exhausted), not indefiniteness: the row stops there.
            let pn2 = p.row(i).dot(&p.row(i));
            if pn2 > 0.0 {
                mnorm[i] = mnorm[i].max((mp.row(i).dot(&mp.row(i)) / pn2).sqrt());
            }
            let round_off = 1e-5 * pn2 * mnorm[i];
            if curv < -round_off {
                return Err(CgError::Indefinite {
                    row: i,
                    iteration: it,
                    curvature: curv,
                });
            }
            if curv <= round_off {
                active[i] = false;
                continue;
            }
            let alpha = rs[i] / curv;
            x.row_mut(i).scaled_add(alpha, &p.row(i));
            r.row_mut(i).scaled_add(-alpha, &mp.row(i));
            let rs_new = r.row(i).dot(&r.row(i));
            iterations[i] = it;
            if rs_new.sqrt() <= thresh[i] {
                converged[i] = true;
                active[i] = false;
                rs[i] = rs_new;
                continue;
            }
            let beta = rs_new / rs[i];
            rs[i] = rs_new;
            let ri = r.row(i).to_owned();
            let mut pi = p.row_mut(i);
            pi *= beta;
            pi += &ri;
        }
    }
    let out = x.mapv(|v| v as f32);
    if let Some(row) = crate::problem::first_non_finite_row(out.view()) {
        return Err(CgError::NonFinite {
            row,
            iteration: opts.max_iters,
        });
    }
    Ok(CgSolution {
        x: out,
        iterations,
        residual_norms: rs.iter().map(|v| v.sqrt()).collect(),
        converged,
    })
}

/// The data term `f(x) = L(A x)` of a linear forward model with a quadratic (Gaussian)
/// likelihood `L(u) = (u - y)^T W (u - y) / 2`, seen only through the [`Evaluator`]:
///
/// - `A^T W y = -A^T grad L(0)` (one adjoint, computed once by [`new`](Self::new)),
/// - `A^T W A v = A^T (grad L(A v) - grad L(0))` (one forward and one adjoint per call),
/// - `grad f(x) = A^T grad L(A x)`.
///
/// For a non-quadratic likelihood the same formulas are the secant model of `L` at 0, which
/// the solvers built on this type do not try to correct: they require a Gaussian likelihood.
#[derive(Debug, Clone)]
pub struct LinearGaussianData {
    /// `grad L(0) = -W y`, `(1, m)`.
    g0: Array2<f32>,
    /// `A^T W y`, `(d,)`.
    aty: Array1<f32>,
}

impl LinearGaussianData {
    /// Precompute `A^T W y`; a [`SolverError::Problem`] naming `method` if the problem's forward
    /// model is not linear.
    pub fn new(eval: &Evaluator<'_>, method: &str, step: usize) -> Result<Self> {
        eval.problem().require_linear(method)?;
        let m = eval.problem().measurement_dim();
        let g0 = eval.likelihood_grad(Array2::<f32>::zeros((1, m)).view(), step)?;
        let aty = -eval
            .adjoint(g0.view(), step)?
            .index_axis(Axis(0), 0)
            .to_owned();
        Ok(Self { g0, aty })
    }
    /// `A^T W y`.
    pub fn rhs(&self) -> &Array1<f32> {
        &self.aty
    }
    /// `A^T W A v` for every row of `v`.
    pub fn normal(
        &self,
        eval: &Evaluator<'_>,
        v: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<Array2<f32>> {
        let u = eval.forward(v, step)?;
        let mut wu = eval.likelihood_grad(u.view(), step)?;
        wu -= &self.g0;
        eval.adjoint(wu.view(), step)
    }
    /// `grad f(x) = A^T grad L(A x)` for every row, and the mean of `L(A x)` over the rows.
    pub fn gradient(
        &self,
        eval: &Evaluator<'_>,
        x: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<(Array2<f32>, f64)> {
        let u = eval.forward(x, step)?;
        let g = eval.likelihood_grad(u.view(), step)?;
        let nll = eval.nll(u.view(), step)?;
        let mean = nll.iter().map(|v| f64::from(*v)).sum::<f64>() / nll.len().max(1) as f64;
        Ok((eval.adjoint(g.view(), step)?, mean))
    }
    /// The mean over the rows of `L(A x)`.
    pub fn misfit(&self, eval: &Evaluator<'_>, x: ArrayView2<'_, f32>, step: usize) -> Result<f64> {
        let u = eval.forward(x, step)?;
        let nll = eval.nll(u.view(), step)?;
        Ok(nll.iter().map(|v| f64::from(*v)).sum::<f64>() / nll.len().max(1) as f64)
    }
    /// The proximal point of `f` with weight `rho` about every row `z_i`:
    ///
    /// `argmin_x L(A x) + rho ||x - z_i||^2 / 2`, i.e. `(A^T W A + rho I) x = A^T W y + rho z_i`,
    ///
    /// by [`conjugate_gradient`] started at `start` (`rho = 0` gives the least-squares
    /// solution nearest the start within the Krylov space, as in DDS).
    pub fn prox(
        &self,
        eval: &Evaluator<'_>,
        z: ArrayView2<'_, f32>,
        rho: f64,
        start: ArrayView2<'_, f32>,
        opts: &CgOptions,
        step: usize,
    ) -> Result<CgSolution> {
        if !(rho.is_finite() && rho >= 0.0) {
            return Err(SolverError::Config(format!(
                "proximal weight must be finite and >= 0, got {rho}"
            )));
        }
        let r = rho as f32;
        let mut b = z.to_owned() * r;
        b += &self.aty;
        conjugate_gradient(
            |v| {
                let mut out = self.normal(eval, v, step)?;
                if r > 0.0 {
                    Zip::from(&mut out).and(&v).for_each(|o, &vi| *o += r * vi);
                }
                Ok(out)
            },
            b.view(),
            start,
            opts,
        )
        .map_err(|e| e.at_step(step))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;


    fn spd() -> Array2<f64> {
        // B^T B + 0.5 I with a fixed non-symmetric B: SPD, condition number about 40.
        let b = array![
            [2.0, -1.0, 0.5, 0.0, 0.3],
            [0.0, 1.5, -0.7, 0.2, 0.0],
            [0.4, 0.0, 1.0, -0.5, 0.9],
            [-0.3, 0.8, 0.0, 2.2, 0.1],
            [0.0, 0.2, -0.6, 0.0, 0.7]
        ];
        let mut m = b.t().dot(&b);
        for i in 0..5 {
            m[[i, i]] += 0.5;
        }
        m
    }

    #[test]
    fn matches_a_dense_solve_on_every_row() {
        let m = spd();
        let m32 = m.mapv(|v| v as f32);
        let b = array![
            [1.0f32, -2.0, 0.5, 3.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [-0.3, 0.7, 1.1, -0.2, 2.0]
        ];
        let mut calls = 0;
        let sol = conjugate_gradient(
            |v| {
                calls += 1;
                Ok(v.dot(&m32))
            },
            b.view(),
            Array2::zeros((3, 5)).view(),
            &CgOptions {
                max_iters: 50,
                tol: 1e-6,
            },
        )
        .unwrap();
        for (i, row) in b.outer_iter().enumerate() {
            let exact = super::fixtures::solve(&m, &row.mapv(f64::from));
            for j in 0..5 {
                assert_abs_diff_eq!(f64::from(sol.x[[i, j]]), exact[j], epsilon = 1e-4);
            }
            assert!(sol.converged[i]);
        }
        // The zero right-hand side converges without an iteration; in exact arithmetic a 5 x 5
        // system needs at most 5 iterations, in f32 a few more.
        assert_eq!(sol.iterations[1], 0);
        assert!(
            sol.iterations[0] <= 10 && sol.iterations[2] <= 10,
            "{:?}",
            sol.iterations
        );
        assert!(calls <= 11);
    }

    #[test]
    fn a_warm_start_at_the_solution_needs_no_iteration_and_max_iters_caps_the_work() {
        let m = spd();
        let m32 = m.mapv(|v| v as f32);
        let b = array![[1.0f32, 2.0, 3.0, 4.0, 5.0]];
        let exact = super::fixtures::solve(&m, &b.row(0).mapv(f64::from)).mapv(|v| v as f32);
        let x0 = exact.clone().insert_axis(Axis(0));
        let sol = conjugate_gradient(
            |v| Ok(v.dot(&m32)),
            b.view(),
            x0.view(),
            &CgOptions {
                max_iters: 50,
                tol: 1e-4,
            },
        )
        .unwrap();
        assert_eq!(sol.iterations[0], 0);
        let two = conjugate_gradient(
            |v| Ok(v.dot(&m32)),
            b.view(),
            Array2::zeros((1, 5)).view(),
            &CgOptions {
                max_iters: 2,
                tol: 0.0,
            },
        )
        .unwrap();
        assert_eq!(two.iterations[0], 2);
        assert!(!two.converged[0]);
        // Two steps already reduce the residual (CG minimises the M-norm error monotonically).
        assert!(two.residual_norms[0] < b.row(0).mapv(|v| f64::from(v).powi(2)).sum().sqrt());
    }

    #[test]
    fn typed_errors_for_indefinite_operators_bad_shapes_and_options() {
        let neg = array![[-1.0f32, 0.0], [0.0, -2.0]];
        let b = array![[1.0f32, 1.0]];
        let z = Array2::<f32>::zeros((1, 2));
        let e = conjugate_gradient(
            |v| Ok(v.dot(&neg)),
            b.view(),
            z.view(),
            &CgOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CgError::Indefinite {
                    row: 0,
                    iteration: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = conjugate_gradient(
            |v| Ok(v.to_owned()),
            b.view(),
            Array2::zeros((2, 2)).view(),
            &CgOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CgError::Shape { .. }));
        let e = conjugate_gradient(
            |v| Ok(v.to_owned()),
            b.view(),
            z.view(),
            &CgOptions {
                max_iters: 5,
                tol: -1.0,
            },
        )
        .unwrap_err();
        assert!(matches!(e, CgError::Options(_)));
        let e = conjugate_gradient(
            |v| Ok(v.mapv(|_| f32::NAN)),
            b.view(),
            z.view(),
            &CgOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CgError::NonFinite { row: 0, .. }));
        assert!(matches!(
            e.at_step(3),
            SolverError::NonFiniteState {
                particle: 0,
                step: 3
            }
        ));
        let e = conjugate_gradient(
            |_| Err(SolverError::Config("boom".into())),
            b.view(),
            z.view(),
            &CgOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e, CgError::Operator(SolverError::Config("boom".into())));
    }

    #[test]
    fn singular_consistent_systems_converge_in_the_range() {
        // M = diag(2, 0): b in the range; starting at (0, 5), CG keeps the null-space part.
        let m = array![[2.0f32, 0.0], [0.0, 0.0]];
        let b = array![[4.0f32, 0.0]];
        let x0 = array![[0.0f32, 5.0]];
        let sol = conjugate_gradient(
            |v| Ok(v.dot(&m)),
            b.view(),
            x0.view(),
            &CgOptions::default(),
        )
        .unwrap();
        assert_abs_diff_eq!(sol.x[[0, 0]], 2.0, epsilon = 1e-6);
        assert_abs_diff_eq!(sol.x[[0, 1]], 5.0, epsilon = 1e-6);
        assert!(sol.converged[0]);
    }

    /// Rank-one normal equations `A^T A x = A^T y` with `A` `1 x 5`, run for a fixed 5
    /// iterations with no tolerance (DDS's setting): the Krylov space is exhausted after one
    /// step, and the round-off curvatures after it are a breakdown, not an error.
    #[test]
    fn fixed_iterations_past_an_exhausted_krylov_space_stop_cleanly() {
        let a = array![[0.3f32, -1.2, 0.7, 0.05, 2.0]];
        let ata = a.t().dot(&a);
        let b = a.clone() * 1.7f32; // A^T y with y = 1.7
        let sol = conjugate_gradient(
            |v| Ok(v.dot(&ata)),
            b.view(),
            Array2::zeros((1, 5)).view(),
            &CgOptions {
                max_iters: 5,
                tol: 0.0,
            },
        )
        .unwrap();
        let ax: f32 = a.row(0).dot(&sol.x.row(0));
        assert_abs_diff_eq!(ax, 1.7, epsilon = 1e-5);
    }
}

/// Linear-Gaussian problems with an exact posterior, shared by the tests of the solvers that
/// use a linear forward model.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod fixtures {
    use diffinv_operators::{GaussianLikelihood, MatrixOperator};
    use diffinv_priors::rng::stream;
    use diffinv_priors::{Gaussian, GaussianPosterior, GaussianPrior};
    use ndarray::{Array1, Array2, Axis};
    use rand_distr::{Distribution, StandardNormal};

    /// Prior `N(mu, Sigma)`, `y = A x* + sigma_y n`, and the exact posterior.
    pub struct LinearGaussian {
        pub prior: GaussianPrior,
        pub op: MatrixOperator,
        pub lik: GaussianLikelihood,
        pub a: Array2<f64>,
        pub y: Array1<f64>,
        pub sigma_y: f64,
        pub prior_mean: Array1<f64>,
        pub prior_cov: Array2<f64>,
        pub post_mean: Array1<f64>,
        pub post_cov: Array2<f64>,
    }

    /// `d`-dimensional prior (isotropic unit variance if `isotropic`, else a correlated
    /// covariance with eigenvalues in about [0.5, 3]), `A` `m x d` with `N(0, 1/d)`-scaled
    /// entries, noise `sigma_y`.
    pub fn linear_gaussian(
        d: usize,
        m: usize,
        sigma_y: f64,
        isotropic: bool,
        seed: u64,
    ) -> LinearGaussian {
        let mut rng = stream(seed, 0xf1, d as u64, m as u64);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let mu = Array1::from_shape_fn(d, |i| 0.5 * (i as f64 * 0.7 + 0.3).sin());
        let cov = if isotropic {
            Array2::eye(d)
        } else {
            let b = Array2::from_shape_fn((d, d), |_| normal());
            let mut c: Array2<f64> = b.dot(&b.t()) / d as f64;
            for i in 0..d {
                c[[i, i]] += 0.5;
            }
            c
        };
        let a = Array2::from_shape_fn((m, d), |_| normal()) * (2.0 / (d as f64).sqrt());
        let g = if isotropic {
            Gaussian::isotropic(mu.clone(), 1.0).unwrap()
        } else {
            Gaussian::full(mu.clone(), cov.clone()).unwrap()
        };
        let x_true = GaussianPrior::new(g.clone())
            .sample(1, seed ^ 77)
            .row(0)
            .mapv(f64::from);
        let y = a.dot(&x_true) + Array1::from_shape_fn(m, |_| sigma_y * normal());
        let post = GaussianPosterior::new(&g, a.view(), y.view(), sigma_y).unwrap();
        LinearGaussian {
            prior: GaussianPrior::new(g),
            op: MatrixOperator::new(a.mapv(|v| v as f32)).unwrap(),
            lik: GaussianLikelihood::new(y.mapv(|v| v as f32), sigma_y as f32).unwrap(),
            post_mean: post.mean().to_owned(),
            post_cov: post.covariance(),
            a,
            y,
            sigma_y,
            prior_mean: mu,
            prior_cov: cov,
        }
    }

    /// Sample mean in f64.
    pub fn sample_mean(x: &Array2<f32>) -> Array1<f64> {
        x.mapv(f64::from).mean_axis(Axis(0)).unwrap()
    }

    /// Largest absolute entry of `a - b`.
    pub fn max_abs(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
        (a - b).iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    /// Dense solve of a small SPD system (Gaussian elimination with partial pivoting).
    pub fn solve(m: &Array2<f64>, b: &Array1<f64>) -> Array1<f64> {
        let n = b.len();
        let mut a = m.clone();
        let mut x = b.clone();
        for k in 0..n {
            let p = (k..n)
                .max_by(|&i, &j| a[[i, k]].abs().total_cmp(&a[[j, k]].abs()))
                .unwrap();
            if p != k {
                for j in 0..n {
                    a.swap([k, j], [p, j]);
                }
                x.swap(k, p);
            }
            for i in k + 1..n {
                let f = a[[i, k]] / a[[k, k]];
                for j in k..n {
                    a[[i, j]] -= f * a[[k, j]];
                }
                x[i] -= f * x[k];
            }
        }
        for k in (0..n).rev() {
            let s: f64 = (k + 1..n).map(|j| a[[k, j]] * x[j]).sum();
            x[k] = (x[k] - s) / a[[k, k]];
        }
        x
    }
}
