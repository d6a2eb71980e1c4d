//! Measurement noise models: draw a noisy observation `y_obs ~ p(. | y)` for every row of a
//! batch of clean measurements.
//!
//! Every row `i` draws from its own ChaCha8 stream, a function of `(seed, i)` only, so the noise
//! added to a given row does not depend on the batch size, on the other rows or on the thread
//! count: `apply(y)[i] == apply(y[i..i+1])[0]` when called with `first_row = i` through
//! [`NoiseModel::apply_from`].

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rayon::prelude::*;

use crate::{check_batch, OperatorError, Result};

/// SplitMix64 finaliser, used to decorrelate seeds of different noise models.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of row `row` of a model seeded with `seed`: ChaCha8 keyed by
/// `mix64(seed ^ tag)` on stream `row` (independent streams of the same key).
fn row_rng(seed: u64, tag: u64, row: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(tag)));
    rng.set_stream(row);
    rng
}

/// A seeded measurement noise model.
pub trait NoiseModel: Send + Sync {
    /// Noisy copies of the rows of `y` (shape `(N, m)`), row `i` drawn from stream
    /// `(seed, first_row + i)`.
    fn apply_from(&self, y: ArrayView2<'_, f32>, first_row: u64) -> Result<Array2<f32>>;
    /// Noisy copies of the rows of `y`, row `i` drawn from stream `(seed, i)`.
    fn apply(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.apply_from(y, 0)
    }
}

fn map_rows<F>(y: ArrayView2<'_, f32>, first_row: u64, f: F) -> Result<Array2<f32>>
where
    F: Fn(usize, u64, &mut [f32]) -> Result<()> + Sync + Send,
{
    if y.nrows() as u64 > u64::MAX - first_row {
        return Err(OperatorError::InvalidParameter {
            name: "first_row",
            reason: "row index overflows".into(),
        });
    }
    let mut out = y.as_standard_layout().into_owned();
    let res: Vec<Result<()>> = out
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(i, mut r)| match r.as_slice_mut() {
            Some(s) => f(i, first_row + i as u64, s),
            None => Err(OperatorError::Unsupported("non-contiguous output row")),
        })
        .collect();
    res.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(out)
}

/// Additive white Gaussian noise `y_obs = y + sigma_y n`, `n ~ N(0, I)` (the EnKG/DPS imaging
/// setting is `sigma_y = 0.05` on images in `[-1, 1]`).
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    sigma_y: f32,
    seed: u64,
}

impl GaussianNoise {
    const TAG: u64 = 0x0067_6175_7373; // "gauss"

    /// Noise of standard deviation `sigma_y >= 0` (finite) drawn from `seed`.
    pub fn new(sigma_y: f32, seed: u64) -> Result<Self> {
        if !(sigma_y.is_finite() && sigma_y >= 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "sigma_y",
                reason: format!("must be finite and >= 0, got {sigma_y}"),
            });
        }
        Ok(Self { sigma_y, seed })
    }
    /// The standard deviation.
    pub fn sigma_y(&self) -> f32 {
        self.sigma_y
    }
}

impl NoiseModel for GaussianNoise {
    fn apply_from(&self, y: ArrayView2<'_, f32>, first_row: u64) -> Result<Array2<f32>> {
        check_batch(y, y.ncols(), "clean measurement")?;
        map_rows(y, first_row, |_, row, r| {
            let mut rng = row_rng(self.seed, Self::TAG, row);
            for v in r.iter_mut() {
                let n: f64 = StandardNormal.sample(&mut rng);
                *v += self.sigma_y * n as f32;
            }
            Ok(())
        })
    }
}

/// Poisson (shot) noise `y_obs = Poisson(rate * max(y, 0)) / rate`, elementwise.
///
/// `rate` is the number of photon counts per unit intensity: the observation has mean `y` and
/// variance `y / rate` for `y >= 0`; negative intensities are clipped to 0 first (they have no
/// photons). The DPS setting, for images `x` in `[-1, 1]`, is
/// `((Poisson(255 * r * clip((x+1)/2, 0, 1)) / (255 r)) * 2 - 1` with `r = 1`; that is this model with
/// `rate = 255` applied to `(x + 1) / 2` (use [`PoissonNoise::dps`]).
#[derive(Debug, Clone)]
pub struct PoissonNoise {
    rate: f64,
    seed: u64,
    /// DPS mapping of `[-1, 1]` images to `[0, 1]` intensities and back, with the upper clip.
    signed_unit: bool,
}

impl PoissonNoise {
    const TAG: u64 = 0x0070_6f69_7373_6f6e; // "poisson"
    /// Default rate: 255 counts per unit intensity (DPS `rate = 1` on 8-bit intensities).
    pub const DEFAULT_RATE: f64 = 255.0;

    /// Poisson noise with `rate > 0` counts per unit intensity, drawn from `seed`.
    pub fn new(rate: f64, seed: u64) -> Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "rate",
                reason: format!("must be finite and > 0, got {rate}"),
            });
        }
        Ok(Self {
            rate,
            seed,
            signed_unit: false,
        })
    }

    /// The DPS Poisson noise for images in `[-1, 1]`: `u = clip((y+1)/2, 0, 1)`,
    /// `u_obs = Poisson(255 r u) / (255 r)`, `y_obs = 2 u_obs - 1` (DPS: `r = 1`).
    pub fn dps(r: f64, seed: u64) -> Result<Self> {
        let mut m = Self::new(255.0 * r, seed)?;
        m.signed_unit = true;
        Ok(m)
    }
    /// Counts per unit intensity.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl NoiseModel for PoissonNoise {
    fn apply_from(&self, y: ArrayView2<'_, f32>, first_row: u64) -> Result<Array2<f32>> {
        check_batch(y, y.ncols(), "clean measurement")?;
        map_rows(y, first_row, |i, row, r| {
            let mut rng = row_rng(self.seed, Self::TAG, row);
            for v in r.iter_mut() {
                let u = if self.signed_unit {
                    ((*v as f64 + 1.0) / 2.0).clamp(0.0, 1.0)
                } else {
                    (*v as f64).max(0.0)
                };
                let lambda = self.rate * u;
                let k = if lambda > 0.0 {
                    Poisson::new(lambda)
                        .map_err(|e| OperatorError::SampleFailed {
                            row: i,
                            reason: format!("Poisson rate {lambda}: {e}"),
                        })?
                        .sample(&mut rng)
                } else {
                    0.0
                };
                let obs = k / self.rate;
                *v = if self.signed_unit {
                    (2.0 * obs - 1.0) as f32
                } else {
                    obs as f32
                };
            }
            Ok(())
        })
    }
}
