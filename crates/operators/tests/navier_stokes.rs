//! Validation of the pseudo-spectral Navier-Stokes solver and forward model.
//!
//! Run: `cargo test -p diffinv-operators --test navier_stokes` (set `DIFFINV_PYTHON` to a python
//! with torch for the PyTorch comparison).

use std::f64::consts::PI;
use std::path::PathBuf;
use std::process::Command;

use diffinv_operators::navier_stokes::dataset::{
    npy_bytes_f32, parse_npy, read_npy, sample_rng, sample_stream, write_npy_f64, NpyData, Split,
};
use diffinv_operators::navier_stokes::{
    Forcing, GaussianRandomField, NavierStokes2d, NavierStokesConfig, NsConfig, NsSolver,
    Precision, TimeStep,
};
use diffinv_operators::{ForwardModel, OperatorError};
use ndarray::{Array2, Array3};
use proptest::prelude::*;

fn unforced(re: f64, t: f64, ts: TimeStep) -> NsConfig {
    NsConfig {
        re,
        t_final: t,
        time_step: ts,
        forcing: Forcing::None,
        max_steps: 1_000_000,
    }
}

/// `A cos(k1 x + k2 y)` on an `n x n` grid.
fn mode(n: usize, k1: f64, k2: f64, amp: f64) -> Vec<f64> {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (
                2.0 * PI * i as f64 / n as f64,
                2.0 * PI * j as f64 / n as f64,
            );
            v[i * n + j] = amp * (k1 * x + k2 * y).cos();
        }
    }
    v
}

/// The solver's time loop, replayed: the product of the Crank-Nicolson amplification factors
/// `(1 - a)/(1 + a)`, `a = dt |k|^2 / (2 Re)`, over the fixed-step sequence ending on `t`.
fn cn_factor(k2: f64, re: f64, t_end: f64, dt: f64) -> f64 {
    let (mut t, mut f) = (0.0f64, 1.0f64);
    while t < t_end {
        let cur = if t + dt > t_end { t_end - t } else { dt };
        let a = cur * k2 / (2.0 * re);
        f *= (1.0 - a) / (1.0 + a);
        t += cur;
    }
    f
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn grf_batch(n: usize, count: usize, seed: u64) -> Vec<f64> {
    let g = GaussianRandomField::fno(n, n).expect("grf");
    (0..count)
        .flat_map(|i| g.sample(&mut sample_rng(seed, Split::Test, i as u64)))
        .collect()
}

#[test]
fn single_mode_decays_by_the_crank_nicolson_factor_exactly() {
    // A single Fourier mode has u . grad w = 0 (no aliasing: 2k is resolved), so each step
    // multiplies it by the CN factor; the whole field must match to round-off.
    let n = 32;
    let (k1, k2, re, t, dt) = (2.0, 1.0, 10.0, 1.0, 7e-3);
    let s = NsSolver::<f64>::new(n, n, unforced(re, t, TimeStep::Fixed(dt))).expect("solver");
    let w0 = mode(n, k1, k2, 1.3);
    let mut out = vec![0.0; n * n];
    s.solve_one(&w0, &mut out).expect("solve");
    let f = cn_factor(k1 * k1 + k2 * k2, re, t, dt);
    let expect: Vec<f64> = w0.iter().map(|v| v * f).collect();
    let err = rel_l2(&out, &expect);
    eprintln!("single mode vs CN factor: relative L2 {err:.3e}");
    assert!(err < 1e-12, "relative error vs CN factor {err:e}");
}

#[test]
fn single_mode_decays_as_the_exponential_with_second_order_error() {
    // exp(-|k|^2 t / Re): CN's per-step error in log-amplitude is -(2/3) a^3, so the total
    // relative error is ~ (2/3) (|k|^2/(2 Re))^3 dt^2 T: 1.3e-7 < 1e-6 for dt = 2.5e-4 (Re 1,
    // |k|^2 = 5, T = 0.2); halving dt divides the error by 4.
    let n = 32;
    let (k1, k2, re, t) = (2.0, 1.0, 1.0, 0.2);
    let ksq: f64 = k1 * k1 + k2 * k2;
    let exact = (-ksq * t / re).exp();
    let w0 = mode(n, k1, k2, 1.0);
    let run = |dt: f64| -> f64 {
        let s = NsSolver::<f64>::new(n, n, unforced(re, t, TimeStep::Fixed(dt))).expect("solver");
        let mut out = vec![0.0; n * n];
        s.solve_one(&w0, &mut out).expect("solve");
        let expect: Vec<f64> = w0.iter().map(|v| v * exact).collect();
        rel_l2(&out, &expect)
    };
    let dt = 2.5e-4;
    let e_fine = run(dt);
    assert!(e_fine < 1e-6, "relative error vs exp {e_fine:e}");
    let predicted = (2.0 / 3.0) * (ksq / (2.0 * re)).powi(3) * dt * dt * t;
    assert!(
        (e_fine / predicted - 1.0).abs() < 0.05,
        "error {e_fine:e} vs predicted {predicted:e}"
    );
    let (e1, e2) = (run(0.02), run(0.01));
    let order = (e1 / e2).log2();
    eprintln!("single mode vs exp: dt {dt:e} error {e_fine:.3e} (predicted {predicted:.3e}); order {order:.3}");
    assert!(
        (order - 2.0).abs() < 0.1,
        "observed order {order} ({e1:e}, {e2:e})"
    );
}

#[test]
fn adaptive_step_single_mode_matches_exp() {
    // The default adaptive CFL step, unforced: for one mode the speed is A/|k| and the step
    // is constant, so the result must still match the exponential to 1e-6.
    let n = 32;
    let (k1, k2, re, t) = (1.0, 3.0, 200.0, 1.0);
    let ksq = k1 * k1 + k2 * k2;
    let s = NsSolver::<f64>::new(n, n, unforced(re, t, TimeStep::Adaptive)).expect("solver");
    let w0 = mode(n, k1, k2, 2.0);
    let mut out = vec![0.0; n * n];
    let st = s.solve_one(&w0, &mut out).expect("solve");
    assert!(st.steps > 10);
    let e = (-ksq * t / re).exp();
    let expect: Vec<f64> = w0.iter().map(|v| v * e).collect();
    let err = rel_l2(&out, &expect);
    eprintln!(
        "adaptive single mode vs exp: {} steps, relative L2 {err:.3e}",
        st.steps
    );
    assert!(
        err < 1e-6,
        "relative error {err:e} after {} steps",
        st.steps
    );
}

#[test]
fn laminar_kolmogorov_flow_matches_closed_form() {
    // From rest, the forcing -4 cos(4y) drives the single mode
    // w(t) = -4 (Re/16) (1 - exp(-16 t / Re)) cos(4 y), varying only along axis 1.
    let n = 32;
    let (re, t) = (200.0, 1.0);
    let cfg = NsConfig {
        re,
        t_final: t,
        time_step: TimeStep::Fixed(1e-3),
        ..NsConfig::default()
    };
    let s = NsSolver::<f64>::new(n, n, cfg).expect("solver");
    let mut out = vec![0.0; n * n];
    s.solve_one(&vec![0.0; n * n], &mut out).expect("solve");
    let c = -4.0 * (re / 16.0) * (1.0 - (-16.0 * t / re).exp());
    let expect = mode(n, 0.0, 4.0, c);
    let err = rel_l2(&out, &expect);
    eprintln!("laminar Kolmogorov vs closed form: relative L2 {err:.3e}");
    assert!(err < 1e-6, "relative error {err:e}");
    assert!(out[0] < 0.0, "w(0, 0) must be negative (forcing -4 cos 4y)");
}

#[test]
fn mean_vorticity_is_conserved() {
    let n = 32;
    let s = NsSolver::<f64>::new(n, n, NsConfig::default()).expect("solver");
    let mut w0 = grf_batch(n, 1, 3);
    let m0: f64 = w0.iter().sum::<f64>() / (n * n) as f64;
    assert!(m0.abs() < 1e-12, "GRF has zero mean, got {m0}");
    let mut out = vec![0.0; n * n];
    s.solve_one(&w0, &mut out).expect("solve");
    let m1: f64 = out.iter().sum::<f64>() / (n * n) as f64;
    eprintln!("mean vorticity after T = 1: {m1:.3e}");
    assert!(m1.abs() < 1e-11, "mean drifted to {m1:e}");
    // A non-zero mean is carried unchanged.
    w0.iter_mut().for_each(|v| *v += 0.3);
    s.solve_one(&w0, &mut out).expect("solve");
    let m2: f64 = out.iter().sum::<f64>() / (n * n) as f64;
    assert!((m2 - 0.3).abs() < 1e-11, "mean {m2}");
}

// ------------------------------------------------------------------------- PyTorch comparison

fn python() -> Option<String> {
    match std::env::var("DIFFINV_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("DIFFINV_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!("DIFFINV_REQUIRE_PYTHON=1 but DIFFINV_PYTHON is unset");
            }
            eprintln!("skipping PyTorch comparison: DIFFINV_PYTHON is unset");
            None
        }
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-ns-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Options of one reference solve: (re, t, dt_mode, dt, forcing).
type RefArgs = (f64, f64, &'static str, f64, &'static str);

/// One solve for the reference: its options and our result to compare with.
struct Job {
    args: RefArgs,
    ours: Vec<f64>,
}

/// Run every job through `ns_reference.py jobs` in one python process (one torch import) and
/// return the reference's results.
fn run_reference(py: &str, w0: &[f64], shape: [usize; 3], jobs: &[Job]) -> Vec<Vec<f64>> {
    let dir = scratch_dir("ref");
    let inp = dir.join("in.npy");
    write_npy_f64(&inp, &shape, w0).expect("write");
    let mut spec = Vec::new();
    for (k, j) in jobs.iter().enumerate() {
        let (re, t, mode, dt, forcing) = j.args;
        let out = dir.join(format!("out{k}.npy"));
        spec.push(format!(
            "{{\"input\": {:?}, \"output\": {:?}, \"re\": {re}, \"t\": {t}, \"dt_mode\": \"{mode}\", \"dt\": {dt}, \"forcing\": \"{forcing}\", \"dtype\": \"float64\"}}",
            inp.display().to_string(),
            out.display().to_string()
        ));
    }
    let jobs_path = dir.join("jobs.json");
    std::fs::write(&jobs_path, format!("[{}]", spec.join(", "))).expect("jobs");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../xtask/python/ns_reference.py");
    let o = Command::new(py)
        .arg(&script)
        .arg("jobs")
        .arg("--input")
        .arg(&jobs_path)
        .output()
        .expect("running python");
    assert!(
        o.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let res = (0..jobs.len())
        .map(|k| {
            let a = read_npy(&dir.join(format!("out{k}.npy"))).expect("read");
            assert_eq!(a.shape, shape.to_vec());
            a.to_f64()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

#[test]
fn matches_independent_pytorch_implementation_f64() {
    let Some(py) = python() else { return };
    let n = 32;
    let b = 3;
    let w0: Vec<f64> = grf_batch(n, b, 11).iter().map(|v| 2.0 * v).collect();
    let arr = Array3::from_shape_vec((b, n, n), w0.clone()).expect("shape");
    let mut jobs = Vec::new();
    for (ts, mode) in [
        (TimeStep::Adaptive, "sample"),
        (TimeStep::AdaptiveBatchMin, "batch"),
    ] {
        let s = NsSolver::<f64>::new(
            n,
            n,
            NsConfig {
                time_step: ts,
                ..NsConfig::default()
            },
        )
        .expect("solver");
        let (ours, st) = s.solve_batch(arr.view()).expect("batch");
        assert!(st.iter().all(|r| r.is_ok()));
        jobs.push(Job {
            args: (200.0, 1.0, mode, 0.0, "kolmogorov"),
            ours: ours.into_raw_vec_and_offset().0,
        });
    }
    // Fixed step, unforced.
    let s = NsSolver::<f64>::new(n, n, unforced(50.0, 0.5, TimeStep::Fixed(5e-3))).expect("solver");
    let (ours, _) = s.solve_batch(arr.view()).expect("batch");
    jobs.push(Job {
        args: (50.0, 0.5, "fixed", 5e-3, "none"),
        ours: ours.into_raw_vec_and_offset().0,
    });
    let theirs = run_reference(&py, &w0, [b, n, n], &jobs);
    for (job, theirs) in jobs.iter().zip(&theirs) {
        for i in 0..b {
            let sl = i * n * n..(i + 1) * n * n;
            let e = rel_l2(&job.ours[sl.clone()], &theirs[sl]);
            eprintln!("pytorch {:?} sample {i}: relative L2 {e:.3e}", job.args);
            assert!(e < 1e-5, "{:?}: sample {i} relative L2 {e:e}", job.args);
        }
    }
}

// ------------------------------------------------------------------------- failures, precision

fn to_f32_rows(v: &[f64], rows: usize) -> Array2<f32> {
    Array2::from_shape_vec(
        (rows, v.len() / rows),
        v.iter().map(|&x| x as f32).collect(),
    )
    .expect("shape")
}

#[test]
fn blow_up_is_a_per_sample_failure() {
    let n = 32;
    let b = 4;
    let mut w0 = grf_batch(n, b, 5);
    // Sample 1 gets a huge amplitude: with a fixed step far beyond its CFL limit it blows up.
    w0[n * n..2 * n * n].iter_mut().for_each(|v| *v *= 1e4);
    let cfg = NavierStokesConfig {
        resolution: n,
        solver: NsConfig {
            t_final: 0.5,
            time_step: TimeStep::Fixed(1e-2),
            ..NsConfig::default()
        },
        precision: Precision::F64,
        ..NavierStokesConfig::default()
    };
    let g = NavierStokes2d::new(cfg).expect("model");
    let x = to_f32_rows(&w0, b);
    let out = g.forward_partial(x.view()).expect("partial");
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].row, 1);
    assert!(
        out.failures[0].reason.contains("non-finite"),
        "{}",
        out.failures[0].reason
    );
    for r in [0, 2, 3] {
        assert!(out.y.row(r).iter().all(|v| v.is_finite()));
        // Same as solving the sample alone.
        let alone = g
            .forward(x.row(r).insert_axis(ndarray::Axis(0)))
            .expect("alone");
        assert_eq!(alone.row(0), out.y.row(r));
    }
    assert!(out.y.row(1).iter().all(|v| v.is_nan()));
    match g.forward(x.view()) {
        Err(OperatorError::SampleFailed { row: 1, .. }) => {}
        other => panic!("expected SampleFailed for row 1, got {other:?}"),
    }

    // NaN injected: forward rejects the batch, forward_partial isolates the row.
    let mut xn = x.clone();
    xn[[2, 17]] = f32::NAN;
    match g.forward(xn.view()) {
        Err(OperatorError::NonFiniteInput { row: 2, .. }) => {}
        other => panic!("expected NonFiniteInput for row 2, got {other:?}"),
    }
    let out = g.forward_partial(xn.view()).expect("partial");
    let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, vec![1, 2]);
    assert!(out.y.row(0).iter().all(|v| v.is_finite()));

    // Adaptive step: the huge sample stays finite but needs too many steps.
    let cfg = NavierStokesConfig {
        resolution: n,
        solver: NsConfig {
            t_final: 0.5,
            max_steps: 2_000,
            ..NsConfig::default()
        },
        precision: Precision::F64,
        ..NavierStokesConfig::default()
    };
    let g = NavierStokes2d::new(cfg).expect("model");
    let out = g.forward_partial(x.view()).expect("partial");
    let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, vec![1], "{:?}", out.failures);
    assert!(out.failures[0].reason.contains("step limit"));
    assert!(out.y.row(0).iter().all(|v| v.is_finite()));
    // With the batch-minimum step (the reference's rule) the fast sample drags every sample
    // to its tiny step, so the whole batch hits the step limit: the coupling is the price of
    // that rule, and why per-sample steps are the default.
    let mut c = *g.config();
    c.solver.time_step = TimeStep::AdaptiveBatchMin;
    let out = NavierStokes2d::new(c)
        .expect("model")
        .forward_partial(x.view())
        .expect("partial");
    assert_eq!(out.failures.len(), b);
    assert!(out.failures.iter().all(|f| f.reason.contains("step limit")));
}

#[test]
fn f32_and_f64_agree() {
    let n = 32;
    let b = 2;
    let w0 = grf_batch(n, b, 9);
    let x = to_f32_rows(&w0, b);
    let mk = |p| {
        NavierStokes2d::new(NavierStokesConfig {
            resolution: n,
            precision: p,
            ..NavierStokesConfig::default()
        })
        .expect("model")
    };
    let y32 = mk(Precision::F32).forward(x.view()).expect("f32");
    let y64 = mk(Precision::F64).forward(x.view()).expect("f64");
    let a: Vec<f64> = y32.iter().map(|&v| v as f64).collect();
    let c: Vec<f64> = y64.iter().map(|&v| v as f64).collect();
    let e = rel_l2(&a, &c);
    eprintln!(
        "f32 vs f64 relative L2 {e:.3e}, max abs {:.3e}",
        max_abs_diff(&a, &c)
    );
    assert!(e < 1e-5, "f32 vs f64 relative L2 {e:e}");
}

#[test]
fn results_are_identical_for_any_thread_count() {
    let n = 32;
    let b = 5;
    let x = to_f32_rows(&grf_batch(n, b, 21), b);
    for ts in [TimeStep::Adaptive, TimeStep::AdaptiveBatchMin] {
        let cfg = NavierStokesConfig {
            resolution: n,
            solver: NsConfig {
                time_step: ts,
                t_final: 0.5,
                ..NsConfig::default()
            },
            ..NavierStokesConfig::default()
        };
        let g = NavierStokes2d::new(cfg).expect("model");
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| g.forward(x.view()).expect("forward"))
        };
        let y1 = run(1);
        let y3 = run(3);
        assert!(
            y1.iter()
                .zip(y3.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{ts:?} differs"
        );
    }
    // Per-sample steps: a sample's result does not depend on its batch.
    let g = NavierStokes2d::new(NavierStokesConfig {
        resolution: n,
        ..NavierStokesConfig::default()
    })
    .expect("m");
    let all = g.forward(x.view()).expect("all");
    let one = g
        .forward(x.row(3).insert_axis(ndarray::Axis(0)))
        .expect("one");
    assert_eq!(all.row(3), one.row(0));
}

#[test]
fn shapes_and_errors_are_typed() {
    let g = NavierStokes2d::new(NavierStokesConfig {
        resolution: 16,
        ..NavierStokesConfig::default()
    })
    .expect("m");
    assert_eq!(g.input_shape(), vec![1, 16, 16]);
    assert_eq!(g.output_shape(), vec![1, 8, 8]);
    let bad = Array2::<f32>::zeros((2, 100));
    assert!(matches!(
        g.forward(bad.view()),
        Err(OperatorError::Shape {
            expected: 256,
            got: 100,
            ..
        })
    ));
    assert!(matches!(
        g.forward_partial(bad.view()),
        Err(OperatorError::Shape { .. })
    ));
    let y = g
        .forward(Array2::<f32>::zeros((0, 256)).view())
        .expect("empty batch");
    assert_eq!(y.dim(), (0, 64));
    let g3 = NavierStokes2d::new(NavierStokesConfig {
        resolution: 16,
        subsample: 3,
        ..Default::default()
    })
    .expect("m");
    assert_eq!(g3.output_shape(), vec![1, 6, 6]);
    for cfg in [
        NavierStokesConfig {
            resolution: 15,
            ..Default::default()
        },
        NavierStokesConfig {
            subsample: 0,
            ..Default::default()
        },
        NavierStokesConfig {
            noise_sigma: -1.0,
            ..Default::default()
        },
        NavierStokesConfig {
            solver: NsConfig {
                re: 0.0,
                ..NsConfig::default()
            },
            ..Default::default()
        },
        NavierStokesConfig {
            solver: NsConfig {
                time_step: TimeStep::Fixed(-1.0),
                ..NsConfig::default()
            },
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                NavierStokes2d::new(cfg),
                Err(OperatorError::InvalidParameter { .. })
            ),
            "{cfg:?}"
        );
    }
    let s = NsSolver::<f64>::new(8, 8, NsConfig::default()).expect("s");
    let wrong = Array3::<f64>::zeros((1, 8, 6));
    assert!(matches!(
        s.solve_batch(wrong.view()),
        Err(OperatorError::Shape { .. })
    ));
}

#[test]
fn observation_noise_has_the_requested_level_and_is_seeded() {
    let n = 32;
    let x = to_f32_rows(&grf_batch(n, 2, 4), 2);
    let mk = |sigma| {
        NavierStokes2d::new(NavierStokesConfig {
            resolution: n,
            noise_sigma: sigma,
            solver: NsConfig {
                t_final: 0.1,
                ..NsConfig::default()
            },
            ..Default::default()
        })
        .expect("m")
    };
    let clean = mk(0.0).forward(x.view()).expect("clean");
    assert_eq!(mk(0.0).observe(x.view(), 1).expect("obs"), clean);
    let g = mk(2.0);
    let y = g.observe(x.view(), 7).expect("noisy");
    assert_eq!(y, g.observe(x.view(), 7).expect("again"));
    assert_ne!(y, g.observe(x.view(), 8).expect("other seed"));
    let r: Vec<f64> = y
        .iter()
        .zip(clean.iter())
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let sd = (r.iter().map(|v| v * v).sum::<f64>() / r.len() as f64).sqrt();
    // 512 draws: the standard error of the sample sd is 2 / sqrt(1024) ~ 0.06.
    assert!((sd - 2.0).abs() < 0.3, "noise sd {sd}");
}

// ------------------------------------------------------------------------- GRF and data set

#[test]
fn grf_pointwise_variance_matches_the_spectrum() {
    // Var w(x) = sum_k c_k^2 = 2 sigma^2 sum_{k != 0} (|k|^2 + tau^2)^(-alpha), sigma^2 = 7^3.
    let n = 32;
    let (alpha, tau) = (2.5f64, 7.0f64);
    let mut expect = 0.0;
    for i in 0..n {
        for j in 0..n {
            let k1 = if i < n / 2 {
                i as f64
            } else {
                i as f64 - n as f64
            };
            let k2 = if j < n / 2 {
                j as f64
            } else {
                j as f64 - n as f64
            };
            if i + j > 0 {
                expect += 2.0
                    * tau.powf(2.0 * alpha - 2.0)
                    * (k1 * k1 + k2 * k2 + tau * tau).powf(-alpha);
            }
        }
    }
    let count = 400;
    let f = grf_batch(n, count, 1);
    // Average over samples of the spatial mean of w^2 (each sample's spatial mean of w^2 has
    // expectation Var w(x)).
    let est: f64 = f.iter().map(|v| v * v).sum::<f64>() / f.len() as f64;
    eprintln!("GRF pointwise variance: sample {est:.4}, spectrum {expect:.4}");
    assert!(
        (est / expect - 1.0).abs() < 0.06,
        "variance {est} vs {expect}"
    );
    assert!(
        (expect.sqrt() - 2.0).abs() < 0.1,
        "pointwise sd {}",
        expect.sqrt()
    );
}

#[test]
fn npy_round_trip_and_rejects_garbage() {
    let dir = scratch_dir("npy");
    let p = dir.join("a.npy");
    let data: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
    write_npy_f64(&p, &[2, 3, 4], &data).expect("write");
    let a = read_npy(&p).expect("read");
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.data, NpyData::F64(data.clone()));
    let bytes = npy_bytes_f32(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).expect("bytes");
    assert_eq!((bytes.len() - 20) % 64, 0, "header padded to 64 bytes");
    let b = parse_npy(&bytes).expect("parse");
    assert_eq!(b.shape, vec![5]);
    assert_eq!(b.to_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert!(parse_npy(b"hello").is_err());
    assert!(parse_npy(&bytes[..bytes.len() - 1]).is_err());
    assert!(npy_bytes_f32(&[2, 2], &[1.0]).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn train_and_test_streams_never_overlap(i in 0u64..(1u64 << 63), j in 0u64..(1u64 << 63)) {
        prop_assert_ne!(sample_stream(Split::Train, i), sample_stream(Split::Test, j));
        prop_assert_eq!(sample_stream(Split::Train, i), i);
        prop_assert!(sample_stream(Split::Test, j) >= 1u64 << 63);
    }
}

#[test]
fn train_and_test_fields_differ() {
    let g = GaussianRandomField::fno(16, 16).expect("grf");
    let tr = g.sample(&mut sample_rng(0, Split::Train, 0));
    let te = g.sample(&mut sample_rng(0, Split::Test, 0));
    let tr2 = g.sample(&mut sample_rng(0, Split::Train, 0));
    assert_eq!(tr, tr2);
    assert!(max_abs_diff(&tr, &te) > 0.1);
}
