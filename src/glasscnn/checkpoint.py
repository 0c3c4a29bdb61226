"""One-file checkpoints: a model's weights, how to rebuild it, and whatever training needs.

A checkpoint is an ``.npz`` archive (read with ``allow_pickle=False``) holding

- ``model/<key>``: the model's state_dict, PyTorch keys;
- ``<group>/<name>``: any other named arrays (``normalizer/mean``, ``optimizer/...``);
- ``meta.json``: a uint8 array of UTF-8 JSON: ``model`` (zoo name), ``model_kwargs``,
  ``input_shape`` (C, H, W), ``classes``, and anything else the writer adds.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then
renamed over the target, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.nn import Module

FORMAT = "glasscnn-checkpoint"


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes:
        meta: the JSON metadata (``model``, ``model_kwargs``, ``input_shape``, ``classes``...).
        state_dict: the model's arrays by PyTorch key.
        groups: the other arrays, ``{group: {name: array}}``.
    """

    meta: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    groups: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def build_model(self, **overrides: Any) -> Module:
        """Rebuild the zoo model named in ``meta`` and load the weights into it."""
        if "model" not in self.meta:
            raise ValueError("checkpoint: meta.json names no model; pass --model")
        kwargs = {**self.meta.get("model_kwargs", {}), **overrides}
        model = models.get(self.meta["model"], **kwargs)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync, then rename.

    Args:
        path: the final file name.
        write: a callable receiving a binary file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` (an ``.npz``) atomically.

    Args:
        path: destination file.
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


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Args:
        path: the ``.npz`` file.

    Returns:
        A ``Checkpoint``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable npz, or no ``meta.json`` / ``model/`` entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"checkpoint {path}: not a readable .npz archive ({err})") from None
    if "meta.json" not in arrays:
        raise ValueError(f"checkpoint {path}: no meta.json entry; is it a glasscnn checkpoint?")
    meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    state_dict: dict[str, np.ndarray] = {}
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group == "model":
            state_dict[name] = value
        else:
            groups.setdefault(group, {})[name] = value
    return Checkpoint(meta=meta, state_dict=state_dict, groups=groups)
