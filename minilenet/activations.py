"""Element-wise activations: the paper's scaled tanh, and tanh, sigmoid, ReLU.

Each is its own layer. Backward multiplies by f'(a); the Gauss-Newton pass
multiplies by f'(a)^2 (the f'' term is dropped, paper eq. 27).
"""
import functools
import inspect

import numpy as np

from . import config, kernels
from .kernels.threads import get_threads, in_threads
from .layer import Layer


class Activation(Layer):
    """Base for element-wise layers: any input shape, output of the same shape.

    A subclass defines ``f(x, out=None)``, the values f(a), and ``df(y, out=None)``,
    the derivative f'(a) written in terms of the output y = f(a). Each returns a
    new array, or writes into ``out`` and returns it: the layer passes one, so a
    large batch needs no temporaries (a subclass may also leave ``out`` out; its
    result is then copied).

    Cache: ``y`` (the output; every derivative here is a function of it, or of
    the sign of the input for ReLU), ``y_shape``.
    """

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        x = self.check_input(x)
        y = _in_spans(lambda x, out: _into(self.f, x, out), x)
        self.cache = {"y": y, "y_shape": y.shape}
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return _in_spans(self._backward_into, dy, self.cache["y"])

    def _backward_into(self, dy, y, out):
        """out = dy * f'(a), computed in out."""
        _into(self.df, y, out)
        out *= dy

    def backward_second(self, d2y):
        d2y = self.check_upstream(d2y)
        # BEGIN SOLUTION sdlm.curvature
        d = self.df(self.cache["y"])
        d2x = d2y * d * d
        # END SOLUTION
        return d2x

    def f(self, x, out=None):
        raise NotImplementedError

    def df(self, y, out=None):
        """Derivative f'(a), written in terms of the output y = f(a)."""
        raise NotImplementedError


#: Arrays of at least this many elements are computed on several threads, a span
#: of samples each (NumPy releases the GIL; ``kernels.threads``); smaller ones ran
#: no faster that way (C1's activations, 301,056 elements at batch 64, did not).
THREAD_MIN_ELEMENTS = 1 << 20


def _in_spans(write, *arrays):
    """A new array like arrays[0], filled by write(*arrays, out) for an element-wise
    ``write``: in one call, or, for THREAD_MIN_ELEMENTS elements or more, a span of
    samples per thread."""
    out = np.empty_like(arrays[0])
    if arrays[0].size < THREAD_MIN_ELEMENTS or get_threads() == 1:
        write(*arrays, out)
    else:
        in_threads(lambda lo, hi: write(*(a[lo:hi] for a in arrays), out[lo:hi]),
                   len(out), lambda lo, hi: (lo, hi), len(out), min_batch=1)
    return out


def _into(method, a, out):
    """out[...] = method(a) for ``f`` or ``df``: written in place when the method
    takes ``out``, copied from its result when it does not."""
    if _takes_out(getattr(method, "__func__", method)):
        result = method(a, out=out)
    else:
        result = method(a)
    if result is not out:
        out[...] = result


@functools.lru_cache
def _takes_out(function):
    return "out" in inspect.signature(function).parameters


def _result(out, like):
    """Where f or df writes: ``out``, or a new float array shaped like ``like``
    (0-d for a scalar; NumPy would otherwise hand back a scalar, which cannot be
    written in place)."""
    if out is not None:
        return out
    return np.empty(np.shape(like), dtype=np.result_type(like, 1.0))


class ScaledTanh(Activation):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3) (``numpy_ref.scaled_tanh``).

    f(+-1) = +-1 (to 3e-6), f'(0) = A*S = 1.1439; f'(a) = (S/A) (A^2 - f(a)^2).
    ``backend`` chooses the kernels: ``numpy_ref``'s make new arrays, the Numba
    backend's compute the same values in the layer's own array (no temporaries).
    """

    def __init__(self, dtype=None, backend=None):
        super().__init__(dtype)
        self.backend = backend and config.check_backend(backend)

    def f(self, x, out=None):
        return _kernel(self.backend, "scaled_tanh", x, out)

    def df(self, y, out=None):
        return _kernel(self.backend, "scaled_tanh_derivative", y, out)


def _kernel(backend, name, a, out):
    """The backend's kernel ``name`` of ``a``: written into ``out`` when it takes one,
    else a new array (which the layer copies); 0-d, not a scalar, for 0-d ``a``."""
    function = getattr(kernels.get(backend), name)
    if out is not None and _takes_out(function):
        return function(a, out=out)
    return np.asarray(function(a))


class Tanh(Activation):
    """f(a) = tanh(a); f' = 1 - y^2."""

    def f(self, x, out=None):
        return np.tanh(x, out=_result(out, x))

    def df(self, y, out=None):
        d = np.multiply(y, y, out=_result(out, y))
        return np.subtract(1.0, d, out=d)


class Sigmoid(Activation):
    """f(a) = 1 / (1 + exp(-a)); f' = y (1 - y). Computed without overflow."""

    def f(self, x, out=None):
        e = np.exp(-np.abs(x))                  # exp(-|a|), at most 1
        return np.divide(np.where(x >= 0, 1.0, e), 1.0 + e, out=_result(out, x))

    def df(self, y, out=None):
        return np.multiply(y, 1.0 - y, out=_result(out, y))


class ReLU(Activation):
    """f(a) = max(a, 0); f' = 1 where a > 0, else 0 (0 at the kink)."""

    def f(self, x, out=None):
        return np.maximum(x, 0, out=_result(out, x))

    def df(self, y, out=None):
        return np.greater(y, 0, out=_result(out, y))   # True, False as 1, 0
