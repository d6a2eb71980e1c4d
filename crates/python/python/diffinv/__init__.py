"""diffinv: inverse problems ``y = G(x) + n`` with diffusion-model priors, from Python.

The Rust core of diffinv (EnKG, CPS and every other method of its registry, the exact
Gaussian / Gaussian-mixture priors, the built-in forward models, the metrics) behind numpy
arrays. A forward model is any Python callable mapping an ``(n, d)`` float32 array to an
``(n, m)`` array, or one of the built-in operators (evaluated in Rust without a Python round
trip)::

    import numpy as np, diffinv
    prior = diffinv.GaussianMixture([0.5, 0.5], means=[[-2, 0], [2, 0]], variance=0.25)
    G = lambda x: np.stack([x[:, 0] + 0.1 * x[:, 1] ** 3, x[:, 1]], axis=1)
    res = diffinv.solve("EnKG", prior, G, y=[1.8, 0.1], sigma=0.1, num_particles=256)
    res.mean, res.std, res.cost["fwd_total"]

Names:

- ``solve``, ``methods``, ``Result``, ``Method``: run a method, list the registry;
- priors: ``Gaussian``, ``GaussianMixture``, ``TrainedPrior``, ``TorchScriptPrior`` (base
  ``Prior``);
- forward models: ``Matrix``, ``NavierStokes``, ``EHT``, ``Inpainting``, ``SuperResolution``,
  ``Blur``, ``PhaseRetrieval``, ``HDR`` (base ``Operator``), ``EhtObservation``;
- likelihoods: ``GaussianLikelihood``, ``ClosureLikelihood`` (base ``Likelihood``);
- metrics: ``sliced_wasserstein``, ``relative_l2``, ``psnr``, ``ssim``, ``misfit``;
- errors: ``DiffinvError``, ``ConfigError``, ``ProblemError``, ``SolverError``;
- ``HAS_TORCH``: whether this build has the neural priors (libtorch, from ``torch==2.11.0``).

Arrays: every array argument is read with ``numpy.asarray(x, dtype=float32)``: lists, ints,
float64 and non-contiguous arrays are accepted (and copied), complex, object and string arrays
are a ``TypeError`` naming the argument. The API reference is docs/python.md.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from ._errors import ConfigError, DiffinvError, ProblemError, SolverError

#: The torch release a build with libtorch support needs (the one tch 0.24 pairs with).
TORCH_VERSION = "2.11.0"


def _load_extension():
    """Import the compiled module. A build with libtorch support links libtorch_cpu.so and
    friends from an installed torch: when the dynamic loader cannot find them, import torch
    first (it loads libtorch, which the extension then reuses by soname) and try again."""
    try:
        from . import _diffinv

        return _diffinv
    except ImportError as first:
        text = str(first)
        if not any(lib in text for lib in ("libtorch", "libc10")):
            raise
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"diffinv was built with libtorch support and needs torch=={TORCH_VERSION}, "
            f"which is not importable: pip install torch=={TORCH_VERSION}"
        ) from None
    version = torch.__version__.split("+")[0]
    if version != TORCH_VERSION:
        raise ImportError(
            f"diffinv was built with libtorch support for torch=={TORCH_VERSION}, "
            f"but torch {torch.__version__} is installed: pip install torch=={TORCH_VERSION}"
        )
    from . import _diffinv

    return _diffinv


_ext = _load_extension()

__version__: str = _ext.__version__
HAS_TORCH: bool = _ext.HAS_TORCH

Prior = _ext.Prior
Gaussian = _ext.Gaussian
GaussianMixture = _ext.GaussianMixture
TrainedPrior = _ext.TrainedPrior
TorchScriptPrior = _ext.TorchScriptPrior

Operator = _ext.Operator
Matrix = _ext.Matrix
NavierStokes = _ext.NavierStokes
EHT = _ext.EHT
EhtObservation = _ext.EhtObservation
Inpainting = _ext.Inpainting
SuperResolution = _ext.SuperResolution
Blur = _ext.Blur
PhaseRetrieval = _ext.PhaseRetrieval
HDR = _ext.HDR

Likelihood = _ext.Likelihood
GaussianLikelihood = _ext.GaussianLikelihood
ClosureLikelihood = _ext.ClosureLikelihood

sliced_wasserstein = _ext.sliced_wasserstein
relative_l2 = _ext.relative_l2
psnr = _ext.psnr
ssim = _ext.ssim
misfit = _ext.misfit


@dataclasses.dataclass(frozen=True)
class Method:
    """One method of the registry (see ``methods()``).

    Attributes:
        name: what ``solve`` takes (``"EnKG"``, ``"CPS"``, ``"DPS"``, ...).
        summary: what it is, with its paper and arXiv id.
        family: ``"derivative-free"``, ``"gradient-based"``, ``"classical"`` or ``"baseline"``.
        defaults: every configuration key with its default value (nested tables as dicts).
        requires: the capabilities it needs of a problem: ``"gradient"`` (a differentiable or
            linear built-in operator), ``"linear"`` (a linear operator with its adjoint),
            ``"gaussian-likelihood"`` (a scalar ``sigma``). Python callables offer none.
    """

    name: str
    summary: str
    family: str
    defaults: Dict[str, Any]
    requires: List[str]


def methods() -> List[Method]:
    """Every method of the registry, in a fixed order (derivative-free first).

    >>> [m.name for m in diffinv.methods()][:2]
    ['EnKG', 'CPS']
    >>> diffinv.methods()[0].defaults["num_particles"]
    512
    """
    return [Method(**m) for m in _ext.methods()]


@dataclasses.dataclass
class Result:
    """What ``solve`` returns.

    Attributes:
        samples: the final samples, ``(n, d)`` float32, in physical units (a prior with a
            normalisation is mapped back with ``x = scale * z + shift``). Reshape image samples
            with ``samples.reshape(-1, *prior.shape)``.
        mean: ``samples.mean(axis=0)``, ``(d,)`` float64.
        std: ``samples.std(axis=0)``, ``(d,)`` float64 (population standard deviation).
        cost: the cost ledger: ``fwd_total``/``fwd_seq`` (forward-model rows / batched calls),
            ``den_total``/``den_seq`` (denoiser rows / calls), ``den_grad_*``, ``fwd_grad_*``
            (vector-Jacobian products), ``failed`` (forward rows that failed and were handled by
            the failure policy), ``seconds`` (wall time), ``fwd_seconds`` (inside the forward
            model, your callable included), ``den_seconds`` (inside the prior) and
            ``overhead_seconds`` (the rest).
        steps: one dict per step: ``step``, ``sigma`` (noise level), ``guided``, ``misfit``
            (mean negative log-likelihood of the step's clean estimates, or None), ``spread``
            (RMS distance of the particles to their mean), and the cumulative ``fwd_total``,
            ``den_total``, ``failed``, ``seconds``.
        method: the method's name.
        seed: the seed.
        config: the full configuration the method ran with (defaults and your keys).
    """

    samples: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    cost: Dict[str, float]
    steps: List[Dict[str, Any]]
    method: str
    seed: int
    config: Dict[str, Any]

    def __repr__(self) -> str:
        n, d = self.samples.shape
        return (
            f"Result(method={self.method!r}, samples=({n}, {d}), "
            f"fwd_total={self.cost.get('fwd_total')}, seconds={self.cost.get('seconds', 0.0):.3f})"
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"configuration values must be numbers, strings, booleans, lists or dicts, got {type(obj).__name__}")


ForwardLike = Union[Operator, Callable[[np.ndarray], Any]]


def solve(
    method: str,
    prior: Prior,
    forward: ForwardLike,
    y: Any = None,
    likelihood: Optional[Likelihood] = None,
    sigma: Any = None,
    seed: int = 0,
    progress: bool = True,
    on_error: str = "raise",
    **config: Any,
) -> Result:
    """Solve ``y = G(x) + n`` with ``method`` and the diffusion prior ``prior``.

    Args:
        method: a name from ``methods()`` (``"EnKG"``, ``"CPS"``, ``"DPS"``, ...). An unknown name
            is a ``ConfigError`` naming the close matches.
        prior: a ``Gaussian``, ``GaussianMixture``, ``TrainedPrior`` or ``TorchScriptPrior``.
        forward: a built-in operator (``NavierStokes``, ``EHT``, ``Matrix``, the imaging ones:
            evaluated in Rust, with its gradient/adjoint when it has one), or any callable
            ``f(x) -> y`` mapping an ``(n, d)`` float32 array (C-contiguous, a fresh copy) to an
            ``(n, m)`` array of any real dtype (converted to float32). It is called once per
            batch (an ensemble, a set of candidates), never once per row, with the GIL held,
            from a worker thread. A row containing NaN or inf is a failed sample: the
            derivative-free methods exclude it from that step's statistics and evaluate it
            again at the next step; only a block in which every row fails stops the run. A
            wrong output shape is a ``ValueError``.
        y: the observation (``(m,)``; any shape is flattened; no NaN/inf), with ``sigma``.
        likelihood: instead of ``y`` and ``sigma``: a ``GaussianLikelihood`` or
            ``ClosureLikelihood`` (which hold their observation).
        sigma: the noise standard deviation of ``y``: a scalar (``0`` means noiseless data,
            weight 1) or one value per measurement.
        seed: every random draw is keyed by ``(seed, purpose, step, particle)``: the same seed
            gives bit-identical samples, whatever the thread count, and the same samples as
            the Rust library.
        progress: show a progress bar on stderr (when it is a terminal).
        on_error: what an exception raised by a callable forward model does: ``"raise"``
            (default: the run stops and the exception propagates with its traceback, a note
            naming the method and step added) or ``"fail-rows"`` (every row of that batch
            fails; the failure policy above decides whether the run goes on).
        **config: the method's configuration keys (``methods()`` lists them with their
            defaults), e.g. ``num_particles=256, num_steps=50``; nested tables as dicts. A
            misspelt key is a ``ConfigError`` naming it and its close matches.

    Returns:
        ``Result`` with ``samples``, ``mean``, ``std``, ``cost`` and ``steps``.

    Ctrl-C stops the run before its next step or the next call of a callable forward model (a
    call in progress finishes first) and raises ``KeyboardInterrupt``.

    The Rust computation runs with the GIL released; other Python threads keep running.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string (a name from diffinv.methods()), got {type(method).__name__}")
    if not isinstance(prior, Prior):
        raise TypeError(
            "prior must be a diffinv prior (Gaussian, GaussianMixture, TrainedPrior, TorchScriptPrior), "
            f"got {type(prior).__name__}"
        )
    if not isinstance(forward, Operator) and not callable(forward):
        raise TypeError(
            "forward must be a diffinv operator or a callable mapping an (n, d) float32 array "
            f"to an (n, m) array, got {type(forward).__name__}"
        )
    if likelihood is not None:
        if y is not None or sigma is not None:
            raise ValueError("give either y and sigma or likelihood (which holds its observation), not both")
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                "likelihood must be a diffinv likelihood (GaussianLikelihood, ClosureLikelihood), "
                f"got {type(likelihood).__name__}"
            )
    else:
        if y is None:
            raise ValueError("solve needs the observation: pass y (with sigma) or likelihood")
        if sigma is None:
            raise ValueError(
                "solve needs the noise level of y: pass sigma (a scalar, 0 for noiseless data, "
                "or one value per measurement) or a likelihood"
            )
        likelihood = GaussianLikelihood(y, sigma)
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}") from None
    if seed < 0 or seed >= 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    config_json = json.dumps(config, default=_json_default, allow_nan=False)
    samples, cost, steps, full = _ext._solve(
        method, prior, forward, likelihood, seed, bool(progress), on_error, config_json
    )
    samples = np.asarray(samples)
    return Result(
        samples=samples,
        mean=samples.mean(axis=0, dtype=np.float64),
        std=samples.std(axis=0, dtype=np.float64),
        cost=cost,
        steps=steps,
        method=method,
        seed=seed,
        config=full,
    )


__all__ = [
    "solve",
    "methods",
    "Result",
    "Method",
    "Prior",
    "Gaussian",
    "GaussianMixture",
    "TrainedPrior",
    "TorchScriptPrior",
    "Operator",
    "Matrix",
    "NavierStokes",
    "EHT",
    "EhtObservation",
    "Inpainting",
    "SuperResolution",
    "Blur",
    "PhaseRetrieval",
    "HDR",
    "Likelihood",
    "GaussianLikelihood",
    "ClosureLikelihood",
    "sliced_wasserstein",
    "relative_l2",
    "psnr",
    "ssim",
    "misfit",
    "DiffinvError",
    "ConfigError",
    "ProblemError",
    "SolverError",
    "HAS_TORCH",
    "TORCH_VERSION",
]
