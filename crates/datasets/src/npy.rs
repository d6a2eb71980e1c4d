//! Minimal NumPy `.npy` (format 1.0) reader and writer for `f32` arrays in C order.
//!
//! Layout: the magic `\x93NUMPY`, version `1 0`, a little-endian `u16` header length, an ASCII
//! dict `{'descr': '<f4', 'fortran_order': False, 'shape': (N, H, W), }` padded with spaces and a
//! newline to a multiple of 64 bytes, then the data. Readable by `numpy.load`.

use std::io::{Read, Write};
use std::path::Path;

use crate::{DatasetError, Result};

fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io { path: path.display().to_string(), source }
}

fn format_err(path: &Path, reason: impl Into<String>) -> DatasetError {
    DatasetError::Format { path: path.display().to_string(), reason: reason.into() }
}

/// Write `data` (C order, `shape.iter().product()` values) to `path`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(DatasetError::InvalidParameter { name: "data", reason: format!("shape {shape:?} needs {n} values, got {}", data.len()) });
    }
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_txt = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    // Write to a temporary name and rename, so a kill never leaves half a file behind.
    let tmp = path.with_extension("npy.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Read an `f32` C-order `.npy` file: `(shape, data)`.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format_err(path, "not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format_err(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| format_err(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| format_err(path, "header is not ASCII"))?;
    if !header.contains("'<f4'") {
        return Err(format_err(path, format!("only little-endian float32 is supported, header {header}")));
    }
    if header.contains("'fortran_order': True") {
        return Err(format_err(path, "Fortran order is not supported"));
    }
    let open = header.find("'shape': (").ok_or_else(|| format_err(path, "no shape in header"))? + "'shape': (".len();
    let close = header[open..].find(')').ok_or_else(|| format_err(path, "unterminated shape"))? + open;
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format_err(path, format!("bad dimension {s:?}"))))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    if body.len() != 4 * n {
        return Err(format_err(path, format!("shape {shape:?} needs {} bytes of data, file has {}", 4 * n, body.len())));
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, data))
}
