"""Training recipes: model, optimizer, schedule, data loaders and normaliser from names.

A ``Recipe`` is the whole description of a training run in plain values (what the
``glasscnn train`` command line and ``benchmarks/accuracy.py`` hold); ``prepare(recipe)``
turns it into a ``Setup``: the data split into train / validation / test, the normaliser
fitted on the training split only (as CNN courses teach), the loaders, the zoo model adapted
to the data's shape, the optimizer and the schedule, plus the checkpoint metadata that lets
``glasscnn evaluate`` and ``predict`` rebuild the model and its preprocessing.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glasscnn import models, optim
from glasscnn.checkpoint import Checkpoint
from glasscnn.data import (
    Compose,
    DataLoader,
    Dataset,
    Normalizer,
    RandomCrop,
    RandomFlip,
    load,
    rescale,
    train_val_split,
)
from glasscnn.nn import Module

DATASETS = ("fashion-mnist", "mnist", "cifar10")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "cosine", "step", "onecycle", "warmup-cosine")
NORMALIZATIONS = ("channel", "symmetric", "rescale")
AUGMENTATIONS = ("none", "crop", "crop-flip")


@dataclass
class Recipe:
    """Everything that defines a training run, as plain JSON-able values.

    Attributes:
        model: zoo name (``glasscnn.models.REGISTRY``).
        data: ``fashion-mnist``, ``mnist`` or ``cifar10``.
        epochs: total epochs.
        batch_size: training batch size (evaluation uses 500).
        optimizer: ``adam``, ``adamw``, ``sgd`` (Nesterov momentum) or ``rmsprop``.
        lr: (peak) learning rate.
        weight_decay: the optimizer's weight decay (decoupled for AdamW).
        momentum: SGD / RMSprop momentum.
        schedule: ``none``; ``cosine`` (per step down to 0); ``step`` (×0.1 every
            ⌈epochs/3⌉ epochs); ``onecycle`` (per step, peak ``lr``); ``warmup-cosine``
            (one epoch of linear warm-up, then cosine).
        l2: the course recipes' L2 term ``0.5·l2·ΣW²`` on weight tensors (Trainer ``l2``).
        clip_norm: global gradient-norm clipping, or None.
        normalize: ``channel`` (per-channel mean/std of the training split, after /255),
            ``symmetric`` ((x/255 − 0.5)/0.5) or ``rescale`` (x/255 only).
        augment: ``none``, ``crop`` (random crop after padding by 2 for 28×28, 4 for 32×32)
            or ``crop-flip`` (and left-right flips).
        val_size: examples held out of the training split for validation; None: 5000 for
            (Fashion-)MNIST, 1000 for CIFAR-10 (CS231n's 49k/1k); 0: none.
        seed: seeds the split, the shuffling, augmentation, weight init and dropout.
        train_limit: keep only this many training examples (quick runs), or None.
        test_limit: evaluate on only the first this many test examples, or None.
        model_kwargs: extra keyword arguments for the zoo builder (``batchnorm``,
            ``dropout``, ``weight_scale`` …).
    """

    model: str
    data: str = "fashion-mnist"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"
    l2: float = 0.0
    clip_norm: float | None = None
    normalize: str = "channel"
    augment: str = "none"
    val_size: int | None = None
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [("data", self.data, DATASETS), ("optimizer", self.optimizer, OPTIMIZERS),
                  ("schedule", self.schedule, SCHEDULES),
                  ("normalize", self.normalize, NORMALIZATIONS),
                  ("augment", self.augment, AUGMENTATIONS)]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"Recipe: {name} must be one of {', '.join(allowed)}; "
                                 f"got {value!r}")
        models.default_input_shape(self.model)
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Recipe: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"Recipe: lr must be positive, got {self.lr}")
        if self.val_size is not None and self.val_size < 0:
            raise ValueError(f"Recipe: val_size must be >= 0, got {self.val_size}")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """Rebuild from ``to_dict()`` (unknown keys raise ``ValueError``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Recipe.from_dict: unknown keys {unknown}")
        return cls(**values)

    def resolved_val_size(self) -> int:
        """``val_size``, or its per-data-set default when None."""
        if self.val_size is not None:
            return int(self.val_size)
        return 1000 if self.data == "cifar10" else 5000

    def differences(self, other: Recipe, ignore: tuple[str, ...] = ("epochs",)
                    ) -> dict[str, tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for each field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine
                if k not in ignore and mine[k] != theirs[k]}


@dataclass
class Setup:
    """A recipe made concrete: data, loaders, model, optimizer, schedule and metadata.

    Attributes:
        recipe: the recipe.
        train, val, test: the data sets (``val`` is None when ``val_size`` is 0).
        train_loader, val_loader, test_loader: their loaders (train shuffled, augmented).
        normalizer: fitted on ``train`` only, or None for ``rescale``.
        model: the zoo model, built for the data's (C, H, W) and class count.
        model_kwargs: the builder's JSON-able keyword arguments (saved in the checkpoint).
        optimizer, schedule, schedule_interval: as ``Trainer`` takes them.
        meta: checkpoint metadata (``model``, ``model_kwargs``, ``input_shape``,
            ``classes``, ``data``, ``preprocessing``, ``recipe``).
        groups: checkpoint array groups (``{"normalizer": {"mean", "std"}}`` or empty).
    """

    recipe: Recipe
    train: Dataset
    val: Dataset | None
    test: Dataset
    train_loader: DataLoader
    val_loader: DataLoader | None
    test_loader: DataLoader
    normalizer: Normalizer | None
    model: Module
    model_kwargs: dict[str, Any]
    optimizer: optim.Optimizer
    schedule: optim.LRSchedule | None
    schedule_interval: str
    meta: dict[str, Any]
    groups: dict[str, dict[str, np.ndarray]]


EVAL_BATCH = 500


def load_splits(recipe: Recipe, root: str | os.PathLike[str] | None = None,
                datasets: tuple[Dataset, Dataset] | None = None
                ) -> tuple[Dataset, Dataset | None, Dataset]:
    """Load the recipe's data set and split it into train / validation / test.

    The validation examples are drawn with ``recipe.seed`` from the training split;
    ``train_limit`` then keeps the first examples of what remains, ``test_limit`` the first
    test examples.

    Args:
        recipe: names the data set and the split sizes.
        root: data folder.
        datasets: ``(train, test)`` uint8 data sets to use instead of loading ``recipe.data``.

    Returns:
        ``(train, val or None, test)`` with uint8 images (N, C, H, W).
    """
    if datasets is None:
        train, test = load(recipe.data, root, "train"), load(recipe.data, root, "test")
    else:
        train, test = datasets
    val = None
    val_size = recipe.resolved_val_size()
    if val_size:
        train, val = train_val_split(train, val_size, seed=recipe.seed)
    if recipe.train_limit is not None:
        train = train.subset(slice(0, int(recipe.train_limit)), "train")
    if recipe.test_limit is not None:
        test = test.subset(slice(0, int(recipe.test_limit)), "test")
    return train, val, test


def fit_normalizer(method: str, train_images: np.ndarray) -> Normalizer | None:
    """The normaliser of ``method``, fitted on the training images only.

    Args:
        method: ``channel`` (per-channel mean and std of x/255), ``symmetric`` (mean 0.5,
            std 0.5 per channel) or ``rescale`` (None: x/255 only).
        train_images: (N, C, H, W) uint8, the training split.

    Returns:
        A ``Normalizer`` acting on x/255, or None.
    """
    if method == "rescale":
        return None
    if method == "symmetric":
        channels = train_images.shape[1]
        return Normalizer([0.5] * channels, [0.5] * channels)
    if method == "channel":
        return Normalizer.fit(train_images, scale=1 / 255)
    raise ValueError(f"fit_normalizer: method must be one of {', '.join(NORMALIZATIONS)}; "
                     f"got {method!r}")


def preprocessing(normalizer: Normalizer | None) -> Callable[[np.ndarray], np.ndarray]:
    """The deterministic input pipeline: uint8 (N, C, H, W) → x/255 → normaliser → float32."""
    if normalizer is None:
        return rescale
    return Compose(rescale, normalizer)


def checkpoint_preprocessing(checkpoint: Checkpoint) -> Callable[[np.ndarray], np.ndarray]:
    """The input pipeline a checkpoint was trained with: x/255, then its ``normalizer`` group."""
    group = checkpoint.groups.get("normalizer")
    return preprocessing(None if group is None else Normalizer.from_state_dict(group))


def augmentation(method: str, image_size: int, normalizer: Normalizer | None
                 ) -> Callable[..., np.ndarray]:
    """The training input pipeline: random crop / flip on uint8, then ``preprocessing``.

    Args:
        method: ``none``, ``crop`` or ``crop-flip``.
        image_size: H of the images (padding 2 below 32 pixels, else 4).
        normalizer: as ``preprocessing``.
    """
    steps: list[Callable[..., np.ndarray]] = []
    if method in ("crop", "crop-flip"):
        steps.append(RandomCrop(2 if image_size < 32 else 4))
    if method == "crop-flip":
        steps.append(RandomFlip())
    if not steps:
        return preprocessing(normalizer)
    steps.append(rescale)
    if normalizer is not None:
        steps.append(normalizer)
    return Compose(*steps)


def model_kwargs_for(recipe: Recipe, input_shape: tuple[int, int, int], num_classes: int
                     ) -> dict[str, Any]:
    """The zoo builder's keyword arguments: the data's shape and classes, then the recipe's.

    ``in_channels`` and ``input_size`` follow the data (1 and 28 for (Fashion-)MNIST, so
    the CIFAR networks adapt their first fully connected layer); ``seed`` (dropout masks) is
    added for the builders that take one.
    """
    c, h, w = input_shape
    kwargs: dict[str, Any] = {"in_channels": c, "input_size": h if h == w else [h, w],
                              "num_classes": num_classes}
    builder = models.REGISTRY[recipe.model][0]
    if "seed" in inspect.signature(builder).parameters:
        kwargs["seed"] = recipe.seed
    kwargs.update(recipe.model_kwargs)
    return kwargs


def build_model(recipe: Recipe, input_shape: tuple[int, int, int], num_classes: int
                ) -> tuple[Module, dict[str, Any]]:
    """Build the recipe's zoo model for the data, weights drawn from ``recipe.seed``.

    Returns:
        ``(model, model_kwargs)``: ``models.get(recipe.model, **model_kwargs)`` rebuilds it.
    """
    kwargs = model_kwargs_for(recipe, input_shape, num_classes)
    model = models.get(recipe.model, rng=np.random.default_rng([recipe.seed, 1]), **kwargs)
    return model, kwargs


def make_optimizer(recipe: Recipe, params: list[Any], lib: Any = optim) -> Any:
    """The recipe's optimizer over ``params`` (``lr``, ``weight_decay``, ``momentum``).

    Args:
        recipe: the recipe.
        params: the parameters to update.
        lib: where the optimizer classes come from: ``glasscnn.optim``, or ``torch.optim``
            for the PyTorch twin (same class names, same arguments).

    Returns:
        ``lib.Adam``, ``lib.AdamW``, ``lib.SGD`` (Nesterov when ``momentum`` > 0) or
        ``lib.RMSprop``.
    """
    if recipe.optimizer == "adam":
        return lib.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return lib.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return lib.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                       weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
    return lib.RMSprop(params, lr=recipe.lr, momentum=recipe.momentum,
                       weight_decay=recipe.weight_decay)


def make_schedule(recipe: Recipe, optimizer: optim.Optimizer, steps_per_epoch: int
                  ) -> tuple[optim.LRSchedule | None, str]:
    """The recipe's learning-rate schedule and when to step it (``"epoch"`` or ``"step"``)."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "none":
        return None, "epoch"
    if recipe.schedule == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=total), "step"
    if recipe.schedule == "step":
        return optim.StepLR(optimizer, step_size=max(1, -(-recipe.epochs // 3))), "epoch"
    if recipe.schedule == "onecycle":
        return optim.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total), "step"
    after = optim.CosineAnnealingLR(optimizer, T_max=max(1, total - steps_per_epoch))
    return optim.LinearWarmup(optimizer, steps_per_epoch, start_factor=0.1, after=after), "step"


def prepare(recipe: Recipe, root: str | os.PathLike[str] | None = None,
            datasets: tuple[Dataset, Dataset] | None = None) -> Setup:
    """Build everything a run of ``recipe`` needs.

    Args:
        recipe: the run's description.
        root: data folder (default: the usual search path, see docs/data.md).
        datasets: ``(train, test)`` uint8 data sets to use instead of loading ``recipe.data``
            (its name still goes into the checkpoint).

    Returns:
        A ``Setup``; train it with ``Trainer(setup.model, setup.optimizer, ...)`` or
        ``glasscnn.train.run.train_run``.

    Raises:
        FileNotFoundError: the data set is not on this machine (the message says how to
            fetch it).
    """
    train, val, test = load_splits(recipe, root, datasets)
    input_shape = tuple(int(s) for s in train.images.shape[1:])
    normalizer = fit_normalizer(recipe.normalize, train.images)
    evaluate = preprocessing(normalizer)
    train_loader = DataLoader(train, recipe.batch_size, shuffle=True, seed=recipe.seed,
                              transform=augmentation(recipe.augment, input_shape[1], normalizer))
    val_loader = (None if val is None else
                  DataLoader(val, EVAL_BATCH, shuffle=False, transform=evaluate))
    test_loader = DataLoader(test, EVAL_BATCH, shuffle=False, transform=evaluate)
    model, kwargs = build_model(recipe, input_shape, len(train.classes))
    optimizer = make_optimizer(recipe, model.parameters())
    schedule, interval = make_schedule(recipe, optimizer, len(train_loader))
    meta = {"model": recipe.model, "model_kwargs": kwargs, "input_shape": list(input_shape),
            "classes": list(train.classes), "data": recipe.data,
            "preprocessing": recipe.normalize, "recipe": recipe.to_dict()}
    groups = {} if normalizer is None else {"normalizer": normalizer.state_dict()}
    return Setup(recipe, train, val, test, train_loader, val_loader, test_loader, normalizer,
                 model, kwargs, optimizer, schedule, interval, meta, groups)
