"""Per-sample normalisation modules: ``GroupNorm`` and ``LayerNorm``, with PyTorch's
arguments and state_dict keys (``weight``, ``bias``); the math is in
``glasscnn.kernels.feature_norm``."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.nn.layers import _check_shape_ndim
from glasscnn.nn.module import Module, Parameter


class _AffineNorm(Module):
    """Shared body: optional γ (ones) and β (zeros) of ``param_shape``, and the backward."""

    _backward: Any = None

    def _make_params(self, param_shape: tuple[int, ...], weight: bool, bias: bool,
                     dtype: Any) -> None:
        self.weight = Parameter(np.ones(param_shape, dtype=dtype)) if weight else None
        self.bias = Parameter(np.zeros(param_shape, dtype=dtype)) if bias else None
        self._cache = None

    def _data(self) -> tuple[Any, Any]:
        return (None if self.weight is None else self.weight.data,
                None if self.bias is None else self.bias.data)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Accumulate dγ, dβ; return dx shaped like the input."""
        dx, dw, db = type(self)._backward(dout, self._cache)
        if self.weight is not None:
            self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class GroupNorm(_AffineNorm):
    """Group normalisation: per sample, the channels split into ``num_groups`` groups, each
    normalised by its own mean and variance, then a per-channel affine map.

    Args:
        num_groups: G, dividing ``num_channels``.
        num_channels: C.
        eps: added to the variance before the square root.
        affine: learn γ (``weight``, ones) of shape (C,).
        bias: with ``affine``, also learn β (``bias``, zeros) (keyword-only, as PyTorch).
        impl: ``"fast"`` or ``"naive"``.
        dtype: parameter dtype (float32 by default).

    Shapes: (N, C, *) → the same shape.
    """

    _backward = K.group_norm_backward

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, impl: str = "fast", dtype: Any = np.float32, *,
                 bias: bool = True) -> None:
        super().__init__()
        if (isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0
                or not isinstance(num_channels, int) or num_channels <= 0
                or num_channels % num_groups):
            raise ValueError(f"GroupNorm: num_groups must be a positive int dividing "
                             f"num_channels, got num_groups={num_groups!r}, "
                             f"num_channels={num_channels!r}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.affine = affine
        self.impl = impl
        self._make_params((num_channels,), affine, affine and bias, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, *) → same shape."""
        if np.ndim(x) < 2 or np.shape(x)[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input of shape (N, {self.num_channels}, *), "
                             f"got shape {np.shape(x)}")
        out, self._cache = K.group_norm_forward(x, self.num_groups, *self._data(), eps=self.eps,
                                                impl=self.impl)
        return out

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, unchanged."""
        _check_shape_ndim("GroupNorm", input_shape, (2, 3, 4, 5))
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class LayerNorm(_AffineNorm):
    """Layer normalisation over the trailing ``normalized_shape`` axes of each sample, then
    an elementwise affine map.

    Args:
        normalized_shape: the trailing shape to normalise over (an int for one axis).
        eps: added to the variance before the square root.
        elementwise_affine: learn γ (``weight``, ones) of shape ``normalized_shape``.
        bias: with ``elementwise_affine``, also learn β (``bias``, zeros).
        impl: ``"fast"`` or ``"naive"``.
        dtype: parameter dtype (float32 by default).

    Shapes: (*, *normalized_shape) → the same shape.
    """

    _backward = K.layer_norm_backward

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, impl: str = "fast",
                 dtype: Any = np.float32) -> None:
        super().__init__()
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0
                            for d in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got "
                             f"{normalized_shape!r}")
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        self.impl = impl
        self._make_params(shape, elementwise_affine, elementwise_affine and bias, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(*, *normalized_shape) → same shape."""
        out, self._cache = K.layer_norm_forward(x, self.normalized_shape, *self._data(),
                                                eps=self.eps, impl=self.impl)
        return out

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, unchanged."""
        if tuple(input_shape[len(input_shape) - len(self.normalized_shape):]) != (
                self.normalized_shape):
            raise ValueError(f"LayerNorm: expected a shape ending in {self.normalized_shape}, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
