"""The training-recipe options ``glasscnn train`` and ``glasscnn sweep`` share."""

from __future__ import annotations

import argparse
import json

from glasscnn import models
from glasscnn.train.recipes import (
    AUGMENTATIONS,
    DATASETS,
    NORMALIZATIONS,
    OPTIMIZERS,
    SCHEDULES,
    Recipe,
)


def model_arg(text: str) -> tuple[str, object]:
    """``"dropout=0"`` → ``("dropout", 0)``: the value read as JSON, else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_recipe_arguments(p: argparse.ArgumentParser, epochs: int, seed_help: str) -> None:
    """Add MODEL and the options of a ``Recipe`` (data, optimizer, schedule, …) to ``p``.

    Args:
        p: the sub-command's parser.
        epochs: the default of ``--epochs``.
        seed_help: what ``--seed`` seeds, in the sub-command's words.
    """
    p.add_argument("model", choices=list(models.REGISTRY), metavar="MODEL",
                   help=f"zoo model: {', '.join(models.REGISTRY)}")
    p.add_argument("--data", choices=DATASETS, default="fashion-mnist",
                   help="data set (default fashion-mnist)")
    p.add_argument("--data-root", help="data folder (default: see `glasscnn data list`)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    p.add_argument("--lr", type=float, default=1e-3, help="(peak) learning rate, default 1e-3")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="optimizer weight decay (decoupled for adamw), default 0")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd/rmsprop momentum")
    p.add_argument("--schedule", choices=SCHEDULES, default="none",
                   help="learning-rate schedule (default none)")
    p.add_argument("--l2", type=float, default=0.0,
                   help="L2 term 0.5*l2*sum(W^2) on weight tensors (the course recipes' "
                        "regularisation)")
    p.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default="channel",
                   help="channel: per-channel mean/std of the training split (default); "
                        "symmetric: (x/255-0.5)/0.5; rescale: x/255")
    p.add_argument("--augment", choices=AUGMENTATIONS, default="none",
                   help="random crops (and flips) of the training images (default none)")
    p.add_argument("--val-size", type=int,
                   help="validation images held out of the training split (default 5000; "
                        "1000 for cifar10; shrunk in proportion with --train-limit; 0: none)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--train-limit", type=int, help="use only this many training images")
    p.add_argument("--model-arg", action="append", type=model_arg, default=[],
                   metavar="KEY=VALUE",
                   help="extra builder argument, e.g. dropout=0 or batchnorm=false (repeat)")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The ``Recipe`` described by parsed arguments of ``add_recipe_arguments``."""
    return Recipe(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        momentum=args.momentum, schedule=args.schedule, l2=args.l2, clip_norm=args.clip_norm,
        normalize=args.normalize, augment=args.augment, val_size=args.val_size, seed=args.seed,
        train_limit=args.train_limit, test_limit=getattr(args, "test_limit", None),
        model_kwargs=dict(args.model_arg),
    )
