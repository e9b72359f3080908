"""An IPython extension for the notebooks of a student copy: a cell that needs a
unit the student has not written yet says so in one line, and the notebook goes
on (``%load_ext minilenet.teaching.notebook``, which ``minilenet assign`` puts at
the top of every notebook of the copy).

Each cell runs inside ``try``: a NotImplementedError (a withheld unit) is
reported as "not implemented", and the variables the cell assigns are removed
(they may hold half a result), so that a later cell that needs one of them is
reported as skipped instead of failing. Any other error (a wrong answer, a
failed check) stops the notebook as usual.
"""
import ast

_UNAVAILABLE = set()


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


def skipped(error, names):
    """True (and a report) when ``error`` names a value an earlier cell could not set."""
    if getattr(error, "name", None) not in _UNAVAILABLE:
        return False
    _forget(names)
    print(f"skipped: this cell needs {error.name!r}, which a cell above could not compute "
          f"(a unit not written yet)")
    return True


class GoOn(ast.NodeTransformer):
    """Wrap a cell in ``try``; keep its last expression displayed."""

    def visit_Module(self, module):
        body = module.body
        if not body:
            return module
        last = body[-1] if isinstance(body[-1], ast.Expr) else None
        names = _assigned_names(body)
        result = "_minilenet_cell_value"
        code = f"""
try:
    pass
except NotImplementedError as _minilenet_error:
    __import__("minilenet.teaching.notebook").teaching.notebook.not_implemented(
        _minilenet_error, {names!r})
    {result} = None
except NameError as _minilenet_error:
    if not __import__("minilenet.teaching.notebook").teaching.notebook.skipped(
            _minilenet_error, {names!r}):
        raise
    {result} = None
{result}
"""
        wrapper = ast.parse(code).body
        inner = body[:-1] if last else body
        if last:
            inner = inner + [ast.Assign(targets=[ast.Name(result, ast.Store())], value=last.value)]
        else:
            inner = inner + [ast.Assign(targets=[ast.Name(result, ast.Store())],
                                        value=ast.Constant(None))]
        wrapper[0].body = inner
        module.body = wrapper
        return ast.fix_missing_locations(module)


def load_ipython_extension(ipython):
    _UNAVAILABLE.clear()
    if not any(isinstance(t, GoOn) for t in ipython.ast_transformers):
        ipython.ast_transformers.append(GoOn())


def unload_ipython_extension(ipython):
    ipython.ast_transformers[:] = [t for t in ipython.ast_transformers
                                   if not isinstance(t, GoOn)]
