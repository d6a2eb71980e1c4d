//! The 2-D incompressible Navier-Stokes equation in vorticity form on the `2 pi` torus,
//! solved pseudo-spectrally on rustfft, and the EnKG forward model built on it.
//!
//! - [`NsSolver`]: the batched, parallel Heun/Crank-Nicolson solver (generic over `f32`,
//!   `f64`), see [`solver`] for the equations and the scheme;
//! - [`NavierStokes2d`]: the [`ForwardModel`](crate::ForwardModel) of EnKG section 5.2
//!   (initial vorticity -> vorticity at `T = 1`, subsampled by 2, optional noise);
//! - [`GaussianRandomField`]: the FNO/PINO initial-condition sampler;
//! - [`dataset`]: `.npy` I/O and the per-sample random streams of the data generator.
//!
//! See `docs/navier-stokes.md` for constants, sources and validation.

pub mod dataset;
pub mod float;
pub mod grf;
pub mod model;
pub mod solver;
pub mod spectral;

pub use float::NsFloat;
pub use grf::GaussianRandomField;
pub use model::{NavierStokes2d, NavierStokesConfig, Precision};
pub use solver::{Forcing, NsConfig, NsSolver, SampleResult, SolveStats, TimeStep};
