//! Typed errors of the worker pool.

use thiserror::Error;

/// What can go wrong configuring, starting or shutting down a [`ProcessForward`](crate::ProcessForward).
///
/// Every message is one line that says what to fix; the ones about a worker quote the tail of
/// its stderr. Failures *during* an evaluation are not `ProcessError`s: they are per-row failures
/// or an [`OperatorError`](diffinv_operators::OperatorError) of the
/// [`ForwardModel`](diffinv_operators::ForwardModel) methods.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProcessError {
    /// A configuration value is out of range; `key` is its name in the `[forward]` table.
    #[error("invalid forward.{key}: {reason}")]
    Config {
        /// The key, e.g. `timeout_s`.
        key: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The operating system could not start a worker's program (missing file, not executable,
    /// bad working directory).
    #[error("cannot start worker {worker}: {program}: {reason}")]
    Spawn {
        /// Worker index (`DIFFINV_WORKER_ID`).
        worker: usize,
        /// The program as resolved (against `PoolOptions::base_dir` when it is a relative path).
        program: String,
        /// The operating system's reason and a hint.
        reason: String,
    },
    /// A worker started but did not complete the handshake: it exited, said nothing within
    /// `timeout_s`, wrote something that is not a hello line, or declared another protocol
    /// version or other sizes than the configuration.
    #[error("worker {worker} did not start: {reason}; stderr: {stderr}")]
    Hello {
        /// Worker index.
        worker: usize,
        /// What went wrong, naming the expected and the received values.
        reason: String,
        /// The last lines of the worker's stderr, joined with ` | `.
        stderr: String,
    },
    /// A file the pool needs (the worker log, the temporary folder of `files` mode) could not
    /// be created or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The cancellation flag was set while the workers were starting.
    #[error("interrupted while the workers were starting")]
    Interrupted,
    /// A thread of the pool failed (a bug in diffinv-process, not in the worker).
    #[error("internal error of the worker pool: {0}")]
    Internal(String),
}
