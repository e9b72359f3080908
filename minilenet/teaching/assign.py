"""minilenet assign: write a student copy of the project with chosen units withheld.

The copy holds the package, its tests, the notebooks (without outputs), the
docs, the benchmarks and a short student README. Each withheld region becomes a
stub raising NotImplementedError that names the unit and its notebook; ``assignment.py``
lists the withheld units (and where their NumPy code is, since the stubs replace
the markers), which switches the layers to the NumPy backend and the fused step
off. The grader (``grading.py``, with its hidden cases) and the tests of the
instructor's tools are left out.
"""
import ast
import json
import shutil
from pathlib import Path

from ..errors import UserError
from .units import MARKED_FILES, UNITS, find_regions, notebook_path, withhold

#: The marked files of the Numba backend (its twins, and the compiled bodies they and
#: the fused step run): never the student's to write.
NUMBA_FILES = ("kernels/numba_jit.py", "kernels/compiled.py")
#: What a student copy holds, relative to the checkout.
CONTENTS = ("minilenet", "tests", "notebooks", "docs", "benchmarks", "setup.cfg",
            "pyproject.toml")
#: Left out of every student copy: the grader and its hidden cases, and the tests of the
#: instructor's tools (which need the grader, or the markers the stubs replace).
INSTRUCTOR_ONLY = (tuple(f"minilenet/teaching/{name}.py" for name in
                         ("grading", "sandbox", "driver", "similarity", "autograder"))
                   + tuple(f"tests/test_{name}.py" for name in
                           ("teaching", "grading_attacks", "similarity", "autograder",
                            "student_copy", "check")))
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc",
                                 ".ipynb_checkpoints", "*.egg-info")


def source_root():
    """The checkout this package was installed from (it must have tests/ and notebooks/)."""
    root = Path(__file__).resolve().parents[2]
    if not ((root / "tests").is_dir() and (root / "notebooks").is_dir()):
        raise UserError(f"minilenet assign needs the project's source checkout (tests/ and "
                        f"notebooks/ beside the package), not an installed copy in {root}; "
                        f"install the checkout with pip install -e .")
    return root


def function_of(tree, line):
    """Qualified name of the innermost function whose body holds ``line`` (1-based)."""
    found = None

    def visit(node, prefix):
        nonlocal found
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if isinstance(child, ast.FunctionDef) and child.lineno < line <= child.end_lineno:
                    found = name
                visit(child, name + ".")
    visit(tree, "")
    return found


def locations(root=None):
    """{unit: ["minilenet/<file>: <function>", ...]}, every region of every unit."""
    package = Path(root or source_root()) / "minilenet"
    out = {unit: [] for unit in UNITS}
    for rel in MARKED_FILES:
        text = (package / rel).read_text()
        tree = ast.parse(text)
        for region in find_regions(text.splitlines(keepends=True), rel):
            for unit in region.names:
                out[unit].append(f"minilenet/{rel}: {function_of(tree, region.begin + 1)}")
    return out


def numpy_locations(root=None):
    """{unit: ["minilenet/<file>: <function>", ...]}, the NumPy code of every unit
    (what a student writes): from the markers, and in a student copy, for the
    withheld units (whose markers the stubs replaced), from ``assignment.WHERE``."""
    from .. import assignment
    where = {unit: [w for w in places
                    if not any(w.startswith(f"minilenet/{rel}:") for rel in NUMBA_FILES)]
             for unit, places in locations(root).items()}
    return {**where, **getattr(assignment, "WHERE", {})}


def parse_units(text):
    """'a,b' -> ['a', 'b']; UserError for an unknown unit."""
    units = [u.strip() for u in text.split(",") if u.strip()]
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        raise UserError(f"--units: unknown unit {unknown[0]!r} (minilenet assign --list "
                        f"lists them)")
    return units


def assign(out, units=None, solved=False, secret=None):
    """Write a student copy into ``out`` (new or empty) withholding ``units``
    (default: all). ``solved=True`` keeps the NumPy solutions in place while still
    marking the units withheld: a copy as a student who solved them all hands in
    (its Numba twins are stubs, as in every student copy).
    With ``secret`` (bytes), the copy's record of its units is signed, so that
    ``grade --secret`` notices a record the student changed.
    Returns the path of the copy."""
    root = source_root()
    units = sorted(UNITS) if units is None else list(units)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; choose a new one")
    out.mkdir(parents=True, exist_ok=True)
    for item in CONTENTS:
        src = root / item
        if src.is_dir():
            shutil.copytree(src, out / item, ignore=_IGNORE, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, out / item)
    for rel in INSTRUCTOR_ONLY:
        (out / rel).unlink(missing_ok=True)
    where = numpy_locations(root)
    stubbed = NUMBA_FILES if solved else MARKED_FILES       # a solver writes the NumPy code
    for rel in stubbed:
        path = out / "minilenet" / rel
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(withhold(lines, units, rel)))
    (out / "minilenet" / "assignment.py").write_text(
        assignment_record(units, secret, {u: where[u] for u in sorted(units)}))
    for notebook in (out / "notebooks").glob("*.ipynb"):
        _student_notebook(notebook)
    (out / "README.md").write_text(student_readme(units, where))
    return out


def assignment_record(units, secret=None, where=None):
    """The text of a copy's ``assignment.py``: its withheld units, where their NumPy
    code is (``where``, {unit: [...]}) and their tag."""
    text = ('"""The units of this copy that are the student\'s to write (minilenet assign).\n\n'
            'Changing this file changes nothing but what the notebooks and tests skip: the\n'
            'instructor grades the units of the assignment."""\n'
            f"WITHHELD = frozenset({sorted(units)!r})\n")
    if where:
        text += "WHERE = {\n" + "".join(f"    {u!r}: {w!r},\n" for u, w in where.items()) + "}\n"
    if secret is not None:
        from .grading import sign
        text += f"TAG = {sign(secret, units)!r}\n"
    return text


#: The first code cell of every notebook in a student copy.
STUDENT_CELL = ("# Some units of this copy are yours to write. A cell that needs one you have\n"
                "# not written yet says so in one line, and the notebook goes on.\n"
                "# Your edits to the package are picked up when you run a cell: no restart.\n"
                "%load_ext autoreload\n"
                "%autoreload 2\n"
                "%load_ext minilenet.teaching.notebook")


def _student_notebook(path):
    """Strip the outputs and load the student-mode extension before the first code cell."""
    nb = json.loads(path.read_text())
    cells = nb.get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    first = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code"), len(cells))
    cells.insert(first, {"cell_type": "code", "execution_count": None, "id": "student-mode",
                         "metadata": {}, "outputs": [],
                         "source": STUDENT_CELL.splitlines(keepends=True)})
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def student_readme(units, where):
    rows = "\n".join(
        f"| `{u}` | {UNITS[u].summary} | "
        f"{', '.join(where[u])} | `{notebook_path(u)}` |"
        for u in UNITS if u in units)
    return f"""# minilenet: your assignment

This is your copy of minilenet, a from-scratch LeNet-5 (LeCun et al., 1998) in NumPy.
Some pieces of its math are yours to write: each one is a *unit*, and in its place the code
raises `NotImplementedError` naming the unit and the notebook that explains it.

| unit | what | where (the NumPy code you write) | notebook |
|---|---|---|---|
{rows}

While any unit is withheld, the layers run the NumPy code (yours) and the fast paths that
would compute the same thing (the Numba kernels and the fused training step) are switched
off: nothing stands in for your code. The Numba kernels are not part of this assignment:
the notebook cells and tests about them say so and skip.

## Set up

    python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test,notebooks]'

## The loop, for each unit

1. Read the unit's section in its notebook: the derivation, with shapes, and a check cell.
2. Write your code in place of the `raise NotImplementedError("unit ...")` line.
3. `minilenet check UNIT`: your code on the unit's visible cases (the inputs the grader uses
   for them) against the instructor's outputs: *not implemented*, *passed* or *failed*, with
   the relative error, the worst element (index, your value, the expected one) and a hint
   where the error has a recognisable shape (a factor of 2, 4 or 1/N, a transpose, a sign,
   a missing bias, an off-by-one). A unit that fails because a unit it calls fails says so.
4. The notebook's check cell prints the same, case by case; `minilenet gradcheck --unit
   UNIT` checks the layers that use your code by finite differences.

## Check your work

- `minilenet check`: every unit of this copy, as above; exit status 0 only if all pass.
- `minilenet gradcheck`: every layer, loss and network, by finite differences
  (`--unit conv.backward` for the checks of one unit). A unit you have not written yet is
  reported as *not implemented*; a wrong one fails, with its relative error (smooth float64
  code reaches 1e-9 or better; a bug gives 1e-2 or worse), the unit and where its code is;
  the networks that fail only because one of their layers does are summed up in one line.
- `jupyter lab notebooks/`: the notebooks explain each unit, check it and show it at work.
  A cell that needs a unit you have not written yet says so in one line (*not implemented
  yet*), the cells that depend on it say they were skipped, and the notebook goes on. Your
  edits to the package are picked up by the next cell you run (autoreload): no restart.
- `pytest -q`: the project's tests; those of the units you have not written yet fail,
  naming the unit.
- `minilenet train --limit 5000 --epochs 2`: once every unit is written, a short training
  run (the paper's recipe is `minilenet train`).

Hand in the whole folder. It is graded unit by unit, on your code, with checks of the
outputs, of the gradients and with hidden cases (other shapes, batch sizes and seeds).
"""
