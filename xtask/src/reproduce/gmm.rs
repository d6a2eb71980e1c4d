//! `cargo xtask reproduce gmm`: the Gaussian-mixture benchmark of Cardoso et al. (MCGdiff,
//! ICLR 2024, section 4.1), where the posterior is known exactly.
//!
//! Prior: 25 unit-covariance components in dimension `d` with means `(8i, 8j, 8i, 8j, ...)`,
//! `i, j in {-2..2}`. Measurement model as in the MCGdiff reference code (see [`make_problem`]).
//! Every method returns `n` samples, scored against exact posterior draws (Matheron's rule):
//! sliced Wasserstein distance, error of the sample mean against the exact posterior mean,
//! RMS data misfit, and the cost columns.

use std::path::Path;

use anyhow::{Context, Result};
use diffinv_metrics::{mean_error, sliced_wasserstein, SlicedWassersteinConfig};
use diffinv_operators::{ForwardModel, GaussianLikelihood, MatrixOperator};
use diffinv_priors::rng::stream;
use diffinv_priors::GaussianMixture;
use diffinv_solvers::{
    Cps, CpsConfig, Enkg, EnkgConfig, Problem, Runner, DynSolver, Unconditional, UnconditionalConfig,
};
use diffinv_solvers::{Daps, DapsConfig, Dds, DdsConfig, DiffPir, DiffPirConfig};
use diffinv_solvers::{Dpg, DpgConfig, Eki, EkiConfig, Gsg, GsgConfig, GsgScheme, Scg, ScgConfig};
use diffinv_solvers::{
    Dps, DpsConfig, Mcg, McgConfig, MoConfig, Pigdm, PigdmConfig, RedDiff, RedDiffConfig, Smc,
    SmcConfig,
};
use diffinv_solvers::{LatentConfig, LatentOptimization};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::plot::{scatter_panels, ScatterOptions, ScatterPanel};
use crate::report::{RowCache, Table};

/// Settings of one preset.
#[derive(Debug, Clone, Serialize)]
pub struct GmmPreset {
    /// Preset name.
    pub name: &'static str,
    /// Dimensions `d`.
    pub dims: Vec<usize>,
    /// Measurement dimensions `d_y`.
    pub dys: Vec<usize>,
    /// Samples returned by each method (EnKG ensemble size, CPS chains, unconditional draws).
    pub samples: usize,
    /// Exact posterior draws the samples are compared with.
    pub reference_samples: usize,
    /// Random directions of the sliced Wasserstein distance.
    pub projections: usize,
    /// EnKG settings (`num_particles` is set to `samples`).
    pub enkg: EnkgConfig,
    /// CPS settings (`num_samples` is set to `samples`).
    pub cps: CpsConfig,
    /// Unconditional sampler settings (`num_samples` is set to `samples`).
    pub unconditional: UnconditionalConfig,
    /// EKI settings (`num_particles` is set to `samples`).
    pub eki: EkiConfig,
    /// DPS-GSG settings, both schemes (`num_samples` is set to `samples`).
    pub gsg: GsgConfig,
    /// DPG settings (`num_samples` is set to `samples`).
    pub dpg: DpgConfig,
    /// SCG settings (`num_samples` is set to `samples`).
    pub scg: ScgConfig,
    /// DDS settings (`num_samples` is set to `samples`).
    pub dds: DdsConfig,
    /// DAPS settings (`num_samples` is set to `samples`).
    pub daps: DapsConfig,
    /// DiffPIR settings (`num_samples` is set to `samples`).
    pub diffpir: DiffPirConfig,
    /// DMPlug (latent optimisation through a 3-step sampler; `num_samples` is set to `samples`).
    pub dmplug: LatentConfig,
    /// DPS settings (`num_samples` is set to `samples`).
    pub dps: DpsConfig,
    /// MCG settings (`num_samples` is set to `samples`).
    pub mcg: McgConfig,
    /// PiGDM settings (`num_samples` is set to `samples`).
    pub pigdm: PigdmConfig,
    /// RED-diff settings (`num_samples` is set to `samples`).
    pub reddiff: RedDiffConfig,
    /// DPS-MO settings (`num_samples` is set to `samples`).
    pub dps_mo: DpsConfig,
    /// RED-diff-MO settings (`num_samples` is set to `samples`).
    pub reddiff_mo: RedDiffConfig,
    /// SMC (TDS) settings; `num_particles` is each of [`SMC_PARTICLES`] (one row each).
    pub smc: SmcConfig,
}

/// The quick (CI) and full presets.
pub fn preset(full: bool) -> GmmPreset {
    let steps = if full { 100 } else { 30 };
    let enkg = EnkgConfig {
        num_steps: steps,
        num_updates: 2,
        ..Default::default()
    };
    // CPS needs more levels than the ODE-based methods (its default is 200): 60 quick, 100 full.
    let cps = CpsConfig {
        num_steps: if full { 100 } else { 60 },
        num_candidates: if full { 32 } else { 16 },
        ..Default::default()
    };
    let unconditional = UnconditionalConfig {
        num_steps: steps,
        ..Default::default()
    };
    // EnKG's black-box baselines at a GMM-sized budget: EKI from prior draws with 10 Kalman steps
    // of h = 0.1 (tempering to the full likelihood, exact for a Gaussian prior); the reverse-SDE
    // baselines on CPS's number of levels, with budgets cut from the reference's image settings
    // (1024 queries, 5000 MC samples, 512 candidates) and the scales that did best on the 2-D
    // tests of diffinv-solvers (GSG 0.05, DPG 2; the reference's 0.01 and 200 are image settings).
    let eki = EkiConfig {
        num_iterations: 10,
        step_size: 0.1,
        prior_steps: steps,
        ..Default::default()
    };
    let sde_steps = if full { 100 } else { 60 };
    let gsg = GsgConfig {
        num_steps: sde_steps,
        num_queries: 32,
        guidance_scale: 0.05,
        ..Default::default()
    };
    let dpg = DpgConfig {
        num_steps: sde_steps,
        num_mc_samples: 32,
        guidance_scale: 2.0,
        ..Default::default()
    };
    let scg = ScgConfig {
        num_steps: sde_steps,
        num_candidates: if full { 32 } else { 16 },
        ..Default::default()
    };
    // Gradient-based rows: the papers' defaults except the step counts (DPS/MCG/PiGDM 100 quick,
    // 200 full; RED-diff 200 / 1000; the MO variants their 50-step, 100-NFE default) and
    // zeta = 0.2 for DPS, MCG and DPS-MO (the images' zeta = 1 moves a chain by about
    // zeta w_i per step whatever d, too far for d = 8; 0.2 was the best of {0.01, 0.05, 0.2}
    // on seed 0, d = 8 and 80).
    let guided_steps = if full { 200 } else { 100 };
    let dps = DpsConfig {
        num_steps: guided_steps,
        zeta: 0.2,
        ..Default::default()
    };
    let mcg = McgConfig {
        num_steps: guided_steps,
        zeta: 0.2,
        ..Default::default()
    };
    let pigdm = PigdmConfig {
        num_steps: guided_steps,
        ..Default::default()
    };
    let reddiff = RedDiffConfig {
        num_steps: if full { 1000 } else { 200 },
        ..Default::default()
    };
    let dps_mo = DpsConfig {
        zeta: 0.2,
        mo: Some(MoConfig::default()),
        ..DpsConfig::mo_default()
    };
    let reddiff_mo = RedDiffConfig::mo_default();
    let smc = SmcConfig {
        num_steps: guided_steps,
        ..Default::default()
    };
    GmmPreset {
        name: if full { "full" } else { "quick" },
        dims: vec![8, 80, 800],
        dys: vec![1, 2, 4],
        samples: if full { 1024 } else { 256 },
        reference_samples: if full { 10_000 } else { 4096 },
        projections: if full { 1000 } else { 300 },
        enkg,
        cps,
        unconditional,
        eki,
        gsg,
        dpg,
        scg,
        // DDS: the paper's 50 steps, M = 5, eta = 0.15. DiffPIR: 100 steps (full) as the
        // paper, 50 (quick). DAPS: the paper's DAPS-1K (200 levels, 100 Langevin steps) in full,
        // 50 levels and 50 Langevin steps in quick; its Langevin step 1e-4 is tuned for images
        // with tau = 0.01 (data precision 1e4), against which this benchmark's data precision
        // 1 / sigma_y^2 (about 4 to 500) barely moves a chain, so the step is 1e-2 here (DAPS
        // caps it at 1 / curvature, which keeps the chains stable).
        dds: DdsConfig::default(),
        daps: DapsConfig {
            lr: 1e-2,
            ..if full {
                DapsConfig::default()
            } else {
                DapsConfig {
                    annealing_steps: 50,
                    langevin_steps: 50,
                    ..Default::default()
                }
            }
        },
        // DMPlug: 3 Euler steps, Adam lr 0.05 on the unit seed, 300 (quick) / 1000 (full) iterations.
        dmplug: LatentConfig {
            num_steps: if full { 1000 } else { 300 },
            lr: 0.05,
            ..Default::default()
        },
        diffpir: DiffPirConfig {
            num_steps: if full { 100 } else { 50 },
            ..Default::default()
        },
        dps,
        mcg,
        pigdm,
        reddiff,
        dps_mo,
        reddiff_mo,
        smc,
    }
}

/// Particle counts of the SMC (TDS) rows, so that the table shows the distance falling with N.
pub const SMC_PARTICLES: [usize; 3] = [64, 256, 1024];

/// Guidance scales of the EnKG rows: the reference default (2) and two smaller ones, because
/// EnKG's normalised step moves each particle by about `gs` ensemble spreads per update and so
/// trades data fit against posterior spread (see docs/algorithms.md).
pub const ENKG_GUIDANCE: [f64; 3] = [2.0, 0.5, 0.1];

/// One configuration of the benchmark.
pub struct GmmProblem {
    /// The prior.
    pub prior: GaussianMixture,
    /// `A` as an operator.
    pub op: MatrixOperator,
    /// The likelihood of `y`.
    pub lik: GaussianLikelihood,
    /// Exact posterior draws.
    pub reference: Array2<f32>,
    /// Exact posterior mean.
    pub post_mean: Array1<f64>,
    /// Measurement noise standard deviation.
    pub sigma_y: f64,
}

/// Orthonormalise the rows of `m` (modified Gram-Schmidt, in place).
fn orthonormal_rows(m: &mut Array2<f64>) {
    for i in 0..m.nrows() {
        for j in 0..i {
            let dot: f64 = m.row(i).dot(&m.row(j));
            let rj = m.row(j).to_owned();
            m.row_mut(i).scaled_add(-dot, &rj);
        }
        let n = m.row(i).dot(&m.row(i)).sqrt();
        m.row_mut(i).mapv_inplace(|v| v / n);
    }
}

/// Build configuration `(d, d_y)` for `seed`, with the measurement model of the MCGdiff
/// reference code: `A = U diag(s) V^T` with Haar-like random orthonormal `U (d_y x d_y)`,
/// `V (d x d_y)`, singular values `s` sorted i.i.d. `U(0, 1)`, and noise level
/// `sigma_y = u max(s)`, `u ~ U(0, 1)`; mixture weights `z_c^2 / sum z^2`, `z_c ~ N(0, 1)`.
/// `x*` is a prior draw and `y = A x* + sigma_y n`.
pub fn make_problem(
    d: usize,
    dy: usize,
    reference_samples: usize,
    seed: u64,
) -> Result<GmmProblem> {
    let mut rng = stream(seed, 0x6d6d, d as u64, dy as u64);
    let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
    let weights: Vec<f64> = (0..25).map(|_| normal().powi(2)).collect();
    let mut v = Array2::from_shape_fn((dy, d), |_| normal());
    let mut u = Array2::from_shape_fn((dy, dy), |_| normal());
    orthonormal_rows(&mut v);
    orthonormal_rows(&mut u);
    let mut rng = stream(seed, 0x6d6e, d as u64, dy as u64);
    let mut s: Vec<f64> = (0..dy).map(|_| rng.random_range(0.0..1.0)).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let sigma_y = rng.random_range(0.0..1.0) * s[0];
    let a = u.dot(&(Array2::from_diag(&Array1::from(s)).dot(&v)));
    let prior = GaussianMixture::mcgdiff_grid(d, &weights)?;
    let x_star = prior.sample(1, seed ^ 0xabc).row(0).mapv(|v| v as f64);
    let y = a.dot(&x_star)
        + Array1::from_shape_fn(dy, |_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            sigma_y * z
        });
    let post = prior.posterior(a.view(), y.view(), sigma_y)?;
    let reference = post.sample(reference_samples, seed ^ 0x5eed);
    Ok(GmmProblem {
        op: MatrixOperator::new(a.mapv(|v| v as f32))?,
        lik: GaussianLikelihood::new(y.mapv(|v| v as f32), sigma_y as f32)?,
        post_mean: post.mean(),
        sigma_y,
        prior,
        reference,
    })
}

/// A finished row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    method: String,
    d: usize,
    dy: usize,
    sigma_y: f64,
    sw: f64,
    mean_err: f64,
    misfit: f64,
    fwd_evals: u64,
    den_evals: u64,
    seconds: f64,
    /// First two coordinates of the samples, for the figures.
    xy: Vec<(f32, f32)>,
}

fn score(
    p: &GmmProblem,
    samples: &Array2<f32>,
    cfg: SlicedWassersteinConfig,
) -> Result<(f64, f64, f64)> {
    let sw = sliced_wasserstein(samples.view(), p.reference.view(), cfg)?;
    let me = mean_error(samples.view(), p.post_mean.view())?;
    let y = p.op.forward(samples.view())?;
    let obs = p.lik.observation();
    let misfit = y
        .outer_iter()
        .map(|r| {
            (r.iter()
                .zip(obs.iter())
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                / obs.len() as f64)
                .sqrt()
        })
        .sum::<f64>()
        / y.nrows() as f64;
    Ok((sw, me, misfit))
}

/// Run the table.
pub fn run(full: bool, out: &Path, seed: u64) -> Result<Table> {
    let pre = preset(full);
    let mut cache = RowCache::open(
        &out.join(".cache")
            .join(format!("gmm-{}-seed{seed}.jsonl", pre.name)),
    )?;
    let mut methods: Vec<String> = vec!["posterior (exact)".into(), "unconditional".into()];
    methods.extend(ENKG_GUIDANCE.iter().map(|g| format!("EnKG (gs={g})")));
    methods.push("CPS".into());
    methods.extend(["EKI", "Forward-GSG", "Central-GSG", "DPG", "SCG"].map(String::from));
    methods.extend(["DDS", "DAPS", "DiffPIR", "DMPlug"].map(String::from));
    methods.extend(["DPS", "MCG", "PiGDM", "RED-diff", "DPS-MO", "RED-diff-MO"].map(String::from));
    methods.extend(SMC_PARTICLES.iter().map(|n| format!("SMC (N={n})")));
    let total = (pre.dims.len() * pre.dys.len() * methods.len()) as u64;
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("gmm [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let sw_cfg = SlicedWassersteinConfig {
        projections: pre.projections,
        seed,
    };
    let mut rows: Vec<Row> = Vec::new();
    for &d in &pre.dims {
        for &dy in &pre.dys {
            let keys: Vec<String> = methods.iter().map(|m| format!("{m}|{d}|{dy}")).collect();
            if keys.iter().all(|k| cache.get::<Row>(k).is_some()) {
                for k in &keys {
                    rows.extend(cache.get::<Row>(k));
                }
                bar.inc(methods.len() as u64);
                continue;
            }
            let p = make_problem(d, dy, pre.reference_samples, seed)
                .with_context(|| format!("building d={d} d_y={dy}"))?;
            let problem = Problem::new(&p.prior, &p.op, &p.lik)?;
            for (m, key) in methods.iter().zip(&keys) {
                bar.set_message(format!("{m} d={d} d_y={dy}"));
                if let Some(r) = cache.get::<Row>(key) {
                    rows.push(r);
                    bar.inc(1);
                    continue;
                }
                let (samples, fwd, den, secs) = match m.as_str() {
                    "posterior (exact)" => {
                        let t = std::time::Instant::now();
                        let post = p.prior.posterior(
                            p.op.matrix().mapv(|v| v as f64).view(),
                            p.lik.observation().mapv(|v| v as f64).view(),
                            p.sigma_y,
                        )?;
                        let s = post.sample(pre.samples, seed ^ 0xf00d);
                        (s, 0, 0, t.elapsed().as_secs_f64())
                    }
                    name => {
                        let solver: Box<dyn DynSolver> = match name {
                            "unconditional" => Box::new(Unconditional::new(UnconditionalConfig {
                                num_samples: pre.samples,
                                ..pre.unconditional.clone()
                            })?),
                            "CPS" => Box::new(Cps::new(CpsConfig {
                                num_samples: pre.samples,
                                ..pre.cps.clone()
                            })?),
                            "EKI" => Box::new(Eki::new(EkiConfig {
                                num_particles: pre.samples,
                                ..pre.eki.clone()
                            })?),
                            "Forward-GSG" => Box::new(Gsg::new(GsgConfig {
                                num_samples: pre.samples,
                                scheme: GsgScheme::Forward,
                                ..pre.gsg.clone()
                            })?),
                            "Central-GSG" => Box::new(Gsg::new(GsgConfig {
                                num_samples: pre.samples,
                                scheme: GsgScheme::Central,
                                ..pre.gsg.clone()
                            })?),
                            "DPG" => Box::new(Dpg::new(DpgConfig {
                                num_samples: pre.samples,
                                ..pre.dpg.clone()
                            })?),
                            "SCG" => Box::new(Scg::new(ScgConfig {
                                num_samples: pre.samples,
                                ..pre.scg.clone()
                            })?),
                            "DDS" => Box::new(Dds::new(DdsConfig {
                                num_samples: pre.samples,
                                ..pre.dds.clone()
                            })?),
                            "DAPS" => Box::new(Daps::new(DapsConfig {
                                num_samples: pre.samples,
                                ..pre.daps.clone()
                            })?),
                            "DMPlug" => Box::new(LatentOptimization::new(LatentConfig {
                                num_samples: pre.samples,
                                ..pre.dmplug.clone()
                            })?),
                            "DiffPIR" => Box::new(DiffPir::new(DiffPirConfig {
                                num_samples: pre.samples,
                                ..pre.diffpir.clone()
                            })?),
                            "DPS" => Box::new(Dps::new(DpsConfig {
                                num_samples: pre.samples,
                                ..pre.dps.clone()
                            })?),
                            "MCG" => Box::new(Mcg::new(McgConfig {
                                num_samples: pre.samples,
                                ..pre.mcg.clone()
                            })?),
                            "PiGDM" => Box::new(Pigdm::new(PigdmConfig {
                                num_samples: pre.samples,
                                ..pre.pigdm.clone()
                            })?),
                            "RED-diff" => Box::new(RedDiff::new(RedDiffConfig {
                                num_samples: pre.samples,
                                ..pre.reddiff.clone()
                            })?),
                            "DPS-MO" => Box::new(Dps::new(DpsConfig {
                                num_samples: pre.samples,
                                ..pre.dps_mo.clone()
                            })?),
                            "RED-diff-MO" => Box::new(RedDiff::new(RedDiffConfig {
                                num_samples: pre.samples,
                                ..pre.reddiff_mo.clone()
                            })?),
                            smc if smc.starts_with("SMC (N=") => {
                                let n = SMC_PARTICLES
                                    .iter()
                                    .copied()
                                    .find(|n| smc == format!("SMC (N={n})"))
                                    .context("unknown SMC row")?;
                                Box::new(Smc::new(SmcConfig {
                                    num_particles: n,
                                    ..pre.smc.clone()
                                })?)
                            }
                            enkg => {
                                let gs = ENKG_GUIDANCE
                                    .iter()
                                    .copied()
                                    .find(|g| enkg == format!("EnKG (gs={g})"))
                                    .context("unknown method")?;
                                Box::new(Enkg::new(EnkgConfig {
                                    num_particles: pre.samples,
                                    guidance_scale: gs,
                                    ..pre.enkg.clone()
                                })?)
                            }
                        };
                        if let Ok(path) = std::env::var("DIFFINV_DUMP") {
                            use std::io::Write;
                            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                            writeln!(f, "{}", serde_json::json!({"table": "gmm", "preset": pre.name, "label": m, "name": solver.name(), "config": solver.config_value()?}))?;
                            bar.inc(1);
                            continue;
                        }
                        let o = Runner::new(problem).run(solver.as_ref(), seed)?;
                        (
                            o.samples,
                            o.cost.fwd_total,
                            o.cost.den_total,
                            o.cost.seconds,
                        )
                    }
                };
                let (sw, mean_err, misfit) = score(&p, &samples, sw_cfg)?;
                let xy = samples.outer_iter().map(|r| (r[0], r[1])).collect();
                let row = Row {
                    method: m.clone(),
                    d,
                    dy,
                    sigma_y: p.sigma_y,
                    sw,
                    mean_err,
                    misfit,
                    fwd_evals: fwd,
                    den_evals: den,
                    seconds: secs,
                    xy,
                };
                cache.put(key, &row)?;
                rows.push(row);
                bar.inc(1);
            }
            if dy == pre.dys[0] {
                let reference: Vec<(f64, f64)> = p
                    .reference
                    .outer_iter()
                    .take(2000)
                    .map(|r| (r[0] as f64, r[1] as f64))
                    .collect();
                let colors = [
                    [40, 40, 40],
                    [200, 120, 0],
                    [0, 90, 200],
                    [0, 140, 140],
                    [0, 160, 60],
                    [200, 0, 60],
                ];
                let panels: Vec<ScatterPanel> = rows
                    .iter()
                    .filter(|r| r.d == d && r.dy == dy)
                    .zip(colors.iter().cycle())
                    .map(|(r, color)| ScatterPanel {
                        title: r.method.clone(),
                        points: r.xy.iter().map(|&(a, b)| (a as f64, b as f64)).collect(),
                        reference: reference.clone(),
                        color: Some(*color),
                    })
                    .collect();
                let opts = ScatterOptions {
                    title: format!("Gaussian mixture, d = {d}, d_y = {dy}: first two coordinates"),
                    x_label: "x1".into(),
                    y_label: "x2".into(),
                    points_label: "samples".into(),
                    reference_label: "exact posterior".into(),
                    size: 260,
                    columns: 6,
                };
                // One panel per row of the table, in its order.
                scatter_panels(&out.join(format!("gmm_d{d}_dy{dy}.png")), &opts, &panels)?;
            }
        }
    }
    bar.finish_and_clear();
    let mut table = Table::new(&[
        "method",
        "d",
        "d_y",
        "sw",
        "mean_err",
        "misfit",
        "fwd_evals",
        "den_evals",
        "seconds",
    ]);
    for r in &rows {
        table.rows.push(vec![
            r.method.clone(),
            r.d.to_string(),
            r.dy.to_string(),
            format!("{:.4}", r.sw),
            format!("{:.4}", r.mean_err),
            format!("{:.4}", r.misfit),
            r.fwd_evals.to_string(),
            r.den_evals.to_string(),
            format!("{:.2}", r.seconds),
        ]);
    }
    let mut sigmas: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.method == "unconditional") {
        sigmas.push(format!("d={} d_y={}: {:.3}", r.d, r.dy, r.sigma_y));
    }
    let notes = format!(
        "Gaussian-mixture benchmark (MCGdiff, Cardoso et al. 2024), preset `{}`, seed {seed}: {} samples per method, \
         sliced Wasserstein distance (`sw`, {} projections) to {} exact posterior draws, `mean_err` = RMS error of the \
         sample mean against the exact posterior mean, `misfit` = mean RMS residual `A x - y`. \
         Measurement model of the MCGdiff reference code: singular values of `A` i.i.d. U(0,1), sigma_y = U(0,1) x largest \
         singular value (per configuration: {}). \
         `posterior (exact)` is an independent exact draw of the same size: its `sw` is the finite-sample floor. \
         Scatter plots of the first two coordinates: gmm_d*_dy1.png (grey: exact posterior; panels in row order).",
        pre.name, pre.samples, pre.projections, pre.reference_samples, sigmas.join(", ")
    );
    table.write(out, "gmm", "Gaussian-mixture posterior benchmark", &notes)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_model_is_the_reference_one() -> Result<()> {
        for (d, dy) in [(8, 1), (80, 4)] {
            let p = make_problem(d, dy, 64, 3)?;
            let a = p.op.matrix().mapv(f64::from);
            // A A^T = U diag(s^2) U^T: eigenvalues in (0, 1), so trace in (0, d_y).
            let aat = a.dot(&a.t());
            let trace: f64 = (0..dy).map(|i| aat[[i, i]]).sum();
            assert!(trace > 0.0 && trace < dy as f64, "trace {trace}");
            // sigma_y = u * max singular value <= sqrt(largest eigenvalue) <= sqrt(trace).
            assert!(p.sigma_y > 0.0 && p.sigma_y <= trace.sqrt() + 1e-6);
            assert_eq!(p.reference.dim(), (64, d));
            assert_eq!(p.post_mean.len(), d);
            // Seeded: the same seed gives the same problem, another seed another one.
            let again = make_problem(d, dy, 64, 3)?;
            assert_eq!(again.op.matrix(), p.op.matrix());
            let other = make_problem(d, dy, 64, 4)?;
            assert_ne!(other.op.matrix(), p.op.matrix());
        }
        Ok(())
    }

    #[test]
    fn exact_posterior_draws_fit_the_data_at_the_noise_level() -> Result<()> {
        let p = make_problem(8, 4, 4096, 1)?;
        let (sw, _, misfit) = score(
            &p,
            &p.reference,
            SlicedWassersteinConfig {
                projections: 50,
                seed: 0,
            },
        )?;
        assert!(sw < 1e-9, "a sample set is at distance 0 from itself: {sw}");
        // RMS residual of exact posterior draws is of the order of sigma_y (slightly below).
        assert!(
            misfit < 2.0 * p.sigma_y && misfit > 0.2 * p.sigma_y,
            "misfit {misfit} sigma_y {}",
            p.sigma_y
        );
        Ok(())
    }
}
