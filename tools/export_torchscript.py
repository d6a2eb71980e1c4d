#!/usr/bin/env python3
"""Export pre-trained diffusion priors to TorchScript for diffinv (see docs/priors.md).

Two kinds of checkpoints:

  edm  An EDM network pickle (Karras et al. 2022, NVlabs/edm, e.g. edm-ffhq-64x64-uncond-vp.pkl).
       The exported module has the EDM signature forward(x, sigma) -> D(x; sigma), x of shape
       (B, C, H, W) in [-1, 1] units, sigma of shape (B,). Load it in Rust with
       `diffinv_priors::neural::ScriptedEdm::load(path, [C, H, W], device)`.

  dps  A guided-diffusion epsilon-prediction UNet (the DPS FFHQ checkpoint ffhq_10m.pt,
       Chung et al. 2023). The exported module has the signature forward(x_t, t) -> eps
       (6 output channels: epsilon and the learned variance; diffinv keeps the first 3), x_t of
       shape (B, 3, 256, 256), t a float tensor of discrete steps. Load it with
       `diffinv_priors::neural::ScriptedVpEpsilon::load_ddpm(path, [3, 256, 256], device)`.

Both need the authors' code on PYTHONPATH (--repo), because the checkpoints reference it.
The networks are traced (torch.jit.trace) with example inputs on the CPU in float32.
"""
import argparse
import pickle
import sys

import torch


class EdmWrapper(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, sigma):
        return self.net(x, sigma).to(torch.float32)


class EpsWrapper(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t):
        return self.model(x, t)


def export_edm(args):
    sys.path.insert(0, args.repo)
    with open(args.checkpoint, "rb") as f:
        net = pickle.load(f)["ema"].to(torch.float32).eval()
    c, r = net.img_channels, net.img_resolution
    wrapper = EdmWrapper(net).eval()
    x = torch.randn(2, c, r, r)
    sigma = torch.tensor([0.5, 2.0])
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (x, sigma), check_trace=False)
        err = (traced(x, sigma) - wrapper(x, sigma)).abs().max().item()
    traced.save(args.out)
    print(f"exported EDM network ({c} x {r} x {r}) to {args.out}; trace error {err:.2e}")


def export_dps(args):
    sys.path.insert(0, args.repo)
    from guided_diffusion.unet import create_model  # noqa: E402  (the DPS repository's package)

    # The FFHQ 256 configuration of DPS (configs/model_config.yaml).
    model = create_model(
        image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
        class_cond=False, use_checkpoint=False, attention_resolutions="16", num_heads=4,
        num_head_channels=64, num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0,
        resblock_updown=True, use_fp16=False, use_new_attention_order=False,
        model_path=args.checkpoint,
    ).to(torch.float32).eval()
    wrapper = EpsWrapper(model).eval()
    x = torch.randn(1, 3, 256, 256)
    t = torch.tensor([500.0])
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (x, t), check_trace=False)
        err = (traced(x, t) - wrapper(x, t)).abs().max().item()
    traced.save(args.out)
    print(f"exported DPS epsilon model to {args.out}; trace error {err:.2e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["edm", "dps"])
    p.add_argument("--checkpoint", required=True, help="the .pkl (edm) or .pt (dps) file")
    p.add_argument("--repo", required=True, help="folder of NVlabs/edm or DPS2022 (for their modules)")
    p.add_argument("--out", required=True, help="TorchScript file to write")
    args = p.parse_args()
    export_edm(args) if args.kind == "edm" else export_dps(args)


if __name__ == "__main__":
    main()
