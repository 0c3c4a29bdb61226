"""The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a big-endian header — two zero bytes, a type code (0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
uint32 per dimension — followed by the values in C order. The size the header declares is
checked against the file (or, for gzip, against its length trailer and at most 32 times
the compressed size plus 1 MiB) before the array is allocated.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from glasscnn.io.errors import CheckpointError, file_errors, inflation_limit

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def idx_header(array: np.ndarray) -> bytes:
    """The IDX header for ``array`` (its dtype must be one of ``IDX_TYPES``)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"idx_header: dtype {array.dtype} has no IDX type code")
    return struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)


def _stored_size(raw: IO[bytes], compressed: bool) -> int:
    """Bytes of IDX data the file holds: its size, or a gzip file's ISIZE trailer."""
    if not compressed:
        return os.fstat(raw.fileno()).st_size
    raw.seek(-4, os.SEEK_END)
    size = struct.unpack("<I", raw.read(4))[0]
    raw.seek(0)
    return size


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (recognised by its magic bytes).

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A writable array in native byte order with the shape of the header, e.g.
        (60000, 28, 28) uint8 for MNIST training images.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): wrong magic number, unknown type code, a size that
            disagrees with the header's shape, or a truncated or corrupt gzip stream; the
            message names the file.
    """
    path = Path(path)
    with file_errors(path, "IDX file"), path.open("rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        if compressed and size < 18:
            raise CheckpointError(f"read_idx: {path}: truncated gzip file")
        raw.seek(0)
        stored = _stored_size(raw, compressed)
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        limit = inflation_limit(size) if compressed else size
        try:
            return _read_stream(stream, path, stored, compressed, limit)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise CheckpointError(
                f"read_idx: {path}: truncated or corrupt gzip stream "
                f"({str(err) or 'unexpected end'})"
            ) from None


def _read_stream(stream: IO[bytes], path: Path, stored: int, compressed: bool, limit: int
                 ) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise CheckpointError(
            f"read_idx: {path}: wrong magic number {magic.hex() or '(empty file)'}; an IDX "
            "file starts with 00 00, a type code (08, 09, 0b, 0c, 0d, 0e) and the rank"
        )
    dtype, ndim = IDX_TYPES[magic[2]], magic[3]
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise CheckpointError(f"read_idx: {path}: header ends before its {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    expected = 4 + 4 * ndim + math.prod(shape) * dtype.itemsize
    if expected > limit:
        raise CheckpointError(
            f"read_idx: {path}: wrong size: the header's shape {shape} ({dtype.name}) needs "
            f"{expected} bytes, more than the {limit} that the file can hold"
        )
    if (compressed and expected % 2**32 != stored) or (not compressed and expected != stored):
        what = "the gzip trailer says" if compressed else "the file holds"
        raise CheckpointError(
            f"read_idx: {path}: wrong size: the header's shape {shape} ({dtype.name}) needs "
            f"{expected} bytes, {what} {stored}"
        )
    out = np.empty(shape, dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    got = 0
    while got < view.nbytes:
        n = stream.readinto(view[got:])
        if not n:
            raise CheckpointError(
                f"read_idx: {path}: truncated: {got} of {view.nbytes} data bytes present"
            )
        got += n
    if stream.read(1):
        raise CheckpointError(
            f"read_idx: {path}: wrong size: data continues past shape {shape}"
        )
    if not dtype.isnative:
        out = out.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return out
