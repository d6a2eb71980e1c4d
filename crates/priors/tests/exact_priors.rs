//! Exactness of the analytic priors: closed forms, Tweedie's formula checked independently,
//! exact posteriors, and PF-ODE sampling with the exact denoiser.
#![allow(clippy::unwrap_used)]

use approx::assert_abs_diff_eq;
use diffinv_metrics::{sliced_wasserstein, SlicedWassersteinConfig};
use diffinv_priors::rng::{stream, tags};
use diffinv_priors::sampler::{initial_noise, pf_ode, reverse_sde};
use diffinv_priors::{Denoiser, EdmSchedule, FourierGaussian, Gaussian, GaussianMixture, GaussianPrior, OdeMethod};
use ndarray::{array, Array1, Array2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Dense inverse by Gauss-Jordan, for test oracles only.
fn inverse(a: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut m = a.clone();
    let mut inv = Array2::<f64>::eye(n);
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| m[[i, c]].abs().total_cmp(&m[[j, c]].abs())).unwrap();
        for k in 0..n {
            m.swap([c, k], [p, k]);
            inv.swap([c, k], [p, k]);
        }
        let d = m[[c, c]];
        for k in 0..n {
            m[[c, k]] /= d;
            inv[[c, k]] /= d;
        }
        for i in 0..n {
            if i != c {
                let f = m[[i, c]];
                for k in 0..n {
                    m[[i, k]] -= f * m[[c, k]];
                    inv[[i, k]] -= f * inv[[c, k]];
                }
            }
        }
    }
    inv
}

fn spd(d: usize, seed: u64) -> Array2<f64> {
    let mut rng = stream(seed, 99, 0, 0);
    let b = Array2::from_shape_fn((d, d), |_| StandardNormal.sample(&mut rng));
    let mut s: Array2<f64> = b.dot(&b.t()) / d as f64;
    for i in 0..d {
        s[[i, i]] += 0.3;
    }
    s
}

#[test]
fn gaussian_denoiser_equals_closed_form() {
    let d = 4;
    let cov = spd(d, 1);
    let mu = array![0.5, -1.0, 2.0, 0.0];
    let prior = GaussianPrior::new(Gaussian::full(mu.clone(), cov.clone()).unwrap());
    let x = array![[1.0f32, 2.0, -3.0, 0.5], [0.0, 0.0, 0.0, 0.0]];
    for &sigma in &[1e-3f32, 0.1, 1.0, 10.0, 1e3] {
        let got = prior.denoise(x.view(), sigma).unwrap();
        let mut m = cov.clone();
        for i in 0..d {
            m[[i, i]] += (sigma as f64).powi(2);
        }
        let k = cov.dot(&inverse(&m));
        for (r, xr) in x.outer_iter().enumerate() {
            let xv = xr.mapv(|v| v as f64);
            let want = &mu + &k.dot(&(&xv - &mu));
            for j in 0..d {
                assert_abs_diff_eq!(got[[r, j]] as f64, want[j], epsilon = 2e-5 * (1.0 + want[j].abs()));
            }
        }
    }
    // Diagonal path against the 1-D formula.
    let diag = GaussianPrior::new(Gaussian::diagonal(array![1.0, -1.0], array![4.0, 0.25]).unwrap());
    let out = diag.denoise(array![[3.0f32, 3.0]].view(), 0.5).unwrap();
    assert_abs_diff_eq!(out[[0, 0]], (1.0 + 4.0 / 4.25 * 2.0) as f32, epsilon = 1e-6);
    assert_abs_diff_eq!(out[[0, 1]], (-1.0 + 0.25 / 0.5 * 4.0) as f32, epsilon = 1e-6);
}

fn test_mixture() -> GaussianMixture {
    let c1 = Gaussian::full(array![-2.0, 1.0], array![[1.0, 0.6], [0.6, 0.8]]).unwrap();
    let c2 = Gaussian::diagonal(array![3.0, -1.0], array![0.3, 2.0]).unwrap();
    let c3 = Gaussian::isotropic(array![0.0, 4.0], 0.5).unwrap();
    GaussianMixture::new(&[0.5, 0.3, 0.2], vec![c1, c2, c3]).unwrap()
}

/// Tweedie posterior mean `E[x0 | x]` by self-normalised importance sampling from the prior,
/// with weights `N(x; x0, sigma^2 I)`: independent of the closed form.
#[test]
fn mixture_denoiser_matches_importance_sampling() {
    let gmm = test_mixture();
    let n = 400_000;
    let x0 = gmm.sample(n, 7);
    let points = array![[0.0f32, 0.0], [-1.0, 2.0], [2.5, 0.5]];
    for &sigma in &[0.5f64, 1.0, 2.0] {
        let den = gmm.denoise(points.view(), sigma as f32).unwrap();
        for (r, p) in points.outer_iter().enumerate() {
            let logw: Vec<f64> = x0
                .outer_iter()
                .map(|s| {
                    let q: f64 = s.iter().zip(p.iter()).map(|(a, b)| ((*a - *b) as f64).powi(2)).sum();
                    -0.5 * q / (sigma * sigma)
                })
                .collect();
            let m = logw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = logw.iter().map(|l| (l - m).exp()).collect();
            let sw: f64 = w.iter().sum();
            let ess = sw * sw / w.iter().map(|v| v * v).sum::<f64>();
            assert!(ess > 2000.0, "importance sampling too degenerate (ESS {ess})");
            for j in 0..2 {
                let est: f64 = x0.column(j).iter().zip(&w).map(|(a, b)| *a as f64 * b).sum::<f64>() / sw;
                // Monte Carlo error ~ std / sqrt(ESS) with std <~ 3.
                assert_abs_diff_eq!(den[[r, j]] as f64, est, epsilon = 4.0 * 3.0 / ess.sqrt() + 1e-3);
            }
        }
    }
}

/// Tweedie: `D(x; sigma) = x + sigma^2 grad log p_sigma(x)`, the gradient by central differences
/// of the log marginal density.
#[test]
fn mixture_denoiser_is_tweedie_of_the_marginal() {
    let gmm = test_mixture();
    for &sigma in &[0.01f64, 0.3, 1.0, 10.0] {
        for p in [[0.1, -0.3], [2.0, 2.0], [-3.0, 1.0]] {
            let x = Array2::from_shape_vec((1, 2), p.to_vec()).unwrap();
            let h = 1e-4 * (1.0 + sigma);
            let mut grad = [0.0; 2];
            for j in 0..2 {
                let mut a = x.clone();
                a[[0, j]] += h;
                let mut b = x.clone();
                b[[0, j]] -= h;
                grad[j] = (gmm.log_density(a.view(), sigma).unwrap()[0] - gmm.log_density(b.view(), sigma).unwrap()[0]) / (2.0 * h);
            }
            let den = gmm.denoise(x.mapv(|v| v as f32).view(), sigma as f32).unwrap();
            for j in 0..2 {
                let want = p[j] + sigma * sigma * grad[j];
                assert_abs_diff_eq!(den[[0, j]] as f64, want, epsilon = 1e-3 * (1.0 + want.abs()));
            }
        }
    }
}

#[test]
fn mixture_denoiser_is_stable_from_1e_minus_3_to_1e3() {
    let gmm = GaussianMixture::mcgdiff_grid(80, &[1.0; 25]).unwrap();
    let x = gmm.sample(16, 1);
    let far = x.mapv(|v| v * 1000.0);
    for &sigma in &[1e-3f32, 1e-2, 1.0, 1e2, 1e3] {
        for input in [&x, &far] {
            let d = gmm.denoise(input.view(), sigma).unwrap();
            assert!(d.iter().all(|v| v.is_finite()), "non-finite output at sigma {sigma}");
        }
    }
    // sigma -> 0: D(x) -> x; sigma -> inf: D(x) -> prior mean.
    let d = gmm.denoise(x.view(), 1e-3).unwrap();
    assert!(d.iter().zip(x.iter()).all(|(a, b)| (a - b).abs() < 1e-4));
    let d = gmm.denoise(Array2::zeros((1, 80)).view(), 1e3).unwrap();
    let mean = gmm.mean();
    assert!(d.iter().zip(mean.iter()).all(|(a, b)| (*a as f64 - b).abs() < 0.05));
}

#[test]
fn gaussian_posterior_matches_dense_formula_and_samples() {
    let d = 5;
    let cov = spd(d, 3);
    let mu = Array1::from_shape_fn(d, |i| i as f64 - 2.0);
    let g = Gaussian::full(mu.clone(), cov.clone()).unwrap();
    let mut rng = stream(5, 99, 0, 0);
    let a = Array2::from_shape_fn((2, d), |_| StandardNormal.sample(&mut rng));
    let y = array![1.0, -0.5];
    let sy = 0.3;
    let post = diffinv_priors::GaussianPosterior::new(&g, a.view(), y.view(), sy).unwrap();
    // Information form: Sigma' = (Sigma^{-1} + A^T A / sy^2)^{-1}, mu' = Sigma'(Sigma^{-1} mu + A^T y / sy^2).
    let prec = inverse(&cov) + a.t().dot(&a) / (sy * sy);
    let sp = inverse(&prec);
    let mp = sp.dot(&(inverse(&cov).dot(&mu) + a.t().dot(&y) / (sy * sy)));
    let c = post.covariance();
    for (u, v) in c.iter().zip(sp.iter()) {
        assert_abs_diff_eq!(u, v, epsilon = 1e-9);
    }
    for (u, v) in post.mean().iter().zip(mp.iter()) {
        assert_abs_diff_eq!(u, v, epsilon = 1e-9);
    }
    // Matheron draws have that mean and covariance.
    let n = 100_000;
    let s = post.sample(n, 11).mapv(|v| v as f64);
    let m = s.mean_axis(Axis(0)).unwrap();
    let centred = &s - &m;
    let emp = centred.t().dot(&centred) / (n as f64 - 1.0);
    for (u, v) in m.iter().zip(mp.iter()) {
        assert_abs_diff_eq!(u, v, epsilon = 0.02);
    }
    for (u, v) in emp.iter().zip(sp.iter()) {
        assert_abs_diff_eq!(u, v, epsilon = 0.02);
    }
}

/// Posterior component weights against importance sampling of the prior with the likelihood.
#[test]
fn mixture_posterior_mean_matches_importance_sampling() {
    let gmm = test_mixture();
    let a = array![[1.0, 0.5]];
    let y = array![1.2];
    let sy = 0.8;
    let post = gmm.posterior(a.view(), y.view(), sy).unwrap();
    let n = 400_000;
    let x0 = gmm.sample(n, 21);
    let w: Vec<f64> = x0
        .outer_iter()
        .map(|s| {
            let r = y[0] - (s[0] as f64 + 0.5 * s[1] as f64);
            (-0.5 * r * r / (sy * sy)).exp()
        })
        .collect();
    let sw: f64 = w.iter().sum();
    let mean = post.mean();
    for j in 0..2 {
        let est: f64 = x0.column(j).iter().zip(&w).map(|(a, b)| *a as f64 * b).sum::<f64>() / sw;
        assert_abs_diff_eq!(mean[j], est, epsilon = 0.02);
    }
    // Draws from the posterior have that mean.
    let s = post.sample(100_000, 3).mapv(|v| v as f64).mean_axis(Axis(0)).unwrap();
    for j in 0..2 {
        assert_abs_diff_eq!(s[j], mean[j], epsilon = 0.03);
    }
}

/// The PF-ODE with the exact denoiser transports N(0, sigma_max^2 I) to the mixture.
#[test]
fn pf_ode_with_exact_denoiser_reproduces_the_mixture() {
    let gmm = GaussianMixture::mcgdiff_grid(8, &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]).unwrap();
    let n = 2000;
    let sched = EdmSchedule::default();
    let x_t = initial_noise(n, 8, sched.sigma_max, 5);
    let cfg = SlicedWassersteinConfig { projections: 200, seed: 0 };
    let direct = gmm.sample(n, 99);
    let direct2 = gmm.sample(n, 100);
    let floor = sliced_wasserstein(direct.view(), direct2.view(), cfg).unwrap();
    let prior_scale = sliced_wasserstein(direct.view(), initial_noise(n, 8, 1.0, 3).view(), cfg).unwrap();
    for method in [OdeMethod::Euler, OdeMethod::Heun] {
        let steps = if method == OdeMethod::Heun { 40 } else { 200 };
        let x = pf_ode(&gmm, x_t.view(), &sched.sigmas(steps).unwrap(), method).unwrap();
        let sw = sliced_wasserstein(x.view(), direct.view(), cfg).unwrap();
        // Two independent direct draws are `floor` apart (finite-sample noise); the sampler must be
        // within 2x of it and far from a wrong distribution (the standard normal).
        assert!(sw < 2.0 * floor + 0.1, "{method:?}: SW {sw} vs floor {floor}");
        assert!(sw < 0.1 * prior_scale, "{method:?}: SW {sw} vs scale {prior_scale}");
    }
    let x = reverse_sde(&gmm, x_t.view(), &sched.sigmas(200).unwrap(), 1, 0).unwrap();
    let sw = sliced_wasserstein(x.view(), direct.view(), cfg).unwrap();
    assert!(sw < 2.0 * floor + 0.15, "SDE: SW {sw} vs floor {floor}");
}

/// The Fourier-diagonal field equals the dense Gaussian with covariance `F^* diag(lambda) F`.
#[test]
fn fourier_gaussian_equals_dense_gaussian() {
    let (h, w) = (4usize, 6usize);
    let field = FourierGaussian::from_fn(h, w, 0.3, |kx, ky| 1.0 / (1.0 + (kx * kx + ky * ky) as f64).powf(1.5)).unwrap();
    // Dense covariance from the impulse responses of the filter with lambda (sigma -> 0 limit):
    // C e_j = F^* diag(lambda) F e_j; obtain it from samples' generator: apply the denoiser
    // identity D(x; s) = mu + C (C + s^2 I)^{-1} (x - mu) to a basis and compare to GaussianPrior.
    let d = h * w;
    let mut cov = Array2::<f64>::zeros((d, d));
    let spectrum = field.spectrum().clone();
    for a in 0..d {
        for b in 0..d {
            let (ia, ja) = (a / w, a % w);
            let (ib, jb) = (b / w, b % w);
            let mut s = 0.0;
            for ky in 0..h {
                for kx in 0..w {
                    let phase = 2.0 * std::f64::consts::PI
                        * ((ky as f64) * (ia as f64 - ib as f64) / h as f64 + (kx as f64) * (ja as f64 - jb as f64) / w as f64);
                    s += spectrum[[ky, kx]] * phase.cos();
                }
            }
            cov[[a, b]] = s / d as f64;
        }
    }
    let dense = GaussianPrior::new(Gaussian::full(Array1::from_elem(d, 0.3), cov).unwrap());
    let mut rng = stream(1, tags::SAMPLE, 0, 0);
    let x = Array2::from_shape_fn((3, d), |_| rng.random_range(-2.0f32..2.0));
    for &sigma in &[0.05f32, 0.5, 5.0] {
        let a = field.denoise(x.view(), sigma).unwrap();
        let b = dense.denoise(x.view(), sigma).unwrap();
        for (u, v) in a.iter().zip(b.iter()) {
            assert_abs_diff_eq!(u, v, epsilon = 1e-5);
        }
    }
    // Samples have the right per-pixel variance: sum(lambda) / d.
    let s = field.sample(20000, 4).mapv(|v| v as f64 - 0.3);
    let var = s.mapv(|v| v * v).mean().unwrap();
    let want = spectrum.sum() / d as f64;
    assert_abs_diff_eq!(var, want, epsilon = 0.03 * want);
}

#[test]
fn bad_input_is_a_typed_error() {
    let gmm = test_mixture();
    assert!(gmm.denoise(Array2::zeros((2, 3)).view(), 1.0).is_err());
    assert!(gmm.denoise(array![[f32::NAN, 0.0]].view(), 1.0).is_err());
    assert!(gmm.denoise(array![[0.0f32, 0.0]].view(), 0.0).is_err());
    assert!(gmm.denoise(array![[0.0f32, 0.0]].view(), f32::INFINITY).is_err());
    assert!(Gaussian::full(array![0.0, 0.0], array![[1.0, 2.0], [2.0, 1.0]]).is_err());
    assert!(GaussianMixture::new(&[1.0], vec![]).is_err());
    assert!(GaussianMixture::mcgdiff_grid(3, &[1.0; 25]).is_err());
}
