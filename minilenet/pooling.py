"""Parameter-free pooling (the modern LeNet variant): AvgPool2D and MaxPool2D.

Both gather windows with im2col, so any kernel size and stride work,
overlapping windows included; backward scatters with col2im, which sums.
"""
import numpy as np

from . import config, kernels
from .layer import Layer


class _Pool2D(Layer):
    input_ndim = 4

    def __init__(self, kernel_size=2, stride=None, *, dtype=None, backend=None):
        super().__init__(dtype)
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size
        self.backend = backend and config.check_backend(backend)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        k, s = self.kernel_size, self.stride
        if H < k or W < k:
            raise ValueError(f"{self.name}: input maps must be at least {k}x{k}, "
                             f"got {tuple(input_shape)}")
        return (C, (H - k) // s + 1, (W - k) // s + 1)

    def _windows(self, x):
        """im2col of x as (N, C, K*K, OH, OW), caching what backward needs."""
        x = self.check_input(x)
        self.output_shape(x.shape[1:])
        backend = config.backend_for(self.backend)
        cols = kernels.get(backend).im2col(x, self.kernel_size, self.kernel_size, self.stride)
        N, C, k, _, OH, OW = cols.shape
        self.cache = {"x_shape": x.shape, "backend": backend, "y_shape": (N, C, OH, OW)}
        return cols.reshape(N, C, k * k, OH, OW)

    def _scatter(self, dcols):
        """col2im of (N, C, K*K, OH, OW) back to the input shape."""
        N, C, _, OH, OW = dcols.shape
        k = self.kernel_size
        return kernels.get(self.cache["backend"]).col2im(
            np.ascontiguousarray(dcols.reshape(N, C, k, k, OH, OW)),
            self.cache["x_shape"], self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2D(_Pool2D):
    """Mean over each K x K window. x (N, C, H, W) -> y (N, C, OH, OW).

    Cache: ``x_shape``, ``backend``, ``y_shape``.
    """

    def forward(self, x):
        cols = self._windows(x)
        # BEGIN SOLUTION avgpool
        y = cols.mean(axis=2)
        # END SOLUTION
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        k2 = self.kernel_size ** 2
        # BEGIN SOLUTION avgpool
        dcols = np.repeat(dy[:, :, None] / k2, k2, axis=2)
        # END SOLUTION
        return self._scatter(dcols)

    def backward_second(self, d2y):
        """Each input enters with weight 1/K^2, so its curvature is scaled by 1/K^4."""
        return self.backward(d2y) / self.kernel_size ** 2


class MaxPool2D(_Pool2D):
    """Maximum over each K x K window. x (N, C, H, W) -> y (N, C, OH, OW).

    Cache: ``mask`` (N, C, K*K, OH, OW), 1 at each window's first maximum.
    """

    def forward(self, x):
        cols = self._windows(x)
        # BEGIN SOLUTION maxpool
        winner = cols.argmax(axis=2)[:, :, None]
        mask = np.zeros_like(cols)
        np.put_along_axis(mask, winner, 1, axis=2)
        y = np.take_along_axis(cols, winner, axis=2)[:, :, 0]
        # END SOLUTION
        self.cache["mask"] = mask
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        # BEGIN SOLUTION maxpool
        dcols = self.cache["mask"] * dy[:, :, None]
        # END SOLUTION
        return self._scatter(dcols)

    def backward_second(self, d2y):
        """The max routes its input with derivative 1, so curvature passes unchanged."""
        return self.backward(d2y)
