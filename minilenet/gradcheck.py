"""Finite-difference gradient checks for layers, losses and whole networks.

Everything here runs in float64 and refuses float32: a central difference
with h = 1e-6 has a truncation error of about h^2 and a round-off error of
about eps/h, which is 1e-10 in float64 but 0.1 in float32.

Relative error of a tensor: max |analytic - numerical| / max(|analytic| + |numerical|)
over the checked entries (scale-aware, so entries near zero do not blow up).
Smooth float64 code reaches 1e-9 or better; a real bug gives 1e-2 or worse.
"""
from dataclasses import dataclass, field

import numpy as np

TOLERANCE = 1e-7


@dataclass
class CheckResult:
    """One checked tensor: ``what`` (layer or model), ``tensor`` (dx, weight, ...);
    ``group`` names the part of the suite it belongs to and ``units`` the units whose
    code it runs; ``missing`` says which unit raised NotImplementedError (a student
    copy), when one did. ``analytic`` and ``numerical`` are the compared entries, and
    ``batch`` the batch size of the input, when known."""
    what: str
    tensor: str
    error: float
    tolerance: float = TOLERANCE
    group: str = ""
    note: str = ""
    missing: str = ""
    units: tuple = ()
    analytic: np.ndarray = field(default=None, repr=False, compare=False)
    numerical: np.ndarray = field(default=None, repr=False, compare=False)
    batch: int = None

    @property
    def passed(self):
        return not self.missing and bool(self.error <= self.tolerance)

    @property
    def status(self):
        return "not implemented" if self.missing else "pass" if self.passed else "FAIL"


def require_float64(*arrays, where="gradcheck"):
    for a in arrays:
        if np.asarray(a).dtype != np.float64:
            raise TypeError(f"{where}: finite differences need float64, got {np.asarray(a).dtype}"
                            " (convert with .astype(np.float64) / model.astype(np.float64))")


def rel_error(analytic, numerical):
    """max |a - n| / max(|a| + |n|), the tensor-level relative error."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numerical, np.float64)
    scale = np.max(np.abs(a) + np.abs(n)) if a.size else 0.0
    return 0.0 if scale == 0 else float(np.max(np.abs(a - n)) / scale)


def sample_indices(shape, count, rng):
    """Up to ``count`` distinct flat indices into an array of ``shape`` (all if smaller)."""
    size = int(np.prod(shape))
    if size <= count:
        return np.arange(size)
    return np.sort(rng.choice(size, size=count, replace=False))


def numerical_gradient(f, x, indices, h=1e-6, order=2):
    """Finite differences of the scalar ``f()`` w.r.t. ``x.flat[indices]``.

    ``order=2``: central difference (f(x+h) - f(x-h)) / 2h, error O(h^2).
    ``order=4``: (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h, error O(h^4),
    which allows a larger h where round-off in f dominates.
    ``x`` is perturbed in place and restored; returns an array of len(indices).
    The step is the one actually representable at x (x + h - x), not h itself.
    """
    require_float64(x, where="numerical_gradient")
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient: x must be contiguous (perturbed in place)")
    stencil = {2: ((1, 0.5), (-1, -0.5)),
               4: ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))}[order]
    grad = np.empty(len(indices))
    for out, i in enumerate(indices):
        old = flat[i]
        step = (old + h) - old
        total = 0.0
        for k, weight in stencil:
            flat[i] = old + k * step
            total += weight * f()
        flat[i] = old
        grad[out] = total / step
    return grad


def _compare(what, name, analytic, array, f, indices, h, tol, order=2, batch=None):
    have = analytic.reshape(-1)[indices]
    numeric = numerical_gradient(f, array, indices, h, order)
    return CheckResult(what, name, rel_error(have, numeric), tol, analytic=have,
                       numerical=numeric, batch=batch)


def check_layer(layer, x, rng=None, max_checks=30, h=1e-6, tol=TOLERANCE):
    """Check ``layer.backward`` (input gradient and every parameter gradient).

    The scalar objective is L = sum(forward(x) * dy) for a fixed random dy, so
    dL/dx is exactly what backward(dy) returns. Large tensors are checked at
    ``max_checks`` random coordinates.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.array(x, dtype=x.dtype, copy=True)
    require_float64(x, *layer.params.values(), where=f"check_layer({layer.name})")
    dy = rng.standard_normal(layer.forward(x).shape)

    def objective():
        return float(np.sum(layer.forward(x) * dy))

    layer.forward(x)
    dx = layer.backward(dy)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    results = [_compare(layer.name, "dx", dx, x, objective,
                        sample_indices(x.shape, max_checks, rng), h, tol, batch=len(x))]
    for key, param in layer.params.items():
        results.append(_compare(layer.name, key, grads[key], param, objective,
                                sample_indices(param.shape, max_checks, rng), h, tol,
                                batch=len(x)))
    return results


def check_second(layer, x, rng=None, max_checks=20, h=1e-4, tol=1e-6):
    """Check ``layer.backward_second`` (the Gauss-Newton pass SDLM uses).

    With a fixed positive curvature d2y at the output, the Gauss-Newton
    objective along one coordinate p_k of the input or a parameter is
    G(t) = 1/2 sum_i d2y_i (y_i(p + t e_k) - y_i(p))^2, and its second
    derivative at t = 0, sum_i d2y_i (dy_i/dp_k)^2, is what the pass returns
    (d2x) or stores (``hess``). Finite differences: G''(0) ~ (G(h) + G(-h)) / h^2.
    The pass drops the cross terms between connections that share a parameter
    (the paper's approximation), so the inputs must have one connection per
    shared parameter and output unit (a 1x1 convolution output, say).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.array(x, dtype=x.dtype, copy=True)
    require_float64(x, *layer.params.values(), where=f"check_second({layer.name})")
    y0 = layer.forward(x).copy()                 # a copy: Flatten's output is a view of x
    d2y = rng.uniform(0.5, 2.0, y0.shape)
    d2x = layer.backward_second(d2y)
    hess = {k: h_.copy() for k, h_ in layer.hess.items()}

    def second(array, indices):
        flat, out = array.reshape(-1), np.empty(len(indices))
        for n, i in enumerate(indices):
            old, total = flat[i], 0.0
            for t in (h, -h):
                flat[i] = old + t
                total += 0.5 * np.sum(d2y * (layer.forward(x) - y0) ** 2)
            flat[i] = old
            out[n] = total / h ** 2
        return out

    results = []
    for name, analytic, array in [("d2x", d2x, x)] + [
            (key, hess[key], param) for key, param in layer.params.items()]:
        idx = sample_indices(array.shape, max_checks, rng)
        have, want = analytic.reshape(-1)[idx], second(array, idx)
        results.append(CheckResult(layer.name, name, rel_error(have, want), tol, analytic=have,
                                   numerical=want, batch=len(x)))
    return results


def check_loss(name, loss_fn, scores, labels, h=1e-6, tol=TOLERANCE):
    """Check a loss function's gradient w.r.t. its scores (every entry)."""
    scores = np.array(scores, copy=True)
    require_float64(scores, where=f"check_loss({name})")
    _, grad = loss_fn(scores, labels)
    return [_compare(name, "dscores", grad, scores, lambda: loss_fn(scores, labels)[0],
                     np.arange(scores.size), h, tol, batch=len(scores))]


def check_model(model, loss_fn, x, labels, rng=None, max_checks=10, h=1e-6, order=2,
                tol=TOLERANCE, what="model"):
    """Whole-network check through a loss: the input gradient and every parameter.

    For the paper's network use ``h=1e-2, order=4``: its loss is ~84 while the
    input gradient is ~1e-5 to 1e-4, so round-off (eps * 84 / h) swamps small steps.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.array(x, copy=True)
    require_float64(x, *(layer.params[k] for _, layer, k in model.named_parameters()),
                    where=f"check_model({what})")

    def objective():
        return loss_fn(model.forward(x), labels)[0]

    _, dscores = loss_fn(model.forward(x), labels)
    dx = model.backward(dscores)
    grads = {name: layer.grads[key].copy() for name, layer, key in model.named_parameters()}
    results = [_compare(what, "dx", dx, x, objective, sample_indices(x.shape, max_checks, rng),
                        h, tol, order, len(x))]
    for name, layer, key in model.named_parameters():
        param = layer.params[key]
        results.append(_compare(what, name, grads[name], param, objective,
                                sample_indices(param.shape, max_checks, rng), h, tol, order,
                                len(x)))
    return results


def format_results(results, explain=None, folded=None):
    """A table: what, tensor, max relative error, pass/FAIL; grouped by ``group``
    (a heading with the number of checks), then a line of totals.

    ``explain(result)`` (optional) gives lines printed, indented, under a row that
    did not pass; ``folded`` ({group: {line: rows}}) leaves those rows out of their
    group's table, each line standing for its rows (the totals count them all)."""
    lines = []
    folded = folded or {}
    groups = list(dict.fromkeys(r.group for r in results))
    for group in groups:
        rows = [r for r in results if r.group == group]
        if group:
            cases = len({r.what for r in rows})
            lines += ["", f"{group}: {cases} cases, {len(rows)} checks"]
        lines += [f"{'layer / model':<48}{'tensor':<14}{'rel. error':>12}  result", "-" * 82]
        hidden = {id(r) for fold in folded.get(group, {}).values() for r in fold}
        for r in rows:
            if id(r) in hidden:
                continue
            note = r.missing or r.note
            lines.append(f"{r.what:<48}{r.tensor:<14}{r.error:>12.2e}  {r.status}"
                         + (f"  ({note})" if note else ""))
            if explain and not r.passed:
                lines += [f"    {line}" for line in explain(r)]
        lines += list(folded.get(group, {}))
    missing = sum(r.status == "not implemented" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    lines.append("-" * 82)
    lines.append(f"{len(results) - failed - missing} passed, {failed} failed"
                 + (f", {missing} not implemented" if missing else ""))
    return "\n".join(lines).lstrip("\n")
