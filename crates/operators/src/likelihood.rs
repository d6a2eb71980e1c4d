//! Likelihoods: the negative log-likelihood of an observed measurement given a predicted one,
//! and its gradient with respect to the predicted measurement.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};

use crate::{check_batch, OperatorError, Result};

/// `L(y_pred) = -log p(y_obs | y_pred)` up to a constant, for a batch of predictions.
///
/// The ensemble methods need only [`nll`](Self::nll) and [`grad`](Self::grad): the gradient is
/// taken with respect to the *measurement*, never through the forward model.
pub trait Likelihood: Send + Sync {
    /// Length `m` of one measurement.
    fn measurement_dim(&self) -> usize;
    /// Negative log-likelihood of every row of `y_pred` (shape `(N, m)`), length `N`.
    fn nll(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array1<f32>>;
    /// `dL/dy_pred` for every row, shape `(N, m)`.
    fn grad(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array2<f32>>;
    /// A whitened residual `r(y)` with `L(y) = ||r(y)||^2 / 2` exactly, one row per row of
    /// `y_pred` (shape `(N, p)`, `p` fixed by the likelihood), or `None` when `L` has no such
    /// least-squares form. Ensemble Kalman inversion works on `r(G(x))` with target 0 and
    /// identity noise, so that any likelihood of this form (Gaussian, the wrapped closure-phase
    /// chi^2) fits its Gaussian update.
    fn residual(&self, y_pred: ArrayView2<'_, f32>) -> Result<Option<Array2<f32>>> {
        let _ = y_pred;
        Ok(None)
    }
    /// Capability: this likelihood as an isotropic Gaussian `||y - y_obs||^2 / (2 sigma_y^2)`,
    /// when it is one. The solvers that need the observation and the noise level in closed form
    /// (PiGDM, MCG, RED-diff, SMC, MO, the conjugate-gradient data terms) find them here.
    /// Default: `None`.
    fn as_gaussian(&self) -> Option<&GaussianLikelihood> {
        None
    }
}

/// Gaussian measurement noise: `y_obs = y + sigma_y n`, `n ~ N(0, I)`, so
/// `L(y) = ||y - y_obs||^2 / (2 sigma_y^2)` and `dL/dy = (y - y_obs) / sigma_y^2`.
///
/// With `sigma_y = 0` (noiseless data) the scale is taken as 1, i.e. `L = ||y - y_obs||^2 / 2`,
/// which is what the EnKG reference uses for its noiseless experiments.
#[derive(Debug, Clone)]
pub struct GaussianLikelihood {
    y_obs: Array1<f32>,
    sigma_y: f32,
}

impl GaussianLikelihood {
    /// Likelihood of the observation `y_obs` with noise standard deviation `sigma_y >= 0`.
    ///
    /// `sigma_y = 0` is the noiseless case, defined with unit weight (see the type's docs).
    /// Errors: [`OperatorError::InvalidParameter`] for an empty `y_obs` or a negative, NaN or
    /// infinite `sigma_y`; [`OperatorError::NonFiniteInput`] for a non-finite observation.
    ///
    /// ```
    /// use diffinv_operators::{GaussianLikelihood, OperatorError};
    /// use ndarray::Array1;
    /// assert!(GaussianLikelihood::new(Array1::from(vec![1.0f32]), 0.0).is_ok());
    /// assert!(matches!(
    ///     GaussianLikelihood::new(Array1::<f32>::zeros(0), 0.1),
    ///     Err(OperatorError::InvalidParameter { name: "y_obs", .. })
    /// ));
    /// ```
    pub fn new(y_obs: Array1<f32>, sigma_y: f32) -> Result<Self> {
        if y_obs.is_empty() {
            return Err(OperatorError::InvalidParameter {
                name: "y_obs",
                reason: "the observation is empty (0 values)".into(),
            });
        }
        if !(sigma_y >= 0.0 && sigma_y.is_finite()) {
            return Err(OperatorError::InvalidParameter {
                name: "sigma_y",
                reason: format!("must be finite and >= 0, got {sigma_y}"),
            });
        }
        if y_obs.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::NonFiniteInput {
                what: "observation",
                row: 0,
            });
        }
        Ok(Self { y_obs, sigma_y })
    }
    /// The observed measurement.
    pub fn observation(&self) -> ArrayView1<'_, f32> {
        self.y_obs.view()
    }
    /// The noise standard deviation.
    pub fn sigma_y(&self) -> f32 {
        self.sigma_y
    }
    /// The weight `1 / sigma_y^2` of the squared residual (1 in the noiseless case `sigma_y = 0`).
    pub fn inv_var(&self) -> f32 {
        if self.sigma_y > 0.0 {
            1.0 / (self.sigma_y * self.sigma_y)
        } else {
            1.0
        }
    }
}

impl Likelihood for GaussianLikelihood {
    fn measurement_dim(&self) -> usize {
        self.y_obs.len()
    }
    fn as_gaussian(&self) -> Option<&GaussianLikelihood> {
        Some(self)
    }
    fn nll(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        let w = 0.5 * self.inv_var() as f64;
        Ok(y_pred.map_axis(Axis(1), |r| {
            let s: f64 = r
                .iter()
                .zip(self.y_obs.iter())
                .map(|(a, b)| {
                    let e = (*a - *b) as f64;
                    e * e
                })
                .sum();
            (w * s) as f32
        }))
    }
    fn grad(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        let w = self.inv_var();
        let mut g = y_pred.to_owned();
        Zip::from(g.rows_mut()).for_each(|mut r| {
            Zip::from(&mut r)
                .and(&self.y_obs)
                .for_each(|a, &b| *a = (*a - b) * w);
        });
        Ok(g)
    }
    /// `r(y) = (y - y_obs) / sigma_y` (`sigma_y = 0` read as 1), so `L = ||r||^2 / 2`.
    fn residual(&self, y_pred: ArrayView2<'_, f32>) -> Result<Option<Array2<f32>>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        let w = self.inv_var().sqrt();
        let mut r = y_pred.to_owned();
        Zip::from(r.rows_mut()).for_each(|mut row| {
            Zip::from(&mut row)
                .and(&self.y_obs)
                .for_each(|a, &b| *a = (*a - b) * w);
        });
        Ok(Some(r))
    }
}

/// Independent Gaussian noise with one standard deviation per measurement:
/// `y_obs,i = y_i + sigma_i n_i`, so `L(y) = sum_i (y_i - y_obs,i)^2 / (2 sigma_i^2)`,
/// `dL/dy_i = (y_i - y_obs,i) / sigma_i^2`, and the whitened residual is
/// `r_i = (y_i - y_obs,i) / sigma_i`.
///
/// It does not answer [`Likelihood::as_gaussian`] (which promises one isotropic `sigma_y`), so
/// the solvers that need the isotropic closed form refuse it before any compute; the
/// derivative-free methods (EnKG, CPS, EKI, ...) and those that use only the gradient accept it.
/// With all `sigma_i` equal it gives the same values as [`GaussianLikelihood`].
#[derive(Debug, Clone)]
pub struct DiagonalGaussianLikelihood {
    y_obs: Array1<f32>,
    inv_sigma: Array1<f32>,
}

impl DiagonalGaussianLikelihood {
    /// Likelihood of `y_obs` with per-measurement standard deviations `sigma` (same length,
    /// every value finite and > 0). Errors: [`OperatorError::InvalidParameter`] naming `y_obs`
    /// or `sigma` (empty, lengths differ, a sigma <= 0 or non-finite, with its index);
    /// [`OperatorError::NonFiniteInput`] for a non-finite observation.
    ///
    /// ```
    /// use diffinv_operators::{DiagonalGaussianLikelihood, Likelihood};
    /// use ndarray::array;
    /// let lik = DiagonalGaussianLikelihood::new(array![1.0f32, 2.0], array![0.5f32, 2.0]).unwrap();
    /// // ((0 - 1) / 0.5)^2 / 2 + ((0 - 2) / 2)^2 / 2 = 2 + 0.5
    /// assert_eq!(lik.nll(array![[0.0f32, 0.0]].view()).unwrap()[0], 2.5);
    /// assert!(DiagonalGaussianLikelihood::new(array![1.0f32], array![0.0f32]).is_err());
    /// ```
    pub fn new(y_obs: Array1<f32>, sigma: Array1<f32>) -> Result<Self> {
        if y_obs.is_empty() {
            return Err(OperatorError::InvalidParameter {
                name: "y_obs",
                reason: "the observation is empty (0 values)".into(),
            });
        }
        if sigma.len() != y_obs.len() {
            return Err(OperatorError::InvalidParameter {
                name: "sigma",
                reason: format!(
                    "{} standard deviations for {} measurements",
                    sigma.len(),
                    y_obs.len()
                ),
            });
        }
        if let Some((i, s)) = sigma.iter().enumerate().find(|(_, s)| !(**s > 0.0 && s.is_finite())) {
            return Err(OperatorError::InvalidParameter {
                name: "sigma",
                reason: format!("sigma[{i}] = {s}: every value must be finite and > 0"),
            });
        }
        if y_obs.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::NonFiniteInput {
                what: "observation",
                row: 0,
            });
        }
        let inv_sigma = sigma.mapv(|s| 1.0 / s);
        Ok(Self { y_obs, inv_sigma })
    }
    /// The observed measurement.
    pub fn observation(&self) -> ArrayView1<'_, f32> {
        self.y_obs.view()
    }
    /// `1 / sigma_i` for every measurement.
    pub fn inverse_sigma(&self) -> ArrayView1<'_, f32> {
        self.inv_sigma.view()
    }
}

impl Likelihood for DiagonalGaussianLikelihood {
    fn measurement_dim(&self) -> usize {
        self.y_obs.len()
    }
    fn nll(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        Ok(y_pred.map_axis(Axis(1), |r| {
            let s: f64 = r
                .iter()
                .zip(self.y_obs.iter())
                .zip(self.inv_sigma.iter())
                .map(|((a, b), w)| {
                    let e = ((*a - *b) * *w) as f64;
                    e * e
                })
                .sum();
            (0.5 * s) as f32
        }))
    }
    fn grad(&self, y_pred: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        let mut g = y_pred.to_owned();
        Zip::from(g.rows_mut()).for_each(|mut r| {
            Zip::from(&mut r)
                .and(&self.y_obs)
                .and(&self.inv_sigma)
                .for_each(|a, &b, &w| *a = (*a - b) * w * w);
        });
        Ok(g)
    }
    /// `r_i(y) = (y_i - y_obs,i) / sigma_i`, so `L = ||r||^2 / 2`.
    fn residual(&self, y_pred: ArrayView2<'_, f32>) -> Result<Option<Array2<f32>>> {
        check_batch(y_pred, self.y_obs.len(), "predicted measurement")?;
        let mut r = y_pred.to_owned();
        Zip::from(r.rows_mut()).for_each(|mut row| {
            Zip::from(&mut row)
                .and(&self.y_obs)
                .and(&self.inv_sigma)
                .for_each(|a, &b, &w| *a = (*a - b) * w);
        });
        Ok(Some(r))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use ndarray::array;

    #[test]
    fn gaussian_gradient_matches_finite_differences() {
        let lik = GaussianLikelihood::new(array![1.0f32, -2.0, 0.5], 0.3).unwrap();
        let y = array![[0.2f32, -1.0, 0.9]];
        let g = lik.grad(y.view()).unwrap();
        let h = 1e-2f32;
        for j in 0..3 {
            let mut yp = y.clone();
            yp[[0, j]] += h;
            let mut ym = y.clone();
            ym[[0, j]] -= h;
            let fd = (lik.nll(yp.view()).unwrap()[0] - lik.nll(ym.view()).unwrap()[0]) / (2.0 * h);
            assert_relative_eq!(fd, g[[0, j]], max_relative = 1e-3);
        }
    }

    #[test]
    fn gaussian_residual_reproduces_nll() {
        for sigma in [0.3f32, 0.0] {
            let lik = GaussianLikelihood::new(array![1.0f32, -2.0, 0.5], sigma).unwrap();
            let y = array![[0.2f32, -1.0, 0.9], [1.0, -2.0, 0.5], [-3.0, 4.0, 2.0]];
            let r = lik.residual(y.view()).unwrap().unwrap();
            let nll = lik.nll(y.view()).unwrap();
            for (row, l) in r.rows().into_iter().zip(nll.iter()) {
                let half_sq: f32 = 0.5 * row.iter().map(|v| v * v).sum::<f32>();
                assert_relative_eq!(half_sq, *l, max_relative = 1e-5, epsilon = 1e-7);
            }
        }
    }

    #[test]
    fn diagonal_gaussian_matches_the_isotropic_one_and_finite_differences() {
        let y_obs = array![1.0f32, -2.0, 0.5];
        let iso = GaussianLikelihood::new(y_obs.clone(), 0.3).unwrap();
        let diag = DiagonalGaussianLikelihood::new(y_obs.clone(), array![0.3f32, 0.3, 0.3]).unwrap();
        let y = array![[0.2f32, -1.0, 0.9], [-3.0, 4.0, 2.0]];
        let (a, b) = (iso.nll(y.view()).unwrap(), diag.nll(y.view()).unwrap());
        for (p, q) in a.iter().zip(b.iter()) {
            assert_relative_eq!(p, q, max_relative = 1e-5);
        }
        let lik = DiagonalGaussianLikelihood::new(y_obs, array![0.3f32, 2.0, 0.05]).unwrap();
        let g = lik.grad(y.view()).unwrap();
        let r = lik.residual(y.view()).unwrap().unwrap();
        let nll = lik.nll(y.view()).unwrap();
        for i in 0..2 {
            let half_sq: f32 = 0.5 * r.row(i).iter().map(|v| v * v).sum::<f32>();
            assert_relative_eq!(half_sq, nll[i], max_relative = 1e-5);
            for j in 0..3 {
                let h = 1e-3f32;
                let mut yp = y.clone();
                yp[[i, j]] += h;
                let mut ym = y.clone();
                ym[[i, j]] -= h;
                let fd = (lik.nll(yp.view()).unwrap()[i] as f64 - lik.nll(ym.view()).unwrap()[i] as f64)
                    / (2.0 * h as f64);
                assert_relative_eq!(fd, g[[i, j]] as f64, max_relative = 2e-2);
            }
        }
        assert!(lik.as_gaussian().is_none());
        assert!(DiagonalGaussianLikelihood::new(array![1.0f32, 2.0], array![1.0f32]).is_err());
        assert!(DiagonalGaussianLikelihood::new(array![1.0f32], array![f32::NAN]).is_err());
        assert!(DiagonalGaussianLikelihood::new(array![f32::NAN], array![1.0f32]).is_err());
    }

    #[test]
    fn rejects_wrong_length_and_bad_sigma() {
        let lik = GaussianLikelihood::new(array![1.0f32, 2.0], 1.0).unwrap();
        assert!(matches!(
            lik.nll(array![[1.0f32, 2.0, 3.0]].view()),
            Err(OperatorError::Shape {
                expected: 2,
                got: 3,
                ..
            })
        ));
        assert!(GaussianLikelihood::new(array![1.0f32], -1.0).is_err());
        assert!(GaussianLikelihood::new(array![1.0f32], f32::NAN).is_err());
        assert!(GaussianLikelihood::new(array![1.0f32], f32::INFINITY).is_err());
        assert!(matches!(
            GaussianLikelihood::new(array![f32::NAN], 1.0),
            Err(OperatorError::NonFiniteInput { .. })
        ));
    }

    #[test]
    fn rejects_an_empty_observation() {
        for sigma in [0.0f32, 0.5] {
            let e = GaussianLikelihood::new(Array1::<f32>::zeros(0), sigma).unwrap_err();
            assert!(
                matches!(e, OperatorError::InvalidParameter { name: "y_obs", .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("empty"), "{e}");
        }
    }

    #[test]
    fn noiseless_sigma_zero_is_finite_with_unit_weight() {
        let y_obs = array![1.0f32, -2.0, 0.5];
        let lik = GaussianLikelihood::new(y_obs.clone(), 0.0).unwrap();
        assert_eq!(lik.sigma_y(), 0.0);
        assert_eq!(lik.inv_var(), 1.0);
        let y = array![[0.0f32, 0.0, 0.0], [1.0, -2.0, 0.5], [1e3, -1e3, 7.0]];
        let nll = lik.nll(y.view()).unwrap();
        let g = lik.grad(y.view()).unwrap();
        let r = lik.residual(y.view()).unwrap().unwrap();
        assert!(nll
            .iter()
            .chain(g.iter())
            .chain(r.iter())
            .all(|v| v.is_finite()));
        // Unit weight: L = ||y - y_obs||^2 / 2, dL/dy = r = y - y_obs.
        assert_relative_eq!(nll[0], 0.5 * (1.0 + 4.0 + 0.25), max_relative = 1e-6);
        assert_eq!(nll[1], 0.0);
        for i in 0..3 {
            for j in 0..3 {
                assert_relative_eq!(g[[i, j]], y[[i, j]] - y_obs[j]);
                assert_relative_eq!(r[[i, j]], y[[i, j]] - y_obs[j]);
            }
        }
    }
}
