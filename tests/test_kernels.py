"""Kernels: im2col/col2im properties, NumPy vs Numba agreement, both vs loop oracles."""
import numpy as np
import pytest

import naive
from minilenet import kernels
from minilenet.kernels import numpy_ref

numba_jit = pytest.importorskip("minilenet.kernels.numba_jit",
                                reason="the Numba twins need numba (pip install numba)")

WINDOWS = [(2, 2, 2), (3, 3, 1), (3, 2, 2), (5, 5, 1), (3, 3, 3)]   # (KH, KW, stride)


def test_both_backends_define_every_kernel():
    for name in kernels.KERNEL_NAMES:
        assert callable(getattr(numpy_ref, name)) and callable(getattr(numba_jit, name))


@pytest.mark.parametrize("kh,kw,stride", WINDOWS)
def test_im2col_reads_the_right_pixels(backend, rng, kh, kw, stride):
    x = rng.standard_normal((2, 3, 9, 8))
    cols = kernels.get(backend).im2col(x, kh, kw, stride)
    OH, OW = (9 - kh) // stride + 1, (8 - kw) // stride + 1
    assert cols.shape == (2, 3, kh, kw, OH, OW)
    for p, q in [(0, 0), (OH - 1, OW - 1), (OH // 2, OW - 1)]:
        window = x[:, :, p * stride:p * stride + kh, q * stride:q * stride + kw]
        np.testing.assert_array_equal(cols[:, :, :, :, p, q], window)


@pytest.mark.parametrize("kh,kw,stride", WINDOWS)
def test_col2im_of_ones_counts_windows(backend, kh, kw, stride):
    """A col2im that overwrites instead of summing gives 1 where windows overlap."""
    H, W = 9, 8
    OH, OW = (H - kh) // stride + 1, (W - kw) // stride + 1
    ones = np.ones((1, 2, kh, kw, OH, OW))
    counts = kernels.get(backend).col2im(ones, (1, 2, H, W), stride)
    np.testing.assert_array_equal(counts[0, 1], naive.window_counts((H, W), kh, kw, stride))
    assert counts.sum() == ones.size


@pytest.mark.parametrize("kh,kw,stride", WINDOWS)
def test_col2im_is_the_adjoint_of_im2col(backend, rng, kh, kw, stride):
    """<im2col(x), c> == <x, col2im(c)> for every x and c."""
    k = kernels.get(backend)
    x = rng.standard_normal((2, 2, 9, 8))
    c = rng.standard_normal(k.im2col(x, kh, kw, stride).shape)
    lhs = np.sum(k.im2col(x, kh, kw, stride) * c)
    rhs = np.sum(x * k.col2im(c, x.shape, stride))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def _assert_close(a, b, dtype):
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert u.dtype == v.dtype == dtype
        scale = max(np.abs(v).max(), 1e-30)
        assert np.abs(u - v).max() / scale <= rtol


def _kernel_calls(rng, dtype, n):
    """Arguments for every kernel, with a batch of n samples."""
    table = rng.random((4, 5)) < 0.5
    table[0] = True
    out_idx, in_idx = (a.astype(np.int64) for a in np.nonzero(table.T))
    normal = lambda *shape: rng.standard_normal(shape).astype(dtype)   # noqa: E731
    x, w, b = normal(n, 4, 10, 9), normal(5, 4, 3, 3), normal(5)
    xs, coef, bias = normal(n, 4, 10, 8), normal(4), normal(4)
    centers = rng.choice([-1.0, 1.0], (10, 84)).astype(dtype)
    return {
        "im2col": (x, 3, 3, 2),
        "col2im": (normal(n, 4, 3, 3, 4, 4), (n, 4, 9, 9), 2),
        "conv2d_forward": (x, w, b),
        "conv2d_backward": (x, w, normal(n, 5, 8, 7)),
        "table_conv2d_forward": (x, normal(len(out_idx), 3, 3), b, out_idx, in_idx),
        "table_conv2d_backward": (x, normal(len(out_idx), 3, 3), normal(n, 5, 8, 7),
                                  out_idx, in_idx),
        "subsample_forward": (xs, coef, bias, 1.0),
        "subsample_backward": (xs, coef, normal(n, 4, 5, 4), 0.25),
        "dense_forward": (normal(n, 7), normal(7, 5), normal(5)),
        "dense_backward": (normal(n, 7), normal(7, 5), normal(n, 5)),
        "rbf_forward": (normal(n, 84), centers),
        "rbf_backward": (normal(n, 84), centers, normal(n, 10)),
    }


@pytest.mark.parametrize("n", [3, numba_jit.PARALLEL_MIN + 13])     # serial, and threads
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", kernels.KERNEL_NAMES)
def test_numba_matches_numpy(rng, name, dtype, n):
    """Same outputs, same dtype: 1e-12 relative in float64, 2e-5 in float32."""
    args = _kernel_calls(rng, dtype, n)[name]
    _assert_close(getattr(numba_jit, name)(*args), getattr(numpy_ref, name)(*args), dtype)


@pytest.mark.parametrize("n", [1, numba_jit.PARALLEL_MIN + 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_c5_shaped_convolution_matches_numpy(rng, dtype, n):
    """A kernel that covers its input (C5): a batch runs it as a dense layer."""
    x, w = rng.standard_normal((n, 16, 5, 5)).astype(dtype), rng.standard_normal(
        (120, 16, 5, 5)).astype(dtype)
    b, dy = rng.standard_normal(120).astype(dtype), rng.standard_normal((n, 120, 1, 1)).astype(dtype)
    _assert_close(numba_jit.conv2d_forward(x, w, b), numpy_ref.conv2d_forward(x, w, b), dtype)
    _assert_close(numba_jit.conv2d_backward(x, w, dy), numpy_ref.conv2d_backward(x, w, dy), dtype)


@pytest.mark.parametrize("name", ["conv2d_backward", "table_conv2d_backward", "dense_backward"])
def test_parallel_kernels_give_the_same_bits_every_run(rng, name):
    """Weight gradients are reduced per fixed block of samples, then in block order."""
    args = _kernel_calls(rng, np.float32, 3 * numba_jit.BLOCK + 5)[name]
    first = getattr(numba_jit, name)(*args)
    for _ in range(5):
        for a, b in zip(first, getattr(numba_jit, name)(*args)):
            assert a.tobytes() == b.tobytes()


def test_conv_matches_loop_oracle(backend, rng):
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    np.testing.assert_allclose(kernels.get(backend).conv2d_forward(x, w, b),
                               naive.conv2d(x, w, b), rtol=1e-12, atol=1e-12)


def test_table_conv_matches_loop_oracle(backend, rng):
    from minilenet import C3_TABLE
    out_idx, in_idx = (a.astype(np.int64) for a in np.nonzero(C3_TABLE.T))
    x = rng.standard_normal((2, 6, 9, 9))
    w, b = rng.standard_normal((60, 5, 5)), rng.standard_normal(16)
    got = kernels.get(backend).table_conv2d_forward(x, w, b, out_idx, in_idx)
    np.testing.assert_allclose(got, naive.table_conv2d(x, w, b, C3_TABLE), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_subsample_matches_loop_oracle(backend, rng, scale):
    x = rng.standard_normal((2, 3, 6, 4))
    coef, bias = rng.standard_normal(3), rng.standard_normal(3)
    np.testing.assert_allclose(kernels.get(backend).subsample_forward(x, coef, bias, scale),
                               naive.subsample(x, coef, bias, scale), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,parts", [(4, 1), (8, 2), (16, 2), (37, 2)])
def test_batches_of_eight_or_more_use_every_thread(monkeypatch, rng, n, parts):
    """Forward kernels split samples, backward kernels blocks of 8 samples: both across
    all threads once the batch holds PARALLEL_MIN samples, never below."""
    seen = []
    spans = numba_jit._spans
    monkeypatch.setattr(numba_jit, "_spans", lambda k, p: seen.append(p) or spans(k, p))
    x, w = rng.standard_normal((n, 20)), rng.standard_normal((20, 3))
    before = numba_jit.get_threads()
    try:
        numba_jit.set_threads(2)
        y = numba_jit.dense_forward(x, w, np.zeros(3))
        numba_jit.dense_backward(x, w, y)
    finally:
        numba_jit.set_threads(before)
    assert seen == [parts, parts]


def test_batch_kernels_give_the_same_bits_on_any_number_of_threads(rng):
    """Threads take whole samples and fixed blocks of samples: the results depend on
    the batch size only."""
    from minilenet.table_conv import C3_TABLE
    out_idx, in_idx = (a.astype(np.int64) for a in np.nonzero(C3_TABLE.T))
    x = rng.standard_normal((37, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((len(out_idx), 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((37, 16, 10, 10)).astype(np.float32)
    results = {}
    before = numba_jit.get_threads()
    try:
        for threads in (1, 2, 3):
            numba_jit.set_threads(threads)
            results[threads] = (numba_jit.table_conv2d_forward(x, w, b, out_idx, in_idx),
                                *numba_jit.table_conv2d_backward(x, w, dy, out_idx, in_idx))
    finally:
        numba_jit.set_threads(before)
    for threads in (2, 3):
        for got, expected in zip(results[threads], results[1]):
            assert got.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="at least 1"):
        numba_jit.set_threads(0)
