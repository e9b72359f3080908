"""Instructor tooling: the solution markers, the student copy and the grader."""
import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import minilenet
from minilenet.teaching import units as units_mod
from minilenet.teaching.assign import NUMBA_FILES, assign, locations
from minilenet.teaching.units import MARKED_FILES, UNITS, find_regions, withhold

PACKAGE = Path(minilenet.__file__).parent


# ---------------------------------------------------------------- markers
def _source_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_markers_only_in_the_marked_files_and_inside_function_bodies():
    allowed = {PACKAGE / rel for rel in MARKED_FILES}
    for path in _source_files():
        lines = path.read_text().splitlines(keepends=True)
        regions = find_regions(lines, str(path))            # balanced, not nested, known units
        if path not in allowed:
            assert not regions, f"{path}: markers outside {MARKED_FILES}"
            continue
        tree = ast.parse("".join(lines))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for region in regions:
            begin = region.begin + 1
            holders = [f for f in functions if f.lineno < begin <= f.end_lineno]
            assert holders, f"{path}:{begin}: a region outside any function"
            function = max(holders, key=lambda f: f.lineno)
            assert all(f.end_lineno <= function.end_lineno for f in functions
                       if begin < f.lineno <= region.end + 1), f"{path}:{begin}: crosses a def"
            body = function.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                assert body[0].end_lineno < begin, f"{path}:{begin}: a region in a docstring"
            last = body[-1]
            assert not (isinstance(last, ast.Return) and region.begin < last.lineno
                        <= region.end + 1 and function.name != "table_forward_one"), \
                f"{path}:{begin}: the function's return is inside the region"


def test_every_unit_is_marked_in_numpy_code_and_its_numba_twin():
    where = locations()
    for unit, places in where.items():
        numba_side = [p for p in places if any(f"minilenet/{rel}:" in p for rel in NUMBA_FILES)]
        assert len(numba_side) < len(places), f"{unit}: no region in the NumPy code"
        if UNITS[unit].kernels:
            assert numba_side, f"{unit}: its Numba twin is unmarked"


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_withholding_one_unit_leaves_valid_python(unit):
    for rel in MARKED_FILES:
        lines = (PACKAGE / rel).read_text().splitlines(keepends=True)
        stubbed = "".join(withhold(lines, [unit], rel))
        compile(stubbed, rel, "exec")
        if stubbed != "".join(lines):
            assert f'NotImplementedError("unit {unit}: yours to write, see notebooks/' in stubbed


@pytest.mark.parametrize("text,message", [
    ("    # BEGIN SOLUTION im2col\n    # BEGIN SOLUTION col2im\n", "inside the region"),
    ("    # BEGIN SOLUTION im2col\n    x = 1\n", "never closed"),
    ("    # END SOLUTION\n", "without BEGIN"),
    ("    # BEGIN SOLUTION\n    # END SOLUTION\n", "names no unit"),
    ("    # BEGIN SOLUTION conv.sideways\n    # END SOLUTION\n", "unknown unit"),
    ("    # BEGIN SOLUTON im2col\n", "malformed marker"),
])
def test_marker_lint_refuses_bad_markers(text, message):
    with pytest.raises(ValueError, match=message):
        find_regions(text.splitlines(keepends=True))


def test_stub_keeps_the_indentation():
    lines = ["def f(x):\n", "        # BEGIN SOLUTION map_loss\n", "        y = x\n",
             "        # END SOLUTION\n", "        return y\n"]
    out = withhold(lines, ["map_loss"])
    assert out[1].startswith("        raise NotImplementedError(\"unit map_loss:")
    assert "notebooks/04_rbf_output.ipynb" in out[1] and out[2] == "        return y\n"


# ------------------------------------------------------------ the copies
def _run(copy, *args, timeout=600, env=None):
    """``python -m minilenet ...`` run in ``copy`` (its own package, not the installed one)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",
                                                                     "MINILENET_BACKEND")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "minilenet", *args], cwd=copy,
                          capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("copies")
    return {"student": assign(base / "student"), "solution": assign(base / "solution", []),
            "solved": assign(base / "solved", solved=True), "base": base}


def test_student_copy_contents(copies):
    copy = copies["student"]
    for item in ("minilenet", "tests", "notebooks", "docs", "setup.cfg", "README.md"):
        assert (copy / item).exists(), item
    assert not (copy / "minilenet" / "teaching" / "grading.py").exists()   # hidden cases
    numpy_ref = (copy / "minilenet" / "kernels" / "numpy_ref.py").read_text()
    assert "+= cols[:, :, i, j]" not in numpy_ref                        # col2im withheld
    assert "raise NotImplementedError(\"unit col2im" in numpy_ref
    readme = (copy / "README.md").read_text()
    assert all(f"`{unit}`" in readme for unit in UNITS)
    assert "`minilenet check UNIT`" in readme and "--unit" in readme      # the student's loop
    for nb in (copy / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
    probe = ("import minilenet.config as c, minilenet.fused as f, minilenet; "
             "print(minilenet.__file__, c.default_backend(), bool(f.mismatch(minilenet.lenet5())))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=copy, capture_output=True,
                         text=True, check=True).stdout.split()
    assert Path(out[0]).is_relative_to(copy) and out[1:] == ["numpy", "True"]


@pytest.mark.slow
def test_student_gradcheck_reports_not_implemented_and_goes_on(copies):
    proc = _run(copies["student"], "gradcheck")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not implemented  (unit scaled_tanh: yours to write" in proc.stdout
    assert "Tanh                                            dx" in proc.stdout     # still checked
    assert proc.stdout.strip().endswith("not implemented")


@pytest.mark.slow
def test_a_solved_student_copy_passes_its_gradcheck_and_trains(copies, tmp_path):
    from minilenet.idx import write_idx
    from minilenet.mnist import FILES
    from test_train import _arrays
    for key, array in _arrays(n_train=200, n_test=50).items():
        write_idx(tmp_path / "data" / (FILES[key] + ".gz"), array)
    check = _run(copies["solved"], "gradcheck")
    assert check.returncode == 0, check.stdout[-2000:]
    assert "[numba]" not in check.stdout and "fused step" not in check.stdout
    train = _run(copies["solved"], "train", "--data", str(tmp_path / "data"), "--no-verify",
                 "--quiet", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert train.returncode == 0, train.stderr[-2000:]
    assert "training through the layer graph" in train.stdout
    assert "test error: " in train.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- grading
def _grade(submission, *args):
    from minilenet.cli import main
    return main(["grade", str(submission), "--quiet", *args])


def _edit(copy, rel, old, new):
    path = copy / "minilenet" / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_grade_gives_zero_for_every_withheld_unit(copies, tmp_path, capsys):
    out = tmp_path / "grades.json"
    assert _grade(copies["student"], "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["total"] == 0 and len(result["units"]) == len(UNITS)
    assert {u["status"] for u in result["units"]} == {"not implemented"}


@pytest.mark.slow
def test_grade_gives_full_marks_to_the_solutions(copies, tmp_path, capsys):
    gradescope = tmp_path / "results.json"
    assert _grade(copies["solved"], "--gradescope", str(gradescope)) == 0
    result = json.loads(gradescope.read_text())
    assert result["score"] == sum(t["max_score"] for t in result["tests"]) > 0
    assert {"name", "score", "max_score", "output", "status"} <= set(result["tests"][0])
    assert "total: 106 / 106" in capsys.readouterr().out


@pytest.mark.slow
def test_a_solution_copy_hands_out_nothing_and_is_graded_on_nothing(copies, capsys):
    assert _grade(copies["solution"]) == 0
    assert "total: 0 / 0" in capsys.readouterr().out


def _rubric(tmp_path, *units):
    path = tmp_path / "rubric.toml"
    path.write_text("[points]\n" + "".join(f'"{u}" = 2\n' for u in units))
    return str(path)


@pytest.mark.slow
def test_subtle_bugs_lose_exactly_their_units_points(tmp_path):
    """The installed package is correct; the submission is not: what is graded is
    the submission (its bugs cost points), one unit at a time."""
    from minilenet.teaching.grading import grade
    copy = assign(tmp_path / "buggy", [])
    _edit(copy, "kernels/numpy_ref.py", "d = (S / A) * (A * A - y * y)",
          "d = (A * A - y * y) / (A * A)")                      # the A*S factor missing
    _edit(copy, "kernels/numpy_ref.py", "stride * OW:stride] += cols[:, :, i, j]",
          "stride * OW:stride] = cols[:, :, i, j]")             # col2im overwrites
    _edit(copy, "kernels/numpy_ref.py", "dw = dw_dense[out_idx, in_idx]",
          "dw = dw_dense[out_idx, (in_idx + 1) % x.shape[1]]")  # a wrong C3 column
    _edit(copy, "kernels/numpy_ref.py", "    winner = cols.argmax(axis=2)\n",
          "    winner = k * k - 1 - cols[:, :, ::-1].argmax(axis=2)\n")  # ties: the last wins
    rubric = _rubric(tmp_path, "scaled_tanh", "col2im", "c3.backward", "im2col",
                     "conv.backward", "c3.forward", "sdlm.curvature", "maxpool", "avgpool")
    units = ["scaled_tanh", "col2im", "c3.backward", "im2col", "conv.backward", "c3.forward",
             "sdlm.curvature", "maxpool", "avgpool"]
    results = {r.unit: r for r in grade(copy, rubric, units).results}
    # conv.backward, avgpool and sdlm.curvature call col2im, which is the student's
    # too: its bug costs them as well. With col2im not handed out, they run the reference col2im.
    assert {u for u, r in results.items() if r.status != "passed"} == \
        {"scaled_tanh", "col2im", "c3.backward", "maxpool", "conv.backward", "avgpool",
         "sdlm.curvature"}
    assert all(results[u].status == "failed" and results[u].points == 0
               for u in ("scaled_tanh", "col2im", "c3.backward", "maxpool"))
    alone = {r.unit: r for r in grade(copy, rubric, ["conv.backward", "avgpool",
                                                     "sdlm.curvature", "maxpool"]).results}
    assert [alone[u].status for u in ("conv.backward", "avgpool", "sdlm.curvature")] == \
        ["passed"] * 3
    assert alone["maxpool"].message.startswith("case 'ties, 2x2': dx: relative error")
    assert "relative error" in results["col2im"].message


@pytest.mark.slow
def test_a_unit_that_hangs_or_exits_loses_only_its_points(tmp_path):
    from minilenet.teaching.grading import grade, make_sandbox
    copy = assign(tmp_path / "rogue", [])
    _edit(copy, "kernels/numpy_ref.py", "    y = x @ w + b\n",
          "    import time\n    while True:\n        time.sleep(1)\n")
    _edit(copy, "kernels/numpy_ref.py", "    diff = x[:, None, :] - centers[None, :, :]",
          "    import sys\n    sys.exit(0)")
    rubric = _rubric(tmp_path, "dense.forward", "rbf.forward", "rbf.backward")
    units = ["dense.forward", "rbf.forward", "rbf.backward"]
    box = make_sandbox(timeout=5, cover=(copy,))
    results = {r.unit: r for r in grade(copy, rubric, units, box=box).results}
    assert results["dense.forward"].status == "timed out"
    assert results["rbf.forward"].status == "error" and "SystemExit: 0" in \
        results["rbf.forward"].message
    assert results["rbf.backward"].status == "passed" and results["rbf.backward"].points == 2


@pytest.mark.slow
def test_withheld_maxpool_kernels_raise_not_implemented_in_both_backends(copies):
    probe = ("import numpy as np\n"
             "from minilenet.kernels import numba_jit, numpy_ref\n"
             "x, winner = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2), np.int64)\n"
             "for kernels in (numpy_ref, numba_jit):\n"
             "    for call in (lambda: kernels.maxpool_forward(x, 2, 2),\n"
             "                 lambda: kernels.maxpool_backward(x[:, :, :2, :2], winner,\n"
             "                                                  x.shape, 2, 2)):\n"
             "        try:\n"
             "            call()\n"
             "        except NotImplementedError as e:\n"
             "            print(e)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=copies["student"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "unit maxpool: yours to write, see notebooks/08_modern_variant.ipynb"] * 4


def test_the_driver_imports_the_submission_never_the_installed_package(copies):
    import numpy as np
    from minilenet.teaching import grading, sandbox
    box = grading.make_sandbox(cover=(copies["student"],))
    report, _ = sandbox.run_unit(str(copies["student"]), "preprocess",
                                 {"0::images": np.zeros((1, 28, 28), np.uint8)}, [],
                                 box.limits, box.user, box.cover)
    assert report["status"] == "not implemented"       # the copy's stub, not the reference
    assert "unit preprocess: yours to write" in report["message"]


def test_grade_refuses_a_rubric_with_an_unknown_unit(copies, tmp_path, capsys):
    assert _grade(copies["solution"], "--rubric", _rubric(tmp_path, "conv.sideways")) == 2
    assert "unknown unit 'conv.sideways'" in capsys.readouterr().err


def test_grade_refuses_a_folder_that_is_not_a_copy(tmp_path, capsys):
    assert _grade(tmp_path) == 2
    assert "no student copies" in capsys.readouterr().err


@pytest.mark.slow
def test_grade_a_folder_of_submissions_writes_one_csv(copies, tmp_path, capsys):
    import shutil
    folder = tmp_path / "class"
    shutil.copytree(copies["solution"], folder / "ada")
    shutil.copytree(copies["student"], folder / "bob")
    rubric = _rubric(tmp_path, "im2col", "map_loss")
    assert _grade(folder, "--rubric", rubric, "--units", "im2col,map_loss") == 0
    rows = list(csv.reader(open(folder / "grades.csv")))
    assert rows[0] == ["student", "im2col", "map_loss", "total", "max", "flags"]
    assert rows[1][:5] == ["ada", "2", "2", "4", "4"] and "map_loss reference" in rows[1][5]
    assert rows[2] == ["bob", "0", "0", "0", "4", ""]
    assert json.loads((folder / "grades" / "bob.json").read_text())["total"] == 0


def test_assign_refuses_a_folder_in_use_and_unknown_units(tmp_path, capsys):
    from minilenet.cli import main
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    assert main(["assign", str(tmp_path / "used")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["assign", str(tmp_path / "new"), "--units", "im2col,conv.sideways"]) == 2
    assert "unknown unit 'conv.sideways'" in capsys.readouterr().err


def test_assign_list_prints_every_unit(capsys):
    from minilenet.cli import main
    assert main(["assign", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(UNITS)
    assert all("notebooks/" in line for line in lines)


def test_units_point_at_notebooks_that_exist():
    root = PACKAGE.parent
    for unit in UNITS:
        assert (root / units_mod.notebook_path(unit)).exists(), unit


@pytest.mark.slow
def test_a_student_notebook_reports_not_implemented_and_goes_on(tmp_path):
    """Notebook 02 in a copy withholding two of its units runs to its end: the cells
    that need them say so, the others still run and check."""
    from nbrun import run_notebook
    copy = assign(tmp_path / "copy", ["scaled_tanh", "subsampling.backward"])
    nb = run_notebook("02_subsampling_squashing.ipynb", copy, folder=copy / "notebooks")
    texts = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells
             if c.cell_type == "code"]
    assert nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")].id \
        == "student-mode"
    assert any("not implemented yet: unit scaled_tanh" in t for t in texts)
    assert any(t.startswith("skipped: this cell needs") for t in texts)
    ran = [t for t in texts if t and "not implemented" not in t and "skipped" not in t]
    assert ran, "the cells that need no withheld unit still run"


@pytest.mark.slow
def test_the_worked_example_adds_a_unit(tmp_path):
    """docs/grading.md's "Adding a unit of your own", applied to a copy of the checkout:
    the new unit is handed out and graded, solved and empty."""
    import re
    import shutil
    root = PACKAGE.parent
    checkout = tmp_path / "checkout"
    for item in ("minilenet", "tests", "notebooks", "setup.cfg"):
        src = root / item
        (shutil.copytree(src, checkout / item, ignore=shutil.ignore_patterns("__pycache__"))
         if src.is_dir() else shutil.copy2(src, checkout / item))
    doc = (root / "docs" / "grading.md").read_text().split("## Adding a unit of your own")[1]
    snippets = re.findall(r"In `minilenet/([\w/]+\.py)`[^\n]*\n\n```python\n(.*?)```", doc, re.S)
    assert [path for path, _ in snippets] == ["kernels/numpy_ref.py", "teaching/probes.py",
                                              "teaching/units.py"]
    for path, code in snippets:
        with open(checkout / "minilenet" / path, "a") as f:
            f.write("\n\n" + code)
    script = (f"import sys; sys.path.insert(0, {str(checkout)!r})\n"
              "from minilenet.teaching.assign import assign\n"
              "from minilenet.teaching import grading\n"
              f"solved = assign({str(tmp_path / 'solved')!r}, ['dropout'], solved=True)\n"
              f"empty = assign({str(tmp_path / 'empty')!r}, ['dropout'])\n"
              "print(grading.grade(solved).total, grading.grade(empty).total)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["2", "0"]
    stub = (tmp_path / "empty" / "minilenet" / "kernels" / "numpy_ref.py").read_text()
    assert 'raise NotImplementedError("unit dropout: yours to write' in stub
