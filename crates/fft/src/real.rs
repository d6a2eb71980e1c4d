//! A real 2-D FFT of a fixed size `nh x nw` (`f32`), planned once and shared by every row of a
//! batch.

use std::sync::Arc;

use num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::FftError;

/// Plans for a real `nh x nw` 2-D FFT, built once per size and shared (read-only) by every
/// thread; each thread brings its own [`Fft2Buf`].
///
/// Definition. The forward transform is the half spectrum
/// `Z[k, l] = sum_{n < nh, m < nw} x[n, m] e^{-2 pi i (k n / nh + l m / nw)}`,
/// `0 <= k < nh`, `0 <= l <= nw/2` (the other half follows from `Z[-k, -l] = conj Z[k, l]`).
/// It is stored transposed, `spec[l * nh + k]`, so that the column transforms run over
/// contiguous chunks in one batched call.
///
/// Scaling. Neither direction is scaled: [`RealFft2::inverse`] returns `nh * nw` times the true
/// inverse, so `inverse(forward(x)) = nh nw x`. Callers fold `1 / (nh nw)` (or the unitary
/// `1 / sqrt(nh nw)` per direction) into their spectral factors.
///
/// Cost of one transform: `rows` real row FFTs of length `nw` (about `2.5 nw log2 nw` flops
/// each) plus `nw/2 + 1` complex column FFTs of length `nh` (about `5 nh log2 nh` each): about
/// `2.5 nh nw log2(nh nw)` flops when every row is non-zero. Only the rows that can be non-zero
/// are transformed on the way in (`rows` of [`RealFft2::forward`]), and only the rows that are
/// needed on the way out (`rows` of [`RealFft2::inverse`]).
pub struct RealFft2 {
    nh: usize,
    nw: usize,
    nwc: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
    scratch_len: usize,
}

impl std::fmt::Debug for RealFft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealFft2")
            .field("nh", &self.nh)
            .field("nw", &self.nw)
            .finish()
    }
}

/// Per-thread buffers for one [`RealFft2`] (from [`RealFft2::buffers`]).
#[derive(Debug, Clone)]
pub struct Fft2Buf {
    row_re: Vec<f32>,
    row_c: Vec<Complex32>,
    /// The transposed half spectrum, `spec[l * nh + k]`, `nh * (nw/2 + 1)` values: written by
    /// [`RealFft2::forward`], read (and destroyed) by [`RealFft2::inverse`]; callers multiply
    /// it in place in between. Its length must not change.
    pub spec: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

fn buffer_err(e: impl std::fmt::Display) -> FftError {
    FftError::Buffer(e.to_string())
}

impl RealFft2 {
    /// Plan the transforms of an `nh x nw` grid (`nh, nw >= 1`).
    pub fn new(nh: usize, nw: usize) -> Self {
        let mut rp = RealFftPlanner::<f32>::new();
        let r2c = rp.plan_fft_forward(nw);
        let c2r = rp.plan_fft_inverse(nw);
        let mut cp = FftPlanner::<f32>::new();
        let col_fwd = cp.plan_fft_forward(nh);
        let col_inv = cp.plan_fft_inverse(nh);
        let scratch_len = r2c
            .get_scratch_len()
            .max(c2r.get_scratch_len())
            .max(col_fwd.get_inplace_scratch_len())
            .max(col_inv.get_inplace_scratch_len());
        Self {
            nh,
            nw,
            nwc: nw / 2 + 1,
            r2c,
            c2r,
            col_fwd,
            col_inv,
            scratch_len,
        }
    }

    /// Grid rows.
    pub fn nh(&self) -> usize {
        self.nh
    }

    /// Grid columns.
    pub fn nw(&self) -> usize {
        self.nw
    }

    /// `nw / 2 + 1`, the number of stored spectrum columns.
    pub fn nwc(&self) -> usize {
        self.nwc
    }

    /// Whether `b` has the lengths of this plan's buffers.
    fn check(&self, b: &Fft2Buf) -> Result<(), FftError> {
        let ok = b.row_re.len() == self.nw
            && b.row_c.len() == self.nwc
            && b.spec.len() == self.nh * self.nwc
            && b.scratch.len() >= self.scratch_len;
        if ok {
            Ok(())
        } else {
            Err(FftError::Buffer(format!(
                "buffers of another plan (spectrum of {} values, this {} x {} plan needs {})",
                b.spec.len(),
                self.nh,
                self.nw,
                self.nh * self.nwc
            )))
        }
    }

    /// Allocate the buffers of one thread.
    pub fn buffers(&self) -> Fft2Buf {
        Fft2Buf {
            row_re: vec![0.0; self.nw],
            row_c: vec![Complex32::new(0.0, 0.0); self.nwc],
            spec: vec![Complex32::new(0.0, 0.0); self.nwc * self.nh],
            scratch: vec![Complex32::new(0.0, 0.0); self.scratch_len],
        }
    }

    /// Half spectrum (into `b.spec`) of the image whose rows `0..rows` are written by
    /// `fill(n, row)` (a zeroed slice of length `nw`) and whose other rows are zero.
    ///
    /// # Errors
    /// [`FftError::Buffer`] when `b` was not made by this plan's [`RealFft2::buffers`].
    pub fn forward<F>(&self, b: &mut Fft2Buf, rows: usize, mut fill: F) -> Result<(), FftError>
    where
        F: FnMut(usize, &mut [f32]),
    {
        self.check(b)?;
        let (nh, nwc) = (self.nh, self.nwc);
        let zero = Complex32::new(0.0, 0.0);
        for n in 0..rows.min(nh) {
            b.row_re.iter_mut().for_each(|v| *v = 0.0);
            fill(n, &mut b.row_re);
            self.r2c
                .process_with_scratch(&mut b.row_re, &mut b.row_c, &mut b.scratch)
                .map_err(buffer_err)?;
            for (l, z) in b.row_c.iter().enumerate() {
                b.spec[l * nh + n] = *z;
            }
        }
        for l in 0..nwc {
            b.spec[l * nh + rows.min(nh)..(l + 1) * nh]
                .iter_mut()
                .for_each(|v| *v = zero);
        }
        self.col_fwd
            .process_with_scratch(&mut b.spec, &mut b.scratch);
        Ok(())
    }

    /// Unscaled inverse of the Hermitian half spectrum in `b.spec` (destroyed): rows `0..rows`
    /// of the real result (`nh nw` times the true inverse) are handed to `sink(n, row)`.
    ///
    /// The DC (and, for even `nw`, Nyquist) bins of each row are taken as real (their
    /// imaginary parts, round-off for the spectrum of a real image, are dropped).
    ///
    /// # Errors
    /// [`FftError::Buffer`] when `b` was not made by this plan's [`RealFft2::buffers`].
    pub fn inverse<S>(&self, b: &mut Fft2Buf, rows: usize, mut sink: S) -> Result<(), FftError>
    where
        S: FnMut(usize, &[f32]),
    {
        self.check(b)?;
        let (nh, nw, nwc) = (self.nh, self.nw, self.nwc);
        self.col_inv
            .process_with_scratch(&mut b.spec, &mut b.scratch);
        for n in 0..rows.min(nh) {
            for l in 0..nwc {
                b.row_c[l] = b.spec[l * nh + n];
            }
            b.row_c[0].im = 0.0;
            if nw % 2 == 0 {
                b.row_c[nwc - 1].im = 0.0;
            }
            self.c2r
                .process_with_scratch(&mut b.row_c, &mut b.row_re, &mut b.scratch)
                .map_err(buffer_err)?;
            sink(n, &b.row_re);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_against_direct_dft() {
        let (nh, nw) = (6usize, 5usize);
        let f = RealFft2::new(nh, nw);
        let mut b = f.buffers();
        let x: Vec<f32> = (0..nh * nw).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        f.forward(&mut b, 4, |n, row| {
            row.copy_from_slice(&x[n * nw..(n + 1) * nw])
        })
        .unwrap();
        // direct DFT of the image with rows 4.. zeroed
        for k in 0..nh {
            for l in 0..f.nwc() {
                let mut acc = num_complex::Complex64::new(0.0, 0.0);
                for n in 0..4 {
                    for m in 0..nw {
                        let ph = -2.0
                            * std::f64::consts::PI
                            * ((k * n) as f64 / nh as f64 + (l * m) as f64 / nw as f64);
                        acc += x[n * nw + m] as f64 * num_complex::Complex64::from_polar(1.0, ph);
                    }
                }
                let z = b.spec[l * nh + k];
                assert!((z.re as f64 - acc.re).abs() < 1e-3 && (z.im as f64 - acc.im).abs() < 1e-3);
            }
        }
        let mut back = vec![0.0f32; nh * nw];
        f.inverse(&mut b, nh, |n, row| {
            back[n * nw..(n + 1) * nw].copy_from_slice(row)
        })
        .unwrap();
        for n in 0..nh {
            for m in 0..nw {
                let want = if n < 4 { x[n * nw + m] } else { 0.0 };
                assert!((back[n * nw + m] / (nh * nw) as f32 - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn buffers_of_another_plan_are_an_error() {
        let (f, g) = (RealFft2::new(4, 6), RealFft2::new(5, 6));
        let mut b = g.buffers();
        assert!(matches!(
            f.forward(&mut b, 4, |_, _| {}),
            Err(FftError::Buffer(_))
        ));
        assert!(matches!(
            f.inverse(&mut b, 4, |_, _| {}),
            Err(FftError::Buffer(_))
        ));
        let mut b = RealFft2::new(4, 8).buffers();
        assert!(f.forward(&mut b, 4, |_, _| {}).is_err());
    }
}
