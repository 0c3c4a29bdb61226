"""torchvision's GoogLeNet (Szegedy et al. 2015, Inception v1 with batch norm), with
torchvision's state_dict keys, as its evaluation-time model: no auxiliary heads, no input
transform.

``conv1.conv.weight``, ``conv1.bn.running_mean``, ``inception3a.branch1.conv.weight``,
``inception3a.branch2.0.conv.weight``, ``inception3a.branch4.1.bn.weight``, …, ``fc.weight``.
As torchvision's, the "5×5" branch uses a 3×3 conv.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn.models._branches import Branch, ConcatBlock, Layers, children
from glasscnn.models.zoo import _features_out, _named, _opts
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)

# (C_in, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool projection) per Inception module
INCEPTIONS = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def _trunc_normal(a: np.ndarray, std: float, rng: np.random.Generator) -> None:
    """torchvision's GoogLeNet init ``trunc_normal_(std=0.01, a=-2, b=2)``: N(0, std²)
    redrawn outside [−2, 2] (200 standard deviations: never, in practice)."""
    a[...] = rng.normal(0.0, std, a.shape)
    outside = np.abs(a) > 2
    while outside.any():
        a[outside] = rng.normal(0.0, std, int(outside.sum()))
        outside = np.abs(a) > 2


def basic_conv(c_in: int, c_out: int, k: int, o: dict[str, Any], stride: int = 1
               ) -> Sequential:
    """torchvision's ``BasicConv2d``: bias-free k×k conv (pad k // 2) - BN (eps 0.001) -
    ReLU, children ``conv``, ``bn``, ``relu``."""
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, **o)
    _trunc_normal(conv.weight.data, 0.01, o["rng"])
    return Sequential(OrderedDict([
        ("conv", conv), ("bn", BatchNorm2d(c_out, eps=0.001, impl=o["impl"], dtype=o["dtype"])),
        ("relu", ReLU(o["impl"])),
    ]))


class Inception(ConcatBlock):
    """GoogLeNet's Inception module: four paths on the input, joined along the channels.

    ``branch1``: 1×1 conv; ``branch2``: 1×1 reduce, 3×3 conv; ``branch3``: 1×1 reduce, 3×3
    conv (torchvision's, where the paper has 5×5); ``branch4``: 3×3/1 max pool (pad 1),
    1×1 projection. Every conv is a ``basic_conv`` (conv - BN - ReLU).

    Args:
        in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: the widths.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int,
                 ch5x5red: int, ch5x5: int, pool_proj: int, opts: dict[str, Any]) -> None:
        super().__init__()
        self.branch1 = basic_conv(in_channels, ch1x1, 1, opts)
        self.branch2 = Sequential(basic_conv(in_channels, ch3x3red, 1, opts),
                                  basic_conv(ch3x3red, ch3x3, 3, opts))
        self.branch3 = Sequential(basic_conv(in_channels, ch5x5red, 1, opts),
                                  basic_conv(ch5x5red, ch5x5, 3, opts))
        self.branch4 = Sequential(MaxPool2d(3, 1, padding=1, ceil_mode=True, impl=opts["impl"]),
                                  basic_conv(in_channels, pool_proj, 1, opts))

    def concat_parts(self) -> tuple[Layers, list[Branch], int]:
        """The four branches, each on the whole input."""
        return [], [(None, children(self, name)) for name in
                    ("branch1", "branch2", "branch3", "branch4")], 0


@_named
def googlenet(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    dropout: float = 0.2, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None, seed: int | None = None,
) -> Sequential:
    """torchvision's GoogLeNet without auxiliary heads: 6,624,904 parameters at 1000
    classes.

    conv1 7×7/2 to 64, maxpool1 3×3/2, conv2 1×1 64, conv3 3×3 192, maxpool2 3×3/2,
    inception3a, 3b, maxpool3 3×3/2, inception4a-4e, maxpool4 2×2/2 (every max pool with
    ``ceil_mode``), inception5a, 5b, global average pool, dropout, fc 1024 → num_classes.
    Initialisation as torchvision's: conv and fc weights truncated N(0, 0.01²), batch norm
    γ = 1, β = 0, fc bias PyTorch's default.

    Args:
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W); at least 15×15 (every pool rounds up).
        dropout: the dropout probability before fc.
        impl, dtype, rng: as for the layers; seed: seeds the dropout mask.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)

    def pool(k: int) -> MaxPool2d:
        return MaxPool2d(k, 2, ceil_mode=True, impl=impl)

    def inception(name: str) -> tuple[str, Module]:
        return f"inception{name}", Inception(*INCEPTIONS[name], o)

    layers: list[tuple[str, Module]] = [
        ("conv1", basic_conv(in_channels, 64, 7, o, stride=2)), ("maxpool1", pool(3)),
        ("conv2", basic_conv(64, 64, 1, o)), ("conv3", basic_conv(64, 192, 3, o)),
        ("maxpool2", pool(3)), inception("3a"), inception("3b"), ("maxpool3", pool(3)),
        *(inception(n) for n in ("4a", "4b", "4c", "4d", "4e")), ("maxpool4", pool(2)),
        inception("5a"), inception("5b"),
    ]
    _features_out("googlenet", Sequential(OrderedDict(layers)), in_channels, input_size)
    fc = Linear(1024, num_classes, **o)
    _trunc_normal(fc.weight.data, 0.01, o["rng"])
    layers += [("avgpool", AdaptiveAvgPool2d(1, impl=impl)), ("flatten", Flatten(impl=impl)),
               ("dropout", Dropout(dropout, impl=impl, seed=seed)), ("fc", fc)]
    return Sequential(OrderedDict(layers))
