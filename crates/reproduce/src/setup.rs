//! Start-up validation and prior loading. Every check here runs before any compute and fails
//! with one line ([`SetupError`]'s `Display`).

use std::path::{Path, PathBuf};


use diffinv_priors::neural::{DeviceChoice, NeuralDenoiser, PriorFolder};
use tch::Device;


/// What can be wrong with a request, found before any compute.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A method name that is not a row of the table's preset.
    #[error("unknown method {name:?}; known: {known}")]
    UnknownMethod {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A prior file that does not exist.
    #[error(
        "missing prior file {0} (train it with `cargo xtask train CONFIG`, or pass --prior DIR)"
    )]
    MissingPrior(PathBuf),
    /// A prior whose image shape differs from the operator's input.
    #[error("shape mismatch: the prior in {dir} makes {prior:?} images but the {operator} operator takes {input:?}")]
    ShapeMismatch {
        /// Prior folder.
        dir: PathBuf,
        /// `[C, H, W]` of the prior.
        prior: Vec<usize>,
        /// Operator name.
        operator: String,
        /// The operator's input shape.
        input: Vec<usize>,
    },
    /// An unreadable or invalid prior config, normalisation or weights file.
    #[error("invalid prior {path}: {reason}")]
    InvalidPrior {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Load libtorch's CUDA backend when the libtorch is a CUDA build. The linker drops
/// `libtorch_cuda.so` from the binary (nothing references its symbols; it registers itself when
/// loaded), and without it libtorch reports no CUDA device even on a GPU machine. Opening it by
/// name finds it through the same library path as `libtorch_cpu.so`; on a CPU-only libtorch the
/// file does not exist and nothing changes. Returns whether the backend is there.
pub fn load_cuda_backend() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        if !tch::utils::has_cuda() {
            // SAFETY: dlopen with a constant NUL-terminated name; the handle is kept for the
            // life of the process (never closed), as libtorch's own libraries are.
            let _ = unsafe { libc::dlopen(c"libtorch_cuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        }
        tch::utils::has_cuda()
    })
}

/// Resolve the user's device choice, with libtorch's CUDA backend loaded first unless the choice
/// is the CPU ([`load_cuda_backend`]).
pub fn resolve_device(choice: DeviceChoice) -> Result<Device, diffinv_priors::PriorError> {
    if choice != DeviceChoice::Cpu {
        load_cuda_backend();
    }
    choice.resolve()
}

/// A prior folder (`diffinv_priors::neural::PriorFolder`: `config.toml`, `ema.safetensors`,
/// `normalization.json`) with the table runner's start-up errors.
#[derive(Debug, Clone)]
pub struct PriorSpec(pub PriorFolder);

impl std::ops::Deref for PriorSpec {
    type Target = PriorFolder;
    fn deref(&self) -> &PriorFolder {
        &self.0
    }
}

impl PriorSpec {
    /// Read and check `dir` ([`PriorFolder::read`]): a missing file is
    /// [`SetupError::MissingPrior`], anything else wrong [`SetupError::InvalidPrior`].
    pub fn read(dir: &Path) -> Result<Self, SetupError> {
        for p in [dir.join("config.toml"), dir.join("ema.safetensors")] {
            if !p.is_file() {
                return Err(SetupError::MissingPrior(p));
            }
        }
        PriorFolder::read(dir)
            .map(Self)
            .map_err(|e| SetupError::InvalidPrior {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })
    }
    /// Check the prior's image shape against the operator's input shape.
    pub fn check_operator(&self, operator: &str, input: &[usize]) -> Result<(), SetupError> {
        if self.shape() != input {
            return Err(SetupError::ShapeMismatch {
                dir: self.dir.clone(),
                prior: self.shape(),
                operator: operator.into(),
                input: input.to_vec(),
            });
        }
        Ok(())
    }
    /// Load the EMA weights on the CPU as a batched denoiser (`batch` images per call).
    pub fn load(&self, batch: usize) -> Result<NeuralDenoiser, SetupError> {
        self.load_on(batch, Device::Cpu)
    }
    /// Load the EMA weights on `device` as a batched denoiser (`batch` images per call).
    pub fn load_on(&self, batch: usize, device: Device) -> Result<NeuralDenoiser, SetupError> {
        self.0
            .load(batch, device)
            .map_err(|e| SetupError::InvalidPrior {
                path: self.dir.join("ema.safetensors"),
                reason: e.to_string(),
            })
    }
}


#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Loading the CUDA backend is harmless where there is no GPU (or no CUDA libtorch): `auto`
    /// still resolves, to the CPU when libtorch sees no device, and `cpu` never loads it.
    #[test]
    fn the_cuda_backend_loads_harmlessly() {
        assert_eq!(resolve_device(DeviceChoice::Cpu).unwrap(), Device::Cpu);
        let cuda = load_cuda_backend();
        assert_eq!(cuda, tch::Cuda::is_available());
        let auto = resolve_device(DeviceChoice::Auto).unwrap();
        assert_eq!(auto == Device::Cpu, !cuda);
    }
}
