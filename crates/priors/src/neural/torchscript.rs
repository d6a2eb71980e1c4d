//! Pre-trained priors exported from PyTorch as TorchScript (see docs/priors.md and
//! tools/export_torchscript.py for the export).
//!
//! - [`ScriptedEdm`]: a module with the EDM signature `forward(x, sigma) -> D(x; sigma)`,
//!   `x: (B, C, H, W)`, `sigma: (B,)` float32 (e.g. an EDM checkpoint's preconditioned network).
//! - [`ScriptedVpEpsilon`]: an epsilon-prediction VP/DDPM model `forward(x_t, t) -> eps` on the
//!   discrete linear-beta schedule (Ho et al. 2020; `beta_t` from 1e-4 to 0.02 over 1000 steps by
//!   default), such as the DPS FFHQ checkpoint. The adapter maps the EDM (variance-exploding)
//!   state to the VP one: with `alpha_bar_t = 1 / (1 + sigma^2)`, the VP state is
//!   `x_t = x / sqrt(1 + sigma^2)` at the discrete `t` whose `sigma_t = sqrt((1 - alpha_bar_t) /
//!   alpha_bar_t)` is nearest to `sigma` (in log space; EDM's VP-to-VE conversion), and
//!   `D(x; sigma) = x - sigma_t eps(x_t, t)`. Models that also predict a variance (`2 C` output
//!   channels, guided-diffusion's `learn_sigma`) are handled by keeping the first `C` channels.

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor};

use super::edm::TorchDenoise;
use super::torch_err;
use crate::{PriorError, Result};

/// The first meaningful line of a libtorch error: its message without the C++ backtrace
/// ("Exception raised from ...", "frame #N: ...") and without tch's "Internal torch error:"
/// prefix; a long line (libtorch appends paragraphs of advice) is cut after its first sentence.
pub(crate) fn torch_cause(e: &tch::TchError) -> String {
    let text = match e {
        tch::TchError::Torch(s) => s.clone(),
        other => other.to_string(),
    };
    text.lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("Internal torch error:").map(str::trim).unwrap_or(l))
        .find(|l| !l.is_empty() && !l.starts_with("Exception raised from") && !l.starts_with("frame #"))
        .map(|l| match l.find(". ") {
            Some(p) if l.len() > 160 => &l[..=p],
            _ => l,
        })
        .unwrap_or("libtorch gave no message")
        .to_string()
}

/// Load the TorchScript module `path` onto `device`, in evaluation mode.
///
/// A missing file, a folder, or a file that is not TorchScript (e.g. a plain `state_dict`
/// checkpoint or random bytes) gives [`PriorError::Load`]: one line naming the file and the
/// cause, without libtorch's C++ backtrace.
pub fn load_torchscript(path: &Path, device: Device) -> Result<CModule> {
    let load_err = |reason: String| PriorError::Load { path: path.display().to_string(), reason };
    match std::fs::metadata(path) {
        Err(e) => return Err(load_err(format!("cannot open the TorchScript prior: {e}"))),
        Ok(m) if !m.is_file() => return Err(load_err("is not a file (expected a TorchScript .pt module)".into())),
        Ok(_) => {}
    }
    let mut m = CModule::load_on_device(path, device)
        .map_err(|e| load_err(format!("not a loadable TorchScript module: {}", torch_cause(&e))))?;
    m.set_eval();
    Ok(m)
}

fn load_module(path: &Path, device: Device) -> Result<CModule> {
    load_torchscript(path, device)
}

fn check_shape(shape: [i64; 3]) -> Result<()> {
    if shape.iter().any(|&s| s < 1) {
        return Err(PriorError::InvalidParameter { name: "image_shape", reason: format!("{shape:?} must be positive") });
    }
    Ok(())
}

/// A TorchScript module with the EDM signature `D(x, sigma)`.
#[derive(Debug)]
pub struct ScriptedEdm {
    module: CModule,
    shape: [i64; 3],
    device: Device,
}

impl ScriptedEdm {
    /// Load `path` onto `device`; `shape` is the image shape `(C, H, W)` the module expects.
    pub fn load(path: &Path, shape: [i64; 3], device: Device) -> Result<Self> {
        check_shape(shape)?;
        Ok(Self { module: load_module(path, device)?, shape, device })
    }
}

impl TorchDenoise for ScriptedEdm {
    fn denoise_tensor(&self, x: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        let out = self.module.forward_ts(&[x, sigma]).map_err(|e| torch_err("TorchScript forward", e))?;
        if out.size() != x.size() {
            return Err(PriorError::Backend(format!("TorchScript prior returned shape {:?} for input {:?}", out.size(), x.size())));
        }
        Ok(out.to_kind(Kind::Float))
    }
    fn image_shape(&self) -> [i64; 3] {
        self.shape
    }
    fn device(&self) -> Device {
        self.device
    }
}

/// An epsilon-prediction VP/DDPM TorchScript module behind the EDM interface.
#[derive(Debug)]
pub struct ScriptedVpEpsilon {
    module: CModule,
    shape: [i64; 3],
    device: Device,
    /// `sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)` for `t = 0 .. T-1`, increasing.
    sigmas: Vec<f64>,
}

impl ScriptedVpEpsilon {
    /// Load `path` with the linear beta schedule `beta_start .. beta_end` over `steps` steps.
    pub fn load(path: &Path, shape: [i64; 3], device: Device, beta_start: f64, beta_end: f64, steps: usize) -> Result<Self> {
        check_shape(shape)?;
        Ok(Self { module: load_module(path, device)?, shape, device, sigmas: vp_sigmas(beta_start, beta_end, steps)? })
    }

    /// The default DDPM schedule: 1000 steps, beta from 1e-4 to 0.02.
    pub fn load_ddpm(path: &Path, shape: [i64; 3], device: Device) -> Result<Self> {
        Self::load(path, shape, device, 1e-4, 0.02, 1000)
    }

    /// The discrete time step whose noise level is nearest to `sigma` in log space.
    pub fn nearest_step(&self, sigma: f64) -> usize {
        nearest_step(&self.sigmas, sigma)
    }

    /// The VE noise level of discrete step `t`.
    pub fn sigma_of_step(&self, t: usize) -> f64 {
        self.sigmas[t.min(self.sigmas.len() - 1)]
    }
}

/// `sigma_t` of the linear-beta DDPM schedule.
pub fn vp_sigmas(beta_start: f64, beta_end: f64, steps: usize) -> Result<Vec<f64>> {
    if steps < 2 || !(0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0) {
        return Err(PriorError::InvalidParameter {
            name: "vp schedule",
            reason: format!("need 0 < beta_start <= beta_end < 1 and steps >= 2, got {beta_start}, {beta_end}, {steps}"),
        });
    }
    let mut alpha_bar = 1.0;
    Ok((0..steps)
        .map(|t| {
            let beta = beta_start + (beta_end - beta_start) * t as f64 / (steps - 1) as f64;
            alpha_bar *= 1.0 - beta;
            ((1.0 - alpha_bar) / alpha_bar).sqrt()
        })
        .collect())
}

/// Index of the entry of the increasing `sigmas` nearest to `sigma` in log space.
pub fn nearest_step(sigmas: &[f64], sigma: f64) -> usize {
    let target = sigma.max(1e-12).ln();
    let mut best = (0, f64::INFINITY);
    for (t, s) in sigmas.iter().enumerate() {
        let d = (s.ln() - target).abs();
        if d < best.1 {
            best = (t, d);
        }
    }
    best.0
}

impl TorchDenoise for ScriptedVpEpsilon {
    fn denoise_tensor(&self, x: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        // One sigma per call in every solver; take the first and check the rest agree.
        let s: Vec<f32> = Vec::<f32>::try_from(&sigma.to_device(Device::Cpu).to_kind(Kind::Float)).map_err(|e| torch_err("sigma", e))?;
        let s0 = f64::from(*s.first().ok_or_else(|| PriorError::Backend("empty batch".into()))?);
        if s.iter().any(|&v| (f64::from(v) - s0).abs() > 1e-6 * s0.max(1.0)) {
            return Err(PriorError::Unsupported("a batch with different noise levels for a VP adapter"));
        }
        let t = self.nearest_step(s0);
        let sigma_t = self.sigmas[t];
        let b = x.size()[0];
        let xt = x / (1.0 + sigma_t * sigma_t).sqrt();
        let tt = Tensor::full([b], t as f64, (Kind::Float, self.device));
        let eps = self.module.forward_ts(&[&xt, &tt]).map_err(|e| torch_err("TorchScript forward", e))?;
        let c = self.shape[0];
        let eps = match eps.size().get(1) {
            Some(&ch) if ch == c => eps,
            Some(&ch) if ch == 2 * c => eps.narrow(1, 0, c),
            other => return Err(PriorError::Backend(format!("epsilon model returned {other:?} channels, expected {c} or {}", 2 * c))),
        };
        Ok(x - eps.to_kind(Kind::Float) * sigma_t)
    }
    fn image_shape(&self) -> [i64; 3] {
        self.shape
    }
    fn device(&self) -> Device {
        self.device
    }
}

#[cfg(test)]
mod tests {
    use super::torch_cause;

    #[test]
    fn torch_cause_keeps_the_first_meaningful_line() {
        let e = tch::TchError::Torch(
            "\nPytorchStreamReader failed reading zip archive: failed finding central directory\n\
             Exception raised from valid at ../caffe2/serialize/inline_container.cc:185 (most recent call first):\n\
             frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x7f in libc10.so)\n\
             frame #1: c10::detail::torchCheckFail(char const*) + 0x68 (0x7f in libc10.so)"
                .into(),
        );
        assert_eq!(torch_cause(&e), "PytorchStreamReader failed reading zip archive: failed finding central directory");
        let long = format!("first sentence. {}", "advice ".repeat(40));
        assert_eq!(torch_cause(&tch::TchError::Torch(long)), "first sentence.");
        assert_eq!(torch_cause(&tch::TchError::Torch("frame #0: x".into())), "libtorch gave no message");
    }
}
