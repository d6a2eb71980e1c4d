//! A stationary Gaussian random field on an `H x W` periodic grid: a Gaussian prior that is
//! diagonal in the Fourier basis.
//!
//! With `F` the unitary 2-D DFT, the covariance is `C = F^* diag(lambda) F`, where `lambda_k >= 0`
//! is the variance of Fourier mode `k` (Hermitian-symmetric: `lambda_k = lambda_{-k}`, so fields
//! are real). The exact denoiser is the Wiener filter
//!
//! `D(x; sigma) = mu + F^* diag(lambda / (lambda + sigma^2)) F (x - mu)`,
//!
//! and a draw is `mu + F^* diag(sqrt(lambda)) F z` with `z ~ N(0, I)` white (real) noise.

use diffinv_fft::{Complex64, ComplexFft2, FftDirection};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::denoiser::{check_input, check_sigma};
use crate::gaussian::sample_rows;
use crate::rng::fill_normal_f64;
use crate::{Denoiser, PriorError, Result};

/// A Gaussian random field, diagonal in the Fourier basis.
#[derive(Clone)]
pub struct FourierGaussian {
    h: usize,
    w: usize,
    mean: f64,
    /// `lambda`, shape `(H, W)`, indexed by DFT frequency indices.
    spectrum: Array2<f64>,
    fft: ComplexFft2<f64>,
}

impl std::fmt::Debug for FourierGaussian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FourierGaussian").field("h", &self.h).field("w", &self.w).field("mean", &self.mean).finish()
    }
}

/// Signed frequency of DFT index `i` on a grid of `n` points, in `(-n/2, n/2]` (the shared
/// helper of `diffinv-fft`, re-exported here).
pub use diffinv_fft::signed_freq;

impl FourierGaussian {
    /// Field with constant mean `mean` and mode variances `spectrum` `(H, W)` (Hermitian
    /// symmetric, finite, `>= 0`).
    pub fn new(mean: f64, spectrum: Array2<f64>) -> Result<Self> {
        let (h, w) = spectrum.dim();
        if h == 0 || w == 0 {
            return Err(PriorError::InvalidParameter { name: "spectrum", reason: "empty grid".into() });
        }
        if !mean.is_finite() {
            return Err(PriorError::InvalidParameter { name: "mean", reason: "non-finite".into() });
        }
        for i in 0..h {
            for j in 0..w {
                let l = spectrum[[i, j]];
                if !(l.is_finite() && l >= 0.0) {
                    return Err(PriorError::InvalidParameter { name: "spectrum", reason: format!("entry ({i}, {j}) = {l} must be finite and >= 0") });
                }
                let m = spectrum[[(h - i) % h, (w - j) % w]];
                if (l - m).abs() > 1e-12 * l.abs().max(m.abs()).max(1e-300) {
                    return Err(PriorError::InvalidParameter { name: "spectrum", reason: format!("not Hermitian symmetric at ({i}, {j})") });
                }
            }
        }
        Ok(Self { h, w, mean, spectrum, fft: ComplexFft2::new(h, w) })
    }

    /// Field whose mode variances are `f(kx, ky)` of the signed integer frequencies (`kx` along
    /// the width, `ky` along the height); `f` must be even in `(kx, ky)`.
    pub fn from_fn(h: usize, w: usize, mean: f64, f: impl Fn(i64, i64) -> f64) -> Result<Self> {
        let spectrum = Array2::from_shape_fn((h, w), |(i, j)| f(signed_freq(j, w), signed_freq(i, h)));
        Self::new(mean, spectrum)
    }

    /// Grid height.
    pub fn height(&self) -> usize {
        self.h
    }
    /// Grid width.
    pub fn width(&self) -> usize {
        self.w
    }
    /// Mode variances.
    pub fn spectrum(&self) -> &Array2<f64> {
        &self.spectrum
    }

    /// Unitary 2-D DFT in place (`inverse` selects `F^*`).
    fn fft2(&self, buf: &mut [Complex64], inverse: bool) {
        self.fft.process(buf, if inverse { FftDirection::Inverse } else { FftDirection::Forward });
        let s = 1.0 / ((self.h * self.w) as f64).sqrt();
        buf.iter_mut().for_each(|v| *v *= s);
    }

    /// Apply `mu + F^* diag(filter(lambda)) F (x - mu)` to one row.
    fn filter_row(&self, x: &[f64], out: &mut [f64], filter: impl Fn(f64) -> f64) {
        let mut buf: Vec<Complex64> = x.iter().map(|v| Complex64::new(v - self.mean, 0.0)).collect();
        self.fft2(&mut buf, false);
        for (b, l) in buf.iter_mut().zip(self.spectrum.iter()) {
            *b *= filter(*l);
        }
        self.fft2(&mut buf, true);
        for (o, b) in out.iter_mut().zip(buf) {
            *o = b.re + self.mean;
        }
    }

    /// `n` independent draws, row `i` from stream `(seed, SAMPLE, 0, i)`.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        let d = self.h * self.w;
        sample_rows(n, d, seed, |rng, out| {
            let mut z = vec![0.0; d];
            fill_normal_f64(rng, &mut z);
            // Filter white noise around zero: the mean is added back by filter_row.
            let shifted: Vec<f64> = z.iter().map(|v| v + self.mean).collect();
            self.filter_row(&shifted, out, |l| l.sqrt());
        })
    }
}

impl Denoiser for FourierGaussian {
    fn dim(&self) -> usize {
        self.h * self.w
    }
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "denoiser input")?;
        check_sigma(sigma)?;
        let s2 = (sigma as f64) * (sigma as f64);
        let mut out = Array2::<f32>::zeros(x.raw_dim());
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0))).for_each(|(mut o, xr)| {
            let xv: Vec<f64> = xr.iter().map(|v| *v as f64).collect();
            let mut r = vec![0.0; xv.len()];
            self.filter_row(&xv, &mut r, |l| l / (l + s2));
            for (a, b) in o.iter_mut().zip(r) {
                *a = b as f32;
            }
        });
        Ok(out)
    }
    /// The Wiener filter is linear and symmetric: the vjp applies the same filter (without the
    /// mean) to `v`.
    fn vjp(&self, x: ArrayView2<'_, f32>, sigma: f32, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_input(x, self.dim(), "vjp point")?;
        check_input(v, self.dim(), "vjp cotangent")?;
        if v.nrows() != x.nrows() {
            return Err(PriorError::Shape { what: "vjp cotangent rows", expected: x.nrows(), got: v.nrows() });
        }
        check_sigma(sigma)?;
        let shifted = v.mapv(|a| a + self.mean as f32);
        let d = self.denoise(shifted.view(), sigma)?;
        Ok(d.mapv(|a| a - self.mean as f32))
    }
}
