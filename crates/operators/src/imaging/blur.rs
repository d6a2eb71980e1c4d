//! Deblurring forward models: `y_c = k ⋆ reflect_pad(x_c)` computed with real 2-D FFTs.

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;

use super::kernels::{gaussian_kernel, motion_kernel};
use super::{check_rows, fft_err, par_rows, row_slice, ImageShape};
use crate::{check_batch, Differentiable, ForwardModel, LinearOperator, OperatorError, Result};
use diffinv_fft::{fast_len, Fft2Buf, RealFft2};

/// Reflection of index `t` into `0..n` without repeating the edge (`-1 -> 1`, `n -> n - 2`),
/// as `torch.nn.ReflectionPad2d`; for pads wider than the image it continues periodically with
/// period `2 (n - 1)` (PyTorch refuses pads `>= n`).
pub(crate) fn reflect(t: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = t.rem_euclid(period);
    if m >= n as isize {
        (period - m) as usize
    } else {
        m as usize
    }
}

/// Blur with a fixed `kh x kw` kernel (odd sizes), the DPS/EnKG `Blurkernel`:
///
/// `y_c[i, j] = sum_{u < kh, v < kw} k[u, v] xp_c[i + u, j + v]`, `xp_c = reflect_pad(x_c,
/// (kh/2, kw/2))`,
///
/// i.e. `torch.nn.ReflectionPad2d(ks // 2)` followed by `conv2d` (a cross-correlation, kernel
/// not flipped), output of the input's size. The adjoint is exact: `A^T = Pad^T C^T`, where
/// `C^T` is the full convolution with `k` and `Pad^T` folds the reflected border back onto the
/// pixels it was copied from.
///
/// Implementation: per channel one real 2-D FFT of size `Lh x Lw`, `Lh = fast(H + kh - 1)`,
/// `Lw = fast(W + kw - 1)` (next size with factors 2, 3, 5, 7; `L >= H + kh - 1` makes the
/// circular correlation equal the linear one on the output window), a pointwise product with
/// the kernel spectrum (computed once in the constructor, with the plans), and an inverse
/// transform of only the `H` needed rows. Flops per channel about `5 Lh Lw log2(Lh Lw)`
/// (forward + inverse) plus `6 Lh (Lw/2+1)` for the product: for a 256 x 256 image and a
/// 61 x 61 kernel (`L = 320`) about 9 Mflop, against `2 * 61^2 * 256^2 = 488` Mflop direct.
#[derive(Clone)]
pub struct Blur {
    shape: ImageShape,
    kernel: Array2<f32>,
    fft: Arc<RealFft2>,
    /// Kernel spectrum in the transposed half layout, divided by `Lh * Lw`.
    khat: Arc<Vec<Complex32>>,
    /// Column source index of padded column `q` (reflection).
    col_src: Vec<usize>,
    /// Row source index of padded row `p` (reflection).
    row_src: Vec<usize>,
}

impl std::fmt::Debug for Blur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blur")
            .field("shape", &self.shape)
            .field("kernel", &self.kernel.dim())
            .field("fft", &(self.fft.nh(), self.fft.nw()))
            .finish()
    }
}

impl Blur {
    /// Blur of `C x H x W` images with `kernel` (odd height and width, finite entries).
    pub fn new(c: usize, h: usize, w: usize, kernel: Array2<f32>) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        let (kh, kw) = kernel.dim();
        if kh % 2 == 0 || kw % 2 == 0 {
            return Err(OperatorError::InvalidParameter {
                name: "kernel",
                reason: format!("sides must be odd, got {kh} x {kw}"),
            });
        }
        if kernel.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::InvalidParameter {
                name: "kernel",
                reason: "kernel has non-finite entries".into(),
            });
        }
        let (rh, rw) = (kh / 2, kw / 2);
        let (lh, lw) = (fast_len(h + 2 * rh), fast_len(w + 2 * rw));
        let fft = RealFft2::new(lh, lw);
        let mut b = fft.buffers();
        fft.forward(&mut b, kh, |u, row| {
            for v in 0..kw {
                row[v] = kernel[[u, v]];
            }
        })
        .map_err(|e| fft_err(0, e))?;
        let norm = 1.0 / (lh as f32 * lw as f32);
        let khat: Vec<Complex32> = b.spec.iter().map(|z| z * norm).collect();
        let row_src = (0..h + 2 * rh)
            .map(|p| reflect(p as isize - rh as isize, h))
            .collect();
        let col_src = (0..w + 2 * rw)
            .map(|q| reflect(q as isize - rw as isize, w))
            .collect();
        Ok(Self {
            shape,
            kernel,
            fft: Arc::new(fft),
            khat: Arc::new(khat),
            col_src,
            row_src,
        })
    }

    /// Gaussian deblurring (DPS/EnKG/MO: `kernel_size = 61`, `std = 3.0`), kernel from
    /// [`gaussian_kernel`].
    pub fn gaussian(c: usize, h: usize, w: usize, kernel_size: usize, std: f64) -> Result<Self> {
        Self::new(c, h, w, gaussian_kernel(kernel_size, std)?)
    }

    /// Motion deblurring (DPS/MO: `kernel_size = 61`, `intensity = 0.5`), kernel from
    /// [`motion_kernel`] with `seed`.
    pub fn motion(
        c: usize,
        h: usize,
        w: usize,
        kernel_size: usize,
        intensity: f64,
        seed: u64,
    ) -> Result<Self> {
        Self::new(c, h, w, motion_kernel(kernel_size, intensity, seed)?)
    }

    /// The kernel `k`.
    pub fn kernel(&self) -> &Array2<f32> {
        &self.kernel
    }
    /// The FFT size `(Lh, Lw)`.
    pub fn fft_size(&self) -> (usize, usize) {
        (self.fft.nh(), self.fft.nw())
    }

    fn multiply(&self, b: &mut Fft2Buf, conj: bool) {
        for (z, k) in b.spec.iter_mut().zip(self.khat.iter()) {
            *z *= if conj { k.conj() } else { *k };
        }
    }
}

impl ForwardModel for Blur {
    fn as_linear(&self) -> Option<&dyn crate::LinearOperator> {
        Some(self)
    }
    fn as_differentiable(&self) -> Option<&dyn crate::Differentiable> {
        Some(self)
    }
    fn input_shape(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.shape.len();
        check_batch(x, d, "forward input")?;
        let (h, w, plane) = (self.shape.h, self.shape.w, self.shape.plane());
        par_rows(
            x.nrows(),
            d,
            || self.fft.buffers(),
            |b, i, out| {
                let xr = row_slice(&x, i);
                for (ch, oc) in out.chunks_exact_mut(plane).enumerate() {
                    let xc = &xr[ch * plane..(ch + 1) * plane];
                    self.fft
                        .forward(b, self.row_src.len(), |p, row| {
                            let src = &xc[self.row_src[p] * w..(self.row_src[p] + 1) * w];
                            for (o, &q) in row.iter_mut().zip(&self.col_src) {
                                *o = src[q];
                            }
                        })
                        .map_err(|e| fft_err(i, e))?;
                    // correlation: multiply by the conjugate kernel spectrum
                    self.multiply(b, true);
                    self.fft
                        .inverse(b, h, |n, row| {
                            oc[n * w..(n + 1) * w].copy_from_slice(&row[..w])
                        })
                        .map_err(|e| fft_err(i, e))?;
                }
                Ok(())
            },
        )
    }
}

impl LinearOperator for Blur {
    /// `A^T y = Pad^T (k * y)`: full convolution with the kernel, then the reflected border
    /// folded back.
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.shape.len();
        check_batch(y, d, "adjoint input")?;
        let (h, w, plane) = (self.shape.h, self.shape.w, self.shape.plane());
        par_rows(
            y.nrows(),
            d,
            || self.fft.buffers(),
            |b, i, out| {
                let yr = row_slice(&y, i);
                for (ch, xc) in out.chunks_exact_mut(plane).enumerate() {
                    let yc = &yr[ch * plane..(ch + 1) * plane];
                    self.fft
                        .forward(b, h, |n, row| {
                            row[..w].copy_from_slice(&yc[n * w..(n + 1) * w])
                        })
                        .map_err(|e| fft_err(i, e))?;
                    self.multiply(b, false);
                    self.fft
                        .inverse(b, self.row_src.len(), |p, row| {
                            let dst = &mut xc[self.row_src[p] * w..(self.row_src[p] + 1) * w];
                            for (&v, &q) in row.iter().zip(&self.col_src) {
                                dst[q] += v;
                            }
                        })
                        .map_err(|e| fft_err(i, e))?;
                }
                Ok(())
            },
        )
    }
}

impl Differentiable for Blur {
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.shape.len(), "vjp point")?;
        check_rows(x.nrows(), v, "vjp cotangent")?;
        self.adjoint(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_reflection_pad() {
        // n = 4: ... 2 1 | 0 1 2 3 | 2 1 0 1 2 3 ...
        let got: Vec<usize> = (-3..9).map(|t| reflect(t, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn matches_direct_reflect_padded_correlation() {
        let (h, w) = (5usize, 7usize);
        let k = Array2::from_shape_fn((3, 5), |(u, v)| (u * 5 + v) as f32 * 0.1 - 0.4);
        let op = Blur::new(1, h, w, k.clone()).unwrap();
        let x = Array2::from_shape_fn((1, h * w), |(_, p)| ((p * 13 % 17) as f32) * 0.25 - 2.0);
        let y = op.forward(x.view()).unwrap();
        for i in 0..h {
            for j in 0..w {
                let mut acc = 0.0f64;
                for u in 0..3 {
                    for v in 0..5 {
                        let r = reflect(i as isize + u as isize - 1, h);
                        let c = reflect(j as isize + v as isize - 2, w);
                        acc += k[[u, v]] as f64 * x[[0, r * w + c]] as f64;
                    }
                }
                assert!((y[[0, i * w + j]] as f64 - acc).abs() < 1e-4, "{i} {j}");
            }
        }
    }
}
