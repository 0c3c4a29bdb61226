"""Inference on real pictures: load a model with its preprocessing, predict, draw the result.

``load_model(path)`` gives the network with its weights, in evaluation mode, from a
``glasscnn train`` checkpoint or a plain state_dict file; ``predict(model, images)`` takes
it (or a ``Checkpoint``, a ``LoadedModel``, a checkpoint path) and pictures as files, a
folder, PIL images or arrays. A file goes through ``glasscnn.data.transforms.load_image``
(Pillow: convert to grey or RGB as ``glasscnn.data.images`` describes, resize to the
model's input with Lanczos, /255, HWC → CHW), then through the normalisation stored with
the checkpoint (``normalizer`` or ``mean_image`` array group) or given by the caller.

A plain state_dict file (``.npz``, ``.pth``/``.pt``, ``.safetensors``) carries no metadata:
``load_predictor(path, model_name=...)`` then takes the model's recipe from ``RECIPES``
(``alexnet_cifar33`` reads RGB 33×33 with Lanczos, /255, as its course lab, and names the
CIFAR-10 classes; the result says when class names are such an assumption).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn.checkpoint import Checkpoint, atomic_write
from glasscnn.data.images import IMAGE_SUFFIXES
from glasscnn.loading import (
    MAX_INPUT_SIDE,
    RECIPES,
    LoadedModel,
    Preprocessing,
    _class_names,
    _num_outputs,
    attach,
    load_model,
    load_predictor,
    picture_channels,
    read_checkpoint,
    recipe_preprocessing,
)
from glasscnn.nn import Module

__all__ = [
    "MAX_INPUT_SIDE", "RECIPES", "LoadedModel", "Prediction", "Predictions", "Preprocessing",
    "attach", "image_files", "load_model", "load_predictor", "output_file", "picture_channels",
    "plot_predictions", "predict", "read_checkpoint", "recipe_preprocessing", "softmax",
    "with_overrides",
]

SHOWN = 16
"""Pictures kept as thumbnails for a notebook's display of ``Predictions``."""


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
        thumbnail: (H, W, C) uint8 of the picture, kept for the first pictures of a call
            so that a notebook can show them (``_repr_html_``).
    """

    source: str
    index: int
    label: str
    probability: float
    topk: list[tuple[str, float]]
    picture: np.ndarray | None = field(default=None, repr=False)
    thumbnail: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        ranked = ", ".join(f"{c} {q:.3f}" for c, q in self.topk[:3])
        return f"Prediction({self.source}: {self.label} {self.probability:.1%}; top {ranked})"

    def _repr_html_(self) -> str:
        return _html_table([self])


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

    def __repr__(self) -> str:
        lines = [f"Predictions: {len(self.items)} picture{'s' * (len(self.items) != 1)}, "
                 f"{len(self.classes)} classes"
                 + (f", {len(self.errors)} unreadable" if self.errors else "")]
        lines += [f"  {p.source}: {p.label} {p.probability:.1%}" for p in self.items[:10]]
        if len(self.items) > 10:
            lines.append(f"  … {len(self.items) - 10} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        shown = self.items[:SHOWN]
        more = len(self.items) - len(shown)
        note = f"<p>first {len(shown)} of {len(self.items)} pictures</p>" if more else ""
        errors = "".join(f"<p>unreadable: {html.escape(s)}: {html.escape(m)}</p>"
                         for s, m in self.errors[:5])
        return _html_table(shown) + note + errors

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


def _png_data_uri(thumbnail: np.ndarray) -> str:
    """An (H, W, C) uint8 picture as a ``data:image/png;base64,…`` URI."""
    from glasscnn.data.images import require_pillow

    pixels = thumbnail[:, :, 0] if thumbnail.shape[2] == 1 else thumbnail
    buf = io.BytesIO()
    require_pillow().fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(items: Sequence[Prediction]) -> str:
    """An HTML table: each picture (a thumbnail, when kept), its name and its top-k bars."""
    rows = []
    for p in items:
        if p.thumbnail is not None:
            h, w = p.thumbnail.shape[:2]
            scale = max(1, 64 // max(h, w))
            img = (f'<img src="{_png_data_uri(p.thumbnail)}" width="{w * scale}" '
                   f'height="{h * scale}" style="image-rendering: pixelated">')
        else:
            img = ""
        bars = "".join(
            f'<div style="white-space:nowrap"><span style="display:inline-block;'
            f'width:{max(1, round(120 * q))}px;height:0.8em;background:'
            f'{"#d62728" if i == 0 else "#1f77b4"}"></span> {html.escape(c)} {q:.3f}</div>'
            for i, (c, q) in enumerate(p.topk))
        rows.append(f"<tr><td>{img}</td><td>{html.escape(Path(p.source).name)}</td>"
                    f"<td style='text-align:left'>{bars}</td></tr>")
    return ("<table><tr><th>picture</th><th>source</th><th>top classes</th></tr>"
            + "".join(rows) + "</table>")


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
        return LoadedModel(model, model_name or getattr(model, "name", "") or "",
                           getattr(model, "preprocessing", None) or Preprocessing(),
                           tuple(getattr(model, "classes", ()) or ()),
                           getattr(model, "source", ""))
    return load_predictor(model, model_name, model_kwargs)


def _is_picture(item: Any) -> bool:
    return hasattr(item, "getbands") and hasattr(item, "mode")


def _array_item(item: np.ndarray, pre: Preprocessing, i: int) -> Any:
    """One picture given as an array: (C, H, W) at the model's shape, else (H, W, C) or
    (H, W); uint8 ones of another size become PIL pictures (resized and converted)."""
    shape = pre.input_shape
    if item.ndim == 3 and (shape is None or item.shape == shape):
        return pre.check_arrays(item)[0]
    hwc = item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))
    if not hwc:
        raise ValueError(f"predict: picture #{i} is an array of shape {item.shape}; give "
                         f"(C, H, W) = {shape} or a picture (H, W, C) with 1, 3 or 4 channels")
    if item.dtype == np.uint8:
        from glasscnn.data.images import require_pillow

        pixels = item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item
        return require_pillow().fromarray(np.ascontiguousarray(pixels))
    chw = item[None] if item.ndim == 2 else item.transpose(2, 0, 1)
    return pre.check_arrays(chw)[0]


def _sources(images: Any, pre: Preprocessing) -> list[tuple[str, Any]]:
    """``(name, item)`` pairs; item is a Path, a PIL image or a checked (C, H, W) array."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batch = pre.check_arrays(images)  # (N, C, H, W)
            return [(f"#{j}", batch[j]) for j in range(batch.shape[0])]
        return [("#0", _array_item(images, pre, 0))]
    if isinstance(images, str | os.PathLike) or _is_picture(images):
        images = [images]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(images):
        if isinstance(item, str | os.PathLike):
            files, _ = image_files(item)
            out += [(str(f), f) for f in files]
        elif isinstance(item, np.ndarray):
            out.append((f"#{i}", _array_item(item, pre, i)))
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
        model: a Module (from ``load_model``, which knows its preprocessing and classes;
            another Module needs ``preprocessing`` to read files), a ``Checkpoint``, a
            ``LoadedModel`` or a checkpoint path (see ``load_predictor``).
        images: a picture file or folder, a PIL image, a list of files/folders/PIL
            images/arrays, an array (N, C, H, W) or (C, H, W) already at the model's size,
            or a picture array (H, W, C) or (H, W). uint8 pixels are divided by the
            preprocessing's divisor, float ones taken as scaled; a uint8 picture array of
            another size is resized like a picture file.
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
            arrays, a bad checkpoint; the message names the file. ValueError also when the
            model gives NaN or infinite logits (broken weights), naming the pictures.
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
            bad = ~np.isfinite(logits).all(axis=1)
            if bad.any():
                where = loaded.source or "the model"
                raise ValueError(
                    f"predict: {where} gives NaN or infinite logits for "
                    f"{', '.join(n for n, b in zip(batch_names, bad, strict=True) if b)}: its "
                    "weights or batch-norm statistics are broken (NaN, infinite, or a "
                    "negative variance); no prediction is made")
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
                    _thumbnail(pictures[i]) if len(items) < SHOWN else None,
                ))
    finally:
        net.train(was_training)
    k = len(names)
    logits_all = (np.concatenate(logits_parts) if logits_parts
                  else np.zeros((0, k), dtype=dtype))
    return Predictions(items, logits_all, names, errors, pre)


def _thumbnail(picture: np.ndarray) -> np.ndarray:
    """(C, H, W) before normalisation → (H, W, C) uint8 (values above 1 taken as 0..255)."""
    img = picture.transpose(1, 2, 0).astype(np.float32)  # (H, W, C)
    img = img / 255 if img.max() > 1 else img
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


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
        path: the PNG to write, exactly there (folders are created); an existing folder
            (or a path ending in a separator) gets ``predictions.png`` inside.
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
    out = output_file(path, "predictions.png")
    atomic_write(out, lambda fh: fig.savefig(fh, format="png"))
    return out


def output_file(path: str | os.PathLike, default_name: str) -> Path:
    """Where to write a file the user named: ``path``, or ``path/default_name`` when
    ``path`` is an existing folder or ends in a path separator."""
    text = os.fspath(path)
    out = Path(text)
    if out.is_dir() or text.endswith((os.sep, "/")):
        return out / default_name
    return out
