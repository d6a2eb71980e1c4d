//! # diffinv-priors
//!
//! Diffusion priors in the EDM convention (Karras et al. 2022): a noisy sample is
//! `x_sigma = x_0 + sigma * eps`, a prior is a denoiser `D(x; sigma) ~ E[x_0 | x_sigma = x]`,
//! and the score is `grad log p_sigma(x) = (D(x; sigma) - x) / sigma^2` (Tweedie's formula).

pub mod denoiser;
pub mod error;

pub use denoiser::Denoiser;
pub use error::PriorError;

/// Result type of this crate.
pub type Result<T, E = PriorError> = std::result::Result<T, E>;
