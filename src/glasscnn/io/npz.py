"""NumPy ``.npz`` state_dicts: one ``.npy`` member per key, never pickled."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.io.errors import CheckpointError, file_errors
from glasscnn.io.ziparchive import ZipArchive


def load_npz(path: str | os.PathLike, verify_crc: bool = True) -> dict[str, np.ndarray]:
    """Read a flat ``.npz`` of arrays, never unpickling anything.

    Each member's ``.npy`` header is checked against the member's size before its array
    is allocated, deflated members may expand to at most 32 times the file's size (plus
    1 MiB), and each member's CRC-32 is verified.

    Args:
        path: the file (as written by ``np.savez``, ``np.savez_compressed`` or ``save_npz``).
        verify_crc: check every member's CRC-32 (about 1 s per GB).

    Returns:
        ``{key: array}`` in the archive's order (the key is the member name without
        ``.npy``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): not an npz, truncated or corrupt, a member that is
            not an ``.npy`` array or holds Python objects (which would need pickle), or a
            declared shape larger than the member; the message names the file.
    """
    path = Path(path)
    with file_errors(path, ".npz archive"), ZipArchive(path, ".npz", verify_crc) as archive:
        archive.require_zip()
        out: dict[str, np.ndarray] = {}
        for info in archive.infos:
            if not info.filename.endswith(".npy"):
                raise CheckpointError(
                    f"{path}: member {info.filename} is not an .npy array; not an .npz of arrays"
                )
            out[info.filename[:-4]] = archive.read_npy(info)
        return out


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
