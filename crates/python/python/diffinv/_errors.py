"""The exceptions diffinv raises (importable as ``diffinv.ConfigError`` and so on).

Each is also a subclass of the built-in exception a Python user would expect, so that
``except ValueError`` keeps working: a bad configuration or problem is a ``ValueError``, a run
that fails is a ``RuntimeError``. Wrong argument types are plain ``TypeError`` and wrong array
shapes or non-finite values plain ``ValueError`` naming the argument.
"""


class DiffinvError(Exception):
    """Base class of the errors diffinv raises itself."""


class ConfigError(DiffinvError, ValueError):
    """An unknown method or configuration key, or a value out of range.

    The message names the key and its close matches, e.g.
    ``unknown key "num_particle" for EnKG; did you mean num_particles?``.
    """


class ProblemError(DiffinvError, ValueError):
    """Prior, forward model and likelihood do not fit together (dimensions), or the method needs
    a capability the problem does not offer (a gradient, a linear model, a Gaussian
    likelihood)."""


class SolverError(DiffinvError, RuntimeError):
    """A run failed: a particle became non-finite, every row of a block failed in the forward
    model, the prior failed. The message names the step and the particle."""


__all__ = ["DiffinvError", "ConfigError", "ProblemError", "SolverError"]
