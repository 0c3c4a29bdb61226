"""The training history: per-epoch numbers that show themselves as curves in a notebook."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
        "images_per_second", "step_loss")


class History(dict):
    """``Trainer.history``: a dict of lists, one value per epoch (``step_loss``: per step).

    Keys: ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` (empty without
    validation), ``lr``, ``epoch_seconds``, ``images_per_second``, ``step_loss``. It is a
    plain ``dict`` (JSON and checkpoints take it as one) that prints a one-line summary and,
    in Jupyter, draws the learning curves inline (``_repr_html_``, needs matplotlib;
    without it, a table). ``glasscnn.train.fit`` also sets ``model``, ``test_loss`` and
    ``test_accuracy``.
    """

    test_accuracy: float | None = None
    test_loss: float | None = None
    model: Any = None

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        super().__init__({k: [] for k in KEYS})
        self.update({k: list(v) for k, v in (values or {}).items()})

    @property
    def epochs(self) -> int:
        """The number of finished epochs."""
        return len(self.get("train_loss", []))

    def best_epoch(self) -> int:
        """The 1-based epoch with the best validation accuracy, 0 without validation."""
        val = [v for v in self.get("val_accuracy", []) if not math.isnan(v)]
        if not val:
            return 0
        return max(range(len(val)), key=lambda i: (val[i], -i)) + 1

    def summary(self) -> str:
        """One line: epochs, first → last train loss and accuracy, best validation."""
        n = self.epochs
        if n == 0:
            return "no epoch finished"
        tl, ta = self["train_loss"], self["train_accuracy"]
        text = (f"{n} epoch{'s' * (n != 1)}: train loss {tl[0]:.4f} → {tl[-1]:.4f}, "
                f"accuracy {100 * ta[0]:.2f}% → {100 * ta[-1]:.2f}%")
        best = self.best_epoch()
        if best:
            text += (f"; validation accuracy {100 * self['val_accuracy'][-1]:.2f}% (best "
                     f"{100 * self['val_accuracy'][best - 1]:.2f}% at epoch {best})")
        if self.test_accuracy is not None:
            text += f"; test accuracy {100 * self.test_accuracy:.2f}%"
        return text

    def __repr__(self) -> str:
        return f"History({self.summary()})"

    def _table_html(self) -> str:
        cols = [("epoch", None), ("train loss", "train_loss"), ("train acc", "train_accuracy"),
                ("val loss", "val_loss"), ("val acc", "val_accuracy"),
                ("s", "epoch_seconds")]
        cols = [(t, k) for t, k in cols if k is None or len(self.get(k, [])) == self.epochs]
        head = "".join(f"<th>{t}</th>" for t, _ in cols)
        rows = []
        for e in range(self.epochs):
            cells = []
            for _, k in cols:
                if k is None:
                    cells.append(str(e + 1))
                elif k.endswith("accuracy"):
                    cells.append(f"{100 * self[k][e]:.2f}%")
                elif k == "epoch_seconds":
                    cells.append(f"{self[k][e]:.1f}")
                else:
                    cells.append(f"{self[k][e]:.4f}")
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return f"<table><tr>{head}</tr>{''.join(rows)}</table>"

    def _repr_html_(self) -> str:
        text = f"<p>{html.escape(self.summary())}</p>"
        if self.epochs == 0:
            return text
        try:
            from glasscnn.train.plots import curves_png

            png = base64.b64encode(curves_png(self, "", self.test_accuracy)).decode("ascii")
        except ImportError:
            return text + self._table_html()
        return (text + f'<img src="data:image/png;base64,{png}" '
                'alt="learning curves" style="max-width:100%">')
