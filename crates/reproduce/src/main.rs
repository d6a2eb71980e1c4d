//! `diffinv-reproduce ns|blackhole [--quick|--full] [--resume] [--out DIR] [--seed S]`: EnKG's
//! Navier-Stokes and black-hole tables (run it through `cargo xtask reproduce`, which sets up
//! libtorch).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use diffinv_reproduce::tables::{black_hole, expected_wall_time, navier_stokes, Request};
use diffinv_reproduce::Preset;

#[derive(Parser, Debug)]
#[command(
    name = "diffinv-reproduce",
    about = "EnKG's Navier-Stokes (ns) and black-hole (blackhole) tables"
)]
struct Cli {
    /// Tables: ns, blackhole.
    #[arg(required = true)]
    tables: Vec<String>,
    /// Quick preset (the default): a few minutes for both tables on 2 cores.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Full preset: the paper's protocol scaled to a few hours on 2 cores.
    #[arg(long)]
    full: bool,
    /// Tiny preset (seconds; the smoke tests).
    #[arg(long, hide = true, conflicts_with_all = ["full", "quick"])]
    tiny: bool,
    /// Reuse finished rows and continue interrupted runs from their checkpoints.
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Methods (comma-separated; default all: EKI, Forward-GSG, Central-GSG, DPG, SCG, EnKG, CPS).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Prior folder (default fixtures/priors/ns64 or fixtures/priors/blackhole64).
    #[arg(long)]
    prior: Option<PathBuf>,
    /// Navier-Stokes test fields (default data/ns-64-re200-t5/test.npy, else the 32 held-out fields
    /// shipped in fixtures/priors/ns64/test32.npy).
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Number of test cases (default: the preset's).
    #[arg(long)]
    cases: Option<usize>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    if let Err(e) = run() {
        // One clear line (the root cause last).
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let preset = if cli.full {
        Preset::Full
    } else if cli.tiny {
        Preset::Tiny
    } else {
        Preset::Quick
    };
    for t in &cli.tables {
        if t != "ns" && t != "blackhole" {
            bail!("unknown table {t:?}; known: ns, blackhole");
        }
    }
    diffinv_reproduce::setup::validate_methods(&cli.methods)?;
    // Validate every table's inputs before running any of them.
    let mut reqs = Vec::new();
    for t in &cli.tables {
        let prior = cli.prior.clone().unwrap_or_else(|| {
            root()
                .join("fixtures/priors")
                .join(if t == "ns" { "ns64" } else { "blackhole64" })
        });
        // Default: the generated test split if `cargo xtask data ns` has run, else the 32 held-out
        // fields shipped with the ns64 prior (test-split fields 0..32 of the same generator).
        let test_data = cli.test_data.clone().unwrap_or_else(|| {
            let generated = root().join("data/ns-64-re200-t5/test.npy");
            if generated.is_file() {
                generated
            } else {
                root().join("fixtures/priors/ns64/test32.npy")
            }
        });
        let req = Request {
            preset,
            out: cli.out.clone(),
            seed: cli.seed,
            resume: cli.resume,
            methods: cli.methods.clone(),
            prior,
            test_data,
            cases: cli.cases,
        };
        diffinv_reproduce::setup::PriorSpec::read(&req.prior)?;
        if t == "ns" && !req.test_data.is_file() {
            bail!("missing test data {} (generate it with `cargo xtask data ns`, or pass --test-data)", req.test_data.display());
        }
        reqs.push((t.clone(), req));
    }
    for (t, req) in &reqs {
        eprintln!(
            "diffinv-reproduce: {t} ({} preset, seed {}) into {}; expected wall time on 2 cores: {}{}",
            preset.name(),
            req.seed,
            req.out.display(),
            expected_wall_time(t, preset),
            if req.resume { " (resuming: finished rows are reused)" } else { "" }
        );
        let t0 = std::time::Instant::now();
        let table = if t == "ns" {
            navier_stokes(req)?
        } else {
            black_hole(req)?
        };
        println!(
            "\n## {t} ({}, {:.0} s)\n\n{}",
            preset.name(),
            t0.elapsed().as_secs_f64(),
            table.to_markdown()
        );
        println!(
            "written: {0}/{t}.csv, {0}/{t}.md, {0}/{t}.png, {0}/{t}_misfit.png",
            req.out.display()
        );
    }
    Ok(())
}
