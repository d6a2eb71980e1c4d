//! `cargo xtask bench ns [--quick]`: our pseudo-spectral Navier-Stokes solver against the
//! independent PyTorch implementation of the same scheme (`xtask/python/ns_reference.py`) on
//! the same batch, CPU, same thread count, in one run.
//!
//! Both sides advance the whole batch with the batch-minimum CFL step (the reference's rule),
//! so they take the same number of steps; the time reported is the best of the repetitions,
//! divided by the batch size (ms/sample). Inputs are Gaussian-random-field vorticities
//! (FNO sampler, alpha 2.5, tau 7), Re 200, Kolmogorov forcing, T = 1 (0.25 with `--quick`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use diffinv_operators::navier_stokes::dataset::{sample_rng, write_npy_f64, Split};
use diffinv_operators::navier_stokes::{
    GaussianRandomField, NsConfig, NsFloat, NsSolver, TimeStep,
};
use ndarray::Array3;

use super::BenchArgs;
use crate::report::{print_bench, BenchCase, Better};

struct Case {
    name: &'static str,
    res: usize,
    batch: usize,
    f64: bool,
}

fn python() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("DIFFINV_PYTHON") {
        if !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    Ok(crate::torch_env::ensure()?.python)
}

fn time_ours<T: NsFloat>(
    res: usize,
    w0: &[f64],
    batch: usize,
    t: f64,
    reps: usize,
) -> Result<(f64, usize)> {
    let cfg = NsConfig {
        t_final: t,
        time_step: TimeStep::AdaptiveBatchMin,
        ..NsConfig::default()
    };
    let solver = NsSolver::<T>::new(res, res, cfg)?;
    let x = Array3::from_shape_vec((batch, res, res), w0.iter().map(|&v| T::lit(v)).collect())?;
    let mut best = f64::INFINITY;
    let mut steps = 0;
    for _ in 0..reps {
        let t0 = Instant::now();
        let (y, st) = solver.solve_batch(x.view())?;
        let dt = t0.elapsed().as_secs_f64();
        best = best.min(dt);
        if let Some(Err(e)) = st.iter().find(|s| s.is_err()) {
            bail!("our solver failed: {e}");
        }
        steps = st
            .first()
            .and_then(|s| s.as_ref().ok())
            .map(|s| s.steps)
            .unwrap_or(0);
        if !y.iter().all(|v| v.is_finite()) {
            bail!("our solver returned non-finite values");
        }
    }
    Ok((best, steps))
}

fn time_torch(
    py: &PathBuf,
    input: &PathBuf,
    dtype: &str,
    t: f64,
    reps: usize,
    threads: usize,
) -> Result<(f64, usize)> {
    let script = crate::workspace_root().join("xtask/python/ns_reference.py");
    let out = Command::new(py)
        .arg(&script)
        .args(["bench", "--input"])
        .arg(input)
        .args([
            "--dt-mode",
            "batch",
            "--dtype",
            dtype,
            "--t",
            &t.to_string(),
        ])
        .args([
            "--repeat",
            &reps.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    if !out.status.success() {
        bail!(
            "ns_reference.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))?;
    let secs: Vec<f64> = v["seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    let best = secs.iter().cloned().fold(f64::INFINITY, f64::min);
    let steps = v["steps"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| s.as_u64())
        .unwrap_or(0) as usize;
    if !best.is_finite() {
        bail!("no timings from ns_reference.py: {line}");
    }
    Ok((best, steps))
}

/// Run the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let quick = args.quick;
    let t = if quick { 0.25 } else { 1.0 };
    let reps = if quick { 1 } else { 3 };
    let cases = if quick {
        vec![
            Case {
                name: "ns64",
                res: 64,
                batch: 4,
                f64: false,
            },
            Case {
                name: "ns128",
                res: 128,
                batch: 2,
                f64: false,
            },
        ]
    } else {
        // The cases: f32, batch 16, at 64 x 64 and 128 x 128; plus f64 at 64 x 64.
        vec![
            Case {
                name: "ns64",
                res: 64,
                batch: 16,
                f64: false,
            },
            Case {
                name: "ns128",
                res: 128,
                batch: 16,
                f64: false,
            },
            Case {
                name: "ns64_f64",
                res: 64,
                batch: 16,
                f64: true,
            },
        ]
    };
    let py = python()?;
    let threads = rayon::current_num_threads();
    let dir = std::env::temp_dir().join(format!("diffinv-bench-ns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("bench ns: T = {t}, Re 200, batch-minimum CFL step, {threads} threads (rayon and torch), best of {reps}");
    let mut out = Vec::new();
    for c in &cases {
        let grf = GaussianRandomField::fno(c.res, c.res)?;
        let w0: Vec<f64> = (0..c.batch)
            .flat_map(|i| grf.sample(&mut sample_rng(2024, Split::Test, i as u64)))
            .collect();
        let input = dir.join(format!("{}.npy", c.name));
        write_npy_f64(&input, &[c.batch, c.res, c.res], &w0)?;
        let (ours, s_ours) = if c.f64 {
            time_ours::<f64>(c.res, &w0, c.batch, t, reps)?
        } else {
            time_ours::<f32>(c.res, &w0, c.batch, t, reps)?
        };
        let (theirs, s_theirs) = time_torch(
            &py,
            &input,
            if c.f64 { "float64" } else { "float32" },
            t,
            reps,
            threads,
        )?;
        let per = |s: f64| 1e3 * s / c.batch as f64;
        println!(
            "{:<10} {}x{} batch {:>2}: ours {:>9.2} ms/sample ({} steps, {:.3} ms/sample/step), pytorch {:>9.2} ms/sample ({} steps)",
            c.name,
            c.res,
            c.res,
            c.batch,
            per(ours),
            s_ours,
            per(ours) / s_ours.max(1) as f64,
            per(theirs),
            s_theirs
        );
        out.push(BenchCase::new(
            c.name,
            per(ours),
            per(theirs),
            "ms/sample",
            Better::Lower,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_bench("ns", &out)
}
