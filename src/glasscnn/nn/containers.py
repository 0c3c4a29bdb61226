"""Containers: ``Sequential`` and the residual block."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn.nn.layers import Add, BatchNorm2d, Conv2d, ReLU
from glasscnn.nn.module import Module


class Sequential(Module):
    """Run children in order; backward runs them in reverse.

    ``Sequential(a, b)`` names the children ``"0"``, ``"1"`` (keys ``0.weight``, ...);
    ``Sequential(OrderedDict(conv1=a, relu1=b))`` uses the given names. Nested Sequentials
    give keys such as ``features.0.weight``, exactly as PyTorch.

    Attributes:
        fuse_conv_relu: run each fast Conv2d + ReLU pair as one fused kernel (default True).
    """

    def __init__(self, *layers: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not isinstance(layer, Module):
                raise ValueError(
                    f"Sequential: child {name!r} is not a Module, got {type(layer).__name__}"
                )
            setattr(self, name, layer)
        self.fuse_conv_relu = True

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Feed ``x`` through every child in order.

        A fast ``Conv2d`` directly followed by a fast ``ReLU`` runs as one fused kernel
        (``Conv2d.forward_relu``; the ReLU then passes gradients through), unless
        ``fuse_conv_relu`` is False, either layer's forward or backward was replaced on
        the instance (as per-layer timers do), or a forward hook watches either. The values
        are the same either way.
        """
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and self._fusable(layers[i], layers[i + 1]):
                x = layers[i].forward_relu(x)
                layers[i + 1].applied_by_previous_()
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x

    def _fusable(self, first: Module, second: Module) -> bool:
        """Whether ``first``, ``second`` can run as one conv + ReLU kernel."""
        return (self.fuse_conv_relu and type(first) is Conv2d and type(second) is ReLU
                and first.impl == "fast" and second.impl == "fast"
                and not {"forward", "backward"} & (vars(first).keys() | vars(second).keys())
                and not first._observed() and not second._observed())

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Feed ``dout`` backwards through every child, last first."""
        for layer in reversed(self._modules.values()):
            dout = layer.backward(dout)
        return dout

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); passed on to the first child."""
        super().requires_input_grad_(flag)
        if self._modules:
            next(iter(self._modules.values())).requires_input_grad_(flag)
        return self

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Chain each child's shape rule."""
        shape = tuple(input_shape)
        for layer in self._modules.values():
            shape = layer.output_shape(shape)
        return shape


class ResidualBlock(Module):
    """A ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    conv1 is 3×3 with the given stride, conv2 is 3×3 stride 1, both padding 1. The shortcut
    is the identity when shapes agree, else a 1×1 projection conv with the same stride
    (followed by batch norm when ``batchnorm``). Convs have no bias when batch norm follows.
    The sum is an ``Add`` layer held as ``block.add`` (not a registered child, so the
    children and keys are torchvision's).

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of conv1 and of the projection.
        batchnorm: put BatchNorm2d after each conv.
        impl, dtype, rng: as for ``Conv2d``.

    Shapes: (N, C_in, H, W) → (N, C_out, floor((H − 1) / S) + 1, floor((W − 1) / S) + 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, batchnorm: bool = True,
        impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride <= 0:
            raise ValueError(f"ResidualBlock: stride must be an int > 0, got {stride!r}")
        conv = {"impl": impl, "dtype": dtype, "rng": rng, "bias": not batchnorm}
        bn = {"impl": impl, "dtype": dtype}
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, **conv)
        if batchnorm:
            self.bn1 = BatchNorm2d(out_channels, **bn)
        self.relu1 = ReLU(impl)
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, **conv)
        if batchnorm:
            self.bn2 = BatchNorm2d(out_channels, **bn)
        if stride != 1 or in_channels != out_channels:
            proj: list[Module] = [Conv2d(in_channels, out_channels, 1, stride=stride, **conv)]
            if batchnorm:
                proj.append(BatchNorm2d(out_channels, **bn))
            self.shortcut = Sequential(*proj)
        self.relu2 = ReLU(impl)
        self.impl = impl
        # held, not registered: the state_dict, the PyTorch twin and the ONNX graph stay
        # those of torchvision's block, and a recorded forward still sees the add
        object.__setattr__(self, "add", Add(impl))

    def main_path(self) -> list[Module]:
        """The layers of the main path (conv1 … bn2), in order; the shortcut is separate."""
        return [m for name, m in self._modules.items() if name not in ("shortcut", "relu2")]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, C_out, H', W')."""
        h = x
        for layer in self.main_path():
            h = layer(h)
        s = self.shortcut(x) if "shortcut" in self._modules else x
        return self.relu2(self.add(h, s))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Gradient through both paths; the input gradient is their sum."""
        dy = self.relu2.backward(dout)
        dh, ds = self.add.backward(dy)
        for layer in reversed(self.main_path()):
            dh = layer.backward(dh)
        if "shortcut" in self._modules:
            ds = self.shortcut.backward(ds)
        return dh + ds

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape after conv1 (the only strided layer of the main path)."""
        shape = tuple(input_shape)
        for layer in self.main_path():
            shape = layer.output_shape(shape)
        return shape
