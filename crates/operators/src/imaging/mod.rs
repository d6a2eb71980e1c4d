//! Imaging forward models on batches of `C x H x W` images.
//!
//! Every operator takes an `(N, C*H*W)` `f32` batch (one particle per row, each row a row-major
//! `C x H x W` image), evaluates the rows in parallel with rayon (one independent computation per
//! row, so the result is bit-identical for any thread count), and rejects a wrong row length
//! ([`OperatorError::Shape`]), a mismatched cotangent batch ([`OperatorError::Rows`]) and
//! non-finite input ([`OperatorError::NonFiniteInput`]) with typed errors. Constructors validate
//! their parameters ([`OperatorError::InvalidParameter`]); random operators take a seed in the
//! constructor and draw from a ChaCha8 generator, so the same seed gives the same operator.
//!
//! | operator | equation | linear |
//! | --- | --- | --- |
//! | [`Inpainting`] (box, random) | `y = m ⊙ x` (mask `m` shared by the channels) | yes |
//! | [`SuperResolution`] (bicubic, average pool) | `y_c = R_H x_c R_W^T` | yes |
//! | [`Blur`] (Gaussian, motion) | `y_c = k ⋆ reflect_pad(x_c)` (valid correlation) | yes |
//! | [`PhaseRetrieval`] | `y = \|F P x\|` | no |
//! | [`Hdr`] | `y = clip(alpha x, -1, 1)` | no |
//!
//! Linear operators implement [`LinearOperator`](crate::LinearOperator) with an exact adjoint
//! and [`Differentiable`](crate::Differentiable) with `vjp(x, v) = A^T v`. The settings and the
//! papers they come from are listed in `docs/operators-imaging.md`.

mod blur;
mod hdr;
mod inpainting;
mod kernels;
mod phase;
mod resample;

pub use blur::Blur;
pub use hdr::Hdr;
pub use inpainting::{Inpainting, MaskKind};
pub use kernels::{gaussian_kernel, motion_kernel};
pub use phase::PhaseRetrieval;
pub use resample::{Downsampling, SuperResolution};

/// The image-restoration tasks of the DPS (arXiv 2209.14687) and DAPS (arXiv 2407.01521)
/// benchmarks by their short names, with what each one is.
pub const STANDARD_TASKS: &[(&str, &str)] = &[
    ("sr4", "bicubic 4x super-resolution"),
    ("box", "inpainting of a half-size box at a seeded position"),
    ("random", "inpainting of 70 % of the pixels, seeded"),
    ("gblur", "Gaussian deblurring, 61 px kernel, width 3"),
    ("mblur", "motion deblurring, 61 px kernel, intensity 0.5, seeded"),
    ("phase", "Fourier phase retrieval, oversampling 2"),
    ("hdr", "high dynamic range reconstruction, factor 2"),
];

/// The forward model of standard task `name` ([`STANDARD_TASKS`]) on `[C, H, W]` images, with
/// `seed` for the random masks and motion kernels. Errors: an unknown name
/// ([`OperatorError::InvalidParameter`] listing the known ones) or an invalid shape.
pub fn standard_task(
    name: &str,
    shape: [usize; 3],
    seed: u64,
) -> crate::Result<Box<dyn crate::ForwardModel>> {
    let [c, h, w] = shape;
    Ok(match name {
        "sr4" => Box::new(SuperResolution::bicubic(c, h, w, 4)?),
        "box" => Box::new(Inpainting::box_seeded(c, h, w, seed)?),
        "random" => Box::new(Inpainting::random(c, h, w, 0.7, seed)?),
        "gblur" => Box::new(Blur::gaussian(c, h, w, 61, 3.0)?),
        "mblur" => Box::new(Blur::motion(c, h, w, 61, 0.5, seed)?),
        "phase" => Box::new(PhaseRetrieval::dps(c, h, w, 2.0)?),
        "hdr" => Box::new(Hdr::new(c, h, w, 2.0)?),
        other => {
            return Err(crate::OperatorError::InvalidParameter {
                name: "task",
                reason: format!(
                    "unknown task {other:?}; known: {}",
                    STANDARD_TASKS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                ),
            })
        }
    })
}

use std::borrow::Cow;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::{OperatorError, Result};

/// The shape `C x H x W` of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels.
    pub c: usize,
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
}

impl ImageShape {
    /// A shape with `c, h, w >= 1`.
    pub fn new(c: usize, h: usize, w: usize) -> Result<Self> {
        for (name, v) in [("channels", c), ("height", h), ("width", w)] {
            if v == 0 {
                return Err(OperatorError::InvalidParameter {
                    name,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if c.checked_mul(h).and_then(|v| v.checked_mul(w)).is_none() {
            return Err(OperatorError::InvalidParameter {
                name: "shape",
                reason: format!("{c} x {h} x {w} overflows usize"),
            });
        }
        Ok(Self { c, h, w })
    }
    /// `H * W`.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
    /// `C * H * W`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Always false (every dimension is at least 1).
    pub fn is_empty(&self) -> bool {
        false
    }
    /// `[C, H, W]`.
    pub fn to_vec(&self) -> Vec<usize> {
        vec![self.c, self.h, self.w]
    }
}

/// The error of a failed FFT of batch row `row` (the shared FFTs fail only on buffers of
/// another plan).
fn fft_err(row: usize, e: diffinv_fft::FftError) -> OperatorError {
    OperatorError::SampleFailed {
        row,
        reason: format!("FFT failed: {e}"),
    }
}

/// Row `i` of `x` as a contiguous slice (borrowed when the row is contiguous).
pub(crate) fn row_slice<'a>(x: &'a ArrayView2<'_, f32>, i: usize) -> Cow<'a, [f32]> {
    let r = x.row(i);
    match r.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(r.to_vec()),
    }
}

/// Check that the cotangent batch `v` has as many rows as the point batch `x`.
pub(crate) fn check_rows(x_rows: usize, v: ArrayView2<'_, f32>, what: &'static str) -> Result<()> {
    if v.nrows() != x_rows {
        return Err(OperatorError::Rows {
            what,
            expected: x_rows,
            got: v.nrows(),
        });
    }
    Ok(())
}

/// Build an `(n, cols)` output by calling `f(workspace, row, out_row)` for every row in parallel.
///
/// One workspace is created per rayon job with `init` (not per row), so the hot loop does not
/// allocate. Rows are independent, so the result does not depend on the thread count. The first
/// error in row order is returned.
pub(crate) fn par_rows<Ws, I, F>(n: usize, cols: usize, init: I, f: F) -> Result<Array2<f32>>
where
    I: Fn() -> Ws + Sync + Send,
    F: Fn(&mut Ws, usize, &mut [f32]) -> Result<()> + Sync + Send,
{
    let mut out = Array2::<f32>::zeros((n, cols));
    let results: Vec<Result<()>> = out
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .map_init(&init, |ws, (i, mut row)| match row.as_slice_mut() {
            Some(s) => f(ws, i, s),
            None => {
                let mut tmp = vec![0.0f32; cols];
                f(ws, i, &mut tmp)?;
                row.assign(&ArrayView1::from(&tmp[..]));
                Ok(())
            }
        })
        .collect();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(out)
}
