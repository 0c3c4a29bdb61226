"""Preprocessing: rescale, Normalizer, MeanImage, train/val split, augmentation, load_image."""

from __future__ import annotations

import numpy as np
import pytest

from glasscnn.data import (
    Compose,
    Dataset,
    MeanImage,
    Normalizer,
    RandomCrop,
    RandomFlip,
    load_image,
    normalize,
    random_crop,
    random_flip,
    rescale,
    train_val_split,
    transforms,
)


@pytest.fixture
def images(rng) -> np.ndarray:
    return rng.integers(0, 256, (20, 3, 6, 5), dtype=np.uint8)


def test_rescale_is_division_by_255(images):
    out = rescale(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, images.astype(np.float32) / np.float32(255))
    assert rescale(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert rescale(images, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match=r"rescale: expected integer .* got float32"):
        rescale(out)


@pytest.mark.parametrize("scale", [1.0, 1 / 255])
@pytest.mark.parametrize("chunk", [3, 4096])
def test_normalizer_fit_matches_numpy(images, monkeypatch, scale, chunk):
    monkeypatch.setattr(transforms, "_CHUNK", chunk)
    norm = Normalizer.fit(images, scale=scale)
    x = images.astype(np.float64) * scale
    np.testing.assert_allclose(norm.mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, x.std(axis=(0, 2, 3)), rtol=1e-12)
    out = norm(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, rtol=1e-5)


def test_normalizer_fitted_on_train_applies_unchanged_to_test(images, rng):
    norm = Normalizer.fit(images, scale=1 / 255)
    test = rng.integers(0, 256, (4, 3, 6, 5), dtype=np.uint8)
    expected = (test / 255.0 - norm.mean[:, None, None]) / norm.std[:, None, None]
    np.testing.assert_allclose(norm(rescale(test)), expected, rtol=1e-5, atol=1e-6)


def test_normalizer_fixed_recipe_and_state_dict(tmp_path, images):
    half = Normalizer((0.5,), (0.5,))  # (x − 0.5)/0.5, seed-facts §2
    x = rescale(images[:, :1])
    np.testing.assert_allclose(half(x), (x - 0.5) / 0.5, atol=1e-7)
    norm = Normalizer.fit(images)
    state = norm.state_dict()
    assert set(state) == {"mean", "std"} and all(isinstance(v, np.ndarray) for v in state.values())
    np.savez(tmp_path / "norm.npz", **state)
    with np.load(tmp_path / "norm.npz") as saved:
        again = Normalizer.from_state_dict(saved)
    np.testing.assert_array_equal(again(images), norm(images))
    with pytest.raises(KeyError, match=r"Normalizer\.from_state_dict: missing key 'std'"):
        Normalizer.from_state_dict({"mean": state["mean"]})


def test_normalize_bad_input(images):
    with pytest.raises(ValueError, match=r"normalize: 3 channels but mean has 2"):
        normalize(images, (0.1, 0.2), (1, 1))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalizer((0.0,), (0.0,))
    with pytest.raises(ValueError, match=r"normalize: expected \(N, C, H, W\)"):
        normalize(images[0], 0, 1)
    with pytest.raises(ValueError, match=r"Normalizer\.fit: no images"):
        Normalizer.fit(images[:0])


def test_mean_image(images, monkeypatch, tmp_path):
    monkeypatch.setattr(transforms, "_CHUNK", 7)
    sub = MeanImage.fit(images, scale=1 / 255)
    np.testing.assert_allclose(sub.mean, (images / 255.0).mean(axis=0), rtol=1e-12)
    out = sub(rescale(images))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-6)
    np.savez(tmp_path / "m.npz", **sub.state_dict())
    with np.load(tmp_path / "m.npz") as saved:
        np.testing.assert_array_equal(MeanImage.from_state_dict(saved).mean, sub.mean)
    with pytest.raises(ValueError, match=r"MeanImage: images \(3, 5, 5\) do not match"):
        sub(images[:, :, :5, :5])
    with pytest.raises(KeyError, match="missing key 'mean'"):
        MeanImage.from_state_dict({})


def tiny_dataset(n: int) -> Dataset:
    return Dataset(np.zeros((n, 1, 1, 1), np.uint8), np.arange(n) % 10, tuple("0123456789"))


def test_train_val_split_cifar_default():
    train, val = train_val_split(tiny_dataset(50_000))
    assert (len(train), len(val)) == (49_000, 1_000)
    assert (train.split, val.split) == ("train", "val")
    assert (train.class_counts() + val.class_counts()).tolist() == [5_000] * 10


def test_train_val_split_is_a_seeded_partition():
    ds = Dataset(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1), np.arange(100) % 10,
                 tuple("0123456789"))
    train, val = train_val_split(ds, 10, seed=3)
    seen = np.concatenate([train.images.ravel(), val.images.ravel()])
    assert sorted(seen.tolist()) == list(range(100))
    assert np.all(np.diff(train.images.ravel().astype(int)) > 0)  # original order kept
    again = train_val_split(ds, 10, seed=3)[1]
    other = train_val_split(ds, 10, seed=4)[1]
    assert np.array_equal(again.images, val.images) and not np.array_equal(other.images,
                                                                            val.images)
    last_train, last_val = train_val_split(ds, 10, seed=None)
    assert last_val.images.ravel().tolist() == list(range(90, 100))
    assert np.shares_memory(last_train.images, ds.images)
    with pytest.raises(ValueError, match=r"val_size must be in 1\.\.99, got 100"):
        train_val_split(ds, 100)


def crop_reference(images, padding, dy, dx):
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@pytest.mark.parametrize("padding", [1, 4])
def test_random_crop_matches_loop(images, padding):
    out = random_crop(images, padding, np.random.default_rng(5))
    draws = np.random.default_rng(5)
    dy = draws.integers(0, 2 * padding + 1, size=len(images))
    dx = draws.integers(0, 2 * padding + 1, size=len(images))
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, crop_reference(images, padding, dy, dx))


def test_random_crop_covers_all_offsets_and_modes(rng):
    ones = np.ones((2000, 1, 3, 3), np.uint8)
    out = random_crop(ones, 2, rng)
    zeros_per_image = (out == 0).reshape(2000, -1).sum(axis=1)
    assert set(zeros_per_image.tolist()) == {0, 3, 5, 6, 7, 8}
    assert np.all(random_crop(ones, 2, rng, mode="edge") == 1)
    assert np.array_equal(random_crop(ones, 0, rng), ones)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        random_crop(ones, -1, rng)


def test_random_flip(images, rng):
    out = random_flip(images, np.random.default_rng(0))
    flipped = np.random.default_rng(0).random(len(images)) < 0.5
    np.testing.assert_array_equal(out[flipped], images[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], images[~flipped])
    assert np.array_equal(random_flip(images, rng, p=0.0), images)
    assert np.array_equal(random_flip(images, rng, p=1.0), images[..., ::-1])
    many = random_flip(np.arange(2, dtype=np.uint8).reshape(1, 1, 1, 2).repeat(4000, 0), rng)
    assert 0.45 < (many[:, 0, 0, 0] == 1).mean() < 0.55


def test_random_transform_classes_are_seeded(images):
    crop_a, crop_b = RandomCrop(4, seed=1), RandomCrop(4, seed=1)
    assert np.array_equal(crop_a(images), crop_b(images))
    assert np.array_equal(RandomFlip(seed=2)(images), RandomFlip(seed=2)(images))
    given = RandomCrop(4, seed=99)(images, rng=np.random.default_rng(5))
    assert np.array_equal(given, random_crop(images, 4, np.random.default_rng(5)))


def test_compose_passes_rng_to_random_steps_only(images):
    calls = []

    def plain(x):
        calls.append("plain")
        return x

    pipeline = Compose(RandomFlip(), plain, rescale)
    out = pipeline(images, rng=np.random.default_rng(8))
    expected = rescale(random_flip(images, np.random.default_rng(8)))
    np.testing.assert_array_equal(out, expected)
    assert calls == ["plain"] and Compose.random


def test_load_image_lanczos_pipeline(tmp_path, rng):
    image_mod = pytest.importorskip("PIL.Image")
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "cat.png"
    image_mod.fromarray(pixels).save(path)
    out = load_image(path, "RGB", 33)  # seed-facts §1: 32x32 → 33x33 Lanczos, /255, NCHW
    assert out.shape == (1, 3, 33, 33) and out.dtype == np.float32
    resized = np.asarray(image_mod.fromarray(pixels).resize((33, 33), image_mod.LANCZOS))
    np.testing.assert_array_equal(out[0], resized.transpose(2, 0, 1) / np.float32(255))
    raw = load_image(path, divisor=None)
    assert raw.dtype == np.uint8 and np.array_equal(raw[0], pixels.transpose(2, 0, 1))


def test_load_image_modes_sizes_and_errors(tmp_path, rng):
    image_mod = pytest.importorskip("PIL.Image")
    path = tmp_path / "photo.jpg"
    image_mod.fromarray(rng.integers(0, 256, (10, 16, 3), dtype=np.uint8)).save(path)
    assert load_image(path, "L").shape == (1, 1, 10, 16)
    assert load_image(path, size=(20, 40), resample="bilinear").shape == (1, 3, 20, 40)
    with image_mod.open(path) as opened:
        assert load_image(opened, "RGB", 8).shape == (1, 3, 8, 8)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"load_image: .*bad\.png: unreadable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="resample must be one of"):
        load_image(path, resample="cubic")
