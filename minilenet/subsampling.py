"""Subsampling: LeNet-5's trainable 2x2 subsampling layers S2 and S4."""
from . import config, kernels
from .init import PAPER, make_rng
from .layer import Layer


class Subsampling(Layer):
    """Per map, one trainable coefficient and one trainable bias over
    non-overlapping 2x2 windows: ``y = coef[c] * s + bias[c]``.

    ``mode="sum"`` (default, paper section II-B): s is the sum of the 4 inputs.
    ``mode="average"`` (section II-A's wording): s is their mean. The two are
    equivalent up to a factor 4 in ``coef``, but that factor changes the
    initial scale, the gradients and the SDLM curvature. The squashing that
    follows in the paper is a separate ScaledTanh layer.

    Shape
    -----
    x (N, C, H, W), H and W even -> y (N, C, H/2, W/2); coef, bias (C,).

    Cache
    -----
    ``x``, ``backend``, ``y_shape``.
    """
    input_ndim = 4
    MODES = {"sum": 1.0, "average": 0.25}

    def __init__(self, channels, *, mode="sum", init=PAPER, rng=None, dtype=None, backend=None):
        super().__init__(dtype)
        if mode not in self.MODES:
            raise ValueError(f"{self.name}: mode must be 'sum' or 'average', got {mode!r}")
        self.channels, self.mode, self.scale = channels, mode, self.MODES[mode]
        self.backend = backend and config.check_backend(backend)
        rng = make_rng(rng)
        self.add_param("weight", init.weight((channels,), 4, rng))
        self.add_param("bias", init.bias_values((channels,), 4, rng))

    def output_shape(self, input_shape):
        C, H, W = input_shape
        if C != self.channels or H % 2 or W % 2 or H < 2 or W < 2:
            raise ValueError(f"{self.name}: expected ({self.channels}, even H, even W) per "
                             f"sample, got {tuple(input_shape)}")
        return (C, H // 2, W // 2)

    def connections(self, input_shape):
        C, OH, OW = self.output_shape(input_shape)
        return C * OH * OW * 5          # 4 inputs and a bias per unit

    def forward(self, x):
        x = self.check_input(x, (self.channels, None, None))
        self.output_shape(x.shape[1:])
        backend = config.backend_for(self.backend)
        y = kernels.get(backend).subsample_forward(
            x, self.params["weight"], self.params["bias"], self.scale)
        self.cache = {"x": x, "backend": backend, "y_shape": y.shape}
        return y

    def _backprop(self, x, coef, dy, scale, into):
        dx, dcoef, dbias = kernels.get(self.cache["backend"]).subsample_backward(
            x, coef, dy, scale)
        into["weight"], into["bias"] = dcoef, dbias
        return dx

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return self._backprop(self.cache["x"], self.params["weight"], dy, self.scale,
                              self.grads)

    def backward_second(self, d2y):
        """Gauss-Newton pass: squared inputs, coefficient and scale. Each of the
        four connections of a unit counts separately (paper approximation 1)."""
        d2y = self.check_upstream(d2y)
        x, coef = self.cache["x"], self.params["weight"]
        # BEGIN SOLUTION sdlm.curvature
        d2x = self._backprop(x * x, coef * coef, d2y, self.scale ** 2, self.hess)
        # END SOLUTION
        return d2x

    def extra_repr(self):
        return f"{self.channels}, mode={self.mode!r}"
