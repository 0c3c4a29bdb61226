"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``): the public kernels, their
argument checks and caches; the loop nest is in naive.py, the fast strategies in the
package's other files (choice.py picks one per layer).

Output size per spatial axis: ``floor((I + 2P - D*(K-1) - 1) / S) + 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels._common import (
    as_float_array,
    check_impl,
    check_ndim,
    check_non_negative,
    check_positive,
    conv_output_size,
    get_xp,
    pair,
)
from glasscnn.kernels.activations import relu_backward, relu_forward
from glasscnn.kernels.conv import choice, naive

OP = "conv2d"


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """2-D convolution of a batch of images with a bank of filters, plus an optional bias.

    ``out[n, co, i, j] = b[co] + sum_{ci,p,q} w[co, ci, p, q] * x_pad[n, g*C_in/G + ci,
    i*S + p*D, j*S + q*D]`` with ``g = co // (C_out/G)`` the group of output channel co.

    Args:
        x: input, shape (N, C_in, H, W); float32 or float64, any other real dtype (bool,
            integer) is computed in float32.
        weight: filters, shape (C_out, C_in/G, kH, kW), converted to ``x``'s dtype.
        bias: ``None`` or shape (C_out,).
        stride: S, an int or an (h, w) pair, > 0.
        padding: P, zeros added on each side, an int or an (h, w) pair, >= 0; or
            ``"valid"`` (no padding) or ``"same"`` (stride 1 only: the output as large as
            the input, ``D*(K-1)`` zeros per axis, the odd one on the bottom/right side,
            as PyTorch pads even kernels).
        dilation: D, spacing between kernel taps, an int or an (h, w) pair, > 0.
        groups: G, > 0, dividing C_in and C_out: the channels split into G groups, each
            output group seeing only its input group (G = C_in: depthwise).
        impl: ``"fast"`` (one strategy per layer shape: im2col + GEMM, kernel rows,
            Winograd; a tap-by-tap multiply-accumulate for depthwise layers) or ``"naive"``
            (loop nest).

    Returns:
        ``(out, cache)``: out of shape (N, C_out, H_out, W_out) in ``x``'s (float) dtype, with
        ``H_out = floor((H + 2P - D*(kH-1) - 1) / S) + 1`` and likewise ``W_out``
        (``"same"``: ``H_out = H``); cache for :func:`conv2d_backward` (it holds ``x``, not
        the im2col matrix).
    """
    x, weight, bias, geometry, out_hw = _prepare(
        x, weight, bias, stride, padding, dilation, groups, impl)
    stride, padding, dilation, _ = geometry
    forward = naive.forward if impl == "naive" else choice.forward
    out = forward(x, weight, bias, stride, padding, dilation, out_hw, groups=groups)
    return out, _make_cache(impl, x, weight, bias, geometry, groups)


def _prepare(x, weight, bias, stride, padding, dilation, groups, impl):
    """Validate the forward arguments and compute in floating point: non-floating ``x``
    becomes float32 (as every kernel does), weight and bias take its dtype. An asymmetric
    ``"same"`` padding pads ``x``'s bottom/right by its extra row/column here, and the
    kernels pad the rest symmetrically. Returns ``(x, weight, bias, (stride, padding,
    dilation, extra), (H_out, W_out))``, the hyper-parameters as pairs."""
    x = as_float_array(x, OP)
    check_ndim(x, 4, OP, "(N, C_in, H, W)")
    _check_weight(weight)
    stride = pair(stride, "stride", OP)
    dilation = pair(dilation, "dilation", OP)
    check_positive(stride, "stride", OP)
    check_positive(dilation, "dilation", OP)
    padding, end = conv_padding(padding, weight.shape[2:], stride, dilation)
    extra = (end[0] - padding[0], end[1] - padding[1])
    if extra != (0, 0):
        xp = get_xp(x)
        x = xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    _check_args(x, weight, bias, stride, padding, dilation, groups, impl)
    out_hw = _output_hw(x, weight, stride, padding, dilation)
    weight = weight.astype(x.dtype, copy=False)
    bias = None if bias is None else bias.astype(x.dtype, copy=False)
    return x, weight, bias, (stride, padding, dilation, extra), out_hw


def conv_padding(
    padding: int | tuple[int, int] | str, kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1, op: str = OP,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The zeros a convolution's ``padding`` adds before and after the input, per axis.

    Args:
        padding: an int, an (h, w) pair, ``"valid"`` or ``"same"``.
        kernel_size: (kH, kW) or an int.
        stride, dilation: ints or pairs; ``"same"`` needs stride 1.
        op: the op's name, for error messages.

    Returns:
        ``((top, left), (bottom, right))``: a number P pads P on both sides, ``"valid"``
        nothing; ``"same"`` pads ``D*(K-1)`` per axis, ``floor(D*(K-1) / 2)`` before and the
        rest (one more for an even span) after, as PyTorch does, so that ``H_out = H``.
    """
    stride, dilation = pair(stride, "stride", op), pair(dilation, "dilation", op)
    kernel = pair(kernel_size, "kernel_size", op)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
        total = [dilation[a] * (kernel[a] - 1) for a in (0, 1)]
        return (total[0] // 2, total[1] // 2), (total[0] - total[0] // 2, total[1] - total[1] // 2)
    padding = pair(padding, "padding", op)
    check_non_negative(padding, "padding", op)
    return padding, padding


def _output_hw(x, weight, stride, padding, dilation):
    """(H_out, W_out) of a convolution."""
    return tuple(
        conv_output_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], dilation[a])
        for a in (0, 1)
    )


def _make_cache(impl, x, weight, bias, geometry, groups):
    """What the backward pass needs: the input and weight (not the im2col matrix)."""
    stride, padding, dilation, extra = geometry
    return {
        "impl": impl, "x": x, "weight": weight, "has_bias": bias is not None,
        "stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
        "extra": extra,
    }


def conv2d_relu_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Convolution followed by ReLU, in one call: ``max(conv2d(x, w, b), 0)``.

    The naive kernel is :func:`conv2d_forward` then ``relu_forward``, both naive. The fast
    kernel fuses them: each batch chunk's GEMM output is rectified while it is in cache,
    and :func:`conv2d_relu_backward` masks each chunk of dout the same way, so the two
    passes over the activation that separate layers make (and their buffers) are saved.

    Args: as :func:`conv2d_forward`.

    Returns:
        ``(out, cache)``: out of shape (N, C_out, H_out, W_out), ``H_out`` as for
        :func:`conv2d_forward`, every value ≥ 0; the cache also holds ``out`` (for the mask),
        which must not be modified in place before the backward pass.
    """
    if impl == "naive":
        out, cache = conv2d_forward(x, weight, bias, stride, padding, dilation, groups,
                                    impl="naive")
        out = relu_forward(out, impl="naive")[0]
    else:
        x, weight, bias, geometry, out_hw = _prepare(
            x, weight, bias, stride, padding, dilation, groups, impl)
        out = choice.forward(x, weight, bias, *geometry[:3], out_hw, relu=True, groups=groups)
        cache = _make_cache(impl, x, weight, bias, geometry, groups)
    cache["relu_out"] = out
    return out, cache


def conv2d_relu_backward(
    dout: Any, cache: dict[str, Any], need_dx: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_relu_forward`: dout masked by ``[out > 0]``, then those
    of the convolution.

    Args:
        dout: upstream gradient, shape (N, C_out, H_out, W_out).
        cache: the cache returned by :func:`conv2d_relu_forward`.
        need_dx: as for :func:`conv2d_backward`.

    Returns:
        ``(dx, dweight, dbias)`` as :func:`conv2d_backward`.
    """
    if "relu_out" not in cache:
        raise ValueError(f"{OP}_relu_backward: the cache is not from conv2d_relu_forward")
    if cache["impl"] == "naive":
        (dout,) = relu_backward(dout, {"impl": "naive", "out": cache["relu_out"]})
    return conv2d_backward(dout, cache, need_dx)  # fast: masks each chunk of dout itself


def conv2d_backward(
    dout: Any, cache: dict[str, Any], need_dx: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of a 2-D convolution with respect to its input, weight and bias.

    Args:
        dout: upstream gradient, shape (N, C_out, H_out, W_out).
        cache: the cache returned by :func:`conv2d_forward`; the same impl is used.
        need_dx: compute the input gradient; ``False`` skips it (``dx`` is ``None``), as for
            a network's first layer, whose input needs no gradient.

    Returns:
        ``(dx, dweight, dbias)`` shaped like ``x`` (N, C_in, H, W), ``weight``
        (C_out, C_in/G, kH, kW) and ``bias`` (C_out,); ``dbias`` is ``None`` without a bias.
    """
    x, weight = cache["x"], cache["weight"]
    expected = (x.shape[0], weight.shape[0],
                *_output_hw(x, weight, cache["stride"], cache["padding"], cache["dilation"]))
    if getattr(dout, "shape", None) != expected:
        raise ValueError(
            f"{OP}: dout must have shape {expected}, got {getattr(dout, 'shape', type(dout))}"
        )
    dout = dout.astype(x.dtype, copy=False)
    weight = weight.astype(x.dtype, copy=False)
    args = (dout, x, weight, cache["stride"], cache["padding"], cache["dilation"])
    groups = cache["groups"]
    if cache["impl"] == "fast":
        dx, dw, db = choice.backward(*args, need_dx=need_dx, has_bias=cache["has_bias"],
                                     relu_out=cache.get("relu_out"), groups=groups)
    else:
        dx, dw = naive.backward(*args, groups=groups)
        db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None  # db[co] = Σ dout[:, co]
    extra = cache["extra"]
    if need_dx and extra != (0, 0):  # the bottom/right rows of an asymmetric "same" pad
        dx = dx[:, :, :x.shape[2] - extra[0], :x.shape[3] - extra[1]]
    return (dx if need_dx else None), dw, db


def _check_weight(weight):
    """A 4-D weight with a kernel of at least one tap."""
    if getattr(weight, "ndim", None) != 4:
        raise ValueError(
            f"{OP}: expected weight of shape (C_out, C_in/groups, kH, kW), "
            f"got shape {getattr(weight, 'shape', type(weight).__name__)}"
        )
    if min(weight.shape[2:]) <= 0:
        raise ValueError(f"{OP}: kernel size must be > 0, got weight shape {tuple(weight.shape)}")


def _check_args(x, weight, bias, stride, padding, dilation, groups, impl):
    """Validate the forward arguments (stride, padding, dilation already pairs)."""
    check_impl(impl, OP)
    check_groups(groups, x.shape[1], weight.shape[0], OP)
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"{OP}: input has {x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"with groups={groups} expects {weight.shape[1] * groups}"
        )
    if bias is not None and getattr(bias, "shape", None) != (weight.shape[0],):
        raise ValueError(
            f"{OP}: bias must have shape ({weight.shape[0]},), "
            f"got {getattr(bias, 'shape', type(bias).__name__)}"
        )
    for a in (0, 1):
        span = dilation[a] * (weight.shape[2 + a] - 1) + 1
        if span > x.shape[2 + a] + 2 * padding[a]:
            raise ValueError(
                f"{OP}: dilated kernel {tuple(weight.shape[2:])} with dilation {dilation} "
                f"spans {span} > padded input size {x.shape[2 + a] + 2 * padding[a]} "
                f"(input {tuple(x.shape[2:])}, padding {padding})"
            )


def check_groups(groups: Any, c_in: int, c_out: int, op: str) -> None:
    """``groups`` is a positive int dividing both channel counts, else a ValueError."""
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups <= 0:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide the input channels ({c_in}) and the output "
            f"channels ({c_out})"
        )
