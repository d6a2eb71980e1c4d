"""Type stubs of the compiled module ``diffinv._diffinv`` (re-exported by ``diffinv``).

Array arguments (``ArrayLike``) are read with ``numpy.asarray(x, dtype=float32)`` (float64 for
the parameters of the analytic priors): lists, ints, other float widths and non-contiguous
arrays are accepted and copied; complex, object and string arrays raise ``TypeError``.
"""

import pathlib
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Path = Union[str, "PathLike[str]"]

HAS_TORCH: bool
TORCH_VERSION: str
__version__: str

# --- priors -------------------------------------------------------------------------------

class Prior:
    """A diffusion prior: a denoiser D(x; sigma) ~ E[x_0 | x_0 + sigma eps = x]."""

    @property
    def dim(self) -> int: ...
    @property
    def shape(self) -> List[int]: ...
    @property
    def normalization(self) -> Tuple[float, float]: ...
    def denoise(self, x: ArrayLike, sigma: float) -> F32: ...

class Gaussian(Prior):
    """N(mean, Sigma) with its exact denoiser."""

    def __new__(
        cls, mean: ArrayLike, variance: Optional[ArrayLike] = None, covariance: Optional[ArrayLike] = None
    ) -> "Gaussian": ...
    @property
    def mean(self) -> F64: ...
    @property
    def covariance(self) -> F64: ...
    def sample(self, n: int, seed: int = 0) -> F32: ...
    def posterior(self, A: ArrayLike, y: ArrayLike, sigma: float) -> "Gaussian": ...

class GaussianMixture(Prior):
    """sum_k w_k N(mu_k, Sigma_k) with its exact denoiser and exact posterior."""

    def __new__(
        cls,
        weights: ArrayLike,
        means: ArrayLike,
        variance: Optional[ArrayLike] = None,
        covariances: Optional[ArrayLike] = None,
    ) -> "GaussianMixture": ...
    @property
    def weights(self) -> F64: ...
    @property
    def means(self) -> F64: ...
    @property
    def covariances(self) -> F64: ...
    @property
    def mean(self) -> F64: ...
    def sample(self, n: int, seed: int = 0) -> F32: ...
    def posterior(self, A: ArrayLike, y: ArrayLike, sigma: float) -> "GaussianMixture": ...

class TrainedPrior(Prior):
    """A prior trained by `cargo xtask train` (needs a build with libtorch)."""

    def __new__(cls, folder: Path, device: str = "cpu", batch_size: int = 64) -> "TrainedPrior": ...
    @property
    def folder(self) -> pathlib.Path: ...

class TorchScriptPrior(Prior):
    """A TorchScript prior, kind "edm" or "vp-eps" (needs a build with libtorch)."""

    def __new__(
        cls,
        path: Path,
        shape: Sequence[int],
        kind: str = "edm",
        device: str = "cpu",
        batch_size: int = 16,
        shift: float = 0.0,
        scale: float = 1.0,
    ) -> "TorchScriptPrior": ...
    @property
    def path(self) -> pathlib.Path: ...

# --- forward models -----------------------------------------------------------------------

class Operator:
    """A built-in forward model y = G(x), callable from Python."""

    @property
    def input_shape(self) -> List[int]: ...
    @property
    def output_shape(self) -> List[int]: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def linear(self) -> bool: ...
    @property
    def differentiable(self) -> bool: ...
    def __call__(self, x: ArrayLike) -> F32: ...
    def adjoint(self, v: ArrayLike) -> F32: ...
    def vjp(self, x: ArrayLike, v: ArrayLike) -> F32: ...

class Matrix(Operator):
    def __new__(cls, A: ArrayLike) -> "Matrix": ...
    @property
    def A(self) -> F32: ...

class NavierStokes(Operator):
    def __new__(
        cls,
        resolution: int = 128,
        subsample: int = 2,
        reynolds: float = 200.0,
        t_final: float = 1.0,
        noise_sigma: float = 0.0,
        input_scale: float = 1.0,
        precision: str = "f32",
    ) -> "NavierStokes": ...
    def observe(self, x: ArrayLike, seed: int = 0) -> F32: ...
    @property
    def noise_sigma(self) -> float: ...

class EhtObservation:
    @property
    def cphase(self) -> F64: ...
    @property
    def cphase_sigma(self) -> F64: ...
    @property
    def logcamp(self) -> F64: ...
    @property
    def logcamp_sigma(self) -> F64: ...
    @property
    def flux(self) -> float: ...
    @property
    def vis(self) -> npt.NDArray[np.complex128]: ...
    @property
    def vis_sigma(self) -> F64: ...
    @property
    def measurement(self) -> F32: ...

class EHT(Operator):
    def __new__(cls, jy_per_unit: float = 0.005, input_shift: float = 0.0, input_scale: float = 1.0) -> "EHT": ...
    @property
    def n_cphase(self) -> int: ...
    @property
    def n_logcamp(self) -> int: ...
    def simulate(self, x: ArrayLike, noise: bool = True, seed: int = 0) -> EhtObservation: ...
    def visibilities(self, x: ArrayLike) -> npt.NDArray[np.complex64]: ...

class Inpainting(Operator):
    def __new__(
        cls,
        shape: Sequence[int],
        kind: str = "box",
        fraction: float = 0.7,
        seed: int = 0,
        mask: Optional[ArrayLike] = None,
    ) -> "Inpainting": ...
    @property
    def mask(self) -> F32: ...

class SuperResolution(Operator):
    def __new__(cls, shape: Sequence[int], factor: int = 4, method: str = "bicubic") -> "SuperResolution": ...

class Blur(Operator):
    def __new__(
        cls,
        shape: Sequence[int],
        kind: str = "gaussian",
        kernel_size: int = 61,
        std: float = 3.0,
        intensity: float = 0.5,
        seed: int = 0,
        kernel: Optional[ArrayLike] = None,
    ) -> "Blur": ...
    @property
    def kernel(self) -> F32: ...

class PhaseRetrieval(Operator):
    def __new__(cls, shape: Sequence[int], oversample: float = 2.0) -> "PhaseRetrieval": ...

class HDR(Operator):
    def __new__(cls, shape: Sequence[int], alpha: float = 2.0) -> "HDR": ...

# --- likelihoods --------------------------------------------------------------------------

class Likelihood:
    @property
    def measurement_dim(self) -> int: ...
    @property
    def isotropic_gaussian(self) -> bool: ...
    def nll(self, y_pred: ArrayLike) -> Union[float, F32]: ...

class GaussianLikelihood(Likelihood):
    def __new__(cls, y: ArrayLike, sigma: ArrayLike) -> "GaussianLikelihood": ...
    @property
    def y(self) -> F32: ...
    @property
    def sigma(self) -> F32: ...

class ClosureLikelihood(Likelihood):
    def __new__(
        cls,
        observation: EhtObservation,
        phase: str = "wrapped",
        cphase_weight: float = 1.0,
        logcamp_weight: float = 1.0,
        flux_weight: float = 0.5,
        flux_scale: float = 2.0,
        overall: float = 2.0,
    ) -> "ClosureLikelihood": ...

# --- metrics ------------------------------------------------------------------------------

def sliced_wasserstein(a: ArrayLike, b: ArrayLike, projections: int = 1000, seed: int = 0) -> float: ...
def relative_l2(x: ArrayLike, reference: ArrayLike) -> float: ...
def psnr(x: ArrayLike, reference: ArrayLike, data_range: float = 2.0) -> float: ...
def ssim(x: ArrayLike, reference: ArrayLike, data_range: float = 2.0) -> float: ...
def misfit(y_pred: ArrayLike, y_obs: ArrayLike) -> float: ...

# --- the registry -------------------------------------------------------------------------

def methods() -> List[Dict[str, Any]]: ...
def _solve(
    method: str,
    prior: Prior,
    forward: Any,
    likelihood: Likelihood,
    seed: int,
    progress: bool,
    on_error: str,
    config_json: str,
) -> Tuple[F32, Dict[str, float], List[Dict[str, Any]], Dict[str, Any]]: ...
