//! Tests of the black-hole interferometry operators (crates/operators/src/eht).
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use approx::assert_relative_eq;
use diffinv_operators::eht::array::{baseline_uvw, gmst_rad, julian_date, SPEED_OF_LIGHT};
use diffinv_operators::eht::*;
use diffinv_operators::{ForwardModel, Likelihood, LinearOperator, OperatorError};
use ndarray::{Array1, Array2};
use num_complex::Complex;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn model() -> &'static ClosureForward {
    static M: OnceLock<ClosureForward> = OnceLock::new();
    M.get_or_init(|| ClosureForward::new(&EhtConfig::default()).expect("default EHT model"))
}

/// Non-negative random images, `(n, 4096)`.
fn random_images(n: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((n, 64 * 64), |_| rng.random::<f32>() * 0.01)
}

/// A ring with a Gaussian profile (diameter ~40 uas at 2.5 uas pixels), brighter in the south,
/// peak ~1.5 image units (~1 Jy total at the default 0.005 Jy per unit).
fn ring_image() -> Array1<f32> {
    let mut img = Array1::<f32>::zeros(64 * 64);
    for r in 0..64 {
        for c in 0..64 {
            let (y, x) = (r as f32 - 31.5, c as f32 - 29.0);
            let rad = (x * x + y * y).sqrt();
            let bright = 1.0 + 0.5 * (y / (rad + 1e-3)); // brighter in the south
            img[r * 64 + c] = bright * (-(rad - 8.0).powi(2) / (2.0 * 1.5f32.powi(2))).exp();
        }
    }
    img
}

fn vis64(g: &ClosureForward, img: &Array1<f32>) -> Vec<Complex<f64>> {
    let v = g
        .visibility_operator()
        .visibilities(img.view().insert_axis(ndarray::Axis(0)))
        .unwrap();
    v.row(0)
        .iter()
        .map(|z| Complex::new(z.re as f64, z.im as f64))
        .collect()
}

fn wrap(d: f64) -> f64 {
    (d + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI
}

// ---------------------------------------------------------------- time and geometry

#[test]
fn julian_date_and_sidereal_time_golden_values() {
    // Meeus, Astronomical Algorithms, example 7.a: 1957 October 4.81 = JD 2436116.31.
    assert_relative_eq!(
        julian_date(1957, 10, 4, 0.81 * 24.0),
        2_436_116.31,
        epsilon = 1e-6
    );
    // The documented epoch.
    assert_eq!(julian_date(2017, 4, 11, 0.0), 2_457_854.5);
    // Meeus example 12.a: 1987 April 10, 0h UT -> 13h10m46.3668s.
    let g = gmst_rad(julian_date(1987, 4, 10, 0.0)).to_degrees() / 15.0;
    assert_relative_eq!(g, 13.0 + 10.0 / 60.0 + 46.3668 / 3600.0, epsilon = 2e-7);
    // Meeus example 12.b: 1987 April 10, 19h21m00s UT -> 8h34m57.0896s.
    let g = gmst_rad(julian_date(1987, 4, 10, 19.35)).to_degrees() / 15.0;
    assert_relative_eq!(g, 8.0 + 34.0 / 60.0 + 57.0896 / 3600.0, epsilon = 2e-7);
}

#[test]
fn uv_points_satisfy_elevation_cut_and_geometry() {
    let cov = model().coverage();
    let cut = cov.config.elevation_cut_deg.to_radians();
    let lambda = SPEED_OF_LIGHT / cov.config.freq_hz;
    let dec = cov.source.dec_rad;
    // Golden counts of the documented default track (docs/operators-eht.md).
    assert_eq!((cov.scans.len(), cov.n_vis()), (98, 837));
    assert_eq!((model().n_cphase(), model().n_logcamp()), (508, 427));
    for (s, scan) in cov.scans.iter().enumerate() {
        // Exactly the stations above the cut are listed.
        for (i, st) in cov.stations.iter().enumerate() {
            let el = st.elevation(scan.gha_rad, dec);
            assert_eq!(
                scan.stations.contains(&i),
                el >= cut,
                "scan {s} station {}",
                st.name
            );
        }
        let n = scan.stations.len();
        assert_eq!(scan.vis.len(), n * (n - 1) / 2);
        for p in &cov.points[scan.vis.clone()] {
            assert_eq!(p.scan, s);
            assert!(p.st1 < p.st2);
            for st in [p.st1, p.st2] {
                assert!(cov.stations[st].elevation(scan.gha_rad, dec) >= cut);
            }
            // (u, v, w) is a rotation of the baseline: the length is preserved.
            let (a, b) = (cov.stations[p.st1].xyz_m, cov.stations[p.st2].xyz_m);
            let bl = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
            let uvw = (p.u * p.u + p.v * p.v + p.w * p.w).sqrt() * lambda;
            assert_relative_eq!(uvw, bl, max_relative = 1e-12, epsilon = 1e-6);
            // w is the delay towards the source, which both stations see: |w| < |b|.
            assert!(p.w.abs() * lambda <= bl);
        }
    }
    // SPT (south pole) never sees M87* at dec +12 deg.
    let spt = cov.stations.iter().position(|s| s.name == "SPT").unwrap();
    assert!(cov.scans.iter().all(|s| !s.stations.contains(&spt)));
    // The longest baselines reach ~ 8 G lambda at 230 GHz (Earth diameter / 1.3 mm = 9.8 G lambda).
    let umax = cov
        .points
        .iter()
        .map(|p| p.u.hypot(p.v))
        .fold(0.0, f64::max);
    assert!(umax > 6e9 && umax < 9.8e9, "max |uv| = {umax:e}");
}

#[test]
fn uvw_formula_limits() {
    // A polar baseline seen from the celestial pole has no projected length ...
    let uvw = baseline_uvw([0.0, 0.0, 1.0], 0.3, std::f64::consts::FRAC_PI_2);
    assert_relative_eq!(uvw[0], 0.0, epsilon = 1e-15);
    assert_relative_eq!(uvw[1], 0.0, epsilon = 1e-15);
    assert_relative_eq!(uvw[2], 1.0, epsilon = 1e-15);
    // ... and an east-west baseline (ITRF Y) at transit (H = 0) is pure +u.
    let uvw = baseline_uvw([0.0, 1.0, 0.0], 0.0, 0.4);
    assert_relative_eq!(uvw[0], 1.0, epsilon = 1e-15);
    assert_relative_eq!(uvw[1], 0.0, epsilon = 1e-15);
}

// ---------------------------------------------------------------- visibilities

#[test]
fn conjugate_baseline_gives_conjugate_visibility() {
    let grid = ImageGrid::default();
    let uv = [
        [1.3e9, -2.1e9],
        [-1.3e9, 2.1e9],
        [4.0e9, 0.7e9],
        [-4.0e9, -0.7e9],
    ];
    let op = VisibilityOperator::from_uv(&uv, grid, PixelResponse::Triangle).unwrap();
    let x = random_images(3, 11);
    let v = op.visibilities(x.view()).unwrap();
    for row in v.outer_iter() {
        for k in [0, 2] {
            let (a, b) = (row[k], row[k + 1]);
            let scale = a.norm().max(1e-3);
            assert!((a - b.conj()).norm() / scale < 1e-5, "{a} vs conj {b}");
        }
    }
}

#[test]
fn zero_spacing_visibility_is_total_flux() {
    let x = random_images(4, 5);
    for pulse in [
        PixelResponse::Delta,
        PixelResponse::Box,
        PixelResponse::Triangle,
    ] {
        assert_eq!(pulse.response(0.0, 0.0, 1e-11), 1.0);
        let op =
            VisibilityOperator::from_uv(&[[0.0, 0.0], [1e9, 0.0]], ImageGrid::default(), pulse)
                .unwrap();
        let v = op.visibilities(x.view()).unwrap();
        for (i, row) in x.outer_iter().enumerate() {
            let flux: f64 = row.iter().map(|&p| p as f64).sum();
            assert_relative_eq!(v[[i, 0]].re as f64, flux, max_relative = 1e-5);
            assert!(v[[i, 0]].im.abs() < 1e-6);
        }
    }
}

#[test]
fn single_pixel_is_a_phase_ramp_with_east_left_north_up() {
    let grid = ImageGrid::default();
    let dx = grid.pixel_rad();
    let uv = [[2.0e9, 0.0], [0.0, 2.0e9], [3.0e9, -1.0e9]];
    let op = VisibilityOperator::from_uv(&uv, grid, PixelResponse::Box).unwrap();
    // Pixel in row 10 (north of centre), column 5 (east of centre).
    let (r, c) = (10usize, 5usize);
    let mut x = Array2::<f32>::zeros((1, 4096));
    x[[0, r * 64 + c]] = 1.0;
    let v = op.visibilities(x.view()).unwrap();
    let (l, m) = ((31.5 - c as f64) * dx, (31.5 - r as f64) * dx);
    assert!(l > 0.0 && m > 0.0);
    for (k, &[u, w]) in uv.iter().enumerate() {
        let p = PixelResponse::Box.response(u, w, dx);
        let want = Complex::from_polar(p, -std::f64::consts::TAU * (u * l + w * m));
        assert!((Complex::new(v[[0, k]].re as f64, v[[0, k]].im as f64) - want).norm() < 1e-5);
    }
}

#[test]
fn centro_symmetric_image_has_trivial_closure_phases() {
    // I(l, m) = I(-l, -m) makes every visibility real, so closure phases are 0 or pi.
    let g = model();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut img = Array1::<f32>::zeros(4096);
    for r in 0..64 {
        for c in 0..64 {
            let (r2, c2) = (63 - r, 63 - c);
            if (r, c) <= (r2, c2) {
                let v = rng.random::<f32>();
                img[r * 64 + c] = v;
                img[r2 * 64 + c2] = v;
            }
        }
    }
    let y = g.forward(img.view().insert_axis(ndarray::Axis(0))).unwrap();
    for k in 0..g.n_cphase() {
        let psi = y[[0, k]] as f64;
        let d = psi.abs().min((psi.abs() - std::f64::consts::PI).abs());
        assert!(d < 1e-3, "closure phase {k} = {psi}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn visibility_adjoint_identity(seed in any::<u64>(), rows in 1usize..4) {
        let op = model().visibility_operator();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = 2 * op.n_vis();
        let x = Array2::from_shape_fn((rows, 4096), |_| rng.random::<f32>() - 0.5);
        let y = Array2::from_shape_fn((rows, m), |_| rng.random::<f32>() - 0.5);
        let ax = op.forward(x.view()).unwrap();
        let aty = op.adjoint(y.view()).unwrap();
        for i in 0..rows {
            let lhs: f64 = ax.row(i).iter().zip(y.row(i)).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x.row(i).iter().zip(aty.row(i)).map(|(a, b)| *a as f64 * *b as f64).sum();
            let scale = (ax.row(i).iter().map(|v| (*v as f64).powi(2)).sum::<f64>()
                * y.row(i).iter().map(|v| (*v as f64).powi(2)).sum::<f64>()).sqrt();
            prop_assert!((lhs - rhs).abs() <= 1e-5 * scale, "lhs {} rhs {} scale {}", lhs, rhs, scale);
        }
    }
}

// ---------------------------------------------------------------- closures

#[test]
fn closure_set_sizes_match_formulas_and_are_independent() {
    let g = model();
    let cov = g.coverage();
    let cs = g.closure_set();
    let (mut nt, mut nq) = (0, 0);
    for (s, scan) in cov.scans.iter().enumerate() {
        let n = scan.stations.len();
        let tris: Vec<&Triangle> = cs.triangles().iter().filter(|t| t.scan == s).collect();
        let quads: Vec<&Quadrangle> = cs.quadrangles().iter().filter(|q| q.scan == s).collect();
        assert_eq!(
            tris.len(),
            if n >= 3 { (n - 1) * (n - 2) / 2 } else { 0 },
            "scan {s}"
        );
        assert_eq!(
            quads.len(),
            if n >= 4 { n * (n - 3) / 2 } else { 0 },
            "scan {s}"
        );
        nt += tris.len();
        nq += quads.len();
        let nb = scan.vis.len();
        // Coefficient vectors over the scan's baselines: signed for phases, +-1 for log amps.
        let tri_rows: Vec<Vec<f64>> = tris
            .iter()
            .map(|t| {
                let mut v = vec![0.0; nb];
                for k in 0..3 {
                    v[t.vis[k] - scan.vis.start] += if t.conj[k] { -1.0 } else { 1.0 };
                }
                v
            })
            .collect();
        let quad_rows: Vec<Vec<f64>> = quads
            .iter()
            .map(|q| {
                let mut v = vec![0.0; nb];
                for k in 0..4 {
                    v[q.vis[k] - scan.vis.start] += if k < 2 { 1.0 } else { -1.0 };
                }
                v
            })
            .collect();
        assert_eq!(
            rank(&tri_rows),
            tri_rows.len(),
            "dependent closure phases in scan {s}"
        );
        assert_eq!(
            rank(&quad_rows),
            quad_rows.len(),
            "dependent closure amplitudes in scan {s}"
        );
        // Every triangle and quadrangle lies within the scan's stations.
        for t in &tris {
            assert!(t.stations.iter().all(|st| scan.stations.contains(st)));
        }
    }
    assert_eq!(nt, g.n_cphase());
    assert_eq!(nq, g.n_logcamp());
    assert_eq!(g.output_dim(), nt + nq + 1);
}

/// Rank by Gaussian elimination with partial pivoting (f64; entries are small integers).
fn rank(rows: &[Vec<f64>]) -> usize {
    let mut a: Vec<Vec<f64>> = rows.to_vec();
    let ncol = a.first().map_or(0, |r| r.len());
    let mut r = 0;
    for c in 0..ncol {
        let Some(p) = (r..a.len()).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())) else {
            break;
        };
        if a[p][c].abs() < 1e-9 {
            continue;
        }
        a.swap(r, p);
        for i in 0..a.len() {
            if i != r {
                let f = a[i][c] / a[r][c];
                let pivot = a[r].clone();
                for (x, y) in a[i].iter_mut().zip(&pivot) {
                    *x -= f * y;
                }
            }
        }
        r += 1;
    }
    r
}

#[test]
fn closure_phases_immune_to_station_phase_errors() {
    let g = model();
    let cov = g.coverage();
    let vis = vis64(g, &ring_image());
    let before = g.closure_set().closure_phases(&vis).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    // One random phase per station per scan (atmosphere changes between scans).
    let phi: Vec<Vec<f64>> = cov
        .scans
        .iter()
        .map(|_| {
            (0..cov.stations.len())
                .map(|_| rng.random_range(-3.0..3.0))
                .collect()
        })
        .collect();
    let corrupted: Vec<Complex<f64>> = cov
        .points
        .iter()
        .zip(&vis)
        .map(|(p, v)| v * Complex::from_polar(1.0, phi[p.scan][p.st1] - phi[p.scan][p.st2]))
        .collect();
    let after = g.closure_set().closure_phases(&corrupted).unwrap();
    let mut moved = 0;
    for (a, b) in before.iter().zip(&after) {
        assert!(wrap(a - b).abs() < 1e-9, "{a} vs {b}");
    }
    // The corruption did change the visibility phases themselves.
    for (v, c) in vis.iter().zip(&corrupted) {
        if wrap(v.arg() - c.arg()).abs() > 1e-3 {
            moved += 1;
        }
    }
    assert!(moved > cov.n_vis() / 2);
    // Log closure amplitudes do not see phases either.
    let la = g.closure_set().log_closure_amplitudes(&vis).unwrap();
    let lb = g.closure_set().log_closure_amplitudes(&corrupted).unwrap();
    for (a, b) in la.iter().zip(&lb) {
        assert_relative_eq!(*a, *b, epsilon = 1e-9);
    }
}

#[test]
fn log_closure_amplitudes_immune_to_station_gains() {
    let g = model();
    let cov = g.coverage();
    let vis = vis64(g, &ring_image());
    let before = g.closure_set().log_closure_amplitudes(&vis).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    // Complex station gains g_i = a_i exp(i phi_i), V_ij -> g_i conj(g_j) V_ij (|.| = a_i a_j).
    let gains: Vec<Vec<Complex<f64>>> = cov
        .scans
        .iter()
        .map(|_| {
            (0..cov.stations.len())
                .map(|_| {
                    Complex::from_polar(rng.random_range(0.5..2.0), rng.random_range(-3.0..3.0))
                })
                .collect()
        })
        .collect();
    let corrupted: Vec<Complex<f64>> = cov
        .points
        .iter()
        .zip(&vis)
        .map(|(p, v)| v * gains[p.scan][p.st1] * gains[p.scan][p.st2].conj())
        .collect();
    let after = g.closure_set().log_closure_amplitudes(&corrupted).unwrap();
    for (a, b) in before.iter().zip(&after) {
        assert_relative_eq!(*a, *b, epsilon = 1e-9);
    }
    let cb = g.closure_set().closure_phases(&vis).unwrap();
    let ca = g.closure_set().closure_phases(&corrupted).unwrap();
    for (a, b) in cb.iter().zip(&ca) {
        assert!(wrap(a - b).abs() < 1e-9);
    }
    // Amplitudes alone are not immune: some log amplitude moved by more than 0.1.
    assert!(vis
        .iter()
        .zip(&corrupted)
        .any(|(a, b)| (a.norm().ln() - b.norm().ln()).abs() > 0.1));
}

#[test]
fn closure_sigmas_follow_the_propagation_formula() {
    let g = model();
    let vis = vis64(g, &ring_image());
    let sig = g.vis_sigma();
    let cs = g.closure_set();
    let sp = cs.closure_phase_sigmas(&vis, sig).unwrap();
    let sa = cs.log_closure_amplitude_sigmas(&vis, sig).unwrap();
    let t = &cs.triangles()[7];
    let want: f64 = t
        .vis
        .iter()
        .map(|&k| (sig[k] / vis[k].norm()).powi(2))
        .sum::<f64>()
        .sqrt();
    assert_relative_eq!(sp[7], want, max_relative = 1e-12);
    let q = &cs.quadrangles()[5];
    let want: f64 = q
        .vis
        .iter()
        .map(|&k| (sig[k] / vis[k].norm()).powi(2))
        .sum::<f64>()
        .sqrt();
    assert_relative_eq!(sa[5], want, max_relative = 1e-12);
    // Thermal sigma of the ALMA-APEX baseline: sqrt(90 * 3500 / (2 * 2e9 * 60)) / 0.88 Jy.
    let p = g
        .coverage()
        .points
        .iter()
        .find(|p| p.st1 == 0 && p.st2 == 1)
        .unwrap();
    assert_relative_eq!(
        p.sigma_jy,
        (90.0f64 * 3500.0 / 2.4e11).sqrt() / 0.88,
        max_relative = 1e-12
    );
}

// ---------------------------------------------------------------- forward model

#[test]
fn forward_layout_matches_closure_set_and_flux() {
    let g = model();
    let x = random_images(3, 9);
    let y = g.forward(x.view()).unwrap();
    let v = g.visibilities(x.view()).unwrap();
    let (p, q) = (g.n_cphase(), g.n_logcamp());
    assert_eq!(g.layout(), (0..p, p..p + q, p + q));
    for i in 0..3 {
        let vis: Vec<Complex<f32>> = v.row(i).to_vec();
        let cp = g.closure_set().closure_phases(&vis).unwrap();
        let la = g.closure_set().log_closure_amplitudes(&vis).unwrap();
        for k in 0..p {
            assert_eq!(y[[i, k]], cp[k] as f32);
        }
        for k in 0..q {
            assert_eq!(y[[i, p + k]], la[k] as f32);
        }
        let flux: f64 = x.row(i).iter().map(|&v| v as f64).sum();
        assert_relative_eq!(y[[i, p + q]] as f64, flux, max_relative = 1e-6);
    }
}

#[test]
fn input_map_and_scale_invariance() {
    // Closure quantities do not depend on the flux scale; the reference input map is (x+1)/2.
    let g_ref = ClosureForward::new(&EhtConfig::reference()).unwrap();
    let g = model();
    let img = random_images(1, 4);
    let x = img.mapv(|v| 2.0 * v - 1.0);
    let y_ref = g_ref.forward(x.view()).unwrap();
    let y = g.forward(img.view()).unwrap();
    let y3 = g.forward(img.mapv(|v| 3.0 * v).view()).unwrap();
    let m = g.output_dim();
    for k in 0..m - 1 {
        assert!(
            wrap((y_ref[[0, k]] - y[[0, k]]) as f64).abs() < 2e-3,
            "k {k}"
        );
        assert!(wrap((y3[[0, k]] - y[[0, k]]) as f64).abs() < 2e-3, "k {k}");
    }
    assert_relative_eq!(y3[[0, m - 1]], 3.0 * y[[0, m - 1]], max_relative = 1e-5);
}

#[test]
fn typed_errors_on_bad_input() {
    let g = model();
    let bad = Array2::<f32>::zeros((2, 100));
    assert!(matches!(
        g.forward(bad.view()),
        Err(OperatorError::Shape {
            expected: 4096,
            got: 100,
            ..
        })
    ));
    let mut x = random_images(3, 1);
    x[[2, 17]] = f32::NAN;
    assert!(matches!(
        g.forward(x.view()),
        Err(OperatorError::NonFiniteInput { row: 2, .. })
    ));
    let op = g.visibility_operator();
    assert!(matches!(
        op.forward(x.view()),
        Err(OperatorError::NonFiniteInput { row: 2, .. })
    ));
    assert!(matches!(
        op.adjoint(Array2::<f32>::zeros((1, 3)).view()),
        Err(OperatorError::Shape { .. })
    ));
    // An all-zero image has zero visibilities: the row is named, and forward_partial isolates it.
    let mut x = random_images(3, 2);
    x.row_mut(1).fill(0.0);
    assert!(matches!(
        g.forward(x.view()),
        Err(OperatorError::SampleFailed { row: 1, .. })
    ));
    let out = g.forward_partial(x.view()).unwrap();
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].row, 1);
    assert!(out.y.row(0).iter().all(|v| v.is_finite()) && out.y.row(1).iter().all(|v| v.is_nan()));
    // Bad configurations.
    let mut cfg = EhtConfig::default();
    cfg.grid.fov_uas = -1.0;
    assert!(matches!(
        ClosureForward::new(&cfg),
        Err(OperatorError::InvalidParameter { .. })
    ));
    let mut cfg = EhtConfig::default();
    cfg.observation.cadence_min = 0.0;
    assert!(matches!(
        ClosureForward::new(&cfg),
        Err(OperatorError::InvalidParameter { .. })
    ));
    let mut cfg = EhtConfig::default();
    cfg.observation.elevation_cut_deg = 89.0;
    assert!(matches!(
        ClosureForward::new(&cfg),
        Err(OperatorError::InvalidParameter { .. })
    ));
    let cfg = EhtConfig {
        jy_per_unit: 0.0,
        ..EhtConfig::default()
    };
    assert!(matches!(
        ClosureForward::new(&cfg),
        Err(OperatorError::InvalidParameter { .. })
    ));
    // Likelihood: wrong length, bad sigma, non-finite prediction.
    let data = g
        .simulate(ring_image().view(), VisNoise::Thermal, 1)
        .unwrap();
    let lik = ClosureLikelihood::new(&data, ClosureWeights::default()).unwrap();
    assert!(matches!(
        lik.nll(Array2::<f32>::zeros((1, 5)).view()),
        Err(OperatorError::Shape { .. })
    ));
    let mut y = Array2::<f32>::zeros((2, lik.measurement_dim()));
    y[[1, 3]] = f32::INFINITY;
    assert!(matches!(
        lik.grad(y.view()),
        Err(OperatorError::NonFiniteInput { row: 1, .. })
    ));
    assert!(ClosureLikelihood::from_parts(
        &[0.1],
        &[0.0],
        &[],
        &[],
        1.0,
        ClosureWeights::default()
    )
    .is_err());
    assert!(ClosureLikelihood::from_parts(
        &[0.1],
        &[0.1, 0.2],
        &[],
        &[],
        1.0,
        ClosureWeights::default()
    )
    .is_err());
    assert!(ClosureLikelihood::from_parts(
        &[f64::NAN],
        &[0.1],
        &[],
        &[],
        1.0,
        ClosureWeights::default()
    )
    .is_err());
}

#[test]
fn deterministic_across_threads_and_batch_sizes() {
    let g = model();
    let x = random_images(41, 77);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let y1 = one.install(|| g.forward(x.view()).unwrap());
    let y3 = three.install(|| g.forward(x.view()).unwrap());
    assert_eq!(y1, y3);
    // Row by row gives the same bits as the batch (blocks of 32 do not change a row's result).
    for i in [0, 7, 31, 32, 40] {
        let yi = g.forward(x.slice(ndarray::s![i..i + 1, ..])).unwrap();
        assert_eq!(yi.row(0), y1.row(i));
    }
    let op = g.visibility_operator();
    let v = op.forward(x.view()).unwrap();
    let a1 = one.install(|| op.adjoint(v.view()).unwrap());
    let a3 = three.install(|| op.adjoint(v.view()).unwrap());
    assert_eq!(a1, a3);
    for i in [9, 35] {
        let a_row = op.adjoint(v.slice(ndarray::s![i..i + 1, ..])).unwrap();
        assert_eq!(a_row.row(0), a1.row(i));
    }
    let a_part = op.adjoint(v.slice(ndarray::s![3..40, ..])).unwrap();
    assert_eq!(a_part.row(30), a1.row(33));
    // Same seed, same data; another seed, other noise.
    let img = ring_image();
    let d1 = g.simulate(img.view(), VisNoise::Thermal, 5).unwrap();
    let d2 = g.simulate(img.view(), VisNoise::Thermal, 5).unwrap();
    let d3 = g.simulate(img.view(), VisNoise::Thermal, 6).unwrap();
    assert_eq!(d1, d2);
    assert_ne!(d1.vis, d3.vis);
}

#[test]
fn thermal_noise_has_the_documented_sigma() {
    let g = model();
    let img = ring_image();
    let clean = g.simulate(img.view(), VisNoise::None, 0).unwrap();
    let noisy = g.simulate(img.view(), VisNoise::Thermal, 42).unwrap();
    let z: Vec<f64> = clean
        .vis
        .iter()
        .zip(&noisy.vis)
        .zip(g.vis_sigma())
        .flat_map(|((a, b), s)| [(b.re - a.re) / s, (b.im - a.im) / s])
        .collect();
    let n = z.len() as f64;
    let mean = z.iter().sum::<f64>() / n;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.12, "var {var}");
    // Noiseless data of the truth: the truth's measurement equals the data, NLL and gradient 0.
    let lik = ClosureLikelihood::new(&clean, ClosureWeights::default()).unwrap();
    let y = g.forward(img.view().insert_axis(ndarray::Axis(0))).unwrap();
    assert!(lik.nll(y.view()).unwrap()[0] < 1e-3);
    let yd = clean.measurement();
    assert_eq!(yd.len(), g.output_dim());
    for (a, b) in y.row(0).iter().zip(&yd) {
        assert!(wrap((*a - *b) as f64).abs() < 1e-6);
    }
    // With noise, the truth fits at reduced chi^2 ~ 1 (first-order sigmas; high-SNR ring).
    let lik = ClosureLikelihood::new(&noisy, ClosureWeights::default()).unwrap();
    let (cp, ca) = lik.reduced_chi2(y.as_slice().unwrap()).unwrap();
    assert!(
        cp > 0.5 && cp < 2.0 && ca > 0.5 && ca < 2.0,
        "chi2 cp {cp} ca {ca}"
    );
}

// ---------------------------------------------------------------- likelihood

#[test]
fn likelihood_gradient_matches_central_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (p, q) = (5, 4);
    let cp: Vec<f64> = (0..p).map(|_| rng.random_range(-3.0..3.0)).collect();
    let cps: Vec<f64> = (0..p).map(|_| rng.random_range(0.2..1.0)).collect();
    let la: Vec<f64> = (0..q).map(|_| rng.random_range(-1.0..1.0)).collect();
    let las: Vec<f64> = (0..q).map(|_| rng.random_range(0.2..1.0)).collect();
    for w in [
        ClosureWeights::default(),
        ClosureWeights::enkg_pytorch(),
        ClosureWeights {
            flux: 3.0,
            logcamp: 0.7,
            ..Default::default()
        },
    ] {
        let lik = ClosureLikelihood::from_parts(&cp, &cps, &la, &las, 2.0, w).unwrap();
        let m = lik.measurement_dim();
        assert_eq!(m, p + q + 1);
        let y = Array2::from_shape_fn((2, m), |_| rng.random_range(-2.0f32..2.0));
        let g = lik.grad(y.view()).unwrap();
        let h = 1e-2f32;
        for i in 0..2 {
            for j in 0..m {
                let mut yp = y.clone();
                yp[[i, j]] += h;
                let mut ym = y.clone();
                ym[[i, j]] -= h;
                let fd =
                    (lik.nll(yp.view()).unwrap()[i] - lik.nll(ym.view()).unwrap()[i]) / (2.0 * h);
                assert_relative_eq!(fd, g[[i, j]], max_relative = 5e-3, epsilon = 5e-3);
            }
        }
    }
    // The wrapped residual is 2 pi periodic in the closure phases; the linear one is not.
    let lw = ClosureLikelihood::from_parts(&cp, &cps, &la, &las, 2.0, ClosureWeights::default())
        .unwrap();
    let ll =
        ClosureLikelihood::from_parts(&cp, &cps, &la, &las, 2.0, ClosureWeights::enkg_pytorch())
            .unwrap();
    let y = Array2::from_shape_fn((1, p + q + 1), |_| 0.3f32);
    let mut y2 = y.clone();
    y2[[0, 1]] += std::f32::consts::TAU;
    assert_relative_eq!(
        lw.nll(y.view()).unwrap()[0],
        lw.nll(y2.view()).unwrap()[0],
        max_relative = 1e-5
    );
    assert!(ll.nll(y2.view()).unwrap()[0] > ll.nll(y.view()).unwrap()[0] + 1.0);
}

#[test]
fn likelihood_matches_its_formula_on_the_eht_problem() {
    let g = model();
    let data = g
        .simulate(ring_image().view(), VisNoise::Thermal, 3)
        .unwrap();
    let lik = ClosureLikelihood::new(&data, ClosureWeights::default()).unwrap();
    let x = random_images(2, 31);
    let y = g.forward(x.view()).unwrap();
    let nll = lik.nll(y.view()).unwrap();
    let (p, q) = (g.n_cphase(), g.n_logcamp());
    for i in 0..2 {
        let mut want = 0.0f64;
        for k in 0..p {
            want += 2.0 * (1.0 - (y[[i, k]] as f64 - data.cphase[k]).cos())
                / data.cphase_sigma[k].powi(2);
        }
        for k in 0..q {
            want +=
                (y[[i, p + k]] as f64 - data.logcamp[k]).powi(2) / data.logcamp_sigma[k].powi(2);
        }
        want += 0.5 * ((y[[i, p + q]] as f64 - data.flux) / 2.0).powi(2);
        assert_relative_eq!(nll[i] as f64, 2.0 * want, max_relative = 1e-5);
    }
    // Gradient on a few coordinates of the full problem, near the data (moderate curvature).
    let y0 = data.measurement().insert_axis(ndarray::Axis(0)).to_owned();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let y1 = y0.mapv(|v| v + rng.random_range(-0.05f32..0.05));
    let gr = lik.grad(y1.view()).unwrap();
    let e = lik.nll(y1.view()).unwrap()[0];
    let dir = Array2::from_shape_fn(y1.raw_dim(), |_| rng.random_range(-1.0f32..1.0));
    let h = 1e-3f32;
    let fp = lik.nll((&y1 + &(dir.mapv(|v| v * h))).view()).unwrap()[0] as f64;
    let fm = lik.nll((&y1 - &(dir.mapv(|v| v * h))).view()).unwrap()[0] as f64;
    let fd = (fp - fm) / (2.0 * h as f64);
    let an: f64 = gr
        .iter()
        .zip(dir.iter())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    assert!(
        (fd - an).abs() <= 2e-2 * an.abs().max(1e-3 * e as f64),
        "fd {fd} analytic {an} nll {e}"
    );
}

#[test]
fn closure_vjp_matches_directional_differences() {
    use diffinv_operators::Differentiable;
    let g = ClosureForward::new(&EhtConfig::reference()).unwrap();
    let (p, q) = (g.n_cphase(), g.n_logcamp());
    let m = g.output_dim();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    // Model inputs in [-1, 1] whose images (x + 1) / 2 are the ring plus a little texture.
    let ring = ring_image();
    let x = Array2::from_shape_fn((2, 4096), |(_, j)| {
        2.0 * (ring[j] + 0.02 * rng.random::<f32>()) - 1.0
    });
    let w = Array2::from_shape_fn((2, m), |_| rng.random_range(-1.0f32..1.0));
    let vjp = g.vjp(x.view(), w.view()).unwrap();
    let dir = Array2::from_shape_fn((2, 4096), |_| rng.random_range(-1.0f32..1.0));
    let h = 2e-3f32;
    let yp = g.forward((&x + &dir.mapv(|v| v * h)).view()).unwrap();
    let ym = g.forward((&x - &dir.mapv(|v| v * h)).view()).unwrap();
    for i in 0..2 {
        let mut fd = 0.0f64;
        for j in 0..m {
            let mut dy = (yp[[i, j]] - ym[[i, j]]) as f64;
            if j < p {
                dy = wrap(dy);
            }
            fd += w[[i, j]] as f64 * dy / (2.0 * h as f64);
        }
        let an: f64 = vjp
            .row(i)
            .iter()
            .zip(dir.row(i))
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        assert!(
            (fd - an).abs() <= 1e-2 * an.abs(),
            "row {i}: fd {fd} vjp {an} (P {p}, Q {q})"
        );
    }
    assert!(matches!(
        g.vjp(x.view(), Array2::<f32>::zeros((1, m)).view()),
        Err(OperatorError::Rows { .. })
    ));
    assert!(matches!(
        g.vjp(x.view(), Array2::<f32>::zeros((2, 3)).view()),
        Err(OperatorError::Shape { .. })
    ));
}

#[test]
fn station_zenith_and_culmination_match_known_sites() {
    // Approximate geodetic latitude / east longitude (deg) of the sites, from public site data.
    let known = [
        ("ALMA", -23.029, -67.755),
        ("SMT", 32.701, -109.891),
        ("LMT", 18.985, -97.315),
        ("PV", 37.066, -3.393),
        ("JCMT", 19.823, -155.477),
    ];
    let stations = eht2017();
    let dec = Source::m87().dec_rad;
    for (name, lat, lon) in known {
        let st = stations.iter().find(|s| s.name == name).unwrap();
        let n = st.zenith();
        assert!(
            (n[2].asin().to_degrees() - lat).abs() < 0.05,
            "{name} latitude"
        );
        assert!(
            (n[1].atan2(n[0]).to_degrees() - lon).abs() < 0.05,
            "{name} longitude"
        );
        // Upper culmination of M87* reaches 90 - |lat - dec| degrees, at local hour angle 0,
        // i.e. Greenwich hour angle -lon.
        let (best_h, best_el) = (0..36000)
            .map(|k| {
                let h = k as f64 / 36000.0 * std::f64::consts::TAU;
                (h, st.elevation(h, dec))
            })
            .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        assert!(
            (best_el.to_degrees() - (90.0 - (lat - dec.to_degrees()).abs())).abs() < 0.05,
            "{name} culmination"
        );
        assert!(
            wrap(best_h + lon.to_radians()).abs() < 0.01,
            "{name} transit hour angle"
        );
    }
}

#[test]
fn gaussian_source_matches_analytic_visibilities() {
    // A circular Gaussian of standard deviation s (radians) and flux F has
    // V(u, v) = F exp(-2 pi^2 s^2 (u^2 + v^2)); 4-pixel (10 uas) width keeps pixelisation and
    // aliasing errors far below the tolerance. This pins the uas -> radian and wavelength units.
    let g = model();
    let grid = ImageGrid::default();
    let dx = grid.pixel_rad();
    let s_px = 4.0f64;
    let mut img = Array2::<f32>::zeros((1, 4096));
    for r in 0..64 {
        for c in 0..64 {
            let (y, x) = (r as f64 - 31.5, c as f64 - 31.5);
            img[[0, r * 64 + c]] = (-(x * x + y * y) / (2.0 * s_px * s_px)).exp() as f32;
        }
    }
    let flux: f64 = img.iter().map(|&v| v as f64).sum();
    let op = VisibilityOperator::new(g.coverage(), grid, PixelResponse::Delta).unwrap();
    let v = op.visibilities(img.view()).unwrap();
    // 2.5 uas pixels; 1 uas = 4.84813681109536e-12 rad (independent of the crate's constant).
    assert_relative_eq!(dx, 2.5 * 4.848_136_811_095_36e-12, max_relative = 1e-12);
    let s = s_px * 2.5 * 4.848_136_811_095_36e-12;
    for (k, p) in g.coverage().points.iter().enumerate() {
        let want =
            flux * (-2.0 * std::f64::consts::PI.powi(2) * s * s * (p.u * p.u + p.v * p.v)).exp();
        assert!(
            (v[[0, k]].re as f64 - want).abs() < 1e-4 * flux,
            "k {k}: {} vs {want}",
            v[[0, k]].re
        );
        assert!((v[[0, k]].im as f64).abs() < 1e-4 * flux);
    }
}
