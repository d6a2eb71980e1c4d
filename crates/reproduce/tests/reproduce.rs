//! The tables end to end at the tiny preset on the shipped priors, the row cache under
//! `--resume`, and the start-up validation (one clear line, before any compute).
//!
//! The smoke tests need the shipped black-hole prior (fixtures/priors/blackhole64) and skip
//! with a message without it. The Navier-Stokes smoke test uses fixtures/priors/ns64 when it
//! is there and otherwise the black-hole prior as a stand-in of the same shape (the pipeline,
//! not the accuracy, is under test), on two Gaussian-random-field test fields written here.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use diffinv_operators::navier_stokes::dataset::write_npy_f32;
use diffinv_operators::navier_stokes::grf::GaussianRandomField;
use diffinv_reproduce::setup::{PriorSpec, SetupError};
use diffinv_reproduce::tables::{black_hole, navier_stokes, Request};
use diffinv_reproduce::Preset;
use rand::SeedableRng;

fn priors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/priors")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-reproduce-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn shipped_blackhole() -> Option<PathBuf> {
    let d = priors().join("blackhole64");
    if d.join("ema.safetensors").is_file() {
        Some(d)
    } else {
        eprintln!("skipped: {} has no ema.safetensors", d.display());
        None
    }
}

fn request(out: PathBuf, prior: PathBuf, methods: &[&str]) -> Request {
    Request {
        preset: Preset::Tiny,
        out,
        seed: 5,
        resume: false,
        methods: methods.iter().map(|s| s.to_string()).collect(),
        prior,
        test_data: PathBuf::new(),
        device: diffinv_priors::neural::DeviceChoice::Cpu,
        cases: Some(1),
        particles: None,
    }
}

#[test]
fn unknown_method_missing_prior_and_shape_mismatch_fail_with_one_line() {
    let req = request(temp("methods"), PathBuf::new(), &["EnKG", "EnKF"]);
    let e = diffinv_reproduce::tables::table_methods("ns", &req).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<SetupError>(), Some(SetupError::UnknownMethod { name, .. }) if name == "EnKF"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("EnKF") && msg.contains("CPS"),
        "{msg}"
    );
    let req = request(temp("methods"), PathBuf::new(), &["CPS", "EnKG"]);
    assert_eq!(diffinv_reproduce::tables::table_methods("ns", &req).unwrap(), ["CPS", "EnKG"]);

    let empty = temp("missing");
    let e = PriorSpec::read(&empty).unwrap_err();
    assert!(
        matches!(e, SetupError::MissingPrior(ref p) if p.ends_with("config.toml")),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'));

    let Some(dir) = shipped_blackhole() else {
        return;
    };
    let spec = PriorSpec::read(&dir).expect("shipped prior");
    assert_eq!(spec.shape(), vec![1, 64, 64]);
    assert_eq!((spec.shift, spec.scale), (0.5, 0.5));
    spec.check_operator("blackhole", &[1, 64, 64])
        .expect("matching shapes");
    let e = spec.check_operator("ns", &[1, 128, 128]).unwrap_err();
    assert!(matches!(e, SetupError::ShapeMismatch { .. }));
    assert!(e.to_string().contains("[1, 128, 128]"), "{e}");

    // The table entry point refuses an unknown method before loading anything.
    let mut req = request(temp("unknown"), dir, &["EnKG", "nope"]);
    req.preset = Preset::Tiny;
    let e = black_hole(&req).unwrap_err();
    assert!(
        format!("{e:#}").contains("unknown method \"nope\""),
        "{e:#}"
    );
}

#[test]
fn blackhole_table_runs_end_to_end_and_resume_reuses_finished_rows() {
    let Some(dir) = shipped_blackhole() else {
        return;
    };
    let out = temp("bh");
    let req = request(out.clone(), dir, &["EnKG", "CPS"]);
    let t = black_hole(&req).expect("tiny black-hole table");
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.header[0], "method");
    assert_eq!(t.rows[0][0], "EnKG");
    for f in [
        "blackhole.csv",
        "blackhole.md",
        "blackhole.png",
        "blackhole_misfit.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Every metric is a finite number.
    for r in &t.rows {
        for cell in &r[1..5] {
            assert!(cell.parse::<f64>().expect("number").is_finite(), "{cell}");
        }
    }
    // With --resume, the cached rows come back unchanged (including the recorded wall time,
    // which a recomputation would not reproduce).
    let again = black_hole(&Request {
        resume: true,
        ..req.clone()
    })
    .expect("resumed table");
    assert_eq!(again.rows, t.rows);
    // A resume with another prior (the ns64 prior has the same image shape) is refused, naming
    // the prior, before any compute: the rows of the first run are not served for it, and the
    // table written by the first run stays as it was.
    let other = priors().join("ns64");
    if other.join("ema.safetensors").is_file() {
        let csv = std::fs::read_to_string(out.join("blackhole.csv")).unwrap();
        let e = black_hole(&Request {
            resume: true,
            prior: other,
            ..req.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--resume") && e.contains("computed with the prior"), "{e}");
        assert_eq!(std::fs::read_to_string(out.join("blackhole.csv")).unwrap(), csv);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `--particles N` resizes the ensemble (EnKG's forward evaluations scale by N / 4 against the
/// tiny preset's 4 particles) and is cached apart: a resumed default-size run is not served
/// the resized rows.
#[test]
fn particle_override_resizes_the_ensemble_and_is_cached_apart() {
    let Some(dir) = shipped_blackhole() else {
        return;
    };
    let out = temp("bh-particles");
    let base = request(out.clone(), dir, &["EnKG"]);
    let fwd = |t: &diffinv_reproduce::report::Table| -> f64 {
        let col = t
            .header
            .iter()
            .position(|h| h == "fwd_total")
            .expect("fwd_total column");
        t.rows[0][col].parse().expect("number")
    };
    let four = black_hole(&base).expect("default size");
    let six = black_hole(&Request {
        particles: Some(6),
        resume: true,
        ..base.clone()
    })
    .expect("six particles");
    approx::assert_relative_eq!(fwd(&six), fwd(&four) * 1.5, max_relative = 1e-9);
    let again = black_hole(&Request {
        resume: true,
        ..base
    })
    .expect("resumed default size");
    assert_eq!(fwd(&again), fwd(&four));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ns_table_runs_end_to_end() {
    let ns = priors().join("ns64");
    let prior = if ns.join("ema.safetensors").is_file() {
        ns
    } else {
        let Some(bh) = shipped_blackhole() else {
            return;
        };
        eprintln!("fixtures/priors/ns64 is absent: the black-hole prior stands in (same shape)");
        bh
    };
    let out = temp("ns");
    let grf = GaussianRandomField::fno(64, 64).expect("grf");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let fields: Vec<f32> = (0..2)
        .flat_map(|_| grf.sample(&mut rng))
        .map(|v| v as f32)
        .collect();
    let data = out.join("test.npy");
    write_npy_f32(&data, &[2, 64, 64], &fields).expect("npy");
    let mut req = request(out.clone(), prior, &["EnKG"]);
    req.test_data = data;
    let t = navier_stokes(&req).expect("tiny ns table");
    assert_eq!(t.rows.len(), 1);
    let col = |name: &str| t.header.iter().position(|h| h == name).expect(name);
    let e: f64 = t.rows[0][col("rel_l2_mean")].parse().expect("rel L2");
    assert!(e.is_finite() && e > 0.0);
    // The mean particle error is never below the error of the mean.
    let per: f64 = t.rows[0][col("rel_l2_particles")].parse().expect("rel L2 particles");
    assert!(per >= e - 1e-3, "{per} < {e}");
    // EnKG at N = 4: 3 PF-ODE steps of 4, (at most) 2 guided with 4 forward solves each.
    let fwd: u64 = t.rows[0][col("fwd_total")].parse().expect("fwd_total");
    assert!(fwd > 0 && fwd.is_multiple_of(4), "{fwd}");
    for f in ["ns.csv", "ns.md", "ns.png", "ns_misfit.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The reference protocol scores the best sample after alignment: a copy of the truth scaled by
/// 0.9 and moved by (2, -3) pixels is found again (its PSNR is that of `0.9 x` against `x`,
/// whatever the shift), it wins over a different m-ring, and its closure chi^2 is that of the
/// truth itself (closure quantities ignore position and scale), folded below 1.
#[test]
fn reference_protocol_aligns_and_keeps_the_best_sample() {
    use diffinv_datasets::blackhole::{generate, MringConfig};
    use diffinv_operators::eht::{
        ClosureForward, ClosureLikelihood, ClosureWeights, EhtConfig, VisNoise,
    };
    use diffinv_operators::ForwardModel;
    use diffinv_reproduce::tables::{fold_chi2, reference_protocol};
    use ndarray::{Array1, Array2};

    let eht = EhtConfig::default();
    let op = ClosureForward::new(&eht).unwrap();
    let n = eht.grid.npix;
    let (imgs, _) = generate(&MringConfig::default(), 0, 4000..4002).unwrap();
    let truth = imgs.row(0).to_vec();
    let data = op.simulate(imgs.row(0), VisNoise::Thermal, 1).unwrap();
    let lik = ClosureLikelihood::new(&data, ClosureWeights::default()).unwrap();
    // 0.9 x truth moved by (2, -3): row i takes row i - 2, column j takes column j + 3.
    let mut moved = vec![0.0f32; n * n];
    for i in 2..n {
        for j in 0..n - 3 {
            moved[i * n + j] = 0.9 * truth[(i - 2) * n + j + 3];
        }
    }
    let mut samples = Array2::<f32>::zeros((2, n * n));
    samples.row_mut(0).assign(&imgs.row(1));
    samples.row_mut(1).assign(&Array1::from(moved.clone()));
    let m = reference_protocol(&samples, &truth, n, 3.4, &op, &lik).unwrap();
    let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "psnr",
            "blurred_psnr",
            "chi2_cphase",
            "chi2_logcamp",
            "samples"
        ]
    );
    let t = Array1::from(truth.clone());
    let scaled = t.mapv(|v| 0.9 * v);
    let expected = diffinv_metrics::psnr(scaled.view(), t.view(), 1.0).unwrap();
    approx::assert_abs_diff_eq!(m[0].1, expected, epsilon = 1e-6);
    assert!(m[1].1 > m[0].1, "blurring removes error: {m:?}");
    let y = op.forward(t.view().insert_axis(ndarray::Axis(0))).unwrap();
    let (cp, ca) = lik.reduced_chi2(&y.row(0).to_vec()).unwrap();
    approx::assert_relative_eq!(m[2].1, fold_chi2(cp), max_relative = 1e-3);
    approx::assert_relative_eq!(m[3].1, fold_chi2(ca), max_relative = 1e-3);
    assert_eq!(m[4].1, 2.0);
    approx::assert_abs_diff_eq!(fold_chi2(0.5), 2.0);
    approx::assert_abs_diff_eq!(fold_chi2(3.0), 3.0);
}
