//! Wall time of the benchmark's configuration without PyTorch: a batch of 16 GRF fields, the
//! batch-minimum CFL step, `solve_batch` on the rayon pool (set `RAYON_NUM_THREADS`), best of
//! the repetitions, ms per sample. The fields are the bench's (`cargo xtask bench ns`: GRF
//! samples of seed 2024, test stream `i`); with `NS_BATCH_NPY=PATH` they are also written to
//! `PATH` as float64 `.npy` (for `xtask/python/ns_reference.py bench --input PATH`).
//!
//! `cargo run --release -p diffinv-operators --example ns_batch [RES [REPS [BATCH]]] [f64]`

use std::time::Instant;

use diffinv_operators::navier_stokes::dataset::{sample_rng, write_npy_f64, Split};
use diffinv_operators::navier_stokes::{
    GaussianRandomField, NsConfig, NsFloat, NsSolver, TimeStep,
};
use ndarray::Array3;

fn run<T: NsFloat>(
    res: usize,
    reps: usize,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let grf = GaussianRandomField::fno(res, res)?;
    let fields: Vec<f64> = (0..batch)
        .flat_map(|i| grf.sample(&mut sample_rng(2024, Split::Test, i as u64)))
        .collect();
    if let Ok(path) = std::env::var("NS_BATCH_NPY") {
        write_npy_f64(std::path::Path::new(&path), &[batch, res, res], &fields)?;
    }
    let w0: Vec<T> = fields.iter().map(|&v| T::lit(v)).collect();
    let x = Array3::from_shape_vec((batch, res, res), w0)?;
    let cfg = NsConfig {
        time_step: TimeStep::AdaptiveBatchMin,
        ..NsConfig::default()
    };
    let solver = NsSolver::<T>::new(res, res, cfg)?;
    let mut best = f64::INFINITY;
    let mut steps = 0;
    for _ in 0..reps {
        let t0 = Instant::now();
        let (_, st) = solver.solve_batch(x.view())?;
        best = best.min(t0.elapsed().as_secs_f64());
        steps = st
            .first()
            .and_then(|s| s.as_ref().ok())
            .map_or(0, |s| s.steps);
    }
    println!(
        "{res}x{res} {} batch {batch}: {:.2} ms/sample, {steps} steps, {} threads",
        T::NAME,
        best * 1e3 / batch as f64,
        rayon::current_num_threads()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let res = args.first().copied().unwrap_or(64);
    let reps = args.get(1).copied().unwrap_or(3);
    let batch = args.get(2).copied().unwrap_or(16);
    if std::env::args().any(|a| a == "f64") {
        run::<f64>(res, reps, batch)
    } else {
        run::<f32>(res, reps, batch)
    }
}
