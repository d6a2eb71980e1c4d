//! A trained prior's folder, as `cargo xtask train` writes it and as `fixtures/priors/NAME/`
//! ships: `config.toml` (the training configuration: U-Net and `sigma_data`), `ema.safetensors`
//! (the exponential-moving-average weights) and `normalization.json` (the map between physical
//! units and the network's training space).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::Device;

use super::{EdmNetwork, NeuralDenoiser, TrainConfig};
use crate::{PriorError, Result};

#[derive(Deserialize)]
struct Shipped {
    #[serde(default)]
    normalization: Option<String>,
    train: TrainConfig,
}

/// A prior folder's description, read and checked without loading the network.
///
/// The network was trained on `x_train = (x - shift) / scale`: a sample of the prior in
/// physical units is `x = shift + scale * x_train`.
#[derive(Debug, Clone)]
pub struct PriorFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The training config (U-Net and `sigma_data`).
    pub train: TrainConfig,
    /// `x_train = (x - shift) / scale`.
    pub shift: f64,
    /// See [`shift`](Self::shift).
    pub scale: f64,
}

fn load_error(path: &Path, reason: impl Into<String>) -> PriorError {
    PriorError::Load {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl PriorFolder {
    /// The files that define a trained prior (the rest of a folder, figures and logs, does not
    /// change what it denoises): what a cache of results computed with the prior identifies it by.
    pub const DEFINING_FILES: [&'static str; 3] = ["config.toml", "ema.safetensors", "normalization.json"];
    /// `[C, H, W]` of the prior's images.
    pub fn shape(&self) -> Vec<usize> {
        let u = &self.train.unet;
        vec![
            u.img_channels as usize,
            u.img_resolution as usize,
            u.img_resolution as usize,
        ]
    }
    /// Read and check `dir`: `config.toml` and `ema.safetensors` exist, the config parses, and
    /// the normalisation is known. `normalization.json` (written by the trainer) gives shift
    /// and scale; without it, `normalization = "unit"` in the config (or nothing) means shift
    /// 0.5, scale 0.5 (`[0, 1] -> [-1, 1]`). Errors are [`PriorError::Load`] naming the file.
    pub fn read(dir: &Path) -> Result<Self> {
        let config = dir.join("config.toml");
        let weights = dir.join("ema.safetensors");
        for p in [&config, &weights] {
            if !p.is_file() {
                return Err(load_error(
                    p,
                    "missing (train a prior with `cargo xtask train CONFIG`, or give the folder of one)",
                ));
            }
        }
        let text = std::fs::read_to_string(&config).map_err(|e| load_error(&config, e.to_string()))?;
        let shipped: Shipped =
            toml::from_str(&text).map_err(|e| load_error(&config, e.to_string().replace('\n', " ")))?;
        let norm = dir.join("normalization.json");
        let (shift, scale) = if norm.is_file() {
            let text = std::fs::read_to_string(&norm).map_err(|e| load_error(&norm, e.to_string()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| load_error(&norm, e.to_string()))?;
            match (v["shift"].as_f64(), v["scale"].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => (a, b),
                _ => return Err(load_error(&norm, "needs a finite `shift` and a positive `scale`")),
            }
        } else {
            match shipped.normalization.as_deref() {
                Some("unit") | None => (0.5, 0.5),
                Some(other) => {
                    return Err(load_error(
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
    /// Load the EMA weights on `device` as a batched denoiser (`batch` images per call).
    pub fn load(&self, batch: usize, device: Device) -> Result<NeuralDenoiser> {
        let weights = self.dir.join("ema.safetensors");
        let net = EdmNetwork::load(&self.train.unet, self.train.sigma_data, device, &weights)
            .map_err(|e| load_error(&weights, e.to_string()))?;
        NeuralDenoiser::new(Box::new(net), batch).map_err(|e| load_error(&weights, e.to_string()))
    }
}
