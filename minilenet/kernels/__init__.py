"""Kernels: the array-crunching inner loops, in two interchangeable backends.

``numpy_ref`` is the readable specification of every unit's math; ``numba_jit``
defines the same names with the same signatures (its twins), each running a
compiled body of ``compiled``. ``get(backend)`` returns one of the two modules;
Numba is imported only when its backend is asked for. Beside them: ``blas``
(the matrix product compiled code calls), ``threads`` (spans of a batch on
several threads) and ``memory`` (malloc kept from handing memory back).
"""
import functools
import importlib

from .. import config
from . import memory

#: Names every backend module defines.
KERNEL_NAMES = (
    "im2col", "col2im",
    "conv2d_forward", "conv2d_backward",
    "table_conv2d_forward", "table_conv2d_backward",
    "subsample_forward", "subsample_backward",
    "maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward",
    "dense_forward", "dense_backward", "rbf_forward", "rbf_backward",
    "scaled_tanh", "scaled_tanh_derivative", "mse_loss", "map_loss", "softmax_cross_entropy",
    "sdlm_update",
)

#: Batches at least this large are split across threads by the Numba kernels;
#: smaller ones (the recipe's single samples) never start a thread.
PARALLEL_MIN = 8

#: The same for the kernels that do little arithmetic per byte they move
#: (subsampling, max-pooling, dense layers): handing work to a second thread costs about
#: 60 us here, and two threads share one memory bandwidth, so below this many
#: samples they ran no faster on two threads than on one (docs/performance.md).
PARALLEL_MIN_LIGHT = 256

_MODULES = {"numpy": "numpy_ref", "numba": "numba_jit"}


@functools.lru_cache
def _load(module):
    """Import a backend module, tuning malloc the first time (``memory``)."""
    memory.keep_freed_memory()
    return importlib.import_module(f".{module}", __name__)


def get(backend=None):
    """Return the kernel module for ``backend`` (default: ``config.default_backend()``)."""
    backend = config.backend_for(backend)
    if backend == "numba" and not config.numba_available():
        raise ImportError("the 'numba' backend needs the numba package: pip install numba "
                          "(or set MINILENET_BACKEND=numpy)")
    return _load(_MODULES[backend])
