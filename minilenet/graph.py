"""Sequential: the whole layer graph, an ordered list of named layers.

forward runs the layers in order, backward (and the Gauss-Newton
backward_second) in reverse. Parameter names are "<layer>.<key>", e.g.
"c3.weight". No autograd: each layer's own backward does the work.
"""
import hashlib

import numpy as np

from .fileio import load_npz, save_npz


class Sequential:
    """An ordered, named list of layers.

    Parameters
    ----------
    layers : list of (name, Layer)
    input_shape : tuple, the per-sample input shape, e.g. (1, 32, 32)
    """

    def __init__(self, layers, input_shape):
        names = [name for name, _ in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        self.layers = dict(layers)
        for name, layer in self.layers.items():
            layer.name = name
        self.input_shape = tuple(input_shape)
        self.shapes()                       # fail early on a mis-wired graph

    def __getitem__(self, name):
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers.values())

    @property
    def dtype(self):
        return next(iter(self)).dtype

    # ------------------------------------------------------------ passes
    def forward(self, x):
        """x (N, *input_shape) -> output of the last layer."""
        for layer in self:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy, input_grad=True):
        """Backpropagate dL/d(output); fills every layer's grads, returns dL/dx.

        With ``input_grad=False`` (training: nothing uses dL/dx) the first layer
        computes its parameter gradients only, and None is returned.
        """
        first, *rest = self
        for layer in reversed(rest):
            dy = layer.backward(dy)
        if input_grad:
            return first.backward(dy)
        first.backward_params(dy)
        return None

    def backward_second(self, d2y, below=None):
        """Gauss-Newton second-derivative pass; fills every layer's ``hess``.

        ``d2y`` is the curvature at the output of the last layer, or, with
        ``below="out"``, at the *input* of that layer (the pass then starts
        under it).
        """
        layers = list(self.layers.items())
        if below is not None:
            layers = layers[:[n for n, _ in layers].index(below)]
        for _, layer in reversed(layers):
            d2y = layer.backward_second(d2y)
        return d2y

    def predict_scores(self, x, batch_size=1000):
        """Forward in batches without keeping caches; returns (N, K) scores."""
        out = [self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        for layer in self:
            layer.cache = None
        return np.concatenate(out)

    # -------------------------------------------------------- parameters
    def named_parameters(self):
        """Yield (name, layer, key) for every trainable array, e.g. ("c1.weight", c1, "weight")."""
        for lname, layer in self.layers.items():
            for key in layer.params:
                yield f"{lname}.{key}", layer, key

    def num_params(self):
        return sum(layer.num_params() for layer in self)

    def astype(self, dtype):
        """Convert every layer to ``dtype`` (float64 for gradient checks)."""
        for layer in self:
            layer.astype(dtype)
        return self

    # ------------------------------------------------------------ ledger
    def shapes(self):
        """Per-sample output shape of every layer, propagated from input_shape."""
        shape, out = self.input_shape, {}
        for name, layer in self.layers.items():
            out[name] = (shape, layer.output_shape(shape))
            shape = out[name][1]
        return out

    def ledger(self):
        """Rows (name, layer type, output shape, trainable params, connections)."""
        return [(name, type(self.layers[name]).__name__, out,
                 self.layers[name].num_params(), self.layers[name].connections(inp))
                for name, (inp, out) in self.shapes().items()]

    def summary(self):
        """The ledger as text: one row a layer, then the totals."""
        rows = self.ledger()
        lines = [f"{'layer':<10}{'type':<14}{'output':<16}{'trainable':>11}{'connections':>13}",
                 "-" * 64]
        for name, kind, shape, params, conns in rows:
            lines.append(f"{name:<10}{kind:<14}{'x'.join(map(str, shape)):<16}"
                         f"{params:>11,}{conns:>13,}")
        lines.append("-" * 64)
        lines.append(f"{'total':<40}{sum(r[3] for r in rows):>11,}"
                     f"{sum(r[4] for r in rows):>13,}")
        return "\n".join(lines)

    # ----------------------------------------------------- serialisation
    def state_dict(self):
        """Params and buffers of every layer under "<layer>.<key>"."""
        return {f"{lname}.{key}": value for lname, layer in self.layers.items()
                for key, value in layer.state_dict().items()}

    def load_state_dict(self, state):
        """Load arrays saved by ``state_dict``; every key must match."""
        expected = set(self.state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise KeyError(f"state does not match the model: missing {missing}, "
                           f"unexpected {extra}")
        for lname, layer in self.layers.items():
            prefix = lname + "."
            layer.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                   if k.startswith(prefix)})

    def save(self, path):
        """Write the weights to ``path`` (.npz, atomic)."""
        save_npz(path, self.state_dict())

    def load(self, path):
        """Read weights written by ``save`` (no pickle)."""
        self.load_state_dict(load_npz(path))
        return self

    def weights_sha256(self):
        """SHA-256 (hex) of ``state_dict``: each name and its array's bytes, in name
        order. The same seed gives the same string on every machine (``minilenet
        train`` prints it; docs/performance.md, "The same bits on every machine")."""
        digest = hashlib.sha256()
        for name, array in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()
