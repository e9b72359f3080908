"""minilenet grade: grade a student's copy unit by unit (instructors only: this
file, with its hidden cases, is left out of every student copy).

Each unit runs in its own process (``driver.py``) with a time limit, on the
submission's code, so a unit that raises, hangs or exits loses its own points
only. Its outputs are compared with the instructor's reference on the same
inputs, and its gradients with finite differences of the reference forward
pass, on visible cases and on hidden ones (other shapes, batch sizes, seeds).
"""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import resources

import numpy as np

from ..errors import UserError
from ..fileio import atomic_write
from ..gradcheck import numerical_gradient, rel_error, sample_indices
from . import probes
from .units import UNITS

#: Outputs must match the reference to this relative error, and gradients the
#: finite differences of the reference forward pass to FD_TOLERANCE.
TOLERANCE = 1e-9
FD_TOLERANCE = 1e-6
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "driver.py")


# ------------------------------------------------------------------ cases
def _conv(rng, N, C, F, H, W, k):
    return {"x": rng.standard_normal((N, C, H, W)), "w": rng.standard_normal((F, C, k, k)),
            "b": rng.standard_normal(F), "dy": rng.standard_normal((N, F, H - k + 1, W - k + 1))}


def _table(rng, N, table, H, W, k):
    out_idx, in_idx = np.nonzero(table.T)
    C, F = table.shape
    return {"x": rng.standard_normal((N, C, H, W)), "w": rng.standard_normal((len(out_idx), k, k)),
            "b": rng.standard_normal(F), "dy": rng.standard_normal((N, F, H - k + 1, W - k + 1)),
            "out_idx": out_idx.astype(np.int64), "in_idx": in_idx.astype(np.int64)}


def _windows(rng, N, C, H, W, k, stride):
    return {"x": rng.standard_normal((N, C, H, W)), "kh": np.array(k), "kw": np.array(k),
            "stride": np.array(stride)}


def _cols(rng, N, C, H, W, k, stride):
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    return {"cols": rng.standard_normal((N, C, k, k, OH, OW)),
            "x_shape": np.array([N, C, H, W]), "stride": np.array(stride)}


def _sub(rng, N, C, H, W, scale):
    return {"x": rng.standard_normal((N, C, H, W)), "coef": rng.standard_normal(C),
            "bias": rng.standard_normal(C), "dy": rng.standard_normal((N, C, H // 2, W // 2)),
            "scale": np.array(scale)}


def _penalties(rng, N, K, high):
    y = rng.uniform(0, high, (N, K))
    labels = rng.integers(0, K, N)
    y[np.arange(N), labels] = rng.uniform(0, 2, N)
    return {"scores": y, "labels": labels}


def _pool(rng, N, C, H, W, k, stride, ties=False):
    x = rng.permutation(np.arange(N * C * H * W) * 0.01).reshape(N, C, H, W)
    if ties:                                          # a constant background, as on digits
        x[..., : H // 2, :] = 0.0
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    return {"x": x, "dy": rng.standard_normal((N, C, OH, OW)), "k": np.array(k),
            "stride": np.array(stride)}


def _curvature(rng, N):
    return {"x": rng.standard_normal((N, 2, 6, 6)), "centers": rng.choice([-1.0, 1.0], (3, 5)),
            "conv.weight": rng.standard_normal((3, 2, 3, 3)), "conv.bias": rng.standard_normal(3),
            "sub.weight": rng.standard_normal(3), "sub.bias": rng.standard_normal(3),
            "dense.weight": rng.standard_normal((12, 5)), "dense.bias": rng.standard_normal(5)}


def _step(rng, mu, eta):
    shapes = {"weight": (4, 3), "bias": (3,)}
    a = {"mu": np.array(mu), "eta": np.array(eta)}
    for key, shape in shapes.items():
        a[key], a[f"grad.{key}"] = rng.standard_normal(shape), rng.standard_normal(shape)
        a[f"h.{key}"] = rng.uniform(0, 2, shape)
    return a


_C3 = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]], dtype=bool)

#: unit -> [(case label, hidden, make(rng) -> input arrays)]. The hidden cases
#: use shapes, batch sizes and seeds that appear nowhere in the student copy.
CASES = {
    "im2col": [("3x3 windows", False, lambda r: _windows(r, 2, 2, 5, 6, 3, 1)),
               ("stride 2, batch 3", True, lambda r: _windows(r, 3, 1, 7, 9, 3, 2))],
    "col2im": [("overlapping 3x3", False, lambda r: _cols(r, 2, 2, 5, 6, 3, 1)),
               ("stride 2, 4x4", True, lambda r: _cols(r, 1, 3, 8, 7, 4, 2))],
    "conv.forward": [("2 -> 3 maps", False, lambda r: _conv(r, 2, 2, 3, 6, 7, 3)),
                     ("batch 5, 5x5", True, lambda r: _conv(r, 5, 3, 2, 8, 9, 5))],
    "conv.backward": [("2 -> 3 maps", False, lambda r: _conv(r, 2, 2, 3, 6, 7, 3)),
                      ("batch 5, 5x5", True, lambda r: _conv(r, 5, 3, 2, 8, 9, 5))],
    "c3.forward": [("small table", False, lambda r: _table(r, 2, _C3, 5, 6, 3)),
                   ("C3's Table I", True, lambda r: _table(r, 3, _c3_table(), 9, 7, 5))],
    "c3.backward": [("small table", False, lambda r: _table(r, 2, _C3, 5, 6, 3)),
                    ("C3's Table I", True, lambda r: _table(r, 3, _c3_table(), 9, 7, 5))],
    "subsampling.forward": [("sum", False, lambda r: _sub(r, 2, 3, 6, 4, 1.0)),
                            ("average, batch 4", True, lambda r: _sub(r, 4, 2, 8, 10, 0.25))],
    "subsampling.backward": [("sum", False, lambda r: _sub(r, 2, 3, 6, 4, 1.0)),
                             ("average, batch 4", True, lambda r: _sub(r, 4, 2, 8, 10, 0.25))],
    "scaled_tanh": [("(3, 5)", False, lambda r: {"x": r.standard_normal((3, 5)),
                                                 "dy": r.standard_normal((3, 5))}),
                    ("large inputs", True, lambda r: {"x": 6 * r.standard_normal((2, 3, 4, 4)),
                                                      "dy": r.standard_normal((2, 3, 4, 4))})],
    "rbf.forward": [("84 -> 10", False, lambda r: {"x": r.standard_normal((3, 84)),
                                                   "centers": r.choice([-1.0, 1.0], (10, 84))}),
                    ("7 -> 4, batch 6", True, lambda r: {
                        "x": r.standard_normal((6, 7)), "centers": r.standard_normal((4, 7))})],
    "rbf.backward": [("84 -> 10", False, lambda r: {
        "x": r.standard_normal((3, 84)), "centers": r.choice([-1.0, 1.0], (10, 84)),
        "dy": r.standard_normal((3, 10))}),
        ("7 -> 4, batch 6", True, lambda r: {"x": r.standard_normal((6, 7)),
                                             "centers": r.standard_normal((4, 7)),
                                             "dy": r.standard_normal((6, 4))})],
    "mse_loss": [("penalties", False, lambda r: _penalties(r, 4, 10, 200)),
                 ("batch 7, 3 classes", True, lambda r: _penalties(r, 7, 3, 50))],
    "map_loss": [("small penalties", False, lambda r: _penalties(r, 4, 10, 5)),
                 ("penalties in the thousands", True, lambda r: _penalties(r, 5, 10, 3000))],
    "softmax_cross_entropy": [
        ("logits", False, lambda r: {"scores": 3 * r.standard_normal((4, 10)),
                                     "labels": r.integers(0, 10, 4)}),
        ("large logits", True, lambda r: {"scores": 800 * r.standard_normal((6, 5)),
                                          "labels": r.integers(0, 5, 6)})],
    "dense.forward": [("5 -> 4", False, lambda r: _dense(r, 3, 5, 4)),
                      ("batch 8, 9 -> 2", True, lambda r: _dense(r, 8, 9, 2))],
    "dense.backward": [("5 -> 4", False, lambda r: _dense(r, 3, 5, 4)),
                       ("batch 8, 9 -> 2", True, lambda r: _dense(r, 8, 9, 2))],
    "sdlm.curvature": [("3 samples", False, lambda r: _curvature(r, 3)),
                       ("7 samples", True, lambda r: _curvature(r, 7))],
    "sdlm.step": [("mu 0.02", False, lambda r: _step(r, 0.02, 5e-4)),
                  ("mu 0.5", True, lambda r: _step(r, 0.5, 1e-4))],
    "preprocess": [("bytes", False, lambda r: {"images": r.integers(0, 256, (3, 28, 28))
                                               .astype(np.uint8)}),
                   ("0 and 255", True, lambda r: {"images": np.array([[[0, 255]]], np.uint8)})],
    "maxpool": [("2x2", False, lambda r: _pool(r, 2, 2, 4, 6, 2, 2)),
                ("overlapping 3x3/1", True, lambda r: _pool(r, 2, 1, 5, 5, 3, 1)),
                ("ties", True, lambda r: _pool(r, 1, 2, 6, 6, 2, 2, ties=True))],
    "avgpool": [("2x2", False, lambda r: _pool(r, 2, 2, 4, 6, 2, 2)),
                ("overlapping 3x3/1", True, lambda r: _pool(r, 2, 1, 5, 5, 3, 1))],
}


def _dense(rng, N, D, M):
    return {"x": rng.standard_normal((N, D)), "w": rng.standard_normal((D, M)),
            "b": rng.standard_normal(M), "dy": rng.standard_normal((N, M))}


def _c3_table():
    from ..table_conv import C3_TABLE
    return C3_TABLE


#: Gradient outputs checked by finite differences: unit -> (objective(ml, a),
#: {output: input it is the gradient of}). The objective uses the reference.
def _dot(name, *args):
    return lambda ml, a: float(np.sum(getattr(ml.numpy_ref, name)(*[a[k] for k in args])
                                      * a["dy"]))


def _sub_forward(ml, a):
    return float(np.sum(ml.numpy_ref.subsample_forward(a["x"], a["coef"], a["bias"],
                                                       float(a["scale"])) * a["dy"]))


def _tanh_forward(ml, a):
    return float(np.sum(ml.activations.ScaledTanh(np.float64).f(a["x"]) * a["dy"]))


def _loss_value(name):
    return lambda ml, a: getattr(ml.losses, name)(a["scores"], a["labels"])[0]


def _avgpool_forward(ml, a):
    layer = ml.pooling.AvgPool2D(int(a["k"]), int(a["stride"]), dtype=np.float64,
                                 backend="numpy")
    return float(np.sum(layer.forward(a["x"]) * a["dy"]))


GRADIENTS = {
    "conv.backward": (_dot("conv2d_forward", "x", "w", "b"), {"dx": "x", "dw": "w", "db": "b"}),
    "c3.backward": (_dot("table_conv2d_forward", "x", "w", "b", "out_idx", "in_idx"),
                    {"dx": "x", "dw": "w", "db": "b"}),
    "subsampling.backward": (_sub_forward, {"dx": "x", "dcoef": "coef", "dbias": "bias"}),
    "scaled_tanh": (_tanh_forward, {"dx": "x"}),
    "rbf.backward": (_dot("rbf_forward", "x", "centers"), {"dx": "x"}),
    "dense.backward": (_dot("dense_forward", "x", "w", "b"), {"dx": "x", "dw": "w", "db": "b"}),
    "mse_loss": (_loss_value("mse_loss"), {"grad": "scores"}),
    "map_loss": (_loss_value("map_loss"), {"grad": "scores"}),
    "softmax_cross_entropy": (_loss_value("softmax_cross_entropy"), {"grad": "scores"}),
    "avgpool": (_avgpool_forward, {"dx": "x"}),
}


# ---------------------------------------------------------------- rubric
def default_rubric_path():
    return str(resources.files("minilenet.teaching").joinpath("rubric.toml"))


def read_rubric(path=None):
    """{unit: points} from a TOML rubric (``[points]`` table); UserError for an
    unknown unit or a negative or non-numeric score."""
    try:
        import tomllib
    except ImportError:                                   # Python 3.10
        import tomli as tomllib
    path = path or default_rubric_path()
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("points")
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML rubric ({e})") from e
    if not isinstance(table, dict) or not table:
        raise UserError(f"{path}: expected a [points] table of unit = points")
    for unit, points in table.items():
        if unit not in UNITS:
            raise UserError(f"{path}: unknown unit {unit!r} (minilenet assign --list "
                            f"lists them)")
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
            raise UserError(f"{path}: points for {unit!r} must be a number >= 0, got {points!r}")
    return dict(table)


# ---------------------------------------------------------------- grading
@dataclass
class UnitResult:
    """One unit's grade: ``status`` is passed, failed, not implemented, timed
    out or error; ``checks`` lists (what, relative error, tolerance, hidden)."""
    unit: str
    status: str
    points: float
    max_points: float
    message: str = ""
    checks: list = field(default_factory=list)


def _inputs(unit, seed):
    rng = np.random.default_rng([seed, sorted(UNITS).index(unit)])
    return {label: make(rng) for label, _, make in CASES[unit]}


def _compare(unit, inputs, got):
    """Checks of one unit's outputs: (what, error, tolerance, hidden) each."""
    reference = probes.namespace()
    hidden = {label: h for label, h, _ in CASES[unit]}
    checks = []
    for case, arrays in inputs.items():
        expected = probes.PROBES[unit](reference, {k: np.array(v) for k, v in arrays.items()})
        for key, want in expected.items():
            have = got.get(f"{case}::{key}")
            if have is None or np.shape(have) != np.shape(want):
                shape = None if have is None else np.shape(have)
                checks.append((f"{case}: {key} has shape {shape}, expected {np.shape(want)}",
                               math.inf, TOLERANCE, hidden[case]))
                continue
            checks.append((f"{case}: {key}", rel_error(have, want), TOLERANCE, hidden[case]))
        if unit in GRADIENTS:
            objective, wrt = GRADIENTS[unit]
            a = {k: np.array(v, dtype=np.float64) if v.dtype.kind == "f" else v
                 for k, v in arrays.items()}
            rng = np.random.default_rng(0)
            for key, name in wrt.items():
                if got.get(f"{case}::{key}") is None or np.shape(got[f"{case}::{key}"]) != \
                        a[name].shape:
                    continue
                idx = sample_indices(a[name].shape, 10, rng)
                numeric = numerical_gradient(lambda: objective(reference, a), a[name], idx,
                                             h=1e-5)
                checks.append((f"{case}: {key} by finite differences",
                               rel_error(got[f"{case}::{key}"].reshape(-1)[idx], numeric),
                               FD_TOLERANCE, hidden[case]))
    return checks


def grade_unit(submission, unit, points, timeout=60, seed=0):
    """Grade one unit of ``submission`` in a child process (``timeout`` seconds)."""
    inputs = _inputs(unit, seed)
    with tempfile.TemporaryDirectory() as tmp:
        in_path, out_path = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(in_path, **{f"{case}::{k}": v for case, arrays in inputs.items()
                             for k, v in arrays.items()})
        cmd = [sys.executable, "-s", DRIVER, submission, unit, in_path, out_path,
               *UNITS[unit].kernels]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(MINILENET_BACKEND="numpy", NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))
        try:
            proc = subprocess.run(cmd, cwd=submission, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return UnitResult(unit, "timed out", 0, points, f"no answer within {timeout} s")
        if not os.path.exists(out_path):
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            return UnitResult(unit, "error", 0, points,
                              f"the process ended (exit status {proc.returncode}): {last}")
        with np.load(out_path, allow_pickle=False) as data:
            got = {k: data[k] for k in data.files}
    status, message = str(got.pop("status")), str(got.pop("message"))
    got.pop("module", None)
    if status != "ok":
        return UnitResult(unit, status, 0, points, message)
    checks = _compare(unit, inputs, got)
    failed = [c for c in checks if not c[1] <= c[2]]
    if failed:
        what, error, tol, hidden = max(failed, key=lambda c: c[1] / c[2])
        return UnitResult(unit, "failed", 0, points,
                          f"{'hidden check ' if hidden else ''}{what}: relative error "
                          f"{error:.1e} (tolerance {tol:.0e})", checks)
    return UnitResult(unit, "passed", points, points,
                      f"{len(checks)} checks ({sum(c[3] for c in checks)} hidden)", checks)


def is_submission(folder):
    return os.path.isfile(os.path.join(folder, "minilenet", "__init__.py"))


def grade(submission, rubric=None, timeout=60, progress=None):
    """Grade every unit of the rubric; a list of UnitResult."""
    submission = os.path.realpath(submission)
    if not is_submission(submission):
        raise UserError(f"{submission}: not a student copy (no minilenet/__init__.py in it)")
    rubric = read_rubric(rubric) if not isinstance(rubric, dict) else rubric
    results = []
    for unit, points in rubric.items():
        progress and progress(unit)
        results.append(grade_unit(submission, unit, points, timeout))
    return results


def format_table(results):
    lines = [f"{'unit':<24}{'result':<17}{'points':>10}  details", "-" * 90]
    for r in results:
        lines.append(f"{r.unit:<24}{r.status:<17}{f'{r.points:g}/{r.max_points:g}':>10}  "
                     f"{r.message}")
    total, most = sum(r.points for r in results), sum(r.max_points for r in results)
    lines += ["-" * 90, f"total: {total:g} / {most:g}"]
    return "\n".join(lines)


def to_json(results):
    return {"total": sum(r.points for r in results),
            "max_total": sum(r.max_points for r in results),
            "units": [{k: v for k, v in asdict(r).items() if k != "checks"}
                      | {"checks": [{"what": w, "error": e if math.isfinite(e) else None,
                                     "tolerance": t, "hidden": h} for w, e, t, h in r.checks]}
                      for r in results]}


def to_gradescope(results):
    """The Gradescope autograder's results.json layout."""
    return {"score": sum(r.points for r in results),
            "tests": [{"name": r.unit, "score": r.points, "max_score": r.max_points,
                       "output": f"{r.status}: {r.message}" if r.message else r.status}
                      for r in results]}


def write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def grade_folder(folder, rubric=None, timeout=60, csv_path=None, progress=True):
    """Grade every student copy in ``folder`` (one subfolder each); writes a CSV of
    points, one row a student; returns {student: results}."""
    from tqdm.auto import tqdm
    students = sorted(d for d in os.listdir(folder) if is_submission(os.path.join(folder, d)))
    if not students:
        raise UserError(f"{folder}: no student copies in it (subfolders with minilenet/)")
    rubric = read_rubric(rubric) if not isinstance(rubric, dict) else rubric
    graded = {}
    for student in tqdm(students, desc="grading", unit="student", disable=not progress):
        graded[student] = grade(os.path.join(folder, student), rubric, timeout)
    csv_path = csv_path or os.path.join(folder, "grades.csv")
    with atomic_write(csv_path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *rubric, "total"])
        for student, results in graded.items():
            writer.writerow([student, *(f"{r.points:g}" for r in results),
                             f"{sum(r.points for r in results):g}"])
    return graded, csv_path
