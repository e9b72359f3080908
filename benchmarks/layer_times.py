"""Where a training step's time goes: each layer's forward and backward, in ms.

    python benchmarks/layer_times.py [--variant paper|modern] [--batch 64] [--repeats 15]
    python benchmarks/layer_times.py --inference [--batch 1000]

Runs the layer graph the way ``minilenet train`` does for a batch of 8 or more
(the first layer's input gradient skipped, then the optimizer's step: SDLM for
the paper network, SGD with momentum for the modern one) on random inputs, with
1 and then 2 threads, and prints the median over ``--repeats`` steps of each
layer's forward and backward, the loss and the update; with ``--inference``,
the forward pass alone (what ``predict_scores`` runs). NumPy's BLAS is held to
one thread throughout (the kernels' own threads are the ones counted).
docs/performance.md quotes it.
"""
import argparse
import statistics
import time

import numpy as np
import threadpoolctl

from minilenet import lenet5, losses
from minilenet.kernels import threads
from minilenet.optimizers import SDLM, SGD


def step_times(model, loss_fn, optimizer, x, y, repeats):
    """{(name, "f" | "b"): median ms} and the median ms of a whole step (the forward
    pass only when ``loss_fn`` is None)."""
    layers = list(model.layers.items())
    times, steps = {}, []

    def timed(key, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        times.setdefault(key, []).append(time.perf_counter() - start)
        return out

    for _ in range(repeats + 1):                        # the first is a warm-up
        start = time.perf_counter()
        h = x
        for name, layer in layers:
            h = timed((name, "f"), layer.forward, h)
        if loss_fn is None:
            steps.append(time.perf_counter() - start)
            continue
        _, g = timed(("loss", "f"), loss_fn, h, y)
        for name, layer in reversed(layers[1:]):
            g = timed((name, "b"), layer.backward, g)
        timed((layers[0][0], "b"), layers[0][1].backward_params, g)
        timed(("update", "b"), optimizer.step, model)
        steps.append(time.perf_counter() - start)
    return ({key: statistics.median(v[1:]) * 1e3 for key, v in times.items()},
            statistics.median(steps[1:]) * 1e3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("paper", "modern"), default="paper")
    p.add_argument("--batch", type=int, help="default 64; 1000 with --inference")
    p.add_argument("--inference", action="store_true", help="the forward pass alone")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    if args.batch is None:
        args.batch = 1000 if args.inference else 64
    if args.batch < 1 or args.repeats < 1:
        p.error(f"--batch and --repeats must be at least 1, got {args.batch} and {args.repeats}")
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.1, 1.175, (args.batch, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    model = lenet5(args.variant)
    if args.inference:
        loss_fn = optimizer = None
    elif args.variant == "paper":
        loss_fn, optimizer = losses.get("map"), SDLM(mu=0.5)
        optimizer.start_epoch(0, model, x)
    else:
        loss_fn, optimizer = losses.get("ce"), SGD(lr=0.01, momentum=0.9)
    names = [name for name in model.layers] + ([] if args.inference else ["loss", "update"])
    columns = {}
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        for count in (1, 2):
            threads.set_threads(count)
            columns[count] = step_times(model, loss_fn, optimizer, x, y, args.repeats)
    what, unit, units = (("inference", "pass", "passes") if args.inference
                         else ("training", "step", "steps"))
    print(f"{args.variant} network, {what}, batch {args.batch}, "
          f"median of {args.repeats} {units}, ms")
    print(f"{'layer':<10}{'forward 1':>11}{'backward 1':>12}{'forward 2':>11}{'backward 2':>12}")
    for name in names:
        cells = [columns[c][0].get((name, d)) for c in (1, 2) for d in ("f", "b")]
        print(f"{name:<10}" + "".join(f"{'' if v is None else f'{v:.3f}':>{w}}"
                                      for v, w in zip(cells, (11, 12, 11, 12))))
    for count in (1, 2):
        ms = columns[count][1]
        print(f"whole {unit}, {count} thread{'s' if count > 1 else ''}: {ms:.2f} ms "
              f"({args.batch / ms * 1e3:,.0f} images/s)")


if __name__ == "__main__":
    main()
