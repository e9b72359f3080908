"""EuclideanRBF: LeNet-5's output layer, and the 7x12 digit bitmaps it compares against."""
from importlib import resources

import numpy as np

from . import config, kernels
from .layer import Layer

BITMAP_ROWS, BITMAP_COLS = 12, 7


def parse_bitmaps(text):
    """Parse ASCII-art bitmaps: a ``digit K`` line, then 12 rows of 7 ``#``/``.``.

    Returns an (n_classes, 84) array of +1 (``#``) and -1 (``.``), ordered by K.
    Lines starting with ``#`` before a block, and blank lines, are ignored.
    """
    codes, current, label = {}, None, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (current is None and line.startswith("#")):
            continue
        if line.startswith("digit"):
            words = line.split()
            if len(words) != 2 or not words[1].isdigit():
                raise ValueError(f"bitmaps: bad header {raw!r} (expected 'digit K')")
            label, current = int(words[1]), []
            codes[label] = current
            continue
        if current is None or len(line) != BITMAP_COLS or set(line) - set("#."):
            raise ValueError(f"bitmaps: bad row {raw!r} (expected {BITMAP_COLS} of '#' or '.')")
        current.append([1.0 if ch == "#" else -1.0 for ch in line])
    for label, rows in codes.items():
        if len(rows) != BITMAP_ROWS:
            raise ValueError(f"bitmaps: digit {label} has {len(rows)} rows, "
                             f"expected {BITMAP_ROWS}")
    if not codes:
        raise ValueError("bitmaps: no 'digit K' blocks found")
    if sorted(codes) != list(range(len(codes))):
        raise ValueError(f"bitmaps: labels must be 0..K-1, got {sorted(codes)}")
    return np.array([np.ravel(codes[k]) for k in range(len(codes))])


def read_bitmaps(path, classes=None):
    """``parse_bitmaps`` of a file; UserError naming the file when it is unreadable,
    malformed, or (with ``classes``) does not hold exactly that many codes."""
    from .errors import UserError
    try:
        with open(path) as f:
            centers = parse_bitmaps(f.read())
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text file of bitmaps ({e.reason})") from e
    except ValueError as e:
        raise UserError(f"{path}: {e}") from e
    if classes is not None and len(centers) != classes:
        raise UserError(f"{path}: expected codes for the {classes} digits 0 to {classes - 1}, "
                        f"got {len(centers)}")
    return centers


def load_digit_bitmaps():
    """The shipped prototypes (``resources/digit_bitmaps.txt``) as a (10, 84) array."""
    text = resources.files("minilenet").joinpath("resources/digit_bitmaps.txt").read_text()
    return parse_bitmaps(text)


def format_bitmaps(centers):
    """Render (K, 84) codes back to the ASCII art ``parse_bitmaps`` reads."""
    out = []
    for k, code in enumerate(np.asarray(centers)):
        out.append(f"digit {k}")
        for row in code.reshape(BITMAP_ROWS, BITMAP_COLS):
            out.append("".join("#" if v > 0 else "." for v in row))
    return "\n".join(out)


def hamming_distances(centers):
    """Pairwise count of differing pixels between codes, (K, K)."""
    c = np.sign(np.asarray(centers))
    return (c[:, None, :] != c[None, :, :]).sum(axis=2)


class EuclideanRBF(Layer):
    """Output layer of Euclidean radial basis units: ``y_i = sum_j (x_j - w_ij)^2``.

    The prototypes ``w`` are fixed (a buffer, not a parameter): by default the
    shipped 7x12 digit bitmaps, +1 for ink and -1 for background. The predicted
    class is the argmin of y (the closest prototype).

    Shape
    -----
    x (N, D) -> y (N, K); centers (K, D), by default (10, 84).

    Cache
    -----
    ``x``, ``backend``, ``y_shape``.

    References
    ----------
    Paper section II-B, eq. 7; Fig. 3.
    """
    input_ndim = 2

    def __init__(self, centers=None, *, dtype=None, backend=None):
        super().__init__(dtype)
        self.backend = backend and config.check_backend(backend)
        centers = load_digit_bitmaps() if centers is None else np.asarray(centers)
        if centers.ndim != 2:
            raise ValueError(f"{self.name}: centers must be (classes, features), "
                             f"got shape {centers.shape}")
        self.buffers["centers"] = centers.astype(self.dtype)

    @property
    def in_features(self):
        return self.buffers["centers"].shape[1]

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self.name}: expected ({self.in_features},) per sample, "
                             f"got {tuple(input_shape)}")
        return (self.buffers["centers"].shape[0],)

    def connections(self, input_shape):
        return self.buffers["centers"].size

    def forward(self, x):
        x = self.check_input(x, (self.in_features,))
        backend = config.backend_for(self.backend)
        y = kernels.get(backend).rbf_forward(x, self.buffers["centers"])
        self.cache = {"x": x, "backend": backend, "y_shape": y.shape}
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return kernels.get(self.cache["backend"]).rbf_backward(
            self.cache["x"], self.buffers["centers"], dy)

    def input_curvature(self, n):
        """Second derivative of any one penalty y_i w.r.t. each input x_j: 2.

        This is where the SDLM optimizer starts its Gauss-Newton pass for the
        RBF losses (see ``minilenet.optimizers.SDLM``): the correct-class
        penalty y_D(x) = |x - w_D|^2 is exactly quadratic in x.
        """
        return np.full((n, self.in_features), 2.0, dtype=self.dtype)
