"""What a cold first run compiles, kernel by kernel.

    python benchmarks/compile_times.py [--json FILE] [-- TRAIN ARGS]

Runs ``minilenet train --limit 1000 --epochs 1`` (or the arguments after
``--``) in a new process with an empty Numba cache, records Numba's compile
events, and prints the wall time and, per kernel and argument types, the
compile time excluding the kernels it compiled inside (a kernel that calls
another compiles the callee first, for each set of argument types it meets).
Needs the MNIST files (``MINILENET_DATA``). docs/performance.md quotes it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
from numba.core import event
records, stack = [], []

class Listener(event.Listener):
    def on_start(self, ev):
        stack.append([time.perf_counter(), 0.0])
    def on_end(self, ev):
        start, inner = stack.pop()
        total = time.perf_counter() - start
        if stack:
            stack[-1][1] += total
        d = ev.data["dispatcher"]
        sig = ", ".join(str(a) for a in ev.data["args"])
        records.append({"kernel": d.py_func.__name__, "args": sig,
                        "seconds": total - inner})

event.register("numba:compile", Listener())
from minilenet.cli import main
start = time.perf_counter()
code = main(sys.argv[2:])
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "seconds": wall, "kernels": records}, f)
"""


def measure(train_args):
    """Run a cold ``minilenet`` command; (wall seconds of the process, its report)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "cache"))
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-c", CHILD, report, "train", "--out", os.path.join(tmp, "run"),
               "--quiet", *train_args]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        with open(report) as f:
            return wall, json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="also write the report here")
    p.add_argument("train_args", nargs="*", default=["--limit", "1000", "--epochs", "1"])
    args = p.parse_args(argv)
    wall, report = measure(args.train_args)
    kernels = {}
    for r in report["kernels"]:
        key = (r["kernel"], r["args"])
        kernels[key] = kernels.get(key, 0.0) + r["seconds"]
    total = sum(kernels.values())
    print(f"minilenet train {' '.join(args.train_args)}, empty Numba cache: "
          f"{wall:.1f} s wall, {total:.1f} s compiling {len(kernels)} kernel specialisations")
    by_kernel = {}
    for (name, _), s in kernels.items():
        n, t = by_kernel.get(name, (0, 0.0))
        by_kernel[name] = (n + 1, t + s)
    print(f"{'kernel':32s} {'types':>5s} {'seconds':>8s}")
    for name, (n, s) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:32s} {n:5d} {s:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"wall_s": wall, "compile_s": total,
                       "kernels": [{"kernel": k, "args": a, "seconds": s}
                                   for (k, a), s in sorted(kernels.items())]}, f, indent=1)


if __name__ == "__main__":
    main()
