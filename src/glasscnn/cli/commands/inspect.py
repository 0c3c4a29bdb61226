"""``glasscnn inspect``: first-layer filters, feature maps and class probabilities as PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from glasscnn.analysis.inspect import inspect_checkpoint
from glasscnn.loading import read_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` sub-command."""
    p = sub.add_parser("inspect", help="draw a checkpoint's filters and, for a picture, its "
                                       "feature maps and class probabilities")
    p.add_argument("checkpoint", help="checkpoint .npz (names its zoo model)")
    p.add_argument("image", nargs="?", help="a PNG/JPEG to classify")
    p.add_argument("--out", default="inspect", help="output folder (default ./inspect)")
    p.add_argument("--maps", type=int, default=32, help="channels per feature-map grid")
    p.add_argument("--top", type=int, default=10, help="classes in the probability chart")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the PNGs and print the prediction."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; inspect writes several PNGs into a folder")
    if args.image is not None and not Path(args.image).is_file():
        raise FileNotFoundError(f"{args.image}: no such picture file")
    if args.maps < 1 or args.top < 1:
        raise ValueError(f"--maps and --top must be >= 1, got {args.maps} and {args.top}")
    result = inspect_checkpoint(read_checkpoint(args.checkpoint), args.image, out, args.maps,
                                args.top)
    for path in [result["filters"], *result["feature_maps"], result["probabilities"]]:
        if path is not None:
            print(f"wrote {path}")
    if result["prediction"] is not None:
        best = sorted(result["probs"].items(), key=lambda kv: -kv[1])[:5]
        print(f"prediction: {result['prediction']}  ("
              + ", ".join(f"{c} {p:.3f}" for c, p in best) + ")")
    return 0
