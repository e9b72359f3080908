"""EuclideanRBF: LeNet-5's output layer, which compares F6 with the 7x12 digit bitmaps
(``bitmaps``)."""
import numpy as np

from . import config, kernels
from .bitmaps import load_digit_bitmaps
from .layer import Layer


class EuclideanRBF(Layer):
    """Output layer of Euclidean radial basis units: ``y_i = sum_j (x_j - w_ij)^2``.

    The prototypes ``w`` are fixed (a buffer, not a parameter): by default the
    shipped 7x12 digit bitmaps, +1 for ink and -1 for background. The predicted
    class is the argmin of y (the closest prototype).

    Shape
    -----
    x (N, D) -> y (N, K); centers (K, D), by default (10, 84).

    Cache
    -----
    ``x``, ``backend``, ``y_shape``.

    References
    ----------
    Paper section II-B, eq. 7; Fig. 3.
    """
    input_ndim = 2

    def __init__(self, centers=None, *, dtype=None, backend=None):
        super().__init__(dtype)
        self.backend = backend and config.check_backend(backend)
        centers = load_digit_bitmaps() if centers is None else np.asarray(centers)
        if centers.ndim != 2:
            raise ValueError(f"{self.name}: centers must be (classes, features), "
                             f"got shape {centers.shape}")
        self.buffers["centers"] = centers.astype(self.dtype)

    @property
    def in_features(self):
        return self.buffers["centers"].shape[1]

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self.name}: expected ({self.in_features},) per sample, "
                             f"got {tuple(input_shape)}")
        return (self.buffers["centers"].shape[0],)

    def connections(self, input_shape):
        return self.buffers["centers"].size

    def forward(self, x):
        x = self.check_input(x, (self.in_features,))
        backend = config.backend_for(self.backend)
        y = kernels.get(backend).rbf_forward(x, self.buffers["centers"])
        self.cache = {"x": x, "backend": backend, "y_shape": y.shape}
        return y

    def backward(self, dy):
        dy = self.check_upstream(dy)
        return kernels.get(self.cache["backend"]).rbf_backward(
            self.cache["x"], self.buffers["centers"], dy)

    def input_curvature(self, n):
        """Second derivative of any one penalty y_i w.r.t. each input x_j: 2.

        This is where the SDLM optimizer starts its Gauss-Newton pass for the
        RBF losses (see ``minilenet.optimizers.SDLM``): the correct-class
        penalty y_D(x) = |x - w_D|^2 is exactly quadratic in x.
        """
        return np.full((n, self.in_features), 2.0, dtype=self.dtype)
