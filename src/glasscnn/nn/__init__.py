"""PyTorch-shaped modules: parameters, layers, containers, losses."""

from glasscnn.nn.activations import (
    GELU,
    Hardswish,
    LeakyReLU,
    LogSoftmax,
    ReLU6,
    SiLU,
    Softmax,
    Tanh,
)
from glasscnn.nn.branching import Concat, Identity
from glasscnn.nn.containers import ResidualBlock, Sequential
from glasscnn.nn.conv import Conv1d, ConvTranspose2d
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
from glasscnn.nn.losses import BCEWithLogitsLoss, MSELoss, NLLLoss
from glasscnn.nn.module import BackwardOrderError, Module, Parameter
from glasscnn.nn.norm import GroupNorm, LayerNorm
from glasscnn.nn.pooling import AdaptiveMaxPool2d, AvgPool1d, MaxPool1d

__all__ = [
    "GELU",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "Add",
    "AvgPool1d",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BackwardOrderError",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GroupNorm",
    "Hardswish",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "ReLU6",
    "RemovableHandle",
    "ResidualBlock",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "manual_seed",
    "register_module_forward_hook",
    "register_module_forward_pre_hook",
]
