"""Loop-level oracles, as plain as possible. The package never imports these."""
import numpy as np


def conv2d(x, w, b):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    y = np.zeros((N, F, H - KH + 1, W - KW + 1))
    for n in range(N):
        for f in range(F):
            for p in range(H - KH + 1):
                for q in range(W - KW + 1):
                    y[n, f, p, q] = np.sum(w[f] * x[n, :, p:p + KH, q:q + KW]) + b[f]
    return y


def table_conv2d(x, w, b, table):
    """Explicit C3-style convolution: kernels in (f, c) row-major order over table.T."""
    N, C, H, W = x.shape
    F = table.shape[1]
    K, KH, KW = w.shape
    y = np.zeros((N, F, H - KH + 1, W - KW + 1))
    k = 0
    for f in range(F):
        for c in range(C):
            if not table[c, f]:
                continue
            for n in range(N):
                for p in range(H - KH + 1):
                    for q in range(W - KW + 1):
                        y[n, f, p, q] += np.sum(w[k] * x[n, c, p:p + KH, q:q + KW])
            k += 1
    return y + b.reshape(1, F, 1, 1)


def subsample(x, coef, bias, scale):
    N, C, H, W = x.shape
    y = np.zeros((N, C, H // 2, W // 2))
    for n in range(N):
        for c in range(C):
            for p in range(H // 2):
                for q in range(W // 2):
                    window = x[n, c, 2 * p:2 * p + 2, 2 * q:2 * q + 2]
                    y[n, c, p, q] = coef[c] * scale * window.sum() + bias[c]
    return y


def window_counts(shape, kh, kw, stride):
    """How many KH x KW windows (at ``stride``) read each pixel of an (H, W) map."""
    H, W = shape
    counts = np.zeros((H, W))
    for p in range((H - kh) // stride + 1):
        for q in range((W - kw) // stride + 1):
            counts[p * stride:p * stride + kh, q * stride:q * stride + kw] += 1
    return counts


A, S = 1.7159, 2.0 / 3.0
#: Element-wise activations as plain whole-array formulas, by layer class name:
#: (f(a), f'(a) written in terms of the output y = f(a)).
ACTIVATIONS = {
    "ScaledTanh": (lambda a: A * np.tanh(S * a), lambda y: (S / A) * (A * A - y * y)),
    "Tanh": (np.tanh, lambda y: 1 - y * y),
    "Sigmoid": (lambda a: 1 / (1 + np.exp(-a)), lambda y: y * (1 - y)),
    "ReLU": (lambda a: np.maximum(a, 0.0), lambda y: (y > 0) * 1.0),
}
