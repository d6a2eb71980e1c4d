//! NumPy `.npy` and `.npz` I/O: the one codec of the workspace, a thin layer over
//! [`ndarray_npy`].
//!
//! Reading accepts every real dtype NumPy writes for numbers: `f4`, `f8`, the signed and
//! unsigned integers `i1 .. i8`, `u1 .. u8` and `b1` (bool), little- or big-endian, in C or
//! Fortran order. Values come back in C (row-major) order as [`NpyData::F32`] for `f4` files and
//! [`NpyData::F64`] for everything else (integers are exact up to `2^53`, booleans are 0 and 1).
//! Writing produces little-endian `<f4` / `<f8` in C order, version 1.0 with the header padded
//! to 64 bytes, as `numpy.save` does. Every error names the file (or "npy bytes") and the cause
//! in one line ([`NpyError`]).

use std::io::{self, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ndarray_npy::{
    NpzReader, NpzWriter, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement, WritableElement,
    WriteNpyExt,
};
use thiserror::Error;

/// Values of an `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `f4` files.
    F32(Vec<f32>),
    /// `f8` files, and integer and boolean files converted to `f64`.
    F64(Vec<f64>),
}

/// An array read from an `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape; `data` is in C (row-major) order whatever the file's order.
    pub shape: Vec<usize>,
    /// Values.
    pub data: NpyData,
}

impl NpyArray {
    /// The values as `f32` (rounding `f8`).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The values as `f64`.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F64(v) => v.clone(),
        }
    }
}

/// What went wrong reading or writing an `.npy`/`.npz` file; the message is one line naming the
/// file and the cause.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The content is not a valid array of a supported dtype.
    #[error("{path}: {reason}")]
    Format {
        /// The file (or "npy bytes" for an in-memory buffer).
        path: String,
        /// The cause.
        reason: String,
    },
    /// The values passed to a writer do not fill the shape.
    #[error("{path}: shape {shape:?} needs {expected} values, got {got}")]
    Shape {
        /// The file (or "npy bytes").
        path: String,
        /// The shape.
        shape: Vec<usize>,
        /// Its number of values.
        expected: usize,
        /// Number of values passed.
        got: usize,
    },
}

impl NpyError {
    /// The file the error is about.
    pub fn path(&self) -> &str {
        match self {
            NpyError::Io { path, .. }
            | NpyError::Format { path, .. }
            | NpyError::Shape { path, .. } => path,
        }
    }
}

impl From<NpyError> for io::Error {
    /// An `io::Error` whose message is the [`NpyError`]'s one line (kind `NotFound` etc. kept
    /// for I/O failures, `InvalidData` / `InvalidInput` otherwise).
    fn from(e: NpyError) -> io::Error {
        let kind = match &e {
            NpyError::Io { source, .. } => source.kind(),
            NpyError::Format { .. } => io::ErrorKind::InvalidData,
            NpyError::Shape { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}

const BYTES: &str = "npy bytes";

fn io_err(path: &Path, source: io::Error) -> NpyError {
    NpyError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &str, reason: impl std::fmt::Display) -> NpyError {
    // ndarray-npy's messages can nest a multi-line parser error: keep the first line.
    let reason = reason.to_string();
    let reason = reason.lines().next().unwrap_or("").trim().to_string();
    NpyError::Format {
        path: path.to_string(),
        reason,
    }
}

/// Something that decodes one `.npy` array for any element type (an in-memory buffer, an entry
/// of an `.npz` archive), so the dtype dispatch below is written once.
trait Source {
    fn decode<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, ReadNpyError>;
}

struct Bytes<'a>(&'a [u8]);

impl Source for Bytes<'_> {
    fn decode<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, ReadNpyError> {
        ArrayD::<T>::read_npy(Cursor::new(self.0))
    }
}

struct NpzEntry<'a, R: Read + Seek> {
    npz: &'a mut NpzReader<R>,
    index: usize,
}

impl<R: Read + Seek> Source for NpzEntry<'_, R> {
    fn decode<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, ReadNpyError> {
        match self.npz.by_index(self.index) {
            Ok(a) => Ok(a),
            Err(ReadNpzError::Npy(e)) => Err(e),
            Err(ReadNpzError::Zip(e)) => Err(ReadNpyError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                e.to_string(),
            ))),
        }
    }
}

/// The values of `a` in C order (a Fortran-order array is transposed back).
fn c_order<T: Copy>(a: ArrayD<T>) -> (Vec<usize>, Vec<T>) {
    let shape = a.shape().to_vec();
    let data = if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    };
    (shape, data)
}

fn widen<S: Source, T: ReadableElement + Copy + Into<f64>>(
    src: &mut S,
) -> Result<NpyArray, ReadNpyError> {
    let (shape, v) = c_order(src.decode::<T>()?);
    Ok(NpyArray {
        shape,
        data: NpyData::F64(v.into_iter().map(Into::into).collect()),
    })
}

/// Decode one array, dispatching on the dtype in its header.
fn decode_any<S: Source>(src: &mut S) -> Result<NpyArray, String> {
    let desc = match src.decode::<f32>() {
        Ok(a) => {
            let (shape, v) = c_order(a);
            return Ok(NpyArray {
                shape,
                data: NpyData::F32(v),
            });
        }
        Err(ReadNpyError::WrongDescriptor(d)) => d.to_string(),
        Err(e) => return Err(e.to_string()),
    };
    // `desc` is the Python literal, e.g. `'<f8'`, `'>i4'`, `'|u1'`.
    let code = desc.trim_matches(|c| c == '\'' || c == '"');
    let kind = code.trim_start_matches(['<', '>', '|', '=']);
    let r = match kind {
        "f8" => src.decode::<f64>().map(|a| {
            let (shape, v) = c_order(a);
            NpyArray {
                shape,
                data: NpyData::F64(v),
            }
        }),
        "i1" => widen::<_, i8>(src),
        "i2" => widen::<_, i16>(src),
        "i4" => widen::<_, i32>(src),
        "i8" => src.decode::<i64>().map(|a| {
            let (shape, v) = c_order(a);
            NpyArray {
                shape,
                data: NpyData::F64(v.into_iter().map(|x| x as f64).collect()),
            }
        }),
        "u1" => widen::<_, u8>(src),
        "u2" => widen::<_, u16>(src),
        "u4" => widen::<_, u32>(src),
        "u8" => src.decode::<u64>().map(|a| {
            let (shape, v) = c_order(a);
            NpyArray {
                shape,
                data: NpyData::F64(v.into_iter().map(|x| x as f64).collect()),
            }
        }),
        "b1" => src.decode::<bool>().map(|a| {
            let (shape, v) = c_order(a);
            NpyArray {
                shape,
                data: NpyData::F64(v.into_iter().map(|x| if x { 1.0 } else { 0.0 }).collect()),
            }
        }),
        _ => {
            return Err(format!(
                "unsupported dtype {desc} (expected a float, integer or bool dtype)"
            ))
        }
    };
    r.map_err(|e| e.to_string())
}

/// Parse `.npy` bytes (any dtype and order listed in the [module docs](self)).
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    decode_any(&mut Bytes(bytes)).map_err(|r| format_err(BYTES, r))
}

/// Read an `.npy` file (any dtype and order listed in the [module docs](self)).
pub fn load_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    decode_any(&mut Bytes(&bytes)).map_err(|r| format_err(&path.display().to_string(), r))
}

/// Read every array of an `.npz` archive (`numpy.savez` or `numpy.savez_compressed`), as
/// `(name, array)` in archive order; names lose their `.npy` suffix as in NumPy.
pub fn load_npz(path: &Path) -> Result<Vec<(String, NpyArray)>, NpyError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let shown = path.display().to_string();
    let mut npz = NpzReader::new(io::BufReader::new(file)).map_err(|e| format_err(&shown, e))?;
    let names = npz.names().map_err(|e| format_err(&shown, e))?;
    let mut out = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        let a = decode_any(&mut NpzEntry {
            npz: &mut npz,
            index,
        })
        .map_err(|r| format_err(&shown, format!("array {name:?}: {r}")))?;
        out.push((name, a));
    }
    Ok(out)
}

fn view<'a, T>(what: &str, shape: &[usize], data: &'a [T]) -> Result<ArrayViewD<'a, T>, NpyError> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(NpyError::Shape {
            path: what.to_string(),
            shape: shape.to_vec(),
            expected: n,
            got: data.len(),
        });
    }
    ArrayViewD::from_shape(IxDyn(shape), data).map_err(|e| format_err(what, e))
}

/// Encode `data` (C order) with `shape` as `.npy` bytes.
pub fn encode_npy<T: WritableElement>(shape: &[usize], data: &[T]) -> Result<Vec<u8>, NpyError> {
    let a = view(BYTES, shape, data)?;
    let mut out = Vec::new();
    a.write_npy(&mut out).map_err(|e| format_err(BYTES, e))?;
    Ok(out)
}

/// Write `bytes` to a temporary sibling of `path` (`path` with `.tmp` appended), then rename it
/// over `path`, so a finished file is always complete. Creates the parent folder.
pub fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Write `data` (C order) with `shape` to the `.npy` file `path`, atomically.
pub fn save_npy<T: WritableElement>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), NpyError> {
    let shown = path.display().to_string();
    let bytes = encode_npy(shape, data).map_err(|e| match e {
        NpyError::Shape {
            shape,
            expected,
            got,
            ..
        } => NpyError::Shape {
            path: shown.clone(),
            shape,
            expected,
            got,
        },
        NpyError::Format { reason, .. } => NpyError::Format {
            path: shown.clone(),
            reason,
        },
        other => other,
    })?;
    write_atomic_bytes(path, &bytes)
}

/// Write named `f32` arrays `(name, shape, data)` to the uncompressed `.npz` archive `path`
/// (readable by `numpy.load`), atomically.
pub fn save_npz_f32(path: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<(), NpyError> {
    let shown = path.display().to_string();
    let mut npz = NpzWriter::new(Cursor::new(Vec::new()));
    for (name, shape, data) in arrays {
        let a = view(&shown, shape, data)?;
        npz.add_array(*name, &a)
            .map_err(|e| format_err(&shown, e))?;
    }
    let bytes = npz
        .finish()
        .map_err(|e| format_err(&shown, e))?
        .into_inner();
    write_atomic_bytes(path, &bytes)
}
