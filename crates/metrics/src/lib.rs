//! # diffinv-metrics
//!
//! Scores of a reconstruction or of a set of samples:
//! - [`sliced_wasserstein`]: the sliced 2-Wasserstein distance between two sample sets,
//! - [`relative_l2`], [`psnr`], [`mse`], [`data_misfit`], [`mean_error`],
//! - [`spectrum`]: radially averaged energy spectra of 2-D periodic fields (Navier-Stokes samples
//!   against data),
//! - [`image_scores`]: PSNR and SSIM of a reconstructed image against the truth,
//! - [`eht`]: the black-hole imaging scores of EnKG (Ensemble Kalman Diffusion Guidance,
//!   arXiv 2409.20175): blurred PSNR at the EHT resolution, chi^2 folding, the reference
//!   code's best-sample protocol.
//!
//! All inputs are `f32` batches with one sample per row; accumulation is in `f64`.

pub mod eht;
pub mod spectrum;
pub mod ssim;

pub use ssim::{ssim, ssim_batch};

use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use thiserror::Error;

/// Errors of the metrics crate.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MetricError {
    /// Mismatched dimensions.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Size passed.
        got: usize,
    },
    /// An empty sample set or vector.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A non-finite value where finite ones are required.
    #[error("{what}: non-finite value at index {index}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Flat index of the first non-finite value.
        index: usize,
    },
    /// A parameter outside its range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = MetricError> = std::result::Result<T, E>;

/// Settings of [`sliced_wasserstein`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlicedWassersteinConfig {
    /// Number of random directions, drawn uniformly on the unit sphere (default 1000).
    pub projections: usize,
    /// Seed of the directions (default 0): the same seed gives the same directions.
    pub seed: u64,
}

impl Default for SlicedWassersteinConfig {
    fn default() -> Self {
        Self { projections: 1000, seed: 0 }
    }
}

/// Sliced 2-Wasserstein distance between the empirical distributions of the rows of `a` and `b`:
///
/// `SW_2(a, b) = ( (1/L) sum_l W_2^2(<theta_l, a>, <theta_l, b>) )^(1/2)`,
///
/// with `L` directions `theta_l` uniform on the sphere (normalised Gaussian draws from a seeded
/// ChaCha8 stream) and the 1-D `W_2` computed exactly from sorted projections. When the two sets
/// have different sizes, the 1-D distance is the integral over quantile levels of the squared
/// difference of the two empirical quantile functions (step functions), computed exactly by
/// merging the breakpoints `i/n_a` and `j/n_b`.
pub fn sliced_wasserstein(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, cfg: SlicedWassersteinConfig) -> Result<f64> {
    if a.nrows() == 0 {
        return Err(MetricError::Empty("first sample set"));
    }
    if b.nrows() == 0 {
        return Err(MetricError::Empty("second sample set"));
    }
    if a.ncols() != b.ncols() {
        return Err(MetricError::Shape { what: "sample dimension", expected: a.ncols(), got: b.ncols() });
    }
    if cfg.projections == 0 {
        return Err(MetricError::InvalidParameter { name: "projections", reason: "must be > 0".into() });
    }
    let d = a.ncols();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let dirs: Vec<Vec<f64>> = (0..cfg.projections)
        .map(|_| {
            let mut v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            v.iter_mut().for_each(|x| *x /= n);
            v
        })
        .collect();
    let total: f64 = dirs
        .par_iter()
        .map(|theta| {
            let pa = project_sorted(a, theta);
            let pb = project_sorted(b, theta);
            w2_squared_1d(&pa, &pb)
        })
        .sum();
    Ok((total / cfg.projections as f64).sqrt())
}

fn project_sorted(x: ArrayView2<'_, f32>, theta: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = x.outer_iter().map(|r| r.iter().zip(theta).map(|(a, t)| *a as f64 * t).sum()).collect();
    p.sort_by(|u, v| u.total_cmp(v));
    p
}

/// Squared 2-Wasserstein distance between two sorted 1-D empirical distributions.
pub fn w2_squared_1d(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len(), b.len());
    if na == nb {
        return a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / na as f64;
    }
    // Merge quantile breakpoints.
    let (mut i, mut j) = (0usize, 0usize);
    let mut t = 0.0f64;
    let mut acc = 0.0;
    while i < na && j < nb {
        let ta = (i + 1) as f64 / na as f64;
        let tb = (j + 1) as f64 / nb as f64;
        let next = ta.min(tb);
        let diff = a[i] - b[j];
        acc += (next - t) * diff * diff;
        t = next;
        if ta <= tb {
            i += 1;
        }
        if tb <= ta {
            j += 1;
        }
    }
    acc
}

fn check_pair(x: ArrayView1<'_, f32>, r: ArrayView1<'_, f32>) -> Result<()> {
    if x.len() != r.len() {
        return Err(MetricError::Shape { what: "vector length", expected: r.len(), got: x.len() });
    }
    if x.is_empty() {
        return Err(MetricError::Empty("vector"));
    }
    Ok(())
}

/// Mean squared error `(1/d) ||x - r||^2`.
pub fn mse(x: ArrayView1<'_, f32>, reference: ArrayView1<'_, f32>) -> Result<f64> {
    check_pair(x, reference)?;
    Ok(x.iter().zip(reference.iter()).map(|(a, b)| ((*a - *b) as f64).powi(2)).sum::<f64>() / x.len() as f64)
}

/// Relative L2 error `||x - r|| / ||r||` (the Navier-Stokes metric of EnKG, section 5.2).
/// A zero reference gives `+inf` unless `x` is zero too.
pub fn relative_l2(x: ArrayView1<'_, f32>, reference: ArrayView1<'_, f32>) -> Result<f64> {
    check_pair(x, reference)?;
    let num: f64 = x.iter().zip(reference.iter()).map(|(a, b)| ((*a - *b) as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
    Ok(if den > 0.0 { num / den } else if num == 0.0 { 0.0 } else { f64::INFINITY })
}

/// Peak signal-to-noise ratio `10 log10(range^2 / MSE)` in dB, with `range` the dynamic range
/// of the data (2 for images in [-1, 1], 1 for [0, 1]). Identical inputs give `+inf`.
pub fn psnr(x: ArrayView1<'_, f32>, reference: ArrayView1<'_, f32>, range: f64) -> Result<f64> {
    if !(range > 0.0 && range.is_finite()) {
        return Err(MetricError::InvalidParameter { name: "range", reason: format!("must be finite and > 0, got {range}") });
    }
    let m = mse(x, reference)?;
    Ok(10.0 * (range * range / m).log10())
}

/// Data misfit `||y_pred - y_obs|| / sqrt(m)`: the root-mean-square measurement residual.
pub fn data_misfit(y_pred: ArrayView1<'_, f32>, y_obs: ArrayView1<'_, f32>) -> Result<f64> {
    Ok(mse(y_pred, y_obs)?.sqrt())
}

/// Error of the sample mean against a reference mean: `||mean(samples) - mean_ref|| / sqrt(d)`
/// (root-mean-square over coordinates).
pub fn mean_error(samples: ArrayView2<'_, f32>, reference_mean: ArrayView1<'_, f64>) -> Result<f64> {
    if samples.nrows() == 0 {
        return Err(MetricError::Empty("sample set"));
    }
    if samples.ncols() != reference_mean.len() {
        return Err(MetricError::Shape { what: "sample dimension", expected: reference_mean.len(), got: samples.ncols() });
    }
    let m: Array1<f64> = samples.mapv(|v| v as f64).mean_axis(Axis(0)).ok_or(MetricError::Empty("sample set"))?;
    Ok((m.iter().zip(reference_mean.iter()).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / m.len() as f64).sqrt())
}

/// PSNR and SSIM of one image, see [`image_scores`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScores {
    /// PSNR (dB), peak `range`.
    pub psnr: f64,
    /// SSIM (Wang et al. 2004), data range `range`.
    pub ssim: f64,
}

/// The imaging table's per-image scores of a reconstruction `x` against `truth`, both flat
/// `(C, H, W)` images of `shape`: `psnr = 10 log10(range^2 / MSE)` ([`psnr`]) and the SSIM of
/// [`ssim`] (11 x 11 Gaussian window, sigma 1.5, data range `range`); `range = 1` for images in
/// `[0, 1]`.
///
/// Errors: an empty shape, `x` or `truth` not of `C H W` values, a non-finite pixel in either
/// image, a `range` not finite and `> 0`, images smaller than the 11 x 11 SSIM window.
pub fn image_scores(x: ArrayView1<'_, f32>, truth: ArrayView1<'_, f32>, shape: [usize; 3], range: f64) -> Result<ImageScores> {
    let d = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or(MetricError::InvalidParameter { name: "shape", reason: format!("{shape:?} overflows") })?;
    if d == 0 {
        return Err(MetricError::Empty("image shape"));
    }
    for (what, v) in [("image", x.view()), ("truth", truth.view())] {
        if v.len() != d {
            return Err(MetricError::Shape { what, expected: d, got: v.len() });
        }
        if let Some(index) = v.iter().position(|p| !p.is_finite()) {
            return Err(MetricError::NonFinite { what, index });
        }
    }
    let p = psnr(x, truth, range)?;
    // The lengths match, so only a strided layout can refuse the reshape.
    let shape_err = |what: &str| MetricError::InvalidParameter { name: "layout", reason: format!("{what} cannot be viewed as {shape:?}") };
    let x3 = x.into_shape_with_order(shape).map_err(|_| shape_err("image"))?;
    let t3 = truth.into_shape_with_order(shape).map_err(|_| shape_err("truth"))?;
    let s = ssim(x3, t3, range)?;
    Ok(ImageScores { psnr: p, ssim: s })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use ndarray::{array, Array2};

    #[test]
    fn sw_of_identical_sets_is_zero_and_shift_is_exact() {
        let a = Array2::from_shape_fn((50, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let cfg = SlicedWassersteinConfig { projections: 200, seed: 3 };
        assert_eq!(sliced_wasserstein(a.view(), a.view(), cfg).unwrap(), 0.0);
        // A translation by t gives W2^2 = <theta, t>^2 on every slice; averaged over the sphere
        // E[<theta, t>^2] = |t|^2 / d.
        let t = array![1.0f32, -2.0, 2.0];
        let b = &a + &t;
        let sw = sliced_wasserstein(a.view(), b.view(), SlicedWassersteinConfig { projections: 20000, seed: 1 }).unwrap();
        assert_relative_eq!(sw, (9.0f64 / 3.0).sqrt(), max_relative = 0.03);
    }

    #[test]
    fn unequal_sizes_use_quantile_functions() {
        // {0, 1} against {0, 0.5, 1, 1.5}: quantile functions differ by 0 on [0, 1/4), 0.5 on
        // [1/4, 1/2), -0 ... compute: a(t) = 0 on [0, .5), 1 on [.5, 1); b(t) = 0, .5, 1, 1.5 on quarters.
        let w = w2_squared_1d(&[0.0, 1.0], &[0.0, 0.5, 1.0, 1.5]);
        assert_relative_eq!(w, 0.25 * (0.0 + 0.25 + 0.0 + 0.25), max_relative = 1e-12);
    }

    #[test]
    fn psnr_and_relative_l2_golden_values() {
        let r = array![0.0f32, 0.0, 0.0, 0.0];
        let x = array![0.1f32, -0.1, 0.1, -0.1];
        assert_relative_eq!(psnr(x.view(), r.view(), 2.0).unwrap(), 10.0 * (4.0f64 / 0.01).log10(), max_relative = 1e-5);
        let r2 = array![3.0f32, 4.0];
        let x2 = array![3.0f32, 3.0];
        assert_relative_eq!(relative_l2(x2.view(), r2.view()).unwrap(), 0.2, max_relative = 1e-12);
        assert!(relative_l2(x2.view(), array![1.0f32].view()).is_err());
    }

    #[test]
    fn mean_error_and_misfit() {
        let s = array![[1.0f32, 2.0], [3.0, 4.0]];
        assert_relative_eq!(mean_error(s.view(), array![2.0, 3.0].view()).unwrap(), 0.0);
        assert_relative_eq!(data_misfit(array![1.0f32, 1.0].view(), array![0.0f32, 0.0].view()).unwrap(), 1.0);
    }

    #[test]
    fn image_scores_are_psnr_and_ssim() {
        let shape = [1, 12, 12];
        let t = Array1::from_shape_fn(144, |k| ((k * 7) % 13) as f32 / 13.0);
        let x = t.mapv(|v| (0.9 * v + 0.05).clamp(0.0, 1.0));
        let s = image_scores(x.view(), t.view(), shape, 1.0).unwrap();
        assert_eq!(s.psnr, psnr(x.view(), t.view(), 1.0).unwrap());
        let want = ssim(x.view().into_shape_with_order(shape).unwrap(), t.view().into_shape_with_order(shape).unwrap(), 1.0).unwrap();
        assert_eq!(s.ssim, want);
        let same = image_scores(t.view(), t.view(), shape, 1.0).unwrap();
        assert_eq!((same.psnr, same.ssim), (f64::INFINITY, 1.0));
    }

    #[test]
    fn image_scores_reject_bad_input() {
        let shape = [1, 12, 12];
        let t = Array1::from_elem(144, 0.5f32);
        let short = Array1::from_elem(143, 0.5f32);
        assert_eq!(image_scores(t.view(), t.view(), [0, 12, 12], 1.0), Err(MetricError::Empty("image shape")));
        assert_eq!(image_scores(short.view(), t.view(), shape, 1.0), Err(MetricError::Shape { what: "image", expected: 144, got: 143 }));
        assert_eq!(image_scores(t.view(), short.view(), shape, 1.0), Err(MetricError::Shape { what: "truth", expected: 144, got: 143 }));
        let mut bad = t.clone();
        bad[5] = f32::NAN;
        assert_eq!(image_scores(bad.view(), t.view(), shape, 1.0), Err(MetricError::NonFinite { what: "image", index: 5 }));
        assert_eq!(image_scores(t.view(), bad.view(), shape, 1.0), Err(MetricError::NonFinite { what: "truth", index: 5 }));
        assert!(matches!(image_scores(t.view(), t.view(), shape, f64::NAN), Err(MetricError::InvalidParameter { name: "range", .. })));
        let small = Array1::from_elem(16, 0.5f32);
        assert!(matches!(image_scores(small.view(), small.view(), [1, 4, 4], 1.0), Err(MetricError::InvalidParameter { name: "image size", .. })));
        assert!(matches!(image_scores(t.view(), t.view(), [usize::MAX, 2, 1], 1.0), Err(MetricError::InvalidParameter { name: "shape", .. })));
    }
}
