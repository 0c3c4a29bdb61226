"""Activation modules beyond ReLU and Sigmoid, with PyTorch's constructor arguments.

Each is parameter-free (an empty state_dict, as in PyTorch) and keeps the input's shape.
``inplace`` is accepted for PyTorch's signature; the output is always a new array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.nn.layers import _Elementwise


class _Activation(_Elementwise):
    """An elementwise activation whose kernel pair is ``_forward`` / ``_backward``."""

    _forward: Any = None
    _backward: Any = None

    def __init__(self, inplace: bool = False, impl: str = "fast") -> None:
        super().__init__(impl)
        self.inplace = inplace

    def _options(self) -> dict[str, Any]:
        return {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → same shape."""
        out, self._cache = type(self)._forward(x, impl=self.impl, **self._options())
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout · f'(x)."""
        return type(self)._backward(dout, self._cache)[0]

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Tanh(_Activation):
    """tanh(x), any shape."""

    _forward, _backward = K.tanh_forward, K.tanh_backward

    def __init__(self, impl: str = "fast") -> None:
        super().__init__(False, impl)


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope · x, any shape.

    Args:
        negative_slope: slope for x ≤ 0 (default 0.01, as PyTorch).
        inplace: accepted for PyTorch's signature.
        impl: ``"fast"`` or ``"naive"``.
    """

    _forward, _backward = K.leaky_relu_forward, K.leaky_relu_backward

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False,
                 impl: str = "fast") -> None:
        super().__init__(inplace, impl)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise ValueError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _options(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ReLU6(_Activation):
    """min(max(x, 0), 6), any shape (MobileNetV2)."""

    _forward, _backward = K.relu6_forward, K.relu6_backward


class Hardswish(_Activation):
    """x · min(max(x + 3, 0), 6) / 6, any shape (MobileNetV3)."""

    _forward, _backward = K.hardswish_forward, K.hardswish_backward


class SiLU(_Activation):
    """x · σ(x) (swish), any shape."""

    _forward, _backward = K.silu_forward, K.silu_backward


class GELU(_Activation):
    """x · Φ(x) with Φ the standard normal CDF (the exact, erf form), any shape.

    Args:
        approximate: ``"none"`` (the only form implemented; PyTorch's ``"tanh"`` raises).
        impl: ``"fast"`` or ``"naive"``.
    """

    _forward, _backward = K.gelu_forward, K.gelu_backward

    def __init__(self, approximate: str = "none", impl: str = "fast") -> None:
        super().__init__(False, impl)
        if approximate != "none":
            raise ValueError(f"GELU: only approximate='none' is implemented, got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def _implicit_dim(ndim: int) -> int:
    """PyTorch's legacy axis for ``Softmax(dim=None)``: 0 for 0-, 1- and 3-D input, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxBase(_Activation):
    """Softmax-like over one axis ``dim`` (``None``: PyTorch's legacy implicit choice)."""

    def __init__(self, dim: int | None = None, impl: str = "fast") -> None:
        super().__init__(False, impl)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)):
            raise ValueError(f"{type(self).__name__}: dim must be an int or None, got {dim!r}")
        self.dim = dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → same shape, normalised along ``dim``."""
        dim = _implicit_dim(np.ndim(x)) if self.dim is None else self.dim
        out, self._cache = type(self)._forward(x, dim, impl=self.impl)
        return out

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """exp(x_i) / Σ_j exp(x_j) along ``dim``, any shape.

    Args:
        dim: the axis to normalise along.
        impl: ``"fast"`` or ``"naive"``.
    """

    _forward, _backward = K.softmax_forward, K.softmax_backward


class LogSoftmax(_SoftmaxBase):
    """x_i − log Σ_j exp(x_j) along ``dim``, any shape.

    Args:
        dim: the axis to normalise along.
        impl: ``"fast"`` or ``"naive"``.
    """

    _forward, _backward = K.log_softmax_forward, K.log_softmax_backward
