"""Matrix products that compiled kernels call: portable loops, or NumPy's BLAS.

Numba compiles ``np.dot`` and ``@`` only by way of SciPy, which minilenet does
not depend on. So compiled kernels call ``gemm(a, b, c)``, which compiles to a
call of a function named ``minilenet_sgemm`` or ``minilenet_dgemm`` (a CBLAS
``?gemm`` signature with 64-bit integers), and this module decides, once per
process, what those names point to:

- ``portable`` (the default): ``_portable_gemm``, compiled loops whose every sum
  adds its terms in an order fixed in the code, so a product gives the same bits
  on every CPU (docs/performance.md, "The same bits on every machine").
- ``blas`` (``MINILENET_GEMM=blas``): the CBLAS ``sgemm``/``dgemm`` of the BLAS
  library NumPy loaded (threadpoolctl lists it), faster for batches; its kernels
  are chosen for the CPU (OpenBLAS's for AVX-512, AVX2, ...), and so are its bits.
  NumPy's wheels bring OpenBLAS built with 64-bit integers, whose functions are
  named ``scipy_cblas_sgemm64_`` (NumPy 2) or ``cblas_sgemm64_`` (NumPy 1); MKL's
  are ``cblas_sgemm_64``. Where none is found (a NumPy built against another BLAS,
  such as Apple's Accelerate, which threadpoolctl does not list), the portable
  loops stand in.

Either way the product runs inside the kernel, without the GIL: a thread's whole
share of a convolution is one call from Python (``compiled.conv_forward_span``).
Because the compiled code refers to the names, not to addresses, Numba's cache
stays valid whichever the names point to in a later process.
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


#: Partial sums per dot product of ``_portable_product`` (as ``compiled.LANES``; kept
#: here so that this file compiles on its own: Numba's cache is kept per file).
LANES = 64


@njit(cache=True, nogil=True)
def _portable_product(a, b, c, trans_a, trans_b, alpha, beta):
    """c = alpha op(a) op(b) + beta c on 2-D arrays, the same bits on every CPU: each
    entry of c adds its terms in an order fixed here (no fast-math flags, so the
    compiler neither reorders a sum nor fuses a multiply and an add).

    Without b transposed, row i of c gathers op(a)[i, k] * b[k, :] for k in turn:
    long rows of independent sums, which vectorise. With b transposed, c[i, j] is
    the dot product of two contiguous rows, summed in LANES lanes (lane l adds the
    terms l, l + LANES, ...; then the lanes pairwise, in a fixed tree). Loops run
    over slices with plain indices: a computed index would be checked for negative
    values, and the loop would not vectorise."""
    M, N = c.shape
    K = b.shape[1] if trans_b else b.shape[0]
    for i in range(M):
        row = c[i]
        for j in range(N):                          # beta 0: c is not read (it may be NaN)
            row[j] = 0 if beta == 0 else beta * row[j]
    if not trans_b:
        for i in range(M):
            row = c[i]
            for k in range(K):
                aik = alpha * (a[k, i] if trans_a else a[i, k])
                bk = b[k]
                for j in range(N):
                    row[j] += aik * bk[j]
        return
    part = np.zeros(LANES, dtype=c.dtype)
    column = np.empty(K, dtype=c.dtype)
    whole = K - K % LANES
    for i in range(M):
        ai = a[i] if not trans_a else column
        if trans_a:
            for k in range(K):
                column[k] = a[k, i]
        for j in range(N):
            bj = b[j]
            for lane in range(LANES):
                part[lane] = 0
            for start in range(0, whole, LANES):
                u, v = ai[start:start + LANES], bj[start:start + LANES]
                for lane in range(part.shape[0]):
                    part[lane] += u[lane] * v[lane]
            u, v = ai[whole:], bj[whole:]
            for lane in range(u.shape[0]):
                part[lane] += u[lane] * v[lane]
            width = LANES
            while width > 1:
                width //= 2
                low, high = part[:width], part[width:2 * width]
                for lane in range(width):
                    low[lane] += high[lane]
            c[i, j] += alpha * part[0]


def _portable_gemm(order, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm over ``_portable_product``, for row-major operands without padding
    (each leading dimension the row's length, as ``gemm`` passes them)."""
    A = carray(a, (K, lda) if trans_a == TRANS else (M, lda))
    B = carray(b, (N, ldb) if trans_b == TRANS else (K, ldb))
    C = carray(c, (M, ldc))
    _portable_product(A, B, C, trans_a == TRANS, trans_b == TRANS, alpha, beta)


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
    """Point the names ``minilenet_sgemm`` and ``minilenet_dgemm`` at the portable
    products or, with MINILENET_GEMM=blas, at the BLAS; returns "portable" or the
    path of the library used."""
    import llvmlite.binding as llvm
    choice = os.environ.get("MINILENET_GEMM", "") or "portable"
    if choice not in ("portable", "blas"):
        raise UserError(f"the MINILENET_GEMM environment variable is {choice!r}: expected "
                        f"'portable' (the default: the same bits on every CPU) or 'blas' "
                        f"(NumPy's BLAS: faster for batches, its bits depend on the CPU)")
    found, path = ({}, None) if choice == "portable" else find_blas_gemm()
    for t, real in (("s", types.float32), ("d", types.float64)):
        if t not in found:
            portable = cfunc(_signature(real), cache=True)(_portable_gemm)
            _keep_alive.append(portable)
            found[t] = portable.address
        llvm.add_symbol(f"minilenet_{t}gemm", found[t])
    return path or "portable"


_keep_alive = []
#: What the compiled products call: "portable" (``_portable_gemm``), or the path of the
#: BLAS library (MINILENET_GEMM=blas); None without the JIT.
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
