"""The units a course can hand out, and the markers that delimit them.

A unit is a piece of math with a short name (``conv.backward``). Its code is
marked in the source, inside function bodies only, between two comment lines:
``BEGIN SOLUTION conv.backward`` and ``END SOLUTION``, each after a ``#``.
A region may name several units (the Numba kernel shared by C1, C3 and C5 is
``conv.forward c3.forward``): it is withheld when any of them is. Every unit
has its NumPy code (what the student writes), and may have regions in the
Numba twins and the fused step: the student copy withholds those too.
"""
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np                 # noqa: F401 (for the cases of records added here)

from . import cases

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?P<names>( [a-z0-9_.]+)*)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
NEAR_MISS = re.compile(r"^\s*#\s*(BEGIN|END)\b|SOLUTION")

#: Files (relative to the package) that may hold solution regions.
MARKED_FILES = ("activations.py", "conv.py", "dense.py", "losses.py", "mnist.py",
                "optimizers.py", "subsampling.py", "kernels/numpy_ref.py",
                "kernels/numba_jit.py", "kernels/compiled.py")


@dataclass(frozen=True)
class Case:
    """One set of inputs: ``label`` says what kind of case it is (a student is told
    the label of a case that failed, never a hidden case's inputs); ``make(rng)``
    returns the input arrays (see ``cases``)."""
    label: str
    make: Callable
    hidden: bool = False


@dataclass(frozen=True)
class Gradient:
    """Outputs of a unit that are gradients, checked by finite differences of
    ``sum(probe(inputs)[output] * inputs[weight])`` (or of the scalar output when
    ``weight`` is None), the probe run on the instructor's reference; ``wrt`` maps
    each gradient output to the input it is the gradient of."""
    probe: str
    output: str
    wrt: dict
    weight: str = "dy"


@dataclass(frozen=True)
class Unit:
    """One assignable piece of math, everything about it in one record.

    ``name``: the short name the markers use; ``summary``: one line; ``notebook``:
    where it is taught; ``points``: its default points; ``kernels``: the
    ``numpy_ref`` functions it owns; ``depends``: the units whose code it calls
    (graded with the instructor's reference of each, unless that unit is the
    student's too); ``probe``: the ``probes.PROBES`` entry the grader calls (by
    default the unit's name); ``cases``: visible and hidden inputs;
    ``gradient``: which outputs are gradients, checked by finite differences.
    """
    name: str
    summary: str
    notebook: str
    points: float
    cases: tuple
    kernels: tuple = ()
    depends: tuple = ()
    probe: str = ""
    gradient: Gradient = None

    @property
    def probe_name(self):
        return self.probe or self.name


_conv_grad = Gradient("conv.forward", "y", {"dx": "x", "dw": "w", "db": "b"})
_table_grad = Gradient("c3.forward", "y", {"dx": "x", "dw": "w", "db": "b"})
_NETWORK = ("conv.forward", "conv.backward", "subsampling.forward", "subsampling.backward",
            "dense.forward", "dense.backward", "rbf.forward", "rbf.backward")

UNITS = {u.name: u for u in (
    Unit("im2col", "gather every KH x KW window into columns", "01_convolution", 5, (
        Case("3x3 windows", lambda r: cases.windows(r, 2, 2, 5, 6, 3, 1)),
        Case("stride 2", lambda r: cases.windows(r, 1, 2, 7, 6, 3, 2)),
        Case("stride 2, batch 3", lambda r: cases.windows(r, 3, 1, 7, 9, 3, 2), True)),
        kernels=("im2col",)),
    Unit("col2im", "scatter columns back, summing overlapping windows", "01_convolution", 5, (
        Case("overlapping 3x3", lambda r: cases.columns(r, 2, 2, 5, 6, 3, 1)),
        Case("stride 2", lambda r: cases.columns(r, 1, 2, 7, 6, 3, 2)),
        Case("stride 2, 4x4", lambda r: cases.columns(r, 1, 3, 8, 7, 4, 2), True)),
        kernels=("col2im",)),
    Unit("conv.forward", "convolution forward with im2col and one matrix product",
         "01_convolution", 5, (
             Case("2 -> 3 maps", lambda r: cases.conv(r, 2, 2, 3, 6, 7, 3)),
             Case("batch 5, 5x5 kernels", lambda r: cases.conv(r, 5, 3, 2, 8, 9, 5), True)),
         kernels=("conv2d_forward",), depends=("im2col",)),
    Unit("conv.backward", "convolution gradients dx, dw, db", "01_convolution", 10, (
        Case("2 -> 3 maps", lambda r: cases.conv(r, 2, 2, 3, 6, 7, 3)),
        Case("batch 5, 5x5 kernels", lambda r: cases.conv(r, 5, 3, 2, 8, 9, 5), True)),
        kernels=("conv2d_backward",), depends=("im2col", "col2im"), gradient=_conv_grad),
    Unit("subsampling.forward", "S2/S4: coefficient x (sum of each 2x2 window) + bias",
         "02_subsampling_squashing", 5, (
             Case("sum", lambda r: cases.subsampling(r, 2, 3, 6, 4, 1.0)),
             Case("average", lambda r: cases.subsampling(r, 2, 2, 4, 6, 0.25)),
             Case("average, batch 4", lambda r: cases.subsampling(r, 4, 2, 8, 10, 0.25), True)),
         kernels=("subsample_forward",)),
    Unit("subsampling.backward", "S2/S4 gradients dx, dcoef, dbias",
         "02_subsampling_squashing", 5, (
             Case("sum", lambda r: cases.subsampling(r, 2, 3, 6, 4, 1.0)),
             Case("average", lambda r: cases.subsampling(r, 2, 2, 4, 6, 0.25)),
             Case("average, batch 4", lambda r: cases.subsampling(r, 4, 2, 8, 10, 0.25), True)),
         kernels=("subsample_backward",),
         gradient=Gradient("subsampling.forward", "y", {"dx": "x", "dcoef": "coef",
                                                          "dbias": "bias"})),
    Unit("scaled_tanh", "f(a) = 1.7159 tanh(2a/3) and its derivative from the output",
         "02_subsampling_squashing", 5, (
             Case("(3, 5)", lambda r: cases.squashing(r, (3, 5))),
             Case("large inputs", lambda r: cases.squashing(r, (2, 3, 4, 4), 6.0), True)),
         kernels=("scaled_tanh", "scaled_tanh_derivative"),
         gradient=Gradient("scaled_tanh", "y", {"dx": "x"})),
    Unit("c3.forward", "C3: convolution restricted to the connection table", "03_c3_table", 5, (
        Case("small table", lambda r: cases.table(r, 2, cases.SMALL_TABLE, 5, 6, 3)),
        Case("C3's Table I", lambda r: cases.table(r, 3, cases.c3_table(), 9, 7, 5), True)),
        kernels=("table_conv2d_forward",), depends=("conv.forward",)),
    Unit("c3.backward", "C3 gradients, for the connected kernels only", "03_c3_table", 10, (
        Case("small table", lambda r: cases.table(r, 2, cases.SMALL_TABLE, 5, 6, 3)),
        Case("C3's Table I", lambda r: cases.table(r, 3, cases.c3_table(), 9, 7, 5), True)),
        kernels=("table_conv2d_backward",), depends=("conv.backward",), gradient=_table_grad),
    Unit("rbf.forward", "Euclidean RBF penalties y_k = |x - w_k|^2", "04_rbf_output", 3, (
        Case("84 -> 10", lambda r: cases.rbf(r, 3, 84, 10)),
        Case("7 -> 4, batch 6", lambda r: cases.rbf(r, 6, 7, 4, bitmaps=False), True)),
        kernels=("rbf_forward",)),
    Unit("rbf.backward", "input gradient of the RBF penalties", "04_rbf_output", 5, (
        Case("84 -> 10", lambda r: cases.rbf(r, 3, 84, 10)),
        Case("7 -> 4, batch 6", lambda r: cases.rbf(r, 6, 7, 4, bitmaps=False), True)),
        kernels=("rbf_backward",), gradient=Gradient("rbf.forward", "y", {"dx": "x"})),
    Unit("mse_loss", "the paper's MSE criterion (eq. 8) and its gradient", "04_rbf_output", 3, (
        Case("penalties", lambda r: cases.penalties(r, 4, 10, 200)),
        Case("batch 7, 3 classes", lambda r: cases.penalties(r, 7, 3, 50), True)),
        kernels=("mse_loss",), gradient=Gradient("mse_loss", "loss", {"grad": "scores"}, weight=None)),
    Unit("map_loss", "the paper's MAP criterion (eq. 9), with log-sum-exp", "04_rbf_output", 7, (
        Case("small penalties", lambda r: cases.penalties(r, 4, 10, 5)),
        Case("penalties in the thousands", lambda r: cases.penalties(r, 5, 10, 3000), True)),
        kernels=("map_loss",), gradient=Gradient("map_loss", "loss", {"grad": "scores"}, weight=None)),
    Unit("dense.forward", "fully connected layer y = x w + b", "05_gradient_checking", 3, (
        Case("5 -> 4", lambda r: cases.dense(r, 3, 5, 4)),
        Case("batch 8, 9 -> 2", lambda r: cases.dense(r, 8, 9, 2), True)),
        kernels=("dense_forward",)),
    Unit("dense.backward", "fully connected gradients dx, dw, db", "05_gradient_checking", 5, (
        Case("5 -> 4", lambda r: cases.dense(r, 3, 5, 4)),
        Case("batch 8, 9 -> 2", lambda r: cases.dense(r, 8, 9, 2), True)),
        kernels=("dense_backward",),
        gradient=Gradient("dense.forward", "y", {"dx": "x", "dw": "w", "db": "b"})),
    Unit("sdlm.curvature", "Gauss-Newton second derivatives h_kk (backward_second)",
         "06_training_sdlm", 8, (
             Case("3 samples", lambda r: cases.curvature(r, 3)),
             Case("7 samples", lambda r: cases.curvature(r, 7), True)),
         depends=_NETWORK),
    Unit("sdlm.step", "SDLM's per-parameter rates eta / (mu + h) and the update",
         "06_training_sdlm", 3, (
             Case("mu 0.02", lambda r: cases.sdlm_step(r, 0.02, 5e-4)),
             Case("mu 0.5", lambda r: cases.sdlm_step(r, 0.5, 1e-4), True)),
         kernels=("sdlm_rates", "sdlm_update")),
    Unit("preprocess", "the paper's input scaling: background -0.1, ink 1.175", "00_tour", 2, (
        Case("bytes", lambda r: cases.images(r, 3)),
        Case("0 and 255", cases.extremes, True))),
    Unit("maxpool", "max-pooling forward (first maximum) and backward", "08_modern_variant", 5, (
        Case("2x2", lambda r: cases.pool(r, 2, 2, 4, 6, 2, 2)),
        Case("overlapping 2x2 windows, stride 1", lambda r: cases.pool(r, 1, 2, 4, 5, 2, 1)),
        Case("ties, 2x2", lambda r: cases.pool(r, 1, 1, 4, 4, 2, 2, ties=True)),
        Case("overlapping 3x3 windows, stride 1", lambda r: cases.pool(r, 2, 1, 5, 5, 3, 1),
             True),
        Case("ties", lambda r: cases.pool(r, 1, 2, 6, 6, 2, 2, ties=True), True)),
        kernels=("maxpool_forward", "maxpool_backward"), depends=("im2col", "col2im")),
    Unit("avgpool", "average pooling forward and backward", "08_modern_variant", 3, (
        Case("2x2", lambda r: cases.pool(r, 2, 2, 4, 6, 2, 2)),
        Case("overlapping 2x2 windows, stride 1", lambda r: cases.pool(r, 1, 2, 4, 5, 2, 1)),
        Case("overlapping 3x3 windows, stride 1", lambda r: cases.pool(r, 2, 1, 5, 5, 3, 1),
             True)),
        kernels=("avgpool_forward", "avgpool_backward"), depends=("im2col", "col2im"),
        gradient=Gradient("avgpool", "y", {"dx": "x"})),
    Unit("softmax_cross_entropy", "softmax cross-entropy, shifted per row",
         "08_modern_variant", 4, (
             Case("logits", lambda r: cases.logits(r, 4, 10, 3.0)),
             Case("large logits", lambda r: cases.logits(r, 6, 5, 800.0), True)),
         kernels=("softmax_cross_entropy",),
         gradient=Gradient("softmax_cross_entropy", "loss", {"grad": "scores"}, weight=None)),
)}


def closure(names):
    """``names`` and every unit they depend on, directly or not, dependencies first."""
    order = []

    def visit(name):
        if name not in order:
            for dependency in UNITS[name].depends:
                visit(dependency)
            order.append(name)
    for name in names:
        visit(name)
    return order


def notebook_path(unit):
    return f"notebooks/{UNITS[unit].notebook}.ipynb"


def stub_line(indent, names):
    """The line that replaces a withheld region."""
    unit = names[0]
    return (f'{indent}raise NotImplementedError("unit {unit}: yours to write, see '
            f'{notebook_path(unit)}")\n')


@dataclass(frozen=True)
class Region:
    """Lines ``begin``..``end`` (0-based, the marker lines included) of a file."""
    names: tuple
    indent: str
    begin: int
    end: int


def find_regions(lines, where="<source>"):
    """The solution regions of a file's lines; ValueError on unbalanced, nested,
    unnamed or unknown markers."""
    regions, open_at = [], None
    for i, line in enumerate(lines):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_at is not None:
                raise ValueError(f"{where}:{i + 1}: BEGIN SOLUTION inside the region "
                                 f"opened at line {open_at[0] + 1}")
            names = tuple(begin["names"].split())
            if not names:
                raise ValueError(f"{where}:{i + 1}: BEGIN SOLUTION names no unit")
            unknown = [n for n in names if n not in UNITS]
            if unknown:
                raise ValueError(f"{where}:{i + 1}: unknown unit {unknown[0]!r}")
            open_at = (i, names, begin["indent"])
        elif end:
            if open_at is None:
                raise ValueError(f"{where}:{i + 1}: END SOLUTION without BEGIN")
            regions.append(Region(open_at[1], open_at[2], open_at[0], i))
            open_at = None
        elif line.lstrip().startswith("#") and NEAR_MISS.search(line):
            raise ValueError(f"{where}:{i + 1}: malformed marker {line.strip()!r}")
    if open_at is not None:
        raise ValueError(f"{where}:{open_at[0] + 1}: BEGIN SOLUTION is never closed")
    return regions


def withhold(lines, units, where="<source>"):
    """``lines`` with every region naming one of ``units`` replaced by a stub."""
    out, last = [], 0
    for region in find_regions(lines, where):
        if not set(region.names) & set(units):
            continue
        out += lines[last:region.begin]
        out.append(stub_line(region.indent, [n for n in region.names if n in units]))
        last = region.end + 1
    return out + lines[last:]
