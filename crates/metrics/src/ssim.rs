//! Structural similarity (SSIM; Wang, Bovik, Sheikh & Simoncelli 2004, IEEE TIP 13(4), eq. 13).
//!
//! For windows `w` of the two images with weighted means `mu_x, mu_y`, variances
//! `s_x^2, s_y^2` and covariance `s_xy`,
//!
//! `SSIM(w) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`,
//!
//! `C1 = (K1 R)^2`, `C2 = (K2 R)^2` with the data range `R`. The image's SSIM is the mean over
//! windows, and over channels for a multi-channel image.
//!
//! Convention (that of the paper and of scikit-image's `structural_similarity` with
//! `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R`):
//!
//! - an 11 x 11 Gaussian window with standard deviation 1.5, normalised to sum 1 (the separable
//!   product of the normalised 1-D window `exp(-k^2 / 4.5)`, `k = -5..5`);
//! - `K1 = 0.01`, `K2 = 0.03`;
//! - population (weighted, not sample-corrected) moments: `s_x^2 = E_w[x^2] - mu_x^2`;
//! - only "valid" windows, those lying entirely inside the image (scikit-image filters with
//!   reflection and then crops 5 pixels from every border before averaging, which keeps exactly
//!   these windows); images must therefore be at least 11 x 11;
//! - the mean over channels of each channel's mean SSIM.
//!
//! The data range must be given: it is not inferred from the data type.

use ndarray::{Array1, Array2, ArrayView2, ArrayView3, Axis};

use crate::{MetricError, Result};

/// Window side length.
pub const SSIM_WINDOW: usize = 11;
/// Standard deviation of the Gaussian window.
pub const SSIM_SIGMA: f64 = 1.5;
/// `K1` of the luminance constant.
pub const SSIM_K1: f64 = 0.01;
/// `K2` of the contrast constant.
pub const SSIM_K2: f64 = 0.03;

/// The normalised 1-D Gaussian window.
fn window_1d() -> [f64; SSIM_WINDOW] {
    let mut w = [0.0; SSIM_WINDOW];
    let half = (SSIM_WINDOW / 2) as f64;
    for (k, v) in w.iter_mut().enumerate() {
        let t = k as f64 - half;
        *v = (-t * t / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    w
}

/// Valid-mode separable filtering of one channel `(H, W)` with the window.
fn filter_valid(img: &Array2<f64>, w: &[f64; SSIM_WINDOW]) -> Array2<f64> {
    let (h, wd) = img.dim();
    let (oh, ow) = (h + 1 - SSIM_WINDOW, wd + 1 - SSIM_WINDOW);
    let mut rows = Array2::<f64>::zeros((h, ow));
    for i in 0..h {
        for j in 0..ow {
            rows[[i, j]] = (0..SSIM_WINDOW).map(|k| w[k] * img[[i, j + k]]).sum();
        }
    }
    let mut out = Array2::<f64>::zeros((oh, ow));
    for i in 0..oh {
        for j in 0..ow {
            out[[i, j]] = (0..SSIM_WINDOW).map(|k| w[k] * rows[[i + k, j]]).sum();
        }
    }
    out
}

/// SSIM of two images of shape `(C, H, W)` with data range `data_range > 0` (e.g. 1 for images
/// in `[0, 1]`, 2 for `[-1, 1]`, 255 for 8-bit). Returns the mean over channels of the mean
/// over valid windows; 1 for identical images.
pub fn ssim(x: ArrayView3<'_, f32>, y: ArrayView3<'_, f32>, data_range: f64) -> Result<f64> {
    if x.dim() != y.dim() {
        let (a, b) = (x.dim(), y.dim());
        return Err(MetricError::Shape {
            what: "SSIM image sizes (C * H * W)",
            expected: a.0 * a.1 * a.2,
            got: b.0 * b.1 * b.2,
        });
    }
    let (c, h, w) = x.dim();
    if c == 0 {
        return Err(MetricError::Empty("SSIM image"));
    }
    if h < SSIM_WINDOW || w < SSIM_WINDOW {
        return Err(MetricError::InvalidParameter {
            name: "image size",
            reason: format!(
                "SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {h} x {w}"
            ),
        });
    }
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(MetricError::InvalidParameter {
            name: "data_range",
            reason: format!("must be finite and > 0, got {data_range}"),
        });
    }
    if x.iter().chain(y.iter()).any(|v| !v.is_finite()) {
        return Err(MetricError::InvalidParameter {
            name: "image",
            reason: "non-finite pixel".into(),
        });
    }
    let win = window_1d();
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let mut total = 0.0;
    for ch in 0..c {
        let a = x.index_axis(Axis(0), ch).mapv(f64::from);
        let b = y.index_axis(Axis(0), ch).mapv(f64::from);
        let mx = filter_valid(&a, &win);
        let my = filter_valid(&b, &win);
        let mxx = filter_valid(&(&a * &a), &win);
        let myy = filter_valid(&(&b * &b), &win);
        let mxy = filter_valid(&(&a * &b), &win);
        let mut sum = 0.0;
        for (((&ux, &uy), (&uxx, &uyy)), &uxy) in mx
            .iter()
            .zip(my.iter())
            .zip(mxx.iter().zip(myy.iter()))
            .zip(mxy.iter())
        {
            let (vx, vy, vxy) = (uxx - ux * ux, uyy - uy * uy, uxy - ux * uy);
            sum += (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        }
        total += sum / mx.len() as f64;
    }
    Ok(total / c as f64)
}

/// SSIM of every row pair of two batches `(N, C H W)` of images of shape `shape = [C, H, W]`
/// (the workspace's flattened batch convention), see [`ssim`].
pub fn ssim_batch(
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    shape: [usize; 3],
    data_range: f64,
) -> Result<Array1<f64>> {
    let d = shape[0] * shape[1] * shape[2];
    if x.ncols() != d {
        return Err(MetricError::Shape {
            what: "SSIM batch columns",
            expected: d,
            got: x.ncols(),
        });
    }
    if y.dim() != x.dim() {
        return Err(MetricError::Shape {
            what: "SSIM batch rows",
            expected: x.nrows(),
            got: y.nrows(),
        });
    }
    let mut out = Array1::<f64>::zeros(x.nrows());
    for (i, (a, b)) in x.outer_iter().zip(y.outer_iter()).enumerate() {
        let a3 = a
            .to_shape((shape[0], shape[1], shape[2]))
            .map_err(|_| MetricError::Shape {
                what: "SSIM image",
                expected: d,
                got: a.len(),
            })?;
        let b3 = b
            .to_shape((shape[0], shape[1], shape[2]))
            .map_err(|_| MetricError::Shape {
                what: "SSIM image",
                expected: d,
                got: b.len(),
            })?;
        out[i] = ssim(a3.view(), b3.view(), data_range)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::Array3;

    /// The test images of the golden value (the same formulas as the numpy reference below),
    /// computed in f64 and rounded to f32.
    fn images(c: usize, h: usize, w: usize) -> (Array3<f32>, Array3<f32>) {
        let base = |c: usize, i: usize, j: usize| {
            0.5 + 0.4 * (0.37 * i as f64 + 0.23 * j as f64 + 1.1 * c as f64).sin()
        };
        let x = Array3::from_shape_fn((c, h, w), |(c, i, j)| base(c, i, j) as f32);
        let y = Array3::from_shape_fn((c, h, w), |(c, i, j)| {
            (0.8 * base(c, i, j)
                + 0.1
                + 0.05 * (0.9 * i as f64 - 0.4 * j as f64 + 0.3 * c as f64).cos())
                as f32
        });
        (x, y)
    }

    #[test]
    fn identical_images_score_one() {
        let (x, _) = images(3, 12, 17);
        assert_abs_diff_eq!(ssim(x.view(), x.view(), 1.0).unwrap(), 1.0, epsilon = 1e-12);
    }

    /// Constant images `a` and `b`: every variance vanishes, so
    /// `SSIM = (2 a b + C1) / (a^2 + b^2 + C1)`.
    #[test]
    fn constant_images_have_the_closed_form() {
        let (a, b, r) = (0.3f64, 0.7f64, 1.0f64);
        let x = Array3::<f32>::from_elem((2, 11, 13), a as f32);
        let y = Array3::<f32>::from_elem((2, 11, 13), b as f32);
        let c1 = (0.01 * r) * (0.01 * r);
        let (a32, b32) = (f64::from(a as f32), f64::from(b as f32));
        let expected = (2.0 * a32 * b32 + c1) / (a32 * a32 + b32 * b32 + c1);
        assert_abs_diff_eq!(
            ssim(x.view(), y.view(), r).unwrap(),
            expected,
            epsilon = 1e-12
        );
        // A larger data range gives larger constants and a score closer to 1.
        let big = ssim(x.view(), y.view(), 255.0).unwrap();
        let c1 = (0.01f64 * 255.0).powi(2);
        assert_abs_diff_eq!(
            big,
            (2.0 * a32 * b32 + c1) / (a32 * a32 + b32 * b32 + c1),
            epsilon = 1e-12
        );
        assert!(big > expected && big < 1.0);
    }

    /// Golden values from an independent numpy implementation (direct weighted sums over every
    /// valid 11 x 11 window, not separable filtering), run once with python3 and numpy 2.4:
    ///
    /// ```text
    /// r = arange(-5, 6); g = exp(-r**2 / 4.5); g /= g.sum(); w = outer(g, g)
    /// for each channel and valid window (a, b): mx = (w a).sum(), vx = (w a a).sum() - mx^2, ...
    /// ssim = mean over channels of mean over windows
    /// ```
    ///
    /// on the 2 x 16 x 20 images of [`images`]: 0.9319316213595978 (data range 1) and
    /// 0.9360675814533568 (data range 2). Tolerance 1e-9 (both sides compute in f64 from the
    /// same f32 pixels; the summation order differs).
    #[test]
    fn matches_an_independent_numpy_implementation() {
        let (x, y) = images(2, 16, 20);
        assert_abs_diff_eq!(
            ssim(x.view(), y.view(), 1.0).unwrap(),
            0.931_931_621_359_597_8,
            epsilon = 1e-9
        );
        assert_abs_diff_eq!(
            ssim(x.view(), y.view(), 2.0).unwrap(),
            0.936_067_581_453_356_8,
            epsilon = 1e-9
        );
        // Symmetric in its arguments.
        assert_abs_diff_eq!(
            ssim(y.view(), x.view(), 1.0).unwrap(),
            0.931_931_621_359_597_8,
            epsilon = 1e-9
        );
    }

    #[test]
    fn batch_agrees_and_errors_are_typed() {
        let (x, y) = images(2, 16, 20);
        let xb = ndarray::stack![
            Axis(0),
            x.view().into_shape_with_order(640).unwrap(),
            y.view().into_shape_with_order(640).unwrap()
        ];
        let yb = ndarray::stack![
            Axis(0),
            y.view().into_shape_with_order(640).unwrap(),
            y.view().into_shape_with_order(640).unwrap()
        ];
        let s = ssim_batch(xb.view(), yb.view(), [2, 16, 20], 1.0).unwrap();
        assert_abs_diff_eq!(s[0], 0.931_931_621_359_597_8, epsilon = 1e-9);
        assert_abs_diff_eq!(s[1], 1.0, epsilon = 1e-12);
        let small = Array3::<f32>::zeros((1, 10, 20));
        assert!(matches!(
            ssim(small.view(), small.view(), 1.0),
            Err(MetricError::InvalidParameter { .. })
        ));
        assert!(matches!(
            ssim(x.view(), x.view(), 0.0),
            Err(MetricError::InvalidParameter { .. })
        ));
        assert!(matches!(
            ssim(x.view(), small.view(), 1.0),
            Err(MetricError::Shape { .. })
        ));
        assert!(ssim_batch(xb.view(), yb.view(), [1, 16, 20], 1.0).is_err());
    }
}
