"""PyTorch ``torch.save`` zip checkpoints, read and written without importing torch.

A checkpoint written by torch >= 1.6 is a zip archive (stored, not compressed)::

    <top>/data.pkl        pickle of the object; tensors refer to storages by key
    <top>/data/<key>      raw little-endian bytes of one storage
    <top>/byteorder       "little" or "big" (absent in old files: little)
    <top>/version         serialization version, "3"

The reader unpickles ``data.pkl`` with an allow-list: only the tensor and parameter
rebuild functions, the storage types and ``collections.OrderedDict`` may be named by the
pickle. Any other global (``os.system``, ``builtins.eval``, an unknown class) raises
``UnsafePickleError`` before anything is called. Storages become flat NumPy arrays read
straight from the zip entry; tensors become arrays cut from them with their offset and
strides; the saved device (``cpu``, ``cuda:0``) is ignored. The writer builds the same
layout, with a pickle assembled opcode by opcode, so that ``torch.load(path,
weights_only=True)`` reads it.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
ALIGNMENT = 64
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_HEADER_MAGIC = 0x04034B50
_ZIP64_EXTRA_SIZE = 20


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: wrong format, truncated or corrupt (names the file)."""


class UnsafePickleError(CheckpointError):
    """A checkpoint's pickle names a global outside the state_dict allow-list.

    Raised before the global is looked up or called, so nothing in the file has run.
    """


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: the element dtype on disk."""

    name: str
    dtype: np.dtype
    bfloat16: bool = False


_STORAGE_TYPES = {
    t.name: t
    for t in (
        _StorageType("FloatStorage", np.dtype(np.float32)),
        _StorageType("DoubleStorage", np.dtype(np.float64)),
        _StorageType("HalfStorage", np.dtype(np.float16)),
        _StorageType("BFloat16Storage", np.dtype(np.uint16), bfloat16=True),
        _StorageType("LongStorage", np.dtype(np.int64)),
        _StorageType("IntStorage", np.dtype(np.int32)),
        _StorageType("ShortStorage", np.dtype(np.int16)),
        _StorageType("CharStorage", np.dtype(np.int8)),
        _StorageType("ByteStorage", np.dtype(np.uint8)),
        _StorageType("BoolStorage", np.dtype(np.bool_)),
    )
}
_WRITE_STORAGE = {t.dtype: t.name for t in _STORAGE_TYPES.values() if not t.bfloat16}


class _Storage:
    """One storage of the archive: its flat array (bfloat16 already widened to float32)."""

    __slots__ = ("array", "claimed")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.claimed = False

    def __setstate__(self, state: Any) -> None:
        raise ValueError("the pickle tried to set the state of a storage")


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"tensor rebuild: {what} must be non-negative ints, got {value!r}")
    return tuple(value)


def _tensor_from_storage(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """Cut a tensor out of a storage: offset and strides in elements, as torch counts them.

    A tensor that is the whole storage, contiguous, is returned without a copy (once per
    storage); any other tensor (a view, a slice, a transpose, a second user of the storage)
    is copied, so that no two returned arrays share memory.
    """
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
    (offset,) = _int_tuple((storage_offset,), "storage_offset")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise ValueError(f"tensor rebuild: size {shape} and stride {strides} differ in length")
    flat = storage.array
    numel = math.prod(shape)
    if numel == 0:
        return np.zeros(shape, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    if last >= flat.size:
        raise ValueError(
            f"tensor rebuild: size {shape}, stride {strides}, offset {offset} reach element "
            f"{last} of a storage of {flat.size} elements"
        )
    contiguous = all(
        s == math.prod(shape[i + 1:]) for i, (n, s) in enumerate(zip(shape, strides, strict=True))
        if n != 1
    )
    if contiguous and offset == 0 and numel == flat.size and not storage.claimed:
        storage.claimed = True
        return flat.reshape(shape)
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=shape, strides=tuple(s * flat.itemsize for s in strides),
        writeable=False,
    )
    return np.array(view, order="C")


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any, **__: Any
) -> np.ndarray:
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any, **__: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter rebuild: expected a tensor, got {type(data).__name__}")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    **{("torch", name): t for name, t in _STORAGE_TYPES.items()},
}


def _read_into(raw: BinaryIO, offset: int, out: np.ndarray) -> int:
    """Fill ``out`` with bytes of ``raw`` from ``offset``; return how many were read."""
    view = memoryview(out.reshape(-1)).cast("B")
    raw.seek(offset)
    done = 0
    while done < len(view):
        n = raw.readinto(view[done:])
        if not n:
            break
        done += n
    return done


class _TorchArchive:
    """An open ``torch.save`` zip: its top folder, byte order and storages (cached by key)."""

    def __init__(self, path: Path, verify_crc: bool) -> None:
        self.path = path
        self.verify_crc = verify_crc
        self.storages: dict[str, _Storage] = {}
        self.raw: BinaryIO = open(path, "rb", buffering=0)
        try:
            self._open()
        except BaseException:
            self.raw.close()
            raise

    def _open(self) -> None:
        head = self.raw.read(4)
        if head[:1] == b"\x80":
            raise CheckpointError(
                f"{self.path}: legacy (pre-1.6, non-zip) torch.save format is not supported; "
                "re-save it with a current torch: "
                "torch.save(torch.load(p, weights_only=True), p)"
            )
        if head[:2] != b"PK":
            raise CheckpointError(
                f"{self.path}: not a torch.save zip archive (starts with {head!r})"
            )
        self.size = os.fstat(self.raw.fileno()).st_size
        try:
            self.zip = zipfile.ZipFile(self.raw)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(
                f"{self.path}: truncated or corrupt zip archive ({exc}); the file is not a "
                "complete torch.save checkpoint"
            ) from exc
        names = self.zip.namelist()
        if not names or "/" not in names[0]:
            raise CheckpointError(
                f"{self.path}: zip archive without a top folder: not a torch.save file"
            )
        self.top = names[0].split("/", 1)[0]
        if f"{self.top}/constants.pkl" in names:
            raise CheckpointError(
                f"{self.path}: TorchScript archive (torch.jit.save), not a state_dict; "
                "save model.state_dict() with torch.save instead"
            )
        if f"{self.top}/data.pkl" not in names:
            raise CheckpointError(f"{self.path}: zip archive without {self.top}/data.pkl")
        self.byteorder = "little"
        if f"{self.top}/byteorder" in names:
            self.byteorder = self._record("byteorder").decode("ascii", "replace").strip()
            if self.byteorder not in ("little", "big"):
                raise CheckpointError(f"{self.path}: unknown byteorder record {self.byteorder!r}")

    def _record(self, name: str) -> bytes:
        try:
            return self.zip.read(f"{self.top}/{name}")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise CheckpointError(
                f"{self.path}: cannot read record {self.top}/{name}: {exc}"
            ) from exc

    def close(self) -> None:
        if hasattr(self, "zip"):
            self.zip.close()
        self.raw.close()

    def data_offset(self, info: zipfile.ZipInfo) -> int:
        """Byte offset of an entry's data in the file (after its local header)."""
        self.raw.seek(info.header_offset)
        header = self.raw.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(header)[0] != (
            _LOCAL_HEADER_MAGIC
        ):
            raise CheckpointError(f"{self.path}: corrupt zip: bad local header for {info.filename}")
        fields = _LOCAL_HEADER.unpack(header)
        return info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]

    def storage(self, key: str, stype: _StorageType, numel: int) -> _Storage:
        """The storage ``data/<key>`` as a flat native-endian array of ``numel`` elements."""
        if key in self.storages:
            return self.storages[key]
        name = f"{self.top}/data/{key}"
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: missing storage record {name}") from None
        nbytes = numel * stype.dtype.itemsize
        if info.file_size != nbytes:
            raise CheckpointError(
                f"{self.path}: storage {name} holds {info.file_size} bytes, the pickle expects "
                f"{numel} x {stype.name} = {nbytes} bytes"
            )
        disk = stype.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
        flat = np.empty(numel, dtype=disk)
        if info.compress_type == zipfile.ZIP_STORED:
            start = self.data_offset(info)
            if _read_into(self.raw, start, flat) != nbytes:
                raise CheckpointError(f"{self.path}: truncated file: storage {name} is cut short")
            if self.verify_crc and zlib.crc32(flat) != info.CRC:
                raise CheckpointError(f"{self.path}: CRC mismatch in storage {name}: corrupt file")
        else:
            memoryview(flat).cast("B")[:] = self._record(f"data/{key}")
        if not flat.dtype.isnative:
            flat = flat.byteswap().view(stype.dtype)
        if stype.bfloat16:
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        self.storages[key] = _Storage(flat)
        return self.storages[key]


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals and maps storages to arrays."""

    def __init__(self, file: BinaryIO, archive: _TorchArchive) -> None:
        super().__init__(file)
        self.archive = archive

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.archive.path}: the pickle asks for the global '{module}.{name}', "
                "which is not on the state_dict allow-list (tensor rebuild, storage types, "
                "OrderedDict); refusing to load it, nothing was executed"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0
        ):
            raise UnsafePickleError(
                f"{self.archive.path}: unexpected persistent id {pid!r:.200} "
                "(expected ('storage', StorageType, key, location, numel))"
            )
        return self.archive.storage(pid[2], pid[1], pid[4])


def read_torch_checkpoint(path: str | os.PathLike, verify_crc: bool = False) -> Any:
    """Unpickle a ``torch.save`` zip file safely, tensors as NumPy arrays.

    Args:
        path: the ``.pth``/``.pt`` file (torch >= 1.6 zip format).
        verify_crc: also check each storage's zip CRC32 (about 0.5 s per GB).

    Returns:
        The saved object with every tensor replaced by a C-contiguous ``np.ndarray`` of
        the tensor's shape and dtype (bfloat16 widened to float32): usually an
        ``OrderedDict`` state_dict or a checkpoint dict holding one.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
        ValueError: the file is not a zip checkpoint, is truncated or corrupt (message
            names the file).
    """
    path = Path(path)
    archive = _TorchArchive(path, verify_crc)
    try:
        pkl = archive.zip.open(f"{archive.top}/data.pkl")
        try:
            return _RestrictedUnpickler(pkl, archive).load()
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"{path}: corrupt pickle in {archive.top}/data.pkl: {type(exc).__name__}: {exc}"
            ) from exc
    finally:
        archive.close()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    )


def extract_state_dict(obj: Any, source: str = "checkpoint", key: str | None = None
                       ) -> dict[str, np.ndarray]:
    """Find the state_dict in an unpickled checkpoint.

    Args:
        obj: a state_dict (str -> array) or a checkpoint dict holding one under
            ``state_dict``, ``model_state_dict`` or ``model`` (other entries such as an
            epoch number are ignored).
        source: what to call the checkpoint in error messages (its path).
        key: take the state_dict from this entry instead of guessing.

    Returns:
        A ``dict`` from key to array, in the saved order; a tensor saved under two keys
        (tied weights) gives two arrays, so that no two arrays share memory.

    Raises:
        ValueError: no mapping of tensors was found; the message lists what was there.
    """
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = list(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{source}: no entry {key!r} in the checkpoint (has {have})")
        obj = obj[key]
    elif isinstance(obj, Mapping):
        for name in STATE_DICT_KEYS:
            if isinstance(obj.get(name), Mapping):
                obj = obj[name]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state_dict (a mapping of tensors), "
                         f"got {type(obj).__name__}")
    if not _is_state_dict(obj):
        bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items()
               if not (isinstance(k, str) and isinstance(v, np.ndarray))]
        raise ValueError(
            f"{source}: not a state_dict: entries {', '.join(bad[:10])} are not tensors; a "
            f"checkpoint dict must hold its state_dict under one of {list(STATE_DICT_KEYS)} "
            "(or pass key=...)"
        )
    seen: set[int] = set()
    out: dict[str, np.ndarray] = {}
    for name, array in obj.items():
        out[name] = array.copy() if id(array) in seen else array
        seen.add(id(array))
    return out


def load_torch(path: str | os.PathLike, key: str | None = None, verify_crc: bool = False
               ) -> dict[str, np.ndarray]:
    """Load the state_dict of a ``torch.save`` zip file without torch.

    Args:
        path: the ``.pth``/``.pt`` file.
        key: entry of a checkpoint dict that holds the state_dict (default: found among
            ``state_dict``, ``model_state_dict``, ``model``, or the file is one).
        verify_crc: also check the zip CRC32 of every storage.

    Returns:
        ``{key: array}`` with torch's shapes and dtypes (bfloat16 read as float32).

    Raises:
        UnsafePickleError: the pickle names a forbidden global (nothing was executed).
        ValueError: not a torch zip checkpoint, truncated, corrupt, or holds no state_dict.
    """
    return extract_state_dict(read_torch_checkpoint(path, verify_crc), str(path), key)


class _PickleWriter:
    """Protocol-2 pickle assembled opcode by opcode, for ``torch.load(weights_only=True)``."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self.memo: dict[str, int] = {}
        self.storages: list[np.ndarray] = []

    def _put(self) -> int:
        index = len(self.memo)
        self.out += (b"q" + bytes([index])) if index < 256 else (b"r" + struct.pack("<I", index))
        return index

    def global_(self, module: str, name: str) -> None:
        ref = f"{module}\n{name}\n"
        index = self.memo.get(ref)
        if index is None:
            self.out += b"c" + ref.encode("ascii")
            self.memo[ref] = self._put()
        else:
            self.out += (b"h" + bytes([index])) if index < 256 else (
                b"j" + struct.pack("<I", index))

    def save(self, obj: Any, where: str) -> None:
        if obj is None:
            self.out += b"N"
        elif isinstance(obj, bool | np.bool_):
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int | np.integer):
            self._int(int(obj))
        elif isinstance(obj, float | np.floating):
            self.out += b"G" + struct.pack(">d", float(obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8")
            self.out += b"X" + struct.pack("<I", len(data)) + data
        elif isinstance(obj, np.ndarray):
            self._tensor(obj, where)
        elif isinstance(obj, tuple):
            self._tuple(obj, where)
        elif isinstance(obj, list):
            self.out += b"]"
            if obj:
                self.out += b"("
                for i, item in enumerate(obj):
                    self.save(item, f"{where}[{i}]")
                self.out += b"e"
        elif isinstance(obj, Mapping):
            if type(obj) is dict:
                self.out += b"}"
            else:
                self.global_("collections", "OrderedDict")
                self.out += b")R"
            if obj:
                self.out += b"("
                for k, v in obj.items():
                    self.save(k, where)
                    self.save(v, f"{where}[{k!r}]")
                self.out += b"u"
        else:
            raise ValueError(f"save_torch: cannot save {where} of type {type(obj).__name__}")

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)
        elif -(2**31) <= value < 2**31:
            self.out += b"J" + struct.pack("<i", value)
        else:
            data = pickle.encode_long(value)
            self.out += b"\x8a" + bytes([len(data)]) + data

    def _tuple(self, items: tuple, where: str) -> None:
        if not items:
            self.out += b")"
            return
        if len(items) > 3:
            self.out += b"("
        for i, item in enumerate(items):
            self.save(item, f"{where}[{i}]")
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t")

    def _tensor(self, array: np.ndarray, where: str) -> None:
        storage_name = _WRITE_STORAGE.get(array.dtype.newbyteorder("="))
        if storage_name is None:
            raise ValueError(
                f"save_torch: {where} has dtype {array.dtype}, which has no torch storage here "
                f"(supported: {sorted(str(d) for d in _WRITE_STORAGE)})"
            )
        data = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
        key = str(len(self.storages))
        self.storages.append(data)
        shape = tuple(int(n) for n in data.shape)
        strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("
        self.out += b"("
        self.save("storage", where)
        self.global_("torch", storage_name)
        self.save(key, where)
        self.save("cpu", where)
        self._int(data.size)
        self.out += b"tQ"
        self._int(0)
        self._tuple(shape, where)
        self._tuple(strides, where)
        self.out += b"\x89"
        self.global_("collections", "OrderedDict")
        self.out += b")Rt"
        self.out += b"R"

    def finish(self) -> bytes:
        return bytes(self.out + b".")


def _write_record(zf: zipfile.ZipFile, fh: BinaryIO, name: str, data: Any, nbytes: int) -> None:
    """Write one stored zip entry whose data starts on a 64-byte boundary (as torch does)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = nbytes
    zip64 = nbytes * 1.05 > zipfile.ZIP64_LIMIT
    extra = 4 + (_ZIP64_EXTRA_SIZE if zip64 else 0)
    header = _LOCAL_HEADER.size + len(name.encode("utf-8")) + extra
    pad = -(fh.tell() + header) % ALIGNMENT
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    with zf.open(info, "w") as dst:
        dst.write(data)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """Write a state_dict (or a checkpoint dict holding one) as a ``torch.save`` zip file.

    The file has torch's layout (``<stem>/data.pkl``, ``<stem>/byteorder`` = little,
    ``<stem>/data/0`` ..., ``<stem>/version`` = 3, storage data aligned to 64 bytes) and
    a pickle that names only ``torch._utils._rebuild_tensor_v2``, storage types and
    ``collections.OrderedDict``, so ``torch.load(path, weights_only=True)`` reads it.

    Args:
        obj: a mapping from key to array (written as an ``OrderedDict``); values may
            also be nested dicts/lists/tuples of arrays, str, int, float, bool, None.
            Arrays of dtype float16/32/64, int8/16/32/64, uint8 or bool.
        path: destination file.

    Raises:
        ValueError: an array dtype or a value type torch cannot load with weights_only.
    """
    path = Path(path)
    writer = _PickleWriter()
    root = OrderedDict(obj) if _is_state_dict(obj) else obj
    writer.save(root, "state_dict")
    pickle_bytes = writer.finish()
    top = path.stem if path.stem.isascii() and path.stem.isprintable() and path.stem else "archive"
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        _write_record(zf, fh, f"{top}/data.pkl", pickle_bytes, len(pickle_bytes))
        _write_record(zf, fh, f"{top}/byteorder", b"little", 6)
        for key, data in enumerate(writer.storages):
            flat = memoryview(data.reshape(-1)).cast("B")
            _write_record(zf, fh, f"{top}/data/{key}", flat, data.nbytes)
        _write_record(zf, fh, f"{top}/version", b"3\n", 2)
