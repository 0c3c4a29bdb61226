"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``): the public kernels, their
argument checks and caches; the loop nest is in naive.py, the fast strategies in the
package's other files (choice.py picks one per layer).

Output size per spatial axis: ``floor((I + 2P - D*(K-1) - 1) / S) + 1``.
"""

from __future__ import annotations

from typing import Any

from glasscnn.kernels._common import (
    as_float_array,
    check_impl,
    check_ndim,
    check_non_negative,
    check_positive,
    conv_output_size,
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
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """2-D convolution of a batch of images with a bank of filters, plus an optional bias.

    ``out[n, co, i, j] = b[co] + sum_{ci,p,q} w[co, ci, p, q] * x_pad[n, ci, i*S + p*D, j*S + q*D]``

    Args:
        x: input, shape (N, C_in, H, W); float32 or float64, any other real dtype (bool,
            integer) is computed in float32.
        weight: filters, shape (C_out, C_in, kH, kW), converted to ``x``'s dtype.
        bias: ``None`` or shape (C_out,).
        stride: S, an int or an (h, w) pair, > 0.
        padding: P, zeros added on each side, an int or an (h, w) pair, >= 0.
        dilation: D, spacing between kernel taps, an int or an (h, w) pair, > 0.
        impl: ``"fast"`` (im2col + GEMM) or ``"naive"`` (loop nest).

    Returns:
        ``(out, cache)``: out of shape (N, C_out, H_out, W_out) in ``x``'s (float) dtype, with
        ``H_out = floor((H + 2P - D*(kH-1) - 1) / S) + 1`` and likewise ``W_out``;
        cache for :func:`conv2d_backward` (it holds ``x``, not the im2col matrix).
    """
    x, weight, bias, stride, padding, dilation, out_hw = _prepare(
        x, weight, bias, stride, padding, dilation, impl)
    forward = naive.forward if impl == "naive" else choice.forward
    out = forward(x, weight, bias, stride, padding, dilation, out_hw)
    return out, _make_cache(impl, x, weight, bias, stride, padding, dilation)


def _prepare(x, weight, bias, stride, padding, dilation, impl):
    """Validate the forward arguments and compute in floating point: non-floating ``x``
    becomes float32 (as every kernel does), weight and bias take its dtype. Returns ``(x,
    weight, bias, stride, padding, dilation, (H_out, W_out))``, the hyper-parameters as
    pairs."""
    x = as_float_array(x, OP)
    stride, padding, dilation = _check_args(x, weight, bias, stride, padding, dilation, impl)
    out_hw = _output_hw(x, weight, stride, padding, dilation)
    weight = weight.astype(x.dtype, copy=False)
    bias = None if bias is None else bias.astype(x.dtype, copy=False)
    return x, weight, bias, stride, padding, dilation, out_hw


def _output_hw(x, weight, stride, padding, dilation):
    """(H_out, W_out) of a convolution."""
    return tuple(
        conv_output_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], dilation[a])
        for a in (0, 1)
    )


def _make_cache(impl, x, weight, bias, stride, padding, dilation):
    """What the backward pass needs: the input and weight (not the im2col matrix)."""
    return {
        "impl": impl, "x": x, "weight": weight, "has_bias": bias is not None,
        "stride": stride, "padding": padding, "dilation": dilation,
    }


def conv2d_relu_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
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
        out, cache = conv2d_forward(x, weight, bias, stride, padding, dilation, impl="naive")
        out = relu_forward(out, impl="naive")[0]
    else:
        x, weight, bias, stride, padding, dilation, out_hw = _prepare(
            x, weight, bias, stride, padding, dilation, impl)
        out = choice.forward(x, weight, bias, stride, padding, dilation, out_hw, relu=True)
        cache = _make_cache(impl, x, weight, bias, stride, padding, dilation)
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
        (C_out, C_in, kH, kW) and ``bias`` (C_out,); ``dbias`` is ``None`` without a bias.
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
    if cache["impl"] == "fast":
        return choice.backward(*args, need_dx=need_dx, has_bias=cache["has_bias"],
                               relu_out=cache.get("relu_out"))
    dx, dw = naive.backward(*args)
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None  # db[co] = Σ dout[:, co]
    return (dx if need_dx else None), dw, db


def _check_args(x, weight, bias, stride, padding, dilation, impl):
    """Validate the forward arguments; return stride, padding, dilation as pairs."""
    check_impl(impl, OP)
    check_ndim(x, 4, OP, "(N, C_in, H, W)")
    if getattr(weight, "ndim", None) != 4:
        raise ValueError(
            f"{OP}: expected weight of shape (C_out, C_in, kH, kW), "
            f"got shape {getattr(weight, 'shape', type(weight).__name__)}"
        )
    if min(weight.shape[2:]) <= 0:
        raise ValueError(f"{OP}: kernel size must be > 0, got weight shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{OP}: input has {x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"expects {weight.shape[1]}"
        )
    if bias is not None and getattr(bias, "shape", None) != (weight.shape[0],):
        raise ValueError(
            f"{OP}: bias must have shape ({weight.shape[0]},), "
            f"got {getattr(bias, 'shape', type(bias).__name__)}"
        )
    stride, padding, dilation = (
        pair(stride, "stride", OP), pair(padding, "padding", OP), pair(dilation, "dilation", OP)
    )
    check_positive(stride, "stride", OP)
    check_non_negative(padding, "padding", OP)
    check_positive(dilation, "dilation", OP)
    for a in (0, 1):
        span = dilation[a] * (weight.shape[2 + a] - 1) + 1
        if span > x.shape[2 + a] + 2 * padding[a]:
            raise ValueError(
                f"{OP}: dilated kernel {tuple(weight.shape[2:])} with dilation {dilation} "
                f"spans {span} > padded input size {x.shape[2 + a] + 2 * padding[a]} "
                f"(input {tuple(x.shape[2:])}, padding {padding})"
            )
    return stride, padding, dilation
