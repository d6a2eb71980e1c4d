//! Robustness of long runs (issue 5, section 3): the failure policy of
//! `Evaluator::forward_robust` (a failed particle never aborts a run and is counted), and
//! checkpoint/resume through `Runner::with_checkpoint` (a killed run resumes bit-identically).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood};
use diffinv_priors::{Gaussian, GaussianPrior};
use diffinv_solvers::*;
use ndarray::{array, Array1, Array2, ArrayView2};

fn prior(d: usize) -> GaussianPrior {
    GaussianPrior::new(Gaussian::isotropic(Array1::zeros(d), 1.0).unwrap())
}

/// `G(x) = (x0 + x1, x2 - x3^3 / 10)`, NaN for every row whose first coordinate exceeds
/// `threshold` (a "diverging simulation"); counts the NaN rows it returns.
struct Flaky {
    threshold: f32,
    /// Fail rows by a hash of their first value instead (about 1 row in 8, wherever the
    /// particles are), so that no block of candidates fails as a whole by chance.
    hashed: bool,
    nan_rows: AtomicU64,
}

impl Flaky {
    fn fails(&self, v: f32) -> bool {
        if self.hashed {
            (v.to_bits().wrapping_mul(0x9E37_79B1) >> 29) == 0
        } else {
            v > self.threshold
        }
    }
}

impl ForwardModel for Flaky {
    fn input_shape(&self) -> Vec<usize> {
        vec![4]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![2]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        let mut y = Array2::zeros((x.nrows(), 2));
        for (r, row) in x.outer_iter().enumerate() {
            if self.fails(row[0]) {
                y[[r, 0]] = f32::NAN;
                y[[r, 1]] = f32::NAN;
                self.nan_rows.fetch_add(1, Ordering::Relaxed);
            } else {
                y[[r, 0]] = row[0] + row[1];
                y[[r, 1]] = row[2] - row[3].powi(3) / 10.0;
            }
        }
        Ok(y)
    }
}

#[test]
fn forward_robust_gives_failed_rows_the_survivors_mean_and_counts_them() {
    let p = prior(4);
    let f = Flaky {
        threshold: 1.0,
        hashed: false,
        nan_rows: AtomicU64::new(0),
    };
    let lik = GaussianLikelihood::new(array![0.0f32, 0.0], 1.0).unwrap();
    let problem = Problem::new(&p, &f, &lik).unwrap();
    let eval = Evaluator::new(problem);
    // Blocks of 3: rows 0..3 (row 1 fails), rows 3..6 (rows 3 and 5 fail).
    let mut x = Array2::<f32>::zeros((6, 4));
    for (r, v) in [0.1f32, 2.0, 0.3, 5.0, 0.5, 3.0].iter().enumerate() {
        x[[r, 0]] = *v;
        x[[r, 1]] = r as f32;
    }
    let out = eval.forward_robust(x.view(), 7, 3).unwrap();
    assert_eq!(out.failed, vec![1, 3, 5]);
    assert!(out.y.iter().all(|v| v.is_finite()));
    // A failed row carries the mean of its block's survivors (zero anomaly): G(row 0) =
    // (0.1, 0), G(row 2) = (2.3, 0) -> (1.2, 0); block 3..6 has one survivor, row 4.
    approx::assert_abs_diff_eq!(out.y[[1, 0]], 1.2, epsilon = 1e-6);
    assert_eq!(out.y.row(3), out.y.row(4));
    assert_eq!(out.y.row(5), out.y.row(4));
    let mut r = Array2::<f32>::ones((6, 2));
    out.zero_failed(&mut r);
    assert_eq!(r.column(0).to_vec(), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(eval.cost().failed, 3);
    assert_eq!(eval.cost().fwd_total, 6);
    // A block in which every row fails is an error naming the block's first row and the step.
    x[[4, 0]] = 9.0;
    match eval.forward_robust(x.view(), 7, 3) {
        Err(SolverError::ParticleFailed { particle, step, .. }) => {
            assert_eq!((particle, step), (3, 7))
        }
        other => panic!("expected ParticleFailed, got {other:?}"),
    }
}

/// EnKG, CPS, EKI, SCG, Forward-/Central-GSG and DPG run to the end on a forward model that diverges for a sizeable part of
/// the prior (x0 > 0.8: about 21% of N(0, 1) draws), report exactly as many failures as the
/// model produced NaN rows, and return finite samples.
#[test]
fn failing_particles_never_abort_a_run_and_are_counted() {
    let p = prior(4);
    let lik = GaussianLikelihood::new(array![0.5f32, -0.2], 0.2).unwrap();
    let solvers: Vec<Box<dyn DynSolver>> = vec![
        Box::new(
            Enkg::new(EnkgConfig {
                num_particles: 32,
                num_steps: 20,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Cps::new(CpsConfig {
                num_samples: 2,
                num_candidates: 16,
                num_steps: 20,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Eki::new(EkiConfig {
                num_particles: 32,
                ..EkiConfig::perturbed_observations()
            })
            .unwrap(),
        ),
        Box::new(
            Scg::new(ScgConfig {
                num_samples: 2,
                num_candidates: 8,
                num_steps: 20,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Gsg::new(GsgConfig {
                num_samples: 2,
                num_steps: 20,
                num_queries: 8,
                batch_size: 8,
                scheme: GsgScheme::Forward,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Gsg::new(GsgConfig {
                num_samples: 6,
                num_steps: 20,
                num_queries: 8,
                batch_size: 4,
                scheme: GsgScheme::Central,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Dpg::new(DpgConfig {
                num_samples: 2,
                num_steps: 20,
                num_mc_samples: 8,
                batch_size: 8,
                ..Default::default()
            })
            .unwrap(),
        ),
    ];
    for s in &solvers {
        let f = Flaky {
            threshold: 0.8,
            hashed: true,
            nan_rows: AtomicU64::new(0),
        };
        let problem = Problem::new(&p, &f, &lik).unwrap();
        let out = Runner::new(problem)
            .run(s.as_ref(), 3)
            .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        let produced = f.nan_rows.load(Ordering::Relaxed);
        assert!(produced > 0, "{}: the test model never failed", s.name());
        assert_eq!(out.cost.failed, produced, "{}", s.name());
        assert!(out.samples.iter().all(|v| v.is_finite()), "{}", s.name());
    }
}

/// A run stopped after k steps (a kill after its k-th checkpoint) and resumed from its
/// checkpoint ends bit-identically to an uninterrupted run, with the same cost counts.
#[test]
fn a_killed_run_resumes_bit_identically() {
    let p = prior(4);
    let f = FnForward::new(4, 2, |x: &[f32]| {
        vec![x[0] + x[1], x[2] - x[3].powi(3) / 10.0]
    });
    let lik = GaussianLikelihood::new(array![0.5f32, -0.2], 0.2).unwrap();
    let problem = Problem::new(&p, &f, &lik).unwrap();
    let solvers: Vec<Box<dyn DynSolver>> = vec![
        Box::new(
            Enkg::new(EnkgConfig {
                num_particles: 16,
                num_steps: 12,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Cps::new(CpsConfig {
                num_samples: 2,
                num_candidates: 8,
                num_steps: 12,
                ..Default::default()
            })
            .unwrap(),
        ),
        Box::new(
            Eki::new(EkiConfig {
                num_particles: 16,
                ..EkiConfig::perturbed_observations()
            })
            .unwrap(),
        ),
        // The adaptive update (the 4 unknowns are no random field: from prior draws).
        Box::new(
            Eki::new(EkiConfig {
                num_particles: 16,
                init: diffinv_solvers::EkiInit::Prior,
                ..Default::default()
            })
            .unwrap(),
        ),
    ];
    let dir = std::env::temp_dir().join(format!("diffinv-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for s in &solvers {
        let full = Runner::new(problem).run(s.as_ref(), 11).unwrap();
        // Every step, and a long interval (only the early stop writes the checkpoint).
        for (k, interval) in [(1usize, 0u64), (5, 0), (5, 3600)] {
            let ckpt = dir.join(format!("{}-{k}-{interval}.json", s.name()));
            let _ = std::fs::remove_file(&ckpt);
            let stopped = Runner::new(problem)
                .with_checkpoint(&ckpt)
                .with_checkpoint_interval(std::time::Duration::from_secs(interval))
                .stop_after(k)
                .run_partial(s.as_ref(), 11)
                .unwrap();
            assert!(stopped.is_none(), "{} stopped after {k} steps", s.name());
            let saved = Checkpoint::load(&ckpt).unwrap();
            assert_eq!(saved.step, k);
            // The "killed" runner is dropped; a fresh one resumes from the file.
            let resumed = Runner::new(problem)
                .with_checkpoint(&ckpt)
                .run(s.as_ref(), 11)
                .unwrap();
            assert_eq!(
                resumed.samples,
                full.samples,
                "{} resumed after {k} steps",
                s.name()
            );
            assert_eq!(resumed.log, full.log);
            let (a, b) = (resumed.cost, full.cost);
            assert_eq!(
                (a.fwd_total, a.fwd_seq, a.den_total, a.den_seq),
                (b.fwd_total, b.fwd_seq, b.den_total, b.den_seq)
            );
            // A checkpoint of another seed is refused with a clear message.
            let err = Runner::new(problem)
                .with_checkpoint(&ckpt)
                .run(s.as_ref(), 12)
                .unwrap_err();
            assert!(err.to_string().contains("seed"), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
