//! Row sharding of batched evaluations: [`ShardedForward`] and [`ShardedDenoiser`].
//!
//! One sharded call on `P` ranks, for a batch `x` of `n` rows that every rank holds:
//!
//! 1. rank `r` evaluates its rows `[r n / P, (r + 1) n / P)` ([`shard_range`]);
//! 2. the ranks all-gather a fixed header (what was called, the call's sequence number, `n`, a
//!    hash of the input, the rank's status and the sizes it sends), so that every rank learns
//!    at once whether any rank failed or is out of step;
//! 3. if every rank succeeded, they all-gather the outputs (variable counts) and, when there
//!    are any, the per-row failures with their reasons; otherwise they all-gather the error
//!    messages and every rank returns the error of the lowest failed rank (an interruption on
//!    any rank wins, so that a cancelled job ends as interrupted everywhere).
//!
//! Every decision after step 2 depends only on the gathered header, so every rank makes the
//! same collective calls and returns the same value: no rank is left waiting in a collective
//! that another rank skipped.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diffinv_operators::{
    BatchOutput, Differentiable, ForwardModel, LinearOperator, OperatorError, SampleFailure,
};
use diffinv_priors::{Denoiser, PriorError};
use ndarray::{s, Array2, ArrayView2};

use crate::collective::{shard_range, Collective};

/// What a sharded call evaluates (part of the header, so that ranks that call different things
/// at the same point are caught).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forward = 1,
    ForwardPartial = 2,
    Adjoint = 3,
    Vjp = 4,
    Denoise = 5,
    DenoiseVjp = 6,
}

impl Kind {
    fn name(code: u64) -> &'static str {
        match code {
            1 => "forward",
            2 => "forward_partial",
            3 => "adjoint",
            4 => "vjp",
            5 => "denoise",
            6 => "denoiser vjp",
            _ => "unknown",
        }
    }
}

const OK: u64 = 0;
const INTERRUPTED: u64 = 1;
const FAILED: u64 = 2;
const HEADER: usize = 8;

/// A hash of a batch's shape and bits (four interleaved FNV-1a lanes): ranks whose inputs
/// differ (a solver that is not deterministic across ranks, calls out of order) are caught
/// instead of combining the outputs of different batches.
pub fn batch_hash(x: ArrayView2<'_, f32>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = [
        0xcbf2_9ce4_8422_2325u64,
        0x84222325_cbf29ce4,
        0x9e37_79b9_7f4a_7c15,
        0x7f4a_7c15_9e37_79b9,
    ];
    let mut feed = |k: usize, v: u64| h[k & 3] = (h[k & 3] ^ v).wrapping_mul(PRIME);
    feed(0, x.nrows() as u64);
    feed(1, x.ncols() as u64);
    match x.as_slice() {
        Some(s) => s.iter().enumerate().for_each(|(k, v)| feed(k, u64::from(v.to_bits()))),
        None => x.iter().enumerate().for_each(|(k, v)| feed(k, u64::from(v.to_bits()))),
    }
    h.iter()
        .fold(0u64, |acc, v| (acc.rotate_left(17) ^ v).wrapping_mul(PRIME))
}

/// What every rank returns from one sharded call.
enum Gathered<E> {
    Done {
        y: Array2<f32>,
        failures: Vec<SampleFailure>,
    },
    Interrupted,
    /// The lowest failed rank, its encoded error, and this rank's own error if it is that rank.
    Failed {
        rank: usize,
        payload: Vec<u8>,
        own: Option<E>,
    },
    /// The ranks are out of step, or the batch is too large to gather.
    Refused(String),
}

/// One call's identity, the same on every rank.
struct Call {
    kind: Kind,
    seq: u64,
    n: usize,
    cols: usize,
    hash: u64,
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: &mut usize) -> Option<u64> {
    let s = b.get(*at..*at + 8)?;
    *at += 8;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

fn get_str(b: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::try_from(get_u64(b, at)?).ok()?;
    let s = b.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// The failures of a shard (rows already global) as bytes: `(row, reason)` pairs.
fn encode_failures(failures: &[SampleFailure]) -> Vec<u8> {
    let mut b = Vec::new();
    for f in failures {
        put_u64(&mut b, f.row as u64);
        put_str(&mut b, &f.reason);
    }
    b
}

fn decode_failures(b: &[u8], prefix: &str, out: &mut Vec<SampleFailure>) {
    let mut at = 0;
    while at < b.len() {
        let (Some(row), Some(reason)) = (get_u64(b, &mut at), get_str(b, &mut at)) else {
            break;
        };
        out.push(SampleFailure {
            row: row as usize,
            reason: format!("{prefix}{reason}"),
        });
    }
}

/// Run one sharded call: `local` evaluates this rank's rows (their outputs, their failures
/// with *global* row indices, or an error whose row indices are global) and `encode` turns an
/// error into a status and bytes that the other ranks can decode.
fn sharded<E>(
    comm: &dyn Collective,
    call: Call,
    local: impl FnOnce(Range<usize>) -> Result<(Array2<f32>, Vec<SampleFailure>), E>,
    encode: impl Fn(&E) -> (u64, Vec<u8>),
) -> Gathered<E> {
    // One rank's sharded calls never interleave: each is a sequence of collectives.
    let _guard = comm.sequence_lock();
    let (rank, size) = (comm.rank(), comm.size());
    let rows = shard_range(call.n, rank, size);
    let mut own = None;
    let mut y_local = Array2::<f32>::zeros((0, call.cols));
    let (status, payload) = if rows.is_empty() {
        (OK, Vec::new())
    } else {
        match local(rows.clone()) {
            Ok((y, failures))
                if y.dim() == (rows.len(), call.cols)
                    && failures.iter().all(|f| rows.contains(&f.row)) =>
            {
                y_local = y;
                (OK, encode_failures(&failures))
            }
            Ok((y, _)) => {
                let mut b = vec![TAG_MESSAGE];
                put_str(
                    &mut b,
                    &format!(
                        "the model returned a {} x {} batch (or failures outside it) for rows {}..{} of {} values each",
                        y.nrows(),
                        y.ncols(),
                        rows.start,
                        rows.end,
                        call.cols
                    ),
                );
                (FAILED, b)
            }
            Err(e) => {
                let (st, b) = encode(&e);
                own = Some(e);
                (st, b)
            }
        }
    };
    let flat: Cow<'_, [f32]> = match y_local.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(y_local.iter().copied().collect()),
    };
    let header = [
        call.kind as u64,
        call.seq,
        call.n as u64,
        call.cols as u64,
        call.hash,
        status,
        flat.len() as u64,
        payload.len() as u64,
    ];
    let all = comm.all_gather_u64(&header);
    let head = |r: usize| &all[r * HEADER..(r + 1) * HEADER];
    // Every rank compares every rank with rank 0: the same verdict everywhere.
    for r in 1..size {
        let (a, b) = (head(0), head(r));
        if a[..5] != b[..5] {
            return Gathered::Refused(format!(
                "the ranks are out of step: rank 0 makes call {} ({} of {} rows x {} values, input hash {:016x}), rank {r} call {} ({} of {} rows x {} values, input hash {:016x}); \
                 every rank must run the same deterministic solver with the same seed and call the model in the same order",
                a[1], Kind::name(a[0]), a[2], a[3], a[4], b[1], Kind::name(b[0]), b[2], b[3], b[4]
            ));
        }
    }
    let byte_counts: Vec<usize> = (0..size).map(|r| head(r)[7] as usize).collect();
    let any_bytes = byte_counts.iter().any(|&c| c > 0);
    if (0..size).any(|r| head(r)[5] != OK) {
        let bytes = comm.all_gather_bytes(&payload, &byte_counts);
        if (0..size).any(|r| head(r)[5] == INTERRUPTED) {
            return Gathered::Interrupted;
        }
        let first = (0..size).find(|&r| head(r)[5] != OK).unwrap_or(0);
        let start: usize = byte_counts[..first].iter().sum();
        return Gathered::Failed {
            rank: first,
            payload: bytes[start..start + byte_counts[first]].to_vec(),
            own: if first == rank { own } else { None },
        };
    }
    let counts: Vec<usize> = (0..size).map(|r| head(r)[6] as usize).collect();
    let total: usize = counts.iter().sum();
    if total != call.n * call.cols {
        return Gathered::Refused(format!(
            "the ranks sent {total} values for a batch of {} x {}",
            call.n, call.cols
        ));
    }
    let limit = comm.max_count();
    if total > limit || byte_counts.iter().sum::<usize>() > limit {
        return Gathered::Refused(format!(
            "a batch of {} x {} values is more than one gather moves ({limit}): use fewer particles per batch",
            call.n, call.cols
        ));
    }
    let y = comm.all_gather_f32(&flat, &counts);
    let mut failures = Vec::new();
    if any_bytes {
        let bytes = comm.all_gather_bytes(&payload, &byte_counts);
        let mut start = 0;
        for (r, &c) in byte_counts.iter().enumerate() {
            let prefix = if size > 1 {
                format!("rank {r}: ")
            } else {
                String::new()
            };
            decode_failures(&bytes[start..start + c], &prefix, &mut failures);
            start += c;
        }
    }
    match Array2::from_shape_vec((call.n, call.cols), y) {
        Ok(y) => Gathered::Done { y, failures },
        Err(e) => Gathered::Refused(format!("gathered batch: {e}")),
    }
}

// Encoded operator errors: a tag byte, then its fields.
const TAG_MESSAGE: u8 = 0;
const TAG_SAMPLE_FAILED: u8 = 1;
const TAG_OUTPUT_LENGTH: u8 = 2;
const TAG_STOPPED: u8 = 3;

/// `e` with its row indices moved by `offset` (a shard's local rows to the batch's rows).
fn shift_rows(e: OperatorError, offset: usize) -> OperatorError {
    match e {
        OperatorError::SampleFailed { row, reason } => OperatorError::SampleFailed {
            row: row + offset,
            reason,
        },
        OperatorError::NonFiniteInput { what, row } => OperatorError::NonFiniteInput {
            what,
            row: row + offset,
        },
        OperatorError::OutputLength { row, got, expected } => OperatorError::OutputLength {
            row: row + offset,
            got,
            expected,
        },
        e => e,
    }
}

fn encode_operator_error(e: &OperatorError) -> (u64, Vec<u8>) {
    let mut b = Vec::new();
    match e {
        OperatorError::Interrupted => return (INTERRUPTED, b),
        OperatorError::SampleFailed { row, reason } => {
            b.push(TAG_SAMPLE_FAILED);
            put_u64(&mut b, *row as u64);
            put_str(&mut b, reason);
        }
        OperatorError::OutputLength { row, got, expected } => {
            b.push(TAG_OUTPUT_LENGTH);
            for v in [*row, *got, *expected] {
                put_u64(&mut b, v as u64);
            }
        }
        OperatorError::Stopped(m) => {
            b.push(TAG_STOPPED);
            put_str(&mut b, m);
        }
        e => {
            b.push(TAG_MESSAGE);
            put_str(&mut b, &e.to_string());
        }
    }
    (FAILED, b)
}

/// The error of rank `rank` from its payload, on every rank: exact for the variants whose
/// fields travel (a failed sample, a wrong output length, a stopped model), else a
/// [`OperatorError::Stopped`] quoting it; the failed rank itself keeps its own error for the
/// others.
fn decode_operator_error(
    payload: &[u8],
    rank: usize,
    size: usize,
    own: Option<OperatorError>,
) -> OperatorError {
    let prefix = if size > 1 {
        format!("rank {rank}: ")
    } else {
        String::new()
    };
    let mut at = 1;
    let tag = payload.first().copied();
    let decoded = match tag {
        Some(TAG_SAMPLE_FAILED) => get_u64(payload, &mut at)
            .zip(get_str(payload, &mut at))
            .map(|(row, reason)| OperatorError::SampleFailed {
                row: row as usize,
                reason: format!("{prefix}{reason}"),
            }),
        Some(TAG_OUTPUT_LENGTH) => {
            let v: Option<Vec<u64>> = (0..3).map(|_| get_u64(payload, &mut at)).collect();
            v.map(|v| OperatorError::OutputLength {
                row: v[0] as usize,
                got: v[1] as usize,
                expected: v[2] as usize,
            })
        }
        Some(TAG_STOPPED) => {
            get_str(payload, &mut at).map(|m| OperatorError::Stopped(format!("{prefix}{m}")))
        }
        _ => None,
    };
    match (decoded, own) {
        (Some(e), _) => e,
        (None, Some(e)) => e,
        (None, None) => {
            let mut at = 1;
            let m = get_str(payload, &mut at).unwrap_or_else(|| "failed".into());
            OperatorError::Stopped(format!("{prefix}{m}"))
        }
    }
}

/// A [`ForwardModel`] whose batches are evaluated by the ranks of a [`Collective`] together:
/// each rank evaluates its contiguous block of rows ([`shard_range`]) with its own copy of the
/// model and the ranks all-gather the outputs and the per-row failures, so that every rank
/// returns the same, complete [`BatchOutput`] (for `P` ranks, each does `1/P` of the forward
/// solves).
///
/// - **Results.** A row's output is computed by the same model from the same row as without
///   sharding, so a model whose rows do not depend on each other (every built-in operator,
///   closures, worker pools) gives bit-identical batches for any number of ranks; failures keep
///   their rows (with `rank k: ` before the reason when `P > 1`).
/// - **Capabilities.** [`as_linear`](ForwardModel::as_linear) and
///   [`as_differentiable`](ForwardModel::as_differentiable) are offered exactly when the inner
///   model offers them; the adjoint and the vector-Jacobian product are row-wise too and are
///   sharded the same way.
/// - **Errors.** An error on any rank (a worker pool that stopped, an interruption) is returned
///   on every rank: the lowest failed rank's error, or [`OperatorError::Interrupted`] when any
///   rank was interrupted. Ranks that call with different batches (detected by a hash of the
///   input) or out of order get [`OperatorError::Stopped`] naming the difference.
/// - **Contract.** SPMD: every rank builds the same problem and calls the model with the same
///   batches in the same order (diffinv's solvers do, from one thread, with the same seed).
///
/// ```
/// use std::sync::Arc;
/// use diffinv_mpi::{Collective, ShardedForward, ThreadGroup};
/// use diffinv_operators::{FnForward, ForwardModel};
/// use ndarray::Array2;
///
/// // Three ranks as threads (with MPI: `MpiWorld::init()?.comm()` on each process).
/// let x = Array2::from_shape_fn((7, 2), |(i, j)| (i * 2 + j) as f32);
/// let results: Vec<Array2<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = ThreadGroup::new(3)
///         .into_iter()
///         .map(|comm| {
///             let x = x.view();
///             s.spawn(move || {
///                 let g = FnForward::new(2, 1, |r: &[f32]| vec![r[0] * r[1]]);
///                 let sharded = ShardedForward::new(g, Arc::new(comm));
///                 sharded.forward(x).unwrap()
///             })
///         })
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// let alone = FnForward::new(2, 1, |r: &[f32]| vec![r[0] * r[1]]).forward(x.view()).unwrap();
/// assert!(results.iter().all(|y| *y == alone));
/// ```
pub struct ShardedForward<F> {
    inner: F,
    comm: Arc<dyn Collective>,
    seq: AtomicU64,
    check_inputs: bool,
}

impl<F> std::fmt::Debug for ShardedForward<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedForward")
            .field("rank", &self.comm.rank())
            .field("size", &self.comm.size())
            .field("calls", &self.seq.load(Ordering::Relaxed))
            .finish()
    }
}

impl<F: ForwardModel> ShardedForward<F> {
    /// Shard `inner` over the ranks of `comm`.
    pub fn new(inner: F, comm: Arc<dyn Collective>) -> Self {
        Self {
            inner,
            comm,
            seq: AtomicU64::new(0),
            check_inputs: true,
        }
    }
    /// Whether every call checks that the ranks hold the same input (a hash of the batch, about
    /// 1 ns per value; default on).
    pub fn with_input_check(mut self, on: bool) -> Self {
        self.check_inputs = on;
        self
    }
    /// The model each rank evaluates its rows with.
    pub fn inner(&self) -> &F {
        &self.inner
    }
    /// The ranks.
    pub fn comm(&self) -> &Arc<dyn Collective> {
        &self.comm
    }

    fn hash(&self, x: ArrayView2<'_, f32>) -> u64 {
        if self.check_inputs {
            batch_hash(x)
        } else {
            0
        }
    }

    /// Shard an evaluation of `n` rows to `cols` values each; `f` evaluates a block of rows
    /// (local row indices in its failures and errors).
    fn run(
        &self,
        kind: Kind,
        n: usize,
        cols: usize,
        hash: u64,
        f: impl FnOnce(Range<usize>) -> diffinv_operators::Result<BatchOutput>,
    ) -> diffinv_operators::Result<BatchOutput> {
        let call = Call {
            kind,
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            n,
            cols,
            hash,
        };
        let local = |rows: Range<usize>| {
            let start = rows.start;
            f(rows)
                .map(|out| {
                    let failures = out
                        .failures
                        .into_iter()
                        .map(|f| SampleFailure {
                            row: f.row + start,
                            reason: f.reason,
                        })
                        .collect();
                    (out.y, failures)
                })
                .map_err(|e| shift_rows(e, start))
        };
        match sharded(self.comm.as_ref(), call, local, encode_operator_error) {
            Gathered::Done { y, failures } => Ok(BatchOutput { y, failures }),
            Gathered::Interrupted => Err(OperatorError::Interrupted),
            Gathered::Failed { rank, payload, own } => Err(decode_operator_error(
                &payload,
                rank,
                self.comm.size(),
                own,
            )),
            Gathered::Refused(m) => Err(OperatorError::Stopped(m)),
        }
    }
}

impl<F: ForwardModel> ForwardModel for ShardedForward<F> {
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.inner.output_shape()
    }
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }
    /// The inner model's `forward` on each rank's rows; the error of the lowest failed rank
    /// (for a failed sample: the first failed row of the batch) on every rank.
    fn forward(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        let hash = self.hash(x);
        let out = self.run(Kind::Forward, x.nrows(), self.output_dim(), hash, |rows| {
            self.inner.forward(x.slice(s![rows, ..])).map(|y| BatchOutput {
                y,
                failures: Vec::new(),
            })
        })?;
        Ok(out.y)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<BatchOutput> {
        let hash = self.hash(x);
        self.run(Kind::ForwardPartial, x.nrows(), self.output_dim(), hash, |rows| {
            self.inner.forward_partial(x.slice(s![rows, ..]))
        })
    }
    fn as_linear(&self) -> Option<&dyn LinearOperator> {
        self.inner.as_linear().map(|_| self as &dyn LinearOperator)
    }
    fn as_differentiable(&self) -> Option<&dyn Differentiable> {
        self.inner
            .as_differentiable()
            .map(|_| self as &dyn Differentiable)
    }
}

impl<F: ForwardModel> LinearOperator for ShardedForward<F> {
    /// `A^T y`, each rank on its rows of `y`.
    fn adjoint(&self, y: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        let lin = self
            .inner
            .as_linear()
            .ok_or(OperatorError::Unsupported("adjoint"))?;
        let hash = self.hash(y);
        let out = self.run(Kind::Adjoint, y.nrows(), self.input_dim(), hash, |rows| {
            lin.adjoint(y.slice(s![rows, ..])).map(|y| BatchOutput {
                y,
                failures: Vec::new(),
            })
        })?;
        Ok(out.y)
    }
}

impl<F: ForwardModel> Differentiable for ShardedForward<F> {
    /// `J_G(x_i)^T v_i`, each rank on its rows of `x` and `v`.
    fn vjp(
        &self,
        x: ArrayView2<'_, f32>,
        v: ArrayView2<'_, f32>,
    ) -> diffinv_operators::Result<Array2<f32>> {
        let g = self
            .inner
            .as_differentiable()
            .ok_or(OperatorError::Unsupported("vjp"))?;
        if v.nrows() != x.nrows() {
            return Err(OperatorError::Rows {
                what: "vjp cotangent",
                expected: x.nrows(),
                got: v.nrows(),
            });
        }
        let hash = self.hash(x).rotate_left(29) ^ self.hash(v);
        let out = self.run(Kind::Vjp, x.nrows(), self.input_dim(), hash, |rows| {
            g.vjp(x.slice(s![rows.clone(), ..]), v.slice(s![rows, ..]))
                .map(|y| BatchOutput {
                    y,
                    failures: Vec::new(),
                })
        })?;
        Ok(out.y)
    }
}

fn shift_prior_rows(e: PriorError, offset: usize) -> PriorError {
    match e {
        PriorError::NonFinite { what, row } => PriorError::NonFinite {
            what,
            row: row + offset,
        },
        e => e,
    }
}

/// The prior's denoiser sharded like [`ShardedForward`]: each rank denoises its block of rows
/// and the ranks all-gather the result, so that a GPU node, or a CPU rank, spends `1/P` of the
/// prior's time. Optional: without it every rank evaluates the whole batch.
///
/// Bit-identical to the unsharded prior for priors whose rows do not depend on each other (the
/// analytic priors). A neural network's output for one image can depend on the batch it is
/// evaluated in (the size of the batch selects the convolution kernels), so a sharded neural
/// prior agrees with the unsharded one to rounding, not bit for bit (docs/distributed.md
/// gives the measured difference).
pub struct ShardedDenoiser<'a, D: ?Sized> {
    inner: &'a D,
    comm: Arc<dyn Collective>,
    seq: AtomicU64,
}

impl<D: ?Sized> std::fmt::Debug for ShardedDenoiser<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedDenoiser")
            .field("rank", &self.comm.rank())
            .field("size", &self.comm.size())
            .finish()
    }
}

impl<'a, D: Denoiser + ?Sized> ShardedDenoiser<'a, D> {
    /// Shard `inner` over the ranks of `comm`.
    pub fn new(inner: &'a D, comm: Arc<dyn Collective>) -> Self {
        Self {
            inner,
            comm,
            seq: AtomicU64::new(0),
        }
    }

    fn run(
        &self,
        kind: Kind,
        x: ArrayView2<'_, f32>,
        sigma: f32,
        extra: Option<ArrayView2<'_, f32>>,
        f: impl FnOnce(Range<usize>) -> diffinv_priors::Result<Array2<f32>>,
    ) -> diffinv_priors::Result<Array2<f32>> {
        let mut hash = batch_hash(x) ^ u64::from(sigma.to_bits()).rotate_left(32);
        if let Some(v) = extra {
            hash = hash.rotate_left(29) ^ batch_hash(v);
        }
        let call = Call {
            kind,
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            n: x.nrows(),
            cols: self.inner.dim(),
            hash,
        };
        let local = |rows: Range<usize>| {
            let start = rows.start;
            f(rows)
                .map(|y| (y, Vec::new()))
                .map_err(|e| shift_prior_rows(e, start))
        };
        let encode = |e: &PriorError| {
            let mut b = vec![TAG_MESSAGE];
            put_str(&mut b, &e.to_string());
            (FAILED, b)
        };
        let size = self.comm.size();
        match sharded(self.comm.as_ref(), call, local, encode) {
            Gathered::Done { y, .. } => Ok(y),
            Gathered::Interrupted => Err(PriorError::Backend("interrupted".into())),
            Gathered::Failed { own: Some(e), .. } => Err(e),
            Gathered::Failed { rank, payload, .. } => {
                let mut at = 1;
                let m = get_str(&payload, &mut at).unwrap_or_else(|| "failed".into());
                Err(PriorError::Backend(if size > 1 {
                    format!("rank {rank}: {m}")
                } else {
                    m
                }))
            }
            Gathered::Refused(m) => Err(PriorError::Backend(m)),
        }
    }
}

impl<D: Denoiser + ?Sized> Denoiser for ShardedDenoiser<'_, D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn denoise(&self, x: ArrayView2<'_, f32>, sigma: f32) -> diffinv_priors::Result<Array2<f32>> {
        self.run(Kind::Denoise, x, sigma, None, |rows| {
            self.inner.denoise(x.slice(s![rows, ..]), sigma)
        })
    }
    fn vjp(
        &self,
        x: ArrayView2<'_, f32>,
        sigma: f32,
        v: ArrayView2<'_, f32>,
    ) -> diffinv_priors::Result<Array2<f32>> {
        if v.nrows() != x.nrows() {
            return Err(PriorError::Shape {
                what: "vjp cotangent rows",
                expected: x.nrows(),
                got: v.nrows(),
            });
        }
        self.run(Kind::DenoiseVjp, x, sigma, Some(v), |rows| {
            self.inner
                .vjp(x.slice(s![rows.clone(), ..]), sigma, v.slice(s![rows, ..]))
        })
    }
}
