//! The MPI backend (feature `mpi`): [`MpiWorld`] and [`MpiComm`] on rsmpi.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence};
use mpi::Threading;
use thiserror::Error;

use crate::collective::Collective;

/// Why MPI could not be started.
#[derive(Debug, Error)]
pub enum MpiError {
    /// `MPI_Init_thread` was called before, or failed.
    #[error("MPI could not be initialised (it already was, or MPI_Init_thread failed)")]
    Init,
    /// The MPI library does not let a program with threads call it.
    #[error(
        "the MPI library offers the thread level {0:?}; diffinv needs at least Serialized (calls \
         from any thread, one at a time): use an MPI built with thread support"
    )]
    Threading(Threading),
    /// The launcher started several processes but MPI sees each alone.
    #[error(
        "the launcher started {launched} processes but MPI sees {seen}: the MPI library is not \
         the launcher's (with Slurm use `srun --mpi=pmix`, or the `mpirun` of the MPI this \
         program was built with)"
    )]
    Mismatch {
        /// Processes the launcher says it started.
        launched: usize,
        /// Ranks in `MPI_COMM_WORLD`.
        seen: usize,
    },
}

/// A communicator as a [`Collective`]: `MPI_Allgather` and `MPI_Allgatherv` on it.
pub struct MpiComm {
    comm: Mutex<SimpleCommunicator>,
    sequence: Mutex<()>,
    rank: usize,
    size: usize,
}

// SAFETY: MPI is initialised at `MPI_THREAD_SERIALIZED` or above by `MpiWorld::init`, which is
// the only way to build an `MpiComm`; that level allows calls from any thread as long as no two
// are concurrent, and every call on the communicator is made with its mutex held.
unsafe impl Send for MpiComm {}
// SAFETY: as for `Send`: shared access only ever reaches MPI through the mutex.
unsafe impl Sync for MpiComm {}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl MpiComm {
    fn new(comm: SimpleCommunicator) -> Self {
        let rank = usize::try_from(comm.rank()).unwrap_or(0);
        let size = usize::try_from(comm.size()).unwrap_or(1).max(1);
        Self {
            comm: Mutex::new(comm),
            sequence: Mutex::new(()),
            rank,
            size,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let c = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        f(&c)
    }

    fn gather_varcount<T: Equivalence + Copy + Default>(&self, mine: &[T], counts: &[usize]) -> Vec<T> {
        let total: usize = counts.iter().sum();
        let mut out = vec![T::default(); total];
        // `Collective::max_count` keeps every count and offset within a C int.
        let c: Vec<i32> = counts.iter().map(|&v| v as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0usize, |acc, &v| {
                let at = *acc;
                *acc += v;
                Some(at as i32)
            })
            .collect();
        self.with(|comm| {
            let mut part = PartitionMut::new(&mut out[..], c, &displs[..]);
            comm.all_gather_varcount_into(mine, &mut part);
        });
        out
    }
}

impl Collective for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather_u64(&self, mine: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; mine.len() * self.size];
        self.with(|comm| comm.all_gather_into(mine, &mut out[..]));
        out
    }
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Vec<f32> {
        self.gather_varcount(mine, counts)
    }
    fn all_gather_bytes(&self, mine: &[u8], counts: &[usize]) -> Vec<u8> {
        self.gather_varcount(mine, counts)
    }
    fn max_count(&self) -> usize {
        i32::MAX as usize
    }
    fn sequence_lock(&self) -> MutexGuard<'_, ()> {
        self.sequence.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The MPI job this process is one rank of: MPI started at `MPI_THREAD_SERIALIZED`, the
/// world's communicator as a [`Collective`], and the job's end. MPI is finalised when it is
/// dropped (once per process: keep it alive for as long as anything uses MPI).
pub struct MpiWorld {
    world: Arc<MpiComm>,
    /// A duplicate of the world for [`finish_together`](Self::finish_together), so that its
    /// barrier never matches a gather of a rank still inside a step.
    exit: MpiComm,
    // Dropped last: MPI_Finalize.
    _universe: Universe,
}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiWorld")
            .field("rank", &self.world.rank)
            .field("size", &self.world.size)
            .finish()
    }
}

impl MpiWorld {
    /// Start MPI (`MPI_Init_thread`, asking for `MPI_THREAD_SERIALIZED`: the process has
    /// threads, and the sharded calls may come from any of them, one at a time). Fails when
    /// MPI was started before, when the library offers a lower thread level, or when the
    /// launcher's environment says it started more processes than MPI's world holds (a
    /// launcher that does not belong to this MPI library).
    pub fn init() -> Result<Self, MpiError> {
        let (universe, level) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or(MpiError::Init)?;
        if matches!(level, Threading::Single | Threading::Funneled) {
            return Err(MpiError::Threading(level));
        }
        let world = universe.world();
        let seen = usize::try_from(world.size()).unwrap_or(1);
        if let Some(launched) = crate::launcher_size() {
            if launched != seen {
                return Err(MpiError::Mismatch { launched, seen });
            }
        }
        let exit = MpiComm::new(world.duplicate());
        Ok(Self {
            world: Arc::new(MpiComm::new(world)),
            exit,
            _universe: universe,
        })
    }
    /// This process's rank in the world.
    pub fn rank(&self) -> usize {
        self.world.rank
    }
    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.world.size
    }
    /// The world as a [`Collective`], for [`ShardedForward`](crate::ShardedForward) and friends.
    pub fn comm(&self) -> Arc<dyn Collective> {
        self.world.clone()
    }
    /// Wait until every rank has called this (a non-blocking barrier on a communicator of its
    /// own). `patience: None` waits for ever: what a rank that finished its work does. A rank
    /// that stops on an error of its own gives a patience: if the others do not arrive in that
    /// time they are inside a collective it will never join, and the caller should
    /// [`abort`](Self::abort) the job. Returns whether everyone arrived.
    pub fn finish_together(&self, patience: Option<Duration>) -> bool {
        let start = Instant::now();
        let mut req = self.exit.with(|c| c.immediate_barrier());
        loop {
            match self.exit.with(|_| req.test()) {
                Ok(_) => return true,
                Err(r) => req = r,
            }
            if patience.is_some_and(|p| start.elapsed() >= p) {
                // The job is about to be aborted; an unfinished request must not be dropped.
                std::mem::forget(req);
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    /// Every rank's `value` after [`finish_together`](Self::finish_together) returned `true`
    /// (on the exit communicator).
    pub fn exchange(&self, value: u64) -> Vec<u64> {
        self.exit.all_gather_u64(&[value])
    }
    /// End the whole job with `code` (`MPI_Abort`): the launcher kills every rank.
    pub fn abort(&self, code: i32) -> ! {
        self.world.with(|c| c.abort(code))
    }
}
