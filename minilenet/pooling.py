"""Parameter-free pooling (the modern LeNet variant): AvgPool2D and MaxPool2D.

Any kernel size and stride work, overlapping windows included. Each layer calls
its backend's kernels: ``avgpool_forward`` / ``avgpool_backward`` and
``maxpool_forward`` / ``maxpool_backward`` (in ``numpy_ref`` written with im2col
and col2im, which sums where windows overlap).
"""

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

    def _begin(self, x):
        """Check x (N, C, H, W) and start the cache (``x_shape``, ``backend``,
        ``y_shape``); returns x and the backend's kernel module."""
        x = self.check_input(x)
        y_shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        backend = config.backend_for(self.backend)
        self.cache = {"x_shape": x.shape, "backend": backend, "y_shape": y_shape}
        return x, kernels.get(backend)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2D(_Pool2D):
    """Mean over each K x K window (the backend's ``avgpool_forward`` /
    ``avgpool_backward``). x (N, C, H, W) -> y (N, C, OH, OW).

    Cache: ``x_shape``, ``backend``, ``y_shape``.
    """

    def forward(self, x):
        x, kernel = self._begin(x)
        return kernel.avgpool_forward(x, self.kernel_size, self.stride)

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return kernels.get(self.cache["backend"]).avgpool_backward(
            dy, self.cache["x_shape"], self.kernel_size, self.stride)

    def backward_second(self, d2y):
        """Each input enters with weight 1/K^2, so its curvature is scaled by 1/K^4."""
        return self.backward(d2y) / self.kernel_size ** 2


class MaxPool2D(_Pool2D):
    """Maximum over each K x K window. x (N, C, H, W) -> y (N, C, OH, OW).

    Cache: ``x_shape``, ``backend``, ``y_shape``, and ``winner`` (N, C, OH, OW) int64,
    the place ``i * K + j`` of each window's first maximum.
    """

    def forward(self, x):
        x, kernel = self._begin(x)
        y, self.cache["winner"] = kernel.maxpool_forward(x, self.kernel_size, self.stride)
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return kernels.get(self.cache["backend"]).maxpool_backward(
            dy, self.cache["winner"], self.cache["x_shape"], self.kernel_size, self.stride)

    def backward_second(self, d2y):
        """The max routes its input with derivative 1, so curvature passes unchanged."""
        return self.backward(d2y)
