"""OpenMP's wait policy, measured: ``python benchmarks/wait_policy.py [--rounds 2]``.

minilenet sets ``OMP_WAIT_POLICY=PASSIVE`` (minilenet/kernels/numba_jit.py).
This script measures why: the training and inference rates of the batch paths
with that policy and with OpenMP's default, on a quiet machine and with one
core kept busy by another process (as on a shared machine, or beside a
notebook). Each configuration runs in its own process (the policy is read when
OpenMP starts), alternating, ``--rounds`` times; it prints every run and the
medians. docs/performance.md quotes its output.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROWS = ("b1 fused", "b64 fused", "b64 layers", "modern b64", "inference b1000")

CHILD = r"""
import statistics, time, numpy as np
from minilenet import fused, lenet5, losses
from minilenet.optimizers import SDLM, SGD
rng = np.random.default_rng(0)
X = rng.uniform(-0.1, 1.175, (2048, 1, 32, 32)).astype(np.float32)
Y = rng.integers(0, 10, 2048)

def rate(step, bs, n=2048, reps=5):
    step(X[:bs], Y[:bs])
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for i in range(0, n, bs):
            step(X[i:i + bs], Y[i:i + bs])
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)

def paper(use_fused):
    m, o = lenet5(), SDLM(mu=0.5)
    o.start_epoch(0, m, X[:500])
    if use_fused:
        return fused.TrainStep(m, o.rates(m), "map")
    loss = losses.get("map")
    def step(x, y):
        m.backward(loss(m.forward(x), y)[1])
        o.step(m)
    return step

def modern():
    m, o = lenet5("modern"), SGD(lr=0.01, momentum=0.9)
    def step(x, y):
        m.backward(losses.softmax_cross_entropy(m.forward(x), y)[1])
        o.step(m)
    return step

m = lenet5()
m.predict_scores(X[:1000])
times = []
for _ in range(5):
    t = time.perf_counter()
    m.predict_scores(X[:1000])
    times.append(time.perf_counter() - t)
print(rate(paper(True), 1, 512), rate(paper(True), 64), rate(paper(False), 64),
      rate(modern(), 64), 1000 / statistics.median(times))
"""


def measure(policy):
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    else:
        env["OMP_WAIT_POLICY"] = "default"     # not a valid value: libgomp keeps its default
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return [float(v) for v in out]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"command: python benchmarks/wait_policy.py --rounds {args.rounds}")
    print(f"1-minute load average at the start: {os.getloadavg()[0]:.2f}")
    results = {}
    for load in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
        try:
            time.sleep(0.5)
            for _ in range(args.rounds):
                for policy in ("PASSIVE", None):
                    key = (policy or "OpenMP default", "one core busy" if load else "quiet")
                    results.setdefault(key, []).append(measure(policy))
                    print(key, " ".join(f"{v:,.0f}" for v in results[key][-1]), flush=True)
        finally:
            if busy:
                busy.kill()
    print("\n| images/s (median) | " + " | ".join(ROWS) + " |")
    print("|---" * (len(ROWS) + 1) + "|")
    for (policy, load), runs in results.items():
        medians = [statistics.median(col) for col in zip(*runs)]
        print(f"| {policy}, {load} | " + " | ".join(f"{v:,.0f}" for v in medians) + " |")


if __name__ == "__main__":
    main()
