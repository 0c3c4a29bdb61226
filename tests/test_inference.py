"""glasscnn.inference and ``glasscnn predict``: preprocessing, batching, top-k, bad input."""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from glasscnn import models
from glasscnn.checkpoint import Checkpoint, save_checkpoint
from glasscnn.cli.main import main
from glasscnn.data.cifar import CLASSES as CIFAR10
from glasscnn.data.transforms import Normalizer
from glasscnn.inference import (
    LoadedModel,
    Preprocessing,
    image_files,
    load_predictor,
    plot_predictions,
    predict,
    softmax,
)
from glasscnn.io import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafePickleError,
    save_state_dict,
    to_torch,
)

Image = pytest.importorskip("PIL.Image")

SEED_SHAPES = {"conv1.weight": (96, 3, 7, 7), "conv2.weight": (256, 96, 5, 5),
               "conv3.weight": (384, 256, 3, 3), "conv4.weight": (384, 384, 3, 3),
               "conv5.weight": (256, 384, 3, 3), "fc1.weight": (1024, 2304),
               "fc2.weight": (512, 1024), "fc3.weight": (10, 512)}
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


class _Evil:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def he_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with He scaling, so logits of a deep net stay O(1)."""
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * np.sqrt(2.0 / np.prod(s[1:]))).astype(np.float32)
            for k, s in shapes.items()}


@pytest.fixture(scope="module")
def seed_npz(tmp_path_factory) -> Path:
    """A checkpoint laid out as seed-facts §1: weights only, no biases, PyTorch shapes."""
    path = tmp_path_factory.mktemp("seed") / "alexnet_cifar33.npz"
    np.savez(path, **he_weights(SEED_SHAPES))
    return path


@pytest.fixture(scope="module")
def cifar_pngs(tmp_path_factory) -> list[Path]:
    """Three 32×32 RGB PNGs with some structure (gradients plus noise)."""
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:32]
    paths = []
    for i in range(3):
        base = np.stack([xx * (i + 2), yy * (3 - i), (xx + yy) * 2], axis=-1)
        pixels = np.clip(base + rng.integers(0, 60, (32, 32, 3)), 0, 255).astype(np.uint8)
        path = folder / f"pic{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def mnist_sd() -> dict[str, np.ndarray]:
    return models.mnist_net(rng=np.random.default_rng(3)).state_dict()


def gray_png(path: Path, seed: int = 0, size: int = 28) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def rgb_png(path: Path, seed: int = 0, size: int = 32) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def seed_pipeline(path: Path) -> np.ndarray:
    """seed-facts §1 by hand: Lanczos 32→33, /255, HWC → CHW, batch axis."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB").resize((33, 33), Image.Resampling.LANCZOS))
    return (pixels.astype(np.float32) / 255).transpose(2, 0, 1)[None]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_seed_checkpoint_predict_matches_hand_pipeline(seed_npz, cifar_pngs, capsys):
    """seed-facts §1: the plain .npz with --model, Lanczos to 33×33, /255, CIFAR-10 names."""
    code, out, err = run_cli(capsys, "predict", seed_npz, *cifar_pngs, "--model",
                             "alexnet_cifar33", "--json", "--topk", "10")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["preprocessing"]["input_shape"] == [3, 33, 33]
    assert doc["preprocessing"]["resample"] == "lanczos" and doc["preprocessing"]["mean"] is None
    assert doc["classes"] == list(CIFAR10)
    model = models.alexnet_cifar33()
    model.load_state_dict(dict(np.load(seed_npz)))
    model.eval()
    for path, pred in zip(cifar_pngs, doc["predictions"], strict=True):
        assert pred["file"] == str(path)
        probs = softmax(model(seed_pipeline(path)))[0]
        assert pred["class"] == CIFAR10[int(np.argmax(probs))]
        got = {t["class"]: t["probability"] for t in pred["topk"]}
        np.testing.assert_allclose([got[c] for c in CIFAR10], probs, rtol=1e-5, atol=1e-7)
        ranked = [t["probability"] for t in pred["topk"]]
        assert ranked == sorted(ranked, reverse=True)


def test_seed_checkpoint_agrees_with_torch(torch, seed_npz, cifar_pngs):
    """The same pictures through the torch twin of alexnet_cifar33 give the same classes."""

    result = predict(seed_npz, cifar_pngs, model_name="alexnet_cifar33")
    twin = to_torch(models.alexnet_cifar33(), torch, weights=False).eval()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(seed_npz).items()})
    x = np.concatenate([seed_pipeline(p) for p in cifar_pngs])
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.logits, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert result.labels.tolist() == want.argmax(axis=1).tolist()


def test_text_output_lists_topk(seed_npz, cifar_pngs, capsys):
    code, out, err = run_cli(capsys, "predict", seed_npz, cifar_pngs[0], "--model",
                             "alexnet_cifar33", "--topk", "3")
    assert code == 0
    line = out.strip()
    assert line.startswith(str(cifar_pngs[0]))
    assert len([c for c in CIFAR10 if f" {c} " in f"{line} "]) == 3
    assert "RGB 33×33 (lanczos), /255, no normalisation" in err


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_predict_arrays_batches_and_topk(batch_size, rng):
    model = models.mnist_net(rng=rng)
    pre = Preprocessing(input_shape=(1, 28, 28), mean=(0.5,), std=(0.5,))
    x = rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    result = predict(model, x, topk=4, preprocessing=pre, batch_size=batch_size)
    want = model((x / 255 - 0.5).astype(np.float32) / 0.5)
    np.testing.assert_allclose(result.logits, want, rtol=1e-5, atol=1e-6)
    assert result.labels.tolist() == want.argmax(axis=1).tolist()
    assert [p.source for p in result] == [f"#{i}" for i in range(7)]
    assert result.classes == tuple(str(i) for i in range(10))
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0)
    for i, pred in enumerate(result):
        assert len(pred.topk) == 4 and pred.topk[0] == (pred.label, pred.probability)
        assert [q for _, q in pred.topk] == sorted(result.probs[i], reverse=True)[:4]


def test_predict_float_arrays_taken_as_scaled_and_mode_restored(rng):
    model = models.lenet_bn(rng=rng)
    model.train()
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    result = predict(model, x[0], classes=list("abcdefghij"))
    assert model.training
    model.eval()
    np.testing.assert_allclose(result.logits, model(x[:1]), rtol=1e-6)
    assert result[0].label in "abcdefghij"


def test_checkpoint_normalizer_classes_and_flags(tmp_path, mnist_sd, capsys):
    """A glasscnn checkpoint's normalizer and class names are used; flags override them."""
    norm = Normalizer((0.2860,), (0.3530,))
    path = tmp_path / "fashion.npz"
    save_checkpoint(path, Checkpoint({"model": "mnist_net", "model_kwargs": {},
                                      "input_shape": [1, 28, 28], "classes": list(FASHION)},
                                     mnist_sd, {"normalizer": norm.state_dict()}))
    pic = gray_png(tmp_path / "shoe.png")
    loaded = load_predictor(path)
    assert loaded.preprocessing.mean == (0.2860,) and loaded.classes == FASHION
    result = predict(loaded, [pic])
    model = models.mnist_net()
    model.load_state_dict(mnist_sd)
    with Image.open(pic) as img:
        x = np.asarray(img, dtype=np.float32)[None, None] / 255
    np.testing.assert_allclose(result.logits, model(norm(x)), rtol=1e-5, atol=1e-6)
    assert result[0].label in FASHION
    code, out, _ = run_cli(capsys, "predict", path, pic, "--json", "--no-normalize")
    assert code == 0
    doc = json.loads(out)
    assert doc["preprocessing"]["mean"] is None
    probs = softmax(model(x))[0]
    assert doc["predictions"][0]["probability"] == pytest.approx(probs.max(), rel=1e-5)
    code, out, _ = run_cli(capsys, "predict", path, pic, "--json", "--mean", "0.5", "--std",
                           "0.5", "--classes", "fashion-mnist", "--topk", "1")
    probs = softmax(model((x - 0.5) / 0.5))[0]
    assert json.loads(out)["predictions"][0]["probability"] == pytest.approx(probs.max(),
                                                                             rel=1e-5)


def test_best_weights_of_training_checkpoint(tmp_path, mnist_sd):
    best = {k: v * 0.5 for k, v in mnist_sd.items()}
    path = tmp_path / "run.npz"
    save_checkpoint(path, Checkpoint({"model": "mnist_net"}, mnist_sd, {"best": best}))
    np.testing.assert_array_equal(load_predictor(path, best=True).model.state_dict()["fc2.weight"],
                                  best["fc2.weight"])
    with pytest.raises(ValueError, match="best"):
        load_predictor(_plain(tmp_path, mnist_sd, ".npz"), "mnist_net", best=True)


def _plain(tmp_path: Path, sd: dict[str, np.ndarray], suffix: str) -> Path:
    path = tmp_path / f"mnist_net{suffix}"
    save_state_dict(sd, path)
    return path


@pytest.mark.parametrize("suffix", [".npz", ".pth", ".safetensors"])
def test_plain_state_dict_formats_use_the_recipe(tmp_path, mnist_sd, suffix):
    """mnist_net's recipe is seed-facts §2: (x/255 − 0.5)/0.5, digit class names."""
    loaded = load_predictor(_plain(tmp_path, mnist_sd, suffix), "mnist_net")
    assert loaded.preprocessing.mean == (0.5,) and loaded.classes == tuple("0123456789")
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    ref = models.mnist_net()
    ref.load_state_dict(mnist_sd)
    np.testing.assert_allclose(predict(loaded, x).logits, ref((x / 255 - 0.5) / 0.5),
                               rtol=1e-5, atol=1e-6)


def test_show_writes_picture_and_bars(seed_npz, cifar_pngs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "show" / "pred.png"
    code, _, err = run_cli(capsys, "predict", seed_npz, *cifar_pngs, "--model",
                           "alexnet_cifar33", "--show", out)
    assert code == 0 and f"wrote {out}" in err
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 3 * 150
    with pytest.raises(ValueError, match="keep_pictures"):
        plot_predictions(predict(seed_npz, cifar_pngs[:1], model_name="alexnet_cifar33"),
                         tmp_path / "x.png")


def test_folder_run_reports_bad_files_and_goes_on(seed_npz, cifar_pngs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for i, src in enumerate(cifar_pngs):
        (folder / ("sub" if i else ".") / src.name).write_bytes(src.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "cut.png").write_bytes(cifar_pngs[0].read_bytes()[:120])
    gray_png(folder / "gray.png")
    (folder / "notes.txt").write_text("not a picture")
    code, out, err = run_cli(capsys, "predict", seed_npz, folder, "--model", "alexnet_cifar33",
                             "--json", "--batch-size", "2")
    assert code == 1
    doc = json.loads(out)
    assert sorted(Path(p["file"]).name for p in doc["predictions"]) == sorted(
        p.name for p in cifar_pngs)
    bad = {Path(e["file"]).name: e["error"] for e in doc["errors"]}
    assert set(bad) == {"broken.png", "cut.png", "gray.png"}
    for name, message in bad.items():
        assert str(folder / name) in message
    assert "1 channel" in bad["gray.png"] and "takes 3" in bad["gray.png"]
    assert doc["skipped"] == [str(folder / "notes.txt")]
    for name in bad:
        assert f"skipped: {folder / name}" in err
    assert "notes.txt" in err


def test_unreadable_file_named_directly(seed_npz, tmp_path, capsys):
    bad = tmp_path / "table.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: not a readable picture")):
        predict(seed_npz, [bad], model_name="alexnet_cifar33")
    code, out, err = run_cli(capsys, "predict", seed_npz, bad, "--model", "alexnet_cifar33")
    assert code == 1 and out == "" and str(bad) in err
    missing = tmp_path / "nope.png"
    code, _, err = run_cli(capsys, "predict", seed_npz, missing, "--model", "alexnet_cifar33")
    assert code == 1 and f"{missing}: no such file" in err


def test_wrong_channel_count(seed_npz, mnist_sd, tmp_path, capsys):
    gray = gray_png(tmp_path / "gray.png", size=32)
    pattern = re.escape(f"{gray}: the picture has 1 channel") + ".*takes 3"
    with pytest.raises(ValueError, match=pattern):
        predict(seed_npz, [gray], model_name="alexnet_cifar33")
    converted = predict(seed_npz, [gray], model_name="alexnet_cifar33",
                        preprocessing=Preprocessing((3, 33, 33), convert_channels=True))
    assert len(converted) == 1
    color = rgb_png(tmp_path / "color.png", size=28)
    plain = _plain(tmp_path, mnist_sd, ".npz")
    code, _, err = run_cli(capsys, "predict", plain, color, "--model", "mnist_net")
    assert code == 1 and f"{color}: the picture has 3 channels (mode RGB)" in err
    code, out, _ = run_cli(capsys, "predict", plain, color, "--model", "mnist_net", "--convert")
    assert code == 0 and out.startswith(str(color))
    with pytest.raises(ValueError, match=r"wrong channels"):
        predict(load_predictor(plain, "mnist_net"), np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"wrong size"):
        predict(load_predictor(plain, "mnist_net"), np.zeros((2, 1, 32, 32), np.uint8))


def test_checkpoint_of_another_architecture_lists_shapes(mnist_sd, cifar_pngs, tmp_path,
                                                         capsys):
    plain = _plain(tmp_path, mnist_sd, ".pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_predictor(plain, "alexnet_cifar33")
    message = str(info.value)
    assert message.startswith(f"{plain}: these weights do not fit the model 'alexnet_cifar33'")
    assert "conv1.weight: model (96, 3, 7, 7), file (4, 1, 5, 5)" in message
    assert "missing from the checkpoint" in message and "conv3.weight (384, 256, 3, 3)" in message
    assert "fc1.bias (256,)" in message
    code, _, err = run_cli(capsys, "predict", plain, cifar_pngs[0], "--model", "alexnet_cifar33")
    assert code == 1 and str(plain) in err and "conv1.weight: model (96, 3, 7, 7)" in err


def test_plain_state_dict_needs_model(mnist_sd, tmp_path, capsys):
    plain = _plain(tmp_path, mnist_sd, ".safetensors")
    code, _, err = run_cli(capsys, "predict", plain, tmp_path)
    assert code == 1 and f"{plain}: a plain state_dict names no model; pass --model" in err
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"weights\.bin"):
        load_predictor(odd, "mnist_net")


@pytest.mark.parametrize("suffix", [".npz", ".pth"])
def test_truncated_checkpoint_names_file(mnist_sd, tmp_path, capsys, suffix):
    full = _plain(tmp_path, mnist_sd, suffix)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        load_predictor(cut, "mnist_net")
    assert str(cut) in str(info.value)
    png = gray_png(tmp_path / "d.png")
    code, out, err = run_cli(capsys, "predict", cut, png, "--model", "mnist_net")
    assert code == 1 and out == "" and str(cut) in err


def test_malicious_pth_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"conv1.weight": _Evil(marker)},
                                                     protocol=2))
        zf.writestr("archive/version", b"3\n")
    with pytest.raises(UnsafePickleError) as info:
        load_predictor(evil, "mnist_net")
    assert str(evil) in str(info.value) and "nothing was executed" in str(info.value)
    code, _, err = run_cli(capsys, "predict", evil, gray_png(tmp_path / "d.png"), "--model",
                           "mnist_net")
    assert code == 1 and str(evil) in err and "system" in err
    assert not marker.exists()


def test_image_files_and_sources(tmp_path, cifar_pngs):
    folder = tmp_path / "f"
    (folder / ".hidden").mkdir(parents=True)
    (folder / ".hidden" / "x.png").write_bytes(cifar_pngs[0].read_bytes())
    (folder / "a.PNG").write_bytes(cifar_pngs[0].read_bytes())
    (folder / "b.txt").write_text("x")
    files, skipped = image_files([folder, cifar_pngs[1]])
    assert files == [folder / "a.PNG", cifar_pngs[1]] and skipped == [folder / "b.txt"]
    with pytest.raises(FileNotFoundError, match="nope"):
        image_files(tmp_path / "nope")
    model = LoadedModel(models.alexnet_cifar33(), preprocessing=Preprocessing((3, 33, 33)))
    with Image.open(cifar_pngs[2]) as img:
        result = predict(model, [img.copy(), cifar_pngs[2]])
    # the same image in two batch rows: BLAS may round the two rows differently (last bits)
    np.testing.assert_allclose(result.logits[0], result.logits[1], rtol=1e-5, atol=1e-8)
    assert [p.source for p in result] == ["#0", str(cifar_pngs[2])]


def test_bad_arguments(rng):
    model = models.mnist_net(rng=rng)
    with pytest.raises(ValueError, match="on_error"):
        predict(model, np.zeros((1, 1, 28, 28)), on_error="ignore")
    with pytest.raises(ValueError, match="3 class names for a model with 10"):
        predict(model, np.zeros((1, 1, 28, 28)), classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="input shape"):
        predict(model, [Path(__file__)])
    with pytest.raises(ValueError, match="mean and std together"):
        Preprocessing((1, 28, 28), mean=(0.5,))


def test_load_model_gives_the_network_ready_for_predict(tmp_path, mnist_sd):
    """glasscnn.loading.load_model: last or best weights of a training checkpoint, a plain
    state_dict with a zoo name, or your own Module filled; predict reads pictures for it."""
    from glasscnn.loading import load_model

    norm = Normalizer((0.2860,), (0.3530,))
    best = {k: v * 0.5 for k, v in mnist_sd.items()}
    path = tmp_path / "run.npz"
    save_checkpoint(path, Checkpoint({"model": "mnist_net", "model_kwargs": {},
                                      "input_shape": [1, 28, 28], "classes": list(FASHION)},
                                     mnist_sd, {"normalizer": norm.state_dict(), "best": best}))
    net = load_model(path)
    assert not any(m.training for _, m in net.named_modules())
    np.testing.assert_array_equal(net.state_dict()["fc2.weight"], mnist_sd["fc2.weight"])
    assert net.classes == FASHION and net.preprocessing.mean == (0.2860,)
    np.testing.assert_array_equal(load_model(path, weights="best").state_dict()["fc2.weight"],
                                  best["fc2.weight"])
    pic = gray_png(tmp_path / "shoe.png")
    want = predict(load_predictor(path), [pic]).logits
    np.testing.assert_allclose(predict(net, pic).logits, want, rtol=1e-6)
    own = load_model(path, models.mnist_net())
    assert own.classes == FASHION
    np.testing.assert_allclose(predict(own, pic).logits, want, rtol=1e-6)
    plain = _plain(tmp_path, mnist_sd, ".safetensors")
    net = load_model(plain, "mnist_net")
    assert net.preprocessing.mean == (0.5,) and net.name == "mnist_net"
    with pytest.raises(ValueError, match="names no model"):
        load_model(plain)
    with pytest.raises(ValueError, match="weights must be"):
        load_model(path, weights="first")


def test_predict_takes_pil_images_and_picture_arrays(tmp_path, cifar_pngs):
    model = LoadedModel(models.alexnet_cifar33(rng=np.random.default_rng(0)),
                        preprocessing=Preprocessing((3, 33, 33)))
    with Image.open(cifar_pngs[0]) as img:
        pil = img.convert("RGB")
    by_file = predict(model, cifar_pngs[0]).logits
    np.testing.assert_allclose(predict(model, pil).logits, by_file, rtol=1e-5, atol=1e-6)
    hwc = np.asarray(pil)  # (32, 32, 3) uint8: read like the picture file
    np.testing.assert_allclose(predict(model, hwc).logits, by_file, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(model, [hwc, pil]).logits[1], by_file[0], rtol=1e-5,
                               atol=1e-6)
    x = np.random.default_rng(1).random((33, 33, 3), dtype=np.float32)  # float HWC, scaled
    np.testing.assert_allclose(predict(model, x).logits,
                               predict(model, x.transpose(2, 0, 1)[None]).logits, rtol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(5, 7\)|\(5, 7, 9\)"):
        predict(model, np.zeros((5, 7, 9), np.uint8))


def test_predictions_display_compactly_and_as_html(seed_npz, cifar_pngs):
    result = predict(seed_npz, cifar_pngs, model_name="alexnet_cifar33", topk=3)
    text = repr(result)
    assert text.splitlines()[0] == "Predictions: 3 pictures, 10 classes"
    assert len(text.splitlines()) == 4 and Path(cifar_pngs[0]).name in text
    one = repr(result[0])
    assert one.startswith("Prediction(") and "\n" not in one and result[0].label in one
    page = result._repr_html_()
    assert page.count("<tr>") == 4 and page.count('<img src="data:image/png;base64,') == 3
    assert result[0].thumbnail.shape == (33, 33, 3) and result[0].thumbnail.dtype == np.uint8
    assert result[0]._repr_html_().count("<img") == 1


@pytest.mark.parametrize("how", ["load_model", "predict", "evaluate"])
def test_checkpoint_metadata_cannot_make_predict_or_evaluate_allocate(how, tmp_path):
    """A small checkpoint whose meta.json asks for 6,000,000 classes is refused before the
    model is built, through every path that rebuilds a model from a file."""
    import tracemalloc

    import glasscnn
    from glasscnn.io import CheckpointError
    from glasscnn.train.run import evaluate_checkpoint

    state = models.get("lenet_bn", in_channels=1, input_size=28).state_dict()
    path = tmp_path / "classes.npz"
    save_checkpoint(path, Checkpoint({"model": "lenet_bn", "data": "fashion-mnist",
                                      "model_kwargs": {"in_channels": 1, "input_size": 28,
                                                       "num_classes": 6_000_000}}, state))
    calls = {
        "load_model": lambda: glasscnn.load_model(path),
        "predict": lambda: glasscnn.predict(path, np.zeros((1, 1, 28, 28), np.float32)),
        "evaluate": lambda: evaluate_checkpoint(path),
    }
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"classes\.npz"):
            calls[how]()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
