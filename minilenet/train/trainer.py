"""The trainer: epochs of steps over the data, with a progress bar, the NaN guard,
the per-epoch test error, a checkpoint after every epoch and resumption."""
import dataclasses
import json
import os
import time

import numpy as np

from .. import fused, losses, mnist
from ..distort import DistortionRanges, distort
from ..errors import UserError
from ..evaluation import evaluate
from ..fileio import atomic_write
from ..models import predict_labels
from ..optimizers import SDLM, rate_summary
from .checkpoints import CHECKPOINT, load_weights, read_checkpoint, save_checkpoint
from .config import build_model, make_optimizer, rbf_centers
from .steps import LayerGraphStep


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


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
        self.model = build_model(config, rbf_centers(config)) if model is None else model
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

    def curvature_samples(self, images, order):
        """The pass's SDLM curvature samples, (hessian_samples, 1, 32, 32) scaled:
        drawn without replacement from the pass's ``order`` (draws from self.rng)."""
        pick = self.rng.choice(len(order), size=min(self.config.hessian_samples, len(order)),
                               replace=False)
        return mnist.scale_bytes(images[order[pick]], self.model.dtype)

    # ---------------------------------------------------- checkpoints
    def checkpoint_path(self):
        return os.path.join(self.out, CHECKPOINT)

    def save_checkpoint(self):
        save_checkpoint(self.checkpoint_path(), self.model, self.optimizer, self.epoch, self.rng,
                        self.config, self.history)

    def load_checkpoint(self, path=None):
        """Continue from a checkpoint of the same settings (UserError otherwise)."""
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

    def train_epoch(self):
        """One pass: the curvature (SDLM), then a step per batch; returns its record."""
        model, epoch = self.model, self.epoch
        images, labels, order = self.epoch_plan(epoch)
        curvature_x = (self.curvature_samples(images, order)
                       if isinstance(self.optimizer, SDLM) else None)
        self.optimizer.start_epoch(epoch, model, curvature_x)
        n = len(order)
        step = self.epoch_step(images, labels, order)
        start = time.perf_counter()
        total_loss, errors = self._run(step, self.chunks(images, labels, order), n)
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "train_loss": total_loss / n, "train_error": errors / n,
                  "test_error": evaluate(model, self.data.test_x, self.data.test_labels)[0],
                  "seconds": seconds, "images_per_s": n / seconds,
                  "rates": rate_summary(self.optimizer.rates(model))}
        if self.data.val_x is not None:
            record["val_error"] = evaluate(model, self.data.val_x, self.data.val_labels)[0]
        return record

    def epoch_step(self, images, labels, order):
        """The pass's step: the fused step when ``use_fused`` (built for the pass's
        rates, and compiled on the pass's first batch before the clock starts), else
        the layer graph's."""
        if not self.use_fused:
            return LayerGraphStep(self.model, self.loss_fn, self.optimizer)
        first = order[:self.config.batch_size]
        x, labels = mnist.scale_bytes(images[first], self.model.dtype), labels[first]
        step = fused.TrainStep(self.model, self.optimizer.rates(self.model), self.config.loss,
                               self.config.j)
        start = time.perf_counter()
        if self._compiling is not None:       # a second process is compiling it: wait, then load
            self._compiling.wait()
            self._compiling = None
        step.compile(x, labels)
        seconds = time.perf_counter() - start
        if seconds > 2:
            self.log(f"compiled the fused Numba step in {seconds:.0f} s "
                     f"(once: the machine code is cached on disk)")
        return step

    def _run(self, step, chunks, n):
        """``step`` on every batch of ``chunks`` (n images in all), under a progress
        bar; (summed loss, errors). TrainingDiverged when the loss is not finite."""
        if self.progress:             # a notebook widget where there is one, else text
            from tqdm.auto import tqdm
        else:                         # (tqdm.auto would warn in a notebook without ipywidgets)
            from tqdm import tqdm
        bs, dtype = self.config.batch_size, self.model.dtype
        total_loss, errors, seen = 0.0, 0, 0
        start = time.perf_counter()
        with tqdm(total=n, desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="img",
                  disable=not self.progress, mininterval=1.0) as bar:
            for block, block_labels in chunks:
                xs = mnist.scale_bytes(block, dtype)
                for i in range(0, len(block), bs):
                    x, y = xs[i:i + bs], block_labels[i:i + bs]
                    loss, scores = step(x, y)
                    if not np.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {loss} at epoch {self.epoch + 1}, image {seen}: "
                            f"training stopped. The last good checkpoint ({self.epoch} epochs) "
                            f"is intact in {self.checkpoint_path()}; lower the learning rate "
                            f"and try again.")
                    total_loss += loss * len(y)
                    errors += int(np.sum(predict_labels(self.model, scores) != y))
                    seen += len(y)
                    if i % (bs * 500) == 0 or seen == n:
                        bar.update(seen - bar.n)
                        elapsed = time.perf_counter() - start
                        bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                                        err=f"{100 * errors / seen:.2f}%",
                                        img_s=f"{seen / max(elapsed, 1e-9):.0f}")
        return total_loss, errors
