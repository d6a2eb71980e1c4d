//! The sharding on ranks run as threads ([`ThreadGroup`]): bit-identity with the unsharded model
//! for any rank count, failures and errors on every rank, ranks out of step, capabilities, the
//! prior, and whole solver runs with an agreed cancellation.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use diffinv_mpi::{AgreedCancel, Collective, ShardedDenoiser, ShardedForward, ThreadGroup};
use diffinv_operators::{
    BatchOutput, FnForward, ForwardModel, GaussianLikelihood, MatrixOperator, OperatorError,
};
use diffinv_priors::{Denoiser, Gaussian, GaussianMixture, GaussianPrior};
use diffinv_solvers::{registry, Problem, Runner, SolverError};
use ndarray::{array, Array2, ArrayView2};
use serde_json::json;

/// Run `f(comm)` on `size` ranks (threads); the results in rank order.
fn on_ranks<T: Send>(size: usize, f: impl Fn(Arc<dyn Collective>) -> T + Sync) -> Vec<T> {
    let comms = ThreadGroup::new(size);
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let f = &f;
                s.spawn(move || f(Arc::new(c)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn batch(n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(i, j)| ((i * 31 + j * 7) % 17) as f32 * 0.37 - 2.0)
}

/// A model whose row `i` fails when its first value is below -1.9 (rows 0, 17*k), else a
/// nonlinear function of the row.
fn model(d: usize) -> impl ForwardModel {
    FnForward::fallible(d, 3, |x: &[f32]| {
        if x[0] < -1.9 {
            Err(format!("diverged at {}", x[0]))
        } else {
            Ok(vec![x.iter().map(|v| v.sin()).sum(), x[0] * x[1], x.iter().product()])
        }
    })
}

#[test]
fn sharded_batches_equal_the_model_alone_for_any_rank_count() {
    for n in [0usize, 1, 2, 5, 40] {
        let x = batch(n, 4);
        let alone = model(4).forward_partial(x.view()).unwrap();
        for size in 1..=4 {
            let outs = on_ranks(size, |c| {
                ShardedForward::new(model(4), c).forward_partial(x.view()).unwrap()
            });
            for out in outs {
                assert_eq!(out.y.dim(), alone.y.dim());
                // NaN rows compare by bits.
                let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out.y), bits(&alone.y), "n {n} size {size}");
                let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
                let want: Vec<usize> = alone.failures.iter().map(|f| f.row).collect();
                assert_eq!(rows, want, "n {n} size {size}");
                for f in &out.failures {
                    assert!(f.reason.contains("diverged at"), "{}", f.reason);
                    assert_eq!(f.reason.starts_with("rank "), size > 1, "{}", f.reason);
                }
            }
        }
    }
}

#[test]
fn forward_returns_the_first_failed_row_of_the_batch_on_every_rank() {
    let x = batch(40, 4);
    let want = model(4).forward(x.view()).unwrap_err();
    for size in 1..=3 {
        for e in on_ranks(size, |c| ShardedForward::new(model(4), c).forward(x.view()).unwrap_err()) {
            match (&e, &want) {
                (
                    OperatorError::SampleFailed { row, .. },
                    OperatorError::SampleFailed { row: w, .. },
                ) => assert_eq!(row, w),
                _ => panic!("{e}"),
            }
        }
    }
    // Without failures `forward` is the plain batch.
    let ok = FnForward::new(4, 1, |x: &[f32]| vec![x[0] + x[3]]);
    let y = ok.forward(x.view()).unwrap();
    for got in on_ranks(3, |c| {
        ShardedForward::new(FnForward::new(4, 1, |x: &[f32]| vec![x[0] + x[3]]), c)
            .forward(x.view())
            .unwrap()
    }) {
        assert_eq!(got, y);
    }
}

/// A model that fails in a rank-dependent way (a worker pool that stopped on one rank only).
struct RankModel {
    rank: usize,
    fail_on: Vec<usize>,
    error: fn(usize) -> OperatorError,
}

impl ForwardModel for RankModel {
    fn input_shape(&self) -> Vec<usize> {
        vec![2]
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![1]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<Array2<f32>> {
        Ok(self.forward_partial(x)?.y)
    }
    fn forward_partial(&self, x: ArrayView2<'_, f32>) -> diffinv_operators::Result<BatchOutput> {
        if self.fail_on.contains(&self.rank) {
            return Err((self.error)(self.rank));
        }
        Ok(BatchOutput {
            y: x.map_axis(ndarray::Axis(1), |r| r.sum()).insert_axis(ndarray::Axis(1)),
            failures: Vec::new(),
        })
    }
}

#[test]
fn an_error_on_one_rank_is_the_same_error_on_every_rank() {
    let x = batch(9, 2);
    let stopped = |r: usize| OperatorError::Stopped(format!("pool of rank {r} gave up"));
    let outs = on_ranks(3, |c| {
        let m = RankModel { rank: c.rank(), fail_on: vec![1, 2], error: stopped };
        let f = ShardedForward::new(m, c);
        // The ranks go on calling after the error: nobody was left inside a collective.
        (f.forward_partial(x.view()).unwrap_err(), f.inner().rank)
    });
    for (e, _) in &outs {
        match e {
            OperatorError::Stopped(m) => assert_eq!(m, "rank 1: pool of rank 1 gave up"),
            e => panic!("{e}"),
        }
    }
    // An interruption on any rank wins over another rank's error.
    let outs = on_ranks(3, |c| {
        let error: fn(usize) -> OperatorError =
            |r| if r == 2 { OperatorError::Interrupted } else { OperatorError::Stopped("x".into()) };
        let m = RankModel { rank: c.rank(), fail_on: vec![0, 2], error };
        ShardedForward::new(m, c).forward_partial(x.view()).unwrap_err()
    });
    assert!(outs.iter().all(|e| matches!(e, OperatorError::Interrupted)));
    // A non-finite input row: the failed rank keeps its error with the batch's row; the others
    // are told which rank failed and why.
    let mut bad = batch(9, 2);
    bad[[7, 1]] = f32::NAN;
    let outs = on_ranks(3, |c| {
        let f = ShardedForward::new(MatrixOperator::new(array![[1.0f32, 2.0]]).unwrap(), c);
        f.forward(bad.view()).unwrap_err().to_string()
    });
    assert_eq!(outs[2], "non-finite value in forward input, row 7");
    for o in &outs[..2] {
        assert!(o.contains("rank 2: non-finite value in forward input, row 7"), "{o}");
    }
}

#[test]
fn ranks_with_different_inputs_or_calls_are_refused_on_every_rank() {
    let outs = on_ranks(2, |c| {
        let rank = c.rank();
        let mut x = batch(6, 4);
        if rank == 1 {
            x[[5, 3]] += 1.0;
        }
        let f = ShardedForward::new(model(4), c);
        let first = f.forward_partial(x.view()).unwrap_err().to_string();
        // Different sizes and different kinds of call are caught too.
        let y = batch(6 + rank, 4);
        let second = f.forward_partial(y.view()).unwrap_err().to_string();
        let z = batch(6, 4);
        let third = if rank == 0 {
            f.forward(z.view()).unwrap_err().to_string()
        } else {
            f.forward_partial(z.view()).unwrap_err().to_string()
        };
        (first, second, third)
    });
    for (a, b, c) in outs {
        assert!(a.contains("out of step") && a.contains("input hash"), "{a}");
        assert!(b.contains("of 6 rows") && b.contains("of 7 rows"), "{b}");
        assert!(c.contains("(forward of 6") && c.contains("(forward_partial of 6"), "{c}");
    }
    // With the input check off, only the sizes are compared.
    let outs = on_ranks(2, |c| {
        let mut x = batch(6, 4);
        x[[5, 3]] += c.rank() as f32;
        ShardedForward::new(model(4), c)
            .with_input_check(false)
            .forward_partial(x.view())
            .is_ok()
    });
    assert_eq!(outs, vec![true, true]);
}

#[test]
fn capabilities_pass_through_and_are_sharded() {
    let a = Array2::from_shape_fn((3, 5), |(i, j)| (i as f32 + 1.0) * 0.5 - j as f32 * 0.25);
    let op = MatrixOperator::new(a.clone()).unwrap();
    let x = batch(11, 5);
    let v = batch(11, 3);
    use diffinv_operators::{Differentiable, LinearOperator};
    for size in 1..=3 {
        for (fwd, adj, vjp) in on_ranks(size, |c| {
            let f = ShardedForward::new(MatrixOperator::new(a.clone()).unwrap(), c);
            let lin = f.as_linear().unwrap();
            let dif = f.as_differentiable().unwrap();
            (
                f.forward(x.view()).unwrap(),
                lin.adjoint(v.view()).unwrap(),
                dif.vjp(x.view(), v.view()).unwrap(),
            )
        }) {
            // A matrix product's rows are computed alike for any number of rows.
            assert_eq!(fwd, op.forward(x.view()).unwrap());
            assert_eq!(adj, op.adjoint(v.view()).unwrap());
            assert_eq!(vjp, op.vjp(x.view(), v.view()).unwrap());
        }
    }
    // A black box offers neither.
    let outs = on_ranks(1, |c| {
        let f = ShardedForward::new(model(4), c);
        (f.as_linear().is_none(), f.as_differentiable().is_none())
    });
    assert_eq!(outs, vec![(true, true)]);
}

#[test]
fn a_sharded_analytic_prior_is_bit_identical() {
    let prior = GaussianMixture::new(
        &[0.3, 0.7],
        vec![
            Gaussian::isotropic(array![-2.0, 0.0, 1.0], 1.0).unwrap(),
            Gaussian::isotropic(array![2.0, 0.0, -1.0], 0.5).unwrap(),
        ],
    )
    .unwrap();
    let x = batch(13, 3);
    let want = prior.denoise(x.view(), 0.7).unwrap();
    for size in 1..=4 {
        for got in on_ranks(size, |c| ShardedDenoiser::new(&prior, c).denoise(x.view(), 0.7).unwrap()) {
            assert_eq!(got, want);
        }
    }
}

/// A Navier-Stokes-like black box: a fallible nonlinear closure; EnKG and CPS on 1-4 ranks end
/// with the samples of the unsharded run, on every rank.
#[test]
fn enkg_and_cps_runs_are_bit_identical_for_any_rank_count() {
    let prior = GaussianPrior::new(Gaussian::isotropic(ndarray::Array1::zeros(4), 1.0).unwrap());
    let g = || {
        FnForward::fallible(4, 3, |x: &[f32]| {
            if x[0] > 3.5 {
                return Err("blew up".to_string());
            }
            Ok(vec![x[0] * x[1] + x[2].sin(), x[3].tanh() - x[0], (x[1] - x[2]).powi(2)])
        })
    };
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    for (name, cfg) in [
        ("EnKG", json!({ "num_particles": 9, "num_steps": 8 })),
        ("CPS", json!({ "num_candidates": 7, "num_steps": 12, "num_samples": 2 })),
    ] {
        let solver = registry::build(name, &cfg).unwrap();
        let g0 = g();
        let want = Runner::new(Problem::new(&prior, &g0, &lik).unwrap())
            .run(solver.as_ref(), 4)
            .unwrap();
        for size in 1..=4 {
            let outs = on_ranks(size, |c| {
                let f = ShardedForward::new(g(), c);
                let problem = Problem::new(&prior, &f, &lik).unwrap();
                let out = Runner::new(problem).run(solver.as_ref(), 4).unwrap();
                out
            });
            for out in outs {
                assert_eq!(out.samples, want.samples, "{name} on {size} ranks");
                assert_eq!(out.cost.fwd_total, want.cost.fwd_total);
                assert_eq!(out.cost.failed, want.cost.failed);
            }
        }
    }
}

/// Ctrl-C reaches one rank only: every rank stops before the same step, and the checkpoint
/// rank 0 alone wrote resumes (on one rank, or on three) to the uninterrupted samples.
#[test]
fn one_rank_cancelled_stops_every_rank_at_the_same_step() {
    let prior = GaussianPrior::new(Gaussian::isotropic(ndarray::Array1::zeros(4), 1.0).unwrap());
    let lik = GaussianLikelihood::new(array![0.3f32, -0.2, 0.4], 0.1).unwrap();
    let enkg = registry::build("EnKG", &json!({ "num_particles": 8, "num_steps": 10 })).unwrap();
    let dir = std::env::temp_dir().join(format!("diffinv-mpi-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.bin");
    let model = || FnForward::new(4, 3, |x: &[f32]| vec![x[0] + x[1], x[2] * x[3], x[0].sin()]);
    let outs = on_ranks(3, |c| {
        let own = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (o2, c2, rank) = (own.clone(), calls.clone(), c.rank());
        // Rank 2's "signal" arrives during its 5th batch.
        let g = FnForward::new(4, 3, move |x: &[f32]| {
            if rank == 2 && c2.fetch_add(1, Ordering::SeqCst) == 4 * 3 {
                o2.store(true, Ordering::SeqCst);
            }
            vec![x[0] + x[1], x[2] * x[3], x[0].sin()]
        });
        let agreed = AgreedCancel::new(c.clone(), own);
        let flag = agreed.flag();
        let f = ShardedForward::new(g, c.clone());
        let problem = Problem::new(&prior, &f, &lik).unwrap();
        let err = Runner::new(problem)
            .with_checkpoint(&path)
            .with_checkpoint_writer(c.rank() == 0)
            .with_cancel(flag)
            .observe(agreed)
            .run(enkg.as_ref(), 2)
            .unwrap_err();
        err
    });
    let steps: Vec<usize> = outs
        .iter()
        .map(|e| match e {
            SolverError::Interrupted { step } => *step,
            e => panic!("{e}"),
        })
        .collect();
    assert!(steps.iter().all(|s| *s == steps[0] && *s > 0 && *s < 10), "{steps:?}");
    let g0 = model();
    let want = Runner::new(Problem::new(&prior, &g0, &lik).unwrap()).run(enkg.as_ref(), 2).unwrap();
    let resumed = on_ranks(3, |c| {
        let f = ShardedForward::new(model(), c.clone());
        let out = Runner::new(Problem::new(&prior, &f, &lik).unwrap())
            .with_checkpoint(&path)
            .with_checkpoint_writer(c.rank() == 0)
            .run(enkg.as_ref(), 2)
            .unwrap();
        out
    });
    for out in resumed {
        assert_eq!(out.samples, want.samples);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
