"""EnKG and CPS recover the exact posterior of a Gaussian mixture.

The problem (the MCGdiff benchmark's shape, Cardoso et al. ICLR 2024, at d = 8): 25 unit-variance
components with means (8i, 8j, 8i, 8j, ...), i, j in -2..2, squared-Gaussian weights; a random
2 x 8 linear measurement with sigma 0.3 of a prior draw, given to the solvers as a numpy
callable. The exact posterior is again a mixture (`GaussianMixture.posterior`).

Stated bound: the sliced Wasserstein distance (300 projections) between 512 samples of the method
and 4096 exact posterior draws is below 0.6, where the prior's is about 9.7 and two independent
exact draws' (the finite-sample floor) about 0.07. At commit time EnKG (guidance 0.5) scores
0.40 and CPS 0.34.
"""

import numpy as np
import pytest

import diffinv

BOUND = 0.6


@pytest.fixture(scope="module")
def problem():
    d = 8
    rng = np.random.default_rng(0)
    means = np.array([[8.0 * (i if k % 2 == 0 else j) for k in range(d)] for i in range(-2, 3) for j in range(-2, 3)])
    prior = diffinv.GaussianMixture(rng.normal(size=25) ** 2, means, variance=1.0)
    A = rng.normal(size=(2, d)) / np.sqrt(d)
    x = prior.sample(1, seed=5)[0]
    sigma = 0.3
    y = A @ x + sigma * rng.normal(size=2)
    post = prior.posterior(A, y, sigma)
    exact = post.sample(4096, seed=1)
    return prior, A.astype(np.float32), y, sigma, post, exact


def sw(a, b):
    return diffinv.sliced_wasserstein(a, b, projections=300, seed=0)


def test_reference_distances(problem):
    prior, _, _, _, post, exact = problem
    assert sw(post.sample(512, seed=2), exact) < 0.15
    assert sw(prior.sample(512, seed=3), exact) > 5.0


@pytest.mark.parametrize("method,cfg", [
    ("EnKG", dict(num_particles=512, num_steps=30, guidance_scale=0.5)),
    ("CPS", dict(num_samples=512, num_candidates=16, num_steps=60)),
])
def test_method_recovers_the_exact_posterior(problem, method, cfg):
    prior, A, y, sigma, post, exact = problem
    res = diffinv.solve(method, prior, lambda x: x @ A.T, y=y, sigma=sigma, seed=0, progress=False, **cfg)
    assert res.samples.shape == (512, 8)
    dist = sw(res.samples, exact)
    assert dist < BOUND, f"{method}: sliced Wasserstein {dist:.3f} >= {BOUND}"
    assert res.cost["fwd_total"] > 0 and res.cost["den_total"] > 0
    assert len(res.steps) == cfg["num_steps"]
