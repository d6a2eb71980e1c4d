"""Shared fixtures of the diffinv Python tests (run by `cargo xtask test`, or
`python -m pytest crates/python/tests -q` after `pip install ./crates/python`)."""

import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import diffinv

REPO = pathlib.Path(__file__).resolve().parents[3]


def require(what: str) -> None:
    """Skip, or fail under `cargo xtask test` (DIFFINV_REQUIRE_PYTHON=1), where nothing may be
    skipped."""
    if os.environ.get("DIFFINV_REQUIRE_PYTHON") == "1":
        pytest.fail(f"{what} (required under cargo xtask test)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def rust_reference(tmp_path_factory) -> dict:
    """The samples the Rust library alone computes for the problems of
    crates/python/examples/rust_reference.rs: from the binary named by DIFFINV_RUST_REFERENCE
    (what `cargo xtask test` sets), else built and run with cargo."""
    out = tmp_path_factory.mktemp("rust") / "reference.npz"
    exe = os.environ.get("DIFFINV_RUST_REFERENCE")
    if exe:
        cmd = [exe, str(out)]
    elif shutil.which("cargo") and (REPO / "Cargo.toml").is_file():
        cmd = ["cargo", "run", "-q", "-p", "diffinv-python", "--example", "rust_reference", "--", str(out)]
    else:
        require("neither DIFFINV_RUST_REFERENCE nor cargo is available")
    subprocess.run(cmd, check=True, cwd=REPO, timeout=600)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def cubic(x: np.ndarray) -> np.ndarray:
    """The forward model of rust_reference.rs in numpy, operation for operation:
    G(x) = [x0 + 0.1 x1 x1 x1, x1 - x2, x0 x2]."""
    c = np.float32(0.1)
    return np.stack([x[:, 0] + c * x[:, 1] * x[:, 1] * x[:, 1], x[:, 1] - x[:, 2], x[:, 0] * x[:, 2]], axis=1)


@pytest.fixture
def small_gmm():
    """The mixture of rust_reference.rs."""
    return diffinv.GaussianMixture([0.3, 0.7], means=[[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]], variance=0.25)
