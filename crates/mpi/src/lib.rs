//! # diffinv-mpi
//!
//! Ensembles across machines. The derivative-free solvers spend their time in batched forward
//! evaluations, one row per particle; this crate splits every such batch by rows over the ranks
//! of an MPI job and gathers the results, so each of `P` ranks does `1/P` of the forward
//! solves.
//!
//! The design is SPMD: every rank builds the same problem and steps the same solver with the
//! same seed (every random draw is keyed by seed, step and particle, so the ranks' states stay
//! identical bit for bit), and only the forward evaluations are divided. Nothing but the
//! measurements of each batch crosses the network; every rank ends with the same samples, equal
//! to a run without MPI. docs/distributed.md explains the choice and the costs.
//!
//! - [`ShardedForward`]: any [`ForwardModel`](diffinv_operators::ForwardModel) (built-in
//!   operators, closures, a worker pool on each rank) evaluated by the ranks together;
//!   [`ShardedDenoiser`] does the same for the prior (optional).
//! - [`AgreedCancel`]: a cancellation flag that changes at the same step on every rank.
//! - [`Collective`]: the few collectives this needs; [`MpiComm`] (feature `mpi`) implements it
//!   on MPI, [`ThreadGroup`] on threads of one process (tests, trying it without MPI).
//! - [`MpiWorld`] (feature `mpi`): MPI's start, the job's ranks, and ending a job together.
//!
//! With MPI, on each rank (`mpirun -n 4 my_program`):
//!
//! ```ignore
//! let world = diffinv_mpi::MpiWorld::init()?;          // MPI_Init_thread(SERIALIZED)
//! let forward = ShardedForward::new(my_model, world.comm());
//! let problem = Problem::new(&prior, &forward, &likelihood)?;
//! let out = Runner::new(problem)
//!     .with_checkpoint("run.ckpt")
//!     .with_checkpoint_writer(world.rank() == 0)       // one rank writes, every rank resumes
//!     .run(&enkg, seed)?;                               // the same samples on every rank
//! ```

mod cancel;
mod collective;
#[cfg(feature = "mpi")]
mod mpi_backend;
mod shard;

pub use cancel::AgreedCancel;
pub use collective::{agree, any, shard_range, Collective, RankFailure, ThreadComm, ThreadGroup};
#[cfg(feature = "mpi")]
pub use mpi_backend::{MpiComm, MpiError, MpiWorld};
pub use shard::{batch_hash, ShardedDenoiser, ShardedForward};

/// The number of processes an MPI launcher started, read from the environment it gives its
/// processes (Open MPI's `OMPI_COMM_WORLD_SIZE`, the PMI `PMI_SIZE` of MPICH's Hydra and of
/// `srun --mpi=pmi2`, Slurm's `SLURM_STEP_NUM_TASKS` inside `srun`), or `None` when none of
/// them is set: the program was started directly. Needs no MPI library, so that a build
/// without MPI can refuse to run as one of many copies.
pub fn launcher_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
}

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`):
/// [`launcher_size`] is known, or `PMIX_RANK` / `PMI_RANK` is set. `DIFFINV_MPI=1` forces yes
/// and `DIFFINV_MPI=0` no.
pub fn launched() -> bool {
    match std::env::var("DIFFINV_MPI").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    launcher_size().is_some()
        || ["PMIX_RANK", "PMI_RANK"]
            .iter()
            .any(|k| std::env::var_os(k).is_some())
}
