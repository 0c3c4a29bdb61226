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


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def _generators(model: Module) -> dict[str, np.random.Generator]:
    """Every ``numpy.random.Generator`` held by a layer (dropout masks), by module name."""
    return {name: m.rng for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)}


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
            the seed recipes regularise; its gradient ``l2 · W`` is added.
        clip_norm: clip gradients to this global L2 norm, or ``None``.
        checkpoint: path of the checkpoint written after every epoch (atomically), or ``None``.
        meta: extra JSON metadata saved in the checkpoint (model name and kwargs, classes).
        groups: extra arrays saved in the checkpoint (e.g. ``{"normalizer": {...}}``).
        progress: ``None`` for silence, else a callable ``progress(loader, epoch, epochs)``
            returning an iterable wrapper with ``set_postfix(dict)`` (e.g. a tqdm factory).
    """

    def __init__(
        self, model: Module, optimizer: Any, loss: Any = None, train_loader: Any = None,
        val_loader: Any = None, schedule: Any = None, schedule_interval: str = "epoch",
        l2: float = 0.0, clip_norm: float | None = None,
        checkpoint: str | Path | None = None, meta: dict[str, Any] | None = None,
        groups: dict[str, dict[str, np.ndarray]] | None = None,
        progress: Callable[[Any, int, int], Any] | None = None,
    ) -> None:
        if schedule_interval not in ("epoch", "step"):
            raise ValueError(
                f"Trainer: schedule_interval must be 'epoch' or 'step', got {schedule_interval!r}"
            )
        self.model, self.optimizer = model, optimizer
        self.loss = loss or CrossEntropyLoss()
        self.train_loader, self.val_loader = train_loader, val_loader
        self.schedule, self.schedule_interval = schedule, schedule_interval
        self.l2, self.clip_norm = l2, clip_norm
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.meta = dict(meta or {})
        self.groups = dict(groups or {})
        self.progress = progress
        self.epoch = 0
        self.best_accuracy = -1.0
        self.best_state: dict[str, np.ndarray] | None = None
        self.history: dict[str, list[float]] = {
            "train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": [],
            "lr": [], "epoch_seconds": [], "images_per_second": [], "step_loss": [],
        }
        self._weights = [p for n, p in model.named_parameters() if p.data.ndim >= 2]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One forward, backward and update on a batch.

        Args:
            x: images (N, C, H, W) in the model's dtype.
            y: integer labels (N,).

        Returns:
            ``(loss, correct)``: the batch loss (with the L2 term) and the number of
            correct predictions.
        """
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model(x)
        loss = float(self.loss(logits, y))
        if self.l2:
            loss += 0.5 * self.l2 * sum(float(np.vdot(p.data, p.data)) for p in self._weights)
        self.model.backward(self.loss.backward())
        if self.l2:
            for p in self._weights:
                p.grad += self.l2 * p.data
        if self.clip_norm is not None:
            clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if math.isfinite(loss):
            self.optimizer.step()
        return loss, int(np.sum(logits.argmax(axis=1) == y))

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Mean loss and accuracy over a loader, in evaluation mode.

        Returns:
            ``{"loss": ..., "accuracy": ...}`` with accuracy in [0, 1].
        """
        self.model.eval()
        total_loss, correct, count = 0.0, 0, 0
        for x, y in loader:
            logits = self.model(x)
            total_loss += float(self.loss(logits, y)) * len(y)
            correct += int(np.sum(logits.argmax(axis=1) == y))
            count += len(y)
        if count == 0:
            raise ValueError("Trainer.evaluate: the loader yielded no examples")
        return {"loss": total_loss / count, "accuracy": correct / count}

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

        Args:
            epochs: the total number of epochs.
            resume: a checkpoint written by this trainer's configuration to continue from.

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
            self._run_epoch(epochs)
            if self.checkpoint is not None:
                self.save(self.checkpoint)
        return self.history

    def _run_epoch(self, epochs: int) -> None:
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)
        batches = self.train_loader
        if self.progress is not None:
            batches = self.progress(self.train_loader, self.epoch, epochs)
        start = time.perf_counter()
        total_loss, correct, count = 0.0, 0, 0
        for step, (x, y) in enumerate(batches):
            loss, ok = self.train_step(x, y)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"non-finite loss ({loss}) at epoch {self.epoch + 1}, step {step + 1}; "
                    f"the last good checkpoint ({self.checkpoint}) is unchanged"
                )
            self.history["step_loss"].append(loss)
            total_loss += loss * len(y)
            correct += ok
            count += len(y)
            if self.schedule is not None and self.schedule_interval == "step":
                self.schedule.step()
            if self.progress is not None:
                elapsed = time.perf_counter() - start
                batches.set_postfix({"loss": f"{total_loss / count:.4f}",
                                     "acc": f"{correct / count:.3f}",
                                     "img/s": f"{count / max(elapsed, 1e-9):.0f}"})
        seconds = time.perf_counter() - start
        h = self.history
        h["train_loss"].append(total_loss / max(count, 1))
        h["train_accuracy"].append(correct / max(count, 1))
        h["lr"].append(float(self.optimizer.param_groups[0]["lr"]))
        h["epoch_seconds"].append(seconds)
        h["images_per_second"].append(count / max(seconds, 1e-9))
        if self.schedule is not None and self.schedule_interval == "epoch":
            self.schedule.step()
        if self.val_loader is not None:
            result = self.evaluate(self.val_loader)
            h["val_loss"].append(result["loss"])
            h["val_accuracy"].append(result["accuracy"])
            if result["accuracy"] > self.best_accuracy:
                self.best_accuracy = result["accuracy"]
                self.best_state = self.model.state_dict()
        self.epoch += 1

    def restore_best(self) -> None:
        """Load the weights of the epoch with the best validation accuracy."""
        if self.best_state is None:
            raise ValueError("Trainer.restore_best: no validation result has been recorded")
        self.model.load_state_dict(self.best_state)

    def save(self, path: str | Path) -> None:
        """Write model, optimizer, schedule, epoch, RNG states and history to ``path``."""
        arrays: dict[str, np.ndarray] = {}
        training = {
            "epoch": self.epoch,
            "history": self.history,
            "best_accuracy": self.best_accuracy,
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
        """Restore everything ``save`` wrote, so that training continues bit for bit."""
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt.state_dict)
        training = ckpt.meta["training"]
        arrays = ckpt.groups.get("training", {})
        self.optimizer.load_state_dict(unflatten(training["optimizer"], arrays))
        if self.schedule is not None and training["schedule"] is not None:
            self.schedule.load_state_dict(training["schedule"])
        for name, g in _generators(self.model).items():
            g.bit_generator.state = training["generators"][name]
        self.epoch = training["epoch"]
        self.history = training["history"]
        self.best_accuracy = training["best_accuracy"]
        self.best_state = ckpt.groups.get("best")
