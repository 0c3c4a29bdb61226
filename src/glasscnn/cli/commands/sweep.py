"""``glasscnn sweep``: random search over training hyperparameters on Ray Tune."""

from __future__ import annotations

import argparse
import json
import sys
import time

from glasscnn import models
from glasscnn.train.recipes import (
    AUGMENTATIONS,
    DATASETS,
    NORMALIZATIONS,
    OPTIMIZERS,
    SCHEDULES,
    Recipe,
)


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` sub-command."""
    p = sub.add_parser(
        "sweep", help="hyperparameter sweep (random search, coarse to fine) on Ray Tune",
        description="Train --trials runs of MODEL with hyperparameters sampled from --space "
                    "(default: learning rate and weight decay, log-uniform), one per CPU, "
                    "on this machine or on a Ray cluster (--address). Writes OUT/results.csv, "
                    "OUT/best/checkpoint.npz, OUT/sweep.png and prints the top trials. "
                    "Needs pip install 'glasscnn[sweep]'. See docs/sweep.md.",
    )
    p.add_argument("model", choices=list(models.REGISTRY), metavar="MODEL",
                   help=f"zoo model: {', '.join(models.REGISTRY)}")
    p.add_argument("--data", choices=DATASETS, default="fashion-mnist",
                   help="data set (default fashion-mnist)")
    p.add_argument("--data-root", help="data folder (default: see `glasscnn data list`)")
    p.add_argument("--trials", type=int, default=8, help="configurations sampled (default 8)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    p.add_argument("--space", action="append", default=[], metavar="NAME=KIND(ARGS)",
                   help="a searched option, e.g. lr=loguniform(1e-4,1e-2), "
                        "momentum=uniform(0.8,0.99), batch_size=choice(64,128), "
                        "model.dropout=uniform(0,0.5) (repeat; KIND: loguniform, uniform, "
                        "randint, choice)")
    p.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                   help="fifo: every trial runs all its epochs (default); asha: stop the "
                        "weaker trials early")
    p.add_argument("--address", metavar="HOST:PORT|auto",
                   help="join the Ray cluster whose head is there (default: start Ray here)")
    p.add_argument("--cpus", type=int,
                   help="CPUs of the Ray started here, one trial per CPU (default: all)")
    p.add_argument("--refine", metavar="PREVIOUS_DIR",
                   help="narrow the ranges of that finished sweep around its best trials "
                        "and search again")
    p.add_argument("--max-failures", type=int, default=3,
                   help="restarts of a trial whose worker dies (default 3)")
    p.add_argument("--storage",
                   help="where trial checkpoints go: a folder every node reaches (NFS) or a "
                        "cloud URI (default OUT/tune)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="learning rate when lr is not searched (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="weight decay when it is not searched (default 0)")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd/rmsprop momentum")
    p.add_argument("--schedule", choices=SCHEDULES, default="none",
                   help="learning-rate schedule (default none)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 term 0.5*l2*sum(W^2)")
    p.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default="channel",
                   help="input normalisation (default channel)")
    p.add_argument("--augment", choices=AUGMENTATIONS, default="none",
                   help="training augmentation (default none)")
    p.add_argument("--val-size", type=int,
                   help="validation images held out (default 5000; 1000 for cifar10)")
    p.add_argument("--seed", type=int, default=0,
                   help="every trial's seed: split, shuffling, init (default 0)")
    p.add_argument("--train-limit", type=int, help="use only this many training images")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[],
                   metavar="KEY=VALUE", help="extra builder argument (repeat)")
    p.add_argument("--top", type=int, default=5, help="trials in the printed table (default 5)")
    p.add_argument("--no-plots", action="store_true", help="skip sweep.png")
    p.add_argument("--out", help="a new or empty sweep folder (default sweeps/MODEL-TIME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print one line per trial, then the top trials and the retrain command."""
    from glasscnn.sweep import format_summary
    from glasscnn.sweep import run as sweep

    recipe = Recipe(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        momentum=args.momentum, schedule=args.schedule, l2=args.l2, clip_norm=args.clip_norm,
        normalize=args.normalize, augment=args.augment, val_size=args.val_size, seed=args.seed,
        train_limit=args.train_limit, model_kwargs=dict(args.model_arg),
    )
    out = args.out or f"sweeps/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = sweep(recipe, out, trials=args.trials, space=args.space,
                       scheduler=None if args.scheduler == "fifo" else args.scheduler,
                       address=args.address, cpus=args.cpus, refine=args.refine,
                       root=args.data_root, max_failures=args.max_failures,
                       storage=args.storage, log=lambda line: print(line, flush=True),
                       plots=not args.no_plots)
    except ImportError as err:
        print(f"glasscnn sweep: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nglasscnn sweep: interrupted", file=sys.stderr)
        return 130
    print(format_summary(result, args.top))
    print(f"wrote {', '.join(str(f) for f in result.files)}")
    return 0 if result.best is not None else 1
