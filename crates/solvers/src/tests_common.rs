//! Small 2-D problems with exact posteriors, shared by the unit tests of the baselines.

use diffinv_metrics::{sliced_wasserstein, SlicedWassersteinConfig};
use diffinv_operators::{GaussianLikelihood, Likelihood, MatrixOperator};
use diffinv_priors::{Denoiser, Gaussian, GaussianMixture, GaussianPosterior, GaussianPrior};
use ndarray::{array, Array2};

use crate::Problem;

/// A 2-D prior, the measurement `y = x_0 + 0.5 x_1 + 0.3 n` and exact posterior draws.
pub(crate) struct Small2d {
    pub prior: Box<dyn Denoiser>,
    pub op: MatrixOperator,
    pub lik: GaussianLikelihood,
    /// 4000 exact posterior draws.
    pub reference: Array2<f32>,
}

impl Small2d {
    pub fn problem(&self) -> Problem<'_> {
        Problem::new(self.prior.as_ref(), &self.op, &self.lik).expect("consistent test problem")
    }
    /// Mean negative log-likelihood of `samples`.
    pub fn mean_misfit(&self, samples: &Array2<f32>) -> f64 {
        use diffinv_operators::ForwardModel;
        let y = self.op.forward(samples.view()).expect("forward");
        let l = self.lik.nll(y.view()).expect("nll");
        l.iter().map(|v| *v as f64).sum::<f64>() / l.len() as f64
    }
}

fn measurement() -> (Array2<f64>, ndarray::Array1<f64>, f64) {
    (array![[1.0, 0.5]], array![1.5], 0.3)
}

/// Three well-separated modes; the data select the right-hand ones.
pub(crate) fn gmm_problem_2d() -> Small2d {
    let prior = GaussianMixture::new(
        &[0.4, 0.3, 0.3],
        vec![
            Gaussian::isotropic(array![-2.0, 0.0], 0.3).expect("valid"),
            Gaussian::isotropic(array![2.0, 0.0], 0.3).expect("valid"),
            Gaussian::isotropic(array![0.0, 2.5], 0.3).expect("valid"),
        ],
    )
    .expect("valid mixture");
    let (a, y, s) = measurement();
    let post = prior.posterior(a.view(), y.view(), s).expect("posterior");
    Small2d {
        reference: post.sample(4000, 77),
        prior: Box::new(prior),
        op: MatrixOperator::new(a.mapv(|v| v as f32)).expect("valid"),
        lik: GaussianLikelihood::new(y.mapv(|v| v as f32), s as f32).expect("valid"),
    }
}

/// A correlated Gaussian prior (its denoiser has a vjp).
pub(crate) fn gaussian_problem_2d() -> Small2d {
    let g = Gaussian::full(array![-0.5, 0.5], array![[1.0, 0.4], [0.4, 0.8]]).expect("valid");
    let (a, y, s) = measurement();
    let post = GaussianPosterior::new(&g, a.view(), y.view(), s).expect("posterior");
    Small2d {
        reference: post.sample(4000, 77),
        prior: Box::new(GaussianPrior::new(g)),
        op: MatrixOperator::new(a.mapv(|v| v as f32)).expect("valid"),
        lik: GaussianLikelihood::new(y.mapv(|v| v as f32), s as f32).expect("valid"),
    }
}

/// Sliced 2-Wasserstein distance of `samples` to the exact posterior draws.
pub(crate) fn sliced_w2(p: &Small2d, samples: &Array2<f32>) -> f64 {
    sliced_wasserstein(
        samples.view(),
        p.reference.view(),
        SlicedWassersteinConfig::default(),
    )
    .expect("sw")
}
