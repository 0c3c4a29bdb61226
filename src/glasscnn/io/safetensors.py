"""The safetensors format, read and written directly (no ``safetensors`` package needed).

Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON, then the
byte buffer. The JSON maps each tensor name to ``{"dtype": "F32", "shape": [..],
"data_offsets": [begin, end]}`` (offsets relative to the buffer, which the tensors cover
without holes or overlaps, little-endian, C order), plus an optional ``"__metadata__"``
mapping of strings to strings.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.io.errors import CheckpointError, file_errors, shape_nbytes

MAX_HEADER_BYTES = 100_000_000

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items() if code != "BF16"}


def _read_header(fh: Any, path: Path, size: int) -> tuple[dict[str, Any], int]:
    """Parse and check the JSON header; return it and the byte offset of the buffer."""
    raw = fh.read(8)
    if len(raw) != 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
    (length,) = struct.unpack("<Q", raw)
    if length > MAX_HEADER_BYTES or 8 + length > size:
        raise CheckpointError(
            f"{path}: safetensors header length {length} does not fit a {size}-byte file "
            "(truncated or not a safetensors file)"
        )
    text = fh.read(length)
    if len(text) != length:
        raise CheckpointError(f"{path}: truncated safetensors header")
    if text.count(b"[") + text.count(b"{") > length // 16 + 1024:
        raise CheckpointError(
            f"{path}: safetensors header holds more lists and objects than a header of "
            f"{length} bytes can need (nested too deeply?)"
        )
    try:
        header = json.loads(text.decode("utf-8"))
    except RecursionError:
        raise CheckpointError(f"{path}: safetensors header is nested too deeply") from None
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: safetensors header is not valid JSON: {exc!s:.200}"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    )):
        raise CheckpointError(f"{path}: safetensors __metadata__ must map strings to strings")
    return header, 8 + length


def _check_entry(path: Path, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    """Validate one tensor entry; return dtype code, shape, begin, end."""
    ok = (
        isinstance(entry, dict) and entry.get("dtype") in _DTYPES
        and isinstance(entry.get("shape"), list)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry["shape"])
        and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in entry["data_offsets"])
    )
    if not ok:
        raise CheckpointError(
            f"{path}: bad safetensors entry {name!r}: {entry!r:.200} (dtype one of "
            f"{sorted(_DTYPES)}, shape a list of ints, data_offsets [begin, end])"
        )
    shape = tuple(entry["shape"])
    begin, end = entry["data_offsets"]
    nbytes = shape_nbytes(shape, _DTYPES[entry["dtype"]].itemsize)
    if nbytes is None:
        raise CheckpointError(
            f"{path}: safetensors entry {name!r} has shape {list(shape)!s:.200}, too large "
            "for any array"
        )
    if begin < 0 or end - begin != nbytes:
        raise CheckpointError(
            f"{path}: safetensors entry {name!r} ({entry['dtype']} {list(shape)}) needs "
            f"{nbytes} bytes, data_offsets {entry['data_offsets']} give {end - begin}"
        )
    return entry["dtype"], shape, begin, end


def _read_exact(fh: Any, out: np.ndarray) -> int:
    view = memoryview(out.reshape(-1)).cast("B")
    done = 0
    while done < len(view):
        n = fh.readinto(view[done:])
        if not n:
            break
        done += n
    return done


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file.

    Args:
        path: the file.

    Returns:
        ``{name: array}`` in the order of the tensors in the buffer, native byte order,
        C-contiguous; ``BF16`` tensors are widened to float32.

    Raises:
        CheckpointError (a ValueError): truncated file, bad header, unknown dtype, offsets
            that leave holes, overlap or run past the end (message names the file).
    """
    path = Path(path)
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        header, start = _read_header(fh, path, size)
        entries = sorted(
            ((*_check_entry(path, name, entry), name)
             for name, entry in header.items() if name != "__metadata__"),
            key=lambda e: (e[2], e[3]),
        )
        expected = 0
        for _, _, begin, end, name in entries:
            if begin != expected:
                raise CheckpointError(
                    f"{path}: safetensors entry {name!r} starts at byte {begin}, expected "
                    f"{expected} (hole or overlap in the buffer)"
                )
            expected = end
        if start + expected != size:
            raise CheckpointError(
                f"{path}: safetensors buffer should be {expected} bytes, the file holds "
                f"{size - start} (truncated or trailing data)"
            )
        out: dict[str, np.ndarray] = {}
        fh.seek(start)
        for code, shape, begin, end, name in entries:
            array = np.empty(shape, dtype=_DTYPES[code])
            if _read_exact(fh, array) != end - begin:
                raise CheckpointError(f"{path}: truncated in tensor {name!r}")
            if code == "BF16":
                wide = array.astype(np.uint32)
                wide <<= 16
                array = wide.view(np.float32)
            elif not array.dtype.isnative:
                array = array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))
            out[name] = array
    return out


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``__metadata__`` mapping of a ``.safetensors`` file (None when absent)."""
    path = Path(path)
    with file_errors(path, "safetensors file"), open(path, "rb") as fh:
        header, _ = _read_header(fh, path, os.fstat(fh.fileno()).st_size)
    return header.get("__metadata__")


def save_safetensors(
    state_dict: Mapping[str, Any], path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write arrays to a ``.safetensors`` file, in the mapping's order.

    Args:
        state_dict: ``{name: array}``; dtypes float16/32/64, int8..int64, uint8..uint64,
            bool. Non-contiguous or big-endian arrays are written as C-order little-endian.
        path: destination file.
        metadata: optional string-to-string mapping stored as ``__metadata__``.

    Raises:
        ValueError: a name is not a str or is ``__metadata__``, a dtype has no
            safetensors code, or metadata is not str -> str.
    """
    header: dict[str, Any] = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError(f"save_safetensors: metadata must map str to str, got {metadata!r}")
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name, value in state_dict.items():
        array = np.asarray(value)
        code = _CODES.get(array.dtype.newbyteorder("="))
        if not isinstance(name, str) or name == "__metadata__" or code is None:
            raise ValueError(
                f"save_safetensors: cannot store {name!r} with dtype {array.dtype} "
                f"(names are str other than '__metadata__'; dtypes {sorted(map(str, _CODES))})"
            )
        array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for array in arrays:
            fh.write(memoryview(array.reshape(-1)).cast("B"))
