//! The Navier-Stokes forward model of EnKG section 5.2: initial vorticity -> vorticity at `T`,
//! subsampled.

use ndarray::{Array2, Array3, ArrayView2};
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::float::NsFloat;
use super::solver::{NsConfig, NsSolver, SampleResult};
use crate::forward::{check_batch, BatchOutput, ForwardModel, SampleFailure};
use crate::{OperatorError, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Arithmetic the solver runs in. The reference forward model runs in `float32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Single precision (the reference's `ForwardNavierStokes2d` default).
    F32,
    /// Double precision.
    F64,
}

/// Configuration of [`NavierStokes2d`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NavierStokesConfig {
    /// Grid size `H = W` of the input vorticity. EnKG: 128.
    pub resolution: usize,
    /// PDE and time-stepping parameters (Re 200, T 1, adaptive CFL, Kolmogorov forcing).
    pub solver: NsConfig,
    /// Keep every `subsample`-th grid point in each axis (`sol[::s, ::s]`). EnKG: 2.
    pub subsample: usize,
    /// The physical vorticity is `input_scale * x`. 1 means the input is the vorticity
    /// itself; InverseBench feeds the prior's normalised field with `unnorm_scale = 10`.
    pub input_scale: f64,
    /// Precision of the solve.
    pub precision: Precision,
    /// Standard deviation of the Gaussian noise added by [`NavierStokes2d::observe`], in
    /// vorticity units per observed grid point: EnKG Table 2's noise levels are 0, 1, 2.
    pub noise_sigma: f64,
}

impl Default for NavierStokesConfig {
    fn default() -> Self {
        Self {
            resolution: 128,
            solver: NsConfig::default(),
            subsample: 2,
            input_scale: 1.0,
            precision: Precision::F32,
            noise_sigma: 0.0,
        }
    }
}

impl NavierStokesConfig {
    /// EnKG/InverseBench's setting at `resolution` (128 in the paper) with noise level
    /// `noise_sigma` (0, 1 or 2): Re 200, T 1, subsample 2, adaptive CFL step, float32,
    /// input in physical vorticity units.
    pub fn enkg(resolution: usize, noise_sigma: f64) -> Self {
        Self {
            resolution,
            noise_sigma,
            ..Self::default()
        }
    }
}

enum AnySolver {
    F32(NsSolver<f32>),
    F64(NsSolver<f64>),
}

/// `G(w0) = S_T(w0)[::s, ::s]`: the vorticity at time `T` of the 2-D Navier-Stokes equation
/// started from `w0`, observed on every `s`-th grid point.
///
/// Shapes: input `[1, H, W]` (one channel, as the diffusion prior's images), output
/// `[1, ceil(H/s), ceil(W/s)]`. [`forward`](ForwardModel::forward) is noiseless (what a
/// solver calls); [`observe`](Self::observe) adds the measurement noise.
///
/// Failures: a sample whose vorticity becomes non-finite, or whose CFL step collapses
/// (more than `max_steps` steps), is reported per sample by
/// [`forward_partial`](ForwardModel::forward_partial) while the other samples return;
/// `forward` turns the first into [`OperatorError::SampleFailed`]. A non-finite input row is
/// [`OperatorError::NonFiniteInput`] for `forward` and a per-sample failure for
/// `forward_partial`.
pub struct NavierStokes2d {
    cfg: NavierStokesConfig,
    solver: AnySolver,
    out_h: usize,
    out_w: usize,
}

impl std::fmt::Debug for NavierStokes2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NavierStokes2d")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl NavierStokes2d {
    /// Build the model (plans the FFTs).
    pub fn new(cfg: NavierStokesConfig) -> Result<Self> {
        if cfg.subsample == 0 {
            return Err(OperatorError::InvalidParameter {
                name: "subsample",
                reason: "must be at least 1".into(),
            });
        }
        if !(cfg.input_scale.is_finite() && cfg.input_scale != 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "input_scale",
                reason: format!("got {}", cfg.input_scale),
            });
        }
        if !(cfg.noise_sigma.is_finite() && cfg.noise_sigma >= 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "noise_sigma",
                reason: format!("got {}", cfg.noise_sigma),
            });
        }
        let r = cfg.resolution;
        let solver = match cfg.precision {
            Precision::F32 => AnySolver::F32(NsSolver::new(r, r, cfg.solver)?),
            Precision::F64 => AnySolver::F64(NsSolver::new(r, r, cfg.solver)?),
        };
        let out = r.div_ceil(cfg.subsample);
        Ok(Self {
            cfg,
            solver,
            out_h: out,
            out_w: out,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NavierStokesConfig {
        &self.cfg
    }

    /// Solve every row; per row the subsampled output or the failure reason, plus the stats.
    fn run(&self, x: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Vec<SampleResult>)> {
        let r = self.cfg.resolution;
        if x.ncols() != r * r {
            return Err(OperatorError::Shape {
                what: "forward input",
                expected: r * r,
                got: x.ncols(),
            });
        }
        let n = x.nrows();
        match &self.solver {
            AnySolver::F32(s) => self.run_typed(s, x, n),
            AnySolver::F64(s) => self.run_typed(s, x, n),
        }
    }

    fn run_typed<T: NsFloat>(
        &self,
        s: &NsSolver<T>,
        x: ArrayView2<'_, f32>,
        n: usize,
    ) -> Result<(Array2<f32>, Vec<SampleResult>)> {
        let r = self.cfg.resolution;
        let scale = self.cfg.input_scale;
        let mut w0 = Array3::<T>::zeros((n, r, r));
        if let Some(dst) = w0.as_slice_mut() {
            dst.par_chunks_mut(r * r)
                .zip(x.axis_iter(ndarray::Axis(0)).into_par_iter())
                .for_each(|(d, row)| {
                    for (o, &v) in d.iter_mut().zip(row.iter()) {
                        *o = T::lit(v as f64 * scale);
                    }
                });
        }
        let (sol, status) = s.solve_batch(w0.view())?;
        let (oh, ow, f) = (self.out_h, self.out_w, self.cfg.subsample);
        let mut y = Array2::<f32>::from_elem((n, oh * ow), f32::NAN);
        y.axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(b, mut row)| {
                if status[b].is_ok() {
                    for i in 0..oh {
                        for j in 0..ow {
                            row[i * ow + j] = sol[[b, i * f, j * f]].as_f64() as f32;
                        }
                    }
                }
            });
        Ok((y, status))
    }

    /// Solve every row and also return each sample's step statistics (or failure reason).
    pub fn forward_with_stats(
        &self,
        x: ArrayView2<'_, f32>,
    ) -> Result<(Array2<f32>, Vec<SampleResult>)> {
        self.run(x)
    }

    /// The noisy measurement `y = G(x) + sigma * eps`, `eps ~ N(0, I)` drawn per row from the
    /// ChaCha8 stream `row` keyed by `seed` (bit-identical for any thread count). Fails like
    /// [`forward`](ForwardModel::forward).
    pub fn observe(&self, x: ArrayView2<'_, f32>, seed: u64) -> Result<Array2<f32>> {
        let mut y = self.forward(x)?;
        let sigma = self.cfg.noise_sigma;
        if sigma > 0.0 {
            y.axis_iter_mut(ndarray::Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(i, mut row)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(i as u64);
                    for v in row.iter_mut() {
                        let e: f64 = rng.sample(StandardNormal);
                        *v = (*v as f64 + sigma * e) as f32;
                    }
                });
        }
        Ok(y)
    }
}

impl ForwardModel for NavierStokes2d {
    fn input_shape(&self) -> Vec<usize> {
        vec![1, self.cfg.resolution, self.cfg.resolution]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![1, self.out_h, self.out_w]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(x, self.input_dim(), "forward input")?;
        let (y, status) = self.run(x)?;
        for (row, s) in status.into_iter().enumerate() {
            if let Err(reason) = s {
                return Err(OperatorError::SampleFailed { row, reason });
            }
        }
        Ok(y)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> Result<BatchOutput> {
        let (y, status) = self.run(x)?;
        let failures = status
            .into_iter()
            .enumerate()
            .filter_map(|(row, s)| s.err().map(|reason| SampleFailure { row, reason }))
            .collect();
        Ok(BatchOutput { y, failures })
    }
}
