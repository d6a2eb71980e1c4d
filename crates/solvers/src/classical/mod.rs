//! Classical (non-diffusion) solvers of linear inverse problems (section 2 of the survey
//! "Inverse Problems with Generative Priors", ICLR 2026 blog track): they
//! implement the same [`Solver`](crate::Solver) state machine, one step per iteration, so the
//! runner and the results tables treat them like the samplers. Each returns one estimate (a
//! single row), not samples.
//!
//! - [`Tikhonov`]: `min_x L(A x) + lambda ||x||^2 / 2` by conjugate gradients,
//! - [`TotalVariation`]: `min_x L(A x) + lambda TV(x)` by Chambolle-Pock primal-dual,
//! - [`PnpAdmm`]: plug-and-play ADMM with the diffusion prior's denoiser at a fixed level,
//! - [`Red`]: regularisation by denoising (Romano, Elad & Milanfar 2017), fixed-point iteration.
//!
//! All need a linear forward model with a Gaussian likelihood
//! ([`Problem::linear`](crate::Problem::linear)); the data term `L(A x)` is reached through
//! [`LinearGaussianData`](crate::LinearGaussianData). Auxiliary variables (dual variables,
//! splitting copies) are carried as extra columns of [`State::x`](crate::State) so that a saved
//! state resumes exactly; [`Solver::finish`](crate::Solver::finish) returns the first `d`.

pub mod pnp;
pub mod tikhonov;
pub mod tv;

pub use pnp::{PnpAdmm, PnpAdmmConfig, Red, RedConfig};
pub use tikhonov::{Tikhonov, TikhonovConfig};
pub use tv::{divergence, gradient, total_variation, TotalVariation, TvConfig};
