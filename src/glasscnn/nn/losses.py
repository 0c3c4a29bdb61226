"""Loss modules beside cross-entropy (``glasscnn.nn.loss``): MSE, NLL and binary
cross-entropy with logits, with PyTorch's constructor arguments.

A loss is called as ``loss = criterion(input, target)``; ``criterion.backward(dout=1.0)``
then returns dL/d(input) (``dout`` shaped like the loss for ``reduction="none"``).
``state_dict()`` holds the weights given to the constructor under PyTorch's buffer names.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.kernels.losses import check_reduction


class _Loss:
    """Shared body: the kernel pair, the reduction, the cache of the last call."""

    _forward: Any = None
    _backward: Any = None
    _buffers: tuple[str, ...] = ()

    def __init__(self, reduction: str = "mean", impl: str = "fast") -> None:
        check_reduction(reduction, type(self).__name__)
        self.reduction = reduction
        self.impl = impl
        self._cache = None

    def _options(self) -> dict[str, Any]:
        return {}

    def __call__(self, input: np.ndarray, target: np.ndarray) -> np.ndarray:
        loss, self._cache = type(self)._forward(
            input, target, reduction=self.reduction, impl=self.impl, **self._options()
        )
        return loss

    def backward(self, dout: Any = 1.0) -> np.ndarray:
        """dL/d(input), shaped like the input."""
        if self._cache is None:
            raise ValueError(f"{type(self).__name__}: backward called before the loss was "
                             "computed")
        return type(self)._backward(dout, self._cache)[0]

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """The weight arrays given to the constructor, under PyTorch's names."""
        return OrderedDict((name, np.array(getattr(self, name))) for name in self._buffers
                           if getattr(self, name) is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _weight_array(weight: Any, name: str, owner: str) -> np.ndarray | None:
    """``weight`` as a float array (``None`` stays ``None``), or ``ValueError``."""
    if weight is None:
        return None
    arr = np.asarray(weight)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{owner}: {name} must be a real array, got dtype {arr.dtype}")
    return arr.astype(np.float64 if arr.dtype == np.float64 else np.float32)


class MSELoss(_Loss):
    """Mean squared error ``(input − target)²``, reduced by ``reduction``.

    Args:
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        impl: ``"fast"`` or ``"naive"``.

    Shapes: input and target of the same shape → a 0-d array (or that shape for "none").
    """

    _forward, _backward = K.mse_loss_forward, K.mse_loss_backward


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices given log-probabilities (e.g. a
    ``LogSoftmax`` output): ``−weight[y] · input[y]`` per target.

    Args:
        weight: optional per-class weights, shape (C,).
        ignore_index: a label value whose targets count nowhere (default −100).
        reduction: ``"mean"`` (divided by the sum of the targets' weights), ``"sum"`` or
            ``"none"``.
        impl: ``"fast"`` or ``"naive"``.

    Shapes: input (N, C) or (N, C, d1, …), target (N,) or (N, d1, …) integers.
    """

    _forward, _backward = K.nll_loss_forward, K.nll_loss_backward
    _buffers = ("weight",)

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 impl: str = "fast") -> None:
        super().__init__(reduction, impl)
        self.weight = _weight_array(weight, "weight", "NLLLoss")
        self.ignore_index = ignore_index

    def _options(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index}


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of ``sigmoid(input)`` against targets in [0, 1], computed
    stably from the logits.

    Args:
        weight: optional rescaling weight, broadcast to the input's shape.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        pos_weight: optional weight of the positive targets, broadcast to the input's shape
            (shape (C,) weighs the classes of the last axis).
        impl: ``"fast"`` or ``"naive"``.

    Shapes: input and target of the same shape → a 0-d array (or that shape for "none").
    """

    _forward = K.binary_cross_entropy_with_logits_forward
    _backward = K.binary_cross_entropy_with_logits_backward
    _buffers = ("weight", "pos_weight")

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None,
                 impl: str = "fast") -> None:
        super().__init__(reduction, impl)
        self.weight = _weight_array(weight, "weight", "BCEWithLogitsLoss")
        self.pos_weight = _weight_array(pos_weight, "pos_weight", "BCEWithLogitsLoss")

    def _options(self) -> dict[str, Any]:
        return {"weight": self.weight, "pos_weight": self.pos_weight}
