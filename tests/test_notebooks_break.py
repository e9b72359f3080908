"""Break a layer and its notebook must fail: the notebooks' check cells assert, not just print.

Each test runs a notebook in fast mode with a prelude cell that breaks one piece
of the package the way students do, and expects the execution to stop at the
assertion of the check that names that piece (not at an unrelated error).
"""
import pytest
from nbclient.exceptions import CellExecutionError

from nbrun import run_notebook

# The classic im2col bug: col2im overwrites where overlapping windows must add.
COL2IM_ASSIGNS = """
from minilenet.kernels import numpy_ref

def _col2im_assigns(cols, x_shape, stride=1):
    N, C, kh, kw, OH, OW = cols.shape
    x = numpy_ref.np.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] = cols[:, :, i, j]
    return x

numpy_ref.col2im = _col2im_assigns
"""

# The scaled tanh's derivative without its A*S factor: 1 - tanh(Sa)^2.
DF_WITHOUT_GAIN = """
from minilenet.activations import ScaledTanh
from minilenet.paper import A

ScaledTanh.df = lambda self, y: 1.0 - (y / A) ** 2
"""

# The default backend's subsampling backward (Numba's, NumPy's in a student copy)
# forgets the factor `scale` in the coefficient gradient: invisible in sum mode
# (scale 1), wrong in average mode.
SUBSAMPLE_FORGETS_SCALE = """
from minilenet import kernels

_default = kernels.get()
_subsample_backward = _default.subsample_backward

def _forgets_scale(x, coef, dy, scale):
    dx, dcoef, dbias = _subsample_backward(x, coef, dy, scale)
    return dx, dcoef / scale, dbias

_default.subsample_backward = _forgets_scale
"""


@pytest.mark.slow
@pytest.mark.parametrize("notebook, prelude, failing_check", [
    ("01_convolution.ipynb", COL2IM_ASSIGNS, "col2im does not add overlapping windows"),
    ("02_subsampling_squashing.ipynb", DF_WITHOUT_GAIN, "ScaledTanh.df at the origin is 1.000000"),
    ("02_subsampling_squashing.ipynb", SUBSAMPLE_FORGETS_SCALE,
     "Subsampling sum vs average, coefficient gradient: ratio 1.0000,"),
], ids=["01-col2im-assigns", "02-df-without-gain", "02-subsample-forgets-scale"])
def test_broken_layer_fails_its_notebook(notebook, prelude, failing_check, tmp_path):
    with pytest.raises(CellExecutionError) as caught:
        run_notebook(notebook, tmp_path, prelude=prelude)
    error = caught.value
    assert error.ename == "AssertionError", f"{notebook} failed for another reason: {error}"
    assert error.evalue.startswith(failing_check), (
        f"{notebook} failed at another check: {error.evalue!r}, expected {failing_check!r}")
