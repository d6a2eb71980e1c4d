//! The shared 2-D FFTs against their definitions: round trips on random sizes (odd, prime,
//! non-powers of two), Parseval's identity, single-frequency cosines, a naive O(n^4) DFT, and
//! bit-for-bit agreement with the per-column transform the priors and metrics used before.
#![allow(clippy::unwrap_used)]

use diffinv_fft::{signed_freq, Complex, Complex64, ComplexFft2, FftDirection, RealFft2};
use proptest::prelude::*;
use rustfft::FftPlanner;

use std::f64::consts::PI;

/// `X[k, l] = sum x[n, m] e^{s 2 pi i (k n / h + l m / w)}`, `s = -1` forward, `+1` inverse.
fn naive_dft2(x: &[Complex64], h: usize, w: usize, inverse: bool) -> Vec<Complex64> {
    let s = if inverse { 1.0 } else { -1.0 };
    let mut out = vec![Complex64::new(0.0, 0.0); h * w];
    for k in 0..h {
        for l in 0..w {
            let mut acc = Complex64::new(0.0, 0.0);
            for n in 0..h {
                for m in 0..w {
                    // reduce the phase index exactly before scaling
                    let ph = s
                        * 2.0
                        * PI
                        * (((k * n) % h) as f64 / h as f64 + ((l * m) % w) as f64 / w as f64);
                    acc += x[n * w + m] * Complex64::from_polar(1.0, ph);
                }
            }
            out[k * w + l] = acc;
        }
    }
    out
}

/// A deterministic pseudo-random field of `n` values in `[-1, 1)`.
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn complex_noise(n: usize, seed: u64) -> Vec<Complex64> {
    let re = noise(n, seed);
    let im = noise(n, seed ^ 0x9e37_79b9);
    re.into_iter()
        .zip(im)
        .map(|(a, b)| Complex64::new(a, b))
        .collect()
}

fn max_err(a: &[Complex64], b: &[Complex64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, f64::max)
}

/// The full spectrum of a real image from `RealFft2`'s transposed half spectrum.
fn full_from_half(f: &RealFft2, spec: &[Complex<f32>]) -> Vec<Complex64> {
    let (nh, nw) = (f.nh(), f.nw());
    let mut out = vec![Complex64::new(0.0, 0.0); nh * nw];
    for k in 0..nh {
        for l in 0..nw {
            let z = if l < f.nwc() {
                spec[l * nh + k]
            } else {
                spec[(nw - l) * nh + (nh - k) % nh].conj()
            };
            out[k * nw + l] = Complex64::new(z.re.into(), z.im.into());
        }
    }
    out
}

fn real_forward(f: &RealFft2, x: &[f32]) -> Vec<Complex<f32>> {
    let nw = f.nw();
    let mut b = f.buffers();
    f.forward(&mut b, f.nh(), |n, row| {
        row.copy_from_slice(&x[n * nw..(n + 1) * nw])
    })
    .unwrap();
    b.spec
}

#[test]
fn complex_fft2_matches_the_naive_dft() {
    for (h, w) in [
        (1, 1),
        (1, 5),
        (4, 1),
        (2, 3),
        (3, 3),
        (4, 6),
        (5, 7),
        (6, 4),
        (7, 9),
        (8, 8),
        (9, 10),
    ] {
        let f = ComplexFft2::<f64>::new(h, w);
        let x = complex_noise(h * w, (h * 31 + w) as u64);
        for (dir, inverse) in [
            (FftDirection::Forward, false),
            (FftDirection::Inverse, true),
        ] {
            let mut got = x.clone();
            f.process(&mut got, dir);
            let err = max_err(&got, &naive_dft2(&x, h, w, inverse));
            assert!(err < 1e-12 * (h * w) as f64, "{h}x{w} {dir:?}: {err:e}");
        }
        // f32
        let f32p = ComplexFft2::<f32>::new(h, w);
        let mut y: Vec<Complex<f32>> = x
            .iter()
            .map(|z| Complex::new(z.re as f32, z.im as f32))
            .collect();
        let x32: Vec<Complex64> = y
            .iter()
            .map(|z| Complex64::new(z.re.into(), z.im.into()))
            .collect();
        f32p.process(&mut y, FftDirection::Forward);
        let y64: Vec<Complex64> = y
            .iter()
            .map(|z| Complex64::new(z.re.into(), z.im.into()))
            .collect();
        let err = max_err(&y64, &naive_dft2(&x32, h, w, false));
        assert!(err < 1e-5 * (h * w) as f64, "{h}x{w} f32: {err:e}");
    }
}

#[test]
fn real_fft2_matches_the_naive_dft() {
    for (nh, nw) in [
        (1, 1),
        (1, 6),
        (5, 1),
        (2, 2),
        (3, 4),
        (4, 5),
        (6, 6),
        (7, 3),
        (8, 10),
        (9, 7),
    ] {
        let f = RealFft2::new(nh, nw);
        let x: Vec<f32> = noise(nh * nw, (nh * 17 + nw) as u64)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let spec = real_forward(&f, &x);
        let xc: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v.into(), 0.0)).collect();
        let want = naive_dft2(&xc, nh, nw, false);
        let err = max_err(&full_from_half(&f, &spec), &want);
        assert!(err < 1e-5 * (nh * nw) as f64, "{nh}x{nw}: {err:e}");
    }
}

#[test]
fn a_single_frequency_cosine_lands_in_its_bin() {
    // x[n, m] = cos(2 pi (k0 n / h + l0 m / w)): X = h w / 2 at (k0, l0) and at (-k0, -l0).
    for (h, w, k0, l0) in [
        (8, 8, 3, 2),
        (12, 10, 1, 4),
        (9, 15, 4, 7),
        (6, 7, 3, 1),
        (16, 12, 0, 6),
    ] {
        let x: Vec<f64> = (0..h * w)
            .map(|p| {
                let (n, m) = (p / w, p % w);
                (2.0 * PI * ((k0 * n) as f64 / h as f64 + (l0 * m) as f64 / w as f64)).cos()
            })
            .collect();
        let want = |k: usize, l: usize| {
            let hit = |a: usize, b: usize| (k, l) == (a % h, b % w);
            let n = hit(k0, l0) as u8 + hit(h - k0, w - l0) as u8;
            (h * w) as f64 / 2.0 * n as f64
        };
        // complex
        let f = ComplexFft2::<f64>::new(h, w);
        let mut z: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v, 0.0)).collect();
        f.process(&mut z, FftDirection::Forward);
        for k in 0..h {
            for l in 0..w {
                let d = (z[k * w + l] - Complex64::new(want(k, l), 0.0)).norm();
                assert!(
                    d < 1e-9,
                    "complex {h}x{w} ({k0}, {l0}) bin ({k}, {l}): {d:e}"
                );
            }
        }
        // the bin's signed frequencies are the cosine's (up to the sign of the pair)
        let (kb, lb) = (k0 % h, l0 % w);
        assert_eq!(
            (
                signed_freq(kb, h).rem_euclid(h as i64),
                signed_freq(lb, w).rem_euclid(w as i64)
            ),
            (k0 as i64 % h as i64, l0 as i64 % w as i64)
        );
        // real (f32)
        let fr = RealFft2::new(h, w);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let spec = real_forward(&fr, &x32);
        for l in 0..fr.nwc() {
            for k in 0..h {
                let z = spec[l * h + k];
                let d = (Complex64::new(z.re.into(), z.im.into())
                    - Complex64::new(want(k, l), 0.0))
                .norm();
                assert!(
                    d < 1e-4 * (h * w) as f64,
                    "real {h}x{w} ({k0}, {l0}) bin ({k}, {l}): {d:e}"
                );
            }
        }
    }
}

#[test]
fn parseval() {
    for (h, w) in [(1, 7), (5, 5), (6, 10), (11, 13), (16, 9), (32, 24)] {
        let x = complex_noise(h * w, (h + 1000 * w) as u64);
        let f = ComplexFft2::<f64>::new(h, w);
        let mut z = x.clone();
        f.process(&mut z, FftDirection::Forward);
        let ex: f64 = x.iter().map(|v| v.norm_sqr()).sum();
        let ez: f64 = z.iter().map(|v| v.norm_sqr()).sum::<f64>() / (h * w) as f64;
        assert!(
            (ex - ez).abs() < 1e-12 * ex,
            "complex {h}x{w}: {ex} vs {ez}"
        );

        let xr: Vec<f32> = x.iter().map(|v| v.re as f32).collect();
        let fr = RealFft2::new(h, w);
        let spec = real_forward(&fr, &xr);
        // Every column l of the half spectrum stands for l and w - l, except l = 0 and the
        // Nyquist column of an even w.
        let mut e = 0.0;
        for l in 0..fr.nwc() {
            let weight = if l == 0 || 2 * l == w { 1.0 } else { 2.0 };
            e += weight
                * spec[l * h..(l + 1) * h]
                    .iter()
                    .map(|v| f64::from(v.norm_sqr()))
                    .sum::<f64>();
        }
        let ex: f64 = xr.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let e = e / (h * w) as f64;
        assert!((ex - e).abs() < 1e-5 * ex, "real {h}x{w}: {ex} vs {e}");
    }
}

/// The per-row, per-column loop that `FourierGaussian` and `energy_spectrum` ran before
/// `ComplexFft2` (one plain rustfft call per row and per copied column).
fn former_per_column(x: &mut [Complex64], h: usize, w: usize, inverse: bool) {
    let mut p = FftPlanner::<f64>::new();
    let (row, col) = if inverse {
        (p.plan_fft_inverse(w), p.plan_fft_inverse(h))
    } else {
        (p.plan_fft_forward(w), p.plan_fft_forward(h))
    };
    for r in x.chunks_exact_mut(w) {
        row.process(r);
    }
    let mut column = vec![Complex64::new(0.0, 0.0); h];
    for j in 0..w {
        for i in 0..h {
            column[i] = x[i * w + j];
        }
        col.process(&mut column);
        for i in 0..h {
            x[i * w + j] = column[i];
        }
    }
}

#[test]
fn complex_fft2_is_bit_identical_to_the_former_per_column_transform() {
    for (h, w) in [
        (1, 1),
        (3, 5),
        (8, 8),
        (12, 20),
        (16, 16),
        (25, 14),
        (32, 32),
        (64, 48),
    ] {
        let f = ComplexFft2::<f64>::new(h, w);
        for (dir, inverse) in [
            (FftDirection::Forward, false),
            (FftDirection::Inverse, true),
        ] {
            let x = complex_noise(h * w, (h * w) as u64);
            let (mut a, mut b) = (x.clone(), x);
            f.process(&mut a, dir);
            former_per_column(&mut b, h, w, inverse);
            assert!(a == b, "{h}x{w} {dir:?}: not bit-identical");
        }
    }
}

#[test]
#[should_panic(expected = "buffer of 5 values")]
fn complex_fft2_rejects_a_buffer_of_the_wrong_length() {
    let f = ComplexFft2::<f64>::new(2, 3);
    f.process(&mut [Complex64::new(0.0, 0.0); 5], FftDirection::Forward);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// inverse(forward(x)) = h w x for the complex transform, any size in 1..=40 x 1..=40.
    #[test]
    fn complex_round_trip(h in 1usize..=40, w in 1usize..=40, seed in any::<u64>()) {
        let f = ComplexFft2::<f64>::new(h, w);
        let x = complex_noise(h * w, seed);
        let mut z = x.clone();
        f.process(&mut z, FftDirection::Forward);
        f.process(&mut z, FftDirection::Inverse);
        let s = 1.0 / (h * w) as f64;
        let back: Vec<Complex64> = z.iter().map(|v| v * s).collect();
        prop_assert!(max_err(&back, &x) < 1e-12, "{}x{}: {:e}", h, w, max_err(&back, &x));
    }

    /// inverse(forward(x)) = nh nw x for the real transform, any size in 1..=40 x 1..=40, and
    /// only the requested rows in and out.
    #[test]
    fn real_round_trip(nh in 1usize..=40, nw in 1usize..=40, rows_in in 0usize..=40, seed in any::<u64>()) {
        let f = RealFft2::new(nh, nw);
        let x: Vec<f32> = noise(nh * nw, seed).into_iter().map(|v| v as f32).collect();
        let rows = rows_in.min(nh);
        let mut b = f.buffers();
        f.forward(&mut b, rows, |n, row| row.copy_from_slice(&x[n * nw..(n + 1) * nw])).unwrap();
        let mut back = vec![f32::NAN; nh * nw];
        f.inverse(&mut b, nh, |n, row| back[n * nw..(n + 1) * nw].copy_from_slice(row)).unwrap();
        let s = 1.0 / (nh * nw) as f32;
        for n in 0..nh {
            for m in 0..nw {
                let want = if n < rows { x[n * nw + m] } else { 0.0 };
                let got = back[n * nw + m] * s;
                prop_assert!((got - want).abs() < 1e-5, "{}x{} ({}, {}): {} vs {}", nh, nw, n, m, got, want);
            }
        }
    }
}
