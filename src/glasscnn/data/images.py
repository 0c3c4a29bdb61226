"""Image files through Pillow (an optional dependency, imported only when needed)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


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


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_pixels(image_mod: ModuleType, path: Path, mode: str) -> np.ndarray:
    """One image file as (H, W, C) uint8 in Pillow ``mode``."""
    try:
        with image_mod.open(path) as img:
            pixels = np.asarray(img.convert(mode))  # (H, W) or (H, W, C)
    except (OSError, ValueError) as err:
        raise ValueError(f"read_image_folder: {path}: unreadable image ({err})") from None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def read_image_folder(
    folder: str | os.PathLike[str], mode: str = "RGB"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a folder laid out as ``<folder>/<class>/*.png`` (JPEG, BMP, … also accepted).

    Classes are the sub-folder names in sorted order; files are read in sorted order.

    Args:
        folder: e.g. ``cifar10-png/train``.
        mode: Pillow mode every image is converted to: ``"RGB"`` (3 channels) or ``"L"`` (1).

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
