//! `cargo xtask`: the commands a user types (see README.md).
//!
//! - `cargo xtask reproduce [TABLE ...] [--quick | --full] [--out DIR] [--seed S]`
//! - `cargo xtask test [-- CARGO TEST ARGS]`: cargo tests, doc tests, the Python package's pytest
//!   suite, the quoted tables, clippy
//! - `cargo xtask test-python`: only the Python package's pytest suite
//! - `cargo xtask check-tables [--run]`: the tables quoted in docs/ equal the code's
//! - `cargo xtask bench NAME`
//! - `cargo xtask data NAME`
//! - `cargo xtask train CONFIG [--max-steps N]`
//! - `cargo xtask torch-env`: print the libtorch environment (bootstrapping it if needed).
//! - `cargo xtask install-cli [--no-torch] [--mpi] [--root DIR]`: install the `diffinv` program.

mod bench;
mod check_tables;
mod data;
mod mpi;
mod plot;
mod python;
mod report;
mod reproduce;
mod torch_env;
mod train;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "diffinv tasks: reproduce tables, test, bench, data, train"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Reproduce the papers' tables (all tables in their quick preset when none is named).
    Reproduce(reproduce::ReproduceArgs),
    /// Check that the tables quoted in docs/ equal what the code produces.
    CheckTables(check_tables::CheckArgs),
    /// Run the whole test suite with libtorch bootstrapped.
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Only the Python package's pytest suite (builds the workspace's tests first).
    TestPython,
    /// Side-by-side performance comparison against PyTorch; prints one JSON line last.
    Bench(bench::BenchArgs),
    /// Generate a data set.
    Data(data::DataArgs),
    /// Train a diffusion prior from a TOML config (resumes from its last checkpoint).
    Train(train::TrainArgs),
    /// Print the libtorch environment, installing it on first use.
    TorchEnv,
    /// Install the `diffinv` program (with libtorch for neural priors, found at run time
    /// through the path recorded in the binary), like `cargo install`.
    InstallCli {
        /// Without libtorch: analytic priors with any forward model (a plain `cargo install`).
        #[arg(long)]
        no_torch: bool,
        /// Install into DIR/bin instead of cargo's default (~/.cargo/bin).
        #[arg(long)]
        root: Option<PathBuf>,
        /// With MPI (`mpirun -n 4 diffinv run ...`; docs/distributed.md): needs an MPI library.
        #[arg(long)]
        mpi: bool,
    },
}

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(workspace_root());
    c
}

/// The features of the workspace's test and lint builds: the neural priors of the `diffinv`
/// program and of the Python package (the rest of the workspace enables `diffinv-priors/torch`
/// already). The Python package's pytest suite runs on the extension this very build produces
/// (python.rs), so every build of it here must use the same features.
/// With Open MPI present (installed by [`mpi::ensure`] when possible) the program's `mpi`
/// feature too. Decided once per process.
pub fn test_features() -> Vec<String> {
    static FEATURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let f = FEATURES.get_or_init(|| {
        if mpi::ensure() {
            "diffinv-cli/torch diffinv-python/torch diffinv-cli/mpi".into()
        } else {
            "diffinv-cli/torch diffinv-python/torch".into()
        }
    });
    vec!["--features".into(), f.clone()]
}

fn run_tests(extra: &[String]) -> Result<()> {
    let env = torch_env::ensure()?;
    torch_env::ensure_test_packages(&env)?;
    // The `diffinv` program and the Python package are tested in their full builds (neural
    // priors on libtorch, and MPI where Open MPI is installed or can be); the program's build
    // without either is checked below.
    let features = test_features();
    let mut c = cargo();
    c.args(["test", "--workspace", "--all-targets"]).args(&features);
    c.args(extra);
    env.apply(&mut c);
    // Tests that compare against PyTorch skip themselves when DIFFINV_PYTHON is unset (a plain
    // `cargo test`); under xtask they must run.
    c.env("DIFFINV_REQUIRE_PYTHON", "1");
    eprintln!(
        "xtask: cargo test --workspace --all-targets {} {}",
        features.join(" "),
        extra.join(" ")
    );
    let st = c.status().context("running cargo test")?;
    if !st.success() {
        bail!("cargo test failed");
    }
    // A user without libtorch builds the program without the `torch` feature.
    let mut c = cargo();
    c.args(["check", "-p", "diffinv-cli", "--all-targets"]);
    eprintln!("xtask: cargo check -p diffinv-cli --all-targets (without libtorch and MPI)");
    let st = c.status().context("running cargo check")?;
    if !st.success() {
        bail!("diffinv-cli does not build without libtorch");
    }
    let mut c = cargo();
    c.args(["test", "--workspace", "--doc"]).args(test_features());
    env.apply(&mut c);
    eprintln!("xtask: cargo test --workspace --doc");
    let st = c.status().context("running cargo test --doc")?;
    if !st.success() {
        bail!("doc tests failed");
    }
    // The Python package (crates/python): built into the test environment, then its pytest
    // suite.
    python::run_tests(&env)?;
    // The tables quoted in docs/ that fit this command's time budget (the Navier-Stokes quick
    // table, about 2 minutes) must equal what the code produces; the others are checked by
    // `cargo xtask check-tables --run`.
    check_tables::run(check_tables::CheckArgs {
        run: true,
        results: PathBuf::from("results"),
        only: vec!["ns:quick".into()],
        dev: true,
    })?;
    run_clippy(&env)
}

/// `cargo clippy --workspace --all-targets -- -D warnings`: the workspace stays lint-clean.
/// Skipped with a message where the toolchain has no clippy component.
fn run_clippy(env: &torch_env::TorchEnv) -> Result<()> {
    let has_clippy = cargo()
        .args(["clippy", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_clippy {
        eprintln!(
            "xtask: clippy is not installed (rustup component add clippy): lint step skipped"
        );
        return Ok(());
    }
    let mut c = cargo();
    c.args(["clippy", "--workspace", "--all-targets"])
        .args(test_features())
        .args(["--", "-D", "warnings"]);
    env.apply(&mut c);
    eprintln!(
        "xtask: cargo clippy --workspace --all-targets {} -- -D warnings",
        test_features().join(" ")
    );
    let st = c.status().context("running cargo clippy")?;
    if !st.success() {
        bail!("clippy found warnings");
    }
    Ok(())
}

/// `cargo install --path crates/cli`, with the `torch` feature and libtorch's folder recorded
/// as the binary's run-time search path (so `diffinv` needs no LD_LIBRARY_PATH) unless
/// `no_torch`.
fn install_cli(no_torch: bool, root: Option<PathBuf>, mpi: bool) -> Result<()> {
    let mut c = cargo();
    c.args(["install", "--path", "crates/cli", "--locked"]);
    if let Some(r) = &root {
        c.arg("--root").arg(r);
    }
    if mpi {
        if !mpi::present() {
            bail!("--mpi needs an MPI library: install {} (apt-get)", mpi::PACKAGES.join(" "));
        }
        c.args(["--features", "mpi"]);
    }
    if !no_torch {
        let env = torch_env::ensure()?;
        env.apply(&mut c);
        c.args(["--features", "torch"]);
        let lib = env
            .vars
            .get("LD_LIBRARY_PATH")
            .and_then(|p| p.split(':').next())
            .context("no libtorch folder in the torch environment")?
            .to_string();
        let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        flags.push_str(&format!(" -C link-arg=-Wl,-rpath,{lib}"));
        c.env("RUSTFLAGS", flags.trim());
    }
    eprintln!(
        "xtask: cargo install --path crates/cli{}{}",
        if no_torch { "" } else { " --features torch" },
        if mpi { " --features mpi" } else { "" }
    );
    let st = c.status().context("running cargo install")?;
    if !st.success() {
        bail!("cargo install failed");
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Reproduce(args) => reproduce::run(args),
        Cmd::Test { args } => run_tests(&args),
        Cmd::TestPython => {
            let env = torch_env::ensure()?;
            torch_env::ensure_test_packages(&env)?;
            python::run_tests(&env)
        }
        Cmd::CheckTables(args) => check_tables::run(args),
        Cmd::Bench(args) => {
            // The PyTorch side of every comparison runs in the bootstrapped environment.
            let env = torch_env::ensure()?;
            for (k, v) in &env.vars {
                std::env::set_var(k, v);
            }
            bench::run(args)
        }
        Cmd::Data(args) => data::run(args),
        Cmd::Train(args) => train::run(args),
        Cmd::InstallCli { no_torch, root, mpi } => install_cli(no_torch, root, mpi),
        Cmd::TorchEnv => {
            let env = torch_env::ensure()?;
            for (k, v) in &env.vars {
                println!("export {k}={v:?}");
            }
            Ok(())
        }
    }
}
