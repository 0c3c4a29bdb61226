"""glasscnn.io: npz, torch-free .pth reader/writer, safetensors, key mapping, load_into."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from glasscnn import io as gio
from glasscnn.io import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafePickleError,
    load_into,
    load_state_dict,
    load_torch,
    match_report,
    remap_keys,
    save_state_dict,
)
from glasscnn.nn.module import Module, Parameter

TORCH_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                "uint8", "bool"]
NUMPY_DTYPES = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8",
                "bool"]


def to_numpy(t) -> np.ndarray:
    """A torch tensor as NumPy (bfloat16 widened to float32, as the reader does)."""
    import torch

    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()


def random_tensor(torch, dtype: str, shape=(3, 4, 5)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 50
    if dtype == "bool":
        return x > 0
    return x.to(getattr(torch, dtype))


def write_zip(path: Path, records: dict[str, bytes], top: str = "archive") -> None:
    """A zip laid out like torch.save: ``top/name`` for each record, stored."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records.items():
            zf.writestr(f"{top}/{name}", data)


def read_records(path: Path) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        top = names[0].split("/", 1)[0]
        return top, {n.split("/", 1)[1]: zf.read(n) for n in names}


def assert_no_shared_memory(sd: dict[str, np.ndarray]) -> None:
    arrays = list(sd.items())
    for i, (ka, a) in enumerate(arrays):
        for kb, b in arrays[i + 1:]:
            assert not np.shares_memory(a, b), (ka, kb)


class _Evil:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class Tiny(Module):
    """conv-like weight + bias, a BatchNorm-like child with buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = Parameter(np.zeros((4, 3, 3, 3), dtype=np.float32))
        self.bias = Parameter(np.zeros(4, dtype=np.float32))
        self.bn = _Norm(4)


class _Norm(Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = Parameter(np.ones(n, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(n, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))


def tiny_state(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    return {
        "weight": rng.standard_normal((4, 3, 3, 3)).astype(dtype),
        "bias": rng.standard_normal(4).astype(dtype),
        "bn.weight": rng.standard_normal(4).astype(dtype),
        "bn.running_mean": rng.standard_normal(4).astype(dtype),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_read_torch_dtypes(torch, tmp_path, dtype):
    t = random_tensor(torch, dtype)
    path = tmp_path / "w.pth"
    torch.save({"w": t, "scalar": t.flatten()[0].clone()}, path)
    sd = load_torch(path)
    assert list(sd) == ["w", "scalar"]
    for key, ref in (("w", t), ("scalar", t.flatten()[0])):
        want = to_numpy(ref)
        assert sd[key].dtype == want.dtype and sd[key].shape == want.shape
        np.testing.assert_array_equal(sd[key], want)
        assert sd[key].flags.c_contiguous and sd[key].flags.writeable


def test_read_shared_storages_views_and_strides(torch, tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    tensors = {
        "base": base,
        "same": base,
        "row": base[1],
        "column": base[:, 2, :],
        "transposed": base.permute(2, 0, 1),
        "stepped": base[::2, 1::2, ::3],
        "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),
        "empty": base[:, :0],
        "element": base[2, 3, 4],
    }
    path = tmp_path / "views.pth"
    torch.save(tensors, path)
    sd = load_torch(path)
    for key, ref in tensors.items():
        assert sd[key].shape == tuple(ref.shape), key
        np.testing.assert_array_equal(sd[key], to_numpy(ref), err_msg=key)
    nonempty = {k: v for k, v in sd.items() if v.size}
    assert_no_shared_memory(nonempty)
    sd["row"][0, 0] = -1.0
    assert sd["base"][1, 0, 0] == 20.0


def test_read_module_state_dict_with_batchnorm(torch, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5), torch.nn.BatchNorm1d(5),
    )
    net.train()
    net(torch.randn(2, 3, 6, 6))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    sd = load_state_dict(path)
    ref = net.state_dict()
    assert list(sd) == list(ref)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"] == 1
    for key, value in ref.items():
        np.testing.assert_array_equal(sd[key], to_numpy(value), err_msg=key)


def test_read_parameters_saved_directly(torch, tmp_path):
    lin = torch.nn.Linear(3, 2)
    path = tmp_path / "params.pth"
    torch.save(OrderedDict(lin.named_parameters()), path)
    sd = load_torch(path)
    np.testing.assert_array_equal(sd["weight"], to_numpy(lin.weight))
    np.testing.assert_array_equal(sd["bias"], to_numpy(lin.bias))


@pytest.mark.parametrize("holder", ["state_dict", "model", "model_state_dict"])
def test_read_checkpoint_dicts(torch, tmp_path, holder):
    weights = {"fc.weight": torch.randn(2, 3), "fc.bias": torch.randn(2)}
    ckpt = {"epoch": 3, "best_acc": 0.91, "note": "run 7", "history": [0.5, 0.7], "cfg": None,
            "flags": (True, False), holder: weights}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    sd = load_state_dict(path)
    assert list(sd) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(sd[key], to_numpy(value))
    raw = gio.read_torch_checkpoint(path)
    assert raw["epoch"] == 3 and raw["history"] == [0.5, 0.7] and raw["flags"] == (True, False)


def test_read_checkpoint_named_key_and_no_state_dict(torch, tmp_path):
    path = tmp_path / "ema.pth"
    torch.save({"epoch": 1, "net": {"w": torch.ones(2)}, "ema": {"w": torch.zeros(2)}}, path)
    np.testing.assert_array_equal(load_torch(path, key="ema")["w"], np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"'epoch' \(int\).*'net' \(dict\)"):
        load_torch(path)
    with pytest.raises(ValueError, match="no entry 'nope'"):
        load_torch(path, key="nope")


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_written_pth_loads_in_torch_weights_only(torch, tmp_path, rng, dtype):
    x = (rng.standard_normal((4, 3, 2)) * 50).astype(dtype)
    sd = {
        "w": x,
        "transposed": x.transpose(2, 0, 1),
        "big_endian": x.astype(x.dtype.newbyteorder(">")),
        "scalar": x.reshape(-1)[0].copy().reshape(()),
        "empty": np.zeros((0, 3), dtype=dtype),
    }
    path = tmp_path / "mine.pth"
    save_state_dict(sd, path)
    for mmap in (False, True):
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        assert type(loaded) is OrderedDict and list(loaded) == list(sd)
        for key, value in sd.items():
            assert loaded[key].dtype == getattr(torch, dtype), key
            assert tuple(loaded[key].shape) == value.shape, key
            np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)
    back = load_state_dict(path)
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == np.dtype(dtype)


def test_written_pth_layout_matches_torch(tmp_path, rng):
    path = tmp_path / "layout.pth"
    save_state_dict({"a": rng.standard_normal(7).astype(np.float32),
                     "b": np.arange(5, dtype=np.int64)}, path)
    top, records = read_records(path)
    assert top == "layout"
    assert list(records) == ["data.pkl", "byteorder", "data/0", "data/1", "version"]
    assert records["byteorder"] == b"little" and records["version"].strip() == b"3"
    globals_ = {arg for op, arg, _ in pickletools.genops(records["data.pkl"])
                if op.name == "GLOBAL"}
    assert globals_ == {"collections OrderedDict", "torch._utils _rebuild_tensor_v2",
                        "torch FloatStorage", "torch LongStorage"}
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:][:4])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename


def test_written_checkpoint_dict_loads_in_torch(torch, tmp_path, rng):
    w = rng.standard_normal((3, 2)).astype(np.float32)
    ckpt = {"epoch": 12, "step": 2**40, "neg": -70000, "lr": 1e-3, "name": "vgg", "ok": True,
            "none": None, "hist": [1, 2.5, "x"], "pair": (1, 2), "quad": (1, 2, 3, 4),
            "state_dict": OrderedDict(w=w)}
    path = tmp_path / "ckpt.pth"
    gio.save_torch(ckpt, path)
    loaded = torch.load(path, weights_only=True)
    assert {k: v for k, v in loaded.items() if k != "state_dict"} == {
        k: v for k, v in ckpt.items() if k != "state_dict"}
    np.testing.assert_array_equal(loaded["state_dict"]["w"].numpy(), w)
    np.testing.assert_array_equal(load_torch(path)["w"], w)


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(ValueError, match=r"'c'.*complex128"):
        gio.save_torch({"c": np.zeros(2, dtype=np.complex128)}, tmp_path / "c.pth")
    with pytest.raises(ValueError, match="cannot save"):
        gio.save_torch({"state_dict": {"w": np.zeros(2)}, "obj": object()}, tmp_path / "o.pth")


def test_big_endian_archive(tmp_path, rng):
    """A checkpoint saved on a big-endian machine (byteorder record "big")."""
    x = rng.standard_normal((2, 3))
    path = tmp_path / "le.pth"
    gio.save_torch({"x": x, "n": np.arange(3, dtype=np.int64)}, path)
    top, records = read_records(path)
    records["byteorder"] = b"big"
    records["data/0"] = x.astype(">f8").tobytes()
    records["data/1"] = np.arange(3, dtype=">i8").tobytes()
    write_zip(tmp_path / "be.pth", records, top)
    sd = load_torch(tmp_path / "be.pth")
    np.testing.assert_array_equal(sd["x"], x)
    np.testing.assert_array_equal(sd["n"], np.arange(3))
    assert sd["x"].dtype.isnative


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_malicious_pickle_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Evil(marker) if payload == "system" else _EvalEvil(marker)
    for proto in (2, 4):
        path = tmp_path / f"evil{proto}.pth"
        write_zip(path, {"data.pkl": pickle.dumps({"w": evil}, protocol=proto),
                         "version": b"3\n"})
        with pytest.raises(UnsafePickleError) as info:
            load_state_dict(path)
        message = str(info.value)
        assert str(path) in message and "nothing was executed" in message
        assert f".{payload}'" in message
        assert not marker.exists()
    assert isinstance(info.value, ValueError)


def test_malicious_entry_in_real_torch_file(torch, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mixed.pth"
    torch.save({"w": torch.ones(3), "hook": _Evil(marker)}, path)
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_torch(path)
    assert not marker.exists()


def test_malicious_file_in_subprocess_leaves_no_marker(tmp_path):
    """From a clean interpreter: the command does not run and torch is never imported."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_zip(path, {"data.pkl": pickle.dumps(_Evil(marker), protocol=2)})
    code = ("import sys, glasscnn.io as g\n"
            "try:\n    g.load_state_dict(sys.argv[1])\n"
            "except g.UnsafePickleError as e:\n    print('refused', e)\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.startswith("refused") and not marker.exists()
    assert "torch imported: False" in out.stdout


def test_unknown_class_raises(torch, tmp_path):
    path = tmp_path / "ns.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace") as info:
        load_state_dict(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_zip_names_file(torch, tmp_path, cut):
    full = tmp_path / "full.pth"
    torch.save({"w": torch.randn(64, 64)}, full)
    raw = full.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_state_dict(path)
    assert str(path) in str(info.value)


def test_corrupt_and_foreign_files(torch, tmp_path, rng):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        load_state_dict(legacy)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a torch\.save zip"):
        load_state_dict(junk)
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "absent.pth")

    x = np.arange(4, dtype=np.float32)
    good = tmp_path / "good.pth"
    gio.save_torch({"x": x}, good)
    top, records = read_records(good)
    short = dict(records, **{"data/0": records["data/0"][:8]})
    write_zip(tmp_path / "short.pth", short, top)
    with pytest.raises(CheckpointError, match=r"short.pth: storage .* holds 8 bytes"):
        load_torch(tmp_path / "short.pth")
    pkl = records["data.pkl"]
    assert pkl.count(b"K\x01\x85") == 1
    stride = dict(records, **{"data.pkl": pkl.replace(b"K\x01\x85", b"K\x02\x85")})
    write_zip(tmp_path / "stride.pth", stride, top)
    with pytest.raises(CheckpointError, match=r"stride.pth: .*reach element 6 of a storage of 4"):
        load_torch(tmp_path / "stride.pth")
    flipped = dict(records, **{"data/0": np.arange(1, 5, dtype=np.float32).tobytes()})
    write_zip(tmp_path / "flip.pth", flipped, top)
    np.testing.assert_array_equal(load_torch(tmp_path / "flip.pth")["x"], x + 1)
    with zipfile.ZipFile(tmp_path / "flip.pth") as zf:
        crc_ok = zf.getinfo(f"{top}/data/0").CRC
    raw = bytearray((tmp_path / "flip.pth").read_bytes())
    at = raw.index(np.arange(1, 5, dtype=np.float32).tobytes())
    raw[at] ^= 0xFF
    (tmp_path / "flip.pth").write_bytes(bytes(raw))
    assert crc_ok
    with pytest.raises(CheckpointError, match="CRC mismatch"):
        load_torch(tmp_path / "flip.pth", verify_crc=True)


@pytest.mark.parametrize("compress", [False, True])
def test_npz_round_trip(tmp_path, rng, compress):
    sd = {f"layer.{d}": (rng.standard_normal((2, 3)) * 9).astype(d) for d in NUMPY_DTYPES}
    sd["file"] = np.float32(1.5)
    path = tmp_path / "w.npz"
    gio.save_npz(sd, path, compress=compress)
    with np.load(path, allow_pickle=False) as z:
        assert z.files == list(sd)
    back = load_state_dict(path)
    assert list(back) == list(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == np.asarray(value).dtype


def test_npz_rejects_pickled_and_broken(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match=r"obj\.npz"):
        load_state_dict(path)
    good = tmp_path / "good.npz"
    np.savez(good, w=np.ones(1000))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=r"cut\.npz"):
        load_state_dict(cut)
    with pytest.raises(ValueError, match="object"):
        gio.save_npz({"o": np.array([None], dtype=object)}, tmp_path / "o.npz")


def write_safetensors(path: Path, entries: dict[str, tuple[str, list, bytes]], pad=True) -> None:
    header, offset, blobs = {}, 0, []
    for name, (code, shape, data) in entries.items():
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors_round_trip(tmp_path, rng):
    sd = {f"t.{d}": (rng.standard_normal((3, 2)) * 9).astype(d) for d in NUMPY_DTYPES}
    sd["u16"] = np.arange(6, dtype=np.uint16).reshape(2, 3).T
    sd["scalar"] = np.array(2.5)
    sd["empty"] = np.zeros((0, 4), np.float32)
    path = tmp_path / "w.safetensors"
    gio.save_safetensors(sd, path, metadata={"format": "np", "arch": "tiny"})
    back = load_state_dict(path)
    assert list(back) == list(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
    assert gio.safetensors_metadata(path) == {"format": "np", "arch": "tiny"}
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert length % 8 == 0


def test_safetensors_bf16_and_errors(torch, tmp_path):
    t = torch.randn(3, 4).bfloat16()
    path = tmp_path / "bf.safetensors"
    write_safetensors(path, {"w": ("BF16", [3, 4], t.view(torch.int16).numpy().tobytes())})
    np.testing.assert_array_equal(load_state_dict(path)["w"], to_numpy(t))
    bad = {
        "hole": {"a": ("F32", [2], b"\0" * 8), "b": ("F32", [1], b"\0" * 4)},
        "dtype": {"a": ("F8_E4M3", [2], b"\0" * 2)},
        "size": {"a": ("F32", [3], b"\0" * 8)},
    }
    for name, entries in bad.items():
        path = tmp_path / f"{name}.safetensors"
        write_safetensors(path, entries)
        if name == "hole":
            text = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}})
            path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + b"\0" * 16)
        with pytest.raises(CheckpointError, match=f"{name}.safetensors"):
            load_state_dict(path)
    good = tmp_path / "good.safetensors"
    gio.save_safetensors({"w": np.ones(100, np.float32)}, good)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors.*truncated"):
        load_state_dict(cut)
    with pytest.raises(ValueError, match="complex"):
        gio.save_safetensors({"c": np.zeros(1, np.complex64)}, good)


def test_safetensors_package_cross_check(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    sd = {"a": rng.standard_normal((2, 3)).astype(np.float32),
          "b": np.arange(4, dtype=np.int64), "c": np.array([True, False])}
    ours = tmp_path / "ours.safetensors"
    gio.save_safetensors(sd, ours, metadata={"k": "v"})
    theirs = st.load_file(str(ours))
    for key, value in sd.items():
        np.testing.assert_array_equal(theirs[key], value)
    path = tmp_path / "theirs.safetensors"
    st.save_file(sd, str(path), metadata={"k": "v"})
    back = load_state_dict(path)
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value)
    assert gio.safetensors_metadata(path) == {"k": "v"}


def test_format_dispatch(tmp_path):
    with pytest.raises(ValueError, match=r"w\.h5.*'\.h5'"):
        save_state_dict({"w": np.ones(1)}, tmp_path / "w.h5")
    path = tmp_path / "w.weights"
    save_state_dict({"w": np.ones(1)}, path, format="safetensors")
    assert list(load_state_dict(path, format="safetensors")) == ["w"]
    save_state_dict(Tiny(), tmp_path / "t.PT")
    assert list(load_state_dict(tmp_path / "t.PT")) == list(Tiny().state_dict())
    with pytest.raises(ValueError, match="key= applies to torch"):
        load_state_dict(path, format="safetensors", key="model")


def test_remap_keys():
    sd = {"module.conv.weight": 1, "module.fc.bias": 2, "extra": 3}
    assert remap_keys(sd, strip_prefix="module.") == {"conv.weight": 1, "fc.bias": 2, "extra": 3}
    assert list(remap_keys(sd, strip_prefix="module.", add_prefix="net.",
                           rename={"fc.bias": "head.bias"})) == [
        "net.conv.weight", "net.head.bias", "net.extra"]
    assert list(remap_keys({"a.b": 0}, rename=str.upper)) == ["A.B"]
    with pytest.raises(ValueError, match=r"'module\.fc\.bias' and 'extra' both become"):
        remap_keys(sd, strip_prefix="module.", rename={"extra": "fc.bias"})


@pytest.mark.parametrize("suffix", [".npz", ".pth", ".safetensors"])
def test_load_into_casts_to_model_dtype(tmp_path, rng, suffix):
    sd = tiny_state(rng)
    path = tmp_path / f"tiny{suffix}"
    save_state_dict(sd, path)
    model = Tiny()
    report = load_into(model, path)
    assert report.ok and report.matched == list(sd)
    got = model.state_dict()
    for key, value in sd.items():
        assert got[key].dtype == Tiny().state_dict()[key].dtype
        np.testing.assert_allclose(got[key], value, rtol=1e-6)


def test_load_into_from_torch_checkpoint(torch, tmp_path, rng):
    sd = {k: torch.from_numpy(v) for k, v in tiny_state(rng).items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 2, "model": {f"module.{k}": v for k, v in sd.items()}}, path)
    with pytest.raises(KeyError, match=r"try strip_prefix='module\.'"):
        load_into(Tiny(), path)
    model = Tiny()
    load_into(model, path, strip_prefix="module.")
    np.testing.assert_allclose(model.weight.data, sd["weight"].numpy(), rtol=1e-6)
    assert model.bn.num_batches_tracked == 7


def test_load_into_strict_errors_list_keys_and_shapes(rng):
    sd = tiny_state(rng)
    del sd["bias"]
    sd["fc.weight"] = np.zeros((10, 2))
    model = Tiny()
    with pytest.raises(CheckpointMismatchError) as info:
        load_into(model, sd)
    message = str(info.value)
    assert "missing from the checkpoint" in message and "bias (4,)" in message
    assert "unexpected in the checkpoint" in message and "fc.weight (10, 2)" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert not model.weight.data.any()

    report = load_into(model, sd, strict=False)
    assert report.missing == [("bias", (4,))] and report.unexpected == [("fc.weight", (10, 2))]
    np.testing.assert_allclose(model.weight.data, sd["weight"], rtol=1e-6)

    sd = tiny_state(rng)
    sd["weight"] = np.zeros((8, 3, 3, 3))
    fresh = Tiny()
    with pytest.raises(ValueError, match=r"weight: model \(4, 3, 3, 3\), file \(8, 3, 3, 3\)"):
        load_into(fresh, sd, strict=False)
    assert not fresh.bias.data.any()


def test_match_report_text(rng):
    sd = tiny_state(rng)
    sd["bn.weight"] = np.zeros(5)
    report = match_report(Tiny(), sd)
    assert report.mismatched == [("bn.weight", (4,), (5,))] and not report.ok
    assert "4 keys match" in str(report)
    assert match_report(tiny_state(rng), Tiny().state_dict()).ok


def test_seed_style_npz_loads_into_alexnet_cifar33(tmp_path, rng):
    """seed-facts.md §1: weights-only npz, keys conv1.weight … fc3.weight, no mapping."""
    models = pytest.importorskip("glasscnn.models")
    shapes = {"conv1.weight": (96, 3, 7, 7), "conv2.weight": (256, 96, 5, 5),
              "conv3.weight": (384, 256, 3, 3), "conv4.weight": (384, 384, 3, 3),
              "conv5.weight": (256, 384, 3, 3), "fc1.weight": (1024, 2304),
              "fc2.weight": (512, 1024), "fc3.weight": (10, 512)}
    path = tmp_path / "alexnet_cifar33.npz"
    np.savez(path, **{k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()})
    model = models.alexnet_cifar33()
    report = load_into(model, path)
    assert report.matched == list(shapes)
    with np.load(path) as ref:
        np.testing.assert_array_equal(model.state_dict()["fc1.weight"], ref["fc1.weight"])


def test_match_report_hints_add_prefix():
    report = match_report({"net.a": np.zeros(2), "net.b": np.zeros(3)},
                          {"a": np.ones(2), "b": np.ones(3)})
    assert report.hint() == "try add_prefix='net.'"
    assert "unexpected in the checkpoint (2, file shape):\n  a (2,)\n  b (3,)" in str(report)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(torch, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_state_dict(path)


def test_to_torch_copies_weights_and_rejects_unknown_layers(torch):
    from glasscnn import nn as gnn
    from glasscnn.io import to_torch

    class Odd(gnn.Module):
        pass

    net = gnn.Sequential(gnn.Linear(3, 2, dtype=np.float64), gnn.Sigmoid())
    twin = to_torch(net, torch)
    assert twin[0].weight.dtype == torch.float64
    np.testing.assert_array_equal(twin[0].weight.detach().numpy(), net[0].weight.data)
    with pytest.raises(ValueError, match="no PyTorch counterpart for layer Odd"):
        to_torch(gnn.Sequential(Odd()), torch)
