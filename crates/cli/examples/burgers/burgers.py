"""Viscous Burgers' equation on a periodic domain, as a diffinv worker.

    u_t + (u^2 / 2)_x = nu u_xx,   x in [0, 2 pi),   t in [0, T]

The unknown is the initial condition, eight Fourier coefficients:

    u0(x) = sum_{k=1..4} a_k sin(k x) + b_k cos(k x),   theta = (a_1..a_4, b_1..b_4)

and the measurement is u(x_s, T) at 16 equispaced sensors. The solver is second-order finite
volumes in space (central flux of u^2/2, central diffusion) with Heun's method in time, on 64
cells, vectorised over the batch: one call evaluates every row at once. A row whose solution
blows up (a too-large initial condition for the time step) comes back as NaN, which diffinv
counts as a failed row and leaves out of that step's update.

Run by diffinv (see problem.toml); `python3 burgers.py --simulate A1 .. B4` prints G(theta).
"""

import sys

import numpy as np

N_CELLS = 64
NU = 0.05
T_END = 0.5
DT = 0.002
SENSORS = np.arange(0, N_CELLS, N_CELLS // 16)
X = 2.0 * np.pi * np.arange(N_CELLS) / N_CELLS
DX = 2.0 * np.pi / N_CELLS


def initial(theta):
    """u0 on the grid for every row of theta, shape (n, N_CELLS)."""
    k = np.arange(1, 5)
    sines = np.sin(np.outer(k, X))  # (4, N)
    cosines = np.cos(np.outer(k, X))
    return theta[:, :4] @ sines + theta[:, 4:] @ cosines


def rhs(u):
    """-(u^2/2)_x + nu u_xx with periodic central differences."""
    up = np.roll(u, -1, axis=1)
    um = np.roll(u, 1, axis=1)
    flux = -(up * up - um * um) / (4.0 * DX)
    return flux + NU * (up - 2.0 * u + um) / (DX * DX)


def forward(theta):
    """(n, 8) coefficients -> (n, 16) sensor values of u(., T_END)."""
    u = initial(theta.astype(np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(round(T_END / DT))):
            k1 = rhs(u)
            k2 = rhs(u + DT * k1)
            u = u + 0.5 * DT * (k1 + k2)
    out = u[:, SENSORS]
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--simulate":
        theta = np.array([[float(v) for v in sys.argv[2:10]]])
        print(" ".join(f"{v:.6f}" for v in forward(theta)[0]))
    else:
        from diffinv_worker import serve

        serve(forward, in_dim=8, out_dim=16)
