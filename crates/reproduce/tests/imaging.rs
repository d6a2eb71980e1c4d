//! The imaging table end to end at the tiny preset on the shipped natural-image prior
//! (fixtures/priors/natural64), its row cache under `--resume`, the `n/a` cells of methods that
//! need a linear operator, the LPIPS plumbing (a TorchScript stand-in with LPIPS's signature),
//! and the start-up checks.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use diffinv_reproduce::imaging::{
    imaging, read_test_images, validate_methods, ImagingRequest, Lpips, Task, task_operator,
    IMAGING_METHODS, NEEDS_LINEAR, TASKS,
};
use diffinv_reproduce::setup::PriorSpec;
use diffinv_reproduce::Preset;
use ndarray::Array1;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-imaging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn tiny_imaging_table_runs_every_method_and_resume_reuses_rows() {
    let spec =
        PriorSpec::read(&fixtures().join("priors/natural64")).expect("shipped natural64 prior");
    let prior = spec.load(16).expect("weights");
    let out = temp("tiny");
    let req = ImagingRequest {
        preset: Preset::Tiny,
        out: out.clone(),
        seed: 3,
        resume: false,
        methods: Vec::new(),
        tasks: vec![Task::SuperResolution, Task::Hdr],
        test_images: spec.dir.join("test32.npy"),
        cases: Some(1),
        lpips: None,
        prior_source: None,
    };
    let t = imaging(&req, &prior, [1, 64, 64], spec.shift, spec.scale).expect("tiny imaging table");
    assert_eq!(t.rows.len(), 2 * IMAGING_METHODS.len());
    for r in &t.rows {
        let (method, task) = (r[0].as_str(), r[1].as_str());
        if task == "hdr" && NEEDS_LINEAR.contains(&method) {
            assert_eq!(r[2], "n/a", "{method} on hdr");
        } else {
            let psnr: f64 = r[2].parse().unwrap();
            let ssim: f64 = r[3].parse().unwrap();
            assert!(
                psnr.is_finite() && psnr > 0.0,
                "{method} {task}: PSNR {psnr}"
            );
            assert!((-1.0..=1.0).contains(&ssim), "{method} {task}: SSIM {ssim}");
            let nfe: f64 = r[4].parse().unwrap();
            // Every diffusion method calls the prior; Tikhonov and TV never do.
            if method == "Tikhonov" || method == "TV" {
                assert_eq!(nfe, 0.0, "{method}");
            } else {
                assert!(nfe > 0.0, "{method} {task}");
            }
        }
    }
    // Tikhonov on x4 super-resolution is deterministic and far better than a flat grey image.
    let truth = read_test_images(&req.test_images, [1, 64, 64]).unwrap();
    let grey = Array1::from_elem(64 * 64, 0.5f32);
    let flat = diffinv_metrics::psnr(grey.view(), truth.row(0), 1.0).unwrap();
    let tik = t
        .rows
        .iter()
        .find(|r| r[0] == "Tikhonov" && r[1] == "sr4")
        .unwrap();
    let tik: f64 = tik[2].parse().unwrap();
    assert!(tik > flat + 5.0, "Tikhonov {tik} dB vs flat {flat} dB");
    for f in [
        "imaging.csv",
        "imaging.md",
        "imaging_sr4.png",
        "imaging_hdr.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("imaging.md")).unwrap();
    assert!(
        md.contains("DPS-MO") && md.contains("dPSNR"),
        "the MO comparison is in the notes"
    );
    // Resume: the cached rows come back unchanged (wall times included).
    let again = imaging(
        &ImagingRequest {
            resume: true,
            ..req
        },
        &prior,
        [1, 64, 64],
        spec.shift,
        spec.scale,
    )
    .unwrap();
    assert_eq!(again.rows, t.rows);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn lpips_column_uses_the_torchscript_network_on_three_channel_images() {
    // The stand-in returns mean((in0 - in1)^2) over (3, H, W) of the [-1, 1] images, i.e.
    // 4 mean((a - b)^2) for [0, 1] images a and b repeated over three channels.
    let l = Lpips::load(&fixtures().join("lpips/mse_standin.pt")).expect("stand-in");
    let a = Array1::from_shape_fn(64, |i| (i as f32 / 63.0).powi(2));
    let b = Array1::from_shape_fn(64, |i| 0.5 + 0.1 * ((i as f32) * 0.3).sin());
    let d = l.distance(a.view(), b.view(), [1, 8, 8]).unwrap();
    let want = 4.0
        * a.iter()
            .zip(&b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
        / 64.0;
    approx::assert_relative_eq!(d, want, max_relative = 1e-5);
    assert!(Lpips::load(&fixtures().join("lpips/missing.pt")).is_err());
}

#[test]
fn every_task_builds_its_operator_and_linearity_matches_the_operator() {
    for t in TASKS {
        let op = task_operator(t, [1, 64, 64], 0).unwrap();
        assert_eq!(
            op.input_shape(),
            vec![1, 64, 64],
            "{}",
            t.name()
        );
        assert_eq!(Task::parse(t.name()), Some(t));
        // A linear operator satisfies A(x + 2 y) = A x + 2 A y; phase retrieval and HDR do not.
        let x = ndarray::Array2::from_shape_fn((1, 4096), |(_, j)| {
            ((j * 37 % 101) as f32 / 50.0) - 1.0
        });
        let y =
            ndarray::Array2::from_shape_fn((1, 4096), |(_, j)| ((j * 11 % 23) as f32 / 11.0) - 1.0);
        let f = op.as_ref();
        // The capability the problem discovers agrees with the operator's behaviour.
        assert_eq!(f.as_linear().is_some(), t.is_linear(), "{}", t.name());
        let lhs = f.forward((&x + &(&y * 2.0)).view()).unwrap();
        let rhs = f.forward(x.view()).unwrap() + f.forward(y.view()).unwrap() * 2.0;
        let err = (&lhs - &rhs).mapv(|v| v * v).sum().sqrt() / rhs.mapv(|v| v * v).sum().sqrt();
        assert_eq!(
            err < 1e-4,
            t.is_linear(),
            "{}: linearity defect {err}",
            t.name()
        );
    }
}

#[test]
fn unknown_methods_and_mismatched_test_images_fail_before_compute() {
    let e = validate_methods(&["DPS".into(), "DPS++".into()]).unwrap_err();
    assert!(
        e.to_string().contains("unknown imaging method \"DPS++\""),
        "{e}"
    );
    let e =
        read_test_images(&fixtures().join("priors/natural64/test32.npy"), [3, 64, 64]).unwrap_err();
    assert!(e.to_string().contains("shape mismatch"), "{e}");
}

/// `diffinv-reproduce imaging --prior FILE.pt`: a user's TorchScript EDM checkpoint (here the
/// exact denoiser of N(0, I), `x / (1 + sigma^2)`, written by tools/make_gaussian_edm.py) runs the
/// same table with its own image shape and test images; without `--test-images` it fails at
/// start-up with one line.
#[test]
fn a_torchscript_prior_runs_the_imaging_table_through_the_binary() {
    let out = temp("script");
    let bin = env!("CARGO_BIN_EXE_diffinv-reproduce");
    let prior = fixtures().join("torchscript/gaussian_edm.pt");
    let test = fixtures().join("priors/natural64/test32.npy");
    let run = std::process::Command::new(bin)
        .args([
            "imaging",
            "--tiny",
            "--methods",
            "DDS,Tikhonov",
            "--tasks",
            "sr4",
            "--cases",
            "1",
        ])
        .arg("--prior")
        .arg(&prior)
        .args(["--prior-kind", "edm", "--image-shape", "1,64,64"])
        .arg("--test-images")
        .arg(&test)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the binary");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.join("imaging.csv")).unwrap();
    let dds = csv
        .lines()
        .find(|l| l.starts_with("DDS,sr4,"))
        .expect("DDS row");
    let psnr: f64 = dds.split(',').nth(2).unwrap().parse().unwrap();
    assert!(psnr.is_finite() && psnr > 5.0, "{dds}");
    let missing = std::process::Command::new(bin)
        .args(["imaging", "--tiny", "--image-shape", "1,64,64"])
        .arg("--prior")
        .arg(&prior)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the binary");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("needs --test-images") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
