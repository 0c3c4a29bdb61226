"""What a finished sweep leaves behind: results.csv, the top-trials table, the retrain command
and sweep.png.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.checkpoint import atomic_write
from glasscnn.sweep.space import MODEL_PREFIX, Param
from glasscnn.train import Recipe

FIXED_COLUMNS = ("best_val_accuracy", "val_loss", "best_epoch", "epochs", "seconds", "node",
                 "host", "restores", "status")
FULL_EPOCHS = 10


def columns(space: Mapping[str, Param]) -> list[str]:
    """The columns of results.csv: ``trial``, each hyperparameter, then ``FIXED_COLUMNS``."""
    return ["trial", *space, *FIXED_COLUMNS]


def write_csv(rows: Sequence[Mapping[str, Any]], space: Mapping[str, Param],
              path: str | os.PathLike) -> Path:
    """Write one row per trial (atomically) and return the path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns(space), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    path = Path(path)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue().encode()))
    return path


def _cell(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, float) else value


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read results.csv back; numbers become int or float, the rest stays text."""
    with open(path, newline="") as fh:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value and abs(math.log10(abs(value))) < 3 else f"{value:.2e}"
    return str(value)


def _accuracy(value: Any) -> str:
    return "-" if not _is_number(value) else f"{100 * float(value):.2f}%"


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def top_table(rows: Sequence[Mapping[str, Any]], space: Mapping[str, Param], top: int = 5
              ) -> str:
    """The best ``top`` trials (rows sorted best first) as an aligned text table."""
    head = ["rank", "trial", *space, "val acc", "val loss", "epochs", "seconds", "node"]
    lines = [head]
    for rank, row in enumerate(rows[:top], 1):
        lines.append([str(rank), str(row["trial"]), *(_value(row.get(k, "")) for k in space),
                      _accuracy(row["best_val_accuracy"]), f"{float(row['val_loss']):.4f}",
                      str(row["epochs"]), f"{float(row['seconds']):.0f}", str(row["node"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
                     for line in lines)


def retrain_command(recipe: Recipe, out: str) -> str:
    """The ``glasscnn train`` command that trains ``recipe`` on the whole data set.

    Every option that differs from ``glasscnn train``'s default is spelt out; the data
    limits of the sweep are dropped and the epochs raised to at least ``FULL_EPOCHS``.
    """
    default = Recipe(model=recipe.model)
    parts = ["glasscnn", "train", recipe.model, "--data", recipe.data]
    full = dataclasses.replace(recipe, epochs=max(recipe.epochs, FULL_EPOCHS), train_limit=None,
                               test_limit=None)
    for field in dataclasses.fields(Recipe):
        name = field.name
        value = getattr(full, name)
        if name not in ("model", "data", "model_kwargs") and value != getattr(default, name):
            parts += [f"--{name.replace('_', '-')}", _value(value)]
    for key, value in full.model_kwargs.items():
        parts += ["--model-arg", f"{key}={json.dumps(value)}"]
    return " ".join([*parts, "--out", out])


def plot_sweep(rows: Sequence[Mapping[str, Any]], histories: Mapping[str, Sequence[float]],
               space: Mapping[str, Param], path: str | os.PathLike, title: str = "") -> Path:
    """Draw validation accuracy against each hyperparameter, and every trial's learning curve.

    One panel per hyperparameter (log x axis for log-uniform ones, categories for
    ``choice``), the best trial marked; the last panel has the validation accuracy per
    epoch of every trial, the best one in red.

    Args:
        rows: the trials, best first (``trial``, each hyperparameter, ``best_val_accuracy``).
        histories: each trial's validation accuracy per epoch, by trial id.
        space: the searched space.
        path: the PNG to write (atomically).
        title: the figure's title.

    Returns:
        ``path``.
    """
    from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator

    names = list(space)
    panels = len(names) + 1
    fig = _figure(3.6 * panels, 3.4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    scored = [r for r in rows if _is_number(r["best_val_accuracy"])]
    best = scored[0]["trial"] if scored else None
    for ax, name in zip(axes, names, strict=False):
        p = space[name]
        xs = [r[name] for r in scored]
        ys = [100 * float(r["best_val_accuracy"]) for r in scored]
        if p.kind == "choice":
            labels = [str(a) for a in p.args]
            xs = [labels.index(str(x)) if str(x) in labels else -1 for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        else:
            pad = 0.03 * (p.args[1] - p.args[0])
            ax.set_xlim(p.args[0] - pad, p.args[1] + pad)
        if p.kind == "loguniform":
            ax.set_xscale("log")
            ax.set_xlim(p.args[0] / 1.1, p.args[1] * 1.1)
            if p.args[1] / p.args[0] >= 10:  # several decades: label the decades only
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:  # under a decade: four ticks spread over the range
                ticks = np.geomspace(p.args[0], p.args[1], 4)
                ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
                ax.xaxis.set_minor_locator(NullLocator())
        ax.scatter(xs, ys, s=22, color="#1f77b4", alpha=0.8)
        if scored:
            ax.scatter(xs[:1], ys[:1], s=60, color="#d62728", marker="*", zorder=3,
                       label=f"best ({best})")
            ax.legend(fontsize=7, loc="best")
        ax.set_xlabel(name.removeprefix(MODEL_PREFIX) if name.startswith(MODEL_PREFIX)
                      else name)
        ax.set_ylabel("best validation accuracy (%)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    for trial, curve in histories.items():
        if not curve:
            continue
        epochs = range(1, len(curve) + 1)
        is_best = trial == best
        ax.plot(epochs, [100 * v for v in curve], marker="o", markersize=3,
                color="#d62728" if is_best else "#7f7f7f", alpha=1.0 if is_best else 0.5,
                linewidth=2 if is_best else 1, zorder=3 if is_best else 2,
                label=f"best ({trial})" if is_best else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("learning curves", fontsize=9)
    ax.grid(alpha=0.3)
    if best is not None:
        ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    return path


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("sweep.png needs matplotlib: pip install 'glasscnn[viz]'") from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig
