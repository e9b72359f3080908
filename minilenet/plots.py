"""Figures written by training and evaluation, as PNG files (no display needed).

Built on ``matplotlib.figure.Figure`` directly, so no GUI backend is touched;
every file is written atomically.
"""
import numpy as np

from .fileio import atomic_write

PAPER_TEST_ERROR = 0.95     # percent, LeNet-5 without distortions (paper Fig. 9)


def _figure(*size):
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained")


def _save(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)


def plot_history(history, path, paper_error=PAPER_TEST_ERROR):
    """Training curves: error (%) on the fly and on the test set, and the loss, by epoch."""
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
    _save(fig, path)


def plot_rates(history, path):
    """Per-layer effective learning rates (median, with min-max band) by epoch."""
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
    ax.legend(ncol=2, fontsize="small")
    _save(fig, path)


def plot_confusion(matrix, path):
    """Confusion matrix: row = true digit, column = predicted digit."""
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="Reds")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="black" if i != j else "gray")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"confusion matrix ({matrix.sum() - np.trace(matrix)} errors)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="errors")
    _save(fig, path)


def plot_misclassified(images, labels, predicted, path, limit=100):
    """Grid of misclassified digits, captioned true -> predicted (cf. paper Fig. 8)."""
    wrong = np.nonzero(labels != predicted)[0][:limit]
    cols = 10
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig = _figure(cols * 0.9, rows * 1.05 + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{labels[i]}\u2192{predicted[i]}", fontsize=8)
    fig.suptitle(f"misclassified test digits (true\u2192predicted), first {len(wrong)}")
    _save(fig, path)


def plot_bitmaps(centers, path):
    """The RBF prototypes as 7x12 images."""
    fig = _figure(8, 1.8)
    for k, ax in enumerate(fig.subplots(1, len(centers))):
        ax.imshow(np.asarray(centers[k]).reshape(12, 7), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(str(k))
        ax.axis("off")
    _save(fig, path)
