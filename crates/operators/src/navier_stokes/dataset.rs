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
