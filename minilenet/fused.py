"""The paper network's whole training step in one compiled call (Numba).

The paper trains on one sample at a time: 1.2 million updates for 20 passes.
Through the layer graph each update costs some thirty Python calls, which take
longer than the arithmetic. ``train_step`` calls ``kernels.compiled.paper_step``,
which runs the layers' own per-sample kernels (convolution, C3 table
convolution, subsampling, dense, RBF) and the twins of ``numpy_ref``'s squashing
function, loss and SDLM update, from one compiled function. It runs its samples
one after another: batches of ``kernels.PARALLEL_MIN`` or more train faster
through the layer graph, whose kernels share them out over the cores
(``supports``). The network it computes is read off ``lenet5("paper")``
(``STRUCTURE``), and ``mismatch`` refuses any other. Its reference is the layer
graph itself: the tests check that both give the same loss, gradients and
weights (1e-12 in float64), and check the fused gradients by finite differences.
Below ``PARALLEL_MIN`` samples the layer graph runs the same per-sample kernels,
and the two end at the same weights bit for bit (tests/test_same_bits.py).
"""
import numpy as np

from . import config, paper
from .activations import Activation, ScaledTanh
from .conv import Conv2D, Convolution
from .dense import Dense, Flatten
from .kernels import numpy_ref
from .layer import Layer
from .models import lenet5
from .optimizers import SDLM
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D

LOSS_KINDS = {"mse": 0, "map": 1}
PARAMS = ("c1.weight", "c1.bias", "s2.weight", "s2.bias", "c3.weight", "c3.bias",
          "s4.weight", "s4.bias", "c5.weight", "c5.bias", "f6.weight", "f6.bias")

#: The attributes of each layer type that fix the shapes the fused step computes with.
#: The C3 table, the subsampling mode and the RBF prototypes are read from the model,
#: so any value of those is computed.
HYPERPARAMETERS = {
    Conv2D: ("in_channels", "out_channels", "kernel_size"),
    TableConv2D: ("in_channels", "out_channels", "kernel_size"),
    Subsampling: ("channels",),
    Dense: ("in_features", "out_features"),
    EuclideanRBF: ("in_features",),
    ScaledTanh: (),
    Flatten: (),
}


def _structure(model):
    """(name, exact type, {hyperparameter: value}) for each layer of ``model``."""
    return tuple((name, type(layer), {attr: getattr(layer, attr)
                                      for attr in HYPERPARAMETERS[type(layer)]})
                 for name, layer in model.layers.items())


#: The network the fused step computes, layer by layer, read off ``lenet5("paper")``
#: (the one definition of the paper network).
STRUCTURE = _structure(lenet5("paper"))

#: What the layer graph reads from ``numpy_ref`` where the fused step runs compiled twins
#: (the squashing constants and function, the paper's losses, SDLM's rates and update),
#: as the package defines it, so that a replacement (a student's experiment) is noticed.
_REFERENCE = {name: getattr(numpy_ref, name) for name in (
    "A", "S", "scaled_tanh", "scaled_tanh_derivative", "logsumexp_rows", "mse_loss", "map_loss",
    "sdlm_rates", "sdlm_update")}
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
    the package's own methods and ``numpy_ref`` functions and constants, one
    float dtype for all layers, and every layer on the Numba backend.
    """
    from .assignment import WITHHELD
    if WITHHELD:
        return (f"this is a student copy: the fused step would stand in for the withheld "
                f"units ({', '.join(sorted(WITHHELD))})")
    layers = list(model.layers.items())
    if [name for name, _ in layers] != [name for name, _, _ in STRUCTURE]:
        return (f"the layers are {[name for name, _ in layers]}, not the paper "
                f"network's {[name for name, _, _ in STRUCTURE]}")
    if tuple(model.input_shape) != paper.INPUT_SHAPE:
        return f"the input shape is {model.input_shape}, not {paper.INPUT_SHAPE}"
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
    replaced = [name for name, value in _REFERENCE.items() if getattr(numpy_ref, name) != value]
    if replaced:
        return (f"numpy_ref.{replaced[0]} is not the package's (the fused step runs its "
                f"compiled twin)")
    return ""


def supports(model, loss_name, optimizer, batch_size=1):
    """True when the fused step computes exactly what the layer graph would
    (the model is the paper network (``mismatch``), the loss is MSE or MAP and
    the optimizer is SDLM) and is the faster of the two: batches below
    ``kernels.PARALLEL_MIN`` samples."""
    from .kernels import PARALLEL_MIN
    return (batch_size < PARALLEL_MIN and loss_name in LOSS_KINDS and type(optimizer) is SDLM
            and not _replaced(optimizer) and not mismatch(model))


def _require(model):
    reason = mismatch(model)
    if reason:
        raise ValueError(f"fused step: the model is not the network it computes ({reason}); "
                         f"use the layer graph")


def _arrays(model, store):
    """The 12 arrays of ``store`` ("params" or "grads") in PARAMS order."""
    return tuple(getattr(model[layer], store)[key]
                 for layer, key in (name.split(".") for name in PARAMS))


def _flat(arrays):
    """1-d views of ``arrays`` (writing to one writes to the array)."""
    return tuple(a.reshape(-1) for a in arrays)


def _static(model):
    """The connection lists of C1, C3 and C5, the RBF centres, S2's and S4's scales."""
    from .kernels.numba_jit import _all_pairs
    c1, c3, c5 = model["c1"], model["c3"], model["c5"]
    pairs = (*_all_pairs(c1.out_channels, c1.in_channels), c3.out_idx, c3.in_idx,
             *_all_pairs(c5.out_channels, c5.in_channels))
    return (pairs, model["output"].buffers["centers"], model["s2"].scale, model["s4"].scale)


def gradients(model, x, labels, loss_name, j=0.1):
    """Fused forward and backward only: fills every layer's grads, returns (loss, penalties)."""
    from .kernels import compiled
    _require(model)
    _check(x, labels, model.dtype)
    params, grads = _arrays(model, "params"), _arrays(model, "grads")
    flat_grads = _flat(grads)               # also stands for the rates, unread without update
    return compiled.paper_step(x, labels, params, grads, _flat(params), flat_grads, flat_grads,
                                *_static(model), LOSS_KINDS[loss_name], j, False)


class TrainStep:
    """One fused step (forward, loss, backward, ``p -= rate * g``) bound to a model.

    The model's parameter and gradient arrays and the per-parameter ``rates``
    (SDLM's eta / (mu + h), by parameter name) are gathered once, here; the
    step updates the parameters in place. Rebuild it when the rates change.
    ``step(x, labels)`` returns (loss, penalties).
    """

    def __init__(self, model, rates, loss_name, j=0.1):
        from .kernels import compiled
        _require(model)
        self._kernel = compiled.paper_step
        params, grads = _arrays(model, "params"), _arrays(model, "grads")
        self._args = (params, grads, _flat(params), _flat(grads),
                      _flat(np.ascontiguousarray(rates[name]) for name in PARAMS),
                      *_static(model), LOSS_KINDS[loss_name], j, True)

    def signature(self, x, labels):
        """The Numba argument types of a call on (x, labels)."""
        import numba
        return tuple(numba.typeof(a) for a in (x, labels, *self._args))

    def is_cached(self, x, labels):
        """True when Numba's on-disk cache holds the step for arguments like these.
        (Numba has no public call for this: it reads the cache's index the way Numba
        does, and answers False if Numba's internals have changed.)"""
        from numba.core import caching
        cache = getattr(self._kernel, "_cache", None)    # absent with NUMBA_DISABLE_JIT=1
        if not isinstance(cache, caching.Cache):
            return False
        try:
            key = cache._index_key(self.signature(x, labels), self._kernel.targetctx.codegen())
            return key in cache._cache_file._load_index()
        except (AttributeError, TypeError, OSError):
            return False

    def __call__(self, x, labels):
        _check(x, labels, self._args[0][0].dtype)
        return self._kernel(x, labels, *self._args)

    def compile(self, x, labels):
        """Compile (or load from the on-disk cache) the step for arguments like
        these, without running it; returns the seconds it took."""
        import time
        start = time.perf_counter()
        self._kernel.compile(self.signature(x, labels))
        return time.perf_counter() - start


def _example(model):
    """A step on ``model`` with unit rates and a sample like the trainer's: (step, x, labels)."""
    rates = {name: np.ones_like(p) for name, p in zip(PARAMS, _arrays(model, "params"))}
    return (TrainStep(model, rates, "map"), np.zeros((1, *paper.INPUT_SHAPE), model.dtype),
            np.zeros(1, np.int64))


_background = None      # the compiling process this process started, if any


def compile_in_background(model):
    """Start compiling the fused step for ``model``'s dtype in a second process, unless
    Numba's on-disk cache already holds it; returns that process (``wait()`` for it
    before the first step, which then loads the step from the cache) or None.

    A cold first ``minilenet train`` spends most of its time compiling: this way the
    step compiles on one core while the curvature pass compiles the layer kernels on
    the other. The argument types, not the values, decide what is compiled, so the
    second process compiles its own model of the same dtype.
    """
    global _background
    if _background is not None and _background.poll() is None:
        return _background
    step, x, labels = _example(model)
    if step.is_cached(x, labels) or _background is not None and _background.returncode:
        return None                  # compiled already, or the last attempt failed
    import subprocess
    import sys
    code = f"from minilenet import fused; fused._compile({model.dtype.name!r})"
    _background = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    return _background


def _compile(dtype):
    """Compile the fused step for ``dtype`` into Numba's cache (the second process)."""
    from .models import lenet5
    step, x, labels = _example(lenet5(dtype=np.dtype(dtype)))
    step.compile(x, labels)


def _check(x, labels, dtype):
    """The kernels do no bounds checks: refuse what would make them read out of bounds."""
    if not (isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[1:] == paper.INPUT_SHAPE
            and x.dtype == dtype and x.flags.c_contiguous):
        shape = ", ".join(str(n) for n in ("N", *paper.INPUT_SHAPE))
        raise ValueError(f"fused step: expected a C-contiguous {dtype} array of shape "
                         f"({shape}), got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{getattr(x, 'shape', '')}")
    if (not isinstance(labels, np.ndarray) or labels.shape != (len(x),)
            or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"fused step: expected {len(x)} integer labels in [0, 9], got "
                         f"{labels!r}")


def train_step(model, rates, x, labels, loss_name, j=0.1):
    """One fused step on ``model``; see ``TrainStep`` (which avoids re-binding per call)."""
    return TrainStep(model, rates, loss_name, j)(x, labels)
