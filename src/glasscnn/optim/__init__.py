"""Optimizers, learning-rate schedules and gradient clipping, matching ``torch.optim``."""

from glasscnn.optim.adam import Adam, AdamW
from glasscnn.optim.clip import clip_grad_norm_
from glasscnn.optim.optimizer import Optimizer
from glasscnn.optim.rmsprop import RMSprop
from glasscnn.optim.schedules import (
    CosineAnnealingLR,
    LinearWarmup,
    LRSchedule,
    OneCycleLR,
    StepLR,
)
from glasscnn.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRSchedule",
    "LinearWarmup",
    "OneCycleLR",
    "Optimizer",
    "RMSprop",
    "StepLR",
    "clip_grad_norm_",
]
