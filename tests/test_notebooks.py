"""The student notebooks: the sequence is complete, committed clean, self-contained,
and every one runs top to bottom in fast mode (MINILENET_FAST=1)."""
import inspect
import json
import pkgutil
import re
from importlib import import_module

import pytest

import minilenet
from nbrun import notebook_paths, run_notebook

NAMES = [p.name for p in notebook_paths()]
PREFIXES = [f"{i:02d}_" for i in range(9)]           # 00_tour ... 08_modern
FORBIDDEN_PATHS = ("../shared", "/work/", "shared/spec", "shared/guide")


def _cells(name):
    with open(notebook_paths()[NAMES.index(name)], encoding="utf-8") as f:
        return json.load(f)["cells"]


def _code(name):
    return ["".join(c["source"]) for c in _cells(name) if c["cell_type"] == "code"]


def _package_names():
    """Every function and class the package defines, by name (im2col, Conv2D, lenet5, ...)."""
    names = set()
    for info in pkgutil.walk_packages(minilenet.__path__, "minilenet."):
        module = import_module(info.name)
        names |= {n for n, obj in vars(module).items()
                  if (inspect.isfunction(obj) or inspect.isclass(obj))
                  and obj.__module__ == info.name and not n.startswith("_")}
    return names


def test_the_sequence_is_complete():
    for prefix in PREFIXES:
        assert [n for n in NAMES if n.startswith(prefix)], f"no notebooks/{prefix}*.ipynb"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in NAMES), NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    with open(notebook_paths()[NAMES.index(name)], encoding="utf-8") as f:
        nb = json.load(f)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}: cell {i} has outputs"
            assert cell["execution_count"] is None, f"{name}: cell {i} has an execution count"


@pytest.mark.parametrize("name", NAMES)
def test_fast_mode_switch(name):
    """The first code cell is the tagged "parameters" cell that reads MINILENET_FAST
    (after the cell that loads the student-mode extension, in a student copy)."""
    first = next(c for c in _cells(name)
                 if c["cell_type"] == "code" and c.get("id") != "student-mode")
    assert "parameters" in first["metadata"].get("tags", []), f"{name}: first cell not tagged"
    assert 'os.environ.get("MINILENET_FAST") == "1"' in "".join(first["source"])


@pytest.mark.parametrize("name", NAMES)
def test_self_contained(name):
    """No file outside the repository; the installed package imported, not pasted."""
    text = "\n".join("".join(c["source"]) for c in _cells(name))
    for bad in FORBIDDEN_PATHS:
        assert bad not in text, f"{name} points outside the repository: {bad!r}"
    code = "\n".join(_code(name))
    assert re.search(r"^\s*(import minilenet|from minilenet)", code, re.M), \
        f"{name} does not import minilenet"
    assert "sys.path" not in code, f"{name} edits sys.path"
    copies = set(re.findall(r"^\s*(?:def|class)\s+(\w+)", code, re.M)) & _package_names()
    assert not copies, f"{name} redefines package code instead of importing it: {sorted(copies)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_in_fast_mode(name, tmp_path):
    """Every cell runs (a failing check cell raises CellExecutionError) and figures show."""
    nb = run_notebook(name, tmp_path)
    kinds = {kind for c in nb.cells if c.cell_type == "code"
             for out in c.outputs for kind in out.get("data", {})}
    assert "image/png" in kinds, f"{name} showed no figure"
