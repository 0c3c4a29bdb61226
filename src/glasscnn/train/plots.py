"""Training charts: learning curves (loss and accuracy, train vs validation) and confusion matrices.

Matplotlib is an optional extra (``pip install 'glasscnn[viz]'``); it is imported when a
chart is drawn, and only its object API is used (no pyplot, no display needed).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.checkpoint import atomic_write

TRAIN_COLOR, VAL_COLOR, STEP_COLOR = "#1f77b4", "#d62728", "#9ecae1"


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("glasscnn.train.plots needs matplotlib: pip install "
                          "'glasscnn[viz]' (or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` points (shorter at the start)."""
    if window <= 1 or values.size == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike,
                title: str = "", test_accuracy: float | None = None) -> Path:
    """Draw loss and accuracy per epoch, train vs validation, into a PNG.

    The figure is ``curves_figure``'s.

    Args:
        history: ``Trainer.history``.
        path: the PNG to write (atomically).
        title: figure title (e.g. ``"lenet_bn on fashion-mnist"``).
        test_accuracy: final test accuracy in [0, 1], or None.

    Returns:
        The path written.
    """
    return _save(curves_figure(history, title, test_accuracy), path)


def curves_png(history: Mapping[str, Sequence[float]], title: str = "",
               test_accuracy: float | None = None) -> bytes:
    """``curves_figure`` as PNG bytes (for a notebook's inline display)."""
    buf = io.BytesIO()
    curves_figure(history, title, test_accuracy).savefig(buf, format="png")
    return buf.getvalue()


def curves_figure(history: Mapping[str, Sequence[float]], title: str = "",
                  test_accuracy: float | None = None) -> Any:
    """The learning-curves figure (a matplotlib ``Figure``, no pyplot).

    Left panel: the per-step training loss (light, smoothed), the per-epoch mean training
    loss and the validation loss. Right panel: training and validation accuracy in percent,
    the best validation epoch marked, and the test accuracy as a dashed line if given.

    Args:
        history: ``Trainer.history`` (``train_loss``, ``train_accuracy``, ``val_loss``,
            ``val_accuracy``, ``step_loss``).
        title: figure title.
        test_accuracy: final test accuracy in [0, 1], or None.

    Returns:
        The figure.
    """
    train_loss = np.asarray(history.get("train_loss", []), dtype=float)
    epochs = np.arange(1, train_loss.size + 1)
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    steps = np.asarray(history.get("step_loss", []), dtype=float)
    if steps.size and train_loss.size:
        per_epoch = steps.size / train_loss.size
        x_steps = np.arange(1, steps.size + 1) / per_epoch
        ax_loss.plot(x_steps, _smooth(steps, max(1, int(per_epoch // 20))), color=STEP_COLOR,
                     lw=0.8, label="train (per step, smoothed)")
    marker = "o" if train_loss.size <= 30 else None
    ax_loss.plot(epochs, train_loss, color=TRAIN_COLOR, marker=marker, ms=4,
                 label="train (epoch mean)")
    val_loss = np.asarray(history.get("val_loss", []), dtype=float)
    if val_loss.size:
        ax_loss.plot(epochs[: val_loss.size], val_loss, color=VAL_COLOR, marker=marker, ms=4,
                     label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("loss")
    top = np.nanpercentile(np.concatenate([steps, train_loss, val_loss]), 99) if epochs.size \
        else 1.0
    ax_loss.set_ylim(0, max(float(top) * 1.1, 1e-3))
    train_acc = 100 * np.asarray(history.get("train_accuracy", []), dtype=float)
    val_acc = 100 * np.asarray(history.get("val_accuracy", []), dtype=float)
    ax_acc.plot(epochs, train_acc, color=TRAIN_COLOR, marker=marker, ms=4, label="train")
    if val_acc.size:
        ax_acc.plot(epochs[: val_acc.size], val_acc, color=VAL_COLOR, marker=marker, ms=4,
                    label="validation")
        best = int(np.nanargmax(val_acc))
        ax_acc.plot([best + 1], [val_acc[best]], ls="none", marker="*", ms=12, color=VAL_COLOR,
                    label=f"best val {val_acc[best]:.2f}% (epoch {best + 1})")
    if test_accuracy is not None:
        ax_acc.axhline(100 * test_accuracy, color="#2ca02c", ls="--", lw=1,
                       label=f"test {100 * test_accuracy:.2f}%")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("accuracy")
    values = np.concatenate([train_acc, val_acc,
                             [] if test_accuracy is None else [100 * test_accuracy]])
    if values.size:
        low = float(np.nanmin(values))
        ax_acc.set_ylim(max(0.0, math.floor(low / 5) * 5 - 2), 100.5)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if epochs.size:
            ax.set_xlim(0 if (steps.size and ax is ax_loss) else 0.8, epochs[-1] + 0.2)
            if epochs.size <= 20:
                ax.set_xticks(epochs)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike,
                   title: str = "") -> Path:
    """Draw a confusion matrix as a PNG: cells coloured by the row-normalised rate, counts
    printed in each cell, per-class recall on the right.

    Args:
        matrix: (K, K) counts, rows = true class, columns = predicted class.
        classes: the K class names.
        path: the PNG to write (atomically).
        title: figure title; the overall accuracy is appended.

    Returns:
        The path written.
    """
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    if matrix.shape != (k, k) or len(classes) != k:
        raise ValueError(f"plot_confusion: expected a (K, K) matrix and K class names, got "
                         f"{matrix.shape} and {len(classes)} names")
    totals = matrix.sum(axis=1, keepdims=True)
    rates = matrix / np.maximum(totals, 1)  # (K, K)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    size = max(5.0, 0.55 * k + 2.5)
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [f"{c} ({100 * rates[i, i]:.1f}%)" for i, c in enumerate(classes)],
                  fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (recall)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    heading = f"accuracy {100 * accuracy:.2f}% on {int(matrix.sum()):,} images"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    return _save(fig, path)
