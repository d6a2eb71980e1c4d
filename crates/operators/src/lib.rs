//! # diffinv-operators
//!
//! Forward models `y = G(x)` for inverse problems, batched over particles.
//!
//! A batch is an `ndarray` `f32` matrix with one row per particle, shape `(N, d)`; images are
//! the rows viewed as `(C, H, W)` in row-major order. Every model declares its input and output
//! shapes (without the batch axis) and rejects wrong shapes and non-finite input with a typed
//! [`OperatorError`], never a panic.
//!
//! Capabilities a solver may ask for beyond the black box:
//! - [`LinearOperator`]: the adjoint `A^T`,
//! - [`Differentiable`]: the vector-Jacobian product `J_G(x)^T v`.
//!
//! [`Affine`] composes a model with an affine change of its input (`G(scale x + shift)`), passing
//! these capabilities through.
//!
//! The derivative-free solvers (EnKG, CPS) only ever call [`ForwardModel::forward`].
//! The [`Likelihood`] trait turns a predicted measurement into a negative log-likelihood and its
//! gradient with respect to the predicted measurement, which is all the ensemble methods need.

pub mod affine;
pub mod eht;
pub mod error;
pub mod forward;
pub mod imaging;
pub mod likelihood;
pub mod navier_stokes;
pub mod noise;
pub mod npy;

pub use affine::Affine;
pub use eht::{ClosureForward, ClosureLikelihood, EhtConfig, VisibilityOperator};
pub use error::OperatorError;
pub use forward::{
    check_batch, BatchOutput, Differentiable, Fallible, FnForward, ForwardModel, LinearOperator,
    MatrixOperator, SampleFailure,
};
pub use imaging::{
    Blur, Downsampling, Hdr, ImageShape, Inpainting, PhaseRetrieval, SuperResolution,
};
pub use likelihood::{DiagonalGaussianLikelihood, GaussianLikelihood, Likelihood};
pub use navier_stokes::{NavierStokes2d, NavierStokesConfig};
pub use noise::{GaussianNoise, NoiseModel, PoissonNoise};

/// Result type of this crate.
pub type Result<T, E = OperatorError> = std::result::Result<T, E>;
