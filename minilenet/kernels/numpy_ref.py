"""Reference kernels in plain NumPy: the specification the Numba twins must match.

Every unit's math is here: the convolutions, subsampling, pooling, dense and RBF
layers, and at the end the squashing function, the paper's losses and the SDLM
update. A kernel is a pure function of arrays and numbers: no layers, no
validation (the layers, ``losses`` and ``optimizers`` validate before calling).
Outputs have the dtype of the inputs.
"""
import numpy as np

from ..paper import A, S


# --------------------------------------------------------------- im2col
def im2col(x, kh, kw, stride=1):
    """Gather every KH x KW window of ``x`` into columns.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    kh, kw, stride : int

    Returns
    -------
    cols : ndarray of shape (N, C, KH, KW, OH, OW)
        ``cols[n, c, i, j, p, q] = x[n, c, p*stride + i, q*stride + j]`` with
        OH = (H - KH) // stride + 1 and OW = (W - KW) // stride + 1.
    """
    N, C, H, W = x.shape
    OH, OW = (H - kh) // stride + 1, (W - kw) // stride + 1
    cols = np.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    # BEGIN SOLUTION im2col
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
    # END SOLUTION
    return cols


def col2im(cols, x_shape, stride=1):
    """Adjoint of ``im2col``: scatter columns back, *summing* overlapping windows.

    Parameters
    ----------
    cols : ndarray of shape (N, C, KH, KW, OH, OW)
    x_shape : tuple (N, C, H, W)

    Returns
    -------
    x : ndarray of shape (N, C, H, W)
        Every pixel receives the sum of all window entries that read it.
    """
    N, C, kh, kw, OH, OW = cols.shape
    x = np.zeros(x_shape, dtype=cols.dtype)
    # BEGIN SOLUTION col2im
    for i in range(kh):
        for j in range(kw):
            x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += cols[:, :, i, j]
    # END SOLUTION
    return x


# ---------------------------------------------------------- convolution
def conv2d_forward(x, w, b):
    """Valid, stride-1 cross-correlation.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    b : ndarray of shape (F,)

    Returns
    -------
    y : ndarray of shape (N, F, OH, OW), ``y = sum_{c,i,j} w[f,c,i,j] x[n,c,p+i,q+j] + b[f]``
    """
    F, C, KH, KW = w.shape
    # BEGIN SOLUTION conv.forward
    cols = im2col(x, KH, KW)                                   # (N, C, KH, KW, OH, OW)
    N, OH, OW = x.shape[0], cols.shape[4], cols.shape[5]
    y = w.reshape(F, -1) @ cols.reshape(N, C * KH * KW, OH * OW)  # (N, F, OH*OW)
    y = y.reshape(N, F, OH, OW) + b.reshape(1, F, 1, 1)
    # END SOLUTION
    return y


def conv2d_backward(x, w, dy, need_dx=True):
    """Gradients of ``conv2d_forward``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    dy : ndarray of shape (N, F, OH, OW)
    need_dx : bool, False when nothing uses the input gradient (a network's
        first layer): dx is then None (here it is still computed, for
        readability; the Numba twin skips it).

    Returns
    -------
    dx : (N, C, H, W) ``col2im(w^T dy)``;  dw : (F, C, KH, KW) ``sum_n dy cols^T``;
    db : (F,) ``sum over n, p, q of dy``.
    """
    F, C, KH, KW = w.shape
    N, _, OH, OW = dy.shape
    # BEGIN SOLUTION conv.backward
    cols = im2col(x, KH, KW).reshape(N, C * KH * KW, OH * OW)
    dy2 = dy.reshape(N, F, OH * OW)
    dw = np.einsum("nfp,nkp->fk", dy2, cols).reshape(w.shape)
    db = dy2.sum(axis=(0, 2))
    dcols = w.reshape(F, -1).T @ dy2                           # (N, C*KH*KW, OH*OW)
    dx = col2im(dcols.reshape(N, C, KH, KW, OH, OW), x.shape)
    # END SOLUTION
    return (dx if need_dx else None), dw, db


def table_to_dense(w, out_idx, in_idx, n_out, n_in):
    """Scatter packed kernels (K, KH, KW) into a dense (F, C, KH, KW) weight, zeros elsewhere."""
    dense = np.zeros((n_out, n_in) + w.shape[1:], dtype=w.dtype)
    dense[out_idx, in_idx] = w
    return dense


def table_conv2d_forward(x, w, b, out_idx, in_idx):
    """Convolution restricted to a connection table (LeNet-5's C3).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (K, KH, KW), one kernel per connection k
    b : ndarray of shape (F,)
    out_idx, in_idx : int arrays of shape (K,): connection k links input map
        ``in_idx[k]`` to output map ``out_idx[k]``.

    Returns
    -------
    y : ndarray of shape (N, F, OH, OW)
    """
    # BEGIN SOLUTION c3.forward
    dense = table_to_dense(w, out_idx, in_idx, b.shape[0], x.shape[1])
    y = conv2d_forward(x, dense, b)
    # END SOLUTION
    return y


def table_conv2d_backward(x, w, dy, out_idx, in_idx, need_dx=True):
    """Gradients of ``table_conv2d_forward``: dx (N, C, H, W), dw (K, KH, KW), db (F,);
    dx is None when ``need_dx`` is False (see ``conv2d_backward``).

    Only connected kernels get a gradient: the dense gradient is gathered back
    at the table's connections.
    """
    # BEGIN SOLUTION c3.backward
    dense = table_to_dense(w, out_idx, in_idx, dy.shape[1], x.shape[1])
    dx, dw_dense, db = conv2d_backward(x, dense, dy)
    dw = dw_dense[out_idx, in_idx]
    # END SOLUTION
    return (dx if need_dx else None), dw, db


# ---------------------------------------------------------- subsampling
def subsample_forward(x, coef, bias, scale):
    """Trainable 2x2 subsampling: ``y = coef[c] * scale * sum_{2x2} x + bias[c]``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), H and W even
    coef, bias : ndarray of shape (C,)
    scale : float, 1.0 for the paper's sum, 0.25 for the average

    Returns
    -------
    y : ndarray of shape (N, C, H/2, W/2)
    """
    N, C, H, W = x.shape
    # BEGIN SOLUTION subsampling.forward
    pooled = x.reshape(N, C, H // 2, 2, W // 2, 2).sum(axis=(3, 5))
    y = (coef * scale).reshape(1, C, 1, 1) * pooled + bias.reshape(1, C, 1, 1)
    # END SOLUTION
    return y


def subsample_backward(x, coef, dy, scale):
    """Gradients of ``subsample_forward``: dx (N, C, H, W), dcoef (C,), dbias (C,)."""
    N, C, H, W = x.shape
    # BEGIN SOLUTION subsampling.backward
    pooled = x.reshape(N, C, H // 2, 2, W // 2, 2).sum(axis=(3, 5))
    dcoef = scale * (dy * pooled).sum(axis=(0, 2, 3))
    dbias = dy.sum(axis=(0, 2, 3))
    g = (coef * scale).reshape(1, C, 1, 1) * dy                 # (N, C, H/2, W/2)
    dx = np.repeat(np.repeat(g, 2, axis=2), 2, axis=3)
    # END SOLUTION
    return dx, dcoef, dbias


# ---------------------------------------------------------- max-pooling
def maxpool_forward(x, k, stride):
    """Maximum over every K x K window.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    k, stride : int

    Returns
    -------
    y : ndarray of shape (N, C, OH, OW), each window's maximum, with
        OH = (H - K) // stride + 1 and OW = (W - K) // stride + 1
    winner : int64 ndarray of shape (N, C, OH, OW), the place ``i * K + j`` in its
        window of the *first* maximum in row-major order (``argmax``'s choice:
        of tied maxima the first wins; a NaN counts as the maximum)
    """
    N, C, H, W = x.shape
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    # BEGIN SOLUTION maxpool
    cols = im2col(x, k, k, stride).reshape(N, C, k * k, OH, OW)
    winner = cols.argmax(axis=2)
    y = np.take_along_axis(cols, winner[:, :, None], axis=2)[:, :, 0]
    # END SOLUTION
    return y, winner


def maxpool_backward(dy, winner, x_shape, k, stride):
    """Gradient of ``maxpool_forward``: each window's dy goes to its winner only.

    Parameters
    ----------
    dy : ndarray of shape (N, C, OH, OW)
    winner : int64 ndarray of shape (N, C, OH, OW), from ``maxpool_forward``
    x_shape : tuple (N, C, H, W)
    k, stride : int

    Returns
    -------
    dx : ndarray of shape (N, C, H, W), summing where windows overlap (stride < K)
    """
    N, C, OH, OW = dy.shape
    # BEGIN SOLUTION maxpool
    dcols = np.zeros((N, C, k * k, OH, OW), dtype=dy.dtype)
    np.put_along_axis(dcols, winner[:, :, None], dy[:, :, None], axis=2)
    dx = col2im(dcols.reshape(N, C, k, k, OH, OW), x_shape, stride)
    # END SOLUTION
    return dx


# ------------------------------------------------------ average pooling
def avgpool_forward(x, k, stride):
    """The mean of each k x k window of x (N, C, H, W), the windows ``stride`` apart:
    y (N, C, OH, OW). The windows are gathered with ``im2col``, as (N, C, k^2, OH, OW)."""
    N, C = x.shape[:2]
    cols = im2col(x, k, k, stride)
    cols = cols.reshape(N, C, k * k, *cols.shape[4:])
    # BEGIN SOLUTION avgpool
    y = cols.mean(axis=2)
    # END SOLUTION
    return y


def avgpool_backward(dy, x_shape, k, stride):
    """Gradient of ``avgpool_forward``: dy (N, C, OH, OW) -> dx of ``x_shape``. Each
    window's share, dcols (N, C, k^2, OH, OW), is scattered back with ``col2im``
    (which sums where windows overlap)."""
    N, C, OH, OW = dy.shape
    k2 = k * k
    # BEGIN SOLUTION avgpool
    dcols = np.repeat(dy[:, :, None] / k2, k2, axis=2)
    # END SOLUTION
    return col2im(dcols.reshape(N, C, k, k, OH, OW), x_shape, stride)


# ---------------------------------------------------------- dense, RBF
def dense_forward(x, w, b):
    """Fully connected layer.

    Parameters
    ----------
    x : ndarray of shape (N, D_in)
    w : ndarray of shape (D_in, D_out)
    b : ndarray of shape (D_out,)

    Returns
    -------
    y : ndarray of shape (N, D_out), ``y = x @ w + b``
    """
    # BEGIN SOLUTION dense.forward
    y = x @ w + b
    # END SOLUTION
    return y


def dense_backward(x, w, dy):
    """Gradients of ``dense_forward``: dx = dy w^T (N, D_in), dw = x^T dy, db = sum_n dy."""
    # BEGIN SOLUTION dense.backward
    dx = dy @ w.T
    dw = x.T @ dy
    db = dy.sum(axis=0)
    # END SOLUTION
    return dx, dw, db


def rbf_forward(x, centers):
    """Euclidean RBF units (paper eq. 7).

    Parameters
    ----------
    x : ndarray of shape (N, D)
    centers : ndarray of shape (K, D)

    Returns
    -------
    y : ndarray of shape (N, K), ``y[n, k] = sum_d (x[n, d] - centers[k, d])^2``
    """
    # BEGIN SOLUTION rbf.forward
    diff = x[:, None, :] - centers[None, :, :]          # (N, K, D)
    y = (diff * diff).sum(axis=2)
    # END SOLUTION
    return y


def rbf_backward(x, centers, dy):
    """Input gradient of ``rbf_forward``: dx = 2 (sum_k dy_k x - dy @ centers), (N, D)."""
    # BEGIN SOLUTION rbf.backward
    dx = 2.0 * (dy.sum(axis=1, keepdims=True) * x - dy @ centers)
    # END SOLUTION
    return dx


# ------------------------------------------------------------ squashing
def scaled_tanh(a):
    """The squashing function f(a) = A tanh(S a) (eq. 6), element-wise; any shape."""
    # BEGIN SOLUTION scaled_tanh
    y = A * np.tanh(S * a)
    # END SOLUTION
    return y


def scaled_tanh_derivative(y):
    """f'(a) written in terms of the output y = f(a): (S/A)(A^2 - y^2); any shape."""
    # BEGIN SOLUTION scaled_tanh
    d = (S / A) * (A * A - y * y)
    # END SOLUTION
    return d


# ------------------------------------------------------------ the paper's losses
def logsumexp_rows(z):
    """Row-wise log(sum(exp(z))) of (N, K), each row shifted by its own max: (N,)."""
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def mse_loss(penalties, labels):
    """The MSE criterion (eq. 8) on RBF penalties (N, K), integer labels (N,):
    (E = mean_n y[n, D_n], dE/dy (N, K) = onehot(D) / N)."""
    N = penalties.shape[0]
    rows = np.arange(N)
    # BEGIN SOLUTION mse_loss
    loss = penalties[rows, labels].mean()
    grad = np.zeros_like(penalties)
    grad[rows, labels] = 1.0 / N
    # END SOLUTION
    return loss, grad


def map_loss(penalties, labels, j=0.1):
    """The MAP criterion (eq. 9), E = mean_n [y_D + log(exp(-j) + sum_k exp(-y_k))],
    with a log-sum-exp over [-j, -y]: (E, dE/dy (N, K) = (onehot(D) - q) / N), q the
    softmax of [-j, -y] without its first entry."""
    N = penalties.shape[0]
    rows = np.arange(N)
    # BEGIN SOLUTION map_loss
    z = np.concatenate([np.full((N, 1), -j, dtype=penalties.dtype), -penalties], axis=1)
    lse = logsumexp_rows(z)
    loss = (penalties[rows, labels] + lse).mean()
    q = np.exp(z[:, 1:] - lse[:, None])
    grad = -q
    grad[rows, labels] += 1.0
    grad /= N
    # END SOLUTION
    return loss, grad.astype(penalties.dtype)


def softmax_cross_entropy(logits, labels):
    """Softmax cross-entropy (the modern variant) on logits (N, K), integer labels
    (N,): (E = mean_n -log softmax(z_n)_D, dE/dz (N, K) = (softmax(z) - onehot(D)) / N),
    each row shifted by its own maximum before exponentiating."""
    N = logits.shape[0]
    rows = np.arange(N)
    # BEGIN SOLUTION softmax_cross_entropy
    lse = logsumexp_rows(logits)
    loss = (lse - logits[rows, labels]).mean()
    grad = np.exp(logits - lse[:, None])
    grad[rows, labels] -= 1.0
    grad /= N
    # END SOLUTION
    return loss, grad.astype(logits.dtype)


# ------------------------------------------------------------ the SDLM update
def sdlm_rates(eta, mu, h, dtype):
    """SDLM's step sizes eta / (mu + h_kk) (Appendix C), element-wise, in ``dtype``."""
    # BEGIN SOLUTION sdlm.step
    rates = (eta / (mu + h)).astype(dtype)
    # END SOLUTION
    return rates


def sdlm_update(p, g, rates):
    """One SDLM step, in place: p -= rates * g (three arrays of one shape)."""
    # BEGIN SOLUTION sdlm.step
    p -= rates * g
    # END SOLUTION
