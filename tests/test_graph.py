import os

import numpy as np
import pytest

from minilenet import lenet5
from minilenet.errors import UserError
from minilenet.fileio import atomic_write, load_npz


def test_named_parameters_use_paper_labels():
    names = [n for n, _, _ in lenet5().named_parameters()]
    assert names == ["c1.weight", "c1.bias", "s2.weight", "s2.bias", "c3.weight", "c3.bias",
                     "s4.weight", "s4.bias", "c5.weight", "c5.bias", "f6.weight", "f6.bias"]


def test_save_and_load_round_trip(tmp_path):
    a, b = lenet5(seed=1), lenet5(seed=2)
    a.save(tmp_path / "w.npz")
    b.load(tmp_path / "w.npz")
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    assert "output.centers" in load_npz(tmp_path / "w.npz")
    assert "c3.table" in load_npz(tmp_path / "w.npz")


def test_load_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"c1.weight": np.array([object()], dtype=object)})
    with pytest.raises(UserError, match="holds Python objects"):
        lenet5().load(path)


def test_load_rejects_a_different_model(tmp_path):
    lenet5("modern").save(tmp_path / "m.npz")
    with pytest.raises(KeyError, match="missing"):
        lenet5().load(tmp_path / "m.npz")


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_duplicate_layer_names_rejected():
    from minilenet import Sequential, ReLU
    with pytest.raises(ValueError, match="unique"):
        Sequential([("a", ReLU()), ("a", ReLU())], (3,))


def test_miswired_graph_fails_at_construction():
    from minilenet import Dense, Sequential
    with pytest.raises(ValueError, match=r"expected \(4,\) per sample, got \(5,\)"):
        Sequential([("a", Dense(3, 5)), ("b", Dense(4, 2))], (3,))


def test_astype_float64_for_checks():
    model = lenet5().astype(np.float64)
    assert all(layer.params[k].dtype == np.float64
               for _, layer, k in model.named_parameters())
    assert model["output"].buffers["centers"].dtype == np.float64
    assert model(np.zeros((1, 1, 32, 32))).dtype == np.float64


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "w.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "w.bin").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("variant,batch", [("paper", 2), ("paper", 9), ("modern", 9), ("linear", 3)])
def test_backward_without_input_grad_fills_the_same_gradients(backend, variant, batch):
    """input_grad=False (training) skips the first layer's dx and changes no gradient."""
    model = lenet5(variant, backend=backend)
    x = np.random.default_rng(1).standard_normal(
        (batch,) + model.input_shape).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal(model(x).shape).astype(np.float32)
    dx = model.backward(dy)
    assert dx.shape == x.shape
    full = {name: layer.grads[key].copy() for name, layer, key in model.named_parameters()}
    for _, layer, key in model.named_parameters():
        layer.grads[key][...] = np.nan
    assert model.backward(dy, input_grad=False) is None
    for name, layer, key in model.named_parameters():
        np.testing.assert_array_equal(layer.grads[key], full[name], err_msg=name)


@pytest.mark.parametrize("how", ["subclass", "instance"])
def test_a_changed_first_layer_backward_is_what_trains(how):
    """input_grad=False must not bypass a first layer whose backward a student changed."""
    from minilenet.conv import Conv2D

    def doubled(self, dy):
        dx = Conv2D.backward(self, dy)
        self.grads["weight"] = 2 * self.grads["weight"]
        return dx

    model = lenet5()
    c1 = model["c1"]
    if how == "subclass":
        c1.__class__ = type("DoubledConv2D", (Conv2D,), {"backward": doubled})
    else:
        c1.backward = doubled.__get__(c1)
    x = np.random.default_rng(1).standard_normal((9, 1, 32, 32)).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal(model(x).shape).astype(np.float32)
    model.backward(dy)
    expected = c1.grads["weight"].copy()
    c1.grads["weight"][...] = np.nan
    model.backward(dy, input_grad=False)
    np.testing.assert_array_equal(c1.grads["weight"], expected)
    plain = lenet5()                                     # same seed: the unchanged network
    plain(x)
    plain.backward(dy, input_grad=False)
    np.testing.assert_array_equal(expected, 2 * plain["c1"].grads["weight"])
