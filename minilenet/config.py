"""Global settings: the default dtype and which kernel backend the layers use.

The backend is chosen in exactly one place (``backend_for``): a per-layer
override wins, then ``using(backend=...)``, then the ``MINILENET_BACKEND``
environment variable, then "numpy" in a student copy (``assignment.WITHHELD``),
then "numba" when Numba is importable, else "numpy".

Which backends the notebooks, the tests and ``minilenet gradcheck`` run, compare
or time is decided here too (``backends``): in a student copy the Numba kernels
are not part of the assignment (their twins of the withheld units are stubs), so
only the student's NumPy code runs, and ``numba_left_out`` says so in one line.
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
    if withheld():                   # a student copy: run the student's NumPy code
        return "numpy"
    return "numba" if numba_available() else "numpy"


def withheld():
    """The units of this copy that are the student's (``assignment.WITHHELD``; none
    in the instructor's checkout)."""
    from .assignment import WITHHELD
    return WITHHELD


def numba_left_out(*units):
    """Why the Numba kernels do not run here, in one line, or "" where they do.

    ``units``: the units the caller exercises, to name them when they are withheld
    (a loop that cannot tell which unit it exercises names none)."""
    if not withheld():
        return "" if numba_available() else "numba is not installed (pip install numba)"
    named = [u for u in units if u in withheld()]
    if len(named) == 1:
        return f"the Numba twin of {named[0]} is not part of this assignment"
    if named:
        return f"the Numba twins of {', '.join(named)} are not part of this assignment"
    return (f"the Numba kernels are not part of this assignment (units withheld: "
            f"{', '.join(sorted(withheld()))})")


def backends(*units):
    """The backends to run, compare or time ``units`` on: "numpy", and "numba" unless
    ``numba_left_out(*units)``."""
    return ["numpy"] + ([] if numba_left_out(*units) else ["numba"])


class NumbaLeftOut(Exception):
    """A notebook cell about the Numba kernels, where they do not run (``require_numba``).
    In a student copy the notebook extension reports it in one line and goes on."""


def require_numba(*units):
    """Raise NumbaLeftOut (why, in one line) unless the Numba kernels run here."""
    reason = numba_left_out(*units)
    if reason:
        raise NumbaLeftOut(reason)


def code_label(*units):
    """How a notebook names the code of ``units``: "your code" when one of them is
    the student's, else "as shipped"."""
    return "your code" if set(units) & withheld() else "as shipped"


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
