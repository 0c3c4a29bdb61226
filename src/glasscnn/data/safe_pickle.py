"""A restricted unpickler for data-set pickles: NumPy arrays, dicts, lists, numbers, strings.

The CIFAR-10 batches and ``mnist.pkl.gz`` are pickles, and a pickle can name any Python
callable and run it while loading. ``load_pickle`` admits only the few NumPy globals that
rebuild plain numeric arrays (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar`` and, for
protocol 5, ``_frombuffer``) plus ``_codecs.encode`` for Latin-1 only (how protocol 2 stores
bytes); every other global is refused before anything is called, object dtypes are refused,
and no dtype can be changed once it has been checked, so a malicious pickle raises
``CheckpointError`` (a ``ValueError``) instead of running.
"""

from __future__ import annotations

import gzip
import math
import pickle
import tarfile
import zlib
from typing import IO, Any

import numpy as np

from glasscnn.io.errors import CheckpointError, UnsafePickleError
from glasscnn.io.unpickle import RestrictedUnpickler

_NUMERIC_KINDS = "biuf"
_PLAIN_DTYPE_STATE_LEN = 8


def _check_plain(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise UnsafePickleError(f"dtype {dtype!r} is not a plain numeric dtype")
    return dtype


def _as_str(data: Any) -> Any:
    return data.decode("latin1") if isinstance(data, bytes) else data


class _NdarrayName:
    """Stands for ``numpy.ndarray`` inside a pickle, so the class itself is never callable."""


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _DataUnpickler(RestrictedUnpickler):
    """Admits plain numeric arrays and dtypes; each is checked when it gets its state.

    A dtype is made fresh for this load and may get its state (byte order only) once,
    before any array uses it; an array made by ``_reconstruct`` gets its state once, from
    a plain dtype and exactly as many bytes as its shape needs.
    """

    def __init__(self, stream: IO[bytes], where: str, limit: int | None) -> None:
        max_ops = (limit if limit is not None else 1 << 30) // 4 + 20_000
        super().__init__(stream, where, max_ops=max_ops, limit=limit, encoding="bytes")
        self.fresh_dtypes: set[int] = set()
        self.fresh_arrays: set[int] = set()
        self.made: list[Any] = []
        self.globals = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.multiarray", "scalar"): self._scalar,
            ("numpy._core.multiarray", "scalar"): self._scalar,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy", "ndarray"): _NdarrayName,
            ("numpy", "dtype"): self._dtype,
            ("_codecs", "encode"): _encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.globals[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refers to {module}.{name}, which is not allowed (only NumPy arrays, "
                "lists, dicts, numbers and strings are)"
            ) from None

    def _keep(self, obj: Any, fresh: set[int]) -> Any:
        self.made.append(obj)
        fresh.add(id(obj))
        return obj

    def _dtype(self, obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
        if not isinstance(obj, str | bytes) or align not in (0, 1) or copy not in (0, 1):
            raise UnsafePickleError(f"numpy.dtype{(obj, align, copy)!r:.100}")
        dtype = _check_plain(np.dtype(_as_str(obj), bool(align), True))
        return self._keep(dtype, self.fresh_dtypes)

    def _take_dtype(self, dtype: Any) -> np.dtype:
        """A dtype used by an array: no more state changes for it."""
        if isinstance(dtype, np.dtype):
            self.fresh_dtypes.discard(id(dtype))
            return _check_plain(dtype)
        return _check_plain(np.dtype(_as_str(dtype)))

    def _reconstruct(self, cls: Any, shape: Any, dtype: Any) -> np.ndarray:
        if cls is not _NdarrayName:
            raise UnsafePickleError(f"_reconstruct of {cls!r:.100}; only numpy.ndarray is allowed")
        array = np.ndarray.__new__(np.ndarray, (0,), self._take_dtype(dtype))
        return self._keep(array, self.fresh_arrays)

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        return np.frombuffer(buf, self._take_dtype(dtype)).reshape(shape, order=order)

    def _scalar(self, dtype: Any, data: Any) -> Any:
        raw = data.encode("latin1") if isinstance(data, str) else data
        return np.frombuffer(raw, self._take_dtype(dtype), count=1)[0]

    def build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, np.dtype) and id(inst) in self.fresh_dtypes:
            self.fresh_dtypes.discard(id(inst))
            self._build_dtype(inst, state)
        elif type(inst) is np.ndarray and id(inst) in self.fresh_arrays:
            self.fresh_arrays.discard(id(inst))
            self._build_array(inst, state)
        else:
            super().build(inst, state)

    def _build_dtype(self, dtype: np.dtype, state: Any) -> None:
        """Admit the state numpy pickles for a plain dtype: only its byte order may change."""
        if not (isinstance(state, tuple) and len(state) == _PLAIN_DTYPE_STATE_LEN
                and state[0] == 3 and _as_str(state[1]) in ("<", ">", "|", "=")
                and state[2:5] == (None, None, None) and state[5] in (-1, dtype.itemsize)
                and state[6] in (-1, dtype.alignment) and state[7] == dtype.flags):
            raise UnsafePickleError(f"dtype state {state!r:.200} for {dtype!r} would make it "
                                    "more than a plain numeric dtype")
        dtype.__setstate__((3, _as_str(state[1]), None, None, None, -1, -1, dtype.flags))
        _check_plain(dtype)

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        """Admit ``(version, shape, dtype, is_fortran, data)`` with data of the right size."""
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)
                and isinstance(state[2], np.dtype) and isinstance(state[3], bool)
                and isinstance(state[4], bytes | bytearray | str)):
            raise UnsafePickleError(f"array state {type(state).__name__} is not a plain array's")
        version, shape, dtype, fortran, data = state
        dtype = self._take_dtype(dtype)
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise UnsafePickleError(f"array shape {shape!r:.100}")
        if isinstance(data, str):
            data = data.encode("latin1")
        if math.prod(shape) * dtype.itemsize != len(data):
            raise CheckpointError(f"array of shape {shape} {dtype} with {len(data)} bytes")
        array.__setstate__((version, shape, dtype, fortran, data))


def load_pickle(stream: IO[bytes], where: str, limit: int | None = None) -> Any:
    """Unpickle ``stream`` with only plain NumPy arrays and builtin containers admitted.

    Python 2 pickles (the CIFAR-10 batches, ``mnist.pkl.gz``) are read with
    ``encoding="bytes"``, so their ``str`` objects (dict keys, class names) come back as
    ``bytes`` and array data is used without a decode-encode round trip. Memory stays in
    proportion to the bytes read: declared lengths allocate only what the stream holds,
    and the number of opcodes is bounded.

    Args:
        stream: a binary file object, e.g. from ``open`` or ``gzip.open``.
        where: the file's name, used in error messages.
        limit: the most bytes the pickle may take from ``stream`` (for a compressed
            file, ``glasscnn.io.errors.inflation_limit`` of its size); None for no limit.

    Returns:
        The unpickled object.

    Raises:
        CheckpointError (a ValueError): the stream is truncated or corrupt ("truncated
            or corrupt data"), or names or changes anything not admitted ("unsafe pickle
            refused").
    """
    try:
        return _DataUnpickler(stream, where, limit).load()
    except UnsafePickleError as err:
        message = str(err).removeprefix(f"{where}: ")
        raise UnsafePickleError(f"{where}: unsafe pickle refused: {message}") from None
    except (pickle.UnpicklingError, EOFError, gzip.BadGzipFile, zlib.error,
            tarfile.ReadError) as err:
        raise CheckpointError(
            f"{where}: truncated or corrupt data ({str(err) or 'unexpected end'})"
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"{where}: not a valid pickle ({type(err).__name__}: {err!s:.200})"
        ) from None
