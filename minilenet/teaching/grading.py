"""minilenet grade: grade a student's copy unit by unit, trusting none of it.

Only the units the copy hands out are graded (``--units``, else the copy's own
record, which ``assign --secret`` signs). Each runs in a sandboxed process of
its own (``sandbox.run_unit``) on a private copy of the submission, with the
instructor's reference of each unit it depends on and nothing else of the
instructor's. Its outputs are compared, here, with the reference on the same
inputs, and its gradients with finite differences of the reference forward
pass, on visible cases (seeded by the unit's name: the ones ``minilenet check``
shows the student) and hidden ones (seeded by the instructor's secret too).
A unit that raises, hangs, exits or hands back anything odd loses its own
points only; a folder run writes every student's row as soon as it is graded.
"""
import ast
import csv
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from dataclasses import asdict, dataclass, field


from ..errors import UserError
from ..fileio import atomic_write
from . import probes, sandbox
from .compare import case_inputs, compare
from .units import UNITS, closure

#: Environment variable that may hold the secret (or ``--secret`` / ``--secret-file``).
SECRET_VARIABLE = "MINILENET_GRADING_SECRET"


# ------------------------------------------------------------ the secret
def load_secret(text=None, path=None):
    """The instructor's secret as bytes: ``text``, else the file at ``path``, else
    $MINILENET_GRADING_SECRET; None when none is given."""
    if path:
        try:
            with open(path, "rb") as f:
                text = f.read().strip()
        except OSError as e:
            raise UserError(f"--secret-file {path}: {e.strerror}") from None
        if not text:
            raise UserError(f"--secret-file {path}: the file is empty")
    text = text or os.environ.get(SECRET_VARIABLE) or None
    return text.encode() if isinstance(text, str) else text


def new_secret():
    """A fresh random secret, as text to keep in a key file."""
    return secrets.token_hex(32)


def sign(secret, units):
    """The tag ``assign --secret`` writes beside a copy's units."""
    return hmac.new(secret, ",".join(sorted(units)).encode(), hashlib.sha256).hexdigest()


def assignment_record(submission):
    """(units, tag) from the copy's ``minilenet/assignment.py``, read as text
    (never imported); UserError when it is missing or not of that form."""
    path = os.path.join(submission, "minilenet", "assignment.py")
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(1 << 16))
        values = {node.targets[0].id: node.value for node in tree.body
                  if isinstance(node, ast.Assign) and len(node.targets) == 1
                  and isinstance(node.targets[0], ast.Name)}
        call = values["WITHHELD"]
        units = ast.literal_eval(call.args[0]) if call.args else []
        tag = ast.literal_eval(values["TAG"]) if "TAG" in values else None
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "frozenset"
                and all(isinstance(u, str) for u in units)
                and (tag is None or isinstance(tag, str))):
            raise ValueError
    except (OSError, SyntaxError, ValueError, KeyError, AttributeError, TypeError):
        raise UserError(f"{path}: not an assignment record written by minilenet assign "
                        f"(pass --units to name the units to grade)") from None
    return sorted(set(units)), tag


def handed_out(submission, units=None, secret=None):
    """(units to grade, how they were chosen): ``units`` when given, else the
    copy's record, checked against its tag when there is a secret."""
    if units is not None:
        return sorted(units), "--units"
    recorded, tag = assignment_record(submission)
    unknown = [u for u in recorded if u not in UNITS]
    if unknown:
        raise UserError(f"{submission}: its assignment record names unknown unit "
                        f"{sandbox.clean(unknown[0], 40)!r}")
    if secret is None:
        return recorded, "the copy's record (unsigned: pass --units or --secret)"
    if tag is None or not hmac.compare_digest(tag, sign(secret, recorded)):
        raise UserError(f"{submission}: its assignment record was changed (its units do "
                        f"not match the signature assign wrote)")
    return recorded, "the copy's signed record"


# ---------------------------------------------------------------- rubric
def read_rubric(path=None):
    """{unit: points}: each unit's default points, overridden by a TOML rubric's
    ``[points]`` table; UserError for an unknown unit or a bad score."""
    rubric = {name: unit.points for name, unit in UNITS.items()}
    if path is None:
        return rubric
    try:
        import tomllib
    except ImportError:                                   # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("points")
    except OSError as e:
        raise UserError(f"--rubric {path}: {e.strerror}") from None
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
    return rubric | table


# ------------------------------------------------------------ references
def references(unit, withheld):
    """[(kernel, source)]: the instructor's code of each unit ``unit`` depends on
    that is not the student's, dependencies first, never ``unit``'s own."""
    with open(os.path.join(os.path.dirname(probes.__file__), "..", "kernels",
                           "numpy_ref.py"), encoding="utf-8") as f:
        text = f.read()
    functions = {node.name: ast.get_source_segment(text, node) for node in ast.parse(text).body
                 if isinstance(node, ast.FunctionDef)}
    return [(kernel, functions[kernel]) for dependency in closure([unit])[:-1]
            if dependency not in withheld for kernel in UNITS[dependency].kernels]


# ---------------------------------------------------------------- grading
@dataclass
class UnitResult:
    """One unit's grade: ``status`` is passed, failed, not implemented, timed
    out, refused or error."""
    unit: str
    status: str
    points: float
    max_points: float
    message: str = ""
    checks: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Sandbox:
    """How units run: their limits, the account (root only) and what is covered."""
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    user: tuple = None
    cover: tuple = ()


def grade_unit(submission, unit, points, withheld, secret, box):
    """Grade one unit of ``submission`` in a sandboxed child; a UnitResult."""
    start = time.monotonic()
    cases = case_inputs(unit, secret)
    inputs = {f"{i}::{k}": v for i, (_, _, arrays) in enumerate(cases) for k, v in arrays.items()}
    try:
        report, got = sandbox.run_unit(submission, UNITS[unit].probe_name, inputs,
                                       references(unit, withheld), box.limits, box.user,
                                       box.cover)
    except sandbox.UnitFailed as e:
        return UnitResult(unit, e.status, 0, points, e.message,
                          seconds=time.monotonic() - start)
    seconds = time.monotonic() - start
    status = report["status"]
    if status != "ok":
        return UnitResult(unit, status, 0, points, _child_message(report, cases), [], seconds)
    checks = compare(unit, cases, got)
    failed = [c for c in checks if not c.passed]
    if failed:
        shown = [c for c in failed if not c.hidden] or failed   # a visible case tells more
        worst = max(shown, key=lambda c: c.error / c.tolerance)
        where = "hidden case" if worst.hidden else "case"
        return UnitResult(unit, "failed", 0, points, f"{where} {worst.case!r}: {worst.feedback}",
                          checks, seconds)
    return UnitResult(unit, "passed", points, points,
                      f"{len(checks)} checks ({sum(c.hidden for c in checks)} hidden)",
                      checks, seconds)


def _child_message(report, cases):
    """The child's own words, unless they come from a hidden case (whose inputs
    an exception message could carry): then only the case's kind and the error's."""
    case = report.get("case", "")
    if case.isdigit() and int(case) < len(cases) and cases[int(case)][1]:
        kind = "".join(c for c in report.get("kind", "") if c.isalnum() or c == "_")[:40]
        return f"hidden case {cases[int(case)][0]!r}: {kind or 'an error'} raised"
    return report.get("message", "")


def is_submission(folder):
    return os.path.isfile(os.path.join(folder, "minilenet", "__init__.py"))


def grader_package():
    """The folder of the package this grader runs from."""
    return os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def check_grader_outside(*folders):
    """UserError when this grader lives inside one of ``folders`` (a submission's
    own grader is the student's code)."""
    mine = grader_package()
    for folder in folders:
        folder = os.path.realpath(folder)
        if os.path.commonpath([mine, folder]) == folder:
            raise UserError(f"grade: this grader ({mine}) lives inside {folder}; run the "
                            f"instructor's minilenet, installed outside the submissions")


def make_sandbox(timeout=60, memory_mb=sandbox.UNIT_MEMORY_MB, user=None, cover=()):
    """The sandbox settings of a run: the grader's own package and ``cover``
    (submissions, the secret file) are hidden from every unit."""
    try:
        account = sandbox.sandbox_user(user)
    except sandbox.SubmissionRefused as e:
        raise UserError(f"grade: {e}") from None
    return Sandbox(sandbox.Limits(timeout, memory_mb), account,
                   (grader_package(), *(os.path.realpath(p) for p in cover)))


@dataclass
class Report:
    """One submission's grade: its results and which units were graded, and why."""
    submission: str
    results: list
    units_from: str = ""
    error: str = ""
    similarity: dict = field(default_factory=dict)

    @property
    def total(self):
        return sum(r.points for r in self.results)

    @property
    def max_total(self):
        return sum(r.max_points for r in self.results)


def grade(submission, rubric=None, units=None, secret=None, box=None, progress=None):
    """Grade the units ``submission`` hands out; a Report. Never raises for a
    hostile submission: what cannot be graded becomes every unit's error."""
    submission = os.path.realpath(submission)
    if not is_submission(submission):
        raise UserError(f"{submission}: not a student copy (no minilenet/__init__.py in it)")
    check_grader_outside(submission)
    rubric = rubric if isinstance(rubric, dict) else read_rubric(rubric)
    box = box or make_sandbox(cover=(submission,))
    try:
        chosen, why = handed_out(submission, units, secret)
    except UserError as e:
        return Report(submission, [], error=str(e))
    secret = secret if secret is not None else _run_secret()
    graded = [u for u in chosen if u in rubric]
    results = []
    for unit in graded:
        progress and progress(unit)
        try:
            results.append(grade_unit(submission, unit, rubric[unit], set(chosen), secret, box))
        except sandbox.SubmissionRefused as e:
            results.append(UnitResult(unit, "error", 0, rubric[unit], f"refused: {e}"))
        except Exception as e:                     # noqa: BLE001 (the unit's error, not the run's)
            results.append(UnitResult(unit, "error", 0, rubric[unit], sandbox.clean(
                f"the grader could not grade it: {type(e).__name__}: {e}")))
    return Report(submission, results, why)


def add_similarity(report):
    """Set ``report.similarity``: how alike each graded unit's code is to the
    reference's (``similarity.similarity``, 0 to 1; units too short to judge left out)."""
    from . import similarity
    for result in report.results:
        mine = similarity.student_code(report.submission, grader_package_root(), result.unit)
        if similarity.judgeable(mine):
            report.similarity[result.unit] = similarity.similarity(
                mine, similarity.reference_regions(grader_package_root(), result.unit))
    return report


_SECRET = []


def _run_secret():
    """A random secret for this run when the instructor gave none: hidden cases
    are then new at every run (and cannot have been prepared for)."""
    if not _SECRET:
        _SECRET.append(os.urandom(32))
    return _SECRET[0]


# ----------------------------------------------------------------- output
def format_table(report):
    lines = [f"units graded: {', '.join(r.unit for r in report.results) or 'none'} "
             f"(from {report.units_from})" if not report.error else f"error: {report.error}",
             f"{'unit':<24}{'result':<17}{'points':>10}  details", "-" * 90]
    for r in report.results:
        lines.append(f"{r.unit:<24}{r.status:<17}{f'{r.points:g}/{r.max_points:g}':>10}  "
                     f"{r.message}")
    from .similarity import THRESHOLD
    for unit, score in report.similarity.items():
        if score >= THRESHOLD:
            lines.append(f"{unit:<24}{'flagged':<17}{'':>10}  its code is {score:.0%} like the "
                         f"reference's")
    lines += ["-" * 90, f"total: {report.total:g} / {report.max_total:g}"]
    return "\n".join(lines)


def to_json(report):
    return {"submission": report.submission, "total": report.total,
            "max_total": report.max_total, "units_from": report.units_from,
            "error": report.error, "similarity": report.similarity,
            "units": [{k: v for k, v in asdict(r).items() if k != "checks"}
                      | {"checks": [{"case": c.case, "what": c.what,
                                     "error": c.error if math.isfinite(c.error) else None,
                                     "tolerance": c.tolerance, "hidden": c.hidden,
                                     "feedback": c.feedback} for c in r.checks]}
                      for r in report.results]}


def to_gradescope(report, seconds=0.0):
    """Gradescope's results.json: a test per unit; what its hidden cases found
    in a second test seen only once the grades are published."""
    tests = []
    for r in report.results:
        visible = [c for c in r.checks if not c.hidden]
        hidden = [c for c in r.checks if c.hidden]
        text = f"**{r.status}**: {r.message}" if r.message else f"**{r.status}**"
        if any(not c.passed for c in hidden) and all(c.passed for c in visible):
            text = f"**{r.status}**: a hidden case failed (details once grades are published)"
        tests.append({"name": r.unit, "score": r.points, "max_score": r.max_points,
                      "status": "passed" if r.status == "passed" else "failed",
                      "output": text + _markdown_checks(visible), "visibility": "visible"})
        if hidden:
            tests.append({"name": f"{r.unit}: hidden cases", "score": 0, "max_score": 0,
                          "status": "passed" if all(c.passed for c in hidden) else "failed",
                          "output": _markdown_checks(hidden).strip(),
                          "visibility": "after_published"})
    out = {"score": report.total, "execution_time": round(seconds, 1),
           "output_format": "md", "test_output_format": "md", "tests": tests}
    if report.error:
        out["output"] = f"**error**: {report.error}"
    return out


def _markdown_checks(checks):
    return "".join(f"\n- {'passed' if c.passed else 'FAILED'}: {c.case}: {c.feedback}"
                   for c in checks)


def write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def _csv_cell(text):
    """A student's folder name, safe in a spreadsheet (no formula)."""
    text = sandbox.clean(text, 120)
    return "'" + text if text[:1] in "=+-@\t\r" else text


def grade_folder(folder, rubric=None, units=None, secret=None, box=None, csv_path=None,
                 progress=True):
    """Grade every student copy in ``folder`` (one subfolder each). After each
    student the CSV (one row a student) is rewritten and the student's JSON is
    written to FOLDER/grades/; pairs of students (and students and the
    reference) whose code is alike are flagged. Returns ({student: Report}, csv)."""
    from tqdm.auto import tqdm
    from . import similarity
    folder = os.path.realpath(folder)
    students = sorted(d for d in os.listdir(folder) if d != "grades"
                      and not os.path.islink(os.path.join(folder, d))
                      and is_submission(os.path.join(folder, d)))
    if not students:
        raise UserError(f"{folder}: no student copies in it (subfolders with minilenet/)")
    check_grader_outside(folder)
    rubric = rubric if isinstance(rubric, dict) else read_rubric(rubric)
    box = box or make_sandbox(cover=(folder,))
    csv_path = csv_path or os.path.join(folder, "grades.csv")
    reports = {}
    for student in tqdm(students, desc="grading", unit="student", disable=not progress):
        try:
            reports[student] = grade(os.path.join(folder, student), rubric, units, secret, box)
        except Exception as e:                                 # noqa: BLE001
            reports[student] = Report(os.path.join(folder, student), [],
                                      error=f"could not be graded: {type(e).__name__}: {e}")
        write_json(os.path.join(folder, "grades", f"{student}.json"), to_json(reports[student]))
        _write_csv(csv_path, reports, [])
    scores = []
    for unit in _graded(reports):
        who = {s: os.path.join(folder, s) for s, r in reports.items()
               if unit in {x.unit for x in r.results}}
        scores += similarity.compare(grader_package_root(), who, [unit]).scores
    flags = similarity.Report(scores).flags()
    _write_csv(csv_path, reports, flags)
    for student, report in reports.items():
        report.similarity = {s.unit: s.score for s in scores if s.kind == "reference"
                             and s.who == (student,) and s.judgeable}
        data = to_json(report) | {"flags": [asdict(f) for f in flags if student in f.who]}
        write_json(os.path.join(folder, "grades", f"{student}.json"), data)
    return reports, csv_path


def grader_package_root():
    """The folder holding this grader's ``minilenet`` package."""
    return os.path.dirname(grader_package())


def _graded(reports):
    """The units any of ``reports`` graded, in the order of ``UNITS``."""
    graded = {r.unit for report in reports.values() for r in report.results}
    return [u for u in UNITS if u in graded]


def _write_csv(path, reports, flags):
    columns = _graded(reports)
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total", "max", "flags"])
        for student, report in reports.items():
            points = {r.unit: f"{r.points:g}" for r in report.results}
            marks = "; ".join(f"{x.unit} {x.kind} {x.score:.2f}"
                              + (f" with {' and '.join(y for y in x.who if y != student)}"
                                 if x.kind == "pair" else "")
                              for x in flags if student in x.who)
            writer.writerow([_csv_cell(student), *(points.get(u, "") for u in columns),
                             f"{report.total:g}", f"{report.max_total:g}",
                             report.error and _csv_cell(report.error) or marks])
