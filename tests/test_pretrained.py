"""The shipped trained weights: they load into the paper network, and (with real
MNIST) make exactly the recorded number of errors on the 10,000 test digits."""
import os
from importlib import resources

import numpy as np
import pytest

import minilenet
from minilenet import C3_TABLE, lenet5, load_digit_bitmaps, pretrained, pretrained_info

REAL = os.environ.get("MINILENET_DATA")


def test_loads_into_the_paper_network():
    model = pretrained()
    fresh = lenet5("paper")
    assert model.dtype == np.float32
    assert model.summary() == fresh.summary()          # same layers, shapes, counts
    assert model.num_params() == 60_000
    trained, initial = model.state_dict(), fresh.state_dict()
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in initial.items()}
    assert all(v.dtype == np.float32 for v in trained.values() if v.dtype.kind == "f")
    for name in ("c1.weight", "c3.weight", "c5.weight", "f6.weight"):
        assert not np.allclose(trained[name], initial[name]), f"{name} looks untrained"
    np.testing.assert_array_equal(trained["c3.table"], C3_TABLE)
    np.testing.assert_array_equal(trained["output.centers"], load_digit_bitmaps())


def test_float64_copy():
    """dtype=np.float64 gives the same weights in float64 (for gradient checks)."""
    model64, model32 = pretrained(dtype=np.float64), pretrained()
    w64, w32 = model64["c3"].params["weight"], model32["c3"].params["weight"]
    assert model64.dtype == np.float64 and w64.dtype == np.float64
    np.testing.assert_array_equal(w64, w32.astype(np.float64))


def test_record_beside_the_weights():
    info = pretrained_info()
    assert info["command"].startswith("minilenet train --seed 0")
    assert info["test_images"] == 10_000
    assert info["test_errors"] == round(info["test_error"] * info["test_images"] / 100)
    assert 0.5 < info["test_error"] < 2.0                # percent; the paper reports 0.95
    assert info["version"]
    size = resources.files("minilenet").joinpath("resources/lenet5_paper_seed0.npz").read_bytes()
    assert 100_000 < len(size) < 1_000_000               # a few hundred kB of package data
    # what `minilenet train --seed 0` prints on any machine, and the shipped weights' own
    assert pretrained().weights_sha256() == info["weights_sha256"]


def test_exported():
    assert {"pretrained", "pretrained_info"} <= set(minilenet.__all__)


@pytest.mark.skipif(not REAL, reason="real MNIST not available (set MINILENET_DATA)")
def test_recorded_test_error_on_real_mnist():
    """Float32 inference is deterministic (no threads adding into one array), so
    the count of errors must match the record exactly."""
    from minilenet.mnist import load_mnist, preprocess
    from minilenet.evaluation import evaluate
    data = load_mnist(REAL, download_missing=False, progress=False)
    info = pretrained_info()
    assert len(data["test_labels"]) == info["test_images"]
    model = pretrained()
    error, predicted, _ = evaluate(model, preprocess(data["test_images"], model.dtype),
                                   data["test_labels"].astype(np.int64))
    wrong = int((predicted != data["test_labels"]).sum())
    assert wrong == info["test_errors"], \
        f"shipped weights make {wrong} errors, the record says {info['test_errors']}"
    assert round(100 * error, 2) == info["test_error"]
