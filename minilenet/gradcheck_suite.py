"""The gradient-check suite: every layer type, every loss, the whole networks.

``minilenet gradcheck`` prints ``format_results(run_suite())``; the tests run
the same cases one by one. Shapes are tiny; everything is float64.
"""
import numpy as np

from . import config, losses
from .activations import ReLU, ScaledTanh, Sigmoid, Tanh
from .conv import Conv2D
from .dense import Dense, Flatten
from .gradcheck import check_layer, check_loss, check_model
from .models import lenet5
from .pooling import AvgPool2D, MaxPool2D
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import C3_TABLE, TableConv2D

F64 = np.float64


def _normal(shape):
    return lambda rng: rng.standard_normal(shape)


def _away_from_zero(shape):
    """Inputs with |x| >= 0.1, so no finite difference straddles ReLU's kink."""
    return lambda rng: rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)


def _distinct(shape):
    """A shuffled grid of values 0.01 apart: every max-pool window has one clear winner."""
    return lambda rng: rng.permutation(np.arange(np.prod(shape)) * 0.01).reshape(shape)


def layer_cases(backend):
    """(label, make_layer, make_input) for every layer type on one backend."""
    kw = dict(dtype=F64, backend=backend)
    small_table = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]], dtype=bool)
    return [
        (f"Conv2D [{backend}]", lambda: Conv2D(2, 3, 3, **kw), _normal((2, 2, 6, 7))),
        (f"TableConv2D C3 [{backend}]", lambda: TableConv2D(C3_TABLE, 5, **kw),
         _normal((2, 6, 7, 6))),
        (f"TableConv2D small [{backend}]", lambda: TableConv2D(small_table, 3, **kw),
         _normal((2, 3, 5, 6))),
        (f"Subsampling sum [{backend}]", lambda: Subsampling(3, mode="sum", **kw),
         _normal((2, 3, 6, 4))),
        (f"Subsampling average [{backend}]", lambda: Subsampling(3, mode="average", **kw),
         _normal((2, 3, 6, 4))),
        (f"AvgPool2D 3x3/1 [{backend}]", lambda: AvgPool2D(3, 1, **kw), _normal((2, 2, 6, 5))),
        (f"MaxPool2D 3x3/2 [{backend}]", lambda: MaxPool2D(3, 2, **kw),
         _distinct((2, 2, 7, 7))),
        (f"Dense [{backend}]", lambda: Dense(5, 4, **kw), _normal((3, 5))),
        (f"EuclideanRBF [{backend}]", lambda: EuclideanRBF(**kw), _normal((3, 84))),
    ]


def backend_free_cases():
    return [
        ("ScaledTanh", lambda: ScaledTanh(F64), _normal((3, 5))),
        ("Tanh", lambda: Tanh(F64), _normal((3, 5))),
        ("Sigmoid", lambda: Sigmoid(F64), _normal((3, 5))),
        ("ReLU", lambda: ReLU(F64), _away_from_zero((3, 5))),
        ("Flatten", lambda: Flatten(F64), _normal((2, 3, 2, 2))),
    ]


def all_layer_cases():
    backends = ["numpy"] + (["numba"] if config.numba_available() else [])
    return [case for b in backends for case in layer_cases(b)] + backend_free_cases()


def _penalties(low, high):
    """RBF-sized penalties; the correct class is the one with the smallest."""
    def make(rng):
        y = rng.uniform(low, high, (4, 10))
        y[np.arange(4), rng.integers(0, 10, 4)] = rng.uniform(0, 3, 4)
        return y, y.argmin(axis=1)
    return make


def loss_cases():
    """(label, loss_fn, make_scores_and_labels)."""
    return [
        ("mse_loss", losses.mse_loss, _penalties(0, 200)),
        ("map_loss j=0.1", losses.get("map", j=0.1), _penalties(0, 5)),
        ("map_loss j=1, y in the thousands", losses.get("map", j=1.0), _penalties(500, 3000)),
        ("softmax_cross_entropy", losses.softmax_cross_entropy,
         lambda rng: (rng.standard_normal((4, 10)) * 3, rng.integers(0, 10, 4))),
    ]


def model_cases():
    """(label, make_model, loss_fn, step): the paper network through both of its
    criteria, and the modern network through cross-entropy.

    The paper's loss is ~84 while its early gradients are ~1e-4, so round-off
    (eps * 84 / h) swamps a 1e-6 step: it is checked with h = 1e-2 and the
    fourth-order stencil. The modern network has ReLU and max-pool kinks, so it
    keeps a small central step.
    """
    paper_step = dict(h=1e-2, order=4)
    return [
        ("lenet5 paper + mse", lambda: lenet5(dtype=F64, seed=1), losses.mse_loss, paper_step),
        ("lenet5 paper + map", lambda: lenet5(dtype=F64, seed=1), losses.get("map", j=0.1),
         paper_step),
        ("lenet5 paper avg + map", lambda: lenet5(dtype=F64, seed=1, subsampling="average"),
         losses.get("map", j=0.1), paper_step),
        ("lenet5 modern + ce", lambda: lenet5("modern", dtype=F64, seed=1),
         losses.softmax_cross_entropy, dict(h=1e-6, order=2)),
    ]


def run_layer_case(label, make_layer, make_input, seed=0):
    rng = np.random.default_rng(seed)
    layer = make_layer()
    layer.name = label
    return check_layer(layer, make_input(rng), rng)


def run_loss_case(label, loss_fn, make_scores, seed=0):
    scores, labels = make_scores(np.random.default_rng(seed))
    return check_loss(label, loss_fn, scores, labels)


def run_model_case(label, make_model, loss_fn, step, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    model = make_model()
    x = rng.uniform(-0.1, 1.175, size=(batch,) + model.input_shape)
    labels = rng.integers(0, 10, size=batch)
    return check_model(model, loss_fn, x, labels, rng, what=label, **step)


def run_suite(progress=None):
    """Run every case; ``progress`` (optional) is called with each label."""
    results = []
    for label, make_layer, make_input in all_layer_cases():
        progress and progress(label)
        results += run_layer_case(label, make_layer, make_input)
    for label, loss_fn, make_scores in loss_cases():
        progress and progress(label)
        results += run_loss_case(label, loss_fn, make_scores)
    for label, make_model, loss_fn, step in model_cases():
        progress and progress(label)
        results += run_model_case(label, make_model, loss_fn, step)
    return results
