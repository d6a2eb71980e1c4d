"""Writes fixtures/lpips/mse_standin.pt: a TorchScript module with the signature of an LPIPS
network exported from the `lpips` package (`forward(in0, in1) -> (N, 1, 1, 1)` on (N, 3, H, W)
images in [-1, 1]) that returns the per-image mean squared difference. It tests the plumbing of
`cargo xtask reproduce imaging --lpips PATH` (crates/reproduce/tests/imaging.rs), not LPIPS.

Usage: python tools/make_lpips_standin.py OUT.pt
"""
import sys

import torch


class MseStandIn(torch.nn.Module):
    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        if in0.shape[1] != 3 or in1.shape[1] != 3:
            raise ValueError("LPIPS takes RGB images")
        return ((in0 - in1) ** 2).mean(dim=[1, 2, 3], keepdim=True)


if __name__ == "__main__":
    torch.jit.script(MseStandIn()).save(sys.argv[1])
