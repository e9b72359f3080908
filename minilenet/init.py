"""Weight initialisation: uniform in +-scale / fan_in**power.

The paper (Appendix A) draws every weight from U(-2.4/F_i, +2.4/F_i), F_i the
fan-in of the unit the connection belongs to. It leaves open whether the bias
counts in F_i and how biases start; both are explicit fields here.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FanInUniform:
    """Uniform initialiser with bound ``scale / fan_in**power``.

    Parameters
    ----------
    scale, power : float
        Paper: 2.4 and 1 (divide by F_i, not sqrt(F_i): inputs are assumed
        highly correlated). He-uniform for ReLU nets: sqrt(6) and 0.5.
    count_bias : bool
        Add 1 to the fan-in for the bias input (paper: unspecified; default no).
    bias : {"uniform", "zero"}
        Biases drawn from the same bound, or zero (paper: unspecified; default
        uniform, treating the bias as a weight on a constant input).
    """
    scale: float = 2.4
    power: float = 1.0
    count_bias: bool = False
    bias: str = "uniform"

    def bound(self, fan_in):
        fan_in = np.asarray(fan_in, dtype=np.float64) + (1 if self.count_bias else 0)
        return self.scale / fan_in ** self.power

    def weight(self, shape, fan_in, rng):
        """Weights of ``shape``; ``fan_in`` broadcasts against it (per-unit fan-ins)."""
        bound = np.broadcast_to(self.bound(fan_in), shape)
        return rng.uniform(-1.0, 1.0, size=shape) * bound

    def bias_values(self, shape, fan_in, rng):
        if self.bias == "zero":
            return np.zeros(shape)
        if self.bias != "uniform":
            raise ValueError(f"bias init must be 'uniform' or 'zero', got {self.bias!r}")
        return self.weight(shape, fan_in, rng)


PAPER = FanInUniform()
HE = FanInUniform(scale=6 ** 0.5, power=0.5, bias="zero")


def make_rng(rng):
    """Accept a Generator, a seed, or None (seed 0: reproducible by default)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)
