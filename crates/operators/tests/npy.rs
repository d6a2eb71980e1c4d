//! The `.npy`/`.npz` codec (`diffinv_operators::npy`, over ndarray-npy) and its `io::Result`
//! wrappers in `navier_stokes::dataset`: every dtype and order NumPy writes, files written by
//! hand byte for byte (no NumPy needed), and one-line errors that name the file.

use std::path::PathBuf;

use diffinv_operators::navier_stokes::dataset::{parse_npy, read_npy, write_npy_f32};
use diffinv_operators::npy::{decode_npy, load_npy, load_npz, save_npz_f32, NpyData, NpyError};

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-npy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A version-1.0 `.npy` file as NumPy writes it: magic, version, header length, the dict padded
/// with spaces and a newline to a multiple of 64 bytes, then `body`.
fn raw_npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

#[test]
fn reads_fortran_order_as_c_order() {
    // The 2 x 3 matrix [[0, 1, 2], [3, 4, 5]] stored column by column.
    let f_order = [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0];
    let body: Vec<u8> = f_order.iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = parse_npy(&raw_npy("<f8", true, "(2, 3)", &body)).expect("Fortran order reads");
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    // Same for f32 in three dimensions: element (i, j, k) at offset i + 2 j + 4 k.
    let shape = [2usize, 2, 3];
    let mut f = [0f32; 12];
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..3 {
                f[i + 2 * j + 4 * k] = (100 * i + 10 * j + k) as f32;
            }
        }
    }
    let body: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
    let b = decode_npy(&raw_npy("<f4", true, "(2, 2, 3)", &body)).expect("3-d Fortran order");
    assert_eq!(b.shape, shape.to_vec());
    let expect: Vec<f32> = (0..2)
        .flat_map(|i| (0..2).flat_map(move |j| (0..3).map(move |k| (100 * i + 10 * j + k) as f32)))
        .collect();
    assert_eq!(b.data, NpyData::F32(expect));
}

#[test]
fn reads_every_float_and_int_dtype_in_both_byte_orders() {
    let vals = [-2i64, 0, 1, 7, 100, -100];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "<f4",
            vals.iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
        ),
        (
            ">f4",
            vals.iter()
                .flat_map(|&v| (v as f32).to_be_bytes())
                .collect(),
        ),
        (
            "<f8",
            vals.iter()
                .flat_map(|&v| (v as f64).to_le_bytes())
                .collect(),
        ),
        (
            ">f8",
            vals.iter()
                .flat_map(|&v| (v as f64).to_be_bytes())
                .collect(),
        ),
        (
            "|i1",
            vals.iter().flat_map(|&v| (v as i8).to_le_bytes()).collect(),
        ),
        (
            "<i2",
            vals.iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect(),
        ),
        (
            ">i2",
            vals.iter()
                .flat_map(|&v| (v as i16).to_be_bytes())
                .collect(),
        ),
        (
            "<i4",
            vals.iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
        ),
        (
            ">i4",
            vals.iter()
                .flat_map(|&v| (v as i32).to_be_bytes())
                .collect(),
        ),
        ("<i8", vals.iter().flat_map(|&v| v.to_le_bytes()).collect()),
        (">i8", vals.iter().flat_map(|&v| v.to_be_bytes()).collect()),
    ];
    for (descr, body) in cases {
        let a = parse_npy(&raw_npy(descr, false, "(2, 3)", &body))
            .unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(a.shape, vec![2, 3], "{descr}");
        assert_eq!(
            a.to_f64(),
            vals.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            "{descr}"
        );
    }
    let uvals = [0u64, 1, 7, 200];
    let ucases: Vec<(&str, Vec<u8>)> = vec![
        ("|u1", uvals.iter().map(|&v| v as u8).collect()),
        (
            "<u2",
            uvals
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect(),
        ),
        (
            ">u4",
            uvals
                .iter()
                .flat_map(|&v| (v as u32).to_be_bytes())
                .collect(),
        ),
        ("<u8", uvals.iter().flat_map(|&v| v.to_le_bytes()).collect()),
    ];
    for (descr, body) in ucases {
        let a = parse_npy(&raw_npy(descr, false, "(4,)", &body))
            .unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(a.to_f32(), vec![0.0, 1.0, 7.0, 200.0], "{descr}");
    }
    let b = parse_npy(&raw_npy("|b1", false, "(3,)", &[1, 0, 1])).expect("bool");
    assert_eq!(b.to_f32(), vec![1.0, 0.0, 1.0]);
    // A big-endian f4 file in Fortran order: both at once.
    let body: Vec<u8> = [1.0f32, 3.0, 2.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let c = parse_npy(&raw_npy(">f4", true, "(2, 2)", &body)).expect(">f4 Fortran");
    assert_eq!(c.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn errors_name_the_file_and_the_cause_in_one_line() {
    let dir = scratch_dir("errors");
    let missing = dir.join("missing.npy");
    let e = read_npy(&missing).expect_err("missing file");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(msg.contains("missing.npy"), "{msg}");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage.npy", b"hello, not numpy".to_vec(), "header"),
        (
            "complex.npy",
            raw_npy("<c8", false, "(1,)", &[0; 8]),
            "unsupported dtype",
        ),
        ("short.npy", raw_npy("<f4", false, "(3,)", &[0; 8]), "EOF"),
        (
            "long.npy",
            raw_npy("<f4", false, "(1,)", &[0; 8]),
            "extra bytes",
        ),
    ];
    for (name, bytes, cause) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        let e = load_npy(&p).expect_err(name);
        assert!(matches!(e, NpyError::Format { .. }), "{name}: {e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with(&p.display().to_string()), "{name}: {msg}");
        assert!(msg.contains(cause), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{name}: one line, got {msg:?}");
        // The io::Result wrapper carries the same line.
        let io = read_npy(&p).expect_err(name);
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(io.to_string(), msg);
    }
    let e = write_npy_f32(&dir.join("bad.npy"), &[2, 2], &[1.0]).expect_err("shape mismatch");
    assert!(
        e.to_string().contains("bad.npy") && e.to_string().contains("needs 4 values"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npz_round_trip_plain_and_compressed() {
    let dir = scratch_dir("npz");
    let p = dir.join("a.npz");
    let x: Vec<f32> = (0..6).map(|v| v as f32 - 2.5).collect();
    save_npz_f32(&p, &[("x", &[2, 3], &x), ("y", &[1], &[9.0])]).expect("save npz");
    let got = load_npz(&p).expect("load npz");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "x");
    assert_eq!(got[0].1.shape, vec![2, 3]);
    assert_eq!(got[0].1.to_f32(), x);
    assert_eq!(got[1].0, "y");
    assert_eq!(got[1].1.to_f32(), vec![9.0]);

    // np.savez_compressed: deflated entries, here an f8 array.
    let q = dir.join("c.npz");
    {
        let mut w =
            ndarray_npy::NpzWriter::new_compressed(std::fs::File::create(&q).expect("create"));
        w.add_array("z", &ndarray::array![[1.0f64, 2.0], [3.0, 4.0]])
            .expect("add");
        w.finish().expect("finish");
    }
    let got = load_npz(&q).expect("compressed npz");
    assert_eq!(got[0].0, "z");
    assert_eq!(got[0].1.data, NpyData::F64(vec![1.0, 2.0, 3.0, 4.0]));

    std::fs::write(dir.join("junk.npz"), b"not a zip").expect("write");
    let e = load_npz(&dir.join("junk.npz")).expect_err("junk");
    assert!(
        e.to_string().contains("junk.npz") && !e.to_string().contains('\n'),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
