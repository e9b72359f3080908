"""The threads that batches run on: one pool, shared by the Numba kernels and the
element-wise layers.

A batch of ``PARALLEL_MIN`` samples or more (``PARALLEL_MIN_LIGHT`` for work that
does little arithmetic per byte) is cut into contiguous spans, one per thread:
the calling thread takes the first, a ``ThreadPoolExecutor`` the others. The
work must release the GIL (Numba's ``nogil`` kernels, NumPy's ufuncs and matrix
products do), and each thread writes only its own span of the outputs, so the
results do not depend on the number of threads. Handing a span to a sleeping
thread costs about 60 us on the development machine: small batches never do.

``NUMBA_NUM_THREADS`` (default: the cores this process may use) or
``set_threads(n)`` sets the count.
"""
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import threadpoolctl

from . import PARALLEL_MIN



def _default_threads():
    if os.environ.get("NUMBA_NUM_THREADS"):
        return int(os.environ["NUMBA_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


_threads = _default_threads()
_pool = None
_blas = None                                   # threadpoolctl's controller, made on first use


def set_threads(n):
    """Use ``n`` threads (at least 1) for batches from now on."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    _threads, _pool = int(n), None


def get_threads():
    """The number of threads batches use."""
    return _threads


def _spans(n, parts):
    """range(n) cut into at most ``parts`` contiguous (lo, hi) spans of near-equal size."""
    parts = max(1, min(parts, n))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def one_blas_thread():
    """A context in which NumPy's BLAS runs each product on the calling thread only:
    the threads are ours, and a second pool would fight them for the cores."""
    global _blas
    if _blas is None:
        _blas = threadpoolctl.ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def in_threads(work, n, args, batch, blas=False, min_batch=PARALLEL_MIN):
    """work(*args(lo, hi)) for spans (lo, hi) of range(n) (samples, or blocks of them),
    one span per thread: the first here, the others in the pool. A ``batch`` of fewer
    than ``min_batch`` samples runs here, as one span. ``blas``: the work calls
    NumPy's matrix products (run under ``one_blas_thread``)."""
    global _pool
    spans = _spans(n, _threads if batch >= min_batch else 1)
    if len(spans) > 1 and _pool is None:
        _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="minilenet")
    with one_blas_thread() if blas else contextlib.nullcontext():
        others = [_pool.submit(work, *args(lo, hi)) for lo, hi in spans[1:]]
        work(*args(*spans[0]))
        for job in others:
            job.result()
