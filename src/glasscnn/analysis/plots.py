"""Charts of a report: parameters, FLOPs, their split by kind, memory, and the roofline.

Matplotlib is an optional extra (``pip install 'glasscnn[viz]'``); it is imported when a
chart is drawn, and only its object API is used (no pyplot, no display needed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from glasscnn.analysis.report import MB, Report

KIND_COLORS = {"conv": "#1f77b4", "fc": "#ff7f0e", "pool": "#2ca02c", "norm": "#9467bd",
               "act": "#7f7f7f", "add": "#8c564b", "other": "#bcbd22"}


def _matplotlib() -> ModuleType:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("glasscnn.analysis.plots needs matplotlib: pip install "
                          "'glasscnn[viz]' (or pip install matplotlib)") from None
    return matplotlib


def _figure(width: float, height: float) -> Any:
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def si(value: float, digits: int = 4) -> str:
    """``207667200`` → ``"207.7 M"``; ``1661337600`` → ``"1.661 G"``; below 1000 as is.

    Args:
        value: the number.
        digits: significant digits kept (trailing zeros dropped).
    """
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {suffix}"
    return f"{value:,.{digits}g}"


def _hbar(ax: Any, names: list[str], values: list[float], colors: list[str],
          fmt: Any, xlabel: str) -> None:
    """Horizontal bars, first layer on top, each with its value printed after its end."""
    ys = range(len(names))
    ax.barh(ys, values, color=colors)
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    top = max(values) if values and max(values) > 0 else 1.0
    ax.set_xlim(0, top * 1.32)
    for y, v in zip(ys, values, strict=True):
        ax.text(v + top * 0.01, y, fmt(v), va="center", fontsize=7.5)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_formatter(lambda v, _: si(v) if v else "0")
    ax.set_axisbelow(True)
    ax.grid(axis="x", alpha=0.3)


def _kind_legend(ax: Any, kinds: list[str], **kwargs: Any) -> None:
    from matplotlib.patches import Patch

    seen = [k for k in KIND_COLORS if k in kinds]
    ax.legend(handles=[Patch(color=KIND_COLORS[k], label=k) for k in seen], fontsize=8,
              **kwargs)


def _bar_height(n: int) -> float:
    return max(3.0, 0.28 * n + 1.6)


def plot_params(report: Report, path: str | os.PathLike) -> Path:
    """Bar chart of parameters per layer (layers with parameters), values printed."""
    rows = [r for r in report.rows if r["params"]]
    fig = _figure(8.5, _bar_height(len(rows)))
    ax = fig.add_subplot()
    _hbar(ax, [r["name"] for r in rows], [r["params"] for r in rows],
          [KIND_COLORS[r["kind"]] for r in rows], lambda v: f"{int(v):,}", "parameters")
    ax.set_title(f"Parameters per layer — {report.title()}\n"
                 f"total {report.totals['params']:,}", fontsize=10)
    _kind_legend(ax, [r["kind"] for r in rows], loc="lower right")
    return _save(fig, path)


def plot_flops(report: Report, path: str | os.PathLike) -> Path:
    """Bar chart of FLOPs per layer (layers with FLOPs), values printed, policy in the title."""
    rows = [r for r in report.rows if r["flops"]]
    fig = _figure(8.5, _bar_height(len(rows)) + 0.3)
    ax = fig.add_subplot()
    _hbar(ax, [r["name"] for r in rows], [r["flops"] for r in rows],
          [KIND_COLORS[r["kind"]] for r in rows], si, "FLOPs")
    t = report.totals
    ax.set_title(f"FLOPs per layer — {report.title()}\ntotal {t['flops']:,} FLOPs "
                 f"({t['macs']:,} MACs); {report.options.describe()}", fontsize=9)
    _kind_legend(ax, [r["kind"] for r in rows], loc="lower right")
    return _save(fig, path)


def plot_split(report: Report, path: str | os.PathLike) -> Path:
    """Two pies: parameters by kind and FLOPs by kind; small slices named in the legends."""
    fig = _figure(10, 4.6)
    for i, key in enumerate(("params", "flops")):
        ax = fig.add_subplot(1, 2, i + 1)
        kinds = [k for k, v in report.by_kind.items() if v[key] > 0]
        values = [report.by_kind[k][key] for k in kinds]
        total = sum(values) or 1
        wedges, *_ = ax.pie(
            values, colors=[KIND_COLORS[k] for k in kinds], startangle=90, counterclock=False,
            autopct=lambda p: f"{p:.1f}%" if p >= 4 else "", pctdistance=0.72,
            wedgeprops={"edgecolor": "white", "linewidth": 1}, textprops={"fontsize": 9},
        )
        labels = [f"{k}: {100 * v / total:.2f}% ({si(v)})" for k, v in
                  zip(kinds, values, strict=True)]
        ax.legend(wedges, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), fontsize=8,
                  ncol=2, frameon=False)
        ax.set_title(f"{'Parameters' if key == 'params' else 'FLOPs'} by kind "
                     f"(total {si(report.totals[key])})", fontsize=10)
    fig.suptitle(report.title(), fontsize=10)
    return _save(fig, path)


def plot_memory(report: Report, path: str | os.PathLike) -> Path:
    """Two panels per layer: weight bytes; output activation and saved-for-backward bytes."""
    rows = [r for r in report.rows
            if r["weight_bytes"] or r["activation_bytes"] or r["saved_bytes"]]
    fig = _figure(11, _bar_height(len(rows)) + 0.4)
    names = [r["name"] for r in rows]
    ax_w = fig.add_subplot(1, 2, 1)
    _hbar(ax_w, names, [r["weight_bytes"] / MB for r in rows],
          [KIND_COLORS[r["kind"]] for r in rows], lambda v: f"{v:.3g}" if v else "",
          "weights and buffers (MB = 10⁶ bytes)")
    ax_w.set_title("Weights per layer", fontsize=10)
    ax_a = fig.add_subplot(1, 2, 2, sharey=ax_w)
    ys = list(range(len(rows)))
    out = [r["activation_bytes"] / MB for r in rows]
    saved = [r["saved_bytes"] / MB for r in rows]
    ax_a.barh([y - 0.2 for y in ys], out, height=0.4, color="#17becf", label="output (inference)")
    ax_a.barh([y + 0.2 for y in ys], saved, height=0.4, color="#d62728",
              label="saved for backward (training)")
    top = max([*out, *saved, 1e-9])
    ax_a.set_xlim(0, top * 1.3)
    for y, o, s in zip(ys, out, saved, strict=True):
        for dy, v in ((-0.2, o), (0.2, s)):
            if v:
                ax_a.text(v + top * 0.01, y + dy, f"{v:.3g}", va="center", fontsize=6.5)
    ax_a.set_ylim(len(rows) - 0.5, -0.5)
    ax_a.tick_params(axis="y", labelleft=False)
    ax_a.set_xlabel("activations (MB = 10⁶ bytes)")
    ax_a.grid(axis="x", alpha=0.3)
    ax_a.legend(fontsize=8, loc="lower right")
    m = report.memory
    ax_a.set_title(f"Activations per layer (peak live {m['peak_inference_bytes'] / MB:.3g} MB, "
                   f"saved {m['training_saved_bytes'] / MB:.3g} MB)", fontsize=10)
    fig.suptitle(f"Memory — {report.title()}; model {m['weight_bytes'] / MB:.3g} MB",
                 fontsize=10)
    return _save(fig, path)


def _overlaps(box: Any, boxes: list[Any]) -> bool:
    return any(box.overlaps(b) for b in boxes)


def _label_style(color: str, dx: float, dy: float) -> dict[str, Any]:
    return {"fontsize": 7, "color": color, "ha": "left" if dx > 0 else "right",
            "va": "bottom" if dy > 0 else "top"}


_DY = (3, -3, 14, -14, 25, -25, 36, -36, 47, -47, 58, -58, 69, -69, 80, -80)
_OFFSETS = [(dx, dy) for dy in _DY for dx in (7, -7, 28, -28)]


def _place_labels(fig: Any, ax: Any, items: list[tuple[float, float, str, str]],
                  avoid: list[Any]) -> None:
    """Annotate points so that no label overlaps another label, a marker or a fixed text.

    Greedy: for each point, try offsets around it (nearest first) and keep the first whose
    text box is inside the axes and free; a thin leader line joins far labels to their point.
    """
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = list(avoid)
    for x, y in [(x, y) for x, y, _, _ in items]:
        px, py = ax.transData.transform((x, y))
        placed.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))
    for x, y, text, color in items:
        chosen = _OFFSETS[0]
        for dx, dy in _OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              **_label_style(color, dx, dy))
            box = ann.get_window_extent(renderer)
            ann.remove()
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not _overlaps(box.expanded(1.04, 1.15), placed):
                chosen = (dx, dy)
                placed.append(box)
                break
        far = abs(chosen[1]) > 14 or abs(chosen[0]) > 7
        ax.annotate(text, (x, y), xytext=chosen, textcoords="offset points",
                    **_label_style(color, *chosen),
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.5,
                                "shrinkA": 0, "shrinkB": 3} if far else None)


def _group_points(rows: list[dict[str, Any]], key_y: Any) -> list[tuple[float, float, str, str]]:
    """Merge layers of one kind sitting on nearly the same point (within 4%) into one label."""
    groups: list[list[tuple[int, dict[str, Any]]]] = []
    order = sorted(enumerate(rows), key=lambda ir: (ir[1]["kind"], ir[1]["flops_per_byte"],
                                                    key_y(ir[1])))
    for i, r in order:
        last = groups[-1][-1][1] if groups else None
        if (last is not None and last["kind"] == r["kind"]
                and abs(math.log10(r["flops_per_byte"] / last["flops_per_byte"])) < 0.017
                and abs(math.log10(key_y(r) / key_y(last))) < 0.017):
            groups[-1].append((i, r))
        else:
            groups.append([(i, r)])
    items = []
    for members in groups:
        names = [m["name"] for _, m in sorted(members, key=lambda ir: ir[0])]
        text = (", ".join(names) if len(names) <= 3
                else f"{names[0]}, {names[1]}, … ({len(names)} layers)")
        head = members[0][1]
        items.append((head["flops_per_byte"], key_y(head), text, KIND_COLORS[head["kind"]]))
    return sorted(items)


def plot_roofline(report: Report, machine: dict[str, Any], path: str | os.PathLike) -> Path:
    """Roofline: attainable GFLOP/s = min(peak, bandwidth × FLOPs/byte), log-log.

    Each layer with FLOPs is placed at its FLOPs per byte on the roof (what the machine
    allows); with timings, a second marker shows the achieved forward GFLOP/s.

    Args:
        report: the analysis (``flops_per_byte`` per row; ``fwd_gflops`` when measured).
        machine: ``machine_info()``: ``sgemm_gflops`` (peak) and ``copy_gbs`` (bandwidth).
        path: the PNG to write.
    """
    peak, bw = machine["sgemm_gflops"], machine["copy_gbs"]
    rows = [r for r in report.rows if r["flops"] > 0 and r["flops_per_byte"] > 0]
    xs = [r["flops_per_byte"] for r in rows] or [1.0]
    ridge = peak / bw
    lo = 10 ** math.floor(math.log10(min([*xs, ridge]) / 2))
    hi = 10 ** math.ceil(math.log10(max([*xs, ridge]) * 2))
    fig = _figure(9.5, 6.2)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, bw * x) for x in grid], color="black", lw=1.5)
    ax.axvline(ridge, color="grey", ls=":", lw=0.8)
    ax.text(ridge * 1.08, peak * 0.012 if peak * 0.012 > bw * lo else bw * lo * 2,
            f"ridge {ridge:.2f} FLOP/B", fontsize=8, color="grey", rotation=90, va="bottom")
    ax.text(hi / 1.15, peak * 1.12, f"peak {peak:.1f} GFLOP/s (sgemm)", ha="right", fontsize=8)
    roof = [min(peak, bw * r["flops_per_byte"]) for r in rows]
    ax.scatter([r["flops_per_byte"] for r in rows], roof, s=36, zorder=3,
               c=[KIND_COLORS[r["kind"]] for r in rows], edgecolors="black", linewidths=0.5)
    measured = [r for r in rows if r.get("fwd_gflops", 0) > 0]
    ys = roof + [r["fwd_gflops"] for r in measured]
    if measured:
        ax.scatter([r["flops_per_byte"] for r in measured], [r["fwd_gflops"] for r in measured],
                   marker="x", s=40, zorder=3, c=[KIND_COLORS[r["kind"]] for r in measured])
        for r in measured:
            ax.plot([r["flops_per_byte"]] * 2, [r["fwd_gflops"], min(peak, bw * r[
                "flops_per_byte"])], color=KIND_COLORS[r["kind"]], lw=0.6, alpha=0.5)
    ax.set_xlim(lo, hi)
    ax.set_ylim(min([*ys, bw * lo]) / 3, peak * 3)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved: input + weights + output)")
    ax.set_ylabel("GFLOP/s")
    ax.grid(which="both", alpha=0.2)
    kinds = [r["kind"] for r in rows]
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=KIND_COLORS[k], label=k)
               for k in KIND_COLORS if k in kinds]
    handles.append(Line2D([], [], marker="o", ls="", color="white", markeredgecolor="black",
                          label="attainable (counted)"))
    if measured:
        handles.append(Line2D([], [], marker="x", ls="", color="black",
                              label="measured forward"))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    where = "measured" if measured else "counted"
    ax.set_title(f"Roofline — {report.title()} ({where})", fontsize=10)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    (x0, y0), (x1, y1) = ax.transData.transform([(lo, bw * lo), (ridge, peak)])
    at = lo * (ridge / lo) ** 0.03
    ax.text(at, bw * at * 1.3, f"bandwidth {bw:.1f} GB/s (copy)", fontsize=8,
            rotation=math.degrees(math.atan2(y1 - y0, x1 - x0)), rotation_mode="anchor",
            ha="left", va="bottom")
    avoid = [t.get_window_extent(renderer) for t in ax.texts]
    avoid.append(ax.get_legend().get_window_extent(renderer))
    _place_labels(fig, ax, _group_points(rows, lambda r: min(peak, bw * r["flops_per_byte"])),
                  avoid)
    return _save(fig, path)


def plot_compare(reports: list[Report], path: str | os.PathLike) -> Path:
    """Models side by side: parameters, FLOPs and activation memory (log scale, values printed)."""
    fig = _figure(12, 0.5 * len(reports) + 2.2)
    names = [f"{r.model} ({'x'.join(map(str, r.input_shape[1:]))})" for r in reports]
    panels = [("parameters", [r.totals["params"] for r in reports], si),
              ("FLOPs", [r.totals["flops"] for r in reports], si),
              ("activations (MB)", [r.memory["activation_bytes"] / MB for r in reports],
               lambda v: f"{v:.3g}")]
    for i, (label, values, fmt) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ys = list(range(len(reports)))
        ax.barh(ys, values, color=[f"C{j}" for j in ys])
        ax.set_xscale("log")
        ax.set_yticks(ys, names if i == 0 else [""] * len(ys), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(values) / 3, max(values) * 30)
        for y, v in zip(ys, values, strict=True):
            ax.text(v * 1.15, y, fmt(v), va="center", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_axisbelow(True)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Models compared (batch {reports[0].batch_size}; "
                 f"{reports[0].options.describe()})", fontsize=9)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_report(report: Report, out_dir: str | os.PathLike,
                machine: dict[str, Any] | None = None) -> list[Path]:
    """Write every chart of ``report`` into ``out_dir``.

    Args:
        report: the analysis.
        out_dir: folder for ``<model>_params.png``, ``_flops.png``, ``_split.png``,
            ``_memory.png`` and (with ``machine``) ``_roofline.png``.
        machine: ``machine_info()`` for the roofline; None skips it.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    stem = report.model.replace("/", "_")
    paths = [plot_params(report, out / f"{stem}_params.png"),
             plot_flops(report, out / f"{stem}_flops.png"),
             plot_split(report, out / f"{stem}_split.png"),
             plot_memory(report, out / f"{stem}_memory.png")]
    if machine is not None:
        paths.append(plot_roofline(report, machine, out / f"{stem}_roofline.png"))
    return paths
