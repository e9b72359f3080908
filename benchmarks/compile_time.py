"""Numba first-call cost: compile every kernel cold (empty on-disk cache), then
again in a new process with the cache warm. Prints seconds for each.

    python benchmarks/compile_time.py [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

WARM_UP = """
import time
t0 = time.perf_counter()
import numpy as np
from minilenet import lenet5, losses
for dtype in (np.float32, np.float64):
    model = lenet5(dtype=dtype, backend="numba")
    x = np.zeros((2, 1, 32, 32), dtype)
    _, g = losses.mse_loss(model(x), np.array([0, 1]))
    model.backward(g)
print(time.perf_counter() - t0)
"""


def first_call_seconds(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", WARM_UP], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def measure(repeats=3):
    cold, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            cold.append(first_call_seconds(cache_dir))
            cached.append(first_call_seconds(cache_dir))
    return {"cold_s": statistics.median(cold), "cached_s": statistics.median(cached),
            "repeats": repeats}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    result = measure(parser.parse_args().repeats)
    print(json.dumps(result))
