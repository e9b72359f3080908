"""Every figure minilenet draws: training curves, kernels, feature maps, RBF codes,
the C3 table, confusion matrices, galleries, invariance curves, timings.

One module for the notebooks, ``minilenet train`` and ``minilenet evaluate``.
Each function builds a ``matplotlib.figure.Figure`` directly (no pyplot, so no
GUI backend and no global state) and returns it; given ``path``, it also writes
the figure there as a PNG, atomically. In a notebook, a returned Figure shown as
a cell's last expression is displayed inline.
"""
import numpy as np

from .fileio import atomic_write

PAPER_TEST_ERROR = 0.95     # percent, LeNet-5 without distortions (paper Fig. 9)
WINNER, OTHER, TRUE = "tab:red", "tab:gray", "tab:blue"   # bar colours of a distance chart


def _figure(*size):
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained")


def _save(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)


def _finish(fig, path):
    """Write ``fig`` to ``path`` when one is given; return it."""
    if path is not None:
        _save(fig, path)
    return fig


def _image(ax, image, cmap="gray_r", **kw):
    """Draw one grey (H, W) (or (1, H, W), (1, 1, H, W)) or RGB (H, W, 3) image without ticks."""
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    ax.imshow(image, cmap=None if image.ndim == 3 else cmap, **kw)
    ax.set(xticks=[], yticks=[])


def _bars(ax, distances, true=None):
    """Ten (K) RBF penalties as bars; the smallest (the answer) in red, the true class outlined."""
    distances = np.asarray(distances, dtype=float)
    winner = int(np.argmin(distances))
    colours = [WINNER if k == winner else OTHER for k in range(len(distances))]
    bars = ax.bar(range(len(distances)), distances, color=colours)
    if true is not None:
        bars[int(true)].set(edgecolor=TRUE, linewidth=2)
    ax.annotate(f"{distances[winner]:.1f}", (winner, distances[winner]), xytext=(0, 2),
                textcoords="offset points", ha="center", va="bottom", fontsize=7,
                color=WINNER)                  # the answer's bar is often too short to see
    ax.set(xticks=range(len(distances)), xlim=(-0.6, len(distances) - 0.4))
    return winner


def _grid(fig, n, cols):
    """n axes in rows of ``cols``, spare axes hidden; returns the first n."""
    rows = max(1, int(np.ceil(n / cols)))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return axes[:n]


# ------------------------------------------------------------------ training
def plot_history(history, path=None, paper_error=PAPER_TEST_ERROR):
    """Training curves by epoch: error (%) on the fly and on the test set, and the loss.

    ``history``: list of dicts with "epoch", "train_error", "test_error" (fractions), "train_loss".
    """
    epochs = [h["epoch"] for h in history]
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [100 * h["train_error"] for h in history], "o-", label="training (on the fly)")
    ax1.plot(epochs, [100 * h["test_error"] for h in history], "s-", label="test")
    if paper_error is not None:
        ax1.axhline(paper_error, color="gray", ls="--", label=f"paper: {paper_error}%")
    ax1.set(xlabel="epoch (pass)", ylabel="error (%)", yscale="log", title="error rate")
    ax1.legend()
    ax2.plot(epochs, [h["train_loss"] for h in history], "o-")
    ax2.set(xlabel="epoch (pass)", ylabel="loss", title="training loss (mean over the pass)")
    return _finish(fig, path)


def plot_rates(history, path=None):
    """Per-layer effective learning rates (median, with min-max band) by epoch.

    ``history``: list of dicts with "epoch" and "rates": {"c1.weight": (min, median, max), ...}.
    """
    epochs = [h["epoch"] for h in history]
    names = [n for n in history[0]["rates"] if n.endswith(".weight")] if history else []
    fig = _figure(7, 4)
    ax = fig.subplots()
    for name in names:
        lo, med, hi = np.array([h["rates"][name] for h in history]).T
        line, = ax.plot(epochs, med, "o-", label=name.split(".")[0])
        ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set(xlabel="epoch (pass)", ylabel="step size per parameter", yscale="log",
           title="effective learning rates (median, min-max)")
    if names:
        ax.legend(ncol=2, fontsize="small")
    return _finish(fig, path)


def plot_curves(xs, curves, xlabel, ylabel, path=None, title=None, logy=False):
    """Any family of curves on one axis: ``curves`` maps a name to ys, each (len(xs),)."""
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    for name, ys in curves.items():
        ax.plot(xs, ys, "o-", label=name, markersize=4)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, yscale="log" if logy else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_timings(seconds, path=None, title=None):
    """Horizontal bars on a log scale, one per entry of ``seconds`` (name -> seconds)."""
    names, values = list(seconds), np.array(list(seconds.values()), dtype=float)
    fig = _figure(7, 0.5 * len(names) + 1.2)
    ax = fig.subplots()
    ax.barh(range(len(names)), values, color="tab:blue")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3g} s", va="center", fontsize=9)
    ax.set(yticks=range(len(names)), yticklabels=names, xscale="log", xlabel="seconds (log scale)",
           title=title)
    ax.set_xlim(values.min() / 2, values.max() * 8)   # room for the labels
    ax.invert_yaxis()                                 # first entry on top
    return _finish(fig, path)


# ---------------------------------------------------------------- evaluation
def plot_confusion(matrix, path=None):
    """Confusion matrix (K, K) of counts: row = true digit, column = predicted digit."""
    matrix = np.asarray(matrix)
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="Reds")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="black" if i != j else "gray")
    ax.set(xticks=range(len(matrix)), yticks=range(len(matrix)), xlabel="predicted",
           ylabel="true", title=f"confusion matrix ({matrix.sum() - np.trace(matrix)} errors)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="errors")
    return _finish(fig, path)


def plot_misclassified(images, labels, predicted, path=None, limit=100, scores=None):
    """Grid of misclassified digits captioned true -> predicted (cf. paper Fig. 8).

    images (N, H, W), labels and predicted (N,). With ``scores`` (N, K), the RBF
    penalties, each digit gets its K distances beside it as bars (the answer in
    red, the true class outlined in blue).
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    wrong = np.nonzero(labels != predicted)[0][:limit]
    if scores is None:                 # one mosaic image: 100 axes would take seconds to lay out
        cols = 10
        rows = max(1, int(np.ceil(len(wrong) / cols)))
        fig = _figure(cols * 0.9, rows * 1.05 + 0.4)
        ax = fig.add_subplot()
        tiles = np.asarray(images)[wrong]
        h, w = tiles.shape[1:] if len(wrong) else (28, 28)
        gap = h // 2                                  # room for the caption above each digit
        canvas = np.zeros((rows * (h + gap), cols * (w + 2)), dtype=float)
        for k, i in enumerate(wrong):
            r, c = divmod(k, cols)
            canvas[r * (h + gap) + gap:(r + 1) * (h + gap), c * (w + 2) + 1:c * (w + 2) + 1 + w] \
                = tiles[k]
            ax.text(c * (w + 2) + 1 + w / 2, r * (h + gap) + gap - 1,
                    f"{labels[i]}\u2192{predicted[i]}", ha="center", va="bottom", fontsize=8)
        _image(ax, canvas)
        ax.axis("off")
    else:
        pairs = 4                                    # (digit, bars) pairs per row
        rows = max(1, int(np.ceil(len(wrong) / pairs)))
        fig = _figure(pairs * 3.2, rows * 1.3 + 0.4)
        axes = np.atleast_2d(fig.subplots(rows, 2 * pairs, width_ratios=[1, 2] * pairs))
        axes = axes.reshape(-1, 2)
        for ax_img, ax_bar in axes[len(wrong):]:
            ax_img.axis("off")
            ax_bar.axis("off")
        for (ax_img, ax_bar), i in zip(axes, wrong):
            _image(ax_img, images[i])
            ax_img.set_title(f"{labels[i]}\u2192{predicted[i]}", fontsize=8)
            _bars(ax_bar, scores[i], true=labels[i])
            ax_bar.tick_params(labelsize=6)
    fig.suptitle(f"misclassified digits (true\u2192predicted), first {len(wrong)}")
    return _finish(fig, path)


def plot_distances(distances, path=None, labels=None, title=None):
    """RBF penalties as bars, the smallest (the answer) in red.

    distances (K,) for one digit or (N, K) for N digits (one chart each);
    ``labels`` (N,) (or an int for one digit): the true classes, outlined in blue.
    """
    distances = np.atleast_2d(np.asarray(distances, dtype=float))
    labels = [None] * len(distances) if labels is None else np.atleast_1d(labels)
    cols = min(len(distances), 5)
    fig = _figure(3.2 * cols, 2.4 * int(np.ceil(len(distances) / cols)))
    for ax, row, true in zip(_grid(fig, len(distances), cols), distances, labels):
        winner = _bars(ax, row, true)
        ax.set_title(f"answer {winner}" + ("" if true is None else f" (true {true})"), fontsize=9)
        ax.set_xlabel("code", fontsize=8)
    fig.supylabel("distance to the code", fontsize=9)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_prediction(image, digit32, distances, path=None, title=None):
    """What ``minilenet predict --show`` shows: the original image (grey (H, W) or
    RGB (H, W, 3), any size), the network's 32x32 input, and the ten RBF penalties."""
    fig = _figure(9, 2.8)
    ax_in, ax_32, ax_bar = fig.subplots(1, 3, width_ratios=[1, 1, 1.8])
    _image(ax_in, image, cmap="gray")
    ax_in.set_title(f"image, {np.shape(image)[1]}x{np.shape(image)[0]} pixels", fontsize=9)
    _image(ax_32, digit32)
    ax_32.set_title("network input 32x32", fontsize=9)
    winner = _bars(ax_bar, distances)
    ax_bar.set(xlabel="code", ylabel="distance")
    ax_bar.set_title(f"answer: {winner}", fontsize=9)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_invariance(values, curves, xlabel, path=None, title=None):
    """The network's answer as a transformation grows (cf. the paper's invariance figures).

    ``values`` (V,): the transformation's amounts. ``curves`` maps a name to a
    (V,) array (drawn together on the first axis: an error rate, a confidence)
    or to (V, K) RBF penalties (one axis each: one line per code, the answer
    written above each value).
    """
    values = np.asarray(values)
    flat = {k: np.asarray(v) for k, v in curves.items() if np.ndim(v) == 1}
    per_code = {k: np.asarray(v) for k, v in curves.items() if np.ndim(v) == 2}
    n = bool(flat) + len(per_code)
    fig = _figure(4.6 * n + 0.6 * len(per_code), 3.6)
    axes = np.atleast_1d(fig.subplots(1, n))
    if flat:
        ax = axes[0]
        for name, ys in flat.items():
            ax.plot(values, ys, "o-", label=name, markersize=4)
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax, (name, d) in zip(axes[bool(flat):], per_code.items()):
        for k in range(d.shape[1]):
            ax.plot(values, d[:, k], "-", label=str(k), lw=1.2)
        answers = d.argmin(axis=1)
        for x, a in zip(values, answers):
            ax.annotate(str(a), (x, 1.0), xycoords=("data", "axes fraction"), ha="center",
                        va="bottom", fontsize=7)
        ax.set(xlabel=xlabel, ylabel="distance to each code")
        ax.set_title(name, pad=14)
        ax.legend(fontsize=7, title="code", title_fontsize=7, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# ------------------------------------------------------------ inside the net
def plot_digits(images, titles=None, cols=10, path=None, title=None):
    """A gallery of images (N, H, W) or (N, 1, H, W), with optional captions (N,)."""
    images = np.asarray(images)
    cols = max(1, min(cols, len(images)))
    size = max(1.0, 4.0 / cols)                 # inches per image: a few images are drawn larger
    fig = _figure(cols * size, int(np.ceil(len(images) / cols)) * (size + 0.1) + 0.3)
    for i, ax in enumerate(_grid(fig, len(images), cols)):
        _image(ax, images[i])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_kernels(weight, path=None, title=None):
    """Convolution kernels (F, C, KH, KW) as an F x C grid, or (K, KH, KW) or (K, 1, KH, KW) as a row.

    One image (a mosaic, kernels one pixel apart, ticks numbering rows and
    columns) on one colour scale centred on zero: red positive, blue negative.
    A kernel of NaNs is left blank (an unconnected C3 pair, say).
    """
    weight = np.asarray(weight, dtype=float)
    if weight.ndim == 4 and weight.shape[1] == 1:     # one input channel (C1): a row
        weight = weight[:, 0]
    if weight.ndim == 3:
        weight = weight[None]
    F, C, KH, KW = weight.shape
    mosaic = np.full((F * (KH + 1) - 1, C * (KW + 1) - 1), np.nan)     # NaN: the gaps
    for f in range(F):
        for c in range(C):
            mosaic[f * (KH + 1):f * (KH + 1) + KH, c * (KW + 1):c * (KW + 1) + KW] = weight[f, c]
    lim = float(np.nanmax(np.abs(weight))) or 1.0
    fig = _figure(max(C, 4) * 0.55 + 1.2, F * 0.55 + 0.8)
    ax = fig.subplots()
    im = ax.imshow(mosaic, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(xticks=np.arange(C) * (KW + 1) + (KW - 1) / 2, xticklabels=range(C),
           yticks=np.arange(F) * (KH + 1) + (KH - 1) / 2, yticklabels=range(F))
    ax.tick_params(length=0, labelsize=7)
    if F == 1:
        ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_feature_maps(maps, path=None, title=None):
    """One row per layer: ``maps`` maps a layer name to one sample's (C, H, W)
    maps (C small images) or (D,) vector (a strip; (C, 1, 1) counts as (C,))."""
    shapes = {name: np.shape(m) for name, m in maps.items()}
    maps = {name: np.asarray(m) for name, m in maps.items()}
    maps = {name: m[:, 0, 0] if m.ndim == 3 and m.shape[1:] == (1, 1) else m
            for name, m in maps.items()}
    heights = [1.0 if m.ndim == 3 else 0.4 for m in maps.values()]
    fig = _figure(12, 1.3 * sum(heights) + 0.4)
    subfigs = np.atleast_1d(fig.subfigures(len(maps), 1, height_ratios=heights))
    for sub, (name, m) in zip(subfigs, maps.items()):
        if m.ndim == 1:
            axes = [sub.subplots()]
            axes[0].imshow(m[None], cmap="gray_r", aspect="auto")
            axes[0].set(xticks=[], yticks=[])
        else:
            axes = np.atleast_1d(sub.subplots(1, len(m)))
            for ax, channel in zip(axes, m):
                _image(ax, channel, vmin=m.min(), vmax=m.max())   # one scale per layer
        axes[0].set_ylabel(f"{name}\n{'x'.join(map(str, shapes[name]))}", fontsize=8,
                           rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_bitmaps(centers, path=None):
    """The RBF prototypes (10, 84) as 7x12 images."""
    fig = _figure(8, 1.8)
    for k, ax in enumerate(fig.subplots(1, len(centers))):
        ax.imshow(np.asarray(centers[k]).reshape(12, 7), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(str(k))
        ax.axis("off")
    return _finish(fig, path)


def plot_c3_table(table, path=None):
    """C3's connection table (6, 16) bool: rows are S2 maps, columns C3 maps (paper Table I)."""
    table = np.asarray(table, dtype=bool)
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    ax.imshow(table, cmap="Greys", vmin=0, vmax=1.6)
    for i, j in zip(*np.nonzero(table)):
        ax.text(j, i, "X", ha="center", va="center", color="white", fontsize=9)
    ax.set(xticks=range(table.shape[1]), yticks=range(table.shape[0]), xlabel="C3 feature map",
           ylabel="S2 feature map",
           title=f"C3 connection table: {table.sum()} of {table.size} pairs connected")
    return _finish(fig, path)
