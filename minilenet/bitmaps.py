"""The RBF output layer's prototypes: 7x12 bitmaps of the ten digits as ASCII art.

``parse_bitmaps`` reads the format of ``resources/digit_bitmaps.txt`` (a ``digit K``
line, then 12 rows of 7 ``#``/``.``); the codes are +1 for ink, -1 for background.
"""
from importlib import resources

import numpy as np

from .errors import UserError

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
