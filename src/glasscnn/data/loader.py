"""``DataLoader``: mini-batches of NumPy arrays, each epoch a permutation of the data set."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from glasscnn.data.datasets import Dataset


class DataLoader:
    """Iterate over a ``Dataset`` in mini-batches of (images, labels).

    Every epoch visits each example exactly once (a permutation, no replacement). The
    order of epoch ``e`` depends only on ``(seed, e)``, and so does the generator handed
    to a random ``transform`` for each batch: ``state_dict()`` (seed, epoch, next batch)
    is all a trainer must save to resume bitwise identically.

    Iterating runs the current epoch from its next batch; when the epoch is exhausted
    the epoch counter advances. Breaking out early leaves the epoch unfinished, and the
    next iteration starts it again from batch 0 (the same order). Without shuffling,
    batches are views of the data set's arrays (contiguous slices, no copy).

    Args:
        dataset: a ``Dataset`` (or any object with ``images`` and ``labels`` arrays).
        batch_size: examples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch.
        drop_last: skip the last, incomplete batch.
        seed: seed of the shuffling and of the transforms' generators; None draws one.
        transform: callable applied to each batch's images; if it has ``random = True``
            it is called as ``transform(images, rng=generator)``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = 0,
        transform: Callable[..., np.ndarray] | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if len(dataset.images) != len(dataset.labels):
            raise ValueError(f"DataLoader: {len(dataset.images)} images but "
                             f"{len(dataset.labels)} labels")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.transform = transform
        self.epoch = 0
        self._next_batch = 0

    def __len__(self) -> int:
        """Batches per epoch: ceil(N / batch_size), or floor with ``drop_last``."""
        n = len(self.dataset.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at batch 0 of ``epoch``."""
        if epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch, self._next_batch = int(epoch), 0

    def order(self, epoch: int | None = None) -> np.ndarray | None:
        """The permutation of example indices for ``epoch`` (default: current); None if not
        shuffling."""
        if not self.shuffle:
            return None
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset.labels))

    def _batch_rng(self, epoch: int, batch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, batch, 1])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (images (B, C, H, W), labels (B,) int64) for the rest of the current epoch."""
        images, labels = self.dataset.images, self.dataset.labels
        epoch, start, count = self.epoch, self._next_batch, len(self)
        perm = self.order(epoch)
        random_transform = getattr(self.transform, "random", False)
        for b in range(start, count):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(labels))
            if perm is None:
                x, y = images[lo:hi], labels[lo:hi]
            else:
                idx = perm[lo:hi]
                x, y = images[idx], labels[idx]
            if self.transform is not None:
                x = (self.transform(x, rng=self._batch_rng(epoch, b)) if random_transform
                     else self.transform(x))
            self._next_batch = b + 1
            yield x, y
        self.epoch, self._next_batch = epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch", "batch" (next batch index), "num_examples", "batch_size"}``.

        Taken after the last batch of an epoch, it already points at batch 0 of the next.
        """
        epoch, batch = self.epoch, self._next_batch
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "batch": batch,
                "num_examples": len(self.dataset.labels), "batch_size": self.batch_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()``: the next iteration continues at that batch.

        Raises:
            KeyError: a key is missing.
            ValueError: the state was saved for a different data set size or batch size.
        """
        for key in ("seed", "epoch", "batch", "num_examples", "batch_size"):
            if key not in state:
                raise KeyError(f"DataLoader.load_state_dict: missing key {key!r}; "
                               f"got {sorted(state)}")
        saved = (int(state["num_examples"]), int(state["batch_size"]))
        if saved != (len(self.dataset.labels), self.batch_size):
            raise ValueError(
                f"DataLoader.load_state_dict: state is for {saved[0]} examples in batches of "
                f"{saved[1]}, this loader has {len(self.dataset.labels)} in batches of "
                f"{self.batch_size}"
            )
        batch = int(state["batch"])
        if not 0 <= batch < len(self):
            raise ValueError(
                f"DataLoader.load_state_dict: batch {batch} outside 0..{len(self) - 1}"
            )
        self.seed, self.epoch, self._next_batch = int(state["seed"]), int(state["epoch"]), batch
