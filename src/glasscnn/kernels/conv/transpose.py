"""Transposed 2-D convolution (PyTorch's ``conv_transpose2d``): the input gradient of conv2d,
run forward.

Output size per spatial axis: ``(I - 1)*S - 2P + D*(K-1) + output_padding + 1``.
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
    get_xp,
    pair,
)
from glasscnn.kernels.conv import choice, depthwise, naive
from glasscnn.kernels.conv.buffers import K_MAJOR_CHANNELS, batch_chunks, empty_4d
from glasscnn.kernels.conv.conv2d import check_groups
from glasscnn.kernels.conv.im2col import _dx_col2im

OP = "conv_transpose2d"


def conv_transpose2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int | tuple[int, int] = 1,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Transposed 2-D convolution ("deconvolution"): each input pixel scatters its filter,
    scaled, into the output; the adjoint of :func:`conv2d_forward`.

    ``out_full[n, g*C_out/G + co, i*S + p*D, j*S + q*D] += x[n, ci, i, j] * w[ci, co, p, q]``
    (``g = ci // (C_in/G)``), then ``out = out_full`` with P rows/columns cropped from each
    side (and ``output_padding`` more kept at the bottom/right), plus the bias. It is
    conv2d's input gradient: with ``y = conv2d(z, weight, stride=S, padding=P,
    dilation=D, groups=G)`` for z of this output's shape, ``conv_transpose2d(dout_y,
    weight, ...) = dL/dz``: the same weight, read as conv2d's (C_out', C_in'/G, kH, kW)
    with C_out' = this op's C_in.

    Args:
        x: input, shape (N, C_in, H, W); non-floating dtypes are computed in float32.
        weight: shape (C_in, C_out/G, kH, kW), converted to ``x``'s dtype.
        bias: ``None`` or shape (C_out,).
        stride: S, an int or an (h, w) pair, > 0.
        padding: P, an int or pair, >= 0: rows/columns cropped from each side.
        output_padding: an int or pair, >= 0 and smaller than the stride or the dilation:
            rows/columns added at the bottom/right (they pick which of the input sizes that
            conv2d maps to H the output has).
        groups: G, > 0, dividing C_in (and C_out = G * weight.shape[1]).
        dilation: D, an int or pair, > 0.
        impl: ``"fast"`` (conv2d's input-gradient machinery: a stride-1 convolution with the
            flipped kernel, col2im, or depthwise taps) or ``"naive"`` (loop nest).

    Returns:
        ``(out, cache)``: out of shape (N, C_out, H_out, W_out) with
        ``H_out = (H - 1)*S - 2P + D*(kH-1) + output_padding + 1`` and likewise ``W_out``;
        cache for :func:`conv_transpose2d_backward`.
    """
    x, weight, bias, geometry, out_hw = _prepare(x, weight, bias, stride, padding,
                                                 output_padding, groups, dilation, impl)
    stride, padding, _, dilation = geometry
    if impl == "naive":
        out = naive.transpose_forward(x, weight, bias, stride, padding, dilation, out_hw, groups)
    else:
        out = _forward_fast(x, weight, bias, stride, padding, dilation, out_hw, groups)
    cache = {"impl": impl, "x": x, "weight": weight, "has_bias": bias is not None,
             "geometry": geometry, "groups": groups, "out_hw": out_hw}
    return out, cache


def conv_transpose2d_backward(
    dout: Any, cache: dict[str, Any], need_dx: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of a transposed 2-D convolution with respect to its input, weight and bias.

    The input gradient is conv2d of dout (``conv2d_forward(dout, weight, stride, padding,
    dilation, groups)``), the weight gradient conv2d's weight gradient with the roles of
    input and upstream gradient swapped.

    Args:
        dout: upstream gradient, shape (N, C_out, H_out, W_out).
        cache: the cache returned by :func:`conv_transpose2d_forward`; the same impl is used.
        need_dx: compute the input gradient; ``False`` skips it (``dx`` is ``None``).

    Returns:
        ``(dx, dweight, dbias)`` shaped like ``x`` (N, C_in, H, W), ``weight``
        (C_in, C_out/G, kH, kW) and ``bias`` (C_out,); ``dbias`` is ``None`` without a bias.
    """
    x, weight, groups = cache["x"], cache["weight"], cache["groups"]
    stride, padding, _, dilation = cache["geometry"]
    expected = (x.shape[0], weight.shape[1] * groups, *cache["out_hw"])
    if getattr(dout, "shape", None) != expected:
        raise ValueError(
            f"{OP}: dout must have shape {expected}, got {getattr(dout, 'shape', type(dout))}"
        )
    dout = get_xp(dout).asarray(dout).astype(x.dtype, copy=False)
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None  # db[co] = Σ dout[:, co]
    if cache["impl"] == "naive":
        dx, dw = naive.transpose_backward(dout, x, weight, stride, padding, dilation, groups)
        return (dx if need_dx else None), dw, db
    # conv2d(dout) may give rows/columns past H, W where output_padding >= stride: the
    # input then stands zero-extended to that size (its rows there touch nothing)
    conv_hw = _conv_hw(cache["out_hw"], weight, stride, padding, dilation)
    dx = None
    if need_dx:
        dx = choice.forward(dout, weight, None, stride, padding, dilation, conv_hw,
                            groups=groups)[:, :, :x.shape[2], :x.shape[3]]
    _, dw, _ = choice.backward(_extend(x, conv_hw), dout, weight, stride, padding, dilation,
                               need_dx=False, groups=groups)
    return dx, dw, db


def _conv_hw(out_hw, weight, stride, padding, dilation):
    """The output size of conv2d over this op's output: H, or more when
    ``output_padding >= stride``."""
    return tuple(conv_output_size(out_hw[a], weight.shape[2 + a], stride[a], padding[a],
                                  dilation[a]) for a in (0, 1))


def _extend(x, hw):
    """``x`` zero-extended at the bottom/right to spatial size ``hw`` (itself if it is)."""
    extra = (hw[0] - x.shape[2], hw[1] - x.shape[3])
    if extra == (0, 0):
        return x
    return get_xp(x).pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))


def _forward_fast(x, weight, bias, stride, padding, dilation, out_hw, groups):
    """The input gradient of conv2d for "dout" ``x``, plus the bias."""
    x = _extend(x, _conv_hw(out_hw, weight, stride, padding, dilation))
    out = input_grad(x, weight, stride, padding, dilation, out_hw, groups)
    if bias is not None:
        out += bias[:, None, None]
    return out


def input_grad(dout, weight, stride, padding, dilation, in_hw, groups=1):
    """conv2d's input gradient alone: (N, C_in', H, W) for dout (N, C_out', H_out, W_out)
    and an OIHW weight (C_out', C_in'/G, kH, kW), ``in_hw = (H, W)``.

    Grouped: depthwise taps (:mod:`depthwise`) or one group at a time. Stride 1 (and no
    window wholly in the padding): a convolution of dout padded by ``D*(K-1) - P`` with the
    flipped, transposed kernel, by whichever conv2d strategy suits its shape. Otherwise
    col2im: one GEMM ``dout_rows @ W`` per batch chunk, added back one kernel tap at a time.
    """
    xp = get_xp(dout)
    n = dout.shape[0]
    c_in = weight.shape[1] * groups
    x_shape = (n, c_in, *in_hw)
    if groups > 1:
        if depthwise.applies(x_shape, weight.shape, groups):
            return depthwise.backward(dout, None, weight, stride, padding, dilation,
                                      need_dw=False, x_shape=x_shape)[0]
        out = empty_4d(xp, x_shape, dout.dtype, c_in >= K_MAJOR_CHANNELS)
        c_in_g, c_out_g = weight.shape[1], weight.shape[0] // groups
        for g in range(groups):
            co = slice(g * c_out_g, (g + 1) * c_out_g)
            xp.copyto(out[:, g * c_in_g:(g + 1) * c_in_g],
                      input_grad(dout[:, co], weight[co], stride, padding, dilation, in_hw))
        return out
    flipped = tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in (0, 1))
    if stride == (1, 1) and min(flipped) >= 0:  # w'[ci, co, p, q] = w[co, ci, kH-1-p, kW-1-q]
        w_flip = xp.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        return choice.forward(dout, w_flip, None, (1, 1), flipped, dilation, in_hw)
    per_image = dout.shape[2] * dout.shape[3] * weight[0].size * dout.itemsize
    out = empty_4d(xp, x_shape, dout.dtype, c_in >= K_MAJOR_CHANNELS)
    for ch in batch_chunks(n, per_image):
        nb = ch.stop - ch.start
        d_t = dout[ch].transpose(1, 0, 2, 3).reshape(weight.shape[0], -1)  # (C_out', nb*P)
        pad = _dx_col2im(d_t, weight, (nb, c_in, *in_hw), padding, stride, dilation,
                         dout.shape[2:])  # (nb, H + 2P, W + 2P, C_in')
        xp.copyto(out[ch], pad[:, padding[0]:padding[0] + in_hw[0],
                               padding[1]:padding[1] + in_hw[1]].transpose(0, 3, 1, 2))
    return out


def _prepare(x, weight, bias, stride, padding, output_padding, groups, dilation, impl):
    """Validate the forward arguments; compute in floating point. Returns ``(x, weight,
    bias, (stride, padding, output_padding, dilation), (H_out, W_out))``."""
    check_impl(impl, OP)
    x = as_float_array(x, OP)
    check_ndim(x, 4, OP, "(N, C_in, H, W)")
    if getattr(weight, "ndim", None) != 4 or min(weight.shape[2:]) <= 0:
        raise ValueError(
            f"{OP}: expected weight of shape (C_in, C_out/groups, kH, kW) with kH, kW > 0, "
            f"got shape {getattr(weight, 'shape', type(weight).__name__)}"
        )
    check_groups(groups, x.shape[1], weight.shape[1] * groups, OP)
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"{OP}: input has {x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"expects {weight.shape[0]}"
        )
    c_out = weight.shape[1] * groups
    if bias is not None and getattr(bias, "shape", None) != (c_out,):
        raise ValueError(
            f"{OP}: bias must have shape ({c_out},), "
            f"got {getattr(bias, 'shape', type(bias).__name__)}"
        )
    stride, padding = pair(stride, "stride", OP), pair(padding, "padding", OP)
    output_padding, dilation = (pair(output_padding, "output_padding", OP),
                                pair(dilation, "dilation", OP))
    check_positive(stride, "stride", OP)
    check_positive(dilation, "dilation", OP)
    check_non_negative(padding, "padding", OP)
    check_non_negative(output_padding, "output_padding", OP)
    for a in (0, 1):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(
                f"{OP}: output_padding {output_padding} must be smaller than the stride "
                f"{stride} or the dilation {dilation}"
            )
    out_hw = tuple(transposed_output_size(x.shape[2 + a], weight.shape[2 + a], stride[a],
                                          padding[a], output_padding[a], dilation[a])
                   for a in (0, 1))
    if min(out_hw) <= 0:
        raise ValueError(
            f"{OP}: output size {out_hw} is not positive (input {tuple(x.shape[2:])}, kernel "
            f"{tuple(weight.shape[2:])}, stride {stride}, padding {padding}, dilation "
            f"{dilation}, output_padding {output_padding})"
        )
    weight = weight.astype(x.dtype, copy=False)
    bias = None if bias is None else bias.astype(x.dtype, copy=False)
    return x, weight, bias, (stride, padding, output_padding, dilation), out_hw


def transposed_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                           output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis.

    Args:
        size: input length I; kernel, stride, padding, output_padding, dilation: K, S, P,
            output_padding, D.

    Returns:
        ``(I - 1)*S - 2P + D*(K-1) + output_padding + 1`` (may be <= 0; callers check).
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1

