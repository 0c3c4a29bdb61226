"""``glasscnn sweep``: random search over training hyperparameters on Ray Tune."""

from __future__ import annotations

import argparse
import sys
import time

from glasscnn.cli.recipe_args import add_recipe_arguments, recipe_from_args


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
    add_recipe_arguments(
        p, epochs=2, seed_help="every trial's seed: split, shuffling, init (default 0)")
    p.add_argument("--trials", type=int, default=8, help="configurations sampled (default 8)")
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
    p.add_argument("--top", type=int, default=5, help="trials in the printed table (default 5)")
    p.add_argument("--no-plots", action="store_true", help="skip sweep.png")
    p.add_argument("--out", help="a new or empty sweep folder (default sweeps/MODEL-TIME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print one line per trial, then the top trials and the retrain command."""
    from glasscnn.sweep import format_summary
    from glasscnn.sweep import run as sweep

    recipe = recipe_from_args(args)
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
