"""Hostile and corrupt files: loaders raise CheckpointError only and memory stays bounded.

Each regression test below builds one hostile or corrupt file by hand; the fuzz test at the
end throws seeded truncations and bit flips of every format at the loaders.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import glasscnn
from glasscnn import io as gio
from glasscnn import models
from glasscnn.checkpoint import (
    Checkpoint,
    atomic_write,
    build_model_for,
    load_checkpoint,
    save_checkpoint,
)
from glasscnn.data.download import atomic_folder, download
from glasscnn.data.idx import read_idx
from glasscnn.data.safe_pickle import load_pickle
from glasscnn.io import CheckpointError, UnsafePickleError, load_state_dict, load_torch

MiB = 1 << 20


def peak_of(call: Callable[[], object]) -> tuple[int, object]:
    """Run ``call`` under tracemalloc; its peak traced bytes and its result or exception."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result: object = call()
    except Exception as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, result


def read_records(path: Path) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        top = names[0].split("/", 1)[0]
        return top, {n.split("/", 1)[1]: zf.read(n) for n in names}


def write_zip(path: Path, records: dict[str, bytes], top: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records.items():
            zf.writestr(f"{top}/{name}", data)


def patched_pth(path: Path, state: dict, *edits: tuple[bytes, bytes]) -> Path:
    """A .pth written by glasscnn whose data.pkl has each ``old`` replaced by ``new`` once."""
    gio.save_torch(state, path)
    top, records = read_records(path)
    pkl = records["data.pkl"]
    for old, new in edits:
        assert pkl.count(old) >= 1, old
        pkl = pkl.replace(old, new, 1)
    write_zip(path, {**records, "data.pkl": pkl}, top)
    return path


# 1: no trace


def test_refused_pth_leaves_no_trace(tmp_path):
    x = np.arange(4, dtype=np.float32)
    good = tmp_path / "good.pth"
    gio.save_torch({"x": x}, good)
    glob = b"ctorch\nFloatStorage\n"
    evil = tmp_path / "evil.pth"
    gio.save_torch({"x": x}, evil)
    top, records = read_records(evil)
    at = records["data.pkl"].index(glob) + len(glob) + 2
    records["data.pkl"] = (records["data.pkl"][:at] + b"}X\x08\x00\x00\x00bfloat16\x88sb"
                           + records["data.pkl"][at:])
    write_zip(evil, records, top)
    with pytest.raises(UnsafePickleError, match=r"evil\.pth.*set the state of a _StorageType"):
        load_torch(evil)
    np.testing.assert_array_equal(load_torch(good)["x"], x)


def test_pickle_cannot_add_items_to_allowlisted_globals(tmp_path):
    glob = b"ctorch._utils\n_rebuild_tensor_v2\n"
    path = patched_pth(tmp_path / "item.pth", {"x": np.ones(2, np.float32)},
                       (glob, glob + b"q\xf0X\x01\x00\x00\x00aK\x01s"))
    with pytest.raises(UnsafePickleError, match="adds an item to a _Global"):
        load_torch(path)


def test_dtype_flags_cannot_change_after_the_check():
    dtype_state = b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
    evil = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            b"(K\x01K\x04\x85cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R" + dtype_state
            + b"\x89C\x04\x00\x00\x00\x00tb.")
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: unsafe pickle refused: dtype"):
        load_pickle(io.BytesIO(evil), "evil.pkl")
    plain = evil.replace(b"K?tb", b"K\x00tb")
    out = load_pickle(io.BytesIO(plain), "plain.pkl")
    assert out.dtype == np.uint8 and not out.dtype.hasobject and out.tolist() == [0, 0, 0, 0]


# 2: memory


def test_stride0_pth_view_stays_a_view(tmp_path):
    path = patched_pth(tmp_path / "wide.pth", {"x": np.array([1.5], np.float32)},
                       (b"K\x01\x85K\x01\x85", b"J\x00\x00\x00\x10\x85K\x00\x85"))
    assert path.stat().st_size < 1000
    peak, out = peak_of(lambda: load_torch(path)["x"])
    assert isinstance(out, np.ndarray), out
    assert out.shape == (2**28,) and out.strides == (0,) and not out.flags.writeable
    assert out[0] == out[-1] == 1.5
    assert peak < MiB


def test_deflated_storage_zip_bomb_is_refused_before_inflating(tmp_path):
    path = patched_pth(tmp_path / "bomb.pth", {"x": np.zeros(1, np.float32)},
                       (b"K\x01tQ", b"J\x00\x00\x00\x01tQ"),
                       (b"K\x01\x85", b"J\x00\x00\x00\x01\x85"))
    top, records = read_records(path)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in records.items():
            if name == "data/0":
                info = zipfile.ZipInfo(f"{top}/{name}")
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w") as member:
                    for _ in range(64):
                        member.write(bytes(MiB))
            else:
                zf.writestr(f"{top}/{name}", data)
    assert path.stat().st_size < MiB
    peak, err = peak_of(lambda: load_torch(path))
    assert isinstance(err, CheckpointError) and "zip bomb" in str(err), err
    assert peak < 4 * MiB


def npy_member(header: dict, data: bytes) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data


def test_npz_member_declaring_a_huge_shape_allocates_nothing(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", npy_member(
            {"descr": "<f4", "fortran_order": False, "shape": (2**28,)}, bytes(16)))
    peak, err = peak_of(lambda: load_state_dict(path))
    assert isinstance(err, CheckpointError) and "huge.npz" in str(err), err
    assert "declares shape (268435456,)" in str(err)
    assert peak < MiB


def test_safetensors_absurd_empty_shape(tmp_path):
    text = json.dumps({"w": {"dtype": "F32", "shape": [0, 2**62, 2**62],
                             "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "empty.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError, match=r"empty\.safetensors.*too large"):
        load_state_dict(path)


@pytest.mark.parametrize("side", [2**14, 2**31])
def test_idx_header_declaring_a_huge_shape(tmp_path, side):
    header = struct.pack(">BBBBII", 0, 0, 0x08, 2, side, side)
    data = bytearray(gzip.compress(header))
    data[-4:] = struct.pack("<I", (12 + side * side) % 2**32)
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    assert len(data) < 64
    peak, err = peak_of(lambda: read_idx(path))
    assert isinstance(err, CheckpointError) and "huge-idx3-ubyte.gz" in str(err), err
    assert peak < MiB


def test_checkpoint_metadata_cannot_drive_allocation(tmp_path):
    state = models.get("lenet_bn").state_dict()
    path = tmp_path / "classes.npz"
    save_checkpoint(path, Checkpoint({"model": "lenet_bn",
                                      "model_kwargs": {"num_classes": 300_000}}, state))
    assert path.stat().st_size < MiB
    ckpt = load_checkpoint(path)
    peak, err = peak_of(ckpt.build_model)
    assert isinstance(err, CheckpointError) and "classes.npz" in str(err), err
    assert "more parameters than the 62914 values in the file" in str(err)
    assert peak < 2 * MiB
    fine = tmp_path / "fine.npz"
    save_checkpoint(fine, Checkpoint({"model": "lenet_bn", "model_kwargs": {}}, state))
    rebuilt = load_checkpoint(fine).build_model().state_dict()
    for key, value in state.items():
        np.testing.assert_array_equal(rebuilt[key], value)


@pytest.mark.parametrize("name", ["mnist_net", "lenet_bn", "resnet_cifar", "vgg_cifar"])
def test_bounded_build_counts_every_weight_and_changes_nothing(name):
    reference = models.get(name, rng=np.random.default_rng(5))
    drawn = sum(p.data.size for m_name, m in reference.named_modules()
                if type(m).__name__ in ("Conv2d", "Linear") for p in m.parameters())
    built = build_model_for(name, {"rng": np.random.default_rng(5)},
                            {"all": np.empty(drawn, np.uint8)}, "file.npz")
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(built.state_dict()[key], value)
    with pytest.raises(CheckpointError, match=r"file\.npz: these weights do not fit"):
        build_model_for(name, {}, {"all": np.empty(drawn - 1, np.uint8)}, "file.npz")


def test_pickle_memo_index_costs_nothing(tmp_path):
    put = b"ccollections\nOrderedDict\nq\x00"
    path = patched_pth(tmp_path / "memo.pth", {"x": np.ones(2, np.float32)},
                       (put, put + b"r\x00\x00\x00\x01"))
    peak, out = peak_of(lambda: load_torch(path))
    np.testing.assert_array_equal(out["x"], np.ones(2, np.float32))
    assert peak < MiB
    data = b"\x80\x02K\x07r\x00\x00\x00\x01."
    peak, out = peak_of(lambda: load_pickle(io.BytesIO(data), "memo.pkl"))
    assert out == 7 and peak < MiB


def test_tied_weights_cannot_multiply_memory(tmp_path):
    ties = b"".join(b"X\x03\x00\x00\x00k%02dh\xf0" % i for i in range(63))
    path = patched_pth(tmp_path / "tied.pth", {"w": np.zeros(2**18, np.float32)},
                       (b"Ru.", b"Rq\xf0" + ties + b"u."))
    peak, out = peak_of(lambda: load_torch(path))
    assert isinstance(out, dict) and len(out) == 64, out
    assert out["w"].flags.writeable and out["k00"].flags.writeable
    assert not np.shares_memory(out["w"], out["k00"])
    assert not out["k62"].flags.writeable
    assert peak < 4 * MiB


def test_pickle_declared_lengths_allocate_only_what_is_there():
    huge = b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc"
    peak, err = peak_of(lambda: load_pickle(io.BytesIO(huge), "long.pkl"))
    assert isinstance(err, CheckpointError) and "long.pkl" in str(err), err
    assert peak < MiB


# 3: one clean error


@pytest.mark.parametrize("depth", [1050, 200_000])
def test_deeply_nested_safetensors_header(tmp_path, depth):
    text = b"[" * depth
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors.*nested too deeply"):
        load_state_dict(path)


def test_unknown_zip_compression_method(tmp_path):
    path = tmp_path / "method.npz"
    gio.save_npz({"w": np.ones(3, np.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[8:10] = struct.pack("<H", 99)
    central = raw.index(b"PK\x01\x02")
    raw[central + 10:central + 12] = struct.pack("<H", 99)
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"method\.npz.*compression method 99"):
        load_state_dict(path)


def test_bit_flip_in_pth_data_is_caught_by_default(tmp_path):
    path = tmp_path / "flip.pth"
    gio.save_torch({"w": np.arange(64, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(np.arange(64, dtype=np.float32).tobytes()) + 100] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"flip\.pth.*CRC mismatch"):
        load_state_dict(path)


def test_checkpoint_errors_are_checkpoint_errors(tmp_path):
    state = {"w": np.ones(3, np.float32)}
    good = tmp_path / "good.npz"
    save_checkpoint(good, Checkpoint({"model": "mnist_net"}, state))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(CheckpointError, match=r"cut\.npz"):
        load_checkpoint(cut)
    bad_utf8 = tmp_path / "utf8.npz"
    np.savez(bad_utf8, **{"meta.json": np.frombuffer(b'{"a": "\xff"}', np.uint8)})
    with pytest.raises(CheckpointError, match=r"utf8\.npz: meta\.json is not valid JSON"):
        load_checkpoint(bad_utf8)
    shape = tmp_path / "shape.npz"
    save_checkpoint(shape, Checkpoint({"model": "mnist_net", "input_shape": [1, 10**6, 10**6]},
                                      state))
    with pytest.raises(CheckpointError, match=r"shape\.npz: meta\.json entry 'input_shape'"):
        load_checkpoint(shape)
    with pytest.raises(CheckpointError, match=r"good\.npz"):
        load_checkpoint(good).build_model()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.npz")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        load_state_dict(tmp_path / "folder.npz")


def test_weights_that_do_not_fit_are_a_checkpoint_error_too(tmp_path):
    path = tmp_path / "other.npz"
    gio.save_npz({"weight": np.ones((2, 3), np.float32)}, path)
    with pytest.raises(CheckpointError, match=r"other\.npz does not fit the model") as info:
        gio.load_into(models.get("lenet_bn"), path)
    assert isinstance(info.value, KeyError)


# 13: atomic writes


def test_killed_write_leaves_no_temporary_behind(tmp_path):
    target = tmp_path / "checkpoint.npz"
    code = ("import os, sys\nfrom glasscnn.checkpoint import atomic_write\n"
            "atomic_write(sys.argv[1], lambda fh: (fh.write(b'half'), fh.flush(), os._exit(9)))")
    env = {**os.environ, "PYTHONPATH": str(Path(glasscnn.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env, timeout=60)
    assert done.returncode == 9
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    atomic_write(target, lambda fh: fh.write(b"whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]
    assert target.read_bytes() == b"whole"


def test_only_temporaries_of_dead_or_old_writers_are_removed(tmp_path):
    target = tmp_path / "history.json"
    live = tmp_path / f".history.json.{socket.gethostname()}.{os.getppid()}.abcd.tmp"
    other_host = tmp_path / ".history.json.elsewhere.999999999.abcd.tmp"
    legacy_old, legacy_new = (tmp_path / ".history.json.k2j4h5g6.tmp",
                              tmp_path / ".history.json.a1b2c3d4.tmp")
    for path in (live, other_host, legacy_old, legacy_new):
        path.write_bytes(b"")
    os.utime(legacy_old, (0, 0))
    atomic_write(target, lambda fh: fh.write(b"{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, live.name, other_host.name, legacy_new.name])


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_get_the_umask_permissions(tmp_path, umask_022):
    atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
    save_checkpoint(tmp_path / "c.npz", Checkpoint({}, {"w": np.ones(1)}))
    source = tmp_path / "src.bin"
    source.write_bytes(b"data")
    download(source.as_uri(), tmp_path / "d" / "got.bin")
    with atomic_folder(tmp_path / "folder") as tmp:
        (tmp / "f").write_bytes(b"")
    for path in ("a.bin", "c.npz", "d/got.bin"):
        assert (tmp_path / path).stat().st_mode & 0o777 == 0o644, path
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == []


# fuzz


def mutations(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Seeded truncations, bit flips and overwritten runs of ``data``.

    Positions are drawn from the whole file, its first 1 KiB and its last 4 KiB in turn, so
    that headers, zip directories and metadata are hit as often as the bulk of the data.
    """
    size = len(data)
    out = []
    for i in range(count):
        where = (0, size) if i % 3 == 0 else (0, min(size, 1024)) if i % 3 == 1 else (
            max(0, size - 4096), size)
        pos = int(rng.integers(*where))
        kind = i % 4
        if kind == 0:
            out.append(data[:pos])
            continue
        raw = bytearray(data)
        if kind in (1, 2):
            for _ in range(1 if kind == 1 else int(rng.integers(2, 6))):
                at = int(rng.integers(*where))
                raw[at] ^= 1 << int(rng.integers(8))
        else:
            run = int(rng.integers(1, 17))
            raw[pos:pos + run] = rng.choice([b"\xff" * run, rng.bytes(run), bytes(run)])[:run]
        out.append(bytes(raw))
    return out


def cifar_batch(rng: np.random.Generator) -> bytes:
    batch = {b"batch_label": b"testing batch 1 of 1",
             b"labels": [int(v) for v in rng.integers(0, 10, 8)],
             b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
             b"filenames": [b"img_%d.png" % i for i in range(8)]}
    return pickle.dumps(batch, protocol=2)


def mnist_pickle(rng: np.random.Generator) -> bytes:
    parts = tuple(((rng.integers(0, 256, (n, 784)) / np.float32(256)).astype(np.float32),
                   rng.integers(0, 10, n).astype(np.int64)) for n in (4, 2, 3))
    return gzip.compress(pickle.dumps(parts, protocol=2))


def torch_saved(torch, path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    torch.save(net.state_dict(), path)


def fuzz_formats(torch, tmp_path: Path, rng: np.random.Generator) -> dict:
    """``{file name: (bytes, loader)}`` for every format glasscnn reads (``t.pth`` needs torch)."""
    state = {"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "conv.bias": rng.standard_normal(4).astype(np.float32),
             "bn.num_batches_tracked": np.array(3, np.int64)}
    files = {}
    for name in ("w.npz", "z.npz", "w.pth", "w.safetensors"):
        path = tmp_path / name
        if name == "z.npz":
            gio.save_npz(state, path, compress=True)
        else:
            gio.save_state_dict(state, path)
        files[name] = path.read_bytes()
    if torch is not None:
        torch_saved(torch, tmp_path / "t.pth")
        files["t.pth"] = (tmp_path / "t.pth").read_bytes()
    net = models.get("lenet_bn", num_classes=3, input_size=16)
    meta = {"model": "lenet_bn", "model_kwargs": {"num_classes": 3, "input_size": 16},
            "input_shape": [3, 16, 16], "classes": ["a", "b", "c"],
            "training": {"epoch": 2, "optimizer": {"lr": 0.1}}}
    save_checkpoint(tmp_path / "ckpt.npz", Checkpoint(meta, net.state_dict(),
                                                     {"normalizer": {"mean": np.zeros(3)}}))
    files["ckpt.npz"] = (tmp_path / "ckpt.npz").read_bytes()
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    idx = struct.pack(">BBBBIII", 0, 0, 8, 3, *images.shape) + images.tobytes()
    files["i-idx3-ubyte"] = idx
    files["i-idx3-ubyte.gz"] = gzip.compress(idx)
    files["test_batch"] = cifar_batch(rng)
    files["mnist.pkl.gz"] = mnist_pickle(rng)

    def cifar(path: Path) -> object:
        from glasscnn.data.cifar import read_batches_folder
        return read_batches_folder(path.parent, "test")

    def mnist(path: Path) -> object:
        from glasscnn.data.datasets import read_mnist_pickle
        return read_mnist_pickle(path, "test")

    def checkpoint(path: Path) -> object:
        return load_checkpoint(path).build_model()

    loaders = {"ckpt.npz": checkpoint, "i-idx3-ubyte": read_idx, "i-idx3-ubyte.gz": read_idx,
               "test_batch": cifar, "mnist.pkl.gz": mnist}
    return {name: (data, loaders.get(name, load_state_dict)) for name, data in files.items()}


FUZZ_CASES = 240
FUZZ_FILES = ["w.npz", "z.npz", "w.pth", "t.pth", "w.safetensors", "ckpt.npz", "i-idx3-ubyte",
              "i-idx3-ubyte.gz", "test_batch", "mnist.pkl.gz"]


@pytest.mark.parametrize("name", FUZZ_FILES)
def test_fuzzed_files_raise_checkpoint_error_only(request, tmp_path, name):
    """Seeded mutations of one format: a CheckpointError naming the file, or a clean load.

    ``t.pth`` is written by ``torch.save``, ``w.pth`` by glasscnn. Memory: the traced peak
    of each load stays under 4 times the file's size plus 1 MiB (compressed files: plus
    32 times their size, what their data may inflate to).
    """
    torch = request.getfixturevalue("torch") if name == "t.pth" else None
    rng = np.random.default_rng(FUZZ_FILES.index(name))
    data, loader = fuzz_formats(torch, tmp_path, rng)[name]
    folder = tmp_path / "fuzz"
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    assert loader(path) is not None
    compressed = name.endswith(".gz") or name == "z.npz"
    tracemalloc.start()
    try:
        for i, mutated in enumerate(mutations(data, rng, FUZZ_CASES)):
            path.write_bytes(mutated)
            bound = 4 * len(mutated) + MiB + (32 * len(mutated) if compressed else 0)
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            try:
                loader(path)
            except CheckpointError as err:
                message = str(err)
                assert str(path) in message, (i, message)
                assert "unexpected error" not in message, (i, message)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert peak <= bound, (i, peak, len(mutated))
    finally:
        tracemalloc.stop()
