"""Kernels: im2col/col2im properties, NumPy vs Numba agreement, both vs loop oracles."""
import numpy as np
import pytest

import naive
from minilenet import kernels
from minilenet.activations import THREAD_MIN_ELEMENTS, Activation, ScaledTanh
from minilenet.kernels import threads
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
    """Floats to rounding; integer outputs (max-pooling's winners) exactly, as int64;
    a scalar (a loss) by value only (the compiled losses sum in float64)."""
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        if np.ndim(v) == 0:
            assert float(u) == pytest.approx(float(v), rel=rtol)
            continue
        if v.dtype.kind == "i":
            assert u.dtype == v.dtype == np.int64 and np.array_equal(u, v)
            continue
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
    xp = rng.integers(0, 3, (n, 4, 9, 8)).astype(dtype)       # few values: many tied maxima
    winner = numpy_ref.maxpool_forward(xp, 3, 1)[1]          # 3x3 windows at stride 1 overlap
    labels = rng.integers(0, 10, n)
    penalties = rng.uniform(0, 300, (n, 10)).astype(dtype)   # RBF penalties: the right
    penalties[np.arange(n), labels] = rng.uniform(0, 3, n)   # class's is small
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
        "maxpool_forward": (xp, 3, 1),
        "maxpool_backward": (normal(n, 4, 7, 6), winner, xp.shape, 3, 1),
        "avgpool_forward": (x, 3, 2),
        "avgpool_backward": (normal(n, 5, 4, 4), (n, 5, 9, 9), 3, 2),
        "dense_forward": (normal(n, 7), normal(7, 5), normal(5)),
        "dense_backward": (normal(n, 7), normal(7, 5), normal(n, 5)),
        "rbf_forward": (normal(n, 84), centers),
        "rbf_backward": (normal(n, 84), centers, normal(n, 10)),
        "scaled_tanh": (normal(n, 3, 4, 4) * 2,),
        "scaled_tanh_derivative": (numpy_ref.scaled_tanh(normal(n, 3, 4, 4) * 2),),
        "mse_loss": (penalties, labels),
        "map_loss": (penalties, labels, 0.1),
        "softmax_cross_entropy": (normal(n, 10) * 3, labels),
        "sdlm_update": (normal(n, 7), normal(n, 7), np.abs(normal(n, 7))),
    }


def _run(module, name, args):
    """A kernel's outputs, on copies of ``args``; for the one that works in place
    (sdlm_update), the parameters it updated."""
    args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
    out = getattr(module, name)(*args)
    return args[0] if out is None else out


@pytest.mark.parametrize("n", [3, numba_jit.PARALLEL_MIN + 13])     # serial, and threads
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", kernels.KERNEL_NAMES)
def test_numba_matches_numpy(rng, name, dtype, n, numba_runs):
    """Same outputs, same dtype: 1e-12 relative in float64, 2e-5 in float32."""
    args = _kernel_calls(rng, dtype, n)[name]
    _assert_close(_run(numba_jit, name, args), _run(numpy_ref, name, args), dtype)


@pytest.mark.parametrize("n", [1, numba_jit.PARALLEL_MIN + 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_c5_shaped_convolution_matches_numpy(rng, dtype, n, numba_runs):
    """A kernel that covers its input (C5): a batch runs it as a dense layer."""
    x, w = rng.standard_normal((n, 16, 5, 5)).astype(dtype), rng.standard_normal(
        (120, 16, 5, 5)).astype(dtype)
    b, dy = rng.standard_normal(120).astype(dtype), rng.standard_normal((n, 120, 1, 1)).astype(dtype)
    _assert_close(numba_jit.conv2d_forward(x, w, b), numpy_ref.conv2d_forward(x, w, b), dtype)
    _assert_close(numba_jit.conv2d_backward(x, w, dy), numpy_ref.conv2d_backward(x, w, dy), dtype)


@pytest.mark.parametrize("name", ["conv2d_backward", "table_conv2d_backward", "dense_backward"])
def test_parallel_kernels_give_the_same_bits_every_run(rng, name, numba_runs):
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


def _maxpool_loops(x, dy, k, stride):
    """Loop oracle: each window's first maximum in row-major order (y, winner), and
    dx with each dy added at its window's winner."""
    N, C, H, W = x.shape
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    y, winner, dx = np.empty((N, C, OH, OW)), np.empty((N, C, OH, OW), np.int64), np.zeros(x.shape)
    for n, c, p, q in np.ndindex(N, C, OH, OW):
        window = x[n, c, p * stride:p * stride + k, q * stride:q * stride + k].ravel().tolist()
        t = window.index(max(window))
        y[n, c, p, q], winner[n, c, p, q] = window[t], t
        dx[n, c, p * stride + t // k, q * stride + t % k] += dy[n, c, p, q]
    return y, winner, dx


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 1), (3, 2), (2, 1), (2, 3)])
def test_maxpool_matches_loop_oracle(backend, rng, k, stride):
    """Three values only, so most windows hold tied maxima: the first one wins; where
    windows overlap (stride < k) dx sums. Integer dy: sums exact in any order."""
    kern = kernels.get(backend)
    x = rng.integers(0, 3, (2, 3, 9, 8)).astype(np.float64)
    y, winner = kern.maxpool_forward(x, k, stride)
    dy = rng.integers(-3, 4, y.shape).astype(np.float64)
    want_y, want_winner, want_dx = _maxpool_loops(x, dy, k, stride)
    np.testing.assert_array_equal(y, want_y)
    assert winner.dtype == np.int64
    np.testing.assert_array_equal(winner, want_winner)
    np.testing.assert_array_equal(kern.maxpool_backward(dy, winner, x.shape, k, stride), want_dx)


def test_maxpool_a_nan_wins_its_window_as_argmax_picks_it(backend):
    """A NaN is the maximum (the first NaN, where there are several), so y keeps it."""
    x = np.zeros((1, 1, 2, 6))
    x[0, 0, 0, 1], x[0, 0, 1, 0] = 5.0, np.nan                # window 0: NaN after a 5
    x[0, 0, 0, 3] = x[0, 0, 1, 2] = np.nan                     # window 1: two NaNs
    x[0, 0, 0, 4], x[0, 0, 1, 5] = np.nan, 7.0                 # window 2: NaN first
    y, winner = kernels.get(backend).maxpool_forward(x, 2, 2)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(winner[0, 0, 0], [2, 1, 0])


def test_maxpool_infinities_take_the_same_path_as_any_value(backend, rng):
    """The vectorised 2 x 2 path redoes a row whose window sums to NaN (+inf beside
    -inf); windows of one infinity, or of -inf only, stay on it: both agree with
    the oracle."""
    x = rng.integers(-2, 3, (2, 2, 6, 8)).astype(np.float64)
    x[x == 2], x[x == -2] = np.inf, -np.inf
    x[1, 1, :2, :2] = -np.inf                                  # a window of -inf only
    y, winner = kernels.get(backend).maxpool_forward(x, 2, 2)
    dy = rng.integers(-3, 4, y.shape).astype(np.float64)
    want_y, want_winner, want_dx = _maxpool_loops(x, dy, 2, 2)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(winner, want_winner)
    np.testing.assert_array_equal(kernels.get(backend).maxpool_backward(dy, winner, x.shape, 2, 2),
                                  want_dx)


@pytest.mark.parametrize("kind,n,threaded", [
    ("conv", 4, False), ("conv", 8, True), ("conv", 37, True),
    ("dense", 37, False), ("dense", kernels.PARALLEL_MIN_LIGHT, True)])
def test_large_enough_batches_use_every_thread(monkeypatch, rng, kind, n, threaded, numba_runs):
    """Batch kernels split samples, or fixed blocks of samples, across all threads once
    the batch holds PARALLEL_MIN samples (PARALLEL_MIN_LIGHT for the light kernels):
    one span per thread, or for convolutions spans of CONV_PIECE samples (at least
    one per thread); smaller batches run on the calling thread."""
    seen = []
    spans = threads._spans
    monkeypatch.setattr(threads, "_spans", lambda k, p: seen.append(p) or spans(k, p))
    before = threads.get_threads()
    try:
        threads.set_threads(2)
        if kind == "conv":
            x, w = rng.standard_normal((n, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
            y = numba_jit.conv2d_forward(x, w, np.zeros(3))
            numba_jit.conv2d_backward(x, w, y)
        else:
            x, w = rng.standard_normal((n, 20)), rng.standard_normal((20, 3))
            y = numba_jit.dense_forward(x, w, np.zeros(3))
            numba_jit.dense_backward(x, w, y)
    finally:
        threads.set_threads(before)
    if n < kernels.PARALLEL_MIN:
        assert seen == []                          # small batches take the loops, no threads
    elif kind == "conv":
        assert seen == [max(2, -(-n // numba_jit.CONV_PIECE))] * 2
    else:
        assert seen == [2 if threaded else 1] * 2


def test_one_blas_thread_holds_the_blas_to_one_thread_and_restores_it():
    import threadpoolctl
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with threads.one_blas_thread():
            inside = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                      if i["user_api"] == "blas"]
        after = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                 if i["user_api"] == "blas"]
    assert inside and set(inside) == {1}
    assert set(after) == {2}


def test_threads_take_every_span_once_and_raise_what_a_span_raises():
    """in_threads with small spans: each span runs exactly once, on one of the threads
    (which one takes which is up to their timing); an error in a span reaches the caller."""
    taken = []
    before = threads.get_threads()
    try:
        threads.set_threads(2)
        threads.in_threads(lambda lo, hi: taken.append((lo, hi)), 37, lambda lo, hi: (lo, hi),
                           batch=37, piece=4)
        assert sorted(taken) == threads._spans(37, 10)
        assert sorted(taken)[0] == (0, 3) and sorted(taken)[-1] == (33, 37)

        def fail(lo, hi):
            if lo > 20:
                raise ValueError(f"span {lo}..{hi}")
        with pytest.raises(ValueError, match="span"):
            threads.in_threads(fail, 37, lambda lo, hi: (lo, hi), batch=37, piece=4)
    finally:
        threads.set_threads(before)


def test_batch_kernels_give_the_same_bits_on_any_number_of_threads(rng, numba_runs):
    """Threads take whole samples and fixed blocks of samples: the results depend on
    the batch size only."""
    from minilenet.paper import C3_TABLE
    out_idx, in_idx = (a.astype(np.int64) for a in np.nonzero(C3_TABLE.T))
    x = rng.standard_normal((37, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((len(out_idx), 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((37, 16, 10, 10)).astype(np.float32)
    n = kernels.PARALLEL_MIN_LIGHT + 5                 # the light kernels use threads too
    x1, w1 = rng.standard_normal((n, 1, 12, 12)), rng.standard_normal((4, 1, 5, 5))
    dy1 = rng.standard_normal((n, 4, 8, 8))
    xd, wd, dyd = rng.standard_normal((n, 30)), rng.standard_normal((30, 7)), rng.standard_normal((n, 7))
    coef = rng.standard_normal(4)
    results = {}
    before = threads.get_threads()
    try:
        for count in (1, 2, 3):
            threads.set_threads(count)
            results[count] = (numba_jit.table_conv2d_forward(x, w, b, out_idx, in_idx),
                              *numba_jit.table_conv2d_backward(x, w, dy, out_idx, in_idx),
                              numba_jit.conv2d_forward(x1, w1, coef),
                              *numba_jit.conv2d_backward(x1, w1, dy1)[1:],
                              numba_jit.dense_forward(xd, wd, dyd[0]),
                              *numba_jit.dense_backward(xd, wd, dyd),
                              *numba_jit.subsample_backward(dy1, coef, dy1, 1.0))
    finally:
        threads.set_threads(before)
    for count in (2, 3):
        for got, expected in zip(results[count], results[1]):
            assert got.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_threads(0)


def test_maxpool_gives_the_same_bits_on_any_number_of_threads(monkeypatch, rng, numba_runs):
    """Threads take whole samples, and each sample's dx (overlapping windows summed)
    is written by one thread: the results do not depend on the thread count."""
    seen = []
    spans = threads._spans
    monkeypatch.setattr(threads, "_spans", lambda k, p: seen.append(p) or spans(k, p))
    n = kernels.PARALLEL_MIN_LIGHT + 5                     # max-pooling is light work
    x = rng.integers(0, 5, (n, 6, 12, 11)).astype(np.float32)
    dy = rng.standard_normal((n, 6, 10, 9)).astype(np.float32)
    results = {}
    before = threads.get_threads()
    try:
        for count in (1, 2, 3):
            threads.set_threads(count)
            y, winner = numba_jit.maxpool_forward(x, 3, 1)
            results[count] = (y, winner, numba_jit.maxpool_backward(dy, winner, x.shape, 3, 1))
    finally:
        threads.set_threads(before)
    assert seen == [1, 1, 2, 2, 3, 3]                      # forward and backward, split
    seen.clear()
    numba_jit.maxpool_forward(x[:kernels.PARALLEL_MIN_LIGHT - 1], 3, 1)
    assert seen == [1]                                     # a smaller batch: one span, here
    for count in (2, 3):
        for got, expected in zip(results[count], results[1]):
            assert got.tobytes() == expected.tobytes()


_SOFTSIGN = (lambda a: a / (1 + np.abs(a)), lambda y: (1 - np.abs(y)) ** 2)   # f, f'(y)


class _SoftsignNoOut(Activation):
    """An activation as a student may write one: f(x) and df(y) without ``out``."""

    def f(self, x):
        return _SOFTSIGN[0](x)

    def df(self, y):
        return _SOFTSIGN[1](y)


#: The whole-array formulas: the default backend's squashing kernels (the Numba
#: backend computes tanh its own way, compiled.tanh), and softsign.
_FORMULAS = {"ScaledTanh": (lambda x: kernels.get().scaled_tanh(x),
                            lambda y: kernels.get().scaled_tanh_derivative(y)),
             "softsign": _SOFTSIGN}


@pytest.mark.parametrize("name", sorted(_FORMULAS))
def test_elementwise_layers_split_large_batches_without_changing_a_bit(monkeypatch, rng, name):
    """An activation over at least THREAD_MIN_ELEMENTS elements runs in spans of
    samples on every thread (one call on one thread), with the bits of the plain
    whole-array formula: computed in place (ScaledTanh's f and df take ``out``),
    or copied from the result of an f and df that do not take it."""
    seen = []
    spans = threads._spans
    monkeypatch.setattr(threads, "_spans", lambda k, p: seen.append(p) or spans(k, p))
    n = THREAD_MIN_ELEMENTS // (6 * 28 * 28) + 3
    x = rng.standard_normal((n, 6, 28, 28)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = ScaledTanh() if name == "ScaledTanh" else _SoftsignNoOut(np.float32)
    results = {}
    before = threads.get_threads()
    try:
        for count in (1, 2):
            threads.set_threads(count)
            results[count] = (layer.forward(x), layer.backward(dy))
    finally:
        threads.set_threads(before)
    assert seen == [2, 2]                       # forward and backward, on 2 threads
    f, df = _FORMULAS[name]
    whole = f(x)
    for y, dx in results.values():
        assert y.dtype == dx.dtype == np.float32
        assert y.tobytes() == whole.tobytes()
        assert dx.tobytes() == (dy * df(whole)).tobytes()
    seen.clear()
    layer.forward(x[:2])
    assert seen == []                                    # small arrays: one call, here


def test_malloc_keeps_freed_memory_on_glibc():
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the malloc settings are glibc's (mallopt)")
    from minilenet.kernels import memory
    assert memory.keep_freed_memory() is True and memory.keep_freed_memory() is True
