"""benchmarks/compare_torch.py, the PyTorch comparison, and its port of the networks.

PyTorch is not a dependency of minilenet: the tests that need it are skipped
where it is not installed; the one that checks the message for a missing
PyTorch runs everywhere.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilenet import lenet5, losses

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "compare_torch.py"
COLUMNS = ("minilenet_1", "minilenet_2", "torch_1", "torch_2")


def _torch_reference():
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("torch_reference",
                                                  BENCHMARKS / "torch_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_torch_it_says_how_to_install_it_and_exits_2(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install" in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_the_port_computes_minilenets_scores_from_its_weights(variant):
    """Same weights, same scores (float32): the port is the same network."""
    tr = _torch_reference()                      # skips where PyTorch is not installed
    import torch
    model = lenet5(variant, seed=3)
    x = np.random.default_rng(0).uniform(-0.1, 1.175, (5, 1, 32, 32)).astype(np.float32)
    ours = model.predict_scores(x)
    theirs = tr.from_minilenet(model)(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
    if variant == "paper":
        labels = np.array([0, 3, 9, 4, 4])
        loss, _ = losses.map_loss(ours, labels, j=0.1)
        ported = tr.map_loss(torch.from_numpy(ours), torch.from_numpy(labels), j=0.1)
        assert np.isclose(float(ported), loss, rtol=1e-5)


def test_the_port_refuses_averaging_subsampling():
    tr = _torch_reference()
    with pytest.raises(ValueError, match="averages"):
        tr.from_minilenet(lenet5(subsampling="average"))


@pytest.mark.slow
def test_quick_run_prints_the_table_and_writes_the_json(tmp_path, numba_runs):
    _torch_reference()
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"command: python {SCRIPT} --quick --json {out}" in text
    assert "1-minute load average at the start:" in text
    assert "1-minute load average at the end:" in text
    header = next(line for line in text.splitlines() if line.startswith("| images/s"))
    assert "minilenet(2) / best PyTorch" in header and "minilenet(1) / PyTorch(1)" in header
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["variant"], r["batch"]) for r in rows] == [
        ("paper", 1), ("paper", 64), ("paper", 256), ("modern", 64), ("paper", 1000)]
    for row in rows:
        rate = row["images_per_s"]
        assert all(rate[c] > 0 for c in COLUMNS), row
        assert all(len(row["seconds"][c]) == result["repeats"] for c in COLUMNS)
        assert row["ratio_2_best"] == pytest.approx(
            rate["minilenet_2"] / max(rate["torch_1"], rate["torch_2"]))
        assert row["ratio_1_1"] == pytest.approx(rate["minilenet_1"] / rate["torch_1"])
        table_row = next(line for line in text.splitlines()
                         if line.startswith(f"| {row['label']} |"))
        assert table_row.rstrip(" |").endswith(f"{row['ratio_1_1']:.2f}x")
    assert rows[0]["minilenet_path"] == "fused step"
    assert result["machine"]["torch"] and result["machine"]["cpus"] >= 1
    assert set(result["load_average_1min"]) == {"start", "end"}
    assert result["malloc_settings_applied"] is True and result["torch_alone"] is False


@pytest.mark.slow
def test_torch_alone_runs_no_minilenet_kernel(tmp_path):
    """--torch-alone: PyTorch's columns only, and glibc's malloc left at its defaults."""
    _torch_reference()
    out = tmp_path / "alone.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeats", "1",
                           "--images", "64", "--torch-alone", "--json", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| images/s"))
    assert "minilenet" not in header and "PyTorch 2 threads" in header
    result = json.loads(out.read_text())
    assert result["torch_alone"] is True and result["malloc_settings_applied"] is False
    for row in result["rows"]:
        assert set(row["images_per_s"]) == {"torch_1", "torch_2"}
        assert row["minilenet_path"] is None and "ratio_2_best" not in row


@pytest.mark.slow
def test_rows_measures_only_the_named_rows_and_refuses_an_unknown_one(tmp_path):
    _torch_reference()
    bad = subprocess.run([sys.executable, str(SCRIPT), "--rows", "paper_b1,nope"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert "--rows: unknown row 'nope'" in last and "paper_infer" in last
    out = tmp_path / "one.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeats", "1",
                           "--rows", "paper_infer", "--json", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert [r["key"] for r in json.loads(out.read_text())["rows"]] == ["paper_infer"]
