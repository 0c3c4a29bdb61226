"""``glasscnn models``: the zoo, with each network's input, parameters and MACs."""

from __future__ import annotations

import argparse
import json

from glasscnn import models
from glasscnn.analysis import analyze
from glasscnn.nn.init import ZeroGenerator


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` sub-command."""
    p = sub.add_parser("models", help="list the zoo: default input, parameters, MACs",
                       description="Every zoo model with its default input (C×H×W), its "
                                   "parameter count and its multiply-accumulates for one "
                                   "picture (counted by glasscnn analyze).")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def rows() -> list[dict]:
    """One dict per zoo model: ``name``, ``input_shape``, ``params``, ``macs``,
    ``description``."""
    out = []
    for entry in models.available():
        # counting needs shapes only: layers built from zeros, not random draws
        report = analyze(models.get(entry["name"], rng=ZeroGenerator()))
        out.append({"name": entry["name"], "input_shape": list(entry["input_shape"]),
                    "params": int(report.totals["params"]),
                    "macs": int(report.totals["macs"]), "description": entry["description"]})
    return out


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2, allow_nan=False))
        return 0
    print(f"{'MODEL':<20} {'INPUT':<11} {'PARAMS':>12} {'MACS':>15}  DESCRIPTION")
    for r in table:
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['name']:<20} {shape:<11} {r['params']:>12,} {r['macs']:>15,}  "
              f"{r['description']}")
    return 0
