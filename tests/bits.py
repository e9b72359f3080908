"""Short training runs and the SHA-256 of the weights they end at, for
tests/test_same_bits.py. ``python tests/bits.py NAME...`` runs the named runs in
this process and prints {name: hash} as JSON (the test runs it under emulated
machines: other OpenBLAS kernels, Numba targets, NumPy's CPU features, threads)."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from minilenet.train import Data, TrainConfig, Trainer  # noqa: E402
from test_train import _arrays  # noqa: E402

#: name -> TrainConfig overrides of a run of 2 epochs on 256 synthetic digits: the
#: recipe one sample at a time (without and with the paper's distortions) and four at a
#: time (the fused step), four at a time and
#: 64 at a time through the layer graph, and the modern variant in batches of 64.
RUNS = {
    "paper, batch 1, fused": {},
    "paper, batch 1, fused, distortions": {"distort": "paper"},
    "paper, batch 4, fused": {"batch_size": 4},
    "paper, batch 4, layer graph": {"batch_size": 4, "fused": False},
    "paper, batch 64, layer graph": {"batch_size": 64},
    "modern, batch 64": {"variant": "modern", "batch_size": 64, "optimizer": "sgd",
                         "loss": "ce"},
}


def run_hash(out, name):
    """Train run ``name`` (writing its checkpoints into the folder ``out``); the hash."""
    config = TrainConfig(**{"epochs": 2, "hessian_samples": 50, **RUNS[name]})
    trainer = Trainer(config, Data.from_mnist(_arrays(n_train=256, n_test=40), config), out,
                      progress=False, log=lambda s: None)
    trainer.fit()
    return trainer.model.weights_sha256()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({name: run_hash(os.path.join(tmp, str(i)), name)
                          for i, name in enumerate(sys.argv[1:])}))
