"""Loading a trained network: ``load_model`` for Python, ``load_predictor`` for ``predict``.

``load_model(path)`` returns the network with its weights, in evaluation mode, from any
checkpoint ``glasscnn train`` writes (its last or its best-validation weights) or from a
plain state_dict file (``.npz``, ``.pth``/``.pt``, ``.safetensors``) plus a zoo model name.
The network also carries what ``glasscnn.predict`` needs to read a picture for it
(``preprocessing``, ``classes``), so ``predict(load_model(path), "cat.png")`` just works.

``load_predictor`` returns the same as a ``LoadedModel`` with its origin and the builder's
arguments (what ``glasscnn predict`` and ``export`` print). ``read_checkpoint`` reads a
checkpoint file and turns whatever a damaged file raises into ``CheckpointError`` naming it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.checkpoint import Checkpoint, build_model_for, load_checkpoint
from glasscnn.data.datasets import SPECS
from glasscnn.data.images import require_pillow
from glasscnn.data.transforms import MeanImage, Normalizer, load_image
from glasscnn.io import (
    CheckpointError,
    CheckpointMismatchError,
    format_of,
    load_into,
    load_state_dict,
)
from glasscnn.kernels._common import pair
from glasscnn.nn import Linear, Module

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECIPES: dict[str, dict[str, Any]] = {
    "alexnet_cifar33": {"data": "cifar10"},
    "mnist_net": {"mean": (0.5,), "std": (0.5,), "data": "mnist"},
    "three_layer_convnet": {"data": "cifar10"},
    "lenet_bn": {"data": "cifar10"},
    "vgg_cifar": {"mean": (0.5,), "std": (0.5,), "data": "cifar10"},
    "alexnet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "resnet_cifar": {"data": "cifar10"},
}
"""Preprocessing of a plain state_dict, by zoo model: every recipe resizes to the model's
input with Lanczos and divides by 255; ``mean``/``std`` (the courses' (x − 0.5)/0.5,
ImageNet's for ``alexnet``) normalise after that; ``data`` is the data set the model is
defined for, whose class names are assumed (and said to be) when the file names none and
the count fits."""

_PICTURE_MODES = {1: "L", 3: "RGB"}
MAX_INPUT_SIDE = 4096
"""The largest input height or width ``Preprocessing`` accepts (pictures are resized to it
before anything else is allocated)."""


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes a network input.

    Steps: convert to grey (C = 1) or RGB (C = 3), resize to H×W with ``resample``, divide
    by ``divisor``, then ``(x − mean[c]) / std[c]`` and/or subtract ``mean_image``.

    Attributes:
        input_shape: (C, H, W) the model takes; None keeps a picture's own size (arrays only).
        resample: Pillow filter name (``lanczos``, ``bilinear``, …).
        divisor: pixels are divided by it; integer arrays too. None leaves them as they are.
        mean, std: per-channel normalisation after the division (one value broadcasts).
        mean_image: a (C, H, W) image subtracted after the division.
        convert_channels: accept a picture with another channel count (RGB → grey by
            luminance, grey → RGB by copying); otherwise such a picture is an error.
    """

    input_shape: tuple[int, int, int] | None = None
    resample: str = "lanczos"
    divisor: float | None = 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    mean_image: np.ndarray | None = field(default=None, compare=False, repr=False)
    convert_channels: bool = False

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"Preprocessing: give mean and std together, got mean={self.mean} "
                             f"and std={self.std}")
        if self.input_shape is not None:
            shape = tuple(int(d) for d in self.input_shape)
            if len(shape) != 3 or min(shape) <= 0:
                raise ValueError(f"Preprocessing: input_shape must be (C, H, W), got "
                                 f"{self.input_shape}")
            if max(shape[1:]) > MAX_INPUT_SIDE or shape[0] > 64:
                raise ValueError(f"Preprocessing: input_shape {shape} is too large: at most "
                                 f"64 channels and {MAX_INPUT_SIDE} pixels a side")
            object.__setattr__(self, "input_shape", shape)

    def describe(self) -> str:
        """One line, e.g. ``RGB 33×33 (lanczos), /255, no normalisation``."""
        if self.input_shape is None:
            size = "inputs at their own size"
        else:
            c, h, w = self.input_shape
            size = f"{_PICTURE_MODES.get(c, f'{c}-channel')} {h}×{w} ({self.resample})"
        parts = [size, "pixels as they are" if self.divisor is None else f"/{self.divisor:g}"]
        norm = []
        if self.mean is not None:
            norm.append(f"(x − {_fmt(self.mean)}) / {_fmt(self.std)}")
        if self.mean_image is not None:
            norm.append("minus the mean image")
        parts.append(", ".join(norm) if norm else "no normalisation")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the mean image is reported by its shape only)."""
        return {
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "resample": self.resample, "divisor": self.divisor,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "mean_image": None if self.mean_image is None else list(self.mean_image.shape),
            "convert_channels": self.convert_channels,
        }

    def read(self, image: str | os.PathLike | Any) -> np.ndarray:
        """Read one picture file (or PIL image) as (C, H, W) float32, before normalisation.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a readable picture, or (unless ``convert_channels``) a picture
                whose channel count differs from the model's; the message names the file.
        """
        if self.input_shape is None:
            raise ValueError("predict: reading a picture file needs the model's input shape; "
                             "pass preprocessing=Preprocessing(input_shape=(C, H, W))")
        c, h, w = self.input_shape
        if c not in _PICTURE_MODES:
            raise ValueError(f"predict: pictures have 1 or 3 channels; the model takes {c}")
        if not isinstance(image, str | os.PathLike):
            return self._load(image, str(image), c, h, w)
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        pil = require_pillow()
        broken = (OSError, SyntaxError, ValueError, pil.DecompressionBombError)
        try:
            img = pil.open(path)
        except broken as err:
            raise ValueError(f"{path}: not a readable picture ({err})") from None
        with img:
            try:
                img.load()
            except broken as err:
                raise ValueError(f"{path}: not a readable picture ({err})") from None
            return self._load(img, str(path), c, h, w)

    def _load(self, img: Any, name: str, c: int, h: int, w: int) -> np.ndarray:
        have = picture_channels(img)
        if have != c and not self.convert_channels:
            raise ValueError(
                f"{name}: the picture has {have} channel{'s' * (have != 1)} (mode {img.mode}) "
                f"but the model takes {c}; convert it first, or pass --convert "
                "(convert_channels=True)"
            )
        x = load_image(img, _PICTURE_MODES[c], (h, w), self.resample,
                       self.divisor)  # (1, C, H, W)
        return x[0]

    def check_arrays(self, images: np.ndarray) -> np.ndarray:
        """Validate an array batch and apply the division: (N, C, H, W) or one (C, H, W).

        Integer arrays are divided by ``divisor``; float arrays are taken as already scaled.
        No resizing: an array must already have the model's (C, H, W).

        Returns:
            (N, C, H, W) float32, before normalisation.
        """
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"predict: arrays must be (N, C, H, W) or (C, H, W), got shape "
                             f"{x.shape}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            c = self.input_shape[0]
            what = "channels" if x.shape[1] != c else "size"
            raise ValueError(
                f"predict: arrays of shape {x.shape} but the model takes (N, "
                f"{', '.join(map(str, self.input_shape))}): wrong {what}; arrays are not "
                "resized or converted, pass picture files (or PIL images) for that"
            )
        if x.dtype.kind in "uib":
            scale = 1.0 if self.divisor is None else self.divisor
            return np.divide(x, scale, dtype=np.float32)
        if x.dtype.kind != "f":
            raise ValueError(f"predict: arrays must hold numbers, got dtype {x.dtype}")
        return x.astype(np.float32, copy=False)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Apply ``mean``/``std`` and ``mean_image`` to (N, C, H, W); returns float32."""
        if self.mean is not None:
            x = Normalizer(self.mean, self.std)(x)
        if self.mean_image is not None:
            x = MeanImage(self.mean_image)(x)
        return x

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``normalize(check_arrays(images))``: an array batch as the network input."""
        return self.normalize(self.check_arrays(images))


def _fmt(values: Sequence[float]) -> str:
    text = [f"{v:.4g}" for v in values]
    return text[0] if len(text) == 1 else "(" + ", ".join(text) + ")"


def picture_channels(img: Any) -> int:
    """Colour channels of a PIL image, not counting alpha: ``L`` 1, ``RGB``/``RGBA``/``P`` 3.

    Palette (``P``) pictures count as colour (3); ``CMYK`` as 4.
    """
    if img.mode in ("P", "PA"):
        return 3
    return len([b for b in img.getbands() if b != "A"])


@dataclass
class LoadedModel:
    """A model ready for ``predict``: weights loaded, evaluation mode, preprocessing known.

    Attributes:
        model: the glasscnn Module.
        name: zoo name (``""`` for a bare Module).
        preprocessing: how a picture becomes its input.
        classes: one name per logit.
        source: the checkpoint it came from (or ``""``).
        model_kwargs: the zoo builder's arguments.
        classes_note: where the class names come from when the file did not name them
            (e.g. "CIFAR-10's names, assumed for alexnet_cifar33"), else ``""``.
    """

    model: Module
    name: str = ""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    classes: tuple[str, ...] = ()
    source: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes_note: str = ""


def recipe_preprocessing(name: str, model_kwargs: Mapping[str, Any] | None = None
                         ) -> Preprocessing:
    """The ``RECIPES`` preprocessing of zoo model ``name`` built with ``model_kwargs``.

    The input shape follows ``in_channels`` and ``input_size`` when they are given; a
    recipe's mean/std are kept only when their length fits the channel count.
    """
    kwargs = dict(model_kwargs or {})
    c, h, w = models.default_input_shape(name)
    c = int(kwargs.get("in_channels", c))
    h, w = pair(kwargs.get("input_size", (h, w)), "input_size", name)
    recipe = RECIPES.get(name, {})
    mean, std = recipe.get("mean"), recipe.get("std")
    if mean is not None and len(mean) not in (1, c):
        mean = std = None
    return Preprocessing(input_shape=(c, h, w), mean=mean, std=std)


def _class_names(given: Sequence[str] | None, fallback: Sequence[str] | None, count: int | None
                 ) -> tuple[str, ...]:
    """``given`` (must fit ``count``), else ``fallback`` when it fits, else ``"0"``, ``"1"``…"""
    if given is not None:
        if count is not None and len(given) != count:
            raise ValueError(f"predict: {len(given)} class names for a model with {count} "
                             "outputs")
        return tuple(given)
    if fallback is not None and (count is None or len(fallback) == count):
        return tuple(fallback)
    return tuple(str(i) for i in range(count or 0))


def _num_outputs(model: Module, input_shape: tuple[int, int, int] | None) -> int | None:
    """The number of logits, from the shape rule (or the last Linear layer)."""
    if input_shape is not None:
        try:
            return int(model.output_shape((1, *input_shape))[-1])
        except (ValueError, NotImplementedError):
            pass
    last = [m for _, m in model.named_modules() if isinstance(m, Linear)]
    return last[-1].out_features if last else None


_DAMAGED = (EOFError, OSError, zipfile.BadZipFile, zlib.error, struct.error, KeyError,
            IndexError, TypeError, AttributeError, NotImplementedError, RecursionError,
            OverflowError, MemoryError)


def _guarded(path: Path, read: Callable[[Path], Any], what: str = "file") -> Any:
    """``read(path)``, with what a truncated or damaged file raises as ``CheckpointError``
    (``what``: the kind of file, for the message)."""
    try:
        return read(path)
    except (CheckpointError, FileNotFoundError, CheckpointMismatchError):
        raise
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None
    except _DAMAGED as err:
        if isinstance(err, OSError) and not isinstance(err, zipfile.BadZipFile) and err.strerror:
            raise
        why = ("it declares more data than fits in memory" if isinstance(err, MemoryError)
               else f"damaged or truncated ({type(err).__name__}: {err})")
        raise CheckpointError(f"{path}: not a readable {what}: {why}") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a glasscnn checkpoint; any damage is a ``CheckpointError`` naming the file.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, not a glasscnn checkpoint, truncated or corrupt.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    return _guarded(path, load_checkpoint, "checkpoint")


def _npz_names(path: Path) -> list[str]:
    with np.load(path, allow_pickle=False) as npz:
        return list(npz.files)


def _glasscnn_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint when ``path`` is an ``.npz`` holding ``meta.json``, None for another
    format or a plain state_dict ``.npz``; a damaged archive is a ``CheckpointError``."""
    if format_of(path) != "npz":
        return None
    names = _guarded(path, _npz_names, ".npz archive")
    return read_checkpoint(path) if "meta.json" in names else None


def build_zoo_model(name: str, kwargs: Mapping[str, Any], source: str = "",
                    weights: Mapping[str, np.ndarray] | None = None) -> Module:
    """``models.get(name, **kwargs)``, with an unknown argument a ``ValueError`` listing them.

    Args:
        name: a zoo model.
        kwargs: the builder's keyword arguments.
        source: the file they came from, for the message.
        weights: the state_dict the model is built for; when given, arguments that would
            make the model larger than these weights are refused before anything is
            allocated (``glasscnn.checkpoint.build_model_for``).
    """
    builder = models.REGISTRY[name][0] if name in models.REGISTRY else None
    if builder is not None:
        params = inspect.signature(builder).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                where = f"{source}: " if source else ""
                raise ValueError(f"{where}model {name} takes no argument "
                                 f"{', '.join(map(repr, unknown))}; its arguments are "
                                 f"{', '.join(params)}")
    if weights is not None:
        return build_model_for(name, dict(kwargs), dict(weights), source or "state_dict")
    try:
        return models.get(name, **kwargs)
    except TypeError as err:
        raise ValueError(f"model {name}: bad arguments {dict(kwargs)} ({err})") from None


def _check_finite(model: Module, source: str) -> None:
    """Refuse weights that would make every prediction NaN: non-finite values, negative
    batch-norm variances."""
    bad = [k for k, v in model.state_dict().items()
           if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]
    negative = [k for k, v in model.state_dict().items()
                if k.endswith("running_var") and (np.asarray(v) < 0).any()]
    if bad or negative:
        what = []
        if bad:
            what.append(f"NaN or infinite values in {', '.join(bad[:4])}"
                        + (" …" if len(bad) > 4 else ""))
        if negative:
            what.append(f"negative batch-norm variances in {', '.join(negative[:4])}")
        raise CheckpointError(f"{source}: the weights hold {'; '.join(what)}: every "
                              "prediction would be NaN (a diverged or damaged run?)")


def _fill(model: Module, name: str, state_dict: Mapping[str, Any], source: str,
          strip_prefix: str | None) -> None:
    """Load ``state_dict`` into ``model``; a misfit names the file and lists every shape."""
    try:
        load_into(model, state_dict, strip_prefix=strip_prefix)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(
            f"{source}: these weights do not fit the model {name!r} (another architecture, "
            f"or other model arguments?); nothing was loaded\n{err.report}", err.report,
        ) from None
    _check_finite(model, source)


def _checkpoint_classes(meta: Mapping[str, Any], name: str, count: int | None
                        ) -> tuple[tuple[str, ...], str]:
    """A checkpoint's class names: its own, else its data set's, else numbers."""
    if meta.get("classes"):
        return _class_names(None, meta["classes"], count), ""
    data = meta.get("data")
    if data in SPECS and (count is None or len(SPECS[data].classes) == count):
        return tuple(SPECS[data].classes), f"the class names of {data}, the data set it names"
    return _class_names(None, None, count), "numbered: the checkpoint names no classes"


def _plain_classes(name: str, count: int | None) -> tuple[tuple[str, ...], str]:
    """A plain state_dict's class names: those of the data set its model is defined for
    (said so), else numbers."""
    data = RECIPES.get(name, {}).get("data")
    if data in SPECS and (count is None or len(SPECS[data].classes) == count):
        return (tuple(SPECS[data].classes),
                f"{SPECS[data].title}'s class "
                f"names, assumed for {name} (the file names none; --classes to change)")
    return _class_names(None, None, count), "numbered: the file names no classes"


def checkpoint_preprocessing(ckpt: Checkpoint, name: str, kwargs: Mapping[str, Any],
                             source: str = "checkpoint") -> Preprocessing:
    """The preprocessing a checkpoint's network was trained with: its input shape (else the
    zoo recipe's), /255, then its ``normalizer`` or ``mean_image`` group.

    Raises:
        CheckpointError: a normaliser or mean image with non-finite values or a std <= 0.
    """
    meta = ckpt.meta
    shape = meta.get("input_shape") if name == meta.get("model") else None
    if shape is None and name in models.REGISTRY:
        shape = recipe_preprocessing(name, kwargs).input_shape
    mean = std = mean_image = None
    if "normalizer" in ckpt.groups:
        norm = Normalizer.from_state_dict(ckpt.groups["normalizer"])
        mean, std = tuple(norm.mean.tolist()), tuple(norm.std.tolist())
        if not np.all(np.isfinite(mean + std)) or min(std) <= 0:
            raise CheckpointError(f"{source}: its normaliser has a non-finite or non-positive "
                                  f"std or mean (mean {mean}, std {std})")
    if "mean_image" in ckpt.groups:
        mean_image = MeanImage.from_state_dict(ckpt.groups["mean_image"]).mean
        if not np.isfinite(mean_image).all():
            raise CheckpointError(f"{source}: its mean image holds NaN or infinite values")
    return Preprocessing(input_shape=None if shape is None else tuple(shape), mean=mean,
                         std=std, mean_image=mean_image)


def load_predictor(
    checkpoint: str | os.PathLike | Checkpoint,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    strip_prefix: str | None = None,
    best: bool = False,
) -> LoadedModel:
    """Load a model for inference from a glasscnn checkpoint or a plain state_dict file.

    A glasscnn checkpoint (``glasscnn.checkpoint``) names its model, arguments, input shape
    and classes, and may hold a ``normalizer`` (mean/std) or ``mean_image`` group. A plain
    state_dict (``.npz``, ``.pth``/``.pt``, ``.safetensors``; torch files read without
    torch) needs ``model_name``; its preprocessing comes from ``RECIPES``, its class names
    from the data set the model is defined for, and ``classes_note`` says so.

    Args:
        checkpoint: the file, or a loaded ``Checkpoint``.
        model_name: zoo model; overrides the checkpoint's.
        model_kwargs: builder arguments, merged over the checkpoint's.
        strip_prefix: removed from every key first (e.g. ``module.``).
        best: load a training checkpoint's best-validation weights (its ``best`` group).

    Returns:
        A ``LoadedModel`` in evaluation mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, damaged or unsafe file (``CheckpointError``), no model
            name, unknown model arguments, non-finite weights, or weights that do not fit
            (``CheckpointMismatchError``, listing every key and shape); names the file.
    """
    if isinstance(checkpoint, Checkpoint):
        ckpt, source = checkpoint, "checkpoint"
    else:
        path = Path(checkpoint)
        source = str(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
        ckpt = _glasscnn_checkpoint(path)
        if ckpt is None:
            if best:
                raise ValueError(f"{path}: best=True needs a glasscnn training checkpoint")
            if model_name is None:
                raise ValueError(f"{path}: a plain state_dict names no model; pass --model "
                                 f"NAME (one of {', '.join(models.REGISTRY)})")
            kwargs = dict(model_kwargs or {})
            state_dict = _guarded(path, load_state_dict)
            model = build_zoo_model(model_name, kwargs, source)
            _fill(model, model_name, state_dict, source, strip_prefix)
            pre = recipe_preprocessing(model_name, kwargs)
            classes, note = _plain_classes(model_name, _num_outputs(model, pre.input_shape))
            return LoadedModel(model.eval(), model_name, pre, classes, source, kwargs, note)
    meta = ckpt.meta
    name = model_name or meta.get("model")
    if not name:
        raise ValueError(f"{source}: the checkpoint names no zoo model; pass --model NAME "
                         "(or, from Python, load_model(path, model=your_module))")
    kwargs = dict(meta.get("model_kwargs", {})) if name == meta.get("model") else {}
    kwargs.update(model_kwargs or {})
    if best and "best" not in ckpt.groups:
        raise ValueError(f"{source}: no best-validation weights (group 'best') in the "
                         "checkpoint; it was trained without a validation split")
    weights = ckpt.groups["best"] if best else ckpt.state_dict
    model = build_zoo_model(name, kwargs, source, None if strip_prefix else weights)
    _fill(model, name, weights, source, strip_prefix)
    pre = checkpoint_preprocessing(ckpt, name, kwargs, source)
    classes, note = _checkpoint_classes(meta, name, _num_outputs(model, pre.input_shape))
    return LoadedModel(model.eval(), name, pre, classes, source, kwargs, note)


def load_model(
    path: str | os.PathLike | Checkpoint,
    model: str | Module | None = None,
    *,
    weights: str = "last",
    model_kwargs: Mapping[str, Any] | None = None,
    strip_prefix: str | None = None,
) -> Module:
    """The network with its weights, in evaluation mode, ready for ``glasscnn.predict``.

    Reads any checkpoint ``glasscnn train`` writes (it names its model) or a plain
    state_dict file (``.npz``, ``.pth``/``.pt``, ``.safetensors``) with ``model``. The
    returned Module also has ``preprocessing`` (a ``Preprocessing``: input shape,
    normalisation), ``classes`` (one name per logit) and ``name`` attributes, which
    ``predict`` uses.

    Args:
        path: the file (or a loaded ``Checkpoint``).
        model: a zoo model name, or your own Module to fill with the weights (its
            architecture must fit them); default: the model the checkpoint names.
        weights: ``"last"`` (the last epoch's weights) or ``"best"`` (a training
            checkpoint's best-validation weights).
        model_kwargs: zoo builder arguments, merged over the checkpoint's.
        strip_prefix: removed from every key first (e.g. ``module.``).

    Returns:
        The Module, in evaluation mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: as ``load_predictor``; a ``weights`` other than last/best.
    """
    if weights not in ("last", "best"):
        raise ValueError(f"load_model: weights must be 'last' or 'best', got {weights!r}")
    if isinstance(model, Module):
        return _load_into_own(path, model, weights, strip_prefix)
    loaded = load_predictor(path, model, model_kwargs, strip_prefix, best=weights == "best")
    return attach(loaded)


def _load_into_own(path: str | os.PathLike | Checkpoint, model: Module, weights: str,
                   strip_prefix: str | None) -> Module:
    """Fill a caller's Module from a checkpoint (training or plain state_dict)."""
    source = "checkpoint" if isinstance(path, Checkpoint) else str(path)
    ckpt = path if isinstance(path, Checkpoint) else None
    if ckpt is None:
        file = Path(path)
        if not file.exists():
            raise FileNotFoundError(f"{file}: no such checkpoint file")
        ckpt = _glasscnn_checkpoint(file)
    name = type(model).__name__
    if ckpt is None:
        if weights == "best":
            raise ValueError(f"{source}: weights='best' needs a glasscnn training checkpoint")
        _fill(model, name, _guarded(Path(path), load_state_dict), source, strip_prefix)
        return attach(LoadedModel(model.eval(), name, Preprocessing(), (), source))
    if weights == "best" and "best" not in ckpt.groups:
        raise ValueError(f"{source}: no best-validation weights (group 'best') in the checkpoint")
    _fill(model, name, ckpt.groups["best"] if weights == "best" else ckpt.state_dict, source,
          strip_prefix)
    saved = ckpt.meta.get("model") or ""
    pre = checkpoint_preprocessing(ckpt, saved, ckpt.meta.get("model_kwargs", {}), source)
    classes, note = _checkpoint_classes(ckpt.meta, saved, _num_outputs(model, pre.input_shape))
    return attach(LoadedModel(model.eval(), saved or name, pre, classes, source, {}, note))


def attach(loaded: LoadedModel) -> Module:
    """Give ``loaded.model`` the ``preprocessing``, ``classes``, ``name`` and ``source``
    attributes ``predict`` reads, and return it."""
    net = loaded.model
    for key in ("preprocessing", "classes", "source", "classes_note"):
        object.__setattr__(net, key, getattr(loaded, key))
    if loaded.name and not getattr(net, "name", ""):
        with contextlib.suppress(AttributeError):  # a read-only ``name`` keeps its own
            object.__setattr__(net, "name", loaded.name)
    return net
