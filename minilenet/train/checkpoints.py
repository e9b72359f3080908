"""Checkpoints: a training run's whole state in one ``.npz``, written atomically
after every epoch, and a trained network read back (to resume, evaluate or predict).

A checkpoint holds the weights (``model.*``), the optimizer state
(``optimizer.*``), the epoch, the trainer's RNG state, the configuration and the
history, so a resumed run reaches exactly the weights an uninterrupted run would.
Arrays only: read with ``allow_pickle=False`` (``fileio.load_npz``).
"""
import json

import numpy as np

from ..errors import UserError
from ..fileio import load_npz, save_npz
from ..models import VARIANTS, lenet5
from .config import TrainConfig, build_model

#: The checkpoint's file name in a run's folder.
CHECKPOINT = "checkpoint.npz"


def save_checkpoint(path, model, optimizer, epoch, rng, config, history):
    """Write the run's state to ``path``, atomically (a crash leaves the last one)."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": v for k, v in optimizer.state_dict().items()})
    arrays["epoch"] = np.array(epoch)
    arrays["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
    arrays["config"] = np.array(config.to_json())
    arrays["history"] = np.array(json.dumps(history))
    save_npz(path, arrays)


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
    model = build_model(config)          # its RBF prototypes are in the file, loaded next
    load_weights(model, weights, path)
    return model, config
