//! Priors: the analytic ones (exact denoisers, exact posteriors under linear Gaussian data) and,
//! with the `torch` feature, the neural ones (a trained prior folder, a TorchScript module).
//!
//! Every prior is a denoiser in the EDM convention (Karras et al. 2022): a noisy sample is
//! `x_sigma = x_0 + sigma eps`, and `D(x; sigma) ~ E[x_0 | x_sigma = x]`.

use std::sync::Arc;

use diffinv_priors::{Denoiser, GaussianPrior};
use ndarray::{Array1, Array2, Axis};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayDyn};
#[cfg(not(feature = "torch"))]
use pyo3::exceptions::PyImportError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{batch, f32_array, f64_array, matrix, shape_str, unbatch, vector};
use crate::errors::{no_panic, prior_err};

/// The torch release whose libtorch the `torch` feature links (the one tch 0.24 pairs with).
pub const TORCH_VERSION: &str = "2.11.0";

/// Register the prior classes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Prior>()?;
    m.add_class::<Gaussian>()?;
    m.add_class::<GaussianMixture>()?;
    m.add_class::<TrainedPrior>()?;
    m.add_class::<TorchScriptPrior>()?;
    Ok(())
}

/// A diffusion prior: a denoiser `D(x; sigma) ~ E[x_0 | x_0 + sigma eps = x]` (the EDM
/// convention of Karras et al. 2022).
///
/// The base class of `Gaussian`, `GaussianMixture`, `TrainedPrior` and `TorchScriptPrior`; not
/// constructed directly. Pass one to `diffinv.solve`.
///
/// A neural prior may live in normalised units `z = (x - shift) / scale` (its `normalization`);
/// `solve` then hands the forward model physical values `x = scale * z + shift` and returns the
/// samples in physical units, so the user never sees `z`.
#[pyclass(subclass, frozen, module = "diffinv")]
pub struct Prior {
    pub(crate) inner: Arc<dyn Denoiser>,
    pub(crate) shape: Vec<usize>,
    pub(crate) shift: f32,
    pub(crate) scale: f32,
}

impl Prior {
    fn analytic(inner: Arc<dyn Denoiser>) -> Self {
        let d = inner.dim();
        Self {
            inner,
            shape: vec![d],
            shift: 0.0,
            scale: 1.0,
        }
    }
    /// Whether samples need the map `x = scale * z + shift` to physical units.
    pub(crate) fn normalised(&self) -> bool {
        self.shift != 0.0 || self.scale != 1.0
    }
}

#[pymethods]
impl Prior {
    /// Dimension `d` of one sample (the product of `shape`).
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    /// Shape of one sample: `(d,)` for the analytic priors, `(C, H, W)` for image priors.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    /// `(shift, scale)` with `z = (x - shift) / scale` the prior's own units; `(0.0, 1.0)` when
    /// the prior works in physical units.
    #[getter]
    fn normalization(&self) -> (f32, f32) {
        (self.shift, self.scale)
    }
    /// `D(x; sigma)` for a batch `x` of shape `(n, d)` (or one sample `(d,)`, or images
    /// `(n, *shape)`), in the prior's own units, at noise level `sigma > 0`.
    #[pyo3(signature = (x, sigma))]
    fn denoise<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        sigma: f32,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (xb, form) = batch(f32_array(x, "x")?, "x", &self.shape)?;
        let inner = self.inner.clone();
        let out = py.allow_threads(|| {
            no_panic(|| inner.denoise(xb.view(), sigma).map_err(prior_err))
        })?;
        Ok(unbatch(out, form, &self.shape)?.into_pyarray(py))
    }
    fn __repr__(&self) -> String {
        format!("Prior(shape={})", shape_str(&self.shape))
    }
}

/// Read a batch of points for a linear-Gaussian posterior: `A` `(m, d)`, `y` `(m,)`.
fn linear_data(
    a: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    sigma: f64,
    d: usize,
) -> PyResult<(Array2<f64>, Array1<f64>)> {
    let a = matrix(f64_array(a, "A")?, "A", Some(d))?;
    let y = vector(f64_array(y, "y")?, "y", Some(a.nrows()))?;
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "sigma must be finite and >= 0, got {sigma}"
        )));
    }
    if a.iter().chain(y.iter()).any(|v| !v.is_finite()) {
        return Err(PyValueError::new_err("A and y must be finite"));
    }
    Ok((a, y))
}

/// A Gaussian prior `N(mean, Sigma)` with its exact denoiser
/// `D(x; sigma) = mean + Sigma (Sigma + sigma^2 I)^{-1} (x - mean)` (Tweedie's formula).
///
/// `Gaussian(mean, variance=None, covariance=None)`: give `variance` (a scalar for
/// `Sigma = v I`, or a `(d,)` array for a diagonal) or `covariance` (a `(d, d)` symmetric
/// positive definite matrix). Parameters are read as float64.
///
/// >>> prior = diffinv.Gaussian([0.0, 0.0], variance=4.0)
/// >>> prior.posterior(A=[[1.0, 0.0]], y=[1.0], sigma=0.5).mean
#[pyclass(extends = Prior, frozen, module = "diffinv")]
pub struct Gaussian {
    g: diffinv_priors::Gaussian,
}

fn gaussian_of(
    mean: Array1<f64>,
    variance: Option<&Bound<'_, PyAny>>,
    covariance: Option<&Bound<'_, PyAny>>,
) -> PyResult<diffinv_priors::Gaussian> {
    let d = mean.len();
    let g = match (variance, covariance) {
        (Some(v), None) => {
            let v = f64_array(v, "variance")?;
            match v.ndim() {
                0 => diffinv_priors::Gaussian::isotropic(mean, v.iter().copied().next().unwrap_or(f64::NAN)),
                _ => diffinv_priors::Gaussian::diagonal(mean, vector(v, "variance", Some(d))?),
            }
        }
        (None, Some(c)) => {
            let c = matrix(f64_array(c, "covariance")?, "covariance", Some(d))?;
            if c.nrows() != d {
                return Err(PyValueError::new_err(format!(
                    "covariance must have shape ({d}, {d}), got {}",
                    shape_str(c.shape())
                )));
            }
            diffinv_priors::Gaussian::full(mean, c)
        }
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give either variance or covariance, not both",
            ))
        }
        (None, None) => {
            return Err(PyValueError::new_err(
                "give variance (a scalar or a (d,) array) or covariance (a (d, d) matrix)",
            ))
        }
    };
    g.map_err(prior_err)
}

impl Gaussian {
    fn build(g: diffinv_priors::Gaussian) -> PyClassInitializer<Self> {
        let prior = Prior::analytic(Arc::new(GaussianPrior::new(g.clone())));
        PyClassInitializer::from(prior).add_subclass(Gaussian { g })
    }
}

#[pymethods]
impl Gaussian {
    #[new]
    #[pyo3(signature = (mean, variance = None, covariance = None))]
    fn new(
        mean: &Bound<'_, PyAny>,
        variance: Option<&Bound<'_, PyAny>>,
        covariance: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mean = vector(f64_array(mean, "mean")?, "mean", None)?;
        Ok(Self::build(gaussian_of(mean, variance, covariance)?))
    }
    /// The mean, `(d,)` float64.
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.g.mean().to_owned().into_pyarray(py)
    }
    /// The covariance as a dense `(d, d)` float64 matrix.
    #[getter]
    fn covariance<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        self.g.covariance().to_dense().into_pyarray(py)
    }
    /// `n` exact independent draws `(n, d)` float32; the same `seed` gives the same draws.
    #[pyo3(signature = (n, seed = 0))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> Bound<'py, PyArray2<f32>> {
        let g = self.g.clone();
        py.allow_threads(|| GaussianPrior::new(g).sample(n, seed))
            .into_pyarray(py)
    }
    /// The exact posterior under `y = A x + sigma n`, `n ~ N(0, I)`: again a `Gaussian`, with
    /// `S = A Sigma A^T + sigma^2 I`, `K = Sigma A^T S^{-1}`, mean `mu + K (y - A mu)` and
    /// covariance `Sigma - K A Sigma`. `A` is `(m, d)`, `y` `(m,)`.
    #[pyo3(signature = (A, y, sigma))]
    #[allow(non_snake_case)]
    fn posterior(
        &self,
        py: Python<'_>,
        A: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        sigma: f64,
    ) -> PyResult<Py<Gaussian>> {
        let (a, y) = linear_data(A, y, sigma, self.g.dim())?;
        let post = diffinv_priors::GaussianPosterior::new(&self.g, a.view(), y.view(), sigma)
            .map_err(prior_err)?;
        let g = diffinv_priors::Gaussian::full(post.mean().to_owned(), post.covariance())
            .map_err(prior_err)?;
        Py::new(py, Self::build(g))
    }
    fn __repr__(&self) -> String {
        format!("Gaussian(d={})", self.g.dim())
    }
}

/// A Gaussian mixture `p(x) = sum_k w_k N(x; mu_k, Sigma_k)` with its exact denoiser
/// `D(x; sigma) = sum_k pi_k(x) D_k(x; sigma)`, `pi_k(x) ∝ w_k N(x; mu_k, Sigma_k + sigma^2 I)`.
///
/// `GaussianMixture(weights, means, variance=None, covariances=None)`: `weights` `(K,)` (normalised
/// here), `means` `(K, d)`, and either `variance` — a scalar (every component `v I`), `(K,)` (one
/// isotropic variance per component) or `(K, d)` (one diagonal per component) — or
/// `covariances` `(K, d, d)`. Parameters are read as float64.
///
/// `posterior(A, y, sigma)` is the exact posterior under `y = A x + sigma n`, again a mixture:
/// the EnKG and CPS test bed with a known answer.
#[pyclass(extends = Prior, frozen, module = "diffinv")]
pub struct GaussianMixture {
    gmm: diffinv_priors::GaussianMixture,
}

impl GaussianMixture {
    fn build(gmm: diffinv_priors::GaussianMixture) -> PyClassInitializer<Self> {
        let prior = Prior::analytic(Arc::new(gmm.clone()));
        PyClassInitializer::from(prior).add_subclass(GaussianMixture { gmm })
    }
}

#[pymethods]
impl GaussianMixture {
    #[new]
    #[pyo3(signature = (weights, means, variance = None, covariances = None))]
    fn new(
        weights: &Bound<'_, PyAny>,
        means: &Bound<'_, PyAny>,
        variance: Option<&Bound<'_, PyAny>>,
        covariances: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let means = matrix(f64_array(means, "means")?, "means", None)?;
        let (k, d) = means.dim();
        let weights = vector(f64_array(weights, "weights")?, "weights", Some(k))?;
        let mut comps = Vec::with_capacity(k);
        match (variance, covariances) {
            (Some(v), None) => {
                let v = f64_array(v, "variance")?;
                let shape = v.shape().to_vec();
                for (c, mean) in means.outer_iter().enumerate() {
                    let mean = mean.to_owned();
                    let g = match shape.as_slice() {
                        [] => diffinv_priors::Gaussian::isotropic(mean, v[[]]),
                        [kk] if *kk == k => diffinv_priors::Gaussian::isotropic(mean, v[[c]]),
                        [kk, dd] if *kk == k && *dd == d => diffinv_priors::Gaussian::diagonal(
                            mean,
                            v.index_axis(Axis(0), c).to_owned().into_dimensionality().map_err(
                                |e| PyValueError::new_err(format!("variance: {e}")),
                            )?,
                        ),
                        _ => {
                            return Err(PyValueError::new_err(format!(
                                "variance must be a scalar or have shape ({k},) or ({k}, {d}), got {}",
                                shape_str(&shape)
                            )))
                        }
                    };
                    comps.push(g.map_err(prior_err)?);
                }
            }
            (None, Some(cv)) => {
                let cv = f64_array(cv, "covariances")?;
                if cv.shape() != [k, d, d] {
                    return Err(PyValueError::new_err(format!(
                        "covariances must have shape ({k}, {d}, {d}), got {}",
                        shape_str(cv.shape())
                    )));
                }
                for (c, mean) in means.outer_iter().enumerate() {
                    let cov: Array2<f64> = cv
                        .index_axis(Axis(0), c)
                        .to_owned()
                        .into_dimensionality()
                        .map_err(|e| PyValueError::new_err(format!("covariances: {e}")))?;
                    comps.push(
                        diffinv_priors::Gaussian::full(mean.to_owned(), cov).map_err(prior_err)?,
                    );
                }
            }
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give either variance or covariances, not both",
                ))
            }
            (None, None) => {
                return Err(PyValueError::new_err(
                    "give variance (a scalar, (K,) or (K, d)) or covariances (K, d, d)",
                ))
            }
        }
        let weights: Vec<f64> = weights.to_vec();
        let gmm = diffinv_priors::GaussianMixture::new(&weights, comps).map_err(prior_err)?;
        Ok(Self::build(gmm))
    }
    /// The normalised weights `(K,)`.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from(self.gmm.weights().to_vec()).into_pyarray(py)
    }
    /// The component means `(K, d)`.
    #[getter]
    fn means<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let comps = self.gmm.components();
        let d = comps.first().map_or(0, |c| c.dim());
        let flat: Vec<f64> = comps.iter().flat_map(|c| c.mean().to_vec()).collect();
        let a = Array2::from_shape_vec((comps.len(), d), flat)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py))
    }
    /// The component covariances `(K, d, d)` (dense).
    #[getter]
    fn covariances<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let comps = self.gmm.components();
        let d = comps.first().map_or(0, |c| c.dim());
        let flat: Vec<f64> = comps
            .iter()
            .flat_map(|c| c.covariance().to_dense().into_iter())
            .collect();
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[comps.len(), d, d]), flat)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py))
    }
    /// The mixture mean `sum_k w_k mu_k`, `(d,)` float64.
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.gmm.mean().into_pyarray(py)
    }
    /// `n` exact independent draws `(n, d)` float32; the same `seed` gives the same draws.
    #[pyo3(signature = (n, seed = 0))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> Bound<'py, PyArray2<f32>> {
        let gmm = &self.gmm;
        py.allow_threads(|| gmm.sample(n, seed)).into_pyarray(py)
    }
    /// The exact posterior under `y = A x + sigma n`, `n ~ N(0, I)`: a `GaussianMixture` whose
    /// components are the conditioned components and whose weights are
    /// `w'_k ∝ w_k N(y; A mu_k, A Sigma_k A^T + sigma^2 I)`. `A` is `(m, d)`, `y` `(m,)`.
    #[pyo3(signature = (A, y, sigma))]
    #[allow(non_snake_case)]
    fn posterior(
        &self,
        py: Python<'_>,
        A: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        sigma: f64,
    ) -> PyResult<Py<GaussianMixture>> {
        let d = self.gmm.components().first().map_or(0, |c| c.dim());
        let (a, y) = linear_data(A, y, sigma, d)?;
        let post = self.gmm.posterior(a.view(), y.view(), sigma).map_err(prior_err)?;
        let comps = post
            .components()
            .iter()
            .map(|c| diffinv_priors::Gaussian::full(c.mean().to_owned(), c.covariance()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(prior_err)?;
        let gmm = diffinv_priors::GaussianMixture::new(post.weights(), comps).map_err(prior_err)?;
        Py::new(py, Self::build(gmm))
    }
    fn __repr__(&self) -> String {
        let d = self.gmm.components().first().map_or(0, |c| c.dim());
        format!("GaussianMixture(K={}, d={d})", self.gmm.len())
    }
}

/// The one-line ImportError of a neural prior in a build without libtorch.
#[cfg(not(feature = "torch"))]
fn no_torch(what: &str) -> PyErr {
    PyImportError::new_err(format!(
        "diffinv was built without libtorch support, so {what} is unavailable: reinstall, in the \
         activated virtual environment, with `pip install torch=={TORCH_VERSION} maturin==1.9.6` then \
         `LIBTORCH_USE_PYTORCH=1 pip install --no-build-isolation ./crates/python \
         --config-settings=build-args=\"--features torch\"` (docs/python.md)"
    ))
}

/// A prior trained by `cargo xtask train` (an EDM-preconditioned U-Net): the shipped ones
/// (`fixtures/priors/ns64`, `blackhole64`, `natural64`) or the trainer's output folder.
///
/// `TrainedPrior(folder, device="cpu", batch_size=64)`: the folder holds `config.toml` (its
/// `[train]` table: the U-Net and `sigma_data`), `ema.safetensors` (the weights) and
/// `normalization.json` (`x_train = (x - shift) / scale`; without it `normalization = "unit"`
/// in the config means shift 0.5, scale 0.5). `device` is `"cpu"`, `"cuda"`, `"cuda:N"` or
/// `"auto"`; `batch_size` images go through the network at once.
///
/// The network works in normalised units; `solve` maps them to physical units for the forward
/// model and the returned samples (see `Prior.normalization`).
///
/// Needs a build with libtorch (the `torch` feature; docs/python.md). Without it, constructing
/// one raises ImportError naming the reinstall command.
#[pyclass(extends = Prior, frozen, module = "diffinv")]
pub struct TrainedPrior {
    #[allow(dead_code)]
    folder: std::path::PathBuf,
}

/// A pre-trained prior exported from PyTorch as TorchScript (docs/priors.md,
/// `tools/export_torchscript.py`).
///
/// `TorchScriptPrior(path, shape, kind="edm", device="cpu", batch_size=16, shift=0.0, scale=1.0)`:
/// - `kind="edm"`: the module computes `D(x, sigma)` with `x` `(B, C, H, W)`, `sigma` `(B,)`;
/// - `kind="vp-eps"`: an epsilon-prediction VP/DDPM model `eps(x_t, t)` on the linear-beta
///   schedule (1000 steps, beta 1e-4 to 0.02), used through `x_t = x / sqrt(1 + sigma^2)` at the
///   nearest discrete step and `D(x; sigma) = x - sigma_t eps(x_t, t)`.
///
/// `shape` is `(C, H, W)`; `shift`, `scale` its normalisation `z = (x - shift) / scale`
/// (e.g. `shift=0.5, scale=0.5` for a network trained on `[-1, 1]` images of `[0, 1]` data).
///
/// Needs a build with libtorch (the `torch` feature); without it, ImportError.
#[pyclass(extends = Prior, frozen, module = "diffinv")]
pub struct TorchScriptPrior {
    #[allow(dead_code)]
    path: std::path::PathBuf,
}

#[cfg(not(feature = "torch"))]
#[pymethods]
impl TrainedPrior {
    #[new]
    #[pyo3(signature = (folder, device = "cpu", batch_size = 64))]
    fn new(folder: std::path::PathBuf, device: &str, batch_size: usize) -> PyResult<(Self, Prior)> {
        let _ = (folder, device, batch_size);
        Err(no_torch("TrainedPrior"))
    }
}

#[cfg(not(feature = "torch"))]
#[pymethods]
impl TorchScriptPrior {
    #[new]
    #[pyo3(signature = (path, shape, kind = "edm", device = "cpu", batch_size = 16, shift = 0.0, scale = 1.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: std::path::PathBuf,
        shape: Vec<usize>,
        kind: &str,
        device: &str,
        batch_size: usize,
        shift: f32,
        scale: f32,
    ) -> PyResult<(Self, Prior)> {
        let _ = (path, shape, kind, device, batch_size, shift, scale);
        Err(no_torch("TorchScriptPrior"))
    }
}

#[cfg(feature = "torch")]
mod neural {
    use std::path::PathBuf;
    use std::str::FromStr;
    use std::sync::Arc;

    use diffinv_priors::neural::{DeviceChoice, NeuralDenoiser, PriorFolder, ScriptedEdm, ScriptedVpEpsilon};
    use diffinv_priors::PriorError;
    use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
    use pyo3::prelude::*;

    use super::{Prior, TorchScriptPrior, TrainedPrior};
    use crate::convert::shape_str;
    use crate::errors::{no_panic, prior_err};

    fn device(s: &str) -> PyResult<tch::Device> {
        DeviceChoice::from_str(s)
            .and_then(|d| d.resolve())
            .map_err(prior_err)
    }

    fn check_norm(shift: f64, scale: f64) -> PyResult<()> {
        if shift.is_finite() && scale.is_finite() && scale > 0.0 {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "normalization needs a finite shift and a positive scale, got shift {shift}, scale {scale}"
            )))
        }
    }

    /// Read a trained prior folder (`diffinv_priors::neural::PriorFolder`, the layout the
    /// trainer writes); a missing file is a `FileNotFoundError` naming the folder.
    fn read_folder(dir: &std::path::Path) -> PyResult<PriorFolder> {
        PriorFolder::read(dir).map_err(|e| match &e {
            PriorError::Load { path, .. } if !std::path::Path::new(path).exists() => {
                PyFileNotFoundError::new_err(format!("{} is not a trained prior folder: {e}", dir.display()))
            }
            _ => prior_err(e),
        })
    }

    #[pymethods]
    impl TrainedPrior {
        #[new]
        #[pyo3(signature = (folder, device = "cpu", batch_size = 64))]
        fn new(py: Python<'_>, folder: PathBuf, device: &str, batch_size: usize) -> PyResult<(Self, Prior)> {
            let spec = read_folder(&folder)?;
            let dev = self::device(device)?;
            let den: NeuralDenoiser =
                py.allow_threads(|| no_panic(|| spec.load(batch_size, dev).map_err(prior_err)))?;
            let prior = Prior {
                inner: Arc::new(den),
                shape: spec.shape(),
                shift: spec.shift as f32,
                scale: spec.scale as f32,
            };
            Ok((Self { folder }, prior))
        }
        /// The folder the prior was read from.
        #[getter]
        fn folder(&self) -> PathBuf {
            self.folder.clone()
        }
        fn __repr__(slf: &Bound<'_, Self>) -> String {
            let p = slf.as_super().get();
            format!(
                "TrainedPrior({:?}, shape={})",
                slf.get().folder.display().to_string(),
                shape_str(&p.shape)
            )
        }
    }

    #[pymethods]
    impl TorchScriptPrior {
        #[new]
        #[pyo3(signature = (path, shape, kind = "edm", device = "cpu", batch_size = 16, shift = 0.0, scale = 1.0))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            py: Python<'_>,
            path: PathBuf,
            shape: Vec<usize>,
            kind: &str,
            device: &str,
            batch_size: usize,
            shift: f32,
            scale: f32,
        ) -> PyResult<(Self, Prior)> {
            check_norm(shift as f64, scale as f64)?;
            let s: [i64; 3] = match shape.as_slice() {
                [c, h, w] if *c > 0 && *h > 0 && *w > 0 => [*c as i64, *h as i64, *w as i64],
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "shape must be (C, H, W) with positive sizes, got {}",
                        shape_str(&shape)
                    )))
                }
            };
            let dev = self::device(device)?;
            let kind = kind.to_string();
            if kind != "edm" && kind != "vp-eps" {
                return Err(PyValueError::new_err(format!(
                    "kind must be \"edm\" or \"vp-eps\", got {kind:?}"
                )));
            }
            let p = path.clone();
            let den = py.allow_threads(|| {
                no_panic(|| {
                    let net: Box<dyn diffinv_priors::neural::TorchDenoise> = if kind == "edm" {
                        Box::new(ScriptedEdm::load(&p, s, dev).map_err(prior_err)?)
                    } else {
                        Box::new(ScriptedVpEpsilon::load_ddpm(&p, s, dev).map_err(prior_err)?)
                    };
                    NeuralDenoiser::new(net, batch_size).map_err(prior_err)
                })
            })?;
            let prior = Prior { inner: Arc::new(den), shape, shift, scale };
            Ok((Self { path }, prior))
        }
        /// The TorchScript file.
        #[getter]
        fn path(&self) -> PathBuf {
            self.path.clone()
        }
        fn __repr__(slf: &Bound<'_, Self>) -> String {
            let p = slf.as_super().get();
            format!("TorchScriptPrior({:?}, shape={})", slf.get().path.display().to_string(), shape_str(&p.shape))
        }
    }
}
