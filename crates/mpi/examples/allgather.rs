//! The MPI all-gather that a sharded batch costs, measured: `mpirun -n P allgather`. For each
//! total size (the `N x m` float32 outputs of one forward batch), every rank contributes its
//! share and all ranks receive the whole batch, through [`Collective::all_gather_f32`] as
//! `ShardedForward` calls it; also the fixed 8-value header gather every sharded call makes.
//! Rank 0 prints one JSON line: `{"ranks", "header_us", "sizes": [{"bytes", "seconds",
//! "gb_per_s"}]}` with the best of the repetitions; `gb_per_s` is the bytes a rank receives
//! from the others per second, `(P - 1) / P * bytes / seconds`.

use std::time::Instant;

use diffinv_mpi::{shard_range, MpiWorld};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let world = MpiWorld::init()?;
    let comm = world.comm();
    let (rank, size) = (comm.rank(), comm.size());
    let best_of = |reps: usize, f: &mut dyn FnMut()| {
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            comm.all_gather_u64(&[0]);
            let t = Instant::now();
            f();
            // Every rank's time is the slowest rank's: take the maximum.
            let mine = t.elapsed().as_secs_f64();
            let all = comm.all_gather_u64(&[mine.to_bits()]);
            let slowest = all.iter().map(|b| f64::from_bits(*b)).fold(0.0, f64::max);
            best = best.min(slowest);
        }
        best
    };
    let header = best_of(200, &mut || {
        comm.all_gather_u64(&[1, 2, 3, 4, 5, 6, 7, 8]);
    });
    let mut sizes = Vec::new();
    for total_floats in [256usize, 4096, 65_536, 1 << 20, 1 << 22, 1 << 23] {
        let counts: Vec<usize> = (0..size).map(|r| shard_range(total_floats, r, size).len()).collect();
        let mine = vec![1.0f32; counts[rank]];
        let reps = if total_floats >= 1 << 22 { 5 } else { 20 };
        let t = best_of(reps, &mut || {
            std::hint::black_box(comm.all_gather_f32(&mine, &counts));
        });
        let bytes = 4 * total_floats;
        let moved = bytes as f64 * (size as f64 - 1.0) / size as f64;
        sizes.push(format!(
            "{{\"bytes\": {bytes}, \"seconds\": {t:.6e}, \"gb_per_s\": {:.3}}}",
            moved / t / 1e9
        ));
    }
    if rank == 0 {
        println!(
            "{{\"ranks\": {size}, \"header_us\": {:.2}, \"sizes\": [{}]}}",
            header * 1e6,
            sizes.join(", ")
        );
    }
    Ok(())
}
