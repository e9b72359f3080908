"""An IPython extension for the notebooks of a student copy: a cell that needs a
unit the student has not written yet says so in one line, and the notebook goes
on (``%load_ext minilenet.teaching.notebook``, which ``minilenet assign`` puts at
the top of every notebook of the copy).

Each cell runs inside ``with Cell(names):``. A NotImplementedError (a withheld
unit) is reported as "not implemented", a ``config.NumbaLeftOut`` (a cell about
the Numba kernels, which are not part of the assignment) as "skipped", and the
variables the cell assigns are removed (they may hold half a result), so that a
later cell that needs one of them is reported as skipped instead of failing. Any
other error (a wrong answer, a failed check) stops the notebook as usual, its
traceback pointing at the failing line of the cell: a ``with`` block, unlike a
``try`` whose handlers do not match, leaves the frame's line where the error was.
"""
import ast

from .. import config

_UNAVAILABLE = set()
_RESULT = "_minilenet_cell_value"


def _assigned_names(nodes):
    """The variables a cell assigns at its top level (not inside its functions)."""
    names = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return sorted(names)


def _forget(names):
    from IPython import get_ipython
    namespace = get_ipython().user_ns
    for name in names:
        namespace.pop(name, None)
    _UNAVAILABLE.update(names)


def not_implemented(error, names):
    """Report a cell that needed a withheld unit, and forget what it assigned."""
    _forget(names)
    print(f"not implemented yet: {error}")


def left_out(error, names):
    """Report a cell about the Numba kernels where they do not run, and forget what it assigned."""
    _forget(names)
    print(f"skipped: {error}")


def skipped(error, names):
    """True (and a report) when ``error`` names a value an earlier cell could not set."""
    if getattr(error, "name", None) not in _UNAVAILABLE:
        return False
    _forget(names)
    print(f"skipped: this cell needs {error.name!r}, which a cell above could not compute")
    return True


class Cell:
    """The context a cell runs in: reports and swallows the errors above."""

    def __init__(self, names):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, NotImplementedError):
            not_implemented(error, self.names)
        elif isinstance(error, config.NumbaLeftOut):
            left_out(error, self.names)
        elif not (isinstance(error, NameError) and skipped(error, self.names)):
            return False
        return True


def _locate(nodes, where):
    """Give the wrapper's own nodes the place of the cell statement ``where``."""
    for node in nodes:
        for sub in ast.walk(node):
            ast.copy_location(sub, where)


class GoOn(ast.NodeTransformer):
    """Run a cell inside ``with Cell(names):``; keep its last expression displayed."""

    def visit_Module(self, module):
        body = module.body
        if not body:
            return module
        first, last = body[0], body[-1]
        names = _assigned_names(body)
        start, block, show = ast.parse(
            f"{_RESULT} = None\n"
            f"with __import__('minilenet.teaching.notebook').teaching.notebook.Cell({names!r}):\n"
            f"    {_RESULT} = None\n"
            f"{_RESULT}\n").body
        _locate([start, block], first)
        _locate([block.body[0], show], last)
        if isinstance(last, ast.Expr):             # the value the cell shows
            block.body[0].value = last.value
            body = body[:-1]
        block.body[:0] = body
        block.end_lineno, block.end_col_offset = last.end_lineno, last.end_col_offset
        module.body = [start, block, show]
        return module


def load_ipython_extension(ipython):
    _UNAVAILABLE.clear()
    if not any(isinstance(t, GoOn) for t in ipython.ast_transformers):
        ipython.ast_transformers.append(GoOn())


def unload_ipython_extension(ipython):
    ipython.ast_transformers[:] = [t for t in ipython.ast_transformers
                                   if not isinstance(t, GoOn)]
