"""Global settings: the default dtype and which kernel backend the layers use.

The backend is chosen in exactly one place (``backend_for``): a per-layer
override wins, then ``using(backend=...)``, then the ``MINILENET_BACKEND``
environment variable, then "numpy" in a student copy (``assignment.WITHHELD``),
then "numba" when Numba is importable, else "numpy".
"""
import contextlib
import importlib.util
import os

import numpy as np

from .errors import UserError

#: Training dtype. float32 halves memory traffic, and the paper's per-parameter
#: steps (at most eta/mu = 0.025) are far above float32 resolution. Gradient
#: checks always run in float64 (``model.astype(np.float64)``).
DEFAULT_DTYPE = np.dtype(np.float32)

BACKENDS = ("numpy", "numba")

_override = None


def numba_available():
    """True when the ``numba`` package can be imported."""
    return importlib.util.find_spec("numba") is not None


def default_backend():
    """The backend used when no layer override or ``using`` block applies."""
    if _override is not None:
        return _override
    env = os.environ.get("MINILENET_BACKEND")
    if env:
        return check_backend(env, "the MINILENET_BACKEND environment variable")
    from .assignment import WITHHELD
    if WITHHELD:                     # a student copy: run the student's NumPy code
        return "numpy"
    return "numba" if numba_available() else "numpy"


def check_backend(name, where="backend"):
    """Return ``name`` if it is a known backend, else raise UserError (a ValueError)."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r} in {where}: expected one of "
                        f"{', '.join(BACKENDS)}")
    return name


def backend_for(layer_backend=None):
    """The backend a layer should use: its own override, else the default."""
    return check_backend(layer_backend) if layer_backend else default_backend()


@contextlib.contextmanager
def using(backend):
    """Temporarily set the default backend: ``with config.using("numpy"): ...``."""
    global _override
    previous, _override = _override, check_backend(backend)
    try:
        yield
    finally:
        _override = previous
