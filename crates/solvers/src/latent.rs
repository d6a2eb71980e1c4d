//! Latent-space optimisation through a few-step deterministic sampler: CSGM with a diffusion
//! generator (Bora et al. 2017) and DMPlug (Wang et al., NeurIPS 2024); section 7.2 of the survey
//! "Inverse Problems with Generative Priors" (ICLR 2026 blog track).
//!
//! The generator is the prior's probability-flow ODE integrated with `K` Euler steps
//! (`K = sampler_steps`, 3 by default as in DMPlug) from `x_0 = sigma_max eps` over the EDM levels
//! `s_0 = sigma_max > ... > s_{K-1} > s_K = 0`:
//!
//! ```text
//! x_{k+1} = x_k + c_k (x_k - D(x_k; s_k)),   c_k = (s_{k+1} - s_k) / s_k,   Phi(eps) = x_K
//! ```
//!
//! and the seed `eps` is fitted by Adam to
//!
//! ```text
//! J(eps) = L(G(Phi(eps))) + (lambda / 2) ||eps||^2
//! ```
//!
//! (`lambda = 0`: DMPlug, which relies on the generator alone and on the iteration count;
//! `lambda = 1`: the CSGM Gaussian penalty on the latent). The gradient is reverse-mode through
//! the sampler, using only vector-Jacobian products of the denoiser (autograd inside libtorch
//! for a neural prior) and of the forward model:
//!
//! ```text
//! g_K = (dG/dx)^T dL/dy (x_K),   g_k = (1 + c_k) g_{k+1} - c_k (dD/dx (x_k; s_k))^T g_{k+1},
//! dJ/deps = sigma_max g_0 + lambda eps
//! ```
//!
//! Cost per iteration: `K` denoiser calls and `K` denoiser vjps (sequential), one forward call
//! and one forward vjp; memory `K` stored states per sample. The state holds `[eps | m | v]`
//! (the seed and Adam's moments), so a saved state resumes exactly.

use diffinv_priors::rng::fill_normal;
use diffinv_priors::EdmSchedule;
use ndarray::{Array1, Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

use crate::kernels::{adam_step, check_finite};
use crate::problem::Evaluator;
use crate::problem::Capability;
use crate::solver::{AdamMoments, AdamState, Solver, StepInfo};
use crate::{Result, SolverError};

/// Random-stream tag of the initial seeds.
const LATENT_INIT: u64 = 0x6c61_0001;

/// Hyperparameters of [`LatentOptimization`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatentConfig {
    /// Independent restarts (samples) optimised in parallel.
    pub num_samples: usize,
    /// Adam iterations (the solver's steps).
    pub num_steps: usize,
    /// Euler steps `K` of the generator (DMPlug: 3).
    pub sampler_steps: usize,
    /// Adam learning rate on the unit-variance seed `eps` (DMPlug: 0.01).
    pub lr: f64,
    /// Adam `(beta1, beta2)`.
    pub betas: (f64, f64),
    /// Adam epsilon.
    pub adam_eps: f64,
    /// Weight `lambda` of the Gaussian penalty `lambda/2 ||eps||^2` (0: DMPlug, 1: CSGM).
    pub latent_weight: f64,
    /// Noise schedule of the generator.
    pub schedule: EdmSchedule,
}

impl Default for LatentConfig {
    fn default() -> Self {
        Self {
            num_samples: 1,
            num_steps: 500,
            sampler_steps: 3,
            lr: 0.01,
            betas: (0.9, 0.999),
            adam_eps: 1e-8,
            latent_weight: 0.0,
            schedule: EdmSchedule::default(),
        }
    }
}

/// CSGM / DMPlug: optimise the seed of a few-step deterministic sampler (module docs).
#[derive(Debug, Clone)]
pub struct LatentOptimization {
    cfg: LatentConfig,
    sigmas: Vec<f64>,
}

impl LatentOptimization {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: LatentConfig) -> Result<Self> {
        if cfg.num_samples == 0 || cfg.num_steps == 0 || cfg.sampler_steps == 0 {
            return Err(SolverError::Config(
                "latent optimisation needs at least one sample, one iteration and one sampler step".into(),
            ));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(cfg.lr) || !positive(cfg.adam_eps) || !cfg.latent_weight.is_finite() || cfg.latent_weight < 0.0 {
            return Err(SolverError::Config(format!(
                "latent optimisation needs lr > 0, adam_eps > 0 and latent_weight >= 0, got {}, {}, {}",
                cfg.lr, cfg.adam_eps, cfg.latent_weight
            )));
        }
        let (b1, b2) = cfg.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(SolverError::Config(format!("Adam betas must lie in [0, 1), got ({b1}, {b2})")));
        }
        let sigmas = cfg.schedule.sigmas(cfg.sampler_steps).map_err(|e| SolverError::Config(e.to_string()))?;
        Ok(Self { cfg, sigmas })
    }


    /// The generator `Phi(eps)`, returning the visited states `x_0..x_{K-1}` and `x_K`.
    fn generate(&self, eval: &Evaluator<'_>, eps: ArrayView2<'_, f32>, step: usize) -> Result<(Vec<Array2<f32>>, Array2<f32>)> {
        let mut x = eps.mapv(|v| v * self.sigmas[0] as f32);
        let mut states = Vec::with_capacity(self.cfg.sampler_steps);
        for k in 0..self.cfg.sampler_steps {
            let (s, s_next) = (self.sigmas[k], self.sigmas[k + 1]);
            let den = eval.denoise(x.view(), s, step)?;
            let c = ((s_next - s) / s) as f32;
            let mut next = x.clone();
            Zip::from(&mut next).and(&den).for_each(|o, &dn| *o += c * (*o - dn));
            states.push(x);
            x = next;
        }
        Ok((states, x))
    }

    /// `J(eps)` per row and `dJ/deps` (module docs).
    pub fn objective_and_gradient(&self, eval: &Evaluator<'_>, eps: ArrayView2<'_, f32>, step: usize) -> Result<(Array1<f64>, Array2<f32>)> {
        let (states, x0) = self.generate(eval, eps, step)?;
        let y = eval.forward(x0.view(), step)?;
        let nll = eval.nll(y.view(), step)?;
        let r = eval.likelihood_grad(y.view(), step)?;
        let mut g = eval.forward_vjp(x0.view(), r.view(), step)?;
        for k in (0..self.cfg.sampler_steps).rev() {
            let (s, s_next) = (self.sigmas[k], self.sigmas[k + 1]);
            let c = ((s_next - s) / s) as f32;
            let jt = eval.denoise_vjp(states[k].view(), s, g.view(), step)?;
            Zip::from(&mut g).and(&jt).for_each(|gv, &j| *gv = (1.0 + c) * *gv - c * j);
        }
        let lam = self.cfg.latent_weight;
        let smax = self.sigmas[0] as f32;
        Zip::from(&mut g).and(eps).for_each(|gv, &e| *gv = smax * *gv + lam as f32 * e);
        let j = Zip::from(&nll)
            .and(eps.rows())
            .map_collect(|&l, e| l as f64 + 0.5 * lam * e.iter().map(|v| (*v as f64).powi(2)).sum::<f64>());
        check_finite(g.view(), step)?;
        Ok((j, g))
    }
}

impl Solver for LatentOptimization {
    type Config = LatentConfig;
    type State = AdamState;
    type Prepared = ();

    fn config(&self) -> &LatentConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        if self.cfg.latent_weight > 0.0 {
            "CSGM".into()
        } else {
            "DMPlug".into()
        }
    }
    fn num_steps(&self) -> usize {
        self.cfg.num_steps
    }
    fn requires(&self) -> Vec<Capability> {
        vec![Capability::Gradient]
    }
    fn prepare(&self, _eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        Ok(())
    }
    fn init(&self, eval: &Evaluator<'_>, _prep: &Self::Prepared, seed: u64) -> Result<AdamState> {
        let d = eval.problem().dim();
        let n = self.cfg.num_samples;
        let mut eps = Array2::<f32>::zeros((n, d));
        for (j, mut row) in eps.rows_mut().into_iter().enumerate() {
            let mut rng = diffinv_priors::rng::stream(seed, LATENT_INIT, 0, j as u64);
            if let Some(slice) = row.as_slice_mut() {
                fill_normal(&mut rng, slice);
            }
        }
        Ok(AdamState {
            x: eps,
            adam: AdamMoments::zeros(n, d),
            step: 0,
            seed,
        })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: &mut AdamState,
    ) -> Result<StepInfo> {
        let i = state.step;
        let (j, grad) = self.objective_and_gradient(eval, state.x.view(), i)?;
        adam_step(
            &mut state.x,
            &mut state.adam,
            grad.view(),
            i,
            self.cfg.lr,
            self.cfg.betas,
            self.cfg.adam_eps,
        );
        check_finite(state.x.view(), i)?;
        state.step += 1;
        Ok(StepInfo { step: i, sigma: 0.0, guided: true, misfit: Some(j.iter().sum::<f64>() / j.len().max(1) as f64) })
    }
    fn finish(
        &self,
        eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: AdamState,
    ) -> Result<Array2<f32>> {
        Ok(self.generate(eval, state.x.view(), self.cfg.num_steps)?.1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use super::*;
    use crate::guidance::testing::linear_gaussian;
    use crate::{Evaluator, Runner};

    #[test]
    fn gradient_through_the_sampler_matches_finite_differences() {
        let lg = linear_gaussian();
        let eval = Evaluator::new(lg.problem());
        for lam in [0.0, 1.0] {
            let solver = LatentOptimization::new(LatentConfig { sampler_steps: 4, latent_weight: lam, ..Default::default() }).unwrap();
            let eps = array![[0.3f32, -0.7, 0.2], [-1.1, 0.4, 0.9]];
            let (_, g) = solver.objective_and_gradient(&eval, eps.view(), 0).unwrap();
            let h = 1e-2f32;
            for r in 0..2 {
                for c in 0..3 {
                    let (mut p, mut m) = (eps.clone(), eps.clone());
                    p[[r, c]] += h;
                    m[[r, c]] -= h;
                    let jp = solver.objective_and_gradient(&eval, p.view(), 0).unwrap().0[r];
                    let jm = solver.objective_and_gradient(&eval, m.view(), 0).unwrap().0[r];
                    let fd = (jp - jm) / (2.0 * h as f64);
                    assert_abs_diff_eq!(g[[r, c]] as f64, fd, epsilon = 2e-2 * (1.0 + fd.abs()));
                }
            }
        }
    }

    /// With a Gaussian prior `N(0, I)` the generator is linear, `Phi(eps) = a eps` per coordinate,
    /// so CSGM is ridge regression in `eps` with a closed form.
    #[test]
    fn csgm_reaches_the_closed_form_ridge_solution_on_a_gaussian_prior() {
        let lg = linear_gaussian();
        let cfg = LatentConfig { num_samples: 2, num_steps: 1500, lr: 0.02, latent_weight: 1.0, ..Default::default() };
        let solver = LatentOptimization::new(cfg).unwrap();
        let eval = Evaluator::new(lg.problem());
        // The generator's gain: Phi(e_1) / 1 (same in every coordinate for N(0, I)).
        let (_, x) = solver.generate(&eval, array![[1.0f32, 0.0, 0.0]].view(), 0).unwrap();
        let a_gen = x[[0, 0]] as f64;
        // eps* = (B^T B / s^2 + I)^-1 B^T y / s^2, B = A a_gen, x* = a_gen eps*.
        let a = array![[1.0, 0.5, 0.0], [0.0, 1.0, -1.0]];
        let y = array![1.2, -0.8];
        let s2 = 0.09;
        let b = &a * a_gen;
        let mut m = b.t().dot(&b) / s2;
        for k in 0..3 {
            m[[k, k]] += 1.0;
        }
        let rhs = b.t().dot(&y) / s2;
        let eps_star = crate::cg::fixtures::solve(&m, &rhs);
        let x_star = eps_star * a_gen;
        let out = Runner::new(lg.problem()).run(&solver, 3).unwrap();
        for row in out.samples.rows() {
            for k in 0..3 {
                assert_abs_diff_eq!(row[k] as f64, x_star[k], epsilon = 1e-2);
            }
        }
        assert_eq!(out.cost.den_grad_total, 2 * 3 * 1500);
        assert_eq!(out.cost.fwd_grad_total, 2 * 1500);
    }

    #[test]
    fn dmplug_fits_the_data_and_is_deterministic() {
        let lg = linear_gaussian();
        let solver = LatentOptimization::new(LatentConfig { num_samples: 2, num_steps: 400, lr: 0.05, ..Default::default() }).unwrap();
        let a = Runner::new(lg.problem()).run(&solver, 11).unwrap();
        let b = Runner::new(lg.problem()).run(&solver, 11).unwrap();
        assert_eq!(a.samples, b.samples);
        // No prior penalty: the minimum of the data term alone (the residual is driven to ~0).
        let amat = array![[1.0f32, 0.5, 0.0], [0.0, 1.0, -1.0]];
        for row in a.samples.rows() {
            let r = amat.dot(&row.to_owned()) - array![1.2f32, -0.8];
            assert!(r.iter().all(|v| v.abs() < 2e-2), "residual {r}");
        }
    }

    #[test]
    fn black_box_problems_and_bad_configs_are_refused() {
        assert!(LatentOptimization::new(LatentConfig { lr: 0.0, ..Default::default() }).is_err());
        assert!(LatentOptimization::new(LatentConfig { sampler_steps: 0, ..Default::default() }).is_err());
        assert!(LatentOptimization::new(LatentConfig { betas: (1.0, 0.9), ..Default::default() }).is_err());
        let lg = linear_gaussian();
        let p = crate::Problem::new(&lg.prior, &lg.op, &lg.lik).unwrap().black_box();
        let solver = LatentOptimization::new(LatentConfig::default()).unwrap();
        assert!(matches!(Runner::new(p).run(&solver, 0), Err(SolverError::Problem(_))));
    }
}
