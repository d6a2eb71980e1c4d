//! `diffinv-train CONFIG --evaluate`: quality of a trained prior on held-out data.
//!
//! 1. Denoising: mean squared error (normalised units) of `D(x + sigma n; sigma)` over held-out
//!    images at `sigma in {0.05, 0.1, 0.2, 0.5, 1, 2, 5}`, next to the exact Gaussian (Wiener)
//!    denoiser of the training set's mean `m` and covariance `S`:
//!    `D_W(y) = m + U diag(l / (l + sigma^2)) U^T (y - m)` with `S = U diag(l) U^T`
//!    (eigendecomposition by libtorch). This is the MMSE denoiser among all *linear* ones, so a
//!    network that has learnt anything beyond second-order statistics beats it. For periodic
//!    fields (Navier-Stokes) the baseline is diagonal in the Fourier basis instead
//!    ([`WienerBasis::Fourier`]): `D_W(y) = m + F^-1[ P(k) / (P(k) + sigma^2) F(y - m) ]` with the
//!    unitary 2-D DFT `F` and the per-mode power `P(k) = E|F(x - m)(k)|^2` of the training set
//!    (the covariance of a translation-invariant field is diagonal there; every mode's variance
//!    is estimated from all training images, where the full covariance has `d^2 / 2` entries).
//! 2. Samples: EDM Heun sampler (Karras et al. 2022, Algorithm 1) with `sample_steps` levels from
//!    `sigma_max = 80`, mapped back to data units; for black holes, the ring diameter and
//!    asymmetry distributions of samples and held-out data compared by the two-sample
//!    Kolmogorov-Smirnov statistic; for periodic fields, the radially averaged energy spectrum
//!    of samples and held-out data (`diffinv_metrics::spectrum`) and its largest relative
//!    deviation over the resolved band (shells `1..=H/3`, the 2/3-dealiased band of the solver);
//!    a PNG grid with samples (top) and data (bottom).
//!
//! Writes `quality.json` and `samples.png` into the run folder and prints a Markdown table.

use std::path::Path;

use anyhow::{Context, Result};
use diffinv_datasets::blackhole;
use diffinv_priors::neural::{EdmNetwork, NeuralDenoiser};
use diffinv_priors::rng::{fill_normal, stream};
use diffinv_priors::sampler::{initial_noise, pf_ode};
use diffinv_priors::{EdmSchedule, OdeMethod};
use ndarray::Array2;
use tch::{Device, Kind, Tensor};

/// Noise levels of the denoising table.
pub const SIGMAS: [f64; 7] = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// One row of the denoising table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DenoiseRow {
    /// Noise level.
    pub sigma: f64,
    /// Network MSE.
    pub network: f64,
    /// Wiener MSE.
    pub wiener: f64,
}

/// Basis of the Gaussian (Wiener) baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WienerBasis {
    /// Full covariance, diagonalised by `eigh`.
    #[default]
    Full,
    /// Diagonal in the 2-D Fourier basis (periodic, translation-invariant fields).
    Fourier,
}

/// The Wiener denoiser of a Gaussian fitted to `train (N, d)`.
pub struct Wiener {
    mean: Tensor,
    basis: Tensor,
    eig: Tensor,
}

impl Wiener {
    /// Fit mean and covariance (unbiased) and diagonalise the covariance.
    pub fn fit(train: &Tensor) -> Result<Self> {
        let x = train.to_kind(Kind::Double).flatten(1, -1);
        let n = x.size()[0];
        let mean = x.mean_dim(0, true, Kind::Double);
        let xc = &x - &mean;
        let cov = xc.transpose(0, 1).matmul(&xc) / ((n - 1).max(1) as f64);
        let (eig, basis) = cov.f_linalg_eigh("L").context("eigendecomposition of the covariance")?;
        Ok(Self { mean, basis, eig: eig.clamp_min(0.0) })
    }

    /// `D_W(y; sigma)` for `y (B, d)`.
    pub fn denoise(&self, y: &Tensor, sigma: f64) -> Tensor {
        let yc = y.to_kind(Kind::Double) - &self.mean;
        let gain = &self.eig / (&self.eig + sigma * sigma);
        let coef = yc.matmul(&self.basis) * gain.unsqueeze(0);
        (coef.matmul(&self.basis.transpose(0, 1)) + &self.mean).to_kind(Kind::Float)
    }
}

/// The Wiener denoiser of a Gaussian that is diagonal in the unitary 2-D Fourier basis,
/// fitted to `train (N, C, H, W)`: mean image `m` and per-mode power `P(k)` (unbiased).
pub struct FourierWiener {
    mean: Tensor,
    power: Tensor,
}

impl FourierWiener {
    /// Fit the mean image and the per-mode power.
    pub fn fit(train: &Tensor) -> Result<Self> {
        let size = train.size();
        anyhow::ensure!(size.len() == 4, "the Fourier Wiener baseline needs (N, C, H, W) images, got {size:?}");
        let x = train.to_kind(Kind::Double);
        let n = size[0];
        let mean = x.mean_dim(0, true, Kind::Double);
        let xh = (&x - &mean).fft_fft2(None::<&[i64]>, [-2, -1], "ortho");
        let power = xh.abs().square().sum_dim_intlist(0, true, Kind::Double) / ((n - 1).max(1) as f64);
        Ok(Self { mean, power })
    }

    /// Save the fitted mean `(1, C, H, W)` and power `(1, C, H, W)` as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        Tensor::write_safetensors(&[("mean", &self.mean), ("power", &self.power)], path)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Load what [`save`](Self::save) wrote.
    pub fn load(path: &Path) -> Result<Self> {
        let named = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
        let get = |name: &str| {
            named.iter().find(|(n, _)| n == name).map(|(_, t)| t.to_kind(Kind::Double)).with_context(|| format!("{} has no `{name}`", path.display()))
        };
        Ok(Self { mean: get("mean")?, power: get("power")? })
    }

    /// `D_W(y; sigma)` for `y (B, C, H, W)`.
    pub fn denoise(&self, y: &Tensor, sigma: f64) -> Tensor {
        let yc = y.to_kind(Kind::Double) - &self.mean;
        let gain = &self.power / (&self.power + sigma * sigma);
        let yh = yc.fft_fft2(None::<&[i64]>, [-2, -1], "ortho") * gain;
        (yh.fft_ifft2(None::<&[i64]>, [-2, -1], "ortho").real() + &self.mean).to_kind(Kind::Float)
    }
}

/// A fitted Gaussian baseline in either basis.
pub enum WienerBaseline {
    /// Full covariance.
    Full(Wiener),
    /// Diagonal in the Fourier basis.
    Fourier(FourierWiener),
}

impl WienerBaseline {
    /// Fit to `train (N, C, H, W)` in `basis`.
    pub fn fit(basis: WienerBasis, train: &Tensor) -> Result<Self> {
        Ok(match basis {
            WienerBasis::Full => Self::Full(Wiener::fit(train)?),
            WienerBasis::Fourier => Self::Fourier(FourierWiener::fit(train)?),
        })
    }

    /// Squared error summed over `y (N, C, H, W)` against `x`.
    fn squared_error(&self, y: &Tensor, x: &Tensor, sigma: f64) -> f64 {
        match self {
            Self::Full(w) => (w.denoise(&y.flatten(1, -1), sigma) - x.flatten(1, -1)).square().sum(Kind::Double).double_value(&[]),
            Self::Fourier(w) => (w.denoise(y, sigma) - x).square().sum(Kind::Double).double_value(&[]),
        }
    }
}

/// Denoising MSE of `net` and of the Wiener filter of `train` (in `basis`) on `test`
/// (normalised units, `(N, C, H, W)`), with seeded noise.
pub fn denoising_table(net: &EdmNetwork, train: &Tensor, test: &Tensor, seed: u64, basis: WienerBasis) -> Result<Vec<DenoiseRow>> {
    denoising_table_with(net, &WienerBaseline::fit(basis, train)?, test, seed)
}

/// [`denoising_table`] against an already fitted baseline.
pub fn denoising_table_with(net: &EdmNetwork, wiener: &WienerBaseline, test: &Tensor, seed: u64) -> Result<Vec<DenoiseRow>> {
    denoising_rows(net, wiener, test, seed, &SIGMAS)
}

/// The denoising rows at the given noise levels. The noise of level `SIGMAS[k]` is drawn from
/// stream `k` of `seed` whatever list is asked for, so a level's row is the same number in the
/// table and in the training curve (`[eval] curve_sigmas`); levels not in [`SIGMAS`] use
/// streams from 1000 on.
pub fn denoising_rows(net: &EdmNetwork, wiener: &WienerBaseline, test: &Tensor, seed: u64, sigmas: &[f64]) -> Result<Vec<DenoiseRow>> {
    let size = test.size();
    let n = size[0];
    let d: i64 = size[1..].iter().product();
    let x = test.to_kind(Kind::Float);
    let mut rows = Vec::new();
    for (j, &sigma) in sigmas.iter().enumerate() {
        let k = SIGMAS.iter().position(|&s| s == sigma).unwrap_or(1000 + j);
        let mut rng = stream(seed, 0x6576_616c, k as u64, 0);
        let mut noise = vec![0f32; (n * d) as usize];
        fill_normal(&mut rng, &mut noise);
        let y = &x + Tensor::from_slice(&noise).reshape(size.as_slice()) * sigma;
        let mut net_se = 0.0;
        for start in (0..n).step_by(64) {
            let len = (n - start).min(64);
            let yb = y.narrow(0, start, len);
            let s = Tensor::full([len], sigma, (Kind::Float, Device::Cpu));
            let dn = tch::no_grad(|| net.precond(&yb.to_device(net.vs.device()), &s.to_device(net.vs.device()), false)).to_device(Device::Cpu);
            net_se += (dn - x.narrow(0, start, len)).square().sum(Kind::Double).double_value(&[]);
        }
        let w_se = wiener.squared_error(&y, &x, sigma);
        let count = (n * d) as f64;
        rows.push(DenoiseRow { sigma, network: net_se / count, wiener: w_se / count });
    }
    Ok(rows)
}

/// Radially averaged energy spectra of `samples` and `data` (rows are `side x side` fields in
/// data units) and the largest relative deviation over the resolved band `1..=side/3`.
pub fn spectrum_comparison(samples: &Array2<f32>, data: &Array2<f32>, side: usize) -> Result<serde_json::Value> {
    use diffinv_metrics::spectrum::{max_relative_deviation, mean_energy_spectrum};
    let es = mean_energy_spectrum(samples.view(), side, side)?;
    let ed = mean_energy_spectrum(data.view(), side, side)?;
    let hi = side / 3;
    let dev = max_relative_deviation(&es, &ed, 1, hi)?;
    Ok(serde_json::json!({
        "band": [1, hi], "max_relative_deviation": dev, "spectrum_samples": es, "spectrum_data": ed,
        "samples": samples.nrows(), "data": data.nrows(),
    }))
}

/// `n` samples of the prior in normalised units, `(n, d)`, by the EDM Heun sampler.
pub fn sample(net: EdmNetwork, n: usize, steps: usize, seed: u64) -> Result<Array2<f32>> {
    let den = NeuralDenoiser::new(Box::new(net), 64)?;
    let d = diffinv_priors::Denoiser::dim(&den);
    let schedule = EdmSchedule::default();
    let sigmas = schedule.sigmas(steps)?;
    let x = initial_noise(n, d, schedule.sigma_max, seed);
    Ok(pf_ode(&den, x.view(), &sigmas, OdeMethod::Heun)?)
}

/// Ring statistics comparison for black-hole images in data units `[0, 1]`.
pub fn ring_comparison(cfg: &blackhole::MringConfig, samples: &Array2<f32>, data: &Array2<f32>) -> Result<serde_json::Value> {
    let stats = |a: &Array2<f32>| -> Result<(Vec<f64>, Vec<f64>)> {
        let mut dia = Vec::new();
        let mut asym = Vec::new();
        for r in a.outer_iter() {
            let v: Vec<f32> = r.iter().copied().collect();
            // A sample with no positive flux has no ring: counted as NaN (the KS test drops it).
            match blackhole::ring_stats(cfg, &v) {
                Ok(s) => {
                    dia.push(s.diameter_uas);
                    asym.push(s.asymmetry);
                }
                Err(_) => {
                    dia.push(f64::NAN);
                    asym.push(f64::NAN);
                }
            }
        }
        Ok((dia, asym))
    };
    let (sd, sa) = stats(samples)?;
    let (dd, da) = stats(data)?;
    let mean = |v: &[f64]| {
        let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        f.iter().sum::<f64>() / f.len().max(1) as f64
    };
    Ok(serde_json::json!({
        "diameter_ks": blackhole::ks_statistic(&sd, &dd),
        "asymmetry_ks": blackhole::ks_statistic(&sa, &da),
        "diameter_mean_samples": mean(&sd), "diameter_mean_data": mean(&dd),
        "asymmetry_mean_samples": mean(&sa), "asymmetry_mean_data": mean(&da),
        "samples": samples.nrows(), "data": data.nrows(),
    }))
}

/// A grey-scale PNG grid: `top` rows above `bottom` rows, `cols` images per row, each image
/// `side x side`, values mapped linearly from `range = (lo, hi)` to black..white and clamped.
pub fn write_grid(path: &Path, top: &Array2<f32>, bottom: &Array2<f32>, side: usize, cols: usize, range: (f32, f32)) -> Result<()> {
    let (lo, hi) = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let rows_of = |a: &Array2<f32>| a.nrows().min(cols).max(1);
    let (w, h) = (cols * (side + 2) + 2, 2 * (side + 2) + 6);
    let mut img = image::GrayImage::from_pixel(w as u32, h as u32, image::Luma([255]));
    for (band, a) in [top, bottom].iter().enumerate() {
        for k in 0..rows_of(a).min(a.nrows()) {
            for i in 0..side {
                for j in 0..side {
                    let v = ((a[[k, i * side + j]] - lo) / span).clamp(0.0, 1.0);
                    let (x, y) = (2 + k * (side + 2) + j, 2 + band * (side + 6) + i);
                    img.put_pixel(x as u32, y as u32, image::Luma([(v * 255.0) as u8]));
                }
            }
        }
    }
    img.save(path).with_context(|| format!("writing {}", path.display()))
}
