"""minilenet check: the student's own grader, in a student copy."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minilenet.cli import main
from minilenet.teaching import check
from minilenet.teaching.assign import assign
from minilenet.teaching.units import UNITS


def test_the_stored_expected_values_are_the_references(tmp_path):
    """resources/visible_cases.npz is what this package computes now (rewrite it
    with ``python -c "from minilenet.teaching.check import write_expected;
    write_expected()"`` after changing a unit's visible cases)."""
    fresh = check.write_expected(tmp_path / "fresh.npz")
    with np.load(fresh) as new, np.load(check.expected_path()) as stored:
        assert sorted(new.files) == sorted(stored.files)
        for key in new.files:
            np.testing.assert_allclose(stored[key], new[key], rtol=1e-12, atol=1e-300)
    assert {key.split("/")[0] for key in new.files} == set(UNITS)


def test_check_passes_the_reference_and_refuses_an_unknown_unit(capsys):
    assert main(["check", "conv.backward", "maxpool"]) == 0
    out = capsys.readouterr().out
    assert "conv.backward" in out and "2 of 2 units passed" in out
    assert main(["check", "conv.sideways"]) == 2
    assert "unknown unit 'conv.sideways'" in capsys.readouterr().err


def test_check_unit_prints_every_case(capsys):
    assert check.check_unit("subsampling.backward", verbose=True).passed
    out = capsys.readouterr().out
    assert "case 'sum'" in out and "case 'average'" in out and "by finite differences" in out


#: Slips of the issue, each (file, the correct text, the slip); grouped in copies
#: whose withheld units do not depend on one another, so each slip is judged alone.
SLIPS = {
    "a": {"conv.backward": ("kernels/numpy_ref.py",
                            'dw = np.einsum("nfp,nkp->fk", dy2, cols).reshape(w.shape)',
                            'dw = np.einsum("nfp,nkp->fk", dy2, cols).reshape(w.shape) / N'),
          "subsampling.backward": ("kernels/numpy_ref.py",
                                   "g = (coef * scale).reshape(1, C, 1, 1) * dy",
                                   "g = scale * dy"),
          "rbf.backward": ("kernels/numpy_ref.py", "dx = 2.0 * (dy.sum", "dx = (dy.sum"),
          "map_loss": ("kernels/numpy_ref.py", "    grad = -q\n", "    grad = 0 * q\n"),
          "dense.backward": ("kernels/numpy_ref.py", "dw = x.T @ dy", "dw = (x.T @ dy).T")},
    "b": {"c3.backward": ("kernels/numpy_ref.py", "dw = dw_dense[out_idx, in_idx]",
                          "dw = dw_dense[out_idx, (in_idx + 1) % x.shape[1]]"),
          "sdlm.curvature": ("conv.py", "d2x = self._backprop(x * x, w * w, d2y, self.hess)",
                             "d2x = self._backprop(x * x, w, d2y, self.hess)")},
    "c": {"col2im": ("kernels/numpy_ref.py", "stride * OW:stride] += cols[:, :, i, j]",
                     "stride * OW:stride] = cols[:, :, i, j]"),
          "subsampling.forward": ("kernels/numpy_ref.py",
                                  "y = (coef * scale).reshape(1, C, 1, 1) * pooled",
                                  "y = coef.reshape(1, C, 1, 1) * pooled")},
}
HINTS = {"conv.backward": "batch size", "rbf.backward": "1/2", "col2im": "right on",
         "dense.backward": "transposed", "subsampling.forward": "4"}


def _environment():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINILENET_BACKEND")}


def _check_in(copy, *units):
    return subprocess.run([sys.executable, "-m", "minilenet", "check", *units], cwd=copy,
                          env=_environment(), capture_output=True, text=True, timeout=300)


def _rows(stdout):
    return {line.split()[0]: line for line in stdout.splitlines()
            if line.split() and line.split()[0] in UNITS}


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(SLIPS))
def test_check_catches_each_slip_in_a_copy(tmp_path, group):
    slips = SLIPS[group]
    copy = assign(tmp_path / "copy", list(slips), solved=True)
    right = _check_in(copy)
    assert right.returncode == 0, right.stdout + right.stderr
    for unit, (rel, good, bad) in slips.items():
        path = copy / "minilenet" / rel
        text = path.read_text()
        assert good in text, (unit, good)
        path.write_text(text.replace(good, bad))
    wrong = _check_in(copy)
    assert wrong.returncode == 1
    rows = _rows(wrong.stdout)
    for unit in slips:
        assert "failed" in rows[unit], wrong.stdout
        if unit in HINTS:
            feedback = wrong.stdout.split(unit, 1)[1]
            assert HINTS[unit] in feedback.split("\n" + [u for u in slips if u != unit][0])[0], \
                wrong.stdout
        cell = _check_cell(copy, unit)
        ran = subprocess.run([sys.executable, "-c", f"{_CELL_IMPORT}\n{cell}"], cwd=copy,
                             env=_environment(), capture_output=True, text=True, timeout=300)
        assert f"AssertionError: {unit} failed" in ran.stderr, (unit, ran.stdout, ran.stderr)


#: What the notebooks' first cell imports for their check cells.
_CELL_IMPORT = "from minilenet.teaching.check import assert_unit"


def _check_cell(copy, unit):
    """The source of ``unit``'s check cell in the notebook its record names: the cell of
    the unit's section that runs the check on the student's function."""
    import nbformat
    nb = nbformat.read(copy / "notebooks" / f"{UNITS[unit].notebook}.ipynb", as_version=4)
    cells = [c.source for c in nb.cells
             if c.cell_type == "code" and f'assert_unit("{unit}")' in c.source]
    assert len(cells) == 1, (unit, cells)
    return cells[0]


@pytest.mark.slow
def test_check_in_a_copy_says_not_implemented_and_folds_dependencies(tmp_path):
    copy = assign(tmp_path / "copy", ["im2col", "conv.forward", "rbf.forward"])
    proc = _check_in(copy)
    assert proc.returncode == 1
    rows = _rows(proc.stdout)
    assert "not implemented" in rows["rbf.forward"] and "yours to write" in rows["rbf.forward"]
    assert "im2col not implemented: fix it first" in rows["conv.forward"]
    assert "0 of 3 units passed" in proc.stdout


def test_assert_unit_is_a_notebooks_check_cell(monkeypatch, capsys):
    assert check.assert_unit("dense.forward").passed
    assert "case '5 -> 4'" in capsys.readouterr().out
    stub = check.UnitCheck("dense.forward", "not implemented", "unit dense.forward: yours")
    monkeypatch.setattr(check, "check_unit", lambda unit, verbose=False: stub)
    with pytest.raises(NotImplementedError, match="yours"):
        check.assert_unit("dense.forward")
    stub.status, stub.message = "failed", "case '5 -> 4': y: relative error 1"
    with pytest.raises(AssertionError, match="dense.forward failed"):
        check.assert_unit("dense.forward")
