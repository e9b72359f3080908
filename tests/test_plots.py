"""Every plotting function draws on small inputs, returns a Figure, writes a real
PNG when given a path, and draws what it says (counted artists, colours, data)."""
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from minilenet import C3_TABLE, plots
from minilenet.bitmaps import load_digit_bitmaps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def images_of(fig):
    return fig.findobj(AxesImage)


def bars_of(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def colour(artist):
    return tuple(np.round(artist.get_facecolor(), 3))


def rgba(name):
    return tuple(np.round(to_rgba(name), 3))


@pytest.fixture
def history():
    return [{"epoch": e, "train_error": 0.1 / e, "test_error": 0.05 / e, "train_loss": 1.0 / e,
             "rates": {"c1.weight": (1e-4, 1e-3, 1e-2), "c1.bias": (1.0, 1.0, 1.0),
                       "f6.weight": (1e-5, 1e-4, 1e-3)}} for e in (1, 2, 3)]


def check_png(fig, tmp_path, draw):
    """``draw(path)`` returns the same kind of figure and writes a PNG there."""
    assert isinstance(fig, Figure)
    path = tmp_path / "sub" / "figure.png"
    again = draw(path)
    assert isinstance(again, Figure)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]   # no temporary left


def test_history(history, tmp_path):
    fig = plots.plot_history(history)
    errors, loss = fig.axes
    assert len(errors.lines) == 3                     # on the fly, test, the paper's line
    np.testing.assert_allclose(errors.lines[1].get_ydata(), [5.0, 2.5, 5 / 3])
    assert errors.get_yscale() == "log"
    assert len(plots.plot_history(history, paper_error=None).axes[0].lines) == 2
    check_png(fig, tmp_path, lambda p: plots.plot_history(history, p))   # positional, as the CLI


def test_rates(history, tmp_path):
    fig = plots.plot_rates(history)
    ax, = fig.axes
    assert [line.get_label() for line in ax.lines] == ["c1", "f6"]     # weights only
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1e-4] * 3)   # the median
    check_png(fig, tmp_path, lambda p: plots.plot_rates(history, p))


def test_confusion(tmp_path):
    matrix = np.diag(np.full(10, 90)) + np.eye(10, k=1, dtype=int)
    fig = plots.plot_confusion(matrix)
    ax = fig.axes[0]
    assert len(ax.texts) == 100
    assert "9 errors" in ax.get_title()
    shown = np.ma.filled(images_of(fig)[0].get_array().astype(float), np.nan)
    assert np.isnan(np.diag(shown)).all() and shown[0, 1] == 1   # diagonal left out of the scale
    check_png(fig, tmp_path, lambda p: plots.plot_confusion(matrix, p))


def test_misclassified(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    predicted = labels.copy()
    predicted[[1, 4, 7]] = 0
    captions = lambda fig: [t.get_text() for ax in fig.axes for t in ax.texts]  # noqa: E731
    fig = plots.plot_misclassified(images, labels, predicted)
    assert captions(fig) == ["1\u21920", "4\u21920", "7\u21920"]
    mosaic = images_of(fig)[0].get_array()            # one image: the digits side by side
    for k, i in enumerate((1, 4, 7)):                 # 14 rows for the caption, 2 px apart
        np.testing.assert_array_equal(mosaic[14:42, 30 * k + 1:30 * k + 29], images[i])
    assert len(captions(plots.plot_misclassified(images, labels, predicted, limit=2))) == 2
    assert captions(plots.plot_misclassified(images, labels, labels)) == []

    scores = rng.random((12, 10))
    scores[[1, 4, 7], 0] = -1.0                       # the predicted class wins
    fig = plots.plot_misclassified(images, labels, predicted, scores=scores)
    assert len(images_of(fig)) == 3
    charts = [ax for ax in fig.axes if bars_of(ax)]
    assert len(charts) == 3 and all(len(bars_of(ax)) == 10 for ax in charts)
    for ax, true in zip(charts, (1, 4, 7)):
        bars = bars_of(ax)
        assert colour(bars[0]) == rgba(plots.WINNER)
        assert bars[true].get_linewidth() == 2        # the true class outlined
    check_png(fig, tmp_path,
              lambda p: plots.plot_misclassified(images, labels, predicted, p))


def test_bitmaps(tmp_path):
    centers = load_digit_bitmaps()
    fig = plots.plot_bitmaps(centers)
    shown = images_of(fig)
    assert len(shown) == 10
    np.testing.assert_array_equal(shown[3].get_array(), centers[3].reshape(12, 7))
    check_png(fig, tmp_path, lambda p: plots.plot_bitmaps(centers, p))


def test_digits(tmp_path):
    images = np.random.default_rng(0).random((13, 1, 28, 28))
    fig = plots.plot_digits(images, titles=[f"#{i}" for i in range(13)], cols=5, title="gallery")
    assert len(images_of(fig)) == 13
    assert len(fig.axes) == 15                         # 3 rows of 5, two hidden
    assert [ax.get_title() for ax in fig.axes[:13]] == [f"#{i}" for i in range(13)]
    check_png(fig, tmp_path, lambda p: plots.plot_digits(images[:, 0], path=p))


def test_kernels(tmp_path):
    rng = np.random.default_rng(0)
    c1 = rng.normal(size=(6, 1, 5, 5))
    fig = plots.plot_kernels(c1, title="C1")
    im, = images_of(fig)
    mosaic = np.ma.filled(im.get_array().astype(float), np.nan)
    assert mosaic.shape == (5, 6 * 6 - 1)                  # a row of six, one-pixel gaps
    np.testing.assert_array_equal(mosaic[:, 6:11], c1[1, 0])
    assert np.isnan(mosaic[:, 5]).all()
    lim = np.abs(c1).max()
    assert im.get_clim() == (-lim, lim)                    # one scale centred on 0
    grid = rng.normal(size=(4, 3, 5, 5))
    mosaic = images_of(plots.plot_kernels(grid))[0].get_array()
    assert mosaic.shape == (4 * 6 - 1, 3 * 6 - 1)
    np.testing.assert_array_equal(mosaic[18:23, 12:17], grid[3, 2])   # row f, column c
    assert images_of(plots.plot_kernels(rng.normal(size=(7, 5, 5))))[0].get_array().shape == (5, 41)
    check_png(fig, tmp_path, lambda p: plots.plot_kernels(c1, p))


def test_feature_maps(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"c1": rng.random((6, 28, 28)), "s2": rng.random((6, 14, 14)),
            "c3": rng.random((16, 10, 10)), "c5": rng.random((120, 1, 1)), "f6": rng.random(84)}
    fig = plots.plot_feature_maps(maps, title="one digit")
    shown = images_of(fig)
    assert len(shown) == 6 + 6 + 16 + 1 + 1           # a strip each for C5 and F6
    assert shown[-2].get_array().shape == (1, 120) and shown[-1].get_array().shape == (1, 84)
    check_png(fig, tmp_path, lambda p: plots.plot_feature_maps(maps, p))


def test_c3_table(tmp_path):
    fig = plots.plot_c3_table(C3_TABLE)
    ax = fig.axes[0]
    assert len(ax.texts) == 60
    np.testing.assert_array_equal(images_of(fig)[0].get_array(), C3_TABLE)
    assert "60 of 96" in ax.get_title()
    check_png(fig, tmp_path, lambda p: plots.plot_c3_table(C3_TABLE, p))


def test_distances(tmp_path):
    d = np.array([5.0, 4.0, 9.0, 1.5, 7.0, 6.0, 8.0, 3.0, 2.0, 9.5])
    fig = plots.plot_distances(d, labels=8)
    ax, = [a for a in fig.axes if bars_of(a)]
    bars = bars_of(ax)
    np.testing.assert_allclose([b.get_height() for b in bars], d)
    assert [colour(b) == rgba(plots.WINNER) for b in bars] == [k == 3 for k in range(10)]
    assert bars[8].get_linewidth() == 2
    assert ax.get_title() == "answer 3 (true 8)"
    many = np.random.default_rng(0).random((7, 10))
    fig = plots.plot_distances(many, labels=np.arange(7))
    assert len([a for a in fig.axes if bars_of(a)]) == 7
    check_png(fig, tmp_path, lambda p: plots.plot_distances(d, p))


def test_prediction(tmp_path):
    rng = np.random.default_rng(0)
    photo, digit32 = rng.random((50, 40, 3)), rng.random((1, 32, 32))
    d = rng.random(10)
    fig = plots.plot_prediction(photo, digit32, d, title="my digit")
    shown = images_of(fig)
    assert [im.get_array().shape for im in shown] == [(50, 40, 3), (32, 32)]
    ax, = [a for a in fig.axes if bars_of(a)]
    assert len(bars_of(ax)) == 10
    assert ax.get_title() == f"answer: {d.argmin()}"
    grey = plots.plot_prediction(rng.random((28, 28)), digit32[0], d)
    assert images_of(grey)[0].get_array().shape == (28, 28)
    check_png(fig, tmp_path, lambda p: plots.plot_prediction(photo, digit32, d, p))


def test_invariance(tmp_path):
    values = np.arange(-3, 4)
    d = np.tile(np.arange(10.0), (7, 1))
    d[5:, 4] = -1.0                                    # the answer flips from 0 to 4
    fig = plots.plot_invariance(values, {"error (%)": np.linspace(0, 30, 7), "a 4": d}, "shift")
    flat, codes = fig.axes
    assert len(flat.lines) == 1 and len(codes.lines) == 10
    assert [t.get_text() for t in codes.texts] == ["0"] * 5 + ["4"] * 2
    assert len(plots.plot_invariance(values, {"a": d, "b": d}, "shift").axes) == 2
    check_png(fig, tmp_path, lambda p: plots.plot_invariance(values, {"a": d}, "shift", p))


def test_timings(tmp_path):
    seconds = {"naive loops": 3.0, "im2col": 0.1, "numba": 0.01}
    fig = plots.plot_timings(seconds, title="convolution")
    ax = fig.axes[0]
    assert [b.get_width() for b in bars_of(ax)] == [3.0, 0.1, 0.01]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(seconds)
    check_png(fig, tmp_path, lambda p: plots.plot_timings(seconds, p))


def test_curves(tmp_path):
    curves = {"float32": [1e-3, 1e-4, 1e-3], "float64": [1e-6, 1e-9, 1e-7]}
    fig = plots.plot_curves([1, 2, 3], curves, "step", "relative error", logy=True)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == list(curves)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
    check_png(fig, tmp_path,
              lambda p: plots.plot_curves([1, 2, 3], curves, "step", "relative error", p))


def test_no_pyplot():
    """Drawing never imports pyplot (no GUI backend, no global figure state)."""
    import subprocess
    import sys
    code = ("import sys, numpy as np; from minilenet import plots; "
            "plots.plot_distances(np.arange(10.0)); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
