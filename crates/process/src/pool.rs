//! The worker pool: [`ProcessForward`].
//!
//! Each worker has a *slot*: a thread that lives as long as the pool, owns the worker process
//! (spawning and restarting it, which keeps the parent-death signal armed), and evaluates the
//! chunks of a batch it takes from a shared counter. The calling thread only hands the batch
//! out and collects the chunks, polling the cancellation flag; no lock is held while anyone
//! waits on a worker.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diffinv_operators::{
    check_batch, npy, BatchOutput, ForwardModel, OperatorError, SampleFailure,
};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::config::{INPUT_PLACEHOLDER, OUTPUT_PLACEHOLDER};
use crate::log::Sink;
use crate::proc::{block_sigpipe, Idle, Launch, Proc, Streams, Wait, SLICE};
use crate::protocol::{self, ReplyHeader, MAX_HEADER_BYTES, PROTOCOL_VERSION};
use crate::{PoolOptions, ProcessConfig, ProcessError, WorkerMode};

/// How long a worker gets to exit after its stdin is closed, before its group is killed.
const GRACE: Duration = Duration::from_secs(1);
/// How long a crashed worker gets to finish exiting, so that its real exit status is reported.
const CRASH_GRACE: Duration = Duration::from_millis(100);
/// How long an interrupted or stopped call waits for every slot to kill its worker.
const HALT_WAIT: Duration = Duration::from_secs(3);

/// Exact counts of what a pool did, for a run's summary. Serialised with these field names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Batches evaluated (`forward` / `forward_partial` calls with at least one row).
    pub batches: u64,
    /// Calls made to workers: one per chunk of rows handed to a worker (in `files` mode, one
    /// per process run).
    pub calls: u64,
    /// Rows sent to workers (the sum of the calls' sizes).
    pub rows: u64,
    /// Rows reported failed to the caller (NaN and listed in `BatchOutput::failures`), for any
    /// reason. Rows of a batch that ended in an error are not counted.
    pub failed_rows: u64,
    /// Calls during which the worker exited or closed its pipes (`files` mode: a non-zero exit
    /// status), plus workers found dead between calls.
    pub crashes: u64,
    /// Calls that took longer than `timeout_s` (the worker's process group was killed).
    pub timeouts: u64,
    /// Replies that broke the protocol (not JSON, wrong sizes, bytes nobody asked for;
    /// `files` mode: a missing or wrong output file).
    pub malformed_replies: u64,
    /// `{"status": "error"}` replies.
    pub error_replies: u64,
    /// Worker processes started to replace a failed one (successful or not; `persistent` mode).
    pub restarts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    calls: AtomicU64,
    rows: AtomicU64,
    failed_rows: AtomicU64,
    crashes: AtomicU64,
    timeouts: AtomicU64,
    malformed_replies: AtomicU64,
    error_replies: AtomicU64,
    restarts: AtomicU64,
}

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, SeqCst);
}

impl Counters {
    fn snapshot(&self) -> PoolStats {
        PoolStats {
            batches: self.batches.load(SeqCst),
            calls: self.calls.load(SeqCst),
            rows: self.rows.load(SeqCst),
            failed_rows: self.failed_rows.load(SeqCst),
            crashes: self.crashes.load(SeqCst),
            timeouts: self.timeouts.load(SeqCst),
            malformed_replies: self.malformed_replies.load(SeqCst),
            error_replies: self.error_replies.load(SeqCst),
            restarts: self.restarts.load(SeqCst),
        }
    }
}

/// Whether the pool can still evaluate.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    Interrupted,
    Stopped(String),
}

/// What every slot and the caller share.
#[derive(Debug)]
struct Shared {
    cfg: ProcessConfig,
    launch: Launch,
    sink: Arc<Sink>,
    cancel: Option<Arc<AtomicBool>>,
    /// Set when no call may go on: interrupted, stopped, or the pool is being dropped.
    halt: AtomicBool,
    state: Mutex<State>,
    stats: Counters,
    files_dir: Option<PathBuf>,
    timeout: Duration,
}

impl Shared {
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(SeqCst))
    }
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Move to `to` unless the pool already left `Running`; halt every slot.
    fn end(&self, to: State) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *s == State::Running {
            *s = to;
        }
        self.halt.store(true, SeqCst);
    }
}

/// One batch handed to the slots.
struct Batch {
    x: Vec<f32>,
    rows: usize,
    chunk: usize,
    nchunks: usize,
    next: AtomicUsize,
    abort: AtomicBool,
    tx: Sender<Msg>,
}

enum Msg {
    Chunk {
        index: usize,
        y: Vec<f32>,
        failures: Vec<SampleFailure>,
    },
    Stopped(String),
    /// A slot is done with the batch (sent even if the slot thread panics).
    Done,
}

/// Sends [`Msg::Done`] when dropped.
struct DoneGuard<'a>(&'a Sender<Msg>);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::Done);
    }
}

/// The outcome of one chunk in a slot.
enum Eval {
    Rows {
        y: Vec<f32>,
        failures: Vec<SampleFailure>,
    },
    Stop(String),
    Halted,
}

/// Why a worker could not be (re)started.
enum StartFail {
    Halted,
    Failed(ProcessError),
}

struct SlotHandle {
    jobs: Option<Sender<Arc<Batch>>>,
    thread: Option<JoinHandle<()>>,
}

/// A simulator in any language, run as a pool of worker processes, as a
/// [`ForwardModel`] with input shape `[in_dim]` and output shape `[out_dim]`.
///
/// A batch of `N` rows is cut into chunks of [`chunk_rows`](ProcessConfig::chunk_rows) rows
/// (default `ceil(N / workers)`) which free workers take one at a time, so a slow chunk never
/// holds up the others. The result of a row depends only on the row: it is bit-identical for
/// any number of workers and any chunk size.
///
/// # Failures
///
/// [`forward_partial`](ForwardModel::forward_partial) returns `Ok` with the failed rows NaN and
/// listed with a reason (which quotes the worker's stderr where there is one) for every
/// per-row failure:
/// - a row with a NaN or an infinity fails alone;
/// - an `{"status": "error"}` reply fails the rows of that call; the worker stays up;
/// - a crash (the worker exits or closes its pipes), a call longer than
///   [`timeout_s`](ProcessConfig::timeout_s) (its whole process group is SIGKILLed, children
///   included) or a malformed reply (not JSON, wrong sizes, bytes on stdout outside a reply)
///   fails the rows of that call, and the worker is restarted before its next call;
///
/// and `Err` when the batch cannot be evaluated:
/// - [`OperatorError::Stopped`] when one worker failed
///   [`max_restarts`](ProcessConfig::max_restarts) times in a row (a restart that does not
///   complete its hello counts), or a `files`-mode process cannot be started; every later call
///   returns the same error;
/// - [`OperatorError::Interrupted`] when the [cancellation flag](PoolOptions::cancel) is set:
///   the call kills every worker at once (within about 20 ms) and every later call returns
///   `Interrupted`.
///
/// [`forward`](ForwardModel::forward) is `forward_partial` with the first failed row turned
/// into [`OperatorError::SampleFailed`].
///
/// # Processes
///
/// Every worker runs in its own process group (so a terminal's Ctrl-C reaches diffinv only)
/// with `SIGKILL` as its parent-death signal on Linux (a SIGKILLed diffinv leaves no worker
/// behind; a worker's own children do not inherit it, but they die with the group on every
/// other path). [`shutdown`](Self::shutdown) and `Drop` close each worker's stdin, give it a
/// second to exit, then kill its process group: no process is left behind on any path,
/// panics included.
pub struct ProcessForward {
    shared: Arc<Shared>,
    slots: Vec<SlotHandle>,
    in_dim: usize,
    out_dim: usize,
    chunk_rows: Option<usize>,
}

impl std::fmt::Debug for ProcessForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessForward")
            .field("command", &self.shared.cfg.command)
            .field("mode", &self.shared.cfg.mode)
            .field("workers", &self.slots.len())
            .field("in_dim", &self.in_dim)
            .field("out_dim", &self.out_dim)
            .finish()
    }
}

static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary folder for `files` mode.
fn make_files_dir() -> Result<PathBuf, ProcessError> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..100 {
        let n = POOL_COUNTER.fetch_add(1, SeqCst);
        let d = base.join(format!("diffinv-process-{}-{n}", std::process::id()));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(ProcessError::Io {
                    path: d.display().to_string(),
                    reason: format!("cannot create the folder for the files-mode exchange: {e}"),
                })
            }
        }
    }
    Err(ProcessError::Io {
        path: base.display().to_string(),
        reason: format!(
            "cannot create a fresh folder for the files-mode exchange: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    })
}

/// Resolve the program: a relative path with a separator is relative to `base_dir`.
fn resolve_program(program: &str, base_dir: &Path) -> PathBuf {
    let p = PathBuf::from(program);
    if p.is_absolute() || !program.contains('/') {
        return p;
    }
    let joined = base_dir.join(&p);
    std::path::absolute(&joined).unwrap_or(joined)
}

impl ProcessForward {
    /// Validate `config`, start every worker and check its hello (protocol version, `in_dim`,
    /// `out_dim`) before returning; in `files` mode, check that the program can be found and
    /// create the temporary exchange folder.
    ///
    /// Workers start in parallel, each within [`timeout_s`](ProcessConfig::timeout_s). A worker
    /// that cannot be started, exits, says nothing in time, or declares another protocol
    /// version or other sizes fails the whole start with one line naming the worker, the
    /// expected and the received values, and quoting the tail of its stderr
    /// ([`ProcessError::Spawn`], [`ProcessError::Hello`]); the workers already started are
    /// stopped. The log file ([`PoolOptions::log`]) is opened for appending first.
    pub fn start(config: &ProcessConfig, options: PoolOptions) -> Result<Self, ProcessError> {
        config.validate()?;
        let workers = config.worker_count();
        let sink = Arc::new(Sink::open(options.log.as_deref())?);
        let base_dir = options.base_dir.clone();
        let cwd = if base_dir.as_os_str().is_empty() {
            None
        } else {
            Some(std::path::absolute(&base_dir).unwrap_or(base_dir.clone()))
        };
        let launch = Launch {
            program: resolve_program(&config.command[0], &base_dir),
            args: config.command[1..].to_vec(),
            cwd,
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let files_dir = match config.mode {
            WorkerMode::Persistent => None,
            WorkerMode::Files => {
                check_program(&launch)?;
                Some(make_files_dir()?)
            }
        };
        let shared = Arc::new(Shared {
            cfg: config.clone(),
            launch,
            sink,
            cancel: options.cancel,
            halt: AtomicBool::new(false),
            state: Mutex::new(State::Running),
            stats: Counters::default(),
            files_dir,
            timeout: Duration::from_secs_f64(config.timeout_s),
        });
        let mut pool = ProcessForward {
            shared: Arc::clone(&shared),
            slots: Vec::with_capacity(workers),
            in_dim: config.in_dim,
            out_dim: config.out_dim,
            chunk_rows: config.chunk_rows,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for k in 0..workers {
            let (jobs_tx, jobs_rx) = mpsc::channel();
            let sh = Arc::clone(&shared);
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("diffinv-worker-{k}"))
                .spawn(move || slot_main(k, sh, jobs_rx, ready))
                .map_err(|e| ProcessError::Internal(format!("cannot start a thread: {e}")))?;
            pool.slots.push(SlotHandle {
                jobs: Some(jobs_tx),
                thread: Some(thread),
            });
        }
        drop(ready_tx);
        let mut first: Option<(usize, ProcessError)> = None;
        let mut abandoned = false;
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((k, Err(e))) => {
                    match e {
                        Some(e) if first.as_ref().is_none_or(|(j, _)| k < *j) => {
                            first = Some((k, e))
                        }
                        Some(_) => {}
                        None => abandoned = true,
                    }
                    // The others need not finish their hello: stop them.
                    shared.halt.store(true, SeqCst);
                }
                Err(_) => {
                    first.get_or_insert((
                        usize::MAX,
                        ProcessError::Internal("a worker thread ended during start-up".into()),
                    ));
                    break;
                }
            }
        }
        if let Some((_, e)) = first {
            return Err(e);
        }
        if abandoned {
            return Err(if shared.cancelled() {
                ProcessError::Interrupted
            } else {
                ProcessError::Internal("start-up abandoned".into())
            });
        }
        Ok(pool)
    }

    /// The counts so far (exact: every event of every call is counted once).
    pub fn stats(&self) -> PoolStats {
        self.shared.stats.snapshot()
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Orderly end: close every worker's stdin, give each up to a second to exit, then kill
    /// its process group; the `files`-mode folder is removed. Dropping the pool does the same;
    /// this also reports an internal failure of the pool's threads.
    pub fn shutdown(mut self) -> Result<(), ProcessError> {
        self.close()
    }

    fn close(&mut self) -> Result<(), ProcessError> {
        // A call abandoned by a cancellation may still be unwinding in a slot: stop it.
        self.shared.halt.store(true, SeqCst);
        for s in &mut self.slots {
            s.jobs = None;
        }
        let mut panicked = Vec::new();
        for (k, s) in self.slots.iter_mut().enumerate() {
            if let Some(t) = s.thread.take() {
                if t.join().is_err() {
                    panicked.push(k);
                }
            }
        }
        if let Some(d) = &self.shared.files_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(ProcessError::Internal(format!(
                "the threads of workers {panicked:?} panicked"
            )))
        }
    }

    fn refuse(&self) -> diffinv_operators::Result<()> {
        match self.shared.state() {
            State::Running => Ok(()),
            State::Interrupted => Err(OperatorError::Interrupted),
            State::Stopped(r) => Err(OperatorError::Stopped(r)),
        }
    }

    /// Wait until `pending` slots have sent `Done` (they kill their workers first), or
    /// [`HALT_WAIT`].
    fn drain(&self, rx: &Receiver<Msg>, mut pending: usize) {
        let until = Instant::now() + HALT_WAIT;
        while pending > 0 {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Done) => pending -= 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn interrupt(&self) -> OperatorError {
        self.shared.end(State::Interrupted);
        OperatorError::Interrupted
    }

    fn run_batch(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<BatchOutput> {
        self.refuse()?;
        check_batch(x, self.in_dim, "forward input")?;
        let rows = x.nrows();
        let m = self.out_dim;
        if rows == 0 {
            return Ok(BatchOutput {
                y: Array2::zeros((0, m)),
                failures: Vec::new(),
            });
        }
        if self.shared.cancelled() {
            // Kill the idle workers too: the run is over.
            let e = self.interrupt();
            self.wake_all();
            return Err(e);
        }
        bump(&self.shared.stats.batches, 1);
        let chunk = self
            .chunk_rows
            .unwrap_or_else(|| rows.div_ceil(self.slots.len().max(1)))
            .max(1);
        let nchunks = rows.div_ceil(chunk);
        let (tx, rx) = mpsc::channel();
        let batch = Arc::new(Batch {
            x: x.iter().copied().collect(),
            rows,
            chunk,
            nchunks,
            next: AtomicUsize::new(0),
            abort: AtomicBool::new(false),
            tx,
        });
        let mut sent = 0;
        for s in &self.slots {
            if let Some(j) = &s.jobs {
                if j.send(Arc::clone(&batch)).is_ok() {
                    sent += 1;
                }
            }
        }
        if sent < self.slots.len() {
            let reason = "a worker thread of the pool ended unexpectedly".to_string();
            self.shared.end(State::Stopped(reason.clone()));
            batch.abort.store(true, SeqCst);
            self.drain(&rx, sent);
            return Err(OperatorError::Stopped(reason));
        }
        let mut y = vec![f32::NAN; rows * m];
        let mut failures = Vec::new();
        let mut got = 0;
        let mut done = 0;
        while got < nchunks {
            match rx.recv_timeout(SLICE) {
                Ok(Msg::Chunk {
                    index,
                    y: yc,
                    failures: f,
                }) => {
                    let lo = index * chunk * m;
                    y[lo..lo + yc.len()].copy_from_slice(&yc);
                    failures.extend(f);
                    got += 1;
                }
                Ok(Msg::Stopped(reason)) => {
                    batch.abort.store(true, SeqCst);
                    self.drain(&rx, sent - done);
                    self.wake_all();
                    return Err(OperatorError::Stopped(reason));
                }
                Ok(Msg::Done) => {
                    done += 1;
                    if done == sent && got < nchunks {
                        // Every slot gave up on the batch: the pool was halted (by the
                        // cancellation flag, which the slots saw first, or by a stop).
                        let e = if self.shared.cancelled() {
                            self.interrupt()
                        } else {
                            let reason = "the worker pool's threads ended during a call";
                            self.shared.end(State::Stopped(reason.into()));
                            match self.refuse() {
                                Err(e) => e,
                                Ok(()) => OperatorError::Stopped(reason.into()),
                            }
                        };
                        // Slots that finished their part earlier kill their idle workers too.
                        self.wake_all();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(OperatorError::Stopped(
                        "the worker pool's threads ended during a call".into(),
                    ))
                }
            }
            if self.shared.cancelled() {
                let e = self.interrupt();
                batch.abort.store(true, SeqCst);
                self.drain(&rx, sent - done);
                // Slots already done with this batch kill their idle workers too.
                self.wake_all();
                return Err(e);
            }
        }
        failures.sort_by_key(|f: &SampleFailure| f.row);
        bump(&self.shared.stats.failed_rows, failures.len());
        let y = Array2::from_shape_vec((rows, m), y)
            .map_err(|e| OperatorError::Stopped(format!("internal: {e}")))?;
        Ok(BatchOutput { y, failures })
    }

    /// After a halt outside a call: make every slot kill its (idle) worker now, and wait.
    fn wake_all(&self) {
        let (tx, rx) = mpsc::channel();
        let batch = Arc::new(Batch {
            x: Vec::new(),
            rows: 0,
            chunk: 1,
            nchunks: 0,
            next: AtomicUsize::new(0),
            abort: AtomicBool::new(true),
            tx,
        });
        let mut sent = 0;
        for s in &self.slots {
            if let Some(j) = &s.jobs {
                if j.send(Arc::clone(&batch)).is_ok() {
                    sent += 1;
                }
            }
        }
        self.drain(&rx, sent);
    }
}

impl Drop for ProcessForward {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl ForwardModel for ProcessForward {
    fn input_shape(&self) -> Vec<usize> {
        vec![self.in_dim]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.out_dim]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        let out = self.run_batch(x)?;
        match out.failures.into_iter().next() {
            None => Ok(out.y),
            Some(f) => Err(OperatorError::SampleFailed {
                row: f.row,
                reason: f.reason,
            }),
        }
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<BatchOutput> {
        self.run_batch(x)
    }
}

/// `files` mode: fail at start, not at the first call, when the program cannot be found.
fn check_program(launch: &Launch) -> Result<(), ProcessError> {
    let p = &launch.program;
    let shown = p.display().to_string();
    let found = if shown.contains('/') {
        p.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(ProcessError::Spawn {
            worker: 0,
            program: shown,
            reason: spawn_hint(&std::io::Error::from(std::io::ErrorKind::NotFound)),
        })
    }
}

/// The operating system's reason for a failed spawn, with a hint.
fn spawn_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            "no such program (a relative path with a '/' is relative to the config file's \
             folder; a bare name is looked up in PATH)"
                .into()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e} (is it executable? chmod +x, or run it through its interpreter)")
        }
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------- slots

struct Slot {
    k: usize,
    sh: Arc<Shared>,
    worker: Option<Proc>,
    /// Consecutive failures (crashes, timeouts, malformed replies, failed restarts).
    consecutive: u32,
    /// Calls made, for unique file names in `files` mode.
    seq: u64,
}

fn slot_main(
    k: usize,
    sh: Arc<Shared>,
    jobs: Receiver<Arc<Batch>>,
    ready: Sender<(usize, Result<(), Option<ProcessError>>)>,
) {
    block_sigpipe();
    let mut slot = Slot {
        k,
        sh,
        worker: None,
        consecutive: 0,
        seq: 0,
    };
    if slot.sh.cfg.mode == WorkerMode::Persistent {
        let halted = || slot.sh.halt.load(SeqCst) || slot.sh.cancelled();
        match start_worker(&slot.sh, k, &halted) {
            Ok(p) => slot.worker = Some(p),
            Err(StartFail::Failed(e)) => {
                let _ = ready.send((k, Err(Some(e))));
                return;
            }
            Err(StartFail::Halted) => {
                // Another worker failed (or the run was cancelled): no error of its own.
                let _ = ready.send((k, Err(None)));
                return;
            }
        }
    }
    let _ = ready.send((k, Ok(())));
    drop(ready);
    // This thread spawned the worker and must outlive it (parent-death signal): it returns
    // only after the pool is dropped, having closed the worker.
    while let Ok(batch) = jobs.recv() {
        slot.run(&batch);
    }
    if let Some(mut p) = slot.worker.take() {
        p.close(GRACE);
    }
}

impl Slot {
    fn run(&mut self, b: &Batch) {
        let _done = DoneGuard(&b.tx);
        let sh = Arc::clone(&self.sh);
        let halted = || sh.halt.load(SeqCst) || b.abort.load(SeqCst) || sh.cancelled();
        let d = sh.cfg.in_dim;
        while !halted() {
            let i = b.next.fetch_add(1, SeqCst);
            if i >= b.nchunks {
                break;
            }
            let lo = i * b.chunk;
            let n = b.chunk.min(b.rows - lo);
            let x = &b.x[lo * d..(lo + n) * d];
            let r = match sh.cfg.mode {
                WorkerMode::Persistent => self.eval_persistent(x, lo, n, &halted),
                WorkerMode::Files => self.eval_files(x, lo, n, &halted),
            };
            match r {
                Eval::Rows { y, failures } => {
                    let _ = b.tx.send(Msg::Chunk {
                        index: i,
                        y,
                        failures,
                    });
                }
                Eval::Stop(reason) => {
                    sh.end(State::Stopped(reason.clone()));
                    b.abort.store(true, SeqCst);
                    let _ = b.tx.send(Msg::Stopped(reason));
                    break;
                }
                Eval::Halted => break,
            }
        }
        if sh.halt.load(SeqCst) || sh.cancelled() {
            if let Some(mut p) = self.worker.take() {
                p.kill();
            }
        }
    }

    /// Count a failure; `Some(reason)` when it is one too many.
    fn failure(&mut self, reason: &str) -> Option<String> {
        self.consecutive += 1;
        let max = self.sh.cfg.max_restarts;
        (self.consecutive >= max).then(|| {
            format!(
                "worker {} failed {} times in a row (max_restarts = {max}); last: {reason}",
                self.k, self.consecutive
            )
        })
    }

    /// Every row of the chunk failed with `reason`.
    fn all_failed(&self, lo: usize, n: usize, reason: &str) -> Eval {
        Eval::Rows {
            y: vec![f32::NAN; n * self.sh.cfg.out_dim],
            failures: (lo..lo + n)
                .map(|row| SampleFailure {
                    row,
                    reason: reason.to_string(),
                })
                .collect(),
        }
    }

    /// The rows' values, with each row holding a non-finite value failed (and set to NaN).
    fn checked(&self, lo: usize, mut y: Vec<f32>, who: &str) -> Eval {
        let m = self.sh.cfg.out_dim;
        let mut failures = Vec::new();
        for (r, row) in y.chunks_exact_mut(m).enumerate() {
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                failures.push(SampleFailure {
                    row: lo + r,
                    reason: format!("{who} returned {} at output index {j}", row[j]),
                });
                row.fill(f32::NAN);
            }
        }
        Eval::Rows { y, failures }
    }

    fn eval_persistent(
        &mut self,
        x: &[f32],
        lo: usize,
        n: usize,
        halted: &dyn Fn() -> bool,
    ) -> Eval {
        let sh = Arc::clone(&self.sh);
        let k = self.k;
        let (d, m) = (sh.cfg.in_dim, sh.cfg.out_dim);
        let rows = format!("rows {lo}..{}", lo + n);
        loop {
            if self.worker.is_none() {
                if halted() {
                    return Eval::Halted;
                }
                bump(&sh.stats.restarts, 1);
                match start_worker(&sh, k, halted) {
                    Ok(p) => self.worker = Some(p),
                    Err(StartFail::Halted) => return Eval::Halted,
                    Err(StartFail::Failed(e)) => {
                        if let Some(stop) = self.failure(&format!("restart failed: {e}")) {
                            return Eval::Stop(stop);
                        }
                        continue;
                    }
                }
            }
            let Some(p) = self.worker.as_mut() else {
                continue;
            };
            if let Err(idle) = p.idle_check() {
                let reason = match idle {
                    Idle::Exited => {
                        bump(&sh.stats.crashes, 1);
                        p.kill_after(CRASH_GRACE);
                        format!(
                            "worker {k} {} between calls; stderr: {}",
                            p.status(),
                            p.stderr()
                        )
                    }
                    Idle::Junk(q) => {
                        bump(&sh.stats.malformed_replies, 1);
                        p.kill();
                        format!(
                            "worker {k} wrote {q} to stdout outside a reply (stdout is reserved \
                             for the protocol; print to stderr); stderr: {}",
                            p.stderr()
                        )
                    }
                };
                self.worker = None;
                if let Some(stop) = self.failure(&reason) {
                    return Eval::Stop(stop);
                }
                continue;
            }
            bump(&sh.stats.calls, 1);
            bump(&sh.stats.rows, n);
            let deadline = Instant::now() + sh.timeout;
            let reason = match call(p, x, n, d, m, deadline, halted) {
                Ok(Answer::Values(y)) => {
                    self.consecutive = 0;
                    return self.checked(lo, y, &format!("worker {k}"));
                }
                Ok(Answer::Error(message)) => {
                    self.consecutive = 0;
                    bump(&sh.stats.error_replies, 1);
                    return self.all_failed(
                        lo,
                        n,
                        &format!("worker {k} reported an error: {message}"),
                    );
                }
                Err(CallFail::Wait(Wait::Halted)) => {
                    p.kill();
                    self.worker = None;
                    return Eval::Halted;
                }
                Err(CallFail::Wait(Wait::Timeout)) => {
                    bump(&sh.stats.timeouts, 1);
                    p.kill();
                    format!(
                        "worker {k} did not answer {rows} within timeout_s = {} s (its process \
                         group was killed); stderr: {}",
                        sh.cfg.timeout_s,
                        p.stderr()
                    )
                }
                Err(CallFail::Wait(Wait::Eof)) => {
                    bump(&sh.stats.crashes, 1);
                    p.kill_after(CRASH_GRACE);
                    format!(
                        "worker {k} crashed on {rows} ({}); stderr: {}",
                        p.status(),
                        p.stderr()
                    )
                }
                Err(CallFail::Wait(Wait::Io(e))) => {
                    bump(&sh.stats.crashes, 1);
                    p.kill();
                    format!("worker {k} failed on {rows}: {e}; stderr: {}", p.stderr())
                }
                Err(CallFail::Wait(Wait::TooLong)) => {
                    bump(&sh.stats.malformed_replies, 1);
                    p.kill();
                    format!(
                        "worker {k} sent a malformed reply on {rows}: a header line longer than \
                         {MAX_HEADER_BYTES} bytes (stdout is reserved for the protocol); stderr: {}",
                        p.stderr()
                    )
                }
                Err(CallFail::Malformed(detail)) => {
                    bump(&sh.stats.malformed_replies, 1);
                    p.kill();
                    format!(
                        "worker {k} sent a malformed reply on {rows}: {detail}; stderr: {}",
                        p.stderr()
                    )
                }
            };
            self.worker = None;
            if let Some(stop) = self.failure(&reason) {
                return Eval::Stop(stop);
            }
            return self.all_failed(lo, n, &reason);
        }
    }

    fn eval_files(&mut self, x: &[f32], lo: usize, n: usize, halted: &dyn Fn() -> bool) -> Eval {
        let sh = Arc::clone(&self.sh);
        let k = self.k;
        let (d, m) = (sh.cfg.in_dim, sh.cfg.out_dim);
        let Some(dir) = sh.files_dir.as_ref() else {
            return Eval::Stop("internal: files mode without its folder".into());
        };
        self.seq += 1;
        let input = dir.join(format!("w{k}-{}-input.npy", self.seq));
        let output = dir.join(format!("w{k}-{}-output.npy", self.seq));
        if let Err(e) = npy::save_npy(&input, &[n, d], x) {
            return Eval::Stop(format!("cannot write the input of worker {k}: {e}"));
        }
        let (inp, out) = (input.display().to_string(), output.display().to_string());
        let mut launch = sh.launch.clone();
        for a in &mut launch.args {
            *a = a
                .replace(INPUT_PLACEHOLDER, &inp)
                .replace(OUTPUT_PLACEHOLDER, &out);
        }
        let env = [
            ("DIFFINV_WORKER_ID", k.to_string()),
            ("DIFFINV_IN_DIM", d.to_string()),
            ("DIFFINV_OUT_DIM", m.to_string()),
            ("DIFFINV_PROTOCOL", PROTOCOL_VERSION.to_string()),
            ("DIFFINV_INPUT", inp.clone()),
            ("DIFFINV_OUTPUT", out.clone()),
        ];
        let cleanup = || {
            let _ = std::fs::remove_file(&input);
            let _ = std::fs::remove_file(&output);
        };
        bump(&sh.stats.calls, 1);
        bump(&sh.stats.rows, n);
        let deadline = Instant::now() + sh.timeout;
        let mut p = match Proc::spawn(&launch, k, &env, Streams::Captured, &sh.sink) {
            Ok(p) => p,
            Err(e) => {
                cleanup();
                return Eval::Stop(format!(
                    "cannot start worker {k}: {}: {}",
                    launch.program.display(),
                    spawn_hint(&e)
                ));
            }
        };
        let rows = format!("rows {lo}..{}", lo + n);
        let reason = match p.wait_exit(deadline, halted) {
            Err(Wait::Halted) => {
                p.kill();
                cleanup();
                return Eval::Halted;
            }
            Err(_) => {
                bump(&sh.stats.timeouts, 1);
                p.kill();
                format!(
                    "worker {k} did not finish {rows} within timeout_s = {} s (its process group \
                     was killed); output: {}",
                    sh.cfg.timeout_s,
                    p.stderr()
                )
            }
            Ok(()) => {
                // Reap it, and kill whatever it left running in its group.
                p.kill();
                if !p.succeeded() {
                    bump(&sh.stats.crashes, 1);
                    format!(
                        "worker {k} {} on {rows}; output: {}",
                        p.status(),
                        p.stderr()
                    )
                } else {
                    match read_output(&output, n, m) {
                        Ok(y) => {
                            cleanup();
                            return self.checked(lo, y, &format!("worker {k}"));
                        }
                        Err(e) => {
                            bump(&sh.stats.malformed_replies, 1);
                            format!(
                                "worker {k} exited with status 0 on {rows} but {e}; output: {}",
                                p.stderr()
                            )
                        }
                    }
                }
            }
        };
        cleanup();
        self.all_failed(lo, n, &reason)
    }
}

/// Read a `files`-mode output: an `(n, m)` array (`(n,)` when `m` is 1) of floats.
fn read_output(path: &Path, n: usize, m: usize) -> Result<Vec<f32>, String> {
    if !path.exists() {
        return Err(format!(
            "wrote no output file (expected {})",
            path.display()
        ));
    }
    let a = npy::load_npy(path).map_err(|e| format!("its output is unreadable: {e}"))?;
    let ok = a.shape == [n, m] || (m == 1 && a.shape == [n]);
    if !ok {
        return Err(format!(
            "its output has shape {:?}, expected [{n}, {m}]",
            a.shape
        ));
    }
    Ok(a.to_f32())
}

/// What a worker answered.
enum Answer {
    Values(Vec<f32>),
    Error(String),
}

enum CallFail {
    Wait(Wait),
    Malformed(String),
}

impl From<Wait> for CallFail {
    fn from(w: Wait) -> Self {
        CallFail::Wait(w)
    }
}

/// One protocol call: request, reply header, values.
fn call(
    p: &mut Proc,
    x: &[f32],
    n: usize,
    d: usize,
    m: usize,
    deadline: Instant,
    halted: &dyn Fn() -> bool,
) -> Result<Answer, CallFail> {
    let header = protocol::request_header(n, d);
    let mut msg = Vec::with_capacity(header.len() + x.len() * 4);
    msg.extend_from_slice(header.as_bytes());
    protocol::put_f32(&mut msg, x);
    p.write_all(&msg, deadline, halted)?;
    let line = p.read_line(deadline, halted)?;
    match protocol::parse_reply(&line).map_err(CallFail::Malformed)? {
        ReplyHeader::Error { message } => Ok(Answer::Error(message)),
        ReplyHeader::Ok { rows, out_dim } => {
            if rows != n as u64 || out_dim != m as u64 {
                return Err(CallFail::Malformed(format!(
                    "the reply has rows = {rows}, out_dim = {out_dim}; the call has rows = {n}, \
                     out_dim = {m}"
                )));
            }
            let bytes = p.read_exact(n * m * 4, deadline, halted)?;
            Ok(Answer::Values(protocol::get_f32(&bytes)))
        }
    }
}

/// Start worker `k` and check its hello.
fn start_worker(sh: &Shared, k: usize, halted: &dyn Fn() -> bool) -> Result<Proc, StartFail> {
    let cfg = &sh.cfg;
    let env = [
        ("DIFFINV_WORKER_ID", k.to_string()),
        ("DIFFINV_IN_DIM", cfg.in_dim.to_string()),
        ("DIFFINV_OUT_DIM", cfg.out_dim.to_string()),
        ("DIFFINV_PROTOCOL", PROTOCOL_VERSION.to_string()),
    ];
    let mut p = Proc::spawn(&sh.launch, k, &env, Streams::Protocol, &sh.sink).map_err(|e| {
        StartFail::Failed(ProcessError::Spawn {
            worker: k,
            program: sh.launch.program.display().to_string(),
            reason: spawn_hint(&e),
        })
    })?;
    let deadline = Instant::now() + sh.timeout;
    let reason = match p.read_line(deadline, halted) {
        Err(Wait::Halted) => return Err(StartFail::Halted),
        Err(Wait::Eof) => {
            p.kill_after(CRASH_GRACE);
            format!("it {} before its hello line", p.status())
        }
        Err(Wait::Timeout) => format!(
            "it wrote no hello line on stdout within timeout_s = {} s",
            cfg.timeout_s
        ),
        Err(Wait::TooLong) => format!(
            "its first line on stdout is longer than {MAX_HEADER_BYTES} bytes (stdout is \
             reserved for the protocol: print to stderr)"
        ),
        Err(Wait::Io(e)) => e,
        Ok(line) => match protocol::parse_hello(&line) {
            Err(e) => e,
            Ok(h) if h.protocol != PROTOCOL_VERSION => format!(
                "it speaks protocol version {}, this diffinv speaks version {PROTOCOL_VERSION}",
                h.protocol
            ),
            Ok(h) if h.in_dim != cfg.in_dim as u64 || h.out_dim != cfg.out_dim as u64 => format!(
                "it says in_dim = {}, out_dim = {}, the configuration has in_dim = {}, \
                 out_dim = {}",
                h.in_dim, h.out_dim, cfg.in_dim, cfg.out_dim
            ),
            Ok(_) => return Ok(p),
        },
    };
    p.kill();
    Err(StartFail::Failed(ProcessError::Hello {
        worker: k,
        reason,
        stderr: p.stderr(),
    }))
}
