//! The [`Denoiser`] trait.

use ndarray::{Array2, ArrayView2};

use crate::{PriorError, Result};

/// A diffusion prior as a batched denoiser `D(x; sigma) ~ E[x_0 | x_0 + sigma eps = x]`.
///
/// Rows of `x` are particles, all at the same noise level `sigma`.
pub trait Denoiser: Send + Sync {
    /// Dimension `d` of one sample.
    fn dim(&self) -> usize;

    /// `D(x; sigma)` for every row of `x` `(N, d)`.
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>>;

    /// Vector-Jacobian product `(dD(x; sigma)/dx)^T v` per row. Optional: solvers that
    /// differentiate through the prior (DPS and friends) ask for it; the derivative-free
    /// solvers never do.
    fn vjp(&self, x: ArrayView2<'_, f32>, sigma: f32, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let _ = (x, sigma, v);
        Err(PriorError::Unsupported("vjp"))
    }

    /// The score `grad_x log p_sigma(x) = (D(x; sigma) - x) / sigma^2`.
    fn score(&self, x: ArrayView2<'_, f32>, sigma: f32) -> Result<Array2<f32>> {
        let d = self.denoise(x, sigma)?;
        let inv = 1.0 / (sigma * sigma);
        Ok((d - x) * inv)
    }
}

/// Check a batch against the prior's dimension and for non-finite values.
pub fn check_input(x: ArrayView2<'_, f32>, dim: usize, what: &'static str) -> Result<()> {
    if x.ncols() != dim {
        return Err(PriorError::Shape { what, expected: dim, got: x.ncols() });
    }
    for (row, r) in x.outer_iter().enumerate() {
        if r.iter().any(|v| !v.is_finite()) {
            return Err(PriorError::NonFinite { what, row });
        }
    }
    Ok(())
}

/// Check a noise level.
pub fn check_sigma(sigma: f32) -> Result<()> {
    if sigma.is_finite() && sigma > 0.0 {
        Ok(())
    } else {
        Err(PriorError::InvalidParameter { name: "sigma", reason: format!("must be finite and > 0, got {sigma}") })
    }
}
