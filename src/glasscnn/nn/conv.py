"""Convolution modules beyond Conv2d: the transposed convolution and the 1-D convolution."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.kernels._common import pair
from glasscnn.kernels.conv.conv2d import check_groups
from glasscnn.nn.layers import conv_extra_repr, kaiming_parameters
from glasscnn.nn.module import Module


class ConvTranspose2d(Module):
    """Transposed 2-D convolution ("deconvolution", upsampling), the adjoint of Conv2d.

    Args:
        in_channels, out_channels: C_in and C_out.
        kernel_size, stride, padding, dilation: int or (h, w) pair; padding P crops P
            rows/columns from each side of the full output.
        output_padding: int or pair, smaller than the stride or the dilation: rows/columns
            added at the bottom/right.
        groups: G, dividing C_in and C_out.
        bias: whether to learn a bias of shape (C_out,).
        impl: ``"fast"`` or ``"naive"`` kernels.
        dtype: parameter dtype (float32 by default).
        rng: generator for the initial weights (default: ``glasscnn.nn.init.default_rng()``).

    Parameters: ``weight`` (C_in, C_out/G, kH, kW), ``bias`` (C_out,), as PyTorch's.
    Shapes: input (N, C_in, H, W) → output (N, C_out, H_out, W_out) with
    H_out = (H − 1)·S − 2P + D(K−1) + output_padding + 1, likewise W_out.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0, groups: int = 1, bias: bool = True,
        dilation: int | tuple[int, int] = 1, impl: str = "fast", dtype: Any = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        name = "ConvTranspose2d"
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"{name}: channels must be > 0, got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        check_groups(groups, in_channels, out_channels, name)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name)
        self.output_padding = pair(output_padding, "output_padding", name)
        self.dilation = pair(dilation, "dilation", name)
        if min(*self.kernel_size, *self.stride, *self.dilation) <= 0:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be > 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.dilation}")
        if any(op >= max(s, d) for op, s, d in
               zip(self.output_padding, self.stride, self.dilation, strict=True)):
            raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller "
                             f"than the stride {self.stride} or the dilation {self.dilation}")
        self.impl = impl
        # PyTorch's fan_in of a transposed conv's weight: its dimension 1 times the kernel
        fan_in = out_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = kaiming_parameters(
            (in_channels, out_channels // groups, *self.kernel_size), out_channels, fan_in,
            bias, rng, dtype)
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, C_out, H_out, W_out)."""
        out, self._cache = K.conv_transpose2d_forward(
            x, self.weight.data, None if self.bias is None else self.bias.data,
            self.stride, self.padding, self.output_padding, self.groups, self.dilation,
            impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate dW (and db); return dx of shape (N, C_in, H, W), or None if not needed."""
        dx, dw, db = K.conv_transpose2d_backward(dout, self._cache, need_dx=self.input_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C_in, H, W) → (N, C_out, H_out, W_out)."""
        if len(input_shape) != 4 or any(int(d) <= 0 for d in input_shape):
            raise ValueError(f"ConvTranspose2d: expected a shape of 4 positive dimensions, "
                             f"got {tuple(input_shape)}")
        if input_shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d: expected {self.in_channels} input channels, "
                             f"got shape {tuple(input_shape)}")
        hw = tuple(K.transposed_output_size(
            input_shape[2 + a], self.kernel_size[a], self.stride[a], self.padding[a],
            self.output_padding[a], self.dilation[a]) for a in (0, 1))
        if min(hw) <= 0:
            raise ValueError(f"ConvTranspose2d: input {tuple(input_shape[2:])} gives a "
                             f"non-positive output size {hw}")
        return (input_shape[0], self.out_channels, *hw)

    def extra_repr(self) -> str:
        return conv_extra_repr(self, padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                               groups=1)


def _single(value: Any, name: str) -> int:
    """An int, or the int of a 1-tuple (PyTorch's 1-d arguments), else a ValueError."""
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"Conv1d: {name} must be an int or a 1-tuple, got {value!r}")
    return int(value)


class Conv1d(Module):
    """1-D convolution over (N, C, L) input, run by the 2-D kernels on (N, C, 1, L).

    Args:
        in_channels, out_channels: C_in and C_out.
        kernel_size, stride, dilation: int (or 1-tuple).
        padding: int (or 1-tuple), ``"valid"`` or ``"same"`` (stride 1; an even span's
            extra zero on the right, as PyTorch).
        groups: G, dividing C_in and C_out (G = C_in: depthwise).
        bias: whether to learn a bias of shape (C_out,).
        impl: ``"fast"`` or ``"naive"`` kernels.
        dtype: parameter dtype (float32 by default).
        rng: generator for the initial weights (default: ``glasscnn.nn.init.default_rng()``).

    Parameters: ``weight`` (C_out, C_in/G, K), ``bias`` (C_out,), as PyTorch's.
    Shapes: input (N, C_in, L) → output (N, C_out, L_out) with
    L_out = floor((L + 2P − D(K−1) − 1) / S) + 1 (``"same"``: L_out = L).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1, padding: int | tuple[int] | str = 0,
        dilation: int | tuple[int] = 1, groups: int = 1, bias: bool = True,
        impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"Conv1d: channels must be > 0, got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        check_groups(groups, in_channels, out_channels, "Conv1d")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (_single(kernel_size, "kernel_size"),)
        self.stride = (_single(stride, "stride"),)
        self.dilation = (_single(dilation, "dilation"),)
        if min(self.kernel_size[0], self.stride[0], self.dilation[0]) <= 0:
            raise ValueError(f"Conv1d: kernel_size, stride and dilation must be > 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.dilation}")
        if not isinstance(padding, str):
            padding = (_single(padding, "padding"),)
        begin, end = K.conv_padding(padding if isinstance(padding, str) else (0, padding[0]),
                                    (1, self.kernel_size[0]), (1, self.stride[0]),
                                    (1, self.dilation[0]), "Conv1d")
        self._pads = (begin[1], end[1])
        self.padding = padding
        self.impl = impl
        fan_in = in_channels // groups * self.kernel_size[0]
        self.weight, self.bias = kaiming_parameters(
            (out_channels, in_channels // groups, self.kernel_size[0]), out_channels, fan_in,
            bias, rng, dtype)
        self._cache = None

    def pads(self) -> tuple[int, int]:
        """The zeros added ``(left, right)``."""
        return self._pads

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, L) → (N, C_out, L_out)."""
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"Conv1d: expected input of shape (N, C_in, L), got shape "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        padding = self.padding if isinstance(self.padding, str) else (0, self.padding[0])
        out, self._cache = K.conv2d_forward(
            x[:, :, None, :], self.weight.data[:, :, None, :],
            None if self.bias is None else self.bias.data, (1, self.stride[0]), padding,
            (1, self.dilation[0]), self.groups, impl=self.impl)
        return out[:, :, 0, :]

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate dW (and db); return dx of shape (N, C_in, L), or None if not needed."""
        dout = np.asarray(dout)
        dx, dw, db = K.conv2d_backward(dout[:, :, None, :], self._cache,
                                       need_dx=self.input_grad)
        self.weight.accumulate(dw[:, :, 0, :])
        if self.bias is not None:
            self.bias.accumulate(db)
        return None if dx is None else dx[:, :, 0, :]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C_in, L) → (N, C_out, L_out)."""
        if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
            raise ValueError(f"Conv1d: expected a shape of 3 positive dimensions, "
                             f"got {tuple(input_shape)}")
        if input_shape[1] != self.in_channels:
            raise ValueError(f"Conv1d: expected {self.in_channels} input channels, "
                             f"got shape {tuple(input_shape)}")
        left, right = self._pads
        length = K.conv_output_size(input_shape[2] + left + right, self.kernel_size[0],
                                    self.stride[0], 0, self.dilation[0])
        if length <= 0:
            raise ValueError(f"Conv1d: input length {input_shape[2]} is too small for kernel "
                             f"{self.kernel_size} with padding {self.padding} and dilation "
                             f"{self.dilation}")
        return (input_shape[0], self.out_channels, length)

    def extra_repr(self) -> str:
        return conv_extra_repr(self, padding=(0,), dilation=(1,), groups=1)
