//! # diffinv-priors
//!
//! Diffusion priors in the EDM convention (Karras et al. 2022): a noisy sample is
//! `x_sigma = x_0 + sigma * eps`, a prior is a denoiser `D(x; sigma) ~ E[x_0 | x_sigma = x]`,
//! and the score is `grad log p_sigma(x) = (D(x; sigma) - x) / sigma^2` (Tweedie's formula).
//!
//! - [`Denoiser`]: the batched trait every prior implements.
//! - [`schedule`]: the EDM noise levels; [`sampler`]: PF-ODE (Euler, Heun) and reverse-SDE samplers.
//! - Analytic priors with exact denoisers: [`GaussianPrior`] (full or diagonal covariance),
//!   [`FourierGaussian`] (a stationary Gaussian random field, diagonal in the Fourier basis),
//!   [`GaussianMixture`], with exact posteriors under linear Gaussian measurements
//!   ([`GaussianPosterior`], [`GmmPosterior`]).
//!
//! ```
//! use diffinv_priors::{Denoiser, Gaussian, GaussianPrior};
//! use ndarray::array;
//! // N(0, 4) in one dimension: D(x; sigma) = 4 x / (4 + sigma^2).
//! let prior = GaussianPrior::new(Gaussian::isotropic(array![0.0], 4.0).unwrap());
//! let d = prior.denoise(array![[3.0f32]].view(), 2.0).unwrap();
//! assert!((d[[0, 0]] - 1.5).abs() < 1e-6);
//! ```

pub mod denoiser;
pub mod error;
pub mod fourier;
pub mod gaussian;
pub mod gmm;
pub mod linalg;
#[cfg(feature = "torch")]
pub mod neural;
pub mod rng;
pub mod sampler;
pub mod schedule;

pub use denoiser::Denoiser;
pub use error::PriorError;
pub use fourier::FourierGaussian;
pub use gaussian::{Covariance, Gaussian, GaussianPosterior, GaussianPrior};
pub use gmm::{GaussianMixture, GmmPosterior};
pub use sampler::OdeMethod;
pub use schedule::EdmSchedule;

/// Result type of this crate.
pub type Result<T, E = PriorError> = std::result::Result<T, E>;
