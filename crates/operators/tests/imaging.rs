//! Tests of the imaging operators and noise models: adjoint identities, linearity, vector-Jacobian
//! products against central finite differences, physical invariants of phase retrieval, kernel
//! golden values, typed errors and determinism across thread counts.

// A failed unwrap is a failed test, which is what we want here.
#![allow(clippy::unwrap_used)]

use approx::assert_relative_eq;
use diffinv_operators::imaging::{
    gaussian_kernel, motion_kernel, Blur, Downsampling, Hdr, ImageShape, Inpainting, MaskKind,
    PhaseRetrieval, SuperResolution,
};
use diffinv_operators::noise::{GaussianNoise, NoiseModel, PoissonNoise};
use diffinv_operators::{Differentiable, ForwardModel, LinearOperator, OperatorError};
use ndarray::{s, Array2, ArrayView2};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------- helpers

fn batch(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0))
}

fn dot(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum()
}

fn norm(a: ArrayView2<'_, f32>) -> f64 {
    dot(a, a).sqrt()
}

/// `<A x, y> = <x, A^T y>` accumulated in f64, relative to the Cauchy-Schwarz scale
/// `||A x|| ||y||` (robust when the inner product itself is small by cancellation).
fn assert_adjoint<A: LinearOperator + ?Sized>(op: &A, n: usize, seed: u64) {
    let x = batch(n, op.input_dim(), seed);
    let y = batch(n, op.output_dim(), seed.wrapping_add(1));
    let ax = op.forward(x.view()).unwrap();
    let aty = op.adjoint(y.view()).unwrap();
    assert_eq!(ax.dim(), (n, op.output_dim()));
    assert_eq!(aty.dim(), (n, op.input_dim()));
    let lhs = dot(ax.view(), y.view());
    let rhs = dot(x.view(), aty.view());
    let scale = (norm(ax.view()) * norm(y.view()))
        .max(norm(x.view()) * norm(aty.view()))
        .max(1e-30);
    let rel = (lhs - rhs).abs() / scale;
    assert!(
        rel < 1e-5,
        "adjoint mismatch: <Ax,y> = {lhs}, <x,A^T y> = {rhs}, rel = {rel:e}"
    );
}

/// `A(a x + b z) = a A x + b A z`.
fn assert_linear<A: ForwardModel + ?Sized>(op: &A, seed: u64) {
    let d = op.input_dim();
    let x = batch(2, d, seed);
    let z = batch(2, d, seed.wrapping_add(7));
    let (a, b) = (0.7f32, -1.3f32);
    let comb = &x * a + &z * b;
    let lhs = op.forward(comb.view()).unwrap();
    let rhs = op.forward(x.view()).unwrap() * a + op.forward(z.view()).unwrap() * b;
    let err = norm((&lhs - &rhs).view());
    assert!(
        err <= 1e-5 * (norm(rhs.view()) + 1.0),
        "linearity error {err}"
    );
}

/// `<v, J u>` by central differences with one Richardson step,
/// `(4 D(h/2) - D(h)) / 3`, `D(h) = (<v, G(x + h u)> - <v, G(x - h u)>) / 2h` (error `O(h^4)`),
/// against `<J^T v, u>` for each row, relative to the Cauchy-Schwarz scale `||v|| ||J u||`.
fn assert_vjp_fd<G: Differentiable + ?Sized>(
    op: &G,
    x: &Array2<f32>,
    u: &Array2<f32>,
    h: f32,
    tol: f64,
    seed: u64,
) {
    let v = batch(x.nrows(), op.output_dim(), seed);
    let g = op.vjp(x.view(), v.view()).unwrap();
    assert_eq!(g.dim(), x.dim());
    for i in 0..x.nrows() {
        let xi = x.slice(s![i..i + 1, ..]);
        let ui = u.slice(s![i..i + 1, ..]);
        let vi = v.slice(s![i..i + 1, ..]);
        let diff = |h: f32| {
            let fp = op.forward((&xi + &(&ui * h)).view()).unwrap();
            let fm = op.forward((&xi - &(&ui * h)).view()).unwrap();
            let d = (&fp - &fm).mapv(|t| t as f64 / (2.0 * h as f64));
            let dv: f64 = d.iter().zip(vi.iter()).map(|(a, b)| a * *b as f64).sum();
            (dv, d.iter().map(|t| t * t).sum::<f64>().sqrt())
        };
        let (d1, ju) = diff(h);
        let (d2, _) = diff(h / 2.0);
        let fd = (4.0 * d2 - d1) / 3.0;
        let an = dot(g.slice(s![i..i + 1, ..]), ui);
        let scale = norm(vi) * ju + an.abs();
        assert!(
            (fd - an).abs() <= tol * scale.max(1e-12),
            "row {i}: finite difference {fd} vs vjp {an} (scale {scale})"
        );
    }
}

/// Relative Frobenius error between the Jacobian at the single row `x` built from vjps of the
/// output basis vectors (one batched call) and the one built from central differences of the
/// input basis vectors with a Richardson step (one batched forward call per step).
fn jacobian_error<G: Differentiable + ?Sized>(op: &G, x: &Array2<f32>, h: f32) -> f64 {
    let (d, m) = (op.input_dim(), op.output_dim());
    let xs = Array2::from_shape_fn((m, d), |(_, j)| x[[0, j]]);
    let eye_m = Array2::from_shape_fn((m, m), |(a, b)| if a == b { 1.0f32 } else { 0.0 });
    let jt = op.vjp(xs.view(), eye_m.view()).unwrap(); // row k = J^T e_k = row k of J
    let cols = |h: f32| {
        let plus = Array2::from_shape_fn((d, d), |(k, j)| x[[0, j]] + if k == j { h } else { 0.0 });
        let minus =
            Array2::from_shape_fn((d, d), |(k, j)| x[[0, j]] - if k == j { h } else { 0.0 });
        let fp = op.forward(plus.view()).unwrap();
        let fm = op.forward(minus.view()).unwrap();
        (&fp - &fm).mapv(|t| t as f64 / (2.0 * h as f64)) // row j = J e_j = column j of J
    };
    let fd = (cols(h / 2.0) * 4.0 - cols(h)) / 3.0;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for k in 0..m {
        for j in 0..d {
            let a = jt[[k, j]] as f64;
            num += (a - fd[[j, k]]).powi(2);
            den += a * a;
        }
    }
    (num / den.max(1e-300)).sqrt()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// A small case count (PROPTEST_CASES, when set, overrides it for stress runs).
fn cfg(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        max_global_rejects: 8192,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

// ---------------------------------------------------------------- adjoints and linearity

proptest! {
    #![proptest_config(cfg(16))]

    #[test]
    fn inpainting_adjoint_and_linearity(c in 1usize..=3, h in 8usize..=24, w in 8usize..=24, seed in any::<u64>()) {
        let boxed = Inpainting::box_seeded(c, h, w, seed).unwrap();
        assert_adjoint(&boxed, 3, seed);
        assert_linear(&boxed, seed);
        let random = Inpainting::random(c, h, w, 0.7, seed).unwrap();
        assert_adjoint(&random, 3, seed);
        assert_linear(&random, seed);
    }

    #[test]
    fn super_resolution_adjoint_and_linearity(
        c in 1usize..=3, h in 8usize..=24, w in 8usize..=24, f in 1usize..=4, seed in any::<u64>()
    ) {
        for op in [SuperResolution::bicubic(c, h, w, f).unwrap(), SuperResolution::average_pool(c, h, w, f).unwrap()] {
            prop_assert_eq!(op.output_shape(), vec![c, h / f, w / f]);
            assert_adjoint(&op, 3, seed);
            assert_linear(&op, seed);
        }
    }

    #[test]
    fn blur_adjoint_and_linearity(
        c in 1usize..=3, h in 8usize..=24, w in 8usize..=24, k in 0usize..4, seed in any::<u64>()
    ) {
        // kernel sizes 3..=9 (odd, possibly larger than the image) and the 61 x 61 kernels
        let ks = [3usize, 5, 9, 61][k];
        let gauss = Blur::gaussian(c, h, w, ks, 1.5).unwrap();
        assert_adjoint(&gauss, 2, seed);
        assert_linear(&gauss, seed);
        let motion = Blur::motion(c, h, w, ks, 0.5, seed).unwrap();
        assert_adjoint(&motion, 2, seed);
        assert_linear(&motion, seed);
        // a non-symmetric, signed, rectangular kernel exercises the correlation orientation
        let kr = batch(ks, 2 * (ks / 2) + 3, seed ^ 5);
        let rect = Blur::new(c, h, w, kr).unwrap();
        assert_adjoint(&rect, 2, seed);
    }
}

#[test]
fn blur_61_adjoint_on_64x64() {
    let g = Blur::gaussian(3, 64, 64, 61, 3.0).unwrap();
    assert_eq!(g.fft_size(), (125, 125));
    assert_adjoint(&g, 2, 11);
    assert_linear(&g, 12);
    let m = Blur::motion(3, 64, 64, 61, 0.5, 13).unwrap();
    assert_adjoint(&m, 2, 14);
    assert_linear(&m, 15);
}

#[test]
fn linear_vjp_is_the_adjoint_and_matches_finite_differences() {
    let (c, h, w) = (2, 12, 10);
    let ops: Vec<Box<dyn Differentiable>> = vec![
        Box::new(Inpainting::box_seeded(c, h, w, 1).unwrap()),
        Box::new(Inpainting::random(c, h, w, 0.7, 2).unwrap()),
        Box::new(SuperResolution::bicubic(c, h, w, 2).unwrap()),
        Box::new(SuperResolution::average_pool(c, h, w, 2).unwrap()),
        Box::new(Blur::gaussian(c, h, w, 61, 3.0).unwrap()),
        Box::new(Blur::motion(c, h, w, 61, 0.5, 3).unwrap()),
    ];
    for op in &ops {
        let x = batch(2, op.input_dim(), 20);
        let u = batch(2, op.input_dim(), 21);
        assert_vjp_fd(op.as_ref(), &x, &u, 0.5, 1e-4, 22);
    }
}

// ---------------------------------------------------------------- inpainting

#[test]
fn box_mask_geometry_matches_the_reference_setting() {
    for seed in 0..20u64 {
        let op = Inpainting::box_seeded(3, 256, 256, seed).unwrap();
        let MaskKind::Box {
            top,
            left,
            height,
            width,
        } = op.kind()
        else {
            panic!("not a box")
        };
        assert_eq!((height, width), (128, 128));
        assert!(
            (16..112).contains(&top) && (16..112).contains(&left),
            "{top} {left}"
        );
        let zeros = op.mask().iter().filter(|&&m| m == 0.0).count();
        assert_eq!(zeros, 128 * 128);
        assert_eq!(op.mask()[(top + 5) * 256 + left + 7], 0.0);
        assert_eq!(op.mask()[(top + 128) * 256 + left], 1.0);
    }
    // the EnKG configuration: box sides in 105..180, margin 32
    for seed in 0..20u64 {
        let op = Inpainting::box_random(3, 256, 256, (105, 180), (32, 32), seed).unwrap();
        let MaskKind::Box {
            top,
            left,
            height,
            width,
        } = op.kind()
        else {
            panic!("not a box")
        };
        assert!((105..180).contains(&height) && (105..180).contains(&width));
        assert!(top >= 32 && top + height < 256 - 32 && left >= 32 && left + width < 256 - 32);
        assert_eq!(
            op.mask().iter().filter(|&&m| m == 0.0).count(),
            height * width
        );
    }
    assert!(matches!(
        Inpainting::box_random(1, 64, 64, (40, 50), (16, 16), 0),
        Err(OperatorError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Inpainting::box_random(1, 64, 64, (10, 10), (0, 0), 0),
        Err(OperatorError::InvalidParameter { .. })
    ));
    let a = Inpainting::box_seeded(1, 64, 64, 5).unwrap();
    let b = Inpainting::box_seeded(1, 64, 64, 5).unwrap();
    assert_eq!(a.mask(), b.mask());
    let differs =
        (6..30u64).any(|s| Inpainting::box_seeded(1, 64, 64, s).unwrap().mask() != a.mask());
    assert!(differs);
}

#[test]
fn random_mask_has_exact_fraction_shared_by_channels() {
    let (c, h, w) = (3, 20, 17);
    let op = Inpainting::random(c, h, w, Inpainting::DEFAULT_FRACTION, 9).unwrap();
    let missing = (0.7 * (h * w) as f64).floor() as usize;
    assert_eq!(op.mask().iter().filter(|&&m| m == 0.0).count(), missing);
    let x = Array2::from_elem((1, c * h * w), 1.0f32);
    let y = op.forward(x.view()).unwrap();
    for ch in 0..c {
        let plane = y.slice(s![0, ch * h * w..(ch + 1) * h * w]);
        assert!(plane.iter().zip(op.mask()).all(|(a, b)| a == b));
    }
    assert_eq!(
        Inpainting::random(c, h, w, 0.7, 9).unwrap().mask(),
        op.mask()
    );
    assert_ne!(
        Inpainting::random(c, h, w, 0.7, 10).unwrap().mask(),
        op.mask()
    );
    // A A = A (projection)
    let z = batch(2, c * h * w, 3);
    let az = op.forward(z.view()).unwrap();
    assert_eq!(op.forward(az.view()).unwrap(), az);
}

// ---------------------------------------------------------------- super-resolution

#[test]
fn super_resolution_golden_values() {
    // average pooling of a 4 x 4 ramp by 2
    let op = SuperResolution::average_pool(1, 4, 4, 2).unwrap();
    let x = Array2::from_shape_fn((1, 16), |(_, p)| p as f32);
    let y = op.forward(x.view()).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[2.5f32, 4.5, 10.5, 12.5]);
    // bicubic preserves constants (weights sum to 1, renormalised at the border) ...
    let op = SuperResolution::bicubic(2, 24, 16, 4).unwrap();
    let y = op
        .forward(Array2::from_elem((1, 2 * 24 * 16), 0.3f32).view())
        .unwrap();
    assert!(y.iter().all(|v| (v - 0.3).abs() < 1e-6));
    // ... and equals R_H X R_W^T with the dense matrices
    let x = batch(1, 2 * 24 * 16, 4);
    let y = op.forward(x.view()).unwrap();
    let (rh, rw) = (op.row_matrix(), op.col_matrix());
    for ch in 0..2 {
        let xc = x
            .slice(s![0, ch * 384..(ch + 1) * 384])
            .to_owned()
            .into_shape_with_order((24, 16))
            .unwrap();
        let want = rh.dot(&xc).dot(&rw.t());
        let got = y
            .slice(s![0, ch * 24..(ch + 1) * 24])
            .to_owned()
            .into_shape_with_order((6, 4))
            .unwrap();
        for (a, b) in got.iter().zip(want.iter()) {
            assert_relative_eq!(*a, *b, epsilon = 1e-5);
        }
    }
    // interior taps of x4 bicubic: Keys a = -0.5 stretched by 4, 16 taps
    let r = SuperResolution::bicubic(1, 64, 64, 4).unwrap().row_matrix();
    let row = r.row(5);
    let nz: Vec<usize> = (0..64).filter(|&j| row[j] != 0.0).collect();
    assert_eq!(nz.first(), Some(&14));
    assert_eq!(nz.last(), Some(&29));
    assert_relative_eq!(row[21], row[22], epsilon = 1e-7);
    assert_eq!(
        Downsampling::Bicubic,
        SuperResolution::bicubic(1, 8, 8, 2).unwrap().method()
    );
}

// ---------------------------------------------------------------- blur and kernels

#[test]
fn gaussian_kernel_sums_to_one_and_matches_closed_form() {
    let k = gaussian_kernel(61, 3.0).unwrap();
    assert_eq!(k.dim(), (61, 61));
    assert_relative_eq!(
        k.iter().map(|v| *v as f64).sum::<f64>(),
        1.0,
        epsilon = 1e-5
    );
    // closed form: separable, truncated at R = floor(4 sigma + 1/2) = 12 (scipy gaussian_filter)
    let g: Vec<f64> = (-12i32..=12)
        .map(|t| (-(t * t) as f64 / 18.0).exp())
        .collect();
    let z: f64 = g.iter().sum();
    for i in 0..61 {
        for j in 0..61 {
            let (di, dj) = (i as i32 - 30, j as i32 - 30);
            let want = if di.abs() <= 12 && dj.abs() <= 12 {
                g[(di + 12) as usize] * g[(dj + 12) as usize] / (z * z)
            } else {
                0.0
            };
            assert_relative_eq!(k[[i, j]] as f64, want, epsilon = 1e-9, max_relative = 1e-5);
        }
    }
    // centre value golden: 1 / (sum_{|t|<=12} e^{-t^2/18})^2 = 1 / (2 pi 9) to 1e-4
    assert_relative_eq!(
        k[[30, 30]] as f64,
        1.0 / (2.0 * std::f64::consts::PI * 9.0),
        max_relative = 1e-4
    );
    assert!(matches!(
        gaussian_kernel(60, 3.0),
        Err(OperatorError::InvalidParameter { .. })
    ));
    assert!(matches!(
        gaussian_kernel(61, 0.0),
        Err(OperatorError::InvalidParameter { .. })
    ));
}

#[test]
fn motion_kernel_is_seeded_nonnegative_and_normalised() {
    let a = motion_kernel(61, 0.5, 42).unwrap();
    let b = motion_kernel(61, 0.5, 42).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.dim(), (61, 61));
    for seed in 0..8u64 {
        let k = motion_kernel(61, 0.5, seed).unwrap();
        assert!(k.iter().all(|v| *v >= 0.0 && v.is_finite()));
        assert_relative_eq!(
            k.iter().map(|v| *v as f64).sum::<f64>(),
            1.0,
            epsilon = 1e-5
        );
        assert_ne!(k, a, "seed {seed} gave the kernel of seed 42");
        // a trajectory, not a point: a good part of the mass away from the peak pixel
        let peak = k.iter().cloned().fold(0.0f32, f32::max);
        assert!(peak < 0.5, "peak {peak}");
        assert!(k.iter().filter(|v| **v > 1e-4).count() > 20);
    }
    // intensity 0 and 1 are valid; outside is not
    assert!(motion_kernel(31, 0.0, 1).is_ok());
    assert!(motion_kernel(31, 1.0, 1).is_ok());
    assert!(matches!(
        motion_kernel(61, 1.5, 1),
        Err(OperatorError::InvalidParameter { .. })
    ));
    assert!(matches!(
        motion_kernel(8, 0.5, 1),
        Err(OperatorError::InvalidParameter { .. })
    ));
}

#[test]
fn blur_of_a_delta_is_the_flipped_kernel_and_constants_are_kept() {
    let m = Blur::motion(1, 64, 64, 61, 0.5, 3).unwrap();
    let k = m.kernel().clone();
    let mut x = Array2::<f32>::zeros((1, 64 * 64));
    x[[0, 32 * 64 + 32]] = 1.0;
    let y = m.forward(x.view()).unwrap();
    for i in 0..64usize {
        for j in 0..64usize {
            let (u, v) = (62 - i as isize, 62 - j as isize);
            let want = if (0..61).contains(&u) && (0..61).contains(&v) {
                k[[u as usize, v as usize]]
            } else {
                0.0
            };
            assert!((y[[0, i * 64 + j]] - want).abs() < 1e-6, "({i}, {j})");
        }
    }
    // reflect padding + kernel summing to 1: a constant image stays constant
    let g = Blur::gaussian(2, 20, 13, 61, 3.0).unwrap();
    let y = g
        .forward(Array2::from_elem((1, 2 * 20 * 13), -0.4f32).view())
        .unwrap();
    assert!(y.iter().all(|v| (v + 0.4).abs() < 1e-5));
}

// ---------------------------------------------------------------- phase retrieval

fn pr_fd_point(n: usize, d: usize, seed: u64) -> Array2<f32> {
    // positive images (as intensities), so that |z| stays away from 0 at low frequencies
    batch(n, d, seed).mapv(|v| 0.5 + 0.4 * v)
}

proptest! {
    #![proptest_config(cfg(8))]

    #[test]
    fn phase_retrieval_jacobian_matches_finite_differences(
        c in 1usize..=2, h in 8usize..=12, w in 8usize..=12, centered in any::<bool>(), seed in any::<u64>()
    ) {
        let op = PhaseRetrieval::oversampled(c, h, w, 2.0).unwrap().with_centered(centered);
        // |F P x| is not differentiable where a spectrum value vanishes (at the self-conjugate
        // frequencies z is real and crosses 0 linearly): test away from those points, with
        // finite-difference steps (|h (F P u)_k| < 5e-4) below the smallest |z_k| (> 2e-3)
        let x = pr_fd_point(2, op.input_dim(), seed);
        prop_assume!(op.forward(x.view()).unwrap().iter().all(|v| *v > 2e-3));
        let err = jacobian_error(&op, &x.slice(s![0..1, ..]).to_owned(), 2e-3);
        prop_assert!(err < 1e-3, "relative Jacobian error {}", err);
        let x2 = x;
        let u = batch(2, op.input_dim(), seed ^ 1);
        assert_vjp_fd(&op, &x2, &u, 1e-3, 1e-3, seed ^ 2);
    }

    #[test]
    fn hdr_vjp_matches_finite_differences(c in 1usize..=3, h in 8usize..=16, w in 8usize..=16, seed in any::<u64>()) {
        let op = Hdr::new(c, h, w, Hdr::DEFAULT_ALPHA).unwrap();
        // values either well inside (|2x| <= 0.8) or well outside (|2x| >= 1.2) the clip range,
        // so the step h = 0.01 never crosses a kink
        let x = batch(2, op.input_dim(), seed).mapv(|v| if v.abs() < 0.5 { 0.8 * v } else { v.signum() * (0.6 + 0.8 * (v.abs() - 0.5)) });
        let u = batch(2, op.input_dim(), seed ^ 1);
        assert_vjp_fd(&op, &x, &u, 1e-2, 1e-5, seed ^ 2);
    }
}

#[test]
fn phase_retrieval_shapes_and_golden_values() {
    let op = PhaseRetrieval::oversampled(3, 16, 12, 2.0).unwrap();
    assert_eq!(op.padding(), (8, 6));
    assert_eq!(op.output_shape(), vec![3, 32, 24]);
    let dps = PhaseRetrieval::dps(3, 256, 256, 2.0).unwrap();
    assert_eq!(dps.padded_size(), (384, 384));
    // a delta has a flat spectrum 1 / sqrt(Hp Wp)
    let mut x = Array2::<f32>::zeros((1, 3 * 16 * 12));
    x[[0, 5 * 12 + 7]] = 1.0;
    let y = op.forward(x.view()).unwrap();
    let flat = 1.0 / ((32 * 24) as f32).sqrt();
    assert!(y
        .slice(s![0, ..32 * 24])
        .iter()
        .all(|v| (v - flat).abs() < 1e-6));
    assert!(y.slice(s![0, 32 * 24..]).iter().all(|v| v.abs() < 1e-6));
    // a constant image: DC = sum / sqrt(Hp Wp) at (Hp/2, Wp/2) when centred, at (0, 0) otherwise
    let ones = Array2::from_elem((1, 16 * 12), 1.0f32);
    let op1 = PhaseRetrieval::oversampled(1, 16, 12, 2.0).unwrap();
    let dc = 192.0 / ((32 * 24) as f32).sqrt();
    assert_relative_eq!(
        op1.forward(ones.view()).unwrap()[[0, 16 * 24 + 12]],
        dc,
        max_relative = 1e-5
    );
    assert_relative_eq!(
        op1.clone()
            .with_centered(false)
            .forward(ones.view())
            .unwrap()[[0, 0]],
        dc,
        max_relative = 1e-5
    );
    // Parseval: the unitary DFT keeps the energy of every channel
    let x = batch(2, 3 * 16 * 12, 8);
    let y = op.forward(x.view()).unwrap();
    assert_relative_eq!(norm(y.view()), norm(x.view()), max_relative = 1e-5);
}

fn image(x: &Array2<f32>, row: usize, c: usize, h: usize, w: usize) -> ndarray::Array3<f32> {
    x.row(row)
        .to_owned()
        .into_shape_with_order((c, h, w))
        .unwrap()
}

#[test]
fn phase_retrieval_invariances() {
    let (c, h, w) = (2usize, 16usize, 12usize);
    let op = PhaseRetrieval::oversampled(c, h, w, 2.0).unwrap();
    let x = batch(1, c * h * w, 31);
    let y = op.forward(x.view()).unwrap();
    let close = |a: &Array2<f32>, b: &Array2<f32>| norm((a - b).view()) / norm(b.view());

    // global sign flip
    let y_neg = op.forward((-&x).view()).unwrap();
    assert!(close(&y_neg, &y) < 1e-6);

    // conjugate flip x[n] -> x[-n] (a point reflection; the translation it implies is free)
    let img = image(&x, 0, c, h, w);
    let flipped =
        ndarray::Array3::from_shape_fn((c, h, w), |(ch, i, j)| img[[ch, h - 1 - i, w - 1 - j]]);
    let xf = flipped.into_shape_with_order((1, c * h * w)).unwrap();
    assert!(close(&op.forward(xf.view()).unwrap(), &y) < 1e-5);

    // shift of the support inside the frame: content in a 10 x 7 window moved by (5, 4)
    let mut a = ndarray::Array3::<f32>::zeros((c, h, w));
    a.slice_mut(s![.., 0..10, 0..7])
        .assign(&img.slice(s![.., 0..10, 0..7]));
    let mut b = ndarray::Array3::<f32>::zeros((c, h, w));
    b.slice_mut(s![.., 5..15, 4..11])
        .assign(&img.slice(s![.., 0..10, 0..7]));
    let ya = op
        .forward(a.into_shape_with_order((1, c * h * w)).unwrap().view())
        .unwrap();
    let yb = op
        .forward(b.into_shape_with_order((1, c * h * w)).unwrap().view())
        .unwrap();
    assert!(close(&yb, &ya) < 1e-5);

    // a circular shift of the padded frame is invisible too, but a circular shift of the
    // *unpadded* image (content wrapping around inside H x W) is not: with zero padding the
    // wrapped part lands elsewhere in the frame and the autocorrelation changes
    let mut wrapped = ndarray::Array3::<f32>::zeros((c, h, w));
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                wrapped[[ch, (i + 5) % h, (j + 3) % w]] = img[[ch, i, j]];
            }
        }
    }
    let yw = op
        .forward(
            wrapped
                .into_shape_with_order((1, c * h * w))
                .unwrap()
                .view(),
        )
        .unwrap();
    assert!(
        close(&yw, &y) > 1e-2,
        "wrap-around shift unexpectedly invariant"
    );
}

#[test]
fn phase_retrieval_vjp_at_zero_spectrum_is_zero() {
    // x = 0: every z_k = 0, the convention z/|z| := 0 gives a zero vjp (no NaN)
    let op = PhaseRetrieval::oversampled(1, 8, 8, 2.0).unwrap();
    let x = Array2::<f32>::zeros((2, 64));
    let v = batch(2, op.output_dim(), 1);
    let g = op.vjp(x.view(), v.view()).unwrap();
    assert!(g.iter().all(|v| *v == 0.0));
}

#[test]
fn hdr_values_and_subgradient_convention() {
    let op = Hdr::new(1, 1, 4, 2.0).unwrap();
    let x = ndarray::array![[-0.7f32, -0.5, 0.25, 0.6]];
    assert_eq!(
        op.forward(x.view()).unwrap(),
        ndarray::array![[-1.0f32, -1.0, 0.5, 1.0]]
    );
    let v = ndarray::array![[1.0f32, 1.0, 1.0, 1.0]];
    // inside (and on the boundary |2x| = 1): alpha v; outside: 0
    assert_eq!(
        op.vjp(x.view(), v.view()).unwrap(),
        ndarray::array![[0.0f32, 2.0, 2.0, 0.0]]
    );
}

// ---------------------------------------------------------------- errors

fn all_ops(c: usize, h: usize, w: usize) -> Vec<Box<dyn Differentiable>> {
    vec![
        Box::new(Inpainting::box_seeded(c, h, w, 1).unwrap()),
        Box::new(Inpainting::random(c, h, w, 0.7, 1).unwrap()),
        Box::new(SuperResolution::bicubic(c, h, w, 4).unwrap()),
        Box::new(SuperResolution::average_pool(c, h, w, 4).unwrap()),
        Box::new(Blur::gaussian(c, h, w, 61, 3.0).unwrap()),
        Box::new(Blur::motion(c, h, w, 61, 0.5, 1).unwrap()),
        Box::new(PhaseRetrieval::oversampled(c, h, w, 2.0).unwrap()),
        Box::new(Hdr::new(c, h, w, 2.0).unwrap()),
    ]
}

#[test]
fn wrong_shapes_and_non_finite_input_give_typed_errors() {
    let (c, h, w) = (2, 12, 16);
    for op in all_ops(c, h, w) {
        let d = op.input_dim();
        let m = op.output_dim();
        assert_eq!(op.input_shape(), vec![c, h, w]);
        assert!(matches!(
            op.forward(Array2::zeros((2, d + 1)).view()),
            Err(OperatorError::Shape { expected, got, .. }) if expected == d && got == d + 1
        ));
        let mut bad = batch(3, d, 1);
        bad[[2, 5]] = f32::NAN;
        assert!(matches!(
            op.forward(bad.view()),
            Err(OperatorError::NonFiniteInput { row: 2, .. })
        ));
        bad[[2, 5]] = 0.0;
        bad[[1, 0]] = f32::INFINITY;
        assert!(matches!(
            op.forward(bad.view()),
            Err(OperatorError::NonFiniteInput { row: 1, .. })
        ));
        let x = batch(3, d, 2);
        assert!(matches!(
            op.vjp(x.view(), Array2::zeros((2, m)).view()),
            Err(OperatorError::Rows { .. })
        ));
        assert!(matches!(
            op.vjp(x.view(), Array2::zeros((3, m + 2)).view()),
            Err(OperatorError::Shape { .. })
        ));
        let mut vbad = Array2::<f32>::zeros((3, m));
        vbad[[0, 0]] = f32::NAN;
        assert!(matches!(
            op.vjp(x.view(), vbad.view()),
            Err(OperatorError::NonFiniteInput { row: 0, .. })
        ));
        // an empty batch is fine
        assert_eq!(
            op.forward(Array2::zeros((0, d)).view()).unwrap().dim(),
            (0, m)
        );
        // a non-contiguous (transposed) view gives the same result as a standard one
        let xt = x.t().to_owned();
        let y_std = op.forward(x.view()).unwrap();
        let y_t = op.forward(xt.t()).unwrap();
        assert_eq!(y_std, y_t);
    }
}

#[test]
fn constructors_validate_parameters() {
    let inv =
        |r: Result<(), OperatorError>| matches!(r, Err(OperatorError::InvalidParameter { .. }));
    assert!(inv(ImageShape::new(0, 4, 4).map(|_| ())));
    assert!(inv(Inpainting::box_at(1, 8, 8, 5, 0, 4, 4).map(|_| ())));
    assert!(inv(Inpainting::random(1, 8, 8, 1.5, 0).map(|_| ())));
    assert!(inv(Inpainting::random(1, 8, 8, f64::NAN, 0).map(|_| ())));
    assert!(inv(Inpainting::from_mask(
        1,
        2,
        2,
        vec![1.0, 0.5, 0.0, 1.0]
    )
    .map(|_| ())));
    assert!(matches!(
        Inpainting::from_mask(1, 2, 2, vec![1.0]),
        Err(OperatorError::Shape { .. })
    ));
    assert!(inv(SuperResolution::bicubic(1, 8, 8, 0).map(|_| ())));
    assert!(inv(SuperResolution::bicubic(1, 8, 8, 9).map(|_| ())));
    assert!(inv(Blur::new(1, 8, 8, Array2::zeros((4, 3))).map(|_| ())));
    assert!(inv(
        Blur::new(1, 8, 8, Array2::from_elem((3, 3), f32::NAN)).map(|_| ())
    ));
    assert!(inv(Blur::gaussian(1, 8, 8, 61, -1.0).map(|_| ())));
    assert!(inv(Blur::motion(1, 8, 8, 61, 2.0, 0).map(|_| ())));
    assert!(inv(PhaseRetrieval::oversampled(1, 8, 8, 0.5).map(|_| ())));
    assert!(inv(
        PhaseRetrieval::new(1, 8, 8, usize::MAX / 2, 1).map(|_| ())
    ));
    assert!(inv(Hdr::new(1, 8, 8, 0.0).map(|_| ())));
    assert!(inv(Hdr::new(1, 8, 8, f32::INFINITY).map(|_| ())));
    assert!(inv(GaussianNoise::new(-0.1, 0).map(|_| ())));
    assert!(inv(PoissonNoise::new(0.0, 0).map(|_| ())));
}

// ---------------------------------------------------------------- determinism

#[test]
fn results_are_bit_identical_across_thread_counts() {
    let (c, h, w) = (3, 16, 20);
    let x = batch(7, c * h * w, 77);
    for op in all_ops(c, h, w) {
        let v = batch(7, op.output_dim(), 78);
        let one = in_pool(1, || {
            (
                op.forward(x.view()).unwrap(),
                op.vjp(x.view(), v.view()).unwrap(),
            )
        });
        let four = in_pool(4, || {
            (
                op.forward(x.view()).unwrap(),
                op.vjp(x.view(), v.view()).unwrap(),
            )
        });
        assert_eq!(one, four);
        // a row does not depend on the rest of the batch
        let single = op.forward(x.slice(s![3..4, ..])).unwrap();
        assert_eq!(single.row(0), one.0.row(3));
    }
    let y = batch(7, 50, 79);
    let g = GaussianNoise::new(0.05, 5).unwrap();
    let p = PoissonNoise::new(PoissonNoise::DEFAULT_RATE, 5).unwrap();
    for noise in [&g as &dyn NoiseModel, &p] {
        let one = in_pool(1, || noise.apply(y.view()).unwrap());
        let four = in_pool(4, || noise.apply(y.view()).unwrap());
        assert_eq!(one, four);
        // row i depends on (seed, i) only: a sub-batch starting at row 4 gets the same draws
        let tail = noise.apply_from(y.slice(s![4.., ..]), 4).unwrap();
        assert_eq!(tail, one.slice(s![4.., ..]));
    }
}

// ---------------------------------------------------------------- noise

#[test]
fn gaussian_noise_statistics_and_seeding() {
    let y = Array2::from_elem((4, 20_000), 0.25f32);
    let g = GaussianNoise::new(0.05, 1).unwrap();
    let z = g.apply(y.view()).unwrap();
    let e: Vec<f64> = z.iter().map(|v| *v as f64 - 0.25).collect();
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let var = e.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / e.len() as f64;
    assert!(mean.abs() < 5e-4, "mean {mean}");
    assert_relative_eq!(var.sqrt(), 0.05, max_relative = 0.01);
    // rows draw different noise; the same seed the same noise; another seed other noise
    assert_ne!(z.row(0), z.row(1));
    assert_eq!(
        GaussianNoise::new(0.05, 1)
            .unwrap()
            .apply(y.view())
            .unwrap(),
        z
    );
    assert_ne!(
        GaussianNoise::new(0.05, 2)
            .unwrap()
            .apply(y.view())
            .unwrap(),
        z
    );
    // sigma 0 is the identity
    assert_eq!(
        GaussianNoise::new(0.0, 1).unwrap().apply(y.view()).unwrap(),
        y
    );
    let mut bad = y.clone();
    bad[[3, 1]] = f32::NAN;
    assert!(matches!(
        g.apply(bad.view()),
        Err(OperatorError::NonFiniteInput { row: 3, .. })
    ));
}

#[test]
fn poisson_noise_statistics_and_clipping() {
    let rate = 50.0;
    let p = PoissonNoise::new(rate, 3).unwrap();
    let y = Array2::from_shape_fn((2, 40_000), |(_, j)| if j % 2 == 0 { 0.8f32 } else { -0.3 });
    let z = p.apply(y.view()).unwrap();
    let pos: Vec<f64> = z.iter().step_by(2).map(|v| *v as f64).collect();
    let mean = pos.iter().sum::<f64>() / pos.len() as f64;
    let var = pos.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / pos.len() as f64;
    assert_relative_eq!(mean, 0.8, max_relative = 0.01);
    assert_relative_eq!(var, 0.8 / rate, max_relative = 0.05);
    // counts / rate: every observation is a multiple of 1 / rate
    assert!(pos
        .iter()
        .all(|v| ((v * rate) - (v * rate).round()).abs() < 1e-3));
    // negative intensities are clipped to zero photons
    assert!(z.iter().skip(1).step_by(2).all(|v| *v == 0.0));
    // the DPS variant maps [-1, 1] to [0, 1] and back: -1 stays -1, values stay in [-1, 1 + ...]
    let d = PoissonNoise::dps(1.0, 3).unwrap();
    assert_eq!(d.rate(), 255.0);
    let zd = d
        .apply(Array2::from_elem((1, 1000), -1.0f32).view())
        .unwrap();
    assert!(zd.iter().all(|v| *v == -1.0));
}
