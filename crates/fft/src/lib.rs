//! # diffinv-fft
//!
//! The workspace's one home for 2-D discrete Fourier transforms and their index helpers:
//!
//! - [`RealFft2`]: a real `nh x nw` FFT (`f32`), planned once per size and shared by every row
//!   of a batch, with a transposed half spectrum (the imaging operators: blur, phase retrieval);
//! - [`ComplexFft2`]: a complex `h x w` FFT in place on a row-major grid, planned once per size
//!   (the Fourier-diagonal Gaussian prior, energy spectra, the Navier-Stokes initial field; the
//!   solver's specialised real transforms are built on its plans);
//! - [`signed_freq`], [`fftfreq`]: the signed integer frequency of a DFT index (the two
//!   conventions for the Nyquist index of an even length);
//! - [`fast_len`]: the next length whose prime factors rustfft handles fastest.
//!
//! Conventions: every transform here is unnormalised, forward
//! `X[k, l] = sum_{n, m} x[n, m] e^{-2 pi i (k n / H + l m / W)}`, inverse with `e^{+...}`, so
//! inverse after forward multiplies by `H W` (numpy's "backward" norm without the `1 / (H W)`).
//! Callers apply the scaling they need.
//!
//! The plans are built with rustfft's (and realfft's) planners; rustfft instantiates its generic
//! kernels in the crate that calls the planner, so that crate's optimisation profile decides
//! their speed (see the workspace `Cargo.toml`).

mod complex;
mod real;

pub use complex::ComplexFft2;
pub use real::{Fft2Buf, RealFft2};

pub use num_complex::{Complex, Complex32, Complex64};
pub use rustfft::{Fft, FftDirection, FftNum};

use thiserror::Error;

/// Errors of the FFTs.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FftError {
    /// A buffer did not have the length its plan needs (e.g. a [`Fft2Buf`] of another
    /// [`RealFft2`]); the message is realfft's.
    #[error("{0}")]
    Buffer(String),
}

/// Signed frequency of DFT index `i` on a grid of `n` points, in `(-n/2, n/2]`: `i` for
/// `i <= n/2`, `i - n` above. The Nyquist index of an even `n` is `+n/2`.
pub fn signed_freq(i: usize, n: usize) -> i64 {
    if i <= n / 2 {
        i as i64
    } else {
        i as i64 - n as i64
    }
}

/// Signed frequency of DFT index `i` on a grid of `n` points as numpy's `fft.fftfreq(n) * n`,
/// in `[-n/2, n/2)`: `i` for `2 i < n`, `i - n` above. The Nyquist index of an even `n` is
/// `-n/2`; for odd `n` this equals [`signed_freq`].
pub fn fftfreq(i: usize, n: usize) -> i64 {
    if 2 * i < n {
        i as i64
    } else {
        i as i64 - n as i64
    }
}

/// Smallest `n' >= max(n, 1)` whose prime factors are all in {2, 3, 5, 7} (the lengths rustfft
/// transforms fastest): the padded length of a linear convolution done with FFTs.
#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87, the MSRV is 1.85
pub fn fast_len(n: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_len_picks_smooth_sizes() {
        assert_eq!(fast_len(316), 320);
        assert_eq!(fast_len(0), 1);
        assert_eq!(fast_len(1), 1);
        assert_eq!(fast_len(11), 12);
        assert_eq!(fast_len(49), 49);
        assert_eq!(fast_len(121), 125);
    }

    #[test]
    fn signed_frequencies_follow_their_conventions() {
        let even: Vec<i64> = (0..6).map(|i| signed_freq(i, 6)).collect();
        assert_eq!(even, [0, 1, 2, 3, -2, -1]);
        let even: Vec<i64> = (0..6).map(|i| fftfreq(i, 6)).collect();
        assert_eq!(even, [0, 1, 2, -3, -2, -1]);
        for n in [1, 3, 5, 7] {
            for i in 0..n {
                assert_eq!(signed_freq(i, n), fftfreq(i, n), "n {n} i {i}");
                assert_eq!(signed_freq(i, n).rem_euclid(n as i64), i as i64);
            }
        }
        let odd: Vec<i64> = (0..5).map(|i| fftfreq(i, 5)).collect();
        assert_eq!(odd, [0, 1, 2, -2, -1]);
    }
}
