"""Zip archives from untrusted files: sizes checked before reading, CRC-32 verified.

Both ``.npz`` and ``torch.save`` files are zip archives. ``ZipArchive`` opens one and
reads a member's bytes straight into an array allocated for it, once the member's size
has been checked against the file: a stored member must lie inside the file, and the
deflated members of one archive may together expand to at most ``inflation_limit(file
size)`` bytes. Every member read is checked against its CRC-32.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from glasscnn.io.errors import CheckpointError, inflation_limit, shape_nbytes

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_HEADER_MAGIC = 0x04034B50
_CHUNK = 1 << 20
_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 65535


class ZipArchive:
    """An open zip archive whose members are read with their sizes and CRCs checked.

    Args:
        path: the file.
        kind: what the file should be, for messages (e.g. ``".npz"``).
        verify_crc: compare each member read with its CRC-32.

    Raises:
        CheckpointError: not a zip archive, truncated, or its directory is corrupt.
    """

    def __init__(self, path: str | os.PathLike, kind: str, verify_crc: bool = True) -> None:
        self.path = Path(path)
        self.kind = kind
        self.verify_crc = verify_crc
        self.raw: BinaryIO = open(self.path, "rb", buffering=0)
        try:
            self.size = os.fstat(self.raw.fileno()).st_size
            self.head = self.raw.read(4)
            self.raw.seek(0)
            self.inflated = 0
            self.zip: zipfile.ZipFile | None = None
            if self.head[:2] == b"PK":
                self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        try:
            self.zip = zipfile.ZipFile(self.raw)
            self.infos = self.zip.infolist()
        except Exception as exc:
            raise CheckpointError(
                f"{self.path}: truncated or corrupt zip archive ({type(exc).__name__}: "
                f"{exc}); the file is not a complete {self.kind}"
            ) from None
        names = [info.filename for info in self.infos]
        if len(set(names)) != len(names):
            raise CheckpointError(f"{self.path}: corrupt zip archive: a member name repeats")
        self.names = {info.filename: info for info in self.infos}

    def __enter__(self) -> ZipArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive and its file."""
        if getattr(self, "zip", None) is not None:
            self.zip.close()
        self.raw.close()

    def require_zip(self) -> None:
        """Raise ``CheckpointError`` unless the file opened as a zip archive."""
        if self.zip is None:
            raise CheckpointError(
                f"{self.path}: not a {self.kind} (zip) archive (starts with {self.head!r})"
            )

    def error(self, info: zipfile.ZipInfo, what: str) -> CheckpointError:
        """A ``CheckpointError`` about member ``info``."""
        return CheckpointError(f"{self.path}: member {info.filename}: {what}")

    def check(self, info: zipfile.ZipInfo) -> None:
        """Check that ``info`` can be read: its sizes fit the file, no encryption, no bomb."""
        if info.flag_bits & 0x1:
            raise self.error(info, "encrypted members are not supported")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.error(info, f"compression method {info.compress_type} is not "
                                   "supported (only stored and deflated)")
        if info.header_offset + _LOCAL_HEADER.size + info.compress_size > self.size:
            raise self.error(info, f"its {info.compress_size} bytes run past the end of the "
                                   f"{self.size}-byte file (truncated?)")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise self.error(info, f"stored member claims {info.file_size} bytes but "
                                       f"holds {info.compress_size}")
            return
        if self.inflated + info.file_size > inflation_limit(self.size):
            raise self.error(
                info, f"deflated members would expand to {self.inflated + info.file_size} "
                f"bytes, more than {inflation_limit(self.size)} for a {self.size}-byte file "
                "(a zip bomb?); save it uncompressed"
            )
        self.inflated += info.file_size

    def member(self, info: zipfile.ZipInfo) -> Member:
        """A reader for member ``info`` (after ``check``)."""
        self.check(info)
        return Member(self, info)

    def read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        """The whole member ``info``, which must be at most ``limit`` bytes."""
        if info.file_size > limit:
            raise self.error(info, f"{info.file_size} bytes, more than the {limit} expected")
        member = self.member(info)
        data = member.read(info.file_size)
        member.finish()
        return data

    def read_npy(self, info: zipfile.ZipInfo) -> np.ndarray:
        """Read an ``.npy`` member: header parsed and checked against the member's size first.

        Returns:
            The array, as ``np.load(allow_pickle=False)`` would return it.

        Raises:
            CheckpointError: not an ``.npy``, a dtype holding Python objects, or a shape
                whose size differs from what the member holds.
        """
        member = self.member(info)
        prefix = member.read(8)
        if prefix[:6] != _NPY_MAGIC or prefix[6] not in (1, 2):
            raise self.error(info, f"not an .npy array (starts with {prefix!r})")
        width = 2 if prefix[6] == 1 else 4
        size_bytes = member.read(width)
        (length,) = struct.unpack("<H" if width == 2 else "<I", size_bytes)
        if length > _NPY_MAX_HEADER:
            raise self.error(info, f".npy header of {length} bytes is too long")
        header = member.read(length)
        reader = (np.lib.format.read_array_header_1_0 if prefix[6] == 1
                  else np.lib.format.read_array_header_2_0)
        try:
            shape, fortran, dtype = reader(io.BytesIO(size_bytes + header))
        except Exception as exc:
            raise self.error(info, f"bad .npy header: {exc!s:.200}") from None
        if dtype.hasobject:
            raise self.error(info, f"holds Python objects (dtype {dtype}), which would need "
                                   "pickle; refused")
        nbytes = shape_nbytes(shape, dtype.itemsize)
        used = 8 + width + length
        if nbytes is None or used + nbytes != info.file_size:
            raise self.error(
                info, f"the .npy header declares shape {shape} of {dtype} ({nbytes} bytes) "
                f"but the member holds {info.file_size - used} bytes of data"
            )
        out = np.empty(shape, dtype, order="F" if fortran else "C")
        member.readinto(out.T if fortran else out)
        member.finish()
        return out


class Member:
    """Sequential reader of one checked zip member; ``finish`` verifies length and CRC."""

    def __init__(self, archive: ZipArchive, info: zipfile.ZipInfo) -> None:
        self.archive = archive
        self.info = info
        self.left = info.file_size
        self.crc = 0
        self.stream: Any = None
        self.pos = 0
        if info.compress_type == zipfile.ZIP_STORED:
            self.pos = self._data_offset()
        else:
            try:
                self.stream = archive.zip.open(info)
            except Exception as exc:
                raise archive.error(info, f"corrupt ({type(exc).__name__}: {exc})") from None

    def _data_offset(self) -> int:
        raw, info = self.archive.raw, self.info
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(header)[0] != (
            _LOCAL_HEADER_MAGIC
        ):
            raise self.archive.error(info, "corrupt zip: bad local header")
        fields = _LOCAL_HEADER.unpack(header)
        name = raw.read(fields[9])
        if name != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437",
                                             "replace"):
            raise self.archive.error(info, f"corrupt zip: the local header names {name!r:.100}")
        start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
        if start + info.file_size > self.archive.size:
            raise self.archive.error(info, "its data runs past the end of the file (truncated?)")
        return start

    def _fill(self, view: memoryview) -> None:
        done = 0
        try:
            while done < len(view):
                part = view[done:done + _CHUNK]
                if self.stream is None:
                    self.archive.raw.seek(self.pos + done)
                    n = self.archive.raw.readinto(part)
                else:
                    n = self.stream.readinto(part)
                if not n:
                    break
                done += n
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise self.archive.error(self.info, f"corrupt data ({exc})") from None
        if done != len(view):
            raise self.archive.error(self.info, f"truncated: {done} of {len(view)} bytes")
        self.pos += done
        self.left -= done
        if self.archive.verify_crc:
            self.crc = zlib.crc32(view, self.crc)

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes of the member (fewer only at its end)."""
        buffer = bytearray(min(n, self.left))
        self._fill(memoryview(buffer))
        return bytes(buffer)

    def readinto(self, array: np.ndarray) -> None:
        """Fill the C-contiguous ``array`` with the member's next ``array.nbytes`` bytes."""
        if array.nbytes > self.left:
            raise self.archive.error(self.info, "holds fewer bytes than the array needs")
        if array.nbytes:
            self._fill(memoryview(array.reshape(-1).view(np.uint8)))

    def finish(self) -> None:
        """Check that the whole member was read and that its CRC-32 matches."""
        if self.left:
            raise self.archive.error(self.info, f"{self.left} bytes left unread")
        if self.archive.verify_crc and self.crc != self.info.CRC:
            raise self.archive.error(self.info, "CRC mismatch (CRC-32): the file is corrupt")
