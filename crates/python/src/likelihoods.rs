//! Likelihoods `L(y_pred) = -log p(y_obs | y_pred)` (up to a constant): Gaussian with a scalar
//! or a per-measurement sigma, and the EHT closure chi^2.

use std::sync::Arc;

use diffinv_operators::eht::{ClosureWeights, PhaseResidual};
use diffinv_operators::{
    ClosureLikelihood as RsClosure, DiagonalGaussianLikelihood, GaussianLikelihood as RsGaussian,
    Likelihood as RsLikelihood,
};
use ndarray::Array1;
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{batch, check_finite, f32_array};
use crate::errors::{no_panic, operator_err};
use crate::operators::EhtObservation;

/// Register the likelihood classes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Likelihood>()?;
    m.add_class::<GaussianLikelihood>()?;
    m.add_class::<ClosureLikelihood>()?;
    Ok(())
}

/// A likelihood of an observed measurement: `nll(y_pred)` is `-log p(y_obs | y_pred)` up to a
/// constant. Base class of `GaussianLikelihood` and `ClosureLikelihood`; pass one to
/// `diffinv.solve(likelihood=...)` (the observation is part of it).
#[pyclass(subclass, frozen, module = "diffinv")]
pub struct Likelihood {
    pub(crate) inner: Arc<dyn RsLikelihood>,
}

#[pymethods]
impl Likelihood {
    /// Length `m` of one measurement.
    #[getter]
    fn measurement_dim(&self) -> usize {
        self.inner.measurement_dim()
    }
    /// Whether it is an isotropic Gaussian (the capability `gaussian-likelihood` that PiGDM,
    /// MCG, RED-diff, DDS and others require).
    #[getter]
    fn isotropic_gaussian(&self) -> bool {
        self.inner.as_gaussian().is_some()
    }
    /// The negative log-likelihood of every row of `y_pred` (`(n, m)`, or `(m,)` for one):
    /// `(n,)` float32 (or a float for one row).
    fn nll(&self, py: Python<'_>, y_pred: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let m = self.inner.measurement_dim();
        let (yb, form) = batch(f32_array(y_pred, "y_pred")?, "y_pred", &[m])?;
        let inner = self.inner.clone();
        let l = py.allow_threads(|| no_panic(|| inner.nll(yb.view()).map_err(operator_err)))?;
        Ok(match form {
            crate::convert::BatchForm::Single => l[0].into_pyobject(py)?.into_any().unbind(),
            _ => l.into_pyarray(py).into_any().unbind(),
        })
    }
    fn __repr__(&self) -> String {
        format!("Likelihood(m={})", self.inner.measurement_dim())
    }
}

/// A Gaussian likelihood `y_obs = G(x) + sigma n`, `n ~ N(0, I)`:
/// `L(y) = sum_i (y_i - y_obs_i)^2 / (2 sigma_i^2)`.
///
/// `GaussianLikelihood(y, sigma)`: `y` the observation (`(m,)`, any shape is flattened; no NaN
/// or inf), `sigma` a scalar `>= 0` or an `(m,)` array of positive values (one per measurement).
/// A scalar `sigma = 0` means noiseless data, read with unit weight `||y - y_obs||^2 / 2` (the
/// EnKG reference's convention). A scalar (or a constant array) is the isotropic Gaussian some
/// methods require (`isotropic_gaussian`); a varying array is whitened per measurement.
#[pyclass(extends = Likelihood, frozen, module = "diffinv")]
pub struct GaussianLikelihood {
    y: Array1<f32>,
    sigma: Array1<f32>,
}

impl GaussianLikelihood {
    /// Build from an observation and a sigma (Python objects).
    pub fn build(y: &Bound<'_, PyAny>, sigma: &Bound<'_, PyAny>) -> PyResult<PyClassInitializer<Self>> {
        let y = f32_array(y, "y")?;
        check_finite(&y, "y")?;
        let m = y.len();
        if m == 0 {
            return Err(PyValueError::new_err("y is empty"));
        }
        let y = Array1::from_iter(y.iter().copied());
        let s = f32_array(sigma, "sigma")?;
        let sig: Array1<f32> = if s.ndim() == 0 {
            Array1::from_elem(m, s.iter().copied().next().unwrap_or(f32::NAN))
        } else {
            let s = Array1::from_iter(s.iter().copied());
            if s.len() != m {
                return Err(PyValueError::new_err(format!(
                    "sigma must be a scalar or have one value per measurement ({m},), got ({},)",
                    s.len()
                )));
            }
            s
        };
        let first = sig[0];
        let inner: Arc<dyn RsLikelihood> = if sig.iter().all(|v| *v == first) {
            if !(first.is_finite() && first >= 0.0) {
                return Err(PyValueError::new_err(format!(
                    "sigma must be finite and >= 0, got {first}"
                )));
            }
            Arc::new(RsGaussian::new(y.clone(), first).map_err(operator_err)?)
        } else {
            if let Some(i) = sig.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(PyValueError::new_err(format!(
                    "a per-measurement sigma must be finite and > 0 everywhere, got {} at index {i}",
                    sig[i]
                )));
            }
            Arc::new(DiagonalGaussianLikelihood::new(y.clone(), sig.clone()).map_err(operator_err)?)
        };
        Ok(PyClassInitializer::from(Likelihood { inner }).add_subclass(Self { y, sigma: sig }))
    }
}

#[pymethods]
impl GaussianLikelihood {
    #[new]
    #[pyo3(signature = (y, sigma))]
    fn new(y: &Bound<'_, PyAny>, sigma: &Bound<'_, PyAny>) -> PyResult<PyClassInitializer<Self>> {
        Self::build(y, sigma)
    }
    /// The observation `(m,)` float32.
    #[getter]
    fn y<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.y.clone().into_pyarray(py)
    }
    /// The noise standard deviation per measurement `(m,)` float32.
    #[getter]
    fn sigma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.sigma.clone().into_pyarray(py)
    }
    fn __repr__(&self) -> String {
        let s0 = self.sigma.first().copied().unwrap_or(0.0);
        if self.sigma.iter().all(|v| *v == s0) {
            format!("GaussianLikelihood(m={}, sigma={s0})", self.y.len())
        } else {
            format!("GaussianLikelihood(m={}, sigma=<per measurement>)", self.y.len())
        }
    }
}

/// The closure likelihood of EnKG eq. 22 (after Sun & Bouman 2021) on the `EHT` model's
/// `y = [psi | lca | F]`:
/// `L = c [ w_cp sum_k rho(psi_k - psi_obs_k) / sigma_psi_k^2 + w_ca sum_k (lca_k - lca_obs_k)^2 / sigma_lca_k^2 + w_F ((F - F_obs) / s_F)^2 ]`
/// with `rho(d) = 2 (1 - cos d)` (`phase="wrapped"`, blind to 2 pi jumps) or `d^2`
/// (`phase="linear"`, enkg-pytorch's `loss_m`).
///
/// `ClosureLikelihood(observation, phase="wrapped", cphase_weight=1.0, logcamp_weight=1.0,
/// flux_weight=0.5, flux_scale=2.0, overall=2.0)`; the defaults are InverseBench's.
#[pyclass(extends = Likelihood, frozen, module = "diffinv")]
pub struct ClosureLikelihood;

#[pymethods]
impl ClosureLikelihood {
    #[new]
    #[pyo3(signature = (observation, phase = "wrapped", cphase_weight = 1.0, logcamp_weight = 1.0, flux_weight = 0.5, flux_scale = 2.0, overall = 2.0))]
    fn new(
        observation: PyRef<'_, EhtObservation>,
        phase: &str,
        cphase_weight: f64,
        logcamp_weight: f64,
        flux_weight: f64,
        flux_scale: f64,
        overall: f64,
    ) -> PyResult<(Self, Likelihood)> {
        let phase_residual = match phase {
            "wrapped" => PhaseResidual::Wrapped,
            "linear" => PhaseResidual::Linear,
            other => {
                return Err(PyValueError::new_err(format!(
                    "phase must be \"wrapped\" or \"linear\", got {other:?}"
                )))
            }
        };
        let w = ClosureWeights {
            cphase: cphase_weight,
            logcamp: logcamp_weight,
            flux: flux_weight,
            flux_scale,
            overall,
            phase_residual,
        };
        let lik = RsClosure::new(&observation.data, w).map_err(operator_err)?;
        Ok((Self, Likelihood { inner: Arc::new(lik) }))
    }
}

/// The likelihood `solve` uses for `y` and `sigma` (a `GaussianLikelihood`), as a plain value.
pub fn gaussian(y: &Bound<'_, PyAny>, sigma: &Bound<'_, PyAny>) -> PyResult<Py<GaussianLikelihood>> {
    Py::new(y.py(), GaussianLikelihood::build(y, sigma)?)
}

