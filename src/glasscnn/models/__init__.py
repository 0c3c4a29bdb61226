"""The model zoo: the networks CNN users study, by name.

``get(name, **kwargs)`` builds one; ``available()`` lists them with their default input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glasscnn.models.densenet import densenet121
from glasscnn.models.googlenet import googlenet
from glasscnn.models.lenet5 import lenet5
from glasscnn.models.mobilenetv2 import mobilenet_v2
from glasscnn.models.resnet import resnet18, resnet34, resnet50, resnet101
from glasscnn.models.shufflenetv2 import shufflenet_v2_x1_0
from glasscnn.models.squeezenet import squeezenet1_0, squeezenet1_1
from glasscnn.models.vgg import (
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
)
from glasscnn.models.zoo import (
    alexnet,
    alexnet_cifar33,
    lenet_bn,
    mnist_net,
    resnet_cifar,
    three_layer_convnet,
    vgg_cifar,
)
from glasscnn.nn import Sequential

REGISTRY: dict[str, tuple[Callable[..., Sequential], tuple[int, int, int], str]] = {
    "alexnet_cifar33": (alexnet_cifar33, (3, 33, 33), "CIFAR AlexNet-like network, no biases"),
    "mnist_net": (mnist_net, (1, 28, 28), "MNIST network of the loop-nest lab"),
    "three_layer_convnet": (three_layer_convnet, (3, 32, 32), "conv-relu-pool-fc-relu-fc"),
    "lenet_bn": (lenet_bn, (3, 32, 32), "LeNet with batch norm and dropout"),
    "vgg_cifar": (vgg_cifar, (3, 32, 32), "VGG-ish, 10 convs + adaptive pool"),
    "alexnet": (alexnet, (3, 224, 224), "torchvision AlexNet layout"),
    "resnet_cifar": (resnet_cifar, (3, 32, 32), "CIFAR ResNet-20 (6n+2) with projections"),
    "resnet18": (resnet18, (3, 224, 224), "torchvision ResNet-18"),
    "resnet34": (resnet34, (3, 224, 224), "torchvision ResNet-34"),
    "resnet50": (resnet50, (3, 224, 224), "torchvision ResNet-50"),
    "resnet101": (resnet101, (3, 224, 224), "torchvision ResNet-101"),
    "vgg11": (vgg11, (3, 224, 224), "torchvision VGG-11"),
    "vgg11_bn": (vgg11_bn, (3, 224, 224), "torchvision VGG-11 with batch norm"),
    "vgg13": (vgg13, (3, 224, 224), "torchvision VGG-13"),
    "vgg13_bn": (vgg13_bn, (3, 224, 224), "torchvision VGG-13 with batch norm"),
    "vgg16": (vgg16, (3, 224, 224), "torchvision VGG-16"),
    "vgg16_bn": (vgg16_bn, (3, 224, 224), "torchvision VGG-16 with batch norm"),
    "vgg19": (vgg19, (3, 224, 224), "torchvision VGG-19"),
    "vgg19_bn": (vgg19_bn, (3, 224, 224), "torchvision VGG-19 with batch norm"),
    "lenet5": (lenet5, (1, 32, 32), "LeNet-5: tanh, average pooling (LeCun et al. 1998)"),
    "mobilenet_v2": (mobilenet_v2, (3, 224, 224), "torchvision MobileNetV2"),
    "squeezenet1_0": (squeezenet1_0, (3, 224, 224), "torchvision SqueezeNet 1.0"),
    "squeezenet1_1": (squeezenet1_1, (3, 224, 224), "torchvision SqueezeNet 1.1"),
    "shufflenet_v2_x1_0": (shufflenet_v2_x1_0, (3, 224, 224), "torchvision ShuffleNetV2 x1.0"),
    "densenet121": (densenet121, (3, 224, 224), "torchvision DenseNet-121"),
    "googlenet": (googlenet, (3, 224, 224), "torchvision GoogLeNet, no auxiliary heads"),
}


def available() -> list[dict[str, Any]]:
    """One dict per model: ``name``, ``input_shape`` (C, H, W) and ``description``."""
    return [
        {"name": name, "input_shape": shape, "description": desc}
        for name, (_, shape, desc) in REGISTRY.items()
    ]


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) input the model is defined for."""
    return _entry(name)[1]


def get(name: str, **kwargs: Any) -> Sequential:
    """Build the zoo model ``name`` with the builder's keyword arguments.

    Args:
        name: one of ``REGISTRY``'s keys.
        **kwargs: passed to the builder (``in_channels``, ``num_classes``, ``input_size``,
            ``impl``, ``dtype``, ``rng`` and the model's own options).

    Returns:
        The model, a ``glasscnn.nn.Sequential``, carrying its ``name`` and one sample's
        ``input_shape`` (C, H, W) for reports, charts and the notebook display.
    """
    builder, (c, h, w), _ = _entry(name)
    model = builder(**kwargs)
    if getattr(model, "name", None) is None:
        model.name = name
    if getattr(model, "input_shape", None) is None:
        model.input_shape = (int(kwargs.get("in_channels", c)), h, w)
    return model


def _entry(name: str) -> tuple[Callable[..., Sequential], tuple[int, int, int], str]:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = [
    "REGISTRY",
    "alexnet",
    "alexnet_cifar33",
    "available",
    "default_input_shape",
    "densenet121",
    "get",
    "googlenet",
    "lenet5",
    "lenet_bn",
    "mnist_net",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet_cifar",
    "shufflenet_v2_x1_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "three_layer_convnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg_cifar",
]
