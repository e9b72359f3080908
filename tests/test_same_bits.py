"""The same bits: short runs of the recipe and of batch training end at weights whose
SHA-256 is stated here, on 1 and on 2 threads.

The hashes hold a change that should not alter a single operation (a move, a split,
a rename) to what the code computed before it. Until the recipe is portable across
CPUs they are stated per machine (``FINGERPRINT``: the CPU Numba compiles for, the
OpenBLAS kernel, the versions of NumPy and Numba); on a machine not listed the test
still checks that 1 and 2 threads give the same bits, and prints the hashes to add.
"""
import hashlib

import numpy as np
import pytest

from minilenet.kernels import threads
from minilenet.train import Data, TrainConfig, Trainer
from test_train import _arrays

#: (name, TrainConfig overrides): the recipe one sample at a time and four at a time
#: (the fused step), four at a time and 64 at a time through the layer graph, and the
#: modern variant in batches of 64.
RUNS = (
    ("paper, batch 1, fused", {}),
    ("paper, batch 4, fused", {"batch_size": 4}),
    ("paper, batch 4, layer graph", {"batch_size": 4, "fused": False}),
    ("paper, batch 64, layer graph", {"batch_size": 64}),
    ("modern, batch 64", {"variant": "modern", "batch_size": 64, "optimizer": "sgd",
                          "loss": "ce"}),
)

#: FINGERPRINT -> {run name: SHA-256 of the weights after the run}.
HASHES = {
    # Intel Xeon with AVX-512 (LLVM: rocketlake), the development machine, 2026-12-02
    ("rocketlake", "SkylakeX", "2.4.6", "0.68.1"): {
        "paper, batch 1, fused": "39b4b69abe30f1997c7533bb8a7a923c31e08c8fc56b3a24a6f46b4919634dbe",
        "paper, batch 4, fused": "5c178b40ec4a192e9d9e758ae27e2c92618f6d4f0e26de67a1634152323a8df3",
        "paper, batch 4, layer graph":
            "5b378651b7d30405226a9ec6ccac5ccb6ce9781eb1e6a89df7185540a17f3de8",
        "paper, batch 64, layer graph":
            "812bd8a2b234c3c46d7cbb2531e0cde60a5ad6b374776772863e3eba2e4f2372",
        "modern, batch 64": "2ecd91941eab294debc599d862eaf7bbf75c50ebc688587dc91f429add7bea3e",
    },
}


def fingerprint():
    """What decides the bits today besides the code: (CPU Numba compiles for,
    OpenBLAS kernel, NumPy version, Numba version)."""
    import llvmlite.binding
    import numba
    cores = {lib.internal_api: getattr(lib, "architecture", "") for lib in
             threads.blas_libraries()}
    return (llvmlite.binding.get_host_cpu_name(), cores.get("openblas", "?"),
            np.__version__, numba.__version__)


def weights_hash(model):
    digest = hashlib.sha256()
    for name, array in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def run_hash(tmp_path, overrides):
    config = TrainConfig(**{"epochs": 2, "hessian_samples": 50, **overrides})
    trainer = Trainer(config, Data.from_mnist(_arrays(n_train=256, n_test=40), config),
                      str(tmp_path), progress=False, log=lambda s: None)
    trainer.fit()
    return weights_hash(trainer.model)


@pytest.mark.parametrize("name, overrides", RUNS, ids=[name for name, _ in RUNS])
def test_weights_are_the_stated_bits_on_one_and_two_threads(tmp_path, name, overrides,
                                                            numba_runs):
    before = threads.get_threads()
    try:
        found = []
        for n in (1, 2):
            threads.set_threads(n)
            found.append(run_hash(tmp_path / f"threads{n}", overrides))
    finally:
        threads.set_threads(before)
    assert found[0] == found[1], f"{name}: 1 and 2 threads give different weights"
    expected = HASHES.get(fingerprint(), {}).get(name)
    print(f"{fingerprint()!r}: {{{name!r}: {found[0]!r}}}")
    if expected is not None:
        assert found[0] == expected, f"{name}: the weights are not the stated bits"
