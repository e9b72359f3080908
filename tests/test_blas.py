"""kernels.blas: the matrix product compiled kernels call, against np.matmul."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import threadpoolctl

numba = pytest.importorskip("numba", reason="compiled products need numba (pip install numba)")
from minilenet.kernels import blas  # noqa: E402

CASES = [(False, False), (True, False), (False, True), (True, True)]
# (the portable products and, in a subprocess, NumPy's BLAS; the portable products'
# order of operations is pinned by tests/test_portable.py)


@numba.njit(cache=True)
def _compiled(a, b, c, trans_a, trans_b):
    blas.gemm(a, b, c, trans_a, trans_b)


def _operands(rng, dtype, trans_a, trans_b, M=5, K=7, N=3):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    return a, b, want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", CASES)
def test_compiled_gemm_is_the_matrix_product(rng, dtype, trans_a, trans_b):
    a, b, want = _operands(rng, dtype, trans_a, trans_b)
    c = np.full(want.shape, np.nan, dtype=dtype)               # the old contents are not read
    _compiled(a, b, c, trans_a, trans_b)
    tol = 1e-5 if dtype == np.float32 else 1e-13                # values of about 1
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    blas.gemm(a, b, c, trans_a, trans_b)                        # the Python definition
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


def test_the_portable_products_are_the_default():
    assert blas.SOURCE == "portable"


@pytest.mark.skipif(not any(i["internal_api"] == "openblas" for i in threadpoolctl.threadpool_info()),
                    reason="NumPy here does not use OpenBLAS")
def test_numpy_wheels_openblas_is_found():
    """NumPy's wheels ship OpenBLAS with 64-bit integers: its products are found, for
    MINILENET_GEMM=blas (else the portable products would stand in)."""
    found, path = blas.find_blas_gemm()
    assert set(found) == {"s", "d"} and all(found.values()) and "openblas" in path


@pytest.mark.slow
def test_numpys_blas_on_request(tmp_path, numba_runs):
    """MINILENET_GEMM=blas: the names point to NumPy's BLAS (when it is found), whose
    products agree with the matrix product, and a batched convolution through them
    matches the NumPy reference."""
    script = textwrap.dedent("""
        import numpy as np
        from numba import njit
        from minilenet.kernels import blas, numba_jit, numpy_ref
        found, path = blas.find_blas_gemm()
        assert blas.SOURCE == (path or "portable"), blas.SOURCE

        @njit
        def compiled(a, b, c, ta, tb):
            blas.gemm(a, b, c, ta, tb)

        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            for ta in (False, True):
                for tb in (False, True):
                    a = rng.standard_normal((7, 5) if ta else (5, 7)).astype(dtype)
                    b = rng.standard_normal((3, 7) if tb else (7, 3)).astype(dtype)
                    c = np.full((5, 3), np.nan, dtype=dtype)
                    compiled(a, b, c, ta, tb)
                    want = (a.T if ta else a) @ (b.T if tb else b)
                    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
        x, w, b = rng.standard_normal((9, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3)), np.ones(3)
        np.testing.assert_allclose(numba_jit.conv2d_forward(x, w, b),
                                   numpy_ref.conv2d_forward(x, w, b), rtol=1e-12, atol=1e-12)
        print("ok")
    """)
    env = dict(os.environ, MINILENET_GEMM="blas", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "ok"
