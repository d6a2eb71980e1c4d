//! The Python package (`crates/python`) under `cargo xtask`: its pytest suite
//! (`cargo xtask test`, `cargo xtask test-python`) and `cargo xtask bench python`.
//!
//! The extension module is the `cdylib` that the workspace's own test build produces
//! (`cargo test --workspace --all-targets` with [`crate::test_features()`], dev profile), staged
//! with the package's Python sources in `target/python/diffinv/` and put on `PYTHONPATH`: no
//! second build and nothing installed into the environment. Building the package alone (what
//! `maturin develop` does) would resolve features for `diffinv-python` alone, which differ from
//! the workspace's unified set (serde, syn, ndarray, rayon, tch, ...), and so recompile some 60
//! crates, several minutes on two cores; the staged module costs nothing beyond the workspace
//! build. The cdylib links libpython (pyo3's `extension-module` feature is maturin's only), which
//! is the interpreter's own shared library when python is built with `--enable-shared` (the case
//! of the cached environment); for a statically linked interpreter the package is built and
//! installed by `maturin develop` instead. `pip install ./crates/python` (maturin, release) is
//! the user's path (docs/python.md).
//!
//! The environment needs numpy and pytest (installed in the cached virtual environment by
//! [`torch_env::ensure_test_packages`]); a python the user brought (`LIBTORCH`,
//! `LIBTORCH_USE_PYTORCH=1`) is used as it is, and the step is skipped with one line when it
//! lacks them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::torch_env::{self, TorchEnv};

/// The workspace's target folder (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                crate::workspace_root().join(d)
            }
        }
        _ => crate::workspace_root().join("target"),
    }
}

/// Whether xtask made this environment (the cached venv) rather than the user.
fn is_cached_env(env: &TorchEnv) -> bool {
    env.vars.contains_key("DIFFINV_PYTHON")
}

/// Run `python -c code` in `env`, returning its trimmed stdout when it succeeds.
fn python_says(env: &TorchEnv, code: &str) -> Option<String> {
    let mut c = Command::new(&env.python);
    c.args(["-c", code]);
    env.apply(&mut c);
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Python package's files next to a compiled module: `dir/diffinv/`.
fn stage_sources(dir: &Path) -> Result<PathBuf> {
    let pkg = dir.join("diffinv");
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    let src = crate::workspace_root().join("crates/python/python/diffinv");
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let p = entry?.path();
        let keep = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("py" | "pyi" | "typed")
        );
        if keep {
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, pkg.join(name))
                    .with_context(|| format!("copying {}", p.display()))?;
            }
        }
    }
    Ok(pkg)
}

/// Build (the workspace's test build, a no-op right after `cargo test`) and stage the package:
/// the directory to put on `PYTHONPATH`, or `None` after one printed line when the user's own
/// python cannot run it.
pub fn stage(env: &TorchEnv) -> Result<Option<PathBuf>> {
    let python = env.python.display().to_string();
    if python_says(env, "import numpy, pytest").is_none() {
        if is_cached_env(env) {
            bail!("{python} lacks numpy or pytest");
        }
        eprintln!(
            "xtask: {python} lacks numpy or pytest: Python package tests skipped (pip install {})",
            torch_env::TEST_PACKAGES.join(" ")
        );
        return Ok(None);
    }
    let shared = python_says(env, "import sysconfig; print(sysconfig.get_config_var('Py_ENABLE_SHARED') or 0)");
    if shared.as_deref() != Some("1") {
        return maturin_develop(env);
    }
    let lib = built_extension(env)?;
    let suffix = python_says(env, "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
        .context("asking python for its extension suffix")?;
    let dir = target_dir().join("python");
    let pkg = stage_sources(&dir)?;
    let dest = pkg.join(format!("_diffinv{suffix}"));
    std::fs::copy(&lib, &dest).with_context(|| format!("copying {} to {}", lib.display(), dest.display()))?;
    Ok(Some(dir))
}

/// The extension module (`lib_diffinv.so`) of the workspace's test build: `cargo test
/// --workspace --all-targets --no-run` (a no-op right after `cargo test`), its path read from
/// cargo's artifact messages (a cdylib built as a dependency stays in `deps/`).
fn built_extension(env: &TorchEnv) -> Result<PathBuf> {
    let mut c = crate::cargo();
    c.args(["test", "--workspace", "--all-targets", "--no-run", "--quiet"])
        .args(["--message-format", "json-render-diagnostics"])
        .args(crate::test_features())
        .stderr(std::process::Stdio::inherit());
    env.apply(&mut c);
    let out = c.output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the workspace (with the Python package's extension) failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let messages: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let lib = messages
        .into_iter()
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "_diffinv"
                && m["profile"]["test"] == false
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .map(|f| f.iter().filter_map(|v| v.as_str().map(PathBuf::from)).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .find(|p| p.extension().is_some_and(|e| e == "so"))
        .context("cargo built no lib_diffinv.so (crates/python's cdylib)")?;
    if !lib.is_file() {
        bail!("{} does not exist", lib.display());
    }
    Ok(lib)
}

/// For an interpreter without a shared libpython: build and install the package with
/// `maturin develop` (dev profile, feature `torch`) into its virtual environment.
fn maturin_develop(env: &TorchEnv) -> Result<Option<PathBuf>> {
    let python = env.python.display().to_string();
    let venv = python_says(env, "import sys; print(sys.prefix if sys.prefix != sys.base_prefix else '')")
        .filter(|p| !p.is_empty());
    let (Some(venv), true) = (venv, python_says(env, "import maturin").is_some()) else {
        eprintln!(
            "xtask: {python} has no shared libpython and is not a virtual environment with maturin: Python package tests skipped"
        );
        return Ok(None);
    };
    let t0 = Instant::now();
    let mut c = Command::new(&env.python);
    c.current_dir(crate::workspace_root())
        .args(["-m", "maturin", "develop", "--manifest-path", "crates/python/Cargo.toml", "--features", "torch"])
        .env("VIRTUAL_ENV", &venv)
        .env("CARGO_TARGET_DIR", target_dir());
    env.apply(&mut c);
    eprintln!("xtask: maturin develop (crates/python, dev profile, feature torch) into {venv}");
    let st = c.status().context("running maturin develop")?;
    if !st.success() {
        bail!("maturin develop of crates/python failed");
    }
    eprintln!("xtask: Python package built in {:.0} s", t0.elapsed().as_secs_f64());
    // Installed into the environment: nothing to add to PYTHONPATH.
    Ok(Some(PathBuf::new()))
}

/// `PYTHONPATH` with `dir` first (unchanged for an empty `dir`).
pub fn pythonpath(dir: &Path) -> String {
    let old = std::env::var("PYTHONPATH").unwrap_or_default();
    match (dir.as_os_str().is_empty(), old.is_empty()) {
        (true, _) => old,
        (false, true) => dir.display().to_string(),
        (false, false) => format!("{}:{old}", dir.display()),
    }
}

/// The pytest suite of the Python package (`crates/python/tests`), with nothing skipped.
pub fn run_tests(env: &TorchEnv) -> Result<()> {
    let t0 = Instant::now();
    let Some(dir) = stage(env)? else {
        return Ok(());
    };
    // The Rust side of the bit-identity tests, an example of crates/python: `cargo test` builds
    // examples only as test harnesses, so build them as programs, with the test build's
    // features (nothing else is rebuilt).
    let mut c = crate::cargo();
    c.args(["build", "--workspace", "--examples", "--quiet"])
        .args(crate::test_features());
    env.apply(&mut c);
    if !c.status().context("running cargo build --examples")?.success() {
        bail!("building the workspace's examples failed");
    }
    let reference = target_dir().join("debug").join("examples").join("rust_reference");
    if !reference.is_file() {
        bail!("{} was not built", reference.display());
    }
    let mut c = Command::new(&env.python);
    c.current_dir(crate::workspace_root())
        .args(["-m", "pytest", "crates/python/tests", "-q", "-p", "no:cacheprovider"]);
    env.apply(&mut c);
    c.env("PYTHONPATH", pythonpath(&dir))
        .env("DIFFINV_RUST_REFERENCE", &reference)
        .env("DIFFINV_REQUIRE_PYTHON", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    eprintln!("xtask: python -m pytest crates/python/tests -q");
    let st = c.status().context("running pytest")?;
    if !st.success() {
        bail!("the Python package's tests failed");
    }
    eprintln!("xtask: Python package tests took {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}
