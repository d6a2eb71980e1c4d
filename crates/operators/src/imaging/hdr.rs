//! High-dynamic-range reconstruction: `y = clip(alpha x, -1, 1)`.

use ndarray::{Array2, ArrayView2};

use super::{check_rows, par_rows, row_slice, ImageShape};
use crate::{check_batch, Differentiable, ForwardModel, OperatorError, Result};

/// HDR forward model `y = clip(alpha x, -1, 1)` elementwise, for images in `[-1, 1]`: one of
/// the eight tasks of Measurements Optimization (MO, arXiv 2412.03941), the high-dynamic-range
/// task of the DAPS benchmark (Zhang et al. 2024) with gain `alpha = 2`.
///
/// Derivative (`Differentiable`): `J^T v = alpha v ⊙ 1[|alpha x| <= 1]`, i.e. the gradient
/// passes inside the clip range *including* its end points and is 0 outside (the subgradient
/// PyTorch's `clamp` backward uses).
///
/// Cost: one multiply and two comparisons per value (memory bound).
#[derive(Debug, Clone)]
pub struct Hdr {
    shape: ImageShape,
    alpha: f32,
}

impl Hdr {
    /// The MO setting, `alpha = 2`.
    pub const DEFAULT_ALPHA: f32 = 2.0;

    /// HDR on `C x H x W` images with gain `alpha` (finite, `> 0`).
    pub fn new(c: usize, h: usize, w: usize, alpha: f32) -> Result<Self> {
        let shape = ImageShape::new(c, h, w)?;
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "alpha",
                reason: format!("must be finite and > 0, got {alpha}"),
            });
        }
        Ok(Self { shape, alpha })
    }
    /// The gain `alpha`.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }
}

impl ForwardModel for Hdr {
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
        par_rows(
            x.nrows(),
            d,
            || (),
            |_, i, out| {
                let xr = row_slice(&x, i);
                for (o, &xv) in out.iter_mut().zip(xr.iter()) {
                    *o = (self.alpha * xv).clamp(-1.0, 1.0);
                }
                Ok(())
            },
        )
    }
}

impl Differentiable for Hdr {
    /// `alpha v` where `|alpha x| <= 1`, 0 elsewhere.
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.shape.len();
        check_batch(x, d, "vjp point")?;
        check_rows(x.nrows(), v, "vjp cotangent")?;
        check_batch(v, d, "vjp cotangent")?;
        par_rows(
            x.nrows(),
            d,
            || (),
            |_, i, out| {
                let xr = row_slice(&x, i);
                let vr = row_slice(&v, i);
                for ((o, &xv), &vv) in out.iter_mut().zip(xr.iter()).zip(vr.iter()) {
                    *o = if (self.alpha * xv).abs() <= 1.0 {
                        self.alpha * vv
                    } else {
                        0.0
                    };
                }
                Ok(())
            },
        )
    }
}
