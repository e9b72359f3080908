"""What the grader calls for each unit, on any copy of the package.

A probe takes ``ml`` (the modules of one copy of minilenet: the student's in
the grading process, the instructor's for the reference values) and a dict of
input arrays, and returns a dict of output arrays. Probes always run the NumPy
backend in float64: that is the code a student writes. This file imports
nothing from minilenet by name, so the grader can load it beside a student's
copy (see ``driver.py``).
"""
import importlib
from types import SimpleNamespace

import numpy as np


def namespace():
    """The modules of the ``minilenet`` that ``import`` finds."""
    names = ("config", "losses", "activations", "pooling", "mnist", "optimizers", "graph",
             "conv", "dense", "subsampling", "rbf", "kernels.numpy_ref")
    mods = {n.split(".")[-1]: importlib.import_module(f"minilenet.{n}") for n in names}
    return SimpleNamespace(**mods)


def _int(a, key):
    return int(a[key])


def _kernel(name, *args, ints=()):
    """A probe calling ``numpy_ref.<name>`` with input arrays ``args`` and integer
    inputs ``ints``; its outputs are named from the last argument."""
    def call(ml, a):
        values = [a[k] for k in args] + [_int(a, k) for k in ints]
        return getattr(ml.numpy_ref, name)(*values)
    return call


def _named(fn, *names):
    def call(ml, a):
        out = fn(ml, a)
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(names, out, strict=True))
    return call


def _loss(name):
    def call(ml, a):
        loss, grad = getattr(ml.losses, name)(a["scores"], a["labels"])
        return {"loss": np.array(loss), "grad": grad}
    return call


def _layer(make):
    """Forward then backward of a layer built by ``make(ml, a)``: outputs y, dx."""
    def call(ml, a):
        with ml.config.using("numpy"):
            layer = make(ml, a)
            y = layer.forward(a["x"])
            return {"y": y, "dx": layer.backward(a["dy"])}
    return call


def _curvature(ml, a):
    """SDLM's h_kk for a small subsample-conv-subsample-dense-RBF network (every
    layer's backward_second, and the average over the samples)."""
    f64 = np.float64
    with ml.config.using("numpy"):
        sub0 = ml.subsampling.Subsampling(2, dtype=f64)
        conv = ml.conv.Conv2D(2, 3, 3, dtype=f64)
        sub = ml.subsampling.Subsampling(3, dtype=f64)
        dense = ml.dense.Dense(12, 5, dtype=f64)
        layers = [("sub0", sub0), ("act0", ml.activations.Tanh(f64)),
                  ("conv", conv), ("act1", ml.activations.Tanh(f64)), ("sub", sub),
                  ("act2", ml.activations.Tanh(f64)), ("flat", ml.dense.Flatten(f64)),
                  ("dense", dense), ("act3", ml.activations.Tanh(f64)),
                  ("output", ml.rbf.EuclideanRBF(a["centers"], dtype=f64))]
        model = ml.graph.Sequential(layers, (2, 12, 12))
        for name, layer in (("sub0", sub0), ("conv", conv), ("sub", sub), ("dense", dense)):
            layer.params["weight"][...] = a[f"{name}.weight"]
            layer.params["bias"][...] = a[f"{name}.bias"]
        opt = ml.optimizers.SDLM()
        opt.estimate_curvature(model, a["x"])
        return {f"h.{name}": h for name, h in opt.h.items()}


def _step(ml, a):
    """SDLM's rates eta / (mu + h) and one update of a Dense layer."""
    f64 = np.float64
    model = ml.graph.Sequential([("d", ml.dense.Dense(4, 3, dtype=f64))], (4,))
    layer = model["d"]
    for key in ("weight", "bias"):
        layer.params[key][...] = a[key]
        layer.grads[key][...] = a[f"grad.{key}"]
    opt = ml.optimizers.SDLM(mu=float(a["mu"]), eta=float(a["eta"]))
    opt.h = {"d.weight": a["h.weight"], "d.bias": a["h.bias"]}
    rates = opt.rates(model)
    opt.start_epoch(0, model)
    opt.step(model)
    return {"rate.weight": rates["d.weight"], "rate.bias": rates["d.bias"],
            "weight": layer.params["weight"], "bias": layer.params["bias"]}


PROBES = {
    "im2col": _named(_kernel("im2col", "x", ints=("kh", "kw", "stride")), "cols"),
    "col2im": _named(lambda ml, a: ml.numpy_ref.col2im(a["cols"], tuple(a["x_shape"]),
                                                       _int(a, "stride")), "x"),
    "conv.forward": _named(_kernel("conv2d_forward", "x", "w", "b"), "y"),
    "conv.backward": _named(_kernel("conv2d_backward", "x", "w", "dy"), "dx", "dw", "db"),
    "c3.forward": _named(_kernel("table_conv2d_forward", "x", "w", "b", "out_idx", "in_idx"),
                         "y"),
    "c3.backward": _named(_kernel("table_conv2d_backward", "x", "w", "dy", "out_idx",
                                  "in_idx"), "dx", "dw", "db"),
    "subsampling.forward": _named(lambda ml, a: ml.numpy_ref.subsample_forward(
        a["x"], a["coef"], a["bias"], float(a["scale"])), "y"),
    "subsampling.backward": _named(lambda ml, a: ml.numpy_ref.subsample_backward(
        a["x"], a["coef"], a["dy"], float(a["scale"])), "dx", "dcoef", "dbias"),
    "scaled_tanh": _layer(lambda ml, a: ml.activations.ScaledTanh(np.float64)),
    "rbf.forward": _named(_kernel("rbf_forward", "x", "centers"), "y"),
    "rbf.backward": _named(_kernel("rbf_backward", "x", "centers", "dy"), "dx"),
    "mse_loss": _loss("mse_loss"),
    "map_loss": _loss("map_loss"),
    "softmax_cross_entropy": _loss("softmax_cross_entropy"),
    "dense.forward": _named(_kernel("dense_forward", "x", "w", "b"), "y"),
    "dense.backward": _named(_kernel("dense_backward", "x", "w", "dy"), "dx", "dw", "db"),
    "sdlm.curvature": _curvature,
    "sdlm.step": _step,
    "preprocess": lambda ml, a: {"x": ml.mnist.scale_bytes(a["images"], np.float64)},
    "maxpool": _layer(lambda ml, a: ml.pooling.MaxPool2D(
        _int(a, "k"), _int(a, "stride"), dtype=np.float64, backend="numpy")),
    "avgpool": _layer(lambda ml, a: ml.pooling.AvgPool2D(
        _int(a, "k"), _int(a, "stride"), dtype=np.float64, backend="numpy")),
}
