"""The networks CNN courses teach, with the state_dict keys their users know.

Every builder takes ``in_channels``, ``num_classes`` and ``input_size`` (an int or an
(H, W) pair): the convolutional part is unchanged, and the first fully connected layer's
``in_features`` follows from the feature map that the input size leaves (so the CIFAR
networks also train on 1×28×28 data). Builders also take ``impl``, ``dtype`` and ``rng``.
Each model carries its ``name`` (the builder's) and ``input_shape`` (one sample's C, H, W),
which reports, charts and the notebook display use.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from glasscnn.kernels._common import pair
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    ResidualBlock,
    Sequential,
)
from glasscnn.nn.init import default_rng


def _named(builder: Callable[..., Sequential]) -> Callable[..., Sequential]:
    """Give the models a builder makes its name and one sample's input shape, so that
    reports, charts and the notebook display call them by it."""
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Sequential:
        model = builder(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        model.name = builder.__name__
        model.input_shape = (int(bound.arguments["in_channels"]),
                             *pair(bound.arguments["input_size"], "input_size", model.name))
        return model

    return build


def _features_out(name: str, features: Module, in_channels: int, input_size: Any) -> int:
    """Number of values per image after ``features`` for an input of ``input_size``."""
    h, w = pair(input_size, "input_size", name)
    try:
        shape = features.output_shape((1, in_channels, h, w))
    except ValueError as err:
        raise ValueError(f"{name}: input {in_channels}x{h}x{w} is too small: {err}") from None
    return int(np.prod(shape[1:]))


def _opts(impl: str, dtype: Any, rng: np.random.Generator | None) -> dict[str, Any]:
    return {"impl": impl, "dtype": dtype, "rng": rng or default_rng()}


@_named
def alexnet_cifar33(
    in_channels: int = 3, num_classes: int = 10, input_size: Any = 33, impl: str = "fast",
    dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """The CIFAR "AlexNet-like" network of the course's inference lab (no biases).

    Keys ``conv1.weight`` … ``conv5.weight``, ``fc1.weight`` … ``fc3.weight``. At 3×33×33:
    conv1 96×27×27 → pool1 96×13×13 → conv2 256×13×13 → pool2 256×6×6 → conv3..5 → pool3
    256×3×3 → fc1 2304→1024 → fc2 1024→512 → fc3 512→10. At 1×28×28, fc1 has 1024 inputs.

    Returns:
        A ``Sequential``: input (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    c = {**o, "bias": False}
    features = [
        ("conv1", Conv2d(in_channels, 96, 7, **c)), ("relu1", ReLU(impl)),
        ("pool1", MaxPool2d(3, 2, impl=impl)),
        ("conv2", Conv2d(96, 256, 5, padding=2, **c)), ("relu2", ReLU(impl)),
        ("pool2", MaxPool2d(3, 2, impl=impl)),
        ("conv3", Conv2d(256, 384, 3, padding=1, **c)), ("relu3", ReLU(impl)),
        ("conv4", Conv2d(384, 384, 3, padding=1, **c)), ("relu4", ReLU(impl)),
        ("conv5", Conv2d(384, 256, 3, padding=1, **c)), ("relu5", ReLU(impl)),
        ("pool3", MaxPool2d(2, 2, impl=impl)), ("flatten", Flatten(impl=impl)),
    ]
    flat = _features_out("alexnet_cifar33", Sequential(OrderedDict(features)), in_channels,
                         input_size)
    return Sequential(OrderedDict([
        *features,
        ("fc1", Linear(flat, 1024, **c)), ("relu6", ReLU(impl)),
        ("fc2", Linear(1024, 512, **c)), ("relu7", ReLU(impl)),
        ("fc3", Linear(512, num_classes, **c)),
    ]))


@_named
def mnist_net(
    in_channels: int = 1, num_classes: int = 10, input_size: Any = 28, impl: str = "fast",
    dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """The MNIST network of the course's loop-nest lab.

    conv1 4×1×5×5 pad 2 → ReLU → max 2 → conv2 8×4×5×5 pad 2 → ReLU → max 2 → flatten 392 →
    fc1 392→256 → ReLU → fc2 256→10. Keys ``conv1.*``, ``conv2.*``, ``fc1.*``, ``fc2.*``.

    Returns:
        A ``Sequential``: (N, in_channels, 28, 28) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    features = [
        ("conv1", Conv2d(in_channels, 4, 5, padding=2, **o)), ("relu1", ReLU(impl)),
        ("pool1", MaxPool2d(2, impl=impl)),
        ("conv2", Conv2d(4, 8, 5, padding=2, **o)), ("relu2", ReLU(impl)),
        ("pool2", MaxPool2d(2, impl=impl)), ("flatten", Flatten(impl=impl)),
    ]
    flat = _features_out("mnist_net", Sequential(OrderedDict(features)), in_channels, input_size)
    return Sequential(OrderedDict([
        *features,
        ("fc1", Linear(flat, 256, **o)), ("relu3", ReLU(impl)),
        ("fc2", Linear(256, num_classes, **o)),
    ]))


@_named
def three_layer_convnet(
    in_channels: int = 3, num_classes: int = 10, input_size: Any = 32, batchnorm: bool = False,
    num_filters: int = 32, filter_size: int = 7, hidden_dim: int = 500,
    weight_scale: float = 1e-3, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> Sequential:
    """CS231n's ThreeLayerConvNet: conv - relu - 2×2 max pool - affine - relu - affine.

    conv ``num_filters``×``filter_size``² with "same" padding → (BN2d) → ReLU → max 2×2 s2 →
    fc1 (32·16·16 = 8192 → 500) → (BN1d) → ReLU → fc2 500→10. Weights drawn from
    N(0, weight_scale²), biases zero, as the recipe says.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    layers: list[tuple[str, Module]] = [
        ("conv1", Conv2d(in_channels, num_filters, filter_size, padding=(filter_size - 1) // 2,
                         **o)),
    ]
    if batchnorm:
        layers.append(("bn1", BatchNorm2d(num_filters, impl=impl, dtype=dtype)))
    layers += [("relu1", ReLU(impl)), ("pool1", MaxPool2d(2, 2, impl=impl)),
               ("flatten", Flatten(impl=impl))]
    flat = _features_out("three_layer_convnet", Sequential(OrderedDict(layers)), in_channels,
                         input_size)
    layers.append(("fc1", Linear(flat, hidden_dim, **o)))
    if batchnorm:
        layers.append(("bn2", BatchNorm1d(hidden_dim, impl=impl, dtype=dtype)))
    layers += [("relu2", ReLU(impl)), ("fc2", Linear(hidden_dim, num_classes, **o))]
    model = Sequential(OrderedDict(layers))
    for name, p in model.named_parameters():
        if name.startswith(("conv", "fc")):
            if name.endswith("weight"):
                p.data[...] = o["rng"].normal(0.0, weight_scale, size=p.shape)
            else:
                p.data.fill(0)
    return model


@_named
def lenet_bn(
    in_channels: int = 3, num_classes: int = 10, input_size: Any = 32, batchnorm: bool = True,
    dropout: float = 0.5, impl: str = "fast", dtype: Any = np.float32,
    rng: np.random.Generator | None = None, seed: int | None = None,
) -> Sequential:
    """LeNet with batch norm and dropout, as the course trains it on CIFAR-10.

    conv1 3→6 k5 → BN2d → ReLU → max 2 → conv2 6→16 k5 → BN2d → ReLU → max 2 → flatten 400 →
    fc1 120 → BN1d → ReLU → fc2 84 → BN1d → ReLU → dropout → fc3 10. ``batchnorm=False``
    drops the BN layers, ``dropout=0`` the dropout. At 1×28×28 the flatten has 256 values.

    Args:
        seed: seeds the dropout masks.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)

    def block(name: str, conv: Module, channels: int) -> list[tuple[str, Module]]:
        items: list[tuple[str, Module]] = [(f"conv{name}", conv)]
        if batchnorm:
            items.append((f"bn{name}", BatchNorm2d(channels, impl=impl, dtype=dtype)))
        return [*items, (f"relu{name}", ReLU(impl)), (f"pool{name}", MaxPool2d(2, impl=impl))]

    features = [
        *block("1", Conv2d(in_channels, 6, 5, **o), 6),
        *block("2", Conv2d(6, 16, 5, **o), 16),
        ("flatten", Flatten(impl=impl)),
    ]
    flat = _features_out("lenet_bn", Sequential(OrderedDict(features)), in_channels, input_size)
    layers = list(features)
    for i, (n_in, n_out) in enumerate([(flat, 120), (120, 84)], start=3):
        layers.append((f"fc{i - 2}", Linear(n_in, n_out, **o)))
        if batchnorm:
            layers.append((f"bn{i}", BatchNorm1d(n_out, impl=impl, dtype=dtype)))
        layers.append((f"relu{i}", ReLU(impl)))
    if dropout > 0:
        layers.append(("dropout", Dropout(dropout, impl=impl, seed=seed)))
    layers.append(("fc3", Linear(84, num_classes, **o)))
    return Sequential(OrderedDict(layers))


@_named
def vgg_cifar(
    in_channels: int = 3, num_classes: int = 10, input_size: Any = 32, impl: str = "fast",
    dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """The course's VGG-ish CIFAR network.

    c3-16, c16-16, mp, c16-32, c32-32, mp, c32-64, c64-64, mp, c64-128, c128-128 (3×3,
    pad 1, ReLU; mp = max 2×2 s2), adaptive average pool to 1×1, flatten, fc 128→10. Keys
    ``features.0.weight`` … ``features.18.bias``, ``classifier.weight``. The adaptive pool
    makes it work for any input of at least 8×8.

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    layers: list[Module] = []
    c_in = in_channels
    for stage, c_out in enumerate([16, 32, 64, 128]):
        if stage:
            layers.append(MaxPool2d(2, impl=impl))
        for _ in range(2):
            layers += [Conv2d(c_in, c_out, 3, padding=1, **o), ReLU(impl)]
            c_in = c_out
    features = Sequential(*layers)
    _features_out("vgg_cifar", features, in_channels, input_size)
    return Sequential(OrderedDict([
        ("features", features),
        ("avgpool", AdaptiveAvgPool2d(1, impl=impl)),
        ("flatten", Flatten(impl=impl)),
        ("classifier", Linear(128, num_classes, **o)),
    ]))


@_named
def alexnet(
    in_channels: int = 3, num_classes: int = 1000, input_size: Any = 224, dropout: float = 0.5,
    impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> Sequential:
    """torchvision's AlexNet, with torchvision's keys (``features.0.weight``,
    ``classifier.1.weight``, …): 61,100,840 parameters at 1000 classes.

    features: conv 64 11×11 s4 p2, ReLU, max 3 s2, conv 192 5×5 p2, ReLU, max 3 s2,
    conv 384 3×3 p1, ReLU, conv 256 3×3 p1, ReLU, conv 256 3×3 p1, ReLU, max 3 s2;
    avgpool adaptive 6×6; classifier: dropout, fc 9216→4096, ReLU, dropout, fc 4096→4096,
    ReLU, fc 4096→num_classes.

    Returns:
        A ``Sequential``: (N, in_channels, 224, 224) → logits (N, num_classes).
    """
    o = _opts(impl, dtype, rng)
    features = Sequential(
        Conv2d(in_channels, 64, 11, stride=4, padding=2, **o), ReLU(impl),
        MaxPool2d(3, 2, impl=impl),
        Conv2d(64, 192, 5, padding=2, **o), ReLU(impl), MaxPool2d(3, 2, impl=impl),
        Conv2d(192, 384, 3, padding=1, **o), ReLU(impl),
        Conv2d(384, 256, 3, padding=1, **o), ReLU(impl),
        Conv2d(256, 256, 3, padding=1, **o), ReLU(impl), MaxPool2d(3, 2, impl=impl),
    )
    _features_out("alexnet", features, in_channels, input_size)
    rngs = np.random.default_rng(seed).spawn(2)
    classifier = Sequential(
        Dropout(dropout, impl=impl, rng=rngs[0]), Linear(256 * 6 * 6, 4096, **o), ReLU(impl),
        Dropout(dropout, impl=impl, rng=rngs[1]), Linear(4096, 4096, **o), ReLU(impl),
        Linear(4096, num_classes, **o),
    )
    return Sequential(OrderedDict([
        ("features", features), ("avgpool", AdaptiveAvgPool2d(6, impl=impl)),
        ("flatten", Flatten(impl=impl)), ("classifier", classifier),
    ]))


@_named
def resnet_cifar(
    depth: int = 20, in_channels: int = 3, num_classes: int = 10, input_size: Any = 32,
    impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
) -> Sequential:
    """A CIFAR ResNet (He et al. 2016, depth = 6n + 2) built from ``ResidualBlock``.

    conv1 3×3 16 → BN → ReLU → layer1 (n blocks, 16 ch) → layer2 (n blocks, 32 ch, first
    stride 2) → layer3 (n blocks, 64 ch, first stride 2) → adaptive avg pool 1×1 → fc 64→10.
    Shortcuts are 1×1 projections where shapes change. Keys ``conv1.weight``,
    ``layer2.0.shortcut.0.weight``, ``fc.weight``, …

    Returns:
        A ``Sequential``: (N, in_channels, H, W) → logits (N, num_classes).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet_cifar: depth must be 6n + 2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    o = _opts(impl, dtype, rng)
    layers: list[tuple[str, Module]] = [
        ("conv1", Conv2d(in_channels, 16, 3, padding=1, bias=False, **o)),
        ("bn1", BatchNorm2d(16, impl=impl, dtype=dtype)), ("relu", ReLU(impl)),
    ]
    c_in = 16
    for stage, c_out in enumerate([16, 32, 64], start=1):
        blocks = []
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            blocks.append(ResidualBlock(c_in, c_out, stride, **o))
            c_in = c_out
        layers.append((f"layer{stage}", Sequential(*blocks)))
    _features_out("resnet_cifar", Sequential(OrderedDict(layers)), in_channels, input_size)
    layers += [("avgpool", AdaptiveAvgPool2d(1, impl=impl)), ("flatten", Flatten(impl=impl)),
               ("fc", Linear(64, num_classes, **o))]
    return Sequential(OrderedDict(layers))
