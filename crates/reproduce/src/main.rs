//! `diffinv-reproduce gmm|ns|blackhole|imaging [--quick|--full|--paper] [--resume] [--out DIR] [--seed S] [--device D]`:
//! the one table runner: the Gaussian-mixture table, EnKG's Navier-Stokes and black-hole tables
//! and the imaging table (run it through `cargo xtask reproduce`, which sets up libtorch).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use diffinv_priors::neural::{
    DeviceChoice, NeuralDenoiser, ScriptedEdm, ScriptedVpEpsilon, TorchDenoise,
};
use diffinv_reproduce::imaging::{ImagingRequest, Task, TASKS};
use diffinv_reproduce::tables::{black_hole, expected_wall_time, Request};
use diffinv_reproduce::setup::resolve_device;
use diffinv_reproduce::Preset;

#[derive(Parser, Debug)]
#[command(
    name = "diffinv-reproduce",
    about = "The Gaussian-mixture (gmm), EnKG's Navier-Stokes (ns) and black-hole (blackhole) tables, and the imaging table (imaging)"
)]
struct Cli {
    /// Tables: gmm, ns, blackhole, imaging.
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
    /// The paper's Navier-Stokes protocol at its own scale (ns only; N = 2048, 80 levels, 2
    /// updates, clean estimates of up to 20 steps, 10 fields, noise 0, 1, 2): needs --prior
    /// FILE.pt and --test-data FILE.npy, and a CUDA device.
    #[arg(long, conflicts_with_all = ["full", "quick", "tiny"])]
    paper: bool,
    /// Where the neural prior runs: auto (the first CUDA device if libtorch sees one, else the
    /// CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Reuse finished rows and continue interrupted runs from their checkpoints.
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Methods (comma-separated; default all: EKI, Forward-GSG, Central-GSG, DPG, SCG, EnKG, CPS;
    /// for imaging: DPS, DPS-100, DPS-MO, MCG, PiGDM, DDS, DAPS, DiffPIR, RED-diff, RED-diff-100,
    /// RED-diff-MO, Tikhonov, TV, PnP-ADMM, RED, EnKG, CPS).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Prior folder (default fixtures/priors/ns64, ns128 for `ns --full`, blackhole64 or natural64), or a TorchScript
    /// file (`.pt`): for imaging exported with tools/export_torchscript.py (see --prior-kind,
    /// --image-shape, --test-images), for ns with tools/export_ns_checkpoint.py (the reference's
    /// EDM network `D(x, sigma)` on vorticity / 10).
    #[arg(long)]
    prior: Option<PathBuf>,
    /// Imaging with a TorchScript prior: `edm` (forward(x, sigma) -> D) or `vp-eps` (DDPM
    /// epsilon network on the linear beta schedule, e.g. the DPS FFHQ checkpoint).
    #[arg(long, default_value = "edm")]
    prior_kind: String,
    /// Imaging with a TorchScript prior: image shape C,H,W (default 3,256,256).
    #[arg(long, value_delimiter = ',')]
    image_shape: Vec<usize>,
    /// Imaging test images, `.npy` `(N, C, H, W)` or `(N, H, W)` in [0, 1] (default: the 32
    /// held-out patches shipped with fixtures/priors/natural64).
    #[arg(long)]
    test_images: Option<PathBuf>,
    /// Imaging tasks (comma-separated; default all: sr4, box, random, gblur, mblur, phase, hdr).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// LPIPS network exported to TorchScript (`forward(in0, in1)` on [-1, 1] RGB images), adds
    /// an `lpips` column to the imaging table.
    #[arg(long)]
    lpips: Option<PathBuf>,
    /// Navier-Stokes test fields, `.npy` `(N, H, H)` or `(N, 1, H, H)` vorticity (default
    /// data/ns-64from128-re200-t5/test.npy, `--full`: data/ns-128-re200-t5/test.npy; else the
    /// 32 held-out fields shipped with the prior, fixtures/priors/{ns64,ns128}/test32.npy;
    /// tools/convert_ns_testdata.py converts the reference's).
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Number of test cases (default: the preset's).
    #[arg(long)]
    cases: Option<usize>,
    /// ns/blackhole: ensemble size of EKI and EnKG and candidate/query count of the others
    /// (default: the preset's).
    #[arg(long)]
    particles: Option<usize>,
    /// Read the table's rows from this preset file instead of the embedded
    /// configs/tables/TABLE-PRESET.toml (one table per run; for ablations: copy the preset,
    /// change a row's `config`, pass it here with --methods and its own --out).
    #[arg(long)]
    preset_file: Option<PathBuf>,
    /// ns only: print the expected wall time on this machine (each method's evaluation counts
    /// from a dry run of its schedule, times the prior and the forward model timed on a batch of
    /// the test fields) and exit without running. The `full` and `paper` presets print it before
    /// every run anyway.
    #[arg(long)]
    estimate: bool,
}

/// `--paper`: the Navier-Stokes table alone, with the user's prior and test fields, on a CUDA
/// device (or the CPU when asked for explicitly, with a warning).
fn check_paper(cli: &Cli, device: DeviceChoice) -> Result<()> {
    if cli.tables.iter().any(|t| t != "ns") {
        bail!("--paper is the Navier-Stokes table's preset: run `ns --paper` on its own");
    }
    if cli.prior.is_none() || cli.test_data.is_none() {
        bail!("--paper needs --prior FILE.pt (tools/export_ns_checkpoint.py) and --test-data FILE.npy (tools/convert_ns_testdata.py)");
    }
    match device {
        DeviceChoice::Auto => {
            diffinv_reproduce::setup::load_cuda_backend();
            if !tch::Cuda::is_available() {
                bail!("--paper runs the paper's protocol (N = 2048, 80 levels, 10 fields x 3 noise levels) and needs a CUDA device, but libtorch sees none (a CPU-only libtorch, no GPU or no driver); run it where `nvidia-smi` lists a GPU with a CUDA build of libtorch (docs/reproduction.md), or pass --device cpu to run it on the CPU anyway");
            }
        }
        DeviceChoice::Cpu => eprintln!(
            "warning: --paper on the CPU (--device cpu): the paper's protocol is sized for a GPU; see the estimate below before letting it run"
        ),
        DeviceChoice::Cuda(_) => {
            resolve_device(device)?;
        }
    }
    Ok(())
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
    let preset = if cli.paper {
        Preset::Paper
    } else if cli.full {
        Preset::Full
    } else if cli.tiny {
        Preset::Tiny
    } else {
        Preset::Quick
    };
    for t in &cli.tables {
        if !["gmm", "ns", "blackhole", "imaging"].contains(&t.as_str()) {
            bail!("unknown table {t:?}; known: gmm, ns, blackhole, imaging");
        }
    }
    if cli.cases == Some(0) {
        bail!("--cases must be at least 1");
    }
    if cli.particles == Some(0) {
        bail!("--particles must be at least 1");
    }
    if cli.estimate && cli.tables.iter().any(|t| t != "ns") {
        bail!("--estimate is the Navier-Stokes table's: run `ns --estimate` on its own");
    }
    if let Some(path) = &cli.preset_file {
        if cli.tables.len() != 1 {
            bail!("--preset-file replaces one table's preset: name exactly one table");
        }
        diffinv_reproduce::presets::TablePreset::use_file(&cli.tables[0], preset, path)?;
    }
    let device: DeviceChoice = cli
        .device
        .parse()
        .map_err(|_| anyhow::anyhow!("--device {:?} is not auto, cpu, cuda or cuda:N", cli.device))?;
    if cli.paper {
        check_paper(&cli, device)?;
    }
    let gmm = cli.tables.iter().any(|t| t == "gmm");
    if gmm {
        // Validate the preset before any table computes.
        diffinv_reproduce::presets::TablePreset::get("gmm", preset)?;
    }
    let rest: Vec<String> = cli.tables.iter().filter(|t| *t != "gmm").cloned().collect();
    if !rest.is_empty() {
        run_neural(&cli, preset, device, &rest)?;
    }
    if gmm {
        eprintln!(
            "diffinv-reproduce: gmm ({} preset, seed {}) into {}{}",
            preset.name(),
            cli.seed,
            cli.out.display(),
            if cli.resume { " (resuming: finished rows are reused)" } else { "" }
        );
        let t0 = std::time::Instant::now();
        let table = diffinv_reproduce::gmm::run(preset, &cli.out, cli.seed, cli.resume)?;
        println!(
            "\n## gmm ({}, {:.0} s)\n\n{}",
            preset.name(),
            t0.elapsed().as_secs_f64(),
            table.to_markdown()
        );
        println!("written: {0}/gmm.csv, {0}/gmm.md, {0}/gmm_d*_dy1.png", cli.out.display());
    }
    Ok(())
}

/// The tables on neural priors (libtorch): ns, blackhole, imaging.
fn run_neural(cli: &Cli, preset: Preset, device: DeviceChoice, tables: &[String]) -> Result<()> {
    if tables.iter().any(|t| t == "imaging") {
        if tables.len() > 1 && !cli.methods.is_empty() {
            bail!(
                "--methods names differ between imaging and ns/blackhole: run imaging on its own"
            );
        }
        let imaging = imaging_setup(cli, preset, device)?;
        if tables.len() == 1 {
            return run_imaging(cli, preset, imaging);
        }
        let rest: Vec<String> = tables
            .iter()
            .filter(|t| *t != "imaging")
            .cloned()
            .collect();
        run_tables(cli, preset, device, &rest)?;
        return run_imaging(cli, preset, imaging);
    }
    run_tables(cli, preset, device, tables)
}

/// The imaging table's inputs, validated before any compute.
struct ImagingSetup {
    req: ImagingRequest,
    prior: Box<dyn diffinv_priors::Denoiser>,
    shape: [usize; 3],
    shift: f64,
    scale: f64,
}

fn imaging_setup(cli: &Cli, preset: Preset, device: DeviceChoice) -> Result<ImagingSetup> {
    diffinv_reproduce::imaging::validate_methods(&cli.methods)?;
    let mut tasks = Vec::new();
    for t in &cli.tasks {
        match Task::parse(t) {
            Some(t) => tasks.push(t),
            None => bail!(
                "unknown imaging task {t:?}; known: {}",
                TASKS
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let prior_path = cli
        .prior
        .clone()
        .unwrap_or_else(|| root().join("fixtures/priors/natural64"));
    if let Some(p) = &cli.lpips {
        if !p.is_file() {
            bail!("missing LPIPS network {}", p.display());
        }
    }
    let (prior, shape, shift, scale, default_test): (
        Box<dyn diffinv_priors::Denoiser>,
        [usize; 3],
        f64,
        f64,
        Option<PathBuf>,
    ) = if prior_path.is_file() {
        // A TorchScript prior on [-1, 1] images (the EDM and DPS convention).
        let shape: [usize; 3] = match cli.image_shape.as_slice() {
            [] => [3, 256, 256],
            [c, h, w] => [*c, *h, *w],
            other => bail!("--image-shape takes C,H,W, got {other:?}"),
        };
        let s3 = [shape[0] as i64, shape[1] as i64, shape[2] as i64];
        let net: Box<dyn TorchDenoise> = match cli.prior_kind.as_str() {
            "edm" => Box::new(ScriptedEdm::load(&prior_path, s3, resolve_device(device)?)?),
            "vp-eps" => Box::new(ScriptedVpEpsilon::load_ddpm(&prior_path, s3, resolve_device(device)?)?),
            other => bail!("unknown --prior-kind {other:?}; known: edm, vp-eps"),
        };
        (
            Box::new(NeuralDenoiser::new(net, 16)?),
            shape,
            0.5,
            0.5,
            None,
        )
    } else {
        let spec = diffinv_reproduce::setup::PriorSpec::read(&prior_path)?;
        let s = spec.shape();
        let shape = [s[0], s[1], s[2]];
        let test = spec.dir.join("test32.npy");
        (
            Box::new(spec.load_on(64, resolve_device(device)?)?),
            shape,
            spec.shift,
            spec.scale,
            Some(test),
        )
    };
    let test_images = match (cli.test_images.clone(), default_test) {
        (Some(p), _) => p,
        (None, Some(p)) => p,
        (None, None) => {
            bail!("a TorchScript prior needs --test-images FILE.npy ((N, C, H, W) in [0, 1])")
        }
    };
    if !test_images.is_file() {
        bail!(
            "missing test images {} (pass --test-images)",
            test_images.display()
        );
    }
    // Read once here so that a shape mismatch fails before any compute.
    diffinv_reproduce::imaging::read_test_images(&test_images, shape)?;
    Ok(ImagingSetup {
        req: ImagingRequest {
            preset,
            out: cli.out.clone(),
            seed: cli.seed,
            resume: cli.resume,
            methods: cli.methods.clone(),
            tasks,
            test_images,
            cases: cli.cases,
            lpips: cli.lpips.clone(),
            prior_source: Some(prior_path.clone()),
        },
        prior,
        shape,
        shift,
        scale,
    })
}

fn run_imaging(_cli: &Cli, preset: Preset, s: ImagingSetup) -> Result<()> {
    eprintln!(
        "diffinv-reproduce: imaging ({} preset, seed {}) into {}; expected wall time on 2 cores: {}{}",
        preset.name(),
        s.req.seed,
        s.req.out.display(),
        diffinv_reproduce::imaging::expected_wall_time(preset),
        if s.req.resume { " (resuming: finished rows are reused)" } else { "" }
    );
    let t0 = std::time::Instant::now();
    let table =
        diffinv_reproduce::imaging::imaging(&s.req, s.prior.as_ref(), s.shape, s.shift, s.scale)?;
    println!(
        "\n## imaging ({}, {:.0} s)\n\n{}",
        preset.name(),
        t0.elapsed().as_secs_f64(),
        table.to_markdown()
    );
    println!(
        "written: {0}/imaging.csv, {0}/imaging.md, {0}/imaging_TASK.png",
        s.req.out.display()
    );
    Ok(())
}

fn run_tables(cli: &Cli, preset: Preset, device: DeviceChoice, tables: &[String]) -> Result<()> {
    use diffinv_reproduce::tables::{load_ns_prior, navier_stokes_with, read_ns_fields};
    // Validate every table's inputs (and load the Navier-Stokes prior and fields) before running
    // any of them.
    let mut reqs = Vec::new();
    for t in tables {
        // The Navier-Stokes `full` preset has the paper's shape (128 x 128 prior and fields,
        // 64 x 64 observation); the others run at 64 x 64 on fields downsampled from the
        // 128 x 128 dynamics.
        let ns_prior = if preset == Preset::Full { "ns128" } else { "ns64" };
        let prior = cli.prior.clone().unwrap_or_else(|| {
            root()
                .join("fixtures/priors")
                .join(if t == "ns" { ns_prior } else { "blackhole64" })
        });
        // Default: the generated test split if `cargo xtask data ns --res 128 --downsample 64`
        // has run, else the 32 held-out fields shipped with the prior (test-split fields 0..32
        // of the same generator).
        let test_data = cli.test_data.clone().unwrap_or_else(|| {
            let generated = root().join(if preset == Preset::Full {
                "data/ns-128-re200-t5/test.npy"
            } else {
                "data/ns-64from128-re200-t5/test.npy"
            });
            if generated.is_file() {
                generated
            } else {
                root().join("fixtures/priors").join(ns_prior).join("test32.npy")
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
            device,
            cases: cli.cases,
            particles: cli.particles,
        };
        diffinv_reproduce::tables::table_methods(t, &req)?;
        let ns = if t == "ns" {
            if !req.test_data.is_file() {
                bail!("missing test data {} (generate it with `cargo xtask data ns`, or pass --test-data)", req.test_data.display());
            }
            if !req.prior.exists() {
                return Err(diffinv_reproduce::SetupError::MissingPrior(req.prior.clone()).into());
            }
            let (res, data) = read_ns_fields(&req.test_data)?;
            let prior = load_ns_prior(&req, res)?;
            Some((res, data, prior))
        } else {
            diffinv_reproduce::setup::PriorSpec::read(&req.prior)?;
            None
        };
        reqs.push((t.clone(), req, ns));
    }
    for (t, req, ns) in &reqs {
        let expected = match ns {
            Some((res, data, prior))
                if cli.estimate || matches!(preset, Preset::Paper | Preset::Full) =>
            {
                eprintln!("diffinv-reproduce: estimating the wall time (a dry run of each method's schedule, a timed batch of the prior and the forward model)");
                let (total, lines) =
                    diffinv_reproduce::estimate::navier_stokes(req, prior, *res, data)?;
                for l in lines {
                    eprintln!("  {l}");
                }
                format!("expected wall time on this machine: about {}", diffinv_reproduce::estimate::human(total))
            }
            _ => format!("expected wall time on 2 cores: {}", expected_wall_time(t, preset)),
        };
        if cli.estimate {
            println!("{t} ({} preset): {expected}", preset.name());
            continue;
        }
        eprintln!(
            "diffinv-reproduce: {t} ({} preset, seed {}) into {}; {expected}{}",
            preset.name(),
            req.seed,
            req.out.display(),
            if req.resume { " (resuming: finished rows are reused)" } else { "" }
        );
        let t0 = std::time::Instant::now();
        let table = match ns {
            Some((res, data, prior)) => navier_stokes_with(req, prior, *res, data)?,
            None => black_hole(req)?,
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
