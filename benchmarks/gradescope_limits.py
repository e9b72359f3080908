"""Grade a solved copy of every unit with the Gradescope bundle, under
Gradescope's default limits: 768 MB of memory and half a CPU (cgroup v1 or v2,
as root), and report the wall time and the peak memory against its 10 minutes.

    sudo python benchmarks/gradescope_limits.py [--json benchmarks/gradescope_limits.json]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from minilenet.cli import main as cli
from minilenet.teaching.assign import assign

MEMORY = 768 * 10**6
CPU_QUOTA, CPU_PERIOD = 50_000, 100_000


def limited_group():
    """A cgroup with Gradescope's limits, as (files to join, reader of its peak memory)."""
    name = f"minilenet-gradescope-{os.getpid()}"
    v2 = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if os.path.isdir("/sys/fs/cgroup/memory") and os.path.isdir("/sys/fs/cgroup/cpu"):
        cpu, mem = (os.path.join("/sys/fs/cgroup", c, name) for c in ("cpu", "memory"))
        os.makedirs(cpu), os.makedirs(mem)
        _write(os.path.join(cpu, "cpu.cfs_period_us"), CPU_PERIOD)
        _write(os.path.join(cpu, "cpu.cfs_quota_us"), CPU_QUOTA)
        _write(os.path.join(mem, "memory.limit_in_bytes"), MEMORY)
        return [os.path.join(cpu, "tasks"), os.path.join(mem, "tasks")], \
            lambda: int(open(os.path.join(mem, "memory.max_usage_in_bytes")).read())
    group = os.path.join(v2, name)
    os.makedirs(group)
    _write(os.path.join(group, "cpu.max"), f"{CPU_QUOTA} {CPU_PERIOD}")
    _write(os.path.join(group, "memory.max"), MEMORY)
    return [os.path.join(group, "cgroup.procs")], \
        lambda: int(open(os.path.join(group, "memory.peak")).read())


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="minilenet-gradescope-")
    try:
        bundle = os.path.join(base, "autograder.zip")
        cli(["autograder", bundle, "--secret", "benchmark"])
        root = os.path.join(base, "autograder")
        with zipfile.ZipFile(bundle) as z:
            z.extractall(root)
        env = os.environ | {"AUTOGRADER_ROOT": root, "MINILENET_PYTHON": sys.executable,
                            "MINILENET_SKIP_DEPS": "1"}
        subprocess.run(["bash", os.path.join(root, "setup.sh")], env=env, check=True)
        assign(os.path.join(root, "submission"), solved=True)
        join, peak = limited_group()
        start = time.monotonic()
        subprocess.run(["bash", os.path.join(root, "run_autograder")], env=env, check=True,
                       preexec_fn=lambda: [_write(path, os.getpid()) for path in join])
        seconds = time.monotonic() - start
        with open(os.path.join(root, "results", "results.json")) as f:
            results = json.load(f)
        most = sum(t["max_score"] for t in results["tests"])
        figures = {"units": sum(t["max_score"] > 0 for t in results["tests"]),
                   "score": results["score"], "max_score": most,
                   "wall_seconds": round(seconds, 1), "peak_memory_mb": round(peak() / 1e6),
                   "limits": "768 MB, half a CPU (cgroup)", "cpu": _cpu()}
        print(json.dumps(figures, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cpu():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                    "unknown")


if __name__ == "__main__":
    main()
