"""torchvision's VGG-11/13/16/19 (Simonyan & Zisserman 2015), with and without batch norm.

Keys as torchvision's: ``features.0.weight`` … (every conv, BN, ReLU and max pool is one
numbered child of ``features``), ``classifier.0.weight``, ``classifier.3.weight``,
``classifier.6.weight``; an adaptive average pool to 7×7 sits before the classifier, so
any input of at least 32×32 works.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn.models._weights_init import kaiming_normal_fan_out, normal_
from glasscnn.models.zoo import _features_out, _opts
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

# torchvision's configurations "A", "B", "D", "E": conv widths, "M" = 2×2 max pool
CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


def vgg(
    depth: int, batch_norm: bool = False, in_channels: int = 3, num_classes: int = 1000,
    input_size: Any = 224, dropout: float = 0.5, classifier_width: int = 4096,
    impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> Sequential:
    """torchvision's VGG of ``depth`` 11, 13, 16 or 19 weight layers.

    features: per configuration, 3×3 convs (pad 1, with bias) each followed by (BN and)
    ReLU, and 2×2/2 max pools; avgpool: adaptive to 7×7; classifier: fc 25088→4096, ReLU,
    dropout, fc 4096→4096, ReLU, dropout, fc 4096→num_classes (4096 = ``classifier_width``).
    Initialisation as torchvision's: convs kaiming-normal (fan_out, ReLU gain) with zero
    bias, batch norm γ = 1, β = 0, fc weights N(0, 0.01²) with zero bias.

    Args:
        depth: 11, 13, 16 or 19.
        batch_norm: BatchNorm2d after every conv (torchvision's ``vgg16_bn`` …).
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W); at least 32 (five 2×2 pools).
        dropout: the classifier's dropout probability.
        classifier_width: the two hidden fc layers' width (torchvision's 4096, about 120 M
            of VGG's parameters; a smaller width gives a light classifier for small data
            sets or quick experiments).
        impl, dtype, rng: as for the layers; seed: seeds the dropout masks.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    if depth not in CONFIGS:
        raise ValueError(f"vgg: depth must be one of {sorted(CONFIGS)}, got {depth}")
    o = _opts(impl, dtype, rng)
    layers: list[Module] = []
    c_in = in_channels
    for v in CONFIGS[depth]:
        if v == "M":
            layers.append(MaxPool2d(2, 2, impl=impl))
            continue
        layers.append(kaiming_normal_fan_out(Conv2d(c_in, v, 3, padding=1, **o), o["rng"]))
        if batch_norm:
            layers.append(BatchNorm2d(v, impl=impl, dtype=dtype))
        layers.append(ReLU(impl))
        c_in = v
    features = Sequential(*layers)
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    _features_out(name, features, in_channels, input_size)
    rngs = np.random.default_rng(seed).spawn(2)
    width = classifier_width
    fcs = [Linear(512 * 7 * 7, width, **o), Linear(width, width, **o),
           Linear(width, num_classes, **o)]
    for fc in fcs:
        normal_(fc.weight.data, 0.01, o["rng"])
        fc.bias.data.fill(0)
    classifier = Sequential(
        fcs[0], ReLU(impl), Dropout(dropout, impl=impl, rng=rngs[0]),
        fcs[1], ReLU(impl), Dropout(dropout, impl=impl, rng=rngs[1]),
        fcs[2],
    )
    return Sequential(OrderedDict([
        ("features", features), ("avgpool", AdaptiveAvgPool2d(7, impl=impl)),
        ("flatten", Flatten(impl=impl)), ("classifier", classifier),
    ]))


def _variant(depth: int, batch_norm: bool, params: str) -> Any:
    def build(**kwargs: Any) -> Sequential:
        return vgg(depth, batch_norm, **kwargs)

    signature = inspect.signature(vgg)
    build.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[2:])
    build.__name__ = build.__qualname__ = f"vgg{depth}{'_bn' if batch_norm else ''}"
    build.__doc__ = (f"torchvision's VGG-{depth}{' with batch norm' if batch_norm else ''}: "
                     f"{params} parameters at 1000 classes. Keyword arguments as :func:`vgg`.")
    return build


vgg11 = _variant(11, False, "132,863,336")
vgg11_bn = _variant(11, True, "132,868,840")
vgg13 = _variant(13, False, "133,047,848")
vgg13_bn = _variant(13, True, "133,053,736")
vgg16 = _variant(16, False, "138,357,544")
vgg16_bn = _variant(16, True, "138,365,992")
vgg19 = _variant(19, False, "143,667,240")
vgg19_bn = _variant(19, True, "143,678,248")
