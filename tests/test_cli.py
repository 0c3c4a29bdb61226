"""The ``glasscnn`` command's edges: damaged files, odd paths, pipes, Ctrl-C, full disks,
locked run folders, pictures of every Pillow mode, broken weights, and the new commands."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glasscnn import models
from glasscnn.checkpoint import Checkpoint, save_checkpoint
from glasscnn.cli import main as cli_main
from glasscnn.cli.commands import machine as machine_cmd
from glasscnn.cli.commands import train as train_cmd
from glasscnn.cli.main import main
from glasscnn.data import Dataset
from glasscnn.inference import Preprocessing, predict
from glasscnn.io import CheckpointError, save_state_dict
from glasscnn.loading import load_predictor
from glasscnn.train import Recipe, train_run
from glasscnn.train.progress import progress_factory
from glasscnn.train.run import FolderInUse, RunInterrupted

Image = pytest.importorskip("PIL.Image")
SRC = Path(__file__).resolve().parents[1] / "src"
CLASSES = tuple("abcd")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, command: str) -> str:
    """Assert a clean failure: non-zero, one line on stderr, no traceback; return it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"glasscnn {command}: "), err
    return lines[0]


def synthetic(n: int, seed: int, hw: int = 16) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images = rng.integers(0, 120, (n, 1, hw, hw))
    for k in range(len(CLASSES)):
        r, c = divmod(k, 2)
        images[labels == k, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 100
    return Dataset(images.astype(np.uint8), labels, CLASSES, "synthetic")


def data() -> tuple[Dataset, Dataset]:
    return synthetic(96, 0), synthetic(32, 1)


def recipe(**changes) -> Recipe:
    values = {"model": "three_layer_convnet", "epochs": 2, "batch_size": 32, "val_size": 16,
              "model_kwargs": {"hidden_dim": 8, "num_filters": 4}}
    return Recipe(**{**values, **changes})


@pytest.fixture
def trained(tmp_path) -> Path:
    """A small run folder written by train_run (2 epochs)."""
    out = tmp_path / "run"
    train_run(recipe(), out, plots=False, log=lambda _: None, datasets=data())
    return out


@pytest.fixture
def mnist_checkpoint(tmp_path) -> Path:
    path = tmp_path / "mnist.npz"
    model = models.mnist_net(rng=np.random.default_rng(0))
    save_checkpoint(path, Checkpoint({"model": "mnist_net", "input_shape": [1, 28, 28],
                                      "classes": [str(i) for i in range(10)]},
                                     model.state_dict()))
    return path


def grey_png(path: Path, size: int = 28) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# issue item 3: damaged files through every command


def damaged(path: Path, how: str) -> Path:
    data = bytearray(path.read_bytes())
    out = path.with_name(f"{how}-{path.name}")
    if how == "cut":
        out.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 3] ^= 0xFF
        out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("how", ["cut", "flip"])
def test_damaged_checkpoint_gives_one_line_through_every_command(trained, tmp_path, capsys,
                                                                 how):
    bad = damaged(trained / "checkpoint.npz", how)
    png = grey_png(tmp_path / "p.png", 16)
    for command, argv in [
        ("predict", ["predict", bad, png]),
        ("evaluate", ["evaluate", bad, "--no-plots"]),
        ("inspect", ["inspect", bad, "--out", tmp_path / "insp"]),
        ("export", ["export", bad, "--onnx", tmp_path / "m.onnx"]),
        ("analyze", ["analyze", bad]),
    ]:
        line = one_line_error(*run_cli(capsys, *argv)[::2], command)
        assert str(bad) in line, line
        assert "plain state_dict" not in line
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "checkpoint.npz").write_bytes(bad.read_bytes())
    with pytest.raises(CheckpointError, match=r"checkpoint\.npz"):
        train_run(recipe(epochs=3), resumed, resume=True, datasets=data())


def test_predict_truncated_checkpoint_is_not_called_a_plain_state_dict(mnist_checkpoint,
                                                                       tmp_path, capsys):
    cut = damaged(mnist_checkpoint, "cut")
    line = one_line_error(*run_cli(capsys, "predict", cut, grey_png(tmp_path / "d.png"))[::2],
                          "predict")
    assert str(cut) in line and "not a readable .npz" in line
    assert "plain state_dict" not in line


def test_folder_given_as_checkpoint(tmp_path, capsys):
    line = one_line_error(*run_cli(capsys, "predict", tmp_path, tmp_path)[::2], "predict")
    assert "is a folder" in line


# the top level: OS errors, memory, pipes, Ctrl-C


@pytest.mark.parametrize(("error", "expect", "code"), [
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), "runs/x: Permission denied",
     1),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out.png"), "out.png: Is a directory",
     1),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/ck.npz"), "the disk is full", 1),
    (MemoryError("Unable to allocate 8.0 GiB"), "out of memory Unable to allocate 8.0 GiB", 1),
    (RecursionError("maximum recursion depth exceeded"), "RecursionError", 1),
    (KeyboardInterrupt(), "interrupted", 130),
])
def test_top_level_turns_every_error_into_one_line(monkeypatch, capsys, error, expect, code):
    def boom(args):
        raise error

    monkeypatch.setattr(machine_cmd, "run", boom)
    got, out, err = run_cli(capsys, "machine")
    assert got == code and out == ""
    assert "Traceback" not in err and expect in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_unexpected_errors_are_one_line_for_the_program_only(monkeypatch, capsys):
    def boom(args):
        raise AttributeError("bug")

    monkeypatch.setattr(machine_cmd, "run", boom)
    monkeypatch.setattr(sys, "argv", ["glasscnn", "machine"])
    assert main() == 1
    line = one_line_error(1, capsys.readouterr().err, "machine")
    assert "AttributeError: bug" in line and cli_main.DEBUG_VAR in line
    with pytest.raises(AttributeError, match="bug"):  # from Python: the caller sees it
        main(["machine"])
    monkeypatch.setenv(cli_main.DEBUG_VAR, "1")
    with pytest.raises(AttributeError, match="bug"):
        main()


def test_broken_pipe_exits_quietly(tmp_path):
    """``glasscnn data list | head -1``: the reader goes away; no traceback, non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "glasscnn", "data", "list"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert err == ""


# item 6: pictures of every mode


def test_sixteen_bit_picture_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    x = Preprocessing((1, 28, 28)).read(path)  # (1, 28, 28) in [0, 1]
    np.testing.assert_allclose(x[0], ramp / 65535, atol=1e-6)
    assert 0.45 < x.mean() < 0.55  # Pillow's own convert("L") gives 0.99 here


def test_alpha_palette_and_one_bit_pictures_are_converted_as_documented(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent red over black: 200 * 128/255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pre = Preprocessing((3, 4, 4))
    x = pre.read(tmp_path / "a.png")
    np.testing.assert_allclose(x[0], np.rint(200 * 128 / 255) / 255, atol=1e-6)
    np.testing.assert_array_equal(x[1:], 0)
    la = np.stack([np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(Preprocessing((1, 4, 4)).read(tmp_path / "la.png"), 0)
    bits = Image.new("1", (4, 4), 1)
    bits.putpixel((0, 0), 0)
    bits.save(tmp_path / "b.png")
    y = Preprocessing((1, 4, 4)).read(tmp_path / "b.png")
    assert y[0, 0, 0] == 0 and y[0, 1, 1] == 1
    pal = Image.fromarray(np.full((4, 4, 3), (10, 20, 30), np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    np.testing.assert_allclose(pre.read(tmp_path / "p.png")[:, 0, 0],
                               np.array([10, 20, 30]) / 255, atol=1e-6)
    with pytest.raises(ValueError, match=r"3 channels \(mode RGBA\)"):
        Preprocessing((1, 4, 4)).read(tmp_path / "a.png")


# item 7: NaN and infinite logits


@pytest.mark.parametrize("breakage", ["nan_weight", "negative_var", "nan_std"])
def test_broken_weights_are_an_error_not_a_nan_prediction(tmp_path, capsys, breakage):
    model = models.lenet_bn(in_channels=1, input_size=28, rng=np.random.default_rng(0))
    sd = model.state_dict()
    groups = {}
    if breakage == "nan_weight":
        sd["conv1.weight"] = sd["conv1.weight"].copy()
        sd["conv1.weight"][0, 0, 0, 0] = np.nan
    elif breakage == "negative_var":
        key = next(k for k in sd if k.endswith("running_var"))
        sd[key] = -np.ones_like(sd[key])
    else:
        groups = {"normalizer": {"mean": np.array([0.5], np.float32),
                                 "std": np.array([np.nan], np.float32)}}
    path = tmp_path / "broken.npz"
    save_checkpoint(path, Checkpoint({"model": "lenet_bn", "model_kwargs": {
        "in_channels": 1, "input_size": 28}, "input_shape": [1, 28, 28]}, sd, groups))
    png = grey_png(tmp_path / "p.png")
    for extra in ([], ["--json"]):
        code, out, err = run_cli(capsys, "predict", path, png, *extra)
        line = one_line_error(code, err, "predict")
        assert str(path) in line and out == ""


def test_nan_logits_of_a_module_are_refused(rng):
    model = models.mnist_net(rng=rng)
    model.fc2.weight.data[...] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        predict(model, np.zeros((2, 1, 28, 28), np.uint8))


def test_json_output_is_strict(mnist_checkpoint, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "predict", mnist_checkpoint, grey_png(tmp_path / "p.png"),
                           "--json")
    assert code == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))


# item 8: class names


def test_checkpoint_without_classes_gets_numbers_or_its_data_sets_names(tmp_path):
    model = models.mnist_net(rng=np.random.default_rng(0))
    bare = tmp_path / "bare.npz"
    save_checkpoint(bare, Checkpoint({"model": "mnist_net"}, model.state_dict()))
    loaded = load_predictor(bare)
    assert loaded.classes == tuple(str(i) for i in range(10))
    assert "names no classes" in loaded.classes_note
    fashion = tmp_path / "fashion.npz"
    save_checkpoint(fashion, Checkpoint({"model": "mnist_net", "data": "fashion-mnist"},
                                        model.state_dict()))
    assert load_predictor(fashion).classes[0] == "T-shirt/top"
    cifar = models.alexnet_cifar33(rng=np.random.default_rng(0))
    plain = tmp_path / "plain.npz"
    save_state_dict(cifar.state_dict(), plain)
    loaded = load_predictor(plain, "alexnet_cifar33")
    assert loaded.classes[0] == "airplane" and "assumed for alexnet_cifar33" in \
        loaded.classes_note


def test_assumed_class_names_are_said(tmp_path, capsys):
    cifar = models.alexnet_cifar33(rng=np.random.default_rng(0))
    plain = tmp_path / "plain.npz"
    save_state_dict(cifar.state_dict(), plain)
    pic = tmp_path / "c.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(pic)
    code, out, err = run_cli(capsys, "predict", plain, pic, "--model", "alexnet_cifar33")
    assert code == 0 and "assumed for alexnet_cifar33" in err
    code, out, _ = run_cli(capsys, "predict", plain, pic, "--model", "alexnet_cifar33",
                           "--json")
    assert "assumed" in json.loads(out)["classes_note"]


# item 10: odd paths and arguments


def test_output_paths_that_are_folders_or_files(trained, tmp_path, capsys):
    png = grey_png(tmp_path / "p.png", 16)
    shown = tmp_path / "shown"
    shown.mkdir()
    code, _, err = run_cli(capsys, "predict", trained / "checkpoint.npz", png, "--show",
                           f"{shown}{os.sep}")
    assert code == 0 and f"wrote {shown / 'predictions.png'}" in err
    assert (shown / "predictions.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli(capsys, "predict", trained / "checkpoint.npz", png, "--show",
                           tmp_path / "noext")
    assert code == 0 and f"wrote {tmp_path / 'noext'}\n" in err
    assert (tmp_path / "noext").is_file()
    line = one_line_error(*run_cli(capsys, "inspect", trained / "checkpoint.npz", "--out",
                                   png)[::2], "inspect")
    assert "is a file" in line
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"x")
    line = one_line_error(*run_cli(capsys, "analyze", "mnist_net", "--plots", existing)[::2],
                          "analyze")
    assert "is a file" in line
    line = one_line_error(*run_cli(capsys, "analyze", "mnist_net", "--plots",
                                   tmp_path / "charts.png")[::2], "analyze")
    assert "looks like a file name" in line and not (tmp_path / "charts.png").exists()
    line = one_line_error(*run_cli(capsys, "train", "mnist_net", "--out", png)[::2], "train")
    assert "is a file" in line


def test_evaluate_png_into_a_folder(trained, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from glasscnn.cli.commands import evaluate as evaluate_cmd

    result = {"confusion": np.eye(4, dtype=np.int64), "classes": list(CLASSES),
              "data": "synthetic", "accuracy": 1.0, "count": 4, "loss": 0.1}
    monkeypatch.setattr(evaluate_cmd, "evaluate_checkpoint", lambda *a, **k: result)
    folder = tmp_path / "pngs"
    folder.mkdir()
    code, out, _ = run_cli(capsys, "evaluate", trained / "checkpoint.npz", "--png", folder)
    want = folder / "confusion_synthetic_test.png"
    assert code == 0 and f"wrote {want}" in out and want.is_file()


def test_bad_model_args_and_sizes(mnist_checkpoint, tmp_path, capsys):
    png = grey_png(tmp_path / "p.png")
    line = one_line_error(*run_cli(capsys, "predict", mnist_checkpoint, png, "--model-arg",
                                   "bogus=1")[::2], "predict")
    assert "'bogus'" in line
    line = one_line_error(*run_cli(capsys, "train", "mnist_net", "--model-arg", "bogus=1",
                                   "--out", tmp_path / "r")[::2], "train")
    assert "'bogus'" in line and not (tmp_path / "r").exists()
    line = one_line_error(*run_cli(capsys, "predict", mnist_checkpoint, png, "--size",
                                   "100000")[::2], "predict")
    assert "4096" in line
    line = one_line_error(*run_cli(capsys, "predict", mnist_checkpoint, png, "--size",
                                   "64")[::2], "predict")
    assert "cannot take 64×64" in line


def test_read_only_run_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: pretend the folder is read-only
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    else:
        out.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="ro"):
            train_run(recipe(), out, datasets=data())
        line = one_line_error(*run_cli(capsys, "train", "mnist_net", "--out", out)[::2],
                              "train")
        assert f"{out}: Permission denied" in line
    finally:
        out.chmod(0o700)


def test_full_disk_is_refused_before_training_and_keeps_the_checkpoint_later(
        tmp_path, monkeypatch, capsys):
    from glasscnn.train import run as run_module
    from glasscnn.train.trainer import Trainer

    real = run_module.shutil.disk_usage
    monkeypatch.setattr(run_module.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1000))
    with pytest.raises(OSError, match="No space left"):
        train_run(recipe(), tmp_path / "full", datasets=data())
    monkeypatch.setattr(run_module.shutil, "disk_usage", real)

    save = Trainer.save

    def save_once(self, path):
        if self.epoch >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(self, path)

    monkeypatch.setattr(Trainer, "save", save_once)
    out = tmp_path / "later"
    monkeypatch.setattr(train_cmd, "train_run",
                        lambda r, o, **k: train_run(r, o, **{**k, "datasets": data()}))
    code, _, err = run_cli(capsys, "train", "three_layer_convnet", "--out", out, "--epochs",
                           "2", "--no-progress", "--no-plots", "--val-size", "16",
                           "--model-arg", "hidden_dim=8", "--model-arg", "num_filters=4")
    line = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert code == 1 and "No space left" in line and "is unchanged" in line
    from glasscnn.loading import read_checkpoint

    assert read_checkpoint(out / "checkpoint.npz").meta["training"]["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# item 11: Ctrl-C tells the truth


def interrupt_at(epoch: int):
    """A progress factory whose bar raises KeyboardInterrupt in ``epoch`` (0-based)."""
    plain = progress_factory(plain=True, stream=io.StringIO())

    def factory(loader, e, epochs):
        if e == epoch:
            raise KeyboardInterrupt
        return plain(loader, e, epochs)
    return factory


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    with pytest.raises(RunInterrupted) as info:
        train_run(recipe(), out, progress=interrupt_at(0), datasets=data())
    assert info.value.checkpoint is None and info.value.epoch == 0
    message = train_cmd.interrupted_message(info.value, out)
    assert "no checkpoint was written" in message and "--resume" not in message
    with pytest.raises(RunInterrupted) as info:
        train_run(recipe(epochs=3), out, progress=interrupt_at(1), plots=False,
                  datasets=data())
    assert info.value.epoch == 1 and info.value.checkpoint == out / "checkpoint.npz"
    assert "holds epoch 1" in train_cmd.interrupted_message(info.value, out)
    result = train_run(recipe(epochs=3), out, resume=True, plots=False, datasets=data())
    assert len(result.history["train_loss"]) == 3
    with pytest.raises(RunInterrupted) as info:
        train_run(recipe(epochs=3), out, overwrite=True, progress=interrupt_at(0),
                  datasets=data())
    assert info.value.checkpoint is None and info.value.stale == out / "checkpoint.npz"
    assert "--overwrite" in train_cmd.interrupted_message(info.value, out)


# item 12: one run per folder


def test_second_run_into_a_held_folder_is_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        with pytest.raises(FolderInUse, match=r"in use.*process 4242"):
            train_run(recipe(), out, datasets=data())
    assert not (out / "checkpoint.npz").exists()
    train_run(recipe(epochs=1), out, plots=False, datasets=data())  # released: runs
    assert (out / "checkpoint.npz").exists()


# issue 19: new commands and flags


def test_version_and_python_m(tmp_path):
    from glasscnn import __version__

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "glasscnn", "--version"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"glasscnn {__version__}"


def test_models_lists_the_zoo_with_counts(capsys):
    from glasscnn.analysis import analyze

    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == set(models.REGISTRY)
    lenet = analyze("lenet_bn")
    assert rows["lenet_bn"]["params"] == lenet.totals["params"]
    assert rows["lenet_bn"]["macs"] == lenet.totals["macs"]
    assert rows["alexnet_cifar33"]["input_shape"] == [3, 33, 33]
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "mnist_net" in out and "1x28x28" in out


def test_train_without_out_picks_the_next_free_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "three_layer_convnet-1").mkdir(parents=True)
    assert train_cmd.next_run_folder("three_layer_convnet") == Path(
        "runs/three_layer_convnet-2")
    monkeypatch.setattr(train_cmd, "train_run",
                        lambda r, o, **k: train_run(r, o, **{**k, "datasets": data()}))
    code, out, err = run_cli(capsys, "train", "three_layer_convnet", "--epochs", "1",
                             "--no-progress", "--no-plots", "--val-size", "16",
                             "--model-arg", "hidden_dim=8", "--model-arg", "num_filters=4")
    assert code == 0, err
    assert "run folder: runs/three_layer_convnet-2" in out
    assert (tmp_path / "runs" / "three_layer_convnet-2" / "checkpoint.npz").is_file()
    line = one_line_error(*run_cli(capsys, "train", "mnist_net", "--resume")[::2], "train")
    assert "--resume needs --out" in line


def test_export_takes_the_model_from_the_checkpoint(trained, tmp_path, capsys):
    pytest.importorskip("onnx")
    ckpt = trained / "checkpoint.npz"
    code, out, err = run_cli(capsys, "export", ckpt, "--onnx", tmp_path / "a.onnx")
    assert code == 0, err
    assert "three_layer_convnet" in out and (tmp_path / "a.onnx").is_file()
    code, out, err = run_cli(capsys, "export", "three_layer_convnet", ckpt, "--onnx",
                             tmp_path / "b.onnx")
    assert code == 0 and (tmp_path / "b.onnx").is_file()
    line = one_line_error(*run_cli(capsys, "export", "nope", ckpt, "--onnx",
                                   tmp_path / "c.onnx")[::2], "export")
    assert "not a zoo model" in line
