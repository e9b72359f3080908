"""minilenet check: a student's own grader, on the visible cases.

For each unit it runs the copy's code (yours) on the unit's visible cases, the
very inputs ``minilenet grade`` uses for them, and compares the outputs with
the instructor's, stored in ``resources/visible_cases.npz`` (the reference is
not in a student copy), and the gradients also with finite differences of
your own forward pass. Each unit is not implemented, passed or failed; a
failure says which output, its relative error, the worst element and a hint
(the same diagnosis as ``grade``). The hidden cases stay with the instructor.

    minilenet check                      # the units of this copy
    minilenet check conv.backward        # one unit

In a notebook: ``assert_unit("conv.backward")``.
"""
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import UserError
from . import probes
from .compare import case_inputs, compare
from .units import UNITS, closure

#: The instructor's outputs on every visible case: "<unit>/<case>::<output>".
EXPECTED = "visible_cases.npz"


@dataclass
class UnitCheck:
    """``status``: passed, failed, not implemented or error; ``checks``: the
    comparisons (``compare.Check``); ``message``: one line when not passed."""
    unit: str
    status: str
    message: str = ""
    checks: list = field(default_factory=list)

    @property
    def passed(self):
        return self.status == "passed"


def expected_path():
    return str(resources.files("minilenet.resources").joinpath(EXPECTED))


def expected(unit):
    """The stored outputs of ``unit``'s visible cases, {"<case>::<output>": array}."""
    with np.load(expected_path(), allow_pickle=False) as data:
        return {key.split("/", 1)[1]: data[key] for key in data.files
                if key.split("/", 1)[0] == unit}


def write_expected(path=None):
    """Store this package's outputs on every visible case (the instructor's
    checkout only: its code is the reference)."""
    from ..assignment import WITHHELD
    if WITHHELD:
        raise UserError("the expected values come from the reference: write them in the "
                        "instructor's checkout, not in a student copy")
    arrays = {}
    for unit, record in UNITS.items():
        for i, (_, _, inputs) in enumerate(case_inputs(unit, hidden=False)):
            out = probes.PROBES[record.probe_name](probes.namespace(),
                                                   {k: np.array(v) for k, v in inputs.items()})
            arrays.update({f"{unit}/{i}::{k}": np.asarray(v) for k, v in out.items()})
    from ..fileio import save_npz
    save_npz(path or expected_path(), arrays)
    return path or expected_path()


def _where(error):
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "" if tb is None else f" ({os.path.basename(tb.tb_frame.f_code.co_filename)}, " \
                                 f"line {tb.tb_lineno})"


def check_unit(unit, verbose=False):
    """Check one unit of this copy on its visible cases; a UnitCheck (printed
    case by case, CS231n style, when ``verbose``)."""
    if unit not in UNITS:
        raise UserError(f"unknown unit {unit!r} (minilenet assign --list lists them)")
    record, ml = UNITS[unit], probes.namespace()
    cases = case_inputs(unit, hidden=False)
    got = {}
    try:
        for i, (_, _, inputs) in enumerate(cases):
            out = probes.PROBES[record.probe_name](ml, {k: np.array(v) for k, v in inputs.items()})
            got.update({f"{i}::{k}": np.asarray(v) for k, v in out.items()})
    except NotImplementedError as e:
        result = UnitCheck(unit, "not implemented", str(e))
    except Exception as e:                               # noqa: BLE001 (your code raised)
        result = UnitCheck(unit, "error", f"{type(e).__name__}: {e}{_where(e)}")
    else:
        try:
            checks = compare(unit, cases, got, ml, expected(unit))
            skipped = ""
        except NotImplementedError as e:                 # its forward pass is not written yet
            checks = compare(unit, cases, got, ml, expected(unit), gradients=False)
            skipped = f"; the finite differences need the forward pass ({e})"
        failed = [c for c in checks if not c.passed]
        if failed:
            worst = max(failed, key=lambda c: c.error / c.tolerance)
            result = UnitCheck(unit, "failed", f"case {worst.case!r}: {worst.feedback}", checks)
        else:
            result = UnitCheck(unit, "passed", f"{len(checks)} checks{skipped}", checks)
    if verbose:
        print(format_unit(result, every_check=True))
    return result


def assert_unit(unit):
    """A notebook's check cell: ``check_unit(unit)``, printed case by case, raising
    NotImplementedError while the unit is not written (a student notebook then
    says so, in one line, and goes on) and AssertionError when it fails."""
    result = check_unit(unit)
    if result.status == "not implemented":
        raise NotImplementedError(result.message)
    print(format_unit(result, every_check=True))
    assert result.passed, f"{unit} {result.status}: {result.message}"
    return result


def check(units=None):
    """Check ``units`` (default: this copy's withheld units, else every unit),
    each after the units it depends on; a failure caused by a dependency that
    fails is folded under it."""
    from ..assignment import WITHHELD
    asked = list(units) if units else sorted(WITHHELD) or list(UNITS)
    unknown = [u for u in asked if u not in UNITS]
    if unknown:
        raise UserError(f"unknown unit {unknown[0]!r} (minilenet assign --list lists them)")
    results = {}
    for unit in closure(asked):
        if unit not in asked:
            continue
        result = check_unit(unit)
        broken = [d for d in closure([unit])[:-1] if d in results and not results[d].passed]
        if not result.passed and broken:
            result.message = f"{broken[0]} {results[broken[0]].status}: fix it first " \
                             f"(this unit calls it)"
        results[unit] = result
    return [results[u] for u in asked]


def format_unit(result, every_check=False):
    lines = [f"{result.unit:<24}{result.status:<17}{result.message}"]
    for c in result.checks:
        if every_check or not c.passed:
            lines.append(f"    {'passed' if c.passed else 'FAILED'}  case {c.case!r}: "
                         f"{c.feedback}".replace("\n", "\n        "))
    return "\n".join(lines)


def format_report(report):
    passed = sum(r.passed for r in report)
    return "\n".join([format_unit(r, every_check=False) for r in report]
                     + [f"{passed} of {len(report)} units passed"])
