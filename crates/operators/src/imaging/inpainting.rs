//! Inpainting: `y = m ⊙ x` with a fixed 0/1 mask `m` shared by every channel.

use ndarray::{Array2, ArrayView2};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{check_rows, par_rows, row_slice, ImageShape};
use crate::{check_batch, Differentiable, ForwardModel, LinearOperator, OperatorError, Result};

/// How an [`Inpainting`] mask was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskKind {
    /// A missing rectangle: rows `top..top+height`, columns `left..left+width`.
    Box {
        /// First missing row.
        top: usize,
        /// First missing column.
        left: usize,
        /// Box height.
        height: usize,
        /// Box width.
        width: usize,
    },
    /// A random set of exactly `missing` pixels out of `H * W`.
    Random {
        /// Requested fraction of missing pixels.
        fraction: f64,
        /// Number of missing pixels, `floor(fraction * H * W)`.
        missing: usize,
    },
    /// A mask given by the user.
    Custom,
}

/// Inpainting `y = m ⊙ x`: every channel of pixel `(i, j)` is kept (`m = 1`) or zeroed
/// (`m = 0`).
///
/// The measurement keeps the full `C x H x W` shape with zeros at the missing pixels (as the
/// DPS/EnKG references do, `y = x * mask`), rather than a compressed list of the observed
/// pixels: a likelihood on `y` then sees the missing pixels as exact zeros on both sides, so
/// they contribute nothing. The operator is an orthogonal projection: `A^T = A`, `A^2 = A`.
///
/// Cost: `C H W` multiplies per row (memory bound: 8 bytes read + 4 written per value).
#[derive(Debug, Clone)]
pub struct Inpainting {
    shape: ImageShape,
    mask: Vec<f32>,
    kind: MaskKind,
}

impl Inpainting {
    /// Box inpainting with the DPS/EnKG geometry scaled to any image: a missing box of
    /// `floor(H/2) x floor(W/2)` pixels (128 x 128 in a 256 x 256 image) whose top-left corner
    /// is drawn uniformly from `[margin_h, H - margin_h - box_h)` x `[margin_w, W - margin_w -
    /// box_w)` with `margin = floor(side / 16)` (16 px in 256, DPS `random_sq_bbox`); when that
    /// range is empty (tiny images) the corner is drawn from `[0, H - box_h]`. The draws come
    /// from `ChaCha8Rng::seed_from_u64(seed)`.
    pub fn box_seeded(c: usize, h: usize, w: usize, seed: u64) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        let (bh, bw) = ((h / 2).max(1), (w / 2).max(1));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |side: usize, b: usize| -> usize {
            let margin = side / 16;
            if side > 2 * margin + b {
                rng.random_range(margin..side - margin - b)
            } else {
                rng.random_range(0..=side - b)
            }
        };
        let top = draw(h, bh);
        let left = draw(w, bw);
        Self::box_at(shape.c, h, w, top, left, bh, bw)
    }

    /// Box inpainting with a random box size and position, the reference `mask_generator`
    /// semantics (numpy `randint`, upper bounds exclusive): height and width each drawn from
    /// `len_range.0..len_range.1`, then the top-left corner from `[margin.0, H - margin.0 -
    /// height)` x `[margin.1, W - margin.1 - width)`, all from `ChaCha8Rng::seed_from_u64(seed)`.
    ///
    /// DPS: `len_range = (128, 129)`, `margin = (16, 16)` on 256 x 256 (what
    /// [`Self::box_seeded`] does); the EnKG reference config: `len_range = (105, 180)`,
    /// `margin = (32, 32)`.
    pub fn box_random(
        c: usize,
        h: usize,
        w: usize,
        len_range: (usize, usize),
        margin: (usize, usize),
        seed: u64,
    ) -> Result<Self> {
        ImageShape::new(c, h, w)?;
        let (lo, hi) = len_range;
        if lo == 0 || hi <= lo {
            return Err(OperatorError::InvalidParameter {
                name: "len_range",
                reason: format!("need 1 <= min < max (max exclusive), got {lo}..{hi}"),
            });
        }
        // the largest box must leave a non-empty range of corners on both axes
        for (side, m, name) in [(h, margin.0, "height"), (w, margin.1, "width")] {
            if side <= (2 * m).saturating_add(hi - 1) {
                return Err(OperatorError::InvalidParameter {
                    name: "margin",
                    reason: format!(
                        "a box of up to {} px with margin {m} does not fit the {name} {side}",
                        hi - 1
                    ),
                });
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bh = rng.random_range(lo..hi);
        let bw = rng.random_range(lo..hi);
        let top = rng.random_range(margin.0..h - margin.0 - bh);
        let left = rng.random_range(margin.1..w - margin.1 - bw);
        Self::box_at(c, h, w, top, left, bh, bw)
    }

    /// Box inpainting with the missing box `top..top+height` x `left..left+width`.
    pub fn box_at(
        c: usize,
        h: usize,
        w: usize,
        top: usize,
        left: usize,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        if top.checked_add(height).is_none_or(|e| e > h)
            || left.checked_add(width).is_none_or(|e| e > w)
        {
            return Err(OperatorError::InvalidParameter {
                name: "box",
                reason: format!(
                    "box rows {top}..{}, columns {left}..{} does not fit in {h} x {w}",
                    top.saturating_add(height),
                    left.saturating_add(width)
                ),
            });
        }
        let mut mask = vec![1.0f32; h * w];
        for i in top..top + height {
            mask[i * w + left..i * w + left + width]
                .iter_mut()
                .for_each(|m| *m = 0.0);
        }
        Ok(Self {
            shape,
            mask,
            kind: MaskKind::Box {
                top,
                left,
                height,
                width,
            },
        })
    }

    /// Random inpainting: exactly `floor(fraction * H * W)` pixels, drawn without replacement
    /// from `ChaCha8Rng::seed_from_u64(seed)`, are missing in every channel (the same pixel
    /// mask for all channels, as in the DPS/EnKG `mask_generator`). Default `fraction = 0.7`
    /// ([`Self::DEFAULT_FRACTION`]; the EnKG config's random option is `mask_prob_range:
    /// [0.7, 0.71]`).
    pub fn random(c: usize, h: usize, w: usize, fraction: f64, seed: u64) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(OperatorError::InvalidParameter {
                name: "fraction",
                reason: format!("must be in [0, 1], got {fraction}"),
            });
        }
        let total = h * w;
        let missing = ((fraction * total as f64).floor() as usize).min(total);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut mask = vec![1.0f32; total];
        for p in index::sample(&mut rng, total, missing).iter() {
            mask[p] = 0.0;
        }
        Ok(Self {
            shape,
            mask,
            kind: MaskKind::Random { fraction, missing },
        })
    }

    /// Default fraction of missing pixels for [`Self::random`].
    pub const DEFAULT_FRACTION: f64 = 0.7;

    /// Inpainting with a user mask of `H * W` values, each 0 (missing) or 1 (kept).
    pub fn from_mask(c: usize, h: usize, w: usize, mask: Vec<f32>) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        if mask.len() != h * w {
            return Err(OperatorError::Shape {
                what: "mask",
                expected: h * w,
                got: mask.len(),
            });
        }
        if mask.iter().any(|&m| m != 0.0 && m != 1.0) {
            return Err(OperatorError::InvalidParameter {
                name: "mask",
                reason: "entries must be 0 or 1".into(),
            });
        }
        Ok(Self {
            shape,
            mask,
            kind: MaskKind::Custom,
        })
    }

    /// The `H * W` mask (1 kept, 0 missing), row-major.
    pub fn mask(&self) -> &[f32] {
        &self.mask
    }
    /// How the mask was made.
    pub fn kind(&self) -> MaskKind {
        self.kind
    }
    /// The image shape.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    fn apply(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (d, plane) = (self.shape.len(), self.shape.plane());
        par_rows(
            x.nrows(),
            d,
            || (),
            |_, i, out| {
                let xr = row_slice(&x, i);
                for (ch, o) in out.chunks_exact_mut(plane).enumerate() {
                    let xc = &xr[ch * plane..(ch + 1) * plane];
                    for ((o, &xv), &m) in o.iter_mut().zip(xc).zip(&self.mask) {
                        *o = xv * m;
                    }
                }
                Ok(())
            },
        )
    }
}

impl ForwardModel for Inpainting {
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
        check_batch(x, self.shape.len(), "forward input")?;
        self.apply(x)
    }
}

impl LinearOperator for Inpainting {
    /// `A^T y = m ⊙ y` (a projection is self-adjoint).
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y, self.shape.len(), "adjoint input")?;
        self.apply(y)
    }
}

impl Differentiable for Inpainting {
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.shape.len(), "vjp point")?;
        check_rows(x.nrows(), v, "vjp cotangent")?;
        self.adjoint(v)
    }
}
