//! `cargo xtask bench mpi [--quick]`: EnKG across MPI ranks (docs/distributed.md).
//!
//! 1. **Speed-up.** `diffinv run` (built with `--features mpi`) on EnKG with 32 particles on
//!    the built-in 64 x 64 Navier-Stokes model (a Gaussian prior: the run is forward-bound),
//!    under `mpirun -n 1` and `mpirun -n 2`, one thread per rank (`RAYON_NUM_THREADS=1`),
//!    alternately, best of 3 (`--quick`: 1, fewer steps). The time is the
//!    runner's (`cost.seconds` of summary.json: the solve, without the process start); the
//!    samples of every run must be byte-identical to those of a run without MPI.
//! 2. **Cost-model inputs.** The forward time per particle at 128 x 128 (one thread, Gaussian
//!    random-field inputs), the solver's own work and the prior's per forward batch for
//!    `N = 2048` particles at 128 x 128 (one thread; `--quick`: 512, scaled by `N^2`), the
//!    memory of that run, the batches of EnKG's default configuration, and the MPI all-gather
//!    (`crates/mpi/examples/allgather.rs` on 2 ranks); then the predicted wall time and
//!    efficiency of the paper-scale run on 1, 8 and 64 nodes.
//!
//! The last line is the usual `{"bench": "mpi", "cases": [...]}` with `ours` = 2 ranks,
//! `baseline` = 1 rank (seconds), `ratio` = the speed-up.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use diffinv_operators::navier_stokes::dataset::{sample_rng, Split};
use diffinv_operators::navier_stokes::GaussianRandomField;
use diffinv_operators::npy::save_npy;
use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood, NavierStokes2d, NavierStokesConfig};
use diffinv_priors::{Gaussian, GaussianPrior};
use diffinv_solvers::{registry, Problem, Runner};
use ndarray::{Array1, Array2};
use serde_json::{json, Value};

use super::BenchArgs;
use crate::report::{print_bench, BenchCase, Better};

/// Build `target` of `package` with `features` and return the executable's path.
fn build(package: &str, kind: &str, target: &str, features: &str) -> Result<PathBuf> {
    let mut c = crate::cargo();
    c.args(["build", "--quiet", "-p", package, "--features", features]);
    if kind == "example" {
        c.args(["--example", target]);
    }
    let out = c
        .arg("--message-format=json-render-diagnostics")
        .output()
        .with_context(|| format!("building {target}"))?;
    if !out.status.success() {
        bail!("building {target} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    for line in out.stdout.lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == target {
            if let Some(exe) = v["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo did not report {target}'s executable")
}

/// `mpirun -n ranks`, one thread per rank. The ranks are not bound to cores: on a machine
/// shared with other work, the kernel then moves a rank off a busy core.
fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--bind-to", "none", "-n"])
        .arg(ranks.to_string())
        .args(["-x", "RAYON_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1"]);
    c
}

/// The 64 x 64 problem: a Gaussian prior (variance 16, the scale of the vorticity), the
/// vorticity at T = 1 of a Gaussian-random-field truth on every other grid point, EnKG.
fn write_problem(dir: &Path, steps: usize) -> Result<PathBuf> {
    let r = 64;
    let grf = GaussianRandomField::fno(r, r)?;
    let truth: Vec<f32> = grf
        .sample(&mut sample_rng(7, Split::Test, 0))
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let ns = NavierStokes2d::new(NavierStokesConfig::enkg(r, 0.0))?;
    let y = ns.forward(ndarray::ArrayView2::from_shape((1, r * r), &truth)?)?;
    save_npy(&dir.join("mean.npy"), &[r * r], &vec![0.0f32; r * r])?;
    save_npy(&dir.join("y.npy"), &[y.ncols()], y.as_slice().context("y")?)?;
    let text = format!(
        "[prior]\nkind = \"gaussian\"\nmean_npy = \"mean.npy\"\nvariance = 16.0\n\
         [forward]\nkind = \"navier-stokes\"\nresolution = {r}\n\
         [data]\ny_npy = \"y.npy\"\n\
         [likelihood]\nkind = \"gaussian\"\nsigma = 0.5\n\
         [solver]\nmethod = \"EnKG\"\nnum_particles = 32\nnum_steps = {steps}\n"
    );
    let p = dir.join("ns64.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

struct RunTiming {
    solve: f64,
    wall: f64,
    fwd: Vec<f64>,
    samples: Vec<u8>,
    batches: u64,
}

/// The 1-minute load average.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn one_run(mut c: Command, exe: &Path, cfg: &Path, out: &Path) -> Result<RunTiming> {
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let o = c
        .arg(exe)
        .args(["run"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .output()
        .context("running diffinv")?;
    let wall = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!("diffinv failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let fwd = match s["per_rank"].as_array() {
        Some(a) => a.iter().filter_map(|r| r["forward_seconds"].as_f64()).collect(),
        None => vec![s["cost"]["fwd_seconds"].as_f64().unwrap_or(0.0)],
    };
    Ok(RunTiming {
        solve: s["cost"]["seconds"].as_f64().unwrap_or(f64::NAN),
        wall,
        fwd,
        samples: std::fs::read(out.join("samples.npy"))?,
        batches: s["cost"]["fwd_seq"].as_u64().unwrap_or(0),
    })
}

/// Seconds per particle of the 128 x 128 forward model on one thread (Gaussian-random-field
/// inputs, T = 1).
fn forward_time_128(batch: usize) -> Result<f64> {
    let r = 128;
    let grf = GaussianRandomField::fno(r, r)?;
    let x: Vec<f32> = (0..batch)
        .flat_map(|i| grf.sample(&mut sample_rng(11, Split::Test, i as u64)))
        .map(|v| v as f32)
        .collect();
    let x = Array2::from_shape_vec((batch, r * r), x)?;
    let ns = NavierStokes2d::new(NavierStokesConfig::enkg(r, 0.0))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        let t = Instant::now();
        pool.install(|| ns.forward(x.view()))?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best / batch as f64)
}

/// The peak resident memory of this process so far, bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The solver's own seconds and the prior's seconds per forward batch of EnKG with `n`
/// particles at 128 x 128 (m = 64 x 64), on one thread, with a forward model that costs
/// nothing (the subsampling of the input), on `threads` threads, and the peak memory.
fn solver_time(n: usize, threads: usize) -> Result<(f64, f64, u64)> {
    let r = 128;
    let d = r * r;
    let prior = GaussianPrior::new(Gaussian::isotropic(Array1::zeros(d), 16.0)?);
    let g = FnForward::new(d, d / 4, move |x: &[f32]| {
        (0..r / 2)
            .flat_map(|i| (0..r / 2).map(move |j| x[2 * i * r + 2 * j]))
            .collect()
    });
    let lik = GaussianLikelihood::new(Array1::zeros(d / 4), 0.5)?;
    let enkg = registry::build(
        "EnKG",
        &json!({ "num_particles": n, "num_steps": 3, "threshold_start": 0.0, "threshold_end": 0.0, "num_updates": 1 }),
    )?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let problem = Problem::new(&prior, &g, &lik)?;
    let out = pool.install(|| Runner::new(problem).run(enkg.as_ref(), 0))?;
    let c = out.cost;
    let batches = c.fwd_seq.max(1) as f64;
    Ok(((c.seconds - c.fwd_seconds - c.den_seconds) / batches, c.den_seconds / c.den_total.max(1) as f64, peak_rss()))
}

/// Run the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    if !crate::mpi::present() {
        bail!(
            "bench mpi needs Open MPI: install {} (apt-get)",
            crate::mpi::PACKAGES.join(" ")
        );
    }
    let quick = args.quick;
    let reps = if quick { 1 } else { 3 };
    let steps = if quick { 6 } else { 20 };
    let exe = build("diffinv-cli", "bin", "diffinv", "mpi")?;
    let gather_exe = build("diffinv-mpi", "example", "allgather", "mpi")?;
    let dir = std::env::temp_dir().join(format!("diffinv-bench-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = write_problem(&dir, steps)?;

    // 1. Speed-up.
    let reference = {
        let mut c = Command::new("env");
        c.args(["RAYON_NUM_THREADS=1", "OMP_NUM_THREADS=1"]);
        one_run(c, &exe, &cfg, &dir.join("plain"))?
    };
    println!(
        "bench mpi: EnKG, 32 particles, {steps} steps, Navier-Stokes 64 x 64, one thread per rank, {} CPUs, load average {:.2}; without MPI {:.2} s ({:.0}% in the forward model, {} batches)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load(),
        reference.solve,
        100.0 * reference.fwd[0] / reference.solve,
        reference.batches
    );
    let mut best = [f64::INFINITY; 2];
    let mut best_wall = [f64::INFINITY; 2];
    let mut fwd_two = Vec::new();
    for rep in 0..reps {
        for (k, ranks) in [1usize, 2].into_iter().enumerate() {
            let t = one_run(mpirun(ranks), &exe, &cfg, &dir.join(format!("n{ranks}")))?;
            if t.samples != reference.samples {
                bail!("the samples on {ranks} rank(s) differ from the run without MPI");
            }
            println!(
                "  rep {rep}: {ranks} rank(s): solve {:.2} s (process {:.2} s), forward seconds per rank {:?}",
                t.solve, t.wall, t.fwd.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>()
            );
            if t.solve < best[k] {
                best[k] = t.solve;
                if ranks == 2 {
                    fwd_two = t.fwd.clone();
                }
            }
            best_wall[k] = best_wall[k].min(t.wall);
        }
    }
    let speedup = best[0] / best[1];
    println!(
        "  load average {:.2}; best: 1 rank {:.2} s, 2 ranks {:.2} s: speed-up {speedup:.2} (process wall: {:.2} / {:.2} = {:.2}); samples byte-identical to the run without MPI",
        load(),
        best[0], best[1], best_wall[0], best_wall[1], best_wall[0] / best_wall[1]
    );

    // 2. Cost-model inputs.
    let t_row = forward_time_128(if quick { 2 } else { 4 })?;
    let n_measured = if quick { 512 } else { 2048 };
    let (solver_per_batch, den_per_row, rss) = solver_time(n_measured, 1)?;
    // The same on two threads: how well the solver's algebra and the prior use a rank's
    // threads (the hybrid layout below).
    let (solver_2, den_2, _) = solver_time(n_measured, 2)?;
    let thread_eff = ((solver_per_batch + 1e-12) / (2.0 * solver_2)).min(1.0);
    let prior_thread_eff = ((den_per_row + 1e-18) / (2.0 * den_2)).min(1.0);
    let n = 2048usize;
    let scale = (n as f64 / n_measured as f64).powi(2);
    let solver_per_batch = solver_per_batch * scale;
    let counts = {
        // EnKG's default configuration (80 steps, 2 updates per guided step): batches and
        // denoiser rows per particle, from a dry run on a one-dimensional problem.
        let prior = GaussianPrior::new(Gaussian::isotropic(Array1::zeros(1), 1.0)?);
        let g = FnForward::new(1, 1, |x: &[f32]| x.to_vec());
        let lik = GaussianLikelihood::new(Array1::from_elem(1, 0.5f32), 0.1)?;
        let enkg = registry::build("EnKG", &json!({ "num_particles": 4 }))?;
        let out = Runner::new(Problem::new(&prior, &g, &lik)?).run(enkg.as_ref(), 0)?;
        out.cost
    };
    let batches = counts.fwd_seq as f64;
    let den_rows_per_particle = counts.den_total as f64 / 4.0;
    let o = mpirun(2).arg(&gather_exe).output().context("running the all-gather benchmark")?;
    if !o.status.success() {
        bail!("allgather failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let gather: Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
    let header_s = gather["header_us"].as_f64().unwrap_or(f64::NAN) * 1e-6;
    // The largest all-gather measured: the bandwidth of big batches.
    let bw = gather["sizes"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|s| s["gb_per_s"].as_f64()).reduce(f64::max))
        .unwrap_or(f64::NAN)
        * 1e9;
    let m = 64 * 64;
    let bytes = (n * m * 4) as f64;
    println!(
        "cost model inputs: forward {:.1} ms per particle at 128 x 128 (1 thread); solver {:.2} s and prior {:.2} s per batch of {n} (measured at N = {n_measured}{}); peak memory {:.2} GiB; {batches} batches and {den_rows_per_particle} denoiser rows per particle in EnKG's default run; gather {:.1} MiB per batch; MPI all-gather {:.2} GB/s, header {:.1} us (2 ranks, shared memory)",
        t_row * 1e3,
        solver_per_batch,
        den_per_row * den_rows_per_particle * n as f64 / batches,
        if quick { ", scaled by N^2" } else { "" },
        rss as f64 / (1u64 << 30) as f64,
        bytes / (1u64 << 20) as f64,
        bw / 1e9,
        header_s * 1e6
    );
    // Predicted EnKG run, N = 2048 at 128 x 128, 64 ranks of one thread per node: the forward
    // solves divided over the ranks, the gathers, the solver's algebra on every rank, and the
    // prior on every rank (forward-only sharding) or divided too (`shard_prior`).
    let per_node = 64usize;
    let algebra = batches * solver_per_batch;
    let prior_all = den_per_row * den_rows_per_particle * n as f64;
    let t1 = batches * n as f64 * t_row + algebra + prior_all;
    let mut model = Vec::new();
    for nodes in [1usize, 8, 64] {
        let p = nodes * per_node;
        let fwd = batches * (n.div_ceil(p) as f64) * t_row;
        let comm = batches
            * (2.0 * header_s * (p as f64).log2().ceil() + (p as f64 - 1.0) / p as f64 * bytes / bw);
        let prior_sharded = prior_all * n.div_ceil(p) as f64 / n as f64;
        let total = fwd + comm + algebra + prior_all;
        let total_sharded = fwd + comm + algebra + prior_sharded;
        let eff = t1 / (p as f64 * total);
        let eff_sharded = t1 / (p as f64 * total_sharded);
        println!(
            "  predicted, {nodes:>2} node(s) x {per_node} ranks: {:.3} h = forward {:.3} h + gathers {:.4} h + solver algebra {:.3} h + prior {:.3} h, efficiency {:.0}%; with shard_prior {:.3} h, {:.0}%",
            total / 3600.0,
            fwd / 3600.0,
            comm / 3600.0,
            algebra / 3600.0,
            prior_all / 3600.0,
            eff * 100.0,
            total_sharded / 3600.0,
            eff_sharded * 100.0
        );
        model.push(json!({
            "nodes": nodes, "ranks": p, "hours": total / 3600.0, "efficiency": eff,
            "hours_shard_prior": total_sharded / 3600.0, "efficiency_shard_prior": eff_sharded,
            "forward_h": fwd / 3600.0, "gather_h": comm / 3600.0, "algebra_h": algebra / 3600.0,
            "prior_h": prior_all / 3600.0,
        }));
    }
    println!("  one rank of one thread: {:.2} h", t1 / 3600.0);
    // The hybrid layout: one rank of 64 threads per node. Rayon spreads a rank's rows over its
    // threads; the solver's algebra and the prior use them at the efficiency measured on two
    // threads here (an optimistic extrapolation to 64).
    println!(
        "  hybrid layout, 1 rank x {per_node} threads per node (algebra {:.0}%, prior {:.0}% thread efficiency on 2 threads, assumed at {per_node}):",
        thread_eff * 100.0,
        prior_thread_eff * 100.0
    );
    let mut hybrid = Vec::new();
    for nodes in [1usize, 8, 64] {
        let fwd = batches * (n.div_ceil(nodes * per_node) as f64) * t_row;
        let comm = if nodes > 1 {
            batches
                * (2.0 * header_s * (nodes as f64).log2().ceil()
                    + (nodes as f64 - 1.0) / nodes as f64 * bytes / bw)
        } else {
            0.0
        };
        let alg = algebra / (per_node as f64 * thread_eff);
        let pri = prior_all / (per_node as f64 * prior_thread_eff);
        let pri_sharded = pri * n.div_ceil(nodes) as f64 / n as f64;
        let total = fwd + comm + alg + pri;
        let total_sharded = fwd + comm + alg + pri_sharded;
        let cores = (nodes * per_node) as f64;
        println!(
            "    {nodes:>2} node(s): {:.3} h = forward {:.3} h + gathers {:.4} h + solver algebra {:.3} h + prior {:.3} h, efficiency {:.0}%; with shard_prior {:.3} h, {:.0}%",
            total / 3600.0,
            fwd / 3600.0,
            comm / 3600.0,
            alg / 3600.0,
            pri / 3600.0,
            100.0 * t1 / (cores * total),
            total_sharded / 3600.0,
            100.0 * t1 / (cores * total_sharded)
        );
        hybrid.push(json!({
            "nodes": nodes, "hours": total / 3600.0, "efficiency": t1 / (cores * total),
            "hours_shard_prior": total_sharded / 3600.0,
            "efficiency_shard_prior": t1 / (cores * total_sharded),
        }));
    }
    // Communication dominates a batch once the gather outlasts the forward share.
    let crossover = (1..=1usize << 20)
        .map(|k| k * per_node)
        .find(|&p| (p as f64 - 1.0) / p as f64 * bytes / bw + 2.0 * header_s * (p as f64).log2().ceil() > (n.div_ceil(p) as f64) * t_row)
        .map(|p| p / per_node);
    println!(
        "  communication dominates from {} node(s) on; at {} nodes every rank has one particle",
        crossover.map_or("no".into(), |c| c.to_string()),
        n.div_ceil(per_node)
    );
    println!(
        "{}",
        json!({
            "bench": "mpi", "case": "enkg_ns64_p32", "one_rank_s": best[0], "two_ranks_s": best[1],
            "speedup": speedup, "forward_seconds_per_rank_2": fwd_two, "without_mpi_s": reference.solve,
            "forward_ms_per_particle_128": t_row * 1e3, "solver_s_per_batch_2048": solver_per_batch,
            "peak_rss_bytes": rss, "enkg_default_batches": batches, "gather_bytes_per_batch": bytes,
            "prior_s_per_row_128": den_per_row, "denoiser_rows_per_particle": den_rows_per_particle,
            "allgather_gb_per_s": bw / 1e9, "header_us": header_s * 1e6, "model": model,
            "hybrid": hybrid, "algebra_thread_efficiency_2": thread_eff,
            "prior_thread_efficiency_2": prior_thread_eff,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    print_bench(
        "mpi",
        &[BenchCase::new("enkg_ns64_p32", best[1], best[0], "s", Better::Lower)],
    )
}
