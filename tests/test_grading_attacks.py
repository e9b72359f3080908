"""A student who wants points without the work, against `minilenet grade`.

Each test is one kind of attack from the grading issue, tried as the strongest
student would: one who knows every path of the instructor's machine (the tests
write them into the attack). Every attack must score 0 for its unit and change
nobody else's grade. docs/grading.md says what stops each.
"""
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilenet.teaching import grading, sandbox
from minilenet.teaching.assign import assign
from minilenet.teaching.units import UNITS

pytestmark = pytest.mark.slow
GRADER = Path(grading.__file__).resolve()
PACKAGE = GRADER.parents[1]
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """A copy handing out dense.forward and dense.backward, both solved."""
    return assign(tmp_path_factory.mktemp("solved") / "copy",
                  ["dense.forward", "dense.backward"], solved=True)


def _copy(solved, tmp_path, name="copy"):
    import shutil
    return Path(shutil.copytree(solved, tmp_path / name))


def _attack(copy, code, marker="    # BEGIN SOLUTION dense.forward\n"):
    """Put ``code`` (indented 4) at the start of dense_forward's solution."""
    path = copy / "minilenet" / "kernels" / "numpy_ref.py"
    text = path.read_text()
    assert marker in text
    body = "".join(f"    {line}\n" for line in code.strip("\n").splitlines())
    path.write_text(text.replace(marker, marker + body))


def _grade(copy, units=("dense.forward",), **kw):
    report = grading.grade(copy, units=list(units), **kw)
    return {r.unit: r for r in report.results}, report


def _zero(result):
    assert result.status != "passed" and result.points == 0, (result.status, result.message)


# ------------------------------------------------- 1. reaching the reference
def test_init_that_points_the_package_at_the_instructors_install_gets_nothing(
        solved, tmp_path):
    copy = _copy(solved, tmp_path)
    init = copy / "minilenet" / "__init__.py"
    init.write_text(f"""
import importlib.metadata, json, os
_found = [{str(PACKAGE)!r}]
for _d in importlib.metadata.distributions():
    try:
        _url = json.loads(_d.read_text("direct_url.json") or "{{}}").get("url", "")
        _found.append(_url.replace("file://", "") + "/minilenet")
    except Exception:
        pass
for _p in _found:
    if os.path.isdir(os.path.join(_p, "kernels")):
        __path__[:] = [_p]
        break
""" + init.read_text())
    _attack(copy, "raise NotImplementedError('unit dense.forward: the attack relies on "
                  "the reference')")
    results, _ = _grade(copy)
    _zero(results["dense.forward"])


def test_a_submodule_that_is_a_symlink_to_the_reference_refuses_the_submission(
        solved, tmp_path):
    copy = _copy(solved, tmp_path)
    target = copy / "minilenet" / "kernels" / "numpy_ref.py"
    target.unlink()
    target.symlink_to(PACKAGE / "kernels" / "numpy_ref.py")
    results, _ = _grade(copy, ("dense.forward", "dense.backward"))
    for result in results.values():
        _zero(result)
        assert "symbolic link" in result.message


def test_frames_globals_and_gc_hold_nothing_of_the_reference(solved, tmp_path):
    """conv.backward graded with the reference im2col and col2im: nothing reachable
    from the child's frames and functions is the reference conv2d_backward."""
    copy = assign(tmp_path / "copy", ["conv.backward"], solved=True)
    _attack(copy, """
import sys, types
seen, todo, found = set(), [sys._getframe()], []
frame = sys._getframe()
while frame is not None:
    todo += list(frame.f_globals.values()) + list(frame.f_locals.values())
    frame = frame.f_back
for mod in list(sys.modules.values()):
    todo += list(getattr(mod, "__dict__", {}).values())
while todo:
    item = todo.pop()
    if id(item) in seen:
        continue
    seen.add(id(item))
    if isinstance(item, types.FunctionType):
        if item.__name__ == "conv2d_backward" and item.__code__ is not conv2d_backward.__code__:
            found.append(item)
        todo += list(item.__globals__.values())
    elif isinstance(item, dict):
        todo += list(item.values())
if found:
    return found[0](x, w, dy, need_dx)
raise RuntimeError("nothing of the reference to be found")
""", marker="    # BEGIN SOLUTION conv.backward\n")
    results, _ = _grade(copy, ("conv.backward",))
    _zero(results["conv.backward"])
    assert "nothing of the reference" in results["conv.backward"].message
    _attack(copy, "import gc\nfor o in gc.get_objects():\n    pass",
            marker="    # BEGIN SOLUTION conv.backward\n")
    results, _ = _grade(copy, ("conv.backward",))
    assert results["conv.backward"].status == "refused", results["conv.backward"].message


def test_withheld_units_cannot_call_each_others_reference(tmp_path):
    """conv.forward written as a table convolution with a full table: in the grader
    the table convolution is the student's stub, as at home."""
    copy = assign(tmp_path / "copy", ["conv.forward", "c3.forward"])
    path = copy / "minilenet" / "kernels" / "numpy_ref.py"
    text = path.read_text()
    stub = '    raise NotImplementedError("unit conv.forward: yours to write, see ' \
           'notebooks/01_convolution.ipynb")\n'
    assert stub in text
    path.write_text(text.replace(stub, (
        "    out_idx, in_idx = np.divmod(np.arange(F * C), C)\n"
        "    y = table_conv2d_forward(x, w.reshape(F * C, KH, KW), b, out_idx, in_idx)\n")))
    results, _ = _grade(copy, ("conv.forward", "c3.forward"))
    _zero(results["conv.forward"])
    assert results["conv.forward"].status == "not implemented"
    assert "c3.forward" in results["conv.forward"].message


def test_a_unit_cannot_run_the_instructors_package_in_a_subprocess(solved, tmp_path):
    copy = _copy(solved, tmp_path)
    _attack(copy, f"""
import subprocess, sys
out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, "
                      {str(PACKAGE.parent)!r} + "); import minilenet"], capture_output=True)
""")
    results, _ = _grade(copy)
    _zero(results["dense.forward"])
    assert results["dense.forward"].status == "refused"
    assert "subprocess.Popen" in results["dense.forward"].message


def test_an_exception_cannot_carry_the_graders_files_into_the_feedback(solved, tmp_path):
    copy = _copy(solved, tmp_path)
    _attack(copy, f"""
text = ""
for path in ({str(GRADER)!r}, {str(PACKAGE / 'kernels' / 'numpy_ref.py')!r}):
    try:
        text += open(path).read()
    except OSError as e:
        text += repr(e)
raise ValueError(text * 50)
""")
    results, report = _grade(copy)
    _zero(results["dense.forward"])
    shown = json.dumps(grading.to_gradescope(report)) + json.dumps(grading.to_json(report))
    assert "def case_inputs" not in shown and "BEGIN SOLUTION" not in shown
    assert len(results["dense.forward"].message) <= sandbox.MESSAGE_CHARS


# ------------------------------------------------------- 2. forging results
def _cli(*args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINILENET_BACKEND")}
    return subprocess.run([sys.executable, "-m", "minilenet", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_unit_cannot_write_the_graders_results_or_kill_it(solved, tmp_path):
    copy = _copy(solved, tmp_path)
    _attack(copy, """
import json, os, signal
fake = json.dumps({"total": 106, "score": 106, "tests": []})
args = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
for flag, path in zip(args, args[1:]):
    if flag in (b"--json", b"--gradescope"):
        for target in (path, path + b".tmp"):
            try:
                open(target, "w").write(fake)
            except OSError:
                pass
for pid in (os.getppid(), os.getpgid(0)):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
""")
    out, gs = tmp_path / "grade.json", tmp_path / "results.json"
    proc = _cli("grade", str(copy), "--units", "dense.forward", "--json", str(out),
                "--gradescope", str(gs), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["total"] == 0
    assert json.loads(gs.read_text())["score"] == 0


def test_nothing_a_unit_starts_outlives_it(solved, tmp_path):
    """No process and no thread: a detached process that would rewrite the results
    after the grader has exited cannot start."""
    copy = _copy(solved, tmp_path)
    witness = tmp_path / "started"
    _attack(copy, f"""
import os, threading
started = []
for start in (os.fork, lambda: threading.Thread(target=print).start()):
    try:
        start()
        started.append(start)
    except Exception:
        pass
if started:
    os.makedirs({str(witness)!r}, exist_ok=True)
    return x @ w + b
raise RuntimeError("no process, no thread")
""")
    results, _ = _grade(copy)
    _zero(results["dense.forward"])
    assert not witness.exists()
    if ROOT:
        left = subprocess.run(["ps", "-u", str(sandbox.sandbox_user()[0]), "-o", "pid="],
                              capture_output=True, text=True).stdout.split()
        assert left == []


def test_grade_refuses_the_grader_inside_the_submission(solved, tmp_path):
    """`python -m minilenet grade .` inside a copy would run the copy's grader."""
    copy = _copy(solved, tmp_path)
    witness = tmp_path / "planted grader ran"
    (copy / "minilenet" / "teaching" / "grading.py").write_text(
        f"open({str(witness)!r}, 'w').write('106')\n")
    proc = _cli("grade", ".", "--units", "dense.forward", cwd=copy)
    assert proc.returncode == 2 and "lives inside" in proc.stderr
    assert not witness.exists()


# ---------------------------------------------------- 3. answers in advance
def test_answers_prepared_for_the_public_cases_fail_the_secret_ones(solved, tmp_path):
    secret = b"the instructor's secret"

    def answer(inputs):
        return hashlib.sha256(inputs["x"].tobytes()).hexdigest(), \
            (inputs["x"] @ inputs["w"] + inputs["b"]).tolist()
    # every case, the hidden ones as they would be drawn without a secret
    answers = dict(answer(inputs) for _, _, inputs in grading.case_inputs("dense.forward"))
    copy = _copy(solved, tmp_path)
    _attack(copy, f"""
import hashlib
answers = {json.dumps(answers)}
key = hashlib.sha256(x.tobytes()).hexdigest()
return np.array(answers[key]) if key in answers else np.zeros((x.shape[0], w.shape[1]))
""")
    results, _ = _grade(copy, secret=secret)
    result = results["dense.forward"]
    _zero(result)
    assert result.message.startswith("hidden case 'batch 8, 9 -> 2'")
    visible = [c for c in result.checks if not c.hidden]
    assert visible and all(c.passed for c in visible)


def test_hidden_cases_follow_the_secret_and_each_unit_its_own_seed():
    a = grading.case_inputs("dense.forward", b"one")
    b = grading.case_inputs("dense.forward", b"two")
    assert np.array_equal(a[0][2]["x"], b[0][2]["x"])                  # visible: public
    assert not np.array_equal(a[1][2]["x"], b[1][2]["x"])              # hidden: secret
    again = grading.case_inputs("dense.forward", b"one")
    assert np.array_equal(a[1][2]["x"], again[1][2]["x"])


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_the_reference_passes_its_own_checks_for_any_secret(unit):
    from minilenet.teaching import probes
    reference = probes.namespace()
    for _ in range(3):
        cases = grading.case_inputs(unit, os.urandom(16))
        got = {f"{i}::{k}": np.asarray(v) for i, (_, _, inputs) in enumerate(cases)
               for k, v in probes.PROBES[UNITS[unit].probe_name](
                   reference, {a: np.array(b) for a, b in inputs.items()}).items()}
        assert all(c.passed for c in grading.compare(unit, cases, got, reference))


# ------------------------------------------- 4. and 5. harming other students
def _hostile_answer(kind):
    """Code that writes a crafted answer to the grader's pipe, then exits."""
    return f"""
import io, json, os, sys, zipfile
settings = sys.modules["__main__"].settings
buffer = io.BytesIO()
kind = {kind!r}
with zipfile.ZipFile(buffer, "w") as z:
    report = np.array(json.dumps({{"status": "ok"}}))
    bio = io.BytesIO(); np.save(bio, report); z.writestr("report.npy", bio.getvalue())
    bio = io.BytesIO()
    if kind == "object":
        np.save(bio, np.array([{{"a": 1}}], dtype=object), allow_pickle=True)
    elif kind == "str":
        np.save(bio, np.array(["106"]))
    else:
        np.save(bio, np.zeros(3)); 
    z.writestr("0::y.npy" if kind != "extra" else "../../grades.csv.npy", bio.getvalue())
os.write(settings["channel"], buffer.getvalue())
os._exit(0)
"""


@pytest.mark.parametrize("kind", ["object", "str", "extra"])
def test_a_hostile_answer_is_that_units_error(solved, tmp_path, kind):
    copy = _copy(solved, tmp_path)
    _attack(copy, _hostile_answer(kind))
    results, _ = _grade(copy)
    _zero(results["dense.forward"])
    assert results["dense.forward"].status == "error"
    assert "not valid" in results["dense.forward"].message


def test_read_answer_refuses_what_is_not_plain_numbers():
    import io
    import zipfile

    def archive(members):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)
        return buffer.getvalue()

    def npy(array, **kw):
        buffer = io.BytesIO()
        np.save(buffer, array, **kw)
        return buffer.getvalue()
    good_report = npy(np.array(json.dumps({"status": "ok"})))
    report, arrays = sandbox.read_answer(archive({"report.npy": good_report,
                                                  "0::y.npy": npy(np.ones(2))}))
    assert report == {"status": "ok"} and list(arrays) == ["0::y"]
    bad = [b"", b"not a zip", archive({"0::y.npy": npy(np.ones(2))}),                # no report
           archive({"report.npy": npy(np.array(json.dumps({"status": "passed"})))}),
           archive({"report.npy": npy(np.array(json.dumps({"status": "ok", "x": 1})))}),
           archive({"report.npy": good_report, "0::y.npy": npy(np.array([None]),
                                                               allow_pickle=True)}),
           archive({"report.npy": good_report, "0::y.npy": b"\x93NUMPY garbage"}),
           archive({"report.npy": good_report, "0::y.npy": npy(np.zeros(1, "U3"))}),
           archive({"report.npy": good_report, "0::y.npy": b"\0" * (40 << 20)})]     # a bomb
    for data in bad:
        with pytest.raises(sandbox.UnitFailed):
            sandbox.read_answer(data)


def test_a_folder_with_hostile_submissions_grades_everyone_else(solved, tmp_path):
    """eve attacks the grader, the other students, and the run; mia hands in a FIFO;
    leo a huge answer. ada and zed (solved) keep their full marks, and every row
    is written."""
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("ada", "eve", "leo", "mia", "zed"):
        _copy(solved, folder, name)
    targets = [GRADER.parent / "driver.py", GRADER, folder / "zed" / "minilenet" / "kernels"
               / "numpy_ref.py", folder / "grades.csv"]
    before = {p: p.read_bytes() for p in targets[:3]}
    cache = GRADER.parent / "__pycache__"
    cached = sorted(os.listdir(cache)) if cache.is_dir() else []
    _attack(folder / "eve", f"""
import os, glob
for path in {[str(p) for p in targets]!r} + [{str(cache / 'grading.cpython-311.pyc')!r}]:
    try:
        with open(path, "w") as f:
            f.write("raise SystemExit('hijacked')")
    except OSError:
        pass
for inputs in glob.glob("/tmp/minilenet-unit-*/unit/inputs.npz"):
    try:
        os.remove(inputs)
    except OSError:
        pass
raise RuntimeError("eve")
""")
    os.mkfifo(folder / "mia" / "minilenet" / "kernels" / "fifo.py")
    _attack(folder / "leo", "import os, sys\n"
                            "os.write(sys.modules['__main__'].settings['channel'], "
                            "b'0' * (40 << 20))\nos._exit(0)")
    reports, csv_path = grading.grade_folder(folder, units=["dense.forward", "dense.backward"],
                                             progress=False)
    rows = {row[0]: row for row in csv.reader(open(csv_path))}
    assert set(rows) == {"student", "ada", "eve", "leo", "mia", "zed"}
    for good in ("ada", "zed"):
        assert reports[good].total == reports[good].max_total == 8, good
        assert rows[good][3] == "8"
    for bad in ("eve", "leo", "mia"):
        assert {r.unit: r.points for r in reports[bad].results}["dense.forward"] == 0, bad
    assert all("fifo.py is not a regular file" in r.message for r in reports["mia"].results)
    assert "larger than" in {r.unit: r for r in reports["leo"].results}["dense.forward"].message
    assert all(p.read_bytes() == before[p] for p in before)
    assert (sorted(os.listdir(cache)) if cache.is_dir() else []) == cached
    assert (folder / "grades" / "eve.json").is_file()


# ------------------------------------------------------------ 6. resources
def test_a_unit_that_holds_too_much_memory_or_hangs_loses_its_points(solved, tmp_path):
    copy = _copy(solved, tmp_path)
    _attack(copy, "hog = np.ones(2 << 30, np.uint8)")
    _attack(copy, "import time\nwhile True:\n    time.sleep(1)",
            marker="    # BEGIN SOLUTION dense.backward\n")
    box = grading.make_sandbox(timeout=3, cover=(copy,))
    results, _ = _grade(copy, ("dense.forward", "dense.backward"), box=box)
    assert results["dense.forward"].status == "error"
    assert "MemoryError" in results["dense.forward"].message
    assert results["dense.backward"].status == "timed out"


# ------------------------------------------------------- what is graded
def test_a_copy_with_two_units_solved_scores_those_two(tmp_path):
    copy = assign(tmp_path / "copy", ["conv.backward", "subsampling.backward"], solved=True)
    report = grading.grade(copy)
    assert {r.unit for r in report.results} == {"conv.backward", "subsampling.backward"}
    assert report.total == report.max_total == 15
    assert "the copy's record" in report.units_from


def test_a_changed_record_of_units_is_noticed_with_the_secret(tmp_path):
    secret = b"key"
    copy = assign(tmp_path / "copy", ["dense.forward"], solved=True, secret=secret)
    assert grading.grade(copy, secret=secret).total == 3
    record = copy / "minilenet" / "assignment.py"
    record.write_text(record.read_text().replace("['dense.forward']",
                                                 "['dense.forward', 'rbf.forward']"))
    tampered = grading.grade(copy, secret=secret)
    assert tampered.results == [] and "was changed" in tampered.error
    assert [r.unit for r in grading.grade(copy, units=["dense.forward"]).results] == \
        ["dense.forward"]


# ------------------------------------------------ the tripwire on its own
def test_the_tripwire_alone_refuses_what_the_wall_would_stop(solved, tmp_path):
    """As a grader that is not root runs units (no other user, no namespace):
    the audit hook refuses reading the grader, writing outside, subprocesses."""
    copy = _copy(solved, tmp_path)
    attacks = {"dense.forward": f"open({str(GRADER)!r}).read()",
               "dense.backward": f"open({str(tmp_path / 'x')!r}, 'w')"}
    for unit, code in attacks.items():
        _attack(copy, code, marker=f"    # BEGIN SOLUTION {unit}\n")
    box = grading.Sandbox(sandbox.Limits(30), user=None, cover=())
    results, _ = _grade(copy, ("dense.forward", "dense.backward"), box=box)
    for unit in attacks:
        assert results[unit].status == "refused", results[unit].message
        assert results[unit].message == "open"
