"""``glasscnn analyze``: per-layer shapes, parameters, MACs, FLOPs, memory and intensity."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from glasscnn.analysis import PRESETS, Report, analyze, compare_rows, compare_table
from glasscnn.data.images import IMAGE_SUFFIXES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` sub-command."""
    p = sub.add_parser(
        "analyze", help="count (and time) every layer: params, MACs, FLOPs, memory, roofline",
        description="Per-layer table of a zoo model (or a checkpoint .npz): shapes, "
                    "parameters, MACs and FLOPs, memory, compute intensity.",
    )
    p.add_argument("model", nargs="?", help="zoo model name or checkpoint .npz")
    p.add_argument("--input", help="one sample's shape, e.g. 3x33x33 (default: the model's)")
    p.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    p.add_argument("--counting", default="default",
                   help=f"FLOPs policy: a preset ({', '.join(PRESETS)}) and/or key=value "
                        "overrides, e.g. 'seed' or 'default,activations=0,assume_bias=fc'")
    p.add_argument("--measure", action="store_true",
                   help="also time each layer forward and backward (runs the model)")
    p.add_argument("--repeat", type=int, default=5,
                   help="timed steps when measuring (the fastest is kept)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--plots", metavar="DIR", help="write the charts (PNG) into DIR")
    p.add_argument("--compare", nargs="+", metavar="MODEL",
                   help="models side by side (each at its own default input unless --input)")
    p.set_defaults(func=run)


def _one(model: str, args: argparse.Namespace) -> Report:
    kwargs = {"batch_size": args.batch, "counting": args.counting, "measure": args.measure,
              "repeat": args.repeat}
    if model.endswith(".npz") or Path(model).is_file():
        from glasscnn.loading import read_checkpoint
        from glasscnn.models import default_input_shape

        ckpt = read_checkpoint(model)
        net = ckpt.build_model()
        shape = args.input or ckpt.meta.get("input_shape") or default_input_shape(
            ckpt.meta["model"])
        return analyze(net, shape, name=ckpt.meta.get("model", Path(model).stem), **kwargs)
    return analyze(model, args.input, **kwargs)


def _machine() -> dict:
    from glasscnn.analysis.machine import cache_path, machine_info

    if not cache_path().is_file():
        print("measuring this machine's sgemm and copy bandwidth once for the roofline ...",
              file=sys.stderr)
    return machine_info()


def run(args: argparse.Namespace) -> int:
    """Print the report (or the comparison) and write the charts."""
    names = ([args.model] if args.model else []) + (args.compare or [])
    if not names:
        raise ValueError("analyze: name a model (or several with --compare)")
    if args.plots:
        plots_dir = Path(args.plots)
        if plots_dir.exists() and not plots_dir.is_dir():
            raise ValueError(f"--plots {plots_dir} is a file; --plots takes a folder for the "
                             "charts")
        if not plots_dir.exists() and plots_dir.suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--plots {plots_dir} looks like a file name; --plots takes a "
                             "folder (the charts are several PNGs), e.g. --plots charts")
    reports = [_one(name, args) for name in names]
    if args.compare:
        if args.format == "json":
            print(json.dumps([r.to_dict() for r in reports], indent=2, allow_nan=False))
        elif args.format == "csv":
            rows = compare_rows(reports)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            print(buf.getvalue(), end="")
        else:
            print(compare_table(reports, markdown=args.format == "markdown"))
    else:
        report = reports[0]
        if args.plots or args.measure:
            report.machine = _machine()
        text = {"table": report.table, "markdown": report.to_markdown, "csv": report.to_csv,
                "json": report.to_json}[args.format]()
        print(text, end="" if text.endswith("\n") else "\n")
    if args.plots:
        from glasscnn.analysis import plots

        if args.compare:
            paths = [plots.plot_compare(reports, Path(args.plots) / "compare.png")]
        else:
            paths = plots.plot_report(reports[0], args.plots, reports[0].machine)
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
    return 0
