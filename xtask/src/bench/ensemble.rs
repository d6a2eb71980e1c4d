//! `cargo xtask bench ensemble`: the EnKG update `diffinv_ensemble::kalman_direction` against
//! PyTorch on the same machine, in one run, same thread count.
//!
//! For each size `(N, d, m)` it measures, interleaved repetition by repetition (the order
//! alternates, and the 1-minute load average is printed next to every repetition):
//! - ours: `kalman_direction(X, Y, R)`, `2 N^2 (d + m)` flops (`C = R dY^T / N`, `dX = C dXa`);
//! - PyTorch SGEMM of the dominant product's shape, `(N, N) @ (N, d)`, `2 N^2 d` flops;
//! - PyTorch's version of the same update (`xtask/python/bench_ensemble.py`).
//!
//! The JSON case is ours vs PyTorch's SGEMM rate (GFLOP/s, higher is better; medians over the
//! repetitions); PyTorch's update rate is printed on the human lines. The python is
//! `$DIFFINV_PYTHON` (set by xtask's torch bootstrap), else the bootstrapped venv's.
//! `torch.set_num_threads` is set to rayon's thread count (`RAYON_NUM_THREADS` to change it).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use diffinv_ensemble::{kalman_direction, kalman_flops};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::BenchArgs;
use crate::report::{print_bench, BenchCase, Better};

/// The PyTorch side: a long-lived python process speaking the line protocol of
/// `bench_ensemble.py`.
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    fn start(python: &PathBuf, threads: usize) -> Result<Self> {
        let script = crate::workspace_root()
            .join("xtask")
            .join("python")
            .join("bench_ensemble.py");
        let mut child = Command::new(python)
            .arg("-W")
            .arg("ignore")
            .arg(&script)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let stdin = child.stdin.take().context("python stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("python stdout")?);
        let mut t = Self {
            child,
            stdin,
            stdout,
        };
        let ready = t.read()?;
        println!(
            "pytorch {} with {} threads ({})",
            ready["torch"].as_str().unwrap_or("?"),
            ready["threads"],
            python.display()
        );
        Ok(t)
    }

    fn read(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the PyTorch benchmark process exited early");
        }
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).with_context(|| format!("parsing {line:?}"))?;
        if let Some(e) = v.get("error") {
            bail!("PyTorch benchmark: {e}");
        }
        Ok(v)
    }

    fn cmd(&mut self, c: &str) -> Result<serde_json::Value> {
        writeln!(self.stdin, "{c}")?;
        self.stdin.flush()?;
        self.read()
    }

    /// Run a timing command and return its GFLOP/s.
    fn rate(&mut self, c: &str) -> Result<f64> {
        let v = self.cmd(c)?;
        v["gflops"]
            .as_f64()
            .with_context(|| format!("no rate in {v}"))
    }

    fn quit(mut self) -> Result<()> {
        writeln!(self.stdin, "quit")?;
        self.stdin.flush()?;
        self.child.wait()?;
        Ok(())
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn randn(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(rng))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Run the benchmark.
///
/// In a build with debug assertions (the dev profile that the `cargo xtask` alias uses), it
/// re-runs itself as `cargo run --release -p xtask -- bench ensemble`: `gemm`'s micro-kernels
/// are 2-3x slower at the dev profile (docs/performance-ensemble.md), which would measure the
/// build profile rather than the code. `DIFFINV_BENCH_ANY_PROFILE=1` measures in place.
pub fn run(args: &BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) && std::env::var_os("DIFFINV_BENCH_ANY_PROFILE").is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(crate::workspace_root()).args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench",
            "ensemble",
        ]);
        if args.quick {
            c.arg("--quick");
        }
        eprintln!(
            "xtask: this is a dev build; measuring with `cargo run --release -p xtask -- bench ensemble{}` \
             (set DIFFINV_BENCH_ANY_PROFILE=1 to measure this build)",
            if args.quick { " --quick" } else { "" }
        );
        let st = c.status().context("running the release build of xtask")?;
        if !st.success() {
            bail!("the release run of `bench ensemble` failed");
        }
        return Ok(());
    }
    let python = match std::env::var_os("DIFFINV_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => crate::torch_env::ensure()?.python,
    };
    let threads = rayon::current_num_threads();
    let (sizes, reps): (&[(usize, usize, usize)], usize) = if args.quick {
        (&[(256, 2048, 512), (512, 4096, 1024)], 2)
    } else {
        (
            &[(512, 4096, 1024), (1024, 8192, 2048), (2048, 16384, 4096)],
            5,
        )
    };
    println!("ensemble bench: EnKG update dX = C (X - 1 xbar^T), C = R (Y - 1 ybar^T)^T / N");
    println!("rayon threads {threads}, {reps} interleaved repetitions per size, medians reported");
    let mut torch = Torch::start(&python, threads)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut cases = Vec::new();
    for &(n, d, m) in sizes {
        let x = randn(n, d, &mut rng);
        let y = randn(n, m, &mut rng);
        let r = randn(n, m, &mut rng);
        torch.cmd(&format!("case {n} {d} {m}"))?;
        let flops = kalman_flops(n, d, m);
        // calls per repetition: about 15 GFLOP (a few tenths of a second) per timing, at least one call
        let k = ((15e9 / flops).round() as usize).max(1);
        let ours_once = || -> Result<f64> {
            let t = Instant::now();
            for _ in 0..k {
                let kd = kalman_direction(x.view(), y.view(), r.view())?;
                std::hint::black_box(&kd);
            }
            let dt = t.elapsed().as_secs_f64() / k as f64;
            Ok(flops / dt / 1e9)
        };
        ours_once()?; // warm-up (page faults of the outputs, rayon start-up)
        let (mut ours, mut sgemm, mut tupd) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let load = load_avg();
            let (o, s, u) = if rep % 2 == 0 {
                let o = ours_once()?;
                (
                    o,
                    torch.rate(&format!("sgemm {k}"))?,
                    torch.rate(&format!("update {k}"))?,
                )
            } else {
                let s = torch.rate(&format!("sgemm {k}"))?;
                let u = torch.rate(&format!("update {k}"))?;
                (ours_once()?, s, u)
            };
            println!(
                "  N={n} d={d} m={m} rep {rep} ({k} calls): load {load:>5}  ours {o:7.2}  torch sgemm {s:7.2}  torch update {u:7.2} GFLOP/s"
            );
            ours.push(o);
            sgemm.push(s);
            tupd.push(u);
        }
        let (o, s, u) = (median(&mut ours), median(&mut sgemm), median(&mut tupd));
        println!(
            "N={n} d={d} m={m}: ours {o:.2} GFLOP/s = {:.0}% of torch SGEMM ({s:.2}), {:.0}% of torch's update ({u:.2}); load now {}",
            100.0 * o / s,
            100.0 * o / u,
            load_avg()
        );
        cases.push(BenchCase::new(
            format!("N{n}_d{d}_m{m}"),
            o,
            s,
            "GFLOP/s",
            Better::Higher,
        ));
    }
    torch.quit()?;
    print_bench("ensemble", &cases)
}
