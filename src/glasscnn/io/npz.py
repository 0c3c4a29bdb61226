"""NumPy ``.npz`` state_dicts: one ``.npy`` member per key, never pickled."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.io.torch_pickle import CheckpointError


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a flat ``.npz`` of arrays with ``allow_pickle=False``.

    Args:
        path: the file (as written by ``np.savez`` or ``save_npz``).

    Returns:
        ``{key: array}`` in the archive's order.

    Raises:
        CheckpointError (a ValueError): not an npz, truncated or corrupt, or a member
            holds Python objects (which would need pickle); the message names the file.
    """
    path = Path(path)
    errors = (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK":
        raise CheckpointError(f"{path}: not an .npz (zip) archive (starts with {head!r})")
    try:
        archive = np.load(path, allow_pickle=False)
    except errors as exc:
        raise CheckpointError(f"{path}: cannot read as .npz: {exc}") from exc
    with archive:
        try:
            return {key: archive[key] for key in archive.files}
        except errors as exc:
            raise CheckpointError(
                f"{path}: cannot read as .npz (truncated or corrupt?): {exc}"
            ) from exc


def save_npz(state_dict: Mapping[str, Any], path: str | os.PathLike, compress: bool = False
             ) -> None:
    """Write ``{key: array}`` as an ``.npz`` that ``np.load(path, allow_pickle=False)`` reads.

    Args:
        state_dict: string keys (e.g. ``conv1.weight``) to arrays of a numeric or bool dtype.
        path: destination; written as given (no ``.npz`` appended).
        compress: deflate the members (``np.savez_compressed`` style).

    Raises:
        ValueError: a key is not a str or a value is an object array.
    """
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    arrays = {}
    for key, value in state_dict.items():
        array = np.asarray(value)
        if not isinstance(key, str) or array.dtype.hasobject:
            raise ValueError(f"save_npz: cannot store {key!r} of dtype {array.dtype}")
        arrays[key] = array
    with zipfile.ZipFile(path, "w", compression=mode, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
