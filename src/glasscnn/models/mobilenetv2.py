"""torchvision's MobileNetV2 (Sandler et al. 2018), with torchvision's state_dict keys.

``features.0`` is a 3×3/2 conv - BN - ReLU6 (keys ``features.0.0.weight``,
``features.0.1.running_mean``); ``features.1`` … ``features.17`` are inverted residual
blocks (``features.1.conv.0.0.weight``: the depthwise conv of the first block, which has no
expansion; ``features.2.conv.0.0.weight``: a 1×1 expansion); ``features.18`` the last 1×1
conv to 1280 channels; ``classifier.1.weight`` the fc layer after dropout.

``MobileNetV2.infer(x)`` is an inference path that keeps nothing for backward: each batch
norm folded into the conv before it (scaled weights and a bias), ReLU6 and the residual add
in place, as PyTorch's ``inference_mode`` runs without saving anything.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.models._weights_init import kaiming_normal_fan_out, normal_
from glasscnn.models.zoo import _features_out, _named, _opts
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    Add,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    Module,
    ReLU6,
    Sequential,
)

# (expansion t, output channels c, blocks n, stride s of the first block), per stage
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(conv: Conv2d, bn: BatchNorm2d, x: np.ndarray, relu6: bool) -> np.ndarray:
    """bn(conv(x)) with the running statistics (and ReLU6 when ``relu6``), keeping no cache:
    the batch norm folded into the conv, weight·γ/σ and bias β − μ·γ/σ with σ = √(var + ε).
    """
    dtype = x.dtype
    scale = 1 / np.sqrt(bn.running_var.astype(dtype) + bn.eps)
    if bn.weight is not None:
        scale *= bn.weight.data.astype(dtype)
    shift = -bn.running_mean.astype(dtype) * scale
    if bn.bias is not None:
        shift += bn.bias.data.astype(dtype)
    if conv.bias is not None:
        shift += conv.bias.data.astype(dtype) * scale
    weight = conv.weight.data.astype(dtype) * scale[:, None, None, None]
    out, _ = K.conv2d_forward(x, weight, shift, conv.stride, conv.padding, conv.dilation,
                              conv.groups, impl=conv.impl)
    return np.clip(out, 0, 6, out=out) if relu6 else out


def conv_bn_relu6(c_in: int, c_out: int, k: int, stride: int, groups: int,
                  o: dict[str, Any]) -> Sequential:
    """torchvision's ``Conv2dNormActivation``: bias-free k×k conv ("same" padding for stride
    1), BN, ReLU6 (children ``0``, ``1``, ``2``). Weights kaiming-normal (fan_out)."""
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, groups=groups,
                  bias=False, **o)
    return Sequential(kaiming_normal_fan_out(conv, o["rng"]),
                      BatchNorm2d(c_out, impl=o["impl"], dtype=o["dtype"]),
                      ReLU6(impl=o["impl"]))


class InvertedResidual(Module):
    """MobileNetV2's block: 1×1 expansion to t·C_in (when t ≠ 1) - BN - ReLU6, 3×3 depthwise
    conv (stride S) - BN - ReLU6, 1×1 linear projection to C_out - BN; plus the input when
    S = 1 and C_in = C_out (no activation after the add).

    The layers are the child ``conv`` (a ``Sequential``), as torchvision's; the sum is an
    ``Add`` held as ``block.add`` (not registered, so the keys stay torchvision's; the
    analysis counts it).

    Args:
        in_channels, out_channels: C_in, C_out.
        stride: S, 1 or 2.
        expand_ratio: t.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, C_out, ⌊(H − 1)/S⌋ + 1, ⌊(W − 1)/S⌋ + 1).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 opts: dict[str, Any]) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        layers: list[Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, 1, 1, 1, opts))
        project = Conv2d(hidden, out_channels, 1, bias=False, **opts)
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, hidden, opts),
                   kaiming_normal_fan_out(project, opts["rng"]),
                   BatchNorm2d(out_channels, impl=opts["impl"], dtype=opts["dtype"])]
        self.conv = Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        if self.use_res_connect:
            object.__setattr__(self, "add", Add(opts["impl"]))

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The block's evaluation-mode output, keeping no cache for backward (each conv and
        its batch norm as one folded conv, the add in place)."""
        *stages, project, bn = self.conv
        h = x
        for stage in stages:  # conv - BN - ReLU6 Sequentials
            h = _conv_bn(stage[0], stage[1], h, relu6=True)
        h = _conv_bn(project, bn, h, relu6=False)
        return np.add(h, x, out=h) if self.use_res_connect else h

    def residual_parts(self) -> tuple[list[tuple[str, Module]], None, None] | None:
        """``([("conv", main path)], None, None)``: an identity shortcut and nothing after
        the add; None for a block without the shortcut."""
        return ([("conv", self.conv)], None, None) if self.use_res_connect else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, C_out, H', W')."""
        h = self.conv(x)
        return self.add(h, x) if self.use_res_connect else h

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Gradient through the layers; with the shortcut, plus ``dout`` itself."""
        if not self.use_res_connect:
            return self.conv.backward(dout)
        dh, ds = self.add.backward(dout)
        dx = self.conv.backward(dh)
        return dx + ds if self.input_grad else None

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); passed to the first layer."""
        super().requires_input_grad_(flag)
        self.conv.requires_input_grad_(flag)
        return self

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape after the layers."""
        return self.conv.output_shape(input_shape)


class MobileNetV2(Sequential):
    """The network :func:`mobilenet_v2` builds: a ``Sequential`` (``features``, ``avgpool``,
    ``flatten``, ``classifier``) with a cache-free inference path."""

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits in evaluation mode (running statistics, no dropout), keeping nothing for
        backward; equal to ``eval()`` then ``forward`` within float rounding.

        Args:
            x: (N, C, H, W) images.

        Returns:
            (N, num_classes) logits.
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(self.classifier[1].weight.dtype)
        for block in self.features:
            if isinstance(block, InvertedResidual):
                x = block.infer(x)
            else:
                x = _conv_bn(block[0], block[1], x, relu6=True)
        fc = self.classifier[1]
        pooled = x.mean(axis=(2, 3))  # (N, 1280)
        return pooled @ fc.weight.data.T + fc.bias.data


@_named
def mobilenet_v2(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    dropout: float = 0.2, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None, seed: int | None = None,
) -> Sequential:
    """torchvision's MobileNetV2 (width 1.0): 3,504,872 parameters at 1000 classes.

    features: conv 3×3/2 to 32 - BN - ReLU6, 17 inverted residual blocks (t, c, n, s) =
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
    (6, 160, 3, 2), (6, 320, 1, 1), conv 1×1 to 1280 - BN - ReLU6; then a global average
    pool and classifier: dropout, fc 1280 → num_classes. Initialisation as torchvision's:
    convs kaiming-normal (fan_out), batch norm γ = 1, β = 0, fc weights N(0, 0.01²) with
    zero bias.

    Args:
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W), checked only (the pool is global); at least 1×1.
        dropout: the classifier's dropout probability.
        impl, dtype, rng: as for the layers; seed: seeds the dropout mask.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    layers: list[Module] = [conv_bn_relu6(in_channels, 32, 3, 2, 1, o)]
    c_in = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t, o))
            c_in = c
    layers.append(conv_bn_relu6(c_in, 1280, 1, 1, 1, o))
    features = Sequential(*layers)
    _features_out("mobilenet_v2", features, in_channels, input_size)
    fc = Linear(1280, num_classes, **o)
    normal_(fc.weight.data, 0.01, o["rng"])
    fc.bias.data.fill(0)
    return MobileNetV2(OrderedDict([
        ("features", features), ("avgpool", AdaptiveAvgPool2d(1, impl=impl)),
        ("flatten", Flatten(impl=impl)),
        ("classifier", Sequential(Dropout(dropout, impl=impl, seed=seed), fc)),
    ]))

