"""``glasscnn evaluate``: accuracy and confusion matrix of a checkpoint on a data set."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from glasscnn.inference import output_file
from glasscnn.train.recipes import DATASETS
from glasscnn.train.run import evaluate_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = sub.add_parser(
        "evaluate", help="accuracy and confusion matrix of a checkpoint on a data set",
        description="Rebuild the checkpoint's zoo model, apply the preprocessing saved with "
                    "it (x/255 and its normaliser), print accuracy, per-class recall and the "
                    "confusion matrix, and draw the matrix as a PNG.",
    )
    p.add_argument("checkpoint", help="checkpoint .npz written by glasscnn train")
    p.add_argument("--data", choices=DATASETS,
                   help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="data folder (default: see `glasscnn data list`)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="default test")
    p.add_argument("--weights", choices=("last", "best"), default="last",
                   help="last epoch's weights (default) or the best-validation ones")
    p.add_argument("--batch-size", type=int, default=500, help="default 500")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--png", help="confusion-matrix PNG (default: confusion_<data>_<split>.png "
                                 "next to the checkpoint; a folder gets that name inside)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG")
    p.set_defaults(func=run)


def format_confusion(matrix: np.ndarray, classes: list[str]) -> str:
    """The confusion matrix as a text table: rows true classes, columns predicted."""
    short = [c[:7] for c in classes]
    width = max(6, *(len(s) for s in short), len(str(int(matrix.max()))))
    corner = "true \\ predicted"
    name_w = max(len(corner), *(len(c) for c in classes))
    lines = [f"{corner:<{name_w}} " + " ".join(f"{s:>{width}}" for s in short)
             + f" {'recall':>7}"]
    for i, c in enumerate(classes):
        recall = matrix[i, i] / max(int(matrix[i].sum()), 1)
        lines.append(f"{c:<{name_w}} " + " ".join(f"{int(v):>{width}}" for v in matrix[i])
                     + f" {100 * recall:>6.1f}%")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print accuracy and the confusion matrix; write the PNG."""
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError(f"--batch-size and --limit must be >= 1, got {args.batch_size} and "
                         f"{args.limit}")
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.weights,
                                 args.data_root, args.batch_size, args.limit)
    matrix, classes = result["confusion"], result["classes"]
    print(f"{args.checkpoint} ({args.weights} weights) on {result['data']} {args.split}: "
          f"accuracy {100 * result['accuracy']:.2f}% "
          f"({int(matrix.trace()):,}/{result['count']:,}), loss {result['loss']:.4f}")
    print(format_confusion(matrix, classes))
    if not args.no_plots:
        from glasscnn.train.plots import plot_confusion

        name = f"confusion_{result['data']}_{args.split}.png"
        png = output_file(args.png, name) if args.png else Path(args.checkpoint).with_name(name)
        plot_confusion(matrix, classes, png,
                       f"{Path(args.checkpoint).name} on {result['data']} {args.split}")
        print(f"wrote {png}")
    return 0
