"""LeNet-5 as in the 1998 paper, and the "modern" variant most tutorials use."""
import numpy as np

from .activations import ReLU, ScaledTanh
from .conv import Conv2D
from .dense import Dense, Flatten
from .graph import Sequential
from .init import HE, FanInUniform
from .pooling import MaxPool2D
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import C3_TABLE, TableConv2D

INPUT_SHAPE = (1, 32, 32)
VARIANTS = ("paper", "modern")


def lenet5(variant="paper", *, seed=0, subsampling="sum", count_bias=False,
           bias_init="uniform", centers=None, c3_table=C3_TABLE, dtype=None, backend=None):
    """Build LeNet-5.

    Parameters
    ----------
    variant : {"paper", "modern"}
        "paper": C1 - S2 - C3 (Table I) - S4 - C5 - F6 - RBF output, trainable
        subsampling, scaled tanh, weights U(+-2.4/F_i). Train it with the "mse"
        or "map" loss. "modern": ReLU, 2x2 max-pooling, a dense C3, a 10-way
        linear output for softmax cross-entropy ("ce"), He-uniform init.
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
    layers = [
        ("c1", Conv2D(1, 6, 5, init=init, backend=backend, **kw)), ("c1_act", ScaledTanh(dtype)),
        ("s2", Subsampling(6, mode=subsampling, init=init, backend=backend, **kw)),
        ("s2_act", ScaledTanh(dtype)),
        ("c3", TableConv2D(c3_table, 5, init=init, backend=backend, **kw)),
        ("c3_act", ScaledTanh(dtype)),
        ("s4", Subsampling(16, mode=subsampling, init=init, backend=backend, **kw)),
        ("s4_act", ScaledTanh(dtype)),
        ("c5", Conv2D(16, 120, 5, init=init, backend=backend, **kw)), ("c5_act", ScaledTanh(dtype)),
        ("flatten", Flatten(dtype)),
        ("f6", Dense(120, 84, init=init, backend=backend, **kw)),
        ("f6_act", ScaledTanh(dtype)),
        ("output", EuclideanRBF(centers, dtype=dtype, backend=backend)),
    ]
    return Sequential(layers, INPUT_SHAPE)


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
    "test_images" MNIST test digits, "version" (the package version that trained them)."""
    import json
    from importlib import resources
    return json.loads(resources.files("minilenet").joinpath(PRETRAINED + ".json").read_text())
