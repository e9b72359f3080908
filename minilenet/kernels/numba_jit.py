"""Numba twins of ``numpy_ref``: same names, same signatures, same results.

Loops are ordered so that the innermost one runs along a row of the output
(contiguous, vectorisable without fastmath), and every reduction runs in a
fixed order, so results are deterministic. Set ``NUMBA_DISABLE_JIT=1`` to run
these bodies as plain Python (slow, but steppable in a debugger).
"""
import numpy as np
from numba import njit

#: The one place the compiler options are chosen. ``cache=True`` stores the
#: machine code on disk (``NUMBA_CACHE_DIR`` to move it), so a new process
#: skips compilation; fastmath stays off so float64 results match NumPy.
jit = njit(cache=True, fastmath=False, nogil=True)


@jit
def im2col(x, kh, kw, stride=1):
    """Numba version of ``numpy_ref.im2col``."""
    N, C, H, W = x.shape
    OH, OW = (H - kh) // stride + 1, (W - kw) // stride + 1
    cols = np.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for p in range(OH):
                        for q in range(OW):
                            cols[n, c, i, j, p, q] = x[n, c, p * stride + i, q * stride + j]
    return cols


@jit
def col2im(cols, x_shape, stride=1):
    """Numba version of ``numpy_ref.col2im`` (sums overlapping windows)."""
    N, C, kh, kw, OH, OW = cols.shape
    x = np.zeros(x_shape, dtype=cols.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for p in range(OH):
                        for q in range(OW):
                            x[n, c, p * stride + i, q * stride + j] += cols[n, c, i, j, p, q]
    return x


@jit
def _table_forward(x, w, b, out_idx, in_idx):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    F = b.shape[0]
    OH, OW = H - KH + 1, W - KW + 1
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            y[n, f] = b[f]
        for k in range(K):
            f, c = out_idx[k], in_idx[k]
            for i in range(KH):
                for j in range(KW):
                    wv = w[k, i, j]
                    for p in range(OH):
                        for q in range(OW):
                            y[n, f, p, q] += wv * x[n, c, p + i, q + j]
    return y


@jit
def _table_backward(x, w, dy, out_idx, in_idx):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    F, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(F, dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for p in range(OH):
                for q in range(OW):
                    db[f] += dy[n, f, p, q]
        for k in range(K):
            f, c = out_idx[k], in_idx[k]
            for i in range(KH):
                for j in range(KW):
                    wv = w[k, i, j]
                    acc = dw[k, i, j]
                    for p in range(OH):
                        for q in range(OW):
                            g = dy[n, f, p, q]
                            dx[n, c, p + i, q + j] += wv * g
                            acc += g * x[n, c, p + i, q + j]
                    dw[k, i, j] = acc
    return dx, dw, db


@jit
def _all_pairs(F, C):
    out_idx = np.empty(F * C, dtype=np.int64)
    in_idx = np.empty(F * C, dtype=np.int64)
    for f in range(F):
        for c in range(C):
            out_idx[f * C + c] = f
            in_idx[f * C + c] = c
    return out_idx, in_idx


@jit
def conv2d_forward(x, w, b):
    """Numba version of ``numpy_ref.conv2d_forward`` (a table conv with every pair connected)."""
    F, C, KH, KW = w.shape
    out_idx, in_idx = _all_pairs(F, C)
    return _table_forward(x, w.reshape(F * C, KH, KW), b, out_idx, in_idx)


@jit
def conv2d_backward(x, w, dy):
    """Numba version of ``numpy_ref.conv2d_backward``."""
    F, C, KH, KW = w.shape
    out_idx, in_idx = _all_pairs(F, C)
    dx, dw, db = _table_backward(x, w.reshape(F * C, KH, KW), dy, out_idx, in_idx)
    return dx, dw.reshape(F, C, KH, KW), db


@jit
def table_conv2d_forward(x, w, b, out_idx, in_idx):
    """Numba version of ``numpy_ref.table_conv2d_forward``: loops over connections only."""
    return _table_forward(x, w, b, out_idx, in_idx)


@jit
def table_conv2d_backward(x, w, dy, out_idx, in_idx):
    """Numba version of ``numpy_ref.table_conv2d_backward``."""
    return _table_backward(x, w, dy, out_idx, in_idx)


@jit
def subsample_forward(x, coef, bias, scale):
    """Numba version of ``numpy_ref.subsample_forward``."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            g = coef[c] * scale
            for p in range(OH):
                for q in range(OW):
                    s = (x[n, c, 2 * p, 2 * q] + x[n, c, 2 * p, 2 * q + 1]
                         + x[n, c, 2 * p + 1, 2 * q] + x[n, c, 2 * p + 1, 2 * q + 1])
                    y[n, c, p, q] = g * s + bias[c]
    return y


@jit
def subsample_backward(x, coef, dy, scale):
    """Numba version of ``numpy_ref.subsample_backward``."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    dx = np.empty_like(x)
    dcoef = np.zeros(C, dtype=x.dtype)
    dbias = np.zeros(C, dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            g = coef[c] * scale
            for p in range(OH):
                for q in range(OW):
                    d = dy[n, c, p, q]
                    s = (x[n, c, 2 * p, 2 * q] + x[n, c, 2 * p, 2 * q + 1]
                         + x[n, c, 2 * p + 1, 2 * q] + x[n, c, 2 * p + 1, 2 * q + 1])
                    dcoef[c] += scale * d * s
                    dbias[c] += d
                    gd = g * d
                    dx[n, c, 2 * p, 2 * q] = gd
                    dx[n, c, 2 * p, 2 * q + 1] = gd
                    dx[n, c, 2 * p + 1, 2 * q] = gd
                    dx[n, c, 2 * p + 1, 2 * q + 1] = gd
    return dx, dcoef, dbias
