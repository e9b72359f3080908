"""LeNet-5 as in the 1998 paper, the "modern" variant most tutorials use, and
the paper's Fig. 9 comparison networks (a linear classifier, three fully
connected nets, LeNet-1 and LeNet-4) built from the same layers."""
import numpy as np

from .activations import ReLU, ScaledTanh
from .conv import Conv2D
from .dense import Dense, Flatten
from .graph import Sequential
from .init import HE, PAPER, FanInUniform
from .layer import Layer
from .paper import C3_TABLE, INPUT_SHAPE
from .pooling import MaxPool2D
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D

#: The paper's Fig. 9 comparison networks (``comparison_net``).
COMPARISON = ("linear", "fc300", "fc1000", "fc300-100", "lenet1", "lenet4")
VARIANTS = ("paper", "modern") + COMPARISON
#: How each variant's input is made from a 28x28 MNIST digit (``mnist.input_bytes``):
#: "pad" to 32x32, "raw" 28x28, or "shrink" (the 20x20 digit box down to 16x16, in 28x28).
INPUT_LAYOUTS = {"paper": "pad", "modern": "pad", "lenet4": "pad", "lenet1": "shrink",
                 "linear": "raw", "fc300": "raw", "fc1000": "raw", "fc300-100": "raw"}


def lenet5(variant="paper", *, seed=0, subsampling="sum", count_bias=False,
           bias_init="uniform", centers=None, c3_table=C3_TABLE, dtype=None, backend=None):
    """Build LeNet-5.

    Parameters
    ----------
    variant : one of VARIANTS
        "paper": C1 - S2 - C3 (Table I) - S4 - C5 - F6 - RBF output, trainable
        subsampling, scaled tanh, weights U(+-2.4/F_i). Train it with the "mse"
        or "map" loss. "modern": ReLU, 2x2 max-pooling, a dense C3, a 10-way
        linear output for softmax cross-entropy ("ce"), He-uniform init.
        The names of COMPARISON build ``comparison_net(variant, seed=seed,
        dtype=dtype, backend=backend)`` (the other options do not apply).
    seed : int
        Seeds the initial weights (same seed, same weights, bit for bit).
    subsampling : {"sum", "average"}
        S2/S4 add their 4 inputs (paper section II-B, default) or average them.
    count_bias : bool
        Whether the bias counts in the fan-in F_i (paper: unspecified; no).
    bias_init : {"uniform", "zero"}
        Biases from the same U(+-2.4/F_i) as the weights, or zero (unspecified).
    centers : (10, 84) array, optional
        RBF prototypes; default: the shipped 7x12 digit bitmaps.
    c3_table : (6, 16) bool array
        C3's connection table (paper variant); default: the paper's Table I.
        ``np.ones((6, 16), bool)`` connects every S2 map to every C3 map.
    dtype, backend
        Layer dtype (default float32) and kernel backend override.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {VARIANTS}")
    if variant in COMPARISON:
        return comparison_net(variant, seed=seed, dtype=dtype, backend=backend)
    rng = np.random.default_rng(seed)
    kw = dict(rng=rng, dtype=dtype)
    if variant == "modern":
        init = HE
        layers = [
            ("c1", Conv2D(1, 6, 5, init=init, backend=backend, **kw)), ("c1_act", ReLU(dtype)),
            ("s2", MaxPool2D(2, dtype=dtype, backend=backend)),
            ("c3", Conv2D(6, 16, 5, init=init, backend=backend, **kw)), ("c3_act", ReLU(dtype)),
            ("s4", MaxPool2D(2, dtype=dtype, backend=backend)),
            ("c5", Conv2D(16, 120, 5, init=init, backend=backend, **kw)), ("c5_act", ReLU(dtype)),
            ("flatten", Flatten(dtype)),
            ("f6", Dense(120, 84, init=init, backend=backend, **kw)), ("f6_act", ReLU(dtype)),
            ("output", Dense(84, 10, init=init, backend=backend, **kw)),
        ]
        return Sequential(layers, INPUT_SHAPE)
    init = FanInUniform(count_bias=count_bias, bias=bias_init)
    tanh = lambda: ScaledTanh(dtype, backend=backend)                        # noqa: E731
    layers = [
        ("c1", Conv2D(1, 6, 5, init=init, backend=backend, **kw)), ("c1_act", tanh()),
        ("s2", Subsampling(6, mode=subsampling, init=init, backend=backend, **kw)),
        ("s2_act", tanh()),
        ("c3", TableConv2D(c3_table, 5, init=init, backend=backend, **kw)),
        ("c3_act", tanh()),
        ("s4", Subsampling(16, mode=subsampling, init=init, backend=backend, **kw)),
        ("s4_act", tanh()),
        ("c5", Conv2D(16, 120, 5, init=init, backend=backend, **kw)), ("c5_act", tanh()),
        ("flatten", Flatten(dtype)),
        ("f6", Dense(120, 84, init=init, backend=backend, **kw)),
        ("f6_act", tanh()),
        ("output", EuclideanRBF(centers, dtype=dtype, backend=backend)),
    ]
    return Sequential(layers, INPUT_SHAPE)


class Repeat(Layer):
    """Each input map copied ``repeats`` times, side by side: output map j is
    input map j // repeats (LeNet-4's C1 maps feeding two S2 maps each).
    No parameters; the gradient of an input map is the sum over its copies.

    Shape
    -----
    x (N, C, H, W) -> y (N, C * repeats, H, W).
    """
    input_ndim = 4

    def __init__(self, repeats, dtype=None):
        super().__init__(dtype)
        self.repeats = repeats

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (C * self.repeats, H, W)

    def forward(self, x):
        x = self.check_input(x)
        y = np.repeat(x, self.repeats, axis=1)
        self.cache = {"x_shape": x.shape, "y_shape": y.shape}
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        N, C, H, W = self.cache["x_shape"]
        return dy.reshape(N, C, self.repeats, H, W).sum(axis=2)

    backward_second = backward        # every connection has weight 1: squared, still 1

    def extra_repr(self):
        return str(self.repeats)


def _tables():
    """(LeNet-1's C3 table (4, 12), LeNet-4's C3 table (8, 16)), bool, rows the
    S2 maps, columns the C3 maps (minilenet's choices: the paper gives neither)."""
    lenet1 = np.zeros((4, 12), bool)
    for s in range(4):
        lenet1[s, [2 * s, 2 * s + 1]] = True                   # maps 0-7: one S2 map each
        lenet1[[t for t in range(4) if t != s], 8 + s] = True  # maps 8-11: three S2 maps
    lenet4 = np.zeros((8, 16), bool)
    for j in range(8):
        lenet4[[j, (j + 1) % 8, (j + 2) % 8], j] = True        # maps 0-7: three neighbours
        lenet4[[j, (j + 3) % 8, (j + 6) % 8], 8 + j] = True    # maps 8-15: three spread out
    return lenet1, lenet4


LENET1_C3_TABLE, LENET4_C3_TABLE = _tables()


def comparison_net(variant, *, seed=0, dtype=None, backend=None):
    """One of the paper's Fig. 9 comparison networks, from minilenet's layers.

    Every hidden unit is the paper's scaled tanh, every weight and bias starts
    at U(+-2.4/F_i) (F_i the fan-in), and the output is 10 linear units (logits)
    for softmax cross-entropy ("ce"); the paper gives neither the output nor
    the criterion of these networks. Inputs (``INPUT_LAYOUTS``):

    - "linear": 28x28 -> 10 (7,850 parameters). "fc300", "fc1000":
      28x28 -> 300 or 1,000 -> 10. "fc300-100": 28x28 -> 300 -> 100 -> 10.
    - "lenet1": 28x28 (the digit shrunk to 16x16 in it) -> C1 4@24x24 (5x5)
      -> S2 4@12x12 -> C3 12@8x8 (5x5, ``LENET1_C3_TABLE``: 8 maps see one S2
      map, 4 maps see three; 20 kernels) -> S4 12@4x4 -> 10. 2,578 parameters,
      98,442 connections (paper: about 2,600 and 100,000).
    - "lenet4": 32x32 -> C1 4@28x28 -> S2 8@14x14 (each C1 map feeds two S2
      maps, each with its own coefficient and bias: ``Repeat(2)``) -> C3
      16@10x10 (5x5, ``LENET4_C3_TABLE``: each map sees three S2 maps; 48
      kernels) -> S4 16@5x5 -> 120 fully connected -> 10. 50,698 parameters,
      262,306 connections (paper: about 17,000 and 260,000; a 120-unit layer
      fully connected to 16 maps of 5x5 alone has 48,120 parameters).

    S2/S4 are the paper network's trainable subsampling (sum of 2x2, one
    coefficient and one bias a map), each followed by a scaled tanh.
    ``minilenet train --variant X`` trains them as the modern variant: batches
    of 64, SGD with momentum 0.9 and learning rate 0.01, the constant random
    order (the paper gives none of this for these networks); ``--deskew``
    shears every digit upright first (``mnist.deskew``). docs/results.md has
    the choices and the measured errors.

    Shape
    -----
    x (N, 1, 28, 28), or (N, 1, 32, 32) for "lenet4" -> logits (N, 10).
    """
    if variant not in COMPARISON:
        raise ValueError(f"unknown comparison network {variant!r}: expected one of {COMPARISON}")
    kw = dict(rng=np.random.default_rng(seed), dtype=dtype, init=PAPER)
    dense = lambda d_in, d_out: Dense(d_in, d_out, backend=backend, **kw)     # noqa: E731
    tanh = lambda: ScaledTanh(dtype, backend=backend)                        # noqa: E731
    if variant == "lenet1":
        layers = [("c1", Conv2D(1, 4, 5, backend=backend, **kw)), ("c1_act", tanh()),
                  ("s2", Subsampling(4, backend=backend, **kw)), ("s2_act", tanh()),
                  ("c3", TableConv2D(LENET1_C3_TABLE, 5, backend=backend, **kw)),
                  ("c3_act", tanh()),
                  ("s4", Subsampling(12, backend=backend, **kw)), ("s4_act", tanh()),
                  ("flatten", Flatten(dtype)), ("output", dense(12 * 4 * 4, 10))]
        return Sequential(layers, (1, 28, 28))
    if variant == "lenet4":
        layers = [("c1", Conv2D(1, 4, 5, backend=backend, **kw)), ("c1_act", tanh()),
                  ("s2_pairs", Repeat(2, dtype)),
                  ("s2", Subsampling(8, backend=backend, **kw)), ("s2_act", tanh()),
                  ("c3", TableConv2D(LENET4_C3_TABLE, 5, backend=backend, **kw)),
                  ("c3_act", tanh()),
                  ("s4", Subsampling(16, backend=backend, **kw)), ("s4_act", tanh()),
                  ("flatten", Flatten(dtype)), ("f5", dense(16 * 5 * 5, 120)),
                  ("f5_act", tanh()), ("output", dense(120, 10))]
        return Sequential(layers, INPUT_SHAPE)
    hidden = {"linear": [], "fc300": [300], "fc1000": [1000], "fc300-100": [300, 100]}[variant]
    sizes = [28 * 28] + hidden
    layers = [("flatten", Flatten(dtype))]
    for i, (d_in, d_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers += [(f"h{i}", dense(d_in, d_out)), (f"h{i}_act", tanh())]
    layers.append(("output", dense(sizes[-1], 10)))
    return Sequential(layers, (1, 28, 28))


def predict_labels(model, scores):
    """Class of each row of scores: argmin for RBF penalties, argmax for logits."""
    if isinstance(list(model)[-1], EuclideanRBF):
        return scores.argmin(axis=1)
    return scores.argmax(axis=1)


PRETRAINED = "resources/lenet5_paper_seed0"     # .npz weights and .json record, package data


def pretrained(dtype=None, backend=None):
    """The trained LeNet-5, ready to use: the one call for a trained network.

    The paper network (``lenet5("paper")``, float32 by default) with the
    weights shipped in the package: trained by the project's own recipe,
    ``minilenet train --seed 0`` (20 passes, SDLM, MAP criterion, no
    distortions). ``pretrained_info()`` gives the command that regenerates them
    and their test error on the 10,000 MNIST test digits.
    """
    from importlib import resources
    model = lenet5("paper", dtype=dtype, backend=backend)
    with resources.as_file(resources.files("minilenet").joinpath(PRETRAINED + ".npz")) as path:
        return model.load(path)


def pretrained_info():
    """The record beside the shipped weights, as a dict: "command" (regenerates
    them), "recipe", "test_error" (percent), "test_errors" (count) on
    "test_images" MNIST test digits, "version" (the package version that trained them),
    "weights_sha256" (``Sequential.weights_sha256``: the command gives these very
    weights on every machine) and "trained" (when, with which kernels)."""
    import json
    from importlib import resources
    return json.loads(resources.files("minilenet").joinpath(PRETRAINED + ".json").read_text())


#: Readings of the paper for S2/S4's coefficient and bias: "fan-in" (each unit
#: has 4 inputs, so F_i = 4, what ``Subsampling`` draws), "one" (the coefficient
#: multiplies one input, the sum of the four: F_i = 1), "unit" (coefficient 1,
#: bias 0: not the paper's rule, the layer starts as a plain sum or average).
SUBSAMPLING_INITS = ("fan-in", "one", "unit")


def redraw_subsampling(model, reading, init, rng):
    """Re-draw every Subsampling layer's coefficient and bias (C,) of ``model``
    by ``reading`` (one of SUBSAMPLING_INITS), with ``init`` a FanInUniform."""
    if reading not in SUBSAMPLING_INITS:
        raise ValueError(f"subsampling init must be one of {SUBSAMPLING_INITS}, got {reading!r}")
    fan_in = {"fan-in": 4, "one": 1}.get(reading)
    for layer in model:
        if isinstance(layer, Subsampling):
            shape, dtype = layer.params["weight"].shape, layer.dtype
            if fan_in is None:
                weight, bias = np.ones(shape), np.zeros(shape)
            else:
                weight = init.weight(shape, fan_in, rng)
                bias = init.bias_values(shape, fan_in, rng)
            layer.params["weight"][...] = weight.astype(dtype)
            layer.params["bias"][...] = bias.astype(dtype)
