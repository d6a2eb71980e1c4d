//! `cargo xtask bench process [--quick]`: the cost of running a simulator as a pool of worker
//! processes (diffinv-process) instead of in-process, on the same EnKG run.
//!
//! Both sides run EnKG (from the registry) on a four-dimensional Gaussian-mixture prior with the
//! same forward model: `y = A x + 1e-3 s(x)`, where `s` is a deterministic busy loop calibrated
//! to a per-row cost (1 ms, or 10 us). In-process it is an `FnForward` closure evaluated by
//! rayon's global pool of `workers` threads; out of process it is
//! `crates/process/examples/spin_worker.rs` behind a `ProcessForward` of `workers` workers.
//! Everything else (the solver's algebra) runs on the same rayon pool. The two runs must give
//! bit-identical samples.
//!
//! One JSON line per case (`{"bench": "process", "case": ..., ...}`) gives both wall times,
//! their ratio and the overhead fraction `process / in-process - 1` (of the whole run, and of
//! the time inside the forward model); the last line is the usual `{"bench": ..., "cases":
//! [...]}` summary with `ours` = process pool, `baseline` = in-process (seconds). Each case
//! repeats the pair of runs (at least 5 times and for 6 s; `--quick`: once, 0.5 s) and keeps
//! the best time of each side.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood};
use diffinv_priors::{Gaussian, GaussianMixture};
use diffinv_process::{PoolOptions, ProcessConfig, ProcessForward};
use diffinv_solvers::{registry, Problem, Runner};
use ndarray::array;
use serde_json::json;

use super::BenchArgs;
use crate::report::{print_bench, BenchCase, Better};

const WORKERS: usize = 2;

/// `y = A x + 1e-3 s` ([`diffinv_process::spin::spin_row`], the worker's function).
fn spin_row(x: &[f32], iters: u32) -> Vec<f32> {
    let mut y = vec![0.0f32; 3];
    diffinv_process::spin::spin_row(x, iters, &mut y);
    y
}

/// Iterations of the busy loop that cost about `micros` per row.
fn calibrate(micros: f64) -> u32 {
    let x = [0.3f32, -0.2, 0.5, 0.1];
    let probe = 200_000u32;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(spin_row(std::hint::black_box(&x), probe));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let per_iter = best / probe as f64;
    ((micros * 1e-6 / per_iter).round() as u32).max(1)
}

/// Build the example worker and return its path.
fn build_worker() -> Result<PathBuf> {
    let out = crate::cargo()
        .args([
            "build",
            "--quiet",
            "-p",
            "diffinv-process",
            "--example",
            "spin_worker",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .context("running cargo build for the spin worker")?;
    if !out.status.success() {
        bail!(
            "building the spin worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in out.stdout.lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == "spin_worker" {
            if let Some(exe) = v["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo did not report the spin worker's executable")
}

fn gmm() -> Result<GaussianMixture> {
    Ok(GaussianMixture::new(
        &[0.3, 0.7],
        vec![
            Gaussian::isotropic(array![-1.0, 0.5, 0.0, 1.0], 0.5)?,
            Gaussian::isotropic(array![1.0, -0.5, 0.5, 0.0], 0.5)?,
        ],
    )?)
}

struct Timing {
    wall: f64,
    fwd: f64,
    calls: u64,
    samples: Vec<u32>,
}

fn run_enkg(forward: &dyn ForwardModel, particles: usize, steps: usize) -> Result<Timing> {
    let prior = gmm()?;
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1)?;
    let problem = Problem::new(&prior, forward, &lik)?;
    let solver = registry::build(
        "EnKG",
        &json!({ "num_particles": particles, "num_steps": steps }),
    )?;
    let t = Instant::now();
    let out = Runner::new(problem).run(solver.as_ref(), 7)?;
    let wall = t.elapsed().as_secs_f64();
    Ok(Timing {
        wall,
        fwd: out.cost.fwd_seconds,
        calls: out.cost.fwd_seq,
        samples: out.samples.iter().map(|v| v.to_bits()).collect(),
    })
}

struct Case {
    name: String,
    row_us: f64,
    particles: usize,
}

/// Run the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let quick = args.quick;
    // Repetitions: pairs (in-process, process) until both the minimum count and the time
    // budget are reached; the best of each side is kept (on a shared machine the minimum is
    // the figure least disturbed by other work).
    let (min_reps, budget, max_reps) = if quick { (1, 0.5, 20) } else { (5, 6.0, 200) };
    let steps = if quick { 6 } else { 12 };
    let exe = build_worker()?;
    // The in-process side (and the solver's own algebra on both sides) runs on rayon's global
    // pool with as many threads as there are workers. (Inside a separate 2-thread pool entered
    // with `install`, the in-process model ran at half its throughput for batches of 256 rows
    // and more on a 2-core machine, which is not what a user's run does.)
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build_global();
    let threads = rayon::current_num_threads();
    let scan: &[usize] = if quick {
        &[16, 64, 256, 1024]
    } else {
        &[16, 32, 64, 128, 256, 512, 1024, 4096]
    };
    let mut cases = vec![Case {
        name: "1ms_n64".into(),
        row_us: 1000.0,
        particles: 64,
    }];
    for &n in scan {
        cases.push(Case {
            name: format!("10us_n{n}"),
            row_us: 10.0,
            particles: n,
        });
    }
    println!(
        "bench process: EnKG ({steps} steps) on a 4-d Gaussian mixture, {WORKERS} workers vs {threads} rayon threads, best of >= {min_reps} pairs or {budget} s per case"
    );
    let mut summary = Vec::new();
    // (particles, overhead) of the 10 us scan.
    let mut scanned: Vec<(usize, f64)> = Vec::new();
    for c in &cases {
        let iters = calibrate(c.row_us);
        let inproc = FnForward::new(4, 3, move |x: &[f32]| spin_row(x, iters));
        let mut cfg = ProcessConfig::new(vec![exe.display().to_string(), iters.to_string()], 4, 3);
        cfg.workers = Some(WORKERS);
        let t = Instant::now();
        let procs = ProcessForward::start(&cfg, PoolOptions::default())?;
        let start_s = t.elapsed().as_secs_f64();
        let mut best_in: Option<Timing> = None;
        let mut best_pr: Option<Timing> = None;
        let t_case = Instant::now();
        let mut reps = 0u64;
        while reps < max_reps && (reps < min_reps || t_case.elapsed().as_secs_f64() < budget) {
            reps += 1;
            let a = run_enkg(&inproc, c.particles, steps)?;
            let b = run_enkg(&procs, c.particles, steps)?;
            if best_in.as_ref().is_none_or(|t| a.wall < t.wall) {
                best_in = Some(a);
            }
            if best_pr.as_ref().is_none_or(|t| b.wall < t.wall) {
                best_pr = Some(b);
            }
        }
        let (Some(a), Some(b)) = (best_in, best_pr) else {
            bail!("no repetitions");
        };
        let stats = procs.stats();
        procs.shutdown()?;
        let identical = a.samples == b.samples;
        if !identical {
            bail!(
                "{}: the process pool's samples differ from the in-process run's",
                c.name
            );
        }
        let overhead = b.wall / a.wall - 1.0;
        let fwd_overhead = b.fwd / a.fwd - 1.0;
        if c.row_us == 10.0 {
            scanned.push((c.particles, overhead));
        }
        let line = json!({
            "bench": "process",
            "case": c.name,
            "row_cost_us": c.row_us,
            "iters": iters,
            "particles": c.particles,
            "workers": WORKERS,
            "rayon_threads": threads,
            "steps": steps,
            "forward_calls": b.calls,
            "worker_calls": stats.calls / reps,
            "pairs": reps,
            "inprocess_s": a.wall,
            "process_s": b.wall,
            "ratio": b.wall / a.wall,
            "overhead": overhead,
            "fwd_inprocess_s": a.fwd,
            "fwd_process_s": b.fwd,
            "fwd_overhead": fwd_overhead,
            "pool_start_s": start_s,
            "identical": identical,
        });
        println!("{line}");
        summary.push(BenchCase::new(
            c.name.clone(),
            b.wall,
            a.wall,
            "s",
            Better::Lower,
        ));
    }
    // The smallest batch from which on every larger batch of the scan stays below 20%.
    let threshold = scanned
        .iter()
        .enumerate()
        .find(|(i, _)| scanned[*i..].iter().all(|(_, o)| *o < 0.20))
        .map(|(_, (n, _))| *n);
    println!(
        "{}",
        json!({
            "bench": "process",
            "case": "10us_threshold",
            "particles_below_20pct": threshold,
        })
    );
    print_bench("process", &summary)
}
