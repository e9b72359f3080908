"""Kernels: the array-crunching inner loops, in two interchangeable backends.

``numpy_ref`` is the readable specification; ``numba_jit`` defines the same
names with the same signatures. ``get(backend)`` returns one of the two
modules; Numba is imported only when its backend is asked for.
"""
import importlib

from .. import config

#: Names every backend module defines.
KERNEL_NAMES = (
    "im2col", "col2im",
    "conv2d_forward", "conv2d_backward",
    "table_conv2d_forward", "table_conv2d_backward",
    "subsample_forward", "subsample_backward",
    "dense_forward", "dense_backward", "rbf_forward", "rbf_backward",
)

#: Batches at least this large are split across threads by the Numba kernels;
#: smaller ones (the recipe's single samples) never start a thread.
PARALLEL_MIN = 8

_MODULES = {"numpy": "numpy_ref", "numba": "numba_jit"}


def get(backend=None):
    """Return the kernel module for ``backend`` (default: ``config.default_backend()``)."""
    backend = config.backend_for(backend)
    if backend == "numba" and not config.numba_available():
        raise ImportError("the 'numba' backend needs the numba package: pip install numba "
                          "(or set MINILENET_BACKEND=numpy)")
    return importlib.import_module(f".{_MODULES[backend]}", __name__)
