"""ONNX export of a glasscnn network, for inference (needs the optional ``onnx`` package).

Each layer becomes the ONNX operator of the same meaning; weights become initializers named
by their state_dict keys (``conv1.weight``, ``layer1.0.bn1.running_mean``, …):

=====================  =========================================================
glasscnn               ONNX (opset 17 by default)
=====================  =========================================================
Conv2d                 Conv (pads [top, left, bottom, right], dilations, group, bias)
ConvTranspose2d        ConvTranspose (pads, output_padding, dilations, group, bias)
Conv1d                 Conv on (N, C, L) (pads [left, right], dilations, group, bias)
Linear                 Gemm (transB = 1)
MaxPool2d              MaxPool (dilations, ceil_mode; padded cells never win)
AvgPool2d              AveragePool (count_include_pad, ceil_mode as the layer)
AdaptiveAvgPool2d      GlobalAveragePool for 1×1; Expand from a 1×1 input;
                       AveragePool with kernel = stride = H / out when the input
                       divides evenly; else an error
ReLU, Sigmoid          Relu, Sigmoid
Flatten                Flatten (start_dim 1) or Reshape
BatchNorm1d/2d         BatchNormalization with the running statistics
Dropout                nothing (identity at inference)
ResidualBlock          its layers, then Add of the shortcut, then Relu
residual_parts()       likewise, for blocks naming their parts (torchvision's ResNet,
                       MobileNetV2's inverted residual: no activation after the Add;
                       None: the block's children in order)
concat_parts()         the head's layers, then each branch (after a Slice of the
                       channels it reads), Concat along the channels, and for a
                       channel shuffle Reshape - Transpose - Reshape (SqueezeNet's
                       Fire, GoogLeNet's Inception, DenseNet's layer, ShuffleNetV2)
=====================  =========================================================

The activations, pools, norms and ``Concat`` beyond these are in ``glasscnn.io.onnx_ops``.

Batch norm always uses the running statistics: the exported graph is the network in
evaluation mode. The batch axis is symbolic (``batch``); the spatial size is the one given
at export, because an adaptive pool's kernel depends on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from glasscnn.io import onnx_ops
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    ResidualBlock,
    Sequential,
    Sigmoid,
)

DEFAULT_OPSET = 17

Shape = tuple[int, ...]


def require_onnx() -> ModuleType:
    """Import and return ``onnx``, or raise ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'glasscnn[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


class _GraphBuilder:
    """Collects nodes and initializers while walking the module tree."""

    def __init__(self, onnx: ModuleType, opset: int = DEFAULT_OPSET) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add an initializer (float arrays become float32); returns its name."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array), name))
        self._names.add(name)
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add a node whose single output is named after the layer; returns that name."""
        out = name
        while out in self._names:
            out += "_"
        self._names.add(out)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def _layer_name(prefix: str, module: Module) -> str:
    return prefix or type(module).__name__


def _emit(g: _GraphBuilder, module: Module, prefix: str, x: str, shape: Shape
          ) -> tuple[str, Shape]:
    """Add ``module``'s nodes after tensor ``x`` of ``shape``; return (output, its shape)."""
    dot = f"{prefix}." if prefix else ""
    name = _layer_name(prefix, module)
    if isinstance(module, Sequential):
        for child_name, child in module.named_children():
            x, shape = _emit(g, child, dot + child_name, x, shape)
        return x, shape
    if isinstance(module, ResidualBlock):
        main = [(n, m) for n, m in module.named_children() if n not in ("shortcut", "relu2")]
        shortcut = ("shortcut", module.shortcut) if "shortcut" in module._modules else None
        return _emit_residual(g, (main, shortcut, ("relu2", module.relu2)), dot, x, shape)
    if hasattr(module, "residual_parts"):
        parts = module.residual_parts()
        if parts is None:
            for child_name, child in module.named_children():
                x, shape = _emit(g, child, dot + child_name, x, shape)
            return x, shape
        return _emit_residual(g, parts, dot, x, shape)
    if hasattr(module, "concat_parts"):
        return _emit_concat(g, module.concat_parts(), dot, x, shape)
    out_shape = tuple(module.output_shape(shape))
    if isinstance(module, Conv2d):
        inputs = [x, g.weight(dot + "weight", module.weight.data)]
        if module.bias is not None:
            inputs.append(g.weight(dot + "bias", module.bias.data))
        (top, left), (bottom, right) = module.pads()
        return g.node("Conv", inputs, name, kernel_shape=list(module.kernel_size),
                      strides=list(module.stride), pads=[top, left, bottom, right],
                      dilations=list(module.dilation), group=module.groups), out_shape
    if isinstance(module, ConvTranspose2d | Conv1d):
        inputs = [x, g.weight(dot + "weight", module.weight.data)]
        if module.bias is not None:
            inputs.append(g.weight(dot + "bias", module.bias.data))
        attrs = {"kernel_shape": list(module.kernel_size), "strides": list(module.stride),
                 "dilations": list(module.dilation), "group": module.groups}
        if isinstance(module, Conv1d):
            return g.node("Conv", inputs, name, pads=list(module.pads()), **attrs), out_shape
        ph, pw = module.padding
        return g.node("ConvTranspose", inputs, name, pads=[ph, pw, ph, pw],
                      output_padding=list(module.output_padding), **attrs), out_shape
    if isinstance(module, Linear):
        inputs = [x, g.weight(dot + "weight", module.weight.data)]
        if module.bias is not None:
            inputs.append(g.weight(dot + "bias", module.bias.data))
        return g.node("Gemm", inputs, name, transB=1), out_shape
    if isinstance(module, MaxPool2d | AvgPool2d):
        ph, pw = module.padding
        attrs: dict[str, Any] = {"kernel_shape": list(module.kernel_size),
                                 "strides": list(module.stride), "pads": [ph, pw, ph, pw],
                                 "ceil_mode": int(module.ceil_mode)}
        if isinstance(module, AvgPool2d):
            if module.divisor_override is not None:
                raise ValueError(f"export_onnx: layer {name!r} (AvgPool2d with "
                                 f"divisor_override={module.divisor_override}) has no ONNX "
                                 "AveragePool equivalent")
            attrs["count_include_pad"] = int(module.count_include_pad)
            return g.node("AveragePool", [x], name, **attrs), out_shape
        return g.node("MaxPool", [x], name, dilations=list(module.dilation), **attrs), out_shape
    if isinstance(module, AdaptiveAvgPool2d):
        return _adaptive_pool(g, module, name, x, shape), out_shape
    if isinstance(module, ReLU):
        return g.node("Relu", [x], name), out_shape
    if isinstance(module, Sigmoid):
        return g.node("Sigmoid", [x], name), out_shape
    if isinstance(module, Dropout):
        return x, out_shape
    if isinstance(module, Flatten):
        if module.start_dim == 1:
            return g.node("Flatten", [x], name, axis=1), out_shape
        target = g.weight(dot + "shape", np.array([0] * module.start_dim + [-1], np.int64))
        return g.node("Reshape", [x, target], name), out_shape
    if isinstance(module, BatchNorm1d | BatchNorm2d):
        c = module.num_features
        scale = module.weight.data if module.weight is not None else np.ones(c, np.float32)
        bias = module.bias.data if module.bias is not None else np.zeros(c, np.float32)
        inputs = [x, g.weight(dot + "weight", scale), g.weight(dot + "bias", bias),
                  g.weight(dot + "running_mean", module.running_mean),
                  g.weight(dot + "running_var", module.running_var)]
        return g.node("BatchNormalization", inputs, name, epsilon=float(module.eps)), out_shape
    out = onnx_ops.emit(g, module, name, dot, x, shape, g.opset, _emit)
    if out is not None:
        return out, out_shape
    raise ValueError(f"export_onnx: layer {name!r} ({type(module).__name__}) has no ONNX "
                     "mapping; supported: Conv2d, ConvTranspose2d, Conv1d, Linear, MaxPool2d, "
                     "AvgPool2d, AdaptiveAvgPool2d, ReLU, Sigmoid, Flatten, BatchNorm1d/2d, "
                     "Dropout, ResidualBlock, Sequential, blocks with residual_parts() or "
                     f"concat_parts(), {onnx_ops.SUPPORTED}")


def _emit_residual(g: _GraphBuilder, parts: tuple[Any, Any, Any], dot: str, x: str,
                   shape: Shape) -> tuple[str, Shape]:
    """Residual ``parts`` (main path, shortcut or None, activation after the add, as
    (name, module) pairs): the main path's nodes, the shortcut's, Add, the activation."""
    main, shortcut, act = parts
    h, h_shape = x, shape
    for child_name, child in main:
        h, h_shape = _emit(g, child, dot + child_name, h, h_shape)
    s = x
    if shortcut is not None:
        s, _ = _emit(g, shortcut[1], dot + shortcut[0], x, shape)
    y = g.node("Add", [h, s], dot + "add")
    if act is None:
        return y, h_shape
    return _emit(g, act[1], dot + act[0], y, h_shape)


def _emit_concat(g: _GraphBuilder, parts: tuple[Any, Any, int], dot: str, x: str,
                 shape: Shape) -> tuple[str, Shape]:
    """Concatenating ``parts`` (head layers, branches as (channels or None, layers), shuffle
    groups): the head, each branch on its Slice of the channels, Concat on axis 1, and the
    channel shuffle as Reshape (N, G, C/G, H, W) - Transpose - Reshape (N, C, H, W)."""
    head, branches, groups = parts
    for child_name, child in head:
        x, shape = _emit(g, child, dot + child_name, x, shape)
    outs, out_shapes = [], []
    for i, (channels, layers) in enumerate(branches):
        h, h_shape = x, shape
        if channels is not None:
            start, stop = channels
            h = g.node("Slice", [x, g.weight(f"{dot}slice{i}.starts", np.array([start])),
                                 g.weight(f"{dot}slice{i}.ends", np.array([stop])),
                                 g.weight(f"{dot}slice{i}.axes", np.array([1]))],
                       f"{dot}slice{i}")
            h_shape = (shape[0], stop - start, *shape[2:])
        for child_name, child in layers:
            h, h_shape = _emit(g, child, dot + child_name, h, h_shape)
        outs.append(h)
        out_shapes.append(h_shape)
    y = g.node("Concat", outs, dot + "concat", axis=1)
    out_shape = (shape[0], sum(s[1] for s in out_shapes), *out_shapes[0][2:])
    if groups:
        _, c, hh, ww = out_shape
        grid = g.weight(dot + "shuffle.grid", np.array([0, groups, c // groups, hh, ww]))
        flat = g.weight(dot + "shuffle.shape", np.array([0, c, hh, ww]))
        y = g.node("Reshape", [y, grid], dot + "shuffle.split")
        y = g.node("Transpose", [y], dot + "shuffle.transpose", perm=[0, 2, 1, 3, 4])
        y = g.node("Reshape", [y, flat], dot + "shuffle")
    return y, out_shape


def _adaptive_pool(g: _GraphBuilder, module: AdaptiveAvgPool2d, name: str, x: str,
                   shape: Shape) -> str:
    """GlobalAveragePool for a 1×1 output; Expand for a 1×1 input; an AveragePool when H
    and W divide evenly.

    An even division by out gives PyTorch's bins [i·H/out, (i+1)·H/out): all of size
    H/out, disjoint, i.e. an average pool with kernel = stride = H/out.
    """
    h, w = shape[2], shape[3]
    oh, ow = module.output_size
    if (oh, ow) == (1, 1):
        return g.node("GlobalAveragePool", [x], name)
    if (h, w) == (1, 1):  # every bin is the one pixel: a broadcast (VGG at 32×32)
        target = g.weight(name + ".shape", np.array([1, 1, oh, ow], np.int64))
        return g.node("Expand", [x, target], name)
    if h % oh or w % ow:
        raise ValueError(
            f"export_onnx: layer {name!r} (AdaptiveAvgPool2d to {oh}x{ow}) gets a {h}x{w} "
            f"input, which does not divide evenly into {oh}x{ow} bins; ONNX has no adaptive "
            "pool. Export at an input size whose feature map here is a multiple of "
            f"{oh}x{ow}, or where the pool is global (1x1)"
        )
    kernel = [h // oh, w // ow]
    return g.node("AveragePool", [x], name, kernel_shape=kernel, strides=kernel)


def export_onnx(
    model: Module,
    path: str | os.PathLike,
    input_shape: tuple[int, int, int],
    opset: int = DEFAULT_OPSET,
    input_name: str = "input",
    output_name: str = "logits",
    metadata: Mapping[str, str] | None = None,
    graph_name: str = "glasscnn",
) -> Path:
    """Write ``model`` as an ONNX file for inference; its initializers keep the state_dict keys.

    Args:
        model: a glasscnn network built from the layers in this module's table.
        path: the ``.onnx`` file to write (folders are created).
        input_shape: (C, H, W) of one picture, or (C, L) of one sequence (1-d networks);
            the batch axis is symbolic (``batch``).
        opset: ONNX opset of the default domain (>= 13).
        input_name, output_name: names of the graph's input (N, C, H, W) and output (N, K).
        metadata: strings stored as the model's ``metadata_props`` (e.g. model name,
            classes as JSON).
        graph_name: the graph's name.

    Returns:
        The path written.

    Raises:
        ImportError: ``onnx`` is not installed.
        ValueError: a layer with no ONNX mapping, or an adaptive pool whose input does not
            divide evenly into its output (the layer and the sizes are named).
    """
    onnx = require_onnx()
    if opset < 13:
        raise ValueError(f"export_onnx: opset must be >= 13, got {opset}")
    shape = (1, *(int(d) for d in input_shape))
    if len(shape) not in (3, 4):
        raise ValueError(f"export_onnx: input_shape must be (C, H, W) or (C, L), "
                         f"got {input_shape}")
    g = _GraphBuilder(onnx, opset)
    g._names.add(input_name)
    out, out_shape = _emit(g, model, "", input_name, shape)
    producer = next((n for n in g.nodes if n.output[0] == out), None)
    if producer is None:
        g.nodes.append(onnx.helper.make_node("Identity", [out], [output_name], name="output"))
    else:
        producer.output[0] = output_name
    helper = onnx.helper
    elem = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, graph_name,
        [helper.make_tensor_value_info(input_name, elem, ["batch", *shape[1:]])],
        [helper.make_tensor_value_info(output_name, elem, ["batch", *out_shape[1:]])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="glasscnn",
                              ir_version=helper.find_min_ir_version_for(opsets))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(target))
    try:
        onnx.checker.check_model(str(target), full_check=True)
    except onnx.checker.ValidationError as err:
        target.unlink()
        raise ValueError(f"export_onnx: the graph for {path} fails the ONNX checker: "
                         f"{err}") from None
    return target
