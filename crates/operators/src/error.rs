//! Typed errors of the operators crate.

use thiserror::Error;

/// Everything that can go wrong when evaluating a forward model or a likelihood.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OperatorError {
    /// The batch has the wrong number of columns (or a measurement the wrong length).
    #[error("{what}: expected {expected} values per row, got {got}")]
    Shape {
        /// Which argument was wrong.
        what: &'static str,
        /// Expected row length.
        expected: usize,
        /// Row length that was passed.
        got: usize,
    },
    /// Two batches that must have the same number of rows do not.
    #[error("{what}: expected {expected} rows, got {got}")]
    Rows {
        /// Which argument was wrong.
        what: &'static str,
        /// Expected number of rows.
        expected: usize,
        /// Number of rows that was passed.
        got: usize,
    },
    /// A NaN or infinity in the input batch.
    #[error("non-finite value in {what}, row {row}")]
    NonFiniteInput {
        /// Which argument contained the value.
        what: &'static str,
        /// The particle (row) index.
        row: usize,
    },
    /// The model produced a non-finite value or diverged for one sample.
    #[error("forward model failed for row {row}: {reason}")]
    SampleFailed {
        /// The particle (row) index.
        row: usize,
        /// Why, in words (e.g. "vorticity became non-finite at t = 0.73").
        reason: String,
    },
    /// A user-supplied per-sample function broke its contract by returning a measurement of the
    /// wrong length. This is a bug in the model, not a failure of one sample, so it is never
    /// reported as [`OperatorError::SampleFailed`] and `forward_partial` propagates it.
    #[error("forward closure returned {got} values for row {row}, expected {expected}")]
    OutputLength {
        /// The particle (row) index.
        row: usize,
        /// Number of values returned.
        got: usize,
        /// Number of values the model declared (its `output_dim`).
        expected: usize,
    },
    /// A configuration parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The operation is not provided by this model.
    #[error("{0} is not supported by this operator")]
    Unsupported(&'static str),
    /// The model cannot evaluate anything any more (an external simulator that fails to start,
    /// or keeps crashing past its restart limit). Unlike [`OperatorError::SampleFailed`] this
    /// ends the run: no failure policy can recover from it.
    #[error("the forward model stopped: {0}")]
    Stopped(String),
    /// The evaluation was cancelled from outside (Ctrl-C, SIGTERM) before it finished; nothing
    /// of the interrupted batch is returned.
    #[error("the forward model was interrupted")]
    Interrupted,
}
