"""One graded unit in a process of its own, which is trusted with nothing.

``run_unit`` copies the submission's package into a private folder (regular
files only: a symlink, a FIFO or a device refuses the whole submission), starts
``driver.py``'s text as ``python -I -S -B -c`` in a session of its own with a
whitelisted environment and resource limits (address space, CPU time, file
size, open files, no new processes or threads, no core files) and, when the
grader is root, as an unprivileged user in a private mount namespace where the
grader's files are covered. It reads what the child hands back from a pipe the
grader owns, capped in size and time, kills the child's whole session
afterwards whatever happened, and parses the answer as hostile input:
``read_answer`` accepts a zip of plain numeric ``.npy`` arrays and a report of
known fields, and nothing else. docs/grading.md has the threat model.
"""
import io
import json
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass

import numpy as np

from . import UNIT_MEMORY_MB

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "driver.py")
PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes.py")

#: What a submission's package may hold, and how much of it is copied.
COPIED_SUFFIXES = (".py", ".txt", ".npz", ".json", ".toml")
MAX_COPY_BYTES = 64 << 20
MAX_COPY_FILES = 2000
#: The most a unit may hand back, and the statuses its report may carry.
MAX_ANSWER_BYTES = 32 << 20
STATUSES = ("ok", "not implemented", "error", "refused")
MESSAGE_CHARS = 300
#: The account a root grader runs units as, unless told another (``--sandbox-user``).
DEFAULT_USER = "nobody"
#: Variables the child may see (with -I, Python itself ignores every PYTHON*).
PASSED_ON = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class SubmissionRefused(Exception):
    """The submission cannot be graded at all (a symlink, a FIFO, too large)."""


class UnitFailed(Exception):
    """The unit's process gave no usable answer: ``status`` is "timed out" or
    "error", ``message`` says why in one line the grader wrote."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one unit may use: wall-clock seconds (and as much CPU time), memory."""
    timeout: float = 60
    memory_mb: int = UNIT_MEMORY_MB

    def rlimits(self):
        return {"RLIMIT_AS": int(self.memory_mb) << 20,
                "RLIMIT_CPU": int(self.timeout) + 1, "RLIMIT_FSIZE": 16 << 20,
                "RLIMIT_NOFILE": 64, "RLIMIT_NPROC": 0, "RLIMIT_CORE": 0}


def sandbox_user(name=None):
    """(uid, gid) of the account units run as, or None when the grader is not
    root (a process cannot change its user then: see docs/grading.md)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name or DEFAULT_USER)
    except KeyError:
        raise SubmissionRefused(f"no user {name or DEFAULT_USER!r} to run units as") from None
    if entry.pw_uid == 0:
        raise SubmissionRefused(f"user {entry.pw_name!r} is root: units need an "
                                f"unprivileged account")
    return entry.pw_uid, entry.pw_gid


# ------------------------------------------------------------------ the copy
def copy_package(submission, dest):
    """Copy ``submission/minilenet`` to ``dest/minilenet``: regular files with the
    suffixes of ``COPIED_SUFFIXES``, no ``__pycache__``; SubmissionRefused for a
    symlink, a special file or more than the caps, anywhere in the package."""
    total, count = 0, 0
    stack = [("minilenet", os.path.join(submission, "minilenet"))]
    while stack:
        rel, path = stack.pop()
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise SubmissionRefused(f"{rel} is a symbolic link; links are refused")
        if stat.S_ISDIR(info.st_mode):
            os.makedirs(os.path.join(dest, rel), exist_ok=True)
            stack += [(f"{rel}/{name}", os.path.join(path, name)) for name in
                      sorted(os.listdir(path)) if name != "__pycache__"]
            continue
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionRefused(f"{rel} is not a regular file")
        if not rel.endswith(COPIED_SUFFIXES):
            continue
        total, count = total + info.st_size, count + 1
        if total > MAX_COPY_BYTES or count > MAX_COPY_FILES:
            raise SubmissionRefused(f"the package is larger than {MAX_COPY_BYTES >> 20} MiB "
                                    f"or {MAX_COPY_FILES} files")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise SubmissionRefused(f"{rel} is not a regular file")
            with open(os.path.join(dest, rel), "wb") as out:
                shutil.copyfileobj(src, out)
    if count == 0:
        raise SubmissionRefused("no minilenet package in it")


def _chown_tree(root, uid, gid):
    for folder, dirs, files in os.walk(root):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid)


def _site_folders():
    """Where the child finds numpy and threadpoolctl (and nothing of minilenet's)."""
    import threadpoolctl
    return sorted({os.path.dirname(os.path.dirname(np.__file__)),
                   os.path.dirname(os.path.abspath(threadpoolctl.__file__))})


# ----------------------------------------------------------------- the child
def run_unit(submission, probe, inputs, references, limits, user=None, cover=()):
    """Run probe ``probe`` on ``inputs`` ({"<case>::<name>": array}) in a sandboxed
    child on a private copy of ``submission``; ``references`` is a list of
    (kernel name, reference source) put in place of the copy's. Returns the
    child's answer (see ``read_answer``); raises SubmissionRefused or UnitFailed."""
    base = tempfile.mkdtemp(prefix="minilenet-unit-")
    try:
        private = os.path.join(base, "unit")
        os.mkdir(private)
        os.mkdir(os.path.join(private, "tmp"))
        copy_package(submission, os.path.join(private, "copy"))
        np.savez(os.path.join(private, "inputs.npz"), **inputs)
        if user is not None:
            _chown_tree(private, *user)
            os.chmod(base, 0o711)
        os.chmod(private, 0o700)
        with open(os.path.join(base, "stderr"), "w+b") as errors:
            answer = _run_child(base, private, probe, references, limits, user, cover, errors)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return answer


def _run_child(base, private, probe, references, limits, user, cover, errors):
    read_end, write_end = os.pipe()
    settings = {"cover": [os.path.realpath(p) for p in cover], "user": user,
                "limits": limits.rlimits(), "copy": os.path.join(private, "copy"),
                "private": private, "site": _site_folders(), "probe": probe,
                "probes": _read(PROBES), "references": references, "channel": write_end}
    tmp = os.path.join(private, "tmp")
    env = {"PATH": "/usr/bin:/bin", "HOME": private, "TMPDIR": tmp, "LC_ALL": "C.UTF-8",
           "MINILENET_BACKEND": "numpy", "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp,
           "NUMBA_CACHE_DIR": tmp, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    env.update({k: os.environ[k] for k in PASSED_ON if k in os.environ})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", _read(DRIVER), json.dumps(settings)],
            cwd=private, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=errors, pass_fds=(write_end,), start_new_session=True)
    finally:
        os.close(write_end)
    deadline = time.monotonic() + limits.timeout
    try:
        data = _read_capped(read_end, deadline)
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise UnitFailed("timed out", f"no answer within {limits.timeout:g} s") from None
    finally:
        os.close(read_end)
        _kill_session(proc)
    if not data:
        raise UnitFailed("error", f"the process ended (exit status {proc.returncode}) "
                                  f"without an answer: {_last_line(errors)}")
    return read_answer(data)


def _read_capped(fd, deadline):
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired("unit", 0)
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise UnitFailed("error", f"the answer is larger than "
                                      f"{MAX_ANSWER_BYTES >> 20} MiB")
        chunks.append(chunk)


def _kill_session(proc):
    """SIGKILL the child's whole session (it started one: ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _last_line(errors):
    errors.seek(max(0, os.fstat(errors.fileno()).st_size - 2048))
    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
    return clean(lines[-1] if lines else "nothing on stderr")


# ---------------------------------------------------------------- the answer
_ARRAY = re.compile(r"^[0-9]{1,3}::[A-Za-z0-9_.]{1,40}\.npy$")


def clean(text, limit=MESSAGE_CHARS):
    """``text`` as one printable line of at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_answer(data):
    """(report, arrays) from a child's bytes, or UnitFailed("error").

    The answer must be a zip of ``.npy`` members: ``report`` (JSON, with a
    ``status`` of ``STATUSES``) and arrays named ``<case>::<output>`` of bool,
    int or float dtype; anything else (pickles, objects, strings, bombs, extra
    fields) is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if sum(m.file_size for m in members) > MAX_ANSWER_BYTES or len(members) > 1000:
                raise ValueError("too large")
            arrays, report = {}, None
            for member in members:
                raw = io.BytesIO(archive.read(member))
                array = np.lib.format.read_array(raw, allow_pickle=False)
                if member.filename == "report.npy":
                    report = _report(array)
                elif _ARRAY.match(member.filename) and array.dtype.kind in "biuf":
                    arrays[member.filename[:-4]] = array
                else:
                    raise ValueError(f"unexpected member {clean(member.filename, 60)!r} "
                                     f"({array.dtype})")
    except UnitFailed:
        raise
    except Exception as e:                         # noqa: BLE001 (any malformed answer)
        raise UnitFailed("error", f"the unit's answer is not valid: "
                                  f"{clean(f'{type(e).__name__}: {e}', 120)}") from None
    if report is None:
        raise UnitFailed("error", "the unit's answer has no report")
    return report, arrays


def _report(array):
    if array.dtype.kind != "U" or array.shape != () or len(str(array)) > 8192:
        raise ValueError("the report is not one short string")
    fields = json.loads(str(array))
    if not isinstance(fields, dict) or fields.get("status") not in STATUSES or \
            not set(fields) <= {"status", "message", "case", "kind"} or \
            not all(isinstance(v, str) for v in fields.values()):
        raise ValueError("the report has unknown fields or status")
    return {k: clean(v) for k, v in fields.items()}
