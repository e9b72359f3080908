"""Run one unit's probes on a student's copy: the grader's child process.

    python driver.py SUBMISSION UNIT INPUTS.npz OUTPUTS.npz [KEEP_KERNEL ...]

Imports the ``minilenet`` of SUBMISSION (and refuses to go on if ``import``
finds another), swaps every ``numpy_ref`` kernel except KEEP_KERNEL for the
instructor's reference (so one unit is graded alone), runs the probe on each
case of INPUTS.npz (arrays named ``<case>::<input>``) and writes the outputs as
``<case>::<output>``, plus ``status`` and ``message``. It is run by path, so it
and ``probes.py`` are the instructor's files, never the student's.
"""
import importlib.util
import os
import sys
import traceback

import numpy as np


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, arrays):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def main(submission, unit, inputs, outputs, *keep):
    here = os.path.dirname(os.path.abspath(__file__))
    submission = os.path.realpath(submission)
    sys.path.insert(0, submission)
    import minilenet
    found = os.path.realpath(minilenet.__file__)
    if os.path.commonpath([found, submission]) != submission:
        _write(outputs, {"status": np.array("error"), "message": np.array(
            f"the grader would have imported {found}, not the submission")})
        return 3
    probes = _load(os.path.join(here, "probes.py"), "_grader_probes")
    reference = _load(os.path.join(here, "..", "kernels", "numpy_ref.py"), "_grader_reference")
    ml = probes.namespace()
    for name in dir(reference):
        if not name.startswith("_") and callable(getattr(reference, name)) \
                and name not in keep and hasattr(ml.numpy_ref, name):
            setattr(ml.numpy_ref, name, getattr(reference, name))
    with np.load(inputs, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    cases = sorted({key.split("::")[0] for key in arrays})
    out = {"status": np.array("ok"), "message": np.array(""), "module": np.array(found)}
    try:
        for case in cases:
            given = {k.split("::", 1)[1]: v for k, v in arrays.items()
                     if k.startswith(case + "::")}
            for key, value in probes.PROBES[unit](ml, given).items():
                out[f"{case}::{key}"] = np.asarray(value)
    except NotImplementedError as e:
        out.update(status=np.array("not implemented"), message=np.array(str(e)))
    except Exception as e:                       # the student's code failed: report it
        last = traceback.extract_tb(e.__traceback__)[-1]
        out.update(status=np.array("error"), message=np.array(
            f"{type(e).__name__}: {e} ({os.path.basename(last.filename)}, line {last.lineno})"))
    _write(outputs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
