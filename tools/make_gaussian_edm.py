"""Writes fixtures/torchscript/gaussian_edm.pt: a TorchScript module with the EDM signature
`forward(x, sigma) -> D(x; sigma)` that is the exact denoiser of the standard normal prior,
`D(x; sigma) = x / (1 + sigma^2)`. It stands in for an exported EDM checkpoint in the test of
`diffinv-reproduce imaging --prior FILE.pt` (crates/reproduce/tests/imaging.rs).

Usage: python tools/make_gaussian_edm.py OUT.pt
"""
import sys

import torch


class GaussianEdm(torch.nn.Module):
    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1, 1, 1)
        return x / (1.0 + s * s)


if __name__ == "__main__":
    torch.jit.script(GaussianEdm()).save(sys.argv[1])
