//! The method registry, walked: every method builds from its default configuration, runs two
//! steps on an exact Gaussian-mixture problem (which offers every capability), and refuses,
//! before any compute, a problem lacking a capability it requires. Checkpoints refuse another
//! run's configuration, naming the field.
#![allow(clippy::unwrap_used)]

use diffinv_operators::{
    FnForward, GaussianLikelihood, Likelihood, MatrixOperator, OperatorError,
};
use diffinv_priors::{Gaussian, GaussianMixture};
use diffinv_solvers::registry::{self, registry};
use diffinv_solvers::*;
use ndarray::{array, Array1, Array2, ArrayView2};
use serde_json::json;

/// Four dimensions (a 1 x 2 x 2 image for TV), two modes, A: 3 x 4, sigma_y = 0.1.
fn gmm() -> GaussianMixture {
    GaussianMixture::new(
        &[0.3, 0.7],
        vec![
            Gaussian::isotropic(array![-1.0, 0.5, 0.0, 1.0], 0.5).unwrap(),
            Gaussian::isotropic(array![1.0, -0.5, 0.5, 0.0], 0.5).unwrap(),
        ],
    )
    .unwrap()
}

fn matrix() -> Array2<f32> {
    array![[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, -0.5, 0.0], [0.0, 0.0, 0.5, 1.0]]
}

/// A least-squares likelihood that does not declare itself Gaussian (what a user's custom
/// likelihood looks like to the solvers).
struct Undeclared(GaussianLikelihood);

impl Likelihood for Undeclared {
    fn measurement_dim(&self) -> usize {
        self.0.measurement_dim()
    }
    fn nll(&self, y: ArrayView2<'_, f32>) -> Result<Array1<f32>, OperatorError> {
        self.0.nll(y)
    }
    fn grad(&self, y: ArrayView2<'_, f32>) -> Result<Array2<f32>, OperatorError> {
        self.0.grad(y)
    }
    fn residual(&self, y: ArrayView2<'_, f32>) -> Result<Option<Array2<f32>>, OperatorError> {
        self.0.residual(y)
    }
}

/// Small sizes so that two steps of every method take milliseconds; TV needs the image shape;
/// EKI's random-field start has no mode on a 2 x 2 grid (besides the mean and the Nyquist ones),
/// so it starts from prior draws.
fn overrides(name: &str) -> serde_json::Value {
    match name {
        "TV" => json!({ "image_shape": [1, 2, 2] }),
        "EKI" => json!({ "init": "prior" }),
        _ => json!({}),
    }
}

#[test]
fn every_method_builds_from_its_defaults_and_runs_two_steps() {
    let prior = gmm();
    let op = MatrixOperator::new(matrix()).unwrap();
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let problem = Problem::new(&prior, &op, &lik).unwrap();
    assert_eq!(
        problem.capabilities(),
        vec![Capability::Gradient, Capability::Linear, Capability::GaussianLikelihood]
    );
    assert!(registry().len() >= 20);
    for method in registry() {
        let solver = method.build(&overrides(method.name)).unwrap();
        assert_eq!(solver.requires(), method.requires(), "{}", method.name);
        method.supports(&problem).unwrap();
        let mut log = StepLog::default();
        let out = Runner::new(problem)
            .observe(&mut log)
            .stop_after(2)
            .run_partial(solver.as_ref(), 0)
            .unwrap_or_else(|e| panic!("{}: {e}", method.name));
        assert!(out.is_none() || solver.num_steps() <= 2, "{}", method.name);
        assert_eq!(log.entries.len(), 2.min(solver.num_steps()), "{}", method.name);
        for (info, _cost, spread) in &log.entries {
            assert!(spread.is_finite(), "{} step {}", method.name, info.step);
        }
    }
}

#[test]
fn methods_refuse_problems_lacking_a_required_capability_before_any_compute() {
    let prior = gmm();
    let a = matrix();
    let black = FnForward::new(4, 3, move |x: &[f32]| {
        let x = Array1::from(x.to_vec());
        a.dot(&x).to_vec()
    });
    let gauss = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let undeclared = Undeclared(gauss.clone());
    let op = MatrixOperator::new(matrix()).unwrap();
    let black_box = Problem::new(&prior, &black, &gauss).unwrap();
    assert!(black_box.capabilities().iter().all(|c| *c == Capability::GaussianLikelihood));
    let no_gaussian = Problem::new(&prior, &op, &undeclared).unwrap();
    let mut refused = 0;
    for method in registry() {
        for (problem, lacking) in [
            (black_box, [Capability::Gradient, Capability::Linear].as_slice()),
            (no_gaussian, [Capability::GaussianLikelihood].as_slice()),
        ] {
            let needs: Vec<Capability> = method
                .requires()
                .iter()
                .copied()
                .filter(|c| lacking.contains(c))
                .collect();
            let solver = method.build(&overrides(method.name)).unwrap();
            let mut log = StepLog::default();
            let run = Runner::new(problem).observe(&mut log).stop_after(2).run_partial(solver.as_ref(), 0);
            if needs.is_empty() {
                assert!(run.is_ok(), "{}: {:?}", method.name, run.err());
                assert!(method.supports(&problem).is_ok());
                continue;
            }
            refused += 1;
            let msg = match run {
                Err(SolverError::Problem(msg)) => msg,
                other => panic!("{} should refuse: {other:?}", method.name),
            };
            assert!(msg.starts_with(method.name), "{msg}");
            assert!(msg.contains("needs"), "{msg}");
            assert!(log.entries.is_empty(), "{} stepped before refusing", method.name);
            let verdict = method.supports(&problem).unwrap_err().to_string();
            let missing = msg.split(" needs ").nth(1).unwrap();
            assert!(verdict.ends_with(missing), "{verdict} vs {msg}");
        }
    }
    assert!(refused >= 14, "only {refused} refusals");
    let verdicts = registry::supported(&black_box);
    assert!(verdicts.iter().any(|(n, v)| *n == "EnKG" && v.is_ok()));
    assert!(verdicts.iter().any(|(n, v)| *n == "DPS" && v.is_err()));
}

#[test]
fn a_checkpoint_refuses_another_configuration_naming_the_field() {
    let prior = gmm();
    let op = MatrixOperator::new(matrix()).unwrap();
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let problem = Problem::new(&prior, &op, &lik).unwrap();
    let dir = std::env::temp_dir().join(format!("diffinv-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enkg.ckpt");
    let _ = std::fs::remove_file(&path);
    let enkg = |n: usize| {
        registry::build("EnKG", &json!({ "num_particles": n, "num_steps": 6 })).unwrap()
    };
    let first = Runner::new(problem)
        .with_checkpoint(&path)
        .stop_after(3)
        .run_partial(enkg(8).as_ref(), 1)
        .unwrap();
    assert!(first.is_none());
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"DIFFINV-CKPT-v2\n"));
    // Another configuration, seed, solver or problem: refused with the field named.
    let err = Runner::new(problem)
        .with_checkpoint(&path)
        .run(enkg(16).as_ref(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.num_particles: checkpoint 8, this run 16"), "{err}");
    let err = Runner::new(problem)
        .with_checkpoint(&path)
        .run(enkg(8).as_ref(), 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("seed: checkpoint 1, this run 2"), "{err}");
    let cps = registry::build("CPS", &json!({})).unwrap();
    let err = Runner::new(problem).with_checkpoint(&path).run(cps.as_ref(), 1).unwrap_err().to_string();
    assert!(err.contains("solver: checkpoint \"EnKG\", this run \"CPS\""), "{err}");
    let op2 = MatrixOperator::new(matrix().slice(ndarray::s![..2, ..]).to_owned()).unwrap();
    let lik2 = GaussianLikelihood::new(array![0.3f32, -0.2], 0.1).unwrap();
    let other = Problem::new(&prior, &op2, &lik2).unwrap();
    let err = Runner::new(other).with_checkpoint(&path).run(enkg(8).as_ref(), 1).unwrap_err().to_string();
    assert!(err.contains("problem shapes"), "{err}");
    // The same run resumes and ends where an uninterrupted one does.
    let resumed = Runner::new(problem).with_checkpoint(&path).run(enkg(8).as_ref(), 1).unwrap();
    let straight = Runner::new(problem).run(enkg(8).as_ref(), 1).unwrap();
    assert_eq!(resumed.samples, straight.samples);
    // A truncated or foreign file is one clear error.
    std::fs::write(&path, &bytes[..20]).unwrap();
    let err = Runner::new(problem).with_checkpoint(&path).run(enkg(8).as_ref(), 1).unwrap_err().to_string();
    assert!(err.contains("not a diffinv checkpoint"), "{err}");
    std::fs::write(&path, b"DIFFINV-CKPT-v2\n\xff\xff\xff\xff\xff\xff\xff\x7f").unwrap();
    let err = Runner::new(problem).with_checkpoint(&path).run(enkg(8).as_ref(), 1).unwrap_err().to_string();
    assert!(err.contains("truncated header"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cancelled_run_stops_saves_and_resumes_to_the_same_samples() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let prior = gmm();
    let a = matrix();
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    // A closure model that "receives Ctrl-C" during its 4th batch (the flag is set, the batch
    // still finishes, as an in-process model's does).
    let (f2, c2, a2) = (flag.clone(), calls.clone(), a.clone());
    let g = FnForward::new(4, 3, move |x: &[f32]| {
        if c2.fetch_add(1, Ordering::SeqCst) == 20 {
            f2.store(true, Ordering::SeqCst);
        }
        (0..3).map(|i| (0..4).map(|k| a2[[i, k]] * x[k]).sum()).collect()
    });
    let problem = Problem::new(&prior, &g, &lik).unwrap();
    let dir = std::env::temp_dir().join(format!("diffinv-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enkg.ckpt");
    let _ = std::fs::remove_file(&path);
    let enkg = registry::build("EnKG", &json!({ "num_particles": 8, "num_steps": 6 })).unwrap();
    let err = Runner::new(problem)
        .with_checkpoint(&path)
        .with_cancel(flag.clone())
        .run(enkg.as_ref(), 3)
        .unwrap_err();
    let SolverError::Interrupted { step } = err else { panic!("{err}") };
    assert!(step > 0 && step < 6, "{step}");
    assert_eq!(Checkpoint::load(&path).unwrap().step, step);
    flag.store(false, Ordering::SeqCst);
    let resumed = Runner::new(problem).with_checkpoint(&path).run(enkg.as_ref(), 3).unwrap();
    let straight = Runner::new(problem).run(enkg.as_ref(), 3).unwrap();
    assert_eq!(resumed.samples, straight.samples);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `with_checkpoint_writer(false)` (the ranks of an MPI job but one): the runner resumes from
/// the checkpoint another runner wrote, and never writes it, neither after a step, nor when
/// stopped or cancelled.
#[test]
fn a_runner_that_does_not_write_checkpoints_still_resumes_from_one() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let prior = gmm();
    let op = MatrixOperator::new(matrix()).unwrap();
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let problem = Problem::new(&prior, &op, &lik).unwrap();
    let dir = std::env::temp_dir().join(format!("diffinv-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enkg.ckpt");
    let enkg = registry::build("EnKG", &json!({ "num_particles": 8, "num_steps": 6 })).unwrap();
    // A reader alone writes nothing: not after its steps, not when stopped, not when cancelled.
    let stopped = Runner::new(problem)
        .with_checkpoint(&path)
        .with_checkpoint_writer(false)
        .stop_after(2)
        .run_partial(enkg.as_ref(), 5)
        .unwrap();
    assert!(stopped.is_none());
    let cancelled = Runner::new(problem)
        .with_checkpoint(&path)
        .with_checkpoint_writer(false)
        .with_cancel(Arc::new(AtomicBool::new(true)))
        .run(enkg.as_ref(), 5);
    assert!(matches!(cancelled, Err(SolverError::Interrupted { step: 0 })));
    assert!(!path.exists());
    // The writer stops after 2 steps; a reader resumes from its file, leaves it as it was,
    // and ends with the samples of an uninterrupted run.
    let first = Runner::new(problem)
        .with_checkpoint(&path)
        .stop_after(2)
        .run_partial(enkg.as_ref(), 5)
        .unwrap();
    assert!(first.is_none());
    let saved = std::fs::read(&path).unwrap();
    let resumed = Runner::new(problem)
        .with_checkpoint(&path)
        .with_checkpoint_writer(false)
        .run(enkg.as_ref(), 5)
        .unwrap();
    assert_eq!(resumed.log.len(), 6);
    assert_eq!(std::fs::read(&path).unwrap(), saved);
    assert!(!dir.join("enkg.ckpt.tmp").exists());
    let straight = Runner::new(problem).run(enkg.as_ref(), 5).unwrap();
    assert_eq!(resumed.samples, straight.samples);
    std::fs::remove_dir_all(&dir).unwrap();
}
