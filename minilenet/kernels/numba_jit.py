"""Numba twins of ``numpy_ref``: same names, same signatures, same results to rounding.

Each twin checks nothing (the layers did), allocates its outputs and runs a
compiled body of ``compiled`` (where every compiled function lives, for Numba's
cache): on the calling thread for small batches, or a span of samples per thread.
``im2col``, ``col2im`` and the losses are compiled functions themselves
(``.py_func`` is their Python source); the squashing function is compiled (its own
tanh), its derivative NumPy, in place.

Small batches (fewer than ``PARALLEL_MIN`` samples: the recipe's single
samples, and the fused step) run the per-sample loops on the calling thread.
Larger batches compute each convolution and dense layer as matrix products,
called from compiled code (``blas.gemm``: portable loops by default, NumPy's
BLAS with MINILENET_GEMM=blas): a convolution is one product per sample over "shifted
rows", a cache-friendly im2col (``compiled.shifted_rows``); C3 uses its weights
scattered into a dense, zero-filled weight. The work is spread over threads
(``threads.in_threads``), each span of samples one compiled call that releases
the GIL (``nogil``), with BLAS held to one thread per product. Determinism
holds: each span writes its own samples' outputs; a weight gradient is summed
from per-sample (convolutions) or per-block (subsampling) partials, or computed
by one product (dense layers), always in a fixed order, so the result depends on
the batch size, never on the number of threads or their timing.
"""
import functools

import numpy as np

from ..paper import A, S
from . import PARALLEL_MIN, PARALLEL_MIN_LIGHT, compiled
from .numpy_ref import table_to_dense
from .threads import in_threads

#: Samples per block: per partial sum of a gradient and per BLAS product of a dense
#: layer (fixed, so results do not depend on the threads).
BLOCK = 16

#: Samples per span of a batched convolution. The threads take spans in turn, so
#: the one that starts later (the pool's, woken about 40 us after this one) or
#: runs on the slower core (one of this machine's two is at times 10 to 30% slower)
#: takes fewer; each span is one compiled call, so smaller spans cost little.
CONV_PIECE = 8


def _blocks(N):
    """(blocks, samples per block) for a batch of N: one block below PARALLEL_MIN."""
    blocks = (N + BLOCK - 1) // BLOCK if N >= PARALLEL_MIN else 1
    return blocks, (N + blocks - 1) // blocks


# ---------------------------------------------------------- convolutions
im2col, col2im = compiled.im2col, compiled.col2im


def _conv_batch_forward(x, w2, b, KH, KW):
    """x (N, C, H, W), w2 (F, C*KH*KW), b (F,) -> y (N, F, OH, OW), one product a sample."""
    N, C, H, W = x.shape
    y = np.empty((N, w2.shape[0], H - KH + 1, W - KW + 1), dtype=x.dtype)
    wb = np.concatenate([w2, b[:, None]], axis=1)
    in_threads(compiled.conv_forward_span, N, lambda lo, hi: (x, wb, KH, KW, y, lo, hi), N,
               blas=True, piece=CONV_PIECE)
    return y


def _dx_buffer(x, need_dx):
    """An empty input gradient like x, or one with no samples when it is not needed
    (the kernels then skip it)."""
    return np.empty((x.shape[0] if need_dx else 0,) + x.shape[1:], dtype=x.dtype)


def _conv_batch_backward(x, w2, dy, KH, KW, need_dx):
    """Gradients of ``_conv_batch_forward``: dx (or None), dw2 (F, C*KH*KW), db (F,).
    The per-sample gradients are summed in sample order (independent of the threads)."""
    N, w2 = x.shape[0], np.ascontiguousarray(w2)                   # as the products need
    dx = _dx_buffer(x, need_dx)
    dwb = np.empty((N, w2.shape[1] + 1, w2.shape[0]), dtype=x.dtype)
    in_threads(compiled.conv_backward_span, N, lambda lo, hi: (x, w2, dy, KH, KW, dx, dwb, lo, hi),
               N, blas=True, piece=CONV_PIECE)
    total = compiled.sum_blocks(dwb)
    return (dx if need_dx else None), np.ascontiguousarray(total[:-1].T), total[-1].copy()


def table_conv2d_forward(x, w, b, out_idx, in_idx):
    """Numba version of ``numpy_ref.table_conv2d_forward``: loops over the connections
    for small batches, a product with the zero-filled dense weight for the others."""
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    if N >= PARALLEL_MIN:
        dense = table_to_dense(w, out_idx, in_idx, b.shape[0], C)
        return _conv_batch_forward(x, dense.reshape(b.shape[0], -1), b, KH, KW)
    y = np.empty((N, b.shape[0], H - KH + 1, W - KW + 1), dtype=x.dtype)
    compiled.table_forward_samples(x, w, b, out_idx, in_idx, y)
    return y


def table_conv2d_backward(x, w, dy, out_idx, in_idx, need_dx=True):
    """Numba version of ``numpy_ref.table_conv2d_backward`` (skips dx if not ``need_dx``)."""
    N, C = x.shape[:2]
    K, KH, KW = w.shape
    F = dy.shape[1]
    if N >= PARALLEL_MIN:
        dense = table_to_dense(w, out_idx, in_idx, F, C).reshape(F, -1)
        dx, dw2, db = _conv_batch_backward(x, dense, dy, KH, KW, need_dx)
        return dx, dw2.reshape(F, C, KH, KW)[out_idx, in_idx], db
    dx = _dx_buffer(x, need_dx)
    dw, db = np.empty_like(w), np.empty(F, dtype=x.dtype)
    compiled.table_backward_block(x, w, dy, out_idx, in_idx, dx, dw, db)
    return (dx if need_dx else None), dw, db


@functools.lru_cache
def _all_pairs(F, C):
    """Connection lists (out_idx, in_idx) of a full convolution: every (output map,
    input map) pair, in the order of ``w.reshape(F * C, KH, KW)``. Shared: read only."""
    return np.repeat(np.arange(F), C), np.tile(np.arange(C), F)


def conv2d_forward(x, w, b):
    """Numba version of ``numpy_ref.conv2d_forward``: for small batches a table
    convolution with every pair connected; for batches, one product a sample, or
    a dense layer when the kernel covers the input (C5)."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if N < PARALLEL_MIN and x.shape[2:] == w.shape[2:]:
        y = np.empty((N, F, 1, 1), dtype=x.dtype)
        compiled.rows_forward(x.reshape(N, -1), w.reshape(F, -1), b, y.reshape(N, F))
        return y
    if N < PARALLEL_MIN:
        return table_conv2d_forward(x, w.reshape(F * C, KH, KW), b, *_all_pairs(F, C))
    if x.shape[2:] == w.shape[2:]:
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        return dense_forward(x.reshape(N, C * KH * KW), w2, b).reshape(N, F, 1, 1)
    return _conv_batch_forward(x, w.reshape(F, -1), b, KH, KW)


def conv2d_backward(x, w, dy, need_dx=True):
    """Numba version of ``numpy_ref.conv2d_backward``."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if N < PARALLEL_MIN:
        dx, dw, db = table_conv2d_backward(x, w.reshape(F * C, KH, KW), dy,
                                           *_all_pairs(F, C), need_dx)
        return dx, dw.reshape(w.shape), db
    if x.shape[2:] == w.shape[2:]:
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        dx, dw2, db = dense_backward(x.reshape(N, C * KH * KW), w2, dy.reshape(N, F))
        return ((dx.reshape(x.shape) if need_dx else None),
                np.ascontiguousarray(dw2.T).reshape(w.shape), db)
    dx, dw2, db = _conv_batch_backward(x, w.reshape(F, -1), dy, KH, KW, need_dx)
    return dx, dw2.reshape(w.shape), db


# -------------------------------------------------------- subsampling
def subsample_forward(x, coef, bias, scale):
    """Numba version of ``numpy_ref.subsample_forward``."""
    N, C, H, W = x.shape
    y = np.empty((N, C, H // 2, W // 2), dtype=x.dtype)
    in_threads(compiled.subsample_forward_samples, N,
               lambda lo, hi: (x[lo:hi], coef, bias, scale, y[lo:hi]), N,
               min_batch=PARALLEL_MIN_LIGHT)
    return y


def subsample_backward(x, coef, dy, scale):
    """Numba version of ``numpy_ref.subsample_backward``."""
    blocks, size = _blocks(x.shape[0])
    dx = np.empty_like(x)
    dcoef_parts = np.empty((blocks, x.shape[1]), dtype=x.dtype)
    dbias_parts = np.empty((blocks, x.shape[1]), dtype=x.dtype)
    in_threads(compiled.subsample_backward_blocks, blocks, lambda first, last: (
        x, coef, dy, scale, size, dx, dcoef_parts, dbias_parts, first, last), x.shape[0],
        min_batch=PARALLEL_MIN_LIGHT)
    return dx, compiled.sum_blocks(dcoef_parts), compiled.sum_blocks(dbias_parts)


# -------------------------------------------------------- max-pooling
def maxpool_forward(x, k, stride):
    """Numba version of ``numpy_ref.maxpool_forward``."""
    N, C, H, W = x.shape
    shape = (N, C, (H - k) // stride + 1, (W - k) // stride + 1)
    y = np.empty(shape, dtype=x.dtype)
    winner = np.empty(shape, dtype=np.int64)
    in_threads(compiled.maxpool_forward_samples, N,
               lambda lo, hi: (x[lo:hi], k, stride, y[lo:hi], winner[lo:hi]), N,
               min_batch=PARALLEL_MIN_LIGHT)
    return y, winner


def maxpool_backward(dy, winner, x_shape, k, stride):
    """Numba version of ``numpy_ref.maxpool_backward``: each sample's dx is written
    by one thread only, so the sums do not depend on the threads."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    in_threads(compiled.maxpool_backward_samples, dy.shape[0],
               lambda lo, hi: (dy[lo:hi], winner[lo:hi], k, stride, dx[lo:hi]), dy.shape[0],
               min_batch=PARALLEL_MIN_LIGHT)
    return dx


# ---------------------------------------------------- average pooling
def avgpool_forward(x, k, stride):
    """Numba version of ``numpy_ref.avgpool_forward`` (one thread: no layer of the
    networks uses it)."""
    N, C, H, W = x.shape
    y = np.empty((N, C, (H - k) // stride + 1, (W - k) // stride + 1), dtype=x.dtype)
    compiled.avgpool_forward_samples(x, k, stride, y)
    return y


def avgpool_backward(dy, x_shape, k, stride):
    """Numba version of ``numpy_ref.avgpool_backward``."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    compiled.avgpool_backward_samples(dy, k, stride, dx)
    return dx


# ------------------------------------------------------ dense and RBF
def dense_forward(x, w, b):
    """Numba version of ``numpy_ref.dense_forward``: loops for small batches, one BLAS
    product per fixed block of samples for the others (so a row's result does not
    depend on how the threads split the batch)."""
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    if x.shape[0] < PARALLEL_MIN:
        compiled.dense_forward_samples(x, w, b, y)
        return y
    blocks, size = _blocks(x.shape[0])
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)         # as the products need
    in_threads(compiled.dense_forward_blocks, blocks,
               lambda first, last: (x, w, b, size, y, first, last), x.shape[0], blas=True,
               min_batch=PARALLEL_MIN_LIGHT)
    return y


def dense_backward(x, w, dy):
    """Numba version of ``numpy_ref.dense_backward``."""
    dx, dw = np.empty(x.shape, dtype=x.dtype), np.empty(w.shape, dtype=x.dtype)
    db = np.empty(w.shape[1], dtype=x.dtype)
    if x.shape[0] < PARALLEL_MIN:
        compiled.dense_backward_block(x, w, dy, dx, dw, db)
    else:
        x, w, dy = (np.ascontiguousarray(a) for a in (x, w, dy))
        in_threads(compiled.dense_backward_tasks, 2, lambda first, last: (
            x, w, dy, dx, dw, db, first, last), x.shape[0], blas=True,
            min_batch=PARALLEL_MIN_LIGHT)
    return dx, dw, db


def rbf_forward(x, centers):
    """Numba version of ``numpy_ref.rbf_forward`` (one thread: a batch of 1000 takes
    0.1 ms, less than handing half of it to a second thread costs)."""
    y = np.empty((x.shape[0], centers.shape[0]), dtype=x.dtype)
    compiled.rbf_samples(x, centers, y)
    return y


def rbf_backward(x, centers, dy):
    """Numba version of ``numpy_ref.rbf_backward``."""
    dx = np.empty_like(x)
    compiled.rbf_backward_samples(x, centers, dy, dx)
    return dx


# ------------------------------------ squashing, the paper's losses, the SDLM update
def scaled_tanh(a, out=None):
    """Numba version of ``numpy_ref.scaled_tanh``, written into ``out`` when given
    (the layer's own array, so a large batch makes no temporaries). It computes tanh
    with ``compiled.tanh``, the same bits on every CPU, where NumPy's np.tanh runs
    SIMD code chosen for the CPU (AVX-512, AVX2, NEON), whose last bits differ."""
    y = np.empty(np.shape(a), np.result_type(a, 1.0)) if out is None else out
    target = y if y.flags.c_contiguous else np.empty(y.shape, y.dtype)
    compiled.scaled_tanh_into(np.ascontiguousarray(a, dtype=y.dtype), target)
    if target is not y:
        y[...] = target
    return y


def scaled_tanh_derivative(y, out=None):
    """``numpy_ref.scaled_tanh_derivative`` in one array, as ``scaled_tanh``."""
    d = np.empty(np.shape(y), np.result_type(y, 1.0)) if out is None else out
    # BEGIN SOLUTION scaled_tanh
    np.multiply(y, y, out=d)                # y^2
    np.subtract(A * A, d, out=d)            # A^2 - y^2
    d *= S / A                              # (S/A)(A^2 - y^2)
    # END SOLUTION
    return d


mse_loss, map_loss = compiled.mse_loss, compiled.map_loss
softmax_cross_entropy = compiled.softmax_cross_entropy


def sdlm_update(p, g, rates):
    """Numba version of ``numpy_ref.sdlm_update``: p -= rates * g, in place
    (C-contiguous arrays of one shape)."""
    compiled.sdlm_update(p.reshape(-1), g.reshape(-1), rates.reshape(-1))
