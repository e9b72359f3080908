"""What the recipe costs on this checkout against another one, the two alternating.

    python benchmarks/recipe_cost.py --other ../before [--rounds 5] [--images 20000]
                                     [--json FILE]

Each round runs one pass of the recipe (``minilenet train``'s defaults: batch-1 SDLM
on the fused step, the curvature on 500 images first, the test error on the 10,000
test images after) in a fresh process, first with this checkout and then with the
one at ``--other`` (a ``git worktree`` of an earlier commit, say), so a busy spell of
a shared machine falls on both alike. A warm-up round runs first (it compiles, into
each checkout's own Numba cache). Printed: the median over the rounds of each part,
in seconds, for both, and their ratio (this checkout / the other). With ``--env
NAME=VALUE`` the other side runs this checkout under that variable instead (for
example ``--env MINILENET_GEMM=blas``, the fast products).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: One pass in a fresh process, timed part by part; prints a JSON line.
WORKLOAD = """
import json, sys, tempfile, time
from minilenet import mnist
from minilenet.evaluation import evaluate
from minilenet.train import Data, TrainConfig, Trainer
config = TrainConfig(epochs=1, limit=int(sys.argv[1]))
data = Data.from_mnist(mnist.load_mnist(progress=False), config)
trainer = Trainer(config, data, tempfile.mkdtemp(), progress=False, log=lambda s: None)
images, labels, order = trainer.epoch_plan(0)
x = trainer.curvature_samples(images, order)
start = time.perf_counter()
trainer.optimizer.start_epoch(0, trainer.model, x)
curvature = time.perf_counter() - start
step = trainer.epoch_step(images, labels, order)
start = time.perf_counter()
trainer._run(step, trainer.chunks(images, labels, order), len(order))
steps = time.perf_counter() - start
start = time.perf_counter()
error = evaluate(trainer.model, data.test_x, data.test_labels)[0]
test = time.perf_counter() - start
print(json.dumps({"curvature": curvature, "steps": steps, "test error": test,
                  "pass": curvature + steps + test, "error": error}))
"""

PARTS = ("steps", "curvature", "test error", "pass")


def run_once(path, env, images):
    full = dict(os.environ, PYTHONPATH=path, **env)
    run = subprocess.run([sys.executable, "-c", WORKLOAD, str(images)], env=full, cwd=path,
                         capture_output=True, text=True)
    if run.returncode:
        last = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"error: the pass in {path} failed: {last}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="the other checkout (default: this one, with --env)")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the other side's process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    other = os.path.abspath(args.other) if args.other else HERE
    if not os.path.isdir(os.path.join(other, "minilenet")):
        parser.error(f"--other: {other} is not a checkout of minilenet (no minilenet/ folder in it)")
    if args.rounds < 1 or args.images < 1:
        parser.error(f"--rounds and --images must be at least 1, got {args.rounds} and {args.images}")
    other_env = dict(item.split("=", 1) for item in args.env)
    sides = {"this": (HERE, {}), "other": (other, other_env)}
    results = {side: [] for side in sides}
    for round_ in range(args.rounds + 1):                  # round 0 warms up (compiles)
        for side, (path, env) in sides.items():
            figures = run_once(path, env, args.images)
            if round_:
                results[side].append(figures)
        print(f"round {round_}: " + ", ".join(
            f"{side} {results[side][-1]['pass']:.2f} s" for side in sides if round_),
              flush=True)
    medians = {side: {part: statistics.median(r[part] for r in runs) for part in PARTS}
               for side, runs in results.items()}
    print(f"{args.images} images, {args.rounds} rounds; medians (s): this / other = ratio")
    for part in PARTS:
        a, b = medians["this"][part], medians["other"][part]
        print(f"  {part:11s} {a:8.3f} / {b:8.3f} = {a / b:.3f}")
    errors = {side: sorted({r["error"] for r in runs}) for side, runs in results.items()}
    print(f"  test errors after the pass: {errors}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": args.images, "rounds": args.rounds, "other": other,
                       "other_env": other_env, "medians": medians, "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
