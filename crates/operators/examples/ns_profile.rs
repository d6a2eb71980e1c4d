//! Where the Navier-Stokes solver spends its time: one 2-D real FFT pair and one full solve
//! per grid size, single sample, on the calling thread.
//!
//! `cargo run --release -p diffinv-operators --example ns_profile [RES [REPS]] [f64]`

use std::time::Instant;

use diffinv_operators::navier_stokes::dataset::{sample_rng, Split};
use diffinv_operators::navier_stokes::{GaussianRandomField, NsConfig, NsFloat, NsSolver};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Optional arguments: grid sizes and repetitions (`ns_profile 64 1` for a profiler).
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        vec![64usize, 128]
    } else {
        vec![args[0]]
    };
    let reps = args.get(1).copied().unwrap_or(5);
    let f64_mode = std::env::args().any(|a| a == "f64");
    for res in sizes {
        if f64_mode {
            profile::<f64>(res, reps)?;
        } else {
            profile::<f32>(res, reps)?;
        }
    }
    Ok(())
}

fn profile<T: NsFloat>(res: usize, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    let grf = GaussianRandomField::fno(res, res)?;
    let mut rng = sample_rng(0, Split::Test, 0);
    let w0: Vec<T> = grf.sample(&mut rng).iter().map(|&v| T::lit(v)).collect();
    let solver = NsSolver::<T>::new(res, res, NsConfig::default())?;
    let mut out = vec![T::zero(); res * res];
    let mut best = f64::INFINITY;
    let mut steps = 0;
    for _ in 0..reps {
        let t0 = Instant::now();
        let st = solver.solve_one(&w0, &mut out)?;
        best = best.min(t0.elapsed().as_secs_f64());
        steps = st.steps;
    }
    println!(
        "{res}x{res} {}: {:.2} ms/sample, {steps} steps, {:.1} us/step",
        T::NAME,
        best * 1e3,
        best * 1e6 / steps as f64
    );
    Ok(())
}
