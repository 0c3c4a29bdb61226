"""Preprocessing: rescaling, normalisation, mean-image subtraction, splits, augmentation.

Batch transforms take and return (N, C, H, W) arrays. Statistics (``Normalizer``,
``MeanImage``) are fitted on the training split only and applied unchanged to validation
and test data, as CNN courses teach; their ``state_dict()`` is a dict of arrays, to be saved
with a model. Random transforms have ``random = True`` and accept ``rng=``; the
``DataLoader`` passes one derived from its seed, epoch and batch, so augmentation is
reproducible and resumable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from glasscnn.data.datasets import Dataset
from glasscnn.data.images import picture_array, require_pillow

_CHUNK = 4096


def rescale(images: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Map uint8 pixels 0..255 to [0, 1]: ``images / 255``.

    Args:
        images: (N, C, H, W) or any shape, integer dtype.
        dtype: floating dtype of the result.

    Returns:
        Same shape, ``dtype``.
    """
    if images.dtype.kind not in "ui":
        raise ValueError(f"rescale: expected integer (uint8) pixels, got {images.dtype}")
    return np.divide(images, 255, dtype=dtype)


def _channel_vector(values: Any, name: str, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise ValueError(f"{name}: {what} must be one value per channel, got shape {arr.shape}")
    return arr


def _check_nchw(images: np.ndarray, name: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) images, got shape {images.shape}")


def normalize(images: np.ndarray, mean: Any, std: Any, dtype: Any = np.float32) -> np.ndarray:
    """Per-channel ``(images - mean[c]) / std[c]``.

    Args:
        images: (N, C, H, W).
        mean, std: C values each (or one value for all channels).
        dtype: floating dtype of the result.

    Returns:
        (N, C, H, W) ``dtype``.
    """
    _check_nchw(images, "normalize")
    mean = _channel_vector(mean, "normalize", "mean").astype(dtype)
    std = _channel_vector(std, "normalize", "std").astype(dtype)
    if mean.size not in (1, images.shape[1]) or std.size not in (1, images.shape[1]):
        raise ValueError(f"normalize: {images.shape[1]} channels but mean has {mean.size} "
                         f"values and std {std.size}")
    if np.any(std <= 0):
        raise ValueError(f"normalize: std must be positive, got {std}")
    out = np.subtract(images, mean[:, None, None], dtype=dtype)
    out /= std[:, None, None]
    return out


def _channel_stats(images: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of ``images * scale``, in float64, in chunks."""
    n, c = images.shape[:2]
    count = n * images[0, 0].size
    total = np.zeros(c)
    for i in range(0, n, _CHUNK):
        total += images[i:i + _CHUNK].sum(axis=(0, 2, 3), dtype=np.float64)
    mean = total / count
    sq = np.zeros(c)
    for i in range(0, n, _CHUNK):
        chunk = images[i:i + _CHUNK].astype(np.float64) - mean[:, None, None]
        sq += np.einsum("nchw,nchw->c", chunk, chunk)
    return mean * scale, np.sqrt(sq / count) * scale


class Normalizer:
    """Per-channel normalisation ``(x - mean[c]) / std[c]`` with statistics fitted once.

    Args:
        mean, std: C values each (one value broadcasts over channels), e.g. (0.5,), (0.5,)
            for the ``(x − 0.5)/0.5`` recipe.
    """

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = _channel_vector(mean, "Normalizer", "mean")
        self.std = _channel_vector(std, "Normalizer", "std")
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalizer: mean {self.mean.shape} and std {self.std.shape} "
                             "differ in length")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalizer: std must be positive, got {self.std}")

    @classmethod
    def fit(cls, images: np.ndarray, scale: float = 1.0) -> Normalizer:
        """Fit mean and (population, ddof 0) std per channel over N, H, W of ``images * scale``.

        Args:
            images: (N, C, H, W), the training split only. Pass uint8 images with
                ``scale=1/255`` to get statistics of rescaled pixels without a float copy.
            scale: factor applied to the pixels before the statistics.
        """
        _check_nchw(images, "Normalizer.fit")
        if images.shape[0] == 0:
            raise ValueError("Normalizer.fit: no images")
        return cls(*_channel_stats(images, scale))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Normalise (N, C, H, W) images; returns float32 of the same shape."""
        return normalize(images, self.mean, self.std)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"mean": (C,), "std": (C,)}`` float64 arrays."""
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Normalizer:
        """Rebuild from ``state_dict()``; KeyError names a missing key."""
        for key in ("mean", "std"):
            if key not in state:
                raise KeyError(f"Normalizer.from_state_dict: missing key {key!r}; "
                               f"got {sorted(state)}")
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"Normalizer(mean={self.mean.round(4).tolist()}, std={self.std.round(4).tolist()})"


class MeanImage:
    """Subtract the training set's mean image (C, H, W), the classic CS231n preprocessing.

    Args:
        mean: the (C, H, W) mean image.
    """

    def __init__(self, mean: Any) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        if self.mean.ndim != 3:
            raise ValueError(f"MeanImage: mean must be (C, H, W), got shape {self.mean.shape}")

    @classmethod
    def fit(cls, images: np.ndarray, scale: float = 1.0) -> MeanImage:
        """Mean over N of ``images * scale`` (N, C, H, W), accumulated in float64 in chunks."""
        _check_nchw(images, "MeanImage.fit")
        if images.shape[0] == 0:
            raise ValueError("MeanImage.fit: no images")
        total = np.zeros(images.shape[1:])
        for i in range(0, images.shape[0], _CHUNK):
            total += images[i:i + _CHUNK].sum(axis=0, dtype=np.float64)
        return cls(total / images.shape[0] * scale)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``images - mean`` for (N, C, H, W) images; returns float32."""
        _check_nchw(images, "MeanImage")
        if images.shape[1:] != self.mean.shape:
            raise ValueError(f"MeanImage: images {images.shape[1:]} do not match the mean "
                             f"image {self.mean.shape}")
        return np.subtract(images, self.mean.astype(np.float32), dtype=np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"mean": (C, H, W)}`` float64."""
        return {"mean": self.mean.copy()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> MeanImage:
        """Rebuild from ``state_dict()``; KeyError names a missing key."""
        if "mean" not in state:
            raise KeyError(f"MeanImage.from_state_dict: missing key 'mean'; got {sorted(state)}")
        return cls(state["mean"])


def train_val_split(
    dataset: Dataset, val_size: int = 1000, seed: int | None = 0
) -> tuple[Dataset, Dataset]:
    """Split off ``val_size`` examples for validation (49,000/1,000 for CIFAR-10's train).

    Args:
        dataset: the training split.
        val_size: number of validation examples, 0 < val_size < len(dataset).
        seed: which examples go to validation is drawn with this seed; each part keeps the
            original order. None takes the last ``val_size`` examples (the CS231n split).

    Returns:
        (train, val) datasets with ``split`` "train" and "val"; no example is in both.
    """
    n = len(dataset)
    if not 0 < val_size < n:
        raise ValueError(f"train_val_split: val_size must be in 1..{n - 1}, got {val_size}")
    if seed is None:
        return (dataset.subset(slice(0, n - val_size), "train"),
                dataset.subset(slice(n - val_size, n), "val"))
    order = np.random.default_rng(seed).permutation(n)
    return (dataset.subset(np.sort(order[val_size:]), "train"),
            dataset.subset(np.sort(order[:val_size]), "val"))


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator,
                mode: str = "constant") -> np.ndarray:
    """Pad each image by ``padding`` on every side, then crop it back to H×W at a random offset.

    Vectorised: one pad and one gather for the whole batch, offsets dy, dx uniform in
    0..2·padding (padding 4 on 32×32 CIFAR: 81 possible crops).

    Args:
        images: (N, C, H, W).
        padding: pixels added on each side.
        rng: source of the offsets.
        mode: ``np.pad`` mode: ``"constant"`` (zeros), ``"reflect"``, ``"edge"``.

    Returns:
        (N, C, H, W), same dtype.
    """
    _check_nchw(images, "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}")
    n, _, h, w = images.shape
    if padding == 0:
        return images.copy()
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    padded = np.pad(images, pad, mode=mode)  # (N, C, H+2p, W+2p)
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
    return windows[np.arange(n), :, dy, dx]  # (N, C, H, W)


def random_flip(images: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``.

    Args:
        images: (N, C, H, W).
        rng: source of the coin flips.
        p: flip probability.

    Returns:
        (N, C, H, W), same dtype.
    """
    _check_nchw(images, "random_flip")
    flip = rng.random(images.shape[0]) < p  # (N,)
    return np.where(flip[:, None, None, None], images[..., ::-1], images)


class RandomCrop:
    """``random_crop`` as a batch transform; ``seed`` is used when no ``rng`` is passed."""

    random = True

    def __init__(self, padding: int = 4, mode: str = "constant", seed: int | None = 0) -> None:
        self.padding, self.mode = padding, mode
        self._rng = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray, rng: np.random.Generator | None = None
                 ) -> np.ndarray:
        """Crop a (N, C, H, W) batch; returns the same shape."""
        return random_crop(images, self.padding, self._rng if rng is None else rng, self.mode)


class RandomFlip:
    """``random_flip`` as a batch transform; ``seed`` is used when no ``rng`` is passed."""

    random = True

    def __init__(self, p: float = 0.5, seed: int | None = 0) -> None:
        self.p = p
        self._rng = np.random.default_rng(seed)

    def __call__(self, images: np.ndarray, rng: np.random.Generator | None = None
                 ) -> np.ndarray:
        """Flip a (N, C, H, W) batch; returns the same shape."""
        return random_flip(images, self._rng if rng is None else rng, self.p)


class Compose:
    """Apply batch transforms in order, passing ``rng`` on to the random ones.

    Example: ``Compose(RandomCrop(4), RandomFlip(), rescale, Normalizer.fit(x, 1/255))``.
    """

    random = True

    def __init__(self, *steps: Callable[..., np.ndarray]) -> None:
        self.steps = steps

    def __call__(self, images: np.ndarray, rng: np.random.Generator | None = None
                 ) -> np.ndarray:
        """Run every step on the (N, C, H, W) batch."""
        for step in self.steps:
            if getattr(step, "random", False):
                images = step(images, rng=rng)
            else:
                images = step(images)
        return images


_RESAMPLE = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")


def load_image(
    image: str | os.PathLike[str] | Any,
    mode: str = "RGB",
    size: int | Sequence[int] | None = None,
    resample: str = "lanczos",
    divisor: float | None = 255.0,
) -> np.ndarray:
    """Read one picture and make it a network input: a batch of one, NCHW.

    Steps: open with Pillow (PNG, JPEG, …), convert to ``mode`` (16-bit grey scaled onto
    0..255, alpha composited over black: ``glasscnn.data.images.picture_array``), resize
    to ``size`` with ``resample``, divide by ``divisor``, HWC → CHW, add the batch axis.
    The CIFAR inference lab's pipeline is ``load_image(path, "RGB", 33)``: 32×32 → 33×33
    Lanczos, /255.

    Args:
        image: a path or an open ``PIL.Image.Image``.
        mode: ``"RGB"`` (C = 3) or ``"L"`` (grayscale, C = 1), as the model needs.
        size: output (height, width), an int for a square, or None to keep the size.
        resample: nearest, box, bilinear, hamming, bicubic or lanczos.
        divisor: pixels are divided by it (float32 result); None keeps uint8.

    Returns:
        (1, C, H, W) float32 (or uint8 when ``divisor`` is None).
    """
    image_mod = require_pillow()
    if resample not in _RESAMPLE:
        raise ValueError(f"load_image: resample must be one of {_RESAMPLE}, got {resample!r}")
    hw = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    if isinstance(image, str | os.PathLike):
        try:
            with image_mod.open(image) as opened:
                pixels = picture_array(opened, mode, hw, resample)  # (H, W, C)
        except (OSError, ValueError) as err:
            raise ValueError(f"load_image: {image}: unreadable image ({err})") from None
    else:
        pixels = picture_array(image, mode, hw, resample)
    batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # (1, C, H, W)
    if divisor is None:
        return batch if batch.dtype == np.uint8 else np.rint(batch).astype(np.uint8)
    return np.divide(batch, divisor, dtype=np.float32)
