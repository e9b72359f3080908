"""The similarity report: students' code against the public reference and each other."""
import inspect
import json
import re
import textwrap
from dataclasses import asdict

import numpy as np
import pytest

from minilenet.kernels import numpy_ref
from minilenet.teaching.assign import assign, source_root
from minilenet.teaching.similarity import (THRESHOLD, compare, fingerprint, judgeable,
                                           reference_regions, similarity, sites,
                                           student_code, student_region)
from minilenet.teaching.units import stub_line

ROOT = source_root()


def conv_backward_loops(x, w, dy, need_dx=True):
    F, C, KH, KW = w.shape
    N, _, OH, OW = dy.shape
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(F, dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for p in range(OH):
                for q in range(OW):
                    g = dy[n, f, p, q]
                    db[f] += g
                    dw[f] += g * x[n, :, p:p + KH, q:q + KW]
                    dx[n, :, p:p + KH, q:q + KW] += g * w[f]
    return (dx if need_dx else None), dw, db


#: What a student writes in place of conv.backward's stub: the body above.
LOOPS = textwrap.dedent("".join(inspect.getsource(conv_backward_loops).splitlines(True)[3:-1]))
#: dense.backward's reference with the variables renamed, reordered, commented.
RENAMED_DENSE = """\
grad_w = x.T @ dy           # weights
grad_in = dy @ w.T

grad_b = dy.sum(axis = 0)
return grad_in, grad_w, grad_b
"""
OTHER_DENSE = "dx = dy.dot(w.T)\ndw = np.dot(x.T, dy)\ndb = np.sum(dy, axis=0)\n"
#: A one-liner, too short to judge.
SHORT_DENSE = "dx, dw, db = dy @ w.T, x.T @ dy, dy.sum(0)\n"


def conv_reference():
    return sites(ROOT, "conv.backward")[0].text()


def test_the_loops_are_a_correct_conv_backward(rng):
    x, w, dy = (rng.standard_normal(s) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (2, 4, 4, 4)))
    for mine, ref in zip(conv_backward_loops(x, w, dy), numpy_ref.conv2d_backward(x, w, dy)):
        np.testing.assert_allclose(mine, ref, atol=1e-12)


def test_renaming_reformatting_comments_and_reordering_change_nothing():
    ref = conv_reference()
    mine = '''
        """My gradients."""
        g = dy.reshape(N, F, OH*OW)     # one row a map
        columns = im2col(x, KH, KW).reshape(N, C*KH*KW,
                                            OH*OW)

        bias = g.sum(axis=(0, 2))
        dw = np.einsum('nfp,nkp->fk', g, columns).reshape(w.shape)
        d_columns = w.reshape(F, -1).T @ g
        dx = col2im(d_columns.reshape(N, C, KH, KW, OH, OW), x.shape)
    '''
    assert similarity(ref, mine) == 1.0
    renamed_only = re.sub(r"\bdy2\b", "g", re.sub(r"\bcols\b", "columns", ref))
    assert fingerprint(renamed_only) == fingerprint(ref)


def test_names_of_the_api_are_kept():
    assert fingerprint("y = np.einsum(a, b)") == fingerprint("out = numpy.einsum(p, q)")
    assert fingerprint("y = np.einsum(a, b)") != fingerprint("y = np.tensordot(a, b)")
    assert fingerprint("s = a.sum(axis=0)") != fingerprint("s = a.sum(keepdims=0)")
    assert fingerprint("a[i, j] = 0") == fingerprint("b[k, m] = 0")
    assert fingerprint("for i in range(n): pass") != fingerprint("for i in rng(n): pass")


def test_another_algorithm_is_far_from_the_reference():
    assert judgeable(LOOPS) and judgeable(conv_reference())
    assert similarity(conv_reference(), LOOPS) < 0.3
    assert similarity(reference_regions(ROOT, "dense.backward"), OTHER_DENSE) < 0.3


def test_the_stub_is_nothing_like_the_reference():
    stub = stub_line("    ", ["conv.backward"])
    assert similarity(conv_reference(), stub) == 0.0
    assert not judgeable(stub)


def test_short_code_is_not_judgeable():
    assert not judgeable("y = x @ w + b")
    assert not judgeable(reference_regions(ROOT, "dense.backward").split("\n\n")[0])
    assert similarity("y = x @ w + b", "out = inp @ weight + bias") == 1.0
    assert similarity("", "") == 0.0


@pytest.mark.parametrize("broken", ["for i in range(3:\n    x = [\n",
                                    "if x:\n        a = 1\n    b = 2\n",
                                    'x = """never closed\n',
                                    "def f(:\n\treturn $ ? 'a\n"])
def test_code_that_does_not_tokenize_still_has_a_fingerprint(broken):
    assert fingerprint(broken)
    assert 0.0 <= similarity(broken, conv_reference()) <= 1.0
    assert similarity(broken, broken) == 1.0


def test_student_region_strips_the_unchanged_lines_around_it():
    ref = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    n = len(x)\n    # BEGIN SOLUTION im2col\n"
           "    y = x * n\n    # END SOLUTION\n    return y\n")
    mine = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    n=len( x )\n"
            "    y = n * x\n    z = y\n    return z\n")         # and the student's return
    assert student_region(ref, (3, 5), mine) == "y = n * x\nz = y\nreturn z\n"
    assert student_region(ref, (3, 5), ref.replace("y = x * n", "pass")) == (
        "# BEGIN SOLUTION im2col\npass\n# END SOLUTION\n")


def test_missing_or_unparsable_files_give_nothing(tmp_path):
    assert student_code(tmp_path, ROOT, "dense.backward") == ""
    kernels = tmp_path / "minilenet" / "kernels"
    kernels.mkdir(parents=True)
    (kernels / "numpy_ref.py").write_text("def dense_backward(x, w, dy):\n    return (\n")
    assert student_code(tmp_path, ROOT, "dense.backward") == ""
    (kernels / "numpy_ref.py").write_text("def something_else():\n    pass\n")
    assert student_code(tmp_path, ROOT, "dense.backward") == ""


def _write(copy, unit, code, lines=1):
    """Replace the stub of ``unit`` in the copy's numpy_ref.py, and the ``lines - 1``
    lines after it, by ``code``."""
    path = copy / "minilenet" / "kernels" / "numpy_ref.py"
    text = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(text) if f'"unit {unit}:' in line)
    indent = text[at][:len(text[at]) - len(text[at].lstrip())]
    text[at:at + lines] = [indent + line if line.strip() else line
                           for line in code.splitlines(keepends=True)]
    path.write_text("".join(text))


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """alice and bob: dense.backward copied from the reference, the same loops for
    conv.backward (bob renamed them); carol and dave: the same dense.backward
    one-liner, their own, and no conv.backward."""
    base = tmp_path_factory.mktemp("similarity")
    out = {who: assign(base / who, ["conv.backward", "dense.backward"])
           for who in ("alice", "bob", "carol", "dave")}
    for who in ("alice", "bob"):
        _write(out[who], "dense.backward", RENAMED_DENSE, lines=2)   # and the return
    _write(out["alice"], "conv.backward", LOOPS)
    _write(out["bob"], "conv.backward", re.sub(r"\bg\b", "grad", LOOPS.replace("\n", "\n\n")))
    for who in ("carol", "dave"):
        _write(out[who], "dense.backward", SHORT_DENSE)
    return out


def test_student_code_is_what_replaced_the_stub(copies):
    assert student_code(copies["alice"], ROOT, "dense.backward") == RENAMED_DENSE
    assert student_code(copies["alice"], ROOT, "conv.backward") == LOOPS
    assert student_code(copies["carol"], ROOT, "conv.backward") == ""
    assert "einsum" in reference_regions(ROOT, "conv.backward")


def test_compare_flags_copies_of_the_reference_and_of_each_other(copies):
    report = compare(ROOT, copies, ["conv.backward", "dense.backward"])
    assert len(report.scores) == 2 * (4 + 6)
    score = {(s.kind, s.unit, s.who): s for s in report.scores}
    assert score["reference", "dense.backward", ("alice",)].score > THRESHOLD
    assert score["reference", "dense.backward", ("carol",)].score < 0.3
    assert score["reference", "conv.backward", ("alice",)].score < 0.3
    assert score["reference", "conv.backward", ("carol",)].score == 0.0
    assert score["pair", "conv.backward", ("alice", "bob")].score == 1.0
    assert score["pair", "dense.backward", ("carol", "dave")].score == 1.0
    assert not score["pair", "dense.backward", ("carol", "dave")].judgeable
    assert {(s.kind, s.unit, s.who) for s in report.flags()} == {
        ("reference", "dense.backward", ("alice",)), ("reference", "dense.backward", ("bob",)),
        ("pair", "dense.backward", ("alice", "bob")), ("pair", "conv.backward", ("alice", "bob"))}
    assert report.flags(threshold=1.01) == []
    assert all(0.0 <= s.score <= 1.0 for s in report.scores)
    json.dumps([asdict(s) for s in report.scores])
