//! # diffinv-process
//!
//! A user's simulator, written in any language, as a pool of worker processes behind
//! [`diffinv_operators::ForwardModel`]: what the derivative-free solvers (EnKG, CPS) need to
//! run a simulator they can only evaluate.
//!
//! [`ProcessForward::start`] launches `workers` copies of a command; each says hello on stdout
//! and then answers batches of rows over a small binary protocol on stdin/stdout
//! ([`protocol`], docs/simulators.md), or, in `files` mode, one process per chunk reads and
//! writes `.npy` files. Rows are handed out in chunks to whichever worker is free; results are
//! bit-identical for any number of workers and chunk size. Per-row failures (a crash, a
//! timeout, a malformed reply, a NaN) cost only their rows; a worker that keeps failing stops
//! the run with [`OperatorError::Stopped`](diffinv_operators::OperatorError::Stopped); a
//! cancellation flag stops a call within milliseconds with
//! [`OperatorError::Interrupted`](diffinv_operators::OperatorError::Interrupted). No worker
//! process outlives the pool.
//!
//! Client helpers: `crates/process/python/diffinv_worker` (Python, numpy only),
//! `crates/process/c/diffinv_worker.h` (C99, one header) and [`serve`] (Rust).
//!
//! ```no_run
//! use diffinv_operators::ForwardModel;
//! use diffinv_process::{PoolOptions, ProcessConfig, ProcessForward};
//!
//! let mut cfg = ProcessConfig::new(vec!["python3".into(), "simulator.py".into()], 2, 5);
//! cfg.workers = Some(4);
//! cfg.timeout_s = 30.0;
//! let pool = ProcessForward::start(&cfg, PoolOptions::default())?;
//! let out = pool.forward_partial(ndarray::Array2::<f32>::zeros((16, 2)).view())?;
//! println!("{} rows failed; {:?}", out.failures.len(), pool.stats());
//! pool.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod log;
mod pool;
mod proc;
pub mod protocol;
pub mod spin;

pub use config::{
    PoolOptions, ProcessConfig, WorkerMode, DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT_S,
    INPUT_PLACEHOLDER, OUTPUT_PLACEHOLDER, RESERVED_ENV,
};
pub use error::ProcessError;
pub use pool::{PoolStats, ProcessForward};
pub use protocol::{serve, serve_io, MAX_HEADER_BYTES, PROTOCOL_VERSION};
