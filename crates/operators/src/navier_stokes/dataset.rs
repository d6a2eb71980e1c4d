//! Data-set plumbing for the Navier-Stokes fields: `.npy` I/O (thin wrappers over the
//! workspace's one codec, [`crate::npy`], kept for their `io::Result` signatures) and the
//! per-sample random streams of the train/test splits.
//!
//! We write `<f4` (and `<f8` for test exchange) `.npy` version 1.0 in C order, the header padded
//! to 64 bytes; reading accepts any float, integer or bool dtype, either endianness, C or
//! Fortran order.

use std::io;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::npy;
pub use crate::npy::{NpyArray, NpyData};

/// Encode an `f32` array as `.npy` bytes (`<f4`, C order).
pub fn npy_bytes_f32(shape: &[usize], data: &[f32]) -> io::Result<Vec<u8>> {
    Ok(npy::encode_npy(shape, data)?)
}

/// Encode an `f64` array as `.npy` bytes (`<f8`, C order).
pub fn npy_bytes_f64(shape: &[usize], data: &[f64]) -> io::Result<Vec<u8>> {
    Ok(npy::encode_npy(shape, data)?)
}

/// Write an `f32` array to `path` atomically (a temporary file renamed into place, so a
/// finished file is always complete).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> io::Result<()> {
    Ok(npy::save_npy(path, shape, data)?)
}

/// Write an `f64` array to `path` atomically.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> io::Result<()> {
    Ok(npy::save_npy(path, shape, data)?)
}

/// Write `bytes` to a temporary sibling of `path`, then rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    Ok(npy::write_atomic_bytes(path, bytes)?)
}

/// Parse `.npy` bytes: any float, integer or bool dtype, either endianness, C or Fortran order
/// (see [`crate::npy`]).
pub fn parse_npy(bytes: &[u8]) -> io::Result<NpyArray> {
    Ok(npy::decode_npy(bytes)?)
}

/// Read an `.npy` file (see [`parse_npy`]); the error message names the file and the cause.
pub fn read_npy(path: &Path) -> io::Result<NpyArray> {
    Ok(npy::load_npy(path)?)
}

/// A data-set split. Train and test samples draw from disjoint ChaCha streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training samples: streams `0 .. 2^63`.
    Train,
    /// Test samples: streams `2^63 .. 2^64`.
    Test,
}

impl Split {
    /// Name used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The ChaCha stream of sample `index` of `split`: the top bit says the split, so the two
/// ranges never overlap (`index` is taken modulo `2^63`).
pub fn sample_stream(split: Split, index: u64) -> u64 {
    let i = index & !(1u64 << 63);
    match split {
        Split::Train => i,
        Split::Test => i | (1u64 << 63),
    }
}

/// The random generator of sample `index` of `split` for the data-set seed `seed`: the
/// ChaCha8 key comes from `seed`, the stream from [`sample_stream`]. Independent of how the
/// samples are batched or which thread draws them.
pub fn sample_rng(seed: u64, split: Split, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(sample_stream(split, index));
    rng
}

/// Spectral downsampling of periodic `n x n` fields to `m x m` (`m <= n`, both even): the
/// Fourier modes `|k_x|, |k_y| < m / 2` are kept and the rest (the coarse grid's Nyquist row and
/// column included, so the result stays real) are dropped,
///
/// `y[j] = (1 / n^2) sum_{|k| < m/2} X_k e^{2 pi i k . j / m}`,  `X = FFT_n(x)`,
///
/// i.e. the coarse-grid values of the band-limited part of `x`. A field whose spectrum lies
/// inside the kept band is returned as its values at every `(n / m)`-th point when `m` divides
/// `n`; the mean is kept exactly. This is how a coarse data set is made from fine dynamics
/// without simulating at the coarse resolution (point-wise subsampling would alias the modes
/// between `m / 2` and `n / 2` onto the kept ones).
///
/// `fields` holds `fields.len() / n^2` fields, row-major. Cost: one `n x n` and one `m x m`
/// complex FFT per field.
pub fn spectral_downsample(fields: &[f32], n: usize, m: usize) -> Result<Vec<f32>, crate::OperatorError> {
    use num_complex::Complex;
    use rustfft::FftDirection;
    if n == 0 || m == 0 || m > n || !n.is_multiple_of(2) || !m.is_multiple_of(2) {
        return Err(crate::OperatorError::InvalidParameter {
            name: "downsample",
            reason: format!("need even sizes with 0 < m <= n, got n = {n}, m = {m}"),
        });
    }
    if !fields.len().is_multiple_of(n * n) {
        return Err(crate::OperatorError::InvalidParameter {
            name: "fields",
            reason: format!("{} values are not a whole number of {n} x {n} fields", fields.len()),
        });
    }
    let fine = diffinv_fft::ComplexFft2::<f64>::new(n, n);
    let coarse = diffinv_fft::ComplexFft2::<f64>::new(m, m);
    let half = (m / 2) as i64;
    let scale = 1.0 / (n * n) as f64;
    let mut out = Vec::with_capacity(fields.len() / (n * n) * m * m);
    let mut big = vec![Complex::new(0.0f64, 0.0); n * n];
    let mut small = vec![Complex::new(0.0f64, 0.0); m * m];
    for f in fields.chunks_exact(n * n) {
        for (b, &v) in big.iter_mut().zip(f) {
            *b = Complex::new(f64::from(v), 0.0);
        }
        fine.process(&mut big, FftDirection::Forward);
        for (i, row) in small.chunks_exact_mut(m).enumerate() {
            let ki = diffinv_fft::signed_freq(i, m);
            for (j, s) in row.iter_mut().enumerate() {
                let kj = diffinv_fft::signed_freq(j, m);
                *s = if ki.abs() < half && kj.abs() < half {
                    let (fi, fj) = (ki.rem_euclid(n as i64) as usize, kj.rem_euclid(n as i64) as usize);
                    big[fi * n + fj] * scale
                } else {
                    Complex::new(0.0, 0.0)
                };
            }
        }
        coarse.process(&mut small, FftDirection::Inverse);
        out.extend(small.iter().map(|c| c.re as f32));
    }
    Ok(out)
}

#[cfg(test)]
mod downsample_tests {
    use super::spectral_downsample;

    /// A trigonometric polynomial inside the kept band: downsampling equals taking every second
    /// point; a mode outside the band disappears instead of aliasing.
    #[test]
    fn band_limited_fields_are_subsampled_and_high_modes_dropped() {
        let (n, m) = (32usize, 16usize);
        let tau = std::f64::consts::TAU;
        let field = |i: usize, j: usize, high: bool| {
            let (x, y) = (tau * i as f64 / n as f64, tau * j as f64 / n as f64);
            let mut v = 0.3 + (3.0 * x).sin() * (2.0 * y).cos() + 0.5 * (7.0 * x + 5.0 * y).cos() - 0.2 * (x - 6.0 * y).sin();
            if high {
                v += (12.0 * x).cos() + (9.0 * y).sin();
            }
            v
        };
        for high in [false, true] {
            let fine: Vec<f32> = (0..n * n).map(|k| field(k / n, k % n, high) as f32).collect();
            let got = spectral_downsample(&fine, n, m).expect("downsample");
            assert_eq!(got.len(), m * m);
            for i in 0..m {
                for j in 0..m {
                    let want = field(2 * i, 2 * j, false);
                    assert!((f64::from(got[i * m + j]) - want).abs() < 1e-5, "({i},{j}) high={high}: {} vs {want}", got[i * m + j]);
                }
            }
        }
        let e = spectral_downsample(&[0.0; 10], 4, 2).expect_err("10 values are no 4 x 4 fields");
        assert!(e.to_string().contains("10 values are not a whole number of 4 x 4 fields"), "{e}");
        assert!(spectral_downsample(&[0.0; 16], 4, 6).is_err());
        assert!(spectral_downsample(&[0.0; 16], 4, 3).is_err());
    }
}
