//! The example problems of crates/cli/examples through the `diffinv` binary: the C simulator
//! gives samples bit-identical to the same model run in-process as a closure, the Python one
//! recovers its truth, and Ctrl-C stops a run with no process left behind and a checkpoint from
//! which `--resume` ends bit-identically.
//!
//! The Python examples need a `python3` with numpy: `DIFFINV_PYTHON` (set by `cargo xtask
//! test`); without it they print a line and return, unless `DIFFINV_REQUIRE_PYTHON=1`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diffinv_operators::npy::load_npy;
use diffinv_operators::{Affine, FnForward, GaussianLikelihood};
use diffinv_priors::{Gaussian, GaussianPrior};
use diffinv_solvers::{registry, Problem, Runner};
use ndarray::{array, Array1};

mod common;
use common::{bin, examples, processes_with, python, temp};





/// The Lotka-Volterra worker, compiled once per test binary.
fn lotka_volterra_worker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = temp("lv-build");
        let exe = dir.join("lotka_volterra");
        let src = examples().join("lotka-volterra/lotka_volterra.c");
        let header = examples().join("../../process/c");
        let st = Command::new("cc")
            .args(["-O2", "-std=c99", "-ffp-contract=off", "-I"])
            .arg(&header)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .arg("-lm")
            .status()
            .unwrap();
        assert!(st.success(), "cc failed");
        exe
    })
}

/// The example's simulator in Rust, with the same single-precision operations in the same
/// order as lotka_volterra.c.
fn lotka_volterra(p: &[f32]) -> Vec<f32> {
    let field = |x: f32, y: f32| (p[0] * x - p[1] * x * y, p[3] * x * y - p[2] * y);
    let (mut x, mut y) = (10.0f32, 5.0f32);
    let h = 0.01f32;
    let mut out = Vec::with_capacity(20);
    for _ in 0..10 {
        for _ in 0..150 {
            let (ax, ay) = field(x, y);
            let (bx, by) = field(x + 0.5 * h * ax, y + 0.5 * h * ay);
            let (cx, cy) = field(x + 0.5 * h * bx, y + 0.5 * h * by);
            let (dx, dy) = field(x + h * cx, y + h * cy);
            x += h / 6.0 * (ax + 2.0 * bx + 2.0 * cx + dx);
            y += h / 6.0 * (ay + 2.0 * by + 2.0 * cy + dy);
            if !((0.0..=1e6).contains(&x) && (0.0..=1e6).contains(&y)) {
                return vec![f32::NAN; 20];
            }
        }
        out.push(x);
        out.push(y);
    }
    out
}

/// The Lotka-Volterra problem file with the worker at `exe`, `workers` workers and a
/// smaller CPS run.
fn lv_problem(dir: &Path, exe: &Path, workers: usize, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("lotka-volterra/problem.toml"))
        .unwrap()
        .replace("[\"./lotka_volterra\"]", &format!("[{:?}]", exe.display().to_string()))
        .replace("workers = 2", &format!("workers = {workers}{extra}"))
        .replace("num_candidates = 64", "num_candidates = 16\nnum_steps = 40")
        .replace("num_samples = 16", "num_samples = 4");
    let p = dir.join(format!("lv{workers}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn run_ok(cfg: &Path, out: &Path) {
    let o = bin().arg("run").arg(cfg).arg("--out").arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn samples(out: &Path) -> Vec<f32> {
    load_npy(&out.join("samples.npy")).unwrap().to_f32()
}

#[test]
fn the_c_example_equals_the_same_model_in_process_for_any_worker_count() {
    let exe = lotka_volterra_worker();
    let d = temp("lv");
    let mut runs = Vec::new();
    for (workers, extra) in [(1, ""), (3, "\nchunk_rows = 5")] {
        let out = d.join(format!("out{workers}"));
        run_ok(&lv_problem(&d, exe, workers, extra), &out);
        runs.push(samples(&out));
    }
    assert_eq!(runs[0], runs[1], "the worker count changed the samples");

    // In-process: the same standardised problem the binary builds.
    let mean = array![1.2f32, 0.12, 1.2, 0.1];
    let sd = array![0.04f32, 0.0004, 0.04, 0.0004].mapv(f32::sqrt);
    let prior = GaussianPrior::new(Gaussian::isotropic(Array1::zeros(4), 1.0).unwrap());
    let g = FnForward::new(4, 20, lotka_volterra);
    let fwd = Affine::per_component(&g, sd.clone(), mean.clone()).unwrap();
    let y: Array1<f32> = array![
        27.245f32, 2.103, 32.056, 19.420, 7.805, 11.518, 12.502, 3.486, 35.233, 6.843, 16.863,
        22.709, 8.197, 6.954, 18.636, 2.903, 40.746, 10.747, 10.259, 17.067
    ];
    let lik = GaussianLikelihood::new(y, 0.5).unwrap();
    let problem = Problem::new(&prior, &fwd, &lik).unwrap();
    let cps = registry::build(
        "CPS",
        &serde_json::json!({ "num_candidates": 16, "num_steps": 40, "num_samples": 4 }),
    )
    .unwrap();
    let mut x = Runner::new(problem).run(cps.as_ref(), 0).unwrap().samples;
    for mut r in x.rows_mut() {
        r.zip_mut_with(&sd, |v, a| *v *= a);
        r += &mean;
    }
    assert_eq!(runs[0], x.iter().copied().collect::<Vec<_>>(), "process != in-process");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_python_example_recovers_its_initial_condition() {
    let Some(py) = python() else { return };
    let d = temp("burgers");
    let text = std::fs::read_to_string(examples().join("burgers/problem.toml"))
        .unwrap()
        .replace("\"python3\"", &format!("{py:?}"))
        .replace("\"burgers.py\"", &format!("{:?}", examples().join("burgers/burgers.py").display().to_string()))
        .replace(
            "\"../../../process/python\"",
            &format!("{:?}", examples().join("../../process/python").display().to_string()),
        );
    let cfg = d.join("problem.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = d.join("out");
    run_ok(&cfg, &out);
    let mean = load_npy(&out.join("mean.npy")).unwrap().to_f32();
    let truth = [1.0f32, -0.5, 0.3, 0.0, 0.5, 0.2, -0.3, 0.1];
    let err = mean.iter().zip(truth).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
    let norm = truth.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(err / norm < 0.1, "relative error {} (mean {mean:?})", err / norm);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["failures"]["workers"]["crashes"], 0);
    assert!(out.join("workers.log").is_file());
    std::fs::remove_dir_all(&d).unwrap();
}


#[test]
fn ctrl_c_stops_every_worker_and_resume_ends_bit_identically() {
    let d = temp("sigint");
    // A slow copy of the C worker: 20 ms per call.
    let slow_src = d.join("slow.c");
    let src = std::fs::read_to_string(examples().join("lotka-volterra/lotka_volterra.c")).unwrap();
    let src = src.replace(
        "static int forward(const float *x, float *y, int rows, void *ctx) {\n    (void)ctx;",
        "#include <time.h>\nstatic int forward(const float *x, float *y, int rows, void *ctx) {\n    (void)ctx;\n    struct timespec ts = {0, 20000000};\n    nanosleep(&ts, NULL);",
    );
    assert!(src.contains("nanosleep"));
    std::fs::write(&slow_src, src).unwrap();
    let slow = d.join("lv_slow_worker");
    let st = Command::new("cc")
        .args(["-O2", "-std=c99", "-D_POSIX_C_SOURCE=199309L", "-ffp-contract=off", "-I"])
        .arg(examples().join("../../process/c"))
        .arg(&slow_src)
        .arg("-o")
        .arg(&slow)
        .arg("-lm")
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = lv_problem(&d, &slow, 2, "");
    let out = d.join("out");
    let mut child = bin()
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it run some steps, then Ctrl-C.
    let t0 = Instant::now();
    while !out.join("checkpoint.bin").exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!processes_with("lv_slow_worker").is_empty(), "no worker running");
    let t = Instant::now();
    // SAFETY: plain kill(2) on our child's pid.
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    let stopped_in = t.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(stopped_in < Duration::from_secs(3), "took {stopped_in:?}");
    assert!(err.contains("--resume"), "{err}");
    assert!(processes_with("lv_slow_worker").is_empty(), "{:?}", processes_with("lv_slow_worker"));
    assert!(out.join("checkpoint.bin").is_file());
    // Resume to the end; the same as a run never interrupted.
    let o = bin().arg("run").arg(&cfg).arg("--out").arg(&out).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let straight = d.join("straight");
    run_ok(&cfg, &straight);
    assert_eq!(samples(&out), samples(&straight));
    assert!(processes_with("lv_slow_worker").is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Faults through the binary: a simulator that crashes on some rows and hangs on others finishes
/// its run with exactly those rows counted as failed, restarts the workers, and leaves no process
/// behind; one that cannot start is one line and writes nothing.
#[test]
fn crashing_and_hanging_workers_cost_only_their_rows() {
    let d = temp("faults");
    let src = std::fs::read_to_string(examples().join("lotka-volterra/lotka_volterra.c")).unwrap();
    // Crash on rows with alpha > 1.45; hang on the first three calls of the run (one marker
    // file each in HANG_DIR), whichever worker gets them.
    let src = src.replace(
        "static int forward(const float *x, float *y, int rows, void *ctx) {\n    (void)ctx;",
        r#"#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
static int first_calls(void) {
    char p[512];
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/hang%d", getenv("HANG_DIR"), k);
        int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd >= 0) { close(fd); return 1; }
    }
    return 0;
}
static int forward(const float *x, float *y, int rows, void *ctx) {
    (void)ctx;
    if (first_calls()) for (;;) pause();
    for (int i = 0; i < rows; i++)
        if (x[4 * i] > 1.45f) exit(3);"#,
    );
    assert!(src.contains("exit(3)"));
    std::fs::write(d.join("faulty.c"), src).unwrap();
    let exe = d.join("lv_faulty_worker");
    let st = Command::new("cc")
        .args(["-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-I"])
        .arg(examples().join("../../process/c"))
        .arg(d.join("faulty.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-lm")
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = lv_problem(
        &d,
        &exe,
        2,
        &format!("\nchunk_rows = 2\nmax_restarts = 1000\nenv = {{ HANG_DIR = {:?} }}", d.display().to_string()),
    )
        .to_path_buf();
    // EnKG: a failed particle is left out of its update (CPS fails a chain whose candidates
    // all fail).
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("timeout_s = 30", "timeout_s = 0.5")
        .replace("method = \"CPS\"\nnum_candidates = 16\nnum_steps = 40\nnum_samples = 4", "method = \"EnKG\"\nnum_particles = 32\nnum_steps = 30");
    assert!(text.contains("EnKG"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let out = d.join("out");
    run_ok(&cfg, &out);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let w = &s["failures"]["workers"];
    assert!(w["crashes"].as_u64().unwrap() > 0, "{w}");
    assert!(w["restarts"].as_u64().unwrap() >= w["crashes"].as_u64().unwrap(), "{w}");
    // The solver's ledger and the pool agree row for row.
    assert_eq!(s["cost"]["failed"], w["failed_rows"], "{s}");
    assert!(processes_with("lv_faulty_worker").is_empty());
    assert_eq!(w["timeouts"], 3, "{w}");

    // A program that does not exist: one line naming it, status 1, nothing written.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("{:?}", exe.display().to_string()), "\"./no-such-simulator\"");
    let bad = d.join("missing.toml");
    std::fs::write(&bad, text).unwrap();
    let o = bin().arg("run").arg(&bad).arg("--out").arg(d.join("never")).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("no-such-simulator"), "{e}");
    assert!(!d.join("never").exists());
    std::fs::remove_dir_all(&d).unwrap();
}
