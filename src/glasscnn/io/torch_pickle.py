"""PyTorch ``torch.save`` zip checkpoints, read and written without importing torch.

A checkpoint written by torch >= 1.6 is a zip archive (stored, not compressed)::

    <top>/data.pkl        pickle of the object; tensors refer to storages by key
    <top>/data/<key>      raw little-endian bytes of one storage
    <top>/byteorder       "little" or "big" (absent in old files: little)
    <top>/version         serialization version, "3"

The reader unpickles ``data.pkl`` with an allow-list: only the tensor and parameter
rebuild functions, the storage types and ``collections.OrderedDict`` may be named by the
pickle. Any other global (``os.system``, ``builtins.eval``, an unknown class) raises
``UnsafePickleError`` before anything is called. The admitted globals are immutable
stand-ins made afresh for each load, and the pickle may set the state of nothing but the
dicts it builds, so a refused file leaves nothing behind for the next load. Storages
become flat NumPy arrays read straight from the zip entry, their size checked against the
entry and the entry against the file before anything is allocated, their CRC-32 verified;
tensors become arrays cut from them with their offset and strides; the saved device
(``cpu``, ``cuda:0``) is ignored. The writer builds the same layout, with a pickle
assembled opcode by opcode, so that ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from glasscnn.io.errors import CheckpointError, UnsafePickleError, file_errors, shape_nbytes
from glasscnn.io.unpickle import RestrictedUnpickler
from glasscnn.io.ziparchive import ZipArchive

__all__ = ["CheckpointError", "UnsafePickleError", "extract_state_dict", "load_torch",
           "read_torch_checkpoint", "save_torch"]

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
ALIGNMENT = 64
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_ZIP64_EXTRA_SIZE = 20
_MAX_PICKLE_BYTES = 1 << 30
_MAX_SMALL_RECORD = 64


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: the element dtype on disk (immutable)."""

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


class _Global:
    """An admitted global as one load sees it: a fresh callable that cannot be changed."""

    __slots__ = ("call", "name")

    def __init__(self, name: str, call: Callable[..., Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "call", call)

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(f"the pickle tried to change {self.name}")


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"tensor rebuild: {what} must be non-negative ints, got {value!r:.200}")
    return tuple(value)


class _TorchArchive:
    """An open ``torch.save`` zip: its top folder, byte order and storages (cached by key).

    ``copy_budget`` is how many bytes of tensor copies (views, slices, tied weights) this
    load may still make: the file's size. Views past it stay read-only views.
    """

    def __init__(self, path: Path, verify_crc: bool) -> None:
        self.path = path
        self.storages: dict[str, _Storage] = {}
        self.zip = ZipArchive(path, "torch.save checkpoint", verify_crc)
        try:
            self._open()
        except BaseException:
            self.zip.close()
            raise
        self.copy_budget = self.zip.size

    def _open(self) -> None:
        if self.zip.head[:1] == b"\x80":
            raise CheckpointError(
                f"{self.path}: legacy (pre-1.6, non-zip) torch.save format is not supported; "
                "re-save it with a current torch: "
                "torch.save(torch.load(p, weights_only=True), p)"
            )
        if self.zip.zip is None:
            raise CheckpointError(
                f"{self.path}: not a torch.save zip archive (starts with {self.zip.head!r})"
            )
        names = list(self.zip.names)
        if not names or "/" not in names[0]:
            raise CheckpointError(
                f"{self.path}: zip archive without a top folder: not a torch.save file"
            )
        self.top = names[0].split("/", 1)[0]
        if f"{self.top}/constants.pkl" in self.zip.names:
            raise CheckpointError(
                f"{self.path}: TorchScript archive (torch.jit.save), not a state_dict; "
                "save model.state_dict() with torch.save instead"
            )
        if f"{self.top}/data.pkl" not in self.zip.names:
            raise CheckpointError(f"{self.path}: zip archive without {self.top}/data.pkl")
        self.byteorder = "little"
        if f"{self.top}/byteorder" in self.zip.names:
            self.byteorder = self.record("byteorder", _MAX_SMALL_RECORD).decode(
                "ascii", "replace").strip()
            if self.byteorder not in ("little", "big"):
                raise CheckpointError(f"{self.path}: unknown byteorder record {self.byteorder!r}")

    def record(self, name: str, limit: int) -> bytes:
        """The bytes of record ``<top>/name``, at most ``limit`` of them."""
        return self.zip.read(self.zip.names[f"{self.top}/{name}"], limit)

    def close(self) -> None:
        self.zip.close()

    def storage(self, key: str, stype: _StorageType, numel: int) -> _Storage:
        """The storage ``data/<key>`` as a flat native-endian array of ``numel`` elements."""
        if key in self.storages:
            return self.storages[key]
        name = f"{self.top}/data/{key}"
        info = self.zip.names.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: missing storage record {name}")
        nbytes = numel * stype.dtype.itemsize
        if info.file_size != nbytes:
            raise CheckpointError(
                f"{self.path}: storage {name} holds {info.file_size} bytes, the pickle expects "
                f"{numel} x {stype.name} = {nbytes} bytes"
            )
        member = self.zip.member(info)
        disk = stype.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
        flat = np.empty(numel, dtype=disk)
        member.readinto(flat)
        member.finish()
        if not flat.dtype.isnative:
            flat = flat.byteswap(inplace=True).view(stype.dtype)
        if stype.bfloat16:
            wide = flat.astype(np.uint32)
            wide <<= 16
            flat = wide.view(np.float32)
        self.storages[key] = _Storage(flat)
        return self.storages[key]

    def tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
        """Cut a tensor out of a storage: offset and strides in elements, as torch counts them.

        A tensor that is the whole storage, contiguous, is returned without a copy (once
        per storage); any other tensor (a view, a slice, a transpose, a second user of the
        storage) is copied while ``copy_budget`` lasts, so that no two writable arrays
        share memory; past it (a tensor expanded with stride 0, or more views than the
        file holds data for) it is a read-only view of the storage, as torch keeps it.
        """
        if not isinstance(storage, _Storage):
            raise ValueError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
        (offset,) = _int_tuple((storage_offset,), "storage_offset")
        shape = _int_tuple(size, "size")
        strides = _int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise ValueError(f"tensor rebuild: size {shape} and stride {strides} differ in length")
        flat = storage.array
        nbytes = shape_nbytes(shape, flat.itemsize)
        if nbytes is None:
            raise ValueError(f"tensor rebuild: size {shape} is too large for any array")
        if nbytes == 0:
            return np.empty(shape, dtype=flat.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= flat.size:
            raise ValueError(
                f"tensor rebuild: size {shape}, stride {strides}, offset {offset} reach element "
                f"{last} of a storage of {flat.size} elements"
            )
        contiguous = all(
            s == math.prod(shape[i + 1:])
            for i, (n, s) in enumerate(zip(shape, strides, strict=True)) if n != 1
        )
        if contiguous and offset == 0 and nbytes == flat.nbytes and not storage.claimed:
            storage.claimed = True
            return flat.reshape(shape)
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=shape, strides=tuple(s * flat.itemsize for s in strides),
            writeable=False,
        )
        if nbytes > self.copy_budget:
            return view
        self.copy_budget -= nbytes
        return np.array(view, order="C")


def _rebuild_parameter(data: Any, *_: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter rebuild: expected a tensor, got {type(data).__name__}")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    return OrderedDict(*args)


class _RestrictedUnpickler(RestrictedUnpickler):
    """Unpickler that resolves only the allow-listed globals and maps storages to arrays."""

    def __init__(self, file: BinaryIO, archive: _TorchArchive) -> None:
        super().__init__(file, str(archive.path), max_ops=archive.zip.size // 4 + 20_000)
        self.archive = archive

        def tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
            return archive.tensor(storage, offset, size, stride)

        self.globals: dict[tuple[str, str], Any] = {
            ("torch._utils", "_rebuild_tensor_v2"): _Global("_rebuild_tensor_v2", tensor),
            ("torch._utils", "_rebuild_tensor"): _Global("_rebuild_tensor", tensor),
            ("torch._utils", "_rebuild_parameter"): _Global("_rebuild_parameter",
                                                            _rebuild_parameter),
            ("collections", "OrderedDict"): _Global("OrderedDict", _ordered_dict),
            **{("torch", name): t for name, t in _STORAGE_TYPES.items()},
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.globals[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"{self.archive.path}: the pickle asks for the global '{module}.{name}', "
                "which is not on the state_dict allow-list (tensor rebuild, storage types, "
                "OrderedDict); refusing to load it, nothing was executed"
            ) from None

    def build(self, inst: Any, state: Any) -> None:
        """Admit only what ``torch.save`` writes: an OrderedDict's ``_metadata``, ignored."""
        if type(inst) is not OrderedDict or not (
            state is None or (isinstance(state, dict) and all(isinstance(k, str) for k in state))
        ):
            super().build(inst, state)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0
        ):
            raise UnsafePickleError(
                f"{self.archive.path}: unexpected persistent id {_short(pid)} "
                "(expected ('storage', StorageType, key, location, numel))"
            )
        return self.archive.storage(pid[2], pid[1], pid[4])


def _short(obj: Any) -> str:
    """``repr(obj)`` cut to 200 characters (or its type, if it is too deep to print)."""
    try:
        return f"{obj!r:.200}"
    except RecursionError:
        return f"<a deeply nested {type(obj).__name__}>"


def read_torch_checkpoint(path: str | os.PathLike, verify_crc: bool = True) -> Any:
    """Unpickle a ``torch.save`` zip file safely, tensors as NumPy arrays.

    Memory stays in proportion to the file: every storage's size is checked against its
    zip entry, and the entry against the file, before the storage is allocated; tensor
    copies are limited to the file's size (past it, views stay read-only views).

    Args:
        path: the ``.pth``/``.pt`` file (torch >= 1.6 zip format).
        verify_crc: check each record's zip CRC-32 (about 1 s per GB).

    Returns:
        The saved object with every tensor replaced by a ``np.ndarray`` of the tensor's
        shape and dtype (bfloat16 widened to float32): usually an ``OrderedDict``
        state_dict or a checkpoint dict holding one. Arrays are C-contiguous copies,
        except the read-only views described above.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the pickle names a global outside the allow-list, or tries to
            change an object it did not build.
        CheckpointError (a ValueError): the file is not a zip checkpoint, is truncated or
            corrupt (message names the file).
    """
    path = Path(path)
    with file_errors(path, "torch.save checkpoint"):
        archive = _TorchArchive(path, verify_crc)
        try:
            pkl = archive.record("data.pkl", _MAX_PICKLE_BYTES)
            try:
                return _RestrictedUnpickler(io.BytesIO(pkl), archive).load()
            except CheckpointError:
                raise
            except Exception as exc:
                raise CheckpointError(
                    f"{path}: corrupt pickle in {archive.top}/data.pkl: {type(exc).__name__}: "
                    f"{_short(exc)}"
                ) from None
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
        A ``dict`` from key to array, in the saved order. A writable array saved under
        two keys (tied weights) gives a copy for the second key, so that no two writable
        arrays share memory, as long as the copies take no more memory than the distinct
        arrays; past that (and for read-only arrays) the same array is returned again,
        read-only.

    Raises:
        CheckpointError (a ValueError): no mapping of tensors was found; the message
            lists what was there.
    """
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = list(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{source}: no entry {key!r} in the checkpoint "
                                  f"(has {_short(have)})")
        obj = obj[key]
    elif isinstance(obj, Mapping):
        for name in STATE_DICT_KEYS:
            if isinstance(obj.get(name), Mapping):
                obj = obj[name]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state_dict (a mapping of tensors), "
                              f"got {type(obj).__name__}")
    if not _is_state_dict(obj):
        bad = [f"{_short(k)} ({type(v).__name__})" for k, v in obj.items()
               if not (isinstance(k, str) and isinstance(v, np.ndarray))]
        raise CheckpointError(
            f"{source}: not a state_dict: entries {', '.join(bad[:10])} are not tensors; a "
            f"checkpoint dict must hold its state_dict under one of {list(STATE_DICT_KEYS)} "
            "(or pass key=...)"
        )
    distinct = {id(a): a for a in obj.values()}
    budget = sum(a.nbytes for a in distinct.values() if a.flags.writeable)
    seen: set[int] = set()
    out: dict[str, np.ndarray] = {}
    for name, array in obj.items():
        if id(array) not in seen:
            out[name] = array
            seen.add(id(array))
        elif array.flags.writeable and array.nbytes <= budget:
            budget -= array.nbytes
            out[name] = array.copy()
        else:
            out[name] = array.view()
            out[name].flags.writeable = False
    return out


def load_torch(path: str | os.PathLike, key: str | None = None, verify_crc: bool = True
               ) -> dict[str, np.ndarray]:
    """Load the state_dict of a ``torch.save`` zip file without torch.

    Args:
        path: the ``.pth``/``.pt`` file.
        key: entry of a checkpoint dict that holds the state_dict (default: found among
            ``state_dict``, ``model_state_dict``, ``model``, or the file is one).
        verify_crc: check the zip CRC-32 of every record.

    Returns:
        ``{key: array}`` with torch's shapes and dtypes (bfloat16 read as float32); see
        ``read_torch_checkpoint`` for when an array is a read-only view.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the pickle names a forbidden global (nothing was executed).
        CheckpointError (a ValueError): not a torch zip checkpoint, truncated, corrupt, or
            holds no state_dict; the message names the file.
    """
    obj = read_torch_checkpoint(path, verify_crc)
    with file_errors(path, "torch.save checkpoint"):
        return extract_state_dict(obj, str(path), key)


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
