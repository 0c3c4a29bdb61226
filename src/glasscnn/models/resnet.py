"""torchvision's ResNet-18/34/50/101 (He et al. 2016), with torchvision's state_dict keys.

A ``.pth`` saved from ``torchvision.models.resnet50().state_dict()`` loads into
``resnet50()`` with no renaming: ``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.weight``, …

torchvision's blocks call one ``relu`` module two or three times; a glasscnn module keeps
the cache of its last call for ``backward``, so here each use is its own ``ReLU``
(``relu1``, ``relu2`` inside the block, ``relu`` after the add). ReLU has no parameters, so
the keys and their order are torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.models._weights_init import kaiming_normal_fan_out
from glasscnn.models.zoo import _features_out, _opts
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

# blocks per stage (layer1 … layer4), as torchvision's builders
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class _Block(Module):
    """A residual block: main path, optional ``downsample`` projection, add, ``relu``.

    Subclasses register their layers in torchvision's order and list the main path in
    ``_main`` (names of children).
    """

    _main: tuple[str, ...] = ()
    expansion = 1

    def residual_parts(self) -> tuple[list[tuple[str, Module]], tuple[str, Module] | None,
                                      tuple[str, Module]]:
        """``(main path, shortcut, activation after the add)`` as (name, module) pairs.

        The shortcut is ``("downsample", module)``, or None for the identity.
        """
        main = [(name, self._modules[name]) for name in self._main]
        short = ("downsample", self.downsample) if "downsample" in self._modules else None
        return main, short, ("relu", self.relu)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, C_out, H', W'): relu(main(x) + shortcut(x))."""
        h = x
        for name in self._main:
            h = self._modules[name](h)
        s = self.downsample(x) if "downsample" in self._modules else x
        y, self._add_cache = K.add_forward(h, s, impl=self.relu.impl)
        return self.relu(y)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Gradient through both paths; the input gradient is their sum."""
        dy = self.relu.backward(dout)
        dh, ds = K.add_backward(dy, self._add_cache)
        for name in reversed(self._main):
            dh = self._modules[name].backward(dh)
        if "downsample" in self._modules:
            ds = self.downsample.backward(ds)
        if not self.input_grad:
            return None
        return dh + ds

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); passed to the first layers."""
        super().requires_input_grad_(flag)
        self._modules[self._main[0]].requires_input_grad_(flag)
        if "downsample" in self._modules:
            self.downsample.requires_input_grad_(flag)
        return self

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape after the main path (the shortcut gives the same)."""
        shape = tuple(input_shape)
        for name in self._main:
            shape = self._modules[name].output_shape(shape)
        return shape


def _conv(c_in: int, c_out: int, k: int, stride: int, o: dict[str, Any]) -> Conv2d:
    """A bias-free k×k convolution ("same" padding), weights kaiming-normal (fan_out, relu)."""
    conv = Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, **o)
    return kaiming_normal_fan_out(conv, o["rng"])


def _downsample(c_in: int, c_out: int, stride: int, o: dict[str, Any]) -> Sequential:
    return Sequential(_conv(c_in, c_out, 1, stride, o),
                      BatchNorm2d(c_out, impl=o["impl"], dtype=o["dtype"]))


class BasicBlock(_Block):
    """ResNet-18/34's block: 3×3 conv (stride S) - BN - ReLU - 3×3 conv - BN, + shortcut, ReLU.

    Args:
        in_channels: C_in.
        planes: C_out (``expansion`` = 1).
        stride: S of the first conv and of the ``downsample`` 1×1 projection, which exists
            when S ≠ 1 or C_in ≠ C_out.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, planes, ⌊(H − 1)/S⌋ + 1, ⌊(W − 1)/S⌋ + 1).
    """

    _main = ("conv1", "bn1", "relu1", "conv2", "bn2")
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, opts: dict[str, Any]
                 ) -> None:
        super().__init__()
        impl, dtype = opts["impl"], opts["dtype"]
        self.conv1 = _conv(in_channels, planes, 3, stride, opts)
        self.bn1 = BatchNorm2d(planes, impl=impl, dtype=dtype)
        self.relu1 = ReLU(impl)
        self.conv2 = _conv(planes, planes, 3, 1, opts)
        self.bn2 = BatchNorm2d(planes, impl=impl, dtype=dtype)
        if stride != 1 or in_channels != planes:
            self.downsample = _downsample(in_channels, planes, stride, opts)
        self.relu = ReLU(impl)


class Bottleneck(_Block):
    """ResNet-50/101's block (torchvision's "v1.5", stride on the 3×3 conv):
    1×1 conv - BN - ReLU - 3×3 conv (stride S) - BN - ReLU - 1×1 conv (×4) - BN,
    + shortcut, ReLU.

    Args:
        in_channels: C_in.
        planes: width of the 1×1 and 3×3 convs; C_out = 4·planes.
        stride: S of the 3×3 conv and of the ``downsample`` projection, which exists when
            S ≠ 1 or C_in ≠ C_out.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, 4·planes, ⌊(H − 1)/S⌋ + 1, ⌊(W − 1)/S⌋ + 1).
    """

    _main = ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3")
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, opts: dict[str, Any]
                 ) -> None:
        super().__init__()
        impl, dtype = opts["impl"], opts["dtype"]
        out = planes * self.expansion
        self.conv1 = _conv(in_channels, planes, 1, 1, opts)
        self.bn1 = BatchNorm2d(planes, impl=impl, dtype=dtype)
        self.relu1 = ReLU(impl)
        self.conv2 = _conv(planes, planes, 3, stride, opts)
        self.bn2 = BatchNorm2d(planes, impl=impl, dtype=dtype)
        self.relu2 = ReLU(impl)
        self.conv3 = _conv(planes, out, 1, 1, opts)
        self.bn3 = BatchNorm2d(out, impl=impl, dtype=dtype)
        if stride != 1 or in_channels != out:
            self.downsample = _downsample(in_channels, out, stride, opts)
        self.relu = ReLU(impl)


def resnet(
    depth: int, in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """torchvision's ResNet of ``depth`` 18, 34, 50 or 101 layers.

    conv1 7×7/2 64 (pad 3) → bn1 → relu → maxpool 3×3/2 (pad 1) → layer1 … layer4 (64, 128,
    256, 512 planes; the first block of layer2-4 has stride 2) → adaptive average pool 1×1
    → fc (512·expansion → num_classes). BasicBlocks for 18/34, Bottlenecks for 50/101.
    Initialisation as torchvision's: convs kaiming-normal (fan_out, ReLU gain), batch norm
    γ = 1, β = 0, fc PyTorch's default Linear init.

    Args:
        depth: 18, 34, 50 or 101.
        in_channels, num_classes: C of the input and number of logits.
        input_size: checked only (any size works: the pool is adaptive).
        impl, dtype, rng: as for the layers.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    if depth not in DEPTHS:
        raise ValueError(f"resnet: depth must be one of {sorted(DEPTHS)}, got {depth}")
    o = _opts(impl, dtype, rng)
    block = BasicBlock if depth < 50 else Bottleneck
    layers: list[tuple[str, Module]] = [
        ("conv1", _conv(in_channels, 64, 7, 2, o)),
        ("bn1", BatchNorm2d(64, impl=impl, dtype=dtype)), ("relu", ReLU(impl)),
        ("maxpool", MaxPool2d(3, 2, padding=1, impl=impl)),
    ]
    c_in = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), DEPTHS[depth],
                                                 strict=True), start=1):
        stride = 1 if stage == 1 else 2
        units = []
        for i in range(blocks):
            units.append(block(c_in, planes, stride if i == 0 else 1, o))
            c_in = planes * block.expansion
        layers.append((f"layer{stage}", Sequential(*units)))
    _features_out(f"resnet{depth}", Sequential(OrderedDict(layers)), in_channels, input_size)
    layers += [("avgpool", AdaptiveAvgPool2d(1, impl=impl)), ("flatten", Flatten(impl=impl)),
               ("fc", Linear(c_in, num_classes, **o))]
    return Sequential(OrderedDict(layers))


def resnet18(**kwargs: Any) -> Sequential:
    """torchvision's ResNet-18: BasicBlocks (2, 2, 2, 2); 11,689,512 parameters at 1000
    classes. Keyword arguments as :func:`resnet`."""
    return resnet(18, **kwargs)


def resnet34(**kwargs: Any) -> Sequential:
    """torchvision's ResNet-34: BasicBlocks (3, 4, 6, 3); 21,797,672 parameters at 1000
    classes. Keyword arguments as :func:`resnet`."""
    return resnet(34, **kwargs)


def resnet50(**kwargs: Any) -> Sequential:
    """torchvision's ResNet-50: Bottlenecks (3, 4, 6, 3); 25,557,032 parameters at 1000
    classes. Keyword arguments as :func:`resnet`."""
    return resnet(50, **kwargs)


def resnet101(**kwargs: Any) -> Sequential:
    """torchvision's ResNet-101: Bottlenecks (3, 4, 23, 3); 44,549,160 parameters at 1000
    classes. Keyword arguments as :func:`resnet`."""
    return resnet(101, **kwargs)
