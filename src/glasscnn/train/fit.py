"""``fit(model, "fashion-mnist", epochs=3)``: train from Python (or a notebook) in one call."""

from __future__ import annotations

import os
from typing import Any

from glasscnn.data import Dataset
from glasscnn.nn import Module
from glasscnn.train.history import History
from glasscnn.train.progress import progress_factory
from glasscnn.train.recipes import Recipe, prepare
from glasscnn.train.trainer import Trainer


def fit(
    model: Module | str,
    data: str | tuple[Dataset, Dataset] = "fashion-mnist",
    epochs: int = 3,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    schedule: str = "none",
    weight_decay: float = 0.0,
    l2: float = 0.0,
    clip_norm: float | None = None,
    normalize: str = "channel",
    augment: str = "none",
    val_size: int | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    **model_kwargs: Any,
) -> History:
    """Train a network on a data set with ``glasscnn train``'s recipe and return the history.

    The data are split into train / validation (drawn with ``seed``) / test, normalised
    with statistics of the training split only, batched and shuffled; the network is
    trained with a progress bar (tqdm in a terminal or a notebook) and evaluated on the
    test split. Afterwards the network (the one given, or the zoo model built) is in
    evaluation mode and knows its preprocessing and classes, so ``glasscnn.predict(model,
    picture)`` reads pictures as it was trained on them.

    Args:
        model: your Module (it must take the data's (C, H, W) and give one logit per
            class), or a zoo name (built for the data, with ``model_kwargs``).
        data: ``"fashion-mnist"``, ``"mnist"``, ``"cifar10"`` (see ``glasscnn data list``),
            or ``(train, test)`` uint8 ``Dataset``s of your own.
        epochs: epochs to train.
        batch_size, lr, optimizer, schedule, weight_decay, l2, clip_norm, normalize,
        augment, val_size, train_limit, test_limit, seed: as ``Recipe`` (and the ``train``
            command's options) define them.
        root: data folder.
        checkpoint: write a resumable checkpoint there after every epoch (else none).
        progress: show a progress bar per epoch.
        **model_kwargs: zoo builder arguments (only with a zoo name).

    Returns:
        The ``History`` (per-epoch losses and accuracies; shows its curves in a notebook),
        with ``model`` (the trained network), ``test_loss`` and ``test_accuracy``
        attributes.

    Raises:
        FileNotFoundError: the data set is not on this machine (says how to fetch it).
        ValueError: bad options, or a model that does not fit the data.
    """
    name = model if isinstance(model, str) else ""
    if model_kwargs and not name:
        raise ValueError(f"fit: builder arguments {sorted(model_kwargs)} need a zoo model name")
    datasets = None if isinstance(data, str) else tuple(data)
    data_name = data if isinstance(data, str) else "fashion-mnist"
    recipe = Recipe(name, data=data_name, epochs=epochs, batch_size=batch_size,
                    optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule,
                    l2=l2, clip_norm=clip_norm, normalize=normalize, augment=augment,
                    val_size=val_size, seed=seed, train_limit=train_limit,
                    test_limit=test_limit, model_kwargs=dict(model_kwargs))
    setup = prepare(recipe, root, datasets, model=None if name else model)
    if datasets is not None:
        setup.meta["data"] = setup.train.name
    trainer = Trainer(setup.model, setup.optimizer, train_loader=setup.train_loader,
                      val_loader=setup.val_loader, schedule=setup.schedule,
                      schedule_interval=setup.schedule_interval, l2=l2, clip_norm=clip_norm,
                      checkpoint=checkpoint, meta=setup.meta, groups=setup.groups,
                      progress=progress_factory(progress))
    history = trainer.fit(epochs)
    test = trainer.evaluate(setup.test_loader)
    history.model = setup.model.eval()
    history.test_loss, history.test_accuracy = test["loss"], test["accuracy"]
    _remember_preprocessing(setup.model, setup, name)
    return history


def _remember_preprocessing(model: Module, setup: Any, name: str) -> None:
    """Give the trained network what ``glasscnn.predict`` needs to read pictures for it."""
    from glasscnn.loading import LoadedModel, Preprocessing, attach

    norm = setup.normalizer
    pre = Preprocessing(input_shape=tuple(setup.meta["input_shape"]),
                        mean=None if norm is None else tuple(norm.mean.tolist()),
                        std=None if norm is None else tuple(norm.std.tolist()))
    attach(LoadedModel(model, name, pre, tuple(setup.meta["classes"]), "glasscnn.train.fit"))
