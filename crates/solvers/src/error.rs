//! Typed errors of the solvers crate.

use diffinv_ensemble::EnsembleError;
use diffinv_operators::OperatorError;
use diffinv_priors::PriorError;
use thiserror::Error;

/// Everything that can stop a solver.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SolverError {
    /// A hyperparameter out of range, found before any compute.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The prior, forward model and likelihood do not fit together.
    #[error("inconsistent problem: {0}")]
    Problem(String),
    /// The prior failed.
    #[error("prior failed at step {step}: {source}")]
    Prior {
        /// Solver step (noise level index).
        step: usize,
        /// Underlying error.
        source: PriorError,
    },
    /// The forward model or the likelihood failed as a whole.
    #[error("forward model failed at step {step}: {source}")]
    Forward {
        /// Solver step.
        step: usize,
        /// Underlying error.
        source: OperatorError,
    },
    /// The forward model failed, or returned a non-finite value, for one particle.
    #[error("forward model failed for particle {particle} at step {step}: {reason}")]
    ParticleFailed {
        /// Particle (row) index within the batch handed to the forward model.
        particle: usize,
        /// Solver step.
        step: usize,
        /// Why.
        reason: String,
    },
    /// A particle's state became non-finite.
    #[error("particle {particle} became non-finite at step {step}")]
    NonFiniteState {
        /// Particle (row) index.
        particle: usize,
        /// Solver step.
        step: usize,
    },
    /// The run was cancelled from outside (a cancellation flag set by Ctrl-C or SIGTERM, see
    /// [`Runner::with_cancel`](crate::Runner::with_cancel)) before step `step` finished. A
    /// checkpointed run holds every finished step and resumes from there.
    #[error("interrupted before step {step} finished")]
    Interrupted {
        /// The step that was not finished (the number of finished steps).
        step: usize,
    },
    /// Ensemble algebra failed.
    #[error("ensemble update failed at step {step}: {source}")]
    Ensemble {
        /// Solver step.
        step: usize,
        /// Underlying error.
        source: EnsembleError,
    },
}

/// Result type of this crate.
pub type Result<T, E = SolverError> = std::result::Result<T, E>;
