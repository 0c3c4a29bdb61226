"""The training loop: steps, evaluation, history, best weights, checkpoints and resume."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from glasscnn.nn import CrossEntropyLoss, Module
from glasscnn.optim import clip_grad_norm_
from glasscnn.train.state import flatten, unflatten

POSTFIX_SECONDS = 0.5


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def _generators(model: Module) -> dict[str, np.random.Generator]:
    """Every ``numpy.random.Generator`` held by a layer (dropout masks), by module name."""
    return {name: m.rng for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """Count (true class, predicted class) pairs.

    Args:
        labels: true classes (N,) in [0, num_classes).
        predictions: predicted classes (N,) in [0, num_classes).
        num_classes: K.

    Returns:
        (K, K) int64: entry [i, j] is the number of examples of class i predicted as j.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: labels {labels.shape} and predictions "
                         f"{predictions.shape} differ in shape")
    return np.bincount(labels * num_classes + predictions,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class Trainer:
    """Train a model with an optimizer on a loader; keep history, best weights, checkpoints.

    Args:
        model: a ``glasscnn.nn.Module`` producing logits (N, K).
        optimizer: a ``glasscnn.optim`` optimizer over ``model.parameters()``.
        loss: the criterion (default ``CrossEntropyLoss()``): ``loss(logits, labels)`` then
            ``loss.backward()`` → dlogits.
        train_loader: yields ``(images, labels)`` batches; ``set_epoch(e)`` is called when
            it exists, so its shuffle order is reproducible per epoch.
        val_loader: the same for validation, or ``None``.
        schedule: a learning-rate schedule with ``step()`` and ``state_dict()``, or ``None``.
        schedule_interval: ``"epoch"`` or ``"step"``: when ``schedule.step()`` is called.
        l2: weight of the L2 term ``0.5 · l2 · Σ W²`` over weight tensors (ndim ≥ 2), as
            the course recipes regularise; its gradient ``l2 · W`` is added.
        clip_norm: clip gradients to this global L2 norm, or ``None``.
        checkpoint: path of the checkpoint written after every epoch (atomically), or ``None``.
        meta: extra JSON metadata saved in the checkpoint (model name and kwargs, classes).
        groups: extra arrays saved in the checkpoint (e.g. ``{"normalizer": {...}}``).
        progress: ``None`` for silence, else a callable ``progress(loader, epoch, epochs)``
            returning an iterable wrapper with ``set_postfix(dict)`` (e.g.
            ``glasscnn.train.progress.progress_factory()``).
        on_step: called after every training step as ``on_step(trainer, epoch, step, loss)``
            (0-based epoch and step); an exception raised there interrupts training.
        on_epoch: called after every epoch (after validation and the checkpoint) as
            ``on_epoch(trainer, record)`` with the epoch's numbers (see ``fit``).
    """

    def __init__(
        self, model: Module, optimizer: Any, loss: Any = None, train_loader: Any = None,
        val_loader: Any = None, schedule: Any = None, schedule_interval: str = "epoch",
        l2: float = 0.0, clip_norm: float | None = None,
        checkpoint: str | Path | None = None, meta: dict[str, Any] | None = None,
        groups: dict[str, dict[str, np.ndarray]] | None = None,
        progress: Callable[[Any, int, int], Any] | None = None,
        on_step: Callable[[Trainer, int, int, float], None] | None = None,
        on_epoch: Callable[[Trainer, dict[str, float]], None] | None = None,
    ) -> None:
        if schedule_interval not in ("epoch", "step"):
            raise ValueError(
                f"Trainer: schedule_interval must be 'epoch' or 'step', got {schedule_interval!r}"
            )
        if l2 < 0:
            raise ValueError(f"Trainer: l2 must be >= 0, got {l2}")
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError(f"Trainer: clip_norm must be positive or None, got {clip_norm}")
        self.model, self.optimizer = model, optimizer
        model.requires_input_grad_(False)  # the input is data: its gradient is never used
        self.loss = loss or CrossEntropyLoss()
        self.train_loader, self.val_loader = train_loader, val_loader
        self.schedule, self.schedule_interval = schedule, schedule_interval
        self.l2, self.clip_norm = l2, clip_norm
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.meta = dict(meta or {})
        self.groups = dict(groups or {})
        self.progress = progress
        self.on_step, self.on_epoch = on_step, on_epoch
        self.epoch = 0
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, np.ndarray] | None = None
        self.history: dict[str, list[float]] = {
            "train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": [],
            "lr": [], "epoch_seconds": [], "images_per_second": [], "step_loss": [],
        }
        self._weights = [p for n, p in model.named_parameters() if p.data.ndim >= 2]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One forward, backward and update on a batch.

        The update is skipped when the logits or the loss are not finite (``fit`` then
        stops); the loss is then NaN or infinite.

        Args:
            x: images (N, C, H, W) in the model's dtype.
            y: integer labels (N,).

        Returns:
            ``(loss, correct)``: the batch loss (with the L2 term) and the number of
            correct predictions.
        """
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model(x)  # (N, K)
        if not np.isfinite(logits).all():
            return math.nan, 0
        loss = float(self.loss(logits, y))
        if self.l2:
            loss += 0.5 * self.l2 * sum(float(np.vdot(p.data, p.data)) for p in self._weights)
        self.model.backward(self.loss.backward())
        if self.l2:
            for p in self._weights:
                p.grad += p.data.dtype.type(self.l2) * p.data
        if self.clip_norm is not None:
            clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if math.isfinite(loss):
            self.optimizer.step()
        return loss, int(np.sum(logits.argmax(axis=1) == y))

    def evaluate(self, loader: Iterable, confusion: bool = False) -> dict[str, Any]:
        """Mean loss (without the L2 term) and accuracy over a loader, in evaluation mode.

        Args:
            loader: yields ``(images, labels)`` batches.
            confusion: also count (true, predicted) class pairs.

        Returns:
            ``{"loss": float, "accuracy": float in [0, 1], "count": int}``, plus
            ``"confusion"``: (K, K) int64 counts (rows true, columns predicted) when asked.
        """
        self.model.eval()
        total_loss, correct, count = 0.0, 0, 0
        matrix = None
        for x, y in loader:
            logits = self.model(x)  # (N, K)
            predicted = logits.argmax(axis=1)
            total_loss += float(self.loss(logits, y)) * len(y)
            correct += int(np.sum(predicted == y))
            count += len(y)
            if confusion:
                k = logits.shape[1]
                counts = confusion_matrix(np.asarray(y, dtype=np.int64), predicted, k)
                matrix = counts if matrix is None else matrix + counts
        if count == 0:
            raise ValueError("Trainer.evaluate: the loader yielded no examples")
        result: dict[str, Any] = {"loss": total_loss / count, "accuracy": correct / count,
                                  "count": count}
        if confusion:
            result["confusion"] = matrix
        return result

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for ``x`` (N, C, H, W) in evaluation mode, computed batch by batch.

        Returns:
            Logits of shape (N, K).
        """
        self.model.eval()
        return np.concatenate(
            [self.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def fit(self, epochs: int, resume: str | Path | None = None) -> dict[str, list[float]]:
        """Train until ``epochs`` epochs are done (counting those of a resumed run).

        After each epoch the checkpoint (if any) is written, then ``on_epoch`` is called with
        ``{"epoch" (1-based), "train_loss", "train_accuracy", "val_loss", "val_accuracy"
        (NaN without a val_loader), "lr", "seconds", "images_per_second"}``.

        Args:
            epochs: the total number of epochs.
            resume: a checkpoint written by this trainer's configuration to continue from;
                training goes on from the start of the epoch after the one it holds.

        Returns:
            The history: per-epoch ``train_loss``, ``train_accuracy``, ``val_loss``,
            ``val_accuracy``, ``lr``, ``epoch_seconds``, ``images_per_second``, and the
            per-step ``step_loss``.

        Raises:
            TrainingDiverged: the loss became non-finite (the last checkpoint is kept).
        """
        if self.train_loader is None:
            raise ValueError("Trainer.fit: no train_loader was given")
        if resume is not None:
            self.load(resume)
        while self.epoch < epochs:
            record = self._run_epoch(epochs)
            if self.checkpoint is not None:
                self.save(self.checkpoint)
            if self.on_epoch is not None:
                self.on_epoch(self, record)
        return self.history

    def _diverged(self, loss: float, step: int) -> TrainingDiverged:
        kept = ("no checkpoint is written by this run" if self.checkpoint is None
                else f"the last good checkpoint {self.checkpoint} is unchanged"
                if self.checkpoint.exists()
                else f"no checkpoint had been written yet to {self.checkpoint}")
        return TrainingDiverged(
            f"non-finite loss ({loss}) at epoch {self.epoch + 1}, step {step + 1}: training "
            f"stopped; {kept}. Try a lower learning rate or gradient clipping (clip_norm)."
        )

    def _run_epoch(self, epochs: int) -> dict[str, float]:
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)
        batches = self.train_loader
        if self.progress is not None:
            batches = self.progress(self.train_loader, self.epoch, epochs)
        total = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        start = last_postfix = time.perf_counter()
        total_loss, correct, count = 0.0, 0, 0
        try:
            for step, (x, y) in enumerate(batches):
                loss, ok = self.train_step(x, y)
                if not math.isfinite(loss):
                    raise self._diverged(loss, step)
                self.history["step_loss"].append(loss)
                total_loss += loss * len(y)
                correct += ok
                count += len(y)
                if self.schedule is not None and self.schedule_interval == "step":
                    self.schedule.step()
                now = time.perf_counter()
                if self.progress is not None and (
                        now - last_postfix >= POSTFIX_SECONDS or step + 1 == total):
                    last_postfix = now
                    batches.set_postfix({"loss": f"{total_loss / count:.4f}",
                                         "acc": f"{correct / count:.3f}",
                                         "img/s": f"{count / max(now - start, 1e-9):.0f}"})
                if self.on_step is not None:
                    self.on_step(self, self.epoch, step, loss)
        finally:
            if hasattr(batches, "close"):
                batches.close()
        seconds = time.perf_counter() - start
        h = self.history
        record = {"epoch": self.epoch + 1, "train_loss": total_loss / max(count, 1),
                  "train_accuracy": correct / max(count, 1),
                  "lr": float(self.optimizer.param_groups[0]["lr"]), "seconds": seconds,
                  "images_per_second": count / max(seconds, 1e-9),
                  "val_loss": math.nan, "val_accuracy": math.nan}
        h["train_loss"].append(record["train_loss"])
        h["train_accuracy"].append(record["train_accuracy"])
        h["lr"].append(record["lr"])
        h["epoch_seconds"].append(seconds)
        h["images_per_second"].append(record["images_per_second"])
        if self.schedule is not None and self.schedule_interval == "epoch":
            self.schedule.step()
        if self.val_loader is not None:
            result = self.evaluate(self.val_loader)
            record["val_loss"], record["val_accuracy"] = result["loss"], result["accuracy"]
            h["val_loss"].append(result["loss"])
            h["val_accuracy"].append(result["accuracy"])
            if result["accuracy"] > self.best_accuracy:
                self.best_accuracy = result["accuracy"]
                self.best_epoch = self.epoch + 1
                self.best_state = self.model.state_dict()
        self.epoch += 1
        return record

    def restore_best(self) -> None:
        """Load the weights of the epoch with the best validation accuracy (``best_epoch``)."""
        if self.best_state is None:
            raise ValueError("Trainer.restore_best: no validation result has been recorded")
        self.model.load_state_dict(self.best_state)

    def save(self, path: str | Path) -> None:
        """Write model, optimizer, schedule, epoch, RNG states, history and best weights.

        The file is a ``glasscnn.checkpoint`` (atomic write): the current weights under
        ``model/``, the best-validation weights under ``best/``, the optimizer's arrays
        under ``training/``, this trainer's ``groups`` and ``meta``, and the rest in
        ``meta["training"]``.
        """
        arrays: dict[str, np.ndarray] = {}
        training = {
            "epoch": self.epoch,
            "history": self.history,
            "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "optimizer": flatten(self.optimizer.state_dict(), arrays, "optimizer"),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "generators": {name: g.bit_generator.state
                           for name, g in _generators(self.model).items()},
        }
        groups = dict(self.groups)
        groups["training"] = arrays
        if self.best_state is not None:
            groups["best"] = self.best_state
        save_checkpoint(path, Checkpoint({**self.meta, "training": training},
                                         self.model.state_dict(), groups))

    def load(self, path: str | Path) -> None:
        """Restore everything ``save`` wrote, so that training continues bit for bit.

        Raises:
            ValueError: the checkpoint holds no training state (e.g. weights only).
        """
        ckpt = load_checkpoint(path)
        if "training" not in ckpt.meta:
            raise ValueError(f"Trainer.load: {path} holds no training state (was it written "
                             "by Trainer.save?)")
        self.model.load_state_dict(ckpt.state_dict)
        training = ckpt.meta["training"]
        arrays = ckpt.groups.get("training", {})
        self.optimizer.load_state_dict(unflatten(training["optimizer"], arrays))
        if self.schedule is not None and training["schedule"] is not None:
            self.schedule.load_state_dict(training["schedule"])
        generators = training["generators"]
        for name, g in _generators(self.model).items():
            if name not in generators:
                raise KeyError(f"Trainer.load: {path} has no RNG state for layer {name!r}; "
                               f"it has {sorted(generators)}")
            g.bit_generator.state = generators[name]
        self.epoch = training["epoch"]
        self.history = training["history"]
        self.best_accuracy = training["best_accuracy"]
        self.best_epoch = training.get("best_epoch", 0)
        self.best_state = ckpt.groups.get("best")
