//! Measurements Optimization (MO; Chen, Wang & Zhou, "Enhancing and Accelerating
//! Diffusion-Based Inverse Problem Solving through Measurements Optimization", arXiv 2412.03941),
//! a plug-in for DPS ([`crate::Dps`], "DPS-MO") and RED-diff ([`crate::RedDiff`], "RED-diff-MO").
//!
//! At every diffusion step the clean estimate `x_init` of the host solver is refined by `N`
//! steps of stochastic gradient Langevin dynamics on the squared residual,
//!
//! `z_{k+1} = z_k - eta grad_z ||y - G(z_k)||^2 + c sqrt(2 eta tau) xi_k`,  `z_0 = x_init`,
//!
//! then re-noised to a level `s` and denoised, which projects the SGLD result back onto the
//! prior's data manifold (the paper's "diffusion prior as projection"):
//!
//! `x0' = D(z_N + s eps; s)`.
//!
//! The host then continues with `x0'` in place of its clean estimate (DPS-MO: an Euler step of
//! the probability-flow ODE, the paper's sampler; RED-diff-MO: `mu <- x0'` after the Adam step).
//!
//! Four choices are keys of [`MoConfig`] (and [`crate::DpsConfig::mo_dps_step`]); each default's
//! source, and the imaging-table ablation of all four, are in docs/algorithms.md
//! ("Measurements Optimization"):
//!
//! - `renoise`: `s = sigma_i`, the host's current level (default; the paper calls MO with the
//!   current step's `sigma(t)` before the Euler step), or `sigma_{i+1}`;
//! - `sgld_noise`: `c = min(1, s)` (damped, default: chosen by the ablation), or `c = 1`, SGLD
//!   as defined;
//! - `sigma_floor`: the lowest `s` (default: the host schedule's `sigma_min`);
//! - DPS-MO's `mo_dps_step`: whether DPS's own gradient step is kept besides the MO step
//!   (default false: the paper's sampler is MO followed by the Euler step).
//!
//! With `tau = 1` the SGLD chain targets `exp(-||y - G(z)||^2)`, the paper's loss read as a
//! Gibbs density (for a linear `G = I`: `N(y, I/2)`; the discrete chain's exact stationary
//! variance is `1 / (2 (1 - eta))`, see the test). The loss is the paper's unweighted squared
//! residual, so MO needs an isotropic Gaussian likelihood (its observation `y` is read off the
//! likelihood). Each SGLD step costs one forward evaluation and one
//! forward-model vjp per row; the projection costs one denoiser evaluation.
//!
//! Defaults: the paper reports 50-100 NFEs for most tasks. DPS-MO and RED-diff-MO here default
//! to 50 diffusion steps with 2 denoiser evaluations each (100 NFE); the SGLD step count
//! `N = 20` and step `eta = 0.05` are this implementation's choice for data scaled to O(1) and
//! `||A|| <= 1` (stability needs `eta < 1 / ||A||^2`): neither the paper's full algorithm nor
//! its code could be found, so they are not the paper's values.

use ndarray::{Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

use crate::guidance::{tags, GaussianData};
use crate::kernels::{check_finite, normal_rows};
use crate::problem::Evaluator;
use crate::{Result, SolverError};

/// What a solver with an optional MO plug-in requires: the gradient, and with MO an isotropic
/// Gaussian likelihood (the SGLD loss is its residual).
pub(crate) fn requirements(mo: Option<&MoConfig>) -> Vec<crate::Capability> {
    let mut r = vec![crate::Capability::Gradient];
    if mo.is_some() {
        r.push(crate::Capability::GaussianLikelihood);
    }
    r
}

/// The Gaussian data the MO plug-in needs (once per problem), `None` without MO.
pub(crate) fn prepare(
    eval: &Evaluator<'_>,
    mo: Option<&MoConfig>,
    method: &str,
) -> Result<Option<GaussianData>> {
    mo.map(|_| GaussianData::probe(eval, method)).transpose()
}

/// The noise level of MO's projection `D(z_N + s eps; s)` (key `renoise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenoiseLevel {
    /// The host's current level `sigma_i`: the MO paper's description (its MO call receives the
    /// current step's `sigma(t)`, and the Euler step to `sigma_{i+1}` follows it).
    Current,
    /// The host's next level `sigma_{i+1}` (this implementation's earlier choice).
    Next,
}

/// The scale of the SGLD chain's injected noise (key `sgld_noise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgldNoise {
    /// `sqrt(2 eta tau) xi`: the Langevin chain of the loss, as SGLD is defined (what the MO
    /// paper names).
    Langevin,
    /// `min(1, s) sqrt(2 eta tau) xi` with `s` the projection level: the chain damped below
    /// level 1, a temperature of `min(1, s)^2` (the default; see [`refine`]).
    Damped,
}

/// Hyperparameters of the MO module. Each default says where it comes from; the ablation behind
/// the ones the MO paper does not state is in docs/algorithms.md ("Measurements Optimization").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoConfig {
    /// SGLD steps `N` per diffusion step (default 20; not stated by the paper).
    pub sgld_steps: usize,
    /// SGLD step size `eta` (default 0.05; not stated by the paper).
    pub lr: f64,
    /// Temperature `tau` of the injected noise (default 1: the Langevin chain of the loss).
    pub temperature: f64,
    /// Level of the re-noise-and-denoise projection: `"current"` (`sigma_i`, default: the
    /// paper's description) or `"next"` (`sigma_{i+1}`).
    pub renoise: RenoiseLevel,
    /// Scale of the SGLD noise: `"damped"` (times `min(1, level)`, default: the paper does not
    /// state its SGLD step or temperature, and at this step the undamped chain collapses the
    /// imaging table, docs/algorithms.md) or `"langevin"` (unscaled, SGLD as defined).
    pub sgld_noise: SgldNoise,
    /// Lowest projection level (default `None`: the host schedule's `sigma_min`; the paper
    /// names a `sigma_min` but not its value). With `0`, a step whose level is 0 (the last
    /// one with `renoise = "next"`) returns the SGLD result unprojected (`D(x; 0) = x`).
    pub sigma_floor: Option<f64>,
}

impl Default for MoConfig {
    fn default() -> Self {
        Self {
            sgld_steps: 20,
            lr: 0.05,
            temperature: 1.0,
            renoise: RenoiseLevel::Current,
            sgld_noise: SgldNoise::Damped,
            sigma_floor: None,
        }
    }
}

impl MoConfig {
    /// Check the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.sgld_steps == 0 {
            return Err(SolverError::Config(
                "MO sgld_steps must be at least 1 (one SGLD step)".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(SolverError::Config(format!(
                "MO lr must be finite and > 0, got {}",
                self.lr
            )));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SolverError::Config(format!(
                "MO temperature must be finite and >= 0, got {}",
                self.temperature
            )));
        }
        if let Some(f) = self.sigma_floor {
            if !(f.is_finite() && f >= 0.0) {
                return Err(SolverError::Config(format!(
                    "MO sigma_floor must be finite and >= 0, got {f}"
                )));
            }
        }
        Ok(())
    }

    /// The projection level at a host step from `sigma` to `sigma_next`, with the host
    /// schedule's `sigma_min` as the floor unless `sigma_floor` is set.
    pub fn level(&self, sigma: f64, sigma_next: f64, schedule_sigma_min: f64) -> f64 {
        let s = match self.renoise {
            RenoiseLevel::Current => sigma,
            RenoiseLevel::Next => sigma_next,
        };
        s.max(self.sigma_floor.unwrap_or(schedule_sigma_min))
    }

    /// The factor on the SGLD noise at projection level `level`.
    pub fn noise_scale(&self, level: f64) -> f64 {
        match self.sgld_noise {
            SgldNoise::Langevin => 1.0,
            SgldNoise::Damped => level.min(1.0),
        }
    }
}

/// `N` SGLD steps on `||y - G(z)||^2` from every row of `x` (see the module docs), with the
/// injected noise multiplied by `noise_scale` (1: the Langevin chain of the loss at temperature
/// `tau`). The noise of inner step `k` at outer step `step` and row `r` comes from stream
/// `(seed, SGLD, step * N + k, r)`.
pub fn sgld(
    eval: &Evaluator<'_>,
    data: &GaussianData,
    x: ArrayView2<'_, f32>,
    cfg: &MoConfig,
    noise_scale: f64,
    seed: u64,
    step: usize,
) -> Result<Array2<f32>> {
    Ok(sgld_with_misfit(eval, data, x, cfg, noise_scale, seed, step)?.0)
}

/// [`sgld`], and the mean negative log-likelihood of the starting point `x` (read off the first
/// step's forward evaluation, so it costs nothing extra).
fn sgld_with_misfit(
    eval: &Evaluator<'_>,
    data: &GaussianData,
    x: ArrayView2<'_, f32>,
    cfg: &MoConfig,
    noise_scale: f64,
    seed: u64,
    step: usize,
) -> Result<(Array2<f32>, f64)> {
    let mut z = x.to_owned();
    let (n, d) = z.dim();
    let noise = ((2.0 * cfg.lr * cfg.temperature).sqrt() * noise_scale) as f32;
    // grad ||y - G(z)||^2 = 2 J^T (G(z) - y) = (2 / inv_var) J^T dL/dy.
    let g_scale = (2.0 / data.inv_var * cfg.lr) as f32;
    let mut misfit = 0.0;
    for k in 0..cfg.sgld_steps {
        let y = eval.forward(z.view(), step)?;
        if k == 0 {
            let nll = eval.nll(y.view(), step)?;
            misfit = nll.iter().map(|v| *v as f64).sum::<f64>() / n.max(1) as f64;
        }
        let r = eval.likelihood_grad(y.view(), step)?;
        let g = eval.forward_vjp(z.view(), r.view(), step)?;
        let xi = normal_rows(n, d, seed, tags::SGLD, (step * cfg.sgld_steps + k) as u64, 0);
        Zip::from(&mut z)
            .and(&g)
            .and(&xi)
            .for_each(|zv, &gv, &e| *zv += -g_scale * gv + noise * e);
        check_finite(z.view(), step)?;
    }
    Ok((z, misfit))
}

/// The MO refinement of the clean estimates `x_init` at projection level `level`
/// ([`MoConfig::level`]): [`sgld`] with its noise scaled by [`MoConfig::noise_scale`], then
/// re-noising to `level` and denoising, `D(z_N + level eps; level)` (`eps` from stream
/// `(seed, MO_RENOISE, step, r)`); at `level = 0` the SGLD result itself. Also returns the mean
/// negative log-likelihood of `x_init`.
///
/// Why `sgld_noise = "damped"` exists: the loss constrains only the measured directions of `z`;
/// along the null space of `A` (15/16 of an image for x4 super-resolution) the chain is a random
/// walk whose spread after `N` steps is `sqrt(2 eta tau N)` (1.4 at the defaults, on `[-1, 1]`
/// images). Where the level is `<< 1` the denoiser cannot remove that spread; damping by
/// `min(1, level)` keeps it of the order of the level. Which of the two the imaging table
/// prefers is recorded in docs/algorithms.md.
pub fn refine(
    eval: &Evaluator<'_>,
    data: &GaussianData,
    x_init: ArrayView2<'_, f32>,
    level: f64,
    cfg: &MoConfig,
    seed: u64,
    step: usize,
) -> Result<(Array2<f32>, f64)> {
    let (mut z, misfit) =
        sgld_with_misfit(eval, data, x_init, cfg, cfg.noise_scale(level), seed, step)?;
    if level <= 0.0 {
        return Ok((z, misfit));
    }
    let (n, d) = z.dim();
    let eps = normal_rows(n, d, seed, tags::MO_RENOISE, step as u64, 0);
    z.scaled_add(level as f32, &eps);
    Ok((eval.denoise(z.view(), level, step)?, misfit))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Problem;
    use approx::assert_abs_diff_eq;
    use diffinv_operators::{GaussianLikelihood, MatrixOperator};
    use diffinv_priors::{Gaussian, GaussianPrior};
    use ndarray::{array, Axis};

    /// With `G = I`, SGLD on `||z - y||^2` is an AR(1) chain
    /// `z' = (1 - 2 eta) z + 2 eta y + sqrt(2 eta) xi`, whose stationary law is
    /// `N(y, 1 / (2 (1 - eta)) I)` exactly. 4000 chains x 200 steps (contraction 0.8^200):
    /// the sample mean is within 0.05 of `y` (5 standard errors) and the sample variance within
    /// 8% of the exact one (about 4 standard errors), per coordinate.
    #[test]
    fn sgld_stationary_distribution_is_the_gaussian_target() {
        let prior = GaussianPrior::new(Gaussian::isotropic(array![0.0, 0.0], 1.0).unwrap());
        let op = MatrixOperator::new(Array2::eye(2)).unwrap();
        // sigma_y = 0.3: MO's loss ignores it (the paper's unweighted residual).
        let lik = GaussianLikelihood::new(array![1.5f32, -0.5], 0.3).unwrap();
        let problem = Problem::new(&prior, &op, &lik).unwrap();
        let eval = Evaluator::new(problem);
        let data = GaussianData::probe(&eval, "MO").unwrap();
        let cfg = MoConfig {
            sgld_steps: 200,
            lr: 0.1,
            temperature: 1.0,
            ..MoConfig::default()
        };
        let x = Array2::<f32>::zeros((4000, 2));
        let z = sgld(&eval, &data, x.view(), &cfg, 1.0, 7, 0).unwrap();
        let mean = z.mean_axis(Axis(0)).unwrap();
        let var = z.var_axis(Axis(0), 1.0);
        let exact_var = 1.0 / (2.0 * (1.0 - cfg.lr as f32));
        for j in 0..2 {
            assert_abs_diff_eq!(mean[j], lik.observation()[j], epsilon = 0.05);
            assert_abs_diff_eq!(var[j] / exact_var, 1.0, epsilon = 0.08);
        }
        // Deterministic for a seed.
        let again = sgld(&eval, &data, x.view(), &cfg, 1.0, 7, 0).unwrap();
        assert_eq!(z, again);
        // The noise scale multiplies the injected noise: the stationary variance scales by its
        // square (noise_scale 0.5 -> a quarter).
        let damped = sgld(&eval, &data, x.view(), &cfg, 0.5, 7, 0).unwrap();
        let var_d = damped.var_axis(Axis(0), 1.0);
        for j in 0..2 {
            assert_abs_diff_eq!(var_d[j] / (0.25 * exact_var), 1.0, epsilon = 0.08);
        }
        assert!(MoConfig {
            sgld_steps: 0,
            ..MoConfig::default()
        }
        .validate()
        .is_err());
    }

    /// Each of the four MO choices is a key; a bad value is one line naming the key.
    #[test]
    fn mo_keys_reject_bad_values_in_one_line_naming_the_key() {
        use crate::registry;
        use serde_json::json;
        let cases = [
            ("DPS-MO", json!({"mo": {"renoise": "later"}}), "mo.renoise"),
            ("DPS-MO", json!({"mo": {"sgld_noise": "loud"}}), "mo.sgld_noise"),
            ("RED-diff-MO", json!({"mo": {"sigma_floor": -1.0}}), "sigma_floor"),
            ("RED-diff-MO", json!({"mo": {"sigma_floor": "low"}}), "mo.sigma_floor"),
            ("DPS-MO", json!({"mo_dps_step": 1}), "mo_dps_step"),
            ("DPS", json!({"mo_dps_step": true}), "mo_dps_step"),
            ("DPS-MO", json!({"mo": {"renoies": "next"}}), "renoise"),
            ("DPS-MO", json!({"mo": {"sgld_steps": 0}}), "sgld_steps"),
        ];
        for (method, cfg, key) in cases {
            let e = registry::build(method, &cfg).unwrap_err().to_string();
            assert!(e.contains(key), "{method} {cfg}: {e}");
            assert!(!e.contains('\n'), "{method} {cfg}: not one line: {e}");
        }
        // Every variant builds.
        for (renoise, noise, floor, step) in [
            ("current", "langevin", json!(null), false),
            ("next", "damped", json!(0.0), true),
            ("next", "langevin", json!(0.5), false),
        ] {
            let cfg = json!({"mo": {"renoise": renoise, "sgld_noise": noise, "sigma_floor": floor},
                             "mo_dps_step": step});
            assert_eq!(registry::build("DPS-MO", &cfg).unwrap().name(), "DPS-MO");
        }
    }

    /// The projection level and the SGLD noise factor of each variant.
    #[test]
    fn level_and_noise_scale_follow_the_keys() {
        let cur = MoConfig {
            sgld_noise: SgldNoise::Langevin,
            ..MoConfig::default()
        };
        assert_eq!(MoConfig::default().renoise, RenoiseLevel::Current);
        assert_eq!(MoConfig::default().sgld_noise, SgldNoise::Damped);
        // Current: sigma_i; next: sigma_{i+1}; both floored at the schedule's sigma_min.
        assert_eq!(cur.level(0.5, 0.3, 0.002), 0.5);
        let next = MoConfig {
            renoise: RenoiseLevel::Next,
            ..MoConfig::default()
        };
        assert_eq!(next.level(0.5, 0.3, 0.002), 0.3);
        assert_eq!(next.level(0.002, 0.0, 0.002), 0.002);
        // sigma_floor replaces the schedule's floor: 0 leaves the last step unprojected, a
        // larger floor lifts every level below it.
        let none = MoConfig {
            sigma_floor: Some(0.0),
            ..next.clone()
        };
        assert_eq!(none.level(0.002, 0.0, 0.002), 0.0);
        let high = MoConfig {
            sigma_floor: Some(0.1),
            ..MoConfig::default()
        };
        assert_eq!(high.level(0.05, 0.01, 0.002), 0.1);
        assert_eq!(high.level(0.5, 0.3, 0.002), 0.5);
        // Langevin: 1 at every level; damped: min(1, level).
        let damped = MoConfig {
            sgld_noise: SgldNoise::Damped,
            ..MoConfig::default()
        };
        for l in [0.01, 0.5, 1.0, 3.0] {
            assert_eq!(cur.noise_scale(l), 1.0);
            assert_eq!(damped.noise_scale(l), l.min(1.0));
        }
    }

    /// The variants act where they should: the SGLD noise scales agree at levels >= 1 and
    /// differ below; `sigma_floor = 0` at level 0 skips the denoiser and returns the chain.
    #[test]
    fn refine_variants_differ_where_they_should() {
        let prior = GaussianPrior::new(Gaussian::isotropic(array![0.0, 0.0, 0.0], 1.0).unwrap());
        let op = MatrixOperator::new(array![[1.0f32, 0.5, 0.0], [0.0, 1.0, -1.0]]).unwrap();
        let lik = GaussianLikelihood::new(array![0.7f32, -1.2], 0.3).unwrap();
        let problem = Problem::new(&prior, &op, &lik).unwrap();
        let eval = Evaluator::new(problem);
        let data = GaussianData::probe(&eval, "MO").unwrap();
        let x = Array2::<f32>::from_elem((16, 3), 0.2);
        let lang = MoConfig {
            sgld_noise: SgldNoise::Langevin,
            ..MoConfig::default()
        };
        let damped = MoConfig::default();
        let (a, _) = refine(&eval, &data, x.view(), 2.0, &lang, 5, 3).unwrap();
        let (b, _) = refine(&eval, &data, x.view(), 2.0, &damped, 5, 3).unwrap();
        assert_eq!(a, b, "no damping at level >= 1");
        let (a, _) = refine(&eval, &data, x.view(), 0.1, &lang, 5, 3).unwrap();
        let (b, _) = refine(&eval, &data, x.view(), 0.1, &damped, 5, 3).unwrap();
        assert_ne!(a, b, "damping below level 1");
        // Level 0: the SGLD chain itself, no denoiser call.
        let before = eval.cost().den_total;
        let (z0, misfit) = refine(&eval, &data, x.view(), 0.0, &lang, 5, 3).unwrap();
        assert_eq!(eval.cost().den_total, before);
        assert_eq!(z0, sgld(&eval, &data, x.view(), &lang, 1.0, 5, 3).unwrap());
        // The misfit is that of the starting point.
        let y = eval.forward(x.view(), 0).unwrap();
        let nll = eval.nll(y.view(), 0).unwrap();
        assert_abs_diff_eq!(misfit, nll.mean().unwrap() as f64, epsilon = 1e-6);
    }
}
