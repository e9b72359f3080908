"""The Gradescope bundle, run in a folder laid out like /autograder."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minilenet.cli import main
from minilenet.teaching.assign import assign

pytestmark = pytest.mark.slow
UNITS = "dense.forward,dense.backward"

#: The fields Gradescope documents for results.json (its autograder specifications).
TOP = {"score", "execution_time", "output", "output_format", "test_output_format",
       "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
       "leaderboard"}
TEST = {"score", "max_score", "status", "name", "name_format", "number", "output",
        "output_format", "tags", "visibility", "extra_data"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def valid(results):
    assert set(results) <= TOP and isinstance(results["score"], (int, float))
    assert results.get("output_format", "text") in FORMATS
    assert results.get("test_output_format", "text") in FORMATS
    for test in results["tests"]:
        assert set(test) <= TEST and {"name", "score", "max_score"} <= set(test)
        assert test.get("status", "passed") in {"passed", "failed"}
        assert test.get("visibility", "visible") in VISIBILITY
    return results


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradescope")
    bundle = base / "autograder.zip"
    assert main(["autograder", str(bundle), "--units", UNITS, "--secret", "s3cret"]) == 0
    root = base / "autograder"
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder", "source/secret"} <= set(names)
        z.extractall(root)
    env = os.environ | {"AUTOGRADER_ROOT": str(root), "MINILENET_PYTHON": sys.executable,
                        "MINILENET_SKIP_DEPS": "1"}
    env.pop("PYTHONPATH", None)
    setup = subprocess.run(["bash", str(root / "setup.sh")], env=env, capture_output=True,
                           text=True, timeout=300)
    assert setup.returncode == 0, setup.stderr
    assert f"grader ready in {root / 'grader' / 'minilenet'}" in setup.stdout
    assert oct((root / "grader").stat().st_mode & 0o777) == "0o700"
    assert oct((root / "grader" / "secret").stat().st_mode & 0o777) == "0o600"
    return root, env, base


def _run(autograder, copy, inside=None):
    root, env, _ = autograder
    submission = root / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    shutil.copytree(copy, submission / inside if inside else submission)
    shutil.rmtree(root / "results", ignore_errors=True)
    proc = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return valid(json.loads((root / "results" / "results.json").read_text()))


def test_a_solved_copy_gets_full_marks(autograder):
    copy = assign(autograder[2] / "solved", UNITS.split(","), solved=True)
    results = _run(autograder, copy)
    assert results["score"] == 8
    graded = [t for t in results["tests"] if t["max_score"] > 0]
    assert [t["name"] for t in graded] == ["dense.backward", "dense.forward"]
    assert all(t["status"] == "passed" for t in graded)
    hidden = [t for t in results["tests"] if t["name"].endswith("hidden cases")]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert _run(autograder, copy, inside="my-copy")["score"] == 8       # a zip of the folder


def test_an_empty_copy_gets_zero(autograder):
    copy = assign(autograder[2] / "empty", UNITS.split(","))
    results = _run(autograder, copy)
    assert results["score"] == 0
    assert {t["status"] for t in results["tests"]} == {"failed"}


def test_a_crashing_or_hostile_copy_gets_zero(autograder):
    copy = assign(autograder[2] / "hostile", UNITS.split(","), solved=True)
    init = copy / "minilenet" / "__init__.py"
    init.write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                    "raise SystemExit(0)\n" + init.read_text())
    results = _run(autograder, copy)
    assert results["score"] == 0 and len(results["tests"]) >= 2
    nothing = autograder[2] / "nothing"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("no package")
    results = _run(autograder, nothing)
    assert results["score"] == 0 and "no minilenet/ package" in results["output"]


def test_results_are_written_even_when_python_cannot_start(autograder):
    root, env, _ = autograder
    shutil.rmtree(root / "results", ignore_errors=True)
    proc = subprocess.run(["bash", str(root / "run_autograder")],
                          env=env | {"MINILENET_PYTHON": "/bin/false"}, timeout=60)
    assert proc.returncode == 0
    results = valid(json.loads((root / "results" / "results.json").read_text()))
    assert results["score"] == 0 and "could not start" in results["output"]
    assert Path(root / "grader" / "autograder.json").is_file()
