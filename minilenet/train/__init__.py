"""Training: the paper's stochastic recipe and mini-batches, with progress,
per-epoch checkpoints, resumption and a NaN guard.

    config       TrainConfig: every setting of a run, stated once (its flags are
                 built from it); build_model and make_optimizer
    data         Data: the images as the network reads them, made once
    steps        LayerGraphStep (the other step is fused.TrainStep)
    trainer      Trainer: epochs of steps, the progress bar, the NaN guard
    checkpoints  checkpoint.npz written after every epoch, read back to resume,
                 evaluate or predict

The names below are the ones to import (``from minilenet.train import Trainer``).
"""
from ..evaluation import confusion_matrix, evaluate
from .checkpoints import CHECKPOINT, load_trained, load_weights, read_checkpoint
from .config import TrainConfig, build_model, make_optimizer, rbf_centers
from .data import Data
from .steps import LayerGraphStep
from .trainer import Trainer, TrainingDiverged

__all__ = ["CHECKPOINT", "Data", "LayerGraphStep", "TrainConfig", "Trainer", "TrainingDiverged",
           "build_model", "confusion_matrix", "evaluate", "load_trained", "load_weights",
           "make_optimizer", "rbf_centers", "read_checkpoint"]
