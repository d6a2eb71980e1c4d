//! Black-hole (EHT) imaging scores, the evaluation of EnKG section 5.3 and Table 3
//! (Zheng et al., *Ensemble Kalman Diffusion Guidance: A Derivative-free Method for Inverse
//! Problems*, arXiv 2409.20175):
//!
//! - [`gaussian_blur`]: separable Gaussian blur of an `n x n` image,
//! - [`blurred_psnr`]: PSNR after blurring both images at the EHT resolution
//!   ([`BLUR_FWHM_UAS`], converted to pixels by [`blur_sigma_px`]),
//! - [`fold_chi2`]: the folding `chi^2 -> 1 / chi^2` below 1,
//! - [`reference_protocol`]: the best-sample protocol of the EnKG reference code
//!   (enkg-pytorch `BlackHoleEvaluator`).
//!
//! All functions are pure functions of arrays; the closure chi^2 values that
//! [`reference_protocol`] folds are computed by the caller (they need the forward model).
//!
//! Non-finite values: the truth image must be finite (a typed error otherwise). Reconstructions
//! and samples may hold non-finite values (a diverged solver): the blur and the PSNR propagate
//! them (a `NaN` score), and the best-of reductions of [`reference_protocol`] skip them.

use ndarray::{Array1, ArrayView1, ArrayView2};

use crate::{psnr, MetricError, Result};

/// FWHM of the black-hole evaluation blur: 20 micro-arcseconds, the nominal resolution of the
/// EHT 2017 array at 230 GHz (lambda / |b|_max ~ 1.3 mm / 10^4 km ~ 25 uas; EHTC 2019 uses
/// a 20 uas beam), i.e. 8 pixels of 2.5 uas on the 64 x 64, 160 uas grid.
pub const BLUR_FWHM_UAS: f64 = 20.0;

/// Largest shift (pixels, each axis) of the alignment search of [`reference_protocol`]: 8 px =
/// 20 uas on the 2.5 uas grid, larger than the m-rings' centre jitter (3 uas).
pub const ALIGN_MAX_SHIFT: i64 = 8;

/// Standard deviation in pixels of the [`BLUR_FWHM_UAS`] Gaussian on an `n x n` grid of field
/// of view `fov_uas`: `sigma = FWHM / (fov / n) / sqrt(8 ln 2)`.
pub fn blur_sigma_px(fov_uas: f64, n: usize) -> Result<f64> {
    if n == 0 {
        return Err(MetricError::Empty("image grid"));
    }
    if !(fov_uas.is_finite() && fov_uas > 0.0) {
        return Err(MetricError::InvalidParameter { name: "fov_uas", reason: format!("must be finite and > 0, got {fov_uas}") });
    }
    Ok(BLUR_FWHM_UAS / (fov_uas / n as f64) / (8.0 * 2f64.ln()).sqrt())
}

/// Check an `n x n` image given as `len` values.
fn check_image(what: &'static str, len: usize, n: usize) -> Result<()> {
    if n == 0 || len == 0 {
        return Err(MetricError::Empty(what));
    }
    let nn = n.checked_mul(n).ok_or(MetricError::InvalidParameter { name: "n", reason: format!("{n} x {n} overflows") })?;
    if len != nn {
        return Err(MetricError::Shape { what, expected: nn, got: len });
    }
    Ok(())
}

/// Check that every value of `v` is finite.
fn check_finite<'a>(what: &'static str, v: impl IntoIterator<Item = &'a f32>) -> Result<()> {
    match v.into_iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Check a blur width: finite, `> 0` and at most `n` pixels (a wider blur flattens the image).
fn check_sigma(sigma_px: f64, n: usize) -> Result<()> {
    if !(sigma_px.is_finite() && sigma_px > 0.0 && sigma_px <= n as f64) {
        return Err(MetricError::InvalidParameter { name: "sigma_px", reason: format!("must be finite, > 0 and <= {n} (the image side), got {sigma_px}") });
    }
    Ok(())
}

/// Gaussian blur of an `n x n` row-major image with standard deviation `sigma_px` pixels.
///
/// The 1-D kernel is `k_t = exp(-t^2 / (2 sigma^2))` for `|t| <= r = ceil(4 sigma)`, normalised
/// to sum 1 (truncated at 4 sigma and renormalised), applied along rows then along columns
/// with zero padding: `out[i, j] = sum_s k_s sum_t k_t img[i + s, j + t]` over the indices inside
/// the image. Accumulation in `f64`, the result rounded to `f32`.
///
/// Errors: an empty image, `img.len() != n^2`, `sigma_px` not finite, not `> 0` or larger than
/// `n`. Non-finite pixels propagate to the neighbouring outputs.
pub fn gaussian_blur(img: &[f32], n: usize, sigma_px: f64) -> Result<Vec<f32>> {
    check_image("image", img.len(), n)?;
    check_sigma(sigma_px, n)?;
    Ok(blur_unchecked(img, n, sigma_px))
}

fn blur_unchecked(img: &[f32], n: usize, sigma_px: f64) -> Vec<f32> {
    let r = (4.0 * sigma_px).ceil() as i64;
    let k: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma_px * sigma_px)).exp()).collect();
    let s: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / s).collect();
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut acc = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let o = t as i64 - r;
                    let (ii, jj) = if horizontal { (i as i64, j as i64 + o) } else { (i as i64 + o, j as i64) };
                    if ii >= 0 && jj >= 0 && (ii as usize) < n && (jj as usize) < n {
                        acc += kv * src[ii as usize * n + jj as usize];
                    }
                }
                out[i * n + j] = acc;
            }
        }
        out
    };
    let src: Vec<f64> = img.iter().map(|v| *v as f64).collect();
    pass(&pass(&src, true), false).iter().map(|v| *v as f32).collect()
}

/// Blurred PSNR, the black-hole table's second column: `PSNR(G * x, G * truth)` with `G` the
/// Gaussian of standard deviation `sigma_px` ([`gaussian_blur`]; [`blur_sigma_px`] gives the
/// EHT resolution) and `PSNR = 10 log10(range^2 / MSE)` ([`psnr`]). Blurring both images at
/// the array's resolution scores only the structure the measurements can resolve (EnKG,
/// arXiv 2409.20175, section 5.3).
///
/// Errors: as [`gaussian_blur`] for either image, `x` and `truth` of different lengths, a
/// non-finite `truth`, a `range` not finite and `> 0`.
pub fn blurred_psnr(x: ArrayView1<'_, f32>, truth: ArrayView1<'_, f32>, n: usize, sigma_px: f64, range: f64) -> Result<f64> {
    check_image("reconstruction", x.len(), n)?;
    check_image("truth", truth.len(), n)?;
    check_finite("truth", truth.iter())?;
    let xb = Array1::from(gaussian_blur(&x.to_vec(), n, sigma_px)?);
    let tb = Array1::from(gaussian_blur(&truth.to_vec(), n, sigma_px)?);
    psnr(xb.view(), tb.view(), range)
}

/// `img` (n x n) moved by `(dy, dx)` pixels, zero fill: `out[i, j] = img[i - dy, j - dx]`.
fn shifted(img: &[f32], n: usize, dy: i64, dx: i64) -> Vec<f32> {
    let mut out = vec![0.0f32; n * n];
    let n_i = n as i64;
    for i in 0..n_i {
        let si = i - dy;
        if !(0..n_i).contains(&si) {
            continue;
        }
        for j in 0..n_i {
            let sj = j - dx;
            if (0..n_i).contains(&sj) {
                out[(i * n_i + j) as usize] = img[(si * n_i + sj) as usize];
            }
        }
    }
    out
}

/// `chi^2 -> 1 / chi^2` for `0 < chi^2 < 1`, `chi^2` otherwise: over-fitting the noise counts as
/// much as under-fitting it (the folding of the EnKG reference's `normalize_chisq`). Total: a
/// `NaN` stays `NaN`.
pub fn fold_chi2(c: f64) -> f64 {
    if c > 0.0 && c < 1.0 {
        1.0 / c
    } else {
        c
    }
}

/// The black-hole scores of [`reference_protocol`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceScores {
    /// Best shift-aligned PSNR over the samples (dB).
    pub psnr: f64,
    /// Best blurred PSNR of the aligned samples (dB).
    pub blurred_psnr: f64,
    /// Smallest folded reduced chi^2 of closure phases.
    pub chi2_cphase: f64,
    /// Smallest folded reduced chi^2 of log closure amplitudes.
    pub chi2_logcamp: f64,
    /// Number of samples scored.
    pub samples: usize,
}

impl ReferenceScores {
    /// `[("psnr", ..), ("blurred_psnr", ..), ("chi2_cphase", ..), ("chi2_logcamp", ..),
    /// ("samples", S)]`, the order of the reference table's columns.
    pub fn named(&self) -> Vec<(String, f64)> {
        vec![
            ("psnr".into(), self.psnr),
            ("blurred_psnr".into(), self.blurred_psnr),
            ("chi2_cphase".into(), self.chi2_cphase),
            ("chi2_logcamp".into(), self.chi2_logcamp),
            ("samples".into(), self.samples as f64),
        ]
    }
}

/// The black-hole metrics under the evaluation protocol of the EnKG reference code
/// (enkg-pytorch `BlackHoleEvaluator`; *Ensemble Kalman Diffusion Guidance*, arXiv 2409.20175,
/// Table 3), which scores every final sample and reports the best one. With `c(v)` the
/// clipping of every pixel to `[0, 1]`, `S_(dy,dx)` the integer shift with zero fill and `G` the
/// blur of standard deviation `sigma_px` ([`gaussian_blur`]):
///
/// - `psnr = max_s max_(|dy|, |dx| <= ALIGN_MAX_SHIFT) PSNR(S_(dy,dx) c(x_s), c(truth))`, peak 1
///   (closure quantities do not fix the image position; the reference searches sub-pixel shifts
///   up to a quarter of the field with bilinear sampling); the first maximising shift (dy, then
///   dx, increasing) is the sample's alignment,
/// - `blurred_psnr = max_s PSNR(G aligned_s, G c(truth))`,
/// - `chi2_cphase = min_s fold(chi2_cp,s)`, `chi2_logcamp = min_s fold(chi2_lca,s)` with
///   [`fold_chi2`] (the reference also rescales each sample to the observed flux, which leaves
///   closure phases and log closure amplitudes unchanged).
///
/// `samples` `(S, n^2)` in physical units, `truth` `n^2`, `chi2[s]` the reduced chi^2 of closure
/// phases and of log closure amplitudes of sample `s` (computed by the caller with the forward
/// model). Samples with non-finite pixels or chi^2 never win a maximum or minimum (`f64::max`
/// and `f64::min` skip `NaN`).
///
/// Errors: no samples, an empty grid, `samples.ncols()` or `truth.len() != n^2`, a non-finite
/// truth, `chi2.len() != S`, `sigma_px` as in [`gaussian_blur`].
pub fn reference_protocol(samples: ArrayView2<'_, f32>, truth: ArrayView1<'_, f32>, n: usize, sigma_px: f64, chi2: &[(f64, f64)]) -> Result<ReferenceScores> {
    if samples.nrows() == 0 {
        return Err(MetricError::Empty("samples"));
    }
    check_image("sample", samples.ncols(), n)?;
    check_image("truth", truth.len(), n)?;
    check_finite("truth", truth.iter())?;
    check_sigma(sigma_px, n)?;
    if chi2.len() != samples.nrows() {
        return Err(MetricError::Shape { what: "chi^2 pairs (one per sample)", expected: samples.nrows(), got: chi2.len() });
    }
    let clip = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| x.clamp(0.0, 1.0)).collect() };
    let truth = truth.to_vec();
    let t = Array1::from(clip(&truth));
    let tb = Array1::from(blur_unchecked(&clip(&truth), n, sigma_px));
    let (mut best_p, mut best_b) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for row in samples.rows() {
        let x = clip(&row.to_vec());
        let (mut p_best, mut aligned) = (f64::NEG_INFINITY, x.clone());
        for dy in -ALIGN_MAX_SHIFT..=ALIGN_MAX_SHIFT {
            for dx in -ALIGN_MAX_SHIFT..=ALIGN_MAX_SHIFT {
                let s = Array1::from(shifted(&x, n, dy, dx));
                let p = psnr(s.view(), t.view(), 1.0)?;
                if p > p_best {
                    p_best = p;
                    aligned = s.to_vec();
                }
            }
        }
        best_p = best_p.max(p_best);
        let b = Array1::from(blur_unchecked(&aligned, n, sigma_px));
        best_b = best_b.max(psnr(b.view(), tb.view(), 1.0)?);
    }
    let (mut cp, mut ca) = (f64::INFINITY, f64::INFINITY);
    for &(a, b) in chi2 {
        cp = cp.min(fold_chi2(a));
        ca = ca.min(fold_chi2(b));
    }
    Ok(ReferenceScores { psnr: best_p, blurred_psnr: best_b, chi2_cphase: cp, chi2_logcamp: ca, samples: samples.nrows() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::{assert_abs_diff_eq, assert_relative_eq};
    use ndarray::{Array1, Array2};

    /// A smooth ring-like test image on `n x n` in [0, 1].
    fn ring(n: usize) -> Vec<f32> {
        let c = (n as f64 - 1.0) / 2.0;
        (0..n * n)
            .map(|k| {
                let (i, j) = ((k / n) as f64 - c, (k % n) as f64 - c);
                let r = (i * i + j * j).sqrt();
                (-(r - n as f64 / 5.0).powi(2)).exp() as f32
            })
            .collect()
    }

    #[test]
    fn gaussian_blur_preserves_mass_and_matches_the_kernel_width() {
        // A centred point spreads into a Gaussian of the requested width: the second moment of
        // the blurred image along one axis is sigma^2 (within truncation and discretisation).
        let n = 33;
        let mut img = vec![0.0f32; n * n];
        img[16 * n + 16] = 1.0;
        let b = gaussian_blur(&img, n, 2.0).unwrap();
        let mass: f64 = b.iter().map(|v| *v as f64).sum();
        assert_abs_diff_eq!(mass, 1.0, epsilon = 1e-5);
        let var: f64 = (0..n * n).map(|k| b[k] as f64 * ((k / n) as f64 - 16.0).powi(2)).sum();
        assert_abs_diff_eq!(var, 4.0, epsilon = 3e-3);
    }

    #[test]
    fn gaussian_blur_rejects_bad_input() {
        assert_eq!(gaussian_blur(&[], 0, 1.0), Err(MetricError::Empty("image")));
        assert_eq!(gaussian_blur(&[0.0; 5], 2, 1.0), Err(MetricError::Shape { what: "image", expected: 4, got: 5 }));
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY, 3.0] {
            assert!(matches!(gaussian_blur(&[0.0; 4], 2, s), Err(MetricError::InvalidParameter { name: "sigma_px", .. })), "{s}");
        }
    }

    #[test]
    fn blur_sigma_is_the_fwhm_in_pixels() {
        // 20 uas on the 64 x 64, 160 uas grid: 8 px FWHM.
        assert_relative_eq!(blur_sigma_px(160.0, 64).unwrap() * (8.0 * 2f64.ln()).sqrt(), 8.0, max_relative = 1e-12);
        assert_eq!(blur_sigma_px(160.0, 0), Err(MetricError::Empty("image grid")));
        assert!(matches!(blur_sigma_px(f64::NAN, 64), Err(MetricError::InvalidParameter { name: "fov_uas", .. })));
    }

    #[test]
    fn blurred_psnr_is_the_psnr_of_the_blurred_images() {
        let n = 16;
        let t = Array1::from(ring(n));
        let x = t.mapv(|v| 0.8 * v);
        let got = blurred_psnr(x.view(), t.view(), n, 1.5, 1.0).unwrap();
        let xb = Array1::from(gaussian_blur(x.as_slice().unwrap(), n, 1.5).unwrap());
        let tb = Array1::from(gaussian_blur(t.as_slice().unwrap(), n, 1.5).unwrap());
        assert_eq!(got, psnr(xb.view(), tb.view(), 1.0).unwrap());
        assert!(got > psnr(x.view(), t.view(), 1.0).unwrap() - 1e-9);
    }

    #[test]
    fn blurred_psnr_rejects_bad_input() {
        let n = 4;
        let t = Array1::from(vec![0.5f32; n * n]);
        let short = Array1::from(vec![0.5f32; n * n - 1]);
        assert!(matches!(blurred_psnr(short.view(), t.view(), n, 1.0, 1.0), Err(MetricError::Shape { what: "reconstruction", .. })));
        assert!(matches!(blurred_psnr(t.view(), short.view(), n, 1.0, 1.0), Err(MetricError::Shape { what: "truth", .. })));
        let empty = Array1::<f32>::zeros(0);
        assert_eq!(blurred_psnr(empty.view(), empty.view(), 0, 1.0, 1.0), Err(MetricError::Empty("reconstruction")));
        let mut bad = t.clone();
        bad[3] = f32::NAN;
        assert_eq!(blurred_psnr(t.view(), bad.view(), n, 1.0, 1.0), Err(MetricError::NonFinite { what: "truth", index: 3 }));
        assert!(matches!(blurred_psnr(t.view(), t.view(), n, 1.0, 0.0), Err(MetricError::InvalidParameter { name: "range", .. })));
        // A non-finite reconstruction is a NaN score, not an error.
        assert!(blurred_psnr(bad.view(), t.view(), n, 1.0, 1.0).unwrap().is_nan());
    }

    #[test]
    fn fold_chi2_folds_below_one() {
        assert_abs_diff_eq!(fold_chi2(0.5), 2.0);
        assert_abs_diff_eq!(fold_chi2(3.0), 3.0);
        assert_abs_diff_eq!(fold_chi2(1.0), 1.0);
        assert_abs_diff_eq!(fold_chi2(0.0), 0.0);
        assert!(fold_chi2(f64::NAN).is_nan());
    }

    #[test]
    fn reference_protocol_aligns_and_keeps_the_best_sample() {
        // 0.9 x truth moved by (2, -3) is found again (its PSNR is that of 0.9 x against x,
        // whatever the shift) and wins over a flat image; chi^2 folded, minimum over samples.
        let n = 24;
        let truth = ring(n);
        let mut moved = vec![0.0f32; n * n];
        for i in 2..n {
            for j in 0..n - 3 {
                moved[i * n + j] = 0.9 * truth[(i - 2) * n + j + 3];
            }
        }
        let mut samples = Array2::<f32>::from_elem((3, n * n), 0.3);
        samples.row_mut(1).assign(&Array1::from(moved));
        samples.row_mut(2).fill(f32::NAN);
        let t = Array1::from(truth.clone());
        let chi2 = [(0.5, 4.0), (3.0, 1.5), (f64::NAN, f64::NAN)];
        let m = reference_protocol(samples.view(), t.view(), n, 1.5, &chi2).unwrap();
        let expected = psnr(t.mapv(|v| 0.9 * v).view(), t.view(), 1.0).unwrap();
        assert_abs_diff_eq!(m.psnr, expected, epsilon = 1e-6);
        assert!(m.blurred_psnr > m.psnr, "blurring removes error: {m:?}");
        assert_eq!((m.chi2_cphase, m.chi2_logcamp, m.samples), (2.0, 1.5, 3));
        let names: Vec<String> = m.named().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["psnr", "blurred_psnr", "chi2_cphase", "chi2_logcamp", "samples"]);
    }

    #[test]
    fn reference_protocol_rejects_bad_input() {
        let n = 4;
        let t = Array1::from(vec![0.5f32; n * n]);
        let s = Array2::<f32>::zeros((2, n * n));
        let chi2 = [(1.0, 1.0); 2];
        let none = Array2::<f32>::zeros((0, n * n));
        assert_eq!(reference_protocol(none.view(), t.view(), n, 1.0, &[]), Err(MetricError::Empty("samples")));
        let wide = Array2::<f32>::zeros((2, n * n + 1));
        assert!(matches!(reference_protocol(wide.view(), t.view(), n, 1.0, &chi2), Err(MetricError::Shape { what: "sample", .. })));
        let short = Array1::from(vec![0.5f32; n]);
        assert!(matches!(reference_protocol(s.view(), short.view(), n, 1.0, &chi2), Err(MetricError::Shape { what: "truth", .. })));
        let empty = Array2::<f32>::zeros((2, 0));
        assert_eq!(reference_protocol(empty.view(), t.view(), 0, 1.0, &chi2), Err(MetricError::Empty("sample")));
        let mut bad = t.clone();
        bad[0] = f32::INFINITY;
        assert_eq!(reference_protocol(s.view(), bad.view(), n, 1.0, &chi2), Err(MetricError::NonFinite { what: "truth", index: 0 }));
        assert!(matches!(reference_protocol(s.view(), t.view(), n, 0.0, &chi2), Err(MetricError::InvalidParameter { name: "sigma_px", .. })));
        assert!(matches!(reference_protocol(s.view(), t.view(), n, 1.0, &chi2[..1]), Err(MetricError::Shape { expected: 2, got: 1, .. })));
    }
}
