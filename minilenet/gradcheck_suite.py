"""The gradient-check suite: every derivative minilenet computes, in six groups.

``minilenet gradcheck`` prints ``format_report(run_suite())``; the tests run
the same cases one by one (``cases()``). Shapes are tiny; everything is float64.
The layers are checked on every backend ``config.backends()`` names (NumPy only in
a student copy: its Numba kernels are not part of the assignment).
Each case knows the units whose code it runs (``UNITS_OF``), so that
``minilenet gradcheck --unit conv.backward`` runs the cases of one unit, and a
failed row tells a student which of their units it points at, and where that code is.
"""
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from . import config, fused, losses
from .activations import ReLU, ScaledTanh, Sigmoid, Tanh
from .conv import Conv2D
from .errors import UserError
from .dense import Dense, Flatten
from .gradcheck import (CheckResult, check_layer, check_loss, check_model, check_second,
                        format_results, numerical_gradient, rel_error, sample_indices)
from .models import COMPARISON, Repeat, lenet5
from .paper import A, C3_TABLE, S
from .pooling import AvgPool2D, MaxPool2D
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D
from .teaching.assign import numpy_locations
from .teaching.diagnosis import FIT, diagnose
from .teaching.units import UNITS, closure

F64 = np.float64
GROUPS = ("layer gradients", "Gauss-Newton passes", "losses", "whole networks",
          "fused step", "rules")
#: The groups whose failures the other groups' cases inherit (a network fails when one
#: of its layers does): ``format_report`` folds those knock-on failures.
FIRST_GROUPS = ("layer gradients", "losses")

#: The units whose code each layer type and loss runs, its own first: the one map
#: from units to the cases of the suite (``case_units``). The units these call
#: (im2col for a convolution) are added by ``units.closure``.
UNITS_OF = {
    "Conv2D": ("conv.backward", "conv.forward"),
    "TableConv2D": ("c3.backward", "c3.forward"),
    "Subsampling": ("subsampling.backward", "subsampling.forward"),
    "AvgPool2D": ("avgpool",),
    "MaxPool2D": ("maxpool",),
    "Dense": ("dense.backward", "dense.forward"),
    "EuclideanRBF": ("rbf.backward", "rbf.forward"),
    "ScaledTanh": ("scaled_tanh",),
    "mse_loss": ("mse_loss",),
    "map_loss": ("map_loss",),
    "softmax_cross_entropy": ("softmax_cross_entropy",),
}


def case_units(*names):
    """The units run by these layer types and losses (by name): their own, then the
    units those call."""
    own = [u for name in names for u in UNITS_OF.get(name, ())]
    return tuple(dict.fromkeys(own + closure(own)))


def _layer_units(make_layer):
    return case_units(type(make_layer()).__name__)


def _loss_name(loss_fn):
    """mse_loss, map_loss (also with j bound by ``partial``), softmax_cross_entropy."""
    return getattr(loss_fn, "func", loss_fn).__name__


def _network_units(model, loss_fn):
    return case_units(*(type(layer).__name__ for layer in model.layers.values()),
                      _loss_name(loss_fn))


@dataclass
class Case:
    """One case of the suite: ``run()`` returns its CheckResults; ``units`` are the
    units whose code it runs."""
    group: str
    label: str
    run: Callable[[], list]
    units: tuple = ()


# ------------------------------------------------------------------ inputs
def _normal(shape):
    return lambda rng: rng.standard_normal(shape)


def _away_from_zero(shape):
    """Inputs with |x| >= 0.1, so no finite difference straddles ReLU's kink."""
    return lambda rng: rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)


def _distinct(shape):
    """A shuffled grid of values 0.01 apart: every max-pool window has one clear winner."""
    return lambda rng: rng.permutation(np.arange(np.prod(shape)) * 0.01).reshape(shape)


def _one_per_window(shape):
    """One non-zero input per 2x2 window, so the four connections that share a
    subsampling coefficient do not interact (the Gauss-Newton pass is then exact)."""
    def make(rng):
        x = np.zeros(shape)
        N, C, H, W = shape
        rows = np.arange(0, H, 2)[:, None] + rng.integers(0, 2, (N, C, H // 2, W // 2))
        cols = np.arange(0, W, 2)[None, :] + rng.integers(0, 2, (N, C, H // 2, W // 2))
        n, c = np.indices((N, C, H // 2, W // 2))[:2]
        x[n, c, rows, cols] = rng.standard_normal((N, C, H // 2, W // 2))
        return x
    return make


# ------------------------------------------------------------ layer cases
def layer_cases(backend):
    """(label, make_layer, make_input) for every layer with kernels, on one backend."""
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
        ("Repeat 2 (LeNet-4's S2 pairs)", lambda: Repeat(2, F64), _normal((2, 3, 2, 2))),
    ]


def all_layer_cases():
    return [case for b in config.backends() for case in layer_cases(b)] + backend_free_cases()


def second_cases(backend):
    """(label, make_layer, make_input) for backward_second, with shapes where the
    paper's diagonal approximations are exact (one connection per shared
    parameter and output unit: 1x1 convolution outputs, one input per window)."""
    kw = dict(dtype=F64, backend=backend)
    return [
        (f"Conv2D [{backend}]", lambda: Conv2D(2, 3, 3, **kw), _normal((2, 2, 3, 3))),
        (f"TableConv2D C3 [{backend}]", lambda: TableConv2D(C3_TABLE, 5, **kw),
         _normal((2, 6, 5, 5))),
        (f"Subsampling sum [{backend}]", lambda: Subsampling(3, mode="sum", **kw),
         _one_per_window((2, 3, 4, 4))),
        (f"Subsampling average [{backend}]", lambda: Subsampling(3, mode="average", **kw),
         _one_per_window((2, 3, 4, 4))),
        (f"AvgPool2D 2x2 [{backend}]", lambda: AvgPool2D(2, **kw), _normal((2, 2, 4, 4))),
        (f"MaxPool2D 2x2 [{backend}]", lambda: MaxPool2D(2, **kw), _distinct((2, 2, 4, 4))),
        (f"Dense [{backend}]", lambda: Dense(5, 4, **kw), _normal((3, 5))),
    ]


def all_second_cases():
    return [case for b in config.backends() for case in second_cases(b)] + backend_free_cases()


def run_layer_case(label, make_layer, make_input, seed=0, check=check_layer):
    rng = np.random.default_rng(seed)
    layer = make_layer()
    layer.name = label
    return check(layer, make_input(rng), rng)


# ----------------------------------------------------------- loss cases
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
        ("map_loss j=0.1", partial(losses.map_loss, j=0.1), _penalties(0, 5)),
        ("map_loss j=1, y in the thousands", partial(losses.map_loss, j=1.0),
         _penalties(500, 3000)),
        ("softmax_cross_entropy", losses.softmax_cross_entropy,
         lambda rng: (rng.standard_normal((4, 10)) * 3, rng.integers(0, 10, 4))),
    ]


def run_loss_case(label, loss_fn, make_scores, seed=0):
    scores, labels = make_scores(np.random.default_rng(seed))
    return check_loss(label, loss_fn, scores, labels)


# ------------------------------------------------------ network cases
#: The paper network's loss is ~84 while its input gradient is ~1e-5 to 1e-4, so
#: round-off (eps * 84 / h) swamps a 1e-6 step: h = 1e-2 and the fourth-order
#: stencil. The modern network has ReLU and max-pool kinks: a small central step.
#: The comparison networks' input gradients are as small (weights U(+-2.4/F_i)
#: on up to 784 inputs): the same step.
PAPER_STEP = dict(h=1e-2, order=4)
TRAINED_LABELS = np.array([3, 5])


def trained_like(model, label=TRAINED_LABELS[0]):
    """Set F6's biases so that its output sits near 0.9 x the code of ``label``
    for every input: that penalty is then about 1, as in a trained network, and
    the MAP criterion's competitive term (which vanishes at initialisation,
    where every penalty is about 84) carries real weight. Returns the model."""
    code = model["output"].buffers["centers"][label]
    model["f6"].params["bias"][...] = np.arctanh(0.9 * code / A) / S
    return model


def _paper(backend, **kw):
    return lambda: lenet5(dtype=F64, seed=1, backend=backend, **kw)


def model_cases():
    """(label, make_model, loss_fn, step, labels or None): the paper network through
    both criteria (also at trained-like penalties), and the modern network and the
    paper's comparison networks (``models.COMPARISON``) through cross-entropy, on
    every backend."""
    cases = []
    for b in config.backends():
        map_loss = partial(losses.map_loss, j=0.1)
        cases += [
            (f"lenet5 paper + mse [{b}]", _paper(b), losses.mse_loss, PAPER_STEP, None),
            (f"lenet5 paper + map [{b}]", _paper(b), map_loss, PAPER_STEP, None),
            (f"lenet5 paper avg + map [{b}]", _paper(b, subsampling="average"), map_loss,
             PAPER_STEP, None),
            (f"lenet5 paper + map, trained-like [{b}]",
             lambda b=b: trained_like(_paper(b)()), map_loss, PAPER_STEP, TRAINED_LABELS),
            (f"lenet5 modern + ce [{b}]", lambda b=b: lenet5("modern", dtype=F64, seed=1,
                                                            backend=b),
             losses.softmax_cross_entropy, dict(h=1e-6, order=2), None),
        ]
        cases += [(f"{v} + ce [{b}]", lambda v=v, b=b: lenet5(v, dtype=F64, seed=1, backend=b),
                   losses.softmax_cross_entropy, PAPER_STEP, None)
                  for v in COMPARISON]
    return cases


def _inputs(rng, model, labels=None, batch=2):
    x = rng.uniform(-0.1, 1.175, size=(batch,) + model.input_shape)
    return x, (rng.integers(0, 10, size=batch) if labels is None else labels)


def run_model_case(label, make_model, loss_fn, step, labels=None, seed=0):
    rng = np.random.default_rng(seed)
    model = make_model()
    x, y = _inputs(rng, model, labels)
    return check_model(model, loss_fn, x, y, rng, what=label, **step)


# ------------------------------------------------------------ fused step
def fused_cases():
    """(label, make_model, loss name, labels or None): the fused step of the paper
    network at initialisation and at trained-like penalties."""
    if config.numba_left_out():                 # a student copy: switched off
        return []
    init = lambda: lenet5(dtype=F64, seed=1)                     # noqa: E731
    trained = lambda: trained_like(lenet5(dtype=F64, seed=1))     # noqa: E731
    return [("fused step + mse", init, "mse", None), ("fused step + map", init, "map", None),
            ("fused step + map, trained-like", trained, "map", TRAINED_LABELS)]


def run_fused_case(label, make_model, loss_name, labels=None, seed=0, max_checks=6):
    """The fused gradients against the layer graph's (same weights, same input)
    and against finite differences of the fused loss."""
    rng = np.random.default_rng(seed)
    model, reference = make_model(), make_model()
    reason = fused.mismatch(model)
    if reason:
        return [CheckResult(label, "structure", float("inf"), note=reason)]
    x, y = _inputs(rng, model, labels)
    loss_fn = losses.get(loss_name)
    ref_loss, dscores = loss_fn(reference.forward(x), y)
    reference.backward(dscores)
    loss, _ = fused.gradients(model, x, y, loss_name)
    results = [CheckResult(f"{label} vs layer graph", "loss",
                           rel_error(np.array([loss]), np.array([ref_loss])), 1e-10)]
    params = [(name, model[name.split(".")[0]], name.split(".")[1]) for name in fused.PARAMS]
    grads = {name: layer.grads[key].copy() for name, layer, key in params}
    for name, layer, key in params:
        ref = reference[name.split(".")[0]].grads[key]
        results.append(CheckResult(f"{label} vs layer graph", name,
                                   rel_error(grads[name], ref), 1e-10))
    objective = lambda: fused.gradients(model, x, y, loss_name)[0]    # noqa: E731
    for name, layer, key in params:
        param = layer.params[key]
        idx = sample_indices(param.shape, max_checks, rng)
        numeric = numerical_gradient(objective, param, idx, **PAPER_STEP)
        results.append(CheckResult(f"{label} by differences", name,
                                   rel_error(grads[name].reshape(-1)[idx], numeric)))
    return results


# ----------------------------------------------------------------- rules
def run_max_pool_tie_rule(backend):
    """Max-pooling sends a window's gradient to its *first* maximum (row-major)
    only. Ties are common on real digits (a constant background), and a pool
    that marked every tied maximum would multiply those gradients."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 1.0                  # window 1: a tie, not first
    x[0, 0, 2:4, 0:2] = 0.5                              # window 3: a four-way tie
    x[0, 0, 3, 3] = 2.0                                  # window 4: one winner
    expected = np.zeros_like(x)                          # window 2: all zeros, a tie
    expected[0, 0, [0, 0, 2, 3], [1, 2, 0, 3]] = 1.0
    layer = MaxPool2D(2, dtype=F64, backend=backend)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    return [CheckResult(f"MaxPool2D tie rule [{backend}]", "dx", rel_error(dx, expected), 0.0)]


# ------------------------------------------------------------- the suite
def cases():
    """Every case of the suite, in group order."""
    out = [Case("layer gradients", label, lambda c=(label, make, inp): run_layer_case(*c),
                _layer_units(make))
           for label, make, inp in all_layer_cases()]
    out += [Case("Gauss-Newton passes", label,
                 lambda c=(label, make, inp): run_layer_case(*c, check=check_second),
                 ("sdlm.curvature",) + _layer_units(make))
            for label, make, inp in all_second_cases()]
    out += [Case("losses", c[0], lambda c=c: run_loss_case(*c), case_units(_loss_name(c[1])))
            for c in loss_cases()]
    out += [Case("whole networks", c[0], lambda c=c: run_model_case(*c),
                 _network_units(c[1](), c[2])) for c in model_cases()]
    out += [Case("fused step", c[0], lambda c=c: run_fused_case(*c),
                 _network_units(c[1](), losses.get(c[2]))) for c in fused_cases()]
    out += [Case("rules", f"MaxPool2D tie rule [{b}]", lambda b=b: run_max_pool_tie_rule(b),
                 case_units("MaxPool2D")) for b in config.backends()]
    return out


def run_case(case):
    """Run one case; its results carry the case's group and units. A unit that is
    not written yet (NotImplementedError, in a student copy) is reported as such."""
    try:
        results = case.run()
    except NotImplementedError as e:
        results = [CheckResult(case.label, "-", float("nan"), missing=str(e) or "not implemented")]
    for r in results:
        r.group, r.units = case.group, case.units
    return results


def check_units(names):
    """``names`` if every one is a unit some case runs; else UserError."""
    exercised = {u for case in cases() for u in case.units}
    for name in names:
        if name not in UNITS:
            raise UserError(f"--unit: unknown unit {name!r} (minilenet assign --list lists them)")
        if name not in exercised:
            raise UserError(f"--unit: no gradient check runs the code of {name!r} "
                            f"(it computes no gradient)")
    return names


def run_suite(progress=None, groups=GROUPS, units=None):
    """Run every case of ``groups`` (that runs one of ``units``, when given);
    ``progress`` (optional) is called with each label."""
    results = []
    for case in cases():
        if case.group in groups and (units is None or set(units) & set(case.units)):
            progress and progress(f"{case.group}: {case.label}")
            results += run_case(case)
    return results


# ------------------------------------------------------------ the report
def _student_units(result):
    """The units a failed row points at: the student's among its units (a student
    copy), else its own first unit."""
    if config.withheld():
        return [u for u in result.units if u in config.withheld()]
    return list(result.units[:1])


def _reading(result):
    """The diagnosis of a failed row whose analytic gradient is its finite differences
    times one constant (a missing factor, a flipped sign, zeros), else ""."""
    have, want = result.analytic, result.numerical
    if result.passed or have is None or not np.any(want):
        return ""
    factor = np.sum(have * want) / np.sum(want * want)
    if rel_error(have, factor * want) > FIT:
        return ""
    return diagnose(have, want, batch=result.batch).hint


def _explain(result, where):
    """The lines under a row that did not pass: the units it points at and where
    their code is, and a reading of its error."""
    yours = "your code in " if config.withheld() else ""
    lines = [f"{unit}: {yours}{', '.join(where[unit])}" for unit in _student_units(result)]
    return lines + [text for text in [_reading(result)] if text]


def _rows_fail(n):
    return "1 row fails" if n == 1 else f"{n} rows fail"


def format_report(results):
    """``format_results`` for a student: a row that did not pass names the unit it
    points at and where its code is, with a reading of its error; the rows of the
    later groups that fail because a unit failed in the first groups (a network
    whose convolution fails) are folded into one line per group and unit."""
    where = numpy_locations(Path(__file__).resolve().parents[1])
    causes = {}                              # unit -> why, in the order they fail
    for r in results:
        if r.group in FIRST_GROUPS and not r.passed:
            for unit in _student_units(r):
                causes.setdefault(unit, "is not written yet; write it first" if r.missing
                                  else "fails; fix it first")
    knock_on = {}
    for r in results:
        cause = next((u for u in causes if u in r.units), None)
        if r.group not in FIRST_GROUPS and not r.passed and cause:
            knock_on.setdefault(r.group, {}).setdefault(cause, []).append(r)
    folded = {group: {f"{group}: {_rows_fail(len(rows))} because {unit} {causes[unit]}": rows
                      for unit, rows in by_unit.items()}
              for group, by_unit in knock_on.items()}
    return format_results(results, lambda r: _explain(r, where), folded)
