//! Start-up validation and prior loading. Every check here runs before any compute and fails
//! with one line ([`SetupError`]'s `Display`).

use std::path::{Path, PathBuf};


use diffinv_priors::neural::{EdmNetwork, NeuralDenoiser, TrainConfig};

use serde::Deserialize;
use tch::Device;

use crate::methods::METHODS;

/// What can be wrong with a request, found before any compute.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A method name that is not one of [`METHODS`].
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

/// Check every method name against [`METHODS`].
pub fn validate_methods(names: &[String]) -> Result<(), SetupError> {
    for n in names {
        if !METHODS.contains(&n.as_str()) {
            return Err(SetupError::UnknownMethod {
                name: n.clone(),
                known: METHODS.join(", "),
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Shipped {
    #[serde(default)]
    normalization: Option<String>,
    train: TrainConfig,
}

/// A prior folder's description, read without touching libtorch: the layout of
/// `fixtures/priors/NAME/` (`config.toml`, `ema.safetensors`, `normalization.json`).
#[derive(Debug, Clone)]
pub struct PriorSpec {
    /// The folder.
    pub dir: PathBuf,
    /// The training config (U-Net and `sigma_data`).
    pub train: TrainConfig,
    /// `x_train = (x - shift) / scale`.
    pub shift: f64,
    /// See [`shift`](Self::shift).
    pub scale: f64,
}

impl PriorSpec {
    /// `[C, H, W]` of the prior's images.
    pub fn shape(&self) -> Vec<usize> {
        let u = &self.train.unet;
        vec![
            u.img_channels as usize,
            u.img_resolution as usize,
            u.img_resolution as usize,
        ]
    }
    /// Read and check `dir`: the three files exist, the config parses, and the normalisation
    /// is known. `normalization.json` (written by the trainer) gives shift and scale; without
    /// it, `normalization = "unit"` means shift 0.5, scale 0.5 (`[0, 1] -> [-1, 1]`).
    pub fn read(dir: &Path) -> Result<Self, SetupError> {
        let config = dir.join("config.toml");
        let weights = dir.join("ema.safetensors");
        for p in [&config, &weights] {
            if !p.is_file() {
                return Err(SetupError::MissingPrior(p.clone()));
            }
        }
        let bad = |path: &Path, reason: String| SetupError::InvalidPrior {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&config).map_err(|e| bad(&config, e.to_string()))?;
        let shipped: Shipped = toml::from_str(&text).map_err(|e| bad(&config, e.to_string()))?;
        let norm = dir.join("normalization.json");
        let (shift, scale) = if norm.is_file() {
            let text = std::fs::read_to_string(&norm).map_err(|e| bad(&norm, e.to_string()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(&norm, e.to_string()))?;
            match (v["shift"].as_f64(), v["scale"].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => (a, b),
                _ => {
                    return Err(bad(
                        &norm,
                        "needs finite `shift` and positive `scale`".into(),
                    ))
                }
            }
        } else {
            match shipped.normalization.as_deref() {
                Some("unit") | None => (0.5, 0.5),
                Some(other) => {
                    return Err(bad(
                        &norm,
                        format!("missing, and normalization = {other:?} needs it"),
                    ))
                }
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            train: shipped.train,
            shift,
            scale,
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
        let weights = self.dir.join("ema.safetensors");
        let net = EdmNetwork::load(
            &self.train.unet,
            self.train.sigma_data,
            Device::Cpu,
            &weights,
        )
        .map_err(|e| SetupError::InvalidPrior {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
        NeuralDenoiser::new(Box::new(net), batch).map_err(|e| SetupError::InvalidPrior {
            path: weights,
            reason: e.to_string(),
        })
    }
}

