"""Conv2D: valid, stride-1 convolution (LeNet-5's C1 and C5)."""
from . import config, kernels
from .init import PAPER, make_rng
from .layer import Layer


class Convolution(Layer):
    """Shared machinery of Conv2D and TableConv2D: shape rules, forward/backward
    plumbing. Subclasses set ``in_channels``, ``out_channels``, ``kernel_size``,
    ``backend`` and implement ``_forward_kernel`` / ``_backward_kernel``
    (``need_dx`` False: the kernel returns dx None).
    """
    input_ndim = 4

    def output_shape(self, input_shape):
        C, H, W = input_shape
        k = self.kernel_size
        if C != self.in_channels or H < k or W < k:
            raise ValueError(f"{self.name}: expected ({self.in_channels}, >={k}, >={k}) "
                             f"per sample, got {tuple(input_shape)}")
        return (self.out_channels, H - k + 1, W - k + 1)

    def forward(self, x):
        x = self.check_input(x, (self.in_channels, None, None))
        self.output_shape(x.shape[1:])
        backend = config.backend_for(self.backend)
        y = self._forward_kernel(kernels.get(backend), x)
        self.cache = {"x": x, "backend": backend, "y_shape": y.shape}
        return y

    def _backprop(self, x, w, dy, into, need_dx=True):
        dx, dw, db = self._backward_kernel(kernels.get(self.cache["backend"]), x, w, dy, need_dx)
        into["weight"], into["bias"] = dw, db
        return dx

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return self._backprop(self.cache["x"], self.params["weight"], dy, self.grads)

    def backward_params(self, dy):
        """The weight and bias gradients only: the kernels skip dx. A layer whose
        ``backward`` was changed (a subclass, or a method set on the instance) runs
        that ``backward`` instead, so a changed layer is always what trains."""
        if getattr(self.backward, "__func__", None) is not Convolution.backward:
            return super().backward_params(dy)
        dy = self.check_upstream(dy)
        self._backprop(self.cache["x"], self.params["weight"], dy, self.grads, need_dx=False)

    def backward_second(self, d2y):
        """Gauss-Newton pass: the backward pass with squared inputs and weights
        (d2x = sum w^2 d2y, h_w = sum x^2 d2y, h_b = sum d2y; paper eq. 25, 27)."""
        d2y = self.check_upstream(d2y)
        x, w = self.cache["x"], self.params["weight"]
        # BEGIN SOLUTION sdlm.curvature
        d2x = self._backprop(x * x, w * w, d2y, self.hess)
        # END SOLUTION
        return d2x


class Conv2D(Convolution):
    """Valid, stride-1 2-D convolution (cross-correlation) with a bias per output map.

    Shape
    -----
    x (N, C, H, W) -> y (N, F, OH, OW), OH = H - KH + 1, OW = W - KW + 1.
    weight (F, C, KH, KW), bias (F,).

    Cache
    -----
    ``x`` (the input), ``backend`` (the kernels forward used), ``y_shape``.

    References
    ----------
    Paper section II-B, C1 and C5; eq. 5 (a = w.x + b).
    """
    def __init__(self, in_channels, out_channels, kernel_size, *, init=PAPER, rng=None,
                 dtype=None, backend=None):
        super().__init__(dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.backend = backend and config.check_backend(backend)
        rng = make_rng(rng)
        fan_in = in_channels * kernel_size * kernel_size
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.add_param("weight", init.weight(shape, fan_in, rng))
        self.add_param("bias", init.bias_values((out_channels,), fan_in, rng))

    def connections(self, input_shape):
        F, OH, OW = self.output_shape(input_shape)
        return (self.in_channels * self.kernel_size ** 2 + 1) * F * OH * OW

    def _forward_kernel(self, k, x):
        return k.conv2d_forward(x, self.params["weight"], self.params["bias"])

    def _backward_kernel(self, k, x, w, dy, need_dx):
        return k.conv2d_backward(x, w, dy, need_dx)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
