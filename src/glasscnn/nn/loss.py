"""Loss modules."""

from __future__ import annotations

import numpy as np

from glasscnn import kernels as K


class CrossEntropyLoss:
    """Mean softmax cross-entropy over logits: ``loss = criterion(logits, labels)``.

    Then ``dlogits = criterion.backward()`` gives dL/dlogits of shape (N, K).

    Args:
        impl: ``"fast"`` or ``"naive"``.

    Shapes: logits (N, K), labels (N,) integers in [0, K) → a 0-d array.
    """

    def __init__(self, impl: str = "fast") -> None:
        self.impl = impl
        self._cache = None

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        loss, self._cache = K.softmax_cross_entropy_forward(logits, labels, impl=self.impl)
        return loss

    def backward(self, dout: float = 1.0) -> np.ndarray:
        """dL/dlogits = dout · (softmax(logits) − onehot(labels)) / N."""
        if self._cache is None:
            raise ValueError("CrossEntropyLoss: backward called before the loss was computed")
        return K.softmax_cross_entropy_backward(dout, self._cache)[0]

    def __repr__(self) -> str:
        return "CrossEntropyLoss()"
