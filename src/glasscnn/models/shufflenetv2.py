"""torchvision's ShuffleNetV2 ×1.0 (Ma et al. 2018), with torchvision's state_dict keys.

``conv1.0.weight`` (3×3/2 conv), ``stage2.0.branch1.0.weight`` (the depthwise conv of a
downsampling unit's left branch), ``stage2.0.branch2.0.weight`` … ``stage4.3.branch2.7``,
``conv5.0.weight``, ``fc.weight``.
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
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)

STAGE_REPEATS = (4, 8, 4)
# output channels of conv1, stage2, stage3, stage4, conv5 for the ×1.0 width
WIDTHS_X1_0 = (24, 116, 232, 464, 1024)


def _conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int, relu: bool,
             o: dict[str, Any]) -> list[Module]:
    """A bias-free k×k conv (pad k // 2), BN, and ReLU when ``relu``: PyTorch's default
    init (torchvision sets none for ShuffleNetV2)."""
    layers: list[Module] = [
        Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False, **o),
        BatchNorm2d(c_out, impl=o["impl"], dtype=o["dtype"]),
    ]
    return [*layers, ReLU(o["impl"])] if relu else layers


class ShuffleUnit(ConcatBlock):
    """ShuffleNetV2's unit (torchvision's ``InvertedResidual``), then a channel shuffle of 2
    groups.

    Stride 1: the input's first half of the channels passes unchanged, the second half goes
    through ``branch2`` (1×1 conv - BN - ReLU, 3×3 depthwise conv - BN, 1×1 conv - BN -
    ReLU); the two halves are joined. Stride 2: both ``branch1`` (3×3/2 depthwise conv - BN,
    1×1 conv - BN - ReLU) and ``branch2`` (its depthwise conv strided) see the whole input.
    A stride-1 unit's ``branch1`` is an empty ``Sequential``, as torchvision's.

    Args:
        in_channels, out_channels: C_in, C_out (even; each branch gives C_out / 2).
        stride: 1 (then C_in = C_out) or 2.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, C_out, ⌊(H − 1)/S⌋ + 1, ⌊(W − 1)/S⌋ + 1).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 opts: dict[str, Any]) -> None:
        super().__init__()
        if stride == 1 and in_channels != 2 * (out_channels // 2):
            raise ValueError(f"ShuffleUnit: stride 1 needs in_channels = out_channels (even), "
                             f"got {in_channels} and {out_channels}")
        half = out_channels // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = Sequential(*_conv_bn(in_channels, in_channels, 3, stride,
                                                in_channels, False, opts),
                                      *_conv_bn(in_channels, half, 1, 1, 1, True, opts))
        else:
            self.branch1 = Sequential()
        self.branch2 = Sequential(
            *_conv_bn(in_channels if stride > 1 else half, half, 1, 1, 1, True, opts),
            *_conv_bn(half, half, 3, stride, half, False, opts),
            *_conv_bn(half, half, 1, 1, 1, True, opts))
        self._half = half

    def concat_parts(self) -> tuple[Layers, list[Branch], int]:
        """Stride 1: the first half as it is and ``branch2`` on the second half; stride 2:
        ``branch1`` and ``branch2`` on the whole input. Then the shuffle of 2 groups."""
        if self.stride == 1:
            return [], [((0, self._half), []),
                        ((self._half, 2 * self._half), children(self, "branch2"))], 2
        return [], [(None, children(self, "branch1")), (None, children(self, "branch2"))], 2


@_named
def shufflenet_v2_x1_0(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """torchvision's ShuffleNetV2 ×1.0: 2,278,604 parameters at 1000 classes.

    conv1: 3×3/2 conv to 24 - BN - ReLU; maxpool 3×3/2 (pad 1); stage2, stage3, stage4: 4, 8,
    4 units to 116, 232, 464 channels (the first of each with stride 2); conv5: 1×1 conv to
    1024 - BN - ReLU; global average pool; fc 1024 → num_classes. PyTorch's default
    initialisation (torchvision sets none).

    Args:
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W), checked only (the pool is global).
        impl, dtype, rng: as for the layers.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    widths = WIDTHS_X1_0
    layers: list[tuple[str, Module]] = [
        ("conv1", Sequential(*_conv_bn(in_channels, widths[0], 3, 2, 1, True, o))),
        ("maxpool", MaxPool2d(3, 2, padding=1, impl=impl)),
    ]
    c_in = widths[0]
    for i, (repeats, c_out) in enumerate(zip(STAGE_REPEATS, widths[1:4], strict=True)):
        units = [ShuffleUnit(c_in, c_out, 2, o)]
        units += [ShuffleUnit(c_out, c_out, 1, o) for _ in range(repeats - 1)]
        layers.append((f"stage{i + 2}", Sequential(*units)))
        c_in = c_out
    layers.append(("conv5", Sequential(*_conv_bn(c_in, widths[4], 1, 1, 1, True, o))))
    _features_out("shufflenet_v2_x1_0", Sequential(OrderedDict(layers)), in_channels,
                  input_size)
    layers += [("avgpool", AdaptiveAvgPool2d(1, impl=impl)), ("flatten", Flatten(impl=impl)),
               ("fc", Linear(widths[4], num_classes, **o))]
    return Sequential(OrderedDict(layers))
