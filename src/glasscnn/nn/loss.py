"""Loss modules."""

from __future__ import annotations

from typing import Any

from glasscnn import kernels as K
from glasscnn.nn.losses import _Loss, _weight_array


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over logits: ``loss = criterion(logits, labels)``, with
    PyTorch's options.

    Then ``dlogits = criterion.backward()`` gives dL/dlogits, shaped like the logits.

    Args:
        weight: optional per-class weights, shape (C,).
        ignore_index: a label value whose targets count nowhere (default −100).
        reduction: ``"mean"`` (divided by the sum of the targets' weights, the count of
            targets not ignored without weights), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1]: the target is (1 − ε)·onehot + ε/C.
        impl: ``"fast"`` or ``"naive"``.

    Shapes: logits (N, C) or (N, C, d1, …), labels (N,) or (N, d1, …) integers in [0, C)
    → a 0-d array (or the labels' shape for ``"none"``).
    """

    _forward, _backward = K.softmax_cross_entropy_forward, K.softmax_cross_entropy_backward
    _buffers = ("weight",)

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, impl: str = "fast") -> None:
        super().__init__(reduction, impl)
        self.weight = _weight_array(weight, "weight", "CrossEntropyLoss")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _options(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index,
                "label_smoothing": self.label_smoothing}
