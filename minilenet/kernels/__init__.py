"""Kernels: the array-crunching inner loops, in two interchangeable backends.

``numpy_ref`` is the readable specification; ``numba_jit`` defines the same
names with the same signatures. ``get(backend)`` returns one of the two
modules; Numba is imported only when its backend is asked for.
"""
import ctypes
import importlib

from .. import config

#: Names every backend module defines.
KERNEL_NAMES = (
    "im2col", "col2im",
    "conv2d_forward", "conv2d_backward",
    "table_conv2d_forward", "table_conv2d_backward",
    "subsample_forward", "subsample_backward",
    "maxpool_forward", "maxpool_backward",
    "dense_forward", "dense_backward", "rbf_forward", "rbf_backward",
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

#: glibc's malloc serves blocks larger than its mmap threshold (128 KiB at
#: first) with fresh pages from the OS and hands them back when they are freed,
#: so every training step page-faulted its activations in again: a batch of 64
#: lost 8% of its time to that with one thread and 18% with two (the faults of
#: both threads queue on one lock). These settings make such blocks come from
#: the heap and stay there for the next step, up to the trim threshold of free
#: memory kept: 96 MiB holds what an inference batch of 1000 frees and takes
#: again (at 64 MiB a PyTorch model in the same process fell from 29,000 to
#: 18,000 images/s there, and at 32 MiB minilenet halved), and it adds nothing
#: to a training run's peak memory (128 MiB added 27 MiB). Elsewhere than glibc
#: nothing is changed.
MALLOC_SETTINGS = {"M_MMAP_THRESHOLD": (-3, 64 << 20), "M_TRIM_THRESHOLD": (-1, 96 << 20)}
_malloc_tuned = None


def keep_freed_memory():
    """Apply ``MALLOC_SETTINGS`` once per process (glibc only); True if applied."""
    global _malloc_tuned
    if _malloc_tuned is None:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            _malloc_tuned = False
        else:
            _malloc_tuned = all([mallopt(option, value)
                                 for option, value in MALLOC_SETTINGS.values()])
    return _malloc_tuned


def get(backend=None):
    """Return the kernel module for ``backend`` (default: ``config.default_backend()``)."""
    keep_freed_memory()
    backend = config.backend_for(backend)
    if backend == "numba" and not config.numba_available():
        raise ImportError("the 'numba' backend needs the numba package: pip install numba "
                          "(or set MINILENET_BACKEND=numpy)")
    return importlib.import_module(f".{_MODULES[backend]}", __name__)
