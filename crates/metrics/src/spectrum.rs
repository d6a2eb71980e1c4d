//! Radially averaged energy spectrum of 2-D periodic fields (for comparing samples of a
//! Navier-Stokes prior with data, as in the FNO/EnKG literature).
//!
//! For a field `w` on an `H x W` grid with DFT `w_hat(k) = sum_x w(x) exp(-2 pi i k.x / N)`,
//! the energy of mode `k = (k_y, k_x)` (signed integer frequencies) is
//! `|w_hat(k)|^2 / (H W)^2`, and the shell spectrum is
//! `E(s) = sum_{k : round(|k|) = s} |w_hat(k)|^2 / (H W)^2` for `s = 0, 1, ..., s_max` with
//! `s_max = round(sqrt((H/2)^2 + (W/2)^2))`. By Parseval, `sum_s E(s) = mean(w^2)`.
//! Cost: one complex 2-D FFT per field, `O(H W log(H W))`.

use diffinv_fft::{signed_freq, Complex64, ComplexFft2, FftDirection};
use ndarray::ArrayView2;

use crate::{MetricError, Result};

/// Number of shells of an `h x w` grid.
pub fn shell_count(h: usize, w: usize) -> usize {
    (((h / 2).pow(2) + (w / 2).pow(2)) as f64).sqrt().round() as usize + 1
}

/// Shell spectrum `E(s)` of one row-major `h x w` field.
pub fn energy_spectrum(field: &[f32], h: usize, w: usize) -> Result<Vec<f64>> {
    check_grid(h, w)?;
    shell_spectrum(&ComplexFft2::new(h, w), field)
}

fn check_grid(h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(MetricError::InvalidParameter { name: "grid", reason: format!("{h} x {w} is empty") });
    }
    Ok(())
}

/// [`energy_spectrum`] with the plans of the grid made once by the caller.
fn shell_spectrum(fft: &ComplexFft2<f64>, field: &[f32]) -> Result<Vec<f64>> {
    let (h, w) = (fft.height(), fft.width());
    if field.len() != h * w {
        return Err(MetricError::Shape { what: "field", expected: h * w, got: field.len() });
    }
    if field.iter().any(|v| !v.is_finite()) {
        return Err(MetricError::InvalidParameter { name: "field", reason: "non-finite value".into() });
    }
    let mut data: Vec<Complex64> = field.iter().map(|&v| Complex64::new(f64::from(v), 0.0)).collect();
    fft.process(&mut data, FftDirection::Forward);
    let norm = ((h * w) as f64).powi(2);
    let mut e = vec![0.0; shell_count(h, w)];
    for i in 0..h {
        for j in 0..w {
            let (ky, kx) = (signed_freq(i, h), signed_freq(j, w));
            let s = ((ky * ky + kx * kx) as f64).sqrt().round() as usize;
            if let Some(slot) = e.get_mut(s) {
                *slot += data[i * w + j].norm_sqr() / norm;
            }
        }
    }
    Ok(e)
}

/// Mean shell spectrum of the rows of `fields (N, h w)`.
pub fn mean_energy_spectrum(fields: ArrayView2<'_, f32>, h: usize, w: usize) -> Result<Vec<f64>> {
    if fields.nrows() == 0 {
        return Err(MetricError::Empty("fields"));
    }
    check_grid(h, w)?;
    let fft = ComplexFft2::new(h, w);
    let mut acc = vec![0.0; shell_count(h, w)];
    for r in fields.outer_iter() {
        let v: Vec<f32> = r.iter().copied().collect();
        for (a, e) in acc.iter_mut().zip(shell_spectrum(&fft, &v)?) {
            *a += e;
        }
    }
    let n = fields.nrows() as f64;
    Ok(acc.into_iter().map(|a| a / n).collect())
}

/// Largest relative deviation `max_{lo <= s <= hi} |a_s - b_s| / b_s` of spectrum `a` from the
/// reference `b` over the band of shells `lo..=hi` (shells where `b_s = 0` are skipped).
pub fn max_relative_deviation(a: &[f64], b: &[f64], lo: usize, hi: usize) -> Result<f64> {
    if a.len() != b.len() {
        return Err(MetricError::Shape { what: "spectrum", expected: b.len(), got: a.len() });
    }
    if lo > hi || hi >= b.len() {
        return Err(MetricError::InvalidParameter { name: "band", reason: format!("{lo}..={hi} outside 0..{}", b.len()) });
    }
    Ok((lo..=hi).filter(|&s| b[s] > 0.0).map(|s| (a[s] - b[s]).abs() / b[s]).fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn single_mode_lands_in_its_shell() {
        let (h, w) = (32, 32);
        let field: Vec<f32> = (0..h * w)
            .map(|p| {
                let (i, j) = (p / w, p % w);
                let x = 2.0 * std::f64::consts::PI * j as f64 / w as f64;
                let y = 2.0 * std::f64::consts::PI * i as f64 / h as f64;
                ((3.0 * x).cos() + 0.5 * (4.0 * y).sin()) as f32
            })
            .collect();
        let e = energy_spectrum(&field, h, w).expect("spectrum");
        assert_relative_eq!(e[3], 0.5, epsilon = 1e-6);
        assert_relative_eq!(e[4], 0.125, epsilon = 1e-6);
        let rest: f64 = e.iter().enumerate().filter(|(s, _)| *s != 3 && *s != 4).map(|(_, v)| v).sum();
        assert!(rest < 1e-10, "{rest}");
    }

    #[test]
    fn parseval_and_errors() {
        let (h, w) = (12, 20);
        let field: Vec<f32> = (0..h * w).map(|p| ((p * 7919 % 101) as f32 / 50.0) - 1.0).collect();
        let e = energy_spectrum(&field, h, w).expect("spectrum");
        let ms: f64 = field.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / (h * w) as f64;
        assert_relative_eq!(e.iter().sum::<f64>(), ms, max_relative = 1e-10);
        assert!(energy_spectrum(&field, h, w + 1).is_err());
        assert!(energy_spectrum(&[f32::NAN; 4], 2, 2).is_err());
        assert_relative_eq!(max_relative_deviation(&[1.1, 2.0], &[1.0, 2.5], 0, 1).expect("dev"), 0.2, epsilon = 1e-12);
        assert!(max_relative_deviation(&[1.0], &[1.0, 2.0], 0, 1).is_err());
        let m = mean_energy_spectrum(ndarray::Array2::from_shape_vec((1, h * w), field).expect("shape").view(), h, w).expect("mean");
        assert_eq!(m, e);
    }
}
