"""The fused batch-1 step against its reference, the layer graph."""
import numpy as np
import pytest

from minilenet import (AvgPool2D, Conv2D, Tanh, fused, lenet5, load_digit_bitmaps, losses,
                       paper)
from minilenet.gradcheck import numerical_gradient, rel_error, sample_indices
from minilenet.kernels import numpy_ref
from minilenet.optimizers import SDLM, SGD
from minilenet.train import Data, TrainConfig, Trainer

pytest.importorskip("numba", reason="the fused step is compiled with Numba")
pytestmark = pytest.mark.usefixtures("numba_runs")     # off in a student copy


def _grads(model):
    return {name: model[name.split(".")[0]].grads[name.split(".")[1]].copy()
            for name in fused.PARAMS}


def _batch(rng, n, dtype=np.float64):
    return rng.uniform(-0.1, 1.175, (n, 1, 32, 32)).astype(dtype), rng.integers(0, 10, n)


@pytest.mark.parametrize("loss", ["mse", "map"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("subsampling", ["sum", "average"])
def test_fused_gradients_match_the_layer_graph(rng, loss, n, subsampling):
    a = lenet5(dtype=np.float64, subsampling=subsampling)
    b = lenet5(dtype=np.float64, subsampling=subsampling)
    x, y = _batch(rng, n)
    expected_loss, g = losses.get(loss)(a.forward(x), y)
    a.backward(g)
    got_loss, penalties = fused.gradients(b, x, y, loss)
    assert got_loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(penalties, a["output"].forward(a["f6_act"].cache["y"]),
                               rtol=1e-12)
    ga, gb = _grads(a), _grads(b)
    for name in fused.PARAMS:
        assert rel_error(ga[name], gb[name]) < 1e-12, name


def test_fused_steps_match_layer_steps_with_sdlm(rng):
    a, b = lenet5(dtype=np.float64), lenet5(dtype=np.float64)
    x, y = _batch(rng, 6)
    opts = [SDLM(), SDLM()]
    for model, opt in zip((a, b), opts):
        opt.start_epoch(0, model, x)
    rates = opts[1].rates(b)
    for i in range(6):
        _, g = losses.map_loss(a.forward(x[i:i + 1]), y[i:i + 1])
        a.backward(g)
        opts[0].step(a)
        fused.train_step(b, rates, x[i:i + 1], y[i:i + 1], "map")
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(b.state_dict()[k], v, rtol=1e-11, atol=1e-13, err_msg=k)


def test_fused_float32_stays_close_to_the_layer_graph(rng):
    a, b = lenet5(), lenet5()
    x, y = _batch(rng, 2, np.float32)
    _, g = losses.map_loss(a.forward(x), y)
    a.backward(g)
    fused.gradients(b, x, y, "map")
    ga, gb = _grads(a), _grads(b)
    for name in fused.PARAMS:
        assert gb[name].dtype == np.float32
        assert rel_error(ga[name], gb[name]) < 1e-5, name


def test_fused_gradients_pass_the_finite_difference_check(rng):
    model = lenet5(dtype=np.float64, seed=1)
    x, y = _batch(rng, 2)
    fused.gradients(model, x, y, "map")
    analytic = _grads(model)
    objective = lambda: fused.gradients(model, x, y, "map")[0]      # noqa: E731
    for name in fused.PARAMS:
        param = model[name.split(".")[0]].params[name.split(".")[1]]
        idx = sample_indices(param.shape, 6, rng)
        numeric = numerical_gradient(objective, param, idx, h=1e-2, order=4)
        assert rel_error(analytic[name].reshape(-1)[idx], numeric) < 1e-7, name


def test_supports_only_what_it_implements():
    paper = lenet5()
    assert fused.supports(paper, "map", SDLM()) and fused.mismatch(paper) == ""
    assert not fused.supports(paper, "map", SGD())
    assert not fused.supports(paper, "ce", SDLM())
    assert not fused.supports(lenet5("modern"), "ce", SDLM())
    assert not fused.supports(lenet5(backend="numpy"), "map", SDLM())
    patched = SDLM()
    patched.step = lambda model: None
    assert not fused.supports(paper, "map", patched)


def _halved(layer):
    """A student's variant of ``layer``: the same layer, its output halved."""
    class Halved(type(layer)):
        def forward(self, x):
            return super().forward(x) * 0.5

        def backward(self, dy):
            return super().backward(dy * 0.5)

        def backward_second(self, d2y):
            return super().backward_second(d2y * 0.25)
    layer.__class__ = Halved
    return layer


def _with(name, replace):
    model = lenet5()
    model.layers[name] = replace(model[name])
    model.layers[name].name = name
    return model


def _patched_df(layer):
    layer.df = lambda y: 1.0 - y * y          # an instance-level replacement
    return layer


#: Every layer of the paper network changed in turn: a realistic swap where one
#: exists, else the same layer with its output halved (a subclass).
CHANGES = {
    "c1": _halved, "c1_act": lambda l: Tanh(), "s2": lambda l: AvgPool2D(2),
    "s2_act": _patched_df, "c3": lambda l: Conv2D(6, 16, 5), "c3_act": lambda l: Tanh(),
    "s4": lambda l: AvgPool2D(2), "s4_act": lambda l: Tanh(), "c5": _halved,
    "c5_act": lambda l: Tanh(), "flatten": _halved, "f6": _halved, "f6_act": lambda l: Tanh(),
    "output": _halved,
}


def _train(tmp_path, name, model):
    from test_train import _arrays
    config = TrainConfig(epochs=1, hessian_samples=20, limit=60)
    trainer = Trainer(config, Data.from_mnist(_arrays(), config), str(tmp_path / name),
                      progress=False, log=lambda s: None, model=model)
    trainer.fit()
    return trainer


def test_every_layer_is_part_of_the_match():
    assert [name for name, _, _ in fused.STRUCTURE] == list(lenet5().layers)
    assert sorted(CHANGES) == sorted(lenet5().layers)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_changed_layer_trains_through_the_layer_graph(tmp_path, name):
    """Swap one layer: the trainer must not use the fused step, and what it
    computes must differ from the fused run of the unchanged network."""
    reference = _train(tmp_path, "reference", lenet5())
    assert reference.use_fused
    changed = _with(name, CHANGES[name])
    assert name in fused.mismatch(changed)
    with pytest.raises(ValueError, match="not the network it computes"):
        fused.gradients(changed, np.zeros((1, 1, 32, 32), np.float32), np.array([0]), "map")
    trainer = _train(tmp_path, "changed", changed)
    assert not trainer.use_fused
    a, b = reference.model.state_dict(), trainer.model.state_dict()
    assert any(not np.array_equal(a[k], b[k]) for k in a.keys() & b.keys())


def test_mixed_dtypes_and_changed_constants_are_refused(monkeypatch):
    model = lenet5()
    model["f6"].astype(np.float64)
    assert "f6 has dtype float64" in fused.mismatch(model)
    monkeypatch.setattr(numpy_ref, "A", 1.0)
    assert "numpy_ref.A is not the package's" in fused.mismatch(lenet5())
    monkeypatch.undo()
    monkeypatch.setattr(numpy_ref, "sdlm_update", lambda p, g, rates: None)
    assert "numpy_ref.sdlm_update is not the package's" in fused.mismatch(lenet5())


@pytest.mark.parametrize("variant", [
    dict(subsampling="average"), dict(c3_table=np.ones((6, 16), bool)),
    dict(centers=-load_digit_bitmaps()),
])
def test_what_the_fused_step_reads_from_the_model_is_supported_and_agrees(rng, variant):
    """The C3 table, the subsampling mode and the RBF codes are read from the
    model: such networks train fused, to the layer graph's result."""
    a, b = lenet5(dtype=np.float64, **variant), lenet5(dtype=np.float64, **variant)
    assert fused.supports(b, "map", SDLM())
    x, y = _batch(rng, 2)
    _, g = losses.map_loss(a.forward(x), y)
    a.backward(g)
    fused.gradients(b, x, y, "map")
    ga, gb = _grads(a), _grads(b)
    for name in fused.PARAMS:
        assert rel_error(ga[name], gb[name]) < 1e-12, name


@pytest.mark.parametrize("x,labels,pattern", [
    (np.zeros((1, 1, 28, 28)), np.array([0]), "shape \\(N, 1, 32, 32\\)"),
    (np.zeros((1, 1, 32, 32), np.float32), np.array([0]), "float64 array"),
    (np.zeros((2, 1, 32, 32)), np.array([0]), "2 integer labels"),
    (np.zeros((1, 1, 32, 32)), np.array([10]), "labels in \\[0, 9\\]"),
])
def test_fused_step_refuses_bad_input(x, labels, pattern):
    model = lenet5(dtype=np.float64)
    with pytest.raises(ValueError, match=pattern):
        fused.gradients(model, x, labels, "map")


# The fused step's own building blocks (the twins it calls, the losses and
# sdlm_update, are held to numpy_ref in test_kernels.py).
def test_compiled_squashing_matches_numpy_ref_and_the_layer(rng):
    from minilenet import ScaledTanh
    from minilenet.kernels import compiled
    a = rng.standard_normal((3, 3, 4, 4)) * 2
    y = numpy_ref.scaled_tanh(a)
    np.testing.assert_allclose(compiled.scaled_tanh(a), y, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(compiled.scaled_tanh_derivative(y),
                               numpy_ref.scaled_tanh_derivative(y), rtol=1e-14, atol=1e-15)
    layer = ScaledTanh(np.float64)
    y = layer.forward(a)
    dy = rng.standard_normal(a.shape)
    np.testing.assert_allclose(compiled.scaled_tanh_backward(y, dy), layer.backward(dy),
                               rtol=1e-13, atol=1e-15)


def test_compiled_tanh_matches_numpy_to_a_few_ulp(rng):
    """The fused step's tanh (arithmetic only, so its loops vectorise) against its
    reference np.tanh: within 4 units in the last place in float64, from 1e-300 to
    beyond the point where tanh is 1, with signed zeros, infinities and NaN as
    np.tanh gives them; the float32 tanh (``tanh32``, float32 arithmetic) within
    2.5 float32 units, and float32 squashing within 3."""
    from minilenet.kernels import compiled
    z = np.concatenate([rng.standard_normal(3000) * s
                        for s in (1e-300, 1e-8, 1e-3, 0.1, 0.5, 1, 3, 10, 30)]
                       + [np.linspace(-25, 25, 5001)])
    got, want = np.array([compiled.tanh(v) for v in z]), np.tanh(z)
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 4, f"the compiled tanh is {ulps.max():.0f} ulp off np.tanh"
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324])
    got = np.array([compiled.tanh(v) for v in special])
    np.testing.assert_array_equal(got, np.tanh(special))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.tanh(special)))
    z32 = z[np.abs(z) < 3e38].astype(np.float32)
    got32, want32 = np.array([compiled.tanh32(v) for v in z32]), np.tanh(z32.astype(np.float64))
    ulps = np.abs(got32 - want32) / np.spacing(np.abs(want32).astype(np.float32))
    assert ulps.max() <= 2.5, f"the float32 tanh is {ulps.max():.1f} float32 ulp off np.tanh"
    got = np.array([compiled.tanh32(v) for v in special.astype(np.float32)])
    np.testing.assert_array_equal(got, np.tanh(special.astype(np.float32)))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.tanh(special)))
    a32 = (rng.standard_normal(50000) * 3).astype(np.float32)
    s_a = (np.float32(paper.S) * a32).astype(np.float64)        # the kernel's S a, float32
    want32 = np.float64(np.float32(paper.A)) * np.tanh(s_a)
    ulps = np.abs(compiled.scaled_tanh(a32) - want32) / np.spacing(np.abs(want32).astype(np.float32))
    assert ulps.max() <= 3, f"float32 squashing is {ulps.max():.1f} float32 ulp off"


def test_second_derivative_pass_agrees_across_backends(rng):
    """SDLM's Gauss-Newton pass runs on the backend's kernels: both give the same h."""
    x = rng.uniform(-0.1, 1.175, (12, 1, 32, 32))
    h = {}
    for backend in ("numpy", "numba"):
        opt = SDLM()
        opt.estimate_curvature(lenet5(dtype=np.float64, backend=backend), x)
        h[backend] = opt.h
    for name in h["numpy"]:
        assert rel_error(h["numpy"][name], h["numba"][name]) < 1e-12, name


def test_train_step_compiles_without_running(rng):
    model = lenet5()
    opt = SDLM()
    x, y = _batch(rng, 1, np.float32)
    opt.start_epoch(0, model, x)
    before = model.state_dict()
    step = fused.TrainStep(model, opt.rates(model), "map")
    import numba
    assert step.compile(x, y) > 0
    wanted = tuple(numba.typeof(a) for a in (x, y, *step._args))
    assert wanted in [tuple(sig) for sig in step._kernel.signatures]
    for k, v in model.state_dict().items():
        assert v.tobytes() == before[k].tobytes()
    step(x, y)
    assert not np.array_equal(model["f6"].params["weight"], before["f6.weight"])


@pytest.mark.slow
def test_a_cold_cache_compiles_the_step_in_a_second_process(tmp_path):
    """The trainer starts the compilation early in another process; afterwards the
    step is in the on-disk cache, and no second process is started."""
    import subprocess
    import sys
    code = """
from minilenet import fused, lenet5
model = lenet5()
step, x, labels = fused._example(model)
assert not step.is_cached(x, labels)
process = fused.compile_in_background(model)
assert fused.compile_in_background(model) is process      # one at a time
assert process.wait() == 0
assert step.is_cached(x, labels)
assert fused.compile_in_background(model) is None
"""
    env = dict(__import__("os").environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
