"""SGD, SDLM and the Gauss-Newton second-derivative pass behind it."""
import numpy as np
import pytest

from minilenet import (C3_TABLE, Conv2D, Dense, EuclideanRBF, Flatten, ScaledTanh, Sequential,
                       Subsampling, TableConv2D, lenet5)
from minilenet.optimizers import SDLM, SGD
from minilenet.paper import PAPER_ETA, paper_eta

F64 = np.float64


def test_paper_eta_schedule():
    expected = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert [paper_eta(e) for e in range(20)] == expected
    assert PAPER_ETA[0] == (1, 2, 5e-4)


def _net(first_layer, in_shape, rng, n_out):
    """first_layer -> ScaledTanh -> Flatten -> RBF with random +-1 prototypes."""
    centers = rng.choice([-1.0, 1.0], size=(3, n_out))
    return Sequential([("layer", first_layer), ("act", ScaledTanh(F64)), ("flat", Flatten(F64)),
                       ("output", EuclideanRBF(centers, dtype=F64))], in_shape)


def _gauss_newton_fd(model, x, array, index, h=1e-4):
    """Second derivative, along one parameter, of the Gauss-Newton objective
    G(t) = mean_n sum_j (z_j(w + t e_k) - z_j(w))^2, z = the RBF input; its
    value at t = 0 is the exact Gauss-Newton diagonal for E = |z - w_D|^2."""
    below = list(model.layers.values())[:-1]

    def z():
        out = x
        for layer in below:
            out = layer.forward(out)
        return out

    z0 = z()
    flat = array.reshape(-1)
    old = flat[index]
    values = []
    for t in (h, -h):
        flat[index] = old + t
        values.append(np.sum((z() - z0) ** 2) / len(x))
    flat[index] = old
    return sum(values) / h ** 2


def _one_window_input(rng, shape):
    """Inputs with one non-zero pixel per 2x2 window, so that the four connections
    sharing a subsampling coefficient do not interact (approximation 1 is exact)."""
    x = np.zeros(shape)
    N, C, H, W = shape
    for n in range(N):
        for c in range(C):
            for p in range(0, H, 2):
                for q in range(0, W, 2):
                    x[n, c, p + rng.integers(2), q + rng.integers(2)] = rng.standard_normal()
    return x


CASES = {
    # Each weighted unit has one connection per shared weight here, so the paper's
    # diagonal approximations are exact and h must equal the exact GN diagonal.
    "dense": (lambda r: Dense(5, 4, dtype=F64, rng=r), (5,), 4, lambda r, s: r.standard_normal(s)),
    "conv 1x1 output": (lambda r: Conv2D(2, 3, 3, dtype=F64, rng=r), (2, 3, 3), 3,
                        lambda r, s: r.standard_normal(s)),
    "table conv": (lambda r: TableConv2D(C3_TABLE, 3, dtype=F64, rng=r), (6, 3, 3), 16,
                   lambda r, s: r.standard_normal(s)),
    "subsampling sum": (lambda r: Subsampling(2, dtype=F64, rng=r), (2, 2, 2), 2,
                        _one_window_input),
    "subsampling average": (lambda r: Subsampling(2, mode="average", dtype=F64, rng=r),
                            (2, 2, 2), 2, _one_window_input),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_curvature_matches_finite_differences_of_gauss_newton(case, rng):
    make, in_shape, n_out, make_x = CASES[case]
    model = _net(make(rng), in_shape, rng, n_out)
    for p in model["layer"].params.values():
        p *= 10                                   # out of the linear regime of the tanh
    x = make_x(rng, (3,) + in_shape)
    opt = SDLM()
    opt.estimate_curvature(model, x)
    layer = model["layer"]
    for key, param in layer.params.items():
        h = opt.h[f"layer.{key}"].reshape(-1)
        for index in rng.choice(param.size, size=min(param.size, 6), replace=False):
            fd = _gauss_newton_fd(model, x, param, index)
            assert h[index] == pytest.approx(fd, rel=1e-5, abs=1e-9), (key, index)


def test_subsampling_curvature_counts_each_connection_separately(rng):
    """With all four inputs non-zero, approximation (1) sums x^2 over the
    connections: h_coef = sum_units sum_{4 inputs} x^2 d2a (docs/paper.md, section 7)."""
    model = _net(Subsampling(1, dtype=F64, rng=rng), (1, 2, 2), rng, 1)
    x = rng.standard_normal((4, 1, 2, 2))
    opt = SDLM()
    opt.estimate_curvature(model, x)
    a = model["layer"].forward(x)[:, 0, 0, 0]
    d2a = (ScaledTanh(F64).df(ScaledTanh(F64).f(a))) ** 2 * 2.0
    expected = np.mean((x ** 2).sum(axis=(1, 2, 3)) * d2a)
    assert opt.h["layer.weight"][0] == pytest.approx(expected, rel=1e-12)
    assert opt.h["layer.bias"][0] == pytest.approx(np.mean(d2a), rel=1e-12)


def test_lenet5_curvature_is_nonnegative_and_rates_bounded(rng):
    model = lenet5(dtype=F64)
    opt = SDLM(mu=0.02)
    opt.start_epoch(0, model, rng.uniform(-0.1, 1.175, (20, 1, 32, 32)))
    assert set(opt.h) == {n for n, _, _ in model.named_parameters()}
    for name, rate in opt.rates(model).items():
        assert (opt.h[name] >= 0).all()
        assert (rate <= 5e-4 / 0.02 + 1e-15).all() and (rate > 0).all()


def test_modern_network_curvature_from_cross_entropy(rng):
    model = lenet5("modern", dtype=F64)
    opt = SDLM()
    opt.estimate_curvature(model, rng.uniform(-0.1, 1.175, (8, 1, 32, 32)))
    assert all((h >= 0).all() for h in opt.h.values())
    assert opt.h["output.bias"].sum() > 0


def test_sdlm_step_is_eta_over_mu_plus_h(rng):
    model = Sequential([("d", Dense(3, 2, dtype=F64, rng=rng))], (3,))
    opt = SDLM(mu=0.5, eta=0.1)
    opt.h = {"d.weight": np.full((3, 2), 1.5), "d.bias": np.zeros(2)}
    opt.start_epoch(0, model)
    before = model["d"].params["weight"].copy()
    model["d"].forward(rng.standard_normal((1, 3)))
    model["d"].backward(np.ones((1, 2)))
    opt.step(model)
    np.testing.assert_allclose(model["d"].params["weight"],
                               before - 0.1 / 2.0 * model["d"].grads["weight"])


def test_sdlm_refuses_to_step_without_curvature():
    model = Sequential([("d", Dense(3, 2))], (3,))
    with pytest.raises(RuntimeError, match="estimate_curvature"):
        SDLM().step(model)


def test_sgd_momentum_and_weight_decay(rng):
    model = Sequential([("d", Dense(2, 1, dtype=F64, rng=rng))], (2,))
    layer = model["d"]
    w0 = layer.params["weight"].copy()
    layer.grads["weight"][...] = 1.0
    layer.grads["bias"][...] = 0.0
    opt = SGD(lr=0.1, momentum=0.5, weight_decay=0.0)
    opt.step(model)
    opt.step(model)
    np.testing.assert_allclose(layer.params["weight"], w0 - 0.1 - (0.05 + 0.1))
    state = opt.state_dict()
    fresh = SGD(lr=0.1, momentum=0.5)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.velocity["d.weight"], opt.velocity["d.weight"])
    decay = SGD(lr=1.0, weight_decay=0.5)
    layer.grads["weight"][...] = 0.0
    w = layer.params["weight"].copy()
    decay.step(model)
    np.testing.assert_allclose(layer.params["weight"], 0.5 * w)
