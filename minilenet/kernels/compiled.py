"""The compiled bodies of the Numba kernels, all in one file.

``numba_jit`` holds the twins of ``numpy_ref`` (the names the layers call); each
allocates its outputs and runs one of these bodies, on the calling thread or on a
span of samples per thread. They live together because Numba's on-disk cache is
kept per source file and checks only that file: a compiled function that calls
another compiled in a different file would keep running the old machine code of
its callee after an edit there. Everything a compiled function here calls is
compiled here (or is a BLAS product, ``blas.gemm``, called by name).

The end of the file is the paper network's whole training step (``paper_step``),
built from the same bodies and twins (``scaled_tanh``, the losses, ``sdlm_update``)
that the tests hold to ``numpy_ref``; its reference is the layer graph
(``minilenet.fused``).

Loops are ordered so that the innermost one runs along a contiguous row.

Every result is the same bits on every CPU (docs/performance.md, "The same bits
on every machine"): the compiler may neither reorder a sum nor fuse a multiply
and an add (no fast-math flags), so each line computes what it says, in the
order it says. Loops still vectorise where their lanes are independent (an
axpy, a row of outputs); a long sum is split into ``LANES`` partial sums fixed
in the code (``pair_dots``), not by the CPU's vector width. tanh, exp and log
are computed by arithmetic here, not by the platform's maths library. Results
match NumPy to rounding (1e-12 relative in float64).

Set ``NUMBA_DISABLE_JIT=1`` to run these bodies as plain Python (slow, but
steppable in a debugger).
"""
import math

import numpy as np
from numba import njit

from ..paper import A, S
from .blas import gemm

#: The one place the compiler options are chosen. ``cache=True`` stores the
#: machine code on disk (``NUMBA_CACHE_DIR`` to move it), so a new process
#: skips compilation. No fast-math flag: reassociation would let the compiler
#: split a sum by the CPU's vector width, and contraction would fuse a multiply
#: and an add where the CPU has FMA, both changing the bits from one CPU to the
#: next (and NaN and infinity keep their IEEE meaning, for the trainer's NaN
#: guard). ``nogil`` lets threads run kernels at once.
OPTIONS = dict(cache=True, nogil=True)
jit = njit(**OPTIONS)

#: Partial sums per long sum (``pair_dots``): lane l adds the terms l, l + LANES,
#: l + 2 LANES, ... in order, and ``lane_total`` adds the lanes in a fixed tree.
#: The number is fixed here, not by the CPU, so a 16-lane AVX-512 CPU, an 8-lane
#: AVX2 one and a 4-lane NEON one add the same numbers in the same order.
LANES = 64


@jit
def lane_total(part):
    """The sum of the lanes part (LANES,) in a fixed tree: lane l gains lane
    l + LANES/2, then l + LANES/4, and so on to l + 1 (part is overwritten)."""
    width = part.shape[0]
    while width > 1:
        half = width // 2
        low, high = part[:half], part[half:width]   # slices: plain indices vectorise
        for lane in range(half):
            low[lane] += high[lane]
        width = half
    return part[0]


@jit
def pair_dots(a, b, rows_a, rows_b, out):
    """out[r] = a[rows_a[r]] . b[rows_b[r]]: dot products of rows of the 2-D arrays
    a and b (n columns each, rows contiguous), each summed in ``LANES`` lanes.

    All the pairs advance together, LANES columns at a time, so the additions of
    different pairs overlap in the CPU; the lanes of one pair are independent, so
    the compiler vectorises them without reordering a sum. (Each loop runs over
    slices with plain indices: an index such as ``start + lane`` would make Numba
    check it for negative values, and the loop would not vectorise.)"""
    R, n = out.shape[0], a.shape[1]
    part = np.zeros((R, LANES), dtype=out.dtype)
    whole = n - n % LANES
    for start in range(0, whole, LANES):
        for r in range(R):
            u, v, acc = a[rows_a[r], start:start + LANES], b[rows_b[r], start:start + LANES], \
                part[r]
            for lane in range(acc.shape[0]):
                acc[lane] += u[lane] * v[lane]
    for r in range(R):                               # the last n % LANES columns, then the tree
        u, v, acc = a[rows_a[r], whole:], b[rows_b[r], whole:], part[r]
        for lane in range(u.shape[0]):
            acc[lane] += u[lane] * v[lane]
        out[r] = lane_total(acc)


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
def copy_into(dst, src):
    """dst[...] = src for C-contiguous arrays of one size, as a loop (Numba's
    array assignment brings shape checks whose messages take seconds to compile)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    for i in range(d.size):
        d[i] = s[i]


@jit
def table_forward_one(x, w, b, out_idx, in_idx, y):
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
    if P == 1:                                       # one dot product per connection
        dots = np.empty(K, dtype=y.dtype)
        pair_dots(wf, x.reshape(C, T), np.arange(K), in_idx, dots)
        for k in range(K):
            yf[out_idx[k], 0] += dots[k]
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
def window_rows(x, KH, KW, rows):
    """One sample x (C, H, W) -> rows (OH*OW, C*KH*KW + 1): row p*OW + q holds the
    window of every input map at output position (p, q), map after map, tap after
    tap (the order of w[f].reshape(-1)), and a 1 in the last column (for the bias)."""
    C, H, W = x.shape
    OW = W - KW + 1
    for s in range(rows.shape[0]):
        p, q = s // OW, s % OW
        row = rows[s]
        for c in range(C):
            for i in range(KH):
                src, dst = x[c, p + i, q:q + KW], row[(c * KH + i) * KW:(c * KH + i + 1) * KW]
                for j in range(KW):
                    dst[j] = src[j]
        row[rows.shape[1] - 1] = 1


@jit
def weight_grad_sums(x, dy, KH, KW, grad):
    """grad (F, C*KH*KW + 1) += the weight and bias gradient sums of samples x (n, C, H,
    W), dy (n, F, OH, OW) (OH*OW > 1), for every (output, input) map pair, connected or
    not, the bias last: grad[f, (c, i, j)] sums dy[f, s] * x[c, window s at (i, j)]
    over the output positions s of each sample in turn, and grad[f, -1] sums dy[f, s].

    Every loop that adds runs along independent sums, so it vectorises without
    reordering one. Long rows of positions (C1's 784): ``pair_dots`` of dy's rows
    with im2col's, in lanes. Short rows (C3's 100): for each position s in turn,
    grad[f] += dy[f, s] * window_rows[s], a row of C*KH*KW + 1 independent sums."""
    N, C = x.shape[:2]
    F, U = grad.shape
    P = dy.shape[2] * dy.shape[3]
    gf = grad.reshape(-1)
    if P >= 4 * LANES:
        pair_f, pair_u = np.empty(F * U, dtype=np.int64), np.empty(F * U, dtype=np.int64)
        for i in range(F * U):
            pair_f[i], pair_u[i] = i // U, i % U
        dots = np.empty(F * U, dtype=x.dtype)
        cols = np.ones((U, P), dtype=x.dtype)          # im2col's rows, and a row of ones
        for n in range(N):
            copy_into(cols[:U - 1], im2col(x[n:n + 1], KH, KW, 1))
            pair_dots(dy[n].reshape(F, P), cols, pair_f, pair_u, dots)
            for i in range(F * U):
                gf[i] += dots[i]
        return
    rows = np.empty((P, U), dtype=x.dtype)
    for n in range(N):
        window_rows(x[n], KH, KW, rows)
        dyf = dy[n].reshape(F, P)
        for s in range(P):
            row = rows[s]
            for f in range(F):
                g, acc = dyf[f, s], grad[f]
                for u in range(U):
                    acc[u] += g * row[u]


@jit
def table_backward_block(x, w, dy, out_idx, in_idx, dx, dw, db):
    """Samples x (n, C, H, W): dx (n, C, H, W) written per sample, and the block's
    weight and bias gradient sums written into dw (K, KH, KW) and db (F,). Pass a dx
    with no samples, (0, C, H, W), when the input gradient is not needed (C1).
    A kernel that covers its input (C5, one output position) takes one axpy per
    connection; the others, ``weight_grad_sums``."""
    N, C, H, W = x.shape
    need_dx = dx.shape[0] > 0
    K, KH, KW = w.shape
    F = dy.shape[1]
    T, P = KH * KW, dy.shape[2] * dy.shape[3]
    wf, dwf = w.reshape(K, T), dw.reshape(K, T)
    dwf[...] = 0
    db[...] = 0
    # BEGIN SOLUTION conv.backward c3.backward
    if P == 1:                                       # C5: one axpy per connection
        for n in range(N):
            xf = x[n].reshape(C, T)
            dxf = dx[n:n + 1].reshape(-1, T)         # (C, T); (0, T) when dx is skipped
            if need_dx:
                dxf[...] = 0
            for f in range(F):
                db[f] += dy[n, f, 0, 0]
            for k in range(K):
                g, c = dy[n, out_idx[k], 0, 0], in_idx[k]
                for t in range(T):
                    dwf[k, t] += g * xf[c, t]
                if need_dx:
                    for t in range(T):
                        dxf[c, t] += g * wf[k, t]
    else:
        grad = np.zeros((F, C * T + 1), dtype=x.dtype)
        weight_grad_sums(x, dy, KH, KW, grad)
        for k in range(K):
            for t in range(T):
                dwf[k, t] = grad[out_idx[k], in_idx[k] * T + t]
        for f in range(F):
            db[f] = grad[f, C * T]
    for n in range(N if need_dx and P > 1 else 0):
        dyf = dy[n].reshape(F, P)
        dcols = np.zeros((C, T, P), dtype=x.dtype)
        for k in range(K):
            f, c = out_idx[k], in_idx[k]
            for t in range(T):
                wv = wf[k, t]
                for s in range(P):
                    dcols[c, t, s] += wv * dyf[f, s]
        copy_into(dx[n], col2im(dcols.reshape(1, C, KH, KW, H - KH + 1, W - KW + 1),
                                (1, C, H, W), 1))
    # END SOLUTION


@jit
def table_forward_samples(x, w, b, out_idx, in_idx, y):
    """Samples x (n, C, H, W) one after another into y (n, F, OH, OW)."""
    for n in range(x.shape[0]):
        table_forward_one(x[n], w, b, out_idx, in_idx, y[n])


@jit
def sum_blocks(parts):
    """parts (B, ...) summed over B in block order (a fixed, thread-free order)."""
    out = parts[0].copy()
    flat_out = out.reshape(-1)
    for blk in range(1, parts.shape[0]):
        flat = parts[blk].reshape(-1)
        for i in range(flat.size):
            flat_out[i] += flat[i]
    return out


# ------------------------------------- batches: convolution as matrix products
# For a batch of PARALLEL_MIN samples or more, each sample's convolution is one
# matrix product, computed by the BLAS NumPy links (one BLAS thread per call,
# several calls at once in the threads). The product's input is im2col in a
# "shifted rows" layout: with the image flattened (C, H*W), tap (i, j) of map c
# reads the row from i*W + j on, so each column of the matrix is one contiguous
# slice of the image. Sliding over the flattened image also produces KW - 1
# outputs at the end of every output row that wrap around into the next image
# row: the products compute them (L = (OH-1)*W + OW columns instead of OH*OW)
# and ``crop_rows`` drops them. A last row of ones carries the bias.

@jit
def shifted_rows(x, kh, kw, rows):
    """x (n, C, H, W) -> rows (n, C*KH*KW + 1, L): rows[n, (c, i, j), s] is
    x[n, c] flattened, at i*W + j + s; the last row is ones."""
    N, C, H, W = x.shape
    L = rows.shape[2]
    # BEGIN SOLUTION conv.forward c3.forward
    for n in range(N):
        for c in range(C):
            image = x[n, c].reshape(-1)
            for i in range(kh):
                for j in range(kw):
                    src, dst = image[i * W + j:i * W + j + L], rows[n, (c * kh + i) * kw + j]
                    for s in range(L):
                        dst[s] = src[s]
        ones = rows[n, rows.shape[1] - 1]
        for s in range(L):
            ones[s] = 1
    # END SOLUTION


@jit
def crop_rows(wide, W, y):
    """wide (n, F, L) -> y (n, F, OH, OW): output row p is wide[n, f, p*W:p*W + OW]."""
    N, F, OH, OW = y.shape
    for n in range(N):
        for f in range(F):
            for p in range(OH):
                src, dst = wide[n, f, p * W:p * W + OW], y[n, f, p]
                for q in range(OW):
                    dst[q] = src[q]


@jit
def pad_rows(dy, W, wide):
    """dy (n, F, OH, OW) -> wide (n, F, L), zero at the wrapped-around positions (so
    they add nothing to a gradient)."""
    N, F, OH, OW = dy.shape
    L = wide.shape[2]
    for n in range(N):
        for f in range(F):
            row = wide[n, f]
            for s in range(L):
                row[s] = 0
            for p in range(OH):
                src, dst = dy[n, f, p], row[p * W:p * W + OW]
                for q in range(OW):
                    dst[q] = src[q]


@jit
def add_shifted_rows(drows, kh, kw, dx):
    """Adjoint of ``shifted_rows`` (without the ones): drows (n, C*KH*KW, L) ->
    dx (n, C, H, W), each entry added back where it was read from."""
    N, C, H, W = dx.shape
    L = drows.shape[2]
    # BEGIN SOLUTION conv.backward c3.backward
    for n in range(N):
        for c in range(C):
            image = dx[n, c].reshape(-1)
            for s in range(H * W):
                image[s] = 0
            for i in range(kh):
                for j in range(kw):
                    src, dst = drows[n, (c * kh + i) * kw + j], image[i * W + j:i * W + j + L]
                    for s in range(L):
                        dst[s] += src[s]
    # END SOLUTION


@jit
def wide_length(H, W, KH, KW):
    """L, the columns of shifted rows: OH output rows of W, less the last row's KW - 1."""
    return (H - KH) * W + W - KW + 1


@jit
def conv_forward_span(x, wb, KH, KW, y, lo, hi):
    """Samples lo..hi-1, one at a time: y[n] = wb @ rows[n], one compiled call for the span."""
    W, L = x.shape[3], wide_length(x.shape[2], x.shape[3], KH, KW)
    rows = np.empty((1, wb.shape[1], L), dtype=x.dtype)
    wide = np.empty((1, wb.shape[0], L), dtype=x.dtype)
    # BEGIN SOLUTION conv.forward c3.forward
    for n in range(lo, hi):
        shifted_rows(x[n:n + 1], KH, KW, rows)
        gemm(wb, rows[0], wide[0])
        crop_rows(wide, W, y[n:n + 1])
    # END SOLUTION


@jit
def conv_backward_span(x, w2, dy, KH, KW, dx, dwb, lo, hi):
    """Samples lo..hi-1, one at a time: each sample's (weight | bias) gradient
    transposed into dwb[n] (C*KH*KW + 1, F), and dx unless it has no samples."""
    F, W, L = w2.shape[0], x.shape[3], wide_length(x.shape[2], x.shape[3], KH, KW)
    rows = np.empty((1, w2.shape[1] + 1, L), dtype=x.dtype)
    wide = np.empty((1, F, L), dtype=x.dtype)
    drows = np.empty((1, w2.shape[1], L), dtype=x.dtype)
    # BEGIN SOLUTION conv.backward c3.backward
    for n in range(lo, hi):
        shifted_rows(x[n:n + 1], KH, KW, rows)
        pad_rows(dy[n:n + 1], W, wide)
        gemm(rows[0], wide[0], dwb[n], trans_b=True)
        if dx.shape[0]:
            gemm(w2, wide[0], drows[0], trans_a=True)
            add_shifted_rows(drows, KH, KW, dx[n:n + 1])
    # END SOLUTION


@jit
def subsample_forward_samples(x, coef, bias, scale, y):
    """Samples x (n, C, H, W) one after another into y (n, C, H/2, W/2)."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    # BEGIN SOLUTION subsampling.forward
    for n in range(N):
        for c in range(C):
            g = coef[c] * scale
            for p in range(OH):
                top, bottom = x[n, c, 2 * p], x[n, c, 2 * p + 1]
                for q in range(OW):
                    s = top[2 * q] + top[2 * q + 1] + bottom[2 * q] + bottom[2 * q + 1]
                    y[n, c, p, q] = g * s + bias[c]
    # END SOLUTION


@jit
def subsample_backward_block(x, coef, dy, scale, dx, dcoef, dbias):
    """Samples x (n, C, H, W): dx per sample, and the block's coefficient and bias
    gradient sums written into dcoef (C,) and dbias (C,)."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    dcoef[...] = 0
    dbias[...] = 0
    # BEGIN SOLUTION subsampling.backward
    for c in range(C):
        g = coef[c] * scale
        acc_coef, acc_bias = dcoef[c], dbias[c]          # zeros of x's dtype
        for n in range(N):
            for p in range(OH):
                top, bottom = x[n, c, 2 * p], x[n, c, 2 * p + 1]
                dtop, dbottom = dx[n, c, 2 * p], dx[n, c, 2 * p + 1]
                for q in range(OW):
                    d = dy[n, c, p, q]
                    s = top[2 * q] + top[2 * q + 1] + bottom[2 * q] + bottom[2 * q + 1]
                    acc_coef += d * s
                    acc_bias += d
                    gd = g * d
                    dtop[2 * q] = gd
                    dtop[2 * q + 1] = gd
                    dbottom[2 * q] = gd
                    dbottom[2 * q + 1] = gd
        dcoef[c] = scale * acc_coef
        dbias[c] = acc_bias
    # END SOLUTION


@jit
def subsample_backward_blocks(x, coef, dy, scale, size, dx, dcoef_parts, dbias_parts,
                               first, last):
    """Blocks first..last-1 of ``size`` samples: their dx, and each block's partial
    coefficient and bias gradients in dcoef_parts[block], dbias_parts[block]."""
    for blk in range(first, last):
        lo, hi = blk * size, min(x.shape[0], (blk + 1) * size)
        subsample_backward_block(x[lo:hi], coef, dy[lo:hi], scale, dx[lo:hi],
                                  dcoef_parts[blk], dbias_parts[blk])


# ---------------------------------------------------------- max-pooling
@jit
def window_max(plane, r, s, k):
    """(the first maximum of plane[r:r+k, s:s+k] in row-major order, its place
    i*k + j): argmax's rule, so of tied maxima the first wins and a NaN wins."""
    # BEGIN SOLUTION maxpool
    best, at, nan = plane[r, s], 0, False
    for i in range(k):
        for j in range(k):                                   # along a row of x
            v = plane[r + i, s + j]
            nan |= v != v
            if v > best:                                     # strict: ties keep the first
                best, at = v, i * k + j
    if nan:                                                  # rare: the first NaN
        for t in range(k * k):
            v = plane[r + t // k, s + t % k]
            if v != v:
                return v, t
    # END SOLUTION
    return best, at


@jit
def maxpool2_row(x2, r, y2, winner2, p):
    """One row of 2 x 2 windows at stride 2, over rows r and r + 1 of x2 (rows, W)
    into row p of y2 and winner2 (rows, OW), without a branch (each comparison
    selects), so the compiler vectorises it. Returns False if a window's sum is
    NaN (it held a NaN, or both infinities): the caller then redoes the row with
    ``window_max``, which knows argmax's NaN rule."""
    usual = True
    # BEGIN SOLUTION maxpool
    for q in range(y2.shape[1]):
        a, b = x2[r, 2 * q], x2[r, 2 * q + 1]
        c, d = x2[r + 1, 2 * q], x2[r + 1, 2 * q + 1]
        best, at = a, 0
        at = 1 if b > best else at
        best = b if b > best else best
        at = 2 if c > best else at
        best = c if c > best else best
        at = 3 if d > best else at
        best = d if d > best else best
        total = a + b + c + d
        usual &= total == total
        y2[p, q], winner2[p, q] = best, at
    # END SOLUTION
    return usual


@jit
def maxpool_forward_samples(x, k, stride, y, winner):
    """Samples x (n, C, H, W) into y and winner (n, C, OH, OW), written in place."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    x2, y2, winner2 = x.reshape(-1, W), y.reshape(-1, OW), winner.reshape(-1, OW)
    # BEGIN SOLUTION maxpool
    for n in range(N):
        for c in range(C):
            for p in range(OH):
                r = p * stride
                if k == 2 and stride == 2 and maxpool2_row(
                        x2, (n * C + c) * H + r, y2, winner2, (n * C + c) * OH + p):
                    continue                                 # the common case, vectorised
                for q in range(OW):
                    y[n, c, p, q], winner[n, c, p, q] = window_max(x[n, c], r, q * stride, k)
    # END SOLUTION


@jit
def maxpool_backward_samples(dy, winner, k, stride, dx):
    """Samples dy, winner (n, C, OH, OW) into dx (n, C, H, W): each dy added at its
    window's winner (so overlapping windows sum), zero elsewhere."""
    N, C, OH, OW = dy.shape
    dx[...] = 0
    # BEGIN SOLUTION maxpool
    for n in range(N):
        for c in range(C):
            for p in range(OH):
                for q in range(OW):
                    at = winner[n, c, p, q]
                    if k == 2:                               # the common case: no division
                        i, j = at >> 1, at & 1               # by a variable (slow)
                    else:
                        i, j = at // k, at % k
                    dx[n, c, p * stride + i, q * stride + j] += dy[n, c, p, q]
    # END SOLUTION


# ---------------------------------------------------- average pooling
@jit
def avgpool_forward_samples(x, k, stride, y):
    """Samples x (n, C, H, W) into y (n, C, OH, OW): each window's sum over k^2."""
    N, C = x.shape[:2]
    OH, OW = y.shape[2], y.shape[3]
    # BEGIN SOLUTION avgpool
    for n in range(N):
        for c in range(C):
            for p in range(OH):
                for q in range(OW):
                    total = x[n, c, 0, 0] * 0                # a zero of x's dtype
                    for i in range(k):
                        for j in range(k):
                            total += x[n, c, p * stride + i, q * stride + j]
                    y[n, c, p, q] = total / (k * k)
    # END SOLUTION


@jit
def avgpool_backward_samples(dy, k, stride, dx):
    """Samples dy (n, C, OH, OW) into dx (n, C, H, W): dy / k^2 added to every input of
    its window (so overlapping windows sum), zero elsewhere."""
    N, C, OH, OW = dy.shape
    dx[...] = 0
    # BEGIN SOLUTION avgpool
    for n in range(N):
        for c in range(C):
            for p in range(OH):
                for q in range(OW):
                    share = dy[n, c, p, q] / (k * k)
                    for i in range(k):
                        for j in range(k):
                            dx[n, c, p * stride + i, q * stride + j] += share
    # END SOLUTION


# ------------------------------------------------------- dense and RBF
@jit
def dense_forward_one(x, w, b, y):
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
def dense_forward_samples(x, w, b, y):
    for n in range(x.shape[0]):
        dense_forward_one(x[n], w, b, y[n])


@jit
def rows_forward(x, w_rows, b, y):
    """y[n, f] = w_rows[f] . x[n] + b[f] for x (N, D) and w_rows (F, D): a convolution
    whose kernel covers its input (C5, D = C*KH*KW), as ``pair_dots``."""
    N, F = y.shape
    with_w, with_x = np.empty(N * F, dtype=np.int64), np.empty(N * F, dtype=np.int64)
    for i in range(N * F):
        with_w[i], with_x[i] = i % F, i // F
    dots = np.empty(N * F, dtype=y.dtype)
    # BEGIN SOLUTION conv.forward c3.forward
    pair_dots(w_rows, x, with_w, with_x, dots)
    for n in range(N):
        for f in range(F):
            y[n, f] = dots[n * F + f] + b[f]
    # END SOLUTION


@jit
def dense_forward_blocks(x, w, b, size, y, first, last):
    """Blocks first..last-1 of ``size`` samples: y = x @ w + b, one product a block."""
    # BEGIN SOLUTION dense.forward
    for blk in range(first, last):
        lo, hi = blk * size, min(x.shape[0], (blk + 1) * size)
        gemm(x[lo:hi], w, y[lo:hi])
        for n in range(lo, hi):
            for o in range(w.shape[1]):
                y[n, o] += b[o]
    # END SOLUTION


@jit
def dense_backward_block(x, w, dy, dx, dw, db):
    """Samples x (n, D) of a small batch: dx per sample, dw and db sums written in place."""
    D, M = w.shape
    dw[...] = 0
    db[...] = 0
    # BEGIN SOLUTION dense.backward
    for n in range(x.shape[0]):
        for o in range(M):
            db[o] += dy[n, o]
        for i in range(D):
            xi = x[n, i]
            for o in range(M):
                dw[i, o] += xi * dy[n, o]
        pair_dots(dy[n:n + 1], w, np.zeros(D, dtype=np.int64), np.arange(D), dx[n])
    # END SOLUTION


@jit
def dense_backward_tasks(x, w, dy, dx, dw, db, first, last):
    """Tasks first..last-1 of two, each one BLAS product over the whole batch (so the
    result does not depend on the threads): 0 is dw and db, 1 is dx."""
    # BEGIN SOLUTION dense.backward
    for task in range(first, last):
        if task == 0:
            gemm(x, dy, dw, trans_a=True)
            for o in range(dy.shape[1]):
                db[o] = 0
            for n in range(dy.shape[0]):
                for o in range(dy.shape[1]):
                    db[o] += dy[n, o]
        else:
            gemm(dy, w, dx, trans_b=True)
    # END SOLUTION


@jit
def rbf_one(x, centers, y):
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
def rbf_samples(x, centers, y):
    for n in range(x.shape[0]):
        rbf_one(x[n], centers, y[n])


@jit
def rbf_backward_one(x, centers, dy, dx):
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
def rbf_backward_samples(x, centers, dy, dx):
    for n in range(x.shape[0]):
        rbf_backward_one(x[n], centers, dy[n], dx[n])


# ---------------------------------- squashing, the paper's losses, the SDLM update
@jit
def constants(a):
    """A, S, S/A and A^2 in a's dtype (so float32 work stays float32)."""
    c = np.empty(4, dtype=a.dtype)
    c[0], c[1], c[2], c[3] = A, S, S / A, A * A
    return c


#: ln 2 split in two (Cody and Waite; the values of fdlibm, written as their bits):
#: _LN2_HI has 32 significant bits, so k * _LN2_HI is exact for every k that ``exp``,
#: ``log`` and ``tanh`` meet, and _LN2_LO carries the next 53 bits of ln 2.
_LN2 = 0.6931471805599453                       # the float64 nearest ln 2
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")   # 6.93147180369123816490e-01
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")  # 1.90821492927058770002e-10


@jit
def expm1_reduced(r):
    """e^r - 1 for |r| <= ln(2)/2, by its Taylor series to r^13 (Horner): the core of
    ``tanh`` and ``exp``, every operation in a fixed order."""
    p = 1.0 / 6227020800.0                      # from 1/13! down to 1/1!
    p = 1.0 / 479001600.0 + r * p
    p = 1.0 / 39916800.0 + r * p
    p = 1.0 / 3628800.0 + r * p
    p = 1.0 / 362880.0 + r * p
    p = 1.0 / 40320.0 + r * p
    p = 1.0 / 5040.0 + r * p
    p = 1.0 / 720.0 + r * p
    p = 1.0 / 120.0 + r * p
    p = 1.0 / 24.0 + r * p
    p = 1.0 / 6.0 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    return p * r


@njit(error_model="numpy", **OPTIONS)
def exp(x):
    """e^x in float64 (to a few units in the last place) by arithmetic alone, the same
    bits on every platform (the C library's exp differs between platforms; its
    reference is np.exp, tests/test_kernels.py). x = k ln 2 + r with |r| <= ln(2)/2,
    e^x = 2^k (1 + expm1(r)), and 2^k applied exactly by ``math.ldexp``."""
    x = x + 0.0                                 # float64 from here on
    if x != x:
        return x
    if x > 709.8:
        return math.inf
    if x < -745.2:
        return 0.0
    k = np.floor(x * (1.0 / _LN2) + 0.5)       # |k| <= 1075: k * _LN2_HI is exact
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return math.ldexp(1.0 + expm1_reduced(r), int(k))


#: sqrt(1/2): ``log`` brings the mantissa into [sqrt(1/2), sqrt(2)).
_SQRT_HALF = 0.7071067811865476


@njit(error_model="numpy", **OPTIONS)
def log(x):
    """ln x in float64 (to a few units in the last place) by arithmetic alone, like
    ``exp`` (its reference is np.log). x = m 2^e with m in [sqrt(1/2), sqrt(2)),
    ln m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^23."""
    x = x + 0.0
    if x != x or x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    if x == math.inf:
        return x
    m, e = math.frexp(x)                        # x = m 2^e, m in [1/2, 1)
    if m < _SQRT_HALF:
        m, e = 2.0 * m, e - 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 23.0                              # 1/23 + s2/25 ... down to 1/3, then 1
    p = 1.0 / 21.0 + s2 * p
    p = 1.0 / 19.0 + s2 * p
    p = 1.0 / 17.0 + s2 * p
    p = 1.0 / 15.0 + s2 * p
    p = 1.0 / 13.0 + s2 * p
    p = 1.0 / 11.0 + s2 * p
    p = 1.0 / 9.0 + s2 * p
    p = 1.0 / 7.0 + s2 * p
    p = 1.0 / 5.0 + s2 * p
    p = 1.0 / 3.0 + s2 * p
    ln_m = 2.0 * s + 2.0 * s * (s2 * p)
    return e * _LN2_HI + (ln_m + e * _LN2_LO)


@njit(error_model="numpy", **OPTIONS)          # "/" without Python's zero check (a branch)
def tanh(z):
    """tanh(z) in float64 (to a few units in the last place) by arithmetic alone, so
    that a loop over it vectorises: Numba's own np.tanh calls the C library one
    value at a time (about 10 ns each here; this is about 1 ns). Its reference is
    np.tanh (tests/test_fused.py). With m = expm1(-2|z|) = e^(-2|z|) - 1,
    tanh|z| = -m / (2 + m), and m comes from 2^k (1 + expm1(r)) - 1 with
    -2|z| = k ln 2 + r, |r| <= ln(2)/2, and expm1(r) by its Taylor series to r^13.
    NaN stays NaN; +-inf give +-1."""
    x = abs(z) + 0.0                            # float64 from here on
    x = 20.0 if x > 20.0 else x                 # tanh(20) is 1 in float64; NaN passes
    t = -2.0 * x
    k = np.floor(t * (1.0 / _LN2) + 0.5)       # an integer in [-58, 0]
    r = (t - k * _LN2_HI) - k * _LN2_LO
    p = expm1_reduced(r)
    scale, m, half = 1.0, -k, 0.5               # scale = 2^k, from the bits of -k
    for _ in range(6):
        halved = np.floor(0.5 * m)
        scale *= half if m > 2.0 * halved else 1.0
        half *= half
        m = halved
    em = scale * p + (scale - 1.0)
    y = -em / (2.0 + em)
    return math.copysign(y, z)


#: ``tanh32``'s constants, float32 (a float64 constant would turn its float32 arithmetic
#: into float64): ln 2 split in two (_LN2_HI32 has 16 significant bits, so k * _LN2_HI32
#: is exact for the |k| <= 26 it meets), 9 (tanh(9) rounds to 1 in float32), and the
#: Taylor coefficients of expm1 from 1/7! down to 1/2!.
_F32 = np.float32
_LN2_HI32, _LN2_LO32 = _F32(0.693145751953125), _F32(_LN2 - 0.693145751953125)
_INV_LN2_32, _TANH32_ONE_AT = _F32(1.0 / _LN2), _F32(9.0)
_ZERO32, _HALF32, _ONE32, _TWO32 = _F32(0.0), _F32(0.5), _F32(1.0), _F32(2.0)
_EXPM1_32 = (_F32(1 / 5040), _F32(1 / 720), _F32(1 / 120), _F32(1 / 24), _F32(1 / 6))


@njit(error_model="numpy", **OPTIONS)
def tanh32(z):
    """tanh(z) for float32 z in float32 arithmetic (to a few float32 units in the
    last place): ``tanh``'s method with the precision float32 needs, expm1(r) to r^7
    (the truncation, 6e-9 of the result, is below a float32 unit), twice as many
    values per vector instruction as float64. Its reference is np.tanh."""
    x = abs(z)
    x = _TANH32_ONE_AT if x > _TANH32_ONE_AT else x     # NaN passes
    t = -_TWO32 * x
    k = np.floor(t * _INV_LN2_32 + _HALF32)             # an integer in [-26, 0]
    r = (t - k * _LN2_HI32) - k * _LN2_LO32
    p = _EXPM1_32[0]
    p = _EXPM1_32[1] + r * p
    p = _EXPM1_32[2] + r * p
    p = _EXPM1_32[3] + r * p
    p = _EXPM1_32[4] + r * p
    p = _HALF32 + r * p
    p = _ONE32 + r * p
    p *= r                                              # expm1(r)
    scale, m, half = _ONE32, -k, _HALF32                # scale = 2^k, from the bits of -k
    for _ in range(5):
        halved = np.floor(_HALF32 * m)
        scale *= half if m > _TWO32 * halved else _ONE32
        half *= half
        m = halved
    em = scale * p + (scale - _ONE32)
    y = -em / (_TWO32 + em)
    return np.copysign(y, z)


@jit
def scaled_tanh_into(a, y):
    """y = A tanh(S a) element-wise, for C-contiguous arrays of one size and dtype,
    with the vectorising ``tanh`` (``tanh32`` for float32; the layers' squashing, on
    the Numba backend)."""
    c = constants(y)
    af, yf = a.reshape(-1), y.reshape(-1)
    # BEGIN SOLUTION scaled_tanh
    if yf.itemsize == 4:
        for i in range(af.size):
            yf[i] = c[0] * tanh32(c[1] * af[i])
    else:
        for i in range(af.size):
            yf[i] = c[0] * tanh(c[1] * af[i])
    # END SOLUTION


@jit
def scaled_tanh(a):
    """Numba version of ``numpy_ref.scaled_tanh``: A tanh(S a) element-wise, into a new
    array of a's dtype (a C-contiguous array)."""
    y = np.empty_like(a)
    scaled_tanh_into(a, y)
    return y


@jit
def scaled_tanh_slope(y, c):
    """f'(a) from one output y = f(a): (S/A)(A^2 - y^2), with c = constants(y)."""
    # BEGIN SOLUTION scaled_tanh
    d = c[2] * (c[3] - y * y)
    # END SOLUTION
    return d


@jit
def scaled_tanh_derivative(y):
    """Numba version of ``numpy_ref.scaled_tanh_derivative``, into a new array."""
    c = constants(y)
    d = np.empty_like(y)
    yf, df = y.reshape(-1), d.reshape(-1)
    for i in range(yf.size):
        df[i] = scaled_tanh_slope(yf[i], c)
    return d


@jit
def scaled_tanh_backward(y, dy):
    """dy * f'(a) from the output y = f(a), as the ScaledTanh layer computes it, in
    one pass into a new array."""
    c = constants(y)
    dx = np.empty_like(dy)
    yf, dyf, dxf = y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    for i in range(yf.size):
        dxf[i] = dyf[i] * scaled_tanh_slope(yf[i], c)
    return dx


@jit
def mse_loss(penalties, labels):
    """Numba version of ``numpy_ref.mse_loss``: (loss, dloss/dpenalties)."""
    N = penalties.shape[0]
    grad = np.zeros_like(penalties)
    loss = 0.0
    # BEGIN SOLUTION mse_loss
    for n in range(N):
        loss += penalties[n, labels[n]]
        grad[n, labels[n]] += 1.0 / N
    # END SOLUTION
    return loss / N, grad


@jit
def map_loss(penalties, labels, j=0.1):
    """Numba version of ``numpy_ref.map_loss`` (a log-sum-exp over [-j, -y] per
    sample): (loss, dloss/dpenalties)."""
    N, K = penalties.shape
    grad = np.zeros_like(penalties)
    loss = 0.0
    # BEGIN SOLUTION map_loss
    for n in range(N):
        y, label = penalties[n], labels[n]
        loss += y[label]
        m = -j
        for k in range(K):
            m = max(m, -y[k])
        total = exp(-j - m)
        for k in range(K):
            total += exp(-y[k] - m)
        lse = m + log(total)
        loss += lse
        for k in range(K):
            grad[n, k] = -exp(-y[k] - lse) / N
        grad[n, label] += 1.0 / N
    # END SOLUTION
    return loss / N, grad


@jit
def softmax_cross_entropy(logits, labels):
    """Numba version of ``numpy_ref.softmax_cross_entropy`` (with ``exp`` and ``log``):
    (loss, dloss/dlogits)."""
    N, K = logits.shape
    grad = np.empty_like(logits)
    loss = 0.0
    # BEGIN SOLUTION softmax_cross_entropy
    for n in range(N):
        z, label = logits[n], labels[n]
        m = z[0]
        for k in range(1, K):
            m = max(m, z[k])
        total = 0.0
        for k in range(K):
            total += exp(z[k] - m)
        lse = m + log(total)
        loss += lse - z[label]
        for k in range(K):
            grad[n, k] = exp(z[k] - lse) / N
        grad[n, label] -= 1.0 / N
    # END SOLUTION
    return loss / N, grad


@jit
def sdlm_update(p, g, rates):
    """Numba version of ``numpy_ref.sdlm_update`` on 1-d arrays: p -= rates * g."""
    # BEGIN SOLUTION sdlm.step
    for i in range(p.size):
        p[i] -= rates[i] * g[i]
    # END SOLUTION


# ------------------------------------------------ fused paper-network step
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
    table_forward_samples(x, w1r, b1, out1, in1, a1)
    z1 = scaled_tanh(a1)
    s2 = np.empty((N, F1, z1.shape[2] // 2, z1.shape[3] // 2), dtype=x.dtype)
    subsample_forward_samples(z1, c2, b2, scale2, s2)
    z2 = scaled_tanh(s2)
    a3 = np.empty((N, b3.shape[0], z2.shape[2] - w3.shape[1] + 1, z2.shape[3] - w3.shape[2] + 1),
                  dtype=x.dtype)
    table_forward_samples(z2, w3, b3, out3, in3, a3)
    z3 = scaled_tanh(a3)
    s4 = np.empty((N, a3.shape[1], a3.shape[2] // 2, a3.shape[3] // 2), dtype=x.dtype)
    subsample_forward_samples(z3, c4, b4, scale4, s4)
    z4 = scaled_tanh(s4)
    a5 = np.empty((N, F5, 1, 1), dtype=x.dtype)
    rows_forward(z4.reshape(N, -1), w5.reshape(F5, -1), b5, a5.reshape(N, F5))
    z5 = scaled_tanh(a5).reshape(N, F5)
    a6 = np.empty((N, w6.shape[1]), dtype=x.dtype)
    dense_forward_samples(z5, w6, b6, a6)
    z6 = scaled_tanh(a6)
    penalties = np.empty((N, centers.shape[0]), dtype=x.dtype)
    rbf_samples(z6, centers, penalties)
    if loss_kind == 1:
        loss, dpen = map_loss(penalties, labels, j)
    else:
        loss, dpen = mse_loss(penalties, labels)

    dz6 = np.empty_like(z6)
    rbf_backward_samples(z6, centers, dpen, dz6)
    dz5 = np.empty_like(z5)
    dense_backward_block(z5, w6, scaled_tanh_backward(z6, dz6), dz5, G[10], G[11])
    dz4 = np.empty_like(z4)
    table_backward_block(z4, w5r, scaled_tanh_backward(z5, dz5).reshape(N, F5, 1, 1),
                          out5, in5, dz4, G[8].reshape(w5r.shape), G[9])
    dz3 = np.empty_like(z3)
    subsample_backward_block(z3, c4, scaled_tanh_backward(z4, dz4), scale4, dz3, G[6], G[7])
    dz2 = np.empty_like(z2)
    table_backward_block(z2, w3, scaled_tanh_backward(z3, dz3), out3, in3, dz2, G[4], G[5])
    dz1 = np.empty_like(z1)
    subsample_backward_block(z1, c2, scaled_tanh_backward(z2, dz2), scale2, dz1, G[2], G[3])
    no_dx = np.empty((0,) + x.shape[1:], dtype=x.dtype)     # C1 needs no input gradient
    table_backward_block(x, w1r, scaled_tanh_backward(z1, dz1), out1, in1, no_dx,
                          G[0].reshape(w1r.shape), G[1])
    if update:
        for k in range(len(flat_p)):
            sdlm_update(flat_p[k], flat_g[k], flat_rates[k])
    return loss, penalties
