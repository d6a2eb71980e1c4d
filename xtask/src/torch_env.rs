//! Finding (and, once, installing) libtorch for tch.
//!
//! Order:
//! 1. `LIBTORCH` set by the user: a libtorch folder (with `include/` and `lib/`), used as is.
//! 2. `LIBTORCH_USE_PYTORCH=1` set by the user: the `python3` on `PATH` has torch; used as is.
//! 3. Otherwise a virtual environment with `torch==2.11.0` (the version tch 0.24 is built
//!    against), created once in a per-user cache folder outside the repository:
//!    `$DIFFINV_CACHE`, else `$XDG_CACHE_HOME/diffinv`, else `~/.cache/diffinv`.
//!
//! The inner cargo command then runs with the variables tch needs (`LIBTORCH_USE_PYTORCH=1`
//! and the venv first on `PATH`) and with `torch/lib` on `LD_LIBRARY_PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The torch version tch 0.24 is built against.
pub const TORCH_VERSION: &str = "2.11.0";

/// Environment for commands that build or run against libtorch.
#[derive(Debug, Clone)]
pub struct TorchEnv {
    /// Variables to set on child processes.
    pub vars: BTreeMap<String, String>,
    /// A python interpreter that has torch (for the PyTorch baselines of `cargo xtask bench`).
    pub python: PathBuf,
}

impl TorchEnv {
    /// Apply the variables to a command.
    pub fn apply(&self, cmd: &mut Command) {
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }
}

pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("DIFFINV_CACHE") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("diffinv"));
    }
    let home = std::env::var_os("HOME")
        .context("neither DIFFINV_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("diffinv"))
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python3")
}

/// Ask `python` where torch lives and which version it is: `(torch_dir, version)`.
fn probe_torch(python: &Path) -> Option<(PathBuf, String)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import torch,os;print(os.path.dirname(torch.__file__));print(torch.__version__)",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut lines = s.lines();
    let dir = PathBuf::from(lines.next()?.trim());
    let version = lines.next()?.trim().to_string();
    Some((dir, version))
}

fn prepend_path(var: &str, dir: &Path) -> String {
    match std::env::var(var) {
        Ok(old) if !old.is_empty() => format!("{}:{old}", dir.display()),
        _ => dir.display().to_string(),
    }
}

/// Locate or install libtorch, printing what it does. A second call with a ready cache
/// returns in well under a second (a stamp file, no python start-up).
pub fn ensure() -> Result<TorchEnv> {
    let mut vars = BTreeMap::new();
    if let Ok(lt) = std::env::var("LIBTORCH") {
        let lib = PathBuf::from(&lt).join("lib");
        eprintln!("xtask: using LIBTORCH={lt}");
        vars.insert(
            "LD_LIBRARY_PATH".into(),
            prepend_path("LD_LIBRARY_PATH", &lib),
        );
        // A python for the benchmark baselines: whatever python3 is on PATH.
        return Ok(TorchEnv {
            vars,
            python: PathBuf::from("python3"),
        });
    }
    if std::env::var("LIBTORCH_USE_PYTORCH").as_deref() == Ok("1") {
        let python = PathBuf::from("python3");
        let (dir, version) = probe_torch(&python)
            .context("LIBTORCH_USE_PYTORCH=1 but `python3 -c 'import torch'` fails")?;
        eprintln!(
            "xtask: using the python3 on PATH (torch {version} in {})",
            dir.display()
        );
        vars.insert(
            "LD_LIBRARY_PATH".into(),
            prepend_path("LD_LIBRARY_PATH", &dir.join("lib")),
        );
        return Ok(TorchEnv { vars, python });
    }

    let venv = cache_dir()?.join(format!("venv-torch-{TORCH_VERSION}"));
    let python = venv_python(&venv);
    // Fast path: a stamp written after the last successful probe, checked against the files it
    // names, so a second run costs no python start-up (well under a second).
    let stamp = venv.join(STAMP);
    if let Some(dir) = read_stamp(&stamp) {
        if python.exists() && dir.join("lib").join("libtorch_cpu.so").exists() {
            eprintln!("xtask: libtorch {TORCH_VERSION} from {}", dir.display());
            return Ok(venv_env(&venv, &dir, python));
        }
    }
    let ready = match probe_torch(&python) {
        Some((_, v)) => v.split('+').next() == Some(TORCH_VERSION),
        None => false,
    };
    if !ready {
        install(&venv)?;
    }
    let (dir, version) = probe_torch(&python)
        .with_context(|| format!("torch is not importable from {}", python.display()))?;
    if version.split('+').next() != Some(TORCH_VERSION) {
        bail!(
            "{} has torch {version}, expected {TORCH_VERSION}",
            python.display()
        );
    }
    eprintln!("xtask: libtorch {version} from {}", dir.display());
    // Best effort: without the stamp the next run just probes again.
    let _ = std::fs::write(&stamp, format!("{TORCH_VERSION}\n{}\n", dir.display()));
    Ok(venv_env(&venv, &dir, python))
}

/// The Python packages the tests use besides torch, pinned: numpy (the simulator workers'
/// helper `diffinv_worker` and the Python package's arrays), pytest (the Python package's test
/// suite), maturin (builds the Python package) and lmdb (the EnKG reference's Navier-Stokes test
/// set is an LMDB folder: tools/convert_ns_testdata.py reads it, its test writes a small one).
pub const TEST_PACKAGES: &[&str] = &["numpy==2.3.5", "pytest==8.4.2", "maturin==1.9.6", "lmdb==2.3.0"];

/// Install [`TEST_PACKAGES`] into the cached virtual environment of `env` when they are missing
/// (once; a stamp records it). Where the user brought their own torch (`LIBTORCH`,
/// `LIBTORCH_USE_PYTORCH=1`) nothing is installed: their `python3` is used as it is.
pub fn ensure_test_packages(env: &TorchEnv) -> Result<()> {
    let Some(venv) = env.python.parent().and_then(Path::parent) else {
        return Ok(());
    };
    if !venv.join("pyvenv.cfg").exists() {
        return Ok(());
    }
    let stamp = venv.join("diffinv-test-packages");
    let want = TEST_PACKAGES.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: installing {} into {}", TEST_PACKAGES.join(" "), venv.display());
    let st = Command::new(&env.python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"])
        .args(TEST_PACKAGES)
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip install {} failed", TEST_PACKAGES.join(" "));
    }
    let _ = std::fs::write(&stamp, want);
    Ok(())
}

/// Name of the stamp file inside the virtual environment.
const STAMP: &str = "diffinv-torch-ready";

/// The torch folder recorded in a stamp, if the stamp is for [`TORCH_VERSION`].
fn read_stamp(stamp: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(stamp).ok()?;
    let mut lines = text.lines();
    if lines.next()? != TORCH_VERSION {
        return None;
    }
    Some(PathBuf::from(lines.next()?))
}

/// The variables for the cached virtual environment with torch in `dir`.
fn venv_env(venv: &Path, dir: &Path, python: PathBuf) -> TorchEnv {
    let mut vars = BTreeMap::new();
    vars.insert("LIBTORCH_USE_PYTORCH".into(), "1".into());
    vars.insert("PATH".into(), prepend_path("PATH", &venv.join("bin")));
    vars.insert(
        "LD_LIBRARY_PATH".into(),
        prepend_path("LD_LIBRARY_PATH", &dir.join("lib")),
    );
    vars.insert("DIFFINV_PYTHON".into(), python.display().to_string());
    TorchEnv { vars, python }
}

fn install(venv: &Path) -> Result<()> {
    let t0 = Instant::now();
    eprintln!(
        "xtask: installing torch=={TORCH_VERSION} into {} (once; about 5 GB with its CUDA libraries, a few minutes)",
        venv.display()
    );
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if !venv_python(venv).exists() {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .context("running `python3 -m venv` (is python3 installed?)")?;
        if !st.success() {
            bail!("`python3 -m venv {}` failed", venv.display());
        }
    }
    let st = Command::new(venv_python(venv))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
        ])
        .arg(format!("torch=={TORCH_VERSION}"))
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip install torch=={TORCH_VERSION} failed; set LIBTORCH or LIBTORCH_USE_PYTORCH=1 to use an existing installation");
    }
    eprintln!(
        "xtask: torch installed in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
