//! # diffinv-reproduce
//!
//! EnKG's science tables (papers/002, section 5.2 Table 2 and section 5.3 Table 3) with every
//! black-box method of issue 5: EKI, Forward-GSG, Central-GSG, DPG, SCG, EnKG and CPS, on the
//! shipped neural priors. Run through `cargo xtask reproduce ns|blackhole`, which sets up
//! libtorch and spawns the `diffinv-reproduce` binary.
//!
//! - [`setup`]: start-up validation (method names, prior files, prior/operator shapes) and the
//!   prior loader with the training normalisation `x_train = (x - shift) / scale`,
//! - [`methods`]: the seven solvers at each preset's size,
//! - [`tables`]: the Navier-Stokes and black-hole experiments, the row cache and resume,
//! - [`imaging`]: the imaging table of issue 6 (every gradient-based, classical and
//!   derivative-free method on seven imaging tasks),
//! - [`report`] and [`plot`]: CSV/Markdown tables and PNG figures.

pub mod gmm;
pub mod imaging;
pub mod methods;
pub mod plot;
pub mod presets;
pub mod report;
pub mod setup;
pub mod tables;

pub use methods::{Preset, METHODS};
pub use setup::SetupError;

