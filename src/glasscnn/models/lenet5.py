"""LeNet-5 (LeCun et al. 1998) in its usual modern rendering: tanh and average pooling.

conv1 1→6 5×5 on 1×32×32 → tanh → avg pool 2 → conv2 6→16 5×5 → tanh → avg pool 2 →
flatten 400 → fc1 120 → tanh → fc2 84 → tanh → fc3 10: 61,706 parameters. The original's
sparse C3 connections, trainable pooling coefficients and RBF output layer are replaced by
a full conv, plain averages and a linear layer, as in most textbooks and tutorials.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn.models.zoo import _features_out, _opts
from glasscnn.nn import AvgPool2d, Conv2d, Flatten, Linear, Sequential, Tanh


def lenet5(
    in_channels: int = 1, num_classes: int = 10, input_size: Any = 32, impl: str = "fast",
    dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """LeNet-5 with tanh and 2×2 average pooling; PyTorch's default initialisation.

    Keys ``conv1.*``, ``conv2.*``, ``fc1.*``, ``fc2.*``, ``fc3.*``. At 1×32×32 the flatten
    has 16·5·5 = 400 values; at 1×28×28 (MNIST without padding) 16·4·4 = 256, and fc1
    follows.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    features = [
        ("conv1", Conv2d(in_channels, 6, 5, **o)), ("tanh1", Tanh()),
        ("pool1", AvgPool2d(2, impl=impl)),
        ("conv2", Conv2d(6, 16, 5, **o)), ("tanh2", Tanh()),
        ("pool2", AvgPool2d(2, impl=impl)), ("flatten", Flatten(impl=impl)),
    ]
    flat = _features_out("lenet5", Sequential(OrderedDict(features)), in_channels, input_size)
    return Sequential(OrderedDict([
        *features,
        ("fc1", Linear(flat, 120, **o)), ("tanh3", Tanh()),
        ("fc2", Linear(120, 84, **o)), ("tanh4", Tanh()),
        ("fc3", Linear(84, num_classes, **o)),
    ]))
