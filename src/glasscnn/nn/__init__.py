"""PyTorch-shaped modules: parameters, layers, containers, losses."""

from glasscnn.nn.containers import ResidualBlock, Sequential
from glasscnn.nn.conv import Conv1d, ConvTranspose2d
from glasscnn.nn.init import manual_seed
from glasscnn.nn.layers import (
    AdaptiveAvgPool2d,
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
from glasscnn.nn.module import Module, Parameter

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "ResidualBlock",
    "Sequential",
    "Sigmoid",
    "manual_seed",
]
