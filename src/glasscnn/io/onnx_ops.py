"""ONNX nodes for the layers beyond the course networks (used by ``onnx_export``):

=====================  =========================================================
glasscnn               ONNX
=====================  =========================================================
Tanh, LeakyReLU        Tanh, LeakyRelu (alpha = negative_slope)
ReLU6                  Clip(0, 6)
Hardswish              x · HardSigmoid(alpha 1/6, beta 1/2)
SiLU                   x · Sigmoid(x)
GELU                   x · (1 + Erf(x / √2)) / 2
Softmax, LogSoftmax    Softmax, LogSoftmax (axis = dim)
MaxPool1d, AvgPool1d   MaxPool, AveragePool on (N, C, L)
AdaptiveMaxPool2d      GlobalMaxPool for 1×1; MaxPool with kernel = stride = H / out
                       when the input divides evenly; else an error
LayerNorm              LayerNormalization (opset >= 17)
GroupNorm              Reshape to (N, G, −1), LayerNormalization over the group,
                       Reshape back, per-channel Mul and Add (opset >= 17)
Identity               nothing
Concat                 each branch, then Concat (axis = dim)
=====================  =========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from glasscnn.nn import (
    GELU,
    AdaptiveMaxPool2d,
    AvgPool1d,
    Concat,
    GroupNorm,
    Hardswish,
    Identity,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    MaxPool1d,
    Module,
    ReLU6,
    SiLU,
    Softmax,
    Tanh,
)

Shape = tuple[int, ...]
SUPPORTED = ("Tanh, LeakyReLU, ReLU6, Hardswish, SiLU, GELU, Softmax, LogSoftmax, MaxPool1d, "
             "AvgPool1d, AdaptiveMaxPool2d, LayerNorm, GroupNorm, Identity, Concat")


def emit(g: Any, module: Module, name: str, dot: str, x: str, shape: Shape, opset: int,
         emit_child: Callable[..., tuple[str, Shape]]) -> str | None:
    """Add ``module``'s nodes after tensor ``x``; return the output's name, or ``None`` when
    this table has no mapping for the module's type.

    Args:
        g: the export's graph builder (``node``, ``weight``).
        module: the layer; name: its node name; dot: its state_dict prefix with a dot.
        x: the input tensor's name; shape: its shape (batch 1).
        opset: the ONNX opset of the export.
        emit_child: the exporter's own walk, ``(g, module, prefix, x, shape)``, for branches.
    """
    if isinstance(module, Identity):
        return x
    if isinstance(module, Tanh):
        return g.node("Tanh", [x], name)
    if isinstance(module, LeakyReLU):
        return g.node("LeakyRelu", [x], name, alpha=module.negative_slope)
    if isinstance(module, ReLU6):
        bounds = [g.weight(dot + "min", np.array(0.0)), g.weight(dot + "max", np.array(6.0))]
        return g.node("Clip", [x, *bounds], name)
    if isinstance(module, Hardswish):
        gate = g.node("HardSigmoid", [x], name + ".gate", alpha=1 / 6, beta=0.5)
        return g.node("Mul", [x, gate], name)
    if isinstance(module, SiLU):
        return g.node("Mul", [x, g.node("Sigmoid", [x], name + ".sigmoid")], name)
    if isinstance(module, GELU):
        scaled = g.node("Mul", [x, g.weight(dot + "sqrt_half", np.array(math.sqrt(0.5)))],
                        name + ".scale")
        erf = g.node("Erf", [scaled], name + ".erf")
        one_plus = g.node("Add", [erf, g.weight(dot + "one", np.array(1.0))], name + ".add")
        half = g.node("Mul", [one_plus, g.weight(dot + "half", np.array(0.5))], name + ".half")
        return g.node("Mul", [x, half], name)
    if isinstance(module, Softmax | LogSoftmax):
        dim = module.dim if module.dim is not None else (0 if len(shape) in (0, 1, 3) else 1)
        return g.node(type(module).__name__, [x], name, axis=dim)
    if isinstance(module, MaxPool1d):
        return g.node("MaxPool", [x], name, kernel_shape=[module.kernel_size],
                      strides=[module.stride], pads=[module.padding] * 2,
                      dilations=[module.dilation], ceil_mode=int(module.ceil_mode))
    if isinstance(module, AvgPool1d):
        return g.node("AveragePool", [x], name, kernel_shape=[module.kernel_size],
                      strides=[module.stride], pads=[module.padding] * 2,
                      ceil_mode=int(module.ceil_mode),
                      count_include_pad=int(module.count_include_pad))
    if isinstance(module, AdaptiveMaxPool2d):
        return _adaptive_max(g, module, name, x, shape)
    if isinstance(module, LayerNorm | GroupNorm):
        if opset < 17:
            raise ValueError(f"export_onnx: layer {name!r} ({type(module).__name__}) needs "
                             f"LayerNormalization, opset >= 17, got opset {opset}")
        if isinstance(module, LayerNorm):
            return _layer_norm(g, module, name, dot, x)
        return _group_norm(g, module, name, dot, x, shape)
    if isinstance(module, Concat):
        outs = [emit_child(g, branch, dot + branch_name, x, shape)[0]
                for branch_name, branch in module.named_children()]
        return g.node("Concat", outs, name, axis=module.dim)
    return None


def _adaptive_max(g: Any, module: AdaptiveMaxPool2d, name: str, x: str, shape: Shape) -> str:
    """GlobalMaxPool for a 1×1 output; a MaxPool when H and W divide evenly (then PyTorch's
    bins are disjoint, all H/out wide)."""
    h, w = shape[2], shape[3]
    oh, ow = module.output_size
    if (oh, ow) == (1, 1):
        return g.node("GlobalMaxPool", [x], name)
    if h % oh or w % ow:
        raise ValueError(
            f"export_onnx: layer {name!r} (AdaptiveMaxPool2d to {oh}x{ow}) gets a {h}x{w} "
            f"input, which does not divide evenly into {oh}x{ow} bins; ONNX has no adaptive "
            "pool. Export at an input size whose feature map here is a multiple of "
            f"{oh}x{ow}, or where the pool is global (1x1)"
        )
    kernel = [h // oh, w // ow]
    return g.node("MaxPool", [x], name, kernel_shape=kernel, strides=kernel)


def _affine(g: Any, module: Module, dot: str, shape: tuple[int, ...]) -> tuple[str, str]:
    """The module's weight and bias as initializers (ones and zeros where absent)."""
    weight = module.weight.data if module.weight is not None else np.ones(shape, np.float32)
    bias = module.bias.data if module.bias is not None else np.zeros(shape, np.float32)
    return g.weight(dot + "weight", weight), g.weight(dot + "bias", bias)


def _layer_norm(g: Any, module: LayerNorm, name: str, dot: str, x: str) -> str:
    scale, bias = _affine(g, module, dot, module.normalized_shape)
    return g.node("LayerNormalization", [x, scale, bias], name,
                  axis=-len(module.normalized_shape), epsilon=float(module.eps))


def _group_norm(g: Any, module: GroupNorm, name: str, dot: str, x: str, shape: Shape) -> str:
    groups = module.num_groups
    per_group = math.prod(shape[1:]) // groups
    grouped = g.node("Reshape", [x, g.weight(dot + "group_shape",
                                                np.array([0, groups, -1], np.int64))],
                     name + ".group")
    ones = g.weight(dot + "group_scale", np.ones(per_group, np.float32))
    zeros = g.weight(dot + "group_bias", np.zeros(per_group, np.float32))
    normed = g.node("LayerNormalization", [grouped, ones, zeros], name + ".normalize", axis=2,
                    epsilon=float(module.eps))
    back = g.node("Reshape", [normed, g.weight(dot + "shape", np.array([0, *shape[1:]],
                                                                         np.int64))],
                  name + ".ungroup")
    if not module.affine:
        return back
    vec = (module.num_channels,) + (1,) * (len(shape) - 2)
    weight, bias = _affine(g, module, dot, (module.num_channels,))
    w = g.node("Reshape", [weight, g.weight(dot + "channel_shape", np.array(vec, np.int64))],
               name + ".weight")
    b = g.node("Reshape", [bias, dot + "channel_shape"], name + ".bias")
    return g.node("Add", [g.node("Mul", [back, w], name + ".scale"), b], name)
