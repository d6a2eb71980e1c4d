//! Synthetic black-hole images: m-ring models (Event Horizon Telescope Collaboration 2019,
//! paper IV, section 4 and appendix; Johnson et al. 2020) with turbulence, in place of the GRMHD
//! image library of the EnKG experiments, which cannot be had offline.
//!
//! Sky coordinates: the image is `n x n` pixels over a field of view `fov` (micro-arcseconds),
//! row 0 at the top (north up) and column 0 at the left (east left, as astronomers draw the sky):
//! pixel `(i, j)` sits at `l = (c - j) p` (east positive), `m = (c - i) p` (north positive) with
//! `c = (n - 1) / 2`, `p = fov / n`. Position angles are measured east of north,
//! `phi = atan2(l, m)`.
//!
//! One image, with parameters drawn per sample:
//!
//! `I(l, m) = exp(-(r - d/2)^2 / (2 s^2)) * max(0, 1 + b1 cos(phi - phi1) + b2 cos(2 (phi - phi2)))
//!            * exp(tau g(l, m) - tau^2 / 2)`
//!
//! where `r, phi` are polar coordinates about a slightly jittered centre, `d` the ring diameter,
//! `s = w / sqrt(8 ln 2)` for the ring's full width at half maximum `w`, `b1, phi1` the m = 1
//! brightness asymmetry (the Doppler-boosted side), `b2, phi2` an m = 2 mode, and `g` a
//! unit-variance Gaussian random field with a Gaussian power spectrum of correlation length
//! `turbulence_length` (the multiplicative, log-normal turbulence). The image is then blurred by
//! a Gaussian of FWHM `blur_fwhm`, divided by its maximum and multiplied by a random peak
//! brightness, so pixels lie in `[0, 1]` and the total flux varies from image to image.

use ndarray::Array2;
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use diffinv_priors::rng::stream;
use diffinv_priors::FourierGaussian;

use crate::{DatasetError, Result};

/// Tag of the per-image random streams.
const TAG_MRING: u64 = 0x6d_7269_6e67;

/// Ranges of the m-ring family. Every `(lo, hi)` pair is a uniform range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MringConfig {
    /// Image side in pixels.
    pub resolution: usize,
    /// Field of view in micro-arcseconds.
    pub fov_uas: f64,
    /// Ring diameter `d` (micro-arcseconds).
    pub diameter_uas: (f64, f64),
    /// Ring FWHM thickness `w` (micro-arcseconds).
    pub width_uas: (f64, f64),
    /// m = 1 amplitude `b1`.
    pub m1_amplitude: (f64, f64),
    /// m = 2 amplitude `b2`.
    pub m2_amplitude: (f64, f64),
    /// Standard deviation `tau` of the log-brightness turbulence.
    pub turbulence_std: f64,
    /// Correlation length of the turbulence (micro-arcseconds).
    pub turbulence_length_uas: f64,
    /// Largest offset of the ring centre along each axis (micro-arcseconds).
    pub center_jitter_uas: f64,
    /// FWHM of the final Gaussian blur (micro-arcseconds).
    pub blur_fwhm_uas: f64,
    /// Peak brightness after scaling.
    pub peak: (f64, f64),
}

impl Default for MringConfig {
    fn default() -> Self {
        Self {
            resolution: 64,
            fov_uas: 160.0,
            diameter_uas: (35.0, 45.0),
            width_uas: (4.0, 12.0),
            m1_amplitude: (0.1, 0.9),
            m2_amplitude: (0.0, 0.3),
            turbulence_std: 0.3,
            turbulence_length_uas: 8.0,
            center_jitter_uas: 3.0,
            blur_fwhm_uas: 5.0,
            peak: (0.6, 1.0),
        }
    }
}

/// The parameters of one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MringParams {
    /// Ring diameter (micro-arcseconds).
    pub diameter_uas: f64,
    /// Ring FWHM thickness (micro-arcseconds).
    pub width_uas: f64,
    /// m = 1 amplitude.
    pub m1_amplitude: f64,
    /// m = 1 position angle (radians east of north): the brightest side.
    pub m1_angle: f64,
    /// m = 2 amplitude.
    pub m2_amplitude: f64,
    /// m = 2 position angle (radians).
    pub m2_angle: f64,
    /// Centre offset east (micro-arcseconds).
    pub center_l_uas: f64,
    /// Centre offset north (micro-arcseconds).
    pub center_m_uas: f64,
    /// Peak brightness.
    pub peak: f64,
}

fn check_range(name: &'static str, r: (f64, f64), lo: f64) -> Result<()> {
    if !(r.0.is_finite() && r.1.is_finite() && r.0 >= lo && r.0 <= r.1) {
        return Err(DatasetError::InvalidParameter { name, reason: format!("{r:?} must satisfy {lo} <= lo <= hi") });
    }
    Ok(())
}

impl MringConfig {
    /// Check every range.
    pub fn validate(&self) -> Result<()> {
        if self.resolution < 8 {
            return Err(DatasetError::InvalidParameter { name: "resolution", reason: format!("{} < 8", self.resolution) });
        }
        if self.fov_uas.is_nan() || self.fov_uas <= 0.0 {
            return Err(DatasetError::InvalidParameter { name: "fov_uas", reason: "must be positive".into() });
        }
        check_range("diameter_uas", self.diameter_uas, 0.0)?;
        check_range("width_uas", self.width_uas, 1e-6)?;
        check_range("m1_amplitude", self.m1_amplitude, 0.0)?;
        check_range("m2_amplitude", self.m2_amplitude, 0.0)?;
        check_range("peak", self.peak, 1e-6)?;
        if self.peak.1 > 1.0 {
            return Err(DatasetError::InvalidParameter { name: "peak", reason: "must not exceed 1".into() });
        }
        for (name, v) in [("turbulence_std", self.turbulence_std), ("turbulence_length_uas", self.turbulence_length_uas), ("center_jitter_uas", self.center_jitter_uas), ("blur_fwhm_uas", self.blur_fwhm_uas)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(DatasetError::InvalidParameter { name, reason: format!("{v} must be finite and >= 0") });
            }
        }
        Ok(())
    }

    /// Pixel size in micro-arcseconds.
    pub fn pixel_uas(&self) -> f64 {
        self.fov_uas / self.resolution as f64
    }
}

fn uniform(rng: &mut impl Rng, r: (f64, f64)) -> f64 {
    if r.1 > r.0 {
        rng.random_range(r.0..r.1)
    } else {
        r.0
    }
}

/// Draw the parameters of image `index` of the data set with `seed`.
pub fn draw_params(cfg: &MringConfig, seed: u64, index: u64) -> MringParams {
    let mut rng = stream(seed, TAG_MRING, 0, index);
    let tau = std::f64::consts::TAU;
    MringParams {
        diameter_uas: uniform(&mut rng, cfg.diameter_uas),
        width_uas: uniform(&mut rng, cfg.width_uas),
        m1_amplitude: uniform(&mut rng, cfg.m1_amplitude),
        m1_angle: rng.random_range(0.0..tau),
        m2_amplitude: uniform(&mut rng, cfg.m2_amplitude),
        m2_angle: rng.random_range(0.0..tau),
        center_l_uas: uniform(&mut rng, (-cfg.center_jitter_uas, cfg.center_jitter_uas)),
        center_m_uas: uniform(&mut rng, (-cfg.center_jitter_uas, cfg.center_jitter_uas)),
        peak: uniform(&mut rng, cfg.peak),
    }
}

/// Sky coordinates `(l, m)` of pixel `(i, j)` in micro-arcseconds.
pub fn pixel_coords(cfg: &MringConfig, i: usize, j: usize) -> (f64, f64) {
    let c = (cfg.resolution as f64 - 1.0) / 2.0;
    let p = cfg.pixel_uas();
    ((c - j as f64) * p, (c - i as f64) * p)
}

/// Separable Gaussian blur with standard deviation `sigma_px` pixels (zero boundary).
fn blur(img: &mut Array2<f64>, sigma_px: f64) {
    if sigma_px <= 0.0 {
        return;
    }
    let radius = (3.0 * sigma_px).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius).map(|k| (-0.5 * (k as f64 / sigma_px).powi(2)).exp()).collect();
    let norm: f64 = kernel.iter().sum();
    let (h, w) = img.dim();
    for axis in 0..2 {
        let src = img.clone();
        for i in 0..h {
            for j in 0..w {
                let mut acc = 0.0;
                for (t, kv) in kernel.iter().enumerate() {
                    let off = t as isize - radius;
                    let (ii, jj) = if axis == 0 { (i as isize + off, j as isize) } else { (i as isize, j as isize + off) };
                    if ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w {
                        acc += kv * src[[ii as usize, jj as usize]];
                    }
                }
                img[[i, j]] = acc / norm;
            }
        }
    }
}

/// Render one image from its parameters and a unit-variance turbulence field `g` (row-major,
/// `n * n` values; `None` for no turbulence).
pub fn render(cfg: &MringConfig, p: &MringParams, g: Option<&[f64]>) -> Vec<f32> {
    let n = cfg.resolution;
    let s = p.width_uas / (8.0 * std::f64::consts::LN_2).sqrt();
    let tau = cfg.turbulence_std;
    let mut img = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..n {
            let (l, m) = pixel_coords(cfg, i, j);
            let (dl, dm) = (l - p.center_l_uas, m - p.center_m_uas);
            let r = dl.hypot(dm);
            let phi = dl.atan2(dm);
            let radial = (-(r - p.diameter_uas / 2.0).powi(2) / (2.0 * s * s)).exp();
            let angular = (1.0 + p.m1_amplitude * (phi - p.m1_angle).cos() + p.m2_amplitude * (2.0 * (phi - p.m2_angle)).cos()).max(0.0);
            let turb = g.map_or(1.0, |g| (tau * g[i * n + j] - 0.5 * tau * tau).exp());
            img[[i, j]] = radial * angular * turb;
        }
    }
    blur(&mut img, cfg.blur_fwhm_uas / (8.0 * std::f64::consts::LN_2).sqrt() / cfg.pixel_uas());
    let max = img.iter().copied().fold(0.0f64, f64::max);
    let scale = if max > 0.0 { p.peak / max } else { 0.0 };
    img.iter().map(|v| (v * scale).clamp(0.0, 1.0) as f32).collect()
}

/// The turbulence field of the data set: a Gaussian random field with power spectrum
/// `exp(-(2 pi |k| L / fov)^2 / 2)` (correlation length `L`), standardised per draw.
fn turbulence_field(cfg: &MringConfig) -> Result<FourierGaussian> {
    let n = cfg.resolution;
    let ell = cfg.turbulence_length_uas / cfg.fov_uas;
    Ok(FourierGaussian::from_fn(n, n, 0.0, |kx, ky| {
        let k2 = (kx * kx + ky * ky) as f64;
        (-0.5 * (std::f64::consts::TAU * ell).powi(2) * k2).exp()
    })?)
}

/// Images `index` in `range` of the data set with `seed`: an `(len, n * n)` array of rows and
/// their parameters. Image `k` depends only on `(seed, k)`, so disjoint index ranges give
/// disjoint, reproducible splits (the data set's train split is `0..n_train`, its test split
/// `n_train..n_train + n_test`).
pub fn generate(cfg: &MringConfig, seed: u64, range: std::ops::Range<u64>) -> Result<(Array2<f32>, Vec<MringParams>)> {
    cfg.validate()?;
    let n = cfg.resolution;
    let field = if cfg.turbulence_std > 0.0 { Some(turbulence_field(cfg)?) } else { None };
    let rows: Vec<(Vec<f32>, MringParams)> = range
        .clone()
        .into_par_iter()
        .map(|k| {
            let p = draw_params(cfg, seed, k);
            let g = field.as_ref().map(|f| {
                let raw = f.sample(1, seed ^ TAG_MRING.wrapping_mul(k + 1));
                let v: Vec<f64> = raw.iter().map(|&x| f64::from(x)).collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt().max(1e-12);
                v.into_iter().map(|x| (x - mean) / sd).collect::<Vec<f64>>()
            });
            (render(cfg, &p, g.as_deref()), p)
        })
        .collect();
    let mut out = Array2::<f32>::zeros((rows.len(), n * n));
    let mut params = Vec::with_capacity(rows.len());
    for (r, (img, p)) in rows.into_iter().enumerate() {
        out.row_mut(r).assign(&ndarray::ArrayView1::from(&img[..]));
        params.push(p);
    }
    Ok((out, params))
}

/// Fraction of the peak below which [`ring_stats`] ignores a pixel.
pub const RING_THRESHOLD: f64 = 0.1;

/// Ring statistics of an image, for comparing samples with data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingStats {
    /// Diameter estimate `2 sum I r / sum I` about the field centre (micro-arcseconds).
    pub diameter_uas: f64,
    /// m = 1 asymmetry `|sum I exp(i phi)| / sum I` in `[0, 1]`.
    pub asymmetry: f64,
    /// Position angle of the asymmetry (radians east of north).
    pub angle: f64,
    /// Total flux `sum I`.
    pub flux: f64,
}

/// Estimate [`RingStats`] of a row-major `n x n` image. Pixels below [`RING_THRESHOLD`] times
/// the image's maximum are ignored, so that a faint background (which a sampled image has and a
/// generated one does not) does not inflate the mean radius; `flux` still sums every positive
/// pixel.
///
/// Radii and angles are taken about the field centre, where the generator puts the ring (up to
/// `center_jitter_uas`); the brightness centroid would be pulled towards the bright side by the
/// m = 1 mode (by `b1 d / 4`) and bias both statistics. For a thin ring with brightness
/// `1 + b1 cos(phi - phi1)` the asymmetry is `b1 / 2`.
pub fn ring_stats(cfg: &MringConfig, img: &[f32]) -> Result<RingStats> {
    let n = cfg.resolution;
    if img.len() != n * n {
        return Err(DatasetError::InvalidParameter { name: "img", reason: format!("{} pixels, expected {}", img.len(), n * n) });
    }
    let peak = img.iter().copied().fold(0.0f32, f32::max);
    let floor = f64::from(peak) * RING_THRESHOLD;
    let flux: f64 = img.iter().map(|&v| f64::from(v).max(0.0)).sum();
    let (mut total, mut rsum, mut re, mut im) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            let v = f64::from(img[i * n + j]);
            if v.is_nan() || v <= floor {
                continue;
            }
            let (dl, dm) = pixel_coords(cfg, i, j);
            let phi = dl.atan2(dm);
            total += v;
            rsum += v * dl.hypot(dm);
            re += v * phi.cos();
            im += v * phi.sin();
        }
    }
    if total.is_nan() || total <= 0.0 {
        return Err(DatasetError::InvalidParameter { name: "img", reason: "no positive flux".into() });
    }
    Ok(RingStats { diameter_uas: 2.0 * rsum / total, asymmetry: re.hypot(im) / total, angle: im.atan2(re), flux })
}

/// Two-sample Kolmogorov-Smirnov statistic `sup_t |F_a(t) - F_b(t)|` of two samples.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
    let mut b: Vec<f64> = b.iter().copied().filter(|v| v.is_finite()).collect();
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let t = a[i].min(b[j]);
        while i < a.len() && a[i] <= t {
            i += 1;
        }
        while j < b.len() && b[j] <= t {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}
