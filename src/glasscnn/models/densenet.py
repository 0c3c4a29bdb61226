"""torchvision's DenseNet-121 (Huang et al. 2017), with torchvision's state_dict keys.

``features.conv0.weight``, ``features.norm0.*``, ``features.denseblock1.denselayer1.norm1.*``
… ``features.denseblock4.denselayer16.conv2.weight``, ``features.transition1.conv.weight``,
``features.norm5.*``, ``classifier.weight``.

torchvision's dense block hands each layer the list of all earlier outputs and
concatenates them; here each dense layer returns its input with its new ``growth_rate``
channels appended, which is the same concatenation built one layer at a time.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn.models._branches import Branch, ConcatBlock, Layers, children
from glasscnn.models._weights_init import normal_
from glasscnn.models.zoo import _features_out, _named, _opts
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)

BLOCKS_121 = (6, 12, 24, 16)


def _conv(c_in: int, c_out: int, k: int, stride: int, o: dict[str, Any]) -> Conv2d:
    """A bias-free k×k conv (pad (k − 1) / 2 for 1 and 3, 3 for conv0's 7), with
    torchvision's DenseNet init ``kaiming_normal_`` (fan_in, ReLU gain): N(0, 2 / fan_in)."""
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, **o)
    normal_(conv.weight.data, math.sqrt(2.0 / conv.weight.data[0].size), o["rng"])
    return conv


class DenseLayer(ConcatBlock):
    """DenseNet's layer: BN - ReLU - 1×1 conv to bn_size·growth_rate - BN - ReLU - 3×3 conv
    to growth_rate; its output is the input with the growth_rate new channels appended.

    Args:
        in_channels: C_in.
        growth_rate: k, the new channels.
        bn_size: the bottleneck's width in multiples of k.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, C_in + k, H, W).
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int,
                 opts: dict[str, Any]) -> None:
        super().__init__()
        impl, dtype, width = opts["impl"], opts["dtype"], bn_size * growth_rate
        self.norm1 = BatchNorm2d(in_channels, impl=impl, dtype=dtype)
        self.relu1 = ReLU(impl)
        self.conv1 = _conv(in_channels, width, 1, 1, opts)
        self.norm2 = BatchNorm2d(width, impl=impl, dtype=dtype)
        self.relu2 = ReLU(impl)
        self.conv2 = _conv(width, growth_rate, 3, 1, opts)

    def concat_parts(self) -> tuple[Layers, list[Branch], int]:
        """The input itself, and the new channels from the layers."""
        return [], [(None, []), (None, children(self, "norm1", "relu1", "conv1", "norm2",
                                                 "relu2", "conv2"))], 0


def _transition(c_in: int, c_out: int, o: dict[str, Any]) -> Sequential:
    """BN - ReLU - 1×1 conv - 2×2/2 average pool (children ``norm``, ``relu``, ``conv``,
    ``pool``)."""
    return Sequential(OrderedDict([
        ("norm", BatchNorm2d(c_in, impl=o["impl"], dtype=o["dtype"])),
        ("relu", ReLU(o["impl"])), ("conv", _conv(c_in, c_out, 1, 1, o)),
        ("pool", AvgPool2d(2, 2, impl=o["impl"])),
    ]))


@_named
def densenet121(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    growth_rate: int = 32, bn_size: int = 4, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> Sequential:
    """torchvision's DenseNet-121: 7,978,856 parameters at 1000 classes.

    features: conv0 7×7/2 to 64 - norm0 - relu0 - pool0 3×3/2 (pad 1); dense blocks of 6, 12,
    24, 16 layers, each followed (but the last) by a transition halving the channels and
    the size; norm5. Then ReLU, global average pool, classifier fc 1024 → num_classes.
    Initialisation as torchvision's: convs kaiming-normal (fan_in, ReLU gain), batch norm
    γ = 1, β = 0, fc PyTorch's default weight and a zero bias.

    Args:
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W); at least 29×29 (three 2×2 transition pools).
        growth_rate, bn_size: k and the bottleneck multiple (torchvision's 32 and 4).
        impl, dtype, rng: as for the layers.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    c = 2 * growth_rate
    layers: list[tuple[str, Module]] = [
        ("conv0", _conv(in_channels, c, 7, 2, o)),
        ("norm0", BatchNorm2d(c, impl=impl, dtype=dtype)), ("relu0", ReLU(impl)),
        ("pool0", MaxPool2d(3, 2, padding=1, impl=impl)),
    ]
    for i, n_layers in enumerate(BLOCKS_121, start=1):
        block = []
        for j in range(n_layers):
            block.append((f"denselayer{j + 1}", DenseLayer(c, growth_rate, bn_size, o)))
            c += growth_rate
        layers.append((f"denseblock{i}", Sequential(OrderedDict(block))))
        if i < len(BLOCKS_121):
            layers.append((f"transition{i}", _transition(c, c // 2, o)))
            c //= 2
    layers.append(("norm5", BatchNorm2d(c, impl=impl, dtype=dtype)))
    features = Sequential(OrderedDict(layers))
    _features_out("densenet121", features, in_channels, input_size)
    fc = Linear(c, num_classes, **o)
    fc.bias.data.fill(0)
    return Sequential(OrderedDict([
        ("features", features), ("relu", ReLU(impl)), ("avgpool", AdaptiveAvgPool2d(1, impl=impl)),
        ("flatten", Flatten(impl=impl)), ("classifier", fc),
    ]))
