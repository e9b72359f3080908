"""How close a student's code is to the reference solution, and to other students'.

The solutions are public (they are the package), so the grader reports, per
unit, the similarity of each student's code to the reference region and of
every pair of students. Code is only read as text (``tokenize`` and ``ast``),
never run.

The measure. ``fingerprint`` turns code into tokens with the comments,
docstrings, blank lines and indentation dropped, strings replaced by ``STR`` and
the names the author chose renamed ``v0, v1, ...`` (keywords, builtins,
attribute names such as ``einsum`` in ``np.einsum`` and keyword-argument names
such as ``axis=`` are the API, so they are kept). ``similarity`` then takes, as
MOSS does (Schleimer, Wilkerson & Aiken 2003), the k-grams of those tokens, with
two changes for regions of 1 to 10 lines: every k-gram is kept (winnowing only
saves space on large corpora), and k-grams stay inside one statement, with
their names renumbered within the k-gram, so that renaming variables and
reordering independent statements change nothing. The score is the weighted
Jaccard index of the two multisets of k-grams: 1 for the same code up to
names, comments, layout and statement order; near 0 for another algorithm.

A short region (``y = x @ w + b``) is the same in everyone's hands: its score is
reported, with ``judgeable`` false when it has fewer than MIN_TOKENS tokens.

A student's code for a unit is, region by region, what replaced the stub in the
same function of their copy; a region still holding the stub (such as the Numba
twins, which students need not write), a missing function or a file that does
not parse gives "" (such a file fails every check of the grader anyway), and
only the regions the student wrote are compared with the reference.
"""
import ast
import builtins
import io
import itertools
import keyword
import os
import re
import stat
import textwrap
import tokenize
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .units import MARKED_FILES, find_regions

#: Tokens per k-gram: small, since a region is often a single statement.
K = 5
#: Code with fewer tokens (statement ends not counted) is too short to judge:
#: one formula (``dense.backward``'s three lines are 24) is written alike by all.
MIN_TOKENS = 30
#: Scores at or above this are flagged. A copy with renamed variables, another
#: layout, comments or statements reordered scores 1.0; with one statement of five
#: or six rewritten, 0.6 to 0.8; a rewrite keeping only the structure about 0.6;
#: code written independently (loops for einsum) under 0.3.
THRESHOLD = 0.7

_KEPT = set(keyword.kwlist) | {n for n in dir(builtins) if not n.startswith("_")}
_DROPPED = {"COMMENT", "NL", "INDENT", "DEDENT", "ENCODING", "ENDMARKER",
            "FSTRING_MIDDLE", "FSTRING_END"}
_CRUDE = re.compile(r"(?P<COMMENT>#.*)|(?P<STRING>[rbfuRBFU]*('[^'\n]*'|\"[^\"\n]*\"))"
                    r"|(?P<NUMBER>\d[\w.]*)|(?P<NAME>[^\W\d]\w*)|(?P<OP>\S)")
_STUB = re.compile(r'\s*raise NotImplementedError\("unit [^"]*"\)\s*')
_NAME = re.compile(r"v\d+")                       # a renamed name, in a fingerprint
_END = ";"                                        # a statement's end, in a fingerprint


def _tokens(source):
    """(kind, text) pairs by ``tokenize``; for code that does not tokenize, by a
    crude regular expression, one statement a line."""
    source = textwrap.dedent(source)
    try:
        return [(tokenize.tok_name[t.type], t.string)
                for t in tokenize.generate_tokens(io.StringIO(source).readline)]
    except (tokenize.TokenError, SyntaxError):
        pairs = []
        for line in source.splitlines():
            pairs += [(m.lastgroup, m.group()) for m in _CRUDE.finditer(line)]
            pairs.append(("NEWLINE", ""))
        return pairs


def fingerprint(source):
    """``source`` as normalised tokens (see the module docstring); ";" ends a statement."""
    kept = [(kind, text) for kind, text in _tokens(source)
            if kind not in _DROPPED and (text.strip() or kind == "NEWLINE")]
    statements = [list(group) for end, group in itertools.groupby(
        kept, lambda token: token[0] == "NEWLINE" or token[1] == ";") if not end]
    names, out = {}, []
    for statement in statements:
        if all(kind == "STRING" for kind, _ in statement):
            continue                              # a docstring
        brackets = []
        for i, (kind, text) in enumerate(statement):
            before = statement[i - 1][1] if i else ""
            after = statement[i + 1][1] if i + 1 < len(statement) else ""
            keyword_argument = after == "=" and before in ("(", ",") and brackets[-1:] == ["("]
            if kind in ("STRING", "FSTRING_START"):
                text = "STR"
            elif kind == "NAME" and text not in _KEPT and before != "." and not keyword_argument:
                text = names.setdefault(text, f"v{len(names)}")
            elif text in ("(", "[", "{"):
                brackets.append(text)
            elif text in (")", "]", "}") and brackets:
                brackets.pop()
            out.append(text)
        out.append(_END)
    return tuple(out)


def judgeable(source):
    """Whether ``source`` is long enough (MIN_TOKENS) for a high score to mean much."""
    return sum(t != _END for t in fingerprint(source)) >= MIN_TOKENS


def _grams(tokens):
    """Multiset of the k-grams within each statement, names renumbered in each k-gram."""
    grams = Counter()
    statements = [list(s) for end, s in itertools.groupby(tokens, lambda t: t == _END) if not end]
    for statement in statements:
        for i in range(max(1, len(statement) - K + 1)):
            names = {}
            grams[tuple(names.setdefault(t, f"v{len(names)}") if _NAME.fullmatch(t) else t
                        for t in statement[i:i + K])] += 1
    return grams


def similarity(a, b):
    """Weighted Jaccard index of the k-grams of ``a`` and ``b``, in [0, 1] (0 if both empty)."""
    ga, gb = _grams(fingerprint(a)), _grams(fingerprint(b))
    union = sum((ga | gb).values())
    return sum((ga & gb).values()) / union if union else 0.0


# ------------------------------------------------ the code of a unit, in a copy
@lru_cache(maxsize=64)
def _spans(text):
    """{qualified name: (first, last) 1-based lines} of the functions of a module's
    text, named as ``assign.function_of`` does; {} if it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    spans = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    spans[name] = (child.lineno, child.end_lineno)
                visit(child, name + ".")
    visit(tree, "")
    return spans


#: A larger file is not read (a submission's files are hostile input).
MAX_FILE_BYTES = 1 << 20


def _read(path):
    """A regular file's text, or "" if it is missing, a link, special or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return ""
        return f.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")


class Site(NamedTuple):
    """One region of a unit in the reference: its file (relative to the package),
    function (qualified name), the function's source and the region's lines
    (begin, end: the marker lines, 0-based, relative to the function)."""
    file: str
    function: str
    source: str
    lines: tuple

    def text(self):
        begin, end = self.lines
        return textwrap.dedent("".join(self.source.splitlines(keepends=True)[begin + 1:end]))


def sites(reference_root, unit):
    """Every region naming ``unit`` in the checkout ``reference_root``."""
    out = []
    for rel in MARKED_FILES:
        text = _read(Path(reference_root) / "minilenet" / rel)
        lines, spans = text.splitlines(keepends=True), _spans(text)
        for region in find_regions(lines, rel):
            if unit in region.names:
                name, (first, last) = max(
                    ((n, s) for n, s in spans.items() if s[0] <= region.begin < s[1]),
                    key=lambda item: item[1][0])
                out.append(Site(rel, name, "".join(lines[first - 1:last]),
                                (region.begin - first + 1, region.end - first + 1)))
    return out


def reference_regions(reference_root, unit):
    """The reference code of ``unit``: every region naming it, joined."""
    return "\n".join(site.text() for site in sites(reference_root, unit))


def _common(a, b):
    """How many leading lines ``a`` and ``b`` share, whitespace aside."""
    same = [("".join(x.split()) == "".join(y.split())) for x, y in zip(a, b)]
    return same.index(False) if False in same else len(same)


def student_region(reference_function_src, region_lines, student_function_src):
    """What replaces the region ``region_lines`` (begin, end: its marker lines, 0-based)
    of the reference function in the student's version of it: the student's function
    less its longest common prefix with the lines before the region and suffix with
    those after it."""
    begin, end = region_lines
    ref, mine = (s.splitlines(keepends=True) for s in (reference_function_src,
                                                       student_function_src))
    head = _common(ref[:begin], mine)
    tail = _common(ref[end + 1:][::-1], mine[head:][::-1])
    return textwrap.dedent("".join(mine[head:len(mine) - tail]))


def _student_site(copy_root, site):
    """The student's code for one site: "" when missing, unparsable or still the stub."""
    text = _read(Path(copy_root) / "minilenet" / site.file)
    span = _spans(text).get(site.function)
    if span is None:
        return ""
    mine = "".join(text.splitlines(keepends=True)[span[0] - 1:span[1]])
    code = student_region(site.source, site.lines, mine)
    return "" if _STUB.fullmatch(code) else code


def _written(copy_root, unit_sites):
    """The reference code and the student's code (each joined) of the sites of a
    unit that the student wrote."""
    pairs = [(site.text(), _student_site(copy_root, site)) for site in unit_sites]
    pairs = [pair for pair in pairs if pair[1].strip()]
    return "\n".join(ref for ref, _ in pairs), "\n".join(mine for _, mine in pairs)


def student_code(copy_root, reference_root, unit):
    """The student's code of ``unit`` in the copy ``copy_root``, region by region, joined."""
    return _written(copy_root, sites(reference_root, unit))[1]


# ------------------------------------------------------------------ report
@dataclass(frozen=True)
class Score:
    """``kind`` 'reference' (``who``: one student, against the reference code of the
    regions they wrote) or 'pair' (``who``: two students)."""
    kind: str
    unit: str
    who: tuple
    score: float
    judgeable: bool


@dataclass
class Report:
    scores: list

    def flags(self, threshold=THRESHOLD):
        """Judgeable scores at or above ``threshold`` (two students, or a student
        and the reference, writing the same one-liner is expected)."""
        return [s for s in self.scores if s.score >= threshold and s.judgeable]


def compare(reference_root, copies, units):
    """Report of every student of ``copies`` ({name: copy root}) against the reference
    and against each other, for ``units`` (those withheld in the copies)."""
    scores = []
    for unit in units:
        unit_sites = sites(reference_root, unit)
        code = {}
        for who, root in sorted(copies.items()):
            reference, code[who] = _written(root, unit_sites)
            scores.append(Score("reference", unit, (who,), similarity(reference, code[who]),
                                judgeable(code[who])))
        for a, b in itertools.combinations(sorted(code), 2):
            scores.append(Score("pair", unit, (a, b), similarity(code[a], code[b]),
                                judgeable(code[a]) and judgeable(code[b])))
    return Report(scores)
