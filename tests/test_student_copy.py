"""A student copy runs what the student wrote, everywhere (issue 19).

A copy withholding conv.backward and subsampling.backward, as a student who solved
them hands it in (their NumPy code written, the Numba twins still stubs): its
notebooks, its tests and its gradient check run the student's code and pass. The
same copy with the units left as stubs fails only where those units are needed, and
says so. A wrong unit fails its notebook and its gradient check, which name it.
"""
import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from minilenet.teaching.assign import STUDENT_CELL, assign
from minilenet.teaching.notebook import GoOn
from minilenet.teaching.units import UNITS
from nbrun import run_notebook

HANDED_OUT = ["conv.backward", "subsampling.backward"]
NOTEBOOKS = ["01_convolution.ipynb", "02_subsampling_squashing.ipynb", "04_rbf_output.ipynb",
             "05_gradient_checking.ipynb"]
#: The units no gradient check runs (they compute no gradient): ``gradcheck --unit`` refuses them.
NO_GRADIENT = {"preprocess", "sdlm.step"}


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("copies")
    return {"solved": assign(base / "solved", HANDED_OUT, solved=True),
            "stub": assign(base / "stub", HANDED_OUT)}


def _environment():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINILENET_BACKEND")}


def _gradcheck(copy, *args):
    """``minilenet gradcheck`` run in ``copy``, with its own package."""
    return subprocess.run([sys.executable, "-m", "minilenet", "gradcheck", *args], cwd=copy,
                          env=_environment(), capture_output=True, text=True, timeout=600)


def _test_failures(copy, *files):
    """Run the copy's own tests ``files`` in the copy: (return code, failure messages)."""
    report = copy / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *files], cwd=copy, env=_environment(),
                          capture_output=True, text=True, timeout=600)
    failures = [f"{case.get('name')}: {problem.get('message')}"
                for case in ET.parse(report).iter("testcase")
                for problem in case if problem.tag in ("failure", "error")]
    return proc.returncode, failures


def _outputs(nb):
    """The text each code cell printed."""
    return ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells
            if cell.cell_type == "code"]


def _problems(stdout):
    """The lines of a gradcheck report about what did not pass, each with the lines under it."""
    lines, out = stdout.splitlines(), []
    for i, line in enumerate(lines):
        if "  FAIL" in line or "  not implemented" in line:
            out.append("\n".join([line] + [n for n in lines[i + 1:i + 3] if n.startswith("    ")]))
        elif re.match(r"[\w -]+: \d+ rows? fails? because ", line):
            out.append(line)
    return out


# ------------------------------------------------------- the notebook extension
def _cell_frame_line(source):
    """Run ``source`` as the extension runs a cell; the line its frame is left at by the
    error it raises (what IPython's traceback shows in a kernel)."""
    tree = ast.fix_missing_locations(GoOn().visit(ast.parse(source)))
    try:
        exec(compile(tree, "<cell>", "exec"), {})
    except AssertionError as error:
        tb = error.__traceback__
        while tb.tb_frame.f_code.co_filename != "<cell>":
            tb = tb.tb_next
        return tb.tb_lineno, tb.tb_frame.f_lineno
    raise AssertionError("the cell did not fail")


def test_a_failing_cell_points_at_its_failing_line():
    cell = ("x = 1\n"
            "print('checking x')\n"
            "for k in range(3):\n"
            "    assert k < 2, 'the failing line'\n"
            "y = x\n"
            "y\n")
    assert _cell_frame_line(cell) == (4, 4)


def test_a_cell_keeps_its_last_value_displayed():
    namespace = {}
    tree = ast.fix_missing_locations(GoOn().visit(ast.parse("x = 2\nx * 21\n")))
    exec(compile(tree, "<cell>", "exec"), namespace)
    assert namespace["_minilenet_cell_value"] == 42 and namespace["x"] == 2


@pytest.mark.slow
def test_edits_to_the_package_are_picked_up_without_a_restart(tmp_path):
    """The student cell loads autoreload: an edited numpy_ref function is the one the
    next cell runs, called directly and through a layer."""
    import nbformat
    copy = assign(tmp_path / "copy", ["dense.forward"], solved=True)
    kernels = copy / "minilenet" / "kernels" / "numpy_ref.py"
    edit = (f"import os, pathlib\n"
            f"path = pathlib.Path({str(kernels)!r})\n"
            f"path.write_text(path.read_text().replace('    y = x @ w + b\\n', "
            f"'    y = x @ w + b + 1\\n'))\n"
            f"os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 2))\n")
    compute = ("x, w, b = np.ones((1, 2)), np.ones((2, 1)), np.zeros(1)\n"
               "layer = Dense(2, 1, dtype=np.float64)\n"
               "layer.params['weight'][:], layer.params['bias'][:] = w, b\n"
               "print(numpy_ref.dense_forward(x, w, b)[0, 0], layer.forward(x)[0, 0])\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(STUDENT_CELL),
        nbformat.v4.new_code_cell("import numpy as np\nfrom minilenet import Dense\n"
                                  "from minilenet.kernels import numpy_ref\n" + compute),
        nbformat.v4.new_code_cell(edit), nbformat.v4.new_code_cell(compute)])
    nbformat.write(nb, tmp_path / "edit.ipynb")
    out = _outputs(run_notebook("edit.ipynb", copy, folder=tmp_path))
    assert out[1].split() == ["2.0", "2.0"] and out[3].split() == ["3.0", "3.0"], out


# ------------------------------------------------- a copy with both units solved
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_solved_copys_notebooks_run_the_students_code(copies, name):
    texts = _outputs(run_notebook(name, copies["solved"], folder=copies["solved"] / "notebooks"))
    printed = "\n".join(texts)
    assert "not implemented" not in printed and "yours to write" not in printed, printed
    if name.startswith("01"):
        assert "your code:" in printed
        assert "the Numba twin of conv.backward is not part of this assignment" in printed


@pytest.mark.slow
def test_the_solved_copys_tests_and_gradcheck_pass(copies):
    code, failures = _test_failures(copies["solved"], "tests/test_layers.py")
    assert code == 0 and not failures, failures
    proc = _gradcheck(copies["solved"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[numba]" not in proc.stdout and proc.stdout.strip().endswith(" 0 failed")


# --------------------------------------------- the same copy, the units left as stubs
@pytest.mark.slow
def test_the_stub_copy_fails_only_where_its_units_are_needed(copies):
    code, failures = _test_failures(copies["stub"], "tests/test_layers.py")
    assert code == 1 and failures
    assert all("unit conv.backward" in f or "unit subsampling.backward" in f for f in failures), \
        failures
    proc = _gradcheck(copies["stub"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    problems = _problems(proc.stdout)
    assert problems and all(any(u in p for u in HANDED_OUT) for p in problems), problems
    assert re.search(r"^whole networks: \d+ rows fail because conv.backward is not written "
                     r"yet; write it first$", proc.stdout, re.M), proc.stdout
    assert "conv.backward: your code in minilenet/kernels/numpy_ref.py: conv2d_backward" \
        in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name,unit", [("01_convolution.ipynb", "conv.backward"),
                                       ("02_subsampling_squashing.ipynb", "subsampling.backward")])
def test_the_stub_copys_notebooks_say_not_implemented(copies, name, unit):
    texts = _outputs(run_notebook(name, copies["stub"], folder=copies["stub"] / "notebooks"))
    missing = [t for t in texts if t.startswith("not implemented yet")]
    assert any(f"not implemented yet: unit {unit}: yours to write" in t for t in missing)
    assert all(any(f"unit {u}:" in t for u in HANDED_OUT) for t in missing), missing


# ------------------------------------------------------------------ a wrong unit
@pytest.mark.slow
def test_a_subsampling_backward_without_its_coefficient_fails_notebook_02(copies, tmp_path):
    """dx missing its coefficient, in both modes: the sum/average ratios cannot see it,
    the comparison with finite differences of the forward pass does."""
    import shutil
    from nbclient.exceptions import CellExecutionError
    copy = shutil.copytree(copies["solved"], tmp_path / "wrong")
    path = copy / "minilenet" / "kernels" / "numpy_ref.py"
    right = "    g = (coef * scale).reshape(1, C, 1, 1) * dy"
    assert right in path.read_text()
    path.write_text(path.read_text().replace(right, "    g = scale * dy"))
    with pytest.raises(CellExecutionError) as caught:
        run_notebook("02_subsampling_squashing.ipynb", copy, folder=copy / "notebooks")
    assert caught.value.ename == "AssertionError"
    assert caught.value.evalue.startswith(
        "Subsampling (sum) dx disagrees with finite differences of its forward pass")
    proc = _gradcheck(copy, "--unit", "subsampling.backward")
    assert proc.returncode == 1
    problems = _problems(proc.stdout)
    assert problems and all("subsampling.backward" in p for p in problems), problems


def test_gradcheck_names_the_unit_reads_a_clean_factor_and_folds_the_networks(
        monkeypatch, capsys):
    """In the instructor's checkout: conv.backward's weight gradient divided by the
    batch size, on the NumPy backend."""
    from minilenet.cli import main
    from minilenet.kernels import numpy_ref
    backward = numpy_ref.conv2d_backward

    def mean_over_the_batch(x, w, dy, *args, **kwargs):
        dx, dw, db = backward(x, w, dy, *args, **kwargs)
        return dx, dw / len(x), db

    monkeypatch.setattr(numpy_ref, "conv2d_backward", mean_over_the_batch)
    assert main(["gradcheck", "--unit", "conv.backward"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("Conv2D [numpy]")
               and "FAIL" in line)
    below = out.split(row, 1)[1].splitlines()[1:3]
    assert below == ["    conv.backward: minilenet/kernels/numpy_ref.py: conv2d_backward",
                     "    yours is the expected divided by the batch size N=2: a mean where a "
                     "sum was meant?"], below
    assert "whole networks: " in out and " rows fail because conv.backward fails; fix it first" \
        in out
    assert not [line for line in out.splitlines() if "[numpy]" in line and "FAIL" in line
                and line.startswith(("lenet", "fc", "linear"))]
    assert "Dense [numpy]" not in out            # only the checks that run conv.backward


def test_gradcheck_refuses_an_unknown_unit_and_one_without_a_gradient(capsys):
    from minilenet.cli import main
    assert main(["gradcheck", "--unit", "conv.backward,conv.sideways"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --unit: unknown unit 'conv.sideways' (minilenet assign --list lists them)"]
    assert main(["gradcheck", "--unit", "preprocess"]) == 2
    assert "no gradient check runs the code of 'preprocess'" in capsys.readouterr().err


# ------------------------------------------------------------------ every unit
@pytest.mark.slow
@pytest.mark.parametrize("unit", sorted(set(UNITS) - NO_GRADIENT))
def test_gradcheck_of_one_unit_passes_solved_and_fails_as_a_stub(tmp_path, unit):
    solved = _gradcheck(assign(tmp_path / "solved", [unit], solved=True), "--unit", unit)
    assert solved.returncode == 0, solved.stdout[-3000:] + solved.stderr[-2000:]
    stub = _gradcheck(assign(tmp_path / "stub", [unit]), "--unit", unit)
    assert stub.returncode == 1, stub.stdout[-3000:]
    problems = _problems(stub.stdout)
    assert problems and all(unit in p for p in problems), problems
    assert f"unit {unit}: yours to write" in stub.stdout
