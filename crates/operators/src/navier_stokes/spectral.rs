//! Two-dimensional real FFTs on an `H x W` periodic grid, built from rustfft plans.
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
//! Cost. One `rfft2` or `irfft2` is `H/2` complex transforms of length `W` (two real rows
//! packed in each) plus `W/2+1` complex transforms of length `H`: about `2.5 * H * W * log2(H * W)` flops, and three passes over
//! `H * W` values.

use std::sync::Arc;

use num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::float::NsFloat;

/// FFT plans for one grid size, built once and shared by every thread.
///
/// The real transforms along axis 1 are done two rows at a time: rows `a` and `b` are packed
/// into one complex row `z = a + i b`, transformed with a complex FFT of length `W` (all `H/2`
/// pairs in one batched rustfft call), and separated with the Hermitian symmetry
/// `A[k] = (Z[k] + conj Z[W-k]) / 2`, `B[k] = (Z[k] - conj Z[W-k]) / (2 i)` (and the reverse
/// for the inverse). The pack/unpack loops are plain arithmetic on contiguous rows.
pub struct Fft2<T: NsFloat> {
    /// Grid rows (axis 0).
    pub h: usize,
    /// Grid columns (axis 1).
    pub w: usize,
    /// Number of half-spectrum columns, `w / 2 + 1`.
    pub wc: usize,
    row_fwd: Arc<dyn Fft<T>>,
    row_inv: Arc<dyn Fft<T>>,
    fwd: Arc<dyn Fft<T>>,
    inv: Arc<dyn Fft<T>>,
}

impl<T: NsFloat> std::fmt::Debug for Fft2<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft2")
            .field("h", &self.h)
            .field("w", &self.w)
            .finish()
    }
}

/// Scratch buffers for one thread: everything a transform needs, allocated once.
pub struct FftScratch<T: NsFloat> {
    /// `H/2` packed row pairs of `W` complex values.
    pairs: Vec<Complex<T>>,
    col: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

impl<T: NsFloat> Fft2<T> {
    /// Plan the transforms for an `h x w` grid (`h` even).
    pub fn new(h: usize, w: usize) -> Self {
        let mut cp = FftPlanner::<T>::new();
        let row_fwd = cp.plan_fft_forward(w);
        let row_inv = cp.plan_fft_inverse(w);
        let fwd = cp.plan_fft_forward(h);
        let inv = cp.plan_fft_inverse(h);
        Self {
            h,
            w,
            wc: w / 2 + 1,
            row_fwd,
            row_inv,
            fwd,
            inv,
        }
    }

    /// Number of complex modes of a half spectrum, `h * (w/2 + 1)`.
    pub fn spec_len(&self) -> usize {
        self.h * self.wc
    }

    /// Allocate the scratch buffers for one thread.
    pub fn scratch(&self) -> FftScratch<T> {
        let zero = Complex::new(T::zero(), T::zero());
        let cs = [&self.fwd, &self.inv, &self.row_fwd, &self.row_inv]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        FftScratch {
            pairs: vec![zero; self.h / 2 * self.w],
            col: vec![zero; self.spec_len()],
            scratch: vec![zero; cs],
        }
    }

    /// Number of complex values of one field in the packed grid layout, `(h/2) * w`.
    pub fn packed_len(&self) -> usize {
        self.h / 2 * self.w
    }

    /// `spec = rfft2(field)` (unnormalised). `field` is `h * w` row-major, `spec` is
    /// `h * (w/2+1)` column-major.
    pub fn rfft2(&self, field: &[T], spec: &mut [Complex<T>], s: &mut FftScratch<T>) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        debug_assert_eq!(field.len(), h * w);
        debug_assert_eq!(spec.len(), h * wc);
        let mut pairs = std::mem::take(&mut s.pairs);
        pack_rows(field, &mut pairs, w);
        self.forward_packed(&mut pairs, spec, s);
        s.pairs = pairs;
        let half = T::lit(0.5);
        for v in spec.iter_mut() {
            *v = *v * half;
        }
    }

    /// `field = irfft2(spec)` (divides by `h * w`). `spec` is left untouched.
    ///
    /// As in numpy/PyTorch, the imaginary parts of the `j = 0` and `j = w/2` columns after the
    /// axis-0 transform are ignored (they vanish for the spectrum of a real field).
    pub fn irfft2(&self, spec: &[Complex<T>], field: &mut [T], s: &mut FftScratch<T>) {
        debug_assert_eq!(field.len(), self.h * self.w);
        let mut col = std::mem::take(&mut s.col);
        col.copy_from_slice(spec);
        self.irfft2_unscaled_consume(&mut col, field, s);
        s.col = col;
        let scale = T::one() / T::lit((self.h * self.w) as f64);
        for v in field.iter_mut() {
            *v = *v * scale;
        }
    }

    /// `field = h * w * irfft2(spec)`, **without** the `1 / (h w)` normalisation (callers fold
    /// it into their spectral coefficients), using `spec` as scratch (its values are destroyed).
    pub fn irfft2_unscaled_consume(
        &self,
        spec: &mut [Complex<T>],
        field: &mut [T],
        s: &mut FftScratch<T>,
    ) {
        debug_assert_eq!(field.len(), self.h * self.w);
        let mut pairs = std::mem::take(&mut s.pairs);
        self.inverse_packed(spec, &mut pairs, s);
        for (z, rows) in pairs
            .chunks_exact(self.w)
            .zip(field.chunks_exact_mut(2 * self.w))
        {
            let (ra, rb) = rows.split_at_mut(self.w);
            for ((z, a), b) in z.iter().zip(ra.iter_mut()).zip(rb.iter_mut()) {
                *a = z.re;
                *b = z.im;
            }
        }
        s.pairs = pairs;
    }

    /// Forward transform of `F` real fields held in the **packed grid layout**: field `f` is
    /// `grid[f * L .. (f + 1) * L]`, `L = (h/2) w` ([`Self::packed_len`]), with
    /// `grid[p * w + j] = x[2p][j] + i x[2p+1][j]` (rows `2p` and `2p+1` as the real and
    /// imaginary parts). Viewed as `h * w` reals the layout is a permutation of the grid, so
    /// pointwise products need no unpacking. Writes `spec[f * n ..] = 2 rfft2(x_f)`
    /// (`n = h (w/2+1)`, column-major; the factor 2 of the Hermitian separation is left to the
    /// caller's coefficient tables) and destroys `grid`.
    ///
    /// All `F h/2` row transforms run in one batched rustfft call, then one pass per field
    /// separates and transposes (`2 A[k] = Z[k] + conj Z[w-k]`, `2 i B[k] = Z[k] - conj Z[w-k]`),
    /// then all `F (w/2+1)` column transforms run in one call.
    pub fn forward_packed(
        &self,
        grid: &mut [Complex<T>],
        spec: &mut [Complex<T>],
        s: &mut FftScratch<T>,
    ) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        let (pl, n) = (self.packed_len(), h * wc);
        debug_assert_eq!(grid.len() % pl, 0);
        debug_assert_eq!(grid.len() / pl * n, spec.len());
        self.row_fwd.process_with_scratch(grid, &mut s.scratch);
        for (g, sp) in grid.chunks_exact(pl).zip(spec.chunks_exact_mut(n)) {
            for (k, col) in sp.chunks_exact_mut(h).enumerate() {
                let kc = if k == 0 { 0 } else { w - k };
                for (ab, z) in col.chunks_exact_mut(2).zip(g.chunks_exact(w)) {
                    let zk = z[k];
                    let zc = z[kc].conj();
                    let d = zk - zc; // = 2 i B
                    ab[0] = zk + zc;
                    ab[1] = Complex::new(d.im, -d.re);
                }
            }
        }
        self.fwd.process_with_scratch(spec, &mut s.scratch);
    }

    /// Inverse of [`Self::forward_packed`] without normalisation: `grid` (packed layout, `F`
    /// fields) receives `h w irfft2(spec_f)`; `spec` (`F` column-major half spectra) is
    /// destroyed. The imaginary parts of the `j = 0` and `j = w/2` columns after the axis-0
    /// transform are ignored (real-field convention).
    pub fn inverse_packed(
        &self,
        spec: &mut [Complex<T>],
        grid: &mut [Complex<T>],
        s: &mut FftScratch<T>,
    ) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        let (pl, n) = (self.packed_len(), h * wc);
        debug_assert_eq!(grid.len() % pl, 0);
        debug_assert_eq!(grid.len() / pl * n, spec.len());
        self.inv.process_with_scratch(spec, &mut s.scratch);
        // Row pair p: z[k] = A[k] + i B[k], z[w - k] = conj(A[k]) + i conj(B[k]).
        for (g, sp) in grid.chunks_exact_mut(pl).zip(spec.chunks_exact(n)) {
            for (k, col) in sp.chunks_exact(h).enumerate() {
                if k == 0 || 2 * k == w {
                    for (ab, z) in col.chunks_exact(2).zip(g.chunks_exact_mut(w)) {
                        z[k] = Complex::new(ab[0].re, ab[1].re);
                    }
                } else {
                    for (ab, z) in col.chunks_exact(2).zip(g.chunks_exact_mut(w)) {
                        let (a, b) = (ab[0], ab[1]);
                        z[k] = Complex::new(a.re - b.im, a.im + b.re);
                        z[w - k] = Complex::new(a.re + b.im, b.re - a.im);
                    }
                }
            }
        }
        self.row_inv.process_with_scratch(grid, &mut s.scratch);
    }
}

/// Pack a row-major `h x w` real field into the packed grid layout (rows `2p`, `2p+1` as the
/// real and imaginary parts of complex row `p`).
pub fn pack_rows<T: NsFloat>(field: &[T], grid: &mut [Complex<T>], w: usize) {
    for (z, rows) in grid.chunks_exact_mut(w).zip(field.chunks_exact(2 * w)) {
        let (ra, rb) = rows.split_at(w);
        for ((z, &a), &b) in z.iter_mut().zip(ra).zip(rb) {
            *z = Complex::new(a, b);
        }
    }
}
