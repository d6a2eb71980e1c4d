"""Bad input raises a clear Python exception (never a crash); a callable's exception surfaces
with its traceback, or fails only its batch's rows when asked."""

import numpy as np
import pytest

import diffinv
from conftest import cubic

Y = [1.0, 0.5, -0.3]
FAST = dict(num_particles=16, num_steps=5, progress=False)


def test_unknown_method_and_key_name_the_close_matches(small_gmm):
    with pytest.raises(diffinv.ConfigError, match="did you mean EnKG"):
        diffinv.solve("EnKg", small_gmm, cubic, y=Y, sigma=0.1)
    with pytest.raises(ValueError, match="did you mean num_particles"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, num_particle=3)
    with pytest.raises(diffinv.ConfigError, match="schedule.sigma_maxx"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, schedule={"sigma_maxx": 3.0})
    with pytest.raises(diffinv.ConfigError, match="at least 2 particles"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, num_particles=1)
    with pytest.raises(diffinv.ConfigError, match="invalid configuration of EnKG"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, num_particles="many")
    with pytest.raises(TypeError, match="method must be a string"):
        diffinv.solve(3, small_gmm, cubic, y=Y, sigma=0.1)
    # numpy scalars are fine as configuration values
    diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, num_particles=np.int64(8), num_steps=np.int32(3), progress=False)


def test_missing_capability_is_a_problem_error(small_gmm):
    with pytest.raises(diffinv.ProblemError, match="DPS needs the gradient"):
        diffinv.solve("DPS", small_gmm, cubic, y=Y, sigma=0.1, progress=False)


def test_nan_and_inf_in_y(small_gmm):
    with pytest.raises(ValueError, match=r"y contains NaN or inf \(first at index \(1,\)\)"):
        diffinv.solve("EnKG", small_gmm, cubic, y=[1.0, np.nan, 0.0], sigma=0.1)
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        diffinv.solve("EnKG", small_gmm, cubic, y=[1.0, np.inf, 0.0], sigma=0.1)


def test_wrong_dtypes(small_gmm):
    with pytest.raises(TypeError, match="y must be an array of real numbers.*complex"):
        diffinv.solve("EnKG", small_gmm, cubic, y=np.array([1, 2, 3], dtype=complex), sigma=0.1)
    with pytest.raises(TypeError, match="y must be an array of real numbers"):
        diffinv.solve("EnKG", small_gmm, cubic, y=["a", "b", "c"], sigma=0.1)
    with pytest.raises(TypeError, match="means must be an array of real numbers"):
        diffinv.GaussianMixture([1.0], means=np.array([[object()]]), variance=1.0)
    with pytest.raises(ValueError, match="y: cannot be read as an array"):
        diffinv.solve("EnKG", small_gmm, cubic, y=[[1.0], [1.0, 2.0]], sigma=0.1)
    with pytest.raises(TypeError, match="prior must be a diffinv prior"):
        diffinv.solve("EnKG", "gmm", cubic, y=Y, sigma=0.1)
    with pytest.raises(TypeError, match="forward must be a diffinv operator or a callable"):
        diffinv.solve("EnKG", small_gmm, 3.0, y=Y, sigma=0.1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, seed=1.5)
    # ints and float64 are converted
    res = diffinv.solve("EnKG", small_gmm, cubic, y=np.array([1, 0, 0]), sigma=1, **FAST)
    assert res.samples.dtype == np.float32


def test_wrong_shapes_name_the_argument_and_both_shapes(small_gmm):
    with pytest.raises(ValueError, match=r"sigma must be a scalar or have one value per measurement \(3,\), got \(2,\)"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"variance must be a scalar or have shape \(2,\) or \(2, 3\), got \(4,\)"):
        diffinv.GaussianMixture([0.5, 0.5], means=np.zeros((2, 3)), variance=np.ones(4))
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\), got \(3,\)"):
        diffinv.GaussianMixture([0.2, 0.3, 0.5], means=np.zeros((2, 3)), variance=1.0)
    with pytest.raises(ValueError, match=r"covariance must have shape \(n, 2\), got \(3, 3\)|covariance must have shape \(2, 2\)"):
        diffinv.Gaussian([0.0, 0.0], covariance=np.eye(3))
    op = diffinv.Matrix(np.ones((3, 4)))
    with pytest.raises(diffinv.ProblemError, match="the prior has dimension 3 but the forward model takes 4"):
        diffinv.solve("EnKG", small_gmm, op, y=Y, sigma=0.1)
    with pytest.raises(diffinv.ProblemError, match="returns 3 values .* but the measurement has 2"):
        diffinv.solve("EnKG", diffinv.Gaussian(np.zeros(4), variance=1.0), op, y=[1.0, 2.0], sigma=0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(4,\) or \(n, 4\), got \(2, 3\)"):
        op(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"returned an array of shape \(16, 2\) for an input of shape \(16, 3\); expected \(16, 3\)"):
        diffinv.solve("EnKG", small_gmm, lambda x: x[:, :2], y=Y, sigma=0.1, **FAST)
    with pytest.raises(TypeError, match="output must be an array of real numbers"):
        diffinv.solve("EnKG", small_gmm, lambda x: x.astype(complex), y=Y, sigma=0.1, **FAST)
    with pytest.raises(ValueError, match="not both"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, likelihood=diffinv.GaussianLikelihood(Y, 0.1))
    with pytest.raises(ValueError, match="pass sigma"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y)


def test_non_contiguous_arrays_are_copied(small_gmm):
    seen = []

    def model(x):
        seen.append((x.dtype, x.flags.c_contiguous, x.shape))
        return cubic(x)

    y_strided = np.array([1.0, 9.0, 0.5, 9.0, -0.3, 9.0])[::2]
    assert not y_strided.flags.c_contiguous
    a = diffinv.solve("EnKG", small_gmm, model, y=y_strided, sigma=0.2, seed=1, **FAST)
    b = diffinv.solve("EnKG", small_gmm, model, y=np.ascontiguousarray(y_strided), sigma=0.2, seed=1, **FAST)
    assert np.array_equal(a.samples, b.samples)
    assert all(dt == np.float32 and c and s == (16, 3) for dt, c, s in seen)
    means_f = np.asfortranarray([[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    c = diffinv.solve("EnKG", diffinv.GaussianMixture([0.3, 0.7], means_f, variance=0.25), cubic, y=Y, sigma=0.2, seed=1, **FAST)
    d = diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.2, seed=1, **FAST)
    assert np.array_equal(c.samples, d.samples)
    op = diffinv.Matrix(np.arange(12.0).reshape(3, 4))
    x = np.arange(40.0).reshape(10, 4)[::2, :]
    assert np.array_equal(op(x), op(np.ascontiguousarray(x)))


def test_a_callable_that_raises_propagates_with_its_traceback(small_gmm):
    def broken_simulator(x):
        return x / 0 if x.shape[0] > 1000 else 1 // 0

    with pytest.raises(ZeroDivisionError) as info:
        diffinv.solve("EnKG", small_gmm, broken_simulator, y=Y, sigma=0.1, **FAST)
    assert any(entry.name == "broken_simulator" for entry in info.traceback)
    assert any("EnKG at step" in n for n in getattr(info.value, "__notes__", []))


def test_fail_rows_on_error(small_gmm):
    calls = []

    def flaky(x):
        calls.append(len(calls))
        if len(calls) % 2 == 0:
            raise RuntimeError("solver diverged")
        return cubic(x)

    # every other batch fails entirely: EnKG cannot go on with a block without survivors
    with pytest.raises(diffinv.SolverError, match="every row of the block"):
        diffinv.solve("EnKG", small_gmm, flaky, y=Y, sigma=0.1, on_error="fail-rows", **FAST)
    with pytest.raises(ValueError, match="on_error"):
        diffinv.solve("EnKG", small_gmm, cubic, y=Y, sigma=0.1, on_error="ignore", **FAST)


def test_nan_rows_are_failed_samples(small_gmm):
    def half_broken(x):
        y = cubic(x)
        y[::4] = np.nan  # a quarter of every batch fails
        return y

    res = diffinv.solve("EnKG", small_gmm, half_broken, y=Y, sigma=0.2, seed=0, **FAST)
    assert res.cost["failed"] > 0
    assert np.isfinite(res.samples).all()


def test_builtin_operator_failures_are_nan_rows():
    ns = diffinv.NavierStokes(resolution=16, t_final=0.05)
    x = np.zeros((2, 256), dtype=np.float32)
    x[1, 0] = np.inf
    y = ns(x)
    assert np.isfinite(y[0]).all() and np.isnan(y[1]).all()
