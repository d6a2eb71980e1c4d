#!/usr/bin/env python3
"""Independent PyTorch implementation of diffinv's 2-D Navier-Stokes solver, for comparison.

Vorticity form on the 2*pi torus (x along axis 0, y along axis 1):
    w_t + u . grad w = (1/Re) Lap w + f,   u = (psi_y, -psi_x),   -Lap psi = w,
    f = -4 cos(4 y) (Kolmogorov forcing) or 0.
Pseudo-spectral, 2/3 dealiasing of the advected vorticity, Heun for the nonlinear term and
Crank-Nicolson for the viscous term, CFL step dt = min(0.5 h / max|u|, 0.5 h^2 Re / sqrt(max|f|)),
h = 1 / max(H, W), recomputed at every step (per sample, or the batch minimum) from the
2/3-dealiased velocity of w_n that the first Heun stage computes, or fixed.
This is the scheme of devzhk/enkg-pytorch; the code here is written independently for diffinv.

Usage (data exchanged through .npy files; numpy is not required):
    ns_reference.py solve --input IN.npy --output OUT.npy [options]
    ns_reference.py bench --input IN.npy [options] --repeat R   # prints JSON timings
    ns_reference.py jobs --input JOBS.json    # several solves in one process (one torch import):
        JOBS.json = [{"input": ..., "output": ..., "re": 200, "t": 1.0, "dt_mode": "sample",
                      "dt": 0.002, "forcing": "kolmogorov", "dtype": "float64"}, ...]
Options: --re 200 --t 1.0 --dt-mode sample|batch|fixed --dt 0.002 --forcing kolmogorov|none
         --dtype float64|float32 --threads N
"""
import argparse
import ast
import json
import math
import struct
import sys
import time

import torch


# ----------------------------------------------------------------------------- .npy I/O
def read_npy(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:6] != b"\x93NUMPY":
        raise ValueError(f"{path} is not an .npy file")
    major = raw[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", raw[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", raw[8:12])
        start = 12
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    if header["fortran_order"]:
        raise ValueError("Fortran order not supported")
    dtype = {"<f4": torch.float32, "<f8": torch.float64}[header["descr"]]
    shape = tuple(header["shape"])
    body = bytearray(raw[start + hlen:])
    return torch.frombuffer(body, dtype=dtype).reshape(shape).clone()


def write_npy(path, tensor):
    tensor = tensor.detach().contiguous().cpu()
    descr = {torch.float32: "<f4", torch.float64: "<f8"}[tensor.dtype]
    shape = tuple(tensor.shape)
    dims = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(str(d) for d in shape) + ")"
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, dims)
    total = ((10 + len(text) + 1 + 63) // 64) * 64
    text = text + " " * (total - 10 - len(text) - 1) + "\n"
    with open(path, "wb") as fh:
        fh.write(b"\x93NUMPY\x01\x00")
        fh.write(struct.pack("<H", len(text)))
        fh.write(text.encode("latin1"))
        # Little-endian hosts only (x86-64, aarch64): the raw storage is the .npy body.
        fh.write(bytes(tensor.flatten().view(torch.uint8).tolist()))


# ----------------------------------------------------------------------------- the solver
class SpectralNS:
    """Solver tables for an (H, W) grid on the 2*pi torus."""

    def __init__(self, h, w, re, forcing, dtype):
        self.h, self.w, self.re, self.dtype = h, w, re, dtype
        wc = w // 2 + 1
        i = torch.arange(h, dtype=torch.float64)
        j = torch.arange(wc, dtype=torch.float64)
        # Wavenumbers for the Laplacian: rows 0..H/2-1, -H/2..-1; columns 0..W/2.
        k1_lap = torch.where(i < h // 2, i, i - h)
        k2_lap = j
        # Wavenumbers for first derivatives: the Nyquist entries are zero.
        k1_der = torch.where(i < h // 2, i, torch.where(i == h // 2, torch.zeros_like(i), i - h))
        k2_der = torch.where(j < w // 2, j, torch.zeros_like(j))
        K1L, K2L = torch.meshgrid(k1_lap, k2_lap, indexing="ij")
        lap = K1L ** 2 + K2L ** 2
        self.visc = (lap / re).to(dtype)
        safe = lap.clone()
        safe[0, 0] = 1.0
        self.psi_of_w = (1.0 / safe).to(dtype)
        keep = lap <= (h / 3.0) ** 2 + (w / 3.0) ** 2
        keep[0, 0] = False
        self.keep = keep.to(dtype)
        K1D, K2D = torch.meshgrid(k1_der, k2_der, indexing="ij")
        self.ik1 = (1j * K1D).to(torch.complex128 if dtype == torch.float64 else torch.complex64)
        self.ik2 = (1j * K2D).to(self.ik1.dtype)
        self.grid_h = 1.0 / max(h, w)
        if forcing == "kolmogorov":
            y = 2.0 * math.pi * torch.arange(w, dtype=torch.float64) / w
            f = (-4.0 * torch.cos(4.0 * y)).reshape(1, w).expand(h, w).to(dtype)
            self.f_hat = torch.fft.rfft2(f)
            self.xi = math.sqrt(float(f.abs().max()))
        else:
            self.f_hat = None
            self.xi = 1.0

    def velocity(self, w_hat):
        psi = w_hat * self.psi_of_w
        ux = torch.fft.irfft2(self.ik2 * psi, s=(self.h, self.w))
        uy = torch.fft.irfft2(-self.ik1 * psi, s=(self.h, self.w))
        return ux, uy

    def advection(self, w_hat):
        """The nonlinear term and the dealiased velocity it was computed from."""
        wd = w_hat * self.keep
        w = torch.fft.irfft2(wd, s=(self.h, self.w))
        ux, uy = self.velocity(wd)
        rhs = -(self.ik1 * torch.fft.rfft2(ux * w) + self.ik2 * torch.fft.rfft2(uy * w))
        if self.f_hat is not None:
            rhs = rhs + self.f_hat
        return rhs, (ux, uy)

    def cfl(self, velocity, per_sample):
        """CFL step from the 2/3-dealiased velocity of the first Heun stage (no extra FFTs)."""
        ux, uy = velocity
        speed = torch.sqrt(ux ** 2 + uy ** 2).flatten(1).max(dim=1).values
        if not per_sample:
            speed = speed.max().reshape(1)
        dt_visc = 0.5 * self.grid_h ** 2 * self.re / self.xi
        out = []
        for s in speed.tolist():
            out.append(dt_visc if s == 0 else min(0.5 * self.grid_h / s, dt_visc))
        return out

    def advance(self, w_hat, t_final, mode, fixed_dt):
        """Advance a batch (all samples share the step sequence)."""
        t = 0.0
        steps = 0
        while t < t_final:
            n1, vel = self.advection(w_hat)
            dt = fixed_dt if mode == "fixed" else self.cfl(vel, per_sample=False)[0]
            h = t_final - t if t + dt > t_final else dt
            a = 0.5 * h * self.visc
            w_mid = (w_hat + h * n1 - a * w_hat) / (1.0 + a)
            n2, _ = self.advection(w_mid)
            w_hat = (w_hat + h * 0.5 * (n1 + n2) - a * w_hat) / (1.0 + a)
            t += h
            steps += 1
        return w_hat, steps

    def solve(self, w0, t_final, mode, fixed_dt):
        """w0: (N, H, W). mode 'sample' solves every sample with its own CFL step."""
        if mode == "sample":
            outs, steps = [], []
            for b in range(w0.shape[0]):
                wh, n = self.advance(torch.fft.rfft2(w0[b:b + 1]), t_final, "batch", fixed_dt)
                outs.append(torch.fft.irfft2(wh, s=(self.h, self.w)))
                steps.append(n)
            return torch.cat(outs, 0), steps
        wh, n = self.advance(torch.fft.rfft2(w0), t_final, mode, fixed_dt)
        return torch.fft.irfft2(wh, s=(self.h, self.w)), [n] * w0.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["solve", "bench", "jobs"])
    p.add_argument("--input", required=True)
    p.add_argument("--output")
    p.add_argument("--re", type=float, default=200.0)
    p.add_argument("--t", type=float, default=1.0)
    p.add_argument("--dt-mode", choices=["sample", "batch", "fixed"], default="sample")
    p.add_argument("--dt", type=float, default=2e-3)
    p.add_argument("--forcing", choices=["kolmogorov", "none"], default="kolmogorov")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.command == "jobs":
        with open(a.input) as fh:
            jobs = json.load(fh)
        report = []
        for job in jobs:
            dt_ = torch.float64 if job.get("dtype", "float64") == "float64" else torch.float32
            x = read_npy(job["input"]).to(dt_)
            if x.dim() == 2:
                x = x.unsqueeze(0)
            sv = SpectralNS(x.shape[1], x.shape[2], float(job.get("re", 200.0)), job.get("forcing", "kolmogorov"), dt_)
            with torch.no_grad():
                w, steps = sv.solve(x, float(job.get("t", 1.0)), job.get("dt_mode", "sample"), float(job.get("dt", 2e-3)))
            write_npy(job["output"], w.to(dt_))
            report.append({"output": job["output"], "steps": steps})
        print(json.dumps(report))
        return 0
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    w0 = read_npy(a.input).to(dtype)
    if w0.dim() == 2:
        w0 = w0.unsqueeze(0)
    solver = SpectralNS(w0.shape[1], w0.shape[2], a.re, a.forcing, dtype)
    with torch.no_grad():
        if a.command == "solve":
            w, steps = solver.solve(w0, a.t, a.dt_mode, a.dt)
            if a.output:
                write_npy(a.output, w.to(dtype))
            print(json.dumps({"steps": steps}))
        else:
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                w, steps = solver.solve(w0, a.t, a.dt_mode, a.dt)
                times.append(time.perf_counter() - t0)
            print(json.dumps({"seconds": times, "steps": steps, "threads": torch.get_num_threads(),
                              "torch": torch.__version__, "finite": bool(torch.isfinite(w).all())}))


if __name__ == "__main__":
    sys.exit(main())
