"""A whole training run into a folder: checkpoint, history.json, curves.png, confusion.png.

``train_run(recipe, out)`` is what ``glasscnn train`` does: prepare the recipe, train with
a checkpoint after every epoch (resumable), evaluate on the test split, and write the run
folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.checkpoint import atomic_write
from glasscnn.data import Dataset
from glasscnn.loading import build_zoo_model, read_checkpoint
from glasscnn.train.recipes import Recipe, Setup, prepare
from glasscnn.train.trainer import Trainer

CHECKPOINT, HISTORY, CURVES, CONFUSION = ("checkpoint.npz", "history.json", "curves.png",
                                          "confusion.png")
LOCK = ".lock"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``train_run``: says truthfully what can be resumed.

    Attributes:
        checkpoint: the checkpoint to continue with ``resume=True``, or None when this run
            has none (interrupted in its first epoch).
        epoch: the epochs that checkpoint holds (0 when None).
        stale: a checkpoint left in the folder by an earlier run that this one (started
            with ``overwrite``) had not yet replaced, or None.
    """

    def __init__(self, checkpoint: Path | None, epoch: int, stale: Path | None = None) -> None:
        super().__init__(checkpoint, epoch, stale)
        self.checkpoint, self.epoch, self.stale = checkpoint, epoch, stale


class FolderInUse(ValueError):
    """Another process is training into the run folder (it holds ``OUT/.lock``)."""


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.lock`` while the block runs.

    The lock is ``fcntl.flock`` on an open file, so the system releases it when the process
    ends in any way (a crash or a kill leaves no stale lock). On systems without ``fcntl``
    nothing is locked.

    Raises:
        FolderInUse: another process holds the lock (the message gives its process id).
        OSError: the folder cannot be written (permission, read-only file system).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUse(f"{out} is in use: another glasscnn train (process {holder}) is "
                              "writing into it; wait for it to finish or choose another "
                              "--out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def prepare_folder(out: str | os.PathLike) -> Path:
    """Check that ``out`` can be a run folder and create it.

    Raises:
        ValueError: ``out`` is an existing file.
        OSError: it cannot be created or written (the message names it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder: choose another --out for the run")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied (the run folder is not writable)", str(out))
    return out


def check_free_space(out: Path, bytes_needed: int) -> None:
    """Refuse to start when the disk holding ``out`` has less room than a checkpoint needs.

    Raises:
        OSError: ENOSPC, naming the folder, the room left and the room needed.
    """
    free = shutil.disk_usage(out).free
    if free < bytes_needed:
        raise OSError(28, f"No space left on device: {free / 2**20:.1f} MiB free, a checkpoint "
                          f"needs about {bytes_needed / 2**20:.1f} MiB", str(out))


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        out: the run folder.
        test_loss, test_accuracy: on the test split with the final weights.
        confusion: (K, K) test confusion matrix (rows true, columns predicted).
        classes: the class names.
        best_epoch, best_val_accuracy: the epoch (1-based) with the best validation
            accuracy and that accuracy (0 and NaN without validation).
        train_seconds: wall-clock time of the epochs run in this call.
        files: the files written.
        history: the per-epoch history (a ``History``: shows its curves in a notebook).
    """

    out: Path
    test_loss: float
    test_accuracy: float
    confusion: np.ndarray
    classes: list[str]
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    files: list[Path] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, allow_nan=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def check_resume(recipe: Recipe, checkpoint: Path) -> int:
    """Check that ``checkpoint`` was written by a run of the same recipe (epochs aside).

    Returns:
        The number of epochs the checkpoint holds.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: the checkpoint's recipe differs (the message lists each difference).
    """
    ckpt = read_checkpoint(checkpoint)
    if "recipe" not in ckpt.meta or "training" not in ckpt.meta:
        raise ValueError(f"{checkpoint}: not a checkpoint written by glasscnn train; "
                         "cannot resume from it")
    saved = Recipe.from_dict(ckpt.meta["recipe"])
    diff = recipe.differences(saved)
    if diff:
        lines = ", ".join(f"{k}: {v[1]!r} in the checkpoint, {v[0]!r} now"
                          for k, v in diff.items())
        raise ValueError(f"--resume: {checkpoint} was trained with a different recipe ({lines})")
    return int(ckpt.meta["training"]["epoch"])


def describe(setup: Setup) -> list[str]:
    """Lines describing the data, the preprocessing and the model of a prepared run."""
    r = setup.recipe
    c, h, w = setup.meta["input_shape"]
    n_val = 0 if setup.val is None else len(setup.val)
    lines = [f"data: {r.data}: {len(setup.train):,} train / {n_val:,} validation / "
             f"{len(setup.test):,} test images, {c}x{h}x{w}, {len(setup.meta['classes'])} "
             f"classes"]
    if setup.normalizer is None:
        lines.append("preprocessing: x/255")
    else:
        mean = ", ".join(f"{m:.4f}" for m in setup.normalizer.mean)
        std = ", ".join(f"{s:.4f}" for s in setup.normalizer.std)
        source = "fitted on the training split" if r.normalize == "channel" else "fixed"
        lines.append(f"preprocessing: (x/255 - mean) / std per channel, mean [{mean}], "
                     f"std [{std}] ({source}); augmentation: {r.augment}")
    params = sum(p.data.size for p in setup.model.parameters())
    kwargs = ", ".join(f"{k}={v}" for k, v in setup.model_kwargs.items())
    lines.append(f"model: {r.model}({kwargs}): {params:,} parameters")
    lines.append(f"training: {r.epochs} epochs, batch {r.batch_size}, {r.optimizer} lr {r.lr:g}"
                 + (f", weight decay {r.weight_decay:g}" if r.weight_decay else "")
                 + (f", L2 {r.l2:g}" if r.l2 else "")
                 + (f", schedule {r.schedule}" if r.schedule != "none" else "")
                 + f", seed {r.seed}")
    return lines


def epoch_line(record: dict[str, float], epochs: int) -> str:
    """One line summing up an epoch (``Trainer``'s ``on_epoch`` record)."""
    line = (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_accuracy']:.2f}%")
    if not math.isnan(record["val_accuracy"]):
        line += f" | val loss {record['val_loss']:.4f} acc {100 * record['val_accuracy']:.2f}%"
    return line + (f" | {record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s, "
                   f"lr {record['lr']:.3g}")


def make_trainer(setup: Setup, recipe: Recipe, checkpoint: str | os.PathLike,
                 **hooks: Any) -> Trainer:
    """The ``Trainer`` of a prepared run, as ``glasscnn train`` and each sweep trial use it.

    Args:
        setup: what ``prepare(recipe)`` built (model, optimizer, loaders, schedule, meta).
        recipe: the recipe (its ``l2`` and ``clip_norm``).
        checkpoint: where the Trainer writes its checkpoint after every epoch.
        **hooks: ``progress``, ``on_epoch`` and the Trainer's other keyword options.
    """
    return Trainer(setup.model, setup.optimizer, train_loader=setup.train_loader,
                   val_loader=setup.val_loader, schedule=setup.schedule,
                   schedule_interval=setup.schedule_interval, l2=recipe.l2,
                   clip_norm=recipe.clip_norm, checkpoint=checkpoint, meta=setup.meta,
                   groups=setup.groups, **hooks)


def train_run(
    recipe: Recipe, out: str | os.PathLike, resume: bool = False, overwrite: bool = False,
    root: str | os.PathLike | None = None,
    progress: Callable[[Any, int, int], Any] | None = None,
    log: Callable[[str], None] = print, plots: bool = True,
    datasets: tuple[Dataset, Dataset] | None = None,
) -> RunResult:
    """Train ``recipe`` into the folder ``out`` and evaluate it on the test split.

    Writes ``out/checkpoint.npz`` (after every epoch: model, optimizer, schedule, RNG states,
    history, best-validation weights, the normaliser under ``normalizer/`` and the metadata
    to rebuild the model), ``out/history.json`` (the recipe, per-epoch history and, at the
    end, the test result), and, with matplotlib, ``out/curves.png`` (after every epoch) and
    ``out/confusion.png`` (test confusion matrix).

    Args:
        recipe: the run.
        out: the run folder (created).
        resume: continue from ``out/checkpoint.npz`` (same recipe; ``epochs`` may grow).
        overwrite: start afresh even if ``out`` holds a checkpoint.
        root: data folder, as ``glasscnn.data.load`` takes it.
        progress: a progress factory for the Trainer (see ``glasscnn.train.progress``).
        log: receives the human-readable lines (data, model, one per epoch, summary).
        plots: draw the PNGs (needs matplotlib).
        datasets: ``(train, test)`` to use instead of loading ``recipe.data``.

    Returns:
        A ``RunResult``.

    The folder is locked while the run lasts (``OUT/.lock``, released by the system when
    the process ends, even by a crash), so a second run into it is refused.

    Raises:
        ValueError: ``out`` is a file; it holds a checkpoint and neither ``resume`` nor
            ``overwrite`` is set; the checkpoint's recipe differs; another run holds the
            folder (``FolderInUse``).
        OSError: the folder cannot be written, or the disk is full (checked before
            training for one checkpoint's size; a later failure keeps the last checkpoint).
        TrainingDiverged: the loss became non-finite (the last checkpoint is kept).
        RunInterrupted: Ctrl-C; says which checkpoint (if any) can be resumed.
    """
    out = prepare_folder(out)
    with folder_lock(out):
        return _train_locked(recipe, out, resume, overwrite, root, progress, log, plots,
                             datasets)


def _train_locked(
    recipe: Recipe, out: Path, resume: bool, overwrite: bool,
    root: str | os.PathLike | None, progress: Callable[[Any, int, int], Any] | None,
    log: Callable[[str], None], plots: bool, datasets: tuple[Dataset, Dataset] | None,
) -> RunResult:
    """``train_run`` once the folder is checked and locked."""
    ckpt_path = out / CHECKPOINT
    done = 0
    if resume:
        done = check_resume(recipe, ckpt_path)
    elif ckpt_path.exists() and not overwrite:
        raise ValueError(f"{ckpt_path} exists: pass --resume to continue that run, "
                         "--overwrite to start it again, or choose another --out")
    setup = prepare(recipe, root, datasets)
    for line in describe(setup):
        log(line)
    weight_bytes = sum(p.data.nbytes for p in setup.model.parameters())
    check_free_space(out, 4 * weight_bytes + 2**20)
    title = f"{recipe.model} on {recipe.data}"
    history_doc: dict[str, Any] = {"recipe": recipe.to_dict(), "model_kwargs": setup.model_kwargs,
                                   "classes": setup.meta["classes"]}

    def on_epoch(trainer: Trainer, record: dict[str, float]) -> None:
        log(epoch_line(record, recipe.epochs))
        _write_json(out / HISTORY, {**history_doc, "history": trainer.history})
        if plots:
            from glasscnn.train.plots import plot_curves

            plot_curves(trainer.history, out / CURVES, title)

    trainer = make_trainer(setup, recipe, ckpt_path, progress=progress, on_epoch=on_epoch)
    if resume:
        log(f"resuming {ckpt_path} after epoch {done} of {recipe.epochs}")
    start = time.perf_counter()
    try:
        trainer.fit(recipe.epochs, resume=ckpt_path if resume else None)
    except KeyboardInterrupt:
        saved = trainer.saved_epoch or done
        stale = ckpt_path if not saved and ckpt_path.exists() else None
        raise RunInterrupted(ckpt_path if saved else None, saved, stale) from None
    seconds = time.perf_counter() - start
    test = trainer.evaluate(setup.test_loader, confusion=True)
    best_val = trainer.best_accuracy if trainer.best_state is not None else math.nan
    history_doc.update({
        "history": trainer.history,
        "test": {"loss": test["loss"], "accuracy": test["accuracy"], "count": test["count"],
                 "confusion": test["confusion"].tolist()},
        "best_epoch": trainer.best_epoch, "best_val_accuracy": best_val,
        "train_seconds_total": float(np.sum(trainer.history["epoch_seconds"])),
    })
    _write_json(out / HISTORY, history_doc)
    files = [ckpt_path, out / HISTORY]
    if plots:
        from glasscnn.train.plots import plot_confusion, plot_curves

        files.append(plot_curves(trainer.history, out / CURVES, title, test["accuracy"]))
        files.append(plot_confusion(test["confusion"], setup.meta["classes"], out / CONFUSION,
                                    f"{title} (test)"))
    return RunResult(out, test["loss"], test["accuracy"], test["confusion"],
                     list(setup.meta["classes"]), trainer.best_epoch, best_val, seconds, files,
                     trainer.history)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike, data: str | None = None, split: str = "test",
    weights: str = "last", root: str | os.PathLike | None = None, batch_size: int = 500,
    limit: int | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a data set with the preprocessing it was trained with.

    Args:
        checkpoint: a ``glasscnn train`` checkpoint (or any checkpoint naming its zoo model).
        data: data set name; default: the one in the checkpoint's metadata.
        split: ``"test"`` or ``"train"``.
        weights: ``"last"`` (the model weights) or ``"best"`` (best-validation weights).
        root: data folder.
        batch_size: evaluation batch size.
        limit: only the first this many images.

    Returns:
        ``{"loss", "accuracy", "count", "confusion" (K, K), "classes", "data", "split"}``.

    Raises:
        ValueError: no data set named, the data's image shape or class names differ from
            the model's, or no ``best`` weights in the checkpoint.
    """
    from glasscnn.data import DataLoader, load
    from glasscnn.train.recipes import checkpoint_preprocessing

    ckpt = read_checkpoint(checkpoint)
    data = data or ckpt.meta.get("data")
    if data is None:
        raise ValueError(f"{checkpoint}: the checkpoint names no data set; pass --data")
    if weights not in ("last", "best"):
        raise ValueError(f"evaluate: weights must be 'last' or 'best', got {weights!r}")
    if not ckpt.meta.get("model"):
        raise ValueError(f"{checkpoint}: the checkpoint names no zoo model to rebuild")
    if weights == "best" and "best" not in ckpt.groups:
        raise ValueError(f"{checkpoint}: no best-validation weights (group 'best')")
    state_dict = ckpt.groups["best"] if weights == "best" else ckpt.state_dict
    model = build_zoo_model(ckpt.meta["model"], ckpt.meta.get("model_kwargs", {}),
                            str(checkpoint), state_dict)
    model.load_state_dict(state_dict)
    model.eval()
    dataset = load(data, root, split)
    if limit is not None:
        dataset = dataset.subset(slice(0, int(limit)), split)
    expected = ckpt.meta.get("input_shape")
    if expected is not None and list(dataset.images.shape[1:]) != list(expected):
        raise ValueError(f"evaluate: {data} images are {dataset.images.shape[1:]}, the model "
                         f"was trained on {tuple(expected)}")
    classes = list(ckpt.meta.get("classes") or dataset.classes)
    if classes != list(dataset.classes):
        raise ValueError(f"evaluate: {data} has the classes {list(dataset.classes)}, the model "
                         f"was trained on {classes}")
    loader = DataLoader(dataset, batch_size, shuffle=False,
                        transform=checkpoint_preprocessing(ckpt))
    result = Trainer(model, optimizer=None).evaluate(loader, confusion=True)
    return {**result, "classes": classes, "data": data, "split": split}
