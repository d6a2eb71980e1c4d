//! Black-hole interferometric imaging (EnKG, arXiv 2409.20175, section 5.3; InverseBench): an
//! EHT-2017-like very-long-baseline array observing M87* at 230 GHz.
//!
//! - [`array`](mod@array): stations (ITRF positions, SEFDs), the source, sidereal time, Earth-rotation
//!   (u, v) tracks with an elevation cut, thermal noise per baseline.
//! - [`vis`]: the [`VisibilityOperator`], a direct Fourier transform of a 64 x 64 image with a
//!   pixel response, linear with an exact adjoint.
//! - [`closure`]: minimal independent closure phases and log closure amplitudes per scan, with
//!   the propagated thermal uncertainties.
//! - [`model`]: the [`ClosureForward`] model `image -> [closure phases | log closure amplitudes
//!   | total flux]` and synthetic observations ([`EhtData`]).
//! - [`likelihood`]: the weighted closure chi^2 of EnKG eq. 22 with its exact gradient.
//!
//! All conventions, constants and their sources are in `docs/operators-eht.md`.
//!
//! ```
//! use diffinv_operators::eht::{ClosureForward, ClosureLikelihood, ClosureWeights, EhtConfig, VisNoise};
//! use diffinv_operators::{ForwardModel, Likelihood};
//! use ndarray::Array2;
//! let g = ClosureForward::new(&EhtConfig::default()).unwrap();
//! let truth = Array2::<f32>::from_elem((1, 64 * 64), 1e-3);
//! let data = g.simulate(truth.row(0), VisNoise::Thermal, 7).unwrap();
//! let lik = ClosureLikelihood::new(&data, ClosureWeights::default()).unwrap();
//! let y = g.forward(truth.view()).unwrap();
//! let nll = lik.nll(y.view()).unwrap();
//! assert_eq!(y.ncols(), g.n_cphase() + g.n_logcamp() + 1);
//! assert!(nll[0].is_finite());
//! ```

pub mod array;
pub mod closure;
pub mod likelihood;
pub mod model;
pub mod vis;

pub use array::{eht2017, ObservationConfig, Scan, Source, Station, UvCoverage, UvPoint};
pub use closure::{ClosureSet, Quadrangle, Triangle};
pub use likelihood::{ClosureLikelihood, ClosureWeights, PhaseResidual};
pub use model::{ClosureForward, EhtConfig, EhtData, VisNoise};
pub use vis::{ImageGrid, PixelResponse, VisibilityOperator};
