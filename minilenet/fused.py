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

from . import config
from .optimizers import SDLM
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D

LOSS_KINDS = {"mse": 0, "map": 1}
PARAMS = ("c1.weight", "c1.bias", "s2.weight", "s2.bias", "c3.weight", "c3.bias",
          "s4.weight", "s4.bias", "c5.weight", "c5.bias", "f6.weight", "f6.bias")


def supports(model, loss_name, optimizer):
    """True when the fused step can stand in for the layer graph."""
    layers = list(model)
    return (config.backend_for(getattr(layers[0], "backend", None)) == "numba"
            and [n for n, _, _ in model.named_parameters()] == list(PARAMS)
            and isinstance(layers[-1], EuclideanRBF) and isinstance(model["c3"], TableConv2D)
            and isinstance(model["s2"], Subsampling) and loss_name in LOSS_KINDS
            and isinstance(optimizer, SDLM))


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
        self._kernel = numba_jit.paper_train_step
        params, grads = _arrays(model, "params"), _arrays(model, "grads")
        updates = tuple(zip(params, grads, (rates[name] for name in PARAMS), strict=True))
        self._args = (params, grads, updates, *_static(model), LOSS_KINDS[loss_name], j)

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
