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
use diffinv_solvers::{Problem, Runner};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::methods::Preset;
use crate::plot::{scatter_panels, ScatterOptions, ScatterPanel};
use crate::presets::TablePreset;
use crate::report::{RowCache, Table};

/// The problem sizes of a preset (`[settings]` of configs/tables/gmm-PRESET.toml); the methods
/// and their configurations are the preset's rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmSettings {
    /// Dimensions `d`.
    pub dims: Vec<usize>,
    /// Measurement dimensions `d_y`.
    pub dys: Vec<usize>,
    /// Samples each method returns (the rows' ensemble, chain or draw counts say the same).
    pub samples: usize,
    /// Exact posterior draws the samples are compared with.
    pub reference_samples: usize,
    /// Random directions of the sliced Wasserstein distance.
    pub projections: usize,
}

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
    /// Fraction of the wall time spent outside the forward model and the prior (the solver's
    /// own work).
    #[serde(default)]
    overhead: f64,
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

/// Run the table at `preset` into `out` (finished rows are reused only with `resume`, the rule
/// of every table).
pub fn run(preset: Preset, out: &Path, seed: u64, resume: bool) -> Result<Table> {
    let spec = TablePreset::get("gmm", preset)?;
    let pre: GmmSettings = spec.settings()?;
    let cache = RowCache::open(
        &out.join(".cache")
            .join(format!("gmm-{}-seed{seed}", preset.name())),
        !resume,
    )?;
    let mut methods: Vec<String> = vec!["posterior (exact)".into()];
    methods.extend(spec.labels());
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
                let (samples, fwd, den, secs, overhead) = match m.as_str() {
                    "posterior (exact)" => {
                        let t = std::time::Instant::now();
                        let post = p.prior.posterior(
                            p.op.matrix().mapv(|v| v as f64).view(),
                            p.lik.observation().mapv(|v| v as f64).view(),
                            p.sigma_y,
                        )?;
                        let s = post.sample(pre.samples, seed ^ 0xf00d);
                        (s, 0, 0, t.elapsed().as_secs_f64(), 0.0)
                    }
                    label => {
                        let solver = spec.row(label)?.build(None, None)?;
                        let o = Runner::new(problem)
                            .run(solver.as_ref(), seed)
                            .with_context(|| format!("{label} at d={d} d_y={dy}"))?;
                        (
                            o.samples,
                            o.cost.fwd_total,
                            o.cost.den_total,
                            o.cost.seconds,
                            o.cost.overhead_fraction(),
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
                    overhead,
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
        "overhead",
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
            if r.method == "posterior (exact)" {
                "-".into()
            } else {
                format!("{:.1}%", 100.0 * r.overhead)
            },
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
         `overhead` = share of the wall time spent outside the forward model and the prior (the solver's own work). \
         Scatter plots of the first two coordinates: gmm_d*_dy1.png (grey: exact posterior; panels in row order).",
        preset.name(), pre.samples, pre.projections, pre.reference_samples, sigmas.join(", ")
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
