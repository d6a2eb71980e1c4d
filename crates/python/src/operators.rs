//! The built-in forward models as Python objects: callable from Python (to simulate data) and
//! usable by `solve` without a Python round trip (the solver calls the Rust model directly).

use std::sync::Arc;

use diffinv_operators::eht::{ClosureForward, EhtConfig, EhtData, VisNoise};
use diffinv_operators::imaging::{Downsampling, Inpainting as RsInpainting};
use diffinv_operators::navier_stokes::{NsConfig, Precision};
use diffinv_operators::{
    Blur as RsBlur, ForwardModel, Hdr, MatrixOperator, NavierStokes2d, NavierStokesConfig,
    PhaseRetrieval as RsPhase, SuperResolution as RsSr,
};
use ndarray::{Array1, Array2};
use num_complex::Complex;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayDyn};
use pyo3::exceptions::{PyNotImplementedError, PyValueError};
use pyo3::prelude::*;

use crate::convert::{batch, f32_array, matrix, shape_str, unbatch, BatchForm};
use crate::errors::{no_panic, operator_err};

/// Register the operator classes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Operator>()?;
    m.add_class::<Matrix>()?;
    m.add_class::<NavierStokes>()?;
    m.add_class::<Eht>()?;
    m.add_class::<EhtObservation>()?;
    m.add_class::<Inpainting>()?;
    m.add_class::<SuperResolution>()?;
    m.add_class::<Blur>()?;
    m.add_class::<PhaseRetrieval>()?;
    m.add_class::<HDR>()?;
    Ok(())
}

/// A built-in forward model `y = G(x)`.
///
/// Calling it evaluates `G` in Rust with the GIL released: `op(x)` takes one sample `(d,)`, a
/// batch `(n, d)`, one sample in the model's `input_shape` or a batch `(n, *input_shape)`, and
/// returns `(m,)`, `(n, m)`, `output_shape` or `(n, *output_shape)` float32 accordingly. A
/// sample whose evaluation fails (a diverging Navier-Stokes solve) comes back as a row of NaN,
/// the convention of Python forward models too.
///
/// Passed to `diffinv.solve(forward=op)`, the solver calls the Rust model directly (no Python
/// round trip) and sees its capabilities: `linear` (an adjoint `A^T`) and `differentiable`
/// (a vector-Jacobian product), which the gradient-based methods need.
#[pyclass(subclass, frozen, module = "diffinv")]
pub struct Operator {
    pub(crate) inner: Arc<dyn ForwardModel>,
}

impl Operator {
    fn of(m: impl ForwardModel + 'static) -> Self {
        Self { inner: Arc::new(m) }
    }
    fn eval(&self, py: Python<'_>, x: Array2<f32>) -> PyResult<Array2<f32>> {
        let inner = self.inner.clone();
        py.allow_threads(|| {
            no_panic(|| {
                let out = inner.forward_partial(x.view()).map_err(operator_err)?;
                let mut y = out.y;
                for f in &out.failures {
                    if f.row < y.nrows() {
                        y.row_mut(f.row).fill(f32::NAN);
                    }
                }
                Ok(y)
            })
        })
    }
}

#[pymethods]
impl Operator {
    /// Shape of one input sample (without the batch axis), e.g. `(1, 64, 64)`.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }
    /// Shape of one measurement (without the batch axis).
    #[getter]
    fn output_shape(&self) -> Vec<usize> {
        self.inner.output_shape()
    }
    /// `d`, the number of values of one input sample.
    #[getter]
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    /// `m`, the number of values of one measurement.
    #[getter]
    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }
    /// Whether the model is linear with an adjoint (`adjoint` works).
    #[getter]
    fn linear(&self) -> bool {
        self.inner.as_linear().is_some()
    }
    /// Whether the model has a vector-Jacobian product (`vjp` works); linear models do.
    #[getter]
    fn differentiable(&self) -> bool {
        self.inner.as_differentiable().is_some() || self.inner.as_linear().is_some()
    }
    /// `G(x)`: see the class documentation for the accepted shapes.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let input = self.inner.input_shape();
        let (xb, form) = batch(f32_array(x, "x")?, "x", &input)?;
        let y = self.eval(py, xb)?;
        Ok(unbatch(y, form, &self.inner.output_shape())?.into_pyarray(py))
    }
    /// The adjoint `A^T v` of a linear model, row by row: `v` is `(n, m)` (or `(m,)`), the
    /// result `(n, d)` (or `(d,)`). `NotImplementedError` for a non-linear model.
    fn adjoint<'py>(&self, py: Python<'py>, v: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        if self.inner.as_linear().is_none() {
            return Err(PyNotImplementedError::new_err("this forward model is not linear: it has no adjoint"));
        }
        let (vb, form) = batch(f32_array(v, "v")?, "v", &self.inner.output_shape())?;
        let inner = self.inner.clone();
        let out = py.allow_threads(|| {
            no_panic(|| match inner.as_linear() {
                Some(a) => a.adjoint(vb.view()).map_err(operator_err),
                None => Err(PyNotImplementedError::new_err("no adjoint")),
            })
        })?;
        Ok(unbatch(out, form, &self.inner.input_shape())?.into_pyarray(py))
    }
    /// The vector-Jacobian product `J_G(x)^T v` row by row: `x` `(n, d)`, `v` `(n, m)`, result
    /// `(n, d)`. `NotImplementedError` when the model has none.
    fn vjp<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, v: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        if !self.differentiable() {
            return Err(PyNotImplementedError::new_err("this forward model has no vector-Jacobian product"));
        }
        let (xb, form) = batch(f32_array(x, "x")?, "x", &self.inner.input_shape())?;
        let (vb, _) = batch(f32_array(v, "v")?, "v", &self.inner.output_shape())?;
        if vb.nrows() != xb.nrows() {
            return Err(PyValueError::new_err(format!(
                "x has {} rows but v has {}",
                xb.nrows(),
                vb.nrows()
            )));
        }
        let inner = self.inner.clone();
        let out = py.allow_threads(|| {
            no_panic(|| match (inner.as_differentiable(), inner.as_linear()) {
                (Some(g), _) => g.vjp(xb.view(), vb.view()).map_err(operator_err),
                (None, Some(a)) => a.adjoint(vb.view()).map_err(operator_err),
                (None, None) => Err(PyNotImplementedError::new_err("no vjp")),
            })
        })?;
        Ok(unbatch(out, form, &self.inner.input_shape())?.into_pyarray(py))
    }
    fn __repr__(&self) -> String {
        format!(
            "Operator({} -> {})",
            shape_str(&self.inner.input_shape()),
            shape_str(&self.inner.output_shape())
        )
    }
}

/// A dense linear forward model `y = A x` (`A` `(m, d)`, read as float32), with its adjoint.
///
/// >>> op = diffinv.Matrix([[1.0, 0.0], [0.0, 2.0]])
/// >>> op([1.0, 1.0])
/// array([1., 2.], dtype=float32)
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct Matrix {
    a: Array2<f32>,
}

#[pymethods]
impl Matrix {
    #[new]
    #[allow(non_snake_case)]
    #[pyo3(signature = (A))]
    fn new(A: &Bound<'_, PyAny>) -> PyResult<(Self, Operator)> {
        let a = matrix(f32_array(A, "A")?, "A", None)?;
        crate::convert::check_finite(&a.clone().into_dyn(), "A")?;
        let op = MatrixOperator::new(a.clone()).map_err(operator_err)?;
        Ok((Self { a }, Operator::of(op)))
    }
    /// The matrix `A`, `(m, d)` float32.
    #[getter]
    #[allow(non_snake_case)]
    fn A<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.a.clone().into_pyarray(py)
    }
    fn __repr__(&self) -> String {
        format!("Matrix(m={}, d={})", self.a.nrows(), self.a.ncols())
    }
}

/// The Navier-Stokes forward model of EnKG (Zheng et al., arXiv 2409.20175, section 5.2):
/// the initial vorticity `w0` `(1, H, W)` is advanced by the 2-D incompressible Navier-Stokes
/// equation in vorticity form on the periodic square (pseudo-spectral, Crank-Nicolson + Heun,
/// Kolmogorov forcing `-4 cos(4 y)`) to time `t_final`, and observed on every `subsample`-th
/// grid point: output `(1, ceil(H/s), ceil(W/s))`.
///
/// `NavierStokes(resolution=128, subsample=2, reynolds=200.0, t_final=1.0, noise_sigma=0.0,
/// input_scale=1.0, precision="f32")`. Calling it is noiseless; `observe(x, seed)` adds
/// `N(0, noise_sigma^2)` noise per observed point (EnKG's noise levels are 0, 1 and 2). A solve
/// that diverges returns a row of NaN. Details: docs/navier-stokes.md.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct NavierStokes {
    ns: Arc<NavierStokes2d>,
}

/// `Arc<NavierStokes2d>` as a forward model (so that `observe` can share the solver).
struct SharedNs(Arc<NavierStokes2d>);

impl ForwardModel for SharedNs {
    fn input_shape(&self) -> Vec<usize> {
        self.0.input_shape()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.0.output_shape()
    }
    fn forward(&self, x: ndarray::ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        self.0.forward(x)
    }
    fn forward_partial(
        &self,
        x: ndarray::ArrayView2<'_, f32>,
    ) -> diffinv_operators::Result<diffinv_operators::BatchOutput> {
        self.0.forward_partial(x)
    }
}

#[pymethods]
impl NavierStokes {
    #[new]
    #[pyo3(signature = (resolution = 128, subsample = 2, reynolds = 200.0, t_final = 1.0, noise_sigma = 0.0, input_scale = 1.0, precision = "f32"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        resolution: usize,
        subsample: usize,
        reynolds: f64,
        t_final: f64,
        noise_sigma: f64,
        input_scale: f64,
        precision: &str,
    ) -> PyResult<(Self, Operator)> {
        let precision = match precision {
            "f32" | "float32" => Precision::F32,
            "f64" | "float64" => Precision::F64,
            other => {
                return Err(PyValueError::new_err(format!(
                    "precision must be \"f32\" or \"f64\", got {other:?}"
                )))
            }
        };
        if !(reynolds.is_finite() && reynolds > 0.0 && t_final.is_finite() && t_final > 0.0) {
            return Err(PyValueError::new_err(format!(
                "reynolds and t_final must be finite and > 0, got {reynolds} and {t_final}"
            )));
        }
        let cfg = NavierStokesConfig {
            resolution,
            solver: NsConfig {
                re: reynolds,
                t_final,
                ..NsConfig::default()
            },
            subsample,
            input_scale,
            precision,
            noise_sigma,
        };
        let ns = py.allow_threads(|| no_panic(|| NavierStokes2d::new(cfg).map_err(operator_err)))?;
        let ns = Arc::new(ns);
        Ok((Self { ns: ns.clone() }, Operator::of(SharedNs(ns))))
    }
    /// The noisy measurement `G(x) + noise_sigma * eps`, `eps ~ N(0, I)` drawn per row from a
    /// ChaCha8 stream keyed by `seed` (the same seed gives the same noise). Shapes as for
    /// calling the model. A diverging solve is a `RuntimeError` here.
    #[pyo3(signature = (x, seed = 0))]
    fn observe<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, seed: u64) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (xb, form) = batch(f32_array(x, "x")?, "x", &self.ns.input_shape())?;
        let ns = self.ns.clone();
        let y = py.allow_threads(|| no_panic(|| ns.observe(xb.view(), seed).map_err(operator_err)))?;
        Ok(unbatch(y, form, &self.ns.output_shape())?.into_pyarray(py))
    }
    /// The noise level `noise_sigma` of `observe`.
    #[getter]
    fn noise_sigma(&self) -> f64 {
        self.ns.config().noise_sigma
    }
    fn __repr__(&self) -> String {
        let c = self.ns.config();
        format!(
            "NavierStokes(resolution={}, subsample={}, reynolds={}, t_final={}, noise_sigma={})",
            c.resolution, c.subsample, c.solver.re, c.solver.t_final, c.noise_sigma
        )
    }
}

/// The black-hole forward model of EnKG (arXiv 2409.20175, section 5.3): an EHT-2017-like
/// array observing M87* at 230 GHz. A `64 x 64` image `(1, 64, 64)` (160 µas field of view)
/// goes to `y = [closure phases | log closure amplitudes | total flux]` (length
/// `n_cphase + n_logcamp + 1`), formed from the visibilities of a direct Fourier transform.
///
/// `EHT(jy_per_unit=0.005, input_shift=0.0, input_scale=1.0)`: the model input `x` is mapped to
/// the image `(x + input_shift) * input_scale` first. `simulate(x, noise=True, seed=0)` draws a
/// synthetic observation (`EhtObservation`) with thermal noise on the visibilities, from which
/// `ClosureLikelihood` builds the closure chi^2. Details: docs/operators-eht.md.
#[pyclass(extends = Operator, frozen, module = "diffinv", name = "EHT")]
pub struct Eht {
    op: Arc<ClosureForward>,
}

#[pymethods]
impl Eht {
    #[new]
    #[pyo3(signature = (jy_per_unit = 0.005, input_shift = 0.0, input_scale = 1.0))]
    fn new(py: Python<'_>, jy_per_unit: f64, input_shift: f32, input_scale: f32) -> PyResult<(Self, Operator)> {
        let cfg = EhtConfig {
            jy_per_unit,
            input_shift,
            input_scale,
            ..EhtConfig::default()
        };
        let op = py.allow_threads(|| no_panic(|| ClosureForward::new(&cfg).map_err(operator_err)))?;
        let op = Arc::new(op);
        Ok((Self { op: op.clone() }, Operator { inner: op }))
    }
    /// Number of closure phases `P` (the first `P` entries of `y`).
    #[getter]
    fn n_cphase(&self) -> usize {
        self.op.n_cphase()
    }
    /// Number of log closure amplitudes `Q` (the next `Q` entries of `y`; the last is the flux).
    #[getter]
    fn n_logcamp(&self) -> usize {
        self.op.n_logcamp()
    }
    /// A synthetic observation of one image `x` (`(4096,)` or `(1, 64, 64)`): visibilities with
    /// thermal noise `sigma (n_re + i n_im)` (when `noise`) drawn from a ChaCha8 stream seeded
    /// with `seed`, and the closure quantities and their propagated uncertainties.
    #[pyo3(signature = (x, noise = true, seed = 0))]
    fn simulate(&self, py: Python<'_>, x: &Bound<'_, PyAny>, noise: bool, seed: u64) -> PyResult<EhtObservation> {
        let (xb, form) = batch(f32_array(x, "x")?, "x", &self.op.input_shape())?;
        if xb.nrows() != 1 || !matches!(form, BatchForm::Single | BatchForm::SingleShaped) {
            return Err(PyValueError::new_err(format!(
                "simulate takes one image ({} or {}), got a batch of {}",
                shape_str(&[self.op.input_dim()]),
                shape_str(&self.op.input_shape()),
                xb.nrows()
            )));
        }
        crate::convert::check_finite(&xb.clone().into_dyn(), "x")?;
        let op = self.op.clone();
        let noise = if noise { VisNoise::Thermal } else { VisNoise::None };
        let data = py.allow_threads(|| no_panic(|| op.simulate(xb.row(0), noise, seed).map_err(operator_err)))?;
        Ok(EhtObservation { data })
    }
    /// The complex visibilities of a batch (image units), `(n, K)` complex64.
    fn visibilities<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<Complex<f32>>>> {
        let (xb, _) = batch(f32_array(x, "x")?, "x", &self.op.input_shape())?;
        let op = self.op.clone();
        let v = py.allow_threads(|| no_panic(|| op.visibilities(xb.view()).map_err(operator_err)))?;
        Ok(v.into_pyarray(py))
    }
    fn __repr__(&self) -> String {
        format!("EHT(n_cphase={}, n_logcamp={})", self.op.n_cphase(), self.op.n_logcamp())
    }
}

/// A synthetic EHT observation (from `EHT.simulate`): noisy visibilities and the closure data
/// derived from them. `measurement` is the vector `y = [cphase | logcamp | flux]` in the layout
/// of the `EHT` model; `ClosureLikelihood(observation)` is its likelihood.
#[pyclass(frozen, module = "diffinv")]
pub struct EhtObservation {
    pub(crate) data: EhtData,
}

fn f64_vec<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyArray1<f64>> {
    Array1::from(v.to_vec()).into_pyarray(py)
}

#[pymethods]
impl EhtObservation {
    /// Observed closure phases (radians), `(P,)`.
    #[getter]
    fn cphase<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_vec(py, &self.data.cphase)
    }
    /// Their uncertainties (radians), `(P,)`.
    #[getter]
    fn cphase_sigma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_vec(py, &self.data.cphase_sigma)
    }
    /// Observed log closure amplitudes, `(Q,)`.
    #[getter]
    fn logcamp<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_vec(py, &self.data.logcamp)
    }
    /// Their uncertainties, `(Q,)`.
    #[getter]
    fn logcamp_sigma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_vec(py, &self.data.logcamp_sigma)
    }
    /// Total flux of the true image (image units), known without noise.
    #[getter]
    fn flux(&self) -> f64 {
        self.data.flux
    }
    /// Observed complex visibilities (image units), `(K,)` complex128.
    #[getter]
    fn vis<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<Complex<f64>>> {
        Array1::from(self.data.vis.clone()).into_pyarray(py)
    }
    /// Per-component thermal noise of the visibilities, `(K,)`.
    #[getter]
    fn vis_sigma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_vec(py, &self.data.vis_sigma)
    }
    /// `y = [cphase | logcamp | flux]`, float32, in the layout of `EHT`'s output.
    #[getter]
    fn measurement<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.data.measurement().into_pyarray(py)
    }
    fn __repr__(&self) -> String {
        format!(
            "EhtObservation(P={}, Q={}, flux={:.4})",
            self.data.cphase.len(),
            self.data.logcamp.len(),
            self.data.flux
        )
    }
}

/// `(C, H, W)` from a user's shape.
fn chw(shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    match shape {
        [c, h, w] => Ok((*c, *h, *w)),
        [h, w] => Ok((1, *h, *w)),
        _ => Err(PyValueError::new_err(format!(
            "shape must be (C, H, W) or (H, W), got {}",
            shape_str(shape)
        ))),
    }
}

/// Inpainting `y = m ⊙ x` of `(C, H, W)` images (the measurement keeps the full shape, zeros at
/// the missing pixels; the model is linear, `A^T = A`).
///
/// `Inpainting(shape, kind="box", fraction=0.7, seed=0, mask=None)`:
/// - `kind="box"`: a missing `H/2 x W/2` box at a random position (DPS/EnKG geometry),
/// - `kind="random"`: exactly `floor(fraction * H * W)` missing pixels,
/// - `mask`: an explicit `(H, W)` array of 0 (missing) and 1 (kept), overriding `kind`.
///
/// The random draws come from `seed`. Details: docs/operators-imaging.md.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct Inpainting {
    mask: Vec<f32>,
    hw: (usize, usize),
}

#[pymethods]
impl Inpainting {
    #[new]
    #[pyo3(signature = (shape, kind = "box", fraction = 0.7, seed = 0, mask = None))]
    fn new(shape: Vec<usize>, kind: &str, fraction: f64, seed: u64, mask: Option<&Bound<'_, PyAny>>) -> PyResult<(Self, Operator)> {
        let (c, h, w) = chw(&shape)?;
        let op = match (mask, kind) {
            (Some(m), _) => {
                let m = matrix(f32_array(m, "mask")?, "mask", Some(w))?;
                if m.nrows() != h {
                    return Err(PyValueError::new_err(format!(
                        "mask must have shape ({h}, {w}), got {}",
                        shape_str(m.shape())
                    )));
                }
                RsInpainting::from_mask(c, h, w, m.iter().copied().collect())
            }
            (None, "box") => RsInpainting::box_seeded(c, h, w, seed),
            (None, "random") => RsInpainting::random(c, h, w, fraction, seed),
            (None, other) => {
                return Err(PyValueError::new_err(format!(
                    "kind must be \"box\" or \"random\", got {other:?}"
                )))
            }
        }
        .map_err(operator_err)?;
        let mask = op.mask().to_vec();
        Ok((Self { mask, hw: (h, w) }, Operator::of(op)))
    }
    /// The mask `(H, W)`: 1 where a pixel is observed, 0 where it is missing.
    #[getter]
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let a = Array2::from_shape_vec(self.hw, self.mask.clone())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py))
    }
}

/// Super-resolution: each channel of a `(C, H, W)` image downsampled by an integer `factor`,
/// `y_c = R_H x_c R_W^T` (linear).
///
/// `SuperResolution(shape, factor=4, method="bicubic")`; `method="bicubic"` is antialiased
/// bicubic (Keys, a = -0.5; torchvision's `antialias=True`), `"average"` average pooling.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct SuperResolution;

#[pymethods]
impl SuperResolution {
    #[new]
    #[pyo3(signature = (shape, factor = 4, method = "bicubic"))]
    fn new(shape: Vec<usize>, factor: usize, method: &str) -> PyResult<(Self, Operator)> {
        let (c, h, w) = chw(&shape)?;
        let m = match method {
            "bicubic" => Downsampling::Bicubic,
            "average" => Downsampling::AveragePool,
            other => {
                return Err(PyValueError::new_err(format!(
                    "method must be \"bicubic\" or \"average\", got {other:?}"
                )))
            }
        };
        let op = RsSr::new(c, h, w, factor, m).map_err(operator_err)?;
        Ok((Self, Operator::of(op)))
    }
}

/// Deblurring: `y_c = k * reflect_pad(x_c)` per channel of a `(C, H, W)` image (linear).
///
/// `Blur(shape, kind="gaussian", kernel_size=61, std=3.0, intensity=0.5, seed=0, kernel=None)`:
/// `kind="gaussian"` (a Gaussian kernel of standard deviation `std`), `"motion"` (a random
/// motion kernel of `intensity`, drawn from `seed`), or an explicit `kernel` `(k, k)`.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct Blur {
    kernel: Array2<f32>,
}

#[pymethods]
impl Blur {
    #[new]
    #[pyo3(signature = (shape, kind = "gaussian", kernel_size = 61, std = 3.0, intensity = 0.5, seed = 0, kernel = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        shape: Vec<usize>,
        kind: &str,
        kernel_size: usize,
        std: f64,
        intensity: f64,
        seed: u64,
        kernel: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Self, Operator)> {
        let (c, h, w) = chw(&shape)?;
        let op = match (kernel, kind) {
            (Some(k), _) => RsBlur::new(c, h, w, matrix(f32_array(k, "kernel")?, "kernel", None)?),
            (None, "gaussian") => RsBlur::gaussian(c, h, w, kernel_size, std),
            (None, "motion") => RsBlur::motion(c, h, w, kernel_size, intensity, seed),
            (None, other) => {
                return Err(PyValueError::new_err(format!(
                    "kind must be \"gaussian\" or \"motion\", got {other:?}"
                )))
            }
        }
        .map_err(operator_err)?;
        let kernel = op.kernel().clone();
        Ok((Self { kernel }, Operator::of(op)))
    }
    /// The blur kernel `(k, k)`.
    #[getter]
    fn kernel<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.kernel.clone().into_pyarray(py)
    }
}

/// Fourier phase retrieval `y = |F P x|` of a `(C, H, W)` image zero-padded by
/// `floor(oversample / 8 * H)` on each side (the DPS/EnKG code's padding). Not linear, but
/// differentiable.
///
/// `PhaseRetrieval(shape, oversample=2.0)`.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
pub struct PhaseRetrieval;

#[pymethods]
impl PhaseRetrieval {
    #[new]
    #[pyo3(signature = (shape, oversample = 2.0))]
    fn new(shape: Vec<usize>, oversample: f64) -> PyResult<(Self, Operator)> {
        let (c, h, w) = chw(&shape)?;
        let op = RsPhase::dps(c, h, w, oversample).map_err(operator_err)?;
        Ok((Self, Operator::of(op)))
    }
}

/// High dynamic range reconstruction `y = clip(alpha x, -1, 1)` of `(C, H, W)` images in
/// `[-1, 1]` (MO, arXiv 2412.03941). Not linear, but differentiable.
///
/// `HDR(shape, alpha=2.0)`.
#[pyclass(extends = Operator, frozen, module = "diffinv")]
#[allow(clippy::upper_case_acronyms)]
pub struct HDR;

#[pymethods]
impl HDR {
    #[new]
    #[pyo3(signature = (shape, alpha = 2.0))]
    fn new(shape: Vec<usize>, alpha: f32) -> PyResult<(Self, Operator)> {
        let (c, h, w) = chw(&shape)?;
        let op = Hdr::new(c, h, w, alpha).map_err(operator_err)?;
        Ok((Self, Operator::of(op)))
    }
}
