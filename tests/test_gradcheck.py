"""The gradient-check suite, case by case, and proof that the checks can fail."""
import numpy as np
import pytest

from minilenet import MaxPool2D, ScaledTanh, activations, gradcheck, lenet5, losses
from minilenet.gradcheck import check_layer, check_model, numerical_gradient, rel_error
from minilenet.gradcheck_suite import (all_layer_cases, loss_cases, model_cases,
                                       run_layer_case, run_loss_case, run_model_case)
from minilenet.kernels import numpy_ref


def _ids(cases):
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", all_layer_cases(), ids=_ids(all_layer_cases()))
def test_layer_gradients(case):
    results = run_layer_case(*case)
    assert results and all(r.passed for r in results), gradcheck.format_results(results)
    assert max(r.error for r in results) <= 1e-7


@pytest.mark.parametrize("case", loss_cases(), ids=_ids(loss_cases()))
def test_loss_gradients(case):
    results = run_loss_case(*case)
    assert all(r.passed for r in results), gradcheck.format_results(results)


@pytest.mark.parametrize("case", model_cases(), ids=_ids(model_cases()))
def test_whole_network_gradients(case):
    results = run_model_case(*case)
    names = {r.tensor for r in results}
    assert "dx" in names and "c1.weight" in names and "f6.bias" in names
    assert all(r.passed for r in results), gradcheck.format_results(results)


def test_gradcheck_refuses_float32():
    layer = ScaledTanh(np.float32)
    with pytest.raises(TypeError, match="float64"):
        check_layer(layer, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, np.float32), [0])
    with pytest.raises(TypeError, match="float64"):
        check_model(lenet5(), losses.mse_loss, np.zeros((1, 1, 32, 32)), np.array([0]))


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    f = lambda: float(np.sum(np.sin(x) * x))                     # noqa: E731
    for order in (2, 4):
        num = numerical_gradient(f, x, np.arange(3), h=1e-4, order=order)
        np.testing.assert_allclose(num, np.cos(x) * x + np.sin(x), rtol=1e-7)
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])           # restored


def test_rel_error():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0]), np.array([0.5])) == pytest.approx(0.5 / 1.5)


# ------------------------------------------------------ the checks can fail
class TanhMissingFactor(ScaledTanh):
    """A classic bug: the derivative of 1.7159 tanh(2a/3) without the A*S factor."""

    def df(self, y):
        t = y / activations.A
        return 1.0 - t * t


def test_check_catches_a_missing_activation_factor(rng):
    results = check_layer(TanhMissingFactor(np.float64), rng.standard_normal((3, 4)), rng)
    assert not results[0].passed and results[0].error > 1e-2


def _col2im_overwrite(cols, x_shape, stride=1):
    """The other classic bug: col2im that assigns instead of summing windows."""
    N, C, kh, kw, OH, OW = cols.shape
    x = np.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] = cols[:, :, i, j]
    return x


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2)])
def test_check_catches_col2im_that_overwrites(monkeypatch, kernel, stride):
    """Overlapping windows (3x3 at stride 1 and 2): the buggy col2im must fail."""
    make_input = lambda r: r.permutation(np.arange(2 * 2 * 7 * 7) * 0.01).reshape(2, 2, 7, 7)  # noqa: E731
    make_layer = lambda: MaxPool2D(kernel, stride, dtype=np.float64, backend="numpy")  # noqa: E731
    assert all(r.passed for r in run_layer_case("ok", make_layer, make_input))
    monkeypatch.setattr(numpy_ref, "col2im", _col2im_overwrite)
    results = run_layer_case("buggy", make_layer, make_input)
    assert not results[0].passed and results[0].error > 1e-2


def test_check_catches_col2im_bug_in_conv_and_whole_network(monkeypatch, rng):
    from minilenet import Conv2D
    monkeypatch.setattr(numpy_ref, "col2im", _col2im_overwrite)
    conv = Conv2D(2, 3, 3, dtype=np.float64, backend="numpy")
    dx_result = check_layer(conv, rng.standard_normal((2, 2, 6, 6)), rng)[0]
    assert dx_result.tensor == "dx" and not dx_result.passed
    model = lenet5(dtype=np.float64, backend="numpy")
    x = rng.uniform(-0.1, 1.175, (2, 1, 32, 32))
    results = check_model(model, losses.mse_loss, x, np.array([1, 2]), rng, h=1e-2, order=4)
    assert not next(r for r in results if r.tensor == "dx").passed
