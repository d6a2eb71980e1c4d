//! `cargo xtask reproduce [TABLE ...] [--quick | --full] [--resume] [--out DIR] [--seed S]`,
//! and `cargo xtask reproduce ns --paper --prior PRIOR.pt --test-data FIELDS.npy [--device D]`.
//!
//! Every table runs in the `diffinv-reproduce` binary (crates/reproduce, the one table runner),
//! spawned with the bootstrapped libtorch environment as `cargo xtask train` spawns
//! `diffinv-train`, so that xtask holds no table code and never links tch.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `cargo xtask reproduce`.
#[derive(Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// Tables to reproduce (default: all).
    pub tables: Vec<String>,
    /// Quick preset (the default).
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// Full preset (hours on a 2-core machine; see docs/reproduction.md).
    #[arg(long)]
    pub full: bool,
    /// The paper's Navier-Stokes protocol at its own scale, for a GPU (ns only; needs --prior
    /// and --test-data; docs/reproduction.md, "The paper's Navier-Stokes table on your GPU").
    #[arg(long, conflicts_with_all = ["quick", "full"])]
    pub paper: bool,
    /// Prior: a prior folder, or a TorchScript file (ns: tools/export_ns_checkpoint.py).
    #[arg(long)]
    pub prior: Option<PathBuf>,
    /// Navier-Stokes test fields, .npy (N, H, H) (tools/convert_ns_testdata.py).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Where the neural prior runs: auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Reuse finished rows and continue interrupted runs from their checkpoints.
    #[arg(long)]
    pub resume: bool,
    /// Options passed on to `diffinv-reproduce` after `--`, e.g.
    /// `-- --methods DPS,DPS-MO --tasks sr4 --prior ffhq.pt --prior-kind vp-eps --image-shape
    /// 3,256,256 --test-images faces.npy --lpips lpips.pt`.
    #[arg(last = true)]
    pub extra: Vec<String>,
    /// Build the runner in the dev profile instead of release (what `cargo xtask test` uses for
    /// its table check: the binary its tests already built).
    #[arg(long, hide = true)]
    pub dev: bool,
}

/// Every table this command knows.
pub const TABLES: &[&str] = &["gmm", "ns", "blackhole", "imaging"];

/// Run the requested tables.
pub fn run(args: ReproduceArgs) -> Result<()> {
    let tables: Vec<String> = if args.tables.is_empty() {
        TABLES.iter().map(|s| s.to_string()).collect()
    } else {
        args.tables.clone()
    };
    for t in &tables {
        if !TABLES.contains(&t.as_str()) {
            bail!("unknown table {t:?}; known: {}", TABLES.join(", "));
        }
    }
    if args.paper && tables.iter().any(|t| t != "ns") {
        bail!("--paper is the Navier-Stokes table's preset: run `cargo xtask reproduce ns --paper` on its own");
    }
    let preset = if args.paper {
        "paper"
    } else if args.full {
        "full"
    } else {
        "quick"
    };
    if args.full {
        for t in &tables {
            // Measured on a 2-core machine (ns, blackhole: both presets; imaging, gmm full: extrapolated); see docs/reproduction.md.
            let expected = match t.as_str() {
                "gmm" => "about an hour",
                "ns" => "about 4 1/2 hours (128 x 128; the runner prints its own estimate)",
                "blackhole" => "about 8 minutes",
                "imaging" => "about 3 hours",
                _ => "unknown",
            };
            eprintln!("xtask: the full preset of {t} takes {expected} on 2 cores; finished rows are kept, so it can be stopped and resumed");
        }
    }
    for t in &tables {
        eprintln!(
            "xtask: reproducing {t} ({preset} preset, seed {}) into {}",
            args.seed,
            args.out.display()
        );
        spawn(t, &args)?;
    }
    Ok(())
}

/// Run `diffinv-reproduce TABLE` (release build) in the bootstrapped libtorch environment; it
/// prints its own table and writes DIR/TABLE.{csv,md,png}.
fn spawn(table: &str, args: &ReproduceArgs) -> Result<()> {
    use anyhow::Context;
    let env = crate::torch_env::ensure()?;
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir()?.join(&args.out)
    };
    let mut c = crate::cargo();
    c.args(["run", "--quiet"]);
    if !args.dev {
        c.arg("--release");
    }
    c.args(["-p", "diffinv-reproduce", "--", table]);
    c.arg(if args.paper {
        "--paper"
    } else if args.full {
        "--full"
    } else {
        "--quick"
    });
    let abs = |p: &PathBuf| -> Result<PathBuf> {
        Ok(if p.is_absolute() { p.clone() } else { std::env::current_dir()?.join(p) })
    };
    if let Some(p) = &args.prior {
        c.arg("--prior").arg(abs(p)?);
    }
    if let Some(p) = &args.test_data {
        c.arg("--test-data").arg(abs(p)?);
    }
    if let Some(d) = &args.device {
        c.args(["--device", d]);
    }
    if args.resume {
        c.arg("--resume");
    }
    c.arg("--out")
        .arg(&out)
        .args(["--seed", &args.seed.to_string()])
        .args(&args.extra);
    env.apply(&mut c);
    let st = c.status().context("running diffinv-reproduce")?;
    if !st.success() {
        bail!("reproducing {table} failed");
    }
    Ok(())
}
