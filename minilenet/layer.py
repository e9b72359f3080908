"""The Layer contract every minilenet layer follows.

Shape symbols used across the package: N batch, C input channels, F output
channels, H, W input height/width, KH, KW kernel, OH, OW output.

A layer owns four dicts:

* ``params``  trainable arrays (keys ``weight``, ``bias`` ...);
* ``grads``   same keys, shapes and dtype as ``params``; *assigned* (not
  accumulated) by every ``backward``;
* ``hess``    same keys again: the Gauss-Newton diagonal second derivatives
  filled by ``backward_second`` (used by the SDLM optimizer);
* ``buffers`` fixed arrays that are saved but never trained (C3 table, RBF
  prototypes);

and a ``cache`` dict written by ``forward`` and read by ``backward``.
"""
import numpy as np

from . import config


class Layer:
    """Base class: validation, bookkeeping and (de)serialisation.

    Subclasses implement ``forward(x)``, ``backward(dy)``,
    ``backward_second(d2y)`` and ``output_shape(input_shape)``, and may
    override ``connections(input_shape)`` and ``backward_params(dy)``.
    """

    #: ndim of one input batch, e.g. 4 for (N, C, H, W); None = any.
    input_ndim = None

    def __init__(self, dtype=None):
        self.dtype = np.dtype(dtype if dtype is not None else config.DEFAULT_DTYPE)
        self.name = type(self).__name__
        self.params, self.grads, self.hess, self.buffers = {}, {}, {}, {}
        self.cache = None

    # ----------------------------------------------------------- parameters
    def add_param(self, key, value):
        """Register a trainable array and zero its gradient and curvature."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self.params[key] = value
        self.grads[key] = np.zeros_like(value)
        self.hess[key] = np.zeros_like(value)

    def num_params(self):
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def connections(self, input_shape):
        """Connections for one sample, counting a bias as one (paper's rule).

        Default: none (activations, reshapes, parameter-free pooling).
        """
        return 0

    # --------------------------------------------------------------- checks
    def check_input(self, x, shape=None):
        """Validate ``x`` before any kernel sees it.

        ``shape`` is the expected per-sample shape, with None for "any".
        Raises TypeError / ValueError naming this layer, expected and actual.
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: expected a numpy array, got {type(x).__name__}")
        if x.dtype != self.dtype:
            raise TypeError(
                f"{self.name}: expected dtype {self.dtype}, got {x.dtype} "
                f"(convert the input, or the model with .astype({x.dtype}))")
        if self.input_ndim is not None and x.ndim != self.input_ndim:
            raise ValueError(
                f"{self.name}: expected a {self.input_ndim}-d input "
                f"{self.input_layout}, got shape {x.shape}")
        if shape is not None:
            for got, want in zip(x.shape[1:], shape, strict=True):
                if want is not None and got != want:
                    want_text = ", ".join("?" if s is None else str(s) for s in shape)
                    if len(shape) == 1:
                        want_text += ","
                    raise ValueError(
                        f"{self.name}: expected per-sample shape ({want_text}), "
                        f"got {x.shape[1:]} (full input shape {x.shape})")
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return x

    @property
    def input_layout(self):
        return {4: "(N, C, H, W)", 2: "(N, D)"}.get(self.input_ndim, "")

    def check_upstream(self, dy):
        """Validate the gradient handed to backward against the last forward."""
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        expected = self.cache["y_shape"]
        if not isinstance(dy, np.ndarray) or dy.shape != expected:
            got = dy.shape if isinstance(dy, np.ndarray) else type(dy).__name__
            raise ValueError(
                f"{self.name}: upstream gradient must have the output shape "
                f"{expected}, got {got}")
        if dy.dtype != self.dtype:
            raise TypeError(f"{self.name}: expected dtype {self.dtype} for the upstream "
                            f"gradient, got {dy.dtype}")
        return np.ascontiguousarray(dy)

    # -------------------------------------------------------- serialisation
    def state_dict(self):
        """Parameters and buffers as a flat dict of arrays (copies)."""
        state = {k: v.copy() for k, v in self.params.items()}
        state.update({k: v.copy() for k, v in self.buffers.items()})
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (keys and shapes must match exactly)."""
        own = {**self.params, **self.buffers}
        if set(state) != set(own):
            raise KeyError(f"{self.name}: state keys {sorted(state)} do not match "
                           f"{sorted(own)}")
        for key, value in state.items():
            value = np.asarray(value)
            if value.shape != own[key].shape:
                raise ValueError(f"{self.name}.{key}: expected shape {own[key].shape}, "
                                 f"got {value.shape}")
            if value.dtype.kind != own[key].dtype.kind:
                kind = "a float" if own[key].dtype.kind == "f" else f"a {own[key].dtype}"
                raise ValueError(f"{self.name}.{key}: expected {kind} array, got {value.dtype}")
            own[key][...] = value

    def astype(self, dtype):
        """Convert params, grads, hess and float buffers to ``dtype`` in place."""
        self.dtype = np.dtype(dtype)
        for store in (self.params, self.grads, self.hess, self.buffers):
            for key, value in store.items():
                if value.dtype.kind == "f":
                    store[key] = value.astype(self.dtype)
        self.cache = None
        return self

    def backward_params(self, dy):
        """Fill ``grads`` as ``backward`` does, when nothing needs the input gradient
        (a network's first layer). This default runs ``backward`` and drops dx; a
        layer whose kernels can skip dx (the convolutions) overrides it."""
        self.backward(dy)

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""
