"""CIFAR-10, the official "python version": pickled batches in a folder or in the .tar.gz.

Each batch (``data_batch_1`` … ``data_batch_5``, ``test_batch``) is a pickled dict whose
``data`` is a 10000×3072 uint8 array — the R plane, then G, then B, each 32×32 row-major —
and whose ``labels`` are 10000 ints; ``batches.meta`` holds ``label_names`` (the layout
the CIFAR-10 page documents). Pickles are read with the restricted unpickler of ``safe_pickle``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.data.download import atomic_folder
from glasscnn.data.safe_pickle import load_pickle
from glasscnn.io.errors import CheckpointError, file_errors, inflation_limit

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
META = "batches.meta"
SPLIT_FILES = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_VALUES = 3 * 32 * 32


def _as_str_keys(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def parse_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an unpickled CIFAR batch and turn it into arrays.

    Args:
        obj: the unpickled dict with ``data`` (N, 3072) uint8 and ``labels`` (N ints).
        where: the file's name, used in error messages.

    Returns:
        images (N, 3, 32, 32) uint8 and labels (N,) int64.
    """
    batch = _as_str_keys(obj, where)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _VALUES:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise CheckpointError(
            f"{where}: 'data' must be an (N, 3072) uint8 array, found {dtype} shape {shape}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError(f"{where}: 'labels' must be a list of ints") from None
    if labels.shape != (data.shape[0],):
        raise CheckpointError(
            f"{where}: {data.shape[0]} images but 'labels' has shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise CheckpointError(
            f"{where}: labels outside 0..9 (min {labels.min()}, max {labels.max()})"
        )
    return data.reshape(-1, 3, 32, 32), labels


def parse_meta(obj: Any, where: str) -> tuple[str, ...]:
    """Read the class names from an unpickled ``batches.meta`` dict (key ``label_names``)."""
    names = _as_str_keys(obj, where).get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES):
        raise CheckpointError(f"{where}: 'label_names' must be a list of {len(CLASSES)} names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _check_split(split: str) -> tuple[str, ...]:
    if split not in SPLIT_FILES:
        raise ValueError(f"cifar10: split must be 'train' or 'test', got {split!r}")
    return SPLIT_FILES[split]


def read_batches_folder(
    folder: str | os.PathLike[str], split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read one split from an extracted ``cifar-10-batches-py`` folder.

    Returns:
        images (N, 3, 32, 32) uint8 — N = 50000 for train, 10000 for test — labels (N,)
        int64, and the class names from ``batches.meta`` (the standard ones if it is absent).

    Raises:
        FileNotFoundError: a batch is missing.
        CheckpointError (a ValueError): a batch is unsafe, truncated, corrupt or not a
            CIFAR-10 batch; names the file.
    """
    folder = Path(folder)
    parts = [parse_batch(_read_pickle(folder / name), str(folder / name))
             for name in _check_split(split)]
    classes = CLASSES
    if (folder / META).is_file():
        classes = parse_meta(_read_pickle(folder / META), str(folder / META))
    return (*_join(parts), classes)


def _read_pickle(path: Path) -> Any:
    with file_errors(path, "CIFAR-10 batch"), path.open("rb") as f:
        return load_pickle(f, str(path), limit=os.fstat(f.fileno()).st_size)


def read_archive(
    path: str | os.PathLike[str], split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read one split straight from ``cifar-10-python.tar.gz``, in one pass over the archive.

    Returns:
        As ``read_batches_folder``.

    Raises:
        CheckpointError (a ValueError): the archive is truncated or corrupt or lacks a
            batch; names the file.
    """
    path = Path(path)
    wanted = _check_split(split)
    found: dict[str, Any] = {}
    with file_errors(path, "CIFAR-10 archive"):
        limit = inflation_limit(path.stat().st_size)
        _scan_archive(path, (*wanted, META), found, limit)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise CheckpointError(f"{path}: archive has no {BATCHES_DIR}/{missing[0]}")
    parts = [parse_batch(found[n], f"{path}:{BATCHES_DIR}/{n}") for n in wanted]
    classes = parse_meta(found[META], f"{path}:{META}") if META in found else CLASSES
    return (*_join(parts), classes)


def _scan_archive(path: Path, names: tuple[str, ...], found: dict[str, Any], limit: int) -> None:
    """Unpickle the members ``names`` of the batches folder in the archive into ``found``."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                base = name.removeprefix(BATCHES_DIR + "/")
                if name.startswith(BATCHES_DIR + "/") and base in names and member.isfile():
                    found[base] = load_pickle(tar.extractfile(member), f"{path}:{name}", limit)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise CheckpointError(
            f"{path}: truncated or corrupt archive ({str(err) or 'unexpected end'})"
        ) from None


def extract_archive(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> Path:
    """Extract the batches of ``cifar-10-python.tar.gz`` into ``dest/cifar-10-batches-py``.

    Only regular files directly inside ``cifar-10-batches-py/`` are written (so no member
    can land outside ``dest``), into a temporary folder that is renamed into place once
    every batch is present. The files may together take at most 32 times the archive's
    size (plus 1 MiB).

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        CheckpointError (a ValueError): the archive is truncated or corrupt, lacks a batch
            or expands past that bound; names the file.
    """
    archive = Path(archive)
    target = Path(dest) / BATCHES_DIR
    wanted = {*SPLIT_FILES["train"], *SPLIT_FILES["test"]}
    with file_errors(archive, "CIFAR-10 archive"), atomic_folder(target) as tmp:
        limit, written = inflation_limit(archive.stat().st_size), 0
        try:
            with tarfile.open(archive, "r|gz") as tar:
                for member in tar:
                    parent, _, base = member.name.removeprefix("./").rpartition("/")
                    if parent == BATCHES_DIR and member.isfile() and base not in ("", ".", ".."):
                        written += member.size
                        if written > limit:
                            raise CheckpointError(
                                f"{archive}: the batches would take more than {limit} bytes, "
                                "more than the archive can hold (a compression bomb?)"
                            )
                        with (tmp / base).open("wb") as out:
                            shutil.copyfileobj(tar.extractfile(member), out)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise CheckpointError(
                f"{archive}: truncated or corrupt archive ({str(err) or 'unexpected end'})"
            ) from None
        missing = sorted(wanted - {p.name for p in tmp.iterdir()})
        if missing:
            raise CheckpointError(f"{archive}: archive has no {BATCHES_DIR}/{missing[0]}")
    return target
