"""The inside of a trained network as pictures: first-layer filters, feature maps, probabilities.

Reads a checkpoint (``glasscnn.checkpoint``), and for a picture runs the CIFAR inference lab's
single-image pipeline of ``glasscnn.data.transforms.load_image`` (resize with Lanczos to the
model's input, /255, CHW, batch axis), then the checkpoint's normalizer if it has one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.analysis.plots import _figure, _save
from glasscnn.checkpoint import Checkpoint, load_checkpoint
from glasscnn.nn import Conv2d, Module


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _unit(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own min and max (a constant array becomes 0.5)."""
    a = a.astype(np.float64)
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi == lo else (a - lo) / (hi - lo)


def first_conv(model: Module) -> tuple[str, Conv2d]:
    """``(name, layer)`` of the first ``Conv2d`` in ``model``; ValueError when there is none."""
    for name, m in model.named_modules():
        if isinstance(m, Conv2d):
            return name, m
    raise ValueError(f"inspect: {type(model).__name__} has no Conv2d layer to show")


def plot_filters(name: str, conv: Conv2d, path: str | os.PathLike) -> Path:
    """Grid of a conv layer's filters, each scaled to its own min–max.

    Three input channels are shown as RGB; one as grey; otherwise the mean over input
    channels, in grey.
    """
    w = conv.weight.data  # (C_out, C_in, kH, kW)
    c_out, c_in, kh, kw = w.shape
    rows, cols = _grid(c_out)
    cell = max(0.45, min(1.2, 6.0 / cols))
    fig = _figure(max(4.5, cols * cell + 0.4), rows * cell + 0.9)
    for i in range(c_out):
        ax = fig.add_subplot(rows, cols, i + 1)
        if c_in == 3:
            ax.imshow(_unit(w[i].transpose(1, 2, 0)), interpolation="nearest")
        else:
            img = w[i, 0] if c_in == 1 else w[i].mean(axis=0)
            ax.imshow(_unit(img), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_axis_off()
    how = {3: "as RGB", 1: "grey"}.get(c_in, f"mean over {c_in} input channels")
    fig.suptitle(f"{name}: {c_out} filters {c_in}×{kh}×{kw}\n({how}, each scaled to its own "
                 "range)", fontsize=9)
    return _save(fig, path)


def plot_feature_maps(name: str, maps: np.ndarray, path: str | os.PathLike,
                      max_maps: int = 32) -> Path:
    """Grid of the first ``max_maps`` channels of one image's (C, H, W) feature maps."""
    c, h, w = maps.shape
    n = min(c, max_maps)
    rows, cols = _grid(n)
    cell = max(0.8, min(1.6, 9.0 / cols))
    fig = _figure(max(4.5, cols * cell + 0.4), rows * cell + 0.9)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_unit(maps[i]), cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(str(i), fontsize=6, pad=1)
        ax.set_axis_off()
    shown = f"first {n} of {c} channels" if n < c else f"all {c} channels"
    fig.suptitle(f"{name} output {c}×{h}×{w}\n({shown}, each scaled to its own range)",
                 fontsize=9)
    return _save(fig, path)


def plot_probabilities(picture: np.ndarray, classes: list[str], probs: np.ndarray,
                       path: str | os.PathLike, top: int = 10) -> Path:
    """The input picture next to the class probabilities (the ``top`` most likely).

    Args:
        picture: (C, H, W) in [0, 1], as the network saw it before normalisation.
        classes: class names, one per probability.
        probs: (num_classes,) softmax output.
        path: the PNG to write.
        top: how many classes to show.
    """
    order = np.argsort(probs)[::-1][:top]
    fig = _figure(9, max(3.2, 0.3 * len(order) + 1.4))
    ax_img = fig.add_subplot(1, 3, 1)
    img = picture.transpose(1, 2, 0)
    if img.shape[2] == 1:
        ax_img.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax_img.imshow(np.clip(img, 0, 1), interpolation="nearest")
    ax_img.set_axis_off()
    ax_img.set_title(f"input {'x'.join(map(str, picture.shape[1:]))}", fontsize=9)
    ax = fig.add_subplot(1, 3, (2, 3))
    ys = list(range(len(order)))
    colors = ["#d62728" if i == 0 else "#1f77b4" for i in ys]
    ax.barh(ys, probs[order], color=colors)
    ax.set_yticks(ys, [classes[i] for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    for y, p in zip(ys, probs[order], strict=True):
        ax.text(p + 0.01, y, f"{p:.3f}", va="center", fontsize=8)
    ax.set_xlabel("probability (softmax of the logits)")
    ax.set_title(f"prediction: {classes[order[0]]} ({probs[order[0]]:.1%})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def prepare_image(checkpoint: Checkpoint, image: str | os.PathLike,
                  input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``image`` as the checkpoint's network expects it.

    Args:
        checkpoint: its ``normalizer`` or ``mean_image`` array group, if any, is applied.
        image: a PNG/JPEG path.
        input_shape: (C, H, W): C = 1 reads grey, 3 reads RGB; the picture is resized to H×W.

    Returns:
        (network input (1, C, H, W) float32, the picture (C, H, W) in [0, 1]).
    """
    from glasscnn.data.transforms import MeanImage, Normalizer, load_image

    c, h, w = input_shape
    if c not in (1, 3):
        raise ValueError(f"inspect: pictures have 1 or 3 channels; the model takes {c}")
    x = load_image(image, "L" if c == 1 else "RGB", (h, w))  # (1, C, H, W) in [0, 1]
    picture = x[0].copy()
    if "normalizer" in checkpoint.groups:
        x = Normalizer.from_state_dict(checkpoint.groups["normalizer"])(x)
    if "mean_image" in checkpoint.groups:
        x = MeanImage.from_state_dict(checkpoint.groups["mean_image"])(x)
    return x, picture


def _conv_outputs(model: Module, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``model`` on ``x`` keeping every Conv2d's output."""
    outputs: dict[str, np.ndarray] = {}
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2d)]

    def keep(name: str, fn: Any) -> Any:
        def run(arg: np.ndarray) -> np.ndarray:
            out = fn(arg)
            outputs[name] = out
            return out
        return run

    try:
        for name, m in convs:
            object.__setattr__(m, "forward", keep(name, m.forward))
        logits = model(x)
    finally:
        for _, m in convs:
            m.__dict__.pop("forward", None)
    return logits, outputs


def inspect_checkpoint(checkpoint: str | os.PathLike | Checkpoint,
                       image: str | os.PathLike | None = None,
                       out_dir: str | os.PathLike = "inspect", max_maps: int = 32,
                       top: int = 10) -> dict[str, Any]:
    """Draw the first conv layer's filters and, given a picture, feature maps and probabilities.

    Args:
        checkpoint: a checkpoint file or a loaded ``Checkpoint`` (its ``meta`` names the
            zoo model; ``input_shape`` and ``classes`` are used when present).
        image: a PNG/JPEG to classify, or None for the filters only.
        out_dir: folder for ``filters.png``, ``features_<layer>.png``, ``probabilities.png``.
        max_maps: channels shown per feature-map grid.
        top: classes shown in the probability chart.

    Returns:
        ``{"filters": path, "feature_maps": [paths], "probabilities": path or None,
        "prediction": class name or None, "probs": {class: probability}}``.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    model = ckpt.build_model()
    out = Path(out_dir)
    name, conv = first_conv(model)
    result: dict[str, Any] = {"filters": plot_filters(name, conv, out / "filters.png"),
                              "feature_maps": [], "probabilities": None, "prediction": None,
                              "probs": {}}
    if image is None:
        return result
    shape = tuple(ckpt.meta.get("input_shape") or models.default_input_shape(ckpt.meta["model"]))
    x, picture = prepare_image(ckpt, image, shape)
    dtype = next(iter(model.parameters())).data.dtype
    logits, maps = _conv_outputs(model, x.astype(dtype))
    z = logits[0].astype(np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    classes = list(ckpt.meta.get("classes") or [str(i) for i in range(probs.size)])
    if len(classes) != probs.size:
        raise ValueError(f"inspect: the checkpoint names {len(classes)} classes but the model "
                         f"gives {probs.size} logits")
    for layer, fmap in maps.items():
        path = out / f"features_{layer.replace('.', '_')}.png"
        result["feature_maps"].append(plot_feature_maps(layer, fmap[0], path, max_maps))
    result["probabilities"] = plot_probabilities(picture, classes, probs,
                                                 out / "probabilities.png", top)
    result["prediction"] = classes[int(np.argmax(probs))]
    result["probs"] = {c: float(p) for c, p in zip(classes, probs, strict=True)}
    return result
