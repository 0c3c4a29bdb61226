"""Which fast strategy runs a conv layer, and the measured thresholds that decide it."""

from __future__ import annotations

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp
from glasscnn.kernels.conv import batch_inner, depthwise, im2col, kernel_rows, winograd
from glasscnn.kernels.conv.buffers import K_MAJOR_CHANNELS, empty_4d, flipped_padding

# fewer input channels than K_MAJOR_CHANNELS and outputs at most this wide: batch-innermost
# (C, H, W, N) im2col and col2im, whose copies and adds run over W_out * N floats instead of
# W_out (lenet's 10x10 conv2, measured: forward 1.36x, backward with dx 1.4-1.6x faster)
CHWN_MAX_WIDTH = 16
# stride-1 layers with ROW_MIN_OUT_CHANNELS to ROW_MAX_CHANNELS output channels, at most
# ROW_MAX_CHANNELS input channels, at least ROW_MIN_POSITIONS output pixels and kernels of
# two or more rows run by kernel rows (kernel_rows.py; see
# :func:`rows_apply`): width-only im2col, one GEMM per kernel row. Measured on two threads,
# forward / backward: vgg's 16→16 32×32 1.6× / 1.45×, 32→32 16×16 1.5× / 1.35×, 64→64 8×8
# 1.15× / 1.15×, its 3→16 first layer 1.0× / 1.3×, three_layer's 3→32 7×7 1.1× / 1.15×
# faster, lenet_bn's step with its 3→6 conv1 so 6% faster; 4×4 outputs, or 96 and more
# channels (alexnet's conv2-conv5), 1.1-2× slower. Tests switch ROW_GEMMS off to reach the
# other paths.
ROW_GEMMS = True
ROW_MIN_OUT_CHANNELS = 6
ROW_MAX_CHANNELS = 64
ROW_MIN_POSITIONS = 36


def forward(x, weight, bias, stride, padding, dilation, out_hw, relu=False, groups=1):
    """The fast conv forward: the kernel for the layer's shape.

    Grouped layers: depthwise ones (one input channel per group) by
    :func:`depthwise.forward`, the others one group at a time (:func:`_per_group_forward`).
    Ungrouped ones: K-major im2col for one image or few output positions
    (:func:`im2col.forward_k_major`); Winograd F(2×2, r×r) for the 3×3 and 5×5 stride-1
    layers with many channels and tiles that ``winograd.applies`` admits, where
    ``winograd.select`` finds it faster than the GEMM path; else the GEMM path: kernel rows
    for the stride-1 layers :func:`rows_apply` admits (:func:`kernel_rows.forward`);
    batch-innermost im2col for the others with fewer than ``K_MAJOR_CHANNELS`` input
    channels and outputs at most ``CHWN_MAX_WIDTH`` wide (:func:`batch_inner.forward`);
    :func:`im2col.forward` for the rest. ``relu``: rectify the output
    (``conv2d_relu_forward``).
    """
    if groups > 1:
        if depthwise.applies(x.shape, weight.shape, groups):
            return depthwise.forward(x, weight, bias, stride, padding, dilation, out_hw, relu)
        return _per_group_forward(x, weight, bias, stride, padding, dilation, out_hw, relu,
                                  groups)
    xp = get_xp(x)
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    args = (x, weight, bias, stride, padding, dilation, out_hw, relu)
    # one image, or few output positions and a big weight (small-batch inference):
    # K-major, no weight copy
    if n * out_hw[0] * out_hw[1] <= 2 * c_out or n == 1:
        return im2col.forward_k_major(*args)
    rows = rows_apply(weight.shape, stride, out_hw)

    def gemms():
        if rows:
            return kernel_rows.forward(x, weight, bias, padding, dilation, out_hw, relu)
        return im2col.forward(*args)

    if xp is np and winograd.applies(weight.shape, stride, dilation, n, out_hw):
        key = ("forward", x.shape, weight.shape, padding, x.dtype.str, bias is None, relu,
               _parallel.threads())
        return winograd.select(key, lambda: winograd.conv(x, weight, bias, padding, out_hw,
                                                          relu),
                               gemms)
    if not rows and c_in < K_MAJOR_CHANNELS and out_hw[1] <= CHWN_MAX_WIDTH:
        return batch_inner.forward(*args)
    return gemms()


def backward(dout, x, weight, stride, padding, dilation, need_dx=True, has_bias=False,
             relu_out=None, groups=1):
    """The fast conv backward: grouped layers as in :func:`forward`; Winograd for the
    layers ``winograd.applies`` admits, where ``winograd.select`` finds it faster than the
    GEMM path (timed per layer as in the forward); else the GEMM path
    (:func:`_backward_gemms`). Returns ``(dx or None, dW, db or None)``."""
    args = (dout, x, weight, stride, padding, dilation, need_dx, has_bias, relu_out)
    if groups > 1:
        if depthwise.applies(x.shape, weight.shape, groups):
            return depthwise.backward(*args)
        return _per_group_backward(*args, groups)
    if get_xp(dout) is not np or not winograd.applies(weight.shape, stride, dilation,
                                                      x.shape[0], dout.shape[2:]):
        return _backward_gemms(*args)
    key = ("backward", x.shape, weight.shape, padding, x.dtype.str, need_dx, has_bias,
           relu_out is None, _parallel.threads())
    return winograd.select(key, lambda: winograd.backward(dout, x, weight, padding, need_dx,
                                                          has_bias, relu_out),
                           lambda: _backward_gemms(*args))


def _backward_gemms(dout, x, weight, stride, padding, dilation, need_dx, has_bias, relu_out):
    """The GEMM backward for the layer's shape: kernel rows where :func:`rows_apply` admits
    the layer and dout's padding for dx is not negative (:func:`kernel_rows.backward`);
    batch-innermost for fewer than ``K_MAJOR_CHANNELS`` input channels, outputs at most
    ``CHWN_MAX_WIDTH`` wide and more than one image (:func:`batch_inner.backward`); else
    :func:`im2col.backward`."""
    out_hw = dout.shape[2:]
    if (rows_apply(weight.shape, stride, out_hw, need_dx)
            and min(flipped_padding(weight, padding, dilation)) >= 0):
        return kernel_rows.backward(dout, x, weight, padding, dilation, need_dx, has_bias,
                                    relu_out)
    if x.shape[1] < K_MAJOR_CHANNELS and out_hw[1] <= CHWN_MAX_WIDTH and x.shape[0] > 1:
        return batch_inner.backward(dout, x, weight, stride, padding, dilation, need_dx,
                                    has_bias, relu_out)
    return im2col.backward(dout, x, weight, stride, padding, dilation, need_dx, has_bias,
                           relu_out)


def _group_slices(groups, c_in, c_out):
    """Per group: its slice of the input channels and of the output channels."""
    gi, go = c_in // groups, c_out // groups
    return [(slice(g * gi, (g + 1) * gi), slice(g * go, (g + 1) * go)) for g in range(groups)]


def _per_group_forward(x, weight, bias, stride, padding, dilation, out_hw, relu, groups):
    """A grouped conv as ``groups`` convolutions of channel slices, each by :func:`forward`
    (the strategy for its own shape), written into one output (channels-last from
    ``K_MAJOR_CHANNELS`` output channels)."""
    xp = get_xp(x)
    c_out = weight.shape[0]
    out = empty_4d(xp, (x.shape[0], c_out, *out_hw), x.dtype, c_out >= K_MAJOR_CHANNELS)
    for ci, co in _group_slices(groups, x.shape[1], c_out):
        xp.copyto(out[:, co], forward(x[:, ci], weight[co], None if bias is None else bias[co],
                                      stride, padding, dilation, out_hw, relu))
    return out


def _per_group_backward(dout, x, weight, stride, padding, dilation, need_dx, has_bias,
                        relu_out, groups):
    """The gradients of :func:`_per_group_forward`, one group at a time by :func:`backward`;
    dW and db are the groups' parts in order, dx channels-last from ``K_MAJOR_CHANNELS``
    input channels."""
    xp = get_xp(dout)
    dx = empty_4d(xp, x.shape, x.dtype, x.shape[1] >= K_MAJOR_CHANNELS) if need_dx else None
    dws, dbs = [], []
    for ci, co in _group_slices(groups, x.shape[1], weight.shape[0]):
        dx_g, dw_g, db_g = backward(dout[:, co], x[:, ci], weight[co], stride, padding,
                                    dilation, need_dx, has_bias,
                                    None if relu_out is None else relu_out[:, co])
        if need_dx:
            xp.copyto(dx[:, ci], dx_g)
        dws.append(dw_g)
        dbs.append(db_g)
    return dx, xp.concatenate(dws), xp.concatenate(dbs) if has_bias else None


def rows_apply(weight_shape, stride, out_hw, need_dx=False):
    """Whether a layer runs by kernel rows: ``ROW_GEMMS``, stride 1, a kernel of two or
    more rows, ``ROW_MIN_OUT_CHANNELS`` to ``ROW_MAX_CHANNELS`` output channels (the output
    channels-last), at most ``ROW_MAX_CHANNELS`` input channels, at least
    ``ROW_MIN_POSITIONS`` output pixels, and for a backward pass that computes dx,
    ``K_MAJOR_CHANNELS`` or more input channels (dx channels-last; with fewer,
    batch-innermost col2im was faster)."""
    c_out, c_in, kh, _ = weight_shape
    return (ROW_GEMMS and stride == (1, 1) and kh > 1
            and ROW_MIN_OUT_CHANNELS <= c_out <= ROW_MAX_CHANNELS and c_in <= ROW_MAX_CHANNELS
            and out_hw[0] * out_hw[1] >= ROW_MIN_POSITIONS
            and (c_in >= K_MAJOR_CHANNELS or not need_dx))
