//! # diffinv-reproduce
//!
//! The one table runner: the Gaussian-mixture table (every method against the exact
//! posterior), EnKG's science tables (Ensemble Kalman Diffusion Guidance, arXiv 2409.20175,
//! section 5.2 Table 2 and section 5.3 Table 3) with its black-box baselines and CPS on the shipped
//! neural priors, and the imaging table. Run through `cargo xtask reproduce [TABLE ...]`, which
//! sets up libtorch and spawns the `diffinv-reproduce` binary. Every row is a method of the
//! registry configured by the table's preset file (configs/tables).
//!
//! - [`setup`]: start-up validation (method names, prior files, prior/operator shapes) and the
//!   prior loader with the training normalisation `x_train = (x - shift) / scale`,
//! - [`methods`]: the seven solvers at each preset's size,
//! - [`tables`]: the Navier-Stokes and black-hole experiments, the row cache and resume,
//! - [`estimate`]: the wall-time estimate printed before a paper-scale run,
//! - [`gmm`]: the Gaussian-mixture table,
//! - [`presets`]: the preset files (rows of registry methods and their configurations),
//! - [`imaging`]: the imaging table (every gradient-based, classical and
//!   derivative-free method on seven imaging tasks),
//! - [`report`] and [`plot`]: CSV/Markdown tables and PNG figures.

pub mod estimate;
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

