"""The analysis report: per-layer rows, totals, split by kind, memory, and its renderings."""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from glasscnn.analysis.counting import KINDS, CountingOptions

SUMMED = ("params", "weights", "biases", "buffers", "macs", "macs_effective", "flops",
          "activation_bytes", "weight_bytes", "values_moved", "saved_bytes")
MEASURED = ("fwd_ms", "bwd_ms", "fwd_gflops", "bwd_gflops", "step_pct")
MB, MIB = 10**6, 2**20


def shape_text(shape: tuple[int, ...]) -> str:
    """``(1, 96, 27, 27)`` → ``"96x27x27"`` (the batch axis dropped)."""
    return "x".join(str(d) for d in shape[1:]) or "scalar"


def _int(n: float) -> str:
    return f"{int(n):,}"


def _sig(x: float) -> str:
    """Four significant digits, trailing zeros kept (19.50, 0.9936); zero as ``0``."""
    return f"{x:#.4g}".rstrip(".") if x else "0"


def _mb(nbytes: float) -> str:
    return f"{nbytes / MB:.3f}"


def bytes_text(nbytes: float) -> str:
    """``26461352`` → ``"26.46 MB (25.24 MiB)"``: 10⁶ and 2²⁰ bytes, both labelled."""
    return f"{nbytes / MB:,.2f} MB ({nbytes / MIB:,.2f} MiB)"


@dataclass(repr=False)
class Report:
    """What ``analyze`` found for one model, input shape and counting policy.

    Attributes:
        model: the model's name.
        input_shape: the input with the batch axis, e.g. (1, 3, 33, 33).
        dtype: the dtype of weights and activations (for bytes).
        options: the counting policy.
        rows: one dict per layer (``name``, ``type``, ``kind``, ``input_shape``,
            ``output_shape``, ``params``, ``weights``, ``biases``, ``buffers``, ``trainable``,
            ``macs``, ``macs_effective``, ``flops``, ``activation_bytes``, ``weight_bytes``,
            ``values_moved``, ``intensity`` (MACs per value moved), ``flops_per_byte``,
            ``live_bytes``, ``saved_bytes``, ``pct_params``, ``pct_macs``, ``pct_flops``, and
            after measuring ``fwd_ms``, ``bwd_ms``, ``fwd_gflops``, ``bwd_gflops``,
            ``step_pct``).
        totals: the summed columns, plus ``intensity`` and ``flops_per_byte`` of the whole.
        by_kind: ``{kind: {"params", "macs", "flops", "pct_params", "pct_flops"}}``.
        memory: bytes: ``weight_bytes``, ``input_bytes``, ``activation_bytes`` (input and
            every output once), ``peak_inference_bytes`` (largest live set),
            ``training_saved_bytes``, ``gradient_bytes``, ``backward_transient_bytes``,
            ``training_bytes``.
        machine: the measured limits used for the roofline, when known.
    """

    model: str
    input_shape: tuple[int, ...]
    dtype: str
    options: CountingOptions
    rows: list[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    machine: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The model's name (the same as ``model``)."""
        return self.model

    @property
    def batch_size(self) -> int:
        """N, the batch axis of ``input_shape``."""
        return self.input_shape[0]

    @property
    def measured(self) -> bool:
        """Whether per-layer timings are present."""
        return bool(self.rows) and "fwd_ms" in self.rows[0]

    def summarize(self, peak_live: int, itemsize: int) -> None:
        """Fill ``totals``, percentages, ``by_kind`` and ``memory`` from ``rows``.

        Args:
            peak_live: the largest live set of activations during inference, in bytes.
            itemsize: bytes per value of ``dtype``.
        """
        t: dict[str, Any] = {k: sum(r[k] for r in self.rows) for k in SUMMED}
        t["intensity"] = t["macs"] / t["values_moved"] if t["values_moved"] else 0.0
        moved_bytes = t["values_moved"] * itemsize
        t["flops_per_byte"] = t["flops"] / moved_bytes if moved_bytes else 0.0
        self.totals = t
        for r in self.rows:
            for key in ("params", "macs", "flops"):
                r[f"pct_{key}"] = 100.0 * r[key] / t[key] if t[key] else 0.0
        self.by_kind = {}
        for kind in KINDS:
            members = [r for r in self.rows if r["kind"] == kind]
            if not members:
                continue
            entry = {k: sum(r[k] for r in members) for k in ("params", "macs", "flops")}
            entry["layers"] = len(members)
            entry["pct_params"] = 100.0 * entry["params"] / t["params"] if t["params"] else 0.0
            entry["pct_flops"] = 100.0 * entry["flops"] / t["flops"] if t["flops"] else 0.0
            self.by_kind[kind] = entry
        input_bytes = _prod(self.input_shape) * itemsize
        param_bytes = t["params"] * itemsize
        transient = max((_prod(r["input_shape"]) + _prod(r["output_shape"])) * itemsize
                        for r in self.rows) if self.rows else 0
        self.memory = {
            "itemsize": itemsize,
            "weight_bytes": t["weight_bytes"],
            "input_bytes": input_bytes,
            "activation_bytes": input_bytes + t["activation_bytes"],
            "peak_inference_bytes": peak_live,
            "training_saved_bytes": t["saved_bytes"],
            "gradient_bytes": param_bytes,
            "backward_transient_bytes": transient,
            "training_bytes": t["weight_bytes"] + param_bytes + t["saved_bytes"] + transient,
        }

    def add_timings(self, timings: dict[str, dict[str, float]]) -> None:
        """Attach measured seconds per layer (``{"name": {"forward": s, "backward": s}}``).

        Backward FLOPs are taken as 2 × the forward MAC FLOPs (input and weight gradients)
        plus the forward's other FLOPs; GFLOP/s = FLOPs / time; ``step_pct`` is the layer's
        share of the summed forward + backward time.
        """
        step = sum(v["forward"] + v["backward"] for v in timings.values())
        for r in self.rows:
            tm = timings.get(r["name"], {"forward": 0.0, "backward": 0.0})
            fwd, bwd = tm["forward"], tm["backward"]
            bwd_flops = 4 * r["macs"] + (r["flops"] - 2 * r["macs"])
            r["fwd_ms"] = 1e3 * fwd
            r["bwd_ms"] = 1e3 * bwd
            r["fwd_gflops"] = r["flops"] / fwd / 1e9 if fwd > 0 else 0.0
            r["bwd_gflops"] = bwd_flops / bwd / 1e9 if bwd > 0 else 0.0
            r["step_pct"] = 100.0 * (fwd + bwd) / step if step > 0 else 0.0
        self.totals["fwd_ms"] = sum(r["fwd_ms"] for r in self.rows)
        self.totals["bwd_ms"] = sum(r["bwd_ms"] for r in self.rows)
        total_s = self.totals["fwd_ms"] / 1e3
        self.totals["fwd_gflops"] = self.totals["flops"] / total_s / 1e9 if total_s else 0.0
        bwd_s = self.totals["bwd_ms"] / 1e3
        bwd_flops = 4 * self.totals["macs"] + self.totals["flops"] - 2 * self.totals["macs"]
        self.totals["bwd_gflops"] = bwd_flops / bwd_s / 1e9 if bwd_s else 0.0
        self.totals["step_pct"] = 100.0

    def _columns(self) -> list[tuple[str, str, Any]]:
        """(header, alignment, formatter of a row) for the text and markdown tables."""
        cols: list[tuple[str, str, Any]] = [
            ("layer", "<", lambda r: r["name"]),
            ("type", "<", lambda r: r["type"]),
            ("output", "<", lambda r: shape_text(r["output_shape"])),
            ("params", ">", lambda r: _int(r["params"])),
            ("MACs", ">", lambda r: _int(r["macs"])),
            ("MACs eff.", ">", lambda r: _int(r["macs_effective"])),
            ("FLOPs", ">", lambda r: _int(r["flops"])),
            ("FLOPs %", ">", lambda r: f"{r['pct_flops']:.2f}"),
            ("act. MB", ">", lambda r: _mb(r["activation_bytes"])),
            ("MAC/value", ">", lambda r: _sig(r["intensity"])),
            ("FLOP/B", ">", lambda r: f"{r['flops_per_byte']:.3g}"),
        ]
        if self.measured:
            cols += [
                ("fwd ms", ">", lambda r: f"{r['fwd_ms']:.3f}"),
                ("bwd ms", ">", lambda r: f"{r['bwd_ms']:.3f}"),
                ("fwd GFLOP/s", ">", lambda r: f"{r['fwd_gflops']:.1f}"),
                ("step %", ">", lambda r: f"{r['step_pct']:.1f}"),
            ]
        return cols

    def _total_row(self) -> dict[str, Any]:
        return {"name": "total", "type": "", "output_shape": self.rows[-1]["output_shape"],
                "pct_flops": 100.0, **self.totals}

    def _summary_lines(self) -> list[str]:
        t, m = self.totals, self.memory
        lines = [
            f"parameters {_int(t['params'])} (weights {_int(t['weights'])}, biases "
            f"{_int(t['biases'])}; buffers {_int(t['buffers'])} non-trainable values)",
            f"MACs {_int(t['macs'])} ({t['macs'] / 1e6:,.1f} M; without padded zeros "
            f"{_int(t['macs_effective'])}); FLOPs {_int(t['flops'])} "
            f"({t['flops'] / 1e6:,.1f} M)",
            f"counting: {self.options.describe()}",
            "by kind: " + "; ".join(
                f"{k} {v['pct_params']:.1f}% params, {v['pct_flops']:.1f}% FLOPs"
                for k, v in self.by_kind.items() if v["params"] or v["flops"]),
            f"model size {bytes_text(m['weight_bytes'])} ({self.dtype}, buffers included)",
            f"activations {bytes_text(m['activation_bytes'])} (input and every layer output "
            f"once); inference peak live set {bytes_text(m['peak_inference_bytes'])}",
            f"training: saved for backward {bytes_text(m['training_saved_bytes'])}; weights + "
            f"gradients + saved + backward transient {bytes_text(m['training_bytes'])}",
            f"intensity of the whole: {t['intensity']:.4g} MACs per value moved, "
            f"{t['flops_per_byte']:.3g} FLOPs per byte",
        ]
        if self.measured:
            lines.append(f"measured: forward {t['fwd_ms']:.2f} ms ({t['fwd_gflops']:.1f} "
                         f"GFLOP/s), backward {t['bwd_ms']:.2f} ms")
        return lines

    def title(self) -> str:
        """``alexnet_cifar33, input 3x33x33, batch 1, float32``."""
        return (f"{self.model}, input {shape_text(self.input_shape)}, batch {self.batch_size}, "
                f"{self.dtype}")

    def table(self) -> str:
        """The per-layer table as aligned text, with totals and the summary below it."""
        cols = self._columns()
        body = [[fmt(r) for _, _, fmt in cols] for r in [*self.rows, self._total_row()]]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, (h, _, _) in enumerate(cols)]

        def line(cells: list[str]) -> str:
            return "  ".join(f"{c:{a}{w}}" for c, (_, a, _), w in zip(cells, cols, widths,
                                                                       strict=True)).rstrip()

        rule = "-" * len(line([h for h, _, _ in cols]))
        out = [self.title(), line([h for h, _, _ in cols]), rule]
        out += [line(b) for b in body[:-1]] + [rule, line(body[-1]), ""]
        return "\n".join(out + self._summary_lines())

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        t = self.totals
        return (f"<Report {self.title()}: {len(self.rows)} layers, {_int(t['params'])} "
                f"parameters, {t['macs'] / 1e6:,.2f} M MACs, {t['flops'] / 1e6:,.2f} M FLOPs>")

    def _repr_html_(self) -> str:
        """The per-layer table and the summary as HTML (what a notebook shows)."""
        cols = self._columns()
        cols.insert(2, ("input", "<", lambda r: shape_text(r["input_shape"])))
        esc = html.escape

        def cells(row: dict[str, Any], tag: str) -> str:
            return "".join(f'<{tag} style="text-align:{"left" if a == "<" else "right"}">'
                           f"{esc(fmt(row))}</{tag}>" for _, a, fmt in cols)

        head = "".join(f'<th style="text-align:{"left" if a == "<" else "right"}">{esc(h)}'
                       "</th>" for h, a, _ in cols)
        total = {**self._total_row(), "input_shape": self.input_shape}
        body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in self.rows)
        summary = "".join(f"<li>{esc(line)}</li>" for line in self._summary_lines())
        return (f"<div><strong>{esc(self.title())}</strong>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}"
                f"<tr style=\"font-weight:bold\">{cells(total, 'td')}</tr></tbody></table>"
                f"<ul>{summary}</ul></div>")

    def to_markdown(self) -> str:
        """The per-layer table (with input shapes) and the summary as GitHub markdown."""
        cols = self._columns()
        cols.insert(2, ("input", "<", lambda r: shape_text(r["input_shape"])))
        align = {"<": ":---", ">": "---:"}
        lines = [f"## {self.title()}", "",
                 "| " + " | ".join(h for h, _, _ in cols) + " |",
                 "| " + " | ".join(align[a] for _, a, _ in cols) + " |"]
        total = {**self._total_row(), "input_shape": self.input_shape}
        for r in self.rows:
            lines.append("| " + " | ".join(fmt(r) for _, _, fmt in cols) + " |")
        lines.append("| " + " | ".join(f"**{fmt(total)}**" if fmt(total) else ""
                                       for _, _, fmt in cols) + " |")
        lines.append("")
        lines += [f"- {s}" for s in self._summary_lines()]
        return "\n".join(lines) + "\n"

    def csv_rows(self) -> list[dict[str, Any]]:
        """Rows for CSV/DataFrame: shapes as ``NxCxHxW`` text, plus a ``total`` row."""
        out = []
        for r in [*self.rows, {"name": "total", **self.totals}]:
            flat = dict(r)
            for key in ("input_shape", "output_shape"):
                if key in flat:
                    flat[key] = "x".join(map(str, flat[key]))
            out.append(flat)
        return out

    def to_csv(self) -> str:
        """Every row and the totals as CSV, one column per key (shapes as ``NxCxHxW``)."""
        rows = self.csv_rows()
        keys = list(rows[0])
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready Python values."""
        return {
            "model": self.model, "input_shape": list(self.input_shape),
            "batch_size": self.batch_size, "dtype": self.dtype,
            "counting": {**asdict(self.options), "description": self.options.describe()},
            "rows": [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
                     for r in self.rows],
            "totals": self.totals, "by_kind": self.by_kind, "memory": self.memory,
            "machine": self.machine,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_dataframe(self) -> Any:
        """The rows (and a ``total`` row) as a ``pandas.DataFrame``; needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Report.to_dataframe needs pandas: pip install pandas") from None
        return pd.DataFrame(self.csv_rows()).set_index("name")


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def compare_rows(reports: list[Report]) -> list[dict[str, Any]]:
    """One summary dict per report, for models side by side.

    Returns:
        Dicts with ``model``, ``input``, ``params``, ``macs``, ``macs_effective``, ``flops``,
        ``weight_bytes``, ``activation_bytes``, ``peak_inference_bytes``, ``training_bytes``,
        ``intensity``, ``flops_per_byte`` (and ``fwd_ms``, ``bwd_ms`` when measured).
    """
    out = []
    for rep in reports:
        t, m = rep.totals, rep.memory
        row = {"model": rep.model, "input": shape_text(rep.input_shape),
               "batch": rep.batch_size, "layers": len(rep.rows),
               **{k: t[k] for k in ("params", "macs", "macs_effective", "flops")},
               **{k: m[k] for k in ("weight_bytes", "activation_bytes", "peak_inference_bytes",
                                    "training_bytes")},
               "intensity": t["intensity"], "flops_per_byte": t["flops_per_byte"]}
        if rep.measured:
            row["fwd_ms"], row["bwd_ms"] = t["fwd_ms"], t["bwd_ms"]
        out.append(row)
    return out


_COMPARE_COLUMNS: list[tuple[str, str, Any]] = [
    ("model", "<", lambda r: r["model"]),
    ("input", "<", lambda r: r["input"]),
    ("params", ">", lambda r: _int(r["params"])),
    ("MACs", ">", lambda r: _int(r["macs"])),
    ("FLOPs", ">", lambda r: _int(r["flops"])),
    ("weights MB", ">", lambda r: f"{r['weight_bytes'] / MB:.2f}"),
    ("activations MB", ">", lambda r: f"{r['activation_bytes'] / MB:.2f}"),
    ("peak MB", ">", lambda r: f"{r['peak_inference_bytes'] / MB:.2f}"),
    ("training MB", ">", lambda r: f"{r['training_bytes'] / MB:.2f}"),
    ("MAC/value", ">", lambda r: f"{r['intensity']:.3g}"),
    ("FLOP/B", ">", lambda r: f"{r['flops_per_byte']:.3g}"),
]


def compare_table(reports: list[Report], markdown: bool = False) -> str:
    """Models side by side as aligned text (or a markdown table); MB = 10⁶ bytes."""
    rows = compare_rows(reports)
    cols = list(_COMPARE_COLUMNS)
    if all("fwd_ms" in r for r in rows):
        cols += [("fwd ms", ">", lambda r: f"{r['fwd_ms']:.2f}"),
                 ("bwd ms", ">", lambda r: f"{r['bwd_ms']:.2f}")]
    body = [[fmt(r) for _, _, fmt in cols] for r in rows]
    policy = f"batch {reports[0].batch_size}; counting: {reports[0].options.describe()}"
    if markdown:
        align = {"<": ":---", ">": "---:"}
        lines = ["| " + " | ".join(h for h, _, _ in cols) + " |",
                 "| " + " | ".join(align[a] for _, a, _ in cols) + " |"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join([*lines, "", policy]) + "\n"
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, (h, _, _) in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, (_, a, _), w in zip(cells, cols, widths,
                                                                   strict=True)).rstrip()

    head = line([h for h, _, _ in cols])
    return "\n".join([head, "-" * len(head), *(line(b) for b in body), "", policy])
