//! The `diffinv` binary end to end, on built-in forward models: the results folder, samples
//! bit-identical to the library, stop and `--resume`, and every command-line option's bad input
//! (one line on stderr, a non-zero status, nothing written).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use diffinv_operators::npy::{load_npy, save_npy};
use diffinv_operators::{GaussianLikelihood, MatrixOperator};
use diffinv_priors::{Gaussian, GaussianMixture};
use diffinv_solvers::{registry, Problem, Runner};
use ndarray::{array, Array2};

mod common;
use common::{bin, temp};



fn a() -> Array2<f32> {
    array![[1.0, 0.5], [0.0, 1.0], [1.0, -1.0]]
}

const PROBLEM: &str = r#"
[prior]
kind = "gaussian-mixture"
weights = [0.3, 0.7]
means = [[-2.0, 0.0], [2.0, 0.0]]
variance = 1.0

[forward]
kind = "matrix"
matrix_npy = "A.npy"

[data]
y = [1.5, 0.2, 1.0]

[likelihood]
kind = "gaussian"
sigma = 0.3

[solver]
method = "EnKG"
num_particles = 32
num_steps = 20

[run]
seed = 1
"#;

/// A folder with `problem.toml` and `A.npy`.
fn problem_dir(name: &str) -> PathBuf {
    let d = temp(name);
    let a = a();
    save_npy(&d.join("A.npy"), &[3, 2], a.as_slice().unwrap()).unwrap();
    std::fs::write(d.join("problem.toml"), PROBLEM).unwrap();
    d
}

fn samples(dir: &Path) -> Vec<f32> {
    load_npy(&dir.join("samples.npy")).unwrap().to_f32()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The same problem, run by the library.
fn library_samples(seed: u64) -> Vec<f32> {
    let prior = GaussianMixture::new(
        &[0.3, 0.7],
        vec![
            Gaussian::isotropic(array![-2.0, 0.0], 1.0).unwrap(),
            Gaussian::isotropic(array![2.0, 0.0], 1.0).unwrap(),
        ],
    )
    .unwrap();
    let op = MatrixOperator::new(a()).unwrap();
    let lik = GaussianLikelihood::new(array![1.5f32, 0.2, 1.0], 0.3).unwrap();
    let problem = Problem::new(&prior, &op, &lik).unwrap();
    let solver = registry::build(
        "EnKG",
        &serde_json::json!({ "num_particles": 32, "num_steps": 20 }),
    )
    .unwrap();
    let out = Runner::new(problem).run(solver.as_ref(), seed).unwrap();
    out.samples.iter().copied().collect()
}

#[test]
fn a_run_writes_its_folder_with_the_library_samples() {
    let d = problem_dir("run");
    let o = bin().arg("run").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.join("results/problem");
    for f in ["samples.npy", "mean.npy", "std.npy", "summary.json", "steps.csv"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("checkpoint.bin").exists());
    assert_eq!(samples(&out), library_samples(1));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["method"], "EnKG");
    assert_eq!(s["particles"], 32);
    assert_eq!(s["solver_config"]["num_steps"], 20);
    assert_eq!(s["cost"]["failed"], 0);
    assert!(s["cost"]["fwd_total"].as_u64().unwrap() > 0);
    let steps = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    assert_eq!(steps.lines().count(), 21, "{steps}");
    // --seed and --out override the file.
    let other = d.join("other");
    let o = bin()
        .arg("run")
        .arg(d.join("problem.toml"))
        .args(["--seed", "4", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(samples(&other), library_samples(4));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_stopped_run_resumes_to_the_same_samples() {
    let d = problem_dir("resume");
    let cfg = d.join("problem.toml");
    let out = d.join("results/problem");
    let o = bin().arg("run").arg(&cfg).args(["--stop-after", "7"]).output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("interrupted after 7 of 20 steps") && e.contains("--resume"), "{e}");
    assert!(out.join("checkpoint.bin").is_file());
    // Without --resume the folder is refused, naming the way out.
    let o = bin().arg("run").arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass --resume"), "{}", stderr(&o));
    // A second stop, then the end.
    let o = bin().arg("run").arg(&cfg).args(["--resume", "--stop-after", "5"]).output().unwrap();
    assert!(stderr(&o).contains("interrupted after 12 of 20"), "{}", stderr(&o));
    let o = bin().arg("run").arg(&cfg).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(samples(&out), library_samples(1));
    // steps.csv has each step once, the cost ledger carried across the three invocations.
    let steps = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let idx: Vec<usize> = steps.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(idx, (0..20).collect::<Vec<_>>());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["resumed_from_step"], 12);
    // A finished run is not resumed again.
    let o = bin().arg("run").arg(&cfg).arg("--resume").output().unwrap();
    assert!(stderr(&o).contains("finished run"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_image_unknown_gets_a_figure() {
    let d = problem_dir("figure");
    let text = PROBLEM.replace("y = [1.5, 0.2, 1.0]", "y = [1.5, 0.2, 1.0]\nshape = [1, 2]");
    std::fs::write(d.join("problem.toml"), text).unwrap();
    let o = bin().arg("run").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(d.join("results/problem/posterior.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn check_prints_the_plan_and_writes_nothing() {
    let d = problem_dir("check");
    let o = bin().arg("check").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    for want in ["every key is valid", "EnKG", "32 particles, 20 steps", "probe", "forward evaluations", "(new)"] {
        assert!(plan.contains(want), "{want:?} missing from:\n{plan}");
    }
    // The estimate's count is the run's.
    let o = bin().arg("run").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("results/problem/summary.json")).unwrap(),
    )
    .unwrap();
    let fwd = s["cost"]["fwd_total"].as_u64().unwrap();
    assert!(plan.contains(&format!("estimate    {fwd} forward evaluations")), "{fwd}\n{plan}");
    std::fs::remove_dir_all(d.join("results")).unwrap();
    let o = bin().arg("check").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success());
    assert!(!d.join("results").exists(), "check wrote something");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn methods_lists_the_registry_and_one_method() {
    let o = bin().arg("methods").output().unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    for m in registry::registry() {
        assert!(t.contains(m.name), "{} missing", m.name);
    }
    let o = bin().args(["methods", "CPS"]).output().unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("num_candidates = 64") && t.contains("schedule.sigma_max = 80.0"), "{t}");
}

/// Every option's bad input: one line on stderr, a non-zero status, no results folder.
#[test]
fn bad_command_lines_are_one_line_and_write_nothing() {
    let d = problem_dir("bad");
    let cfg = d.join("problem.toml");
    let cfg = cfg.to_str().unwrap();
    let missing = d.join("nope.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "subcommand"),
        (vec!["frob"], "frob"),
        (vec!["run"], "CONFIG"),
        (vec!["run", cfg, "--seed", "abc"], "abc"),
        (vec!["run", cfg, "--seed", "-1"], "-1"),
        (vec!["run", cfg, "--seed"], "--seed"),
        (vec!["run", cfg, "--out"], "--out"),
        (vec!["run", cfg, "--resum"], "--resum"),
        (vec!["run", cfg, "--stop-after", "x"], "x"),
        (vec!["run", missing.to_str().unwrap()], "nope.toml"),
        (vec!["check"], "CONFIG"),
        (vec!["check", missing.to_str().unwrap()], "nope.toml"),
        (vec!["methods", "ENKG"], "did you mean"),
        (vec!["methods", "EnKG", "--markdown"], "--markdown"),
    ];
    for (args, want) in cases {
        let o = bin().args(&args).output().unwrap();
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {want:?} not in {e}");
        assert!(!d.join("results").exists(), "{args:?} wrote results");
    }
    // A bad run file through the binary: status 2, one line naming the key, nothing written.
    let bad = PROBLEM.replace("sigma = 0.3", "sigma = -0.3");
    std::fs::write(d.join("bad.toml"), bad).unwrap();
    let o = bin().arg("run").arg(d.join("bad.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("likelihood.sigma"), "{}", stderr(&o));
    // A method whose required capability the forward model lacks (a process model has none).
    let p = PROBLEM
        .replace("kind = \"matrix\"\nmatrix_npy = \"A.npy\"", "kind = \"process\"\ncommand = [\"true\"]\nin_dim = 2\nout_dim = 3")
        .replace("method = \"EnKG\"\nnum_particles = 32", "method = \"DPS\"");
    std::fs::write(d.join("dps.toml"), p).unwrap();
    let o = bin().arg("run").arg(d.join("dps.toml")).output().unwrap();
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("DPS") && e.contains("gradient"), "{e}");
    assert!(!d.join("results").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// A trained prior (the shipped natural-image prior) on a built-in imaging task: the binary's
/// samples, in physical units, equal the library's run of the same problem.
#[cfg(feature = "torch")]
#[test]
fn a_trained_prior_run_equals_the_library() {
    use diffinv_operators::Affine;
    use diffinv_priors::neural::PriorFolder;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let folder = root.join("fixtures/priors/natural64");
    let test = load_npy(&folder.join("test32.npy")).unwrap();
    let truth: Vec<f32> = test.to_f32()[..64 * 64].to_vec();
    let op = diffinv_operators::imaging::standard_task("sr4", [1, 64, 64], 0).unwrap();
    let y = op
        .forward(ndarray::ArrayView2::from_shape((1, 64 * 64), &truth).unwrap())
        .unwrap();
    let d = temp("trained");
    save_npy(&d.join("y.npy"), &[y.ncols()], y.as_slice().unwrap()).unwrap();
    let text = format!(
        r#"
[prior]
kind = "trained"
folder = "{}"
[forward]
kind = "imaging"
task = "sr4"
shape = [1, 64, 64]
[data]
y_npy = "y.npy"
shape = [64, 64]
[likelihood]
kind = "gaussian"
sigma = 0.05
[solver]
method = "EnKG"
num_particles = 4
num_steps = 4
max_ode_steps = 2
"#,
        folder.display()
    );
    std::fs::write(d.join("problem.toml"), text).unwrap();
    let o = bin().arg("run").arg(d.join("problem.toml")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = samples(&d.join("results/problem"));

    let spec = PriorFolder::read(&folder).unwrap();
    let prior = spec.load(64, tch::Device::Cpu).unwrap();
    let fwd = Affine::new(op.as_ref(), spec.scale as f32, spec.shift as f32).unwrap();
    let lik = GaussianLikelihood::new(y.row(0).to_owned(), 0.05).unwrap();
    let problem = Problem::new(&prior, &fwd, &lik).unwrap();
    let solver = registry::build(
        "EnKG",
        &serde_json::json!({ "num_particles": 4, "num_steps": 4, "max_ode_steps": 2 }),
    )
    .unwrap();
    let out = Runner::new(problem).run(solver.as_ref(), 0).unwrap();
    let want: Vec<f32> = out
        .samples
        .iter()
        .map(|v| spec.shift as f32 + spec.scale as f32 * v)
        .collect();
    assert_eq!(got, want);
    assert!(d.join("results/problem/posterior.png").is_file());
    std::fs::remove_dir_all(&d).unwrap();
}

/// docs/cli.md quotes `diffinv methods --markdown`: it must be the registry's current state.
#[test]
fn the_methods_tables_in_docs_are_current() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md"))
        .unwrap();
    let begin = doc.find("<!-- methods:begin -->\n").unwrap() + "<!-- methods:begin -->\n".len();
    let end = doc.find("<!-- methods:end -->").unwrap();
    assert!(
        doc[begin..end] == diffinv_cli::methods::markdown(),
        "docs/cli.md is stale: regenerate its methods section with `diffinv methods --markdown`"
    );
}

/// A `diffinv` built without MPI, started by an MPI launcher as one of several processes,
/// refuses to run (every copy would solve the whole problem into the same folder).
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_many_processes() {
    let d = problem_dir("nompi");
    let o = bin()
        .arg("run")
        .arg(d.join("problem.toml"))
        .env("OMPI_COMM_WORLD_SIZE", "4")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("built without MPI") && e.contains("--features mpi"), "{e}");
    assert!(!d.join("results").exists());
    // One process of one is a plain run.
    let o = bin()
        .arg("run")
        .arg(d.join("problem.toml"))
        .env("OMPI_COMM_WORLD_SIZE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}
