"""Random planar affine distortions of training digits (paper section III-C).

The paper combines horizontal and vertical translation, scaling, squeezing
(horizontal compression with vertical elongation, or the reverse) and
horizontal shearing, but gives no ranges. ``DistortionRanges`` holds
minilenet's base ranges, picked so that the distorted digits stay legible;
``minilenet train --distort`` uses half of each (``--distort-strength 0.5``),
the strength with the lowest error on a validation split of the training set
(docs/results.md).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DistortionRanges:
    """Uniform ranges of each random map (minilenet's choice; the paper gives none).

    translate : pixels, horizontal and vertical, each in [-t, t]
    scale     : overall zoom factor in [1 - s, 1 + s]
    squeeze   : x scaled by (1 + q) and y by 1 / (1 + q), q in [-q, q]
    shear     : horizontal shear x += k * y, k in [-k, k]
    """
    translate: float = 2.0
    scale: float = 0.1
    squeeze: float = 0.15
    shear: float = 0.3

    def scaled(self, strength):
        """Every range times ``strength`` (``--distort-strength``)."""
        return DistortionRanges(self.translate * strength, self.scale * strength,
                                self.squeeze * strength, self.shear * strength)


def random_affine(n, rng, ranges=DistortionRanges()):
    """n random 2x2 matrices (N, 2, 2) and translations (N, 2), in (row, col) order.

    A maps output offsets from the image centre to input offsets (inverse map).
    The forward map is lower triangular, so its inverse is written out: element-wise
    arithmetic, the same bits on every CPU (``np.linalg.inv`` calls LAPACK, whose
    kernels are chosen for the CPU).
    """
    # uniform in [-r, r) as rng.uniform draws it, -r + 2r u, written out in NumPy's
    # element-wise arithmetic: NumPy's own C code may fuse the multiply and the add
    # into one FMA where its compiler does so (clang on ARM), and round differently
    u = lambda r: -r + (2 * r) * rng.random(n)        # noqa: E731
    s = 1.0 + u(ranges.scale)
    q = 1.0 + u(ranges.squeeze)
    k = u(ranges.shear)
    t = np.stack([u(ranges.translate), u(ranges.translate)], axis=1)
    # forward map (row, col): rows scaled by s/q, cols by s*q, then col += k * row:
    # [[a, 0], [c, d]], whose inverse is [[1/a, 0], [-c/(a d), 1/d]].
    a, c, d = s / q, k * s / q, s * q
    inverse = np.zeros((n, 2, 2))
    inverse[:, 0, 0] = 1 / a
    inverse[:, 1, 0] = -c / (a * d)
    inverse[:, 1, 1] = 1 / d
    return inverse, t


def warp(images, inverse, shift):
    """Apply affine maps to uint8 images (N, H, W) with bilinear interpolation.

    Output pixel p samples the input at centre + inverse @ (p - centre - shift);
    outside the image reads background (0). Returns uint8 (N, H, W).
    """
    N, H, W = images.shape
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    centre = np.array([(H - 1) / 2, (W - 1) / 2])
    offs = np.stack([rows - centre[0], cols - centre[1]])[None] - shift[:, :, None, None]
    inv = inverse[:, :, :, None, None]                  # (N, 2, 2, 1, 1)
    # src_i = inverse[i, 0] * row offset + inverse[i, 1] * col offset + centre_i, written
    # out (np.einsum's sums of products may be vectorised differently on another CPU)
    src = inv[:, :, 0] * offs[:, None, 0] + inv[:, :, 1] * offs[:, None, 1] \
        + centre[None, :, None, None]
    r0, c0 = np.floor(src[:, 0]), np.floor(src[:, 1])
    fr, fc = src[:, 0] - r0, src[:, 1] - c0
    padded = np.pad(images.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    r0 = np.clip(r0.astype(np.int64) + 1, 0, H)
    c0 = np.clip(c0.astype(np.int64) + 1, 0, W)
    n = np.arange(N)[:, None, None]
    out = ((1 - fr) * (1 - fc) * padded[n, r0, c0] + (1 - fr) * fc * padded[n, r0, c0 + 1]
           + fr * (1 - fc) * padded[n, r0 + 1, c0] + fr * fc * padded[n, r0 + 1, c0 + 1])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def distort(images, rng, ranges=DistortionRanges(), chunk=5000):
    """A freshly distorted copy of uint8 images (N, H, W), drawn from ``rng``."""
    out = np.empty_like(images)
    for i in range(0, len(images), chunk):
        inverse, shift = random_affine(len(images[i:i + chunk]), rng, ranges)
        out[i:i + chunk] = warp(images[i:i + chunk], inverse, shift)
    return out
