"""Losses as functions ``loss(scores, labels) -> (value, dscores)``.

The value is averaged over the batch (the paper's 1/P), and so is the
gradient. ``scores`` is (N, K): RBF penalties for the paper's criteria,
logits for softmax cross-entropy. ``labels`` is (N,) of ints in [0, K).
Each checks its arguments and runs the default backend's kernel (its math is in
``numpy_ref``; the Numba twins compute exp and log by arithmetic, the same bits
on every CPU, where NumPy's np.exp runs SIMD code chosen for the CPU).
"""
import numpy as np

from . import kernels
from .kernels.numpy_ref import logsumexp_rows


def _check(name, scores, labels):
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected scores of shape (N, K), got {scores.shape}")
    labels = np.asarray(labels)
    if labels.shape != (scores.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer labels of shape ({scores.shape[0]},), "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"{name}: labels must lie in [0, {scores.shape[1]}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return labels


def mse_loss(penalties, labels):
    """The paper's MSE / maximum-likelihood criterion (eq. 8): E = mean_p y_{D_p}.

    Only the correct class's penalty is pushed down; dE/dy = onehot(D) / N
    (``numpy_ref.mse_loss``).
    """
    loss, grad = kernels.get().mse_loss(penalties, _check("mse_loss", penalties, labels))
    return float(loss), grad


def map_loss(penalties, labels, j=0.1):
    """The paper's MAP criterion (eq. 9):

    E = mean_p [ y_D + log(exp(-j) + sum_i exp(-y_i)) ].

    Computed with a log-sum-exp over [-j, -y_1, ..., -y_K], so it stays finite
    for penalties in the thousands (``numpy_ref.map_loss``). dE/dy_k =
    ([k = D] - q_k) / N, where q is the softmax of [-j, -y] without its first
    ("rubbish class") entry. ``j`` is not given in the paper: 0.1 is minilenet's
    documented choice.
    """
    loss, grad = kernels.get().map_loss(penalties, _check("map_loss", penalties, labels), j)
    return float(loss), grad


def map_competitive_curvature(penalties, x, centers, j=0.1):
    """Gauss-Newton diagonal of the MAP criterion's competitive term w.r.t. the RBF input.

    The term L = log(exp(-j) + sum_k exp(-y_k)) has Hessian diag(q) - q q^T in the
    penalties y (q as in ``map_loss``), and dy_k/dx_j = 2 (x_j - w_kj); the
    Gauss-Newton part J^T H J on its diagonal is
    4 [sum_k q_k d_kj^2 - (sum_k q_k d_kj)^2], d_kj = x_j - w_kj, never negative.
    (The exact curvature adds -2 sum_k q_k.) penalties (N, K), x (N, D),
    centers (K, D) -> (N, D).
    """
    z = np.concatenate([np.full((len(penalties), 1), -j), -penalties.astype(np.float64)], axis=1)
    q = np.exp(z[:, 1:] - logsumexp_rows(z)[:, None])
    d = x[:, None, :].astype(np.float64) - centers[None]          # (N, K, D)
    mean_d = np.einsum("nk,nkd->nd", q, d)
    return 4.0 * (np.einsum("nk,nkd->nd", q, d * d) - mean_d ** 2)


def softmax_cross_entropy(logits, labels):
    """Softmax cross-entropy (the modern variant): E = mean_p -log softmax(z)_D.

    Each row is shifted by its own maximum before exponentiating.
    dE/dz = (softmax(z) - onehot(D)) / N.
    """
    loss, grad = kernels.get().softmax_cross_entropy(
        logits, _check("softmax_cross_entropy", logits, labels))
    return float(loss), grad


def softmax_cross_entropy_curvature(logits):
    """Gauss-Newton diagonal of the summed cross-entropy w.r.t. the logits: p (1 - p)."""
    p = np.exp(logits - logsumexp_rows(logits)[:, None])
    return p * (1.0 - p)


LOSSES = {"mse": mse_loss, "map": map_loss, "ce": softmax_cross_entropy}


def get(name, **options):
    """Look a loss up by name ("mse", "map", "ce"); options (j=...) are bound."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: expected one of {sorted(LOSSES)}")
    fn = LOSSES[name]
    if options:
        return lambda scores, labels: fn(scores, labels, **options)
    return fn
