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

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?P<names>( [a-z0-9_.]+)*)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
NEAR_MISS = re.compile(r"^\s*#\s*(BEGIN|END)\b|SOLUTION")

#: Files (relative to the package) that may hold solution regions.
MARKED_FILES = ("activations.py", "conv.py", "dense.py", "losses.py", "mnist.py",
                "optimizers.py", "pooling.py", "subsampling.py", "kernels/numpy_ref.py",
                "kernels/numba_jit.py")


@dataclass(frozen=True)
class Unit:
    """``name``: the short name; ``summary``: one line; ``notebook``: where it is
    explained; ``kernels``: the ``numpy_ref`` functions it owns (the grader swaps
    every other kernel for the reference, so each unit is graded alone)."""
    name: str
    summary: str
    notebook: str
    kernels: tuple = ()


UNITS = {u.name: u for u in (
    Unit("im2col", "gather every KH x KW window into columns", "01_convolution",
         ("im2col",)),
    Unit("col2im", "scatter columns back, summing overlapping windows", "01_convolution",
         ("col2im",)),
    Unit("conv.forward", "convolution forward with im2col and one matrix product",
         "01_convolution", ("conv2d_forward",)),
    Unit("conv.backward", "convolution gradients dx, dw, db", "01_convolution",
         ("conv2d_backward",)),
    Unit("subsampling.forward", "S2/S4: coefficient x (sum of each 2x2 window) + bias",
         "02_subsampling_squashing", ("subsample_forward",)),
    Unit("subsampling.backward", "S2/S4 gradients dx, dcoef, dbias",
         "02_subsampling_squashing", ("subsample_backward",)),
    Unit("scaled_tanh", "f(a) = 1.7159 tanh(2a/3) and its derivative from the output",
         "02_subsampling_squashing"),
    Unit("c3.forward", "C3: convolution restricted to the connection table",
         "03_c3_table", ("table_conv2d_forward",)),
    Unit("c3.backward", "C3 gradients, for the connected kernels only", "03_c3_table",
         ("table_conv2d_backward",)),
    Unit("rbf.forward", "Euclidean RBF penalties y_k = |x - w_k|^2", "04_rbf_output",
         ("rbf_forward",)),
    Unit("rbf.backward", "input gradient of the RBF penalties", "04_rbf_output",
         ("rbf_backward",)),
    Unit("mse_loss", "the paper's MSE criterion (eq. 8) and its gradient", "04_rbf_output"),
    Unit("map_loss", "the paper's MAP criterion (eq. 9), with log-sum-exp", "04_rbf_output"),
    Unit("dense.forward", "fully connected layer y = x w + b", "05_gradient_checking",
         ("dense_forward",)),
    Unit("dense.backward", "fully connected gradients dx, dw, db", "05_gradient_checking",
         ("dense_backward",)),
    Unit("sdlm.curvature", "Gauss-Newton second derivatives h_kk (backward_second)",
         "06_training_sdlm"),
    Unit("sdlm.step", "SDLM's per-parameter rates eta / (mu + h) and the update",
         "06_training_sdlm"),
    Unit("preprocess", "the paper's input scaling: background -0.1, ink 1.175", "00_tour"),
    Unit("maxpool", "max-pooling forward (first maximum) and backward", "08_modern_variant",
         ("maxpool_forward", "maxpool_backward")),
    Unit("avgpool", "average pooling forward and backward", "08_modern_variant"),
    Unit("softmax_cross_entropy", "softmax cross-entropy, shifted per row",
         "08_modern_variant"),
)}


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
