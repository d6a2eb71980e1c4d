//! Ensemble Kalman Inversion (EKI; Iglesias, Law & Stuart 2013) and its Tikhonov-regularised
//! variant TEKI (Chada, Stuart & Tong 2020): the classical derivative-free baseline of EnKG
//! (arXiv 2409.20175, section 5, Navier-Stokes), with no diffusion guidance.
//!
//! The defaults are the EnKG reference's baseline (devzhk/enkg-pytorch `algo/eki.py` with
//! `configs/algorithm/eki.yaml`): the initial ensemble is a Gaussian random field and the
//! update is the adaptive step below, 500 times, for 512 particles.
//!
//! 1. The initial ensemble `x_1..x_N` is either
//!    - `init = "grf"` (default): a Gaussian random field on the problem's `H x W` grid, the
//!      reference's `GaussianRF2d(alpha = 4, tau = 3, L = 2 pi)`
//!      ([`GaussianRandomField::eki`]: covariance `sum_k c_k^2 cos(k . (x - y))`,
//!      `c_k = tau^(alpha-1) (|k|^2 + tau^2)^(-alpha/2) / (2 pi)`, no mean and no Nyquist
//!      modes), drawn in the solver's space (the prior's normalised units, as the reference),
//!      particle `j` from stream `(seed, INIT, 0, j)`; or
//!    - `init = "prior"`: `prior_steps` levels of the diffusion prior's unconditional PF-ODE
//!      with Heun's method (Karras et al. 2022, Algorithm 1), through the evaluator's counted
//!      prior ([`Unconditional`]). This is what makes EKI a posterior sampler on a
//!      linear-Gaussian problem (below), and the only choice for an unknown that is not a 2-D
//!      field.
//!
//!    EKI never leaves the affine span of its initial ensemble (Iglesias et al. 2013), so the
//!    initial ensemble is the method's prior.
//! 2. `num_iterations` EKI updates follow. The likelihood must have a least-squares form
//!    `L(y) = ||r(y)||^2 / 2` ([`Likelihood::residual`](diffinv_operators::Likelihood::residual)):
//!    EKI then inverts `g(x) = r(G(x))` for the target `0` with identity noise, which is the
//!    Gaussian case `r = (y - y_obs) / sigma_y` exactly and covers the wrapped closure-phase chi^2.
//!    TEKI appends the Tikhonov residual `sqrt(lambda) (x - x_c)` to `g`, so the iteration
//!    minimises `||r(G(x))||^2 / 2 + lambda ||x - x_c||^2 / 2` (Chada et al. 2020, eq. 3.2 with
//!    `C_0 = I`).
//!
//! **Adaptive update** (`update = "adaptive"`, default; the reference, after Kovachki & Stuart
//! 2019): `C_jk = <g_j, g_k - gbar> / N`, `x_j <- x_j - (s / ||C||_F) sum_k C_jk (x_k - xbar)`,
//! a preconditioned gradient step on `||g||^2 / 2` normalised by the Frobenius norm of `C`
//! ([`kalman_step`], factored when `2 p < N`; `s = guidance_scale`). The reference uses the unwhitened residual
//! `y - y_obs`; the normalisation makes the two the same step. With a linear forward model the
//! ensemble contracts and its mean converges to the least-squares solution in the span of the
//! initial ensemble.
//!
//! **Kalman update** (`update = "kalman"`; Iglesias et al. 2013, eq. 9, with step `h`, i.e.
//! noise `Gamma / h`; `h = 1` is their algorithm): with anomalies `A = X - 1 xbar^T` `(N, d)`,
//! `B = Gx - 1 gbar^T` `(N, p)`, `C_gg = B^T B / (N - 1)`, `C_xg = A^T B / (N - 1)` and perturbed
//! innovations `delta_j = eta_j / sqrt(h) - g_j`, `eta_j ~ N(0, I_p)` (0 without perturbation),
//!
//! ```text
//! x_j <- x_j + C_xg (C_gg + I/h)^{-1} delta_j,  i.e.  X <- X + K A,
//! K = Z B^T / (N - 1),   Z = Delta (C_gg + I/h)^{-1}                     (p <= N, p x p solve)
//! K = Delta B^T (B B^T / (N - 1) + I/h)^{-1} / (N - 1)                   (p > N,  N x N solve)
//! ```
//!
//! (the two are equal by the push-through identity `B (c B^T B + l I)^{-1} = (c B B^T + l I)^{-1} B`).
//! Only `N x N`, `N x p` and, when `p <= N`, `p x p` matrices are formed; never `d x d` or `d x p`.
//! With one step of `h = 1` from prior draws on a linear-Gaussian problem this is the
//! (stochastic) ensemble Kalman filter analysis, whose ensemble has the exact posterior mean
//! and covariance as `N -> infinity`. The registry's `EKI-PO` is this variant from prior draws
//! (`update = "kalman"`, `init = "prior"`).

use diffinv_ensemble::{anomalies, combine_anomalies, gram, kalman_step};
use diffinv_operators::navier_stokes::GaussianRandomField;
use diffinv_priors::linalg::{cholesky, cholesky_solve};
use diffinv_priors::rng::{fill_normal, stream, tags};
use diffinv_priors::EdmSchedule;
use ndarray::{s, Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::problem::{first_non_finite_row, operator_error, Evaluator};
use crate::solver::{Solver, State, StepInfo};
use crate::unconditional::{Unconditional, UnconditionalConfig, UnconditionalMethod};
use crate::{Result, SolverError};

/// Which EKI update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EkiUpdate {
    /// The adaptive gradient-flow step `s / ||C||_F` of the enkg-pytorch reference.
    #[default]
    Adaptive,
    /// The Kalman (Tikhonov-Levenberg-Marquardt) step of Iglesias et al. (2013), step `h`.
    Kalman,
}

/// Where the initial ensemble comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EkiInit {
    /// A Gaussian random field on the unknown's `H x W` grid (the enkg-pytorch reference).
    #[default]
    Grf,
    /// The diffusion prior's samples (`prior_steps` Heun levels of the PF-ODE).
    Prior,
}

/// Hyperparameters of [`Eki`].
///
/// Defaults are the reference's Navier-Stokes setting (devzhk/enkg-pytorch
/// `configs/algorithm/eki.yaml`: `num_samples: 512`, `num_updates: 500`, `guidance_scale: 2.0`;
/// `algo/eki.py`: the adaptive step from a `GaussianRF2d` with `alpha = 4.0`, `tau = 3.0`).
/// `step_size` and `perturb_observations` belong to the Kalman update (`h = 1` with perturbed
/// observations is Iglesias et al. 2013); `prior_steps` and `schedule` to `init = "prior"`
/// (40 Heun levels, the EDM ImageNet setting of Karras et al. 2022). `tikhonov_lambda = 0` is
/// plain EKI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EkiConfig {
    /// Ensemble size `N`.
    pub num_particles: usize,
    /// Number of EKI updates.
    pub num_iterations: usize,
    /// Update rule.
    pub update: EkiUpdate,
    /// Initial ensemble.
    pub init: EkiInit,
    /// Step `h` of the Kalman update (noise `Gamma / h`); 1 is Iglesias et al. (2013).
    pub step_size: f64,
    /// Scale `s` of the adaptive update (2.0 in the reference).
    pub guidance_scale: f64,
    /// Perturb the observations (`eta_j / sqrt(h)`), as Iglesias et al. (2013); false gives the
    /// deterministic (square-root-free) variant that converges to a point. Kalman update only.
    pub perturb_observations: bool,
    /// Smoothness `alpha` of the initial random field (`init = "grf"`; 4.0 in the reference).
    pub grf_alpha: f64,
    /// Inverse length scale `tau` of the initial random field (`init = "grf"`; 3.0 in the
    /// reference).
    pub grf_tau: f64,
    /// Amplitude `c` of the initial random field (`init = "grf"`): the draw is `c` times the
    /// reference's field, in the units of the unknown (the prior's normalised space). 1.0 is the
    /// reference's value in its own units, where Navier-Stokes vorticity is divided by 10
    /// (enkg-pytorch `unnorm_scale: 10`); for a prior normalised as `x / s`, `c = 10 / s` gives
    /// the reference's field in physical units.
    pub grf_scale: f64,
    /// Grid `[H, W]` of the unknown for `init = "grf"` (`H W = d`, row-major); `None` is the
    /// square `sqrt(d) x sqrt(d)`.
    pub grf_shape: Option<[usize; 2]>,
    /// TEKI weight `lambda >= 0` of `lambda ||x - x_c||^2 / 2`; 0 disables the regulariser.
    pub tikhonov_lambda: f64,
    /// TEKI centre `x_c` (length `d`); `None` is the origin, as in Chada et al. (2020).
    pub tikhonov_center: Option<Vec<f32>>,
    /// Heun levels of the unconditional PF-ODE that draws the initial ensemble
    /// (`init = "prior"`).
    pub prior_steps: usize,
    /// Noise schedule of the initial sampling (`init = "prior"`).
    pub schedule: EdmSchedule,
}

impl Default for EkiConfig {
    fn default() -> Self {
        Self {
            num_particles: 512,
            num_iterations: 500,
            update: EkiUpdate::Adaptive,
            init: EkiInit::Grf,
            step_size: 1.0,
            guidance_scale: 2.0,
            perturb_observations: true,
            grf_alpha: 4.0,
            grf_tau: 3.0,
            grf_scale: 1.0,
            grf_shape: None,
            tikhonov_lambda: 0.0,
            tikhonov_center: None,
            prior_steps: 40,
            schedule: EdmSchedule::default(),
        }
    }
}

impl EkiConfig {
    /// Iglesias et al.'s EKI from diffusion-prior draws: the Kalman update with step 1 and
    /// perturbed observations, `init = "prior"` (the registry's `EKI-PO`).
    pub fn perturbed_observations() -> Self {
        Self {
            update: EkiUpdate::Kalman,
            init: EkiInit::Prior,
            ..Self::default()
        }
    }
}

/// The EKI / TEKI solver.
#[derive(Debug, Clone)]
pub struct Eki {
    cfg: EkiConfig,
    /// The PF-ODE sampler of `init = "prior"`.
    prior: Option<Unconditional>,
}

impl Eki {
    /// Build the solver, validating the configuration.
    pub fn new(cfg: EkiConfig) -> Result<Self> {
        if cfg.num_particles < 2 {
            return Err(SolverError::Config(format!(
                "EKI needs at least 2 particles, got {}",
                cfg.num_particles
            )));
        }
        if cfg.num_iterations == 0 {
            return Err(SolverError::Config("EKI needs at least 1 iteration".into()));
        }
        if !(cfg.step_size.is_finite() && cfg.step_size > 0.0) {
            return Err(SolverError::Config(format!(
                "step_size must be finite and > 0, got {}",
                cfg.step_size
            )));
        }
        if !(cfg.guidance_scale.is_finite() && cfg.guidance_scale >= 0.0) {
            return Err(SolverError::Config(format!(
                "guidance_scale must be finite and >= 0, got {}",
                cfg.guidance_scale
            )));
        }
        if !(cfg.tikhonov_lambda.is_finite() && cfg.tikhonov_lambda >= 0.0) {
            return Err(SolverError::Config(format!(
                "tikhonov_lambda must be finite and >= 0, got {}",
                cfg.tikhonov_lambda
            )));
        }
        if let Some(c) = &cfg.tikhonov_center {
            if c.iter().any(|v| !v.is_finite()) {
                return Err(SolverError::Config("tikhonov_center must be finite".into()));
            }
        }
        let prior = match cfg.init {
            EkiInit::Prior => {
                if cfg.prior_steps == 0 {
                    return Err(SolverError::Config(
                        "prior_steps must be at least 1 with init = \"prior\"".into(),
                    ));
                }
                Some(Unconditional::new(UnconditionalConfig {
                    num_samples: cfg.num_particles,
                    num_steps: cfg.prior_steps,
                    method: UnconditionalMethod::Heun,
                    schedule: cfg.schedule,
                })?)
            }
            EkiInit::Grf => {
                for (name, v) in [
                    ("grf_alpha", cfg.grf_alpha),
                    ("grf_tau", cfg.grf_tau),
                    ("grf_scale", cfg.grf_scale),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(SolverError::Config(format!(
                            "{name} must be finite and > 0, got {v}"
                        )));
                    }
                }
                if let Some([h, w]) = cfg.grf_shape {
                    if h < 2 || w < 2 {
                        return Err(SolverError::Config(format!(
                            "grf_shape must be at least [2, 2], got [{h}, {w}]"
                        )));
                    }
                }
                None
            }
        };
        Ok(Self { cfg, prior })
    }

    /// PF-ODE levels before the first EKI update (0 for a random-field start).
    fn init_steps(&self) -> usize {
        self.prior.as_ref().map_or(0, |_| self.cfg.prior_steps)
    }

    /// The initial random field of `init = "grf"` for an unknown of dimension `d`.
    fn random_field(&self, d: usize) -> Result<GaussianRandomField> {
        let [h, w] = match self.cfg.grf_shape {
            Some(shape) => shape,
            None => {
                let s = (d as f64).sqrt().round() as usize;
                if s * s != d {
                    return Err(SolverError::Problem(format!(
                        "EKI's random-field start (init = \"grf\") needs the unknown as an H x W \
                         field: {d} values is not a square, so set grf_shape = [H, W], or \
                         init = \"prior\" for an unknown that is not a field"
                    )));
                }
                [s, s]
            }
        };
        if h * w != d {
            return Err(SolverError::Problem(format!(
                "grf_shape [{h}, {w}] has {} values but the unknown has {d}",
                h * w
            )));
        }
        let g = GaussianRandomField::eki(h, w, self.cfg.grf_alpha, self.cfg.grf_tau)
            .map_err(|e| SolverError::Config(format!("EKI's initial random field: {e}")))?;
        if g.amplitudes().iter().all(|a| *a == 0.0) {
            return Err(SolverError::Problem(format!(
                "EKI's random field on a {h} x {w} grid has no mode besides the mean and the \
                 Nyquist ones (every draw would be 0): use init = \"prior\""
            )));
        }
        Ok(g)
    }

    /// The (possibly augmented) whitened residuals `g_j` of the ensemble `x` with predictions
    /// `y`: `r(y_j)`, followed for TEKI by `sqrt(lambda) (x_j - x_c)`.
    fn residuals(
        &self,
        eval: &Evaluator<'_>,
        x: ArrayView2<'_, f32>,
        y: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<Array2<f32>> {
        let r = eval
            .problem()
            .likelihood
            .residual(y)
            .map_err(|e| operator_error(e, step))?
            .ok_or_else(no_residual)?;
        if r.nrows() != x.nrows() {
            return Err(SolverError::Problem(format!(
                "the likelihood's residual has {} rows for {} predictions",
                r.nrows(),
                x.nrows()
            )));
        }
        if let Some(particle) = first_non_finite_row(r.view()) {
            return Err(SolverError::ParticleFailed {
                particle,
                step,
                reason: "non-finite likelihood residual".into(),
            });
        }
        let lam = self.cfg.tikhonov_lambda;
        if lam <= 0.0 {
            return Ok(r);
        }
        let (n, p, d) = (x.nrows(), r.ncols(), x.ncols());
        let sl = lam.sqrt() as f32;
        let mut g = Array2::<f32>::zeros((n, p + d));
        g.slice_mut(s![.., ..p]).assign(&r);
        let mut tail = g.slice_mut(s![.., p..]);
        tail.assign(&x);
        if let Some(c) = &self.cfg.tikhonov_center {
            let c = ndarray::ArrayView1::from(&c[..]);
            tail -= &c;
        }
        tail *= sl;
        Ok(g)
    }

    /// The Kalman coefficients `K (N, N)` of the module docs from the residuals `g (N, p)`; the
    /// perturbations of particle `j` come from stream `(seed, MEASUREMENT, step, j)`.
    fn kalman_coefficients(
        &self,
        g: ArrayView2<'_, f32>,
        seed: u64,
        step: usize,
    ) -> Result<Array2<f32>> {
        let (n, p) = g.dim();
        let ens = |source| SolverError::Ensemble { step, source };
        let h = self.cfg.step_size;
        let lam = 1.0 / h;
        let b = anomalies(g).map_err(ens)?;
        // Innovations delta_j = eta_j / sqrt(h) - g_j.
        let mut delta = g.mapv(|v| -v);
        if self.cfg.perturb_observations {
            let a = (1.0 / h.sqrt()) as f32;
            delta
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(j, mut row)| {
                    let mut rng = stream(seed, tags::MEASUREMENT, step as u64, j as u64);
                    let mut z = vec![0.0f32; p];
                    fill_normal(&mut rng, &mut z);
                    for (v, e) in row.iter_mut().zip(z) {
                        *v += a * e;
                    }
                });
        }
        let c = 1.0 / (n as f64 - 1.0);
        let spd = |e: diffinv_priors::PriorError| SolverError::Prior { step, source: e };
        if p <= n {
            // Z = Delta (C_gg + lam I)^{-1}, C_gg = B^T B / (N - 1) (p x p, f64).
            let bd = b.mapv(|v| v as f64);
            let mut m = bd.t().dot(&bd) * c;
            for i in 0..p {
                m[[i, i]] += lam;
            }
            let l = cholesky(m.view(), "EKI: C_gg + I/h").map_err(spd)?;
            let mut z = Array2::<f32>::zeros((n, p));
            Zip::from(z.rows_mut())
                .and(delta.rows())
                .par_for_each(|mut zr, dr| {
                    let sol = cholesky_solve(l.view(), dr.mapv(|v| v as f64).view());
                    zr.assign(&sol.mapv(|v| v as f32));
                });
            Ok(gram(z.view(), b.view()).map_err(ens)? * (c as f32))
        } else {
            // K = Delta B^T (B B^T / (N - 1) + lam I)^{-1} / (N - 1), N x N solve.
            let s_nn = gram(b.view(), b.view()).map_err(ens)?;
            let mut m = s_nn.mapv(|v| v as f64 * c);
            for i in 0..n {
                m[[i, i]] += lam;
            }
            let l = cholesky(m.view(), "EKI: B B^T / (N-1) + I/h").map_err(spd)?;
            let e = gram(delta.view(), b.view()).map_err(ens)?;
            let mut k = Array2::<f32>::zeros((n, n));
            // M symmetric: row j of E M^{-1} is M^{-1} e_j.
            Zip::from(k.rows_mut())
                .and(e.rows())
                .par_for_each(|mut kr, er| {
                    let sol = cholesky_solve(l.view(), er.mapv(|v| v as f64).view());
                    kr.assign(&sol.mapv(|v| (v * c) as f32));
                });
            Ok(k)
        }
    }
}

fn no_residual() -> SolverError {
    SolverError::Problem(
        "EKI needs a likelihood of least-squares form L = ||r(y)||^2 / 2 (Likelihood::residual returned None)"
            .into(),
    )
}

impl Solver for Eki {
    type Config = EkiConfig;
    type State = State;
    /// The random field of `init = "grf"`.
    type Prepared = Option<GaussianRandomField>;

    fn config(&self) -> &EkiConfig {
        &self.cfg
    }
    fn name(&self) -> String {
        if self.cfg.tikhonov_lambda > 0.0 {
            "TEKI".into()
        } else if self.cfg.update == EkiUpdate::Kalman && self.cfg.init == EkiInit::Prior {
            "EKI-PO".into()
        } else {
            "EKI".into()
        }
    }
    fn num_steps(&self) -> usize {
        self.init_steps() + self.cfg.num_iterations
    }
    fn prepare(&self, eval: &Evaluator<'_>) -> Result<Self::Prepared> {
        let p = eval.problem();
        let probe = Array2::<f32>::zeros((1, p.measurement_dim()));
        match p.likelihood.residual(probe.view()) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(no_residual()),
            Err(e) => {
                return Err(SolverError::Problem(format!(
                    "the likelihood's residual failed on a probe: {e}"
                )))
            }
        }
        if let Some(c) = &self.cfg.tikhonov_center {
            if c.len() != p.dim() {
                return Err(SolverError::Problem(format!(
                    "tikhonov_center has {} values but the unknown has {}",
                    c.len(),
                    p.dim()
                )));
            }
        }
        match self.cfg.init {
            EkiInit::Grf => Ok(Some(self.random_field(p.dim())?)),
            EkiInit::Prior => Ok(None),
        }
    }
    fn init(&self, eval: &Evaluator<'_>, prep: &Self::Prepared, seed: u64) -> Result<State> {
        if let Some(prior) = &self.prior {
            return prior.init(eval, &(), seed);
        }
        let d = eval.problem().dim();
        let owned;
        let grf = match prep {
            Some(g) => g,
            None => {
                owned = self.random_field(d)?;
                &owned
            }
        };
        let c = self.cfg.grf_scale;
        let mut x = Array2::<f32>::zeros((self.cfg.num_particles, d));
        x.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(j, mut row)| {
                let mut rng = stream(seed, tags::INIT, 0, j as u64);
                for (v, f) in row.iter_mut().zip(grf.sample(&mut rng)) {
                    *v = (c * f) as f32;
                }
            });
        Ok(State { x, step: 0, seed })
    }
    fn step(
        &self,
        eval: &Evaluator<'_>,
        _prep: &Self::Prepared,
        state: &mut State,
    ) -> Result<StepInfo> {
        let i = state.step;
        if let Some(prior) = &self.prior {
            if i < self.cfg.prior_steps {
                return prior.step(eval, &(), state);
            }
        }
        // Failure policy: a failed particle gets the survivors' mean prediction (no anomaly).
        let y = eval.forward_robust(state.x.view(), i, state.x.nrows())?.y;
        let nll = eval.nll(y.view(), i)?;
        let misfit = nll.iter().map(|v| *v as f64).sum::<f64>() / nll.len().max(1) as f64;
        let g = self.residuals(eval, state.x.view(), y.view(), i)?;
        let ens = |source| SolverError::Ensemble { step: i, source };
        match self.cfg.update {
            EkiUpdate::Kalman => {
                let k = self.kalman_coefficients(g.view(), state.seed, i)?;
                let dx = combine_anomalies(k.view(), state.x.view()).map_err(ens)?;
                state.x += &dx;
            }
            EkiUpdate::Adaptive => {
                let kd = kalman_step(state.x.view(), g.view(), g.view()).map_err(ens)?;
                let norm = kd.c_norm;
                if norm > 0.0 && norm.is_finite() {
                    let h = (self.cfg.guidance_scale / norm) as f32;
                    state.x.scaled_add(-h, &kd.dx);
                }
            }
        }
        if let Some(p) = first_non_finite_row(state.x.view()) {
            return Err(SolverError::NonFiniteState {
                particle: p,
                step: i,
            });
        }
        state.step += 1;
        Ok(StepInfo {
            step: i,
            sigma: 0.0,
            guided: true,
            misfit: Some(misfit),
        })
    }
}

/// The exact `K` of the module docs computed densely (`d x p` cross-covariance), for the tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn dense_kalman_gain_update(
    x: ArrayView2<'_, f64>,
    g: ArrayView2<'_, f64>,
    delta: ArrayView2<'_, f64>,
    h: f64,
) -> Array2<f64> {
    let n = x.nrows() as f64;
    let a = &x
        - &x.mean_axis(Axis(0))
            .unwrap_or_else(|| ndarray::Array1::zeros(x.ncols()));
    let b = &g
        - &g.mean_axis(Axis(0))
            .unwrap_or_else(|| ndarray::Array1::zeros(g.ncols()));
    let cxg = a.t().dot(&b) / (n - 1.0);
    let mut cgg = b.t().dot(&b) / (n - 1.0);
    for i in 0..cgg.nrows() {
        cgg[[i, i]] += 1.0 / h;
    }
    let l = cholesky(cgg.view(), "test").unwrap_or_else(|_| Array2::eye(g.ncols()));
    let mut out = x.to_owned();
    for (j, dr) in delta.rows().into_iter().enumerate() {
        let z = cholesky_solve(l.view(), dr);
        let dx = cxg.dot(&z);
        let mut row = out.row_mut(j);
        row += &dx;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use diffinv_operators::{GaussianLikelihood, Likelihood, MatrixOperator};
    use diffinv_priors::{Gaussian, GaussianPosterior, GaussianPrior};
    use ndarray::{array, Array1};

    fn setup() -> (
        GaussianPrior,
        MatrixOperator,
        GaussianLikelihood,
        GaussianPosterior,
        Gaussian,
    ) {
        // Correlated 3-D prior, 2 measurements, sigma_y = 0.5.
        let cov = array![[1.0, 0.5, 0.2], [0.5, 1.5, -0.3], [0.2, -0.3, 0.8]];
        let g = Gaussian::full(array![0.5, -1.0, 0.3], cov).unwrap();
        let a = array![[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]];
        let y = array![1.2, -0.4];
        let post = GaussianPosterior::new(&g, a.view(), y.view(), 0.5).unwrap();
        (
            GaussianPrior::new(g.clone()),
            MatrixOperator::new(a.mapv(|v| v as f32)).unwrap(),
            GaussianLikelihood::new(y.mapv(|v| v as f32), 0.5).unwrap(),
            post,
            g,
        )
    }

    /// Both Gram forms (p x p when p <= N, N x N when p > N) equal the dense Kalman update.
    #[test]
    fn gram_forms_match_the_dense_kalman_update() {
        for (n, p) in [(12usize, 3usize), (5, 9)] {
            let d = 4;
            let mut rng = stream(3, 99, n as u64, p as u64);
            let mut buf = vec![0.0f32; n * (d + p)];
            fill_normal(&mut rng, &mut buf);
            let x = Array2::from_shape_vec((n, d), buf[..n * d].to_vec()).unwrap();
            let g = Array2::from_shape_vec((n, p), buf[n * d..].to_vec()).unwrap();
            for perturb in [false, true] {
                let eki = Eki::new(EkiConfig {
                    num_particles: n,
                    step_size: 0.7,
                    perturb_observations: perturb,
                    ..Default::default()
                })
                .unwrap();
                let k = eki.kalman_coefficients(g.view(), 11, 2).unwrap();
                let got = &x + &combine_anomalies(k.view(), x.view()).unwrap();
                // Rebuild the same innovations.
                let mut delta = g.mapv(|v| -(v as f64));
                if perturb {
                    for j in 0..n {
                        let mut r = stream(11, tags::MEASUREMENT, 2, j as u64);
                        let mut z = vec![0.0f32; p];
                        fill_normal(&mut r, &mut z);
                        for (q, e) in z.iter().enumerate() {
                            delta[[j, q]] += (1.0 / 0.7f64.sqrt()) * *e as f64;
                        }
                    }
                }
                let want = dense_kalman_gain_update(
                    x.mapv(|v| v as f64).view(),
                    g.mapv(|v| v as f64).view(),
                    delta.view(),
                    0.7,
                );
                for (a, b) in got.iter().zip(want.iter()) {
                    approx::assert_abs_diff_eq!(*a as f64, *b, epsilon = 2e-4);
                }
            }
        }
    }

    /// One Kalman step of size 1 from diffusion-prior draws reproduces the exact
    /// linear-Gaussian posterior: mean within 0.06 posterior standard deviations per
    /// coordinate, covariance entries within 0.06 of the posterior variance scale
    /// (Monte Carlo error at N = 4000 is about 0.016 and 0.03).
    #[test]
    fn one_kalman_step_gives_the_exact_posterior() {
        let (prior, op, lik, post, _) = setup();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let eki = Eki::new(EkiConfig {
            num_particles: 4000,
            num_iterations: 1,
            prior_steps: 30,
            ..EkiConfig::perturbed_observations()
        })
        .unwrap();
        let out = crate::Runner::new(problem).run(&eki, 7).unwrap();
        assert_eq!(
            out.cost.fwd_total, 4000,
            "one forward evaluation per particle"
        );
        let s = out.samples.mapv(|v| v as f64);
        let n = s.nrows() as f64;
        let mean = s.mean_axis(Axis(0)).unwrap();
        let an = &s - &mean;
        let cov = an.t().dot(&an) / (n - 1.0);
        let pc = post.covariance();
        for i in 0..3 {
            let sd = pc[[i, i]].sqrt();
            let err = (mean[i] - post.mean()[i]).abs() / sd;
            assert!(
                err < 0.06,
                "mean[{i}] {} vs {} ({err} sd)",
                mean[i],
                post.mean()[i]
            );
            for j in 0..3 {
                let scale = (pc[[i, i]] * pc[[j, j]]).sqrt();
                let e = (cov[[i, j]] - pc[[i, j]]).abs() / scale;
                assert!(
                    e < 0.06,
                    "cov[{i},{j}] {} vs {} (rel {e})",
                    cov[[i, j]],
                    pc[[i, j]]
                );
            }
        }
    }

    /// Deterministic TEKI with many iterations converges to the Tikhonov minimiser
    /// `(A^T A / s^2 + lambda I)^{-1} (A^T y / s^2 + lambda x_c)`, and the ensemble collapses.
    /// Without perturbations the spread shrinks like `1/(2 h n)` and the error of the mean like
    /// `(h n)^{-1/2}` (scalar analysis), hence the large step `h = 50`: 2000 iterations leave
    /// an error of about 1e-3 (with `h = 1` it is about 1e-2).
    #[test]
    fn teki_converges_to_the_tikhonov_solution() {
        let (prior, op, lik, _, _) = setup();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let (lam, xc) = (0.8, [0.2f32, -0.1, 0.4]);
        let eki = Eki::new(EkiConfig {
            num_particles: 16,
            num_iterations: 2000,
            step_size: 50.0,
            perturb_observations: false,
            tikhonov_lambda: lam,
            tikhonov_center: Some(xc.to_vec()),
            prior_steps: 10,
            ..EkiConfig::perturbed_observations()
        })
        .unwrap();
        assert_eq!(eki.name(), "TEKI");
        let out = crate::Runner::new(problem).run(&eki, 3).unwrap();
        let a = op.matrix().mapv(|v| v as f64);
        let y = lik.observation().mapv(|v| v as f64);
        let s2 = 0.25;
        let mut h = a.t().dot(&a) / s2;
        for i in 0..3 {
            h[[i, i]] += lam;
        }
        let rhs = a.t().dot(&y) / s2 + Array1::from_iter(xc.iter().map(|v| *v as f64 * lam));
        let l = cholesky(h.view(), "test").unwrap();
        let want = cholesky_solve(l.view(), rhs.view());
        let mean = out.samples.mapv(|v| v as f64).mean_axis(Axis(0)).unwrap();
        for i in 0..3 {
            approx::assert_abs_diff_eq!(mean[i], want[i], epsilon = 5e-3);
        }
        let spread = out.samples.std_axis(Axis(0), 0.0);
        assert!(
            spread.iter().all(|v| *v < 0.05),
            "ensemble collapsed: {spread}"
        );
        // The misfit of the last iteration is the data part of the Tikhonov objective.
        let last = out.log.last().and_then(|l| l.misfit).unwrap();
        let pred = a.dot(&want).mapv(|v| v as f32);
        let at = lik.nll(pred.insert_axis(Axis(0)).view()).unwrap()[0] as f64;
        approx::assert_abs_diff_eq!(last, at, epsilon = 1e-2);
    }

    /// The adaptive (reference) update from prior draws reduces the data misfit.
    #[test]
    fn adaptive_update_reduces_the_misfit() {
        let (prior, op, lik, _, _) = setup();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let eki = Eki::new(EkiConfig {
            num_particles: 32,
            num_iterations: 50,
            update: EkiUpdate::Adaptive,
            init: EkiInit::Prior,
            guidance_scale: 0.5,
            prior_steps: 10,
            ..Default::default()
        })
        .unwrap();
        let out = crate::Runner::new(problem).run(&eki, 1).unwrap();
        let first = out.log[10].misfit.unwrap();
        let last = out.log.last().and_then(|l| l.misfit).unwrap();
        assert!(last < 0.2 * first, "misfit {first} -> {last}");
    }

    /// On the 2-D three-mode GMM, tempered EKI (10 Kalman steps of h = 0.1 from diffusion-prior
    /// draws) fits the data and is much closer to the exact posterior than the prior draws.
    #[test]
    fn tempered_eki_on_a_2d_gmm() {
        use crate::tests_common::{gmm_problem_2d, sliced_w2};
        let p = gmm_problem_2d();
        let problem = p.problem();
        let eki = Eki::new(EkiConfig {
            num_particles: 256,
            num_iterations: 10,
            step_size: 0.1,
            prior_steps: 30,
            ..EkiConfig::perturbed_observations()
        })
        .unwrap();
        let out = crate::Runner::new(problem).run(&eki, 3).unwrap();
        assert_eq!(out.cost.fwd_total, 256 * 10);
        // The same prior draws (same seed, same Heun levels) without the updates.
        let prior_only = Unconditional::new(UnconditionalConfig {
            num_samples: 256,
            num_steps: 30,
            method: UnconditionalMethod::Heun,
            ..Default::default()
        })
        .unwrap();
        let base = crate::Runner::new(problem).run(&prior_only, 3).unwrap();
        let (m, m0) = (p.mean_misfit(&out.samples), p.mean_misfit(&base.samples));
        let (sw, sw0) = (sliced_w2(&p, &out.samples), sliced_w2(&p, &base.samples));
        eprintln!(
            "EKI 2-D GMM: misfit {m:.3} (prior draws {m0:.3}), SW {sw:.3} (prior draws {sw0:.3})"
        );
        assert!(m < 0.3 * m0, "misfit {m} vs {m0}");
        assert!(sw < 0.7 * sw0, "SW {sw} vs {sw0}");
    }

    struct NoResidual(GaussianLikelihood);
    impl Likelihood for NoResidual {
        fn measurement_dim(&self) -> usize {
            self.0.measurement_dim()
        }
        fn nll(&self, y: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array1<f32>> {
            self.0.nll(y)
        }
        fn grad(&self, y: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
            self.0.grad(y)
        }
    }

    #[test]
    fn rejects_likelihoods_without_residual_and_bad_configs() {
        let (prior, op, lik, _, _) = setup();
        let nr = NoResidual(lik);
        let problem = crate::Problem::new(&prior, &op, &nr).unwrap();
        let eki = Eki::new(EkiConfig {
            num_particles: 4,
            num_iterations: 1,
            prior_steps: 2,
            ..Default::default()
        })
        .unwrap();
        let err = crate::Runner::new(problem).run(&eki, 0).unwrap_err();
        assert!(matches!(err, SolverError::Problem(_)), "{err:?}");
        for (bad, says) in [
            (
                EkiConfig {
                    num_particles: 1,
                    ..Default::default()
                },
                "at least 2 particles",
            ),
            (
                EkiConfig {
                    step_size: 0.0,
                    ..Default::default()
                },
                "step_size",
            ),
            (
                EkiConfig {
                    tikhonov_lambda: -1.0,
                    ..Default::default()
                },
                "tikhonov_lambda",
            ),
            (
                EkiConfig {
                    num_iterations: 0,
                    ..Default::default()
                },
                "at least 1 iteration",
            ),
            (
                EkiConfig {
                    prior_steps: 0,
                    ..EkiConfig::perturbed_observations()
                },
                "prior_steps",
            ),
            (
                EkiConfig {
                    grf_tau: f64::NAN,
                    ..Default::default()
                },
                "grf_tau must be finite and > 0",
            ),
            (
                EkiConfig {
                    grf_scale: 0.0,
                    ..Default::default()
                },
                "grf_scale must be finite and > 0",
            ),
            (
                EkiConfig {
                    grf_shape: Some([1, 64]),
                    ..Default::default()
                },
                "grf_shape must be at least [2, 2]",
            ),
        ] {
            match Eki::new(bad) {
                Err(SolverError::Config(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("expected a configuration error saying {says:?}, got {other:?}"),
            }
        }
        // prior_steps is not used by a random-field start.
        assert!(Eki::new(EkiConfig {
            prior_steps: 0,
            ..Default::default()
        })
        .is_ok());
        let cfg: EkiConfig = toml::from_str("num_particles = 8\nupdate = \"kalman\"").unwrap();
        assert_eq!(cfg.update, EkiUpdate::Kalman);
        assert!(toml::from_str::<EkiConfig>("particles = 8").is_err());
        let e = toml::from_str::<EkiConfig>("init = \"gaussian\"").unwrap_err();
        assert!(
            e.to_string().contains("grf") && e.to_string().contains("prior"),
            "{e}"
        );
        // Through the registry: the key path and the accepted values.
        let e = crate::registry::build("EKI", &serde_json::json!({"init": "field"})).unwrap_err();
        assert!(
            e.to_string().contains("init") && e.to_string().contains("grf"),
            "{e}"
        );
    }

    /// A random-field start needs the unknown as a field: a non-square dimension without
    /// `grf_shape`, a `grf_shape` of another size and a grid with no mode besides the mean and
    /// Nyquist ones (2 x 2) are clear errors before any evaluation; `grf_shape` fixes the first.
    #[test]
    fn random_field_start_needs_a_field() {
        let (prior, op, lik, _, _) = setup();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let run = |cfg: EkiConfig| {
            let eki = Eki::new(EkiConfig {
                num_particles: 8,
                num_iterations: 2,
                ..cfg
            })
            .unwrap();
            crate::Runner::new(problem).run(&eki, 0)
        };
        let e = run(EkiConfig::default()).unwrap_err();
        assert!(
            e.to_string().contains("3 values is not a square")
                && e.to_string().contains("grf_shape"),
            "{e}"
        );
        let e = run(EkiConfig {
            grf_shape: Some([2, 2]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("has 4 values but the unknown has 3"),
            "{e}"
        );
        let l = LinearField::new(2, 2, 3, 0.1);
        let problem = l.problem();
        let eki = Eki::new(EkiConfig {
            num_particles: 8,
            num_iterations: 2,
            ..Default::default()
        })
        .unwrap();
        let e = crate::Runner::new(problem).run(&eki, 0).unwrap_err();
        assert!(e.to_string().contains("no mode besides the mean"), "{e}");
        let l = LinearField::new(3, 5, 20, 0.1);
        let eki = Eki::new(EkiConfig {
            num_particles: 8,
            num_iterations: 2,
            grf_shape: Some([3, 5]),
            ..Default::default()
        })
        .unwrap();
        crate::Runner::new(l.problem()).run(&eki, 0).unwrap();
    }

    /// A linear problem on an `H x W` field: `y = A x_true` with `x_true` a draw of the
    /// reference's random field (so in the span of EKI's initial ensemble) and `A` a Gaussian
    /// `p x HW` matrix; the prior is a standard normal (used by nothing here).
    struct LinearField {
        prior: GaussianPrior,
        op: MatrixOperator,
        lik: GaussianLikelihood,
        truth: Array1<f64>,
        grf: GaussianRandomField,
    }

    impl LinearField {
        fn new(h: usize, w: usize, p: usize, sigma: f32) -> Self {
            let d = h * w;
            let grf = GaussianRandomField::enkg_eki(h, w).unwrap();
            let truth = if d > 4 {
                Array1::from(grf.sample(&mut stream(1, 77, 0, 0)))
            } else {
                Array1::zeros(d)
            };
            let mut z = vec![0.0f32; p * d];
            fill_normal(&mut stream(2, 77, 0, 0), &mut z);
            let a = Array2::from_shape_vec((p, d), z).unwrap() / (d as f32).sqrt();
            let y = a.mapv(|v| v as f64).dot(&truth).mapv(|v| v as f32);
            Self {
                prior: GaussianPrior::new(Gaussian::isotropic(Array1::zeros(d), 1.0).unwrap()),
                op: MatrixOperator::new(a).unwrap(),
                lik: GaussianLikelihood::new(y, sigma).unwrap(),
                truth,
                grf: GaussianRandomField::enkg_eki(h, w).unwrap(),
            }
        }
        fn problem(&self) -> crate::Problem<'_> {
            crate::Problem::new(&self.prior, &self.op, &self.lik).unwrap()
        }
    }

    /// The initial ensemble of the default (reference) EKI is the random field's draws: with a
    /// zero step the run returns them, and particle `j` is the field drawn from stream
    /// `(seed, INIT, 0, j)`, bit for bit; no denoiser is evaluated.
    #[test]
    fn the_initial_ensemble_is_the_reference_random_field() {
        let l = LinearField::new(8, 8, 10, 0.1);
        // `grf_scale = c` multiplies every draw by `c` (1 is the reference's amplitude).
        for c in [1.0, 1.5] {
            let eki = Eki::new(EkiConfig {
                num_particles: 6,
                num_iterations: 1,
                guidance_scale: 0.0,
                grf_scale: c,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(eki.name(), "EKI");
            let out = crate::Runner::new(l.problem()).run(&eki, 9).unwrap();
            assert_eq!(out.cost.den_total, 0);
            assert_eq!(out.cost.fwd_total, 6);
            for j in 0..6 {
                let want = l.grf.sample(&mut stream(9, tags::INIT, 0, j as u64));
                for (a, b) in out.samples.row(j).iter().zip(want) {
                    assert_eq!(a.to_bits(), ((c * b) as f32).to_bits());
                }
            }
        }
    }

    /// Adaptive EKI at the reference's scale `s = 2` on a linear problem whose least-squares
    /// solution lies in the span of the initial random field (noise-free data of a field draw,
    /// `A` injective: `p = d`): the misfit falls by orders of magnitude, the ensemble mean
    /// converges to the least-squares solution (the truth) and the ensemble contracts; the
    /// particles stay in the span (zero mean, no Nyquist component).
    #[test]
    fn adaptive_eki_converges_to_the_least_squares_solution() {
        let (h, w) = (8, 8);
        let l = LinearField::new(h, w, 64, 0.1);
        let eki = Eki::new(EkiConfig {
            num_particles: 64,
            num_iterations: 500,
            ..Default::default()
        })
        .unwrap();
        let out = crate::Runner::new(l.problem()).run(&eki, 4).unwrap();
        let first = out.log[0].misfit.unwrap();
        let last = out.log.last().and_then(|s| s.misfit).unwrap();
        let s = out.samples.mapv(|v| v as f64);
        let mean = s.mean_axis(Axis(0)).unwrap();
        let err =
            (&mean - &l.truth).mapv(|v| v * v).sum().sqrt() / l.truth.mapv(|v| v * v).sum().sqrt();
        let spread = (&s - &mean).mapv(|v| v * v).mean().unwrap().sqrt();
        let sd = l.grf.covariance(0, 0).sqrt();
        eprintln!("adaptive EKI: misfit {first:.3e} -> {last:.3e}, rel err {err:.2e}, spread {spread:.2e} (field sd {sd:.3})");
        assert!(last < 1e-4 * first, "misfit {first} -> {last}");
        assert!(err < 1e-4, "relative error of the mean {err}");
        assert!(spread < 1e-4 * sd, "spread {spread}");
        for row in s.rows() {
            assert!(row.sum().abs() < 1e-3, "mean of a particle {}", row.sum());
            let nyq: f64 = row
                .iter()
                .enumerate()
                .map(|(p, v)| if (p / w) % 2 == 0 { *v } else { -v })
                .sum();
            assert!(nyq.abs() < 1e-3, "Nyquist component {nyq}");
        }
    }

    /// Adaptive EKI from prior draws on an overdetermined linear problem (`p = 5 > d = 3`, the
    /// ensemble spans the whole space) converges to the least-squares solution
    /// `(A^T A)^{-1} A^T y`.
    #[test]
    fn adaptive_eki_from_prior_draws_finds_the_least_squares_solution() {
        let (prior, _, _, _, _) = setup();
        let a = array![
            [1.0, -0.5, 0.3],
            [0.2, 0.8, -1.0],
            [0.5, 0.5, 0.5],
            [-1.0, 0.0, 0.4],
            [0.3, -0.7, 0.1]
        ];
        let y = array![1.2, -0.4, 0.3, 0.9, -0.2];
        let op = MatrixOperator::new(a.mapv(|v: f64| v as f32)).unwrap();
        let lik = GaussianLikelihood::new(y.mapv(|v: f64| v as f32), 0.5).unwrap();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let eki = Eki::new(EkiConfig {
            num_particles: 16,
            num_iterations: 300,
            init: EkiInit::Prior,
            prior_steps: 10,
            ..Default::default()
        })
        .unwrap();
        let out = crate::Runner::new(problem).run(&eki, 2).unwrap();
        let l = cholesky(a.t().dot(&a).view(), "test").unwrap();
        let want = cholesky_solve(l.view(), a.t().dot(&y).view());
        let mean = out.samples.mapv(|v| v as f64).mean_axis(Axis(0)).unwrap();
        for i in 0..3 {
            approx::assert_abs_diff_eq!(mean[i], want[i], epsilon = 2e-3);
        }
    }

    /// The default (reference) EKI is bit-identical for any thread count.
    #[test]
    fn bit_identical_across_thread_counts() {
        let l = LinearField::new(8, 8, 20, 0.1);
        let eki = Eki::new(EkiConfig {
            num_particles: 24,
            num_iterations: 20,
            ..Default::default()
        })
        .unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    crate::Runner::new(l.problem())
                        .run(&eki, 5)
                        .unwrap()
                        .samples
                })
        };
        let a = run(1);
        for t in [2, 3] {
            let b = run(t);
            assert!(
                a.iter()
                    .zip(b.iter())
                    .all(|(u, v)| u.to_bits() == v.to_bits()),
                "1 vs {t} threads"
            );
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let (prior, op, lik, _, _) = setup();
        let problem = crate::Problem::new(&prior, &op, &lik).unwrap();
        let l = LinearField::new(4, 4, 6, 0.1);
        for (cfg, problem) in [
            (EkiConfig::perturbed_observations(), problem),
            (EkiConfig::default(), l.problem()),
        ] {
            let eki = Eki::new(EkiConfig {
                num_particles: 16,
                num_iterations: 3,
                prior_steps: 5,
                ..cfg
            })
            .unwrap();
            let a = crate::Runner::new(problem).run(&eki, 5).unwrap().samples;
            let b = crate::Runner::new(problem).run(&eki, 5).unwrap().samples;
            let c = crate::Runner::new(problem).run(&eki, 6).unwrap().samples;
            assert_eq!(a, b);
            assert_ne!(a, c);
        }
    }
}
