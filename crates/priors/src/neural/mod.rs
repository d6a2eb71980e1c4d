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
pub mod folder;
pub mod torchscript;
pub mod train;
pub mod unet;

pub use device::DeviceChoice;
pub use edm::{EdmNetwork, NeuralDenoiser, TorchDenoise};
pub use folder::PriorFolder;
pub use torchscript::{load_torchscript, ScriptedEdm, ScriptedVpEpsilon};
pub use train::{EdmLoss, TrainConfig, Trainer};
pub use unet::{NoiseEmbedding, UNet, UNetConfig};

use crate::PriorError;

/// libtorch's random generator is process-global: building a network (whose initialisation draws
/// from it) under this lock, right after seeding it, keeps concurrent constructions in one
/// process from interleaving their draws. Training draws never use it (see [`train`]).
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `f` with libtorch's global generator seeded with `seed` and no other diffinv
/// construction in between.
pub(crate) fn with_torch_seed<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let _guard = TORCH_RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::manual_seed(seed as i64);
    f()
}

/// Convert a tch error into the crate's error type.
pub(crate) fn torch_err(what: &str, e: tch::TchError) -> PriorError {
    PriorError::Backend(format!("{what}: {e}"))
}
