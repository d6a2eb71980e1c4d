//! The two experiments of EnKG section 5 (Ensemble Kalman Diffusion Guidance, arXiv 2409.20175): Navier-Stokes (Table 2) and black-hole
//! imaging (Table 3), every row of the table's preset on the same problem.
//!
//! Protocol shared by both tables:
//! - the solvers move in the prior's normalised space `z = (x - shift) / scale`; the forward
//!   model is wrapped ([`Affine`]) so that it receives physical fields,
//! - a method's reconstruction is the mean of its final samples (EnKG's ensemble mean, the
//!   mean of CPS's chains), mapped back to physical units,
//! - costs are the solver's [`CostSummary`] averaged over the test cases, `failed` is the
//!   total count of failed forward evaluations (the failure policy of
//!   `Evaluator::forward_robust`),
//! - every (method, case) result is cached; with `resume` cached results are reused and an
//!   interrupted run continues from its checkpoint (written at most every 10 s).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use diffinv_datasets::blackhole::{generate, MringConfig};
use diffinv_operators::eht::{
    ClosureForward, ClosureLikelihood, ClosureWeights, EhtConfig, VisNoise,
};
use diffinv_operators::navier_stokes::dataset::read_npy;
use diffinv_operators::navier_stokes::{NavierStokes2d, NavierStokesConfig};
use diffinv_operators::{ForwardModel, GaussianLikelihood};
use diffinv_priors::neural::{DeviceChoice, NeuralDenoiser, ScriptedEdm};
use diffinv_priors::Denoiser;
use diffinv_solvers::{CostSummary, Problem as SolverProblem};
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::methods::{build, Preset, Problem};
use crate::plot::{grid, misfit_curves, ColorBar, Colormap, ImageRow, Panel};
use crate::report::{mean_std, RowCache, Table};
use crate::setup::PriorSpec;
use diffinv_operators::Affine;

/// What to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// Size.
    pub preset: Preset,
    /// Output folder (tables, figures, `.cache/`).
    pub out: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// Reuse finished results and continue interrupted runs.
    pub resume: bool,
    /// Methods: row labels of the table's preset (default: all rows, [`table_methods`]).
    pub methods: Vec<String>,
    /// Prior folder, or (Navier-Stokes) a TorchScript EDM module `D(x, sigma)` exported from
    /// the reference's checkpoint with tools/export_ns_checkpoint.py (input normalised as the
    /// reference does: [`REFERENCE_NS_SCALE`]).
    pub prior: PathBuf,
    /// Navier-Stokes test fields (`.npy`, `(N, H, W)` or `(N, 1, H, W)` with `H = W`, physical
    /// vorticity); ignored for the black hole.
    pub test_data: PathBuf,
    /// Where the prior runs.
    pub device: DeviceChoice,
    /// Override the preset's number of test cases.
    pub cases: Option<usize>,
    /// Override the preset's ensemble size / candidate count (see [`build`]).
    pub particles: Option<usize>,
}

/// One method on one test case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// Metrics by name.
    pub metrics: Vec<(String, f64)>,
    /// Cost of the run.
    pub cost: CostSummary,
    /// The reconstruction (physical units), row-major.
    pub recon: Vec<f32>,
    /// `(step, misfit)` of the guided steps.
    pub misfit: Vec<(usize, f64)>,
    /// The black hole's metrics under the reference's evaluation protocol
    /// ([`reference_protocol`]); empty for Navier-Stokes and for results cached before it existed.
    #[serde(default)]
    pub reference: Vec<(String, f64)>,
}

/// The Navier-Stokes noise levels of EnKG Table 2 per preset (`quick`: sigma = 1 only).
pub fn ns_noise_levels(p: Preset) -> Vec<f64> {
    match p {
        Preset::Full | Preset::Paper => vec![0.0, 1.0, 2.0],
        _ => vec![1.0],
    }
}

/// Test fields per preset (`paper`: the reference's ten, `id_list: 0-9`).
pub fn default_cases(p: Preset) -> usize {
    match p {
        Preset::Paper => 10,
        Preset::Full => 2,
        _ => 1,
    }
}

/// The reference's normalisation of Navier-Stokes vorticity (enkg-pytorch and InverseBench:
/// `LMDBData(std=5.0)` gives the network `w / (2 * 5)`, and `ForwardNavierStokes2d`'s
/// `unnorm_scale: 10.0` maps it back): a TorchScript prior sees `w / 10`.
pub const REFERENCE_NS_SCALE: f64 = 10.0;

/// Images per call of a TorchScript prior (the reference's EnKG `batch_size: 64`).
pub const SCRIPTED_BATCH: usize = 64;

/// Read Navier-Stokes test fields: `(N, H, W)` or `(N, 1, H, W)` with `H = W`; returns the
/// grid size and the fields, row-major.
pub fn read_ns_fields(path: &Path) -> Result<(usize, Vec<f32>)> {
    let npy = read_npy(path).with_context(|| format!("reading test fields {}", path.display()))?;
    let shape = npy.shape.clone();
    let res = match shape.as_slice() {
        [n, h, w] | [n, 1, h, w] if h == w && *h >= 4 && *n >= 1 => *h,
        _ => anyhow::bail!(
            "shape mismatch: {} holds {:?}, not (N, H, H) or (N, 1, H, H) vorticity fields",
            path.display(),
            shape
        ),
    };
    let data = npy.to_f32();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        anyhow::bail!("{} has a non-finite value at flat index {i}", path.display());
    }
    Ok((res, data))
}

/// A Navier-Stokes prior ready to run: the denoiser and the normalisation
/// `z = (w - shift) / scale` it was trained in.
pub struct NsPrior {
    /// The denoiser.
    pub prior: Box<dyn Denoiser>,
    /// Normalisation shift.
    pub shift: f64,
    /// Normalisation scale.
    pub scale: f64,
    /// Where it runs, for messages (`cpu`, `cuda:0`).
    pub device: String,
}

/// Load the request's Navier-Stokes prior for `res x res` fields on `req.device`: a prior folder
/// (its shape must be `[1, res, res]`), or a TorchScript file, which is called once on a zero
/// field so that a module made for another shape fails here, in one line, before any compute.
pub fn load_ns_prior(req: &Request, res: usize) -> Result<NsPrior> {
    let device = crate::setup::resolve_device(req.device)?;
    let name = match device {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    };
    if req.prior.is_file() {
        let s = res as i64;
        let net = ScriptedEdm::load(&req.prior, [1, s, s], device)?;
        let prior = NeuralDenoiser::new(Box::new(net), SCRIPTED_BATCH)?;
        prior
            .denoise(Array2::zeros((1, res * res)).view(), 1.0)
            .with_context(|| {
                format!(
                    "the TorchScript prior {} on one 1 x {res} x {res} field",
                    req.prior.display()
                )
            })?;
        return Ok(NsPrior { prior: Box::new(prior), shift: 0.0, scale: REFERENCE_NS_SCALE, device: name });
    }
    let spec = PriorSpec::read(&req.prior)?;
    spec.check_operator("ns", &[1, res, res])?;
    let prior = spec.load_on(64, device)?;
    Ok(NsPrior { prior: Box::new(prior), shift: spec.shift, scale: spec.scale, device: name })
}

/// Expected wall time on 2 cores, printed before a run starts (measured for both presets;
/// the imaging `full` is extrapolated; see docs/reproduction.md).
pub fn expected_wall_time(table: &str, p: Preset) -> &'static str {
    match (table, p) {
        (_, Preset::Tiny) => "seconds",
        ("ns", Preset::Quick) => "about 2 minutes with a 64 x 64 prior, about 15 with a 128 x 128 one (`--estimate` times it)",
        ("blackhole", Preset::Quick) => "about 3 minutes",
        ("ns", Preset::Full) => "timed on this machine before the run starts (128 x 128: hours)",
        ("blackhole", Preset::Full) => "about 8 minutes",
        _ => "unknown",
    }
}

/// Validate a request for `table` before any compute: method names, prior files, shapes.
pub fn validate(table: &str, req: &Request, operator_input: &[usize]) -> Result<PriorSpec> {
    table_methods(table, req)?;
    let spec = PriorSpec::read(&req.prior)?;
    spec.check_operator(table, operator_input)?;
    Ok(spec)
}

pub use diffinv_metrics::eht::{fold_chi2, ALIGN_MAX_SHIFT, BLUR_FWHM_UAS};

/// The black-hole metrics under the EnKG reference's evaluation protocol (enkg-pytorch
/// `BlackHoleEvaluator`), which scores every final sample and reports the best one:
/// - PSNR of each sample, both images clipped to [0, 1], after the integer shift
///   (`|dy|, |dx| <= ALIGN_MAX_SHIFT`, zero fill) that maximises it (closure quantities do not
///   fix the image position; the reference searches sub-pixel shifts up to a quarter of the
///   field with bilinear sampling); the maximum over samples,
/// - blurred PSNR of the aligned samples (the main table's 20 uas Gaussian), maximum over
///   samples,
/// - reduced closure chi^2 of each sample, folded ([`fold_chi2`]), minimum over samples (the
///   reference also rescales each sample to the observed flux, which leaves closure phases and
///   log closure amplitudes unchanged).
///
/// `samples` `(S, n^2)` in physical units, `truth` `n^2`. Returns the four metrics, then
/// `("samples", S)`.
pub fn reference_protocol(
    samples: &Array2<f32>,
    truth: &[f32],
    n: usize,
    sigma_px: f64,
    op: &ClosureForward,
    lik: &ClosureLikelihood,
) -> Result<Vec<(String, f64)>> {
    let y = op.forward(samples.view())?;
    let chi2 = y
        .rows()
        .into_iter()
        .map(|row| lik.reduced_chi2(&row.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let t = ndarray::ArrayView1::from(truth);
    let m = diffinv_metrics::eht::reference_protocol(samples.view(), t, n, sigma_px, &chi2)?;
    Ok(m.named())
}

/// Samples, cost and `(step, misfit)` of one run.
type CaseRun = (Array2<f32>, CostSummary, Vec<(usize, f64)>);

fn run_case(
    cache: &RowCache,
    key: &str,
    req: &Request,
    method: &str,
    problem: Problem,
    sp: SolverProblem<'_>,
    seed: u64,
) -> Result<CaseRun> {
    let solver = build(method, problem, req.preset, req.particles)?;
    let out = cache.run_checkpointed(key, req.resume, sp, solver.as_ref(), seed)?;
    // The step log is what the runner's observers saw (and it survives a resume, which an
    // observer of the second process alone would not).
    let misfit = out
        .log
        .iter()
        .filter_map(|s| s.misfit.map(|m| (s.step, m)))
        .collect();
    Ok((out.samples, out.cost, misfit))
}

fn mean_row(samples: &Array2<f32>) -> Array1<f32> {
    samples
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(samples.ncols()))
}

fn cost_cells(costs: &[CostSummary]) -> Vec<String> {
    let n = costs.len().max(1) as f64;
    let avg = |f: &dyn Fn(&CostSummary) -> f64| costs.iter().map(f).sum::<f64>() / n;
    vec![
        format!("{:.0}", avg(&|c| c.fwd_total as f64)),
        format!("{:.0}", avg(&|c| c.fwd_seq as f64)),
        format!("{:.0}", avg(&|c| c.den_total as f64)),
        format!("{:.0}", avg(&|c| c.den_seq as f64)),
        format!("{:.0}", avg(&|c| c.den_grad_total as f64)),
        format!("{:.1}", avg(&|c| c.seconds)),
        format!("{}", costs.iter().map(|c| c.failed).sum::<u64>()),
    ]
}

const COST_HEADER: [&str; 7] = [
    "fwd_total",
    "fwd_seq",
    "den_total",
    "den_seq",
    "den_grad_total",
    "seconds",
    "failed",
];

/// Cache-folder suffix of a particle-count override (results of different sizes never mix).
fn size_tag(req: &Request) -> String {
    req.particles.map_or(String::new(), |p| format!("-n{p}"))
}

/// The cache key of a row: its label and a hash of its definition (method and configuration),
/// so that `--resume` never reuses a result computed under another definition of the same label
/// (a `--preset-file` may give a label other settings).
fn row_tag(table: &str, req: &Request, label: &str) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let preset = crate::presets::TablePreset::get(table, req.preset)?;
    let row = preset.row(label)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (row.method.as_str(), row.config.to_string()).hash(&mut h);
    Ok(format!("{label}-{:08x}", h.finish() as u32))
}

/// Whether the row labelled `label` draws a misfit curve: the rows that run EnKG or CPS.
fn has_misfit_curve(table: &str, req: &Request, label: &str) -> Result<bool> {
    let preset = crate::presets::TablePreset::get(table, req.preset)?;
    Ok(matches!(preset.row(label)?.method.as_str(), "EnKG" | "CPS"))
}

/// The methods a request for `table` runs: the rows of the table's preset (their labels, in
/// order) or the `--methods` subset of them. The preset decides, so a `--preset-file` may label
/// its rows freely (e.g. one method twice with different settings); a name that is not a row
/// is an error listing the rows.
pub fn table_methods(table: &str, req: &Request) -> Result<Vec<String>> {
    let labels = crate::presets::TablePreset::get(table, req.preset)?.labels();
    for name in &req.methods {
        if !labels.contains(name) {
            return Err(crate::SetupError::UnknownMethod { name: name.clone(), known: labels.join(", ") }.into());
        }
    }
    Ok(if req.methods.is_empty() { labels } else { req.methods.clone() })
}

fn misfit_figure(path: &Path, title: &str, curves: &[(String, Vec<(usize, f64)>)]) -> Result<()> {
    misfit_curves(path, title, curves)
}

/// The Navier-Stokes table (EnKG Table 2): relative L2 error of the recovered initial
/// vorticity, mean and standard deviation over the test fields, per noise level, then costs.
pub fn navier_stokes(req: &Request) -> Result<Table> {
    table_methods("ns", req)?;
    let (res, data) = read_ns_fields(&req.test_data)?;
    let ns_prior = load_ns_prior(req, res)?;
    navier_stokes_with(req, &ns_prior, res, &data)
}

/// The Navier-Stokes table on an already loaded prior and test fields (`res x res`, row-major).
pub fn navier_stokes_with(req: &Request, ns_prior: &NsPrior, res: usize, data: &[f32]) -> Result<Table> {
    let noises = ns_noise_levels(req.preset);
    let d = res * res;
    let n_fields = req
        .cases
        .unwrap_or(default_cases(req.preset))
        .min(data.len() / d);
    let prior = ns_prior.prior.as_ref();
    anyhow::ensure!(
        prior.dim() == d,
        "shape mismatch: prior dimension {} vs operator {d}",
        prior.dim()
    );
    let methods = table_methods("ns", req)?;
    let cache = RowCache::open_with_inputs(
        &req.out.join(".cache").join(format!(
            "ns-{}-seed{}{}",
            req.preset.name(),
            req.seed,
            size_tag(req)
        )),
        !req.resume,
        &[("the prior", &req.prior), ("the test fields", &req.test_data)],
    )?;
    // rel_l2_mean/std: relative L2 error of the ensemble mean (mean and spread over fields);
    // rel_l2_particles: the mean over particles of each particle's relative L2 error (the
    // reference's score, EnKG/InverseBench), averaged over fields. The second is never smaller.
    let mut header = vec!["method", "noise", "rel_l2_mean", "rel_l2_std", "rel_l2_particles"];
    header.extend(COST_HEADER);
    header.push("fields");
    let mut table = Table::new(&header);
    let mut figure: Vec<(String, Vec<f32>)> = Vec::new();
    let mut curves = Vec::new();
    let truth0: Vec<f32> = data[..d].to_vec();
    let mut obs0 = Vec::new();
    for (ni, &noise) in noises.iter().enumerate() {
        let op = NavierStokes2d::new(NavierStokesConfig::enkg(res, noise))?;
        let fwd = Affine::new(&op, ns_prior.scale as f32, ns_prior.shift as f32)?;
        // Observations of every field: noise drawn from (seed, field).
        let mut cases = Vec::new();
        for f in 0..n_fields {
            let truth = Array2::from_shape_vec((1, d), data[f * d..(f + 1) * d].to_vec())?;
            let y = op.observe(
                truth.view(),
                req.seed.wrapping_mul(1000).wrapping_add(f as u64),
            )?;
            let lik = GaussianLikelihood::new(y.row(0).to_owned(), noise as f32)?;
            if ni == 0 && f == 0 {
                obs0 = y.row(0).to_vec();
            }
            cases.push((truth, lik));
        }
        for method in &methods {
            let tag = row_tag("ns", req, method)?;
            let mut errs = Vec::new();
            let mut per_particle = Vec::new();
            let mut costs = Vec::new();
            for (f, (truth, lik)) in cases.iter().enumerate() {
                let key = format!("{tag}-noise{noise}-field{f}");
                let r = cache.get_or_compute(&key, req.resume, || {
                    let sp = SolverProblem::new(prior, &fwd, lik)?;
                    let seed = req.seed.wrapping_add(17 * f as u64);
                    let (samples, cost, misfit) =
                        run_case(&cache, &key, req, method, Problem::NavierStokes, sp, seed)?;
                    let x = fwd.to_inner(samples.view())?;
                    let recon = mean_row(&x);
                    let e = diffinv_metrics::relative_l2(recon.view(), truth.row(0))?;
                    let mut per = 0.0;
                    for row in x.rows() {
                        per += diffinv_metrics::relative_l2(row, truth.row(0))?;
                    }
                    let per = per / x.nrows().max(1) as f64;
                    let r = CaseResult {
                        metrics: vec![("rel_l2".into(), e), ("rel_l2_particles".into(), per)],
                        cost,
                        recon: recon.to_vec(),
                        misfit,
                        reference: Vec::new(),
                    };
                    anyhow::Ok(r)
                })?;
                eprintln!(
                    "ns {method} noise {noise} field {f}: rel L2 {:.3} ({:.1} s, {} failed)",
                    r.metrics[0].1, r.cost.seconds, r.cost.failed
                );
                errs.push(r.metrics[0].1);
                // Cached before the column existed: recompute with a fresh run (no --resume).
                per_particle.push(r.metrics.get(1).map_or(f64::NAN, |m| m.1));
                costs.push(r.cost);
                if ni == 0 && f == 0 {
                    figure.push((method.clone(), r.recon.clone()));
                    if has_misfit_curve("ns", req, method)? {
                        curves.push((method.clone(), r.misfit.clone()));
                    }
                }
            }
            let (m, s) = mean_std(&errs);
            let (pm, _) = mean_std(&per_particle);
            let mut row = vec![
                method.clone(),
                format!("{noise}"),
                format!("{m:.3}"),
                format!("{s:.3}"),
                format!("{pm:.3}"),
            ];
            row.extend(cost_cells(&costs));
            row.push(n_fields.to_string());
            table.push(row);
        }
    }
    // Figures: truth, observation (nearest-neighbour upsampled), reconstructions; error maps.
    let lim = truth0.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let tile = |title: &str, v: &[f32], n: usize, cmap, lo, hi| {
        Some(Panel::new(title, v.to_vec(), n, n, cmap, lo, hi))
    };
    let on = (obs0.len() as f64).sqrt() as usize;
    let mut top = vec![
        tile("truth", &truth0, res, Colormap::Diverging, -lim, lim),
        tile("observation", &obs0, on, Colormap::Diverging, -lim, lim),
    ];
    let mut bottom = vec![None, None];
    for (m, r) in &figure {
        top.push(tile(m, r, res, Colormap::Diverging, -lim, lim));
        let err: Vec<f32> = r.iter().zip(&truth0).map(|(a, b)| (a - b).abs()).collect();
        bottom.push(tile(m, &err, res, Colormap::Hot, 0.0, lim));
    }
    std::fs::create_dir_all(&req.out)?;
    let rows = [
        ImageRow::new("reconstruction", "vorticity", top),
        ImageRow::new("|error|", "|error|", bottom),
    ];
    let noise0 = noises.first().copied().unwrap_or_default();
    let title = format!("Navier-Stokes: initial vorticity (noise {noise0}, field 0)");
    grid(&req.out.join("ns.png"), &title, &rows, 2)?;
    let title = format!("Navier-Stokes: data misfit (noise {noise0}, field 0)");
    misfit_figure(&req.out.join("ns_misfit.png"), &title, &curves)?;
    let notes = format!(
        "Preset `{}`, seed {}, {} test field(s) of `{}`, noise levels {:?} (EnKG Table 2: 0, 1, 2). \
         Reconstruction = mean of the final samples; costs are per field (averages), `failed` counts failed forward solves (all fields).\n\n\
         Figures: `ns.png` (top: truth, observation at T, then {}; bottom: |error| maps, same order), \
         `ns_misfit.png` (data misfit against step, log scale, of the EnKG and CPS rows).\n",
        req.preset.name(), req.seed, n_fields,
        req.test_data.file_name().map_or_else(|| req.test_data.display().to_string(), |f| f.to_string_lossy().into_owned()),
        noises, methods.join(", ")
    );
    table.write(
        &req.out,
        "ns",
        "Navier-Stokes: relative L2 of the initial vorticity (EnKG Table 2)",
        &notes,
    )?;
    Ok(table)
}

/// A black-hole metric cell over the images: `mean (std)` for several images, the value alone
/// for one (2 decimals for the PSNR columns `k < 2`, 3 for chi^2), `-` for none.
fn metric_cell(k: usize, v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.is_empty() {
        "-".into()
    } else if v.len() > 1 {
        format!("{m:.3} ({s:.3})")
    } else if k < 2 {
        format!("{m:.2}")
    } else {
        format!("{m:.3}")
    }
}

/// The black-hole table (EnKG Table 3): PSNR, blurred PSNR, reduced chi^2 of closure phases and
/// of log closure amplitudes, then costs.
pub fn black_hole(req: &Request) -> Result<Table> {
    let eht = EhtConfig::default();
    let op = ClosureForward::new(&eht)?;
    let spec = validate("blackhole", req, &op.input_shape())?;
    let n = eht.grid.npix;
    let d = n * n;
    let fov = eht.grid.fov_uas;
    let fwd = Affine::new(&op, spec.scale as f32, spec.shift as f32)?;
    let n_cases = req.cases.unwrap_or(default_cases(req.preset));
    let prior = spec.load_on(64, crate::setup::resolve_device(req.device)?)?;
    let methods = table_methods("blackhole", req)?;
    let cache = RowCache::open_with_inputs(
        &req.out.join(".cache").join(format!(
            "blackhole-{}-seed{}{}",
            req.preset.name(),
            req.seed,
            size_tag(req)
        )),
        !req.resume,
        &[("the prior", &req.prior)],
    )?;
    // Held-out m-ring images: indices >= 4000 (the prior's training images are 0..4000).
    let (imgs, _) = generate(&MringConfig::default(), 0, 4000..4000 + n_cases as u64)?;
    anyhow::ensure!(
        imgs.ncols() == d,
        "shape mismatch: test images have {} pixels, the operator {d}",
        imgs.ncols()
    );
    let sigma_px = diffinv_metrics::eht::blur_sigma_px(fov, n)?;
    let mut header = vec![
        "method",
        "psnr",
        "blurred_psnr",
        "chi2_cphase",
        "chi2_logcamp",
    ];
    header.extend(COST_HEADER);
    header.push("images");
    let mut table = Table::new(&header);
    let mut ref_table = Table::new(&[
        "method",
        "psnr",
        "blurred_psnr",
        "chi2_cphase",
        "chi2_logcamp",
        "samples",
        "images",
    ]);
    let mut cases = Vec::new();
    for c in 0..n_cases {
        let data = op.simulate(
            imgs.row(c),
            VisNoise::Thermal,
            req.seed.wrapping_mul(1000).wrapping_add(c as u64),
        )?;
        cases.push(ClosureLikelihood::new(&data, ClosureWeights::default())?);
    }
    let mut figure = Vec::new();
    let mut curves = Vec::new();
    for method in &methods {
        let mut ms: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let mut refs: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let mut n_samples = None;
        let mut costs = Vec::new();
        let tag = row_tag("blackhole", req, method)?;
        for (c, lik) in cases.iter().enumerate() {
            let key = format!("{tag}-image{c}");
            let r = cache.get_or_compute(&key, req.resume, || {
                let sp = SolverProblem::new(&prior, &fwd, lik)?;
                let seed = req.seed.wrapping_add(17 * c as u64);
                let (samples, cost, misfit) =
                    run_case(&cache, &key, req, method, Problem::BlackHole, sp, seed)?;
                let x = fwd.to_inner(samples.view())?;
                let recon = mean_row(&x);
                let truth = imgs.row(c);
                let psnr = diffinv_metrics::psnr(recon.view(), truth, 1.0)?;
                let bpsnr = diffinv_metrics::eht::blurred_psnr(recon.view(), truth, n, sigma_px, 1.0)?;
                let y = op.forward(recon.view().insert_axis(Axis(0)))?;
                let (cp, ca) = lik.reduced_chi2(y.row(0).as_slice().unwrap_or(&[]))?;
                let reference = reference_protocol(&x, &truth.to_vec(), n, sigma_px, &op, lik)?;
                let r = CaseResult {
                    metrics: vec![
                        ("psnr".into(), psnr),
                        ("blurred_psnr".into(), bpsnr),
                        ("chi2_cphase".into(), cp),
                        ("chi2_logcamp".into(), ca),
                    ],
                    cost,
                    recon: recon.to_vec(),
                    misfit,
                    reference,
                };
                anyhow::Ok(r)
            })?;
            eprintln!("blackhole {method} image {c}: PSNR {:.2}, blurred {:.2}, chi2 cp {:.2}, lca {:.2} ({:.1} s, {} failed)", r.metrics[0].1, r.metrics[1].1, r.metrics[2].1, r.metrics[3].1, r.cost.seconds, r.cost.failed);
            for (k, v) in ms.iter_mut().enumerate() {
                v.push(r.metrics[k].1);
            }
            if r.reference.len() == 5 {
                for (k, v) in refs.iter_mut().enumerate() {
                    v.push(r.reference[k].1);
                }
                n_samples = Some(r.reference[4].1 as usize);
            }
            costs.push(r.cost);
            if c == 0 {
                figure.push((method.clone(), r.recon.clone()));
                if has_misfit_curve("blackhole", req, method)? {
                    curves.push((method.clone(), r.misfit.clone()));
                }
            }
        }
        let mut row = vec![method.clone()];
        row.extend(ms.iter().enumerate().map(|(k, v)| metric_cell(k, v)));
        row.extend(cost_cells(&costs));
        row.push(n_cases.to_string());
        table.push(row);
        let mut ref_row = vec![method.clone()];
        ref_row.extend(refs.iter().enumerate().map(|(k, v)| metric_cell(k, v)));
        ref_row.push(n_samples.map_or("-".into(), |v| v.to_string()));
        ref_row.push(refs[0].len().to_string());
        ref_table.push(ref_row);
    }
    // Figures: truth, (u, v) coverage, reconstructions; error maps.
    let truth0 = imgs.row(0).to_vec();
    let hi = truth0.iter().fold(0.0f32, |a, v| a.max(*v)).max(1e-6);
    let mut uv = vec![0.0f32; d];
    let umax = op
        .coverage()
        .points
        .iter()
        .fold(0.0f64, |a, p| a.max(p.u.abs()).max(p.v.abs()))
        .max(1.0);
    for p in &op.coverage().points {
        for (u, v) in [(p.u, p.v), (-p.u, -p.v)] {
            let j = ((u / umax * 0.48 + 0.5) * n as f64) as usize;
            let i = ((0.5 - v / umax * 0.48) * n as f64) as usize;
            if i < n && j < n {
                uv[i * n + j] = 1.0;
            }
        }
    }
    let tile = |title: &str, v: &[f32], cmap, lo, hi| {
        Some(Panel::new(title, v.to_vec(), n, n, cmap, lo, hi))
    };
    let coverage =
        tile("(u, v) coverage", &uv, Colormap::Hot, 0.0, 1.0).map(|p| p.with_bar(ColorBar::Hidden));
    let mut top = vec![tile("truth", &truth0, Colormap::Hot, 0.0, hi), coverage];
    let mut bottom = vec![None, None];
    for (m, r) in &figure {
        top.push(tile(m, r, Colormap::Hot, 0.0, hi));
        let err: Vec<f32> = r.iter().zip(&truth0).map(|(a, b)| (a - b).abs()).collect();
        bottom.push(tile(m, &err, Colormap::Hot, 0.0, hi));
    }
    std::fs::create_dir_all(&req.out)?;
    let rows = [
        ImageRow::new("reconstruction", "intensity", top),
        ImageRow::new("|error|", "|error|", bottom),
    ];
    let title = "Black hole: image 0";
    grid(&req.out.join("blackhole.png"), title, &rows, 2)?;
    let title = "Black hole: data misfit (image 0)";
    misfit_figure(&req.out.join("blackhole_misfit.png"), title, &curves)?;
    let notes = format!(
        "Preset `{}`, seed {}, {} held-out m-ring image(s) (generator indices >= 4000; the prior trained on 0..4000), thermal noise. \
         PSNR with peak 1 on [0, 1] images; blurred PSNR after a circular Gaussian of FWHM {BLUR_FWHM_UAS} uas ({:.2} px sigma on the {n} x {n}, {fov} uas grid). \
         chi^2: reduced chi^2 of closure phases and of log closure amplitudes of the reconstruction (mean of the final samples). \
         Costs per image (averages); `failed` counts failed forward evaluations.\n\n\
         Figures: `blackhole.png` (top: truth, (u, v) coverage, then {}; bottom: |error| maps), `blackhole_misfit.png` (misfit against step of the EnKG and CPS rows).\n",
        req.preset.name(), req.seed, n_cases, sigma_px, methods.join(", ")
    );
    table.write(
        &req.out,
        "blackhole",
        "Black-hole imaging (EnKG Table 3)",
        &notes,
    )?;
    let ref_notes = format!(
        "The same runs as `blackhole.md`, scored as the EnKG reference scores them (enkg-pytorch `BlackHoleEvaluator`): \
         every final sample is evaluated and the best one reported. PSNR after the integer shift (up to {ALIGN_MAX_SHIFT} px each axis) \
         that maximises it, images clipped to [0, 1]; blurred PSNR of that aligned sample ({BLUR_FWHM_UAS} uas FWHM); both the maximum over samples. \
         chi^2: reduced chi^2 with values below 1 folded to 1/chi^2, the minimum over samples. `samples`: how many final samples each \
         method returns (EnKG and EKI their ensemble, the others one chain). Mean (standard deviation) over images.\n"
    );
    ref_table.write(
        &req.out,
        "blackhole_reference",
        "Black-hole imaging, the reference's evaluation protocol (best sample)",
        &ref_notes,
    )?;
    Ok(table)
}
