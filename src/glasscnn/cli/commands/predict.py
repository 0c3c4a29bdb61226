"""``glasscnn predict``: classify pictures with a checkpoint, as text, JSON or a PNG."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from glasscnn import models
from glasscnn.data.datasets import SPECS
from glasscnn.data.images import IMAGE_SUFFIXES
from glasscnn.inference import (
    MAX_INPUT_SIDE,
    image_files,
    load_predictor,
    output_file,
    plot_predictions,
    predict,
    with_overrides,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser(
        "predict", help="classify PNG/JPEG pictures (files or folders) with a checkpoint",
        description="CHECKPOINT is a glasscnn checkpoint (.npz with its model, classes and "
                    "normalisation) or a plain state_dict (.npz, .pth/.pt, .safetensors; "
                    ".pth read without torch) with --model. Pictures are resized to the "
                    "model's input with Lanczos, divided by 255 and normalised as the "
                    "checkpoint (or the flags) say. A folder is read recursively; bad "
                    "pictures are reported and the others still classified (exit code 1).",
    )
    p.add_argument("checkpoint", help="checkpoint or state_dict file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="picture files or folders")
    p.add_argument("--model", choices=list(models.REGISTRY),
                   help="zoo model (required for a plain state_dict)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model builder argument, e.g. depth=8 (repeatable)")
    p.add_argument("--strip-prefix", help="remove this prefix from every key (e.g. module.)")
    p.add_argument("--best", action="store_true",
                   help="use a training checkpoint's best-validation weights")
    p.add_argument("--topk", type=int, default=5, help="classes listed per picture (5)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--show", metavar="OUT.png", help="write the pictures with their top-k bars "
                                                     "(a folder gets predictions.png inside)")
    p.add_argument("--batch-size", type=int, default=64, help="pictures per forward pass (64)")
    p.add_argument("--size", type=int, nargs="+", metavar="N",
                   help=f"input H [W], at most {MAX_INPUT_SIDE} (default: the model's)")
    p.add_argument("--resample", help="resize filter (default lanczos)",
                   choices=["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"])
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean, after /255")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std, after /255")
    p.add_argument("--no-normalize", action="store_true",
                   help="ignore the checkpoint's normalisation")
    p.add_argument("--convert", action="store_true",
                   help="convert pictures to the model's channel count (RGB <-> grey) "
                        "instead of reporting them")
    p.add_argument("--classes", help="class names: comma-separated, a text file (one per "
                                     f"line) or a data set ({', '.join(SPECS)})")
    p.set_defaults(func=run)


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``["depth=8", "num_classes=100"]`` → ``{"depth": 8, "num_classes": 100}``.

    Values are read as JSON (numbers, true/false, lists) and otherwise kept as strings.
    """
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _classes(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    if spec in SPECS:
        return list(SPECS[spec].classes)
    path = Path(spec)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [c.strip() for c in spec.split(",")]


def _print_text(result: Any) -> None:
    width = max((len(p.source) for p in result), default=0)
    for pred in result:
        ranked = "  ".join(f"{c} {q:.3f}" for c, q in pred.topk)
        print(f"{pred.source:<{width}}  {ranked}")


def run(args: argparse.Namespace) -> int:
    """Classify every picture; print text or JSON; 1 when some picture could not be read."""
    if args.size and (len(args.size) > 2 or not 0 < min(args.size) <= max(args.size)
                      <= MAX_INPUT_SIDE):
        raise ValueError(f"--size: give H or H W, each from 1 to {MAX_INPUT_SIDE}, got "
                         f"{' '.join(map(str, args.size))}")
    if args.topk < 1 or args.batch_size < 1:
        raise ValueError(f"--topk and --batch-size must be >= 1, got {args.topk} and "
                         f"{args.batch_size}")
    show = None if args.show is None else output_file(args.show, "predictions.png")
    if show is not None and show.is_dir():
        raise ValueError(f"--show: {show} is a folder; name the PNG to write")
    loaded = load_predictor(args.checkpoint, args.model, parse_model_args(args.model_arg),
                            args.strip_prefix, args.best)
    pre = loaded.preprocessing
    if args.no_normalize:
        pre = dataclasses.replace(pre, mean=None, std=None, mean_image=None)
    if args.size:
        h, w = (args.size * 2)[:2]
        pre = with_overrides(pre, input_shape=(pre.input_shape[0], h, w))
        try:
            loaded.model.output_shape((1, *pre.input_shape))
        except ValueError as err:
            raise ValueError(f"--size {h} {w}: {loaded.name or 'the model'} cannot take "
                             f"{h}×{w} inputs ({err})") from None
    pre = with_overrides(pre, resample=args.resample, convert_channels=args.convert or None,
                         mean=None if args.mean is None else tuple(args.mean),
                         std=None if args.std is None else tuple(args.std))
    files, skipped = image_files(args.images)
    if not files:
        raise ValueError(f"no pictures in {', '.join(args.images)} (looked for "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    result = predict(loaded, files, topk=args.topk, classes=_classes(args.classes),
                     preprocessing=pre, batch_size=args.batch_size, on_error="skip",
                     keep_pictures=bool(args.show))
    header = (f"{loaded.name} from {loaded.source}; input {pre.describe()}; "
              f"{len(result)} of {len(files)} pictures classified")
    note = None if args.classes else loaded.classes_note or None
    if args.json:
        doc = {"model": loaded.name, "model_kwargs": loaded.model_kwargs,
               "checkpoint": loaded.source, **result.to_dict(), "classes_note": note,
               "skipped": [str(f) for f in skipped]}
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(header + (f"; classes: {note}" if note else ""), file=sys.stderr)
        _print_text(result)
    for _, message in result.errors:
        print(f"glasscnn predict: skipped: {message}", file=sys.stderr)
    if skipped:
        print(f"glasscnn predict: ignored {len(skipped)} file(s) in folders that are not "
              f"pictures by their suffix: {', '.join(map(str, skipped[:5]))}"
              + (" …" if len(skipped) > 5 else ""), file=sys.stderr)
    if show is not None and len(result):
        print(f"wrote {plot_predictions(result, show)}", file=sys.stderr)
    return 1 if result.errors or not len(result) else 0
