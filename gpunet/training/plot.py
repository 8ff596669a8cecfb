"""The training curves of a Solver's ``history`` as a matplotlib Figure (matplotlib is
imported only when a plot is drawn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._install import pip_install


def plot_history(history: dict, iterations_per_epoch: int, path=None, *, best_epoch=None,
                 stopped_epoch=None):
    """The training curves as a matplotlib Figure: the loss per iteration (smoothed, raw
    faint behind) with the validation loss per epoch; train/val accuracy per epoch with the
    best (and early-stop) epoch marked; the learning rate only if it changed. Saved to
    ``path`` if given (".png" added when it has no extension)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(f"Solver.plot needs matplotlib: {pip_install('train')}") from None
    h = history
    lrs = [v for v in h["lr"] if v is not None]
    show_lr = len(set(lrs)) > 1
    fig = Figure(figsize=(12 if show_lr else 9, 3.6), layout="constrained")
    axes = fig.subplots(1, 3 if show_lr else 2)
    ax_loss, ax_acc = axes[0], axes[1]
    ipe = max(iterations_per_epoch, 1)
    loss = np.asarray(h["loss"], dtype=float)
    x = np.arange(1, len(loss) + 1) / ipe  # in epochs
    if len(loss):
        ax_loss.plot(x, loss, lw=0.5, alpha=0.25, color="C0")
        ax_loss.plot(x, smooth(loss, max(ipe // 4, 1)), lw=1.5, color="C0",
                     label="train loss (smoothed)")
    epochs = np.arange(1, len(h["val_acc"]) + 1)
    if len(h["val_loss"]):
        ax_loss.plot(epochs, h["val_loss"], "o-", color="C1", label="val loss")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, h["train_acc"], "o-", label="train")
    ax_acc.plot(epochs, h["val_acc"], "o-", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="C2", ls="--", lw=1,
                       label=f"best epoch {best_epoch}" if ax is ax_acc else None)
        if stopped_epoch is not None:
            ax.axvline(stopped_epoch, color="C3", ls=":", lw=1,
                       label=f"early stop (epoch {stopped_epoch})" if ax is ax_acc else None)
    if best_epoch is not None and best_epoch <= len(h["val_acc"]):
        ax_acc.plot([best_epoch], [h["val_acc"][best_epoch - 1]], "*", ms=14, color="C2")
    ax_loss.legend()
    ax_acc.legend()
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    if show_lr:
        ax_lr = axes[2]
        ax_lr.plot(epochs[:len(h["lr"])], h["lr"], "o-")
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
        ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        fig.savefig(png_path(path))
    return fig


def png_path(path) -> Path:
    """``path`` with ".png" added when it has no extension (what ``savefig`` would write)."""
    path = Path(path)
    return path if path.suffix else path.with_name(path.name + ".png")


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` values (fewer at the start); NaN-free input."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)
