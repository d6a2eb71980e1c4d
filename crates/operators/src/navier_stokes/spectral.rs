//! Two-dimensional real FFTs on an `H x W` periodic grid, built from rustfft/realfft plans.
//!
//! Layout. A real field is stored row-major, `f[i * W + j]`, `i` along axis 0 ("x", size `H`)
//! and `j` along axis 1 ("y", size `W`). Its half spectrum (the `rfft2` of numpy/PyTorch:
//! real-to-complex along axis 1, then complex along axis 0) has `H x Wc` modes, `Wc = W/2 + 1`,
//! and is stored **column-major**, `F[j * H + i]`, so that the complex transforms along axis 0
//! run on contiguous columns in a single rustfft call. The layout is internal to the solver.
//!
//! Conventions match `torch.fft.rfft2` / `irfft2` with the default ("backward") norm: the
//! forward transform is unnormalised, the inverse divides by `H * W`.
//!
//! Cost. One `rfft2` or `irfft2` is `H` real transforms of length `W` plus `W/2+1` complex
//! transforms of length `H`: about `2.5 * H * W * log2(H * W)` flops, and three passes over
//! `H * W` values.

use std::sync::Arc;

use num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use super::float::NsFloat;

/// FFT plans for one grid size, built once and shared by every thread.
pub struct Fft2<T: NsFloat> {
    /// Grid rows (axis 0).
    pub h: usize,
    /// Grid columns (axis 1).
    pub w: usize,
    /// Number of half-spectrum columns, `w / 2 + 1`.
    pub wc: usize,
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    fwd: Arc<dyn Fft<T>>,
    inv: Arc<dyn Fft<T>>,
}

impl<T: NsFloat> std::fmt::Debug for Fft2<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft2").field("h", &self.h).field("w", &self.w).finish()
    }
}

/// Scratch buffers for one thread: everything a transform needs, allocated once.
pub struct FftScratch<T: NsFloat> {
    row_real: Vec<T>,
    row_cplx: Vec<Complex<T>>,
    col: Vec<Complex<T>>,
    real_scratch: Vec<Complex<T>>,
    cplx_scratch: Vec<Complex<T>>,
}

impl<T: NsFloat> Fft2<T> {
    /// Plan the transforms for an `h x w` grid.
    pub fn new(h: usize, w: usize) -> Self {
        let mut rp = RealFftPlanner::<T>::new();
        let r2c = rp.plan_fft_forward(w);
        let c2r = rp.plan_fft_inverse(w);
        let mut cp = FftPlanner::<T>::new();
        let fwd = cp.plan_fft_forward(h);
        let inv = cp.plan_fft_inverse(h);
        Self { h, w, wc: w / 2 + 1, r2c, c2r, fwd, inv }
    }

    /// Number of complex modes of a half spectrum, `h * (w/2 + 1)`.
    pub fn spec_len(&self) -> usize {
        self.h * self.wc
    }

    /// Allocate the scratch buffers for one thread.
    pub fn scratch(&self) -> FftScratch<T> {
        let zero = Complex::new(T::zero(), T::zero());
        let rs = self.r2c.get_scratch_len().max(self.c2r.get_scratch_len());
        let cs = self.fwd.get_inplace_scratch_len().max(self.inv.get_inplace_scratch_len());
        FftScratch {
            row_real: vec![T::zero(); self.w],
            row_cplx: vec![zero; self.wc],
            col: vec![zero; self.spec_len()],
            real_scratch: vec![zero; rs],
            cplx_scratch: vec![zero; cs],
        }
    }

    /// `spec = rfft2(field)` (unnormalised). `field` is `h * w` row-major, `spec` is
    /// `h * (w/2+1)` column-major.
    pub fn rfft2(&self, field: &[T], spec: &mut [Complex<T>], s: &mut FftScratch<T>) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        debug_assert_eq!(field.len(), h * w);
        debug_assert_eq!(spec.len(), h * wc);
        for i in 0..h {
            s.row_real.copy_from_slice(&field[i * w..(i + 1) * w]);
            // Lengths are right by construction, so the only error realfft can report is
            // impossible here.
            let _ = self.r2c.process_with_scratch(&mut s.row_real, &mut s.row_cplx, &mut s.real_scratch);
            for (j, v) in s.row_cplx.iter().enumerate() {
                spec[j * h + i] = *v;
            }
        }
        self.fwd.process_with_scratch(spec, &mut s.cplx_scratch);
    }

    /// `field = irfft2(spec)` (divides by `h * w`). `spec` is left untouched.
    ///
    /// As in numpy/PyTorch, the imaginary parts of the `j = 0` and `j = w/2` columns after the
    /// axis-0 transform are ignored (they vanish for the spectrum of a real field).
    pub fn irfft2(&self, spec: &[Complex<T>], field: &mut [T], s: &mut FftScratch<T>) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        debug_assert_eq!(field.len(), h * w);
        s.col.copy_from_slice(spec);
        self.inv.process_with_scratch(&mut s.col, &mut s.cplx_scratch);
        let scale = T::one() / T::lit((h * w) as f64);
        for i in 0..h {
            for j in 0..wc {
                s.row_cplx[j] = s.col[j * h + i];
            }
            s.row_cplx[0].im = T::zero();
            if w % 2 == 0 {
                s.row_cplx[wc - 1].im = T::zero();
            }
            let out = &mut field[i * w..(i + 1) * w];
            let _ = self.c2r.process_with_scratch(&mut s.row_cplx, out, &mut s.real_scratch);
            for v in out.iter_mut() {
                *v = *v * scale;
            }
        }
    }
}
