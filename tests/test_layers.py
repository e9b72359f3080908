"""The Layer contract, checked on every layer type (the common battery)."""
import numpy as np
import pytest

import naive
from minilenet import (C3_TABLE, AvgPool2D, Conv2D, Dense, EuclideanRBF, Flatten, MaxPool2D,
                       ReLU, ScaledTanh, Sigmoid, Subsampling, TableConv2D, Tanh, config)

# (factory(dtype, backend), per-sample input shape)
LAYERS = {
    "Conv2D": (lambda d, b: Conv2D(2, 3, 3, dtype=d, backend=b), (2, 7, 6)),
    "TableConv2D": (lambda d, b: TableConv2D(C3_TABLE, 5, dtype=d, backend=b), (6, 9, 9)),
    "Subsampling": (lambda d, b: Subsampling(3, dtype=d, backend=b), (3, 6, 4)),
    "Subsampling-average": (lambda d, b: Subsampling(3, mode="average", dtype=d, backend=b),
                            (3, 6, 4)),
    "AvgPool2D": (lambda d, b: AvgPool2D(2, dtype=d, backend=b), (2, 6, 6)),
    "MaxPool2D": (lambda d, b: MaxPool2D(3, 1, dtype=d, backend=b), (2, 6, 6)),
    "ScaledTanh": (lambda d, b: ScaledTanh(d), (2, 3, 3)),
    "Tanh": (lambda d, b: Tanh(d), (5,)),
    "Sigmoid": (lambda d, b: Sigmoid(d), (5,)),
    "ReLU": (lambda d, b: ReLU(d), (5,)),
    "Dense": (lambda d, b: Dense(5, 4, dtype=d, backend=b), (5,)),
    "Flatten": (lambda d, b: Flatten(d), (2, 3, 3)),
    "EuclideanRBF": (lambda d, b: EuclideanRBF(dtype=d, backend=b), (84,)),
}


@pytest.fixture(params=sorted(LAYERS))
def case(request):
    return LAYERS[request.param]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_dtypes_and_grads(case, backend, rng, dtype):
    make, shape = case
    layer = make(dtype, backend)
    x = rng.standard_normal((3,) + shape).astype(dtype)
    y = layer.forward(x)
    assert y.shape == (3,) + layer.output_shape(shape) and y.dtype == dtype
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == dtype
    assert set(layer.grads) == set(layer.params) == set(layer.hess)
    for key, p in layer.params.items():
        g = layer.grads[key]
        assert g.shape == p.shape and g.dtype == p.dtype == dtype


def test_backward_before_forward_raises(case):
    make, shape = case
    layer = make(None, None)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1,) + shape, dtype=np.float32))


def test_wrong_dtype_names_layer_and_both_dtypes(case):
    make, shape = case
    layer = make(np.float32, None)
    layer.name = "mylayer"
    with pytest.raises(TypeError, match="mylayer.*float32.*float64"):
        layer.forward(np.zeros((1,) + shape))


def test_wrong_upstream_shape_raises(case, rng):
    make, shape = case
    layer = make(np.float64, None)
    y = layer.forward(rng.standard_normal((2,) + shape))
    with pytest.raises(ValueError, match="output shape"):
        layer.backward(np.ones((3,) + y.shape[1:]))


@pytest.mark.parametrize("name,bad,pattern", [
    ("Conv2D", (2, 1, 7, 6), r"per-sample shape \(2, \?, \?\), got \(1, 7, 6\)"),
    ("Conv2D", (2, 7, 6), r"4-d input \(N, C, H, W\), got shape \(2, 7, 6\)"),
    ("Conv2D", (2, 2, 2, 6), r"expected \(2, >=3, >=3\)"),
    ("TableConv2D", (1, 5, 9, 9), r"per-sample shape \(6, \?, \?\)"),
    ("Subsampling", (1, 3, 5, 4), r"even H, even W"),
    ("Dense", (2, 6), r"per-sample shape \(5,\), got \(6,\)"),
    ("EuclideanRBF", (2, 80), r"per-sample shape \(84,\), got \(80,\)"),
])
def test_bad_input_errors_name_expected_and_actual(name, bad, pattern, backend):
    layer = LAYERS[name][0](np.float64, backend)
    with pytest.raises(ValueError, match=pattern):
        layer.forward(np.zeros(bad))


def test_non_array_input_is_refused():
    with pytest.raises(TypeError, match="numpy array"):
        Dense(2, 2).forward([[1.0, 2.0]])


def test_state_dict_round_trip(case, rng):
    make, shape = case
    a, b = make(np.float64, None), make(np.float64, None)
    for p in b.params.values():
        p[...] = rng.standard_normal(p.shape)
    a.load_state_dict(b.state_dict())
    x = rng.standard_normal((2,) + shape)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_load_state_dict_rejects_wrong_keys_and_shapes():
    layer = Dense(3, 2)
    with pytest.raises(KeyError):
        layer.load_state_dict({"weight": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="expected shape"):
        layer.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(2)})


def test_backends_agree_layer_by_layer(case, rng, numba_runs):
    """Forward and backward of every layer agree across backends (1e-12 in float64)."""
    make, shape = case
    x = rng.standard_normal((3,) + shape)
    out = {}
    for backend in ("numpy", "numba"):
        layer = make(np.float64, backend)
        y = layer.forward(x)
        dx = layer.backward(np.cos(y))
        out[backend] = [y, dx] + [layer.grads[k] for k in sorted(layer.grads)]
    for a, b in zip(out["numpy"], out["numba"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_backend_is_chosen_in_one_place(monkeypatch, numba_runs):
    layer = Conv2D(1, 1, 3, dtype=np.float64)
    x = np.zeros((1, 1, 4, 4))
    monkeypatch.setenv("MINILENET_BACKEND", "numpy")
    layer.forward(x)
    assert layer.cache["backend"] == "numpy"
    with config.using("numba"):
        layer.forward(x)
        assert layer.cache["backend"] == "numba"
    layer.backend = "numpy"
    with config.using("numba"):
        layer.forward(x)
        assert layer.cache["backend"] == "numpy"
    monkeypatch.setenv("MINILENET_BACKEND", "fortran")
    with pytest.raises(ValueError, match="unknown backend 'fortran'"):
        Conv2D(1, 1, 3).forward(np.zeros((1, 1, 4, 4), np.float32))


def test_table_conv_has_no_parameter_for_unconnected_weights():
    layer = TableConv2D(C3_TABLE, 5, dtype=np.float64)
    assert layer.params["weight"].shape == (60, 5, 5)
    assert layer.num_params() == 1516
    layer.forward(np.ones((1, 6, 5, 5)))
    layer.backward(np.ones((1, 16, 1, 1)))
    assert layer.grads["weight"].shape == (60, 5, 5)


def test_table_conv_output_ignores_unconnected_input_maps(rng):
    """Changing an S2 map changes exactly the C3 maps it is connected to."""
    layer = TableConv2D(C3_TABLE, 5, dtype=np.float64)
    x = rng.standard_normal((1, 6, 5, 5))
    y0 = layer.forward(x)[0, :, 0, 0]
    for c in range(6):
        x2 = x.copy()
        x2[0, c] += 1.0
        changed = layer.forward(x2)[0, :, 0, 0] != y0
        np.testing.assert_array_equal(changed, C3_TABLE[c])


def test_table_conv_rejects_a_table_with_an_unfed_output():
    table = np.ones((3, 4), dtype=bool)
    table[:, 2] = False
    with pytest.raises(ValueError, match="every output map connected"):
        TableConv2D(table, 3)


def test_subsampling_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'sum' or 'average'"):
        Subsampling(2, mode="max")


def test_subsampling_sum_is_four_times_average(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    s, a = Subsampling(3, dtype=np.float64), Subsampling(3, mode="average", dtype=np.float64)
    a.load_state_dict(s.state_dict())
    s.params["bias"][...] = a.params["bias"][...] = 0
    np.testing.assert_allclose(s.forward(x), 4 * a.forward(x), rtol=1e-14)


@pytest.mark.parametrize("cls", [ScaledTanh, Tanh, Sigmoid, ReLU], ids=lambda c: c.__name__)
@pytest.mark.parametrize("a", [np.array(0.7), -1.3, np.array([[0.5, -2.0], [3.0, 0.0]])],
                         ids=["0-d", "scalar", "2-d"])
def test_activation_methods_called_directly_return_arrays_of_the_formulas(cls, a):
    """f(a) and df(y) without ``out`` (as notebooks call them, on scalars too): a new
    float array, 0-d for a scalar, with the formula's values."""
    layer, (f, df) = cls(np.float64), naive.ACTIVATIONS[cls.__name__]
    y = layer.f(a)
    assert isinstance(y, np.ndarray) and y.shape == np.shape(a) and y.dtype == np.float64
    np.testing.assert_allclose(y, f(np.asarray(a)), rtol=1e-14)
    d = layer.df(y)
    assert isinstance(d, np.ndarray) and d.shape == np.shape(a)
    np.testing.assert_allclose(d, df(y), rtol=1e-14, atol=1e-15)
