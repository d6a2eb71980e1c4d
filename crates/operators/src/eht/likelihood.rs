//! The closure likelihood of EnKG eq. 22 (after Sun & Bouman 2021), on the measurement vector
//! `y = [psi | lca | F]` of [`ClosureForward`](super::ClosureForward):
//!
//! ```text
//! L(y) = c * [ w_cp  sum_k rho(psi_k - psi_obs_k) / sigma_psi_k^2
//!            + w_ca  sum_k (lca_k - lca_obs_k)^2 / sigma_lca_k^2
//!            + w_F   ((F - F_obs) / s_F)^2 ]
//! ```
//!
//! with the closure-phase residual `rho(d) = 2 (1 - cos d)` (wrapped, the eht-imaging closure
//! phase chi^2; `~ d^2` for small `d`, and blind to `2 pi` jumps) or `rho(d) = d^2` (the plain
//! difference of enkg-pytorch's `loss_m`). The sigmas are those of the observation (computed
//! from the observed visibilities), fixed.
//!
//! Defaults ([`ClosureWeights::default`], the InverseBench `loss_m` with its config
//! `w2 = 1, w3 = 1, w4 = 0.5`): the reference weighs the *mean* chi^2 by `w * dim`, i.e. the sum
//! by `w`; so `w_cp = 1`, `w_ca = 1`, `w_F = 0.5`, `s_F = 2`, overall `c = 2`, wrapped phase.
//!
//! Gradient with respect to the measurement (exact):
//! `dL/dpsi_k = c w_cp rho'(d_k) / sigma_k^2` with `rho'(d) = 2 sin d` (wrapped) or `2 d`,
//! `dL/dlca_k = 2 c w_ca (lca_k - lca_obs_k) / sigma_k^2`, `dL/dF = 2 c w_F (F - F_obs) / s_F^2`.
//!
//! Whitened residual ([`Likelihood::residual`], `L = ||r||^2 / 2` exactly). With the wrapped
//! phase, `2 (1 - cos d) = |e^{i psi} - e^{i psi_obs}|^2`, so each closure phase contributes
//! the two components of its chord on the unit circle; the other terms are one component each:
//!
//! ```text
//! r_psi_k  = sqrt(2 c w_cp) * (cos psi_k - cos psi_obs_k, sin psi_k - sin psi_obs_k) / sigma_psi_k
//!            (wrapped; the single component d_k / sigma_psi_k for Linear)
//! r_lca_k  = sqrt(2 c w_ca) * (lca_k - lca_obs_k) / sigma_lca_k
//! r_F      = sqrt(2 c w_F)  * (F - F_obs) / s_F
//! ```
//!
//! Layout `[cos parts | sin parts | lca | F]` (length `2P + Q + 1`, or `P + Q + 1` for Linear).
//! The chord is a continuous, `2 pi`-periodic function of the phase itself, so ensemble methods
//! that linearise statistically in residual space (EKI, EnKG, CPS) see no jump when a
//! particle's closure phase crosses the branch cut at `+-pi`; the scalar form
//! `2 sin(d / 2)` would flip sign there, and the raw phase jumps by `2 pi`.

use ndarray::{Array1, Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

use super::model::EhtData;
use crate::{check_batch, Likelihood, OperatorError, Result};

/// How a closure-phase difference enters the chi^2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PhaseResidual {
    /// `2 (1 - cos d)`: periodic, as eht-imaging and InverseBench.
    #[default]
    Wrapped,
    /// `d^2` of the raw difference, as enkg-pytorch's `loss_m`.
    Linear,
}

/// Weights of the three terms (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClosureWeights {
    /// `w_cp`, closure phases.
    pub cphase: f64,
    /// `w_ca`, log closure amplitudes.
    pub logcamp: f64,
    /// `w_F`, total flux.
    pub flux: f64,
    /// `s_F`, the flux scale.
    pub flux_scale: f64,
    /// Overall factor `c`.
    pub overall: f64,
    /// Closure-phase residual.
    pub phase_residual: PhaseResidual,
}

impl Default for ClosureWeights {
    /// InverseBench: `w_cp = 1, w_ca = 1, w_F = 0.5, s_F = 2, c = 2`, wrapped phases.
    fn default() -> Self {
        Self {
            cphase: 1.0,
            logcamp: 1.0,
            flux: 0.5,
            flux_scale: 2.0,
            overall: 2.0,
            phase_residual: PhaseResidual::Wrapped,
        }
    }
}

impl ClosureWeights {
    /// enkg-pytorch's `loss_m`: same weights, overall factor 1, raw phase differences.
    pub fn enkg_pytorch() -> Self {
        Self {
            overall: 1.0,
            phase_residual: PhaseResidual::Linear,
            ..Self::default()
        }
    }
}

/// The closure chi^2 likelihood; implements [`Likelihood`] on `[psi | lca | F]`.
#[derive(Debug, Clone)]
pub struct ClosureLikelihood {
    cphase: Vec<f64>,
    cphase_iv: Vec<f64>,
    logcamp: Vec<f64>,
    logcamp_iv: Vec<f64>,
    flux: f64,
    w: ClosureWeights,
}

impl ClosureLikelihood {
    /// Likelihood of the observation `data` with weights `w`.
    pub fn new(data: &EhtData, w: ClosureWeights) -> Result<Self> {
        Self::from_parts(
            &data.cphase,
            &data.cphase_sigma,
            &data.logcamp,
            &data.logcamp_sigma,
            data.flux,
            w,
        )
    }

    /// Likelihood from raw observed closure phases (radians), log closure amplitudes, their
    /// sigmas and the total flux.
    pub fn from_parts(
        cphase: &[f64],
        cphase_sigma: &[f64],
        logcamp: &[f64],
        logcamp_sigma: &[f64],
        flux: f64,
        w: ClosureWeights,
    ) -> Result<Self> {
        if cphase_sigma.len() != cphase.len() {
            return Err(OperatorError::Shape {
                what: "closure phase sigmas",
                expected: cphase.len(),
                got: cphase_sigma.len(),
            });
        }
        if logcamp_sigma.len() != logcamp.len() {
            return Err(OperatorError::Shape {
                what: "log closure amplitude sigmas",
                expected: logcamp.len(),
                got: logcamp_sigma.len(),
            });
        }
        if cphase
            .iter()
            .chain(logcamp)
            .chain(std::iter::once(&flux))
            .any(|v| !v.is_finite())
        {
            return Err(OperatorError::NonFiniteInput {
                what: "closure observation",
                row: 0,
            });
        }
        if let Some(s) = cphase_sigma
            .iter()
            .chain(logcamp_sigma)
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(OperatorError::InvalidParameter {
                name: "sigma",
                reason: format!("must be finite and > 0, got {s}"),
            });
        }
        for (name, v) in [
            ("cphase", w.cphase),
            ("logcamp", w.logcamp),
            ("flux", w.flux),
            ("overall", w.overall),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(OperatorError::InvalidParameter {
                    name: "weights",
                    reason: format!("{name} = {v} must be finite and >= 0"),
                });
            }
        }
        if !(w.flux_scale.is_finite() && w.flux_scale > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "flux_scale",
                reason: format!("must be > 0, got {}", w.flux_scale),
            });
        }
        let iv = |s: &[f64]| s.iter().map(|s| 1.0 / (s * s)).collect::<Vec<_>>();
        Ok(Self {
            cphase: cphase.to_vec(),
            cphase_iv: iv(cphase_sigma),
            logcamp: logcamp.to_vec(),
            logcamp_iv: iv(logcamp_sigma),
            flux,
            w,
        })
    }

    /// The weights.
    pub fn weights(&self) -> ClosureWeights {
        self.w
    }

    /// The reduced chi^2 of closure phases and of log closure amplitudes of one predicted
    /// measurement: `(1/P) sum rho(d)/sigma^2` and `(1/Q) sum d^2/sigma^2` (the metrics of EnKG
    /// Table 3, before their `chi^2 < 1 -> 1/chi^2` folding).
    pub fn reduced_chi2(&self, y: &[f32]) -> Result<(f64, f64)> {
        let m = self.measurement_dim();
        if y.len() != m {
            return Err(OperatorError::Shape {
                what: "predicted measurement",
                expected: m,
                got: y.len(),
            });
        }
        let (p, q) = (self.cphase.len(), self.logcamp.len());
        let cp: f64 = (0..p)
            .map(|k| self.rho(y[k] as f64 - self.cphase[k]) * self.cphase_iv[k])
            .sum();
        let ca: f64 = (0..q)
            .map(|k| {
                let d = y[p + k] as f64 - self.logcamp[k];
                d * d * self.logcamp_iv[k]
            })
            .sum();
        Ok((cp / p.max(1) as f64, ca / q.max(1) as f64))
    }

    fn rho(&self, d: f64) -> f64 {
        match self.w.phase_residual {
            PhaseResidual::Wrapped => 2.0 * (1.0 - d.cos()),
            PhaseResidual::Linear => d * d,
        }
    }
    fn drho(&self, d: f64) -> f64 {
        match self.w.phase_residual {
            PhaseResidual::Wrapped => 2.0 * d.sin(),
            PhaseResidual::Linear => 2.0 * d,
        }
    }

    #[allow(clippy::needless_range_loop)]
    fn nll_row(&self, y: &[f32]) -> f64 {
        let (p, q) = (self.cphase.len(), self.logcamp.len());
        let w = &self.w;
        let mut cp = 0.0;
        for k in 0..p {
            cp += self.rho(y[k] as f64 - self.cphase[k]) * self.cphase_iv[k];
        }
        let mut ca = 0.0;
        for k in 0..q {
            let d = y[p + k] as f64 - self.logcamp[k];
            ca += d * d * self.logcamp_iv[k];
        }
        let f = (y[p + q] as f64 - self.flux) / w.flux_scale;
        w.overall * (w.cphase * cp + w.logcamp * ca + w.flux * f * f)
    }

    #[allow(clippy::needless_range_loop)]
    /// Length of [`Likelihood::residual`]'s rows (see the module docs).
    pub fn residual_dim(&self) -> usize {
        let (p, q) = (self.cphase.len(), self.logcamp.len());
        match self.w.phase_residual {
            PhaseResidual::Wrapped => 2 * p + q + 1,
            PhaseResidual::Linear => p + q + 1,
        }
    }

    fn residual_row(&self, y: &[f32], r: &mut [f32]) {
        let (p, q) = (self.cphase.len(), self.logcamp.len());
        let w = &self.w;
        let a_cp = (2.0 * w.overall * w.cphase).sqrt();
        let mut o = 0;
        match w.phase_residual {
            PhaseResidual::Wrapped => {
                for k in 0..p {
                    let (s, c) = (y[k] as f64).sin_cos();
                    let (so, co) = self.cphase[k].sin_cos();
                    let a = a_cp * self.cphase_iv[k].sqrt();
                    r[k] = (a * (c - co)) as f32;
                    r[p + k] = (a * (s - so)) as f32;
                }
                o = 2 * p;
            }
            PhaseResidual::Linear => {
                for k in 0..p {
                    let d = y[k] as f64 - self.cphase[k];
                    r[k] = (a_cp * d * self.cphase_iv[k].sqrt()) as f32;
                }
                o += p;
            }
        }
        let a_ca = (2.0 * w.overall * w.logcamp).sqrt();
        for k in 0..q {
            let d = y[p + k] as f64 - self.logcamp[k];
            r[o + k] = (a_ca * d * self.logcamp_iv[k].sqrt()) as f32;
        }
        let f = (y[p + q] as f64 - self.flux) / w.flux_scale;
        r[o + q] = ((2.0 * w.overall * w.flux).sqrt() * f) as f32;
    }

    #[allow(clippy::needless_range_loop)]
    fn grad_row(&self, y: &[f32], g: &mut [f32]) {
        let (p, q) = (self.cphase.len(), self.logcamp.len());
        let w = &self.w;
        for k in 0..p {
            g[k] = (w.overall
                * w.cphase
                * self.drho(y[k] as f64 - self.cphase[k])
                * self.cphase_iv[k]) as f32;
        }
        for k in 0..q {
            let d = y[p + k] as f64 - self.logcamp[k];
            g[p + k] = (2.0 * w.overall * w.logcamp * d * self.logcamp_iv[k]) as f32;
        }
        let f = y[p + q] as f64 - self.flux;
        g[p + q] = (2.0 * w.overall * w.flux * f / (w.flux_scale * w.flux_scale)) as f32;
    }
}

impl Likelihood for ClosureLikelihood {
    fn measurement_dim(&self) -> usize {
        self.cphase.len() + self.logcamp.len() + 1
    }
    fn nll(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        check_batch(y_pred, self.measurement_dim(), "predicted measurement")?;
        let y = y_pred.as_standard_layout();
        let mut out = Array1::<f32>::zeros(y.nrows());
        Zip::from(&mut out).and(y.rows()).par_for_each(|o, r| {
            if let Some(s) = r.as_slice() {
                *o = self.nll_row(s) as f32;
            }
        });
        Ok(out)
    }
    fn grad(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y_pred, self.measurement_dim(), "predicted measurement")?;
        let y = y_pred.as_standard_layout();
        let mut g = Array2::<f32>::zeros(y.raw_dim());
        Zip::from(g.rows_mut())
            .and(y.rows())
            .par_for_each(|mut gr, r| {
                if let (Some(s), Some(gs)) = (r.as_slice(), gr.as_slice_mut()) {
                    self.grad_row(s, gs);
                }
            });
        Ok(g)
    }
    /// The whitened residual of the module docs, `[r_psi | r_lca | r_F]`, length `m`.
    fn residual(&self, y_pred: ArrayView2<'_, f32>) -> Result<Option<Array2<f32>>> {
        check_batch(y_pred, self.measurement_dim(), "predicted measurement")?;
        let y = y_pred.as_standard_layout();
        let mut r = Array2::<f32>::zeros((y.nrows(), self.residual_dim()));
        Zip::from(r.rows_mut()).and(y.rows()).par_for_each(|mut rr, row| {
            if let (Some(s), Some(rs)) = (row.as_slice(), rr.as_slice_mut()) {
                self.residual_row(s, rs);
            }
        });
        Ok(Some(r))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// `||r(y)||^2 / 2 == L(y)` for both phase residuals and non-default weights, including
    /// phase differences beyond `pi`.
    #[test]
    fn residual_half_square_is_the_nll() {
        let cp = [0.3, -2.9, 1.0];
        let cps = [0.1, 0.2, 0.05];
        let la = [0.5, -0.7];
        let las = [0.3, 0.15];
        let y = Array2::from_shape_vec(
            (3, 6),
            vec![
                0.2f32, 3.0, 1.1, 0.4, -0.6, 1.8, //
                -3.0, 2.9, -2.0, 0.5, -0.7, 2.0, //
                6.0, -6.1, 1.0, 1.5, 0.0, 0.1,
            ],
        )
        .unwrap();
        let weights = [
            ClosureWeights::default(),
            ClosureWeights::enkg_pytorch(),
            ClosureWeights { cphase: 0.7, logcamp: 2.5, flux: 0.1, flux_scale: 3.0, overall: 1.3, phase_residual: PhaseResidual::Wrapped },
        ];
        for w in weights {
            let lik = ClosureLikelihood::from_parts(&cp, &cps, &la, &las, 2.0, w).unwrap();
            let r = lik.residual(y.view()).unwrap().unwrap();
            assert_eq!(r.dim(), (y.nrows(), lik.residual_dim()));
            let nll = lik.nll(y.view()).unwrap();
            for (row, l) in r.rows().into_iter().zip(nll.iter()) {
                let half_sq = 0.5 * row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>();
                let rel = (half_sq - *l as f64).abs() / (*l as f64).abs().max(1e-6);
                assert!(rel < 1e-5, "{w:?}: ||r||^2/2 = {half_sq}, nll = {l}");
            }
        }
    }

    /// The wrapped residual is a function of the closure phase on the circle: adding `2 pi` to
    /// any predicted phase leaves it unchanged, and a phase just below `pi` and one just above
    /// `-pi` (the two sides of the branch cut) give nearly equal residuals.
    #[test]
    fn wrapped_residual_is_periodic_and_continuous_across_the_branch_cut() {
        let cp = [3.0, -0.4];
        let cps = [0.2, 0.1];
        let lik =
            ClosureLikelihood::from_parts(&cp, &cps, &[0.5], &[0.3], 2.0, ClosureWeights::default())
                .unwrap();
        let e = 1e-3f32;
        let pi = std::f32::consts::PI;
        let y = Array2::from_shape_vec(
            (4, 4),
            vec![
                0.7f32, -1.2, 0.4, 2.1, //
                0.7 + 2.0 * pi, -1.2 - 2.0 * pi, 0.4, 2.1, //
                pi - e, 0.3, 0.5, 2.0, //
                -pi + e, 0.3, 0.5, 2.0,
            ],
        )
        .unwrap();
        let r = lik.residual(y.view()).unwrap().unwrap();
        assert_eq!(r.ncols(), 2 * 2 + 1 + 1);
        for k in 0..r.ncols() {
            approx::assert_abs_diff_eq!(r[[0, k]], r[[1, k]], epsilon = 1e-4);
            // Across the cut the chord moves by at most (2e / sigma) * sqrt(2 c w) = 0.02.
            approx::assert_abs_diff_eq!(r[[2, k]], r[[3, k]], epsilon = 0.021);
        }
    }
}
