//! The linear visibility operator: a direct Fourier transform of the pixel image at the
//! sampled (u, v) points.
//!
//! For pixel `p` at sky offset `(l_p, m_p)` (radians; `l` east, `m` north) with brightness
//! `I_p` and the `k`-th sample at `(u_k, v_k)` wavelengths,
//!
//! ```text
//! V_k = P(u_k, v_k) sum_p I_p exp(-2 pi i (u_k l_p + v_k m_p))
//! ```
//!
//! where `P` is the Fourier transform of the pixel's brightness profile (the "pulse"), `P(0,0)
//! = 1`, so that `V(0, 0) = sum_p I_p` is the total flux. Pixel `(r, c)` (row `r` from the top,
//! column `c` from the left, row-major index `r * n + c`) sits at `l = ((n - 1)/2 - c) dx`,
//! `m = ((n - 1)/2 - r) dx` with `dx = FOV / n`: east is left and north is up, the astronomical
//! orientation that eht-imaging uses.
//!
//! The matrix `A` (`n_vis x n^2` complex) is built once and stored as two `f32` matrices
//! (real and imaginary parts). The real-valued operator is `x -> [Re(A x), Im(A x)]`, length
//! `2 n_vis`, with the exact adjoint `[y_re, y_im] -> Re(A)^T y_re + Im(A)^T y_im`.
//!
//! Both products are dense `f32` matrix products (`ndarray`'s `general_mat_mul`, i.e.
//! matrixmultiply's packed, runtime-dispatched SIMD kernels) over fixed blocks of [`BLOCK`]
//! images, blocks in parallel with rayon. The matrix is stored twice (`[Re A; Im A]` and its
//! transpose, `2 x 8 K n^2` bytes, 55 MB for the default coverage) so that each product streams
//! a contiguous right-hand side. Each output element is a fixed-order sum that does not depend
//! on the other rows of the block, so results are bit-identical for any thread count or batch
//! size (tested).
//!
//! Cost floor: `4 K n^2` flops per image for the forward map and the same for the adjoint;
//! `8 K n^2` bytes of matrix streamed per block of images.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::array::UvCoverage;
use crate::{check_batch, ForwardModel, LinearOperator, OperatorError, Result};

/// One micro-arcsecond in radians.
pub const RAD_PER_UAS: f64 = std::f64::consts::PI / 180.0 / 3600.0 / 1e6;

/// Images processed together in one pass over the matrix.
pub const BLOCK: usize = 32;

/// The pixel grid on the sky.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageGrid {
    /// Pixels per side, `n` (the image is `n x n`).
    pub npix: usize,
    /// Field of view per side, micro-arcseconds.
    pub fov_uas: f64,
}

impl Default for ImageGrid {
    /// 64 x 64 pixels over 160 micro-arcseconds (2.5 uas pixels), the EnKG / InverseBench
    /// black-hole setting.
    fn default() -> Self {
        Self {
            npix: 64,
            fov_uas: 160.0,
        }
    }
}

impl ImageGrid {
    /// Pixel size, radians.
    pub fn pixel_rad(&self) -> f64 {
        self.fov_uas * RAD_PER_UAS / self.npix as f64
    }
    /// Sky offset (radians) of column `c` (east positive, so decreasing with `c`), also the
    /// north offset of row `c`.
    pub fn offset(&self, c: usize) -> f64 {
        ((self.npix as f64 - 1.0) / 2.0 - c as f64) * self.pixel_rad()
    }
    fn validate(&self) -> Result<()> {
        if self.npix == 0 {
            return Err(OperatorError::InvalidParameter {
                name: "npix",
                reason: "must be > 0".into(),
            });
        }
        if !(self.fov_uas.is_finite() && self.fov_uas > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "fov_uas",
                reason: format!("must be finite and > 0, got {}", self.fov_uas),
            });
        }
        Ok(())
    }
}

/// The brightness profile of one pixel, through its Fourier transform `P(u, v)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PixelResponse {
    /// Point sources at the pixel centres: `P = 1`.
    Delta,
    /// A square top hat of the pixel's width: `P = sinc(u dx) sinc(v dx)`,
    /// `sinc(t) = sin(pi t) / (pi t)`.
    Box,
    /// A triangle of half-width one pixel (bilinear interpolation between centres):
    /// `P = sinc^2(u dx) sinc^2(v dx)`. The eht-imaging default (`trianglePulse2D`).
    #[default]
    Triangle,
}

impl PixelResponse {
    /// `P(u, v)` for pixel size `dx` (radians), `u, v` in wavelengths.
    pub fn response(&self, u: f64, v: f64, dx: f64) -> f64 {
        let sinc = |t: f64| {
            if t.abs() < 1e-12 {
                1.0
            } else {
                let a = std::f64::consts::PI * t;
                a.sin() / a
            }
        };
        match self {
            Self::Delta => 1.0,
            Self::Box => sinc(u * dx) * sinc(v * dx),
            Self::Triangle => {
                let s = sinc(u * dx) * sinc(v * dx);
                s * s
            }
        }
    }
}

/// The linear map from an `n x n` image to its complex visibilities, as a real operator
/// `R^{n^2} -> R^{2 n_vis}` with output `[Re V_0 .. Re V_{K-1}, Im V_0 .. Im V_{K-1}]`.
#[derive(Debug, Clone)]
pub struct VisibilityOperator {
    grid: ImageGrid,
    pulse: PixelResponse,
    uv: Vec<[f64; 2]>,
    /// `[Re(A); Im(A)]` stacked, `(2K, n^2)`.
    a: Array2<f32>,
    /// Its transpose in standard layout, `(n^2, 2K)`, so that both products stream a
    /// contiguous right-hand side.
    at: Array2<f32>,
}

impl VisibilityOperator {
    /// Build the DFT matrix for the samples of `coverage` on `grid` with pixel response `pulse`.
    pub fn new(coverage: &UvCoverage, grid: ImageGrid, pulse: PixelResponse) -> Result<Self> {
        let uv: Vec<[f64; 2]> = coverage.points.iter().map(|p| [p.u, p.v]).collect();
        Self::from_uv(&uv, grid, pulse)
    }

    /// Build the DFT matrix for arbitrary `(u, v)` points (wavelengths).
    ///
    /// Uses the separability `exp(-2 pi i (u l + v m)) = exp(-2 pi i u l) exp(-2 pi i v m)`, so
    /// only `2 n` complex exponentials are evaluated (in `f64`) per sample.
    pub fn from_uv(uv: &[[f64; 2]], grid: ImageGrid, pulse: PixelResponse) -> Result<Self> {
        grid.validate()?;
        if uv.is_empty() {
            return Err(OperatorError::InvalidParameter {
                name: "uv",
                reason: "no samples".into(),
            });
        }
        if let Some(k) = uv
            .iter()
            .position(|p| !(p[0].is_finite() && p[1].is_finite()))
        {
            return Err(OperatorError::InvalidParameter {
                name: "uv",
                reason: format!("sample {k} is not finite"),
            });
        }
        let n = grid.npix;
        let d = n * n;
        let dx = grid.pixel_rad();
        let offs: Vec<f64> = (0..n).map(|c| grid.offset(c)).collect();
        let k = uv.len();
        let mut a = Array2::<f32>::zeros((2 * k, d));
        let (mut a_re, mut a_im) = a.view_mut().split_at(Axis(0), k);
        let tau = std::f64::consts::TAU;
        a_re.outer_iter_mut()
            .into_par_iter()
            .zip(a_im.outer_iter_mut().into_par_iter())
            .zip(uv.par_iter())
            .for_each(|((mut re, mut im), &[u, v])| {
                let p = pulse.response(u, v, dx);
                let eu: Vec<Complex<f64>> = offs
                    .iter()
                    .map(|&l| Complex::from_polar(1.0, -tau * u * l))
                    .collect();
                let ev: Vec<Complex<f64>> = offs
                    .iter()
                    .map(|&m| Complex::from_polar(p, -tau * v * m))
                    .collect();
                for r in 0..n {
                    for c in 0..n {
                        let z = ev[r] * eu[c];
                        re[r * n + c] = z.re as f32;
                        im[r * n + c] = z.im as f32;
                    }
                }
            });
        let at = a.t().as_standard_layout().into_owned();
        Ok(Self {
            grid,
            pulse,
            uv: uv.to_vec(),
            a,
            at,
        })
    }

    /// Number of complex visibilities `K`.
    pub fn n_vis(&self) -> usize {
        self.uv.len()
    }
    /// The image grid.
    pub fn grid(&self) -> ImageGrid {
        self.grid
    }
    /// The pixel response.
    pub fn pulse(&self) -> PixelResponse {
        self.pulse
    }
    /// The `(u, v)` samples, wavelengths.
    pub fn uv(&self) -> &[[f64; 2]] {
        &self.uv
    }
    /// The real matrix of the operator, `[Re(A); Im(A)]`, `(2K, n^2)`.
    pub fn matrix(&self) -> &Array2<f32> {
        &self.a
    }

    /// Complex visibilities of every image row: `(N, n^2)` in, `(N, K)` out.
    pub fn visibilities(&self, x: ArrayView2<'_, f32>) -> Result<Array2<Complex<f32>>> {
        let y = self.forward(x)?;
        let k = self.n_vis();
        Ok(Array2::from_shape_fn((y.nrows(), k), |(i, j)| {
            Complex::new(y[[i, j]], y[[i, k + j]])
        }))
    }
}

impl ForwardModel for VisibilityOperator {
    fn as_linear(&self) -> Option<&dyn crate::LinearOperator> {
        Some(self)
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![1, self.grid.npix, self.grid.npix]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![2 * self.n_vis()]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.a.ncols(), "visibility operator input")?;
        let mut y = Array2::<f32>::zeros((x.nrows(), self.a.nrows()));
        y.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), BLOCK).into_par_iter())
            .for_each(|(mut yb, xb)| general_mat_mul(1.0, &xb, &self.at, 0.0, &mut yb));
        Ok(y)
    }
}

impl LinearOperator for VisibilityOperator {
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y, self.a.nrows(), "visibility operator adjoint input")?;
        let mut x = Array2::<f32>::zeros((y.nrows(), self.a.ncols()));
        x.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .zip(y.axis_chunks_iter(Axis(0), BLOCK).into_par_iter())
            .for_each(|(mut xb, yb)| general_mat_mul(1.0, &yb, &self.a, 0.0, &mut xb));
        Ok(x)
    }
}
