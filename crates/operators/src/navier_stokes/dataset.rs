//! Data-set plumbing for the Navier-Stokes fields: a minimal `.npy` reader/writer and the
//! per-sample random streams of the train/test splits.
//!
//! `.npy` (format version 1.0): the magic `\x93NUMPY`, version bytes `1 0`, a little-endian
//! `u16` header length, then an ASCII dict `{'descr': '<f4', 'fortran_order': False,
//! 'shape': (N, H, W), }` padded with spaces and a newline to a multiple of 64 bytes, then the
//! values in C order. We write `<f4` (and `<f8` for test exchange) and read both.

use std::io::{self, Read, Write};
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Values of an `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`.
    F32(Vec<f32>),
    /// `<f8`.
    F64(Vec<f64>),
}

/// An array read from an `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape, C order.
    pub shape: Vec<usize>,
    /// Values.
    pub data: NpyData,
}

impl NpyArray {
    /// The values as `f32` (rounding `<f8`).
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

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    let hlen = (total - 10) as u16;
    h.extend_from_slice(&hlen.to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

fn check_len(shape: &[usize], len: usize) -> io::Result<()> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shape {shape:?} needs {n} values, got {len}"),
        ));
    }
    Ok(())
}

/// Encode an `f32` array as `.npy` bytes.
pub fn npy_bytes_f32(shape: &[usize], data: &[f32]) -> io::Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header("<f4", shape);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Encode an `f64` array as `.npy` bytes.
pub fn npy_bytes_f64(shape: &[usize], data: &[f64]) -> io::Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header("<f8", shape);
    out.reserve(data.len() * 8);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Write an `f32` array to `path` atomically (a temporary file renamed into place, so a
/// finished file is always complete).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> io::Result<()> {
    write_atomic(path, &npy_bytes_f32(shape, data)?)
}

/// Write an `f64` array to `path` atomically.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> io::Result<()> {
    write_atomic(path, &npy_bytes_f64(shape, data)?)
}

/// Write `bytes` to a temporary sibling of `path`, then rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Parse `.npy` bytes (`<f4` or `<f8`, C order).
pub fn parse_npy(bytes: &[u8]) -> io::Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let end = start + hlen;
    if bytes.len() < end {
        return Err(bad("truncated header"));
    }
    let dict = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> io::Result<&str> {
        let k = format!("'{key}':");
        let p = dict
            .find(&k)
            .ok_or_else(|| bad(format!("header lacks {key}")))?;
        Ok(dict[p + k.len()..].trim_start())
    };
    let descr = field("descr")?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(bad(format!(
            "unsupported dtype {}",
            descr.split(',').next().unwrap_or("")
        )));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err(bad("Fortran order is not supported"));
    }
    let sh = field("shape")?;
    let close = sh.find(')').ok_or_else(|| bad("bad shape"))?;
    let shape: Vec<usize> = sh[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad dimension {s:?}")))
        })
        .collect::<io::Result<_>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[end..];
    if body.len() != n * width {
        return Err(bad(format!(
            "expected {} data bytes for shape {shape:?}, found {}",
            n * width,
            body.len()
        )));
    }
    let data = if width == 4 {
        NpyData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    } else {
        NpyData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )
    };
    Ok(NpyArray { shape, data })
}

/// Read an `.npy` file.
pub fn read_npy(path: &Path) -> io::Result<NpyArray> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    parse_npy(&bytes)
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
