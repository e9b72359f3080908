"""Comparing a unit's outputs with what they should be: one module for the
instructor's grader (``grading``) and the student's own check (``check``).

A unit's outputs are compared with the expected ones to ``TOLERANCE``, and its
gradient outputs with finite differences of its forward pass to
``FD_TOLERANCE``; each failed comparison carries the feedback of ``diagnosis``.
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..gradcheck import numerical_gradient, sample_indices
from . import diagnosis, probes
from .cases import case_rng
from .units import UNITS

#: Outputs must match the reference to this relative error, and gradients the
#: finite differences of the reference forward pass to FD_TOLERANCE.
TOLERANCE = 1e-9
FD_TOLERANCE = 1e-6
#: Finite differences carry an absolute noise of about eps * |f| / h (1e-7 for
#: the MAP loss of penalties in the thousands), so their relative error is taken
#: against a scale of at least 1: gradients near zero are not judged by noise.
FD_SCALE = 1.0

# ---------------------------------------------------------------- cases
def case_inputs(unit, secret=None, hidden=True):
    """[(label, hidden, inputs)] of ``unit``: the visible cases, and the hidden
    ones when ``hidden`` (drawn from ``secret``, which they need)."""
    out = []
    for case in UNITS[unit].cases:
        if case.hidden and not hidden:
            continue
        rng = case_rng(unit, case.label, secret if case.hidden else None)
        out.append((case.label, case.hidden, case.make(rng)))
    return out


# ---------------------------------------------------------------- checks
@dataclass
class Check:
    """One comparison: ``what`` was checked on which case, its relative
    ``error`` against ``tolerance``, and feedback (hidden cases' tell no values)."""
    case: str
    what: str
    error: float
    tolerance: float
    hidden: bool
    feedback: str = ""

    @property
    def passed(self):
        return self.error <= self.tolerance


def compare(unit, cases, got, reference=None, expected=None, gradients=True):
    """The checks of one unit's outputs ``got`` ({"<i>::<output>": array}) on
    ``cases`` (from ``case_inputs``): against ``expected`` (the same layout) when
    given, else against the probe run on ``reference`` (a ``probes.namespace()``,
    by default this package's). With ``gradients``, gradient outputs are also
    checked by finite differences of the forward probe run on ``reference``."""
    reference = reference or probes.namespace()
    record, checks = UNITS[unit], []
    for i, (label, hidden, inputs) in enumerate(cases):
        if expected is None:
            want_all = probes.PROBES[record.probe_name](reference, _copies(inputs))
        else:
            prefix = f"{i}::"
            want_all = {k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)}
        batch = _batch(inputs)
        for key, want in want_all.items():
            have = got.get(f"{i}::{key}")
            checks.append(_check(label, key, have, np.asarray(want), TOLERANCE, hidden, batch))
        if gradients and record.gradient is not None:
            checks += _gradient_checks(record.gradient, label, hidden, inputs, got, i,
                                       reference, batch)
    return checks


def _batch(inputs):
    """The batch size N of a case (its first array's first axis), for the hints."""
    first = next((v for v in inputs.values() if np.ndim(v) >= 2), None)
    return None if first is None else first.shape[0]


def _copies(inputs):
    return {k: np.array(v) for k, v in inputs.items()}


def _check(label, key, have, want, tolerance, hidden, batch, what=None, floor=0.0):
    """One Check; its relative error is taken against a scale of at least ``floor``."""
    if have is None:
        found = diagnosis.Diagnosis(math.inf, None, None, None, "missing from the answer")
    else:
        found = diagnosis.diagnose(have, want, batch=batch)
        if floor and math.isfinite(found.error) and np.shape(have) == want.shape and want.size:
            scale = float(np.max(np.abs(have) + np.abs(want)))
            if scale < floor:
                found = dataclasses.replace(found, error=found.error * scale / floor)
    feedback = diagnosis.describe(what or key, found, hidden=hidden) \
        if not found.error <= tolerance else f"{what or key}: relative error {found.error:.1e}"
    return Check(label, what or key, found.error, tolerance, hidden, feedback)


def _gradient_checks(gradient, label, hidden, inputs, got, i, reference, batch):
    a = {k: np.array(v, dtype=np.float64) if v.dtype.kind == "f" else np.array(v)
         for k, v in inputs.items()}
    probe = probes.PROBES[gradient.probe]

    def objective():
        out = probe(reference, a)[gradient.output]
        return float(np.sum(out * a[gradient.weight]) if gradient.weight else out)
    checks, rng = [], np.random.default_rng(0)
    for key, name in gradient.wrt.items():
        have = got.get(f"{i}::{key}")
        if have is None or np.shape(have) != a[name].shape:
            continue                                 # the output check already failed
        idx = sample_indices(a[name].shape, 10, rng)
        numeric = numerical_gradient(objective, a[name], idx, h=1e-5)
        checks.append(_check(label, key, have.reshape(-1)[idx], numeric, FD_TOLERANCE, hidden,
                             batch, what=f"{key} by finite differences", floor=FD_SCALE))
    return checks
