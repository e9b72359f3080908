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
from minilenet.teaching.units import UNITS, closure
from nbrun import notebook_paths, run_notebook

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


def _minilenet(copy, *args):
    """``minilenet ARGS`` run in ``copy``, with its own package."""
    return subprocess.run([sys.executable, "-m", "minilenet", *args], cwd=copy,
                          env=_environment(), capture_output=True, text=True, timeout=600)


def _gradcheck(copy, *args):
    return _minilenet(copy, "gradcheck", *args)


def _test_failures(copy, *args):
    """Run the copy's own tests (pytest ``args``) in the copy: (return code, the failure
    messages with their tracebacks, the end of the output)."""
    report = copy / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *args], cwd=copy, env=_environment(),
                          capture_output=True, text=True, timeout=1500)
    failures = [f"{case.get('name')}: {problem.get('message') or ''}\n{problem.text or ''}"
                for case in ET.parse(report).iter("testcase")
                for problem in case if problem.tag in ("failure", "error")]
    return proc.returncode, failures, proc.stdout[-3000:]


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


# ------------------------------------------- every unit, solved, in one copy
def _copy_suite(copy, *options):
    """The copy's own test suite, but its notebooks, which the tests of this file run
    and read: ``_test_failures``."""
    return _test_failures(copy, "--ignore=tests/test_notebooks.py", *options)


def _needs(unit):
    """The units a test of ``unit`` runs first: those it depends on (``units.closure``)
    and, for a backward pass, the forward pass the test computes before it."""
    forward = {"col2im": "im2col"}.get(unit, unit.replace(".backward", ".forward"))
    return (set(closure([unit])) | ({forward} & set(UNITS))) - {unit}


def _independent_groups():
    """The units by depth in ``_needs``: no unit of a group needs another of it, so
    stubbing a group at once is stubbing each of its units in turn, since every failure
    names the unit whose NotImplementedError it is."""
    depth = {}

    def visit(unit):
        if unit not in depth:
            depth[unit] = 1 + max((visit(u) for u in _needs(unit)), default=-1)
        return depth[unit]
    for unit in UNITS:
        visit(unit)
    return [sorted(u for u in UNITS if depth[u] == d) for d in sorted(set(depth.values()))]


GROUPS = _independent_groups()


@pytest.fixture(scope="module")
def every(tmp_path_factory):
    """A copy withholding every unit as a student who solved them all hands it in (the
    NumPy code written, the Numba twins stubs), copies with each group of independent
    units left as stubs, and one with every unit a stub. The copies' test suites run in
    the background (two at a time, on the two cores) while this file's tests run their
    notebooks."""
    from concurrent.futures import ThreadPoolExecutor
    base = tmp_path_factory.mktemp("every")
    copies = {"solved": assign(base / "solved", solved=True), "stub": assign(base / "stub")}
    copies.update({f"group {i}": assign(base / f"group{i}", group)
                   for i, group in enumerate(GROUPS)})
    pool = ThreadPoolExecutor(max_workers=2)
    suites = {"solved": pool.submit(_copy_suite, copies["solved"])}
    suites.update({f"group {i}": pool.submit(_copy_suite, copies[f"group {i}"], "-m", "not slow")
                   for i in range(len(GROUPS))})
    yield copies, suites
    pool.shutdown(cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in notebook_paths()])
def test_the_solved_copys_notebooks_run_the_students_code(every, name):
    """Every notebook, in a copy of every unit solved: nothing is "not implemented",
    nothing skipped for want of a value, the student's code is theirs."""
    copies, _ = every
    texts = _outputs(run_notebook(name, copies["solved"], folder=copies["solved"] / "notebooks"))
    printed = "\n".join(texts)
    for wrong in ("not implemented", "yours to write", "a cell above could not compute",
                  "as shipped"):
        assert wrong not in printed, printed
    units = [u for u, record in UNITS.items() if record.notebook == name[:-len(".ipynb")]]
    for unit in units:
        assert re.search(rf"^{re.escape(unit)} +passed ", printed, re.M), (unit, printed)
    if name.startswith("01"):
        assert "your code:" in printed
        assert "the Numba twin of conv.backward is not part of this assignment" in printed


@pytest.mark.slow
def test_the_solved_copys_tests_gradcheck_and_check_pass(every):
    copies, suites = every
    code, failures, out = suites["solved"].result()
    assert code == 0 and not failures, failures or out
    proc = _gradcheck(copies["solved"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[numba]" not in proc.stdout and proc.stdout.strip().endswith(" 0 failed")
    check = _minilenet(copies["solved"], "check")
    assert check.returncode == 0 and f"{len(UNITS)} of {len(UNITS)} units passed" in \
        check.stdout, check.stdout[-3000:]


# ----------------------------------------------- each unit left as a stub, in turn
@pytest.mark.slow
@pytest.mark.parametrize("group", range(len(GROUPS)), ids=[" ".join(g) for g in GROUPS])
def test_a_stub_fails_only_its_own_checks(every, group):
    """Each unit left as a stub (with the other units of its group, none depending on
    another): the copy's tests fail, every failure names one of the stubs, every stub is
    named; ``minilenet check`` says each is not implemented and passes nothing else."""
    copies, suites = every
    stubs = GROUPS[group]
    code, failures, out = suites[f"group {group}"].result()
    assert code == 1 and failures, out
    named = {u: [f for f in failures if f"unit {u}: yours to write" in f] for u in stubs}
    strays = [f for f in failures if not any(f in found for found in named.values())]
    assert not strays, strays[:5]
    assert all(named.values()), [u for u, found in named.items() if not found]
    check = _minilenet(copies[f"group {group}"], "check")
    rows = {line.split()[0]: line for line in check.stdout.splitlines()
            if line.split() and line.split()[0] in UNITS}
    assert check.returncode == 1 and sorted(rows) == sorted(stubs), check.stdout
    assert all("not implemented" in rows[u] for u in stubs), check.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in notebook_paths()])
def test_the_stub_copys_notebooks_go_on_and_name_each_unit(every, name):
    """Every notebook, in a copy of every unit a stub: it runs to its end; each unit's
    check cell says "not implemented yet", naming the unit or one it needs."""
    copies, _ = every
    nb = run_notebook(name, copies["stub"], folder=copies["stub"] / "notebooks")
    units = [u for u, record in UNITS.items() if record.notebook == name[:-len(".ipynb")]]
    for unit in units:
        cells = [c for c in nb.cells if c.cell_type == "code"
                 and c.source.strip() == f'assert_unit("{unit}")']
        assert len(cells) == 1, f"{name}: no check cell of its own for {unit}"
        said = "".join(o.get("text", "") for o in cells[0].outputs)
        assert said.startswith("not implemented yet") and any(
            u in said for u in closure([unit])), (unit, said)


# --------------------------------------------- the same copy, the units left as stubs
@pytest.mark.slow
def test_the_stub_copy_fails_only_where_its_units_are_needed(copies):
    code, failures, _ = _test_failures(copies["stub"], "tests/test_layers.py")
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
def test_gradcheck_of_one_unit_fails_as_a_stub_naming_it(tmp_path, unit):
    """Solved, every unit passes ``gradcheck`` (the copy of every unit solved, above)."""
    stub = _gradcheck(assign(tmp_path / "stub", [unit]), "--unit", unit)
    assert stub.returncode == 1, stub.stdout[-3000:]
    problems = _problems(stub.stdout)
    assert problems and all(unit in p for p in problems), problems
    assert f"unit {unit}: yours to write" in stub.stdout
