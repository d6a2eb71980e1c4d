//! The pool's configuration ([`ProcessConfig`], the `[forward]` table of a config file) and its
//! run-time options ([`PoolOptions`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ProcessError;

/// Default [`ProcessConfig::timeout_s`]: one minute per call.
pub const DEFAULT_TIMEOUT_S: f64 = 60.0;

/// Default [`ProcessConfig::max_restarts`].
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// Placeholder in a `files`-mode argument replaced by the path of the input `.npy` file.
pub const INPUT_PLACEHOLDER: &str = "{input}";

/// Placeholder in a `files`-mode argument replaced by the path the output `.npy` file must be
/// written to.
pub const OUTPUT_PLACEHOLDER: &str = "{output}";

/// Environment variables the pool sets for every worker; [`ProcessConfig::env`] may not set them.
pub const RESERVED_ENV: [&str; 6] = [
    "DIFFINV_WORKER_ID",
    "DIFFINV_IN_DIM",
    "DIFFINV_OUT_DIM",
    "DIFFINV_PROTOCOL",
    "DIFFINV_INPUT",
    "DIFFINV_OUTPUT",
];

/// How the simulator's processes are run (`mode` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerMode {
    /// `"persistent"` (default): each worker is started once and answers calls on its
    /// stdin/stdout with the binary protocol of docs/simulators.md (a JSON header line, then
    /// little-endian `float32` values). Start-up costs (imports, loading a mesh) are paid once.
    #[default]
    Persistent,
    /// `"files"`: one process per chunk of rows, which reads an `(n, in_dim)` `float32` `.npy`
    /// file and writes an `(n, out_dim)` `float32`/`float64` `.npy` file; their paths replace
    /// `{input}` and `{output}` in the arguments (and are in `DIFFINV_INPUT`/`DIFFINV_OUTPUT`).
    /// For programs that cannot be changed to speak the protocol.
    Files,
}

impl WorkerMode {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            WorkerMode::Persistent => "persistent",
            WorkerMode::Files => "files",
        }
    }
}

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_S
}

fn default_max_restarts() -> u32 {
    DEFAULT_MAX_RESTARTS
}

/// An external simulator as a forward model: the `[forward]` table of a config file, minus its
/// `kind` key.
///
/// ```toml
/// [forward]
/// kind = "process"
/// command = ["python3", "simulator.py"]
/// in_dim = 2
/// out_dim = 5
/// workers = 4          # default: the number of CPUs
/// timeout_s = 30       # per call, default 60
/// ```
///
/// Unknown keys are rejected (a misspelt `timeout` is an error, not a silent default). Call
/// [`validate`](Self::validate) (done by [`ProcessForward::start`](crate::ProcessForward::start))
/// to check the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The program and its arguments. A program given as a relative path with a `/` in it
    /// (`./sim`, `bin/sim`) is resolved against [`PoolOptions::base_dir`]; a bare name
    /// (`python3`) is looked up in `PATH`. In `files` mode the arguments may contain `{input}`
    /// and `{output}`.
    pub command: Vec<String>,
    /// Values per input row, `d` (> 0).
    pub in_dim: usize,
    /// Values per output row, `m` (> 0).
    pub out_dim: usize,
    /// Number of worker processes (> 0); default: the number of CPUs
    /// (`std::thread::available_parallelism`).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Seconds one call (one chunk of rows, or the hello at start-up) may take before the
    /// worker's whole process group is killed and the chunk's rows fail; default 60, finite and
    /// > 0.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// `"persistent"` (default) or `"files"`, see [`WorkerMode`].
    #[serde(default)]
    pub mode: WorkerMode,
    /// Rows per call (> 0); default: `ceil(rows / workers)`, one chunk per worker. Smaller
    /// chunks balance uneven per-row costs better, at the price of more messages.
    #[serde(default)]
    pub chunk_rows: Option<usize>,
    /// Consecutive failures of one worker that end the run with
    /// [`OperatorError::Stopped`](diffinv_operators::OperatorError::Stopped) (>= 1, default 3).
    /// A failure is a crash, a timeout, a malformed reply, or a restart that does not complete
    /// its hello; a successful call (an `ok` or `error` reply) resets the count. With the
    /// default, a worker is restarted at most twice in a row. In `files` mode only a process
    /// that cannot be started stops the run (each chunk is a new process).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Extra environment variables for the workers (added to diffinv's own environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ProcessConfig {
    /// A configuration with every optional key at its default.
    pub fn new(command: Vec<String>, in_dim: usize, out_dim: usize) -> Self {
        Self {
            command,
            in_dim,
            out_dim,
            workers: None,
            timeout_s: DEFAULT_TIMEOUT_S,
            mode: WorkerMode::Persistent,
            chunk_rows: None,
            max_restarts: DEFAULT_MAX_RESTARTS,
            env: BTreeMap::new(),
        }
    }

    /// The number of workers: [`workers`](Self::workers), else the number of CPUs (at least 1).
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Check every value; the error names the key and what it must be.
    pub fn validate(&self) -> Result<(), ProcessError> {
        let bad = |key: &'static str, reason: String| Err(ProcessError::Config { key, reason });
        match self.command.first() {
            None => {
                return bad(
                    "command",
                    "is empty; give the program and its arguments, e.g. [\"python3\", \"sim.py\"]"
                        .into(),
                )
            }
            Some(p) if p.trim().is_empty() => {
                return bad("command", "the program (first element) is empty".into())
            }
            Some(_) => {}
        }
        if let Some(a) = self.command.iter().find(|a| a.contains('\0')) {
            return bad("command", format!("argument {a:?} contains a NUL byte"));
        }
        if self.mode == WorkerMode::Persistent {
            if let Some(a) = self.command[1..]
                .iter()
                .find(|a| a.contains(INPUT_PLACEHOLDER) || a.contains(OUTPUT_PLACEHOLDER))
            {
                return bad(
                    "command",
                    format!(
                        "argument {a:?} uses {INPUT_PLACEHOLDER}/{OUTPUT_PLACEHOLDER}, which only \
                         mode = \"files\" replaces; set mode = \"files\" or remove it"
                    ),
                );
            }
        }
        if self.in_dim == 0 {
            return bad("in_dim", "must be at least 1".into());
        }
        if self.out_dim == 0 {
            return bad("out_dim", "must be at least 1".into());
        }
        if self.workers == Some(0) {
            return bad(
                "workers",
                "must be at least 1 (leave it out for one per CPU)".into(),
            );
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return bad(
                "timeout_s",
                format!(
                    "must be a finite number of seconds > 0, got {}",
                    self.timeout_s
                ),
            );
        }
        if self.timeout_s > 1e7 {
            return bad(
                "timeout_s",
                format!(
                    "{} s is more than 100 days; use a smaller value",
                    self.timeout_s
                ),
            );
        }
        if self.chunk_rows == Some(0) {
            return bad(
                "chunk_rows",
                "must be at least 1 (leave it out for one chunk per worker)".into(),
            );
        }
        if self.max_restarts == 0 {
            return bad(
                "max_restarts",
                "must be at least 1 (the number of consecutive failures of one worker that \
                 ends the run)"
                    .into(),
            );
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return bad(
                    "env",
                    format!("{k:?} is not a valid environment variable name"),
                );
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return bad(
                    "env",
                    format!("{k} is set by diffinv for every worker and cannot be overridden"),
                );
            }
        }
        if let Some((k, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            return bad("env", format!("the value of {k} contains a NUL byte"));
        }
        Ok(())
    }
}

/// How a pool runs, beyond its configuration: where it lives, where worker output goes, and the
/// cancellation flag.
#[derive(Debug, Clone, Default)]
pub struct PoolOptions {
    /// The folder relative program paths are resolved against, and the workers' working
    /// directory (typically the folder of the config file). Empty: diffinv's current directory.
    pub base_dir: PathBuf,
    /// File the workers' stderr is appended to, each line prefixed with `[worker k] ` (in
    /// `files` mode stdout too). `None`: the output is discarded, except the last lines of each
    /// process, kept in memory and quoted in error messages (they are quoted in either case).
    pub log: Option<PathBuf>,
    /// Cancellation flag (set it from a Ctrl-C or SIGTERM handler, and give the same flag to
    /// `Runner::with_cancel`). A call in flight when it is set kills every worker's process
    /// group within about 20 ms and returns
    /// [`OperatorError::Interrupted`](diffinv_operators::OperatorError::Interrupted); the pool
    /// then refuses every further call with `Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
}
