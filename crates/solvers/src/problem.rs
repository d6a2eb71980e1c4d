//! An inverse problem (prior, forward model, likelihood) and the counted evaluator the solvers
//! use to reach it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use diffinv_operators::{
    Differentiable, ForwardModel, GaussianLikelihood, Likelihood, LinearOperator, OperatorError,
};
use diffinv_priors::Denoiser;
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::{Result, SolverError};

/// What a problem offers beyond black-box evaluation, and what a solver may require
/// ([`Solver::requires`](crate::Solver::requires)). Discovered by [`Problem::new`] from the
/// forward model's and the likelihood's capability accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The vector-Jacobian product `J_G(x)^T v` of the forward model
    /// ([`ForwardModel::as_differentiable`], or the adjoint of a linear model).
    Gradient,
    /// A linear forward model `G(x) = A x` with its adjoint `A^T` ([`ForwardModel::as_linear`]).
    Linear,
    /// An isotropic Gaussian likelihood `||G(x) - y||^2 / (2 sigma_y^2)`
    /// ([`Likelihood::as_gaussian`]).
    GaussianLikelihood,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 3] = [
        Capability::Gradient,
        Capability::Linear,
        Capability::GaussianLikelihood,
    ];
    /// Kebab-case name (as in configuration files and `diffinv methods`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Gradient => "gradient",
            Capability::Linear => "linear",
            Capability::GaussianLikelihood => "gaussian-likelihood",
        }
    }
    /// What it means, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Capability::Gradient => {
                "the gradient (vector-Jacobian product) of the forward model"
            }
            Capability::Linear => "a linear forward model with its adjoint",
            Capability::GaussianLikelihood => {
                "an isotropic Gaussian likelihood ||G(x) - y||^2 / (2 sigma_y^2)"
            }
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `y = G(x) + noise` with a diffusion prior on `x`.
#[derive(Clone, Copy)]
pub struct Problem<'a> {
    /// The prior, as a denoiser.
    pub prior: &'a dyn Denoiser,
    /// The forward model `G`, used as a black box by the derivative-free solvers.
    pub forward: &'a dyn ForwardModel,
    /// The likelihood of the observed measurement.
    pub likelihood: &'a dyn Likelihood,
    /// The same forward model with its vector-Jacobian product, for the gradient-based solvers
    /// (DPS, RED-diff, ...), when it offers one ([`ForwardModel::as_differentiable`]).
    pub gradient: Option<&'a dyn Differentiable>,
    /// The same forward model as a linear operator with its adjoint, for the solvers that need
    /// `A^T` (DDS's conjugate gradients, PiGDM, the classical solvers), when it is one
    /// ([`ForwardModel::as_linear`]). A linear model's vector-Jacobian product is its adjoint.
    pub linear: Option<&'a dyn LinearOperator>,
    /// The likelihood in closed form when it is an isotropic Gaussian
    /// ([`Likelihood::as_gaussian`]).
    pub gaussian: Option<&'a GaussianLikelihood>,
}

impl std::fmt::Debug for Problem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Problem")
            .field("d", &self.prior.dim())
            .field("m", &self.likelihood.measurement_dim())
            .field("capabilities", &self.capabilities())
            .finish()
    }
}

impl<'a> Problem<'a> {
    /// Build a problem, checking that the dimensions agree
    /// (`prior.dim() == forward.input_dim()`, `forward.output_dim() == likelihood.measurement_dim()`)
    /// and discovering the forward model's and the likelihood's [capabilities](Capability).
    pub fn new(
        prior: &'a dyn Denoiser,
        forward: &'a dyn ForwardModel,
        likelihood: &'a dyn Likelihood,
    ) -> Result<Self> {
        if prior.dim() != forward.input_dim() {
            return Err(SolverError::Problem(format!(
                "the prior has dimension {} but the forward model takes {} values ({:?})",
                prior.dim(),
                forward.input_dim(),
                forward.input_shape()
            )));
        }
        if forward.output_dim() != likelihood.measurement_dim() {
            return Err(SolverError::Problem(format!(
                "the forward model returns {} values ({:?}) but the measurement has {}",
                forward.output_dim(),
                forward.output_shape(),
                likelihood.measurement_dim()
            )));
        }
        Ok(Self {
            prior,
            forward,
            likelihood,
            gradient: forward.as_differentiable(),
            linear: forward.as_linear(),
            gaussian: likelihood.as_gaussian(),
        })
    }
    /// The same problem with the forward model's gradient and linearity hidden: what a
    /// derivative-free method sees, and how the tables make sure that a black-box row never
    /// uses a derivative.
    pub fn black_box(mut self) -> Self {
        self.gradient = None;
        self.linear = None;
        self
    }
    /// Whether the problem offers `c`.
    pub fn has(&self, c: Capability) -> bool {
        match c {
            Capability::Gradient => self.gradient.is_some() || self.linear.is_some(),
            Capability::Linear => self.linear.is_some(),
            Capability::GaussianLikelihood => self.gaussian.is_some(),
        }
    }
    /// Every capability the problem offers.
    pub fn capabilities(&self) -> Vec<Capability> {
        Capability::ALL.into_iter().filter(|c| self.has(*c)).collect()
    }
    /// `Ok` when the problem offers every capability in `required`, else a
    /// [`SolverError::Problem`] naming `method`, what is missing and what the problem offers.
    pub fn check(&self, method: &str, required: &[Capability]) -> Result<()> {
        let missing: Vec<&str> = required
            .iter()
            .filter(|c| !self.has(**c))
            .map(|c| c.describe())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let offers = self.capabilities();
        let offers = if offers.is_empty() {
            "black-box evaluation only".to_string()
        } else {
            offers.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
        };
        Err(SolverError::Problem(format!(
            "{method} needs {}; this problem offers {offers}",
            missing.join(" and ")
        )))
    }
    /// The adjoint of a linear forward model, or a [`SolverError::Problem`] naming `method`.
    pub fn require_linear(&self, method: &str) -> Result<&'a dyn LinearOperator> {
        self.check(method, &[Capability::Linear])?;
        self.linear
            .ok_or_else(|| SolverError::Problem(format!("{method}: no linear forward model")))
    }
    /// The isotropic Gaussian likelihood, or a [`SolverError::Problem`] naming `method`.
    pub fn require_gaussian(&self, method: &str) -> Result<&'a GaussianLikelihood> {
        self.check(method, &[Capability::GaussianLikelihood])?;
        self.gaussian
            .ok_or_else(|| SolverError::Problem(format!("{method}: no Gaussian likelihood")))
    }
    /// Dimension `d` of the unknown.
    pub fn dim(&self) -> usize {
        self.prior.dim()
    }
    /// Dimension `m` of the measurement.
    pub fn measurement_dim(&self) -> usize {
        self.likelihood.measurement_dim()
    }
}

/// Counts of what a run spent, in the terms of EnKG (arXiv 2409.20175, section 5.2): total and
/// sequential evaluations of the forward model and of the diffusion model (a batched call of
/// `n` rows counts `n` total and 1 sequential), gradient evaluations, and wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    /// Forward-model evaluations (rows).
    pub fwd_total: u64,
    /// Sequential forward-model calls.
    pub fwd_seq: u64,
    /// Denoiser evaluations (rows).
    pub den_total: u64,
    /// Sequential denoiser calls.
    pub den_seq: u64,
    /// Vector-Jacobian products through the denoiser (rows).
    pub den_grad_total: u64,
    /// Sequential vector-Jacobian products through the denoiser.
    pub den_grad_seq: u64,
    /// Vector-Jacobian products (or adjoint applications) of the forward model (rows).
    #[serde(default)]
    pub fwd_grad_total: u64,
    /// Sequential vector-Jacobian products of the forward model.
    #[serde(default)]
    pub fwd_grad_seq: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Seconds spent inside the forward model (evaluations, vector-Jacobian products and
    /// adjoints).
    #[serde(default)]
    pub fwd_seconds: f64,
    /// Seconds spent inside the prior (denoiser evaluations and their vector-Jacobian
    /// products).
    #[serde(default)]
    pub den_seconds: f64,
    /// Forward evaluations that failed (an error or a non-finite output for that row) and were
    /// handled by the failure policy of [`Evaluator::forward_robust`] instead of aborting.
    #[serde(default)]
    pub failed: u64,
}

impl CostSummary {
    /// Seconds spent outside the forward model and the prior: the solver's own work
    /// (linear algebra, allocation, copies) and the runner's (observers, checkpoints).
    pub fn overhead_seconds(&self) -> f64 {
        (self.seconds - self.fwd_seconds - self.den_seconds).max(0.0)
    }
    /// [`overhead_seconds`](Self::overhead_seconds) as a fraction of the wall time.
    pub fn overhead_fraction(&self) -> f64 {
        if self.seconds > 0.0 {
            self.overhead_seconds() / self.seconds
        } else {
            0.0
        }
    }
}

/// The solvers' only door to the problem: every call is counted, and failures are turned into
/// errors that name the step and the particle.
pub struct Evaluator<'a> {
    problem: Problem<'a>,
    fwd_total: AtomicU64,
    fwd_seq: AtomicU64,
    den_total: AtomicU64,
    den_seq: AtomicU64,
    grad_total: AtomicU64,
    grad_seq: AtomicU64,
    fwd_grad_total: AtomicU64,
    fwd_grad_seq: AtomicU64,
    failed: AtomicU64,
    fwd_nanos: AtomicU64,
    den_nanos: AtomicU64,
    start: Instant,
    offset: CostSummary,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("cost", &self.cost())
            .finish()
    }
}

impl<'a> Evaluator<'a> {
    /// A fresh evaluator with zero counts, starting its clock now.
    pub fn new(problem: Problem<'a>) -> Self {
        Self::resuming(problem, CostSummary::default())
    }
    /// An evaluator whose counts continue from `offset` (a resumed run).
    pub fn resuming(problem: Problem<'a>, offset: CostSummary) -> Self {
        Self {
            problem,
            fwd_total: AtomicU64::new(0),
            fwd_seq: AtomicU64::new(0),
            den_total: AtomicU64::new(0),
            den_seq: AtomicU64::new(0),
            grad_total: AtomicU64::new(0),
            grad_seq: AtomicU64::new(0),
            fwd_grad_total: AtomicU64::new(0),
            fwd_grad_seq: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            fwd_nanos: AtomicU64::new(0),
            den_nanos: AtomicU64::new(0),
            start: Instant::now(),
            offset,
        }
    }
    /// The problem.
    pub fn problem(&self) -> &Problem<'a> {
        &self.problem
    }
    /// Cost so far.
    pub fn cost(&self) -> CostSummary {
        let o = self.offset;
        CostSummary {
            fwd_total: o.fwd_total + self.fwd_total.load(Ordering::Relaxed),
            fwd_seq: o.fwd_seq + self.fwd_seq.load(Ordering::Relaxed),
            den_total: o.den_total + self.den_total.load(Ordering::Relaxed),
            den_seq: o.den_seq + self.den_seq.load(Ordering::Relaxed),
            den_grad_total: o.den_grad_total + self.grad_total.load(Ordering::Relaxed),
            den_grad_seq: o.den_grad_seq + self.grad_seq.load(Ordering::Relaxed),
            fwd_grad_total: o.fwd_grad_total + self.fwd_grad_total.load(Ordering::Relaxed),
            fwd_grad_seq: o.fwd_grad_seq + self.fwd_grad_seq.load(Ordering::Relaxed),
            seconds: o.seconds + self.start.elapsed().as_secs_f64(),
            failed: o.failed + self.failed.load(Ordering::Relaxed),
            fwd_seconds: o.fwd_seconds + self.fwd_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            den_seconds: o.den_seconds + self.den_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
    fn add_fwd_time(&self, since: Instant) {
        self.fwd_nanos
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    fn add_den_time(&self, since: Instant) {
        self.den_nanos
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// `D(x; sigma)`, counted.
    pub fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f64, step: usize) -> Result<Array2<f32>> {
        self.den_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.den_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = self.problem.prior.denoise(x, sigma as f32);
        self.add_den_time(t);
        out.map_err(|source| prior_error(source, step))
    }

    /// The counted prior, for samplers that take a `&dyn Denoiser`.
    pub fn counted_prior(&self) -> CountedPrior<'_, 'a> {
        CountedPrior { eval: self }
    }

    /// `G(x)`, counted; a failing or non-finite particle is an error naming it.
    pub fn forward(&self, x: ArrayView2<'_, f32>, step: usize) -> Result<Array2<f32>> {
        self.fwd_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.fwd_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let y = self.problem.forward.forward(x);
        self.add_fwd_time(t);
        let y = y.map_err(|e| operator_error(e, step))?;
        if let Some(particle) = first_non_finite_row(y.view()) {
            return Err(SolverError::ParticleFailed {
                particle,
                step,
                reason: "forward model returned a non-finite value".into(),
            });
        }
        Ok(y)
    }

    /// `G(x)` under the failure policy of long runs: a row whose forward solve fails (a
    /// `SampleFailed` of [`ForwardModel::forward_partial`]) or returns a non-finite value never
    /// aborts the step. Such a row is **excluded from the step's statistics**: rows are grouped
    /// in consecutive blocks of `group` rows (a solver's ensemble, or one chain's candidates),
    /// and a failed row's output is set to the mean output of the surviving rows of its block,
    /// so that its measurement anomaly `y_j - ybar` is zero; the solver also zeroes its
    /// residual gradient ([`RobustForward::zero_failed`]). In the ensemble updates
    /// (`C_jk = <r_j, y_k - ybar> / N`) the failed particle then neither moves the others nor
    /// is moved by the guidance at this step; it keeps its state (no copies, so the ensemble
    /// does not collapse) and is evaluated again at the next step. Every failed row is counted
    /// in [`CostSummary::failed`]. Only a block in which every row fails is an error
    /// ([`SolverError::ParticleFailed`] naming its first row).
    pub fn forward_robust(
        &self,
        x: ArrayView2<'_, f32>,
        step: usize,
        group: usize,
    ) -> Result<RobustForward> {
        let n = x.nrows();
        let group = group.clamp(1, n.max(1));
        let (mut y, ok) = self.forward_marked(x, step)?;
        for start in (0..n).step_by(group) {
            let end = (start + group).min(n);
            if !ok[start..end].iter().any(|&a| a) {
                return Err(SolverError::ParticleFailed {
                    particle: start,
                    step,
                    reason: format!(
                        "every row of the block {start}..{end} failed in the forward model"
                    ),
                });
            }
        }
        let failed: Vec<usize> = (0..n).filter(|&j| !ok[j]).collect();
        fill_failed_with_block_mean(&mut y, &ok, group);
        Ok(RobustForward { y, failed })
    }

    /// `G(x)` for rows that are used one by one (a chain's own estimate, a perturbed query),
    /// under the failure policy of long runs: a failed row (a `SampleFailed` of
    /// [`ForwardModel::forward_partial`], or a non-finite output) never aborts the step; its
    /// output is a placeholder of zeros (finite, so that a likelihood accepts the batch), it is
    /// listed in `failed` and counted in
    /// [`CostSummary::failed`], and the caller drops it (GSG drops the direction, DPG the Monte
    /// Carlo sample, and a chain whose own estimate fails takes an unguided step).
    pub fn forward_each(&self, x: ArrayView2<'_, f32>, step: usize) -> Result<RobustForward> {
        let (mut y, ok) = self.forward_marked(x, step)?;
        let mut failed = Vec::new();
        for (j, good) in ok.iter().enumerate() {
            if !good {
                y.row_mut(j).fill(0.0);
                failed.push(j);
            }
        }
        Ok(RobustForward { y, failed })
    }

    /// The negative log-likelihood of `G(x)` per row under the failure policy of
    /// [`forward_each`](Self::forward_each): NaN for a failed row (counted), never an error for a
    /// per-row failure. The callers (GSG, DPG) drop the NaN rows.
    pub fn nll_each(&self, x: ArrayView2<'_, f32>, step: usize) -> Result<Array1<f32>> {
        let fr = self.forward_each(x, step)?;
        let mut l = self.nll(fr.y.view(), step)?;
        for &j in &fr.failed {
            l[j] = f32::NAN;
        }
        Ok(l)
    }

    /// `G(x)` and which rows succeeded; counts the evaluations and the failures.
    fn forward_marked(
        &self,
        x: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<(Array2<f32>, Vec<bool>)> {
        let n = x.nrows();
        self.fwd_total.fetch_add(n as u64, Ordering::Relaxed);
        self.fwd_seq.fetch_add(1, Ordering::Relaxed);
        let mut ok = vec![true; n];
        // Per-sample failures come from `ForwardModel::forward_partial` (a model that cannot
        // isolate them cheaply retries row by row there); other errors (wrong shape, a
        // non-finite input) are not a particle's simulation failing and stay errors.
        let t = Instant::now();
        let out = self.problem.forward.forward_partial(x);
        self.add_fwd_time(t);
        let out = out.map_err(|e| operator_error(e, step))?;
        for f in &out.failures {
            if let Some(o) = ok.get_mut(f.row) {
                *o = false;
            }
        }
        let y = out.y;
        for (j, row) in y.outer_iter().enumerate() {
            if row.iter().any(|v| !v.is_finite()) {
                ok[j] = false;
            }
        }
        let n_failed = ok.iter().filter(|o| !**o).count();
        self.failed.fetch_add(n_failed as u64, Ordering::Relaxed);
        Ok((y, ok))
    }

    /// `(dG/dx)^T v` at every row, counted as a forward-model gradient; a
    /// [`SolverError::Problem`] if the problem is a black box.
    pub fn forward_vjp(
        &self,
        x: ArrayView2<'_, f32>,
        v: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<Array2<f32>> {
        self.problem.check("this solver", &[Capability::Gradient])?;
        self.fwd_grad_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.fwd_grad_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = match (self.problem.gradient, self.problem.linear) {
            (Some(g), _) => g.vjp(x, v),
            // A linear model's vector-Jacobian product is its adjoint.
            (None, Some(a)) => a.adjoint(v),
            (None, None) => {
                return Err(SolverError::Problem(
                    "the forward model has neither a gradient nor an adjoint".into(),
                ))
            }
        };
        self.add_fwd_time(t);
        let out = out.map_err(|e| operator_error(e, step))?;
        if let Some(particle) = first_non_finite_row(out.view()) {
            return Err(SolverError::ParticleFailed {
                particle,
                step,
                reason: "forward-model gradient is non-finite".into(),
            });
        }
        Ok(out)
    }

    /// `A^T y` at every row, counted as a forward-model gradient; a [`SolverError::Problem`] if
    /// the forward model is not linear.
    pub fn adjoint(&self, y: ArrayView2<'_, f32>, step: usize) -> Result<Array2<f32>> {
        let a = self.problem.require_linear("this solver")?;
        self.fwd_grad_total
            .fetch_add(y.nrows() as u64, Ordering::Relaxed);
        self.fwd_grad_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = a.adjoint(y);
        self.add_fwd_time(t);
        out.map_err(|e| operator_error(e, step))
    }

    /// `D(x; sigma)` and the vector-Jacobian product `(dD/dx)^T v`, counted as one denoiser
    /// gradient evaluation.
    pub fn denoise_vjp(
        &self,
        x: ArrayView2<'_, f32>,
        sigma: f64,
        v: ArrayView2<'_, f32>,
        step: usize,
    ) -> Result<Array2<f32>> {
        self.grad_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.grad_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = self.problem.prior.vjp(x, sigma as f32, v);
        self.add_den_time(t);
        out.map_err(|source| prior_error(source, step))
    }

    /// `dL/dy` at every row of `y`.
    pub fn likelihood_grad(&self, y: ArrayView2<'_, f32>, step: usize) -> Result<Array2<f32>> {
        let g = self
            .problem
            .likelihood
            .grad(y)
            .map_err(|e| operator_error(e, step))?;
        if let Some(particle) = first_non_finite_row(g.view()) {
            return Err(SolverError::ParticleFailed {
                particle,
                step,
                reason: "likelihood gradient is non-finite".into(),
            });
        }
        Ok(g)
    }

    /// The inputs of an ensemble cross-covariance step from a robust forward evaluation `fr`
    /// (rows grouped in blocks of `group`, as in [`forward_robust`](Self::forward_robust)):
    /// `(r(y), r(y))` in [`Linearization::Residual`] when the likelihood has a least-squares
    /// form, else `(y, dL/dy)`. The failure policy carries over: a failed row's measurement is
    /// the mean of its block's survivors and its residual gradient is zero.
    pub fn linearize(
        &self,
        fr: RobustForward,
        group: usize,
        mode: Linearization,
        step: usize,
    ) -> Result<Linearized> {
        if mode == Linearization::Residual {
            let res = self
                .problem
                .likelihood
                .residual(fr.y.view())
                .map_err(|e| operator_error(e, step))?;
            if let Some(mut g) = res {
                if g.nrows() != fr.y.nrows() {
                    return Err(SolverError::Problem(format!(
                        "the likelihood's residual has {} rows for {} predictions",
                        g.nrows(),
                        fr.y.nrows()
                    )));
                }
                if !fr.failed.is_empty() {
                    let mut ok = vec![true; g.nrows()];
                    for &j in &fr.failed {
                        ok[j] = false;
                    }
                    let group = group.clamp(1, g.nrows().max(1));
                    fill_failed_with_block_mean(&mut g, &ok, group);
                }
                if let Some(particle) = first_non_finite_row(g.view()) {
                    return Err(SolverError::ParticleFailed {
                        particle,
                        step,
                        reason: "non-finite likelihood residual".into(),
                    });
                }
                let mut r = g.clone();
                fr.zero_failed(&mut r);
                return Ok(Linearized { y: g, r });
            }
        }
        let mut r = self.likelihood_grad(fr.y.view(), step)?;
        fr.zero_failed(&mut r);
        Ok(Linearized { y: fr.y, r })
    }

    /// `L(y)` at every row of `y`.
    pub fn nll(&self, y: ArrayView2<'_, f32>, step: usize) -> Result<Array1<f32>> {
        self.problem
            .likelihood
            .nll(y)
            .map_err(|e| operator_error(e, step))
    }
}

/// Set every row `j` with `!ok[j]` to the mean of the rows with `ok` in its block of `group`
/// consecutive rows (the failure policy's "excluded from the step's statistics": a zero
/// anomaly). Blocks without a surviving row are left as they are.
fn fill_failed_with_block_mean(a: &mut Array2<f32>, ok: &[bool], group: usize) {
    let n = a.nrows();
    for start in (0..n).step_by(group.max(1)) {
        let end = (start + group.max(1)).min(n);
        let alive: Vec<usize> = (start..end).filter(|&k| ok[k]).collect();
        if alive.len() == end - start || alive.is_empty() {
            continue;
        }
        let mut mean = Array1::<f64>::zeros(a.ncols());
        for &k in &alive {
            mean.zip_mut_with(&a.row(k), |m, v| *m += *v as f64);
        }
        let mean = mean.mapv(|v| (v / alive.len() as f64) as f32);
        for j in (start..end).filter(|&j| !ok[j]) {
            a.row_mut(j).assign(&mean);
        }
    }
}

/// The measurement space in which an ensemble method (EnKG, CPS) linearises the data misfit
/// statistically, `C_jk = <r_j, y_k - ybar> / N`.
///
/// For a Gaussian likelihood both choices give the same step: with `r(y) = (y - y_obs) / sigma`,
/// `<r(y_j), r(y_k) - rbar> = <(y_j - y_obs) / sigma^2, y_k - ybar>`. They differ for measurements
/// that live on a circle, such as closure phases in `(-pi, pi]`: two particles with phases
/// `pi - e` and `-pi + e` are `2e` apart, but their raw anomalies differ by `2 pi - 2e`, so every
/// triangle whose phases straddle the branch cut injects a spurious `O(2 pi)` anomaly into the
/// cross-covariance. The whitened residual of the closure likelihood is the chord
/// `e^{i psi} - e^{i psi_obs}` (diffinv-operators' `ClosureLikelihood`), continuous on the
/// circle, so the anomalies measure what the likelihood measures. On the black hole this is the
/// difference between EnKG failing (PSNR 4 dB, closure chi^2 in the thousands) and fitting the
/// data (chi^2 ~ 3; docs/reproduction.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Linearization {
    /// Use the whitened residual `g = r(G(x))` of a least-squares likelihood
    /// `L = ||r||^2 / 2` ([`Likelihood::residual`]) as the measurement, with residual gradient
    /// `dL/dg = g` (the form of ensemble Kalman inversion); falls back to
    /// [`Measurement`](Self::Measurement) when the likelihood has no such form.
    #[default]
    #[serde(alias = "residual")]
    Residual,
    /// Use the raw forward output `y = G(x)` and `dL/dy` (the EnKG reference's choice).
    #[serde(alias = "measurement")]
    Measurement,
}

/// The measurements and residual gradients of one statistically linearised ensemble step
/// ([`Evaluator::linearize`]).
#[derive(Debug, Clone)]
pub struct Linearized {
    /// Measurements in the chosen space, `(N, p)`; a failed row holds the mean of the surviving
    /// rows of its block (zero anomaly).
    pub y: Array2<f32>,
    /// Residual gradients `dL/dy`, `(N, p)`; zero on failed rows.
    pub r: Array2<f32>,
}

/// The output of [`Evaluator::forward_robust`] (`G(x)` with every failed row replaced by the
/// mean output of the survivors of its block) or [`Evaluator::forward_each`] (failed rows
/// zero placeholders), and the failed rows.
#[derive(Debug, Clone)]
pub struct RobustForward {
    /// Forward outputs, `(N, m)` (all finite from `forward_robust`).
    pub y: Array2<f32>,
    /// The failed rows, in increasing order.
    pub failed: Vec<usize>,
}

impl RobustForward {
    /// Zero the failed rows of `a` (a residual gradient with the rows of the batch), which
    /// removes them from the step's cross-covariances.
    pub fn zero_failed(&self, a: &mut Array2<f32>) {
        for &j in &self.failed {
            a.row_mut(j).fill(0.0);
        }
    }
}

/// A [`Denoiser`] view of the evaluator that counts every call.
pub struct CountedPrior<'e, 'a> {
    eval: &'e Evaluator<'a>,
}

impl Denoiser for CountedPrior<'_, '_> {
    fn dim(&self) -> usize {
        self.eval.problem.prior.dim()
    }
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> diffinv_priors::Result<Array2<f32>> {
        self.eval
            .den_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.eval.den_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = self.eval.problem.prior.denoise(x, sigma);
        self.eval.add_den_time(t);
        out
    }
    fn vjp(
        &self,
        x: ArrayView2<'_, f32>,
        sigma: f32,
        v: ArrayView2<'_, f32>,
    ) -> diffinv_priors::Result<Array2<f32>> {
        self.eval
            .grad_total
            .fetch_add(x.nrows() as u64, Ordering::Relaxed);
        self.eval.grad_seq.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let out = self.eval.problem.prior.vjp(x, sigma, v);
        self.eval.add_den_time(t);
        out
    }
}

/// Map a prior error at `step`, naming the particle for non-finite input.
pub fn prior_error(source: diffinv_priors::PriorError, step: usize) -> SolverError {
    match source {
        diffinv_priors::PriorError::NonFinite { row, .. } => SolverError::NonFiniteState {
            particle: row,
            step,
        },
        source => SolverError::Prior { step, source },
    }
}

/// Map an operator error at `step`, naming the particle where there is one.
pub fn operator_error(e: OperatorError, step: usize) -> SolverError {
    match e {
        OperatorError::SampleFailed { row, reason } => SolverError::ParticleFailed {
            particle: row,
            step,
            reason,
        },
        OperatorError::NonFiniteInput { row, .. } => SolverError::NonFiniteState {
            particle: row,
            step,
        },
        OperatorError::Interrupted => SolverError::Interrupted { step },
        source => SolverError::Forward { step, source },
    }
}

/// Index of the first row containing a NaN or infinity.
pub fn first_non_finite_row(x: ArrayView2<'_, f32>) -> Option<usize> {
    x.outer_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::Linearization;

    /// Config files may spell the linearisation capitalised (the variant name, what
    /// `diffinv methods` prints) or lowercase (the spelling of every other enum key).
    #[test]
    fn linearization_reads_either_spelling() {
        for (text, want) in [
            ("\"Residual\"", Linearization::Residual),
            ("\"residual\"", Linearization::Residual),
            ("\"Measurement\"", Linearization::Measurement),
            ("\"measurement\"", Linearization::Measurement),
        ] {
            assert_eq!(serde_json::from_str::<Linearization>(text).ok(), Some(want), "{text}");
        }
        assert!(serde_json::from_str::<Linearization>("\"raw\"").is_err());
    }
}
