"""The public names: documented, shaped as documented, and agreeing with numpy where numpy can
check them."""

import inspect

import numpy as np
import pytest

import diffinv
from conftest import require


def test_every_public_name_is_documented():
    for name in diffinv.__all__:
        obj = getattr(diffinv, name)
        if isinstance(obj, (bool, str)):
            continue
        doc = inspect.getdoc(obj)
        assert doc and len(doc) > 40, f"diffinv.{name} has no useful docstring"
    for cls in [diffinv.Gaussian, diffinv.GaussianMixture, diffinv.NavierStokes, diffinv.EHT, diffinv.Matrix]:
        for attr, member in vars(cls).items():
            if not attr.startswith("_"):
                assert inspect.getdoc(member), f"{cls.__name__}.{attr} has no docstring"
    assert "(mean, variance=None, covariance=None)" in str(inspect.signature(diffinv.Gaussian))
    assert "num_particles" in diffinv.solve.__doc__ and "KeyboardInterrupt" in diffinv.solve.__doc__


def test_methods_lists_the_registry():
    ms = diffinv.methods()
    names = [m.name for m in ms]
    assert names[:2] == ["EnKG", "CPS"] and "DPS" in names and "unconditional" in names
    enkg = ms[0]
    assert enkg.family == "derivative-free" and enkg.requires == []
    assert "2409.20175" in enkg.summary
    assert enkg.defaults["num_particles"] > 0 and "sigma_max" in enkg.defaults["schedule"]
    dps = next(m for m in ms if m.name == "DPS")
    assert dps.family == "gradient-based" and "gradient" in dps.requires


def test_result_fields(small_gmm):
    from conftest import cubic
    res = diffinv.solve("CPS", small_gmm, cubic, y=[1.0, 0.5, -0.3], sigma=0.2, progress=False,
                        num_samples=6, num_candidates=8, num_steps=12)
    assert res.samples.shape == (6, 3) and res.mean.shape == (3,) and res.std.shape == (3,)
    np.testing.assert_allclose(res.mean, res.samples.mean(axis=0), rtol=1e-6)
    assert set(["fwd_total", "fwd_seq", "den_total", "seconds", "fwd_seconds", "failed", "overhead_seconds"]) <= set(res.cost)
    assert len(res.steps) == 12 and set(res.steps[0]) >= {"step", "sigma", "misfit", "spread"}
    assert res.config["num_candidates"] == 8 and res.config["restarts"] >= 0
    assert "CPS" in repr(res)


def test_analytic_priors_and_exact_posterior():
    g = diffinv.Gaussian([0.0, 0.0], variance=4.0)
    # D(x; sigma) = 4 x / (4 + sigma^2)
    np.testing.assert_allclose(g.denoise([3.0, 1.0], 2.0), [1.5, 0.5], rtol=1e-6)
    post = g.posterior(A=[[1.0, 0.0]], y=[1.0], sigma=1.0)
    np.testing.assert_allclose(post.mean, [0.8, 0.0], atol=1e-12)
    np.testing.assert_allclose(post.covariance, [[0.8, 0.0], [0.0, 4.0]], atol=1e-12)
    s = g.sample(20000, seed=3)
    assert s.shape == (20000, 2) and abs(s.var(axis=0).mean() - 4.0) < 0.15
    full = diffinv.Gaussian([1.0, 2.0], covariance=[[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(full.covariance, [[2.0, 0.5], [0.5, 1.0]])
    gmm = diffinv.GaussianMixture([1.0, 3.0], means=[[0.0], [4.0]], variance=[1.0, 0.5])
    np.testing.assert_allclose(gmm.weights, [0.25, 0.75])
    np.testing.assert_allclose(gmm.mean, [3.0])
    assert gmm.covariances.shape == (2, 1, 1)
    with pytest.raises(ValueError, match="positive definite"):
        diffinv.Gaussian([0.0, 0.0], covariance=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="give variance"):
        diffinv.Gaussian([0.0])


def test_operators_are_callable_and_shaped():
    A = np.arange(6.0).reshape(2, 3)
    op = diffinv.Matrix(A)
    assert op.linear and op.differentiable and op.input_shape == [3] and op.output_shape == [2]
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    np.testing.assert_allclose(op(x), x @ A.T, rtol=1e-6)
    np.testing.assert_allclose(op(x[0]), A @ x[0], rtol=1e-6)
    np.testing.assert_allclose(op.adjoint([1.0, 1.0]), A.T @ [1.0, 1.0], rtol=1e-6)
    img = np.random.default_rng(0).uniform(-1, 1, size=(3, 16, 16)).astype(np.float32)
    sr = diffinv.SuperResolution((3, 16, 16), factor=4)
    assert sr(img).shape == (3, 4, 4) and sr(img[None]).shape == (1, 3, 4, 4)
    assert sr(img.reshape(1, -1)).shape == (1, 48)
    inp = diffinv.Inpainting((1, 16, 16), kind="random", fraction=0.5, seed=1)
    assert inp.mask.shape == (16, 16) and inp.mask.sum() == 128
    np.testing.assert_array_equal(inp(img[:1]), img[:1] * inp.mask)
    blur = diffinv.Blur((1, 16, 16), kernel_size=5, std=1.0)
    assert blur.kernel.shape == (5, 5) and abs(blur.kernel.sum() - 1) < 1e-5
    hdr = diffinv.HDR((1, 16, 16), alpha=2.0)
    np.testing.assert_allclose(hdr(img[:1]), np.clip(2 * img[:1], -1, 1), rtol=1e-6)
    assert not hdr.linear and hdr.differentiable
    pr = diffinv.PhaseRetrieval((1, 16, 16))
    assert pr(img[:1]).min() >= 0 and not pr.linear
    with pytest.raises(NotImplementedError):
        pr.adjoint(np.zeros(pr.output_dim))


def test_likelihoods():
    lik = diffinv.GaussianLikelihood([1.0, 2.0], 0.5)
    assert lik.isotropic_gaussian and lik.measurement_dim == 2
    assert lik.nll([2.0, 2.0]) == pytest.approx(0.5 / 0.25)
    diag = diffinv.GaussianLikelihood([1.0, 2.0], [0.5, 1.0])
    assert not diag.isotropic_gaussian
    np.testing.assert_allclose(diag.nll([[2.0, 3.0], [1.0, 2.0]]), [0.5 * (4 + 1), 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="finite and > 0"):
        diffinv.GaussianLikelihood([1.0, 2.0], [0.5, 0.0])


def test_eht_simulate_and_closure_likelihood():
    eht = diffinv.EHT()
    assert eht.input_shape == [1, 64, 64] and eht.output_dim == eht.n_cphase + eht.n_logcamp + 1
    yy, xx = np.mgrid[0:64, 0:64] - 31.5
    ring = np.exp(-((np.hypot(xx, yy) - 10) ** 2) / 8.0).astype(np.float32)
    ring /= ring.sum()
    obs = eht.simulate(ring, noise=True, seed=1)
    assert obs.measurement.shape == (eht.output_dim,) and obs.flux == pytest.approx(1.0, rel=1e-5)
    lik = diffinv.ClosureLikelihood(obs)
    truth_nll = lik.nll(eht(ring.reshape(1, -1))[0])
    flat_nll = lik.nll(eht(np.full((1, 4096), 1 / 4096, dtype=np.float32))[0])
    assert truth_nll < flat_nll
    assert obs.vis.dtype == np.complex128 and eht.visibilities(ring.reshape(1, -1)).shape[0] == 1


def test_metrics():
    x = np.array([1.0, 2.0, 3.0])
    r = np.array([1.0, 2.0, 4.0])
    assert diffinv.relative_l2(x, r) == pytest.approx(1 / np.sqrt(21))
    assert diffinv.misfit(x, r) == pytest.approx(np.sqrt(1 / 3))
    assert diffinv.psnr(x, r, data_range=2.0) == pytest.approx(10 * np.log10(4 / (1 / 3)))
    img = np.random.default_rng(0).uniform(size=(16, 16))
    assert diffinv.ssim(img, img, data_range=1.0) == pytest.approx(1.0)
    a = np.random.default_rng(1).normal(size=(500, 2))
    assert diffinv.sliced_wasserstein(a, a) == 0.0
    assert diffinv.sliced_wasserstein(a, a + [3.0, 0.0]) == pytest.approx(3.0 / np.sqrt(2), rel=0.1)
    with pytest.raises(ValueError, match="shape"):
        diffinv.relative_l2([1.0, 2.0], [1.0])


def test_neural_priors(repo):
    if not diffinv.HAS_TORCH:
        with pytest.raises(ImportError, match=r"torch==2\.11\.0"):
            diffinv.TrainedPrior(repo / "fixtures/priors/ns64")
        require("this build has no libtorch support")
    with pytest.raises(FileNotFoundError, match="is not a trained prior folder"):
        diffinv.TrainedPrior(repo / "fixtures")
    prior = diffinv.TrainedPrior(repo / "fixtures/priors/blackhole64")
    assert prior.shape == [1, 64, 64] and prior.normalization == (0.5, 0.5)
    z = np.zeros((2, 1, 64, 64), dtype=np.float32)
    assert prior.denoise(z, 1.0).shape == (2, 1, 64, 64)
    seen = []

    def flux(x):
        seen.append(x.min())
        return x.sum(axis=1, keepdims=True) / 4096.0

    res = diffinv.solve("EnKG", prior, flux, y=[0.2], sigma=0.01, progress=False,
                        num_particles=4, num_steps=3, max_ode_steps=2)
    assert res.samples.shape == (4, 4096)
    # the forward model and the samples are in physical units [0, 1] (z in [-1, 1] mapped by 0.5 z + 0.5)
    assert min(seen) > -0.5
