"""The threads that batches run on: one pool, shared by the Numba kernels and the
element-wise layers.

A batch of ``PARALLEL_MIN`` samples or more (``PARALLEL_MIN_LIGHT`` for work that
does little arithmetic per byte) is cut into contiguous spans, one per thread or
smaller ones that the threads take in turn: the calling thread and a
``ThreadPoolExecutor``'s. The work must release the GIL (Numba's ``nogil``
kernels, NumPy's ufuncs and matrix products do), and each span writes only its
own part of the outputs, so the results depend neither on the number of threads
nor on which thread took which span. Handing a span to a sleeping
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
_blas_libraries = None                         # threadpoolctl's BLAS controllers, found on first use


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


def blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found on
    first use: NumPy's, and any other's). Each has ``filepath`` and thread-count methods."""
    global _blas_libraries
    if _blas_libraries is None:
        _blas_libraries = threadpoolctl.ThreadpoolController().select(
            user_api="blas").lib_controllers
    return _blas_libraries


@contextlib.contextmanager
def one_blas_thread():
    """A context in which NumPy's BLAS runs each product on the calling thread only:
    the threads are ours, and a second pool would fight them for the cores. (It sets
    the libraries' thread counts directly, as ``threadpoolctl.limit`` would, in a
    third of the time: it is entered for every batched product.)"""
    libraries = blas_libraries()
    before = [library.get_num_threads() for library in libraries]
    for library, n in zip(libraries, before):
        if n != 1:
            library.set_num_threads(1)
    try:
        yield
    finally:
        for library, n in zip(libraries, before):
            if n != 1:
                library.set_num_threads(n)


def in_threads(work, n, args, batch, blas=False, min_batch=PARALLEL_MIN, piece=None):
    """work(*args(lo, hi)) for spans (lo, hi) of range(n) (samples, or blocks of them).
    The spans are one per thread, or, given ``piece``, of about ``piece`` each (at
    least one per thread); the threads, this one and the pool's, take them in turn
    until none is left, so a thread that starts late or runs on a slower core takes
    fewer. A ``batch`` of fewer than ``min_batch`` samples runs here, as one span.
    ``blas``: the work calls the BLAS (``blas.gemm`` or NumPy's products), so it runs
    under ``one_blas_thread``."""
    global _pool
    threads = _threads if batch >= min_batch else 1
    parts = threads if piece is None or threads == 1 else max(threads, -(-n // piece))
    spans = iter(_spans(n, parts))
    if threads > 1 and _pool is None:
        _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="minilenet")

    def take_spans():                          # next() on a list iterator holds the GIL:
        for lo, hi in spans:                   # each span is taken by one thread only
            work(*args(lo, hi))

    with one_blas_thread() if blas else contextlib.nullcontext():
        others = [_pool.submit(take_spans) for _ in range(min(threads, parts) - 1)]
        take_spans()
        for job in others:
            job.result()
