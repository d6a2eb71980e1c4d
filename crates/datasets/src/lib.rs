//! # diffinv-datasets
//!
//! Training and test data that diffinv generates itself (no download at run time):
//!
//! - [`blackhole`]: a synthetic family of black-hole images, m-ring models (EHT 2019 paper IV)
//!   with random diameter, thickness, m = 1 and m = 2 brightness modes and multiplicative
//!   random-field turbulence, in place of the GRMHD simulations that cannot be had offline;
//! - [`npy`]: NumPy `.npy`/`.npz` reading (any float/int dtype, either endianness, C or Fortran
//!   order) and writing (little-endian `f32`, C order), the format of every data set written by
//!   `cargo xtask data`.
//!
//! Every generator is seeded per sample, so a data set is reproducible and a split is defined by
//! disjoint index ranges (train and test never overlap).

pub mod blackhole;
pub mod npy;

use thiserror::Error;

/// Errors of the data generators and readers.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// A parameter outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A file that is not what it should be.
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A failure in the prior used to draw random fields.
    #[error(transparent)]
    Prior(#[from] diffinv_priors::PriorError),
}

/// Result type of this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
