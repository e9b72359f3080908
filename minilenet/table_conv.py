"""TableConv2D: a convolution restricted by a connection table (LeNet-5's C3)."""
import numpy as np

from . import config
from .conv import Convolution
from .init import PAPER, make_rng


class TableConv2D(Convolution):
    """Valid, stride-1 convolution where output map f sees only the input maps c
    with ``table[c, f]`` True.

    Only connected kernels exist as parameters: ``weight`` holds one KH x KW
    kernel per True entry of the table (in row-major order over (f, c)), so an
    unconnected weight is never stored, updated or given a gradient.

    Shape
    -----
    x (N, C, H, W) -> y (N, F, H-KH+1, W-KW+1); table (C, F) bool;
    weight (K, KH, KW) with K = table.sum(); bias (F,).

    Cache
    -----
    ``x``, ``backend``, ``y_shape``.

    References
    ----------
    Paper section II-B, layer C3 and Table I.
    """
    def __init__(self, table, kernel_size, *, init=PAPER, rng=None, dtype=None, backend=None):
        super().__init__(dtype)
        table = np.asarray(table, dtype=bool)
        if table.ndim != 2 or not table.any(axis=0).all():
            raise ValueError(f"{self.name}: table must be (in_maps, out_maps) with every "
                             f"output map connected, got shape {table.shape}")
        self.in_channels, self.out_channels = table.shape
        self.kernel_size = kernel_size
        self.backend = backend and config.check_backend(backend)
        self.buffers["table"] = table
        # Connection k links input map in_idx[k] to output map out_idx[k].
        out_idx, in_idx = np.nonzero(table.T)
        self.out_idx, self.in_idx = out_idx.astype(np.int64), in_idx.astype(np.int64)
        rng = make_rng(rng)
        fan_in = table.sum(axis=0) * kernel_size * kernel_size         # per output map
        K = len(out_idx)
        self.add_param("weight", init.weight((K, kernel_size, kernel_size),
                                             fan_in[out_idx][:, None, None], rng))
        self.add_param("bias", init.bias_values((self.out_channels,), fan_in, rng))

    def connections(self, input_shape):
        F, OH, OW = self.output_shape(input_shape)
        return self.num_params() * OH * OW

    def load_state_dict(self, state):
        if not np.array_equal(np.asarray(state.get("table")), self.buffers["table"]):
            raise ValueError(f"{self.name}: the saved connection table differs from this layer's")
        super().load_state_dict(state)

    def _forward_kernel(self, k, x):
        return k.table_conv2d_forward(x, self.params["weight"], self.params["bias"],
                                      self.out_idx, self.in_idx)

    def _backward_kernel(self, k, x, w, dy, need_dx):
        return k.table_conv2d_backward(x, w, dy, self.out_idx, self.in_idx, need_dx)

    def extra_repr(self):
        return (f"table={self.in_channels}x{self.out_channels} "
                f"({len(self.out_idx)} connections), kernel_size={self.kernel_size}")
