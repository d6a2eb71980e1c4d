//! Training an EDM denoiser (Karras et al. 2022, section 5 and Table 1).
//!
//! - Loss: `E_{sigma, y, n} lambda(sigma) ||D(y + sigma n; sigma) - y||^2` with
//!   `ln sigma ~ N(P_mean, P_std^2)` (`P_mean = -1.2`, `P_std = 1.2`) and the weighting
//!   `lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`, which makes the effective
//!   target of the raw network unit-variance at every noise level.
//! - Optimiser: Adam (Kingma & Ba 2015; `beta = (0.9, 0.999)`, `eps = 1e-8`) with a linear
//!   learning-rate warm-up over `warmup_steps`, and the gradient clipped to a global L2 norm
//!   `grad_clip` before each step.
//! - EMA of the weights: `theta_ema <- beta theta_ema + (1 - beta) theta` with
//!   `beta = 0.5^(1 / h)` and half-life `h = min(ema_halflife_steps, ema_rampup * step)` steps
//!   (EDM's ramp-up, so early averages are not dominated by the random initialisation).
//! - Randomness (batch indices, sigma, noise) is drawn in Rust from the stream
//!   `(seed, TRAIN, step)`, a function of `(seed, step)` only and independent of libtorch's global
//!   generator, and Adam's moments are part of the checkpoint, so a run resumed from a checkpoint
//!   continues exactly as the uninterrupted run would have (on the CPU at a fixed intra-op thread
//!   count; CUDA kernels may be non-deterministic). The initial weights come from libtorch's
//!   generator seeded with `seed`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use rand::Rng as _;

use super::device::DeviceChoice;
use crate::rng::{fill_normal, stream, tags};
use super::edm::EdmNetwork;
use super::torch_err;
use super::unet::UNetConfig;
use crate::{PriorError, Result};

/// The EDM loss parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdmLoss {
    /// Mean of `ln sigma`.
    pub p_mean: f64,
    /// Standard deviation of `ln sigma`.
    pub p_std: f64,
}

impl Default for EdmLoss {
    fn default() -> Self {
        Self { p_mean: -1.2, p_std: 1.2 }
    }
}

impl EdmLoss {
    /// The weighted loss on a batch `y (B, C, H, W)`, averaged over the batch and pixels, with
    /// `ln sigma = P_mean + P_std z` for the standard normals `z (B,)` and noise `sigma n` for the
    /// standard normals `n` (shape of `y`), both drawn by the caller.
    pub fn loss(&self, net: &EdmNetwork, y: &Tensor, z: &Tensor, n: &Tensor, train: bool) -> Tensor {
        let sd = net.sigma_data;
        let sigma = (z.to_kind(Kind::Float) * self.p_std + self.p_mean).exp();
        let s4 = sigma.reshape([-1, 1, 1, 1]);
        let weight = (&s4 * &s4 + sd * sd) / (&s4 * sd).square();
        let n = n * &s4;
        let d = net.precond(&(y + n), &sigma, train);
        (weight * (d - y).square()).mean(Kind::Float)
    }
}

/// A training run: data, network, optimiser and schedule, read from TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The network.
    pub unet: UNetConfig,
    /// `sigma_data` of the EDM preconditioning (the data's standard deviation after normalisation).
    pub sigma_data: f64,
    /// Loss parameters.
    pub loss: EdmLoss,
    /// Optimiser steps.
    pub steps: u64,
    /// Images per step.
    pub batch_size: i64,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// EMA half-life in steps.
    pub ema_halflife_steps: f64,
    /// EMA ramp-up ratio (0 disables the ramp-up).
    pub ema_rampup: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Device.
    pub device: DeviceChoice,
    /// Hand the network its batch in channels-last (NHWC) strides, so that libtorch's
    /// convolutions take their channels-last kernels (measured by `diffinv-train --profile`;
    /// default off). The numbers are the same up to the kernels' rounding.
    pub channels_last: bool,
    /// Data augmentation for periodic fields: each training image is rolled (circularly shifted)
    /// by a random multiple of `random_roll[0]` pixels along its rows axis (height) and of
    /// `random_roll[1]` along its columns axis (width); 0 leaves that axis alone (default
    /// `[0, 0]`: no augmentation). Valid when the data's distribution is invariant under those
    /// shifts: Navier-Stokes vorticity on the torus with the Kolmogorov forcing `-4 cos(4 y)`
    /// (`y` = columns) is invariant under any shift in `x` and under shifts of a quarter period
    /// in `y`, i.e. `[1, W / 4]`. The shifts are drawn after the step's other draws, so a run
    /// without augmentation draws what it drew before this option existed.
    pub random_roll: [i64; 2],
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            unet: UNetConfig::default(),
            sigma_data: 0.5,
            loss: EdmLoss::default(),
            steps: 2000,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 100,
            grad_clip: 1.0,
            ema_halflife_steps: 200.0,
            ema_rampup: 0.1,
            checkpoint_every: 200,
            seed: 0,
            device: DeviceChoice::Auto,
            channels_last: false,
            random_roll: [0, 0],
        }
    }
}

impl TrainConfig {
    /// Check the configuration.
    pub fn validate(&self) -> Result<()> {
        self.unet.validate()?;
        let bad = |name: &'static str, reason: String| Err(PriorError::InvalidParameter { name, reason });
        if self.batch_size < 1 || self.steps < 1 || self.checkpoint_every < 1 {
            return bad("train", "steps, batch_size and checkpoint_every must be positive".into());
        }
        if !(self.lr > 0.0 && self.sigma_data > 0.0 && self.ema_halflife_steps > 0.0 && self.grad_clip >= 0.0) {
            return bad("train", "lr, sigma_data and ema_halflife_steps must be positive, grad_clip >= 0".into());
        }
        let r = self.unet.img_resolution;
        if self.random_roll.iter().any(|&k| k < 0 || (k > 0 && r % k != 0)) {
            return bad("random_roll", format!("each entry must be 0 or a positive divisor of img_resolution = {r}, got {:?}", self.random_roll));
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then constant.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            self.lr
        } else {
            self.lr * ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        }
    }

    /// EMA decay after `step` steps (1-based count).
    pub fn ema_beta(&self, step: u64) -> f64 {
        let mut h = self.ema_halflife_steps;
        if self.ema_rampup > 0.0 {
            h = h.min(self.ema_rampup * step as f64);
        }
        if h <= 0.0 {
            0.0
        } else {
            0.5f64.powf(1.0 / h)
        }
    }
}

/// The training state: network, EMA copy, Adam moments, step count.
#[derive(Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    /// The network being trained.
    pub net: EdmNetwork,
    /// The EMA of its weights (use this one for sampling).
    pub ema: EdmNetwork,
    names: Vec<String>,
    /// The trainable variables, aligned with `names` (shallow handles on the VarStore's storage).
    params: Vec<Tensor>,
    /// `(EMA variable, trained variable)` for every variable, buffers included.
    ema_pairs: Vec<(Tensor, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    device: Device,
}

fn sorted_vars(net: &EdmNetwork) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = net.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

impl Trainer {
    /// A fresh run.
    pub fn new(cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let device = cfg.device.resolve()?;
        let (net, ema) = super::with_torch_seed(cfg.seed, || {
            Ok::<_, PriorError>((EdmNetwork::new(&cfg.unet, cfg.sigma_data, device)?, EdmNetwork::new(&cfg.unet, cfg.sigma_data, device)?))
        })?;
        let mut ema = ema;
        ema.vs.copy(&net.vs).map_err(|e| torch_err("copying weights to the EMA", e))?;
        let (names, params): (Vec<String>, Vec<Tensor>) = sorted_vars(&net).into_iter().filter(|(_, t)| t.requires_grad()).unzip();
        let src = net.vs.variables();
        let ema_pairs = sorted_vars(&ema).into_iter().filter_map(|(n, e)| src.get(&n).map(|s| (e, s.shallow_clone()))).collect();
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        Ok(Self { cfg, net, ema, names, params, ema_pairs, m, v, step: 0, device })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.net.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// One optimiser step on a batch drawn from `data (N, C, H, W)`; returns the loss.
    pub fn train_step(&mut self, data: &Tensor) -> Result<f64> {
        let n = data.size().first().copied().unwrap_or(0);
        if n < 1 {
            return Err(PriorError::InvalidParameter { name: "data", reason: "empty training set".into() });
        }
        // Every draw of this step is a function of (seed, step).
        let b = self.cfg.batch_size;
        let mut rng = stream(self.cfg.seed, tags::TRAIN, self.step, 0);
        let idx: Vec<i64> = (0..b).map(|_| rng.random_range(0..n)).collect();
        let mut z = vec![0f32; b as usize];
        fill_normal(&mut rng, &mut z);
        let per_image: i64 = data.size()[1..].iter().product();
        let mut noise = vec![0f32; (b * per_image) as usize];
        fill_normal(&mut rng, &mut noise);
        let idx = Tensor::from_slice(&idx);
        let mut y = data.index_select(0, &idx).to_device(self.device).to_kind(Kind::Float);
        let [sx, sy] = self.cfg.random_roll;
        if (sx > 0 || sy > 0) && y.dim() == 4 {
            let (h, w) = (y.size()[2], y.size()[3]);
            let rolled: Vec<Tensor> = (0..b)
                .map(|i| {
                    let dx = if sx > 0 { sx * rng.random_range(0..h / sx) } else { 0 };
                    let dy = if sy > 0 { sy * rng.random_range(0..w / sy) } else { 0 };
                    y.get(i).roll([dx, dy], [1, 2])
                })
                .collect();
            y = Tensor::stack(&rolled, 0);
        }
        if self.cfg.channels_last && y.dim() == 4 {
            y = y.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        }
        let z = Tensor::from_slice(&z).to_device(self.device);
        let mut noise = Tensor::from_slice(&noise).reshape(y.size()).to_device(self.device);
        if self.cfg.channels_last && noise.dim() == 4 {
            noise = noise.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        }
        let loss = self.cfg.loss.loss(&self.net, &y, &z, &noise, true);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(PriorError::Backend(format!("non-finite loss {value} at step {}", self.step)));
        }
        let params = &self.params;
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        let lr = self.cfg.lr_at(self.step);
        let t = (self.step + 1) as f64;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
            let mut scale = 1.0;
            if self.cfg.grad_clip > 0.0 {
                let sq: f64 = grads.iter().filter(|g| g.defined()).map(|g| g.square().sum(Kind::Double).double_value(&[])).sum();
                let norm = sq.sqrt();
                if norm > self.cfg.grad_clip {
                    scale = self.cfg.grad_clip / (norm + 1e-6);
                }
            }
            for ((p, g), (m, v)) in params.iter().zip(&grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                if !g.defined() {
                    continue;
                }
                let g = g * scale;
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                let mhat = &*m / (1.0 - b1.powf(t));
                let vhat = &*v / (1.0 - b2.powf(t));
                let mut p = p.shallow_clone();
                let _ = p.g_sub_(&(mhat / (vhat.sqrt() + eps) * lr));
            }
            let beta = self.cfg.ema_beta(self.step + 1);
            for (e, s) in &self.ema_pairs {
                let mut e = e.shallow_clone();
                let _ = e.g_mul_scalar_(beta).g_add_(&(s * (1.0 - beta)));
            }
        });
        self.step += 1;
        Ok(value)
    }

    /// Write a checkpoint into `dir` (created if needed): `weights.safetensors`,
    /// `ema.safetensors`, `adam.safetensors` and `state.json`, written to a temporary folder
    /// and renamed, so a kill during the write leaves the previous checkpoint intact.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let io = |what: &str, e: std::io::Error| PriorError::Backend(format!("{what}: {e}"));
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io("creating checkpoint folder", e))?;
        self.net.save(&tmp.join("weights.safetensors"))?;
        self.ema.save(&tmp.join("ema.safetensors"))?;
        let mut moments: Vec<(String, Tensor)> = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            moments.push((format!("m.{n}"), self.m[i].shallow_clone()));
            moments.push((format!("v.{n}"), self.v[i].shallow_clone()));
        }
        Tensor::write_safetensors(&moments, tmp.join("adam.safetensors")).map_err(|e| torch_err("saving Adam state", e))?;
        let state = serde_json::json!({ "step": self.step, "config": &self.cfg });
        std::fs::write(tmp.join("state.json"), state.to_string()).map_err(|e| io("writing state.json", e))?;
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| io("moving the previous checkpoint", e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| io("publishing the checkpoint", e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Resume from a checkpoint written by [`Trainer::save_checkpoint`] with the same
    /// network configuration (a different one is an error).
    pub fn resume(cfg: TrainConfig, dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join("state.json"))
            .map_err(|e| PriorError::Backend(format!("reading {}: {e}", dir.join("state.json").display())))?;
        let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| PriorError::Backend(format!("state.json: {e}")))?;
        let saved: TrainConfig = serde_json::from_value(state["config"].clone()).map_err(|e| PriorError::Backend(format!("state.json config: {e}")))?;
        if saved.unet != cfg.unet || saved.sigma_data != cfg.sigma_data {
            return Err(PriorError::InvalidParameter { name: "checkpoint", reason: "its network differs from the config's".into() });
        }
        let step = state["step"].as_u64().ok_or_else(|| PriorError::Backend("state.json has no step".into()))?;
        let mut me = Self::new(cfg)?;
        me.net.vs.load(dir.join("weights.safetensors")).map_err(|e| torch_err("loading weights", e))?;
        me.ema.vs.load(dir.join("ema.safetensors")).map_err(|e| torch_err("loading EMA weights", e))?;
        let moments = Tensor::read_safetensors(dir.join("adam.safetensors")).map_err(|e| torch_err("loading Adam state", e))?;
        let map: std::collections::HashMap<String, Tensor> = moments.into_iter().collect();
        for (i, n) in me.names.iter().enumerate() {
            let (Some(m), Some(v)) = (map.get(&format!("m.{n}")), map.get(&format!("v.{n}"))) else {
                return Err(PriorError::Backend(format!("Adam state lacks {n}")));
            };
            me.m[i] = m.to_device(me.device);
            me.v[i] = v.to_device(me.device);
        }
        me.step = step;
        Ok(me)
    }
}
