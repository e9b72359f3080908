"""LeNet-5 pinned to the paper (docs/paper.md): ledger, C3 table, squashing, init, RBF."""
import numpy as np
import pytest

from minilenet import C3_TABLE, ScaledTanh, lenet5, load_digit_bitmaps
from minilenet.bitmaps import format_bitmaps, hamming_distances, parse_bitmaps

PAPER_LEDGER = {  # layer: (trainable parameters, connections)
    "c1": (156, 122_304), "s2": (12, 5_880), "c3": (1_516, 151_600), "s4": (32, 2_000),
    "c5": (48_120, 48_120), "f6": (10_164, 10_164), "output": (0, 840),
}
SHAPES = {"c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5),
          "c5": (120, 1, 1), "f6": (84,), "output": (10,)}


def test_ledger_matches_the_paper():
    rows = {name: (params, conns) for name, _, _, params, conns in lenet5().ledger()}
    for name, expected in PAPER_LEDGER.items():
        assert rows[name] == expected, name
    assert sum(p for p, _ in rows.values()) == 60_000
    assert sum(c for _, c in rows.values()) == 340_908


def test_summary_prints_the_totals():
    text = lenet5().summary()
    assert "60,000" in text and "340,908" in text and "151,600" in text


def test_feature_map_sizes():
    model = lenet5()
    shapes = {name: out for name, (_, out) in model.shapes().items()}
    for name, shape in SHAPES.items():
        assert shapes[name] == shape
    y = model(np.zeros((3, 1, 32, 32), np.float32))
    assert y.shape == (3, 10)


TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""
COLUMNS = {0: {0, 1, 2}, 1: {1, 2, 3}, 2: {2, 3, 4}, 3: {3, 4, 5}, 4: {0, 4, 5}, 5: {0, 1, 5},
           6: {0, 1, 2, 3}, 7: {1, 2, 3, 4}, 8: {2, 3, 4, 5}, 9: {0, 3, 4, 5},
           10: {0, 1, 4, 5}, 11: {0, 1, 2, 5}, 12: {0, 1, 3, 4}, 13: {1, 2, 4, 5},
           14: {0, 2, 3, 5}, 15: {0, 1, 2, 3, 4, 5}}


def test_c3_table_is_table_one():
    expected = np.array([[c == "X" for c in row] for row in TABLE_I.split()])
    assert C3_TABLE.shape == (6, 16) and C3_TABLE.dtype == bool
    np.testing.assert_array_equal(C3_TABLE, expected)
    assert C3_TABLE.sum() == 60
    assert list(C3_TABLE.sum(axis=1)) == [10] * 6
    assert sorted(C3_TABLE.sum(axis=0)) == [3] * 6 + [4] * 9 + [6]
    for col, inputs in COLUMNS.items():
        assert set(np.nonzero(C3_TABLE[:, col])[0]) == inputs, col


def test_c3_table_rejects_the_known_wrong_port():
    """A public port uses 4:{0,2,3} and 9:{0,2,3,4}; this table must not."""
    assert set(np.nonzero(C3_TABLE[:, 4])[0]) != {0, 2, 3}
    assert set(np.nonzero(C3_TABLE[:, 9])[0]) != {0, 2, 3, 4}


def test_scaled_tanh_oracles():
    f = ScaledTanh(np.float64)
    y = f.forward(np.array([[-1.0, 0.0, 1.0, 50.0]]))
    assert abs(y[0, 2] - 1) < 3e-6 and y[0, 0] == -y[0, 2] and y[0, 1] == 0
    assert y[0, 3] == pytest.approx(1.7159)
    assert f.backward(np.ones_like(y))[0, 1] == pytest.approx(1.143933, abs=1e-6)


def test_initial_weights_within_paper_bounds():
    model = lenet5(dtype=np.float64)
    assert np.abs(model["c1"].params["weight"]).max() <= 2.4 / 25
    assert np.abs(model["s2"].params["weight"]).max() <= 2.4 / 4
    assert np.abs(model["c5"].params["weight"]).max() <= 2.4 / 400
    assert np.abs(model["f6"].params["weight"]).max() <= 2.4 / 120
    w = model["c3"].params["weight"]
    fan_in = C3_TABLE.sum(axis=0)[model["c3"].out_idx] * 25                 # 75 / 100 / 150
    assert set(fan_in) == {75, 100, 150}
    assert (np.abs(w).max(axis=(1, 2)) <= 2.4 / fan_in).all()
    # ... and they fill the range: the bound is the one used, not a smaller one
    assert np.abs(model["c1"].params["weight"]).max() > 0.8 * 2.4 / 25


def test_init_options():
    counted = lenet5(dtype=np.float64, count_bias=True)
    assert np.abs(counted["c1"].params["weight"]).max() <= 2.4 / 26
    zero = lenet5(bias_init="zero")
    assert not zero["c3"].params["bias"].any()


def test_same_seed_same_weights_bit_for_bit():
    a, b, c = lenet5(seed=7), lenet5(seed=7), lenet5(seed=8)
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]) and v.tobytes() == b.state_dict()[k].tobytes()
    assert not np.array_equal(a["c1"].params["weight"], c["c1"].params["weight"])


def test_rbf_bitmaps_properties():
    codes = load_digit_bitmaps()
    assert codes.shape == (10, 84)
    assert set(np.unique(codes)) == {-1.0, 1.0}
    d = hamming_distances(codes)
    assert (d[~np.eye(10, dtype=bool)] >= 10).all()      # every pair differs in >= 10 pixels


def test_rbf_prototype_has_zero_penalty_for_its_own_class():
    model = lenet5(dtype=np.float64)
    out = model["output"]
    y = out.forward(load_digit_bitmaps())
    np.testing.assert_array_equal(np.diag(y), 0)
    assert (y >= 0).all()
    assert (y.argmin(axis=1) == np.arange(10)).all()


def test_bitmaps_round_trip_and_swap():
    codes = load_digit_bitmaps()
    np.testing.assert_array_equal(parse_bitmaps(format_bitmaps(codes)), codes)
    flipped = -codes
    model = lenet5(centers=flipped)
    np.testing.assert_array_equal(model["output"].buffers["centers"], flipped)


def test_bad_bitmaps_are_rejected():
    with pytest.raises(ValueError, match="bad row"):
        parse_bitmaps("digit 0\n" + "#####\n" * 12)
    with pytest.raises(ValueError, match="has 11 rows"):
        parse_bitmaps("digit 0\n" + ".......\n" * 11)


def test_modern_variant_is_the_tutorial_network():
    model = lenet5("modern")
    kinds = [type(layer).__name__ for layer in model]
    assert "ReLU" in kinds and "MaxPool2D" in kinds and "EuclideanRBF" not in kinds
    assert model["c3"].num_params() == 2_416


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant"):
        lenet5("lenet7")
