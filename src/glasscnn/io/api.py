"""Entry points: load and save a state_dict by file extension, load a file into a Module."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.io.errors import CheckpointError
from glasscnn.io.mapping import MatchReport, match_report, remap_keys
from glasscnn.io.npz import load_npz, save_npz
from glasscnn.io.safetensors import load_safetensors, save_safetensors
from glasscnn.io.torch_pickle import load_torch, save_torch
from glasscnn.nn.module import Module, Parameter

FORMATS = {".npz": "npz", ".pth": "torch", ".pt": "torch", ".safetensors": "safetensors"}


class CheckpointMismatchError(KeyError, CheckpointError):
    """A checkpoint's keys or shapes do not fit the model; ``report`` says how.

    A ``KeyError`` (state_dict keys) and a ``CheckpointError`` (so a ``ValueError``) at
    once, so any of these ``except`` clauses catches it. Its message lists every key with
    its shape.
    """

    def __init__(self, message: str, report: MatchReport) -> None:
        super().__init__(message)
        self.report = report

    def __str__(self) -> str:
        return str(self.args[0])


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format of ``path``: ``"npz"``, ``"torch"`` or ``"safetensors"``.

    Args:
        path: a file name; its extension decides (``.npz``, ``.pth``/``.pt``,
            ``.safetensors``), case-insensitively.
        fmt: one of the three names, to override the extension.

    Raises:
        CheckpointError (a ValueError): an extension that names no format.
        ValueError: an unknown format name.
    """
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise ValueError(f"unknown checkpoint format {fmt!r}; use one of "
                             f"{sorted(set(FORMATS.values()))}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CheckpointError(
            f"{path}: cannot tell the checkpoint format from the extension {suffix!r}; use "
            f"one of {sorted(FORMATS)} or pass format="
        )
    return FORMATS[suffix]


def load_state_dict(path: str | os.PathLike, format: str | None = None, key: str | None = None
                    ) -> dict[str, np.ndarray]:
    """Load ``{key: array}`` from an ``.npz``, ``.pth``/``.pt`` or ``.safetensors`` file.

    PyTorch files are read without torch and without running anything from the pickle.

    Args:
        path: the checkpoint.
        format: ``"npz"``, ``"torch"`` or ``"safetensors"`` to override the extension.
        key: for a torch checkpoint dict, the entry that holds the state_dict (default:
            ``state_dict``, ``model_state_dict`` or ``model``, or the file is one).

    Returns:
        A dict from key (e.g. ``conv1.weight``) to array, in the file's order.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError; ``UnsafePickleError`` for a forbidden pickle
            global): unknown extension, wrong format, truncated, corrupt or oversized;
            the message names the file. Nothing else is raised for a bad file.
        ValueError: ``key`` given for a format other than torch.
    """
    fmt = format_of(path, format)
    if key is not None and fmt != "torch":
        raise ValueError(f"load_state_dict: key= applies to torch checkpoints, not {path}")
    if fmt == "npz":
        return load_npz(path)
    if fmt == "safetensors":
        return load_safetensors(path)
    return load_torch(path, key=key)


def _arrays(state_dict: Module | Mapping[str, Any]) -> dict[str, np.ndarray]:
    if isinstance(state_dict, Module):
        return dict(state_dict.state_dict())
    return {k: np.asarray(v.data if isinstance(v, Parameter) else v)
            for k, v in state_dict.items()}


def save_state_dict(state_dict: Module | Mapping[str, Any], path: str | os.PathLike,
                    format: str | None = None) -> None:
    """Save ``{key: array}`` (or a Module's state_dict) in the format of ``path``'s extension.

    Args:
        state_dict: mapping from key to array (or Parameter), or a Module.
        path: ``.npz`` (``np.load(allow_pickle=False)`` reads it), ``.pth``/``.pt``
            (``torch.load(weights_only=True)`` reads it) or ``.safetensors``.
        format: ``"npz"``, ``"torch"`` or ``"safetensors"`` to override the extension.

    Raises:
        ValueError: unknown extension, or a dtype the format cannot store.
    """
    fmt = format_of(path, format)
    arrays = _arrays(state_dict)
    if fmt == "npz":
        save_npz(arrays, path)
    elif fmt == "safetensors":
        save_safetensors(arrays, path)
    else:
        save_torch(arrays, path)


def load_into(
    model: Module,
    source: str | os.PathLike | Mapping[str, Any],
    strict: bool = True,
    strip_prefix: str | None = None,
    add_prefix: str | None = None,
    rename: Mapping[str, str] | Callable[[str], str] | None = None,
    key: str | None = None,
) -> MatchReport:
    """Load a checkpoint file (or a state_dict) into a Module, cast to the model's dtypes.

    Keys are first remapped (``remap_keys``: strip ``strip_prefix``, apply ``rename``,
    add ``add_prefix``), then matched by name to the model's parameters and buffers.

    Args:
        model: the glasscnn Module to fill in place.
        source: a checkpoint path (any format of ``load_state_dict``) or ``{key: array}``.
        strict: if true, a key missing from the checkpoint or not in the model is an error;
            if false, matching keys are loaded and the others left (see the report).
        strip_prefix, add_prefix, rename: key remapping, as in ``remap_keys``.
        key: for a torch checkpoint dict, the entry holding the state_dict.

    Returns:
        The ``MatchReport`` (matched, missing, unexpected keys with shapes).

    Raises:
        CheckpointMismatchError (KeyError and ValueError): a shape differs (always), or a
            key is missing or unexpected (when ``strict``); every such key is listed with
            its shapes and nothing is loaded.
    """
    if isinstance(source, Mapping):
        name = "state_dict"
        state_dict = dict(source)
    else:
        name = str(source)
        state_dict = load_state_dict(source, key=key)
    state_dict = remap_keys(state_dict, strip_prefix, add_prefix, rename)
    report = match_report(model, state_dict)
    if report.mismatched or (strict and not report.ok):
        raise CheckpointMismatchError(
            f"{type(model).__name__}: checkpoint {name} does not fit the model "
            f"(strict={strict}); nothing was loaded\n{report}", report,
        )
    model.load_state_dict({k: state_dict[k] for k in report.matched}, strict=False)
    return report
