"""PyTorch baselines for `cargo xtask bench ensemble`.

A small line protocol so that xtask can interleave PyTorch and Rust measurements:
xtask starts this script once and writes commands on stdin, one per line:

    case N D M          allocate random X (N, D), Y (N, M), R (N, M) in float32
    sgemm [K]           time K (default 1) SGEMMs of the dominant EnKG shape, (N, N) @ (N, D)
    update [K]          time K EnKG updates in PyTorch:
                            C  = R @ (Y - Y.mean(0)).T / N
                            dX = C @ (X - X.mean(0))
    quit

After each timing command the script prints one JSON line
{"what": ..., "seconds": s, "gflop": g, "gflops": g / s} (s per call, mean over the K); flops are 2 N^2 D for sgemm and
2 N^2 (D + M) for update (anomalies not counted), as on the Rust side.
Usage: python bench_ensemble.py THREADS
"""

import json
import sys
import time

import torch


def main() -> None:
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = y = r = c = None
    n = d = m = 0
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        if cmd == "quit":
            break
        if cmd == "case":
            n, d, m = (int(v) for v in parts[1:4])
            x = torch.randn(n, d)
            y = torch.randn(n, m)
            r = torch.randn(n, m)
            c = torch.randn(n, n)
            # warm-up: first calls pay for allocation and library initialisation
            torch.mm(c, x)
            _update(x, y, r)
            print(json.dumps({"what": "case", "n": n, "d": d, "m": m}), flush=True)
            continue
        k = int(parts[1]) if len(parts) > 1 else 1
        if cmd == "sgemm":
            t0 = time.perf_counter()
            for _ in range(k):
                out = torch.mm(c, x)
                del out
            dt = (time.perf_counter() - t0) / k
            gflop = 2.0 * n * n * d / 1e9
        elif cmd == "update":
            t0 = time.perf_counter()
            for _ in range(k):
                out = _update(x, y, r)
                del out
            dt = (time.perf_counter() - t0) / k
            gflop = 2.0 * n * n * (d + m) / 1e9
        else:
            print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
            continue
        print(json.dumps({"what": cmd, "seconds": dt, "gflop": gflop, "gflops": gflop / dt}), flush=True)


def _update(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    dy = y - y.mean(dim=0, keepdim=True)
    c = (r @ dy.T) / n
    return c @ (x - x.mean(dim=0, keepdim=True))


if __name__ == "__main__":
    main()
