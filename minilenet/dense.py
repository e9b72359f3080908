"""Dense (LeNet-5's F6) and Flatten."""
from . import config, kernels
from .init import PAPER, make_rng
from .layer import Layer


class Dense(Layer):
    """Fully connected layer ``y = x @ weight + bias``.

    Shape
    -----
    x (N, D_in) -> y (N, D_out); weight (D_in, D_out); bias (D_out,).

    Cache
    -----
    ``x``, ``backend``, ``y_shape``.
    """
    input_ndim = 2

    def __init__(self, in_features, out_features, *, init=PAPER, rng=None, dtype=None,
                 backend=None):
        super().__init__(dtype)
        self.in_features, self.out_features = in_features, out_features
        self.backend = backend and config.check_backend(backend)
        rng = make_rng(rng)
        self.add_param("weight", init.weight((in_features, out_features), in_features, rng))
        self.add_param("bias", init.bias_values((out_features,), in_features, rng))

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self.name}: expected ({self.in_features},) per sample, "
                             f"got {tuple(input_shape)}")
        return (self.out_features,)

    def connections(self, input_shape):
        self.output_shape(input_shape)
        return (self.in_features + 1) * self.out_features

    def forward(self, x):
        x = self.check_input(x, (self.in_features,))
        backend = config.backend_for(self.backend)
        y = kernels.get(backend).dense_forward(x, self.params["weight"], self.params["bias"])
        self.cache = {"x": x, "backend": backend, "y_shape": y.shape}
        return y

    def _backprop(self, x, w, dy, into):
        dx, dw, db = kernels.get(self.cache["backend"]).dense_backward(x, w, dy)
        into["weight"], into["bias"] = dw, db
        return dx

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return self._backprop(self.cache["x"], self.params["weight"], dy, self.grads)

    def backward_second(self, d2y):
        """Gauss-Newton pass: the backward pass with squared inputs and weights."""
        d2y = self.check_upstream(d2y)
        x, w = self.cache["x"], self.params["weight"]
        # BEGIN SOLUTION sdlm.curvature
        d2x = self._backprop(x * x, w * w, d2y, self.hess)
        # END SOLUTION
        return d2x

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W). Cache: ``x_shape``, ``y_shape``."""

    def output_shape(self, input_shape):
        size = 1
        for s in input_shape:
            size *= s
        return (size,)

    def forward(self, x):
        x = self.check_input(x)
        y = x.reshape(x.shape[0], -1)
        self.cache = {"x_shape": x.shape, "y_shape": y.shape}
        return y

    def backward(self, dy):
        return self.check_upstream(dy).reshape(self.cache["x_shape"])

    backward_second = backward
