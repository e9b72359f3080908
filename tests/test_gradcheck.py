"""The gradient-check suite, case by case, and proof that the checks can fail."""
import numpy as np
import pytest

from minilenet import Dense, MaxPool2D, ScaledTanh, gradcheck, lenet5, losses, paper
from minilenet.conv import Convolution
from minilenet.gradcheck import check_layer, check_model, numerical_gradient, rel_error
from minilenet.gradcheck_suite import GROUPS, cases, run_case, run_layer_case, run_suite
from minilenet.kernels import numpy_ref

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.label}" for c in CASES])
def test_suite_case(case):
    results = run_case(case)
    assert results and all(r.passed for r in results), gradcheck.format_results(results)
    assert {r.group for r in results} == {case.group}


def test_suite_covers_every_group_and_both_backends(numba_runs):
    groups = {c.group for c in CASES}
    assert groups == set(GROUPS)
    labels = " ".join(c.label for c in CASES)
    for needed in ("[numpy]", "[numba]", "trained-like", "fused step + map", "tie rule",
                   "Subsampling average", "lenet5 modern + ce"):
        assert needed in labels, needed
    whole = [c.label for c in CASES if c.group == "whole networks"]
    assert any("numpy" in label for label in whole) and any("numba" in label for label in whole)


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
        t = y / paper.A
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


# ------------------------- the suite catches each slip that once escaped it
def _failures(capsys, argv=("gradcheck",)):
    """Run ``minilenet gradcheck`` in this process; the labels of the failed checks. In a
    student copy, a unit not written yet raises its NotImplementedError: the test fails
    naming the unit, not on a missing failure."""
    from minilenet.cli import main
    assert main(list(argv)) == 1
    out = capsys.readouterr().out
    missing = [line for line in out.splitlines() if "  not implemented  (" in line]
    if missing:
        raise NotImplementedError(missing[0].split("  (", 1)[1].rstrip(")"))
    return {line.split("  ")[0].strip() for line in out.splitlines() if "  FAIL" in line}


def all_passed(results):
    """True if every check passed; a check of a unit not written yet (a student copy)
    raises its NotImplementedError instead, so that the test fails naming the unit."""
    for r in results:
        if r.missing:
            raise NotImplementedError(r.missing)
    return all(r.passed for r in results)


def _recompiled_fused_step(monkeypatch, **kernels):
    """Recompile the fused step with some of the kernels it calls replaced, in its own
    copy of the module's globals: the layers' kernels, and every kernel cached on
    disk, keep the originals."""
    import types
    from numba import njit
    from minilenet.kernels import compiled
    step = compiled.paper_step.py_func
    patched = types.FunctionType(step.__code__, {**step.__globals__, **kernels}, step.__name__,
                                 step.__defaults__, step.__closure__)
    options = {k: v for k, v in compiled.OPTIONS.items() if k != "cache"}
    monkeypatch.setattr(compiled, "paper_step", njit(**options)(patched))


@pytest.mark.slow
def test_gradcheck_catches_a_slip_in_the_fused_c1_gradient(monkeypatch, capsys, numba_runs):
    from numba import njit
    from minilenet.kernels import compiled
    block = compiled.table_backward_block

    @njit
    def c1_slip(x, w, dy, out_idx, in_idx, dx, dw, db):      # C1's gradient missing S
        block(x, w, dy, out_idx, in_idx, dx, dw, db)
        if x.shape[1] == 1:                                   # C1: one input map
            for k in range(dw.shape[0]):
                dw[k] *= 2.0 / 3.0

    _recompiled_fused_step(monkeypatch, table_backward_block=c1_slip)
    failed = _failures(capsys, ["gradcheck"])
    assert failed and all(label.startswith("fused step") for label in failed)


@pytest.mark.slow
def test_gradcheck_catches_a_slip_in_the_fused_loss(monkeypatch, capsys, numba_runs):
    """MAP's gradient without its competitive term (the MSE gradient): invisible at
    initialisation, where every penalty is ~84 and exp(-84) is nothing."""
    from numba import njit
    from minilenet.kernels import compiled
    map_loss, mse_loss = compiled.map_loss, compiled.mse_loss

    @njit
    def loss_slip(penalties, labels, j):
        loss, _ = map_loss(penalties, labels, j)
        return loss, mse_loss(penalties, labels)[1]

    _recompiled_fused_step(monkeypatch, map_loss=loss_slip)
    failed = _failures(capsys)
    assert any("trained-like" in label for label in failed)
    assert not any(label.startswith("fused step + map vs") for label in failed)  # init passes


def _unsquared_weight(self, d2y):
    """A Gauss-Newton pass that forgot to square the weights."""
    d2y = self.check_upstream(d2y)
    return self._backprop(self.cache["x"] ** 2, self.params["weight"], d2y, self.hess)


@pytest.mark.parametrize("layer_class", [Dense, Convolution])
def test_gradcheck_catches_an_unsquared_weight_in_the_second_derivative_pass(
        monkeypatch, capsys, layer_class):
    monkeypatch.setattr(layer_class, "backward_second", _unsquared_weight)
    failed = _failures(capsys)
    assert failed and all("[num" in label for label in failed)
    assert all_passed(run_suite(groups=("layer gradients",)))


def test_gradcheck_catches_a_max_pool_that_marks_every_tie(monkeypatch, capsys):
    forward = MaxPool2D.forward

    def forward_keeping_x(self, x):
        y = forward(self, x)
        self.cache["x"] = x
        return y

    def backward_to_every_tie(self, dy):
        """The slip: each window's gradient sent to *every* one of its maxima."""
        dy = self.check_upstream(dy)
        k = self.kernel_size
        cols = numpy_ref.im2col(self.cache["x"], k, k, self.stride)
        ties = cols == cols.max(axis=(2, 3), keepdims=True)
        return numpy_ref.col2im(ties * dy[:, :, None, None], self.cache["x_shape"], self.stride)

    monkeypatch.setattr(MaxPool2D, "forward", forward_keeping_x)
    monkeypatch.setattr(MaxPool2D, "backward", backward_to_every_tie)
    failed = _failures(capsys)
    assert any("tie rule" in label for label in failed)
    # the finite-difference checks alone cannot see it: their inputs have no ties
    assert all_passed(run_suite(groups=("layer gradients",)))
