"""The readings of the paper's SDLM and initialisation that docs/results.md
tests against mu = 0.02: how h_kk is reduced over the curvature samples, the
curvature seed at the RBF input, and the S2/S4 initialisation."""
import numpy as np
import pytest

from minilenet import Dense, EuclideanRBF, Sequential, fused, lenet5, losses
from minilenet.cli import build_parser
from minilenet.cli import _config_from_args
from minilenet.init import PAPER, FanInUniform
from minilenet.models import redraw_subsampling
from minilenet.optimizers import SDLM
from minilenet.train import TrainConfig, build_model

F64 = np.float64


def _x(rng, n):
    return rng.uniform(-0.1, 1.175, (n, 1, 32, 32))


def _per_sample_h(model, x):
    """SDLM's h on each sample of x alone, in order."""
    singles = []
    for i in range(len(x)):
        one = SDLM()
        one.estimate_curvature(model, x[i:i + 1])
        singles.append(one.h)
    return singles


def test_summed_h_is_the_sum_of_per_sample_curvatures(rng):
    model, x = lenet5(dtype=F64, backend="numpy"), _x(rng, 4)
    summed, mean = SDLM(h_reduce="sum"), SDLM()
    summed.estimate_curvature(model, x)
    mean.estimate_curvature(model, x)
    singles = _per_sample_h(model, x)
    for name, h in summed.h.items():
        np.testing.assert_allclose(h, sum(s[name] for s in singles), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(h, len(x) * mean.h[name], rtol=1e-12, err_msg=name)
        assert (h > 0).any()


def test_running_average_follows_the_samples_and_carries_over(rng):
    model, x = lenet5(dtype=F64, backend="numpy"), _x(rng, 3)
    gamma = 0.3
    opt = SDLM(h_reduce="running", gamma=gamma)
    opt.estimate_curvature(model, x)
    singles = _per_sample_h(model, x)
    for name, h in opt.h.items():
        expected = 0.0
        for s in singles:                       # from zero before the first estimate
            expected = (1 - gamma) * expected + gamma * s[name]
        np.testing.assert_allclose(h, expected, rtol=1e-12, err_msg=name)
    first = {k: v.copy() for k, v in opt.h.items()}
    opt.estimate_curvature(model, x[:1])        # the next pass starts from the last h
    for name, h in opt.h.items():
        np.testing.assert_allclose(h, (1 - gamma) * first[name] + gamma * singles[0][name],
                                   rtol=1e-12, err_msg=name)


def _near_codes(rng, n=5, k=4, d=6):
    """RBF inputs close enough to the codes that the MAP term's softmax q is not negligible."""
    centers = rng.choice([-1.0, 1.0], size=(k, d))
    x = centers[rng.integers(0, k, n)] + 0.4 * rng.standard_normal((n, d))
    return centers, x


def test_map_competitive_curvature_matches_finite_differences(rng):
    """The exact second derivative of the MAP criterion in each RBF input x_j is
    2 (correct class) - 2 sum_k q_k + the Gauss-Newton part, so the Gauss-Newton
    part equals the finite-difference curvature - 2 + 2 sum_k q_k."""
    centers, x = _near_codes(rng)
    j, h = 0.1, 1e-4
    labels = rng.integers(0, len(centers), len(x))
    rbf = EuclideanRBF(centers, dtype=F64, backend="numpy")

    def loss(xs):                               # per-sample sum, not the batch mean
        return losses.map_loss(rbf.forward(xs), labels, j)[0] * len(xs)

    penalties = rbf.forward(x)
    got = losses.map_competitive_curvature(penalties, x, centers, j)
    z = np.concatenate([np.full((len(x), 1), -j), -penalties], axis=1)
    q = np.exp(z[:, 1:]) / np.exp(z).sum(axis=1, keepdims=True)
    assert q.sum(axis=1).min() > 0.1            # the competitive term matters here
    for n in range(len(x)):
        for d in range(x.shape[1]):
            values = []
            for t in (h, 0.0, -h):
                xt = x.copy()
                xt[n, d] += t
                values.append(loss(xt))
            fd = (values[0] - 2 * values[1] + values[2]) / h ** 2
            assert got[n, d] == pytest.approx(fd - 2 + 2 * q[n].sum(), abs=2e-5), (n, d)
    assert (got >= 0).all()


def test_map_seed_reaches_the_weights_below_the_rbf(rng):
    """Dense -> RBF: h of the weight from input k to output j is the mean over
    samples of x_k^2 times the seed at RBF input j, 2 + the competitive term's Gauss-Newton part."""
    centers, z = _near_codes(rng)
    dense = Dense(3, z.shape[1], dtype=F64, rng=rng, backend="numpy")
    model = Sequential([("d", dense), ("out", EuclideanRBF(centers, dtype=F64,
                                                           backend="numpy"))], (3,))
    x = rng.standard_normal((len(z), 3))
    dense.params["bias"][...] = 0.0
    dense.params["weight"][...] = np.linalg.lstsq(x, z, rcond=None)[0]  # near the codes
    opt = SDLM(seed="map", j=0.1)
    opt.estimate_curvature(model, x)
    out = model.forward(x)
    seed = 2.0 + losses.map_competitive_curvature(out, model["out"].cache["x"], centers, 0.1)
    np.testing.assert_allclose(opt.h["d.weight"], (x ** 2).T @ seed / len(x), rtol=1e-12)
    np.testing.assert_allclose(opt.h["d.bias"], seed.mean(axis=0), rtol=1e-12)
    plain = SDLM()
    plain.estimate_curvature(model, x)
    assert (opt.h["d.bias"] > plain.h["d.bias"]).all()


def test_all_penalties_seed_is_k_times_the_correct_class_seed(rng):
    model, x = lenet5(dtype=F64, backend="numpy"), _x(rng, 3)
    correct, every = SDLM(), SDLM(seed="all")
    correct.estimate_curvature(model, x)
    every.estimate_curvature(model, x)
    for name in correct.h:
        np.testing.assert_allclose(every.h[name], 10 * correct.h[name], rtol=1e-12)


def test_sdlm_refuses_unknown_readings():
    with pytest.raises(ValueError, match="h_reduce"):
        SDLM(h_reduce="median")
    with pytest.raises(ValueError, match="seed"):
        SDLM(seed="mse")


def test_redraw_subsampling_readings():
    model = lenet5(backend="numpy")
    redraw_subsampling(model, "one", PAPER, np.random.default_rng(0))
    for name in ("s2", "s4"):
        for key in ("weight", "bias"):
            value = model[name].params[key]
            assert value.dtype == model.dtype
            assert np.abs(value).max() <= 2.4 and np.abs(value).max() > 0.6, (name, key)
    redraw_subsampling(model, "one", FanInUniform(count_bias=True, bias="zero"),
                       np.random.default_rng(0))
    assert np.abs(model["s4"].params["weight"]).max() <= 1.2      # F_i = 1 + the bias
    assert not model["s4"].params["bias"].any()
    redraw_subsampling(model, "unit", PAPER, np.random.default_rng(0))
    assert (model["s2"].params["weight"] == 1).all() and not model["s2"].params["bias"].any()
    with pytest.raises(ValueError, match="subsampling init"):
        redraw_subsampling(model, "two", PAPER, np.random.default_rng(0))


def test_config_and_flags_carry_the_readings():
    args = build_parser().parse_args(
        ["train", "--mu", "0.02", "--h-reduce", "sum", "--curvature-seed", "map",
         "--count-bias", "--bias-init", "zero", "--subsampling-init", "one"])
    config = _config_from_args(args)
    assert (config.h_reduce, config.curvature_seed, config.count_bias, config.bias_init,
            config.subsampling_init) == ("sum", "map", True, "zero", "one")
    model = build_model(config)
    assert not model["c1"].params["bias"].any()
    assert np.abs(model["s2"].params["weight"]).max() > 0.6            # F_i = 1, not 4
    assert np.abs(model["c1"].params["weight"]).max() <= 2.4 / 26
    defaults = build_model(TrainConfig())
    assert np.abs(defaults["s2"].params["weight"]).max() <= 0.6
    with pytest.raises(ValueError, match="h_reduce"):
        TrainConfig(h_reduce="median").validate()


def test_fused_step_takes_the_rates_of_every_reading(rng, numba_runs):
    """The fused Numba step steps with whatever rates SDLM computed, so the
    readings train the same through it as through the layer graph."""
    pytest.importorskip("numba", reason="the fused step is compiled with Numba")
    x, y = _x(rng, 4), rng.integers(0, 10, 4)
    for options in ({"h_reduce": "sum"}, {"h_reduce": "running"}, {"seed": "map"},
                    {"seed": "all"}):
        a, b = lenet5(dtype=F64), lenet5(dtype=F64)
        opt_a, opt_b = SDLM(mu=0.02, **options), SDLM(mu=0.02, **options)
        opt_a.start_epoch(0, a, x)
        opt_b.start_epoch(0, b, x)
        assert fused.supports(b, "map", opt_b), options
        rates = opt_b.rates(b)
        for i in range(len(x)):
            _, g = losses.map_loss(a.forward(x[i:i + 1]), y[i:i + 1])
            a.backward(g)
            opt_a.step(a)
            fused.train_step(b, rates, x[i:i + 1], y[i:i + 1], "map")
        for k, v in a.state_dict().items():
            np.testing.assert_allclose(b.state_dict()[k], v, rtol=1e-10, atol=1e-13,
                                       err_msg=f"{options} {k}")
