//! A complex 2-D FFT of a fixed size `h x w`, in place on a row-major grid.

use std::sync::Arc;

use num_complex::Complex;
use rustfft::{Fft, FftDirection, FftNum, FftPlanner};

/// Plans for a complex `h x w` 2-D FFT (rows of length `w`, columns of length `h`), built once
/// per size and shared (read-only) by every thread.
///
/// Definition. On a row-major grid `x[n * w + m]`, [`ComplexFft2::process`] computes in place
/// `X[k, l] = sum_{n < h, m < w} x[n, m] e^{s 2 pi i (k n / h + l m / w)}`, with `s = -1` for
/// [`FftDirection::Forward`] and `s = +1` for [`FftDirection::Inverse`].
///
/// Scaling. Neither direction is scaled: inverse after forward multiplies by `h w`. The unitary
/// transform is `1 / sqrt(h w)` times either direction; numpy's `ifft2` is `1 / (h w)` times
/// the inverse.
///
/// Cost: `h` complex FFTs of length `w` (one batched call) and `w` of length `h` (one batched
/// call on the transposed grid, transposed back), about `5 h w log2(h w)` flops and two
/// transposes of `h w` values.
///
/// The plans are public ([`ComplexFft2::rows`], [`ComplexFft2::cols`]) for specialised
/// transforms built on them (the Navier-Stokes solver's packed real FFTs). `new` is generic, so
/// rustfft's kernels are instantiated (and optimised) in the crate that calls it with a concrete
/// `T`.
#[derive(Clone)]
pub struct ComplexFft2<T: FftNum> {
    h: usize,
    w: usize,
    row_fwd: Arc<dyn Fft<T>>,
    row_inv: Arc<dyn Fft<T>>,
    col_fwd: Arc<dyn Fft<T>>,
    col_inv: Arc<dyn Fft<T>>,
}

impl<T: FftNum> std::fmt::Debug for ComplexFft2<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplexFft2")
            .field("h", &self.h)
            .field("w", &self.w)
            .finish()
    }
}

impl<T: FftNum> ComplexFft2<T> {
    /// Plan the transforms of an `h x w` grid (`h, w >= 1`).
    pub fn new(h: usize, w: usize) -> Self {
        let mut planner = FftPlanner::<T>::new();
        let row_fwd = planner.plan_fft_forward(w);
        let row_inv = planner.plan_fft_inverse(w);
        let col_fwd = planner.plan_fft_forward(h);
        let col_inv = planner.plan_fft_inverse(h);
        Self {
            h,
            w,
            row_fwd,
            row_inv,
            col_fwd,
            col_inv,
        }
    }

    /// Grid rows (the column transforms' length).
    pub fn height(&self) -> usize {
        self.h
    }

    /// Grid columns (the row transforms' length).
    pub fn width(&self) -> usize {
        self.w
    }

    /// The plan of the 1-D transforms along the rows (length `w`).
    pub fn rows(&self, direction: FftDirection) -> &Arc<dyn Fft<T>> {
        match direction {
            FftDirection::Forward => &self.row_fwd,
            FftDirection::Inverse => &self.row_inv,
        }
    }

    /// The plan of the 1-D transforms along the columns (length `h`).
    pub fn cols(&self, direction: FftDirection) -> &Arc<dyn Fft<T>> {
        match direction {
            FftDirection::Forward => &self.col_fwd,
            FftDirection::Inverse => &self.col_inv,
        }
    }

    /// The largest in-place scratch length of the four plans: one scratch buffer of this length
    /// serves every `process_with_scratch` call on them.
    pub fn scratch_len(&self) -> usize {
        [&self.row_fwd, &self.row_inv, &self.col_fwd, &self.col_inv]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0)
    }

    /// The unscaled 2-D transform of the row-major `h x w` grid `buf`, in place (see the type's
    /// definition).
    ///
    /// # Panics
    /// If `buf.len() != h * w` (as rustfft does for a buffer of the wrong length).
    pub fn process(&self, buf: &mut [Complex<T>], direction: FftDirection) {
        let (h, w) = (self.h, self.w);
        assert_eq!(
            buf.len(),
            h * w,
            "ComplexFft2 {h} x {w}: buffer of {} values",
            buf.len()
        );
        let zero = Complex::new(T::zero(), T::zero());
        let mut scratch = vec![zero; self.scratch_len()];
        self.rows(direction).process_with_scratch(buf, &mut scratch);
        let mut t = vec![zero; h * w];
        for (i, row) in buf.chunks_exact(w).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                t[j * h + i] = v;
            }
        }
        self.cols(direction)
            .process_with_scratch(&mut t, &mut scratch);
        for (i, row) in buf.chunks_exact_mut(w).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = t[j * h + i];
            }
        }
    }
}
