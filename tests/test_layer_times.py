"""benchmarks/layer_times.py: per-layer times of a training step or an inference pass."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "layer_times.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("args,layers,unit", [
    (("--variant", "modern", "--batch", "8"), ["c1", "s2", "output", "loss", "update"], "step"),
    (("--inference", "--batch", "8"), ["c1", "s2_act", "output"], "pass")])
def test_prints_a_row_per_layer_and_the_whole_step_on_one_and_two_threads(args, layers, unit):
    proc = _run(*args, "--repeats", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = [line.split()[0] for line in lines[2:] if not line.startswith("whole")]
    assert all(name in names for name in layers), names
    if unit == "pass":                      # forward only: no backward column filled
        assert "loss" not in names and all(len(line.split()) == 3 for line in lines[2:-2])
    assert [line.split(",")[0] for line in lines[-2:]] == [f"whole {unit}"] * 2
    assert "1 thread:" in lines[-2] and "2 threads:" in lines[-1]


def test_a_batch_below_one_is_one_error_line():
    proc = _run("--inference", "--batch", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "error: --batch and --repeats must be at least 1, got 0 and 15")
