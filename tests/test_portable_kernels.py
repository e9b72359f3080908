"""The compiled kernels compute what their code says, in the order it says, so their
bits do not depend on the CPU: the order of the long sums (``pair_dots``, the
portable matrix products) reproduced step by step in NumPy, whose element-wise
arithmetic is IEEE's on every CPU; exp, log and the float32 tanh against NumPy's."""
import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="the compiled kernels need numba")
from minilenet.kernels import blas, compiled  # noqa: E402


def _lanes_dot(u, v, lanes):
    """u . v as the kernels sum it: lane l adds the terms l, l + lanes, ... in order,
    then the lanes are added pairwise (lane l + lane l + lanes/2, and so on)."""
    part = np.zeros(lanes, dtype=u.dtype)
    for start in range(0, len(u), lanes):
        chunk = u[start:start + lanes] * v[start:start + lanes]
        part[:len(chunk)] += chunk
    width = lanes
    while width > 1:
        width //= 2
        part[:width] += part[width:2 * width]
    return part[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 37, 64, 100, 784])
def test_pair_dots_sum_in_the_stated_order(rng, dtype, n, numba_runs):
    a, b = rng.standard_normal((3, n)).astype(dtype), rng.standard_normal((4, n)).astype(dtype)
    rows_a, rows_b = np.array([0, 2, 1, 2]), np.array([3, 0, 1, 1])
    out = np.empty(4, dtype=dtype)
    compiled.pair_dots(a, b, rows_a, rows_b, out)
    want = [_lanes_dot(a[i], b[j], compiled.LANES) for i, j in zip(rows_a, rows_b)]
    assert out.tobytes() == np.array(want, dtype=dtype).tobytes()


@numba.njit
def _product(a, b, c, trans_a, trans_b):
    blas.gemm(a, b, c, trans_a, trans_b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
def test_portable_products_sum_in_the_stated_order(rng, dtype, trans_a, numba_runs):
    """Without b transposed, row i of c adds op(a)[i, k] * b[k] for k in turn; with b
    transposed, c[i, j] is a dot product in ``blas.LANES`` lanes."""
    if blas.SOURCE != "portable":
        pytest.skip(f"MINILENET_GEMM chose {blas.SOURCE}")
    M, K, N = 5, 150, 7
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    op_a = a.T if trans_a else a
    b = rng.standard_normal((K, N)).astype(dtype)
    c = np.empty((M, N), dtype=dtype)
    _product(a, b, c, trans_a, False)
    want = np.zeros((M, N), dtype=dtype)
    for k in range(K):
        want += op_a[:, k:k + 1] * b[k]
    assert c.tobytes() == want.tobytes()
    bt = np.ascontiguousarray(b.T)
    _product(a, bt, c, trans_a, True)
    want = [[_lanes_dot(np.ascontiguousarray(op_a[i]), bt[j], blas.LANES) for j in range(N)]
            for i in range(M)]
    assert c.tobytes() == np.array(want, dtype=dtype).tobytes()


def _ulps(got, want):
    return np.abs(got - want) / np.spacing(np.abs(want))


def test_exp_and_log_match_numpy_to_a_few_ulp(rng, numba_runs):
    x = np.concatenate([rng.uniform(-745, 709, 20000), rng.standard_normal(5000),
                        rng.standard_normal(2000) * 1e-9, np.linspace(-40, 40, 4001)])
    got = np.array([compiled.exp(v) for v in x])
    want = np.exp(x)
    normal = want >= np.finfo(np.float64).tiny
    assert _ulps(got[normal], want[normal]).max() <= 2
    assert np.abs(got[~normal] - want[~normal]).max() <= 5e-324         # subnormal results
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), rng.uniform(0.5, 2, 5000),
                        1 + rng.standard_normal(2000) * 1e-9, [5e-324, 1e-310, 1.0, 2.0]])
    got, want = np.array([compiled.log(v) for v in y]), np.log(y)
    nonzero = want != 0
    assert _ulps(got[nonzero], want[nonzero]).max() <= 2
    assert np.all(got[~nonzero] == 0)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0])
    with np.errstate(all="ignore"):
        for fn, ref in ((compiled.exp, np.exp), (compiled.log, np.log)):
            np.testing.assert_array_equal([fn(v) for v in special], ref(special))
