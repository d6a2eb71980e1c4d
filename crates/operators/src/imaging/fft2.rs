//! A real 2-D FFT of a fixed size `nh x nw`, planned once and shared by every row of a batch.
//!
//! Layout: the half spectrum `Z[k, l]`, `0 <= k < nh`, `0 <= l <= nw/2`, is stored transposed,
//! `spec[l * nh + k]`, so that the column transforms run over contiguous chunks. The forward
//! transform is `Z[k, l] = sum_{n, m} x[n, m] e^{-2 pi i (k n / nh + l m / nw)}` (no scaling);
//! [`RealFft2::inverse`] is the unscaled inverse (`nh * nw` times the true inverse).
//!
//! Cost of one transform: `rows` real row FFTs of length `nw` (about `2.5 nw log2 nw` flops
//! each) plus `nw/2 + 1` complex column FFTs of length `nh` (about `5 nh log2 nh` each): about
//! `2.5 nh nw log2(nh nw)` flops when every row is non-zero. Only the rows that can be non-zero
//! are transformed on the way in, and only the rows that are needed on the way out.

use std::sync::Arc;

use num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::{OperatorError, Result};

/// Smallest `n' >= n` whose prime factors are all in {2, 3, 5, 7} (fast rustfft sizes).
#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87, the MSRV is 1.85
pub(crate) fn fast_len(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5, 7] {
            while r % p == 0 {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// Plans for a real `nh x nw` 2-D FFT.
pub(crate) struct RealFft2 {
    pub nh: usize,
    pub nw: usize,
    /// `nw / 2 + 1`, the number of stored columns.
    pub nwc: usize,
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

/// Per-thread buffers for [`RealFft2`].
pub(crate) struct Fft2Buf {
    row_re: Vec<f32>,
    row_c: Vec<Complex32>,
    /// The transposed half spectrum, `spec[l * nh + k]`.
    pub spec: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

fn fft_err(row: usize, e: impl std::fmt::Display) -> OperatorError {
    OperatorError::SampleFailed {
        row,
        reason: format!("FFT failed: {e}"),
    }
}

impl RealFft2 {
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

    pub fn buffers(&self) -> Fft2Buf {
        Fft2Buf {
            row_re: vec![0.0; self.nw],
            row_c: vec![Complex32::new(0.0, 0.0); self.nwc],
            spec: vec![Complex32::new(0.0, 0.0); self.nwc * self.nh],
            scratch: vec![Complex32::new(0.0, 0.0); self.scratch_len],
        }
    }

    /// Half spectrum of the image whose rows `0..rows` are written by `fill(n, row)` (a zeroed
    /// slice of length `nw`) and whose other rows are zero. `err_row` names the particle in errors.
    pub fn forward<F>(
        &self,
        b: &mut Fft2Buf,
        rows: usize,
        err_row: usize,
        mut fill: F,
    ) -> Result<()>
    where
        F: FnMut(usize, &mut [f32]),
    {
        let (nh, nwc) = (self.nh, self.nwc);
        let zero = Complex32::new(0.0, 0.0);
        for n in 0..rows.min(nh) {
            b.row_re.iter_mut().for_each(|v| *v = 0.0);
            fill(n, &mut b.row_re);
            self.r2c
                .process_with_scratch(&mut b.row_re, &mut b.row_c, &mut b.scratch)
                .map_err(|e| fft_err(err_row, e))?;
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

    /// Unscaled inverse of the Hermitian spectrum in `b.spec` (destroyed); rows `0..rows` of the
    /// real result are handed to `sink(n, row)`.
    pub fn inverse<S>(
        &self,
        b: &mut Fft2Buf,
        rows: usize,
        err_row: usize,
        mut sink: S,
    ) -> Result<()>
    where
        S: FnMut(usize, &[f32]),
    {
        let (nh, nw, nwc) = (self.nh, self.nw, self.nwc);
        self.col_inv
            .process_with_scratch(&mut b.spec, &mut b.scratch);
        for n in 0..rows.min(nh) {
            for l in 0..nwc {
                b.row_c[l] = b.spec[l * nh + n];
            }
            // The DC (and, for even nw, Nyquist) bins of a real row are real; drop round-off.
            b.row_c[0].im = 0.0;
            if nw % 2 == 0 {
                b.row_c[nwc - 1].im = 0.0;
            }
            self.c2r
                .process_with_scratch(&mut b.row_c, &mut b.row_re, &mut b.scratch)
                .map_err(|e| fft_err(err_row, e))?;
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
    fn fast_len_picks_smooth_sizes() {
        assert_eq!(fast_len(316), 320);
        assert_eq!(fast_len(1), 1);
        assert_eq!(fast_len(11), 12);
        assert_eq!(fast_len(49), 49);
    }

    #[test]
    fn roundtrip_and_against_direct_dft() {
        let (nh, nw) = (6usize, 5usize);
        let f = RealFft2::new(nh, nw);
        let mut b = f.buffers();
        let x: Vec<f32> = (0..nh * nw).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        f.forward(&mut b, 4, 0, |n, row| {
            row.copy_from_slice(&x[n * nw..(n + 1) * nw])
        })
        .unwrap();
        // direct DFT of the image with rows 4.. zeroed
        for k in 0..nh {
            for l in 0..f.nwc {
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
        f.inverse(&mut b, nh, 0, |n, row| {
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
}
