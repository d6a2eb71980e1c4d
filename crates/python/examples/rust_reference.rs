//! The Rust side of the Python package's determinism test: runs a few methods of the registry
//! on small analytic problems through the Rust library alone and writes their samples to an
//! `.npz`. `crates/python/tests/test_determinism.py` runs the same problems through
//! `diffinv.solve` with a numpy callable as the forward model and checks that the samples are
//! bit-identical.
//!
//! The forward model is elementwise (products and sums, no reductions), so numpy's float32
//! arithmetic and Rust's give the same bits:
//! `G(x) = [x0 + 0.1 x1 x1 x1, x1 - x2, x0 x2]`.
//!
//! ```sh
//! cargo run -p diffinv-python --example rust_reference -- out.npz
//! ```

use std::path::PathBuf;

use diffinv_operators::{npy, FnForward, GaussianLikelihood};
use diffinv_priors::{Denoiser, Gaussian, GaussianMixture, GaussianPrior};
use diffinv_solvers::{registry, Problem, Runner};
use ndarray::array;
use serde_json::json;

fn forward(x: &[f32]) -> Vec<f32> {
    vec![x[0] + 0.1 * x[1] * x[1] * x[1], x[1] - x[2], x[0] * x[2]]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: rust_reference OUT.npz")?;
    let gmm = GaussianMixture::new(
        &[0.3, 0.7],
        vec![
            Gaussian::isotropic(array![-2.0, 0.0, 1.0], 0.25)?,
            Gaussian::isotropic(array![2.0, 1.0, 0.0], 0.25)?,
        ],
    )?;
    let gauss = GaussianPrior::new(Gaussian::diagonal(
        array![0.5, -1.0, 0.0],
        array![1.0, 2.0, 0.5],
    )?);
    let g = FnForward::new(3, 3, forward);
    let lik = GaussianLikelihood::new(array![1.0f32, 0.5, -0.3], 0.2)?;
    let seed = 7;
    let runs: [(&str, &str, &dyn Denoiser, serde_json::Value); 3] = [
        ("enkg_gmm", "EnKG", &gmm, json!({"num_particles": 64, "num_steps": 20})),
        ("cps_gmm", "CPS", &gmm, json!({"num_samples": 8, "num_candidates": 16, "num_steps": 20})),
        ("eki_gaussian", "EKI-PO", &gauss, json!({"num_particles": 32, "num_iterations": 10})),
    ];
    let mut arrays = Vec::new();
    for (key, method, prior, config) in runs {
        let solver = registry::build(method, &config)?;
        let problem = Problem::new(prior, &g, &lik)?;
        let samples = Runner::new(problem).run(solver.as_ref(), seed)?.samples;
        let shape = samples.shape().to_vec();
        arrays.push((key, shape, samples.iter().copied().collect::<Vec<f32>>()));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = arrays
        .iter()
        .map(|(k, s, d)| (*k, s.as_slice(), d.as_slice()))
        .collect();
    npy::save_npz_f32(&out, &refs)?;
    println!("wrote {}", out.display());
    Ok(())
}
