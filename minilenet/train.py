"""Training: the paper's stochastic recipe and mini-batches, with progress,
per-epoch checkpoints, resumption and a NaN guard.

A checkpoint (``checkpoint.npz``, written atomically after every epoch)
holds the weights, the optimizer state, the epoch, the trainer's RNG state,
the configuration and the history, so ``resume=True`` continues an
interrupted run to exactly the weights an uninterrupted run would reach.
"""
import dataclasses
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from . import fused, losses, mnist
from .distort import DistortionRanges, distort
from .errors import UserError
from .fileio import atomic_write, load_npz, save_npz
from .init import FanInUniform
from .models import (INPUT_LAYOUTS, SUBSAMPLING_INITS, VARIANTS, lenet5, predict_labels,
                     redraw_subsampling)
from .optimizers import SDLM, SGD, paper_eta, rate_summary
from .rbf import read_bitmaps
from .settings import (FRACTION, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT,
                       POSITIVE_INT, problems, setting)

CHECKPOINT = "checkpoint.npz"


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


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def input_bytes(images, config):
    """uint8 MNIST digits (N, 28, 28) -> the uint8 input (N, H, W) of the
    network ``config`` describes (padded to 32x32 for LeNet-5; see
    ``models.INPUT_LAYOUTS``), deskewed first if ``config.deskew``."""
    return mnist.input_bytes(images, INPUT_LAYOUTS[config.variant], config.deskew)


def model_input(images, config, dtype=np.float32):
    """uint8 MNIST digits (N, 28, 28) -> the network's scaled input (N, 1, H, W)."""
    return mnist.scale_bytes(input_bytes(images, config), dtype)


@dataclass
class Data:
    """Training images as the network's uint8 input (N, H, W) (``input_bytes``:
    padded to 32x32 for LeNet-5; scaled to floats batch by batch, so the float
    data set is never held twice); test images both as uint8 (N, 28, 28) for
    figures and as the network's scaled input (N, 1, H, W); an optional
    validation set held out of the training images."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_x: np.ndarray
    test_labels: np.ndarray
    test_images: np.ndarray
    val_x: np.ndarray = None
    val_labels: np.ndarray = None

    @classmethod
    def from_mnist(cls, arrays, config, dtype=np.float32):
        train_images, train_labels = arrays["train_images"], arrays["train_labels"]
        test_images, test_labels = arrays["test_images"], arrays["test_labels"]
        if config.limit:
            train_images = train_images[:config.limit]
            train_labels = train_labels[:config.limit]
        if config.test_limit:
            test_images = test_images[:config.test_limit]
            test_labels = test_labels[:config.test_limit]
        val_x = val_labels = None
        if config.validation:
            train_images, train_labels, val_images, val_labels = mnist.split_validation(
                train_images, train_labels, config.validation, seed=config.seed)
            val_x = model_input(val_images, config, dtype)
            val_labels = val_labels.astype(np.int64)
        return cls(input_bytes(train_images, config), train_labels.astype(np.int64),
                   model_input(test_images, config, dtype), test_labels.astype(np.int64),
                   test_images, val_x, val_labels)


def make_optimizer(config):
    if config.optimizer == "sdlm":
        scale = config.eta_scale
        return SDLM(mu=config.mu, eta=lambda epoch: scale * paper_eta(epoch),
                    h_reduce=config.h_reduce, seed=config.curvature_seed, j=config.j)
    lr = config.lr or 0.01
    return SGD(lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build_model(config, bitmaps_from_file=True):
    """The network ``config`` describes (RBF prototypes read from config.bitmaps)."""
    centers = None
    if config.bitmaps and bitmaps_from_file:
        centers = read_bitmaps(config.bitmaps, classes=10)
    model = lenet5(config.variant, seed=config.seed, subsampling=config.subsampling,
                   count_bias=config.count_bias, bias_init=config.bias_init,
                   centers=centers, backend=config.backend or None)
    if config.subsampling_init != "fan-in":
        redraw_subsampling(model, config.subsampling_init,
                           FanInUniform(count_bias=config.count_bias, bias=config.bias_init),
                           np.random.default_rng([config.seed, 3]))
    return model


def evaluate(model, x, labels, batch_size=1000):
    """(error rate, predicted labels, scores) on preprocessed x."""
    scores = model.predict_scores(x, batch_size)
    predicted = predict_labels(model, scores)
    return float(np.mean(predicted != labels)), predicted, scores


def confusion_matrix(labels, predicted, classes=10):
    """(classes, classes) counts: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


class Trainer:
    """Runs ``config`` on ``data``, writing checkpoints and the history to ``out``.

    ``model`` replaces the network ``config`` describes (a model a student
    changed, say); the fused step is then used only if the model is exactly the
    network it computes. ``on_epoch(trainer, record)``, if given, is called
    after every epoch (live curves in a notebook, for example).
    """

    def __init__(self, config, data, out, progress=True, log=print, model=None,
                 on_epoch=None):
        self.config = config.validate()
        self.data, self.out, self.progress, self.log = data, out, progress, log
        self.on_epoch = on_epoch
        self.model = build_model(config) if model is None else model
        self.optimizer = make_optimizer(config)
        self.loss_fn = losses.get(config.loss, **({"j": config.j} if config.loss == "map" else {}))
        self.rng = np.random.default_rng(config.seed)
        self.epoch = 0
        self.history = []
        n = len(data.train_images)
        # The paper's "constant random order": one permutation, drawn from the seed.
        self.order = np.random.default_rng([config.seed, 1]).permutation(n)
        self.pool = self._paper_pool() if config.distort == "paper" else None
        self.use_fused = config.fused and fused.supports(self.model, config.loss, self.optimizer,
                                                         config.batch_size)
        self._compiling = fused.compile_in_background(self.model) if self.use_fused else None
        reason = fused.mismatch(self.model) if config.variant == "paper" else ""
        if config.fused and reason:
            self.log(f"training through the layer graph: the fused step computes the paper "
                     f"network, and here {reason}")

    # ---------------------------------------------------------- data
    def _paper_pool(self):
        """The paper's regimen: the originals plus 9 fixed distorted copies of each
        (60,000 + 540,000 for full MNIST), in one constant random order."""
        images = self.data.train_images
        rng = np.random.default_rng([self.config.seed, 2])
        ranges = DistortionRanges().scaled(self.config.distort_strength)
        copies = [images] + [distort(images, rng, ranges) for _ in range(9)]
        pool = np.concatenate(copies)
        return pool, np.tile(self.data.train_labels, 10), rng.permutation(len(pool))

    def epoch_plan(self, epoch):
        """(source images, source labels, presentation order) for this epoch.

        The order indexes the source, so no copy of the data set is made; the
        steps gather their images chunk by chunk (``chunks``).
        """
        n = len(self.order)
        if self.pool is not None:
            pool, pool_labels, pool_order = self.pool
            return pool, pool_labels, pool_order[np.arange(epoch * n, (epoch + 1) * n)
                                                 % len(pool_order)]
        order = self.rng.permutation(n) if self.config.order == "shuffle" else self.order
        return self.data.train_images, self.data.train_labels, order

    def chunks(self, images, labels, order, chunk=4096):
        """Yield (uint8 images, labels) in presentation order, ``chunk`` at a time
        (rounded to whole batches); "online" distortions are drawn here."""
        bs = self.config.batch_size
        chunk = -(-chunk // bs) * bs
        for start in range(0, len(order), chunk):
            idx = order[start:start + chunk]
            block = images[idx]
            if self.config.distort == "online":
                keep = self.rng.random(len(idx)) < 0.1   # a tenth stay original, as in the paper
                block = np.where(keep[:, None, None], block, distort(
                    block, self.rng, DistortionRanges().scaled(self.config.distort_strength)))
            yield block, labels[idx]

    # ---------------------------------------------------- checkpoints
    def checkpoint_path(self):
        return os.path.join(self.out, CHECKPOINT)

    def save_checkpoint(self):
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optimizer.{k}": v for k, v in self.optimizer.state_dict().items()})
        arrays["epoch"] = np.array(self.epoch)
        arrays["rng_state"] = np.array(json.dumps(self.rng.bit_generator.state))
        arrays["config"] = np.array(self.config.to_json())
        arrays["history"] = np.array(json.dumps(self.history))
        save_npz(self.checkpoint_path(), arrays)

    def load_checkpoint(self, path=None):
        path = path or self.checkpoint_path()
        state, saved, weights = read_checkpoint(path)
        differs = {k for k, v in dataclasses.asdict(saved).items()
                   if k != "epochs" and getattr(self.config, k) != v}
        if differs:
            settings = ", ".join(f"{k}={getattr(saved, k)!r}" for k in sorted(differs))
            raise UserError(f"cannot resume: {path} was made with different settings "
                            f"({settings}); start afresh in another --out folder")
        load_weights(self.model, weights, path)
        try:
            self.optimizer.load_state_dict({k[10:]: v for k, v in state.items()
                                            if k.startswith("optimizer.")})
            self.epoch = int(state["epoch"])
            self.rng.bit_generator.state = json.loads(str(state["rng_state"]))
            self.history = json.loads(str(state["history"]))
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"{path}: incomplete checkpoint ({e}); start afresh") from e

    # ------------------------------------------------------- training
    def fit(self):
        """Train until ``config.epochs``; returns the history (a list of dicts)."""
        os.makedirs(self.out, exist_ok=True)
        while self.epoch < self.config.epochs:
            record = self.train_epoch()
            self.history.append(record)
            self.epoch += 1
            self.save_checkpoint()
            with atomic_write(os.path.join(self.out, "history.json"), "w") as f:
                json.dump(self.history, f, indent=1)
            val = (f"validation error {100 * record['val_error']:.2f}%, "
                   if "val_error" in record else "")
            self.log(f"epoch {record['epoch']:>2}: train loss {record['train_loss']:.4f}, "
                     f"train error {100 * record['train_error']:.2f}% (on the fly), {val}"
                     f"test error {100 * record['test_error']:.2f}%, "
                     f"{record['images_per_s']:.0f} images/s")
            if self.on_epoch is not None:
                self.on_epoch(self, record)
        return self.history

    def curvature_samples(self, images, order):
        """The pass's SDLM curvature samples, (hessian_samples, 1, 32, 32) scaled:
        drawn without replacement from the pass's ``order`` (draws from self.rng)."""
        pick = self.rng.choice(len(order), size=min(self.config.hessian_samples, len(order)),
                               replace=False)
        return mnist.scale_bytes(images[order[pick]], self.model.dtype)

    def train_epoch(self):
        if self.progress:             # a notebook widget where there is one, else text
            from tqdm.auto import tqdm
        else:                         # (tqdm.auto would warn in a notebook without ipywidgets)
            from tqdm import tqdm
        config, model, epoch = self.config, self.model, self.epoch
        images, labels, order = self.epoch_plan(epoch)
        curvature_x = (self.curvature_samples(images, order)
                       if isinstance(self.optimizer, SDLM) else None)
        self.optimizer.start_epoch(epoch, model, curvature_x)
        fused_step = (fused.TrainStep(model, self.optimizer.rates(model), config.loss, config.j)
                      if self.use_fused else None)
        bs, n = config.batch_size, len(order)
        if fused_step:                    # compile before the clock starts (cached later on)
            start = time.perf_counter()
            if self._compiling is not None:   # a second process is compiling it: wait, then load
                self._compiling.wait()
                self._compiling = None
            first = mnist.scale_bytes(images[order[:bs]], model.dtype)
            fused_step.compile(first, labels[order[:bs]])
            seconds = time.perf_counter() - start
            if seconds > 2:
                self.log(f"compiled the fused Numba step in {seconds:.0f} s "
                         f"(once: the machine code is cached on disk)")
        total_loss, errors, seen = 0.0, 0, 0
        start = time.perf_counter()
        with tqdm(total=n, desc=f"epoch {epoch + 1}/{config.epochs}", unit="img",
                  disable=not self.progress, mininterval=1.0) as bar:
            for block, block_labels in self.chunks(images, labels, order):
                xs = mnist.scale_bytes(block, model.dtype)
                for i in range(0, len(block), bs):
                    x, y = xs[i:i + bs], block_labels[i:i + bs]
                    if fused_step:
                        loss, scores = fused_step(x, y)
                    else:
                        scores = model.forward(x)
                        loss, dscores = self.loss_fn(scores, y)
                        model.backward(dscores, input_grad=False)
                        self.optimizer.step(model)
                    if not np.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {loss} at epoch {epoch + 1}, image {seen}: "
                            f"training stopped. The last good checkpoint ({self.epoch} epochs) "
                            f"is intact in {self.checkpoint_path()}; lower the learning rate "
                            f"and try again.")
                    total_loss += loss * len(y)
                    errors += int(np.sum(predict_labels(model, scores) != y))
                    seen += len(y)
                    if i % (bs * 500) == 0 or seen == n:
                        bar.update(seen - bar.n)
                        elapsed = time.perf_counter() - start
                        bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                                        err=f"{100 * errors / seen:.2f}%",
                                        img_s=f"{seen / max(elapsed, 1e-9):.0f}")
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "train_loss": total_loss / n, "train_error": errors / n,
                  "test_error": evaluate(model, self.data.test_x, self.data.test_labels)[0],
                  "seconds": seconds, "images_per_s": n / seconds,
                  "rates": rate_summary(self.optimizer.rates(model))}
        if self.data.val_x is not None:
            record["val_error"] = evaluate(model, self.data.val_x, self.data.val_labels)[0]
        return record


def read_checkpoint(path, state=None):
    """(all arrays, TrainConfig, model weights) of a checkpoint.npz (``state``:
    its arrays, if already read); UserError naming the file when it is not one."""
    state = load_npz(path) if state is None else state
    if "config" not in state:
        raise UserError(f"{path}: not a checkpoint (no training configuration in it)")
    try:
        config = TrainConfig.from_json(str(state["config"])).validate()
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: the checkpoint's configuration is unreadable ({e})") from e
    return state, config, {k[6:]: v for k, v in state.items() if k.startswith("model.")}


def load_weights(model, weights, path):
    """Load ``weights`` into ``model``; UserError naming the file, the array and
    what was expected (and the variant, when they are another variant's)."""
    expected = set(model.state_dict())
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise UserError(f"{path}: the arrays do not match the network ({_variant_hint(weights)}"
                        f"; missing {', '.join(missing) or 'none'}; unexpected "
                        f"{', '.join(extra) or 'none'})")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if any(np.shape(weights[k]) != shape for k, shape in shapes.items()):
        wrong = next(k for k, shape in shapes.items() if np.shape(weights[k]) != shape)
        raise UserError(f"{path}: {wrong} has shape {np.shape(weights[wrong])}, the network "
                        f"expects {shapes[wrong]} ({_variant_hint(weights)})")
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: {e.args[0]}") from e


def _variant_hint(weights):
    """Which variant's arrays (names and shapes) ``weights`` are, as advice."""
    shapes = {k: np.shape(v) for k, v in weights.items()}
    others = [v for v in VARIANTS
              if {k: a.shape for k, a in lenet5(v).state_dict().items()} == shapes]
    return (f"these are the {others[0]} variant's weights: pass --variant {others[0]}"
            if others else "it was saved from another network")


def load_trained(path, variant=None, deskew=False):
    """(model, config) from a checkpoint.npz (which knows its variant: a
    ``variant`` that differs is refused), or from a weights.npz of ``variant``
    (default "paper"; ``deskew``: its training digits were deskewed)."""
    state = load_npz(path)
    if "config" in state:
        _, config, weights = read_checkpoint(path, state)
        if variant is not None and variant != config.variant:
            raise UserError(f"{path}: this checkpoint is the {config.variant} variant, not "
                            f"{variant}: drop --variant or pass --variant {config.variant}")
    else:
        variant = variant or "paper"
        config, weights = TrainConfig(variant=variant, deskew=deskew,
                                      loss="map" if variant == "paper" else "ce"), state
    model = build_model(config, bitmaps_from_file=False)  # the prototypes come from the file
    load_weights(model, weights, path)
    return model, config
