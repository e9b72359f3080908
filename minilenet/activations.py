"""Element-wise activations: the paper's scaled tanh, and tanh, sigmoid, ReLU.

Each is its own layer. Backward multiplies by f'(a); the Gauss-Newton pass
multiplies by f'(a)^2 (the f'' term is dropped, paper eq. 27).
"""
import numpy as np

from .kernels.threads import get_threads, in_threads
from .layer import Layer

#: Paper eq. 6 / Appendix A: f(a) = A tanh(S a).
A = 1.7159
S = 2.0 / 3.0


class Activation(Layer):
    """Base for element-wise layers: any input shape, output of the same shape.

    Cache: ``y`` (the output; every derivative here is a function of it, or of
    the sign of the input for ReLU), ``y_shape``.
    """

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        x = self.check_input(x)
        y = _in_spans(self.f, x)
        self.cache = {"y": y, "y_shape": y.shape}
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return _in_spans(lambda d, y: d * self.df(y), dy, self.cache["y"])

    def backward_second(self, d2y):
        d2y = self.check_upstream(d2y)
        # BEGIN SOLUTION sdlm.curvature
        d = self.df(self.cache["y"])
        d2x = d2y * d * d
        # END SOLUTION
        return d2x

    def f(self, x):
        raise NotImplementedError

    def df(self, y):
        """Derivative f'(a), written in terms of the output y = f(a)."""
        raise NotImplementedError


#: Arrays of at least this many elements are computed on several threads, a span
#: of samples each (NumPy releases the GIL; ``kernels.threads``); smaller ones ran
#: no faster that way (C1's activations, 301,056 elements at batch 64, did not).
THREAD_MIN_ELEMENTS = 1 << 20


def _in_spans(fn, *arrays):
    """fn(*arrays) for an element-wise fn of batches of one shape: in one call, or,
    for THREAD_MIN_ELEMENTS elements or more, a span of samples per thread."""
    if arrays[0].size < THREAD_MIN_ELEMENTS or get_threads() == 1:
        return fn(*arrays)
    out = np.empty_like(arrays[0])

    def span(lo, hi):
        out[lo:hi] = fn(*(a[lo:hi] for a in arrays))
    in_threads(span, len(out), lambda lo, hi: (lo, hi), len(out), min_batch=1)
    return out


class ScaledTanh(Activation):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3).

    f(+-1) = +-1 (to 3e-6), f'(0) = A*S = 1.1439; f'(a) = (S/A) (A^2 - f(a)^2).
    """

    def f(self, x):
        # BEGIN SOLUTION scaled_tanh
        y = A * np.tanh(S * x)
        # END SOLUTION
        return y

    def df(self, y):
        # BEGIN SOLUTION scaled_tanh
        d = (S / A) * (A * A - y * y)
        # END SOLUTION
        return d


class Tanh(Activation):
    """f(a) = tanh(a); f' = 1 - y^2."""

    def f(self, x):
        return np.tanh(x)

    def df(self, y):
        return 1.0 - y * y


class Sigmoid(Activation):
    """f(a) = 1 / (1 + exp(-a)); f' = y (1 - y). Computed without overflow."""

    def f(self, x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)

    def df(self, y):
        return y * (1.0 - y)


class ReLU(Activation):
    """f(a) = max(a, 0); f' = 1 where a > 0, else 0 (0 at the kink)."""

    def f(self, x):
        return np.maximum(x, 0)

    def df(self, y):
        return (y > 0).astype(y.dtype)
