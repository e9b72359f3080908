"""The inputs a unit is checked on: small random arrays of every shape it must handle.

Each maker takes a ``numpy.random.Generator`` and returns ``{input name: array}``.
The generator's seed decides the numbers, never the maker: visible cases are
seeded from the unit's name and the case's label alone (the same for everyone,
so ``minilenet check`` shows a student exactly what ``grade`` checks), hidden
cases from the instructor's secret as well (see ``case_rng``).

This file imports nothing from minilenet but the C3 table, so a student copy
holds it too.
"""
import hashlib
import hmac

import numpy as np


def case_rng(unit, label, secret=None):
    """The generator of one case: seeded by the unit's and the case's names (and
    ``secret``, bytes, for hidden cases), so adding a unit or a case changes no
    other case's numbers."""
    key = f"{unit}\0{label}".encode()
    digest = (hmac.new(secret, key, hashlib.sha256) if secret is not None
              else hashlib.sha256(b"minilenet visible case\0" + key)).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def conv(rng, N, C, F, H, W, k):
    """x (N, C, H, W), w (F, C, k, k), b (F,), dy (N, F, H-k+1, W-k+1)."""
    return {"x": rng.standard_normal((N, C, H, W)), "w": rng.standard_normal((F, C, k, k)),
            "b": rng.standard_normal(F), "dy": rng.standard_normal((N, F, H - k + 1, W - k + 1))}


def table(rng, N, connected, H, W, k):
    """A table convolution: ``connected`` (C, F) bool, one kernel per True entry."""
    out_idx, in_idx = np.nonzero(connected.T)
    C, F = connected.shape
    return {"x": rng.standard_normal((N, C, H, W)), "w": rng.standard_normal((len(out_idx), k, k)),
            "b": rng.standard_normal(F), "dy": rng.standard_normal((N, F, H - k + 1, W - k + 1)),
            "out_idx": out_idx.astype(np.int64), "in_idx": in_idx.astype(np.int64)}


def windows(rng, N, C, H, W, k, stride):
    """im2col's inputs: x (N, C, H, W) and the window's size and stride."""
    return {"x": rng.standard_normal((N, C, H, W)), "kh": np.array(k), "kw": np.array(k),
            "stride": np.array(stride)}


def columns(rng, N, C, H, W, k, stride):
    """col2im's inputs: cols (N, C, k, k, OH, OW) and the image's shape."""
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    return {"cols": rng.standard_normal((N, C, k, k, OH, OW)),
            "x_shape": np.array([N, C, H, W]), "stride": np.array(stride)}


def subsampling(rng, N, C, H, W, scale):
    """x (N, C, H, W), coef and bias (C,), dy (N, C, H/2, W/2); scale 1 (sum) or 1/4."""
    return {"x": rng.standard_normal((N, C, H, W)), "coef": rng.standard_normal(C),
            "bias": rng.standard_normal(C), "dy": rng.standard_normal((N, C, H // 2, W // 2)),
            "scale": np.array(scale)}


def penalties(rng, N, K, high):
    """RBF penalties (N, K) in [0, high), the correct class's small; labels (N,)."""
    y = rng.uniform(0, high, (N, K))
    labels = rng.integers(0, K, N)
    y[np.arange(N), labels] = rng.uniform(0, 2, N)
    return {"scores": y, "labels": labels}


def logits(rng, N, K, spread):
    """Scores (N, K) of standard deviation ``spread``; labels (N,)."""
    return {"scores": spread * rng.standard_normal((N, K)), "labels": rng.integers(0, K, N)}


def pool(rng, N, C, H, W, k, stride, ties=False):
    """x (N, C, H, W) of distinct values (or, with ``ties``, a constant half as on
    digits' backgrounds), dy (N, C, OH, OW), the window and its stride."""
    x = rng.permutation(np.arange(N * C * H * W) * 0.01).reshape(N, C, H, W)
    if ties:
        x[..., : H // 2, :] = 0.0
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    return {"x": x, "dy": rng.standard_normal((N, C, OH, OW)), "k": np.array(k),
            "stride": np.array(stride)}


def dense(rng, N, D, M):
    """x (N, D), w (D, M), b (M,), dy (N, M)."""
    return {"x": rng.standard_normal((N, D)), "w": rng.standard_normal((D, M)),
            "b": rng.standard_normal(M), "dy": rng.standard_normal((N, M))}


def rbf(rng, N, D, K, bitmaps=True):
    """x (N, D), centers (K, D) of +-1 (as the paper's bitmaps) or any values, dy (N, K)."""
    centers = rng.choice([-1.0, 1.0], (K, D)) if bitmaps else rng.standard_normal((K, D))
    return {"x": rng.standard_normal((N, D)), "centers": centers,
            "dy": rng.standard_normal((N, K))}


def squashing(rng, shape, spread=1.0):
    """x and dy of ``shape``; x of standard deviation ``spread``."""
    return {"x": spread * rng.standard_normal(shape), "dy": rng.standard_normal(shape)}


def curvature(rng, N):
    """A small subsampling-conv-subsampling-dense-RBF network's inputs (N, 2, 12, 12)
    and weights (a layer before the convolution, so that its input curvature counts)."""
    return {"x": rng.standard_normal((N, 2, 12, 12)), "centers": rng.choice([-1.0, 1.0], (3, 5)),
            "sub0.weight": rng.standard_normal(2), "sub0.bias": rng.standard_normal(2),
            "conv.weight": rng.standard_normal((3, 2, 3, 3)), "conv.bias": rng.standard_normal(3),
            "sub.weight": rng.standard_normal(3), "sub.bias": rng.standard_normal(3),
            "dense.weight": rng.standard_normal((12, 5)), "dense.bias": rng.standard_normal(5)}


def sdlm_step(rng, mu, eta):
    """A (4, 3) Dense layer's weights, gradients and curvatures h in [0, 2); mu, eta."""
    a = {"mu": np.array(mu), "eta": np.array(eta)}
    for key, shape in {"weight": (4, 3), "bias": (3,)}.items():
        a[key], a[f"grad.{key}"] = rng.standard_normal(shape), rng.standard_normal(shape)
        a[f"h.{key}"] = rng.uniform(0, 2, shape)
    return a


def images(rng, N):
    """N random uint8 images (N, 28, 28)."""
    return {"images": rng.integers(0, 256, (N, 28, 28)).astype(np.uint8)}


def extremes(rng):
    """The two extreme bytes, 0 and 255."""
    return {"images": np.array([[[0, 255]]], np.uint8)}


#: A small connection table, C=3 inputs to F=4 outputs (C3's is 6 to 16).
SMALL_TABLE = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]], dtype=bool)


def c3_table():
    from ..paper import C3_TABLE
    return C3_TABLE
