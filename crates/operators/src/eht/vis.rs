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
//! Cost floor: `4 n_vis n^2` flops per image for the forward map (and the same for the adjoint);
//! `8 n_vis n^2` bytes of matrix streamed per block of [`BLOCK`] images (the matrix does not fit
//! in cache, so blocks of images share one pass over it).

use ndarray::{Array2, ArrayView2};
use num_complex::Complex;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::array::UvCoverage;
use crate::{check_batch, ForwardModel, LinearOperator, OperatorError, Result};

/// One micro-arcsecond in radians.
pub const RAD_PER_UAS: f64 = std::f64::consts::PI / 180.0 / 3600.0 / 1e6;

/// Images processed together in one pass over the matrix.
pub const BLOCK: usize = 8;

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
        Self { npix: 64, fov_uas: 160.0 }
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
            return Err(OperatorError::InvalidParameter { name: "npix", reason: "must be > 0".into() });
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
    a_re: Array2<f32>,
    a_im: Array2<f32>,
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
            return Err(OperatorError::InvalidParameter { name: "uv", reason: "no samples".into() });
        }
        if let Some(k) = uv.iter().position(|p| !(p[0].is_finite() && p[1].is_finite())) {
            return Err(OperatorError::InvalidParameter { name: "uv", reason: format!("sample {k} is not finite") });
        }
        let n = grid.npix;
        let d = n * n;
        let dx = grid.pixel_rad();
        let offs: Vec<f64> = (0..n).map(|c| grid.offset(c)).collect();
        let mut a_re = Array2::<f32>::zeros((uv.len(), d));
        let mut a_im = Array2::<f32>::zeros((uv.len(), d));
        let tau = std::f64::consts::TAU;
        a_re.outer_iter_mut()
            .into_par_iter()
            .zip(a_im.outer_iter_mut().into_par_iter())
            .zip(uv.par_iter())
            .for_each(|((mut re, mut im), &[u, v])| {
                let p = pulse.response(u, v, dx);
                let eu: Vec<Complex<f64>> = offs.iter().map(|&l| Complex::from_polar(1.0, -tau * u * l)).collect();
                let ev: Vec<Complex<f64>> = offs.iter().map(|&m| Complex::from_polar(p, -tau * v * m)).collect();
                for r in 0..n {
                    for c in 0..n {
                        let z = ev[r] * eu[c];
                        re[r * n + c] = z.re as f32;
                        im[r * n + c] = z.im as f32;
                    }
                }
            });
        Ok(Self { grid, pulse, uv: uv.to_vec(), a_re, a_im })
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
    /// Real part of the DFT matrix, `(K, n^2)`.
    pub fn matrix_re(&self) -> &Array2<f32> {
        &self.a_re
    }
    /// Imaginary part of the DFT matrix, `(K, n^2)`.
    pub fn matrix_im(&self) -> &Array2<f32> {
        &self.a_im
    }

    /// Complex visibilities of every image row: `(N, n^2)` in, `(N, K)` out.
    pub fn visibilities(&self, x: ArrayView2<'_, f32>) -> Result<Array2<Complex<f32>>> {
        let y = self.forward(x)?;
        let k = self.n_vis();
        Ok(Array2::from_shape_fn((y.nrows(), k), |(i, j)| Complex::new(y[[i, j]], y[[i, k + j]])))
    }

    /// `y[b] = [Re(A) x_b, Im(A) x_b]` for a block of images (contiguous rows).
    fn forward_block(&self, x: &[f32], y: &mut [f32]) {
        let d = self.a_re.ncols();
        let k = self.n_vis();
        let nb = x.len() / d;
        for (j, (ar, ai)) in self.a_re.outer_iter().zip(self.a_im.outer_iter()).enumerate() {
            // Rows of an owned standard-layout matrix are contiguous.
            let (Some(ar), Some(ai)) = (ar.to_slice(), ai.to_slice()) else { unreachable!() };
            for b in 0..nb {
                let xb = &x[b * d..(b + 1) * d];
                y[b * 2 * k + j] = dot(ar, xb);
                y[b * 2 * k + k + j] = dot(ai, xb);
            }
        }
    }

    /// `x[b] = Re(A)^T y_re[b] + Im(A)^T y_im[b]` for a block (accumulated in sample order).
    fn adjoint_block(&self, y: &[f32], x: &mut [f32]) {
        let d = self.a_re.ncols();
        let k = self.n_vis();
        let nb = y.len() / (2 * k);
        x.fill(0.0);
        for (j, (ar, ai)) in self.a_re.outer_iter().zip(self.a_im.outer_iter()).enumerate() {
            let (Some(ar), Some(ai)) = (ar.to_slice(), ai.to_slice()) else { unreachable!() };
            for b in 0..nb {
                let xb = &mut x[b * d..(b + 1) * d];
                let (cr, ci) = (y[b * 2 * k + j], y[b * 2 * k + k + j]);
                for ((o, &r), &i) in xb.iter_mut().zip(ar).zip(ai) {
                    *o += cr * r + ci * i;
                }
            }
        }
    }
}

/// Dot product with 16 independent partial sums reduced in a fixed order (vectorises; the
/// result depends only on the two slices, never on blocking or threads).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    let mut w = 8;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0] + tail
}

impl ForwardModel for VisibilityOperator {
    fn input_shape(&self) -> Vec<usize> {
        vec![1, self.grid.npix, self.grid.npix]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![2 * self.n_vis()]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.a_re.ncols();
        check_batch(x, d, "visibility operator input")?;
        let m = 2 * self.n_vis();
        let xs = x.as_standard_layout();
        let Some(xs) = xs.as_slice() else { unreachable!() };
        let mut y = Array2::<f32>::zeros((x.nrows(), m));
        let Some(ys) = y.as_slice_mut() else { unreachable!() };
        xs.par_chunks(BLOCK * d)
            .zip(ys.par_chunks_mut(BLOCK * m))
            .for_each(|(xb, yb)| self.forward_block(xb, yb));
        Ok(y)
    }
}

impl LinearOperator for VisibilityOperator {
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.a_re.ncols();
        let m = 2 * self.n_vis();
        check_batch(y, m, "visibility operator adjoint input")?;
        let ys = y.as_standard_layout();
        let Some(ys) = ys.as_slice() else { unreachable!() };
        let mut x = Array2::<f32>::zeros((y.nrows(), d));
        let Some(xs) = x.as_slice_mut() else { unreachable!() };
        ys.par_chunks(BLOCK * m)
            .zip(xs.par_chunks_mut(BLOCK * d))
            .for_each(|(yb, xb)| self.adjoint_block(yb, xb));
        Ok(x)
    }
}
