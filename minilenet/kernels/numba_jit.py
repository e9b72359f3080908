"""Numba twins of ``numpy_ref``: same names, same signatures, same results.

The end of the file adds one Numba-only kernel, the paper network's whole
training step (``paper_train_step``), whose reference is the layer graph
(see ``minilenet.fused``). It lives here, beside the kernels it calls,
because Numba's on-disk cache is invalidated per source file: a kernel edit
must also recompile the step that inlines it.

Loops are ordered so that the innermost one runs along a contiguous row.
Reductions may be reassociated by the compiler (so they vectorise): results
then match NumPy to rounding (1e-12 relative in float64), and every run of
the same code gives the same bits.

The convolutions run on several cores for batches of ``PARALLEL_MIN`` samples
or more, without giving up determinism: each thread takes whole samples; the
weight gradient is summed into one partial buffer per fixed block of
``BLOCK`` samples (never by two threads into one array), and the partials
are added up in block order. The result depends on the batch size only,
not on the number of threads or their timing.

Set ``NUMBA_DISABLE_JIT=1`` to run these bodies as plain Python (slow, but
steppable in a debugger).
"""
import os

import numpy as np

#: OpenMP's default wait policy keeps a finished thread spinning for a while;
#: on a 2-core machine that spin steals the core the next Python call needs,
#: and every parallel kernel then waits a scheduler slice (about 7 ms): batch-64
#: training ran at 800 images/s instead of 6,000 (docs/performance.md). Threads
#: that sleep at once are the better trade here. Set before Numba starts its
#: OpenMP threads; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numba import njit, prange  # noqa: E402

from ..activations import A, S

#: The one place the compiler options are chosen. ``cache=True`` stores the
#: machine code on disk (``NUMBA_CACHE_DIR`` to move it), so a new process
#: skips compilation. Of the fast-math flags only reassociation and fused
#: multiply-add are allowed: NaN and infinity keep their IEEE meaning, so the
#: trainer's NaN guard still sees them.
OPTIONS = dict(cache=True, fastmath={"reassoc", "contract"}, nogil=True)
jit = njit(**OPTIONS)
#: For the batch drivers. They hold no whole-array expressions (which Numba
#: would turn into parallel loops even for one sample): only explicit prange.
parallel_jit = njit(parallel=True, **OPTIONS)

#: Batches at least this large are split across threads.
PARALLEL_MIN = 8
#: Samples per weight-gradient partial sum (fixed, so results do not depend on threads).
BLOCK = 8


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
def _table_backward_block(x, w, dy, out_idx, in_idx, need_dx, dx, dw, db):
    """Samples x (n, C, H, W): dx (written per sample, if need_dx) and the block's
    weight and bias gradient sums, written into dw (K, KH, KW) and db (F,)."""
    N, C, H, W = x.shape
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
            dx[n] = col2im(dcols.reshape(1, C, KH, KW, H - KH + 1, W - KW + 1),
                           (1, C, H, W), 1)[0]
    # END SOLUTION


@parallel_jit
def _table_forward(x, w, b, out_idx, in_idx):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    y = np.empty((N, b.shape[0], H - KH + 1, W - KW + 1), dtype=x.dtype)
    if N >= PARALLEL_MIN:
        for n in prange(N):                          # each thread writes its own samples
            _table_forward_one(x[n], w, b, out_idx, in_idx, y[n])
    else:
        for n in range(N):
            _table_forward_one(x[n], w, b, out_idx, in_idx, y[n])
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
def _blocks(N):
    """(blocks, samples per block) for a batch of N: one block below PARALLEL_MIN."""
    blocks = (N + BLOCK - 1) // BLOCK if N >= PARALLEL_MIN else 1
    return blocks, (N + blocks - 1) // blocks


@parallel_jit
def _table_backward(x, w, dy, out_idx, in_idx, need_dx=True):
    """dx (N, C, H, W; left unwritten when need_dx is False), dw (K, KH, KW), db (F,)."""
    N = x.shape[0]
    F = dy.shape[1]
    dx = np.empty_like(x)
    blocks, size = _blocks(N)
    dw_parts = np.empty((blocks,) + w.shape, dtype=x.dtype)
    db_parts = np.empty((blocks, F), dtype=x.dtype)
    if blocks > 1:
        for blk in prange(blocks):                   # each block owns its partial sums
            lo, hi = blk * size, min(N, (blk + 1) * size)
            _table_backward_block(x[lo:hi], w, dy[lo:hi], out_idx, in_idx, need_dx,
                                  dx[lo:hi], dw_parts[blk], db_parts[blk])
    else:
        _table_backward_block(x, w, dy, out_idx, in_idx, need_dx, dx, dw_parts[0], db_parts[0])
    return dx, _sum_blocks(dw_parts), _sum_blocks(db_parts)


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
def _covers_input(x, w):
    """True for a batch (not the fused step's single samples) whose kernel covers the
    whole input (C5): the convolution is then a dense layer, computed as one."""
    return x.shape[0] >= PARALLEL_MIN and x.shape[2] == w.shape[2] and x.shape[3] == w.shape[3]


@jit
def conv2d_forward(x, w, b):
    """Numba version of ``numpy_ref.conv2d_forward`` (a table conv with every pair connected)."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if _covers_input(x, w):
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        return dense_forward(x.reshape(N, C * KH * KW), w2, b).reshape(N, F, 1, 1)
    out_idx, in_idx = _all_pairs(F, C)
    return _table_forward(x, w.reshape(F * C, KH, KW), b, out_idx, in_idx)


@jit
def conv2d_backward(x, w, dy):
    """Numba version of ``numpy_ref.conv2d_backward``."""
    F, C, KH, KW = w.shape
    N = x.shape[0]
    if _covers_input(x, w):
        w2 = np.ascontiguousarray(w.reshape(F, C * KH * KW).T)
        dx, dw2, db = dense_backward(x.reshape(N, C * KH * KW), w2, dy.reshape(N, F))
        return dx.reshape(x.shape), np.ascontiguousarray(dw2.T).reshape(w.shape), db
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


@parallel_jit
def dense_forward(x, w, b):
    """Numba version of ``numpy_ref.dense_forward``."""
    N = x.shape[0]
    y = np.empty((N, w.shape[1]), dtype=x.dtype)
    if N >= PARALLEL_MIN:
        for n in prange(N):
            _dense_forward_one(x[n], w, b, y[n])
    else:
        for n in range(N):
            _dense_forward_one(x[n], w, b, y[n])
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


@parallel_jit
def dense_backward(x, w, dy):
    """Numba version of ``numpy_ref.dense_backward``."""
    N = x.shape[0]
    blocks, size = _blocks(N)
    dx = np.empty_like(x)
    dw_parts = np.empty((blocks,) + w.shape, dtype=x.dtype)
    db_parts = np.empty((blocks, w.shape[1]), dtype=x.dtype)
    if blocks > 1:
        for blk in prange(blocks):
            lo, hi = blk * size, min(N, (blk + 1) * size)
            _dense_backward_block(x[lo:hi], w, dy[lo:hi], dx[lo:hi], dw_parts[blk],
                                  db_parts[blk])
    else:
        _dense_backward_block(x, w, dy, dx, dw_parts[0], db_parts[0])
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


@parallel_jit
def rbf_forward(x, centers):
    """Numba version of ``numpy_ref.rbf_forward``."""
    N = x.shape[0]
    y = np.empty((N, centers.shape[0]), dtype=x.dtype)
    if N >= PARALLEL_MIN:
        for n in prange(N):
            _rbf_one(x[n], centers, y[n])
    else:
        for n in range(N):
            _rbf_one(x[n], centers, y[n])
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


@parallel_jit
def rbf_backward(x, centers, dy):
    """Numba version of ``numpy_ref.rbf_backward``."""
    N = x.shape[0]
    dx = np.empty_like(x)
    if N >= PARALLEL_MIN:
        for n in prange(N):
            _rbf_backward_one(x[n], centers, dy[n], dx[n])
    else:
        for n in range(N):
            _rbf_backward_one(x[n], centers, dy[n], dx[n])
    return dx


# ------------------------------------------------ fused paper-network step
@jit
def _constants(a):
    """A, S, S/A and A^2 in a's dtype (so float32 work stays float32)."""
    c = np.empty(4, dtype=a.dtype)
    c[0], c[1], c[2], c[3] = A, S, S / A, A * A
    return c


@jit
def _squash_rows(a, y, c, lo, hi):
    # BEGIN SOLUTION scaled_tanh
    for n in range(lo, hi):
        for i in range(a.shape[1]):
            y[n, i] = c[0] * np.tanh(c[1] * a[n, i])
    # END SOLUTION


@parallel_jit
def _squash(a):
    """ScaledTanh.f, element-wise into a new array of a's dtype (samples in parallel)."""
    c = _constants(a)
    N = a.shape[0]
    y = np.empty_like(a)
    a2, y2 = a.reshape(N, -1), y.reshape(N, -1)
    if N >= PARALLEL_MIN:
        for n in prange(N):
            _squash_rows(a2, y2, c, n, n + 1)
    else:
        _squash_rows(a2, y2, c, 0, N)
    return y


@jit
def _squash_backward_rows(y, dy, out, c, lo, hi):
    # BEGIN SOLUTION scaled_tanh
    for n in range(lo, hi):
        for i in range(y.shape[1]):
            out[n, i] = dy[n, i] * (c[2] * (c[3] - y[n, i] * y[n, i]))
    # END SOLUTION


@parallel_jit
def _squash_backward(y, dy):
    """dy * ScaledTanh.df(y) = dy (S/A)(A^2 - y^2), element-wise (samples in parallel)."""
    c = _constants(y)
    N = y.shape[0]
    out = np.empty_like(dy)
    y2, d2, o2 = y.reshape(N, -1), dy.reshape(N, -1), out.reshape(N, -1)
    if N >= PARALLEL_MIN:
        for n in prange(N):
            _squash_backward_rows(y2, d2, o2, c, n, n + 1)
    else:
        _squash_backward_rows(y2, d2, o2, c, 0, N)
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
def paper_forward_backward(x, labels, P, G, out_idx, in_idx, centers, scale2, scale4, loss_kind, j):
    """Forward, loss and backward of the paper network; gradients into the arrays G.

    P and G are the 12 parameter and gradient arrays in ``PARAMS`` order.
    Returns (loss, penalties).
    """
    w1, b1, c2, b2, w3, b3, c4, b4, w5, b5, w6, b6 = P
    N = x.shape[0]
    z1 = _squash(conv2d_forward(x, w1, b1))
    z2 = _squash(subsample_forward(z1, c2, b2, scale2))
    z3 = _squash(table_conv2d_forward(z2, w3, b3, out_idx, in_idx))
    z4 = _squash(subsample_forward(z3, c4, b4, scale4))
    z5 = _squash(conv2d_forward(z4, w5, b5)).reshape(N, -1)
    z6 = _squash(dense_forward(z5, w6, b6))
    penalties = rbf_forward(z6, centers)
    loss, dpen = _paper_loss(penalties, labels, loss_kind, j)

    da6 = _squash_backward(z6, rbf_backward(z6, centers, dpen))
    dz5, dw6, db6 = dense_backward(z5, w6, da6)
    G[10][...], G[11][...] = dw6, db6
    da5 = _squash_backward(z5, dz5).reshape(N, w5.shape[0], 1, 1)
    dz4, dw5, db5 = conv2d_backward(z4, w5, da5)
    G[8][...], G[9][...] = dw5, db5
    dz3, dc4, db4 = subsample_backward(z3, c4, _squash_backward(z4, dz4), scale4)
    G[6][...], G[7][...] = dc4, db4
    dz2, dw3, db3 = table_conv2d_backward(z2, w3, _squash_backward(z3, dz3),
                                             out_idx, in_idx)
    G[4][...], G[5][...] = dw3, db3
    dz1, dc2, db2 = subsample_backward(z1, c2, _squash_backward(z2, dz2), scale2)
    G[2][...], G[3][...] = dc2, db2
    F1, C1, K1, _ = w1.shape
    out_idx1, in_idx1 = _all_pairs(F1, C1)
    _, dw1, db1 = _table_backward(x, w1.reshape(F1 * C1, K1, K1), _squash_backward(z1, dz1),
                                     out_idx1, in_idx1, False)     # no input gradient needed
    G[0][...], G[1][...] = dw1.reshape(w1.shape), db1
    return loss, penalties


@jit
def _update(p, g, rate):
    """p -= rate * g, element-wise (the SDLM step with per-parameter rates); 1-d arrays."""
    # BEGIN SOLUTION sdlm.step
    for i in range(p.size):
        p[i] -= rate[i] * g[i]
    # END SOLUTION


@jit
def paper_train_step(x, labels, P, G, flat_p, flat_g, flat_rates, out_idx, in_idx, centers,
                     scale2, scale4, loss_kind, j):
    """paper_forward_backward, then p -= rate * g for every parameter: ``flat_p``,
    ``flat_g`` and ``flat_rates`` are 1-d views of the arrays of P and G and of their
    rates (one array type, so one compiled update instead of one per rank)."""
    loss, penalties = paper_forward_backward(x, labels, P, G, out_idx, in_idx, centers,
                                             scale2, scale4, loss_kind, j)
    for k in range(len(flat_p)):
        _update(flat_p[k], flat_g[k], flat_rates[k])
    return loss, penalties
