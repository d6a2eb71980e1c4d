"""diffinv quickstart: a numpy simulator, a mixture prior, EnKG and CPS, against importance
sampling (EnKG and CPS guide a diffusion prior; they are not exact samplers, expect a few 0.01).
Run: python crates/python/examples/quickstart.py"""
import numpy as np
import diffinv

def simulator(x):  # any numpy code: (n, 2) float32 in, (n, 3) out; called once per batch
    return np.stack([x[:, 0] + 0.1 * x[:, 1] ** 3, np.sin(x[:, 1]), x[:, 0] * x[:, 1]], axis=1)

prior = diffinv.GaussianMixture([0.5, 0.5], means=[[-2.0, 0.0], [2.0, 1.0]], variance=0.5)
sigma = 0.1
y = simulator(np.array([[2.2, 0.8]], dtype=np.float32))[0] + sigma * np.random.default_rng(0).normal(size=3)

# Reference: self-normalised importance sampling with the prior as the proposal.
xs = prior.sample(200_000, seed=1)
logw = -0.5 * np.sum((simulator(xs) - y) ** 2, axis=1) / sigma**2
w = np.exp(logw - logw.max())
is_mean = (w[:, None] * xs).sum(axis=0) / w.sum()

enkg = diffinv.solve("EnKG", prior, simulator, y=y, sigma=sigma, num_particles=512, num_steps=40)
cps = diffinv.solve("CPS", prior, simulator, y=y, sigma=sigma, num_samples=256, num_candidates=16, num_steps=60)

print(f"importance sampling  posterior mean {np.round(is_mean, 3)}")
for r in (enkg, cps):
    print(f"{r.method:<19}  posterior mean {np.round(r.mean, 3)}  |error| {np.linalg.norm(r.mean - is_mean):.3f}  "
          f"({r.cost['fwd_total']} simulator rows in {r.cost['fwd_seq']} calls, {r.cost['seconds']:.2f} s)")
