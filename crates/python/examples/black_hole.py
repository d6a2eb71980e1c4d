"""Black-hole imaging from closure quantities with the shipped trained prior (EnKG, arXiv
2409.20175, section 5.3): an EHT-2017-like array observes a synthetic M87*-like ring; EnKG
reconstructs it from closure phases, log closure amplitudes and the total flux with the
diffusion prior trained on m-ring images (fixtures/priors/blackhole64).

Needs a build with libtorch (docs/python.md). Writes black_hole.png (truth, posterior mean,
posterior standard deviation) when matplotlib is installed.

Run: python crates/python/examples/black_hole.py [--particles 24] [--steps 30] [--out black_hole.png]
"""
import argparse
import pathlib

import numpy as np

import diffinv

REPO = pathlib.Path(__file__).resolve().parents[3]


def m_ring(n=64, fov=160.0, diameter=40.0, width=8.0, asym=0.6, angle=np.deg2rad(150), peak=0.8):
    """A blurred m = 1 ring in [0, 1] image units (north up, east left), as the prior's data."""
    c, p = (n - 1) / 2, fov / n
    j, i = np.meshgrid(np.arange(n), np.arange(n))
    l, m = (c - j) * p, (c - i) * p
    r, phi = np.hypot(l, m), np.arctan2(l, m)
    s = width / np.sqrt(8 * np.log(2))
    img = np.exp(-((r - diameter / 2) ** 2) / (2 * s * s)) * np.maximum(0, 1 + asym * np.cos(phi - angle))
    return (peak * img / img.max()).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--particles", type=int, default=24)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="black_hole.png")
    args = ap.parse_args()

    prior = diffinv.TrainedPrior(REPO / "fixtures" / "priors" / "blackhole64")
    eht = diffinv.EHT()
    truth = m_ring()
    obs = eht.simulate(truth, noise=True, seed=1)
    likelihood = diffinv.ClosureLikelihood(obs)
    # EnKG with the reference's black-hole setting (configs/tables/blackhole-quick.toml).
    res = diffinv.solve("EnKG", prior, eht, likelihood=likelihood, seed=args.seed,
                        num_particles=args.particles, num_steps=args.steps, guidance_scale=3.5,
                        lr_min_ratio=0.001, max_ode_steps=3, num_updates=1,
                        threshold_start=0.1, threshold_end=0.1)
    mean = res.mean.reshape(64, 64)
    std = res.std.reshape(64, 64)
    nll_mean = likelihood.nll(eht(mean.astype(np.float32)).ravel())
    nll_truth = likelihood.nll(eht(truth).ravel())
    print(f"EnKG, {args.particles} particles, {args.steps} steps: {res.cost['seconds']:.1f} s, "
          f"{res.cost['fwd_total']} forward and {res.cost['den_total']} denoiser evaluations")
    print(f"closure nll of the mean {nll_mean:.1f} (of the truth {nll_truth:.1f}), "
          f"PSNR against the truth {diffinv.psnr(mean, truth, data_range=1.0):.2f} dB, "
          f"flux {mean.sum():.2f} (truth {truth.sum():.2f})")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.4))
    for a, img, title in zip(ax, [truth, mean, std], ["truth", "EnKG posterior mean", "posterior std"]):
        im = a.imshow(img, cmap="afmhot")
        a.set_title(title)
        a.axis("off")
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
