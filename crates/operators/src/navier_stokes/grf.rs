//! Gaussian random field on the `2 pi` torus: the initial vorticity of the FNO/PINO/EnKG data.
//!
//! The field is
//!
//! ```text
//! w(x) = Re sum_k c_k (a_k + i b_k) e^{i k . x},   a_k, b_k ~ N(0, 1) iid,
//! c_k  = sqrt(2) sigma (|k|^2 + tau^2)^(-alpha/2),  c_0 = 0,  sigma = tau^((2 alpha - 2)/2),
//! ```
//!
//! summed over the `H x W` integer wavenumbers `k1 in [-H/2, H/2)`, `k2 in [-W/2, W/2)`
//! ([`diffinv_fft::fftfreq`], numpy's order; for odd sizes `-(H-1)/2 ..= (H-1)/2`). This is
//! the sampler of the FNO/PINO code (`GaussianRF(2, s, L = 2 pi, alpha = 2.5, tau = 7)`:
//! `sqrt_eig = s^2 sqrt(2) sigma (4 pi^2/L^2 |k|^2 + tau^2)^(-alpha/2)` followed by
//! `ifftn(...).real`, whose `1/s^2` cancels the `s^2`). Its covariance is
//! `E[w(x) w(y)] = sum_k c_k^2 cos(k . (x - y))`, i.e. the operator
//! `2 sigma^2 (-Lap + tau^2)^(-alpha)` on the unnormalised Fourier basis, with
//! `sigma^2 = tau^(2 alpha - 2) = 7^3` for the defaults. The FNO paper writes the covariance
//! as `7^(3/2) (-Lap + 49 I)^(-2.5)`: `7^(3/2)` is the code's `sigma`, the amplitude of the
//! square root, and we follow the code (that is what generated the data). The pointwise
//! standard deviation is about 2.0 for the defaults.
//!
//! Cost: one complex `H x W` FFT per sample.

use diffinv_fft::{fftfreq, Complex, ComplexFft2, FftDirection};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::{OperatorError, Result};

/// Sampler of the Gaussian random field; the FFT plan is built once.
pub struct GaussianRandomField {
    h: usize,
    w: usize,
    /// `c_k`, row-major over the `H x W` wavenumber grid (FFT order).
    amp: Vec<f64>,
    fft: ComplexFft2<f64>,
}

impl std::fmt::Debug for GaussianRandomField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaussianRandomField")
            .field("h", &self.h)
            .field("w", &self.w)
            .finish()
    }
}

impl GaussianRandomField {
    /// The FNO/EnKG field: `alpha = 2.5`, `tau = 7`.
    pub fn fno(h: usize, w: usize) -> Result<Self> {
        Self::new(h, w, 2.5, 7.0)
    }

    /// A field with smoothness `alpha` and inverse length scale `tau` (sigma from the code's
    /// default `tau^(alpha - 1)`).
    pub fn new(h: usize, w: usize, alpha: f64, tau: f64) -> Result<Self> {
        if h < 2 || w < 2 {
            return Err(OperatorError::InvalidParameter {
                name: "resolution",
                reason: format!("{h} x {w} too small"),
            });
        }
        if !(alpha.is_finite() && alpha > 0.0 && tau.is_finite() && tau > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "alpha/tau",
                reason: format!("must be positive, got alpha {alpha}, tau {tau}"),
            });
        }
        let sigma = tau.powf(alpha - 1.0);
        let wave = |i: usize, n: usize| fftfreq(i, n) as f64;
        let mut amp = vec![0.0; h * w];
        for i in 0..h {
            for j in 0..w {
                let (k1, k2) = (wave(i, h), wave(j, w));
                amp[i * w + j] = if i == 0 && j == 0 {
                    0.0
                } else {
                    std::f64::consts::SQRT_2
                        * sigma
                        * (k1 * k1 + k2 * k2 + tau * tau).powf(-alpha / 2.0)
                };
            }
        }
        Ok(Self {
            h,
            w,
            amp,
            fft: ComplexFft2::new(h, w),
        })
    }

    /// Grid shape `(H, W)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// Draw one field (`H * W`, row-major) from `rng`. The draws are taken in row-major
    /// wavenumber order, real part then imaginary part.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let mut c: Vec<Complex<f64>> = self
            .amp
            .iter()
            .map(|&a| {
                let re: f64 = rng.sample(StandardNormal);
                let im: f64 = rng.sample(StandardNormal);
                Complex::new(a * re, a * im)
            })
            .collect();
        // Unnormalised inverse 2-D FFT.
        self.fft.process(&mut c, FftDirection::Inverse);
        c.into_iter().map(|z| z.re).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c_k = c_{-k}` on every grid, odd sizes included (the wavenumbers are numpy's `fftfreq`:
    /// on a grid of 5 they are `0, 1, 2, -2, -1`, not `0, 1, -3, -2, -1`).
    #[test]
    fn amplitudes_are_even_in_k() {
        for (h, w) in [(4, 6), (5, 5), (7, 4), (9, 11)] {
            let g = GaussianRandomField::fno(h, w).expect("grf");
            for i in 0..h {
                for j in 0..w {
                    let (a, b) = (g.amp[i * w + j], g.amp[(h - i) % h * w + (w - j) % w]);
                    assert!(
                        (a - b).abs() <= 1e-15 * a.abs(),
                        "{h}x{w} ({i}, {j}): {a} vs {b}"
                    );
                }
            }
        }
    }
}
