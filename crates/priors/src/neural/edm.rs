//! EDM preconditioning (Karras et al. 2022, Table 1) and the bridge from tch networks to the
//! [`crate::Denoiser`] trait.
//!
//! `D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))` with
//! `c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)`,
//! `c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)`,
//! `c_in = 1 / sqrt(sigma^2 + sigma_data^2)`, `c_noise = ln(sigma) / 4`.

use std::path::Path;
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use tch::{nn, Device, Kind, Tensor};

use super::torch_err;
use super::unet::{UNet, UNetConfig};
use crate::denoiser::{check_input, check_sigma};
use crate::{Denoiser, PriorError, Result};

/// A network that maps `(x, sigma)` to the denoised `D(x; sigma)` on tensors.
///
/// `x` has shape `(B, C, H, W)`, `sigma` shape `(B,)`, both `f32` on [`TorchDenoise::device`].
pub trait TorchDenoise: Send {
    /// `D(x; sigma)`, differentiable with respect to `x` (autograd).
    fn denoise_tensor(&self, x: &Tensor, sigma: &Tensor) -> Result<Tensor>;
    /// Image shape `(C, H, W)`.
    fn image_shape(&self) -> [i64; 3];
    /// The device the network lives on.
    fn device(&self) -> Device;
}

/// The EDM-preconditioned U-Net with its variables.
#[derive(Debug)]
pub struct EdmNetwork {
    /// The variables (weights and buffers).
    pub vs: nn::VarStore,
    /// The raw network `F`.
    pub net: UNet,
    /// `sigma_data`, the standard deviation of the (normalised) data.
    pub sigma_data: f64,
}

impl EdmNetwork {
    /// A freshly initialised network on `device`.
    pub fn new(cfg: &UNetConfig, sigma_data: f64, device: Device) -> Result<Self> {
        if !(sigma_data > 0.0 && sigma_data.is_finite()) {
            return Err(PriorError::InvalidParameter { name: "sigma_data", reason: format!("{sigma_data} is not positive") });
        }
        let vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), cfg)?;
        Ok(Self { vs, net, sigma_data })
    }

    /// Load weights saved by [`EdmNetwork::save`] (safetensors) into a network built from `cfg`.
    pub fn load(cfg: &UNetConfig, sigma_data: f64, device: Device, weights: &Path) -> Result<Self> {
        let mut me = Self::new(cfg, sigma_data, device)?;
        me.vs.load(weights).map_err(|e| torch_err(&format!("loading {}", weights.display()), e))?;
        Ok(me)
    }

    /// Save the weights as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.vs.save(path).map_err(|e| torch_err(&format!("saving {}", path.display()), e))
    }

    /// `D(x; sigma)` with the EDM preconditioning; `train` enables dropout.
    pub fn precond(&self, x: &Tensor, sigma: &Tensor, train: bool) -> Tensor {
        let sd = self.sigma_data;
        let s = sigma.to_kind(Kind::Float).reshape([-1, 1, 1, 1]);
        let s2 = &s * &s;
        let denom = (&s2 + sd * sd).sqrt();
        let c_skip = (sd * sd) / (&s2 + sd * sd);
        let c_out = &s * sd / &denom;
        let c_in = denom.reciprocal();
        let c_noise = sigma.to_kind(Kind::Float).log() / 4.0;
        let f = self.net.forward(&(x * &c_in), &c_noise, train);
        c_skip * x + c_out * f
    }
}

impl TorchDenoise for EdmNetwork {
    fn denoise_tensor(&self, x: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        Ok(self.precond(x, sigma, false))
    }
    fn image_shape(&self) -> [i64; 3] {
        let c = self.net.config();
        [c.img_channels, c.img_resolution, c.img_resolution]
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
}

/// Any [`TorchDenoise`] as a [`Denoiser`] on `ndarray` batches: rows of length `C H W` are
/// viewed as images, processed in chunks of `batch_size` on the network's device.
///
/// Inference runs under `no_grad`; [`Denoiser::vjp`] computes `J_D(x)^T v` by reverse-mode
/// autograd through the network (one forward and one backward pass per chunk).
/// A mutex makes the (not thread-safe) libtorch module usable from the parallel solvers; the
/// network itself uses libtorch's own intra-op threads.
pub struct NeuralDenoiser {
    inner: Mutex<Box<dyn TorchDenoise>>,
    shape: [i64; 3],
    device: Device,
    batch_size: usize,
}

impl std::fmt::Debug for NeuralDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralDenoiser").field("shape", &self.shape).field("device", &self.device).finish()
    }
}

impl NeuralDenoiser {
    /// Wrap a network; `batch_size` rows go through it at once.
    pub fn new(net: Box<dyn TorchDenoise>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(PriorError::InvalidParameter { name: "batch_size", reason: "must be positive".into() });
        }
        let shape = net.image_shape();
        let device = net.device();
        Ok(Self { inner: Mutex::new(net), shape, device, batch_size })
    }

    /// Image shape `(C, H, W)`.
    pub fn image_shape(&self) -> [i64; 3] {
        self.shape
    }

    fn to_tensor(&self, x: ArrayView2<'_, f32>) -> Tensor {
        let rows = x.nrows() as i64;
        let data: Vec<f32> = x.iter().copied().collect();
        Tensor::from_slice(&data).reshape([rows, self.shape[0], self.shape[1], self.shape[2]]).to_device(self.device)
    }

    fn to_array(&self, t: &Tensor, rows: usize) -> Result<Array2<f32>> {
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().reshape([-1]);
        let v: Vec<f32> = Vec::<f32>::try_from(&t).map_err(|e| torch_err("reading a tensor", e))?;
        Array2::from_shape_vec((rows, self.dim()), v).map_err(|e| PriorError::Backend(e.to_string()))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn TorchDenoise>>> {
        self.inner.lock().map_err(|_| PriorError::Backend("network mutex poisoned by an earlier panic".into()))
    }
}

impl Denoiser for NeuralDenoiser {
    fn dim(&self) -> usize {
        (self.shape[0] * self.shape[1] * self.shape[2]) as usize
    }

    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "denoiser input")?;
        check_sigma(sigma)?;
        let net = self.lock()?;
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        let _guard = tch::no_grad_guard();
        for start in (0..x.nrows()).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(x.nrows());
            let chunk = x.slice(ndarray::s![start..end, ..]);
            let xt = self.to_tensor(chunk);
            let st = Tensor::full([(end - start) as i64], f64::from(sigma), (Kind::Float, self.device));
            let d = net.denoise_tensor(&xt, &st)?;
            out.slice_mut(ndarray::s![start..end, ..]).assign(&self.to_array(&d, end - start)?);
        }
        Ok(out)
    }

    fn vjp(&self, x: ArrayView2<'_, f32>, sigma: f32, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "vjp input")?;
        check_input(v, self.dim(), "vjp cotangent")?;
        if v.nrows() != x.nrows() {
            return Err(PriorError::Shape { what: "vjp cotangent rows", expected: x.nrows(), got: v.nrows() });
        }
        check_sigma(sigma)?;
        let net = self.lock()?;
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        for start in (0..x.nrows()).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(x.nrows());
            let xt = self.to_tensor(x.slice(ndarray::s![start..end, ..])).set_requires_grad(true);
            let vt = self.to_tensor(v.slice(ndarray::s![start..end, ..]));
            let st = Tensor::full([(end - start) as i64], f64::from(sigma), (Kind::Float, self.device));
            let d = net.denoise_tensor(&xt, &st)?;
            let g = Tensor::f_run_backward(&[(&d * &vt).sum(Kind::Float)], &[&xt], false, false)
                .map_err(|e| torch_err("vjp backward", e))?;
            let g = g.into_iter().next().ok_or_else(|| PriorError::Backend("vjp: no gradient".into()))?;
            out.slice_mut(ndarray::s![start..end, ..]).assign(&self.to_array(&g, end - start)?);
        }
        Ok(out)
    }
}
