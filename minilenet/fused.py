"""The paper network's whole training step in one compiled call (Numba).

The paper trains on one sample at a time: 1.2 million updates for 20 passes.
Through the layer graph each update costs some thirty Python calls, which take
longer than the arithmetic. ``train_step`` calls ``numba_jit.paper_train_step``,
which runs the same kernels (convolution, C3 table convolution, subsampling)
and the same formulas as the layers, the loss and the optimizer update, from
one compiled function. Its reference is the layer graph itself: the tests check
that both give the same loss, gradients and weights (1e-12 in float64), and
check the fused gradients by finite differences.
"""
import numpy as np

from . import activations, config
from .activations import Activation, ScaledTanh
from .conv import Conv2D, Convolution
from .dense import Dense, Flatten
from .layer import Layer
from .optimizers import SDLM
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D

LOSS_KINDS = {"mse": 0, "map": 1}
PARAMS = ("c1.weight", "c1.bias", "s2.weight", "s2.bias", "c3.weight", "c3.bias",
          "s4.weight", "s4.bias", "c5.weight", "c5.bias", "f6.weight", "f6.bias")

#: The network the fused step computes, layer by layer: (name, exact type,
#: hyperparameters that must match). The C3 table, the subsampling mode and the
#: RBF prototypes are read from the model, so any value of those is computed.
STRUCTURE = (
    ("c1", Conv2D, {"in_channels": 1, "out_channels": 6, "kernel_size": 5}),
    ("c1_act", ScaledTanh, {}),
    ("s2", Subsampling, {"channels": 6}),
    ("s2_act", ScaledTanh, {}),
    ("c3", TableConv2D, {"in_channels": 6, "out_channels": 16, "kernel_size": 5}),
    ("c3_act", ScaledTanh, {}),
    ("s4", Subsampling, {"channels": 16}),
    ("s4_act", ScaledTanh, {}),
    ("c5", Conv2D, {"in_channels": 16, "out_channels": 120, "kernel_size": 5}),
    ("c5_act", ScaledTanh, {}),
    ("flatten", Flatten, {}),
    ("f6", Dense, {"in_features": 120, "out_features": 84}),
    ("f6_act", ScaledTanh, {}),
    ("output", EuclideanRBF, {"in_features": 84}),
)

#: The squashing constants compiled into the fused step.
_CONSTANTS = (activations.A, activations.S)
#: The methods of every class above as the package defines them, so that a
#: method replaced at run time (a student's experiment) is noticed.
_METHODS = {cls: dict(vars(cls)) for cls in
            {Layer, Activation, Convolution, SDLM} | {cls for _, cls, _ in STRUCTURE}}
#: Methods that play no part in what the fused step computes.
_NOT_COMPUTED = {"backward_second", "input_curvature", "connections", "extra_repr",
                 "__repr__", "estimate_curvature"}


def _replaced(obj):
    """Names of the methods of ``obj`` (its class's or its own) that differ from
    the package's definitions."""
    own = [m for m, f in vars(obj).items() if callable(f) and hasattr(type(obj), m)]
    changed = own + [m for klass in type(obj).__mro__[:-1] for m, f in vars(klass).items()
                     if callable(f) and _METHODS[klass].get(m) is not f]
    return [m for m in changed if m not in _NOT_COMPUTED]


def mismatch(model):
    """Why the fused step would not compute ``model`` ('' when it would).

    The model must be exactly the paper network: the same layers in the same
    order, of exactly these types (not subclasses), with these hyperparameters,
    the package's own methods and squashing constants, one float dtype for all
    layers, and every layer on the Numba backend.
    """
    from .assignment import WITHHELD
    if WITHHELD:
        return (f"this is a student copy: the fused step would stand in for the withheld "
                f"units ({', '.join(sorted(WITHHELD))})")
    layers = list(model.layers.items())
    if [name for name, _ in layers] != [name for name, _, _ in STRUCTURE]:
        return (f"the layers are {[name for name, _ in layers]}, not the paper "
                f"network's {[name for name, _, _ in STRUCTURE]}")
    if tuple(model.input_shape) != (1, 32, 32):
        return f"the input shape is {model.input_shape}, not (1, 32, 32)"
    for (name, layer), (_, cls, hyper) in zip(layers, STRUCTURE):
        if type(layer) is not cls:
            return f"{name} is {type(layer).__name__}, not {cls.__name__}"
        for attr, value in hyper.items():
            if getattr(layer, attr) != value:
                return f"{name}.{attr} is {getattr(layer, attr)}, not {value}"
        changed = _replaced(layer)
        if changed:
            return f"{name}: method {changed[0]} was replaced"
        if layer.dtype != model.dtype or layer.dtype.kind != "f":
            return f"{name} has dtype {layer.dtype}, the model {model.dtype}"
        if hasattr(layer, "backend") and config.backend_for(layer.backend) != "numba":
            return f"{name} runs on the {config.backend_for(layer.backend)} backend"
    if (activations.A, activations.S) != _CONSTANTS:
        return (f"the squashing constants are {(activations.A, activations.S)}, "
                f"not {_CONSTANTS}")
    return ""


def supports(model, loss_name, optimizer):
    """True when the fused step computes exactly what the layer graph would:
    the model is the paper network (``mismatch``), the loss is MSE or MAP and
    the optimizer is SDLM."""
    return (loss_name in LOSS_KINDS and type(optimizer) is SDLM and not _replaced(optimizer)
            and not mismatch(model))


def _require(model):
    reason = mismatch(model)
    if reason:
        raise ValueError(f"fused step: the model is not the network it computes ({reason}); "
                         f"use the layer graph")


def _arrays(model, store):
    """The 12 arrays of ``store`` ("params" or "grads") in PARAMS order."""
    return tuple(getattr(model[layer], store)[key]
                 for layer, key in (name.split(".") for name in PARAMS))


def _static(model):
    c3 = model["c3"]
    return (c3.out_idx, c3.in_idx, model["output"].buffers["centers"],
            model["s2"].scale, model["s4"].scale)


def gradients(model, x, labels, loss_name, j=0.1):
    """Fused forward and backward only: fills every layer's grads, returns (loss, penalties)."""
    from .kernels import numba_jit
    _require(model)
    _check(x, labels, model.dtype)
    return numba_jit.paper_forward_backward(
        x, labels, _arrays(model, "params"), _arrays(model, "grads"), *_static(model),
        LOSS_KINDS[loss_name], j)


class TrainStep:
    """One fused step (forward, loss, backward, ``p -= rate * g``) bound to a model.

    The model's parameter and gradient arrays and the per-parameter ``rates``
    (SDLM's eta / (mu + h), by parameter name) are gathered once, here; the
    step updates the parameters in place. Rebuild it when the rates change.
    ``step(x, labels)`` returns (loss, penalties).
    """

    def __init__(self, model, rates, loss_name, j=0.1):
        from .kernels import numba_jit
        _require(model)
        self._kernel = numba_jit.paper_train_step
        params, grads = _arrays(model, "params"), _arrays(model, "grads")
        flat = lambda arrays: tuple(a.reshape(-1) for a in arrays)        # noqa: E731 (views)
        self._args = (params, grads, flat(params), flat(grads),
                      flat(np.ascontiguousarray(rates[name]) for name in PARAMS),
                      *_static(model), LOSS_KINDS[loss_name], j)

    def __call__(self, x, labels):
        _check(x, labels, self._args[0][0].dtype)
        return self._kernel(x, labels, *self._args)

    def compile(self, x, labels):
        """Compile (or load from the on-disk cache) the step for arguments like
        these, without running it; returns the seconds it took."""
        import time

        import numba
        start = time.perf_counter()
        self._kernel.compile(tuple(numba.typeof(a) for a in (x, labels, *self._args)))
        return time.perf_counter() - start


def _check(x, labels, dtype):
    """The kernels do no bounds checks: refuse what would make them read out of bounds."""
    if not (isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[1:] == (1, 32, 32)
            and x.dtype == dtype and x.flags.c_contiguous):
        raise ValueError(f"fused step: expected a C-contiguous {dtype} array of shape "
                         f"(N, 1, 32, 32), got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{getattr(x, 'shape', '')}")
    if (not isinstance(labels, np.ndarray) or labels.shape != (len(x),)
            or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"fused step: expected {len(x)} integer labels in [0, 9], got "
                         f"{labels!r}")


def train_step(model, rates, x, labels, loss_name, j=0.1):
    """One fused step on ``model``; see ``TrainStep`` (which avoids re-binding per call)."""
    return TrainStep(model, rates, loss_name, j)(x, labels)
