"""One-file checkpoints: a model's weights, how to rebuild it, and whatever training needs.

A checkpoint is an ``.npz`` archive (read with ``allow_pickle=False``) holding

- ``model/<key>``: the model's state_dict, PyTorch keys;
- ``<group>/<name>``: any other named arrays (``normalizer/mean``, ``optimizer/...``);
- ``meta.json``: a uint8 array of UTF-8 JSON: ``model`` (zoo name), ``model_kwargs``,
  ``input_shape`` (C, H, W), ``classes``, and anything else the writer adds.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then
renamed over the target, so an interrupted save never leaves a half-written checkpoint
(and the next save removes the temporary a killed one left). Reads refuse, with one
``CheckpointError`` naming the file, anything truncated, corrupt or oversized.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.io.atomic import atomic_write
from glasscnn.io.errors import CheckpointError, file_errors
from glasscnn.io.npz import load_npz
from glasscnn.io.ziparchive import ZipArchive
from glasscnn.nn import Module
from glasscnn.nn.init import default_rng

__all__ = ["FORMAT", "MAX_INPUT_VALUES", "Checkpoint", "atomic_write", "build_model_for",
           "is_checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "glasscnn-checkpoint"
MAX_INPUT_VALUES = 1 << 26


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes:
        meta: the JSON metadata (``model``, ``model_kwargs``, ``input_shape``, ``classes``...).
        state_dict: the model's arrays by PyTorch key.
        groups: the other arrays, ``{group: {name: array}}``.
        source: the file it was read from (for messages; empty for a new one).
    """

    meta: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    groups: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    source: str = ""

    def build_model(self, **overrides: Any) -> Module:
        """Rebuild the zoo model named in ``meta`` and load the weights into it.

        The model is built with ``build_model_for``, so metadata that would make a model
        larger than the weights in the file is refused before it is allocated.

        Args:
            **overrides: builder arguments that replace ``meta["model_kwargs"]`` entries.

        Returns:
            The model, in evaluation mode.

        Raises:
            CheckpointError (a ValueError): no model named, arguments the builder refuses,
                or weights that do not fit the model; the message names the file.
        """
        source = self.source or "checkpoint"
        if "model" not in self.meta:
            raise CheckpointError(f"{source}: meta.json names no model; pass --model")
        kwargs = {**self.meta.get("model_kwargs", {}), **overrides}
        model = build_model_for(self.meta["model"], kwargs, self.state_dict, source)
        try:
            model.load_state_dict(self.state_dict)
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{source}: the weights do not fit the model "
                                  f"{self.meta['model']}: {err}") from None
        model.eval()
        return model


class _BudgetedGenerator(np.random.Generator):
    """A generator sharing another's stream that refuses to draw more than ``budget`` values."""

    def __init__(self, bit_generator: np.random.BitGenerator, budget: int, source: str,
                 name: str, kwargs: dict[str, Any]) -> None:
        super().__init__(bit_generator)
        self.budget: int | None = budget
        self.total = budget
        self.source = source
        self.name = name
        self.kwargs = kwargs

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None) -> Any:
        if self.budget is not None:
            count = math.prod(size) if isinstance(size, tuple | list) else (
                1 if size is None else int(size))
            if count > self.budget:
                raise CheckpointError(
                    f"{self.source}: these weights do not fit the model {self.name} with "
                    f"{self.kwargs!r:.300}: it would hold more parameters than the "
                    f"{self.total} values in the file (refused before allocating it)"
                )
            self.budget -= count
        return super().uniform(low, high, size)


def build_model_for(name: str, kwargs: dict[str, Any], weights: dict[str, np.ndarray],
                    source: str) -> Module:
    """Build zoo model ``name`` for ``weights``, refusing any weight the file cannot fill.

    Arguments read from a file (``num_classes``, ``input_size``, ``depth``...) decide how
    much the model allocates. Every layer draws its initial weights from a generator, and
    here that generator refuses, before the array is made, a draw that would take the
    model past the number of values in ``weights``: such a model could not load them
    anyway. The draws come from the generator the model would otherwise use (``rng`` in
    ``kwargs``, else the module-wide one), so the model is the same as ``models.get``'s.

    Args:
        name: a zoo model name.
        kwargs: its builder arguments.
        weights: the state_dict the model is built to hold.
        source: the file, for messages.

    Returns:
        The model (weights not yet loaded).

    Raises:
        CheckpointError (a ValueError): unknown model, arguments the builder refuses, or
            a model larger than ``weights``.
    """
    base = kwargs.get("rng") or default_rng()
    total = sum(int(np.size(v)) for v in weights.values())
    rng = _BudgetedGenerator(base.bit_generator, total, source, name, kwargs)
    try:
        return models.get(name, **{**kwargs, "rng": rng})
    except CheckpointError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"{source}: cannot build model {name!r} with "
                              f"{kwargs!r:.300}: {err}") from None
    finally:
        rng.budget = None


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` (an ``.npz``) atomically.

    Args:
        path: destination file (written with the umask's permissions).
        checkpoint: meta, model state_dict and other array groups.
    """
    arrays: dict[str, np.ndarray] = {f"model/{k}": np.asarray(v)
                                     for k, v in checkpoint.state_dict.items()}
    for group, items in checkpoint.groups.items():
        if group in ("model", "meta.json") or "/" in group:
            raise ValueError(f"save_checkpoint: reserved or invalid group name {group!r}")
        arrays.update({f"{group}/{k}": np.asarray(v) for k, v in items.items()})
    meta = {"format": FORMAT, "version": 1, **checkpoint.meta}
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Check the types and sizes of the metadata entries that glasscnn acts on."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: meta.json is not a JSON object")

    def bad(key: str, want: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: meta.json entry {key!r} must be {want}, "
                               f"got {meta[key]!r:.200}")

    if "model" in meta and not isinstance(meta["model"], str):
        raise bad("model", "a model name")
    if "model_kwargs" in meta and not isinstance(meta["model_kwargs"], dict):
        raise bad("model_kwargs", "a JSON object")
    if "classes" in meta and meta["classes"] is not None and not (
        isinstance(meta["classes"], list) and all(isinstance(c, str) for c in meta["classes"])
    ):
        raise bad("classes", "a list of names")
    shape = meta.get("input_shape")
    if shape is not None and not (
        isinstance(shape, list) and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        and math.prod(shape) <= MAX_INPUT_VALUES
    ):
        raise bad("input_shape", f"[C, H, W], positive, at most {MAX_INPUT_VALUES} values")
    return meta


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a glasscnn checkpoint (an ``.npz`` with a ``meta.json`` entry).

    Only the archive's directory is read.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): a zip archive that is truncated or corrupt, so that
            what it holds cannot be told; the message names the file.
    """
    path = Path(path)
    with file_errors(path, ".npz archive"), ZipArchive(path, ".npz") as archive:
        return archive.zip is not None and "meta.json.npy" in archive.names


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    The file is read as ``load_npz`` reads any ``.npz`` (nothing unpickled, sizes checked
    before allocating, CRC-32 verified), and ``meta.json`` is checked: ``model`` a name,
    ``model_kwargs`` an object, ``classes`` a list of names, ``input_shape`` three positive
    ints of at most ``MAX_INPUT_VALUES`` values.

    Args:
        path: the ``.npz`` file.

    Returns:
        A ``Checkpoint`` (its ``source`` is ``path``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): not a readable npz, truncated or corrupt, no or a
            malformed ``meta.json``; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    with file_errors(path, "glasscnn checkpoint"):
        arrays = load_npz(path)
        if "meta.json" not in arrays:
            raise CheckpointError(
                f"checkpoint {path}: no meta.json entry; is it a glasscnn checkpoint?"
            )
        raw = arrays.pop("meta.json")
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise CheckpointError(f"checkpoint {path}: meta.json is not a byte array")
        try:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except RecursionError:
            raise CheckpointError(f"checkpoint {path}: meta.json is nested too deeply") from None
        except ValueError as err:
            raise CheckpointError(
                f"checkpoint {path}: meta.json is not valid JSON: {err!s:.200}"
            ) from None
        meta = _check_meta(meta, path)
        state_dict: dict[str, np.ndarray] = {}
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            group, _, name = key.partition("/")
            if group == "model":
                state_dict[name] = value
            else:
                groups.setdefault(group, {})[name] = value
        return Checkpoint(meta=meta, state_dict=state_dict, groups=groups, source=str(path))
