"""Optimizers: SGD (momentum, weight decay) and the paper's stochastic diagonal
Levenberg-Marquardt (SDLM, Appendix C).

An optimizer updates ``layer.params[key]`` in place from ``layer.grads[key]``,
looking both up through ``model.named_parameters()`` at every step; it keeps
no reference to a gradient array.
"""
import numpy as np

from . import losses
from .kernels import numpy_ref
from .paper import paper_eta
from .rbf import EuclideanRBF

class SGD:
    """w <- w + v,  v <- momentum * v - lr * (g + weight_decay * w).

    ``lr`` is a number or a function of the 0-based epoch.
    """

    def __init__(self, lr=0.01, momentum=0.0, weight_decay=0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = {}
        self.epoch = 0

    def current_lr(self):
        return self.lr(self.epoch) if callable(self.lr) else self.lr

    def start_epoch(self, epoch, model, curvature_x=None):
        self.epoch = epoch

    def step(self, model):
        lr = self.current_lr()
        for name, layer, key in model.named_parameters():
            w, g = layer.params[key], layer.grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.momentum:
                v = self.velocity.setdefault(name, np.zeros_like(w))
                v *= self.momentum
                v -= lr * g
                w += v
            else:
                w -= lr * g

    def rates(self, model):
        """Per-parameter step sizes (all equal to lr for SGD)."""
        lr = self.current_lr()
        return {name: np.full_like(layer.params[key], lr)
                for name, layer, key in model.named_parameters()}

    def state_dict(self):
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state):
        self.velocity = {k[len("velocity."):]: v.copy() for k, v in state.items()
                         if k.startswith("velocity.")}


class SDLM:
    """Stochastic diagonal Levenberg-Marquardt (paper Appendix C, eq. 21-27).

    Before each pass, h_kk (the Gauss-Newton diagonal of the Hessian, summed
    over all connections that share parameter k) is averaged over a few hundred
    samples and kept fixed; every step then moves each parameter by
    ``eta / (mu + h_kk)`` times its gradient.

    Parameters
    ----------
    mu : float, safety constant (paper: 0.02)
    eta : float or function of the 0-based epoch (default: the paper's schedule)
    h_reduce : {"mean", "sum", "running"}
        How the per-sample curvatures of the estimation samples become h_kk:
        their mean (default: an average over a small subset), their sum, or a
        running average h <- (1 - gamma) h + gamma h_p over the samples in
        turn, carried over from the previous pass (zero before the first).
    seed : {"correct", "map", "all"}
        Curvature at the RBF's input (RBF networks only): "correct" (default),
        2, the correct-class penalty's; "map", that plus the Gauss-Newton part
        of the MAP criterion's competitive term (``losses.map_competitive_curvature``,
        with ``j``); "all", 2 for each of the K penalties, 2K.
    """
    REDUCTIONS = ("mean", "sum", "running")
    SEEDS = ("correct", "map", "all")

    def __init__(self, mu=0.02, eta=paper_eta, h_reduce="mean", seed="correct", j=0.1,
                 gamma=0.01):
        if h_reduce not in self.REDUCTIONS:
            raise ValueError(f"SDLM: h_reduce must be one of {self.REDUCTIONS}, got {h_reduce!r}")
        if seed not in self.SEEDS:
            raise ValueError(f"SDLM: seed must be one of {self.SEEDS}, got {seed!r}")
        self.mu, self.eta = mu, eta
        self.h_reduce, self.seed, self.j, self.gamma = h_reduce, seed, j, gamma
        self.h = {}
        self.epoch = 0
        self._steps = {}

    def current_eta(self):
        return self.eta(self.epoch) if callable(self.eta) else self.eta

    def start_epoch(self, epoch, model, curvature_x=None):
        """Set the pass's eta; re-estimate h on ``curvature_x`` when it is given."""
        self.epoch = epoch
        if curvature_x is not None:
            self.estimate_curvature(model, curvature_x)
        self._steps = self.rates(model)

    def estimate_curvature(self, model, x):
        """h_kk from the samples x (N, ...), reduced as ``h_reduce`` says (eq. 24)."""
        if self.h_reduce == "running":
            g = self.gamma
            for i in range(len(x)):
                h = self.mean_curvature(model, x[i:i + 1])
                self.h = {name: (1 - g) * self.h.get(name, 0) + g * v for name, v in h.items()}
        else:
            h = self.mean_curvature(model, x)
            self.h = {name: v * len(x) for name, v in h.items()} if self.h_reduce == "sum" else h

    def mean_curvature(self, model, x):
        """{name: mean over the samples x of the Gauss-Newton second derivatives}.

        For the RBF networks the pass starts at the RBF's input, where the
        correct-class penalty y_D = |x - w_D|^2 has curvature exactly 2
        (``seed="correct"``; the paper gives no seed for the MAP criterion's
        competitive term, whose exact second derivative can be negative; see ``seed``
        for the other readings). For a softmax output it starts from p (1 - p),
        the Gauss-Newton diagonal of cross-entropy.
        """
        scores = model.forward(x)
        last_name, last = list(model.layers.items())[-1]
        if isinstance(last, EuclideanRBF):
            d2 = last.input_curvature(len(x))
            if self.seed == "all":
                d2 *= len(last.buffers["centers"])
            elif self.seed == "map":
                d2 += losses.map_competitive_curvature(
                    scores, last.cache["x"], last.buffers["centers"], self.j).astype(d2.dtype)
            model.backward_second(d2, below=last_name)
        else:
            model.backward_second(losses.softmax_cross_entropy_curvature(scores)
                                  .astype(scores.dtype))
        n = len(x)
        # BEGIN SOLUTION sdlm.curvature
        h = {name: layer.hess[key] / n for name, layer, key in model.named_parameters()}
        # END SOLUTION
        for layer in model:
            layer.cache = None
        return h

    def rates(self, model):
        """Effective per-parameter learning rates eta / (mu + h_kk), by parameter name."""
        eta = self.current_eta()
        out = {}
        for name, layer, key in model.named_parameters():
            h = self.h.get(name)
            if h is None:
                raise RuntimeError("SDLM: estimate_curvature must run before the first step")
            out[name] = numpy_ref.sdlm_rates(eta, self.mu, h, layer.params[key].dtype)
        return out

    def step(self, model):
        if not self._steps:
            self._steps = self.rates(model)
        for name, layer, key in model.named_parameters():
            numpy_ref.sdlm_update(layer.params[key], layer.grads[key], self._steps[name])

    def state_dict(self):
        return {f"h.{k}": v for k, v in self.h.items()}

    def load_state_dict(self, state):
        self.h = {k[len("h."):]: v.copy() for k, v in state.items() if k.startswith("h.")}
        self._steps = {}


def rate_summary(rates):
    """{name: (min, median, max)} of per-parameter rates, for the history and plots."""
    return {name: (float(r.min()), float(np.median(r)), float(r.max()))
            for name, r in rates.items()}
