//! The solver's own cost: wall time of EnKG and CPS on Gaussian-mixture problems of the gmm
//! table's sizes (25 components, d = 8, 80, 800, a 2 x d matrix), split into the time inside the
//! prior, inside the forward model, and the rest (the solver's own work).
//!
//! `cargo run --release -p diffinv-solvers --example overhead [-- METHOD [D [REPEATS]]]`: with
//! arguments, only that method (EnKG or CPS) and dimension, run REPEATS times (for profiling).

use diffinv_operators::{GaussianLikelihood, MatrixOperator};
use diffinv_priors::GaussianMixture;
use diffinv_solvers::{registry, Problem, Result, Runner};
use ndarray::{Array1, Array2};
use serde_json::json;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only_method = args.first().cloned();
    let only_d: Option<usize> = args.get(1).and_then(|s| s.parse().ok());
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    println!("| method | d | seconds | in prior | in forward | own work |");
    println!("|---|---|---|---|---|---|");
    for d in [8usize, 80, 800] {
        if only_d.is_some_and(|o| o != d) {
            continue;
        }
        let weights: Vec<f64> = (0..25).map(|i| 1.0 + (i % 5) as f64).collect();
        let prior = GaussianMixture::mcgdiff_grid(d, &weights)
            .map_err(|e| diffinv_solvers::SolverError::Problem(e.to_string()))?;
        let a = Array2::from_shape_fn((2, d), |(i, j)| if j % 2 == i { 1.0 } else { 0.1 });
        let op = MatrixOperator::new(a)
            .map_err(|e| diffinv_solvers::SolverError::Problem(e.to_string()))?;
        let lik = GaussianLikelihood::new(Array1::from(vec![4.0f32, -4.0]), 0.5)
            .map_err(|e| diffinv_solvers::SolverError::Problem(e.to_string()))?;
        let problem = Problem::new(&prior, &op, &lik)?;
        for (name, cfg) in [
            ("EnKG", json!({"num_particles": 256, "num_steps": 30})),
            (
                "CPS",
                json!({"num_samples": 256, "num_candidates": 16, "num_steps": 60}),
            ),
        ] {
            if only_method.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let solver = registry::build(name, &cfg)?;
            for _ in 0..repeats {
                let c = Runner::new(problem).run(solver.as_ref(), 0)?.cost;
                println!(
                    "| {name} | {d} | {:.3} | {:.1}% | {:.1}% | {:.1}% |",
                    c.seconds,
                    100.0 * c.den_seconds / c.seconds,
                    100.0 * c.fwd_seconds / c.seconds,
                    100.0 * c.overhead_fraction()
                );
            }
        }
    }
    Ok(())
}
