//! The imaging table: every gradient-based, classical and derivative-free method on the seven
//! imaging tasks of the DPS (arXiv 2209.14687) and Measurements Optimization (arXiv 2412.03941)
//! papers, with their settings and one diffusion prior.
//!
//! Protocol:
//! - the unknown lives in the prior's normalised space `z = (x - shift) / scale` (`[-1, 1]` for
//!   a unit-normalised prior, the convention of the DPS, DDS and MO code bases), and the imaging
//!   operators act on `z` directly, so the linear ones stay linear;
//! - measurements `y = A(z) + sigma_y n`, `sigma_y = 0.05` for every task (DPS's setting),
//!   noise drawn from `(seed, image)`; random masks and the motion kernel are drawn from `seed`;
//! - a method's reconstruction is the mean of its final samples mapped back to `[0, 1]` and
//!   clipped there; PSNR with peak 1 and SSIM (Wang et al. 2004, 11 x 11 Gaussian window, sigma
//!   1.5, data range 1) against the truth; LPIPS when a TorchScript LPIPS network is given;
//! - NFE = denoiser evaluations plus denoiser vector-Jacobian products (each counted once).
//!
//! Methods that need a linear forward model with its adjoint (MCG, DDS, DiffPIR and the
//! classical ones) are not run on phase retrieval and HDR: their cells read `n/a`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use diffinv_operators::{ForwardModel, GaussianLikelihood};
use diffinv_priors::Denoiser;
use diffinv_solvers::{
    Problem as SolverProblem, DynSolver,
};
use ndarray::{Array1, Array2, ArrayView1, Axis};
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Kind, Tensor};

use crate::methods::Preset;
use crate::plot::{grid, ColorBar, Colormap, ImageRow, Panel};
use crate::report::{RowCache, Table};

/// Row order of the imaging table. `DPS-100` is DPS with 100 steps (100 NFE, the budget of
/// DPS-MO) and `RED-diff-100` RED-diff with 100 steps (the budget of RED-diff-MO): the
/// equal-NFE controls of the MO paper's claim.
pub const IMAGING_METHODS: [&str; 17] = [
    "DPS",
    "DPS-100",
    "DPS-MO",
    "MCG",
    "PiGDM",
    "DDS",
    "DAPS",
    "DiffPIR",
    "RED-diff",
    "RED-diff-100",
    "RED-diff-MO",
    "Tikhonov",
    "TV",
    "PnP-ADMM",
    "RED",
    "EnKG",
    "CPS",
];

/// Methods that need a linear forward model with its adjoint.
pub const NEEDS_LINEAR: [&str; 7] = ["MCG", "DDS", "DiffPIR", "Tikhonov", "TV", "PnP-ADMM", "RED"];

/// The tasks, in column order.
pub const TASKS: [Task; 7] = [
    Task::SuperResolution,
    Task::BoxInpainting,
    Task::RandomInpainting,
    Task::GaussianDeblur,
    Task::MotionDeblur,
    Task::PhaseRetrieval,
    Task::Hdr,
];

/// Measurement noise of every task (on the `[-1, 1]` scale).
pub const SIGMA_Y: f32 = 0.05;

/// One imaging task (the DPS and MO papers' settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Bicubic super-resolution x4.
    SuperResolution,
    /// A box of half the image side at a seeded random location.
    BoxInpainting,
    /// 70% of the pixels missing (seeded).
    RandomInpainting,
    /// 61 x 61 Gaussian kernel, std 3.
    GaussianDeblur,
    /// 61 x 61 seeded random-trajectory kernel, intensity 0.5.
    MotionDeblur,
    /// Fourier magnitude with oversampling 2 (DPS).
    PhaseRetrieval,
    /// `clip(2 x, -1, 1)` (MO).
    Hdr,
}

impl Task {
    /// Short name (CLI, file names).
    pub fn name(self) -> &'static str {
        match self {
            Task::SuperResolution => "sr4",
            Task::BoxInpainting => "box",
            Task::RandomInpainting => "random",
            Task::GaussianDeblur => "gblur",
            Task::MotionDeblur => "mblur",
            Task::PhaseRetrieval => "phase",
            Task::Hdr => "hdr",
        }
    }
    /// Parse [`Task::name`].
    pub fn parse(s: &str) -> Option<Self> {
        TASKS.iter().copied().find(|t| t.name() == s)
    }
    /// Whether the forward model is linear.
    pub fn is_linear(self) -> bool {
        !matches!(self, Task::PhaseRetrieval | Task::Hdr)
    }
}

/// `task`'s operator for `[c, h, w]` images (masks and kernels drawn from `seed`); its
/// capabilities (linear with adjoint, or differentiable) are discovered by `Problem::new`.
pub fn task_operator(task: Task, shape: [usize; 3], seed: u64) -> Result<Box<dyn ForwardModel>> {
    Ok(diffinv_operators::imaging::standard_task(task.name(), shape, seed)?)
}


/// Build imaging method `name` for `task` at `preset`, from the preset file
/// `configs/tables/imaging-PRESET.toml` (the row's `config` with its `per_task` overrides).
pub fn build(name: &str, task: Task, preset: Preset) -> Result<Box<dyn DynSolver>> {
    crate::presets::TablePreset::get("imaging", preset)?
        .row(name)?
        .build(Some(task.name()), None)
}

/// An LPIPS network exported to TorchScript with the `lpips` package's signature
/// `forward(in0, in1) -> d` on `(N, 3, H, W)` images in `[-1, 1]`, `d` of shape `(N, 1, 1, 1)`
/// (or `(N,)`). Grayscale images are repeated over three channels.
pub struct Lpips {
    module: CModule,
}

impl Lpips {
    /// Load the module on the CPU.
    pub fn load(path: &Path) -> Result<Self> {
        let mut module = diffinv_priors::neural::load_torchscript(path, Device::Cpu)
            .context("loading the LPIPS network")?;
        module.set_eval();
        Ok(Self { module })
    }
    /// LPIPS distance between two `(C, H, W)` images given in `[0, 1]`.
    pub fn distance(
        &self,
        a: ArrayView1<'_, f32>,
        b: ArrayView1<'_, f32>,
        shape: [usize; 3],
    ) -> Result<f64> {
        let [c, h, w] = shape;
        let to = |v: ArrayView1<'_, f32>| -> Result<Tensor> {
            let data: Vec<f32> = v.iter().map(|x| 2.0 * x - 1.0).collect();
            let t = Tensor::from_slice(&data).reshape([1, c as i64, h as i64, w as i64]);
            Ok(if c == 1 { t.repeat([1, 3, 1, 1]) } else { t })
        };
        let (ta, tb) = (to(a)?, to(b)?);
        let d = tch::no_grad(|| self.module.forward_ts(&[ta, tb]))
            .context("LPIPS forward")?
            .to_kind(Kind::Double)
            .flatten(0, -1);
        let v = d.double_value(&[0]);
        if !v.is_finite() {
            bail!("LPIPS returned {v}");
        }
        Ok(v)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ImagingRequest {
    /// Size.
    pub preset: Preset,
    /// Output folder.
    pub out: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// Reuse finished results.
    pub resume: bool,
    /// Methods (default: all of [`IMAGING_METHODS`]).
    pub methods: Vec<String>,
    /// Tasks (default: all of [`TASKS`]).
    pub tasks: Vec<Task>,
    /// Test images `(N, C, H, W)` or `(N, H, W)` in `[0, 1]`.
    pub test_images: PathBuf,
    /// Number of test images (default: the preset's).
    pub cases: Option<usize>,
    /// LPIPS TorchScript network.
    pub lpips: Option<PathBuf>,
    /// The prior's folder or TorchScript file, recorded with the cached rows so that `--resume`
    /// with another prior is refused (`None`: not recorded).
    pub prior_source: Option<PathBuf>,
}

/// `(method, task, Some((psnr, ssim, nfe)))`, or `None` where the method does not apply.
type SummaryRow = (String, Task, Option<(f64, f64, u64)>);

/// One method on one image of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagingResult {
    /// PSNR (dB).
    pub psnr: f64,
    /// SSIM.
    pub ssim: f64,
    /// LPIPS, when a network was given.
    pub lpips: Option<f64>,
    /// Denoiser evaluations plus denoiser vjps.
    pub nfe: u64,
    /// Forward-model evaluations plus vjps/adjoints.
    pub fwd: u64,
    /// Wall time (s).
    pub seconds: f64,
    /// The reconstruction in `[0, 1]`, row-major.
    pub recon: Vec<f32>,
}

/// Check method and task names before any compute.
pub fn validate_methods(names: &[String]) -> Result<()> {
    for n in names {
        if !IMAGING_METHODS.contains(&n.as_str()) {
            bail!(
                "unknown imaging method {n:?}; known: {}",
                IMAGING_METHODS.join(", ")
            );
        }
    }
    Ok(())
}

fn default_cases(p: Preset) -> usize {
    match p {
        Preset::Full => 3,
        _ => 1,
    }
}

/// Expected wall time on 2 cores (see docs/reproduction.md).
pub fn expected_wall_time(p: Preset) -> &'static str {
    match p {
        Preset::Tiny => "seconds",
        Preset::Quick => "about 15 minutes",
        Preset::Full => "about 3 hours",
        Preset::Paper => "unknown (no paper preset)",
    }
}

/// Read `(N, C, H, W)` / `(N, H, W)` test images in `[0, 1]` and check them against `shape`.
pub fn read_test_images(path: &Path, shape: [usize; 3]) -> Result<Array2<f32>> {
    let (dims, data) = diffinv_datasets::npy::read_f32(path)
        .with_context(|| format!("reading test images {}", path.display()))?;
    let d: usize = shape.iter().product();
    if dims.is_empty()
        || data.len() % d != 0
        || data.is_empty()
        || dims[1..].iter().product::<usize>() != d
    {
        bail!(
            "shape mismatch: {} holds {dims:?}, the prior makes {shape:?} images",
            path.display()
        );
    }
    Ok(Array2::from_shape_vec((data.len() / d, d), data)?)
}

/// Run the imaging table with `prior` (images of `shape`, normalised `z = (x - shift) / scale`).
pub fn imaging(
    req: &ImagingRequest,
    prior: &dyn Denoiser,
    shape: [usize; 3],
    shift: f64,
    scale: f64,
) -> Result<Table> {
    validate_methods(&req.methods)?;
    let methods: Vec<String> = if req.methods.is_empty() {
        IMAGING_METHODS.iter().map(|s| s.to_string()).collect()
    } else {
        req.methods.clone()
    };
    let tasks: Vec<Task> = if req.tasks.is_empty() {
        TASKS.to_vec()
    } else {
        req.tasks.clone()
    };
    let d: usize = shape.iter().product();
    anyhow::ensure!(
        prior.dim() == d,
        "shape mismatch: prior dimension {} vs images {shape:?}",
        prior.dim()
    );
    let images = read_test_images(&req.test_images, shape)?;
    let n_img = req
        .cases
        .unwrap_or(default_cases(req.preset))
        .min(images.nrows());
    let lpips = match &req.lpips {
        Some(p) => Some(Lpips::load(p)?),
        None => None,
    };
    let mut inputs: Vec<(&str, &Path)> = vec![("the test images", req.test_images.as_path())];
    if let Some(p) = &req.prior_source {
        inputs.push(("the prior", p.as_path()));
    }
    let cache = RowCache::open_with_inputs(
        &req.out
            .join(".cache")
            .join(format!("imaging-{}-seed{}", req.preset.name(), req.seed)),
        !req.resume,
        &inputs,
    )?;
    let (shift32, scale32) = (shift as f32, scale as f32);
    let to_z = |x: ArrayView1<'_, f32>| x.mapv(|v| (v - shift32) / scale32);
    let to_x = |z: ArrayView1<'_, f32>| z.mapv(|v| (v * scale32 + shift32).clamp(0.0, 1.0));
    let mut header = vec!["method", "task", "psnr", "ssim"];
    if lpips.is_some() {
        header.push("lpips");
    }
    header.extend(["nfe", "fwd", "seconds", "images"]);
    let mut table = Table::new(&header);
    let mut summary: Vec<SummaryRow> = Vec::new();
    std::fs::create_dir_all(&req.out)?;
    for &task in &tasks {
        let op = task_operator(task, shape, req.seed)?;
        let fwd = op.as_ref();
        let mut liks = Vec::new();
        let mut obs0 = Vec::new();
        for i in 0..n_img {
            let z = to_z(images.row(i)).insert_axis(Axis(0));
            let mut y = fwd.forward(z.view())?;
            let mut rng = diffinv_priors::rng::stream(
                req.seed,
                diffinv_priors::rng::tags::MEASUREMENT,
                task as u64,
                i as u64,
            );
            let mut n = vec![0.0f32; y.len()];
            diffinv_priors::rng::fill_normal(&mut rng, &mut n);
            y.iter_mut().zip(&n).for_each(|(v, e)| *v += SIGMA_Y * e);
            if i == 0 {
                obs0 = y.row(0).to_vec();
            }
            liks.push(GaussianLikelihood::new(y.row(0).to_owned(), SIGMA_Y)?);
        }
        let mut recons: Vec<(String, Option<Vec<f32>>)> = Vec::new();
        for method in &methods {
            if !task.is_linear() && NEEDS_LINEAR.contains(&method.as_str()) {
                let mut row = vec![
                    method.clone(),
                    task.name().into(),
                    "n/a".into(),
                    "n/a".into(),
                ];
                if lpips.is_some() {
                    row.push("n/a".into());
                }
                row.extend(["-".into(), "-".into(), "-".into(), "0".into()]);
                table.push(row);
                summary.push((method.clone(), task, None));
                recons.push((method.clone(), None));
                continue;
            }
            let mut rs = Vec::new();
            for (i, lik) in liks.iter().enumerate() {
                let key = format!("{method}-{}-image{i}", task.name());
                let r = cache.get_or_compute(&key, req.resume, || {
                    let solver = build(method, task, req.preset)?;
                    let sp = SolverProblem::new(prior, fwd, lik)?;
                    let seed = req.seed.wrapping_add(17 * i as u64);
                    let out =
                        cache.run_checkpointed(&key, req.resume, sp, solver.as_ref(), seed)?;
                    let zmean = out
                        .samples
                        .mean_axis(Axis(0))
                        .unwrap_or_else(|| Array1::zeros(d));
                    let recon = to_x(zmean.view());
                    let truth = images.row(i);
                    let diffinv_metrics::ImageScores { psnr, ssim } =
                        diffinv_metrics::image_scores(recon.view(), truth, shape, 1.0)?;
                    let lp = match &lpips {
                        Some(l) => Some(l.distance(recon.view(), truth, shape)?),
                        None => None,
                    };
                    let c = out.cost;
                    let r = ImagingResult {
                        psnr,
                        ssim,
                        lpips: lp,
                        nfe: c.den_total + c.den_grad_total,
                        fwd: c.fwd_total + c.fwd_grad_total,
                        seconds: c.seconds,
                        recon: recon.to_vec(),
                    };
                    anyhow::Ok(r)
                })?;
                eprintln!(
                    "imaging {method} {} image {i}: PSNR {:.2}, SSIM {:.3} ({} NFE, {:.1} s)",
                    task.name(),
                    r.psnr,
                    r.ssim,
                    r.nfe,
                    r.seconds
                );
                rs.push(r);
            }
            let k = rs.len().max(1) as f64;
            let avg = |f: &dyn Fn(&ImagingResult) -> f64| rs.iter().map(f).sum::<f64>() / k;
            let (p, s) = (avg(&|r| r.psnr), avg(&|r| r.ssim));
            let nfe = avg(&|r| r.nfe as f64);
            let mut row = vec![
                method.clone(),
                task.name().into(),
                format!("{p:.2}"),
                format!("{s:.3}"),
            ];
            if lpips.is_some() {
                row.push(format!("{:.3}", avg(&|r| r.lpips.unwrap_or(f64::NAN))));
            }
            row.extend([
                format!("{nfe:.0}"),
                format!("{:.0}", avg(&|r| r.fwd as f64)),
                format!("{:.1}", avg(&|r| r.seconds)),
                rs.len().to_string(),
            ]);
            table.push(row);
            summary.push((method.clone(), task, Some((p, s, nfe as u64))));
            recons.push((method.clone(), rs.first().map(|r| r.recon.clone())));
        }
        task_figure(
            &req.out,
            task,
            shape,
            &images.row(0).to_vec(),
            fwd,
            &obs0,
            &recons,
        )?;
    }
    let notes = imaging_notes(req, &methods, &tasks, n_img, &summary);
    table.write(
        &req.out,
        "imaging",
        "Imaging: PSNR / SSIM per method and task (DPS and MO settings)",
        &notes,
    )?;
    Ok(table)
}

/// The Markdown notes: protocol, the method x task pivot, and the MO claim.
fn imaging_notes(
    req: &ImagingRequest,
    methods: &[String],
    tasks: &[Task],
    n_img: usize,
    summary: &[SummaryRow],
) -> String {
    let get = |m: &str, t: Task| {
        summary
            .iter()
            .find(|(mm, tt, _)| mm == m && *tt == t)
            .and_then(|(_, _, v)| *v)
    };
    let mut s = format!(
        "Preset `{}`, seed {}, {n_img} held-out test image(s) ({}), sigma_y = {SIGMA_Y} on [-1, 1]. \
         PSNR (peak 1) and SSIM (11 x 11 Gaussian window) of the mean of the final samples, clipped to [0, 1]. \
         NFE = denoiser evaluations + denoiser vjps; `fwd` = forward-model evaluations + vjps. \
         `n/a`: the method needs a linear operator and its adjoint. Figures: `imaging_TASK.png` \
         (truth, observation, then each method in row order; second row |error|).\n\n",
        req.preset.name(),
        req.seed,
        req.test_images.display(),
    );
    s.push_str("PSNR / SSIM (rows: methods, columns: tasks)\n\n| method |");
    for t in tasks {
        s.push_str(&format!(" {} |", t.name()));
    }
    s.push_str("\n| --- |");
    for _ in tasks {
        s.push_str(" --- |");
    }
    s.push('\n');
    for m in methods {
        s.push_str(&format!("| {m} |"));
        for &t in tasks {
            match get(m, t) {
                Some((p, q, _)) => s.push_str(&format!(" {p:.2} / {q:.3} |")),
                None => s.push_str(" n/a |"),
            }
        }
        s.push('\n');
    }
    // The MO paper's claims: DPS-MO at ~100 NFE against DPS at 1000, RED-diff-MO against
    // RED-diff at equal NFE.
    let pairs = [
        ("DPS-MO", "DPS"),
        ("DPS-MO", "DPS-100"),
        ("RED-diff-MO", "RED-diff-100"),
    ];
    let mut claim = String::new();
    for (a, b) in pairs {
        for &t in tasks {
            if let (Some(x), Some(y)) = (get(a, t), get(b, t)) {
                claim.push_str(&format!(
                    "| {a} ({} NFE) vs {b} ({} NFE) | {} | {:+.2} | {:+.3} |\n",
                    x.2,
                    y.2,
                    t.name(),
                    x.0 - y.0,
                    x.1 - y.1
                ));
            }
        }
    }
    if !claim.is_empty() {
        s.push_str("\nMeasurements Optimization (arXiv 2412.03941): PSNR and SSIM differences (first minus second)\n\n");
        s.push_str("| comparison | task | dPSNR | dSSIM |\n| --- | --- | --- | --- |\n");
        s.push_str(&claim);
    }
    s
}

/// PNG grid for one task: truth, observation, reconstructions; |error| below.
fn task_figure(
    out: &Path,
    task: Task,
    shape: [usize; 3],
    truth: &[f32],
    fwd: &dyn ForwardModel,
    obs: &[f32],
    recons: &[(String, Option<Vec<f32>>)],
) -> Result<()> {
    let [c, h, w] = shape;
    // First channel only (the shipped prior is grayscale).
    let plane = |v: &[f32]| v[..h * w].to_vec();
    let gray = |title: &str, v: Vec<f32>, lo: f32, hi: f32| {
        Some(Panel::new(title, v, h, w, Colormap::Gray, lo, hi))
    };
    // The observation resampled (nearest) to h x w, its own value range; phase retrieval shows
    // log(1 + |Y|).
    let os = fwd.output_shape();
    let (oh, ow) = match os.as_slice() {
        [_, a, b] => (*a, *b),
        [a, b] => (*a, *b),
        _ => (1, obs.len().max(1)),
    };
    let mut ov = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let (si, sj) = (i * oh / h, j * ow / w);
            let v = obs.get(si * ow + sj).copied().unwrap_or(0.0);
            ov[i * w + j] = if task == Task::PhaseRetrieval {
                v.abs().ln_1p()
            } else {
                v
            };
        }
    }
    let (olo, ohi) = ov
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let _ = c;
    let obs_unit = if task == Task::PhaseRetrieval {
        "log(1 + |y|)"
    } else {
        "measurement"
    };
    let obs_panel = gray("observation", ov, olo, ohi.max(olo + 1e-6))
        .map(|p| p.with_bar(ColorBar::Own(obs_unit.into())));
    let mut top = vec![gray("truth", plane(truth), 0.0, 1.0), obs_panel];
    let mut bottom = vec![None, None];
    for (m, r) in recons {
        match r {
            Some(r) => {
                top.push(gray(m, plane(r), 0.0, 1.0));
                let err: Vec<f32> = plane(r)
                    .iter()
                    .zip(plane(truth))
                    .map(|(a, b)| (a - b).abs())
                    .collect();
                bottom.push(Some(Panel::new(m, err, h, w, Colormap::Hot, 0.0, 0.5)));
            }
            None => {
                top.push(None);
                bottom.push(None);
            }
        }
    }
    let rows = [
        ImageRow::new("reconstruction", "intensity (normalised)", top),
        ImageRow::new("|error|", "|error|", bottom),
    ];
    let title = format!("Imaging task {}: first image", task.name());
    grid(
        &out.join(format!("imaging_{}.png", task.name())),
        &title,
        &rows,
        2,
    )
}
