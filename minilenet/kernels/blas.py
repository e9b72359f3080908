"""Matrix products that compiled kernels call: the BLAS that NumPy itself uses.

Numba compiles ``np.dot`` and ``@`` only by way of SciPy, which minilenet does
not depend on. So this module finds the CBLAS ``sgemm``/``dgemm`` of the BLAS
library NumPy loaded (threadpoolctl lists it) and makes them known to the
compiler under names of minilenet's own, ``minilenet_sgemm`` and
``minilenet_dgemm``. A kernel compiled with Numba then calls ``gemm(a, b, c)``
like any other function, and the product runs inside the kernel, without the
GIL: a thread's whole share of a convolution is one call from Python
(``compiled.conv_forward_span``), where a loop of NumPy calls took the GIL
back between every two of them.

NumPy's wheels bring OpenBLAS built with 64-bit integers, whose functions are
named ``scipy_cblas_sgemm64_`` (NumPy 2) or ``cblas_sgemm64_`` (NumPy 1); MKL's
are ``cblas_sgemm_64``. Where none of these is found (a NumPy built against
another BLAS, such as Apple's Accelerate, which threadpoolctl does not list),
the two names point to ``_loop_gemm`` instead, compiled loops
that give the same results to rounding, 2 to 3.5 times slower (the batched
convolutions, docs/performance.md).
``MINILENET_GEMM=loops`` chooses them on purpose (the tests do, to check them);
``blas``, the default, the library.

Because the compiled code refers to the names, not to addresses, Numba's cache
stays valid whichever library the names point to in a later process.
"""
import ctypes
import os

import numpy as np
from numba import carray, cfunc, njit, types
from numba import config as numba_config
from numba.core.errors import TypingError
from numba.extending import overload

from ..errors import UserError
from .threads import blas_libraries

#: CBLAS's constants: row-major storage, and "use the matrix as it is" or "transposed".
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

#: Names a 64-bit-integer CBLAS gives its products: (prefix, suffix) around cblas_?gemm.
_AFFIXES = (("scipy_", "64_"), ("", "64_"), ("", "_64"))


def gemm(a, b, c, trans_a=False, trans_b=False):
    """c = op(a) @ op(b), op transposing when asked; a, b, c 2-D and C-contiguous.

    This Python body is the definition (and what runs with NUMBA_DISABLE_JIT=1);
    compiled kernels call the BLAS instead (``_compiled_gemm``)."""
    np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=c)


def _signature(real):
    """cblas_?gemm's C signature with 64-bit integers, for floats of type ``real``."""
    i32, i64, p = types.int32, types.int64, types.CPointer(real)
    return types.void(i32, i32, i32, i64, i64, i64, real, p, i64, p, i64, real, p, i64)


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _loop_product(a, b, c, trans_a, trans_b, alpha, beta):
    """c = alpha op(a) op(b) + beta c on 2-D arrays, each case's innermost loop
    along contiguous rows, so it vectorises."""
    M, N = c.shape
    for i in range(M):
        row = c[i]
        for j in range(N):                          # beta 0: c is not read (it may be NaN)
            row[j] = 0 if beta == 0 else beta * row[j]
        if trans_b:                                 # c[i, j] += op(a)[i, :] . b[j, :]
            for j in range(N):
                acc = row[j] * 0
                if trans_a:
                    for k in range(b.shape[1]):
                        acc += a[k, i] * b[j, k]
                else:
                    ai = a[i]
                    for k in range(b.shape[1]):
                        acc += ai[k] * b[j, k]
                row[j] += alpha * acc
        else:                                       # c[i, :] += op(a)[i, k] b[k, :]
            for k in range(b.shape[0]):
                aik = alpha * (a[k, i] if trans_a else a[i, k])
                bk = b[k]
                for j in range(N):
                    row[j] += aik * bk[j]


def _loop_gemm(order, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm over ``_loop_product``, for row-major operands without padding
    (each leading dimension the row's length, as ``gemm`` passes them)."""
    A = carray(a, (K, lda) if trans_a == TRANS else (M, lda))
    B = carray(b, (N, ldb) if trans_b == TRANS else (K, ldb))
    C = carray(c, (M, ldc))
    _loop_product(A, B, C, trans_a == TRANS, trans_b == TRANS, alpha, beta)


def find_blas_gemm():
    """{"s": address, "d": address} of the 64-bit-integer cblas_sgemm / cblas_dgemm
    in the BLAS libraries NumPy loaded, and the library's path; ({}, None) if none."""
    for lib in blas_libraries():
        try:
            dll = ctypes.CDLL(lib.filepath)
        except OSError:                                  # listed, but not loadable by path
            continue
        for prefix, suffix in _AFFIXES:
            try:
                found = {t: ctypes.cast(getattr(dll, f"{prefix}cblas_{t}gemm{suffix}"),
                                        ctypes.c_void_p).value for t in "sd"}
            except AttributeError:
                continue
            return found, lib.filepath
    return {}, None


def _register():
    """Point the names ``minilenet_sgemm`` and ``minilenet_dgemm`` at the BLAS, or at
    compiled loops; returns the path of the library used, or "loops"."""
    import llvmlite.binding as llvm
    choice = os.environ.get("MINILENET_GEMM", "") or "blas"
    if choice not in ("blas", "loops"):
        raise UserError(f"the MINILENET_GEMM environment variable is {choice!r}: expected "
                        f"'blas' (the default) or 'loops'")
    found, path = ({}, None) if choice == "loops" else find_blas_gemm()
    for t, real in (("s", types.float32), ("d", types.float64)):
        if t not in found:
            loops = cfunc(_signature(real), cache=True)(_loop_gemm)
            _keep_alive.append(loops)
            found[t] = loops.address
        llvm.add_symbol(f"minilenet_{t}gemm", found[t])
    return path or "loops"


_keep_alive = []
#: The library the compiled products call ("loops" for ``_loop_gemm``; None without the JIT).
SOURCE = None if numba_config.DISABLE_JIT else _register()
_sgemm = types.ExternalFunction("minilenet_sgemm", _signature(types.float32))
_dgemm = types.ExternalFunction("minilenet_dgemm", _signature(types.float64))


@overload(gemm, jit_options=dict(nogil=True, cache=True))
def _compiled_gemm(a, b, c, trans_a=False, trans_b=False):
    """What ``gemm`` compiles to: one call of the BLAS for c's float type."""
    if any(getattr(m, "layout", None) != "C" for m in (a, b, c)):
        raise TypingError("gemm: a, b and c must be C-contiguous arrays")
    blas_gemm = _sgemm if c.dtype == types.float32 else _dgemm

    def blas_product(a, b, c, trans_a=False, trans_b=False):
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        blas_gemm(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                  M, N, K, 1, a.ctypes, a.shape[1], b.ctypes, b.shape[1], 0, c.ctypes, N)
    return blas_product
