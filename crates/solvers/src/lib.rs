//! # diffinv-solvers
//!
//! Solvers of inverse problems `y = G(x) + n` with a diffusion prior, and the runner that drives
//! them. The derivative-free solvers use the forward model only as a black box:
//!
//! - [`Enkg`]: Ensemble Kalman Diffusion Guidance (Zheng et al., arXiv 2409.20175),
//! - [`Cps`]: Constrained Particle Seeking (AAAI 2026, arXiv 2603.01837),
//! - [`Unconditional`]: the prior alone, the baseline row.
//!
//! and the black-box baselines EnKG compares against (its section 5 and appendix A):
//!
//! - [`Eki`]: Ensemble Kalman Inversion (the EnKG reference's adaptive EKI from a random field;
//!   Iglesias et al. 2013 with perturbed observations) and Tikhonov EKI (Chada et al. 2020)
//!   from diffusion-prior draws,
//! - [`Gsg`]: DPS with forward or central Gaussian-smoothed gradient estimates,
//! - [`Dpg`]: diffusion policy gradient (Tang et al. 2024),
//! - [`Scg`]: stochastic control guidance, best-of-M candidates (Huang et al. 2024).
//!
//! A user plugs in their own simulator as a plain closure:
//!
//! ```
//! use diffinv_operators::{FnForward, GaussianLikelihood};
//! use diffinv_priors::{Gaussian, GaussianMixture};
//! use diffinv_solvers::{Cps, CpsConfig, Enkg, EnkgConfig, Problem, Runner};
//! use ndarray::array;
//!
//! // Prior: two well-separated modes in 2-D.
//! let prior = GaussianMixture::new(
//!     &[0.5, 0.5],
//!     vec![
//!         Gaussian::isotropic(array![-3.0, 0.0], 0.5).unwrap(),
//!         Gaussian::isotropic(array![3.0, 0.0], 0.5).unwrap(),
//!     ],
//! ).unwrap();
//! // A black-box, non-linear forward model: we only ever evaluate it.
//! let forward = FnForward::new(2, 1, |x: &[f32]| vec![x[0] + 0.1 * x[1].powi(3)]);
//! let likelihood = GaussianLikelihood::new(array![3.0f32], 0.1).unwrap();
//! let problem = Problem::new(&prior, &forward, &likelihood).unwrap();
//!
//! let enkg = Enkg::new(EnkgConfig { num_particles: 64, num_steps: 30, ..Default::default() }).unwrap();
//! let out = Runner::new(problem).run(&enkg, 0).unwrap();
//! let mean_x0 = out.samples.column(0).mean().unwrap();
//! assert!(mean_x0 > 2.0, "EnKG found the mode selected by the data");
//!
//! let cps = Cps::new(CpsConfig { num_samples: 4, num_candidates: 16, num_steps: 30, ..Default::default() }).unwrap();
//! let out = Runner::new(problem).run(&cps, 0).unwrap();
//! assert!(out.samples.column(0).iter().all(|v| *v > 1.0));
//! println!("{} forward evaluations", out.cost.fwd_total);
//! ```

pub mod cg;
pub mod classical;
pub mod cps;
pub mod daps;
pub mod dds;
pub mod diffpir;
pub mod dpg;
pub mod eki;
pub mod enkg;
pub mod error;
pub mod gsg;
pub mod dps;
mod guidance;
pub mod latent;
pub mod mcg;
pub mod mo;
pub mod pigdm;
pub mod problem;
pub mod reddiff;
pub mod registry;
pub mod runner;
pub mod scg;
pub mod smc;
pub mod solver;
mod kernels;
#[cfg(test)]
mod tests_common;
pub mod unconditional;

pub use cg::{conjugate_gradient, CgError, CgOptions, CgSolution, LinearGaussianData};
pub use classical::{
    PnpAdmm, PnpAdmmConfig, Red, RedConfig, Tikhonov, TikhonovConfig, TotalVariation, TvConfig,
};
pub use cps::{Cps, CpsConfig};
pub use daps::{Daps, DapsConfig};
pub use dds::{Dds, DdsConfig};
pub use diffpir::{DiffPir, DiffPirConfig};
pub use dpg::{Dpg, DpgConfig};
pub use eki::{Eki, EkiConfig, EkiInit, EkiUpdate};
pub use enkg::{Enkg, EnkgConfig};
pub use error::{Result, SolverError};
pub use gsg::{smoothed_gradient, Gsg, GsgConfig, GsgScheme};
pub use dps::{Dps, DpsConfig};
pub use latent::{LatentConfig, LatentOptimization};
pub use mcg::{Mcg, McgConfig};
pub use mo::{MoConfig, RenoiseLevel, SgldNoise};
pub use pigdm::{Pigdm, PigdmConfig};
pub use problem::{
    Capability, CostSummary, Evaluator, Linearization, Linearized, Problem, RobustForward,
};
pub use reddiff::{RedDiff, RedDiffConfig};
pub use runner::{Checkpoint, Observer, ProblemShape, ProgressObserver, RunOutput, Runner, StepLog};
pub use scg::{Scg, ScgConfig};
pub use smc::{Smc, SmcConfig};
pub use solver::{
    AdamMoments, AdamState, DynPrepared, DynSolver, DynState, Solver, SolverState, State, StateView,
    StepInfo,
};
pub use unconditional::{Unconditional, UnconditionalConfig, UnconditionalMethod};
