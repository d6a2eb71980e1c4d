//! The metrics of `diffinv-metrics` from Python. Every function reads its arrays as float32
//! (the rule of every argument) and accumulates in float64.

use diffinv_metrics::{SlicedWassersteinConfig, MetricError};
use ndarray::{Array1, Array3, Ix3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{f32_array, matrix, shape_str};
use crate::errors::{metric_err, no_panic};

/// Register the metric functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sliced_wasserstein, m)?)?;
    m.add_function(wrap_pyfunction!(relative_l2, m)?)?;
    m.add_function(wrap_pyfunction!(psnr, m)?)?;
    m.add_function(wrap_pyfunction!(ssim, m)?)?;
    m.add_function(wrap_pyfunction!(misfit, m)?)?;
    Ok(())
}

/// Two arrays of the same shape, flattened.
fn pair(x: &Bound<'_, PyAny>, reference: &Bound<'_, PyAny>) -> PyResult<(Array1<f32>, Array1<f32>)> {
    let a = f32_array(x, "x")?;
    let b = f32_array(reference, "reference")?;
    if a.shape() != b.shape() {
        return Err(PyValueError::new_err(format!(
            "x has shape {} but reference has shape {}",
            shape_str(a.shape()),
            shape_str(b.shape())
        )));
    }
    Ok((a.iter().copied().collect(), b.iter().copied().collect()))
}

/// Sliced 2-Wasserstein distance between the empirical distributions of the rows of `a`
/// `(n_a, d)` and `b` `(n_b, d)`:
/// `SW_2 = ( (1/L) sum_l W_2^2(<theta_l, a>, <theta_l, b>) )^(1/2)` over `projections` random
/// directions `theta_l` uniform on the sphere (drawn from `seed`), each 1-D `W_2` exact from the
/// sorted projections (sets of different sizes compare quantile functions).
#[pyfunction]
#[pyo3(signature = (a, b, projections = 1000, seed = 0))]
fn sliced_wasserstein(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, projections: usize, seed: u64) -> PyResult<f64> {
    let a = matrix(f32_array(a, "a")?, "a", None)?;
    let b = matrix(f32_array(b, "b")?, "b", Some(a.ncols()))?;
    let cfg = SlicedWassersteinConfig { projections, seed };
    py.allow_threads(|| no_panic(|| diffinv_metrics::sliced_wasserstein(a.view(), b.view(), cfg).map_err(metric_err)))
}

/// Relative L2 error `||x - reference|| / ||reference||` over all entries (EnKG's Navier-Stokes
/// metric); `inf` for a zero reference unless `x` is zero too.
#[pyfunction]
fn relative_l2(x: &Bound<'_, PyAny>, reference: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (a, b) = pair(x, reference)?;
    diffinv_metrics::relative_l2(a.view(), b.view()).map_err(metric_err)
}

/// Peak signal-to-noise ratio `10 log10(data_range^2 / MSE)` in dB over all entries
/// (`data_range` 2 for images in [-1, 1], 1 for [0, 1]); `inf` for identical inputs.
#[pyfunction]
#[pyo3(signature = (x, reference, data_range = 2.0))]
fn psnr(x: &Bound<'_, PyAny>, reference: &Bound<'_, PyAny>, data_range: f64) -> PyResult<f64> {
    let (a, b) = pair(x, reference)?;
    diffinv_metrics::psnr(a.view(), b.view(), data_range).map_err(metric_err)
}

/// Structural similarity of two images `(H, W)` or `(C, H, W)` (Wang et al. 2004: 11 x 11
/// Gaussian window, sigma 1.5, K1 0.01, K2 0.03, mean over channels and valid windows), with
/// the dynamic range `data_range`.
#[pyfunction]
#[pyo3(signature = (x, reference, data_range = 2.0))]
fn ssim(x: &Bound<'_, PyAny>, reference: &Bound<'_, PyAny>, data_range: f64) -> PyResult<f64> {
    let img = |o: &Bound<'_, PyAny>, what: &str| -> PyResult<Array3<f32>> {
        let a = f32_array(o, what)?;
        let a = match a.ndim() {
            2 => a.insert_axis(ndarray::Axis(0)),
            3 => a,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "{what} must be an image (H, W) or (C, H, W), got shape {}",
                    shape_str(a.shape())
                )))
            }
        };
        a.into_dimensionality::<Ix3>().map_err(|e| PyValueError::new_err(e.to_string()))
    };
    let a = img(x, "x")?;
    let b = img(reference, "reference")?;
    diffinv_metrics::ssim(a.view(), b.view(), data_range).map_err(|e: MetricError| metric_err(e))
}

/// Data misfit `||y_pred - y_obs|| / sqrt(m)`, the root-mean-square measurement residual.
#[pyfunction]
fn misfit(y_pred: &Bound<'_, PyAny>, y_obs: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (a, b) = pair(y_pred, y_obs)?;
    diffinv_metrics::data_misfit(a.view(), b.view()).map_err(metric_err)
}
