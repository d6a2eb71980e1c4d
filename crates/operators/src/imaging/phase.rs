//! Fourier phase retrieval: `y = |F P x|`.

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;

use super::{check_rows, fft_err, par_rows, row_slice, ImageShape};
use crate::{check_batch, Differentiable, ForwardModel, OperatorError, Result};
use diffinv_fft::{Fft2Buf, RealFft2};

/// Phase retrieval `y_c = |F P x_c|` for every channel `c`.
///
/// - `P` zero-pads the `H x W` image to `Hp x Wp = (H + 2 pad_h) x (W + 2 pad_w)` with the image
///   in the middle.
/// - `F` is the **unitary** 2-D DFT, `(F u)[k, l] = (Hp Wp)^{-1/2} sum_{n,m} u[n, m]
///   e^{-2 pi i (k n / Hp + l m / Wp)}` (`norm="ortho"`, as the references' `fft2c`), so
///   `||F P x|| = ||x||` and `F^H = F^{-1}`.
/// - The output is `C x Hp x Wp`; with `centered` (the default, as the references'
///   `fftshift`) the zero frequency sits at `(Hp/2, Wp/2)`, otherwise at `(0, 0)`.
///
/// `|F P x|` does not depend on where the image sits in the padded frame (a circular shift of
/// the padded image only multiplies the spectrum by a phase), nor on the references'
/// `ifftshift` before the transform, so the implementation places the image at the top-left
/// corner and transforms only its `H` non-zero rows. It is also invariant to `x -> -x` and to
/// the conjugate flip `x[n] -> x[-n]` (for a real image `F` of the flip is the conjugate).
///
/// Derivative (`Differentiable`): with `z = F P x`,
/// `J^T v = P^T Re(F^H (v ⊙ z / |z|))`, and where `|z_k| = 0` the factor `z_k / |z_k|` is taken
/// as 0 (the minimum-norm subgradient of `|.|` at 0, and what PyTorch's `abs` backward gives).
/// The real part is computed without complex outputs by symmetrising `v` over `k -> -k`
/// (`Re(F^H w) = F^H((w + conj(w(-k)))/2)`), so one real inverse transform suffices.
///
/// Cost per channel: `H` real row FFTs of length `Wp` and `Wp/2 + 1` complex column FFTs of
/// length `Hp` (about `2.5 Hp Wp log2(Hp Wp)` flops; 2x that for the vjp).
#[derive(Clone)]
pub struct PhaseRetrieval {
    shape: ImageShape,
    pad: (usize, usize),
    centered: bool,
    fft: Arc<RealFft2>,
    /// Output row of frequency row `k` and output column of frequency column `l`.
    row_pos: Vec<usize>,
    col_pos: Vec<usize>,
}

impl std::fmt::Debug for PhaseRetrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseRetrieval")
            .field("shape", &self.shape)
            .field("pad", &self.pad)
            .field("centered", &self.centered)
            .finish()
    }
}

impl PhaseRetrieval {
    /// Phase retrieval with `pad_h` zero rows above and below and `pad_w` zero columns left and
    /// right of each `H x W` channel.
    pub fn new(c: usize, h: usize, w: usize, pad_h: usize, pad_w: usize) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        let (hp, wp) = match (
            pad_h.checked_mul(2).and_then(|p| p.checked_add(h)),
            pad_w.checked_mul(2).and_then(|p| p.checked_add(w)),
        ) {
            (Some(a), Some(b)) if a.checked_mul(b).and_then(|v| v.checked_mul(c)).is_some() => {
                (a, b)
            }
            _ => {
                return Err(OperatorError::InvalidParameter {
                    name: "pad",
                    reason: format!("padding ({pad_h}, {pad_w}) is too large"),
                })
            }
        };
        let mut op = Self {
            shape,
            pad: (pad_h, pad_w),
            centered: true,
            fft: Arc::new(RealFft2::new(hp, wp)),
            row_pos: Vec::new(),
            col_pos: Vec::new(),
        };
        op.set_positions();
        Ok(op)
    }

    /// Oversampling by `factor` in each dimension: the padded frame is `round(factor H) x
    /// round(factor W)` (pad `(factor - 1) H / 2` on each side, rounded down). `factor = 2`
    /// gives the classical 2x oversampled `2H x 2W` frame.
    pub fn oversampled(c: usize, h: usize, w: usize, factor: f64) -> Result<Self> {
        if !(factor.is_finite() && (1.0..=64.0).contains(&factor)) {
            return Err(OperatorError::InvalidParameter {
                name: "oversample",
                reason: format!("must be in [1, 64], got {factor}"),
            });
        }
        let ph = ((factor - 1.0) * h as f64 / 2.0).floor() as usize;
        let pw = ((factor - 1.0) * w as f64 / 2.0).floor() as usize;
        Self::new(c, h, w, ph, pw)
    }

    /// The padding of the DPS/EnKG code: `pad = floor(oversample / 8 * H)` on each side
    /// (their `int((oversample / 8.0) * resolution)`), so `oversample = 2` pads a 256 image by 64
    /// to 384 x 384 (1.5x, not 2x).
    pub fn dps(c: usize, h: usize, w: usize, oversample: f64) -> Result<Self> {
        if !(oversample.is_finite() && (0.0..=512.0).contains(&oversample)) {
            return Err(OperatorError::InvalidParameter {
                name: "oversample",
                reason: format!("must be in [0, 512], got {oversample}"),
            });
        }
        let ph = (oversample / 8.0 * h as f64).floor() as usize;
        let pw = (oversample / 8.0 * w as f64).floor() as usize;
        Self::new(c, h, w, ph, pw)
    }

    /// Put the zero frequency at `(Hp/2, Wp/2)` (`true`, default) or at `(0, 0)` (`false`).
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self.set_positions();
        self
    }

    fn set_positions(&mut self) {
        let (hp, wp) = (self.fft.nh(), self.fft.nw());
        let (sh, sw) = if self.centered {
            (hp / 2, wp / 2)
        } else {
            (0, 0)
        };
        self.row_pos = (0..hp).map(|k| (k + sh) % hp).collect();
        self.col_pos = (0..wp).map(|l| (l + sw) % wp).collect();
    }

    /// Padding `(pad_h, pad_w)` on each side.
    pub fn padding(&self) -> (usize, usize) {
        self.pad
    }
    /// Padded frame `(Hp, Wp)`.
    pub fn padded_size(&self) -> (usize, usize) {
        (self.fft.nh(), self.fft.nw())
    }

    fn out_len(&self) -> usize {
        self.shape.c * self.fft.nh() * self.fft.nw()
    }

    /// Output position of frequency `(k, l)`.
    #[inline]
    fn pos(&self, k: usize, l: usize) -> usize {
        self.row_pos[k] * self.fft.nw() + self.col_pos[l]
    }

    fn spectrum(&self, b: &mut Fft2Buf, xc: &[f32], row: usize) -> Result<()> {
        let w = self.shape.w;
        self.fft
            .forward(b, self.shape.h, |n, r| {
                r[..w].copy_from_slice(&xc[n * w..(n + 1) * w])
            })
            .map_err(|e| fft_err(row, e))
    }
}

impl ForwardModel for PhaseRetrieval {
    fn as_differentiable(&self) -> Option<&dyn crate::Differentiable> {
        Some(self)
    }
    fn input_shape(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.shape.c, self.fft.nh(), self.fft.nw()]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.shape.len(), "forward input")?;
        let (hp, wp, nwc) = (self.fft.nh(), self.fft.nw(), self.fft.nwc());
        let plane = self.shape.plane();
        let norm = 1.0 / ((hp * wp) as f32).sqrt();
        par_rows(
            x.nrows(),
            self.out_len(),
            || self.fft.buffers(),
            |b, i, out| {
                let xr = row_slice(&x, i);
                for (ch, oc) in out.chunks_exact_mut(hp * wp).enumerate() {
                    self.spectrum(b, &xr[ch * plane..(ch + 1) * plane], i)?;
                    // stored half: contiguous reads of spec[l * hp + k]
                    for l in 0..nwc {
                        let col = &b.spec[l * hp..(l + 1) * hp];
                        for (k, z) in col.iter().enumerate() {
                            oc[self.pos(k, l)] = z.norm() * norm;
                        }
                    }
                    // the other half by Hermitian symmetry, |Z[k, l]| = |Z[-k, wp - l]|
                    for l in nwc..wp {
                        let col = &b.spec[(wp - l) * hp..(wp - l + 1) * hp];
                        for k in 0..hp {
                            oc[self.pos(k, l)] = col[if k == 0 { 0 } else { hp - k }].norm() * norm;
                        }
                    }
                }
                Ok(())
            },
        )
    }
}

impl Differentiable for PhaseRetrieval {
    /// `J^T v = P^T Re(F^H (v ⊙ z / |z|))`, `z = F P x`, with `z/|z| := 0` where `z = 0`.
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.shape.len(), "vjp point")?;
        check_rows(x.nrows(), v, "vjp cotangent")?;
        check_batch(v, self.out_len(), "vjp cotangent")?;
        let (hp, wp, nwc) = (self.fft.nh(), self.fft.nw(), self.fft.nwc());
        let (h, w, plane) = (self.shape.h, self.shape.w, self.shape.plane());
        let norm = 1.0 / ((hp * wp) as f32).sqrt();
        par_rows(
            x.nrows(),
            self.shape.len(),
            || self.fft.buffers(),
            |b, i, out| {
                let xr = row_slice(&x, i);
                let vr = row_slice(&v, i);
                for (ch, gc) in out.chunks_exact_mut(plane).enumerate() {
                    self.spectrum(b, &xr[ch * plane..(ch + 1) * plane], i)?;
                    let vc = &vr[ch * hp * wp..(ch + 1) * hp * wp];
                    for l in 0..nwc {
                        let lm = if l == 0 { 0 } else { wp - l };
                        for k in 0..hp {
                            let km = if k == 0 { 0 } else { hp - k };
                            let z = b.spec[l * hp + k];
                            let a = z.norm();
                            let vs = 0.5 * (vc[self.pos(k, l)] + vc[self.pos(km, lm)]);
                            // F^H = (unscaled inverse) * norm
                            b.spec[l * hp + k] = if a > 0.0 {
                                z * (vs * norm / a)
                            } else {
                                Complex32::new(0.0, 0.0)
                            };
                        }
                    }
                    self.fft
                        .inverse(b, h, |n, row| {
                            gc[n * w..(n + 1) * w].copy_from_slice(&row[..w])
                        })
                        .map_err(|e| fft_err(i, e))?;
                }
                Ok(())
            },
        )
    }
}
