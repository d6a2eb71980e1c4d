//! The wall-time estimate printed before a long run starts (the Navier-Stokes `paper` preset):
//! each method's evaluation counts, taken from a dry run of the same solver configuration on a
//! four-dimensional Gaussian stand-in problem (the counts depend on the ensemble size, the
//! levels and the schedules, not on the dimension), times the per-row cost of the prior, its
//! vector-Jacobian product and the forward model, measured on a timed batch of the real ones.

use std::time::Instant;

use anyhow::{Context, Result};
use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood};
use diffinv_priors::{Denoiser, Gaussian, GaussianPrior};
use diffinv_solvers::{CostSummary, Problem as SolverProblem, Runner};
use ndarray::{Array1, Array2, ArrayView1};

use crate::methods::{build, Preset, Problem};

/// Evaluation counts of one run of `method` at `preset` (with the `--particles` override), from
/// a dry run on a 4-dimensional Gaussian prior with the identity as forward model.
pub fn evaluation_counts(
    method: &str,
    preset: Preset,
    particles: Option<usize>,
) -> Result<CostSummary> {
    let d = 4;
    let prior = GaussianPrior::new(Gaussian::isotropic(Array1::zeros(d), 1.0)?);
    let fwd = FnForward::new(d, d, |x: &[f32]| x.to_vec());
    let lik = GaussianLikelihood::new(Array1::zeros(d), 1.0)?;
    let sp = SolverProblem::new(&prior, &fwd, &lik)?;
    let solver = build(method, Problem::NavierStokes, preset, particles)?;
    let out = Runner::new(sp)
        .run(solver.as_ref(), 0)
        .with_context(|| format!("counting the evaluations of {method}"))?;
    Ok(out.cost)
}

/// Seconds per row of each kind of evaluation, measured on the real prior and forward model.
#[derive(Debug, Clone, Copy)]
pub struct UnitCosts {
    /// One denoiser evaluation (one image), in a batch of the prior's chunk size.
    pub prior: f64,
    /// One vector-Jacobian product of the denoiser (only measured when a method needs it).
    pub prior_vjp: Option<f64>,
    /// One forward-model evaluation, in a batch that fills every core.
    pub forward: f64,
    /// Rows of the timed prior batch.
    pub prior_batch: usize,
    /// Rows of the timed forward batch.
    pub forward_batch: usize,
}

/// Time the prior (after one warm-up call, which also compiles CUDA kernels) on `prior_batch`
/// copies of `z` at noise level 1, its vjp if `vjp`, and the forward model on `forward_batch`
/// copies of `z` (in the space the solvers move in).
pub fn unit_costs(
    prior: &dyn Denoiser,
    fwd: &dyn ForwardModel,
    z: ArrayView1<'_, f32>,
    prior_batch: usize,
    forward_batch: usize,
    vjp: bool,
) -> Result<UnitCosts> {
    let rows = |n: usize| -> Result<Array2<f32>> {
        let mut a = Array2::zeros((n, z.len()));
        for mut r in a.rows_mut() {
            r.assign(&z);
        }
        Ok(a)
    };
    let xb = rows(prior_batch.max(1))?;
    prior.denoise(xb.view(), 1.0).context("timing the prior")?;
    let t = Instant::now();
    let reps = 2;
    for _ in 0..reps {
        prior.denoise(xb.view(), 1.0).context("timing the prior")?;
    }
    let per_prior = t.elapsed().as_secs_f64() / (reps * xb.nrows()) as f64;
    let prior_vjp = if vjp {
        let t = Instant::now();
        prior
            .vjp(xb.view(), 1.0, xb.view())
            .context("timing the prior's vector-Jacobian product")?;
        Some(t.elapsed().as_secs_f64() / xb.nrows() as f64)
    } else {
        None
    };
    let xf = rows(forward_batch.max(1))?;
    let t = Instant::now();
    let _ = fwd.forward_partial(xf.view());
    let per_fwd = t.elapsed().as_secs_f64() / xf.nrows() as f64;
    Ok(UnitCosts {
        prior: per_prior,
        prior_vjp,
        forward: per_fwd,
        prior_batch: xb.nrows(),
        forward_batch: xf.nrows(),
    })
}

/// Estimated seconds of one run with evaluation counts `c` at unit costs `u`.
pub fn seconds(c: &CostSummary, u: &UnitCosts) -> f64 {
    c.fwd_total as f64 * u.forward
        + c.den_total as f64 * u.prior
        + c.den_grad_total as f64 * u.prior_vjp.unwrap_or(3.0 * u.prior)
}

/// `3 h 05 min`, `12 min`, `40 s`, `2.1 days`.
pub fn human(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unknown".into();
    }
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 72.0 * 3600.0 {
        let h = (s / 3600.0).floor();
        format!("{h:.0} h {:02.0} min", (s - h * 3600.0) / 60.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

/// The Navier-Stokes table's estimate: one line per method (its evaluation counts per field and
/// noise level, and its share of the time) and a total, for `req` on `prior` with the `res x res`
/// test fields `data`. Returns `(total seconds, lines)`.
pub fn navier_stokes(
    req: &crate::tables::Request,
    prior: &crate::tables::NsPrior,
    res: usize,
    data: &[f32],
) -> Result<(f64, Vec<String>)> {
    use diffinv_operators::{Affine, NavierStokes2d, NavierStokesConfig};
    let d = res * res;
    let methods: Vec<String> = if req.methods.is_empty() {
        crate::METHODS.iter().map(|s| s.to_string()).collect()
    } else {
        req.methods.clone()
    };
    let fields = req
        .cases
        .unwrap_or(crate::tables::default_cases(req.preset))
        .min(data.len() / d)
        .max(1);
    let noises = crate::tables::ns_noise_levels(req.preset).len();
    let runs = (fields * noises) as f64;
    let mut counts = Vec::new();
    for m in &methods {
        counts.push(evaluation_counts(m, req.preset, req.particles)?);
    }
    let op = NavierStokes2d::new(NavierStokesConfig::enkg(res, 0.0))?;
    let fwd = Affine::new(&op, prior.scale as f32, prior.shift as f32)?;
    let z: Array1<f32> = data[..d]
        .iter()
        .map(|w| ((f64::from(*w) - prior.shift) / prior.scale) as f32)
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let vjp = counts.iter().any(|c| c.den_grad_total > 0);
    let u = unit_costs(
        prior.prior.as_ref(),
        &fwd,
        z.view(),
        crate::tables::SCRIPTED_BATCH,
        threads.max(2),
        vjp,
    )?;
    let mut lines = vec![format!(
        "timed batch: prior {:.2} ms per image on {} ({} images){}, forward model {:.0} ms per field on {} CPU threads ({} fields of {res} x {res})",
        u.prior * 1e3,
        prior.device,
        u.prior_batch,
        u.prior_vjp.map_or(String::new(), |v| format!(", its vjp {:.2} ms", v * 1e3)),
        u.forward * 1e3,
        threads,
        u.forward_batch,
    )];
    let mut total = 0.0;
    for (m, c) in methods.iter().zip(&counts) {
        let one = seconds(c, &u);
        total += one * runs;
        lines.push(format!(
            "{m}: {} forward and {} denoiser evaluations{} per field and noise level, about {} each, {} for all {} runs",
            c.fwd_total,
            c.den_total,
            if c.den_grad_total > 0 { format!(" (+{} vjps)", c.den_grad_total) } else { String::new() },
            human(one),
            human(one * runs),
            fields * noises,
        ));
    }
    Ok((total, lines))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(12.4), "12 s");
        assert_eq!(human(600.0), "10 min");
        assert_eq!(human(3.0 * 3600.0 + 300.0), "3 h 05 min");
        assert_eq!(human(5.0 * 86400.0), "5.0 days");
        assert_eq!(human(f64::NAN), "unknown");
    }

    /// The dry run counts EnKG's evaluations as the paper's Table 2 does: 2048 particles, 80
    /// levels, 2 updates per guided level (`295k` forward evaluations, `0.14k` sequential).
    #[test]
    fn paper_enkg_counts_match_table_2() {
        let c = evaluation_counts("EnKG", Preset::Paper, Some(8)).unwrap();
        // 8 particles instead of 2048: the sequential counts do not depend on N.
        assert!((140..=146).contains(&c.fwd_seq), "{c:?}");
        assert_eq!(c.fwd_total, 8 * c.fwd_seq);
        assert!(c.den_total > 10 * c.fwd_total, "{c:?}");
    }
}
