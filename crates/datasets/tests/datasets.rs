//! Tests of the data generators: reproducibility, disjoint splits, the ring statistics against
//! the parameters they should recover, and the `.npy` round trip.

use approx::assert_abs_diff_eq;
use diffinv_datasets::blackhole::{draw_params, generate, ks_statistic, render, ring_stats, MringConfig, MringParams};
use diffinv_datasets::npy;

#[test]
fn images_are_seeded_per_index_so_splits_are_disjoint_and_reproducible() {
    let cfg = MringConfig { resolution: 32, ..Default::default() };
    let (all, _) = generate(&cfg, 7, 0..12).expect("generate");
    let (tail, _) = generate(&cfg, 7, 6..12).expect("generate");
    assert_eq!(all.slice(ndarray::s![6..12, ..]), tail, "image k depends only on (seed, k)");
    let (other, _) = generate(&cfg, 8, 0..12).expect("generate");
    assert_ne!(all, other, "another seed, another data set");
    // Train 0..6 and test 6..12 share no image.
    for a in all.slice(ndarray::s![0..6, ..]).outer_iter() {
        for b in tail.outer_iter() {
            assert_ne!(a, b);
        }
    }
    assert!(all.iter().all(|v| (0.0..=1.0).contains(v)), "pixels in [0, 1]");
}

#[test]
fn ring_statistics_recover_the_parameters_of_a_clean_ring() {
    let cfg = MringConfig { turbulence_std: 0.0, blur_fwhm_uas: 0.0, center_jitter_uas: 0.0, ..Default::default() };
    for d in [35.0, 40.0, 45.0] {
        let p = MringParams {
            diameter_uas: d,
            width_uas: 4.0,
            m1_amplitude: 0.0,
            m1_angle: 0.0,
            m2_amplitude: 0.0,
            m2_angle: 0.0,
            center_l_uas: 0.0,
            center_m_uas: 0.0,
            peak: 1.0,
        };
        let img = render(&cfg, &p, None);
        let s = ring_stats(&cfg, &img).expect("stats");
        // The mean radius of a Gaussian ring profile is biased up by about s^2 / R.
        assert_abs_diff_eq!(s.diameter_uas, d, epsilon = 1.0);
        assert!(s.asymmetry < 0.01, "symmetric ring, asymmetry {}", s.asymmetry);
        let max = img.iter().copied().fold(0.0f32, f32::max);
        assert_abs_diff_eq!(max, 1.0, epsilon = 1e-6);
        // Brightest side along the m = 1 angle.
        let p1 = MringParams { m1_amplitude: 0.6, m1_angle: 1.0, ..p };
        let s1 = ring_stats(&cfg, &render(&cfg, &p1, None)).expect("stats");
        assert_abs_diff_eq!(s1.asymmetry, 0.3, epsilon = 0.03);
        assert_abs_diff_eq!(s1.angle, 1.0, epsilon = 0.05);
    }
}

#[test]
fn generated_diameters_follow_the_configured_range() {
    let cfg = MringConfig { resolution: 64, ..Default::default() };
    let (imgs, params) = generate(&cfg, 3, 0..40).expect("generate");
    let est: Vec<f64> = imgs.outer_iter().map(|r| ring_stats(&cfg, r.as_slice().expect("contiguous")).expect("stats").diameter_uas).collect();
    let truth: Vec<f64> = params.iter().map(|p| p.diameter_uas).collect();
    let mean_err = est.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum::<f64>() / est.len() as f64;
    assert!(mean_err < 3.0, "mean |estimated - true diameter| = {mean_err} uas");
    assert!(truth.iter().all(|d| (35.0..=45.0).contains(d)));
    assert_eq!(draw_params(&cfg, 3, 5), params[5]);
}

#[test]
fn ks_statistic_limits() {
    let a: Vec<f64> = (0..100).map(f64::from).collect();
    assert_abs_diff_eq!(ks_statistic(&a, &a), 0.0);
    let b: Vec<f64> = (200..300).map(f64::from).collect();
    assert_abs_diff_eq!(ks_statistic(&a, &b), 1.0);
    let half: Vec<f64> = (50..150).map(f64::from).collect();
    assert_abs_diff_eq!(ks_statistic(&a, &half), 0.5, epsilon = 1e-12);
}

#[test]
fn npy_round_trip_and_errors() {
    let dir = std::env::temp_dir().join(format!("diffinv-npy-{}", std::process::id()));
    let path = dir.join("x.npy");
    let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
    npy::write_f32(&path, &[2, 3, 4], &data).expect("write");
    let bytes = std::fs::read(&path).expect("read bytes");
    assert_eq!((bytes.len() - 4 * 24) % 64, 0, "header padded to 64 bytes");
    let (shape, back) = npy::read_f32(&path).expect("read");
    assert_eq!(shape, vec![2, 3, 4]);
    assert_eq!(back, data);
    assert!(npy::write_f32(&path, &[5], &data).is_err(), "shape mismatch is an error");
    std::fs::write(&path, b"not numpy").expect("write junk");
    assert!(npy::read_f32(&path).is_err());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn npy_reads_fortran_order_and_other_dtypes_as_f32() {
    let dir = std::env::temp_dir().join(format!("diffinv-npy-f-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Written by hand as NumPy does for np.asfortranarray([[0, 1, 2], [3, 4, 5]], dtype='>f8').
    let npy = |descr: &str, fortran: &str, shape: &str, body: &[u8]| {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        let total = (10 + dict.len() + 1).div_ceil(64) * 64;
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.resize(total - 1, b' ');
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    };
    let body: Vec<u8> = [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    let path = dir.join("f.npy");
    std::fs::write(&path, npy(">f8", "True", "(2, 3)", &body)).expect("write");
    let (shape, data) = npy::read_f32(&path).expect("Fortran-order big-endian f8");
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // uint8 images, the other common format.
    std::fs::write(&path, npy("|u1", "False", "(1, 2, 2)", &[0, 128, 255, 7])).expect("write");
    assert_eq!(npy::read_f32(&path).expect("u1").1, vec![0.0, 128.0, 255.0, 7.0]);
    // Errors: one line naming the file and the cause.
    std::fs::write(&path, npy("<U3", "False", "(1,)", &[0; 12])).expect("write");
    let msg = npy::read_f32(&path).expect_err("strings are not numbers").to_string();
    assert!(msg.starts_with(&path.display().to_string()) && msg.contains("unsupported dtype") && !msg.contains('\n'), "{msg}");
    let msg = npy::read_f32(&dir.join("nope.npy")).expect_err("missing").to_string();
    assert!(msg.contains("nope.npy"), "{msg}");
    // npz round trip.
    let z = dir.join("a.npz");
    npy::write_npz_f32(&z, &[("images", &[2, 2], &[1.0, 2.0, 3.0, 4.0])]).expect("npz");
    let got = npy::read_npz_f32(&z).expect("read npz");
    assert_eq!(got, vec![("images".to_string(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
