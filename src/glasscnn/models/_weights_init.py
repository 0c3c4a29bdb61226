"""torchvision's initialisation of its classic networks, drawn from a NumPy generator."""

from __future__ import annotations

import math

import numpy as np

from glasscnn.nn import Conv2d


def normal_(a: np.ndarray, std: float, rng: np.random.Generator) -> None:
    """Fill ``a`` with N(0, std²) draws in place (drawn in float32 when ``a`` is float32)."""
    if a.dtype == np.float32:
        rng.standard_normal(out=a, dtype=np.float32)
        a *= std
    else:
        a[...] = rng.normal(0.0, std, size=a.shape)


def kaiming_normal_fan_out(conv: Conv2d, rng: np.random.Generator) -> Conv2d:
    """``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` on ``conv``'s weight, a zero
    bias: N(0, 2 / fan_out) with fan_out = C_out·kH·kW. Returns ``conv``."""
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    normal_(conv.weight.data, math.sqrt(2.0 / fan_out), rng)
    if conv.bias is not None:
        conv.bias.data.fill(0)
    return conv
