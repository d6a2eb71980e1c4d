//! Typed errors of the priors crate.

use thiserror::Error;

/// Everything that can go wrong in a prior or a sampler.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PriorError {
    /// A batch or parameter with the wrong size.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Size passed.
        got: usize,
    },
    /// A NaN or infinity in an input.
    #[error("non-finite value in {what}, row {row}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Row (particle) index.
        row: usize,
    },
    /// A parameter outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A covariance that is not symmetric positive definite.
    #[error("{what} is not positive definite (Cholesky failed at pivot {pivot})")]
    NotPositiveDefinite {
        /// Which matrix.
        what: String,
        /// Pivot where the factorisation failed.
        pivot: usize,
    },
    /// The operation is not provided by this prior.
    #[error("{0} is not supported by this prior")]
    Unsupported(&'static str),
    /// A model file that could not be loaded (missing, unreadable, or not what it should be,
    /// e.g. not TorchScript): one line naming the file and the cause.
    #[error("{path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// The cause (for a libtorch failure, the first line of its message, no backtrace).
        reason: String,
    },
    /// A failure inside a neural backend.
    #[error("backend: {0}")]
    Backend(String),
}
