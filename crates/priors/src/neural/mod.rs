//! Neural diffusion priors on libtorch (tch 0.24), behind the `torch` feature.
//!
//! - [`unet`]: a U-Net of the DDPM++/ADM family (residual blocks with group normalisation,
//!   positional or Fourier noise embedding, self-attention at chosen resolutions),
//! - [`edm`]: the EDM preconditioning of Karras et al. (2022, Table 1) around it, and
//!   [`NeuralDenoiser`], which implements [`crate::Denoiser`] (batched inference under `no_grad`,
//!   the vector-Jacobian product through autograd),
//! - [`torchscript`]: pre-trained priors exported from PyTorch to TorchScript, with the EDM
//!   signature `D(x, sigma)` or as epsilon-prediction VP/DDPM models through an adapter,
//! - [`train`]: the EDM training loss, Adam with warm-up and gradient clipping, an EMA of the
//!   weights, and checkpoints that resume bit-identically,
//! - [`device`]: CUDA when available, else CPU, overridable.
//!
//! Tensors never leave this module: the [`crate::Denoiser`] interface speaks `ndarray`.

pub mod device;
pub mod edm;
pub mod torchscript;
pub mod train;
pub mod unet;

pub use device::DeviceChoice;
pub use edm::{EdmNetwork, NeuralDenoiser, TorchDenoise};
pub use torchscript::{ScriptedEdm, ScriptedVpEpsilon};
pub use train::{EdmLoss, TrainConfig, Trainer};
pub use unet::{NoiseEmbedding, UNet, UNetConfig};

use crate::PriorError;

/// Convert a tch error into the crate's error type.
pub(crate) fn torch_err(what: &str, e: tch::TchError) -> PriorError {
    PriorError::Backend(format!("{what}: {e}"))
}
