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
//! The same family with another amplitude, and without the Nyquist row and column, is the
//! initial ensemble of the EnKG reference's EKI baseline ([`GaussianRandomField::enkg_eki`]):
//! devzhk/enkg-pytorch `algo/eki.py` (`GaussianRF2d`, `alpha = 4`, `tau = 3`, `L = 2 pi`) puts
//! `s^2 sigma sqrt(2 / L^2) (|k|^2 + tau^2)^(-alpha/2)` times a complex normal on one wavenumber
//! of each pair `{k, -k}` (a half plane, Nyquist row and column dropped) and takes the imaginary
//! part of the normalised inverse FFT. Its covariance is
//! `sum_{pairs} (2 sigma^2 / L^2) (|k|^2 + tau^2)^(-alpha) cos(k . (x - y))`, which is this
//! module's form with `c_k = sigma (|k|^2 + tau^2)^(-alpha/2) / (2 pi)` on every `k` with
//! `|k1| < H/2`, `|k2| < W/2` (the sum over all `k` counts each pair twice). Pointwise standard
//! deviation about 0.15. (This is exact on the reference's square grids; on an `H != W` grid its
//! half-plane rule also keeps a few unpaired modes of the Nyquist row or column, dropped here.)
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
        let sigma = tau.powf(alpha - 1.0);
        Self::with_amplitude(h, w, alpha, tau, std::f64::consts::SQRT_2 * sigma, true)
    }

    /// The initial ensemble of the EnKG reference's EKI baseline (devzhk/enkg-pytorch
    /// `algo/eki.py`): `alpha = 4`, `tau = 3`, `c_k = 3^3 (|k|^2 + 9)^(-2) / (2 pi)`, no Nyquist
    /// modes (module docs).
    pub fn enkg_eki(h: usize, w: usize) -> Result<Self> {
        Self::eki(h, w, 4.0, 3.0)
    }

    /// The reference EKI's field (module docs) with another `alpha` and `tau`:
    /// `c_k = tau^(alpha - 1) (|k|^2 + tau^2)^(-alpha/2) / (2 pi)`, no Nyquist modes.
    pub fn eki(h: usize, w: usize, alpha: f64, tau: f64) -> Result<Self> {
        let sigma = tau.powf(alpha - 1.0);
        Self::with_amplitude(
            h,
            w,
            alpha,
            tau,
            sigma / (2.0 * std::f64::consts::PI),
            false,
        )
    }

    /// The general field: `c_k = amplitude (|k|^2 + tau^2)^(-alpha/2)` for `k != 0`, `c_0 = 0`;
    /// with `nyquist = false` also `c_k = 0` on the Nyquist row `k1 = -H/2` and column
    /// `k2 = -W/2` of even sizes (whose mode has no partner `-k` on the grid).
    pub fn with_amplitude(
        h: usize,
        w: usize,
        alpha: f64,
        tau: f64,
        amplitude: f64,
        nyquist: bool,
    ) -> Result<Self> {
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
        if !(amplitude.is_finite() && amplitude >= 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "amplitude",
                reason: format!("must be finite and >= 0, got {amplitude}"),
            });
        }
        let wave = |i: usize, n: usize| fftfreq(i, n) as f64;
        let is_nyquist = |i: usize, n: usize| n.is_multiple_of(2) && i == n / 2;
        let mut amp = vec![0.0; h * w];
        for i in 0..h {
            for j in 0..w {
                let (k1, k2) = (wave(i, h), wave(j, w));
                let dropped = !nyquist && (is_nyquist(i, h) || is_nyquist(j, w));
                amp[i * w + j] = if (i == 0 && j == 0) || dropped {
                    0.0
                } else {
                    amplitude * (k1 * k1 + k2 * k2 + tau * tau).powf(-alpha / 2.0)
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

    /// `c_k` (row-major over the `H x W` wavenumber grid, FFT order): the field's covariance is
    /// `sum_k c_k^2 cos(k . (x - y))`.
    pub fn amplitudes(&self) -> &[f64] {
        &self.amp
    }

    /// The covariance `E[w(x) w(x + (di, dj))]` between grid points `di` rows and `dj` columns
    /// apart (`sum_k c_k^2 cos(2 pi (k1 di / H + k2 dj / W))`); at `(0, 0)` the pointwise
    /// variance.
    pub fn covariance(&self, di: usize, dj: usize) -> f64 {
        let (h, w) = (self.h, self.w);
        let mut c = 0.0;
        for i in 0..h {
            for j in 0..w {
                let a = self.amp[i * w + j];
                if a != 0.0 {
                    let ph = (fftfreq(i, h) as f64 * di as f64 / h as f64
                        + fftfreq(j, w) as f64 * dj as f64 / w as f64)
                        * std::f64::consts::TAU;
                    c += a * a * ph.cos();
                }
            }
        }
        c
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
    /// The reference EKI's covariance written from its construction (devzhk/enkg-pytorch
    /// `algo/eki.py`): modes `k1 in [0, s1/2) ++ [-s1/2, 0)` (likewise `k2`), amplitude
    /// `sigma sqrt(2 / L^2) (|k|^2 + tau^2)^(-alpha/2)` (the `s1 s2` cancels the normalised
    /// inverse FFT), zero at `k = 0` and where `k1 + k2 <= 0` unless `k1 + k2 = 0` and `k1 > 0`;
    /// the imaginary part of `sum xi_k e^{i k x}` has covariance `sum amp^2 cos(k . d)`.
    fn reference_eki_covariance(s1: usize, s2: usize, di: usize, dj: usize) -> f64 {
        let (alpha, tau) = (4.0f64, 3.0f64);
        let l = 2.0 * std::f64::consts::PI;
        let sigma = tau.powf(0.5 * (2.0 * alpha - 2.0));
        let freqs = |s: usize| -> Vec<f64> {
            let h = (s / 2) as i64;
            (0..h).chain(-h..0).map(|k| k as f64).collect()
        };
        let mut c = 0.0;
        for k1 in freqs(s1) {
            for k2 in freqs(s2) {
                let kept =
                    !(k1 == 0.0 && k2 == 0.0) && !(k1 + k2 <= 0.0 && (k1 + k2 != 0.0 || k1 <= 0.0));
                if kept {
                    let a = sigma
                        * (2.0 / (l * l)).sqrt()
                        * (k1 * k1 + k2 * k2 + tau * tau).powf(-alpha / 2.0);
                    let ph = std::f64::consts::TAU
                        * (k1 * di as f64 / s1 as f64 + k2 * dj as f64 / s2 as f64);
                    c += a * a * ph.cos();
                }
            }
        }
        c
    }

    /// `enkg_eki` has exactly the covariance of the reference's construction at every lag, on
    /// the square grids the reference uses (on an `H != W` grid its half-plane rule keeps a few
    /// unpaired modes of the Nyquist row or column, which `enkg_eki` drops).
    #[test]
    fn eki_field_has_the_reference_covariance() {
        for (h, w) in [(8, 8), (10, 10), (64, 64)] {
            let g = GaussianRandomField::enkg_eki(h, w).expect("grf");
            for (di, dj) in [(0, 0), (1, 0), (0, 1), (2, 3), (h / 2, w / 2), (h - 1, 1)] {
                let (got, want) = (g.covariance(di, dj), reference_eki_covariance(h, w, di, dj));
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1e-6),
                    "{h}x{w} lag ({di}, {dj}): {got} vs {want}"
                );
            }
        }
        // The pointwise standard deviation quoted in the module docs.
        let sd = GaussianRandomField::enkg_eki(64, 64)
            .expect("grf")
            .covariance(0, 0)
            .sqrt();
        assert!((sd - 0.15).abs() < 0.01, "pointwise sd {sd}");
    }

    /// Samples of the EKI field: empirical covariances at several lags (averaged over positions
    /// and 2000 fields) match `covariance` within 6% of the variance (Monte Carlo error about
    /// 2%); every sample has zero mean and no Nyquist component.
    #[test]
    fn eki_field_samples_match_their_covariance() {
        use rand::SeedableRng;
        let (h, w) = (16usize, 16usize);
        let g = GaussianRandomField::enkg_eki(h, w).expect("grf");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let lags = [(0usize, 0usize), (1, 0), (0, 2), (3, 5), (8, 8)];
        let mut est = [0.0f64; 5];
        let count = 2000;
        for _ in 0..count {
            let f = g.sample(&mut rng);
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            assert!(mean.abs() < 1e-12, "mean {mean}");
            let nyq: f64 = (0..h * w)
                .map(|p| {
                    if (p / w + p % w) % 2 == 0 {
                        f[p]
                    } else {
                        -f[p]
                    }
                })
                .sum();
            let row_nyq: f64 = (0..h * w)
                .map(|p| if (p / w) % 2 == 0 { f[p] } else { -f[p] })
                .sum();
            assert!(
                nyq.abs() < 1e-10 && row_nyq.abs() < 1e-10,
                "Nyquist {nyq} {row_nyq}"
            );
            for (e, &(di, dj)) in est.iter_mut().zip(&lags) {
                let mut acc = 0.0;
                for i in 0..h {
                    for j in 0..w {
                        acc += f[i * w + j] * f[(i + di) % h * w + (j + dj) % w];
                    }
                }
                *e += acc / (h * w * count) as f64;
            }
        }
        let var = g.covariance(0, 0);
        for (e, &(di, dj)) in est.iter().zip(&lags) {
            let want = g.covariance(di, dj);
            assert!(
                (e - want).abs() < 0.06 * var,
                "lag ({di}, {dj}): sample {e:.5} vs {want:.5} (variance {var:.5})"
            );
        }
    }
}
