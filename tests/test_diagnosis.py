"""Diagnosis of failed comparisons: each hint on the slip it is meant to catch."""
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from minilenet.teaching.diagnosis import Diagnosis, describe, diagnose


# ------------------------------------------------------------ small references
def correlate(x, w):
    """Valid cross-correlation: x (N, C, H, W), w (F, C, k, k) -> (N, F, OH, OW)."""
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))    # (N, C, OH, OW, k, k)
    return np.einsum("ncijab,fcab->nfij", windows, w)


def conv_dw(x, dy):
    """dL/dw of correlate: x (N, C, H, W), dy (N, F, OH, OW) -> (F, C, k, k)."""
    k = x.shape[2] - dy.shape[2] + 1
    return np.einsum("ncijab,nfij->fcab", sliding_window_view(x, (k, k), axis=(2, 3)), dy)


def upsample(dy, k=2):
    """Each value of dy (N, C, H, W) copied into a k x k block: (N, C, kH, kW)."""
    return dy.repeat(k, axis=2).repeat(k, axis=3)


def col2im(cols, x_shape, stride, add=True):
    """cols (N, C, k, k, OH, OW) back into (N, C, H, W); add=False assigns (the slip)."""
    k, OH, OW = cols.shape[2], cols.shape[4], cols.shape[5]
    x = np.zeros(x_shape)
    for i in range(k):
        for j in range(k):
            block = (slice(None), slice(None), slice(i, i + stride * OH, stride),
                     slice(j, j + stride * OW, stride))
            if add:
                x[block] += cols[:, :, i, j]
            else:
                x[block] = cols[:, :, i, j]
    return x


# ------------------------------------------------------------ no slip, no hint
def test_a_correct_pair_has_error_zero_and_no_hint(rng):
    want = rng.standard_normal((2, 3, 4, 4))
    d = diagnose(want.copy(), want)
    assert d.error == 0 and d.hint == "" and d.hidden_hint == ""
    d = diagnose(want * (1 + 1e-13), want)
    assert d.error < 1e-12 and d.hint == ""


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (6, 10), (84,), (3, 3)])
def test_random_noise_gets_no_hint(rng, shape):
    want = rng.standard_normal(shape)
    d = diagnose(want + 0.5 * rng.standard_normal(shape), want)
    assert d.error > 0.05 and d.hint == ""


def test_the_worst_element_is_reported(rng):
    want = rng.standard_normal((3, 4))
    have = want.copy()
    have[2, 1] += 10
    d = diagnose(have, want)
    assert d.index == (2, 1) and d.value == have[2, 1] and d.expected == want[2, 1]


# ------------------------------------------------------------ one test per hint
def test_all_zeros(rng):
    d = diagnose(np.zeros((2, 3)), rng.standard_normal((2, 3)))
    assert "all zeros" in d.hint


def test_conv_dw_divided_by_the_batch_size(rng):
    x, dy = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((5, 3, 4, 4))
    want = conv_dw(x, dy)
    d = diagnose(want / 5, want, batch=5)
    assert "divided by the batch size N=5" in d.hint
    assert "N=5 times" in diagnose(want * 5, want, batch=5).hint


def test_rbf_gradient_missing_its_factor_2(rng):
    x, centers, dy = rng.standard_normal((3, 7)), rng.standard_normal((4, 7)), \
        rng.standard_normal((3, 4))
    diff = x[:, None, :] - centers[None]                # (N, classes, D)
    want = np.einsum("nj,nji->ni", dy, 2 * diff)        # y = sum (x - c)^2
    d = diagnose(np.einsum("nj,nji->ni", dy, diff), want)
    assert "1/2 of the expected: a missing factor 2" in d.hint


def test_average_pooling_missing_its_quarter(rng):
    dy = rng.standard_normal((2, 3, 3, 3))
    d = diagnose(upsample(dy), upsample(dy) / 4)
    assert "4x the expected" in d.hint


def test_a_flipped_sign(rng):
    scores, labels = rng.standard_normal((4, 10)), rng.integers(0, 10, 4)
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    want = p - np.eye(10)[labels]                       # softmax cross-entropy dscores
    assert "sign is flipped" in diagnose(np.eye(10)[labels] - p, want).hint
    assert "sign is flipped, and besides that yours is 2x" in diagnose(-2 * want, want).hint


def test_an_unrecognised_constant_factor(rng):
    want = rng.standard_normal((3, 5))
    d = diagnose(1.7321 * want, want)
    assert d.hint == "yours is the expected times a constant factor 1.73"
    assert "1.73" not in d.hidden_hint
    assert diagnose(1.0001 * want, want).hint.endswith("factor 1.0001")


def test_transposed_dense_dw_has_the_transposed_shape(rng):
    x, dy = rng.standard_normal((5, 7)), rng.standard_normal((5, 4))
    want = x.T @ dy                                     # (D, M)
    d = diagnose(dy.T @ x, want)
    assert d.error == math.inf and d.index is None
    assert d.hint == "shape (4, 7) where (7, 4) was expected: transposed?"


def test_other_shape_mismatches():
    assert diagnose(np.zeros(6), np.zeros((2, 3))).hint == \
        "shape (6,) where (2, 3) was expected"
    assert "keepdims" in diagnose(np.zeros((3, 1)), np.zeros(3)).hint


def test_a_square_transpose(rng):
    want = rng.standard_normal((4, 4))
    assert "transpose of the expected" in diagnose(want.T, want).hint


def test_a_kernel_with_its_last_two_axes_swapped(rng):
    x, dy = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((2, 4, 5, 5))
    want = conv_dw(x, dy)                               # (F, C, k, k)
    d = diagnose(want.transpose(0, 1, 3, 2), want)
    assert "axes 2 and 3 swapped: a transposed kernel" in d.hint


def test_a_kernel_rotated_by_180_degrees(rng):
    want = rng.standard_normal((4, 3, 5, 5))
    d = diagnose(want[:, :, ::-1, ::-1], want)
    assert "reversed along axes 2 and 3" in d.hint and "180" in d.hint


def test_a_missing_dense_bias(rng):
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    d = diagnose(x @ w, x @ w + b)
    assert "changes only along axis 1 (the same along axis 0)" in d.hint
    assert "bias" in d.hint


def test_a_missing_conv_bias(rng):
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), \
        rng.standard_normal(4)
    want = correlate(x, w) + b[:, None, None]
    d = diagnose(correlate(x, w), want)
    assert "changes only along axis 1 (the same along axes 0, 2 and 3)" in d.hint


def test_a_constant_offset(rng):
    want = rng.standard_normal((3, 4))
    d = diagnose(want + 0.5, want)
    assert "plus 0.5 everywhere" in d.hint and "0.5" not in d.hidden_hint
    assert "minus 2 everywhere" in diagnose(want - 2, want).hint


def test_subsampling_dx_missing_its_coefficient(rng):
    dy, coef = rng.standard_normal((2, 3, 3, 2)), rng.uniform(0.5, 2, 3)
    want = coef[:, None, None] * upsample(dy)           # one coefficient per channel
    d = diagnose(upsample(dy), want)
    assert "factor that changes only along axis 1" in d.hint


def test_a_window_shifted_by_one(rng):
    x, w = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 3, 3))
    want = correlate(x, w)
    d = diagnose(correlate(np.roll(x, -1, axis=2), w), want)   # reads rows i+1 .. i+k
    assert "shifted by one along axis 2: an off-by-one window" in d.hint


def test_col2im_that_assigns_instead_of_adding(rng):
    cols = rng.standard_normal((1, 2, 3, 3, 2, 2))      # 3x3 windows, stride 2, on 5x5
    want = col2im(cols, (1, 2, 5, 5), 2)
    d = diagnose(col2im(cols, (1, 2, 5, 5), 2, add=False), want)
    assert d.hint.startswith("right on 64% of the elements (32 of 50)")   # windows overlap
    assert "+=" in d.hint                                           # on row 2 and column 2


def test_a_wrong_c3_column_is_confined_to_its_map(rng):
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((5, 3, 3, 3))
    want = correlate(x, w)
    wrong = w.copy()
    wrong[3, 0] = 0                                     # map 3 forgets one of its inputs
    d = diagnose(correlate(x, wrong), want)
    assert "right on 80% of the elements" in d.hint
    assert "wrong only at index 3 of axis 1" in d.hint
    assert "one index of axis 1" in d.hidden_hint and "3" not in d.hidden_hint


def test_a_nan_is_the_worst_element(rng):
    want = rng.standard_normal((3, 4))
    have = want.copy()
    have[1, 2], have[2, 3] = np.nan, 1e6
    d = diagnose(have, want)
    assert d.error == math.inf and d.index == (1, 2) and math.isnan(d.value)
    assert d.hint.startswith("yours has NaN at index (1, 2)")
    assert "(1, 2)" not in d.hidden_hint
    assert diagnose(np.array(np.inf), np.array(1.0)).hint.startswith("yours has inf where")


def test_float32_precision(rng):
    want = rng.standard_normal((4, 5))
    d = diagnose(want.astype(np.float32), want)
    assert 1e-9 < d.error < 1e-6 and "float32" in d.hint


# ------------------------------------------------------------ hostile inputs
HOSTILE = ["abc", np.array(["a", "b"]), np.array([1, "x"], dtype=object), None, {"a": 1},
           [[1, 2], [3]], np.array([1 + 2j]), np.array(np.nan), np.array([np.inf, -np.inf]),
           np.array([]), np.zeros((0, 3)), np.array(2.5), np.array([1e308, -1e308]),
           np.array([True, False]), np.array([1, 2], dtype=np.int8), 10 ** 400,
           np.array([1.0, 2.0], dtype=object), np.full((2, 2), np.nan)]


@pytest.mark.parametrize("have", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("want", [np.array([1e308, 1e308]), np.array(2.5), np.ones((2, 2)),
                                  np.array([]), np.array([np.nan, 1.0]), "abc"])
def test_hostile_inputs_never_raise(have, want):
    d = diagnose(have, want, batch=3)
    assert isinstance(d, Diagnosis) and isinstance(d.hint, str)
    assert d.error >= 0                                # never NaN
    for hidden in (False, True):
        assert len(describe("dx", d, hidden=hidden)) < 400


def test_unconvertible_inputs():
    d = diagnose("abc", np.ones(3))
    assert d.error == math.inf and d.hint == "yours is not an array of numbers"


def test_huge_values_do_not_overflow():
    d = diagnose(np.array([1e308, -1e308]), np.array([-1e308, 1e308]))
    assert d.error == 1.0 and "sign is flipped" in d.hint


def test_zero_dimensional_and_empty():
    d = diagnose(np.array(3.0), np.array(1.5))
    assert d.index == () and d.value == 3.0 and "2x" in d.hint
    assert diagnose(np.zeros((0, 3)), np.zeros((0, 3))).error == 0.0


def test_matching_nans_count_as_equal():
    d = diagnose(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert d.error == 0.0 and d.hint == ""


# ------------------------------------------------------------ describe
def test_describe_names_the_worst_element_and_the_hint():
    want = np.linspace(0.5, 1.0, 16).reshape(1, 1, 4, 4)
    text = describe("dx", diagnose(4 * want, want))
    assert text.startswith("dx: relative error 0.6; worst at (0, 0, 3, 3): yours is 4 where"
                           " 1 was expected")
    assert text.splitlines()[1].strip() == "yours is 4x the expected: a factor 4 too large"


@pytest.mark.parametrize("slip", ["offset", "factor", "nan", "partly"])
def test_describe_hidden_reveals_no_value_and_no_index(slip):
    want = 123.456 + np.arange(30.0).reshape(5, 6) / 7
    have = {"offset": want + 987.654, "factor": 1.789 * want, "nan": want.copy(),
            "partly": want.copy()}[slip]
    if slip == "nan":
        have[3, 4] = np.nan
    if slip == "partly":
        have[3] += 555.5
    d = diagnose(have, want)
    assert d.hint                                       # there is something to hide
    text = describe("dx", d, hidden=True)
    for secret in ("123", "987", "1.79", "555", "(3, 4)", "index 3", "worst", "expected 1"):
        assert secret not in text, (secret, text)
    assert text.startswith("dx: relative error ")


def test_describe_cuts_long_names_and_hints():
    d = Diagnosis(0.5, (1,), 2.0, 1.0, "x" * 1000, "y" * 1000)
    text = describe("n" * 1000 + "\nsecond line", d)
    first, second = text.splitlines()
    assert len(first) < 200 and len(second) <= 202
    assert len(describe("dx", d, hidden=True)) < 300
