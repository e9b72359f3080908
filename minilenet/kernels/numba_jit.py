"""Numba twins of ``numpy_ref``: same names, same signatures, same results.

The end of the file adds one Numba-only kernel, the paper network's whole
training step (``paper_step``), whose reference is the layer graph
(see ``minilenet.fused``). It lives here, beside the kernels it calls,
because Numba's on-disk cache is invalidated per source file: a kernel edit
must also recompile the step that inlines it.

Loops are ordered so that the innermost one runs along a contiguous row.
Reductions may be reassociated by the compiler (so they vectorise): results
then match NumPy to rounding (1e-12 relative in float64), and every run of
the same code gives the same bits.

The batch kernels run on several cores for batches of ``PARALLEL_MIN`` samples
or more, without giving up determinism: the compiled loops release the GIL
(``nogil``), and ``_in_threads`` hands each thread whole samples; the weight
gradient is summed into one partial buffer per fixed block of ``BLOCK``
samples (never by two threads into one array), and the partials are added up
in block order. The result depends on the batch size only, not on the number
of threads or their timing. The threads are plain Python threads (a
``ThreadPoolExecutor``), not Numba's ``parallel=True``: its OpenMP pool
compiled slowly (seconds per kernel on a first run) and spun idle threads
that stole the core the next call needed.

Set ``NUMBA_DISABLE_JIT=1`` to run these bodies as plain Python (slow, but
steppable in a debugger).
"""
import functools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from ..activations import A, S
from . import PARALLEL_MIN

#: The one place the compiler options are chosen. ``cache=True`` stores the
#: machine code on disk (``NUMBA_CACHE_DIR`` to move it), so a new process
#: skips compilation. Of the fast-math flags only reassociation and fused
#: multiply-add are allowed: NaN and infinity keep their IEEE meaning, so the
#: trainer's NaN guard still sees them. ``nogil`` lets threads run kernels at once.
OPTIONS = dict(cache=True, fastmath={"reassoc", "contract"}, nogil=True)
jit = njit(**OPTIONS)

#: Samples per weight-gradient partial sum (fixed, so results do not depend on threads).
BLOCK = 8

_threads = numba.config.NUMBA_NUM_THREADS     # NUMBA_NUM_THREADS, default: the cores
_pool = None


def set_threads(n):
    """Use ``n`` threads (at least 1) for batches from now on (default: the cores)."""
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


def _in_threads(kernel, n, args, batch):
    """kernel(*args(lo, hi)) for spans (lo, hi) of range(n) (samples, or blocks of them),
    one span per thread: the first here, the others in the pool. A ``batch`` of fewer
    than ``PARALLEL_MIN`` samples runs here, as one span."""
    global _pool
    spans = _spans(n, _threads if batch >= PARALLEL_MIN else 1)
    if len(spans) > 1 and _pool is None:
        _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="minilenet")
    others = [_pool.submit(kernel, *args(lo, hi)) for lo, hi in spans[1:]]
    kernel(*args(*spans[0]))
    for job in others:
        job.result()


def _blocks(N):
    """(blocks, samples per block) for a batch of N: one block below PARALLEL_MIN."""
    blocks = (N + BLOCK - 1) // BLOCK if N >= PARALLEL_MIN else 1
    return blocks, (N + blocks - 1) // blocks


@jit
def im2col(x, kh, kw, stride=1):
    """Numba version of ``numpy_ref.im2col``."""
    N, C, H, W = x.shape
    OH, OW = (H - kh) // stride + 1, (W - kw) // stride + 1
    cols = np.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    # BEGIN SOLUTION im2col
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for p in range(OH):
                        for q in range(OW):
                            cols[n, c, i, j, p, q] = x[n, c, p * stride + i, q * stride + j]
    # END SOLUTION
    return cols


@jit
def col2im(cols, x_shape, stride=1):
    """Numba version of ``numpy_ref.col2im`` (sums overlapping windows)."""
    N, C, kh, kw, OH, OW = cols.shape
    x = np.zeros(x_shape, dtype=cols.dtype)
    # BEGIN SOLUTION col2im
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for p in range(OH):
                        for q in range(OW):
                            x[n, c, p * stride + i, q * stride + j] += cols[n, c, i, j, p, q]
    # END SOLUTION
    return x


@jit
def _copy(dst, src):
    """dst[...] = src for C-contiguous arrays of one size, as a loop (Numba's
    array assignment brings shape checks whose messages take seconds to compile)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    for i in range(d.size):
        d[i] = s[i]


@jit
def _table_forward_one(x, w, b, out_idx, in_idx, y):
    """One sample: x (C, H, W) -> y (F, OH, OW), written in place."""
    C, H, W = x.shape
    K, KH, KW = w.shape
    F = b.shape[0]
    T, P = KH * KW, y.shape[1] * y.shape[2]
    yf, wf = y.reshape(F, P), w.reshape(K, T)
    # BEGIN SOLUTION conv.forward c3.forward
    for f in range(F):
        for s in range(P):
            yf[f, s] = b[f]
    if P == 1:                                       # C5: one dot product per connection
        xf = x.reshape(C, T)
        for k in range(K):
            acc = yf[out_idx[k], 0]
            for t in range(T):
                acc += wf[k, t] * xf[in_idx[k], t]
            yf[out_idx[k], 0] = acc
        return
    # im2col's (1, C, KH, KW, OH, OW) is (C, T, P): long contiguous rows of P.
    cols = im2col(x.reshape(1, C, H, W), KH, KW, 1).reshape(C, T, P)
    for k in range(K):
        f, c = out_idx[k], in_idx[k]
        for t in range(T):
            wv = wf[k, t]
            for s in range(P):
                yf[f, s] += wv * cols[c, t, s]
    # END SOLUTION


@jit
def _table_backward_block(x, w, dy, out_idx, in_idx, dx, dw, db):
    """Samples x (n, C, H, W): dx (n, C, H, W) written per sample, and the block's
    weight and bias gradient sums written into dw (K, KH, KW) and db (F,). Pass a dx
    with no samples, (0, C, H, W), when the input gradient is not needed (C1)."""
    N, C, H, W = x.shape
    need_dx = dx.shape[0] > 0
    K, KH, KW = w.shape
    F = dy.shape[1]
    T, P = KH * KW, dy.shape[2] * dy.shape[3]
    wf, dwf = w.reshape(K, T), dw.reshape(K, T)
    dwf[...] = 0
    db[...] = 0
    # BEGIN SOLUTION conv.backward c3.backward
    for n in range(N):
        dyf = dy[n].reshape(F, P)
        for f in range(F):
            acc = db[f]
            for s in range(P):
                acc += dyf[f, s]
            db[f] = acc
        if P == 1:                                   # C5: one axpy per connection
            xf, dxf = x[n].reshape(C, T), dx[n].reshape(C, T)
            if need_dx:
                dxf[...] = 0
            for k in range(K):
                g, c = dyf[out_idx[k], 0], in_idx[k]
                for t in range(T):
                    dwf[k, t] += g * xf[c, t]
                if need_dx:
                    for t in range(T):
                        dxf[c, t] += g * wf[k, t]
            continue
        cols = im2col(x[n:n + 1], KH, KW, 1).reshape(C, T, P)
        for k in range(K):
            f, c = out_idx[k], in_idx[k]
            for t in range(T):
                acc = dwf[k, t]
                for s in range(P):
                    acc += dyf[f, s] * cols[c, t, s]
                dwf[k, t] = acc
        if need_dx:
            dcols = np.zeros((C, T, P), dtype=x.dtype)
            for k in range(K):
                f, c = out_idx[k], in_idx[k]
                for t in range(T):
                    wv = wf[k, t]
                    for s in range(P):
                        dcols[c, t, s] += wv * dyf[f, s]
            _copy(dx[n], col2im(dcols.reshape(1, C, KH, KW, H - KH + 1, W - KW + 1),
                                (1, C, H, W), 1))
    # END SOLUTION


@jit
def _table_forward_samples(x, w, b, out_idx, in_idx, y):
    """Samples x (n, C, H, W) one after another into y (n, F, OH, OW)."""
    for n in range(x.shape[0]):
        _table_forward_one(x[n], w, b, out_idx, in_idx, y[n])


def table_conv2d_forward(x, w, b, out_idx, in_idx):
    """Numba version of ``numpy_ref.table_conv2d_forward``: loops over connections only."""
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    y = np.empty((N, b.shape[0], H - KH + 1, W - KW + 1), dtype=x.dtype)
    _in_threads(_table_forward_samples, N,
                lambda lo, hi: (x[lo:hi], w, b, out_idx, in_idx, y[lo:hi]), N)
    return y


@jit
def _sum_blocks(parts):
    """parts (B, ...) summed over B in block order (a fixed, thread-free order)."""
    out = parts[0].copy()
    flat_out = out.reshape(-1)
    for blk in range(1, parts.shape[0]):
        flat = parts[blk].reshape(-1)
        for i in range(flat.size):
            flat_out[i] += flat[i]
    return out


@jit
def _table_backward_blocks(x, w, dy, out_idx, in_idx, size, dx, dw_parts, db_parts, first, last):
    """Blocks first..last-1 of ``size`` samples: their dx, and each block's partial
    weight and bias gradients in dw_parts[block], db_parts[block]."""
    for blk in range(first, last):
        lo, hi = blk * size, min(x.shape[0], (blk + 1) * size)
        _table_backward_block(x[lo:hi], w, dy[lo:hi], out_idx, in_idx,
                              dx[lo:hi], dw_parts[blk], db_parts[blk])


def table_conv2d_backward(x, w, dy, out_idx, in_idx):
    """Numba version of ``numpy_ref.table_conv2d_backward``."""
    blocks, size = _blocks(x.shape[0])
    dx = np.empty_like(x)
    dw_parts = np.empty((blocks,) + w.shape, dtype=x.dtype)
    db_parts = np.empty((blocks, dy.shape[1]), dtype=x.dtype)
    _in_threads(_table_backward_blocks, blocks, lambda first, last: (
        x, w, dy, out_idx, in_idx, size, dx, dw_parts, db_parts, first, last), x.shape[0])
    return dx, _sum_blocks(dw_parts), _sum_blocks(db_parts)


@functools.lru_cache
def _all_pairs(F, C):
    """Connection lists (out_idx, in_idx) of a full convolution: every (output map,
    input map) pair, in the order of ``w.reshape(F * C, KH, KW)``. Shared: read only."""
    return np.repeat(np.arange(F), C), np.tile(np.arange(C), F)


def conv2d_forward(x, w, b):
    """Numba version of ``numpy_ref.conv2d_forward``: a table convolution with every
    pair connected, or, for a batch whose kernel covers the input (C5), a dense layer."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if N >= PARALLEL_MIN and x.shape[2:] == w.shape[2:]:
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        return dense_forward(x.reshape(N, C * KH * KW), w2, b).reshape(N, F, 1, 1)
    return table_conv2d_forward(x, w.reshape(F * C, KH, KW), b, *_all_pairs(F, C))


def conv2d_backward(x, w, dy):
    """Numba version of ``numpy_ref.conv2d_backward``."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if N >= PARALLEL_MIN and x.shape[2:] == w.shape[2:]:
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        dx, dw2, db = dense_backward(x.reshape(N, C * KH * KW), w2, dy.reshape(N, F))
        return dx.reshape(x.shape), np.ascontiguousarray(dw2.T).reshape(w.shape), db
    dx, dw, db = table_conv2d_backward(x, w.reshape(F * C, KH, KW), dy, *_all_pairs(F, C))
    return dx, dw.reshape(w.shape), db


@jit
def subsample_forward(x, coef, bias, scale):
    """Numba version of ``numpy_ref.subsample_forward``."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    # BEGIN SOLUTION subsampling.forward
    for n in range(N):
        for c in range(C):
            g = coef[c] * scale
            for p in range(OH):
                for q in range(OW):
                    s = (x[n, c, 2 * p, 2 * q] + x[n, c, 2 * p, 2 * q + 1]
                         + x[n, c, 2 * p + 1, 2 * q] + x[n, c, 2 * p + 1, 2 * q + 1])
                    y[n, c, p, q] = g * s + bias[c]
    # END SOLUTION
    return y


@jit
def subsample_backward(x, coef, dy, scale):
    """Numba version of ``numpy_ref.subsample_backward``."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    dx = np.empty_like(x)
    dcoef = np.zeros(C, dtype=x.dtype)
    dbias = np.zeros(C, dtype=x.dtype)
    # BEGIN SOLUTION subsampling.backward
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
    # END SOLUTION
    return dx, dcoef, dbias


# ------------------------------------------------------- dense and RBF
@jit
def _dense_forward_one(x, w, b, y):
    """One sample: y = x @ w + b, as axpy loops over contiguous rows of w."""
    # BEGIN SOLUTION dense.forward
    for o in range(w.shape[1]):
        y[o] = b[o]
    for i in range(x.shape[0]):
        xi = x[i]
        for o in range(w.shape[1]):
            y[o] += xi * w[i, o]
    # END SOLUTION


@jit
def _dense_forward_samples(x, w, b, y):
    for n in range(x.shape[0]):
        _dense_forward_one(x[n], w, b, y[n])


def dense_forward(x, w, b):
    """Numba version of ``numpy_ref.dense_forward``."""
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    _in_threads(_dense_forward_samples, x.shape[0], lambda lo, hi: (x[lo:hi], w, b, y[lo:hi]),
                x.shape[0])
    return y


@jit
def _dense_backward_block(x, w, dy, dx, dw, db):
    """Samples x (n, D): dx per sample, the block's dw and db sums written in place."""
    D, M = w.shape
    dw[...] = 0
    db[...] = 0
    # BEGIN SOLUTION dense.backward
    for n in range(x.shape[0]):
        for o in range(M):
            db[o] += dy[n, o]
        for i in range(D):
            xi = x[n, i]
            acc = dw[0, 0] * 0                       # a zero of x's dtype
            for o in range(M):
                dw[i, o] += xi * dy[n, o]
                acc += dy[n, o] * w[i, o]
            dx[n, i] = acc
    # END SOLUTION


@jit
def _dense_backward_blocks(x, w, dy, size, dx, dw_parts, db_parts, first, last):
    for blk in range(first, last):
        lo, hi = blk * size, min(x.shape[0], (blk + 1) * size)
        _dense_backward_block(x[lo:hi], w, dy[lo:hi], dx[lo:hi], dw_parts[blk], db_parts[blk])


def dense_backward(x, w, dy):
    """Numba version of ``numpy_ref.dense_backward``."""
    blocks, size = _blocks(x.shape[0])
    dx = np.empty_like(x)
    dw_parts = np.empty((blocks,) + w.shape, dtype=x.dtype)
    db_parts = np.empty((blocks, w.shape[1]), dtype=x.dtype)
    _in_threads(_dense_backward_blocks, blocks, lambda first, last: (
        x, w, dy, size, dx, dw_parts, db_parts, first, last), x.shape[0])
    return dx, _sum_blocks(dw_parts), _sum_blocks(db_parts)


@jit
def _rbf_one(x, centers, y):
    # BEGIN SOLUTION rbf.forward
    for k in range(centers.shape[0]):
        t = x[0] - centers[k, 0]
        acc = t * t
        for d in range(1, x.shape[0]):
            t = x[d] - centers[k, d]
            acc += t * t
        y[k] = acc
    # END SOLUTION


@jit
def _rbf_samples(x, centers, y):
    for n in range(x.shape[0]):
        _rbf_one(x[n], centers, y[n])


def rbf_forward(x, centers):
    """Numba version of ``numpy_ref.rbf_forward``."""
    y = np.empty((x.shape[0], centers.shape[0]), dtype=x.dtype)
    _in_threads(_rbf_samples, x.shape[0], lambda lo, hi: (x[lo:hi], centers, y[lo:hi]),
                x.shape[0])
    return y


@jit
def _rbf_backward_one(x, centers, dy, dx):
    # BEGIN SOLUTION rbf.backward
    total = dy[0]
    for k in range(1, centers.shape[0]):
        total += dy[k]
    for d in range(x.shape[0]):
        dx[d] = total * x[d]
    for k in range(centers.shape[0]):
        g = dy[k]
        for d in range(x.shape[0]):
            dx[d] -= g * centers[k, d]
    for d in range(x.shape[0]):
        dx[d] *= 2
    # END SOLUTION


@jit
def _rbf_backward_samples(x, centers, dy, dx):
    for n in range(x.shape[0]):
        _rbf_backward_one(x[n], centers, dy[n], dx[n])


def rbf_backward(x, centers, dy):
    """Numba version of ``numpy_ref.rbf_backward``."""
    dx = np.empty_like(x)
    _in_threads(_rbf_backward_samples, x.shape[0],
                lambda lo, hi: (x[lo:hi], centers, dy[lo:hi], dx[lo:hi]), x.shape[0])
    return dx


# ------------------------------------------------ fused paper-network step
@jit
def _constants(a):
    """A, S, S/A and A^2 in a's dtype (so float32 work stays float32)."""
    c = np.empty(4, dtype=a.dtype)
    c[0], c[1], c[2], c[3] = A, S, S / A, A * A
    return c


@jit
def _squash(a):
    """ScaledTanh.f, element-wise into a new array of a's dtype."""
    c = _constants(a)
    y = np.empty_like(a)
    af, yf = a.reshape(-1), y.reshape(-1)
    # BEGIN SOLUTION scaled_tanh
    for i in range(af.size):
        yf[i] = c[0] * np.tanh(c[1] * af[i])
    # END SOLUTION
    return y


@jit
def _squash_backward(y, dy):
    """dy * ScaledTanh.df(y) = dy (S/A)(A^2 - y^2), element-wise."""
    c = _constants(y)
    out = np.empty_like(dy)
    yf, df, of = y.reshape(-1), dy.reshape(-1), out.reshape(-1)
    # BEGIN SOLUTION scaled_tanh
    for i in range(yf.size):
        of[i] = df[i] * (c[2] * (c[3] - yf[i] * yf[i]))
    # END SOLUTION
    return out


@jit
def _paper_loss(y, labels, loss_kind, j):
    """The paper's loss on RBF penalties y (N, K), as losses.mse_loss (loss_kind 0)
    or losses.map_loss (1, log-sum-exp over [-j, -y]) compute it: (loss, dloss/dy)."""
    N, K = y.shape
    dy = np.zeros_like(y)
    loss = 0.0
    # BEGIN SOLUTION mse_loss map_loss
    for n in range(N):
        label = labels[n]
        loss += y[n, label]
        if loss_kind == 1:
            m = -j
            for k in range(K):
                m = max(m, -y[n, k])
            total = np.exp(-j - m)
            for k in range(K):
                total += np.exp(-y[n, k] - m)
            lse = m + np.log(total)
            loss += lse
            for k in range(K):
                dy[n, k] = -np.exp(-y[n, k] - lse) / N
        dy[n, label] += 1.0 / N
    # END SOLUTION
    return loss / N, dy


@jit
def _update(p, g, rate):
    """p -= rate * g, element-wise (the SDLM step with per-parameter rates); 1-d arrays."""
    # BEGIN SOLUTION sdlm.step
    for i in range(p.size):
        p[i] -= rate[i] * g[i]
    # END SOLUTION


@jit
def paper_step(x, labels, P, G, flat_p, flat_g, flat_rates, pairs, centers, scale2, scale4,
               loss_kind, j, update):
    """The paper network's forward, loss and backward, gradients into the arrays G;
    then, if ``update``, p -= rate * g for every parameter. Returns (loss, penalties).

    x (N, 1, 32, 32); P and G are the 12 parameter and gradient arrays in ``PARAMS``
    order; ``flat_p``, ``flat_g`` and ``flat_rates`` are 1-d views of them and of
    their rates (one array type, so one compiled update loop); ``pairs`` holds the
    (out_idx, in_idx) connection lists of C1, C3 and C5. Samples run one after
    another, on the same per-sample kernels as the layers (no threads: the
    recipe's batches hold one sample).
    """
    w1, b1, c2, b2, w3, b3, c4, b4, w5, b5, w6, b6 = P
    out1, in1, out3, in3, out5, in5 = pairs
    N = x.shape[0]
    F1, C1, K1, _ = w1.shape
    F5, C5, K5, _ = w5.shape
    w1r, w5r = w1.reshape(F1 * C1, K1, K1), w5.reshape(F5 * C5, K5, K5)

    a1 = np.empty((N, F1, x.shape[2] - K1 + 1, x.shape[3] - K1 + 1), dtype=x.dtype)
    _table_forward_samples(x, w1r, b1, out1, in1, a1)
    z1 = _squash(a1)
    z2 = _squash(subsample_forward(z1, c2, b2, scale2))
    a3 = np.empty((N, b3.shape[0], z2.shape[2] - w3.shape[1] + 1, z2.shape[3] - w3.shape[2] + 1),
                  dtype=x.dtype)
    _table_forward_samples(z2, w3, b3, out3, in3, a3)
    z3 = _squash(a3)
    z4 = _squash(subsample_forward(z3, c4, b4, scale4))
    a5 = np.empty((N, F5, 1, 1), dtype=x.dtype)
    _table_forward_samples(z4, w5r, b5, out5, in5, a5)
    z5 = _squash(a5).reshape(N, F5)
    a6 = np.empty((N, w6.shape[1]), dtype=x.dtype)
    _dense_forward_samples(z5, w6, b6, a6)
    z6 = _squash(a6)
    penalties = np.empty((N, centers.shape[0]), dtype=x.dtype)
    _rbf_samples(z6, centers, penalties)
    loss, dpen = _paper_loss(penalties, labels, loss_kind, j)

    dz6 = np.empty_like(z6)
    _rbf_backward_samples(z6, centers, dpen, dz6)
    dz5 = np.empty_like(z5)
    _dense_backward_block(z5, w6, _squash_backward(z6, dz6), dz5, G[10], G[11])
    dz4 = np.empty_like(z4)
    _table_backward_block(z4, w5r, _squash_backward(z5, dz5).reshape(N, F5, 1, 1),
                          out5, in5, dz4, G[8].reshape(w5r.shape), G[9])
    dz3, dc4, db4 = subsample_backward(z3, c4, _squash_backward(z4, dz4), scale4)
    _copy(G[6], dc4)
    _copy(G[7], db4)
    dz2 = np.empty_like(z2)
    _table_backward_block(z2, w3, _squash_backward(z3, dz3), out3, in3, dz2, G[4], G[5])
    dz1, dc2, db2 = subsample_backward(z1, c2, _squash_backward(z2, dz2), scale2)
    _copy(G[2], dc2)
    _copy(G[3], db2)
    no_dx = np.empty((0,) + x.shape[1:], dtype=x.dtype)     # C1 needs no input gradient
    _table_backward_block(x, w1r, _squash_backward(z1, dz1), out1, in1, no_dx,
                          G[0].reshape(w1r.shape), G[1])
    if update:
        for k in range(len(flat_p)):
            _update(flat_p[k], flat_g[k], flat_rates[k])
    return loss, penalties
