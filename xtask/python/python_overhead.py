"""`cargo xtask bench python`: the overhead of a Python callable as the forward model of one
EnKG run, against the same model called by the solver directly in Rust.

For each case the same built-in operator `op` is passed to `diffinv.solve` twice: as itself (the
solver calls the Rust model, no Python) and as `lambda x: op(x)` (every batch goes through the
Python callable path: GIL, a float32 copy of the batch into a numpy array, the call, the
output's validation and copy back). The samples are bit-identical. The per-call overhead is the
difference of the time spent inside the forward model (the cost ledger's `fwd_seconds`, timed
around every call), divided by the number of calls; the wall times of the two runs are the
bench's `ours` (callable) and `baseline` (Rust). Best of `--repeat` runs by wall time. Prints
one JSON object last.
"""
import argparse
import json

import numpy as np

import diffinv


def best(prior, forward, reps, **kw):
    runs = [diffinv.solve("EnKG", prior, forward, progress=False, seed=0, **kw) for _ in range(reps)]
    return min(runs, key=lambda r: r.cost["seconds"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = []

    d, m = 16, 4
    A = (rng.normal(size=(m, d)) / np.sqrt(d)).astype(np.float32)
    op = diffinv.Matrix(A)
    prior = diffinv.Gaussian(np.zeros(d), variance=1.0)
    y = op(prior.sample(1, seed=1)[0]) + 0.05 * rng.normal(size=m)
    cfg = dict(y=y, sigma=0.05, num_particles=64, num_steps=100 if a.quick else 200, max_ode_steps=2)
    cases.append(("matrix_d16", prior, op, cfg))

    d, m = 256, 32
    A = (rng.normal(size=(m, d)) / np.sqrt(d)).astype(np.float32)
    op = diffinv.Matrix(A)
    prior = diffinv.Gaussian(np.zeros(d), variance=1.0)
    y = op(prior.sample(1, seed=1)[0]) + 0.05 * rng.normal(size=m)
    cfg = dict(y=y, sigma=0.05, num_particles=256, num_steps=20 if a.quick else 40)
    cases.append(("matrix_d256", prior, op, cfg))

    eht = diffinv.EHT()
    yy, xx = np.mgrid[0:64, 0:64] - 31.5
    ring = np.exp(-((np.hypot(xx, yy) - 8) ** 2) / 8.0).astype(np.float32)
    obs = eht.simulate(ring / ring.max(), seed=1)
    prior = diffinv.Gaussian(np.full(4096, 0.1), variance=0.01)
    cfg = dict(likelihood=diffinv.ClosureLikelihood(obs), num_particles=64, num_steps=10 if a.quick else 20,
               max_ode_steps=3)
    cases.append(("eht64", prior, eht, cfg))

    out = []
    for name, prior, op, cfg in cases:
        rust = best(prior, op, a.repeat, **cfg)
        py = best(prior, lambda x, op=op: op(x), a.repeat, **cfg)
        assert np.array_equal(rust.samples, py.samples), name
        calls = rust.cost["fwd_seq"]
        out.append({
            "case": name,
            "rust_s": rust.cost["seconds"],
            "python_s": py.cost["seconds"],
            "calls": calls,
            "rows": rust.cost["fwd_total"],
            "d": int(prior.dim),
            # inside the forward model (the solver's clock around each call): the round trip alone
            "overhead_us_per_call": 1e6 * (py.cost["fwd_seconds"] - rust.cost["fwd_seconds"]) / max(calls, 1),
            "fwd_s_rust": rust.cost["fwd_seconds"],
            "fwd_s_python": py.cost["fwd_seconds"],
        })
    print(json.dumps({"cases": out}))


if __name__ == "__main__":
    main()
