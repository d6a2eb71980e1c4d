//! The wall-time estimate of a Navier-Stokes table on this machine:
//! each method's evaluation counts, taken from a dry run of the same solver configuration on a
//! 16-dimensional Gaussian stand-in problem (a 4 x 4 grid: EKI's random field needs modes besides
//! the mean and Nyquist ones; the counts depend on the ensemble size, the levels and the
//! schedules, not on the dimension), times the per-row cost of the prior, its vector-Jacobian
//! product and the forward model, measured on a timed batch of the real ones. Printed before
//! the `full` and `paper` presets start, and alone with `--estimate`.

use std::time::Instant;

use anyhow::{Context, Result};
use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood};
use diffinv_priors::{Denoiser, Gaussian, GaussianPrior};
use diffinv_solvers::{CostSummary, Problem as SolverProblem, Runner};
use ndarray::{Array1, Array2, ArrayView1};

use crate::methods::{build, Preset, Problem};

/// Evaluation counts of one run of `method` at `preset` (with the `--particles` override), from
/// a dry run on a 16-dimensional Gaussian prior (a 4 x 4 grid) with the identity as forward model.
pub fn evaluation_counts(
    method: &str,
    preset: Preset,
    particles: Option<usize>,
) -> Result<CostSummary> {
    let d = 16;
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

/// Measured costs of the real prior and forward model.
#[derive(Debug, Clone, Copy)]
pub struct UnitCosts {
    /// Fixed cost of one call of the prior (seconds), whatever its batch.
    pub prior_call: f64,
    /// Cost of one more image in a call of the prior (seconds).
    pub prior_image: f64,
    /// Images per call of the prior (its chunk size: bigger batches are split).
    pub prior_chunk: usize,
    /// One vector-Jacobian product of the denoiser, per image (only measured when needed).
    pub prior_vjp: Option<f64>,
    /// One call of the forward model on `forward_batch` rows, which fills every core.
    pub forward_wave: f64,
    /// Rows of the timed forward call (the worker threads).
    pub forward_batch: usize,
}

fn timed<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// Time the prior on one image and on `timed_images` images at noise level 1 (after a warm-up
/// call, which also compiles CUDA kernels), its vjp if `vjp`, and the forward model on
/// `forward_batch` rows; every row is `z` (a test field in the space the solvers move in).
/// `prior_chunk` is the prior's images per call in the run (the cost model's call count).
pub fn unit_costs(
    prior: &dyn Denoiser,
    fwd: &dyn ForwardModel,
    z: ArrayView1<'_, f32>,
    prior_chunk: usize,
    timed_images: usize,
    forward_batch: usize,
    vjp: bool,
) -> Result<UnitCosts> {
    let rows = |n: usize| -> Array2<f32> {
        let mut a = Array2::zeros((n.max(1), z.len()));
        for mut r in a.rows_mut() {
            r.assign(&z);
        }
        a
    };
    let chunk = prior_chunk.max(2);
    let k = timed_images.clamp(2, chunk);
    let (x1, xb) = (rows(1), rows(k));
    prior.denoise(xb.view(), 1.0).context("timing the prior")?;
    let t1 = timed(3, || {
        prior.denoise(x1.view(), 1.0).context("timing the prior")
    })?;
    let tb = timed(2, || {
        prior.denoise(xb.view(), 1.0).context("timing the prior")
    })?;
    let image = ((tb - t1) / (k - 1) as f64).max(tb / (10 * k) as f64);
    let call = (t1 - image).max(0.0);
    let prior_vjp = if vjp {
        let t = timed(1, || {
            prior
                .vjp(xb.view(), 1.0, xb.view())
                .context("timing the prior's vector-Jacobian product")
        })?;
        Some(t / k as f64)
    } else {
        None
    };
    let xf = rows(forward_batch);
    let forward_wave = timed(1, || Ok(fwd.forward_partial(xf.view())))?;
    Ok(UnitCosts {
        prior_call: call,
        prior_image: image,
        prior_chunk: chunk,
        prior_vjp,
        forward_wave,
        forward_batch: xf.nrows(),
    })
}

/// Estimated seconds of one run with evaluation counts `c` at unit costs `u`: every sequential
/// prior invocation of `den_total / den_seq` images is split into calls of `prior_chunk`; every
/// sequential forward invocation of `fwd_total / fwd_seq` rows runs in waves of
/// `forward_batch` rows on the cores.
pub fn seconds(c: &CostSummary, u: &UnitCosts) -> f64 {
    let waves = |total: u64, seq: u64, width: usize| -> f64 {
        if seq == 0 || total == 0 {
            return 0.0;
        }
        let per = (total as f64 / seq as f64).ceil();
        seq as f64 * (per / width.max(1) as f64).ceil()
    };
    let prior = waves(c.den_total, c.den_seq, u.prior_chunk) * u.prior_call
        + c.den_total as f64 * u.prior_image;
    let vjp = c.den_grad_total as f64 * u.prior_vjp.unwrap_or(3.0 * (u.prior_call + u.prior_image));
    let forward = waves(c.fwd_total, c.fwd_seq, u.forward_batch) * u.forward_wave;
    prior + vjp + forward
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
    let methods = crate::tables::table_methods("ns", req)?;
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
    // The forward model runs its rows in parallel on rayon's global pool.
    // A full call on a GPU (small batches there are latency-bound, no guide to the slope);
    // 8 images on the CPU, where one call of 64 paper-size images takes minutes.
    let timed = if prior.device == "cpu" {
        8
    } else {
        crate::tables::SCRIPTED_BATCH
    };
    let threads = rayon::current_num_threads();
    let vjp = counts.iter().any(|c| c.den_grad_total > 0);
    let u = unit_costs(
        prior.prior.as_ref(),
        &fwd,
        z.view(),
        crate::tables::SCRIPTED_BATCH,
        timed,
        threads,
        vjp,
    )?;
    let mut lines = vec![format!(
        "timed batch: prior {:.2} ms per call + {:.2} ms per image on {} (timed on 1 and {timed} images; the run calls it with up to {}){}, forward model {:.0} ms per call of {} fields of {res} x {res} on {} CPU threads",
        u.prior_call * 1e3,
        u.prior_image * 1e3,
        prior.device,
        u.prior_chunk,
        u.prior_vjp.map_or(String::new(), |v| format!(", its vjp {:.2} ms per image", v * 1e3)),
        u.forward_wave * 1e3,
        u.forward_batch,
        threads,
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

    /// The dry run counts EnKG's evaluations as the reference code's schedule makes them: 2048
    /// particles (here 8: the sequential counts do not depend on N), 80 levels, 2 updates on
    /// each of the 71 levels with `4 < i < 76`, clean estimates of `min(1 + (80 - i) / 4, 20)`
    /// Euler steps: 142 sequential forward evaluations (Table 2: 0.14k) and
    /// `80 + 2 * sum_i min(1 + (80 - i) / 4, 20) = 1588` denoiser evaluations per particle.
    #[test]
    fn paper_enkg_counts_match_the_reference_schedule() {
        let c = evaluation_counts("EnKG", Preset::Paper, Some(8)).unwrap();
        assert_eq!((c.fwd_seq, c.fwd_total), (142, 8 * 142), "{c:?}");
        assert_eq!((c.den_seq, c.den_total), (1588, 8 * 1588), "{c:?}");
        assert_eq!(c.den_grad_total, 0);
        let full = evaluation_counts("EnKG", Preset::Paper, None).unwrap();
        assert_eq!(full.fwd_total, 2048 * 142);
    }
}
