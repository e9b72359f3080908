"""The training run's configuration, each setting stated once, and what it builds:
the network (``build_model``) and the optimizer (``make_optimizer``)."""
import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from .. import mnist
from ..bitmaps import read_bitmaps
from ..errors import UserError
from ..init import FanInUniform
from ..models import INPUT_LAYOUTS, SUBSAMPLING_INITS, VARIANTS, lenet5, redraw_subsampling
from ..optimizers import SDLM, SGD, paper_eta
from ..settings import (FRACTION, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT,
                        POSITIVE_INT, problems, setting)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    The defaults are the paper's recipe: the faithful network, 20 passes of
    one sample at a time in a constant random order, SDLM with the paper's eta
    schedule and the curvature re-estimated on 500 samples per pass; one
    deviation: mu = 0.5, not 0.02 (with 0.02 our network saturates in the
    first pass; docs/results.md has the measurements).

    Each field states its default, its range or choices and its help once
    (``settings.setting``): ``validate`` checks them, and ``minilenet train``
    builds its flags from them.
    """
    variant: str = setting("paper", str, "the network: LeNet-5 (paper), its modern variant, or "
                           "one of the paper's comparison networks (docs/results.md)",
                           choices=VARIANTS)
    epochs: int = setting(20, POSITIVE_INT, "passes over the training images")
    batch_size: int = setting(1, POSITIVE_INT, "samples per step", other_variants=64)
    optimizer: str = setting("sdlm", str, "", choices=("sdlm", "sgd"), other_variants="sgd")
    loss: str = setting("map", str, "", choices=("map", "mse", "ce"), other_variants="ce")
    j: float = setting(0.1, POSITIVE_FLOAT, "the MAP criterion's constant j (not given in the "
                                            "paper)")
    lr: float = setting(0.0, POSITIVE_FLOAT, "SGD learning rate (default 0.01)", unset=0.0)
    momentum: float = setting(0.9, FRACTION, "SGD momentum")
    weight_decay: float = setting(0.0, NONNEGATIVE_FLOAT, "SGD only", flag=False)
    mu: float = setting(0.5, POSITIVE_FLOAT, "SDLM safety constant (paper: 0.02; default 0.5, "
                                             "see docs/results.md)")
    eta_scale: float = setting(1.0, POSITIVE_FLOAT, "SDLM: multiply the paper's eta schedule "
                                                    "by this")
    hessian_samples: int = setting(500, POSITIVE_INT, "SDLM: samples for h_kk before each pass",
                                   flag=False)
    order: str = setting("constant", str, "constant random order (paper) or a new one every "
                                          "pass", choices=("constant", "shuffle"))
    distort: str = setting("none", str, "affine distortions: 'paper' (60k originals + 540k "
                                        "fixed distorted, the default when the flag is given) "
                                        "or 'online' (fresh every pass)",
                           choices=("none", "paper", "online"), nargs="?", const="paper")
    distort_strength: float = setting(
        0.5, POSITIVE_FLOAT, "multiply every distortion range (translation +-2 px, scale "
        "+-10%%, squeeze +-15%%, shear +-0.3) by this; default 0.5, chosen on a validation "
        "split (docs/results.md)")
    limit: int = setting(0, POSITIVE_INT, "train on the first N images only", unset=0)
    validation: int = setting(0, NONNEGATIVE_INT, "hold out N random training images and "
                                                  "report their error each epoch")
    test_limit: int = setting(0, POSITIVE_INT, "test on the first N images only", unset=0)
    subsampling: str = setting("sum", str, "", choices=("sum", "average"))
    count_bias: bool = setting(False, bool, "count the bias in the fan-in F_i of the initial "
                                            "U(+-2.4/F_i)")
    bias_init: str = setting("uniform", str, "initial biases: U(+-2.4/F_i) like the weights "
                                             "(default) or zero", choices=("uniform", "zero"))
    subsampling_init: str = setting("fan-in", str, "S2/S4 coefficient and bias: U(+-2.4/F_i) "
                                                   "with F_i = 4 (default) or F_i = 1, or "
                                                   "coefficient 1 and bias 0",
                                    choices=SUBSAMPLING_INITS)
    h_reduce: str = setting("mean", str, "SDLM: h_kk as the mean (default), the sum or a "
                                         "running average over the curvature samples",
                            choices=SDLM.REDUCTIONS)
    curvature_seed: str = setting("correct", str, "SDLM: curvature at the RBF input: 2 for the "
                                                  "correct-class penalty (default), plus the "
                                                  "MAP competitive term's Gauss-Newton part, or "
                                                  "2 for each of the 10 penalties",
                                  choices=SDLM.SEEDS)
    bitmaps: str = setting("", str, "RBF prototypes as ASCII art (the format of "
                                    "minilenet/resources/digit_bitmaps.txt)", unset="")
    deskew: bool = setting(False, bool, "shear every digit upright (by its second moments) "
                                        "before training and testing")
    seed: int = setting(0, NONNEGATIVE_INT, "")
    backend: str = setting("", str, "(default: the default backend)", choices=("numpy", "numba"),
                           unset="")
    fused: bool = setting(True, bool, "numba + paper network + SDLM: one compiled call a step",
                          flag=False)

    def validate(self):
        """Raise UserError (a ValueError) naming the first setting out of its range or
        choices (``settings.problems``), or a loss the variant does not train with."""
        for name, problem in problems(self):
            raise UserError(f"{name} {problem}")
        if (self.variant == "paper") == (self.loss == "ce"):
            raise UserError(f"the {self.variant} variant trains with "
                             f"{'mse or map' if self.variant == 'paper' else 'ce'}, "
                             f"not {self.loss!r}")
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    def input_bytes(self, images):
        """uint8 MNIST digits (N, 28, 28) -> the uint8 input (N, H, W) of the network
        this configuration describes (padded to 32x32 for LeNet-5; see
        ``models.INPUT_LAYOUTS``), deskewed first if ``deskew``."""
        return mnist.input_bytes(images, INPUT_LAYOUTS[self.variant], self.deskew)


def make_optimizer(config):
    """The optimizer ``config`` describes: SDLM with the paper's eta schedule (scaled by
    ``eta_scale``), or SGD."""
    if config.optimizer == "sdlm":
        scale = config.eta_scale
        return SDLM(mu=config.mu, eta=lambda epoch: scale * paper_eta(epoch),
                    h_reduce=config.h_reduce, seed=config.curvature_seed, j=config.j)
    lr = config.lr or 0.01
    return SGD(lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def rbf_centers(config):
    """The RBF prototypes (10, 84) of the file ``config.bitmaps`` names (UserError
    naming the file when it is not one), or None for the shipped digit bitmaps."""
    return read_bitmaps(config.bitmaps, classes=10) if config.bitmaps else None


def build_model(config, centers=None):
    """The network ``config`` describes, with the RBF prototypes ``centers``
    (default: the shipped digit bitmaps; ``rbf_centers(config)`` reads the file
    ``config.bitmaps`` names)."""
    model = lenet5(config.variant, seed=config.seed, subsampling=config.subsampling,
                   count_bias=config.count_bias, bias_init=config.bias_init,
                   centers=centers, backend=config.backend or None)
    if config.subsampling_init != "fan-in":
        redraw_subsampling(model, config.subsampling_init,
                           FanInUniform(count_bias=config.count_bias, bias=config.bias_init),
                           np.random.default_rng([config.seed, 3]))
    return model
