//! NumPy `.npy` / `.npz` reading and writing for the data sets: thin wrappers over the
//! workspace's one codec, [`diffinv_operators::npy`] (built on `ndarray-npy`).
//!
//! [`write_f32`] writes little-endian `<f4` in C order, `.npy` version 1.0 with the header padded
//! to 64 bytes, atomically (a temporary file renamed into place). [`read_f32`] reads any float,
//! integer or bool dtype, little- or big-endian, C or Fortran order, and returns the values as
//! `f32` in C order. Errors name the file and the cause in one line.

use std::path::Path;

use diffinv_operators::npy::{self as codec, NpyError};

use crate::{DatasetError, Result};

impl From<NpyError> for DatasetError {
    fn from(e: NpyError) -> Self {
        match e {
            NpyError::Io { path, source } => DatasetError::Io { path, source },
            NpyError::Format { path, reason } => DatasetError::Format { path, reason },
            NpyError::Shape { path, shape, expected, got } => {
                DatasetError::Format { path, reason: format!("shape {shape:?} needs {expected} values, got {got}") }
            }
        }
    }
}

/// Write `data` (C order, `shape.iter().product()` values) to `path` as `<f4`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(DatasetError::InvalidParameter { name: "data", reason: format!("shape {shape:?} needs {n} values, got {}", data.len()) });
    }
    Ok(codec::save_npy(path, shape, data)?)
}

/// Read an `.npy` file as `f32`: `(shape, data)`, data in C order.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let a = codec::load_npy(path)?;
    let data = a.to_f32();
    Ok((a.shape, data))
}

/// One named array of an `.npz` archive: `(name, shape, data)`, data in C order.
pub type NamedArray = (String, Vec<usize>, Vec<f32>);

/// Read every array of an `.npz` archive (`numpy.savez` or `numpy.savez_compressed`) as `f32`:
/// `(name, shape, data)` in archive order.
pub fn read_npz_f32(path: &Path) -> Result<Vec<NamedArray>> {
    Ok(codec::load_npz(path)?.into_iter().map(|(name, a)| {
        let data = a.to_f32();
        (name, a.shape, data)
    }).collect())
}

/// Write named `f32` arrays `(name, shape, data)` to the `.npz` archive `path` (uncompressed,
/// readable by `numpy.load`), atomically.
pub fn write_npz_f32(path: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<()> {
    Ok(codec::save_npz_f32(path, arrays)?)
}
