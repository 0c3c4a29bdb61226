"""Layers: each holds its parameters and the cache of its last forward; the math is in kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.kernels._common import check_impl, check_ndim, pair
from glasscnn.kernels.conv.conv2d import check_groups
from glasscnn.nn.init import default_rng, kaiming_uniform
from glasscnn.nn.module import Module, Parameter


def _check_shape_ndim(name: str, input_shape: tuple[int, ...], ndims: tuple[int, ...]) -> None:
    if len(input_shape) not in ndims or any(int(d) <= 0 for d in input_shape):
        raise ValueError(
            f"{name}: expected a shape of {' or '.join(map(str, ndims))} positive dimensions, "
            f"got {tuple(input_shape)}"
        )


def kaiming_parameters(weight_shape: tuple[int, ...], out_features: int, fan_in: int,
                       bias: bool, rng: np.random.Generator | None, dtype: Any
                       ) -> tuple[Parameter, Parameter | None]:
    """PyTorch's default initialisation of a conv or linear layer: weight and bias both
    U(−1/√fan_in, 1/√fan_in) (kaiming uniform with a = √5); the bias None without ``bias``."""
    rng = rng or default_rng()
    weight = Parameter(kaiming_uniform(weight_shape, fan_in, rng, dtype))
    return weight, (Parameter(kaiming_uniform((out_features,), fan_in, rng, dtype))
                    if bias else None)


def conv_extra_repr(module: Module, **defaults: Any) -> str:
    """A convolution's arguments as PyTorch prints them: channels, kernel and stride, then
    each attribute of ``defaults`` that differs from its default, and ``bias=False``."""
    s = (f"{module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size}, "
         f"stride={module.stride}")
    for name, default in defaults.items():
        if getattr(module, name) != default:
            s += f", {name}={getattr(module, name)!r}"
    return s + (", bias=False" if module.bias is None else "")


def _window_arg(layer: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """``pair(value)`` after checking both entries are >= ``minimum`` (the raw value echoed)."""
    p = pair(value, name, layer)
    if min(p) < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{layer}: {name} must be {bound}, got {value!r}")
    return p


def _pool_args(layer: str, kernel_size: Any, stride: Any, padding: Any
               ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Checked (kernel, stride, padding) of a pooling layer; the stride defaults to the kernel."""
    kernel = _window_arg(layer, "kernel_size", kernel_size, 1)
    strides = kernel if stride is None else _window_arg(layer, "stride", stride, 1)
    pad = _window_arg(layer, "padding", padding, 0)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"{layer}: padding must be at most half the kernel size, got padding "
                         f"{padding!r} for kernel_size {kernel_size!r}")
    return kernel, strides, pad


def _window_output_shape(
    name: str, input_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], channels: int | None = None,
    ceil_mode: bool = False,
) -> tuple[int, int, int, int]:
    _check_shape_ndim(name, input_shape, (4,))
    n, c, h, w = input_shape
    ho = K.pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = K.pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"{name}: input {h}x{w} is too small for kernel {kernel} with padding {padding} "
            f"and dilation {dilation} (output would be {ho}x{wo})"
        )
    return (n, c if channels is None else channels, ho, wo)


class Conv2d(Module):
    """2-D convolution over NCHW input with OIHW weights.

    Args:
        in_channels, out_channels: C_in and C_out.
        kernel_size, stride, dilation: int or (h, w) pair.
        padding: int, (h, w) pair, ``"valid"`` or ``"same"`` (stride 1; an even kernel's
            extra row/column of zeros on the bottom/right, as PyTorch).
        groups: G, dividing C_in and C_out: each output group sees only its input group
            (G = C_in: depthwise).
        bias: whether to learn a bias of shape (C_out,).
        impl: ``"fast"`` or ``"naive"`` kernels.
        dtype: parameter dtype (float32 by default).
        rng: generator for the initial weights (default: ``glasscnn.nn.init.default_rng()``).

    Parameters: ``weight`` (C_out, C_in/G, kH, kW), ``bias`` (C_out,), as PyTorch's.
    Shapes: input (N, C_in, H, W) → output (N, C_out, H_out, W_out) with
    H_out = floor((H + 2P − D(K−1) − 1) / S) + 1, likewise W_out (``"same"``: H_out = H).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
        impl: str = "fast", dtype: Any = np.float32, rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"Conv2d: channels must be > 0, got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        check_impl(impl, "Conv2d")
        check_groups(groups, in_channels, out_channels, "Conv2d")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _window_arg("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = _window_arg("Conv2d", "stride", stride, 1)
        self.dilation = _window_arg("Conv2d", "dilation", dilation, 1)
        if not isinstance(padding, str):
            _window_arg("Conv2d", "padding", padding, 0)
        # as PyTorch: the pair, or the word ("same", "valid") as given
        self._pads = K.conv_padding(padding, self.kernel_size, self.stride, self.dilation,
                                    "Conv2d")
        self.padding = padding if isinstance(padding, str) else self._pads[0]
        self.impl = impl
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = kaiming_parameters(
            (out_channels, in_channels // groups, *self.kernel_size), out_channels, fan_in,
            bias, rng, dtype)
        self._cache = None

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The zeros added ``((top, left), (bottom, right))`` (see ``kernels.conv_padding``)."""
        return self._pads

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, C_out, H_out, W_out)."""
        return self._run(K.conv2d_forward, x)

    def forward_relu(self, x: np.ndarray) -> np.ndarray:
        """This convolution followed by ReLU in one kernel call (``conv2d_relu_forward``);
        ``backward`` then returns the gradient through both. Shapes as ``forward``."""
        return self._run(K.conv2d_relu_forward, x)

    def _run(self, kernel: Any, x: np.ndarray) -> np.ndarray:
        out, self._cache = kernel(
            x, self.weight.data, None if self.bias is None else self.bias.data,
            stride=self.stride, padding=self.padding, dilation=self.dilation,
            groups=self.groups, impl=self.impl,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate dW (and db); return dx of shape (N, C_in, H, W), or None if not needed."""
        fused = "relu_out" in self._cache
        backward = K.conv2d_relu_backward if fused else K.conv2d_backward
        dx, dw, db = backward(dout, self._cache, need_dx=self.input_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C_in, H, W) → (N, C_out, H_out, W_out)."""
        _check_shape_ndim("Conv2d", input_shape, (4,))
        if input_shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected {self.in_channels} input channels, got shape "
                f"{tuple(input_shape)}"
            )
        (top, left), (bottom, right) = self._pads
        n, c, h, w = input_shape  # an asymmetric padding as the symmetric one of a larger input
        return _window_output_shape(
            "Conv2d", (n, c, h + bottom - top, w + right - left), self.kernel_size,
            self.stride, (top, left), self.dilation, self.out_channels,
        )

    def extra_repr(self) -> str:
        return conv_extra_repr(self, padding=(0, 0), dilation=(1, 1), groups=1)


class Linear(Module):
    """Fully connected layer ``y = x W^T + b`` with W of shape (out_features, in_features).

    Shapes: input (N, in_features) → output (N, out_features).
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, impl: str = "fast",
        dtype: Any = np.float32, rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"Linear: features must be > 0, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        check_impl(impl, "Linear")
        self.in_features, self.out_features = in_features, out_features
        self.impl = impl
        self.weight, self.bias = kaiming_parameters(
            (out_features, in_features), out_features, in_features, bias, rng, dtype)
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, in_features) → (N, out_features)."""
        out, self._cache = K.linear_forward(
            x, self.weight.data, None if self.bias is None else self.bias.data, impl=self.impl
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate dW (and db); return dx of shape (N, in_features), or None if not needed."""
        dx, dw, db = K.linear_backward(dout, self._cache, need_dx=self.input_grad,
                                       dw_out=self.weight.fresh_grad_buffer())
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, in_features) → (N, out_features)."""
        _check_shape_ndim("Linear", input_shape, (2,))
        if input_shape[1] != self.in_features:
            raise ValueError(
                f"Linear: expected {self.in_features} input features, got shape "
                f"{tuple(input_shape)}"
            )
        return (input_shape[0], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class MaxPool2d(Module):
    """Max pooling; padded cells never win.

    ``return_indices=True`` makes ``forward`` return ``(out, indices)``, each output's
    argmax as PyTorch's flat index ``h·W + w`` into its (n, c) plane.

    Shapes: (N, C, H, W) → (N, C, H_out, W_out), H_out = floor((H + 2P − D(K − 1) − 1) / S) + 1
    (ceil with ``ceil_mode``, see ``glasscnn.kernels.pool_output_size``).
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
        return_indices: bool = False, ceil_mode: bool = False, impl: str = "fast",
    ) -> None:
        super().__init__()
        check_impl(impl, "MaxPool2d")
        self.kernel_size, self.stride, self.padding = _pool_args(
            "MaxPool2d", kernel_size, stride, padding)
        self.dilation = _window_arg("MaxPool2d", "dilation", dilation, 1)
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """(N, C, H, W) → (N, C, H_out, W_out), and the indices if ``return_indices``."""
        out, self._cache = K.max_pool2d_forward(
            x, self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation, ceil_mode=self.ceil_mode, impl=self.impl
        )
        if self.return_indices:
            return out, K.max_pool2d_indices(self._cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Route each output gradient to its window's argmax."""
        return K.max_pool2d_backward(dout, self._cache)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, H, W) → (N, C, H_out, W_out)."""
        return _window_output_shape(
            "MaxPool2d", input_shape, self.kernel_size, self.stride, self.padding, self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class AvgPool2d(Module):
    """Average pooling (``count_include_pad=True`` as PyTorch's default).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out), H_out = floor((H + 2P − K) / S) + 1
    (ceil with ``ceil_mode``, see ``glasscnn.kernels.pool_output_size``).
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0, ceil_mode: bool = False,
        count_include_pad: bool = True, divisor_override: int | None = None,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        check_impl(impl, "AvgPool2d")
        self.kernel_size, self.stride, self.padding = _pool_args(
            "AvgPool2d", kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) → (N, C, H_out, W_out)."""
        out, self._cache = K.avg_pool2d_forward(
            x, self.kernel_size, stride=self.stride, padding=self.padding,
            ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override, impl=self.impl,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Spread each output gradient evenly over its window."""
        return K.avg_pool2d_backward(dout, self._cache)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, H, W) → (N, C, H_out, W_out)."""
        return _window_output_shape(
            "AvgPool2d", input_shape, self.kernel_size, self.stride, self.padding, (1, 1),
            ceil_mode=self.ceil_mode,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size with PyTorch's bins.

    Bin i along an axis of length H spans [floor(i·H/out), ceil((i+1)·H/out)).
    Shapes: (N, C, H, W) → (N, C, out_h, out_w).
    """

    def __init__(self, output_size: int | tuple[int, int], impl: str = "fast") -> None:
        super().__init__()
        check_impl(impl, "AdaptiveAvgPool2d")
        self.output_size = _window_arg("AdaptiveAvgPool2d", "output_size", output_size, 1)
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) → (N, C, out_h, out_w)."""
        out, self._cache = K.adaptive_avg_pool2d_forward(x, self.output_size, impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Spread each output gradient evenly over its bin."""
        return K.adaptive_avg_pool2d_backward(dout, self._cache)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, H, W) → (N, C, out_h, out_w)."""
        _check_shape_ndim("AdaptiveAvgPool2d", input_shape, (4,))
        return (input_shape[0], input_shape[1], *self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _Elementwise(Module):
    """A parameter-free layer applied element by element; output shape = input shape."""

    def __init__(self, impl: str = "fast") -> None:
        super().__init__()
        check_impl(impl, type(self).__name__)
        self.impl = impl
        self._cache = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, unchanged."""
        _check_shape_ndim(type(self).__name__, input_shape, (1, 2, 3, 4, 5))
        return tuple(input_shape)


_APPLIED_BY_PREVIOUS = object()  # ReLU's cache when Conv2d.forward_relu applied it


class ReLU(_Elementwise):
    """max(x, 0), any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → same shape."""
        out, self._cache = K.relu_forward(x, impl=self.impl)
        return out

    def applied_by_previous_(self) -> None:
        """Record that the layer before applied this ReLU itself (``Conv2d.forward_relu``):
        until the next ``forward``, ``backward`` passes dout through unchanged."""
        self._cache = _APPLIED_BY_PREVIOUS
        self._forward_done()

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout where x > 0, else 0."""
        if self._cache is _APPLIED_BY_PREVIOUS:
            return dout
        return K.relu_backward(dout, self._cache)[0]


class Sigmoid(_Elementwise):
    """1 / (1 + exp(−x)), numerically stable, any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → same shape."""
        out, self._cache = K.sigmoid_forward(x, impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout · σ(x) · (1 − σ(x))."""
        return K.sigmoid_backward(dout, self._cache)[0]


class Dropout(_Elementwise):
    """Inverted dropout: zero each value with probability p, scale the rest by 1/(1 − p).

    Identity in evaluation mode. ``rng`` (or ``seed``) makes the masks reproducible.
    """

    def __init__(
        self, p: float = 0.5, impl: str = "fast", rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(impl)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → same shape."""
        out, self._cache = K.dropout_forward(
            x, p=self.p, training=self.training, rng=self.rng, impl=self.impl
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout through the same mask and scale."""
        return K.dropout_backward(dout, self._cache)[0]

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Add(Module):
    """Elementwise sum of two arrays of one shape: ``Add()(a, b) = a + b``.

    A residual connection written with it is seen (and counted) by the analysis, where a
    bare ``a + b`` inside a hand-written forward is not. ``backward(dout)`` returns the
    pair ``(da, db) = (dout, dout)``.
    """

    def __init__(self, impl: str = "fast") -> None:
        super().__init__()
        check_impl(impl, "Add")
        self.impl = impl
        self._cache = None

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Two arrays of one shape → their sum, same shape."""
        out, self._cache = K.add_forward(a, b, impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dL/da, dL/db), both ``dout``."""
        return K.add_backward(dout, self._cache)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (first) input's shape, unchanged."""
        return tuple(input_shape)


class Flatten(Module):
    """Flatten every axis from ``start_dim`` on: (N, C, H, W) → (N, C·H·W)."""

    def __init__(self, start_dim: int = 1, impl: str = "fast") -> None:
        super().__init__()
        check_impl(impl, "Flatten")
        if isinstance(start_dim, bool) or not isinstance(start_dim, int | np.integer) \
                or start_dim < 0:
            raise ValueError(f"Flatten: start_dim must be an int >= 0, got {start_dim!r}")
        self.start_dim = start_dim
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) → (N, C·H·W)."""
        out, self._cache = K.flatten_forward(x, start_dim=self.start_dim, impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Reshape the gradient back to the input's shape."""
        return K.flatten_backward(dout, self._cache)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C, H, W) → (N, C·H·W)."""
        _check_shape_ndim("Flatten", input_shape, (2, 3, 4, 5))
        return (*input_shape[: self.start_dim], int(np.prod(input_shape[self.start_dim :])))


class _BatchNorm(Module):
    """Shared body of BatchNorm1d and BatchNorm2d; subclasses fix the accepted ndim."""

    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
        impl: str = "fast", dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(
                f"{type(self).__name__}: num_features must be > 0, got {num_features}"
            )
        check_impl(impl, type(self).__name__)
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine = affine
        self.impl = impl
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.weight = self.bias = None
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise per channel; batch statistics in training, running ones in evaluation."""
        name = type(self).__name__
        check_ndim(x, self._ndims, name, self._layout)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected {self.num_features} channels, got shape {x.shape}"
            )
        out, self._cache = K.batch_norm_forward(
            x, self.running_mean, self.running_var,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            training=self.training, momentum=self.momentum, eps=self.eps, impl=self.impl,
        )
        if self.training:
            self.num_batches_tracked += 1
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Accumulate dγ, dβ; return dx."""
        dx, dw, db = K.batch_norm_backward(dout, self._cache)
        if self.weight is not None:
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, unchanged."""
        _check_shape_ndim(type(self).__name__, input_shape, self._ndims)
        if input_shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels, got shape "
                f"{tuple(input_shape)}"
            )
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C): per-feature statistics over the batch."""

    _ndims = (2,)
    _layout = "(N, C)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): per-channel statistics over N, H and W."""

    _ndims = (4,)
    _layout = "(N, C, H, W)"
