//! The collective operations the sharding needs, behind a trait: MPI ([`MpiComm`](crate::MpiComm),
//! feature `mpi`) or threads of one process ([`ThreadGroup`], for tests and for trying the
//! sharding without MPI).

use std::ops::Range;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

use thiserror::Error;

/// A group of `size` ranks that call the same collective operations in the same order (SPMD).
///
/// Every method is a collective: every rank of the group must call it, in the same order, with
/// arguments that agree as documented, or the group hangs (MPI) or panics (threads). A
/// collective's result is the same on every rank.
pub trait Collective: Send + Sync {
    /// This rank, `0 <= rank < size`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `mine`, concatenated in rank order. `mine` has the same length on every
    /// rank.
    fn all_gather_u64(&self, mine: &[u64]) -> Vec<u64>;
    /// Every rank's `mine`, concatenated in rank order, where rank `r` contributes
    /// `counts[r]` values (`counts` is the same on every rank and `counts[rank] == mine.len()`;
    /// at most [`max_count`](Self::max_count) values in all).
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Vec<f32>;
    /// [`all_gather_f32`](Self::all_gather_f32) for bytes.
    fn all_gather_bytes(&self, mine: &[u8], counts: &[usize]) -> Vec<u8>;
    /// The most values one variable-count gather may move in all (MPI counts are C `int`s).
    fn max_count(&self) -> usize {
        usize::MAX
    }
    /// This rank's lock for a sequence of collectives that belong together (one sharded call):
    /// held while the sequence runs, so that two threads of one rank never interleave theirs.
    fn sequence_lock(&self) -> MutexGuard<'_, ()>;
}

/// The rows of a batch of `n` rows that `rank` of `size` evaluates: the contiguous block
/// `[rank n / size, (rank + 1) n / size)`. The blocks of the ranks tile `0..n` in order and
/// differ in length by at most one; a rank gets no rows when `n < size` and it is one of the
/// `size - n` ranks left over.
///
/// ```
/// use diffinv_mpi::shard_range;
/// assert_eq!(shard_range(10, 0, 3), 0..3);
/// assert_eq!(shard_range(10, 1, 3), 3..6);
/// assert_eq!(shard_range(10, 2, 3), 6..10);
/// assert_eq!(shard_range(2, 0, 4), 0..0); // fewer rows than ranks: some get none
/// assert_eq!(shard_range(2, 1, 4), 0..1);
/// ```
pub fn shard_range(n: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1) as u128;
    let at = |r: u128| ((r * n as u128) / size) as usize;
    let (a, b) = (at(rank as u128), at(rank as u128 + 1));
    if a == b {
        0..0
    } else {
        a..b
    }
}

/// A rank that failed where every rank had to succeed ([`agree`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rank {rank}: {message}")]
pub struct RankFailure {
    /// The lowest rank that failed.
    pub rank: usize,
    /// Its message.
    pub message: String,
}

/// A collective "did everyone succeed?": `Ok` on every rank when `mine` is `Ok` on every rank,
/// else the same `Err` on every rank, naming the lowest rank that failed and its message. Use
/// it after any step that can fail on one rank alone (reading a file, starting worker
/// processes), so that no rank goes on into a collective that the failed rank never enters.
pub fn agree(comm: &dyn Collective, mine: Result<(), String>) -> Result<(), RankFailure> {
    let msg = match &mine {
        Ok(()) => Vec::new(),
        Err(m) => m.as_bytes().to_vec(),
    };
    let head = comm.all_gather_u64(&[u64::from(mine.is_err()), msg.len() as u64]);
    let failed: Vec<usize> = (0..comm.size()).filter(|&r| head[2 * r] != 0).collect();
    let Some(&first) = failed.first() else {
        return Ok(());
    };
    let counts: Vec<usize> = (0..comm.size()).map(|r| head[2 * r + 1] as usize).collect();
    let all = comm.all_gather_bytes(&msg, &counts);
    let start: usize = counts[..first].iter().sum();
    let message = String::from_utf8_lossy(&all[start..start + counts[first]]).into_owned();
    Err(RankFailure {
        rank: first,
        message,
    })
}

/// Whether `flag` is set on any rank (a collective logical or).
pub fn any(comm: &dyn Collective, flag: bool) -> bool {
    comm.all_gather_u64(&[u64::from(flag)]).iter().any(|&v| v != 0)
}

/// `size` ranks as threads of one process: [`ThreadGroup::new`] returns one communicator per
/// rank; run each rank's code on its own thread. For tests of code written against
/// [`Collective`] (it behaves as MPI does, bit for bit, for the operations of the trait) and for
/// trying a sharded run without MPI.
///
/// A rank that panics or stops calling leaves the others waiting (as with MPI).
#[derive(Debug)]
pub struct ThreadGroup;

/// One rank of a [`ThreadGroup`].
#[derive(Debug, Clone)]
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
    sequence: Arc<Mutex<()>>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// Communicators for ranks `0..size` (`size >= 1`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: usize) -> Vec<ThreadComm> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            slots: Mutex::new(vec![Vec::new(); size]),
            barrier: Barrier::new(size),
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                shared: shared.clone(),
                sequence: Arc::new(Mutex::new(())),
            })
            .collect()
    }
}

impl ThreadComm {
    /// Every rank's bytes, in rank order.
    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let lock = || self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        lock()[self.rank] = mine;
        self.shared.barrier.wait();
        let all = lock().clone();
        // Nobody writes the next round's slot before everyone has read this one.
        self.shared.barrier.wait();
        all
    }
}

impl Collective for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_gather_u64(&self, mine: &[u64]) -> Vec<u64> {
        let bytes = mine.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.exchange(bytes)
            .concat()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    }
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Vec<f32> {
        debug_assert_eq!(counts.get(self.rank), Some(&mine.len()));
        let bytes = mine.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.exchange(bytes)
            .concat()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
    fn all_gather_bytes(&self, mine: &[u8], counts: &[usize]) -> Vec<u8> {
        debug_assert_eq!(counts.get(self.rank), Some(&mine.len()));
        self.exchange(mine.to_vec()).concat()
    }
    fn sequence_lock(&self) -> MutexGuard<'_, ()> {
        self.sequence.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_batch_in_order() {
        for n in 0..40 {
            for size in 1..9 {
                let mut next = 0;
                for r in 0..size {
                    let s = shard_range(n, r, size);
                    if !s.is_empty() {
                        assert_eq!(s.start, next, "n {n} size {size} rank {r}");
                        next = s.end;
                    }
                    assert!(s.len() <= n.div_ceil(size));
                    assert!(s.len() + 1 >= n / size);
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn agree_names_the_lowest_failed_rank_everywhere() {
        let comms = ThreadGroup::new(3);
        let out: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let first = agree(c, Ok(()));
                        let mine = if c.rank() >= 1 {
                            Err(format!("boom {}", c.rank()))
                        } else {
                            Ok(())
                        };
                        (first, agree(c, mine), any(c, c.rank() == 2), any(c, false))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (first, second, a, b) in out {
            assert_eq!(first, Ok(()));
            assert_eq!(
                second,
                Err(RankFailure {
                    rank: 1,
                    message: "boom 1".into()
                })
            );
            assert!(a);
            assert!(!b);
        }
    }
}
