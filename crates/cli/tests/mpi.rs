//! `diffinv run` under `mpirun` (feature `mpi`; `cargo xtask test` enables it where Open MPI is
//! installed): samples byte-identical to the run without MPI on 1, 2 and 3 ranks (EnKG and CPS,
//! on the built-in Navier-Stokes model and on the Python example; a trained prior with the
//! `torch` feature), a rank killed mid-run and `--resume` without MPI, a job stopped by a
//! signal, and a failure on one rank that ends every rank.
//!
//! The ranks run with one rayon thread each, oversubscribed on the test machine's cores.
#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diffinv_operators::npy::save_npy;
use diffinv_operators::{ForwardModel, NavierStokes2d, NavierStokesConfig};

mod common;
use common::{examples, processes_with, python, temp};

const BIN: &str = env!("CARGO_BIN_EXE_diffinv");



/// `diffinv ARGS` without MPI, one thread for rayon and one for libtorch.
fn plain(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("RAYON_NUM_THREADS", "1").env("OMP_NUM_THREADS", "1");
    c
}

/// `mpirun -n N diffinv ARGS`, one rayon thread and one libtorch thread per rank. (libtorch's
/// CPU kernels give the same bits only for the same thread count, and its default differs under
/// mpirun: docs/distributed.md.)
fn mpirun(n: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-n"])
        .arg(n.to_string())
        .args(["-x", "RAYON_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1", BIN])
        .args(args);
    c
}

/// Run `c` to the end (at most `limit`, else kill it and fail): status and stderr.
fn finish(mut c: Command, limit: Duration, what: &str) -> (ExitStatus, String) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = temp(&format!("log{k}"));
    let err_path = dir.join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = c.stdout(Stdio::null()).stderr(err).spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status, text)
}

fn run_ok(c: Command, what: &str) {
    let (st, err) = finish(c, Duration::from_secs(120), what);
    assert!(st.success(), "{what}: {st}: {err}");
}

fn sample_bytes(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("samples.npy")).unwrap()
}

/// `samples.npy` of `cfg` without MPI and under `mpirun -n 1, 2, 3`: byte for byte the same.
fn assert_identical_on_1_2_3_ranks(cfg: &Path, dir: &Path, tag: &str) {
    let cfg = cfg.to_str().unwrap();
    let alone = dir.join(format!("{tag}-alone"));
    run_ok(plain(&["run", cfg, "--out", alone.to_str().unwrap()]), tag);
    let want = sample_bytes(&alone);
    for n in 1..=3 {
        let out = dir.join(format!("{tag}-{n}"));
        run_ok(mpirun(n, &["run", cfg, "--out", out.to_str().unwrap()]), &format!("{tag} on {n} ranks"));
        assert!(sample_bytes(&out) == want, "{tag}: samples on {n} ranks differ from the run without MPI");
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["ranks"], n, "{tag}");
        assert!(!out.join("checkpoint.bin").exists());
    }
}

/// A 32 x 32 Navier-Stokes problem: a Gaussian prior, the vorticity of a smooth field observed
/// on every other point at T = 1.
fn ns_problem(dir: &Path, solver: &str, run: &str) -> PathBuf {
    let r = 32;
    let truth: Vec<f32> = (0..r * r)
        .map(|k| {
            let (i, j) = ((k / r) as f32, (k % r) as f32);
            let t = std::f32::consts::TAU / r as f32;
            2.0 * (t * i).sin() * (2.0 * t * j).cos() + (t * (i + j)).cos()
        })
        .collect();
    let ns = NavierStokes2d::new(NavierStokesConfig::enkg(r, 0.0)).unwrap();
    let y = ns
        .forward(ndarray::ArrayView2::from_shape((1, r * r), &truth).unwrap())
        .unwrap();
    save_npy(&dir.join("mean.npy"), &[r * r], &vec![0.0f32; r * r]).unwrap();
    save_npy(&dir.join("y.npy"), &[y.ncols()], y.as_slice().unwrap()).unwrap();
    let text = format!(
        r#"
[prior]
kind = "gaussian"
mean_npy = "mean.npy"
variance = 4.0
[forward]
kind = "navier-stokes"
resolution = {r}
[data]
y_npy = "y.npy"
shape = [{r}, {r}]
[likelihood]
kind = "gaussian"
sigma = 0.1
[solver]
{solver}
[run]
{run}
"#
    );
    let p = dir.join(format!("ns-{}-{}.toml", solver.len(), run.len()));
    std::fs::write(&p, text).unwrap();
    p
}

const ENKG: &str = "method = \"EnKG\"\nnum_particles = 10\nnum_steps = 8\nmax_ode_steps = 2";
const CPS: &str = "method = \"CPS\"\nnum_candidates = 5\nnum_samples = 2\nnum_steps = 12";

#[test]
fn navier_stokes_enkg_and_cps_are_byte_identical_on_1_2_3_ranks() {
    let d = temp("ns");
    for (tag, solver) in [("enkg", ENKG), ("cps", CPS)] {
        assert_identical_on_1_2_3_ranks(&ns_problem(&d, solver, ""), &d, &format!("ns-{tag}"));
    }
    // The analytic prior sharded too: still the same bytes.
    let cfg = ns_problem(&d, ENKG, "shard_prior = true");
    assert_identical_on_1_2_3_ranks(&cfg, &d, "ns-enkg-shard-prior");
    std::fs::remove_dir_all(&d).unwrap();
}


/// The Burgers example with `python`, one worker per rank and a shorter solver section.
fn burgers_problem(dir: &Path, py: &str, solver: &str, tag: &str) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("burgers/problem.toml"))
        .unwrap()
        .replace("\"python3\"", &format!("{py:?}"))
        .replace(
            "\"burgers.py\"",
            &format!("{:?}", examples().join("burgers/burgers.py").display().to_string()),
        )
        .replace(
            "\"../../../process/python\"",
            &format!("{:?}", examples().join("../../process/python").display().to_string()),
        )
        .replace("workers = 2", "workers = 1")
        .replace("method = \"EnKG\"\nnum_particles = 64", solver);
    assert!(text.contains(solver));
    let p = dir.join(format!("burgers-{tag}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_python_example_is_byte_identical_on_1_2_3_ranks() {
    let Some(py) = python() else { return };
    let d = temp("burgers");
    let enkg = "method = \"EnKG\"\nnum_particles = 12\nnum_steps = 6\nmax_ode_steps = 2";
    let cps = "method = \"CPS\"\nnum_candidates = 5\nnum_samples = 2\nnum_steps = 8";
    for (tag, solver) in [("enkg", enkg), ("cps", cps)] {
        let cfg = burgers_problem(&d, &py, solver, tag);
        assert_identical_on_1_2_3_ranks(&cfg, &d, &format!("burgers-{tag}"));
        let out = d.join(format!("burgers-{tag}-3"));
        for r in 0..3 {
            assert!(out.join(format!("workers.rank-{r}.log")).is_file());
        }
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["per_rank"].as_array().unwrap().len(), 3);
        assert_eq!(s["failures"]["workers"]["crashes"], 0);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// A trained prior (the shipped 64 x 64 Navier-Stokes prior) with forward-only sharding: every
/// rank evaluates the whole denoiser batch, so the samples stay byte-identical.
#[cfg(feature = "torch")]
#[test]
fn a_trained_prior_is_byte_identical_on_2_and_3_ranks() {
    let d = temp("trained");
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/priors/ns64");
    save_npy(&d.join("y.npy"), &[32 * 32], &vec![0.5f32; 32 * 32]).unwrap();
    let text = format!(
        r#"
[prior]
kind = "trained"
folder = "{}"
batch = 8
[forward]
kind = "navier-stokes"
resolution = 64
[data]
y_npy = "y.npy"
[likelihood]
kind = "gaussian"
sigma = 1.0
[solver]
method = "EnKG"
num_particles = 5
num_steps = 3
max_ode_steps = 1
"#,
        folder.display()
    );
    let cfg = d.join("trained.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let alone = d.join("alone");
    run_ok(plain(&["run", cfg, "--out", alone.to_str().unwrap()]), "trained");
    for n in [2, 3] {
        let out = d.join(format!("n{n}"));
        run_ok(mpirun(n, &["run", cfg, "--out", out.to_str().unwrap()]), "trained under MPI");
        assert!(sample_bytes(&out) == sample_bytes(&alone), "trained prior on {n} ranks");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// The Lotka-Volterra C worker, slowed down (30 ms per call) or failing on one rank, compiled
/// once per variant.
fn lv_worker(variant: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(v, _)| v == variant) {
        return p.clone();
    }
    let d = temp(&format!("lv-build-{variant}"));
    let src = std::fs::read_to_string(examples().join("lotka-volterra/lotka_volterra.c")).unwrap();
    let head = "static int forward(const float *x, float *y, int rows, void *ctx) {\n    (void)ctx;";
    assert!(src.contains(head));
    let body = match variant {
        "slow" => "\n    struct timespec ts = {0, 30000000};\n    nanosleep(&ts, NULL);",
        // Rank 1's workers crash from their second call on.
        "rank1-crash" => "\n    static int calls = 0;\n    const char *r = getenv(\"OMPI_COMM_WORLD_RANK\");\n    if (r && strcmp(r, \"1\") == 0 && ++calls > 1) exit(3);",
        _ => "",
    };
    let src = src.replace(head, &format!("{head}{body}")).replace(
        "#include",
        "#include <time.h>\n#include <stdlib.h>\n#include <string.h>\n#include",
    );
    let c = d.join("lv.c");
    std::fs::write(&c, src).unwrap();
    let exe = d.join(format!("lv_{}", variant.replace('-', "_")));
    let st = Command::new("cc")
        .args(["-O2", "-std=c99", "-D_POSIX_C_SOURCE=199309L", "-ffp-contract=off", "-I"])
        .arg(examples().join("../../process/c"))
        .arg(&c)
        .arg("-o")
        .arg(&exe)
        .arg("-lm")
        .status()
        .unwrap();
    assert!(st.success(), "cc failed");
    built.push((variant.to_string(), exe.clone()));
    exe
}

/// The Lotka-Volterra problem (CPS, 16 candidates, 60 steps) with worker `exe`.
fn lv_problem(dir: &Path, exe: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("lotka-volterra/problem.toml"))
        .unwrap()
        .replace("[\"./lotka_volterra\"]", &format!("[{:?}]", exe.display().to_string()))
        .replace("workers = 2", &format!("workers = 1{extra}"))
        .replace("num_candidates = 64", "num_candidates = 16\nnum_steps = 60")
        .replace("num_samples = 16", "num_samples = 4");
    let p = dir.join(format!("lv-{}.toml", exe.file_name().unwrap().to_string_lossy()));
    std::fs::write(&p, text).unwrap();
    p
}


/// The `diffinv` process of MPI rank `rank` among the children of `launcher`.
fn rank_process(launcher: u32, rank: usize) -> Option<u32> {
    processes_with(BIN).into_iter().find(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 4 (after the parenthesised command) is the parent's id.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        ppid == Some(launcher)
            && env.split('\0').any(|kv| kv == format!("OMPI_COMM_WORLD_RANK={rank}"))
    })
}

fn wait_for(path: &Path, limit: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < limit, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("the MPI job did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Start the slow Lotka-Volterra run on 2 ranks, wait for its first checkpoint, then hit it
/// with `signal` (to rank 1's process, or to mpirun itself): the job fails, no worker is left,
/// and `diffinv run --resume` without MPI ends byte-identically to an uninterrupted run.
fn interrupt_and_resume(tag: &str, signal: i32, at_rank_1: bool) {
    let d = temp(tag);
    // A copy of the worker per test: the process-table checks below must not see the workers of
    // the tests running at the same time.
    let exe = d.join(format!("lv_slow_{tag}"));
    std::fs::copy(lv_worker("slow"), &exe).unwrap();
    let cfg = lv_problem(&d, &exe, "");
    let cfg = cfg.to_str().unwrap();
    let out = d.join("out");
    let mut job = mpirun(2, &["run", cfg, "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&out.join("checkpoint.bin"), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let target = if at_rank_1 {
        rank_process(job.id(), 1).expect("rank 1's process")
    } else {
        job.id()
    };
    // SAFETY: kill(2) on a process this test started (or its child).
    assert_eq!(unsafe { kill(target as i32, signal) }, 0);
    let status = wait_exit(&mut job, Duration::from_secs(30));
    assert!(!status.success(), "{tag}: the job succeeded");
    let t0 = Instant::now();
    while !processes_with(exe.to_str().unwrap()).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "{tag}: workers left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(out.join("checkpoint.bin").is_file());
    run_ok(plain(&["run", cfg, "--out", out.to_str().unwrap(), "--resume"]), "resume");
    let straight = d.join("straight");
    run_ok(plain(&["run", cfg, "--out", straight.to_str().unwrap()]), "straight");
    assert!(sample_bytes(&out) == sample_bytes(&straight), "{tag}: resumed samples differ");
    assert!(processes_with(exe.to_str().unwrap()).is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_rank_killed_mid_run_fails_the_job_and_resume_without_mpi_ends_identically() {
    interrupt_and_resume("sigkill", 9, true);
}

#[test]
fn a_job_stopped_by_its_launcher_resumes_identically() {
    // What Ctrl-C on mpirun or a scheduler's cancel does: SIGTERM to every rank, SIGKILL soon
    // after.
    interrupt_and_resume("sigterm", 15, false);
}

#[test]
fn a_failure_on_one_rank_ends_every_rank_with_its_message() {
    let d = temp("fail");
    // Rank 1's workers crash on every call after the first: its pool stops, every rank stops.
    let exe = lv_worker("rank1-crash");
    let cfg = lv_problem(&d, &exe, "\nmax_restarts = 1");
    let out = d.join("out");
    let t0 = Instant::now();
    let (st, err) = finish(
        mpirun(2, &["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        Duration::from_secs(60),
        "rank 1 crashes",
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("rank 1: ") && err.contains("stopped"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(25), "took {:?}", t0.elapsed());
    assert!(out.join("workers.rank-1.log").is_file());
    // A worker that cannot start on rank 1 only: the job ends before any step, naming rank 1.
    let cfg2 = d.join("nostart.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &format!("[{:?}]", exe.display().to_string()),
            &format!(
                "[\"sh\", \"-c\", \"if [ \\\"$OMPI_COMM_WORLD_RANK\\\" = 1 ]; then echo no licence >&2; exit 4; fi; exec {}\"]",
                lv_worker("").display()
            ),
        );
    std::fs::write(&cfg2, text).unwrap();
    let out2 = d.join("out2");
    let (st, err) = finish(
        mpirun(2, &["run", cfg2.to_str().unwrap(), "--out", out2.to_str().unwrap()]),
        Duration::from_secs(60),
        "rank 1 cannot start",
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("rank 1: ") && err.contains("no licence"), "{err}");
    assert!(!out2.join("steps.csv").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Rank 0 alone fails outside any collective (it cannot write its checkpoint) while rank 1 goes
/// on into the next step's gather: rank 0 waits its patience, then aborts the whole job, which
/// leaves no process behind; the last checkpoint resumes to the uninterrupted samples.
#[test]
fn a_failure_outside_any_collective_aborts_the_job() {
    let exe = lv_worker("slow");
    let d = temp("abort");
    let cfg = lv_problem(&d, &exe, "");
    let cfg = cfg.to_str().unwrap();
    let out = d.join("out");
    // As `mpirun`, with a patience of 2 s instead of 30.
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-n", "2"])
        .args(["-x", "RAYON_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1", "-x", "DIFFINV_MPI_PATIENCE_S=2", BIN])
        .args(["run", cfg, "--out", out.to_str().unwrap()]);
    let err_path = d.join("stderr");
    let mut job = c
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_for(&out.join("checkpoint.bin"), Duration::from_secs(60));
    // The next checkpoint's temporary file cannot be created: a folder is in its way.
    let blocker = out.join("checkpoint.bin.tmp");
    let t0 = Instant::now();
    while std::fs::create_dir(&blocker).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = wait_exit(&mut job, Duration::from_secs(30));
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("writing checkpoint") && err.contains("aborting the MPI job"), "{err}");
    let t0 = Instant::now();
    while !processes_with(exe.to_str().unwrap()).is_empty() || rank_process(job.id(), 1).is_some() {
        assert!(t0.elapsed() < Duration::from_secs(5), "processes left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir(&blocker).unwrap();
    run_ok(plain(&["run", cfg, "--out", out.to_str().unwrap(), "--resume"]), "resume");
    let straight = d.join("straight");
    run_ok(plain(&["run", cfg, "--out", straight.to_str().unwrap()]), "straight");
    assert!(sample_bytes(&out) == sample_bytes(&straight));
    std::fs::remove_dir_all(&d).unwrap();
}
