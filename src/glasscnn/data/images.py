"""Image files through Pillow (an optional dependency, imported only when needed).

Every picture glasscnn reads (``glasscnn predict``, ``inspect``, ``load_image``,
``read_image_folder``) goes through ``picture_array``, which converts Pillow's modes on
purpose rather than by Pillow's defaults:

- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I``, the mode Pillow gives
  some 16-bit PNGs): scaled by 255/65535 onto the 8-bit range, so 0..65535 becomes
  0..255 (Pillow's own conversion to ``L`` would clip everything above 255 to white);
- palette (``P``, ``PA``): expanded through the palette, its transparency kept as alpha;
- with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``): composited over black, so a
  fully transparent pixel is black (the background of MNIST and Fashion-MNIST);
- 1-bit (``1``): black 0, white 255;
- any other mode (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, 32-bit float ``F``): Pillow's
  conversion to RGB or grey.

Grey becomes RGB by copying the channel; RGB becomes grey by luminance (ITU-R 601-2,
L = 0.299 R + 0.587 G + 0.114 B, as Pillow computes it).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
RESAMPLE = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")


def require_pillow() -> ModuleType:
    """Import and return ``PIL.Image``, or raise ImportError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "glasscnn.data: reading PNG/JPEG images needs Pillow: pip install 'glasscnn[viz]' "
            "(or pip install pillow)"
        ) from None
    return Image


def _composite_over_black(img: Any) -> Any:
    """An image with alpha as ``L`` or ``RGB`` over a black background (rounded to uint8)."""
    image_mod = require_pillow()
    grey = img.mode in ("LA", "La")
    rgba = np.asarray(img.convert("LA" if grey else "RGBA"), dtype=np.float32)
    colour, alpha = rgba[..., :-1], rgba[..., -1:] / 255  # (H, W, C), (H, W, 1)
    pixels = np.rint(colour * alpha).astype(np.uint8)
    return image_mod.fromarray(pixels[..., 0] if grey else pixels, "L" if grey else "RGB")


def picture_array(img: Any, mode: str = "RGB", size: tuple[int, int] | None = None,
                  resample: str = "lanczos") -> np.ndarray:
    """One PIL picture as (H, W, C) pixels on the 0..255 scale, converted as the module says.

    Args:
        img: a ``PIL.Image.Image`` in any mode.
        mode: ``"RGB"`` (C = 3) or ``"L"`` (grey, C = 1).
        size: (height, width) to resize to, or None to keep the picture's size.
        resample: nearest, box, bilinear, hamming, bicubic or lanczos.

    Returns:
        (H, W, C) uint8, or float32 in [0, 255] for a 16-bit picture (resized in float,
        so no precision is lost before the network sees it).

    Raises:
        ValueError: ``mode`` or ``resample`` not one of those above.
    """
    image_mod = require_pillow()
    if mode not in ("L", "RGB"):
        raise ValueError(f"picture_array: mode must be 'L' or 'RGB', got {mode!r}")
    if resample not in RESAMPLE:
        raise ValueError(f"picture_array: resample must be one of {RESAMPLE}, got {resample!r}")
    filt = getattr(image_mod.Resampling, resample.upper())
    if img.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(img, dtype=np.float32) * np.float32(255 / 65535)  # (H, W)
        scaled = image_mod.fromarray(np.clip(grey, 0, 255), "F")
        if size is not None:
            scaled = scaled.resize((size[1], size[0]), filt)
        pixels = np.clip(np.asarray(scaled, dtype=np.float32), 0, 255)[:, :, None]
        return np.repeat(pixels, 3, axis=2) if mode == "RGB" else pixels
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in ALPHA_MODES:
        img = _composite_over_black(img)
    if img.mode == "1":
        img = img.convert("L")
    img = img.convert(mode)
    if size is not None:
        img = img.resize((size[1], size[0]), filt)
    pixels = np.asarray(img)  # (H, W) or (H, W, C)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_pixels(image_mod: ModuleType, path: Path, mode: str) -> np.ndarray:
    """One image file as (H, W, C) uint8 in Pillow ``mode`` (16-bit pictures rounded)."""
    try:
        with image_mod.open(path) as img:
            pixels = picture_array(img, mode)  # (H, W, C)
    except (OSError, SyntaxError, ValueError, image_mod.DecompressionBombError) as err:
        raise ValueError(f"read_image_folder: {path}: unreadable image ({err})") from None
    return pixels if pixels.dtype == np.uint8 else np.rint(pixels).astype(np.uint8)


def read_image_folder(
    folder: str | os.PathLike[str], mode: str = "RGB"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a folder laid out as ``<folder>/<class>/*.png`` (JPEG, BMP, … also accepted).

    Classes are the sub-folder names in sorted order; files are read in sorted order.

    Args:
        folder: e.g. ``cifar10-png/train``.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (1); every image is converted as
            ``picture_array`` does (16-bit grey scaled to 8 bits, alpha over black, …).

    Returns:
        images (N, C, H, W) uint8, labels (N,) int64 (index into classes), class names.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no class folders or no images, an unreadable image, or images of
            different sizes; names the file.
    """
    image_mod = require_pillow()
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"read_image_folder: no such folder: {folder}")
    classes = tuple(sorted(p.name for p in folder.iterdir()
                           if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise ValueError(f"read_image_folder: {folder} has no class sub-folders")
    files = [(f, label) for label, c in enumerate(classes) for f in _image_files(folder / c)]
    if not files:
        raise ValueError(f"read_image_folder: {folder} has no image files in its class folders")
    first = _read_pixels(image_mod, files[0][0], mode)
    images = np.empty((len(files), *first.shape), np.uint8)  # (N, H, W, C)
    for i, (path, _) in enumerate(files):
        pixels = first if i == 0 else _read_pixels(image_mod, path, mode)
        if pixels.shape != images.shape[1:]:
            raise ValueError(
                f"read_image_folder: {path}: size {pixels.shape[:2]} differs from the first "
                f"image's {images.shape[1:3]}"
            )
        images[i] = pixels
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels, classes
