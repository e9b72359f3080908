"""minilenet autograder: a Gradescope autograder bundle in one command.

``build(out_zip, units, rubric, secret)`` writes a zip that Gradescope's
"zip file upload" takes as it is:

- ``setup.sh`` (run once, as root, when the image is built): installs the
  dependencies for the system's Python, and copies the grader to
  ``/autograder/grader``, which only root may read, with the assignment's
  settings and secret beside it. Units run as ``nobody``, so a student's code
  can read neither the grader nor the secret.
- ``run_autograder`` (run as root for every submission): grades
  ``/autograder/submission`` with ``python -m minilenet.teaching.autograder``
  and always leaves a valid ``/autograder/results/results.json``, even when
  Python itself cannot start.

Both scripts take ``AUTOGRADER_ROOT`` (default ``/autograder``) and
``MINILENET_PYTHON`` (default ``python3``), so a test can run them in a folder
laid out like Gradescope's; ``MINILENET_SKIP_DEPS=1`` skips the pip install.
"""
import configparser
import json
import os
import sys
import time
import zipfile

from ..errors import UserError

#: What of the checkout goes into the bundle (the grader needs the package only).
SOURCE = ("minilenet", "setup.cfg", "pyproject.toml", "README.md")

SETUP = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${MINILENET_PYTHON:-python3}"
if [ -z "${MINILENET_SKIP_DEPS:-}" ]; then
    command -v "$PY" >/dev/null || { apt-get update && apt-get install -y python3 python3-pip; }
    "$PY" -m pip install -q -r "$ROOT/source/requirements.txt" \
        || "$PY" -m pip install -q --break-system-packages -r "$ROOT/source/requirements.txt"
fi
# The grader, its settings and the secret: readable by root only (units run as nobody).
rm -rf "$ROOT/grader"
install -d -m 700 "$ROOT/grader"
cp -r "$ROOT/source/minilenet" "$ROOT/grader/minilenet"
cp "$ROOT/source/autograder.json" "$ROOT/grader/autograder.json"
if [ -f "$ROOT/source/secret" ]; then install -m 600 "$ROOT/source/secret" "$ROOT/grader/secret"; fi
chmod -R go-rwx "$ROOT/grader" "$ROOT/source"
# The grader imports (nothing is compiled: units run the NumPy code).
cd "$ROOT/grader"
PYTHONPATH="$ROOT/grader" "$PY" -m minilenet.teaching.autograder check
"""

RUN = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${MINILENET_PYTHON:-python3}"
mkdir -p "$ROOT/results"
cd "$ROOT/grader" || exit 0
PYTHONPATH="$ROOT/grader" "$PY" -m minilenet.teaching.autograder run "$ROOT" \
    || [ -s "$ROOT/results/results.json" ] \
    || printf '{"score": 0, "output": "The autograder could not start; nothing was graded.", "tests": []}\n' \
        > "$ROOT/results/results.json"
"""


def requirements(root):
    """The package's install_requires, from ``setup.cfg``, one per line."""
    config = configparser.ConfigParser()
    config.read(os.path.join(root, "setup.cfg"))
    return [line.strip() for line in config["options"]["install_requires"].splitlines()
            if line.strip()]


def build(out, units, points, secret=None, timeout=60, memory_mb=None):
    """Write the bundle to ``out`` (a .zip): the grader of ``units`` ({unit:
    points} from ``points``), with ``secret`` (bytes) drawing the hidden cases."""
    from . import UNIT_MEMORY_MB
    from .grading import grader_package_root
    root = grader_package_root()
    settings = {"units": sorted(units), "points": {u: points[u] for u in units},
                "timeout": timeout, "memory_mb": memory_mb or UNIT_MEMORY_MB}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for item in SOURCE:
            path = os.path.join(root, item)
            if os.path.isfile(path):
                bundle.write(path, f"source/{item}")
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for name in files:
                    if not name.endswith((".pyc", ".nbi", ".nbc")):
                        full = os.path.join(folder, name)
                        bundle.write(full, "source/" + os.path.relpath(full, root))
        bundle.writestr("source/requirements.txt", "\n".join(requirements(root)) + "\n")
        bundle.writestr("source/autograder.json", json.dumps(settings, indent=1))
        if secret is not None:
            bundle.writestr("source/secret", secret)
        for name, text in (("setup.sh", SETUP), ("run_autograder", RUN)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            bundle.writestr(info, text)
    return out


def find_submission(folder):
    """The copy in Gradescope's submission folder: the folder itself, or the one
    subfolder holding ``minilenet/`` (a zip of the whole copy)."""
    from .grading import is_submission
    if is_submission(folder):
        return folder
    inside = [os.path.join(folder, d) for d in sorted(os.listdir(folder))
              if not os.path.islink(os.path.join(folder, d))
              and is_submission(os.path.join(folder, d))]
    if len(inside) != 1:
        raise UserError("no minilenet/ package in the submission: upload your whole copy "
                        "(the folder that holds minilenet/, or a zip of it)")
    return inside[0]


def run(root):
    """Grade ``ROOT/submission`` and write ``ROOT/results/results.json``, whatever happens."""
    from . import grading
    start = time.monotonic()
    results = os.path.join(root, "results", "results.json")
    try:
        here = os.path.dirname(grading.grader_package())
        with open(os.path.join(here, "autograder.json")) as f:
            settings = json.load(f)
        secret_path = os.path.join(here, "secret")
        secret = grading.load_secret(path=secret_path) if os.path.exists(secret_path) else None
        submission = find_submission(os.path.join(root, "submission"))
        box = grading.make_sandbox(settings["timeout"], settings["memory_mb"],
                                   cover=(os.path.join(root, "submission"), secret_path))
        report = grading.grade(submission, settings["points"], settings["units"], secret, box)
        data = grading.to_gradescope(report, time.monotonic() - start)
    except BaseException as e:                                 # noqa: BLE001 (always a result)
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        data = {"score": 0, "execution_time": round(time.monotonic() - start, 1),
                "output": f"**Nothing was graded**: {message}", "output_format": "md",
                "tests": []}
    grading.write_json(results, data)
    return 0


def main(argv):
    if argv[:1] == ["run"] and len(argv) == 2:
        return run(argv[1])
    if argv == ["check"]:
        from . import grading
        print(f"minilenet grader ready in {grading.grader_package()}")
        return 0
    print("usage: python -m minilenet.teaching.autograder run ROOT | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
