//! Behaviour of the solvers on problems with a known answer, determinism, and failure handling.
#![allow(clippy::unwrap_used)]

use diffinv_operators::{FnForward, ForwardModel, GaussianLikelihood, MatrixOperator};
use diffinv_priors::rng::stream;
use diffinv_priors::{Denoiser, Gaussian, GaussianPosterior, GaussianPrior};
use diffinv_solvers::*;
use ndarray::{Array1, Array2, Axis};
use rand_distr::{Distribution, StandardNormal};

struct LinearGaussian {
    prior: GaussianPrior,
    op: MatrixOperator,
    lik: GaussianLikelihood,
    post_mean: Array1<f64>,
    prior_mean: Array1<f64>,
}

/// A correlated Gaussian prior in d = 16, A: 4 x 16 with N(0,1) entries, sigma_y = 0.05.
fn linear_gaussian() -> LinearGaussian {
    let (d, m, sy) = (16, 4, 0.05);
    let mut rng = stream(1, 99, 0, 0);
    let b = Array2::from_shape_fn((d, d), |_| StandardNormal.sample(&mut rng));
    let mut cov: Array2<f64> = b.dot(&b.t()) / d as f64;
    for i in 0..d {
        cov[[i, i]] += 0.5;
    }
    let mu = Array1::from_shape_fn(d, |i| (i as f64 * 0.3).sin());
    let g = Gaussian::full(mu.clone(), cov).unwrap();
    let a = Array2::from_shape_fn((m, d), |_| StandardNormal.sample(&mut rng));
    let x_true = GaussianPrior::new(g.clone())
        .sample(1, 5)
        .row(0)
        .mapv(|v| v as f64);
    let noise = Array1::from_shape_fn(m, |_| {
        let z: f64 = StandardNormal.sample(&mut rng);
        sy * z
    });
    let y = a.dot(&x_true) + noise;
    let post = GaussianPosterior::new(&g, a.view(), y.view(), sy).unwrap();
    LinearGaussian {
        prior: GaussianPrior::new(g),
        op: MatrixOperator::new(a.mapv(|v| v as f32)).unwrap(),
        lik: GaussianLikelihood::new(y.mapv(|v| v as f32), sy as f32).unwrap(),
        post_mean: post.mean().to_owned(),
        prior_mean: mu,
    }
}

fn mean_distance(samples: &Array2<f32>, target: &Array1<f64>) -> f64 {
    let m = samples.mapv(|v| v as f64).mean_axis(Axis(0)).unwrap();
    (&m - target).mapv(|v| v * v).sum().sqrt()
}

/// EnKG's ensemble mean approaches the exact posterior mean as the ensemble grows. With a
/// small guidance scale (0.1) the normalised Kalman steps contract the data misfit without
/// the random null-space drift that larger scales cause on this problem (see docs/algorithms.md);
/// the remaining error at large N is the bias of the K = 40 discretisation.
#[test]
fn enkg_mean_converges_to_posterior_mean_as_n_grows() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let scale = (&p.prior_mean - &p.post_mean).mapv(|v| v * v).sum().sqrt();
    let mut errs = Vec::new();
    for n in [64, 256, 1024] {
        let enkg = Enkg::new(EnkgConfig {
            num_particles: n,
            num_steps: 40,
            guidance_scale: 0.1,
            ..Default::default()
        })
        .unwrap();
        let out = Runner::new(problem).run(&enkg, 0).unwrap();
        errs.push(mean_distance(&out.samples, &p.post_mean));
    }
    assert!(errs[2] < 0.5 * errs[0], "error must fall with N: {errs:?}");
    assert!(
        errs[1] < errs[0] && errs[2] < errs[1],
        "error must fall with N: {errs:?}"
    );
    assert!(
        errs[2] < 0.25 * scale,
        "N = 1024 error {} vs prior-posterior distance {scale}",
        errs[2]
    );
}

/// CPS chains fit the data to below the noise level and their mean moves from the prior mean
/// to the posterior mean.
#[test]
fn cps_fits_the_data_and_moves_to_the_posterior() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let cps = Cps::new(CpsConfig {
        num_samples: 128,
        num_candidates: 16,
        num_steps: 50,
        ..Default::default()
    })
    .unwrap();
    let out = Runner::new(problem).run(&cps, 0).unwrap();
    let y = p.op.forward(out.samples.view()).unwrap();
    let misfit = (&y - &p.lik.observation())
        .mapv(|v| v * v)
        .mean()
        .unwrap()
        .sqrt();
    assert!(misfit < 0.05, "RMS misfit {misfit}");
    let scale = (&p.prior_mean - &p.post_mean).mapv(|v| v * v).sum().sqrt();
    let err = mean_distance(&out.samples, &p.post_mean);
    assert!(err < 0.6 * scale, "CPS mean error {err} vs scale {scale}");
    // The ledger: 1 + 5 restarts in the window; M forward evaluations per chain and repetition.
    assert_eq!(out.cost.fwd_total % (128 * 16), 0);
    assert!(out.cost.fwd_seq >= 49);
}

/// `reference_first_step`: APS_R's step at the guidance threshold returns the clean estimate
/// `D(x_T; sigma_max)` (no candidates, no forward call); later steps are guided as usual and
/// the chains still fit the data.
#[test]
fn cps_reference_first_step_is_the_clean_estimate() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let cfg = CpsConfig {
        num_samples: 64,
        num_candidates: 16,
        num_steps: 50,
        reference_first_step: true,
        ..Default::default()
    };
    let cps = Cps::new(cfg.clone()).unwrap();
    struct First(Option<(Array2<f32>, bool)>);
    impl Observer for First {
        fn on_step(&mut self, info: &StepInfo, state: StateView<'_>, _: &CostSummary) {
            if self.0.is_none() {
                self.0 = Some((state.particles.to_owned(), info.guided));
            }
        }
    }
    let mut first = First(None);
    let out = Runner::new(problem).observe(&mut first).run(&cps, 5).unwrap();
    let (x1, guided) = first.0.unwrap();
    let x_t = State::initial_noise(64, 16, cfg.schedule.sigma_max, 5).x;
    let want = p.prior.denoise(x_t.view(), cfg.schedule.sigma_max as f32).unwrap();
    assert_eq!(x1, want);
    assert!(!guided);
    let y = p.op.forward(out.samples.view()).unwrap();
    let misfit = (&y - &p.lik.observation()).mapv(|v| v * v).mean().unwrap().sqrt();
    assert!(misfit < 0.05, "RMS misfit {misfit}");
    // and the default takes a guided step there: different samples
    let default = Runner::new(problem).run(&Cps::new(CpsConfig { reference_first_step: false, ..cfg }).unwrap(), 5).unwrap();
    assert_ne!(default.samples, out.samples);
}

#[test]
fn unconditional_ignores_the_data() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let unc = Unconditional::new(UnconditionalConfig {
        num_samples: 2000,
        num_steps: 40,
        method: UnconditionalMethod::Heun,
        ..Default::default()
    })
    .unwrap();
    let out = Runner::new(problem).run(&unc, 3).unwrap();
    assert!(mean_distance(&out.samples, &p.prior_mean) < 0.15);
    assert_eq!(out.cost.fwd_total, 0);
    assert_eq!(out.cost.den_seq, 2 * 40 - 1);
}

fn run_in_pool(threads: usize, f: impl FnOnce() -> Array2<f32> + Send) -> Array2<f32> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Same seed, same bits, whatever the thread count.
#[test]
fn runs_are_bit_identical_across_thread_counts() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let enkg = Enkg::new(EnkgConfig {
        num_particles: 50,
        num_steps: 12,
        ..Default::default()
    })
    .unwrap();
    let cps = Cps::new(CpsConfig {
        num_samples: 3,
        num_candidates: 8,
        num_steps: 12,
        ..Default::default()
    })
    .unwrap();
    // The reference's EKI: a random-field start on the 4 x 4 unknown, the adaptive update.
    let eki = Eki::new(EkiConfig {
        num_particles: 24,
        num_iterations: 12,
        ..Default::default()
    })
    .unwrap();
    let solvers: [&dyn DynSolver; 3] = [&enkg, &cps, &eki];
    for s in solvers {
        let a = run_in_pool(1, || Runner::new(problem).run(s, 42).unwrap().samples);
        let b = run_in_pool(2, || Runner::new(problem).run(s, 42).unwrap().samples);
        let c = run_in_pool(3, || Runner::new(problem).run(s, 42).unwrap().samples);
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(u, v)| u.to_bits() == v.to_bits()),
            "{}: 1 vs 2 threads",
            s.name()
        );
        assert!(
            a.iter()
                .zip(c.iter())
                .all(|(u, v)| u.to_bits() == v.to_bits()),
            "{}: 1 vs 3 threads",
            s.name()
        );
        let d = Runner::new(problem).run(s, 43).unwrap().samples;
        assert!(
            a != d,
            "{}: a different seed must change the result",
            s.name()
        );
    }
}

/// A forward model that returns NaN for some particles: the strict `Evaluator::forward` names
/// the particle and the step (no panic, no poisoned ensemble), and EnKG and CPS, under the
/// failure policy of long runs (`Evaluator::forward_robust`, issue 5), finish with finite
/// samples and count the failed evaluations.
#[test]
fn nan_from_the_forward_model_names_particle_and_step() {
    let p = linear_gaussian();
    let a = p.op.matrix().clone();
    // Fails whenever the second coordinate of the clean estimate exceeds 1, which some
    // particles of the ensemble reach.
    let bad = FnForward::new(16, 4, move |x: &[f32]| {
        if x[1] > 1.0 {
            vec![f32::NAN; 4]
        } else {
            a.dot(&ndarray::ArrayView1::from(x)).to_vec()
        }
    });
    let problem = Problem::new(&p.prior, &bad, &p.lik).unwrap();
    let mut x = Array2::<f32>::zeros((4, 16));
    x[[2, 1]] = 2.0;
    match Evaluator::new(problem).forward(x.view(), 5) {
        Err(SolverError::ParticleFailed {
            particle,
            step,
            reason,
        }) => {
            assert_eq!((particle, step), (2, 5));
            assert!(reason.contains("non-finite"), "{reason}");
            let msg = SolverError::ParticleFailed {
                particle,
                step,
                reason,
            }
            .to_string();
            assert!(
                msg.contains("particle 2") && msg.contains("step 5"),
                "{msg}"
            );
        }
        other => panic!("expected ParticleFailed, got {other:?}"),
    }
    let enkg = Enkg::new(EnkgConfig {
        num_particles: 64,
        num_steps: 20,
        ..Default::default()
    })
    .unwrap();
    let cps = Cps::new(CpsConfig {
        num_samples: 2,
        num_candidates: 8,
        num_steps: 20,
        ..Default::default()
    })
    .unwrap();
    // About 20% of the evaluations fail, scattered pseudo-randomly over the ensemble (a
    // failure region that the whole ensemble can enter is an error by the policy's design).
    let a = p.op.matrix().clone();
    let flaky = FnForward::new(16, 4, move |x: &[f32]| {
        if (x[0] * 1000.0).fract().abs() < 0.2 {
            vec![f32::NAN; 4]
        } else {
            a.dot(&ndarray::ArrayView1::from(x)).to_vec()
        }
    });
    let problem = Problem::new(&p.prior, &flaky, &p.lik).unwrap();
    for s in [&enkg as &dyn DynSolver, &cps] {
        let out = Runner::new(problem).run(s, 0).unwrap();
        assert!(out.cost.failed > 0, "{}: no particle failed", s.name());
        assert!(out.samples.iter().all(|v| v.is_finite()), "{}", s.name());
    }
}

#[test]
fn wrong_shapes_and_bad_configs_are_rejected_before_compute() {
    let p = linear_gaussian();
    let other = MatrixOperator::new(Array2::zeros((4, 15))).unwrap();
    let err = Problem::new(&p.prior, &other, &p.lik).unwrap_err();
    assert!(
        err.to_string().contains("dimension 16") && err.to_string().contains("15"),
        "{err}"
    );
    let short = GaussianLikelihood::new(Array1::zeros(3), 0.1).unwrap();
    assert!(Problem::new(&p.prior, &p.op, &short).is_err());
    assert!(Enkg::new(EnkgConfig {
        num_particles: 1,
        ..Default::default()
    })
    .is_err());
    assert!(Enkg::new(EnkgConfig {
        guidance_scale: f64::NAN,
        ..Default::default()
    })
    .is_err());
    assert!(Cps::new(CpsConfig {
        num_candidates: 1,
        ..Default::default()
    })
    .is_err());
    assert!(Cps::new(CpsConfig {
        restart_window: (0.5, 0.1),
        ..Default::default()
    })
    .is_err());
    let bad_sched = diffinv_priors::EdmSchedule {
        sigma_max: 0.001,
        sigma_min: 0.002,
        rho: 7.0,
    };
    assert!(Enkg::new(EnkgConfig {
        schedule: bad_sched,
        ..Default::default()
    })
    .is_err());
}

#[test]
fn configs_deserialise_from_toml_with_defaults() {
    let cfg: EnkgConfig =
        toml::from_str("num_particles = 64\nguidance_scale = 1.5\n[schedule]\nsigma_max = 40.0\n")
            .unwrap();
    assert_eq!(cfg.num_particles, 64);
    assert_eq!(cfg.num_updates, EnkgConfig::default().num_updates);
    assert_eq!(cfg.schedule.sigma_max, 40.0);
    assert_eq!(cfg.schedule.rho, 7.0);
    assert!(
        toml::from_str::<EnkgConfig>("num_particle = 64").is_err(),
        "unknown keys are rejected"
    );
    let c: CpsConfig = toml::from_str("num_candidates = 32\nrestart_window = [0.0, 0.3]").unwrap();
    assert_eq!(c.restart_window, (0.0, 0.3));
}

/// For a Gaussian likelihood the two linearisations are the same step
/// (`<r(y_j), r(y_k) - rbar> = <dL/dy(y_j), y_k - ybar>`): EnKG and CPS give the same samples up
/// to float rounding.
#[test]
fn residual_and_measurement_linearisations_agree_on_a_gaussian_likelihood() {
    let p = linear_gaussian();
    let problem = Problem::new(&p.prior, &p.op, &p.lik).unwrap();
    let run_enkg = |linearization| {
        let s = Enkg::new(EnkgConfig {
            num_particles: 64,
            num_steps: 20,
            guidance_scale: 0.5,
            linearization,
            ..Default::default()
        })
        .unwrap();
        Runner::new(problem).run(&s, 3).unwrap().samples
    };
    let run_cps = |linearization| {
        let s = Cps::new(CpsConfig {
            num_samples: 8,
            num_candidates: 16,
            num_steps: 20,
            linearization,
            ..Default::default()
        })
        .unwrap();
        Runner::new(problem).run(&s, 3).unwrap().samples
    };
    for (a, b) in [
        (
            run_enkg(Linearization::Residual),
            run_enkg(Linearization::Measurement),
        ),
        (
            run_cps(Linearization::Residual),
            run_cps(Linearization::Measurement),
        ),
    ] {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = (&a - &b).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(diff < 1e-3 * scale, "max difference {diff} (scale {scale})");
    }
}

/// Phases observed near the branch cut: `y_k = wrap(pi + x_k)` for a standard-normal `x` in
/// d = 3, so that the prior's phases straddle `+-pi`, with the closure-phase likelihood
/// `2 (1 - cos d) / sigma^2` (sigma = 0.05). In residual space (the chord
/// `e^{i y} - e^{i y_obs}`) EnKG recovers `x` to within a few sigma; with the raw wrapped phases
/// the ensemble anomalies carry spurious `2 pi` jumps and the fit is far worse.
#[test]
fn enkg_fits_phases_across_the_branch_cut_in_residual_space() {
    use diffinv_operators::eht::likelihood::{ClosureWeights, PhaseResidual};
    use diffinv_operators::ClosureLikelihood;
    let d = 3;
    let pi = std::f64::consts::PI;
    let wrap = |t: f64| t - 2.0 * pi * ((t + pi) / (2.0 * pi)).floor();
    let fwd = FnForward::new(d, d + 1, move |x: &[f32]| {
        let mut y: Vec<f32> = x.iter().map(|v| wrap(pi + *v as f64) as f32).collect();
        y.push(0.0);
        y
    });
    let x_true = [0.45f64, -0.3, 0.2];
    let obs: Vec<f64> = x_true.iter().map(|v| wrap(pi + v)).collect();
    let w = ClosureWeights {
        cphase: 1.0,
        logcamp: 0.0,
        flux: 0.0,
        flux_scale: 1.0,
        overall: 0.5,
        phase_residual: PhaseResidual::Wrapped,
    };
    let lik = ClosureLikelihood::from_parts(&obs, &[0.05; 3], &[], &[], 0.0, w).unwrap();
    let prior = GaussianPrior::new(Gaussian::isotropic(Array1::zeros(d), 1.0).unwrap());
    let problem = Problem::new(&prior, &fwd, &lik).unwrap();
    let err = |linearization| {
        let s = Enkg::new(EnkgConfig {
            num_particles: 256,
            num_steps: 40,
            guidance_scale: 1.0,
            linearization,
            ..Default::default()
        })
        .unwrap();
        let out = Runner::new(problem).run(&s, 0).unwrap();
        // RMS over particles and coordinates of the circular error of the recovered x.
        let mut acc = 0.0;
        for row in out.samples.rows() {
            for (v, t) in row.iter().zip(x_true) {
                acc += wrap(*v as f64 - t).powi(2);
            }
        }
        (acc / (out.samples.nrows() * d) as f64).sqrt()
    };
    let (res, meas) = (
        err(Linearization::Residual),
        err(Linearization::Measurement),
    );
    eprintln!("circular RMS error: residual {res:.4}, measurement {meas:.4}");
    assert!(res < 0.15, "residual-space EnKG error {res} rad");
    assert!(
        meas > 5.0 * res,
        "raw-phase error {meas} vs residual-space {res}"
    );
}
