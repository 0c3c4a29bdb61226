"""Inference on real pictures: load a model with its preprocessing, predict, draw the result.

``predict(model, images)`` takes a Module, a ``Checkpoint``, a ``LoadedModel`` or a
checkpoint path, and pictures as files, a folder, PIL images or arrays. A file goes through
``glasscnn.data.transforms.load_image`` (Pillow: convert to grey or RGB, resize to the
model's input with Lanczos, /255, HWC → CHW), then through the normalisation stored with
the checkpoint (``normalizer`` or ``mean_image`` array group) or given by the caller.

A plain state_dict file (``.npz``, ``.pth``/``.pt``, ``.safetensors``) carries no metadata:
``load_model(path, model_name=...)`` then takes the model's recipe from ``RECIPES``
(``alexnet_cifar33`` reads RGB 33×33 with Lanczos, /255, CIFAR-10 names, as its course lab).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.checkpoint import Checkpoint, load_checkpoint
from glasscnn.data.cifar import CLASSES as CIFAR10_CLASSES
from glasscnn.data.datasets import SPECS
from glasscnn.data.images import IMAGE_SUFFIXES, require_pillow
from glasscnn.data.transforms import MeanImage, Normalizer, load_image
from glasscnn.io import CheckpointMismatchError, format_of, load_into, load_state_dict
from glasscnn.kernels._common import pair
from glasscnn.nn import Linear, Module

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECIPES: dict[str, dict[str, Any]] = {
    "alexnet_cifar33": {"classes": CIFAR10_CLASSES},
    "mnist_net": {"mean": (0.5,), "std": (0.5,), "classes": SPECS["mnist"].classes},
    "three_layer_convnet": {"classes": CIFAR10_CLASSES},
    "lenet_bn": {"classes": CIFAR10_CLASSES},
    "vgg_cifar": {"mean": (0.5,), "std": (0.5,), "classes": CIFAR10_CLASSES},
    "alexnet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "resnet_cifar": {"classes": CIFAR10_CLASSES},
}
"""Preprocessing of a plain state_dict, by zoo model: every recipe resizes to the model's
input with Lanczos and divides by 255; ``mean``/``std`` (the courses' (x − 0.5)/0.5, ImageNet's
for ``alexnet``) normalise after that; ``classes`` name the logits when their count fits."""

_PICTURE_MODES = {1: "L", 3: "RGB"}


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
    """

    model: Module
    name: str = ""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    classes: tuple[str, ...] = ()
    source: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)


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


def _is_glasscnn_checkpoint(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "meta.json" in npz.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


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


def load_model(
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
    torch) needs ``model_name``; its preprocessing and classes come from ``RECIPES``.

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
        ValueError: unreadable or unsafe file, no model name, or weights that do not fit
            (``CheckpointMismatchError``, listing every key and shape); names the file.
    """
    if isinstance(checkpoint, Checkpoint):
        ckpt, source = checkpoint, "checkpoint"
    else:
        path = Path(checkpoint)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        fmt = format_of(path)
        ckpt = load_checkpoint(path) if fmt == "npz" and _is_glasscnn_checkpoint(path) else None
        if ckpt is None:
            if best:
                raise ValueError(f"{path}: best=True needs a glasscnn training checkpoint")
            if model_name is None:
                raise ValueError(f"{path}: a plain state_dict names no model; pass --model "
                                 f"NAME (one of {', '.join(models.REGISTRY)})")
            kwargs = dict(model_kwargs or {})
            model = models.get(model_name, **kwargs)
            _fill(model, model_name, load_state_dict(path), source, strip_prefix)
            pre = recipe_preprocessing(model_name, kwargs)
            count = _num_outputs(model, pre.input_shape)
            classes = _class_names(None, RECIPES.get(model_name, {}).get("classes"), count)
            return LoadedModel(model.eval(), model_name, pre, classes, source, kwargs)
    meta = ckpt.meta
    name = model_name or meta.get("model")
    if name is None:
        raise ValueError(f"{source}: the checkpoint names no model; pass --model NAME")
    kwargs = dict(meta.get("model_kwargs", {})) if name == meta.get("model") else {}
    kwargs.update(model_kwargs or {})
    model = models.get(name, **kwargs)
    if best and "best" not in ckpt.groups:
        raise ValueError(f"{source}: no best-validation weights (group 'best') in the "
                         "checkpoint; it was trained without a validation split")
    _fill(model, name, ckpt.groups["best"] if best else ckpt.state_dict, source, strip_prefix)
    pre = recipe_preprocessing(name, kwargs)
    mean = std = mean_image = None
    if "normalizer" in ckpt.groups:
        norm = Normalizer.from_state_dict(ckpt.groups["normalizer"])
        mean, std = tuple(norm.mean.tolist()), tuple(norm.std.tolist())
    if "mean_image" in ckpt.groups:
        mean_image = MeanImage.from_state_dict(ckpt.groups["mean_image"]).mean
    shape = (meta.get("input_shape") if name == meta.get("model") else None) or pre.input_shape
    pre = Preprocessing(input_shape=tuple(shape), mean=mean, std=std, mean_image=mean_image)
    count = _num_outputs(model, pre.input_shape)
    classes = _class_names(None, meta.get("classes"), count)
    return LoadedModel(model.eval(), name, pre, classes, source, kwargs)


@dataclass
class Prediction:
    """One picture's result.

    Attributes:
        source: the file name, or ``#i`` for the i-th array / PIL image.
        index: the predicted class (argmax of the logits).
        label: its name.
        probability: its softmax probability.
        topk: ``(class name, probability)`` of the most likely classes, best first.
        picture: (C, H, W) as the network saw it before normalisation (``keep_pictures``).
    """

    source: str
    index: int
    label: str
    probability: float
    topk: list[tuple[str, float]]
    picture: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Predictions:
    """All results of one ``predict`` call; iterating gives the ``Prediction`` items.

    Attributes:
        items: one ``Prediction`` per picture that was read, in input order.
        logits: (N, K) float32, row i belongs to ``items[i]``.
        classes: the K class names.
        errors: ``(source, message)`` of the pictures that could not be read
            (``on_error="skip"``).
        preprocessing: what was applied.
    """

    items: list[Prediction]
    logits: np.ndarray
    classes: tuple[str, ...]
    errors: list[tuple[str, str]] = field(default_factory=list)
    preprocessing: Preprocessing | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Prediction:
        return self.items[index]

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 predicted class indices."""
        return np.array([p.index for p in self.items], dtype=np.int64)

    @property
    def probs(self) -> np.ndarray:
        """(N, K) float64 softmax of the logits."""
        return softmax(self.logits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: predictions with their top-k, errors, classes and preprocessing."""
        return {
            "predictions": [
                {"file": p.source, "index": p.index, "class": p.label,
                 "probability": p.probability,
                 "topk": [{"class": c, "probability": q} for c, q in p.topk]}
                for p in self.items
            ],
            "errors": [{"file": s, "error": m} for s, m in self.errors],
            "classes": list(self.classes),
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits in float64, max-subtracted for stability."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def image_files(paths: str | os.PathLike | Iterable[str | os.PathLike]
                ) -> tuple[list[Path], list[Path]]:
    """Expand files and folders into picture files.

    A folder contributes every file below it (recursively, sorted) whose suffix is a picture
    suffix (``.png``, ``.jpg``, …); a file named directly is always kept.

    Returns:
        (pictures to read, files in folders skipped for their suffix).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: list[Path] = []
    skipped: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in f.relative_to(path).parts):
                    continue
                (files if f.suffix.lower() in IMAGE_SUFFIXES else skipped).append(f)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files, skipped


def _as_loaded(model: Module | Checkpoint | LoadedModel | str | os.PathLike,
               model_name: str | None, model_kwargs: Mapping[str, Any] | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, Module):
        return LoadedModel(model, model_name or "")
    return load_model(model, model_name, model_kwargs)


def _sources(images: Any, pre: Preprocessing) -> list[tuple[str, Any]]:
    """``(name, item)`` pairs; item is a Path, a PIL image or a checked (C, H, W) array."""
    if isinstance(images, np.ndarray):
        batch = pre.check_arrays(images)  # (N, C, H, W)
        return [(f"#{j}", batch[j]) for j in range(batch.shape[0])]
    if isinstance(images, str | os.PathLike):
        images = [images]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(images):
        if isinstance(item, str | os.PathLike):
            files, _ = image_files(item)
            out += [(str(f), f) for f in files]
        elif isinstance(item, np.ndarray):
            if item.ndim != 3:
                raise ValueError(f"predict: item #{i} of the list is an array of shape "
                                 f"{item.shape}; list items are single (C, H, W) pictures")
            out.append((f"#{i}", pre.check_arrays(item)[0]))
        else:
            out.append((f"#{i}", item))
    return out


def _pictures(sources: list[tuple[str, Any]], pre: Preprocessing, batch_size: int,
              errors: list[tuple[str, str]] | None) -> Iterator[tuple[list[str], np.ndarray]]:
    """Batches ``(names, (B, C, H, W) float32 before normalisation)`` of at most batch_size.

    With ``errors`` given, an unreadable picture is recorded there and skipped.
    """
    names: list[str] = []
    pictures: list[np.ndarray] = []
    for name, item in sources:
        if isinstance(item, np.ndarray):
            pictures.append(item)
        else:
            try:
                pictures.append(pre.read(item))
            except (ValueError, FileNotFoundError) as err:
                if errors is None:
                    raise
                errors.append((name, str(err)))
                continue
        names.append(name)
        if len(pictures) == batch_size:
            yield names, np.stack(pictures)
            names, pictures = [], []
    if pictures:
        yield names, np.stack(pictures)


def predict(
    model: Module | Checkpoint | LoadedModel | str | os.PathLike,
    images: Any,
    topk: int = 5,
    classes: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    on_error: str = "raise",
    keep_pictures: bool = False,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Predictions:
    """Classify pictures: read, preprocess, run the model in batches, rank the classes.

    Args:
        model: a Module (then pass ``preprocessing`` to read files), a ``Checkpoint``, a
            ``LoadedModel`` or a checkpoint path (see ``load_model``).
        images: a picture file or folder, a list of files/folders/PIL images/arrays, or an
            array (N, C, H, W) or (C, H, W) already at the model's size (uint8 pixels are
            divided by the preprocessing's divisor, float ones taken as scaled).
        topk: how many classes each ``Prediction.topk`` lists.
        classes: class names, overriding the checkpoint's.
        preprocessing: overrides the model's own preprocessing.
        batch_size: pictures per forward pass.
        on_error: ``"raise"`` stops at the first unreadable picture; ``"skip"`` records it in
            ``Predictions.errors`` and goes on.
        keep_pictures: keep each (C, H, W) picture for ``plot_predictions``.
        model_name, model_kwargs: for a plain state_dict path (see ``load_model``).

    Returns:
        ``Predictions``: items with top-k, logits (N, K), classes, errors.

    Raises:
        FileNotFoundError, ValueError: a missing or bad picture (``on_error="raise"``), bad
            arrays, a bad checkpoint; the message names the file.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"predict: on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size <= 0 or topk <= 0:
        raise ValueError(f"predict: batch_size and topk must be > 0, got {batch_size}, {topk}")
    loaded = _as_loaded(model, model_name, model_kwargs)
    pre = preprocessing if preprocessing is not None else loaded.preprocessing
    net = loaded.model
    params = net.parameters()
    dtype = params[0].data.dtype if params else np.float32
    errors: list[tuple[str, str]] = []
    items: list[Prediction] = []
    logits_parts: list[np.ndarray] = []
    names = _class_names(classes, loaded.classes or None, _num_outputs(net, pre.input_shape))
    was_training = net.training
    net.eval()
    try:
        for batch_names, pictures in _pictures(_sources(images, pre), pre, batch_size,
                                               errors if on_error == "skip" else None):
            logits = net(pre.normalize(pictures).astype(dtype, copy=False))  # (B, K)
            if logits.ndim != 2:
                raise ValueError(f"predict: the model gave outputs of shape {logits.shape}, "
                                 "expected (N, K) logits")
            if len(names) != logits.shape[1]:
                names = _class_names(classes, loaded.classes or None, logits.shape[1])
            logits_parts.append(logits)
            probs = softmax(logits)
            for i, source in enumerate(batch_names):
                order = np.argsort(-probs[i], kind="stable")[:topk]
                best = int(np.argmax(logits[i]))
                items.append(Prediction(
                    source, best, names[best], float(probs[i, best]),
                    [(names[j], float(probs[i, j])) for j in order],
                    pictures[i].copy() if keep_pictures else None,
                ))
    finally:
        net.train(was_training)
    k = len(names)
    logits_all = (np.concatenate(logits_parts) if logits_parts
                  else np.zeros((0, k), dtype=dtype))
    return Predictions(items, logits_all, names, errors, pre)


def with_overrides(pre: Preprocessing, **changes: Any) -> Preprocessing:
    """A copy of ``pre`` with the given fields replaced; None values are ignored."""
    return dataclasses.replace(pre, **{k: v for k, v in changes.items() if v is not None})


def _pyplot_free_figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("glasscnn predict --show needs matplotlib: pip install "
                          "'glasscnn[viz]' (or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_predictions(predictions: Predictions, path: str | os.PathLike,
                     max_images: int = 16) -> Path:
    """Write a PNG: for each picture (up to ``max_images``), the picture and its top-k bars.

    Needs matplotlib (imported here) and ``predict(..., keep_pictures=True)``. Pictures
    are drawn before normalisation; values above 1 are taken as 0..255 pixels.

    Args:
        predictions: the result of ``predict``.
        path: the PNG to write (folders are created).
        max_images: rows drawn; the title says how many were left out.

    Returns:
        The path written.
    """
    shown = predictions.items[:max_images]
    if not shown:
        raise ValueError("plot_predictions: no predictions to draw")
    if any(p.picture is None for p in shown):
        raise ValueError("plot_predictions: pictures were not kept; call predict(..., "
                         "keep_pictures=True)")
    k = max(len(p.topk) for p in shown)
    row_h = max(1.7, 0.26 * k + 0.8)
    fig = _pyplot_free_figure(7.5, row_h * len(shown) + 0.5)
    grid = fig.add_gridspec(len(shown), 2, width_ratios=[1, 2.6])
    for row, pred in enumerate(shown):
        ax_img = fig.add_subplot(grid[row, 0])
        img = pred.picture.transpose(1, 2, 0)  # (H, W, C)
        img = np.clip(img / 255 if img.max() > 1 else img, 0, 1)
        if img.shape[2] == 1:
            ax_img.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax_img.imshow(img, interpolation="nearest")
        ax_img.set_axis_off()
        ax_img.set_title(Path(pred.source).name if not pred.source.startswith("#")
                         else pred.source, fontsize=8)
        ax = fig.add_subplot(grid[row, 1])
        labels = [c for c, _ in pred.topk]
        values = [q for _, q in pred.topk]
        ys = list(range(len(labels)))
        ax.barh(ys, values, color=["#d62728"] + ["#1f77b4"] * (len(ys) - 1))
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_xlim(0, 1.18)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        for y, q in zip(ys, values, strict=True):
            ax.text(q + 0.01, y, f"{q:.3f}", va="center", fontsize=7.5)
        ax.set_title(f"{pred.label} ({pred.probability:.1%})", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    left_out = len(predictions.items) - len(shown)
    if left_out:
        fig.suptitle(f"first {len(shown)} of {len(predictions.items)} pictures", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
