"""torchvision's SqueezeNet 1.0 and 1.1 (Iandola et al. 2016), with torchvision's keys.

``features.0.weight`` is the first conv; each Fire module is one numbered child of
``features`` (``features.3.squeeze.weight``, ``features.3.expand1x1.weight``,
``features.3.expand3x3.weight``); the classifier's 1×1 conv is ``classifier.1.weight``.
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
    Conv2d,
    Dropout,
    Flatten,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)


class Fire(ConcatBlock):
    """SqueezeNet's Fire module: 1×1 ``squeeze`` conv - ReLU, then the concatenation of a
    1×1 ``expand1x1`` conv - ReLU and a 3×3 ``expand3x3`` conv (pad 1) - ReLU.

    Args:
        in_channels: C_in.
        squeeze, expand1x1, expand3x3: the three convs' output channels.
        opts: ``impl``, ``dtype``, ``rng`` for the layers.

    Shapes: (N, C_in, H, W) → (N, expand1x1 + expand3x3, H, W).
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int,
                 opts: dict[str, Any]) -> None:
        super().__init__()
        impl = opts["impl"]
        self.squeeze = _kaiming_uniform(Conv2d(in_channels, squeeze, 1, **opts), opts)
        self.squeeze_activation = ReLU(impl)
        self.expand1x1 = _kaiming_uniform(Conv2d(squeeze, expand1x1, 1, **opts), opts)
        self.expand1x1_activation = ReLU(impl)
        self.expand3x3 = _kaiming_uniform(Conv2d(squeeze, expand3x3, 3, padding=1, **opts),
                                          opts)
        self.expand3x3_activation = ReLU(impl)

    def concat_parts(self) -> tuple[Layers, list[Branch], int]:
        """The squeeze conv and its ReLU, then the two expand paths."""
        return (children(self, "squeeze", "squeeze_activation"),
                [(None, children(self, "expand1x1", "expand1x1_activation")),
                 (None, children(self, "expand3x3", "expand3x3_activation"))], 0)


def _kaiming_uniform(conv: Conv2d, o: dict[str, Any]) -> Conv2d:
    """torchvision's SqueezeNet init: ``kaiming_uniform_`` (ReLU gain) on the weight,
    U(−√(6 / fan_in), √(6 / fan_in)), and a zero bias."""
    fan_in = conv.weight.data[0].size
    bound = math.sqrt(6.0 / fan_in)
    conv.weight.data[...] = o["rng"].uniform(-bound, bound, conv.weight.shape)
    conv.bias.data.fill(0)
    return conv


# Fire modules per version: (squeeze, expand1x1, expand3x3), "M" = 3×3/2 max pool (ceil)
FIRES = {
    "1_0": ("M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
            (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)),
    "1_1": ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
            (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
}


def squeezenet(
    version: str, in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224,
    dropout: float = 0.5, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None, seed: int | None = None,
) -> Sequential:
    """torchvision's SqueezeNet ``version`` "1_0" or "1_1".

    features: conv (1.0: 7×7/2 to 96; 1.1: 3×3/2 to 64) - ReLU, then Fire modules and
    3×3/2 max pools (``ceil_mode``); classifier: dropout, 1×1 conv to num_classes, ReLU,
    global average pool. Initialisation as torchvision's: convs ``kaiming_uniform_`` with
    zero bias, the classifier's conv N(0, 0.01²).

    Args:
        version: "1_0" or "1_1".
        in_channels, num_classes: C of the input and number of logits.
        input_size: an int or (H, W); the three pools need at least 1.0: 21×21, 1.1: 17×17.
        dropout: the classifier's dropout probability.
        impl, dtype, rng: as for the layers; seed: seeds the dropout mask.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    if version not in FIRES:
        raise ValueError(f"squeezenet: version must be one of {sorted(FIRES)}, got {version!r}")
    o = _opts(impl, dtype, rng)
    first, c_in = (Conv2d(in_channels, 96, 7, stride=2, **o), 96) if version == "1_0" else \
        (Conv2d(in_channels, 64, 3, stride=2, **o), 64)
    layers: list[Module] = [_kaiming_uniform(first, o), ReLU(impl)]
    for fire in FIRES[version]:
        if fire == "M":
            layers.append(MaxPool2d(3, 2, ceil_mode=True, impl=impl))
            continue
        layers.append(Fire(c_in, *fire, o))
        c_in = fire[1] + fire[2]
    features = Sequential(*layers)
    _features_out(f"squeezenet{version}", features, in_channels, input_size)
    final = Conv2d(c_in, num_classes, 1, **o)
    normal_(final.weight.data, 0.01, o["rng"])
    final.bias.data.fill(0)
    classifier = Sequential(Dropout(dropout, impl=impl, seed=seed), final, ReLU(impl),
                            AdaptiveAvgPool2d(1, impl=impl))
    return Sequential(OrderedDict([("features", features), ("classifier", classifier),
                                   ("flatten", Flatten(impl=impl))]))


@_named
def squeezenet1_0(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224, **kwargs: Any,
) -> Sequential:
    """torchvision's SqueezeNet 1.0: 1,248,424 parameters at 1000 classes. Keyword arguments
    as :func:`squeezenet`."""
    return squeezenet("1_0", in_channels, num_classes, input_size, **kwargs)


@_named
def squeezenet1_1(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224, **kwargs: Any,
) -> Sequential:
    """torchvision's SqueezeNet 1.1 (2.4× fewer MACs than 1.0): 1,235,496 parameters at 1000
    classes. Keyword arguments as :func:`squeezenet`."""
    return squeezenet("1_1", in_channels, num_classes, input_size, **kwargs)
