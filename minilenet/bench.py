"""Speed and memory of minilenet, measured in one run: the NumPy reference
against the Numba path, as ratios (``minilenet bench``; see docs/performance.md).

Every figure is the median of ``repeats`` timed runs after a warm-up, on the
paper network (C3 table, trainable subsampling, scaled tanh, RBF) in float32,
training with SDLM and the MAP loss.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import config, losses
from .fused import TrainStep, supports as fused_supports
from .models import lenet5
from .optimizers import SDLM


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.1, 1.175, (n, 1, 32, 32)).astype(np.float32),
            rng.integers(0, 10, n))


def _trainer_step(model, optimizer, loss_fn, batch=1):
    """The step the Trainer takes at ``batch``: fused when it can be, else through the layers."""
    if fused_supports(model, "map", optimizer, batch):
        return TrainStep(model, optimizer.rates(model), "map")

    def step(x, y):
        _, g = loss_fn(model.forward(x), y)
        model.backward(g, input_grad=False)
        optimizer.step(model)
    return step


def train_rate(backend, batch, images, repeats):
    """Training images/s at ``batch``: median over ``repeats`` runs of ``images`` images."""
    with config.using(backend):
        model = lenet5()
        x, y = _data(max(images, 500))
        optimizer = SDLM(mu=0.5)
        optimizer.start_epoch(0, model, x[:500])
        step = _trainer_step(model, optimizer, losses.get("map"), batch)
        n = images - images % batch or batch
        step(x[:batch], y[:batch])                        # warm-up (and compile)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(0, n, batch):
                step(x[i:i + batch], y[i:i + batch])
            times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def inference_rate(backend, batch, repeats):
    with config.using(backend):
        model = lenet5()
        x, _ = _data(batch)
        model.predict_scores(x, batch)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.predict_scores(x, batch)
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from minilenet import lenet5, fused
from minilenet.optimizers import SDLM
model = lenet5()
x = np.zeros((1, 1, 32, 32), np.float32)
opt = SDLM()
opt.start_epoch(0, model, np.zeros((4, 1, 32, 32), np.float32))
fused.train_step(model, opt.rates(model), x, np.array([0]), "map")
model.predict_scores(np.zeros((2, 1, 32, 32), np.float32))
print(time.perf_counter() - t0)
"""


def first_call_seconds(repeats=3):
    """(cold, cached) seconds from a new process to a first training step and a
    first batched forward: an empty Numba cache, then the same cache warm."""
    cold, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            for bucket in (cold, cached):
                out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                     capture_output=True, text=True).stdout
                bucket.append(float(out.split()[-1]))
    return statistics.median(cold), statistics.median(cached)


# Peak RSS in KiB. VmHWM belongs to this program's own address space; ru_maxrss
# would also count the parent's size at fork, which Linux carries across exec.
_TRAIN_AND_REPORT = """
import resource, sys
from minilenet.cli import main
main(sys.argv[1:])
try:
    with open("/proc/self/status") as f:
        print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def train_peak_memory(data=None, extra=()):
    """Peak resident memory (MiB) of ``minilenet train --epochs 1`` (full MNIST, the
    paper's recipe unless ``extra`` flags say otherwise), measured by that process."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", _TRAIN_AND_REPORT, "train", "--epochs", "1", "--quiet",
               "--out", out, *(["--data", data] if data else []), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        from .errors import UserError
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the memory run (minilenet train --epochs 1) failed: {last} "
                        f"(--no-memory skips it)")
    return int(proc.stdout.split()[-1]) / 1024


def epoch_seconds(backend, images):
    """Seconds for a batch-1 SDLM pass over ``images`` images (curvature estimate included)."""
    with config.using(backend):
        model = lenet5()
        x, y = _data(images)
        optimizer = SDLM(mu=0.5)
        t = time.perf_counter()
        optimizer.start_epoch(0, model, x[:500])
        step = _trainer_step(model, optimizer, losses.get("map"))
        for i in range(images):
            step(x[i:i + 1], y[i:i + 1])
        return time.perf_counter() - t


def run(batches=(1, 16, 64, 256), images=2048, repeats=5, epoch_images=60000,
        numpy_epoch_images=3000, memory=True, first_call=True, data=None, log=print):
    """Measure everything; returns a dict (also what --json writes)."""
    rows = []
    for batch in batches:
        n = images if batch > 1 else images // 2
        log(f"training, batch {batch} ...")
        rows.append({"what": f"train images/s, batch {batch}",
                     "numpy": train_rate("numpy", batch, n, repeats),
                     "numba": train_rate("numba", batch, n, repeats)})
    log("inference, batch 1000 ...")
    rows.append({"what": "inference images/s, batch 1000",
                 "numpy": inference_rate("numpy", 1000, repeats),
                 "numba": inference_rate("numba", 1000, repeats)})
    log(f"batch-1 SDLM epoch ({epoch_images:,} images on numba, "
        f"{numpy_epoch_images:,} on numpy, scaled) ...")
    numba_epoch = epoch_seconds("numba", epoch_images) * 60000 / epoch_images
    numpy_epoch = epoch_seconds("numpy", numpy_epoch_images) * 60000 / numpy_epoch_images
    rows.append({"what": "batch-1 SDLM epoch of 60,000, seconds",
                 "numpy": numpy_epoch, "numba": numba_epoch, "lower_is_better": True})
    result = {"rows": rows, "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                          "python": platform.python_version(), "numpy": np.__version__}}
    if first_call:
        log("first call (new processes) ...")
        result["compile_cold_s"], result["compile_cached_s"] = first_call_seconds()
    if memory:
        log("peak memory of one training epoch, without and with the paper's distortions ...")
        result["train_peak_rss_mib"] = train_peak_memory(data)
        result["train_distort_peak_rss_mib"] = train_peak_memory(data, ["--distort"])
    try:
        import numba
        result["machine"]["numba"] = numba.__version__
    except ImportError:
        pass
    return result


def format_table(result):
    lines = [f"{'':<40}{'numpy':>12}{'numba':>12}{'numba/numpy':>13}", "-" * 77]
    for row in result["rows"]:
        ratio = row["numba"] / row["numpy"]
        if row.get("lower_is_better"):
            ratio = 1 / ratio
        lines.append(f"{row['what']:<40}{row['numpy']:>12,.1f}{row['numba']:>12,.1f}"
                     f"{ratio:>12.1f}x")
    lines.append("-" * 77)
    if "compile_cold_s" in result:
        lines.append(f"numba first call: {result['compile_cold_s']:.1f} s cold, "
                     f"{result['compile_cached_s']:.2f} s with the on-disk cache")
    if "train_peak_rss_mib" in result:
        lines.append(f"peak resident memory of minilenet train (60,000 images): "
                     f"{result['train_peak_rss_mib']:,.0f} MiB, with --distort (600,000): "
                     f"{result['train_distort_peak_rss_mib']:,.0f} MiB")
    return "\n".join(lines)


def main(args):
    result = run(batches=tuple(args.batches), images=args.images, repeats=args.repeats,
                 epoch_images=args.epoch_images, numpy_epoch_images=args.numpy_epoch_images,
                 memory=not args.no_memory, first_call=not args.no_first_call,
                 data=args.data, log=lambda s: print(s, file=sys.stderr))
    print(format_table(result))
    if args.json:
        from .fileio import atomic_write
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0
