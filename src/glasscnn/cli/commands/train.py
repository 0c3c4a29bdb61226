"""``glasscnn train``: train a zoo model on a data set into a run folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from glasscnn.cli.recipe_args import add_recipe_arguments, recipe_from_args
from glasscnn.train import TrainingDiverged
from glasscnn.train.progress import progress_factory
from glasscnn.train.run import CHECKPOINT, RunInterrupted, train_run


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = sub.add_parser(
        "train", help="train a zoo model on Fashion-MNIST, MNIST or CIFAR-10",
        description="Train MODEL with a progress bar per epoch; write OUT/checkpoint.npz "
                    "(after every epoch), OUT/history.json, OUT/curves.png and "
                    "OUT/confusion.png, and print the test accuracy. Without --out, OUT is "
                    "runs/MODEL-N (the next free N). See docs/training.md.",
    )
    add_recipe_arguments(
        p, epochs=10, seed_help="seeds split, shuffling, init, dropout (default 0)")
    p.add_argument("--test-limit", type=int, help="test on only this many images")
    p.add_argument("--out", help="run folder (default: runs/MODEL-N, the next free N)")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/checkpoint.npz (same options; --epochs may grow)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again even if OUT holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.set_defaults(func=run)


def next_run_folder(model: str, parent: str | Path = "runs") -> Path:
    """``parent/MODEL-N`` for the smallest N >= 1 that does not exist yet."""
    n = 1
    while (Path(parent) / f"{model}-{n}").exists():
        n += 1
    return Path(parent) / f"{model}-{n}"


def interrupted_message(err: RunInterrupted, out: Path) -> str:
    """What Ctrl-C leaves behind, truthfully: the epoch to resume from, or nothing."""
    if err.checkpoint is not None:
        return (f"interrupted; {err.checkpoint} holds epoch {err.epoch}: continue with the "
                f"same command and --resume")
    if err.stale is not None:
        return (f"interrupted in the first epoch: nothing of this run was saved; "
                f"{err.stale} is still the earlier run's; start again with --overwrite")
    return (f"interrupted in the first epoch: no checkpoint was written to {out}; start "
            "again with the same command")


def run(args: argparse.Namespace) -> int:
    """Train, print one line per epoch and a summary; 1 on divergence, 130 on Ctrl-C."""
    recipe = recipe_from_args(args)
    if args.out is None:
        if args.resume:
            raise ValueError("--resume needs --out: the run folder to continue")
        args.out = str(next_run_folder(recipe.model))
        print(f"run folder: {args.out}", flush=True)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        result = train_run(recipe, out, resume=args.resume, overwrite=args.overwrite,
                           root=args.data_root, progress=progress_factory(not args.no_progress),
                           log=lambda line: print(line, flush=True), plots=not args.no_plots)
    except TrainingDiverged as err:
        print(f"glasscnn train: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as err:
        print(f"\nglasscnn train: {interrupted_message(err, out)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nglasscnn train: interrupted before training started; this run wrote no "
              "checkpoint", file=sys.stderr)
        return 130
    except OSError as err:
        if isinstance(err, FileNotFoundError) or not err.strerror:
            raise
        kept = (f"; {out / CHECKPOINT} (the last finished epoch) is unchanged"
                if (out / CHECKPOINT).exists() else "")
        where = f"{err.filename}: " if err.filename else ""
        print(f"glasscnn train: error: {where}{err.strerror}{kept}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    print(f"test accuracy: {100 * result.test_accuracy:.2f}% "
          f"({int(result.confusion.trace()):,}/{int(result.confusion.sum()):,}), "
          f"test loss {result.test_loss:.4f}")
    if result.best_epoch:
        print(f"best validation accuracy: {100 * result.best_val_accuracy:.2f}% at epoch "
              f"{result.best_epoch} (weights kept in the checkpoint's 'best' group)")
    print(f"time: {result.train_seconds:.0f} s training, {total:.0f} s in all")
    print(f"wrote {', '.join(str(f) for f in result.files)}")
    return 0
