"""A diffinv worker in Python: 2 inputs, 5 outputs.

Run it under diffinv with, in the run's config file:

    [forward]
    kind = "process"
    command = ["python3", "simulator.py"]
    in_dim = 2
    out_dim = 5
    env = { PYTHONPATH = "path/to/crates/process/python" }   # or: pip install crates/process/python

A row with x0 < -100 is reported as failed (NaN); x0 > 100 raises, which fails the call's rows
with the message "ValueError: x0 out of range: ..." and keeps the worker serving.
"""

import numpy as np

from diffinv_worker import serve


def forward(x):
    a, b = x[:, 0], x[:, 1]
    if np.any(a > 100):
        raise ValueError("x0 out of range: %g" % a.max())
    print("evaluating %d rows" % len(x))  # goes to stderr (the worker log), not the protocol
    y = np.stack([a * b, a + 2 * b, a * a - b, (a - b) / (1 + a * a), b * b * b - 0.5 * a], axis=1)
    y[a < -100] = np.nan
    return y


if __name__ == "__main__":
    serve(forward, in_dim=2, out_dim=5)
