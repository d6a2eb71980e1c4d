#!/usr/bin/env python3
"""Export the EnKG reference's Navier-Stokes prior to TorchScript for diffinv.

The reference implementations (devzhk/enkg-pytorch and devzhk/InverseBench, for the paper
"Ensemble Kalman Diffusion Guidance", arXiv 2409.20175) train an EDM-preconditioned U-Net on
128 x 128 vorticity fields and store it as a checkpoint whose key `ema` (InverseBench also
`net`) holds the state dict of `models.precond.EDMPrecond`. The network code is theirs and is
not shipped with diffinv, so this tool imports it from YOUR checkout of either repository:

    python tools/export_ns_checkpoint.py --reference-repo ~/src/enkg-pytorch \\
        --checkpoint ~/src/enkg-pytorch/checkpoints/ns-5m.pt --out ns-prior.pt --device cuda

It builds `EDMPrecond` with the reference's Navier-Stokes configuration
(`configs/pretrain/navier-stokes.yaml`: DhariwalUNet, 1 x 128 x 128, 128 base channels,
multipliers 1, 1, 1, 2, 2, attention at 16, 1 block per level, no labels; `--model-kwargs`
overrides any of these), loads the state dict strictly, wraps the network as
`forward(x, sigma) -> D(x; sigma)` (x: (B, 1, H, W) float32 in the network's units, vorticity
/ 10; sigma: (B,) float32) and traces it with torch.jit.trace. diffinv loads the result with
`cargo xtask reproduce ns --paper --prior ns-prior.pt --test-data fields.npy`.

A traced module keeps the device it was traced on wherever the network creates tensors itself
(the reference's positional embedding does): export with `--device cuda` for a run on a GPU and
with `--device cpu` for a run on the CPU. The tool checks the trace against the eager network
on a second batch size and other noise levels before it writes anything.

Checkpoints are read with `torch.load(weights_only=True)` (tensors only). A checkpoint that
pickles whole modules (the reference also accepts those) needs `--allow-pickle`, which runs the
pickle's code: use it only on files you trust.

Errors are one line on stderr (exit status 1) and leave --out untouched.
"""
import argparse
import json
import math
import os
import re
import sys
import tempfile
import warnings

# The reference's Navier-Stokes network (configs/pretrain/navier-stokes.yaml, `model:`).
REFERENCE_NS_MODEL = {
    "model_type": "DhariwalUNet",
    "img_resolution": 128,
    "img_channels": 1,
    "label_dim": 0,
    "model_channels": 128,
    "channel_mult": [1, 1, 1, 2, 2],
    "attn_resolutions": [16],
    "num_blocks": 1,
    "dropout": 0.0,
}


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ExportError(Exception):
    pass


def check_repo(repo):
    if not os.path.isdir(repo):
        raise ExportError(f"--reference-repo {repo}: no such folder")
    if not os.path.isfile(os.path.join(repo, "models", "precond.py")):
        raise ExportError(
            f"--reference-repo {repo} has no models/precond.py: pass a checkout of "
            "devzhk/enkg-pytorch or devzhk/InverseBench"
        )


def load_network_class(repo):
    sys.path.insert(0, os.path.abspath(repo))
    try:
        from models.precond import EDMPrecond  # noqa: E402  (the reference's module)
    except Exception as e:  # an import error inside the user's checkout
        raise ExportError(
            f"importing models.precond.EDMPrecond from {repo} failed: {type(e).__name__}: {e} "
            "(run this tool with the reference's Python environment)"
        )
    return EDMPrecond


def read_state_dict(torch, path, allow_pickle):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not allow_pickle:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(
                f"--checkpoint {path} is not a tensors-only checkpoint ({first[:160]}); "
                "if it pickles the network itself and you trust it, pass --allow-pickle"
            )
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise ExportError(f"--checkpoint {path}: cannot be read ({type(e2).__name__}: {e2})")
    if isinstance(ckpt, torch.nn.Module):
        return ckpt.state_dict()
    if not isinstance(ckpt, dict):
        raise ExportError(f"--checkpoint {path} holds a {type(ckpt).__name__}, not a dict or a module")
    for key in ("ema", "net"):
        if key in ckpt:
            v = ckpt[key]
            if isinstance(v, torch.nn.Module):
                return v.state_dict()
            if isinstance(v, dict):
                return v
            raise ExportError(f"--checkpoint {path}: '{key}' holds a {type(v).__name__}")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt  # a bare state dict
    keys = ", ".join(sorted(map(str, ckpt.keys()))[:8])
    raise ExportError(f"--checkpoint {path} has neither 'ema' nor 'net' (its keys: {keys})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-repo", required=True, help="your checkout of devzhk/enkg-pytorch or devzhk/InverseBench")
    p.add_argument("--checkpoint", required=True, help="the Navier-Stokes checkpoint (e.g. checkpoints/ns-5m.pt)")
    p.add_argument("--out", required=True, help="TorchScript file to write")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N: where the trace will run")
    p.add_argument("--model-kwargs", default="{}", help="JSON object overriding EDMPrecond's Navier-Stokes arguments")
    p.add_argument("--allow-pickle", action="store_true", help="also read checkpoints that pickle code (trusted files only)")
    args = p.parse_args(argv)
    try:
        export(args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def export(args):
    try:
        overrides = json.loads(args.model_kwargs)
    except json.JSONDecodeError as e:
        raise ExportError(f"--model-kwargs is not JSON: {e}")
    if not isinstance(overrides, dict):
        raise ExportError("--model-kwargs must be a JSON object")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise ExportError(f"--out {args.out}: the folder {out_dir} does not exist")
    dev = args.device.strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda|cuda:[0-9]+", dev):
        raise ExportError(f"--device {args.device!r} is not auto, cpu, cuda or cuda:N")
    check_repo(args.reference_repo)
    if not os.path.isfile(args.checkpoint):
        raise ExportError(f"--checkpoint {args.checkpoint}: no such file")
    import torch

    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(dev.split(":")[1]) if ":" in dev else 0
        if index >= count:
            raise ExportError(f"--device {args.device}: this torch sees {count} CUDA device(s)")
    device = torch.device(dev)

    EDMPrecond = load_network_class(args.reference_repo)
    kwargs = dict(REFERENCE_NS_MODEL)
    kwargs.update(overrides)
    try:
        net = EDMPrecond(**kwargs)
    except Exception as e:
        raise ExportError(f"EDMPrecond({json.dumps(kwargs)}) failed: {type(e).__name__}: {e}")
    state = read_state_dict(torch, args.checkpoint, args.allow_pickle)
    fits = "EDMPrecond(" + (json.dumps(overrides) if overrides else "the reference NS config") + ")"
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise ExportError(f"--checkpoint {args.checkpoint} does not fit {fits}: {detail[:200]}")
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(
            f"--checkpoint {args.checkpoint} does not fit {fits}: "
            f"{len(result.missing_keys)} missing keys (first: {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (first: {result.unexpected_keys[:3]})"
        )
    net = net.to(torch.float32).to(device).eval()
    c, r = int(getattr(net, "img_channels", kwargs["img_channels"])), int(getattr(net, "img_resolution", kwargs["img_resolution"]))

    class Denoiser(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, x, sigma):
            return self.net(x, sigma).to(torch.float32)

    wrapper = Denoiser(net).eval()
    # The reference's U-Net compares shapes in Python while it runs; the tracer warns that those
    # comparisons become constants, which is what we want (the trace is checked below).
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, r, r, generator=g).to(device)
    sigma = torch.tensor([0.5, 2.0]).to(device)
    with torch.no_grad():
        try:
            traced = torch.jit.trace(wrapper, (x, sigma), check_trace=False)
        except Exception as e:
            raise ExportError(f"tracing the network failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        # The trace must generalise: another batch size and other noise levels.
        x3 = torch.randn(3, c, r, r, generator=g).to(device) * 3.0
        s3 = torch.tensor([0.01, 1.0, 80.0]).to(device)
        err = 0.0
        for xx, ss in ((x, sigma), (x3, s3)):
            a, b = traced(xx, ss), wrapper(xx, ss)
            if a.shape != xx.shape:
                raise ExportError(f"the network returns shape {tuple(a.shape)} for input {tuple(xx.shape)}")
            err = max(err, (a - b).abs().max().item())
        scale = max(1.0, wrapper(x3, s3).abs().max().item())
    if not math.isfinite(err) or err > 1e-4 * scale:
        raise ExportError(f"the traced network differs from the eager one by {err:.3g}: it does not trace faithfully")
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".pt", dir=out_dir)
    os.close(fd)
    try:
        traced.save(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"exported EDMPrecond ({c} x {r} x {r}, {n_params} parameters) from {args.checkpoint} to {args.out} "
        f"for {device}; max |traced - eager| = {err:.2e}"
    )


if __name__ == "__main__":
    sys.exit(main())
