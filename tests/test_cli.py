import subprocess
import sys

import pytest

from minilenet import config
from minilenet.cli import main


def test_summary_paper(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    for number in ("156", "122,304", "5,880", "1,516", "151,600", "2,000", "48,120",
                   "10,164", "840", "60,000", "340,908"):
        assert number in out


def test_summary_modern(capsys):
    assert main(["summary", "--variant", "modern"]) == 0
    assert "MaxPool2D" in capsys.readouterr().out


@pytest.mark.slow
def test_gradcheck_command_passes_and_names_every_layer_type():
    """Run as a user would: the installed console entry point, in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "minilenet", "gradcheck"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    numba = ["Conv2D [numba]"] if "numba" in config.backends() else []
    for name in ["Conv2D [numpy]", *numba, "TableConv2D C3", "Subsampling sum",
                 "Subsampling average", "AvgPool2D", "MaxPool2D", "ScaledTanh", "Tanh",
                 "Sigmoid", "ReLU", "Dense", "Flatten", "EuclideanRBF", "mse_loss",
                 "map_loss", "softmax_cross_entropy", "lenet5 paper + mse",
                 "lenet5 paper + map", "lenet5 modern + ce"]:
        assert name in proc.stdout, name
    assert proc.stdout.strip().endswith("0 failed")


def test_gradcheck_exits_nonzero_on_failure(monkeypatch, capsys):
    from minilenet import gradcheck_suite
    from minilenet.gradcheck import CheckResult
    monkeypatch.setattr(gradcheck_suite, "run_suite",
                        lambda progress=None, units=None: [CheckResult("x", "dx", 0.5)])
    assert main(["gradcheck"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_prints_the_ratio_table_and_writes_json(tmp_path, capsys, numba_runs):
    """A tiny run of the benchmark (the real one is docs/performance.md's command)."""
    import json
    out = tmp_path / "bench.json"
    assert main(["bench", "--batches", "1", "8", "--images", "16", "--repeats", "1",
                 "--epoch-images", "8", "--numpy-epoch-images", "8", "--no-memory",
                 "--no-first-call", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train images/s, batch 8" in text and "numba/numpy" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows][-1].startswith("batch-1 SDLM epoch")
    assert all(r["numpy"] > 0 and r["numba"] > 0 for r in rows)


def test_bitmaps_command(tmp_path, capsys):
    assert main(["bitmaps", "--png", str(tmp_path / "codes.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digit 0\n") and "closest pair: 6 and 8, 10 pixels apart" in out
    assert (tmp_path / "codes.png").read_bytes()[:4] == b"\x89PNG"
