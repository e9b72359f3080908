"""minilenet against a plain PyTorch CPU port of the same networks, in one process.

    python benchmarks/compare_torch.py [--repeats 7] [--images 2048] [--json FILE] [--quick]

PyTorch is not a dependency of minilenet; this script needs it (CPU build:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``), and
exits with status 2 and one line on stderr when it is missing.

Rows: the paper network training at batch 1, 64 and 256, the modern variant
training at batch 64, the paper network's inference at batch 1000. Each is
measured four ways, minilenet and PyTorch with 1 and with 2 threads, taking
turns run by run: each round runs every row's minilenet 1, PyTorch 1,
minilenet 2, PyTorch 2 in turn, so a busy spell of a shared machine falls on
both frameworks alike and on one round, which the median leaves out. Every
figure is the median images/s over ``--repeats`` timed rounds that follow one
untimed warm-up round (and Numba's compilation); a warning names the figures
whose runs differ by more than 1.5x.

minilenet runs what ``minilenet train`` runs: the Trainer's own model,
optimizer, loss and choice of step (the fused Numba step or the layer graph)
for ``--variant V --batch-size B``, with SDLM's curvature estimated on 500
images; inference is ``model.predict_scores(x, 1000)``. Its threads are set
with ``minilenet.kernels.threads.set_threads`` and
``threadpoolctl.threadpool_limits`` (BLAS and OpenMP pools); PyTorch's with
``torch.set_num_threads``, its oneDNN convolutions off at batch 1, where its own
are faster (``torch_reference.configure``).
The port (``torch_reference.py``) starts from the same weights. Inputs are uniform in
[-0.1, 1.175], (N, 1, 32, 32) float32, with random labels.
"""
import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("error: torch is not installed (minilenet does not need it; this comparison "
          "does): pip install torch --index-url https://download.pytorch.org/whl/cpu",
          file=sys.stderr)
    sys.exit(2)

import numba
import numpy as np
import threadpoolctl

import torch_reference
from minilenet import fused, lenet5
from minilenet.fileio import atomic_write
from minilenet import kernels
from minilenet.kernels import threads as minilenet_pool
from minilenet.optimizers import SDLM
from minilenet.train import Data, TrainConfig, Trainer

THREADS = (1, 2)
#: (key, label, variant, batch; None = inference at batch 1000)
ROWS = (("paper_b1", "paper network, training, batch 1", "paper", 1),
        ("paper_b64", "paper network, training, batch 64", "paper", 64),
        ("paper_b256", "paper network, training, batch 256", "paper", 256),
        ("modern_b64", "modern variant, training, batch 64", "modern", 64),
        ("paper_infer", "paper network, inference, batch 1000", "paper", None))
INFER_BATCH = 1000
CURVATURE_SAMPLES = 500
NOISY = 1.5          # warn when a figure's slowest run takes this many times its fastest
COLUMNS = [f"minilenet_{t}" for t in THREADS] + [f"torch_{t}" for t in THREADS]


def minilenet_trainer(variant, batch, x, y):
    """(step(x, labels) -> loss, model, "fused step" | "layer graph"): the step
    ``minilenet train --variant V --batch-size B`` takes, on the Trainer's own
    model, optimizer and loss, SDLM's curvature estimated on x[:500]."""
    config = TrainConfig(variant=variant, batch_size=batch,
                         **({"loss": "ce", "optimizer": "sgd"} if variant == "modern" else {}))
    blank = np.zeros((1, 32, 32), np.uint8)           # the Trainer wants data; the steps get x
    data = Data(blank, y[:1], x[:1], y[:1], blank[:, :28, :28])
    trainer = Trainer(config, data, out=None, progress=False, log=lambda line: None)
    model, optimizer = trainer.model, trainer.optimizer
    optimizer.start_epoch(0, model, x[:CURVATURE_SAMPLES]
                          if isinstance(optimizer, SDLM) else None)
    if trainer.use_fused:                             # as Trainer.train_epoch does
        step = fused.TrainStep(model, optimizer.rates(model), config.loss, config.j)
        step.compile(x[:batch], y[:batch])
        return (lambda xb, yb: step(xb, yb)[0]), model, "fused step"

    def layer_step(xb, yb):
        loss, dscores = trainer.loss_fn(model.forward(xb), yb)
        model.backward(dscores, input_grad=False)
        optimizer.step(model)
        return loss
    return layer_step, model, "layer graph"


@contextlib.contextmanager
def minilenet_threads(n):
    minilenet_pool.set_threads(n)
    with threadpoolctl.threadpool_limits(n):
        yield


@contextlib.contextmanager
def torch_settings(threads, batch):
    torch_reference.configure(threads, batch)
    yield


def passes(variant, batch, x, y, n, torch_alone=False):
    """{column: (threads context, one pass over n images -> last loss)}, in the
    order minilenet 1, torch 1, minilenet 2, torch 2, and minilenet's path; every
    column has its own model, all from the same weights. ``torch_alone``: the
    PyTorch columns only, built without running a minilenet kernel."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out, path = {}, "predict_scores"
    for t in THREADS:
        if batch is None or torch_alone:
            model = lenet5(variant)
        else:
            ml_step, model, path = minilenet_trainer(variant, batch, x, y)
        net = torch_reference.from_minilenet(model)
        if batch is None:
            net.eval()

            def ml(model=model):
                model.predict_scores(x[:n], INFER_BATCH)
                return 0.0

            def pt(net=net):
                with torch.inference_mode():
                    for i in range(0, n, INFER_BATCH):
                        net(xt[i:i + INFER_BATCH])
                return 0.0
        else:
            def ml(step=None if torch_alone else ml_step):
                for i in range(0, n, batch):
                    loss = step(x[i:i + batch], y[i:i + batch])
                return loss

            def pt(step=torch_reference.train_step(net)):
                for i in range(0, n, batch):
                    loss = step(xt[i:i + batch], yt[i:i + batch])
                return loss
        if not torch_alone:
            out[f"minilenet_{t}"] = (lambda t=t: minilenet_threads(t), ml)
        out[f"torch_{t}"] = (lambda t=t: torch_settings(t, batch or INFER_BATCH), pt)
    return out, path


def interleaved(jobs, repeats, log):
    """Seconds of ``repeats`` timed passes of every (row, column) in ``jobs``
    ({(row, column): (threads context, pass)}), after one untimed round: each round
    runs every row's columns in turn (minilenet 1, torch 1, minilenet 2, torch 2),
    so a busy spell spreads over all figures and the median leaves it out.
    Also the last loss of each job."""
    seconds, losses = {job: [] for job in jobs}, {}
    for round_ in range(repeats + 1):
        log("warm-up round (and compilation) ..." if round_ == 0
            else f"timed round {round_} of {repeats} ...")
        for job, (threads, run) in jobs.items():
            with threads():
                start = time.perf_counter()
                losses[job] = run()
                elapsed = time.perf_counter() - start
            if round_:
                seconds[job].append(elapsed)
    return seconds, losses


def images_per_run(batch, images):
    if batch is None:
        return max(images // INFER_BATCH, 1) * INFER_BATCH
    if batch == 1:
        return max(images // 4, 1)          # PyTorch takes ~2 ms an image here
    return max(images // batch, 1) * batch


def machine():
    """The CPUs and the versions."""
    model = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    return {"cpus": os.cpu_count(), "processor": model, "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "torch": torch.__version__,
            "threadpoolctl": threadpoolctl.__version__,
            "blas": [f"{i['internal_api']} {i['version']} ({i['filepath'].rsplit('/', 1)[-1]})"
                     for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]}


def run(images, repeats, log=print, torch_alone=False, keys=None):
    """The rows of the table (dicts, as --json writes them); ``keys``: only these rows."""
    chosen = [row for row in ROWS if keys is None or row[0] in keys]
    rng = np.random.default_rng(0)
    size = max(images_per_run(batch, images) for *_, batch in chosen)
    size = max(size, CURVATURE_SAMPLES)
    x = rng.uniform(-0.1, 1.175, (size, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size)
    jobs, paths = {}, {}
    for key, label, variant, batch in chosen:
        log(f"setting up: {label} ({images_per_run(batch, images)} images a run) ...")
        columns, paths[key] = passes(variant, batch, x, y, images_per_run(batch, images),
                                     torch_alone)
        jobs.update({(key, c): job for c, job in columns.items()})
    seconds, losses = interleaved(jobs, repeats, log)
    rows = []
    for key, label, variant, batch in chosen:
        n = images_per_run(batch, images)
        times = {c: seconds[key, c] for c in COLUMNS if (key, c) in seconds}
        rate = {c: n / statistics.median(t) for c, t in times.items()}
        row = {"key": key, "label": label, "variant": variant,
               "batch": batch or INFER_BATCH, "images_per_run": n,
               "minilenet_path": None if torch_alone else paths[key],
               "torch_onednn": batch != 1, "images_per_s": rate, "seconds": times,
               "spread": {c: max(t) / min(t) for c, t in times.items()},
               "final_loss": {c: float(losses[key, c]) for c in times}}
        if not torch_alone:
            row["ratio_2_best"] = rate["minilenet_2"] / max(rate["torch_1"], rate["torch_2"])
            row["ratio_1_1"] = rate["minilenet_1"] / rate["torch_1"]
        rows.append(row)
    return rows


def format_table(rows):
    alone = "ratio_1_1" not in rows[0]
    columns = [c for c in COLUMNS if not (alone and c.startswith("minilenet"))]
    head = ["images/s"] + [c.replace("minilenet_", "minilenet ").replace("torch_", "PyTorch ")
                           + " thread" + ("s" if c.endswith("2") else "") for c in columns]
    if not alone:
        head += ["minilenet(2) / best PyTorch", "minilenet(1) / PyTorch(1)"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in rows:
        rate = row["images_per_s"]
        cells = [row["label"]] + [f"{rate[c]:,.0f}" for c in columns]
        if not alone:
            cells += [f"{row['ratio_2_best']:.2f}x", f"{row['ratio_1_1']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, help="timed runs per figure (default 7; --quick 2)")
    p.add_argument("--images", type=int,
                   help="images per timed run at batch 64 and 256 (rounded to whole batches; "
                        "batch 1 runs a quarter, inference whole 1000s); default 2048, --quick 256")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: a smoke test, not a measurement")
    p.add_argument("--json", metavar="FILE", help="write every figure and the machine here")
    p.add_argument("--torch-alone", action="store_true",
                   help="PyTorch's columns only, in a process where no minilenet kernel runs "
                        "(so glibc's malloc keeps its defaults: minilenet's setting, "
                        "kernels.memory.MALLOC_SETTINGS, applies to the whole process)")
    p.add_argument("--rows", metavar="KEY,...",
                   help="only these rows, by key: " + ", ".join(r[0] for r in ROWS))
    args = p.parse_args(argv)
    keys = None if args.rows is None else args.rows.split(",")
    unknown = [k for k in keys or () if k not in [r[0] for r in ROWS]]
    if unknown:
        p.error(f"--rows: unknown row {unknown[0]!r}; the rows are "
                + ", ".join(r[0] for r in ROWS))
    repeats = args.repeats if args.repeats is not None else 2 if args.quick else 7
    images = args.images if args.images is not None else 256 if args.quick else 2048
    if repeats < 1 or images < 1:
        p.error(f"--repeats and --images must be at least 1, got {repeats} and {images}")

    command = shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    load_start = os.getloadavg()[0]
    print(f"command: {command}", flush=True)
    print(f"1-minute load average at the start: {load_start:.2f}")
    if load_start > 0.5:
        print(f"warning: the load average is {load_start:.2f} (above 0.5): something else "
              f"is running, the figures will be low and noisy")
    rows = run(images, repeats, log=lambda line: print(line, file=sys.stderr, flush=True),
               torch_alone=args.torch_alone, keys=keys)
    load_end = os.getloadavg()[0]
    info = machine()
    print()
    print(format_table(rows))
    print()
    if not args.torch_alone:
        print("minilenet's step: " + "; ".join(f"{r['label']}: {r['minilenet_path']}"
                                               for r in rows))
    print(f"{'--quick: a smoke test, not a measurement; ' if args.quick else ''}"
          f"median of {repeats} timed runs each, interleaved; {info['cpus']} CPUs "
          f"({info['processor']}), Python {info['python']}, NumPy {info['numpy']}, "
          f"Numba {info['numba']}, "
          f"PyTorch {info['torch']}")
    print(f"1-minute load average at the end: {load_end:.2f}")
    diverged = [f"{r['label']} ({c})" for r in rows for c, loss in r["final_loss"].items()
                if not np.isfinite(loss)]
    noisy = [f"{r['label']} ({c}, {s:.1f}x)" for r in rows for c, s in r["spread"].items()
             if s > NOISY]
    if noisy:
        print(f"warning: the slowest run took over {NOISY}x the fastest in "
              f"{', '.join(noisy)}: the machine was busy part of the time")
    if diverged:
        print(f"warning: the loss became non-finite in {', '.join(diverged)}: those runs "
              f"computed on NaN or infinity")
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump({"command": command, "repeats": repeats, "images": images,
                       "quick": args.quick, "torch_alone": args.torch_alone,
                       "malloc_settings_applied": bool(kernels.memory.applied),
                       "machine": info,
                       "load_average_1min": {"start": load_start, "end": load_end},
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
