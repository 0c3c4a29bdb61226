"""A restricted unpickler for data-set pickles: NumPy arrays, dicts, lists, numbers, strings.

The CIFAR-10 batches and ``mnist.pkl.gz`` are pickles, and a pickle can name any Python
callable and run it while loading. ``load_pickle`` admits only the few NumPy globals that
rebuild plain numeric arrays (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar`` and, for
protocol 5, ``_frombuffer``) plus ``_codecs.encode`` for Latin-1 only (how protocol 2 stores
bytes); every other global is refused before anything is called, and object dtypes are
refused, so a malicious pickle raises ``ValueError`` instead of running.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zlib
from typing import IO, Any

import numpy as np

_NUMERIC_KINDS = "biuf"


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something outside the admitted globals and dtypes."""


def _plain_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(obj, align, copy)
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise _Refused(f"dtype {dtype!r} is not a plain numeric dtype")
    return dtype


def _as_str(data: Any) -> Any:
    return data.decode("latin1") if isinstance(data, bytes) else data


class _NdarrayName:
    """Stands for ``numpy.ndarray`` inside a pickle, so the class itself is never callable."""


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    if cls is not _NdarrayName:
        raise _Refused(f"_reconstruct of {cls!r}; only numpy.ndarray is allowed")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(_as_str(dtype)))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    return np.frombuffer(buf, _plain_dtype(dtype)).reshape(shape, order=order)


def _scalar(dtype: Any, data: Any) -> Any:
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, _plain_dtype(dtype), count=1)[0]


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refers to {module}.{name}, which is not allowed (only NumPy arrays, "
                "lists, dicts, numbers and strings are)"
            ) from None


def load_pickle(stream: IO[bytes], where: str) -> Any:
    """Unpickle ``stream`` with only plain NumPy arrays and builtin containers admitted.

    Python 2 pickles (the CIFAR-10 batches, ``mnist.pkl.gz``) are read with
    ``encoding="bytes"``, so their ``str`` objects (dict keys, class names) come back as
    ``bytes`` and array data is used without a decode-encode round trip.

    Args:
        stream: a binary file object, e.g. from ``open`` or ``gzip.open``.
        where: the file's name, used in error messages.

    Returns:
        The unpickled object.

    Raises:
        ValueError: the stream is truncated or corrupt ("truncated or corrupt data"), or
            names anything not admitted ("unsafe pickle refused").
    """
    try:
        return _RestrictedUnpickler(stream, encoding="bytes").load()
    except _Refused as err:
        raise ValueError(f"{where}: unsafe pickle refused: {err}") from None
    except (pickle.UnpicklingError, EOFError, gzip.BadGzipFile, zlib.error,
            tarfile.ReadError) as err:
        raise ValueError(f"{where}: truncated or corrupt data ({err or 'unexpected end'})") \
            from None
    except Exception as err:
        raise ValueError(
            f"{where}: not a valid pickle ({type(err).__name__}: {err})"
        ) from None
