"""PyTorch-shaped modules: parameters, layers, containers, losses."""

from glasscnn.nn.containers import ResidualBlock, Sequential
from glasscnn.nn.hooks import (
    RemovableHandle,
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from glasscnn.nn.init import manual_seed
from glasscnn.nn.layers import (
    AdaptiveAvgPool2d,
    Add,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
)
from glasscnn.nn.loss import CrossEntropyLoss
from glasscnn.nn.module import BackwardOrderError, Module, Parameter

__all__ = [
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool2d",
    "BackwardOrderError",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "RemovableHandle",
    "ResidualBlock",
    "Sequential",
    "Sigmoid",
    "manual_seed",
    "register_module_forward_hook",
    "register_module_forward_pre_hook",
]
