"""Turn a failed comparison into feedback a student can act on.

``diagnose(have, want)`` compares a student's array with the reference and
looks for a recognisable slip, in this order (the first that fits wins):

1. not an array of numbers, a different shape, a NaN or inf where a number was expected;
2. all zeros;
3. one constant factor (named when it is -1, 2, 3, 4, 1/2, 1/3, 1/4 or the batch size);
4. two axes swapped, or reversed along an axis (a transposed or flipped kernel);
5. a constant offset, or one that is the same along some axes (a missing bias);
6. a factor that is the same along some axes only (a missing per-channel coefficient);
7. shifted by one along an axis (an off-by-one window);
8. right on part of the elements, possibly with the wrong ones in a few slices.

A correction "fits" when the relative error left after it is at most FIT. A
difference that small gets no hint, unless yours was computed in float32.
Both arrays are first divided by the same power of two, so that values near
1e308 do not overflow; every measure here is scale-free, so nothing changes.
"""
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from ..gradcheck import rel_error

#: A correction explains the difference when at most this relative error is left
#: (loose enough for float32 rounding, about 1e-7). Smaller errors get no hint.
FIT = 1e-6
#: An element counts as right when it matches to this, relative to the arrays' scale.
EXACT = 1e-9
#: A fitted factor gets a name (2, 1/4, the batch size) within this relative distance.
NAME_TOL = 1e-4
#: "Right on part of the elements" needs at least this fraction of them right.
MIN_RIGHT = 0.25
#: The longest name and hint that describe() prints.
NAME_CHARS, HINT_CHARS = 80, 200


@dataclass(frozen=True)
class Diagnosis:
    """One comparison. ``index`` (into want's shape) is the worst element, ``value``
    and ``expected`` are have and want there. ``hidden_hint`` is the hint without
    any value, index or other detail of the data: what describe(hidden=True) prints."""
    error: float
    index: tuple | None
    value: float | None
    expected: float | None
    hint: str
    hidden_hint: str = ""


def diagnose(have, want, *, batch=None) -> Diagnosis:
    """Compare ``have`` with ``want`` (arrays of the same shape, ideally); never raises.
    ``batch`` is the batch size N, to recognise a factor N or 1/N."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h, w = _as_floats(have), _as_floats(want)
        if h is None or w is None or h.shape != w.shape:
            hint = (_shape_hint(h.shape, w.shape) if h is not None and w is not None else
                    f"{'yours' if h is None else 'the expected value'} is not an array of numbers")
            return Diagnosis(math.inf, None, None, None, hint, hint)
        if h.size == 0:
            return Diagnosis(0.0, None, None, None, "", "")
        same = (h == w) | (np.isnan(h) & np.isnan(w))
        finite = np.isfinite(h) & np.isfinite(w)
        if np.any(~same & ~finite):
            index = _unravel(np.argmax(~same & ~finite), w.shape)
            return Diagnosis(math.inf, index, float(h[index]), float(w[index]),
                             *_not_finite(h[index], index))
        # NaN/inf in both at the same place count as equal: leave them out.
        hs, ws = np.where(finite, h, 0.0), np.where(finite, w, 0.0)
        top = max(np.max(np.abs(hs)), np.max(np.abs(ws)))
        scale = 2.0 ** np.floor(np.log2(top)) if top > 0 else 1.0
        hs, ws = hs / scale, ws / scale
        error = rel_error(hs, ws)
        index = _unravel(np.argmax(np.abs(hs - ws)), w.shape)
        try:
            hint = _hint(hs, ws, error, batch, scale)
        except Exception:           # advice only: it must never break the grading it explains
            hint = ("", "")
        return Diagnosis(error, index, float(h[index]), float(w[index]), *hint)


def describe(name: str, d: Diagnosis, *, hidden: bool = False) -> str:
    """One or two lines for a student. ``hidden=True`` (a secret case): only the
    name, the relative error and the hint, no value and no index."""
    text = f"{_cut(name, NAME_CHARS)}: relative error {d.error:.3g}"
    if not hidden and d.index is not None:
        where = f" at {_cut(d.index, NAME_CHARS)}" if d.index else ""
        text += f"; worst{where}: yours is {d.value:.3g} where {d.expected:.3g} was expected"
    hint = d.hidden_hint if hidden else d.hint
    return text + (f"\n  {_cut(hint, HINT_CHARS)}" if hint else "")


# ------------------------------------------------------------------ helpers
def _as_floats(x):
    """x as a float64 array, or None when it is not an array of real numbers."""
    try:
        a = np.asarray(x)
        if a.dtype.kind == "O" and not all(isinstance(v, numbers.Real) for v in a.flat):
            return None             # None, strings, complex numbers...
        return a.astype(np.float64) if a.dtype.kind in "biufO" else None
    except Exception:               # ragged lists, ints too large for a float
        return None


def _unravel(flat, shape):
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def _cut(text, limit):
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _axes(axes):
    """[1] -> 'axis 1', [0, 2, 3] -> 'axes 0, 2 and 3'."""
    axes = [str(a) for a in axes]
    return f"axis {axes[0]}" if len(axes) == 1 else f"axes {', '.join(axes[:-1])} and {axes[-1]}"


def _shape_hint(have, want):
    text = f"shape {have} where {want} was expected"
    if sorted(have) == sorted(want):
        return text + ": transposed?"
    if [n for n in have if n != 1] == [n for n in want if n != 1]:
        return text + ": an axis of length 1 missing or extra (keepdims, a reshape)?"
    return text


def _not_finite(value, index):
    """(hint, hidden hint) for a NaN or inf in have where want differs."""
    if np.isfinite(value):          # the reference is the one that is not finite
        return "", ""
    kind = "NaN" if np.isnan(value) else f"{value:g}"
    cause = ("0/0, inf - inf, or the log or sqrt of a negative number?" if kind == "NaN"
             else "an overflow (exp of a large number?) or a division by zero?")
    where = f" at index {index}" if index else ""       # a 0-d array has no index to show
    return (f"yours has {kind}{where} where a number was expected: {cause}",
            f"yours has {kind} where a number was expected: {cause}")


# ------------------------------------------------------------------ the hints
def _hint(h, w, error, batch, scale):
    """(hint, hidden hint) for finite arrays h, w of one shape, scaled to at most 2."""
    if error <= FIT:                # close: only float32 rounding is worth a word
        yours32, want32 = (np.array_equal(a, a.astype(np.float32)) for a in (h, w))
        return _same("yours has float32 precision: keep every array float64") \
            if yours32 and not want32 else ("", "")
    if not h.any():
        return _same("yours is all zeros: is the result ever written or returned?")
    return (_factor(h, w, batch) or _rearranged(h, w) or _offset(h, w, scale)
            or _factor_along(h, w) or _shift(h, w) or _partly_right(h, w) or ("", ""))


def _same(hint):
    return hint, hint


def _fits(a, b):
    """Whether a matches b to FIT (False when either holds a NaN or inf)."""
    return rel_error(a, b) <= FIT


def _factor(h, w, batch):
    """have = c * want for one c, fitted by least squares."""
    nonzero, energy = np.count_nonzero(w), np.sum(w * w)
    c = float(np.sum(h * w) / energy) if energy > 0 else 0.0
    if not _fits(h, c * w):
        return None
    known = [(1.0, "")] + [(k, f"yours is {k}x the expected: a factor {k} too large")
                           for k in (2, 3, 4)]
    known += [(1 / k, f"yours is 1/{k} of the expected: a missing factor {k}?") for k in (2, 3, 4)]
    if batch is not None and batch > 1:
        known[1:1] = [(1 / batch, f"yours is the expected divided by the batch size N={batch}:"
                                  " a mean where a sum was meant?"),
                      (batch, f"yours is N={batch} times the expected (N is the batch size):"
                              " a missing division by N?")]
    words = next((text for k, text in known if abs(abs(c) - k) <= NAME_TOL * k), None)
    if c < 0 and words is not None:
        return _same(f"the sign is flipped{', and besides that ' + words if words else ''}")
    if words:
        return _same(words)
    if nonzero < 2:                 # a single number: any factor would fit
        return None
    digits = 3 if abs(c - 1) > 0.01 else 8     # 1.0001 must not print as 1
    return (f"yours is the expected times a constant factor {c:.{digits}g}",
            "yours is the expected times a constant factor")


def _rearranged(h, w):
    """have = want with two axes swapped, or reversed along one axis or the last two."""
    n = w.ndim
    for i in range(n):
        for j in range(i + 1, n):
            if w.shape[i] == w.shape[j] > 1 and _fits(h, np.swapaxes(w, i, j)):
                what = "a transposed kernel or image" if (i, j) == (n - 2, n - 1) else "transposed"
                return _same("yours is the transpose of the expected: a .T too many or too few?"
                             if n == 2 else f"yours is the expected with axes {i} and {j}"
                             f" swapped: {what}?")
    for axes in [(a,) for a in range(n)] + ([(n - 2, n - 1)] if n >= 2 else []):
        if all(w.shape[a] > 1 for a in axes) and _fits(h, np.flip(w, axes)):
            why = ("a kernel rotated by 180 degrees (convolution where correlation is meant)"
                   if len(axes) == 2 else "a loop running backwards")
            return _same(f"yours is the expected reversed along {_axes(axes)}: {why}?")
    return None


def _per_slice(h, w, model):
    """The largest set of axes ``over`` for which have = ``model(over)``, want corrected by
    one number per slice along the other axes; returns (over, the other axes) or None."""
    long = [a for a in range(w.ndim) if w.shape[a] > 1]
    over = tuple(a for a in long if _fits(h, model((a,))))
    right = np.abs(h - w) <= EXACT * np.max(np.abs(h) + np.abs(w))
    # Some slices right as they are: _partly_right says it better.
    if not over or np.any(np.all(right, axis=over)) or not _fits(h, model(over)):
        return None
    return over, [a for a in long if a not in over]


def _offset(h, w, scale):
    """have - want is the same along some axes: a missing or extra term."""
    found = _per_slice(h, w, lambda over: w + np.mean(h - w, axis=over, keepdims=True))
    if found is None:
        return None
    over, varies = found
    if not varies:
        value = np.mean(h - w) * scale
        return (f"yours is the expected {'plus' if value > 0 else 'minus'} {abs(value):.3g}"
                " everywhere: a missing or extra constant term (a bias?)",
                "yours is the expected plus the same amount everywhere: a missing or extra"
                " constant term (a bias?)")
    return _same(f"yours is off by a term that changes only along {_axes(varies)} (the same"
                 f" along {_axes(over)}): a missing or extra bias?")


def _factor_along(h, w):
    """have = c * want with c the same along some axes but not all of them."""
    def model(over):                # least squares, one factor per slice
        num, den = np.sum(h * w, axis=over, keepdims=True), np.sum(w * w, axis=over, keepdims=True)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0) * w

    found = _per_slice(h, w, model)
    if found is None or not found[1]:   # one factor for all: _factor has its name
        return None
    return _same(f"yours is the expected times a factor that changes only along"
                 f" {_axes(found[1])}: a missing or wrong coefficient (one per channel?)")


def _shift(h, w):
    """have = want moved by one place along one axis, where the two overlap."""
    for a in range(w.ndim):
        if w.shape[a] < 3:
            continue
        head, tail = ((slice(None),) * a + (part,) for part in (slice(None, -1), slice(1, None)))
        for mine, theirs in ((tail, head), (head, tail)):
            if (np.any(w[theirs]) and _fits(h[mine], w[theirs])
                    and not _fits(h[mine], w[mine])):
                return _same(f"yours is the expected shifted by one along axis {a}:"
                             " an off-by-one window or loop bound?")
    return None


def _partly_right(h, w):
    """have = want on part of the elements; the slices the wrong ones are confined to."""
    right = np.abs(h - w) <= EXACT * np.max(np.abs(h) + np.abs(w))
    count = int(np.sum(right))
    if count < MIN_RIGHT * right.size or not np.any(right & (w != 0)):
        return None
    share = f"right on {math.floor(1000 * count / right.size) / 10:.3g}% of the elements"
    wrong, places, hidden = ~right, [], []
    for a in range(w.ndim):
        rows = np.flatnonzero(wrong.any(axis=tuple(i for i in range(w.ndim) if i != a)))
        if len(rows) < w.shape[a]:
            shown = ", ".join(str(i) for i in rows[:3]) + (", ..." if len(rows) > 3 else "")
            places.append(f"{'index' if len(rows) == 1 else 'indices'} {shown} of axis {a}")
            hidden.append(f"{'one index' if len(rows) == 1 else 'some indices'} of axis {a}")
    why = (f"; wrong only at {', '.join(places)}" if places else
           ": an = where += was meant, or one case (a border, an overlap) handled differently?")
    return (f"{share} ({count} of {right.size}){why}",
            share + (f"; wrong only at {', '.join(hidden)}" if places else why))
