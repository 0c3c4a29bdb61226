"""PyTorch-shaped modules: parameters, layers, containers, losses."""

from glasscnn.nn.module import Module, Parameter

__all__ = ["Module", "Parameter"]
