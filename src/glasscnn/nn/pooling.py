"""Pooling modules beside the 2-D window pools of ``glasscnn.nn.layers``: adaptive max
pooling, and 1-D max and average pooling run by the 2-D kernels on a (1, L) plane."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.kernels._common import check_ndim, pair
from glasscnn.nn.layers import _check_shape_ndim
from glasscnn.nn.module import Module


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size with PyTorch's bins.

    Bin i along an axis of length H spans [floor(i·H/out), ceil((i+1)·H/out)).
    ``return_indices=True`` makes ``forward`` return ``(out, indices)``, each output's
    argmax as a flat index ``h·W + w`` into its (n, c) plane.

    Shapes: (N, C, H, W) → (N, C, out_h, out_w).
    """

    def __init__(self, output_size: int | tuple[int, int], return_indices: bool = False,
                 impl: str = "fast") -> None:
        super().__init__()
        self.output_size = pair(output_size, "output_size", "AdaptiveMaxPool2d")
        if min(self.output_size) <= 0:
            raise ValueError(f"AdaptiveMaxPool2d: output_size must be > 0, got {output_size}")
        self.return_indices = bool(return_indices)
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """(N, C, H, W) → (N, C, out_h, out_w), and the indices if ``return_indices``."""
        out, self._cache = K.adaptive_max_pool2d_forward(x, self.output_size, impl=self.impl)
        if self.return_indices:
            return out, K.adaptive_max_pool2d_indices(self._cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Route each output gradient to its bin's argmax."""
        return K.adaptive_max_pool2d_backward(dout, self._cache)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, H, W) → (N, C, out_h, out_w)."""
        _check_shape_ndim("AdaptiveMaxPool2d", input_shape, (4,))
        return (input_shape[0], input_shape[1], *self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def _single(value: Any, name: str, owner: str) -> int:
    """An int, or a 1-tuple of one (PyTorch's ``_single``), as an int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {name} must be an int, got {value!r}")
    return int(value)


class _Pool1d(Module):
    """A 1-D window pool: (N, C, L) (or (C, L)) seen as (N, C, 1, L) by the 2-D kernel."""

    def __init__(self, kernel_size: int, stride: int | None, padding: int, impl: str) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _single(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else _single(stride, "stride", name)
        self.padding = _single(padding, "padding", name)
        self.impl = impl
        self._cache = None
        self._unbatched = False

    def _to_2d(self, x: np.ndarray) -> np.ndarray:
        check_ndim(x, (2, 3), type(self).__name__, "(N, C, L) or (C, L)")
        self._unbatched = x.ndim == 2
        x = np.asarray(x)
        return x[None, :, None, :] if self._unbatched else x[:, :, None, :]

    def _from_2d(self, y: np.ndarray) -> np.ndarray:
        return y[0, :, 0, :] if self._unbatched else y[:, :, 0, :]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/d(input), shaped like the input."""
        dout = np.asarray(dout)
        dout = dout[None, :, None, :] if self._unbatched else dout[:, :, None, :]
        return self._from_2d(self._backward_2d(dout))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, L) → (N, C, L_out), L_out as the 2-D formula along W."""
        _check_shape_ndim(type(self).__name__, input_shape, (2, 3))
        length = K.pool_output_size(input_shape[-1], self.kernel_size, self.stride,
                                    self.padding, getattr(self, "dilation", 1), self.ceil_mode)
        if length <= 0:
            raise ValueError(f"{type(self).__name__}: input {tuple(input_shape)} is too small "
                             f"for kernel_size {self.kernel_size} with padding {self.padding}")
        return (*input_shape[:-1], length)


class MaxPool1d(_Pool1d):
    """1-D max pooling over (N, C, L) or (C, L), PyTorch's arguments.

    ``return_indices=True`` makes ``forward`` return ``(out, indices)``, indices into L.

    Shapes: (N, C, L) → (N, C, L_out), L_out = floor((L + 2P − D(K − 1) − 1) / S) + 1.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 dilation: int = 1, return_indices: bool = False, ceil_mode: bool = False,
                 impl: str = "fast") -> None:
        super().__init__(kernel_size, stride, padding, impl)
        self.dilation = _single(dilation, "dilation", "MaxPool1d")
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """(N, C, L) → (N, C, L_out), and the indices if ``return_indices``."""
        out, self._cache = K.max_pool2d_forward(
            self._to_2d(x), (1, self.kernel_size), (1, self.stride), (0, self.padding),
            (1, self.dilation), self.ceil_mode, impl=self.impl)
        if self.return_indices:
            return self._from_2d(out), self._from_2d(K.max_pool2d_indices(self._cache))
        return self._from_2d(out)

    def _backward_2d(self, dout: np.ndarray) -> np.ndarray:
        return K.max_pool2d_backward(dout, self._cache)[0]

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool1d(_Pool1d):
    """1-D average pooling over (N, C, L) or (C, L), PyTorch's arguments.

    Shapes: (N, C, L) → (N, C, L_out), L_out = floor((L + 2P − K) / S) + 1.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 impl: str = "fast") -> None:
        super().__init__(kernel_size, stride, padding, impl)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, L) → (N, C, L_out)."""
        out, self._cache = K.avg_pool2d_forward(
            self._to_2d(x), (1, self.kernel_size), (1, self.stride), (0, self.padding),
            self.ceil_mode, self.count_include_pad, impl=self.impl)
        return self._from_2d(out)

    def _backward_2d(self, dout: np.ndarray) -> np.ndarray:
        return K.avg_pool2d_backward(dout, self._cache)[0]

    def extra_repr(self) -> str:
        return (f"kernel_size=({self.kernel_size},), stride=({self.stride},), "
                f"padding=({self.padding},)")
