"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``): a loop nest and im2col + GEMM.

Output size per spatial axis: ``floor((I + 2P - D*(K-1) - 1) / S) + 1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels import _parallel, _winograd
from glasscnn.kernels._common import (
    check_impl,
    check_ndim,
    check_non_negative,
    check_positive,
    conv_output_size,
    get_xp,
    pair,
    run_repeats,
    sum_parts,
)
from glasscnn.kernels.activations import relu_backward, relu_forward

OP = "conv2d"
# bound on one chunk's im2col buffer: chunks that stay in the 2 MiB L2 cache between the
# im2col copy and the GEMM were measured fastest (1-2 MiB against 8 MiB: 1.15× on a vgg step)
CHUNK_BYTES = 2 * 2**20
# ... unless a GEMM would get fewer rows (N*H_out*W_out) than this: too thin to run fast
MIN_ROWS = 512
# fewer input channels than this: NCHW (K-major) im2col; channels-last copies of 3-channel
# pixels are slow (measured 1.75× on a vgg step's first layer)
K_MAJOR_CHANNELS = 8
# fewer input channels than K_MAJOR_CHANNELS and outputs at most this wide: batch-innermost
# (C, H, W, N) im2col and col2im, whose copies and adds run over W_out * N floats instead of
# W_out (lenet's 10x10 conv2, measured: forward 1.36x, backward with dx 1.4-1.6x faster)
CHWN_MAX_WIDTH = 16
# K-major im2col of stride-1 rows and outputs at most this wide: two copies with long runs
# (:func:`_k_major_two_copies`) instead of one with runs of W_out floats (alexnet's conv2
# and conv4 at batch 1: 1.25-1.35x faster; at 28-32 wide, 5-10% slower)
TWO_COPY_MAX_WIDTH = 16
# a layer's im2col must have at least this many elements for its chunks to go to the thread
# pool: below it, handing chunks to a second thread costs more than it saves (measured)
PARALLEL_MIN_ELEMENTS = 2**18
# stride-1 layers with ROW_MIN_OUT_CHANNELS to ROW_MAX_CHANNELS output channels, at most
# ROW_MAX_CHANNELS input channels, at least ROW_MIN_POSITIONS output pixels and kernels of
# two or more rows run by kernel rows (:func:`_forward_rows`, :func:`_backward_rows`; see
# :func:`_rows_apply`): width-only im2col, one GEMM per kernel row. Measured on two threads,
# forward / backward: vgg's 16→16 32×32 1.6× / 1.45×, 32→32 16×16 1.5× / 1.35×, 64→64 8×8
# 1.15× / 1.15×, its 3→16 first layer 1.0× / 1.3×, three_layer's 3→32 7×7 1.1× / 1.15×
# faster, lenet_bn's step with its 3→6 conv1 so 6% faster; 4×4 outputs, or 96 and more
# channels (alexnet's conv2-conv5), 1.1-2× slower. Tests switch ROW_GEMMS off to reach the
# other paths.
ROW_GEMMS = True
ROW_MIN_OUT_CHANNELS = 6
ROW_MAX_CHANNELS = 64
ROW_MIN_POSITIONS = 36


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
        x: input, shape (N, C_in, H, W), float32 or float64.
        weight: filters, shape (C_out, C_in, kH, kW), same dtype as ``x``.
        bias: ``None`` or shape (C_out,).
        stride: S, an int or an (h, w) pair, > 0.
        padding: P, zeros added on each side, an int or an (h, w) pair, >= 0.
        dilation: D, spacing between kernel taps, an int or an (h, w) pair, > 0.
        impl: ``"fast"`` (im2col + GEMM) or ``"naive"`` (loop nest).

    Returns:
        ``(out, cache)``: out of shape (N, C_out, H_out, W_out) in ``x``'s dtype, with
        ``H_out = floor((H + 2P - D*(kH-1) - 1) / S) + 1`` and likewise ``W_out``;
        cache for :func:`conv2d_backward` (it holds ``x``, not the im2col matrix).
    """
    stride, padding, dilation = _check_args(x, weight, bias, stride, padding, dilation, impl)
    out_hw = _output_hw(x, weight, stride, padding, dilation)
    weight = weight.astype(x.dtype, copy=False)
    bias = None if bias is None else bias.astype(x.dtype, copy=False)
    forward = _forward_naive if impl == "naive" else _forward_fast
    out = forward(x, weight, bias, stride, padding, dilation, out_hw)
    return out, _make_cache(impl, x, weight, bias, stride, padding, dilation)


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
        stride, padding, dilation = _check_args(x, weight, bias, stride, padding, dilation,
                                                impl)
        out_hw = _output_hw(x, weight, stride, padding, dilation)
        weight = weight.astype(x.dtype, copy=False)
        bias = None if bias is None else bias.astype(x.dtype, copy=False)
        out = _forward_fast(x, weight, bias, stride, padding, dilation, out_hw, relu=True)
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
        return _backward_fast(*args, need_dx=need_dx, has_bias=cache["has_bias"],
                              relu_out=cache.get("relu_out"))
    dx, dw = _backward_naive(*args)
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


def _forward_naive(x, weight, bias, stride, padding, dilation, out_hw):
    """Loop nest over (n, c_out, i, j); the window sum is one ``np.sum``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    kh, kw = weight.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    b = np.zeros(weight.shape[0], x.dtype) if bias is None else bias
    out = np.zeros((x.shape[0], weight.shape[0], *out_hw), dtype=x.dtype)
    # out[n,co,i,j] = b[co] + sum_{ci,p,q} w[co,ci,p,q] * x_pad[n,ci,i*S+p*D,j*S+q*D]
    for n in range(out.shape[0]):
        for co in range(out.shape[1]):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    out[n, co, i, j] = b[co] + np.sum(weight[co] * x_pad[n, :, rows, cols])
    return out


def _backward_naive(dout, x, weight, stride, padding, dilation):
    """The forward loop nest, scattering each ``dout[n, co, i, j]`` into dx_pad and dw."""
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    kh, kw = weight.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(weight)
    # window = x_pad[n, :, i*S : i*S + D*(kH-1)+1 : D, j*S : j*S + D*(kW-1)+1 : D]
    # dx_pad[window] += dout[n,co,i,j] * w[co];  dw[co] += dout[n,co,i,j] * window
    for n in range(dout.shape[0]):
        for co in range(dout.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
                    dx_pad[n, :, rows, cols] += dout[n, co, i, j] * weight[co]
                    dw[co] += dout[n, co, i, j] * x_pad[n, :, rows, cols]
    return np.ascontiguousarray(dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]), dw


def _chunks(n, bytes_per_image, parts=1, min_images=1):
    """Split range(n) into balanced slices whose im2col buffers stay under CHUNK_BYTES.

    ``parts``: at least this many slices (as many as there are images at most), and a
    multiple of it where possible, so that every thread of a parallel section gets an equal
    share (5 chunks on 2 threads take as long as 6). ``min_images``: at least this many images
    per slice (it may lift the buffer over CHUNK_BYTES), so that each GEMM keeps enough rows.
    """
    per_chunk = max(1, min_images, CHUNK_BYTES // max(1, bytes_per_image))
    count = max(parts, -(-n // per_chunk))
    count = min(max(n, 1), -(-count // parts) * parts)  # a multiple of parts: no idle thread
    # sizes differ by one at most, the larger first (chunk 0 sizes the buffers)
    sizes = [n // count + (i < n % count) for i in range(count)]
    starts = [sum(sizes[:i]) for i in range(count)]
    return [slice(start, start + size) for start, size in zip(starts, sizes, strict=True)]


def _train_chunks(n, positions, bytes_per_image, slots):
    """Batch chunks of the training-size path: about CHUNK_BYTES of im2col and at least
    MIN_ROWS GEMM rows, but never over 4 × CHUNK_BYTES (more than one image)."""
    min_images = min(-(-MIN_ROWS // positions), 4 * CHUNK_BYTES // max(1, bytes_per_image))
    return _chunks(n, bytes_per_image, parts=slots, min_images=min_images)


def _pad_nhwc(x_nhwc, pad_h, pad_w, out):
    """Copy an NHWC array or view (N, H, W, C) into the interior of ``out``.

    ``out`` is (N, H + 2*pad_h, W + 2*pad_w, C) with a zero border (the caller zeroes it
    once and reuses it for every chunk). Returns ``out``.
    """
    h, w = x_nhwc.shape[1:3]
    get_xp(out).copyto(out[:, pad_h:pad_h + h, pad_w:pad_w + w], x_nhwc)
    return out


def _pad_nchw(x, pad_h, pad_w, out=None):
    """Zero-padded contiguous (N, C, H + 2*pad_h, W + 2*pad_w) copy of an NCHW array.

    Written into the interior of ``out`` when given (its border zeroed by the caller, as
    for :func:`_pad_nhwc`); else a new array, or ``x`` itself when there is no padding and
    it is contiguous.
    """
    xp = get_xp(x)
    n, c, h, w = x.shape
    if out is None:
        if pad_h == 0 and pad_w == 0:
            return xp.ascontiguousarray(x)
        out = xp.zeros((n, c, h + 2 * pad_h, w + 2 * pad_w), dtype=x.dtype)
    xp.copyto(out[:, :, pad_h:pad_h + h, pad_w:pad_w + w], x)
    return out


def _im2col(x_nhwc, kernel, stride, dilation, out_hw, buf):
    """Copy every window of padded NHWC ``x_nhwc`` into ``buf``; return (N*H_out*W_out, K).

    One ``copyto`` from an ``as_strided`` window view (N, H_out, W_out, kH, kW, C), so K is
    ordered (kH, kW, C).
    """
    n, _, _, c = x_nhwc.shape
    s_n, s_h, s_w, s_c = x_nhwc.strides
    cols = _copy_windows(
        x_nhwc, (n, *out_hw, *kernel, c),
        (s_n, stride[0] * s_h, stride[1] * s_w, dilation[0] * s_h, dilation[1] * s_w, s_c), buf)
    return cols.reshape(n * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * c)


def _copy_windows(x, shape, strides, buf):
    """Copy the ``as_strided`` view of ``x`` with this shape and these byte strides (the
    windows of an im2col) into the front of ``buf``; return the copy, shaped ``shape``."""
    xp = get_xp(x)
    cols = buf[:math.prod(shape)].reshape(shape)
    xp.copyto(cols, xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides))
    return cols


def _im2col_k_major(x_pad, kernel, stride, dilation, out_hw, buf, batch_inner=False):
    """Copy every window of padded NCHW ``x_pad`` into ``buf``; return (K, N*H_out*W_out).

    One ``copyto`` from an ``as_strided`` window view (C, kH, kW, N, H_out, W_out), so K is
    ordered (C, kH, kW) like a reshaped OIHW weight (two copies with longer runs for
    stride-1 rows at most ``TWO_COPY_MAX_WIDTH`` wide: :func:`_k_major_two_copies`).
    ``batch_inner``: ``x_pad`` is (C, H, W, N) instead, the view (C, kH, kW, H_out, W_out,
    N) and the columns ordered (H_out, W_out, N), so that each copied run is a window row
    of all the images.
    """
    if batch_inner:
        c, _, _, n = x_pad.shape
        s_c, s_h, s_w, s_n = x_pad.strides
    else:
        n, c, _, _ = x_pad.shape
        s_n, s_c, s_h, s_w = x_pad.strides
    taps = (s_c, dilation[0] * s_h, dilation[1] * s_w)  # strides of (C, kH, kW)
    outs = (stride[0] * s_h, stride[1] * s_w)  # strides of (H_out, W_out)
    if batch_inner:
        shape, strides = (c, *kernel, *out_hw, n), (*taps, *outs, s_n)
    elif stride[0] == 1 and kernel[0] > 1 and out_hw[1] <= TWO_COPY_MAX_WIDTH:
        return _k_major_two_copies(x_pad, kernel, stride[1], dilation, out_hw, buf)
    else:
        shape, strides = (c, *kernel, n, *out_hw), (*taps, s_n, *outs)
    cols = _copy_windows(x_pad, shape, strides, buf)
    return cols.reshape(c * kernel[0] * kernel[1], n * out_hw[0] * out_hw[1])


def _k_major_two_copies(x_pad, kernel, stride_w, dilation, out_hw, buf):
    """K-major im2col of a stride-1 (in height) layer in two copies; same result as
    :func:`_im2col_k_major`'s one copy, (K, N*H_out*W_out).

    Technique: the one-copy view moves runs of W_out floats (6 for alexnet's conv4, 31 k
    runs for its conv2 at batch 1). First the kernel-width windows of every padded row,
    S[c, q, n, r, j] = x_pad[n, c, r, q*D_w + j*S_w] (runs of W_out, but kH times fewer of
    them); kernel row p of window (i, j) is then row p*D_h + i of S, so each
    ``cols[(c, p, q), n]`` is one contiguous run of H_out*W_out floats of S.
    """
    xp = get_xp(x_pad)
    n, c, h_pad, _ = x_pad.shape
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_c, s_h, s_w = x_pad.strides
    shifted = _copy_windows(x_pad, (c, kw, n, h_pad, ow),
                            (s_c, dilation[1] * s_w, s_n, s_h, stride_w * s_w),
                            xp.empty(c * kw * n * h_pad * ow, x_pad.dtype))
    t_c, t_q, t_n, t_h, t_w = shifted.strides
    cols = _copy_windows(shifted, (c, kh, kw, n, oh * ow),
                         (t_c, dilation[0] * t_h, t_q, t_n, t_w), buf)
    return cols.reshape(c * kh * kw, n * oh * ow)


def _forward_fast(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """The fast conv forward: the kernel for the layer's shape.

    K-major im2col for one image or few output positions (:func:`_forward_k_major`);
    Winograd F(2×2, r×r) for the 3×3 and 5×5 stride-1 layers with many channels and tiles
    that ``_winograd.applies`` admits, where ``_winograd.select`` finds it faster than the
    GEMM path; else the GEMM path: kernel rows for the stride-1 layers :func:`_rows_apply`
    admits (:func:`_forward_rows`); batch-innermost im2col for the others with fewer than
    ``K_MAJOR_CHANNELS`` input channels and outputs at most ``CHWN_MAX_WIDTH`` wide
    (:func:`_forward_chwn`); :func:`_forward_im2col` for the rest. ``relu``: rectify the output
    (:func:`conv2d_relu_forward`).
    """
    xp = get_xp(x)
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    args = (x, weight, bias, stride, padding, dilation, out_hw, relu)
    # one image, or few output positions and a big weight (small-batch inference):
    # K-major, no weight copy
    if n * out_hw[0] * out_hw[1] <= 2 * c_out or n == 1:
        return _forward_k_major(*args)
    rows = _rows_apply(weight.shape, stride, out_hw)

    def gemms():
        if rows:
            return _forward_rows(x, weight, bias, padding, dilation, out_hw, relu)
        return _forward_im2col(*args)

    if xp is np and _winograd.applies(weight.shape, stride, dilation, n, out_hw):
        key = ("forward", x.shape, weight.shape, padding, x.dtype.str, bias is None, relu,
               _parallel.threads())
        return _winograd.select(key, lambda: _winograd.conv(x, weight, bias, padding, out_hw,
                                                           relu),
                                gemms)
    if not rows and c_in < K_MAJOR_CHANNELS and out_hw[1] <= CHWN_MAX_WIDTH:
        return _forward_chwn(*args)
    return gemms()


def _forward_im2col(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """im2col + one GEMM per batch chunk (bounded buffer), in the layout that copies least.

    Channels-last im2col, or K-major (NCHW) with fewer than ``K_MAJOR_CHANNELS`` input
    channels. From ``K_MAJOR_CHANNELS`` output channels on, each chunk's GEMM writes its
    rows of a channels-last output in place, and the result is that buffer seen as
    (N, C_out, H_out, W_out) (see ``kernels.channels_last``); with fewer, the output is NCHW.
    The chunks run on the kernels' thread pool (``_parallel``) where :func:`_slots` says
    so, each thread with its own buffers, allocated once per call. ``relu``: rectify each
    chunk's output in place while it is in cache.
    """
    xp = get_xp(x)
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = weight.shape
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    nchw = c_in < K_MAJOR_CHANNELS
    slots = _slots(xp, n, positions, k)
    chunks = _train_chunks(n, positions, positions * k * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = _pad_buffers(xp, x, padding, nb_max, slots, nchw)
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    cl_out = c_out >= K_MAJOR_CHANNELS
    out = _empty_4d(xp, (n, c_out, *out_hw), x.dtype, cl_out)
    results = None if cl_out else [xp.empty((c_out, nb_max * positions), x.dtype)
                                   for _ in range(slots)]
    if nchw:
        w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)
    else:
        w_mat = weight.transpose(0, 2, 3, 1).reshape(c_out, k)  # K ordered (kH, kW, C_in)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        rows = nb * positions
        if nchw:
            x_pad = _pad_nchw(x[ch], *padding, x_pads[slot][:nb])
            cols = _im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot]).T
        else:
            # channels-last im2col: one copy of a strided window view, then one GEMM
            x_nhwc = _pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
            cols = _im2col(x_nhwc, (kh, kw), stride, dilation, out_hw, bufs[slot])
        if cl_out:  # the GEMM writes the chunk's channels-last rows in place
            dst = out[ch].transpose(0, 2, 3, 1).reshape(rows, c_out)
            _gemm(xp, cols, w_mat.T, dst)  # (nb*P, K) @ (K, C_out)
            if bias is not None:
                _add_bias_rows(dst, bias)
        else:
            res = _gemm(xp, w_mat, cols.T, results[slot][:, :rows])  # (C_out, nb*P)
            res = res.reshape(c_out, nb, positions).transpose(1, 0, 2)
            dst = out[ch].reshape(nb, c_out, positions)
            if bias is None:
                xp.copyto(dst, res)
            else:
                xp.add(res, bias[:, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out


def _rows_apply(weight_shape, stride, out_hw, need_dx=False):
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


def _forward_rows(x, weight, bias, padding, dilation, out_hw, relu=False):
    """Stride-1 convolution by kernel rows: im2col over the kernel's width only, then one
    batched GEMM per kernel row on shifted views of it, summed.

    Technique: kernel row p sees the input rows of kernel row 0 shifted down by p*D_h, so
    one copy Q (N, H + 2P_h, W_out, kW*C_in) of the padded channels-last input's width
    windows serves all kH rows: ``out[n, i, j] = Σ_p Q[n, i + p*D_h, j] @ W_p`` with
    ``W_p = w[:, :, p, :]`` as (kW*C_in, C_out), and each image's rows of Q for one p are a
    (H_out*W_out, kW*C_in) view. The copy is about kH times smaller than im2col's (vgg's
    16→16 layer on two threads: 11.7 → 7.5 ms). Output channels-last, like
    :func:`_forward_im2col`'s; the batch chunks run on the kernels' thread pool.
    """
    xp = get_xp(x)
    n, c_in, h, _ = x.shape
    c_out, _, kh, kw = weight.shape
    oh, ow = out_hw
    positions = oh * ow
    k_row = kw * c_in
    q_size = (h + 2 * padding[0]) * ow * k_row  # one image's width windows
    slots = _slots(xp, n, positions, kh * k_row)
    chunks = _chunks(n, q_size * x.itemsize, parts=slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = _pad_buffers(xp, x, padding, nb_max, slots, nchw=False)
    bufs = [xp.empty(nb_max * q_size, x.dtype) for _ in range(slots)]
    tmps = [xp.empty((nb_max, positions, c_out), x.dtype) for _ in range(slots)]
    out = _empty_4d(xp, (n, c_out, oh, ow), x.dtype, True)
    w_rows = weight.transpose(2, 3, 1, 0).reshape(kh, k_row, c_out)  # W_p, rows (kW, C_in)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        q = _padded_width_windows(x[ch].transpose(0, 2, 3, 1), padding, kw, dilation[1], ow,
                                  x_pads[slot][:nb], bufs[slot])
        dst = out[ch].transpose(0, 2, 3, 1).reshape(nb, positions, c_out)
        _row_products(q, w_rows, dilation[0], oh, dst, tmps[slot][:nb])
        rows = dst.reshape(nb * positions, c_out)
        if bias is not None:
            _add_bias_rows(rows, bias)
        if relu:
            xp.maximum(rows, 0, out=rows)

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out


def _padded_width_windows(x_nhwc, padding, kw, dilation_w, out_w, pad_buf, buf):
    """Pad NHWC ``x_nhwc`` (nb, H, W, C) into ``pad_buf`` (its border zeroed by the caller),
    copy the padded array's kernel-width windows into ``buf`` and return them as
    (nb, H + 2P_h, W_out, kW*C), the last axis ordered (kW, C)."""
    x_pad = _pad_nhwc(x_nhwc, *padding, pad_buf)
    nb, h_pad, _, c = x_pad.shape
    s_n, s_h, s_w, s_c = x_pad.strides
    q = _copy_windows(x_pad, (nb, h_pad, out_w, kw, c),
                      (s_n, s_h, s_w, dilation_w * s_w, s_c), buf)
    return q.reshape(nb, h_pad, out_w, kw * c)


def _row_products(q, w_rows, dilation_h, out_h, dst, tmp):
    """``dst[n] = Σ_p q[n, p*D_h : p*D_h + H_out] @ w_rows[p]``: one batched GEMM per kernel
    row on views of the width windows ``q`` (nb, H_pad, W_out, K_row); ``dst`` and ``tmp``
    (nb, H_out*W_out, C_out); ``w_rows`` (kH, K_row, C_out)."""
    xp = get_xp(q)
    for p in range(w_rows.shape[0]):
        xp.matmul(_kernel_row(q, p, dilation_h, out_h), w_rows[p], out=tmp if p else dst)
        if p:
            xp.add(dst, tmp, out=dst)


def _kernel_row(q, p, dilation_h, out_h):
    """The rows of the width windows ``q`` (nb, H_pad, W_out, K_row) that kernel row ``p``
    multiplies, as (nb, H_out*W_out, K_row): rows p*D_h ... p*D_h + H_out - 1 (a view)."""
    nb, _, ow, k_row = q.shape
    return q[:, p * dilation_h:p * dilation_h + out_h].reshape(nb, out_h * ow, k_row)


def _add_bias_rows(rows, bias):
    """``rows += bias`` for contiguous channels-last rows (R, C_out), the bias repeated to
    runs of about ``RUN_FLOATS`` floats (``_common.run_repeats``), so that NumPy's add
    loops over long runs."""
    r, c = rows.shape
    rep = run_repeats(r, c)
    runs = rows.reshape(r // rep, rep * c)
    get_xp(rows).add(runs, get_xp(bias).tile(bias, rep), out=runs)


def _relu_masked(dout, y, mask, out):
    """ReLU's backward on a chunk of a fused conv + ReLU: ``out = dout · [y > 0]``, with
    ``mask`` as bool scratch; all four of one shape. Returns ``out``."""
    xp = get_xp(dout)
    xp.greater(y, 0, out=mask)
    return xp.multiply(dout, mask, out=out)


def _gemm(xp, a, b, out, inner=False):
    """``a @ b`` into ``out``: NumPy's in the blocks that OpenBLAS's small-matrix kernels
    take (``_parallel.matmul_small``; ``matmul_small_sum`` splits a long inner dimension)."""
    if xp is not np:
        return xp.matmul(a, b, out=out)
    return (_parallel.matmul_small_sum if inner else _parallel.matmul_small)(a, b, out)


def _empty_4d(xp, shape, dtype, cl):
    """An uninitialised (N, C, H, W) array, stored channels-last when ``cl``."""
    if not cl:
        return xp.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def _pad_buffers(xp, x, padding, nb_max, slots, nchw):
    """One zeroed padded-input buffer per thread, NCHW or NHWC, for chunks of ``nb_max``."""
    _, c, h, w = x.shape
    hw = (h + 2 * padding[0], w + 2 * padding[1])
    shape = (nb_max, c, *hw) if nchw else (nb_max, *hw, c)
    return [xp.zeros(shape, x.dtype) for _ in range(slots)]


def _forward_k_major(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """K-major im2col (K, N*P) + one GEMM per chunk, threaded by OpenBLAS itself.

    For few output positions and many filters (small-batch inference): the OIHW weight is
    already the (C_out, K) matrix, and one image's output is written by the GEMM in place.
    On AlexNet's batch-1 shapes (256×2400 @ 2400×169, 384×2304 @ 2304×36, ...) 2-thread
    OpenBLAS was 12-27% faster than splitting the product over the kernel thread pool, and
    it did not stall with the other core busy (measured both ways).
    """
    xp = get_xp(x)
    c_out, c_in, kh, kw = weight.shape
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    chunks = _chunks(x.shape[0], positions * k * x.itemsize)
    buf = xp.empty((chunks[0].stop - chunks[0].start) * positions * k, x.dtype)
    out = xp.empty((x.shape[0], c_out, *out_hw), dtype=x.dtype)
    w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)
    for ch in chunks:
        nb = ch.stop - ch.start
        dst = out[ch].reshape(nb, c_out, positions)
        x_pad = _pad_nchw(x[ch], *padding)
        cols = _im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, buf)  # (K, nb*P)
        if nb == 1:  # one image: the GEMM writes the output in place
            xp.matmul(w_mat, cols, out=dst[0])  # (C_out, K) @ (K, P)
            if bias is not None:
                xp.add(dst, bias[:, None], out=dst)
        else:
            res = xp.matmul(w_mat, cols).reshape(c_out, nb, positions).transpose(1, 0, 2)
            if bias is None:
                xp.copyto(dst, res)
            else:
                xp.add(res, bias[:, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)
    return out


def _pad_chwn(x, pad_h, pad_w, out):
    """Copy NCHW ``x`` (nb, C, H, W) into the interior of ``out`` (C, H + 2*pad_h,
    W + 2*pad_w, nb), batch innermost, whose border the caller has zeroed. Returns ``out``."""
    h, w = x.shape[2:]
    get_xp(out).copyto(out[:, pad_h:pad_h + h, pad_w:pad_w + w], x.transpose(1, 2, 3, 0))
    return out


def _chwn_plan(xp, x, weight, padding, out_hw):
    """Threads, batch chunks and per-thread zeroed (C, H + 2P, W + 2P, nb) input buffers
    of the batch-innermost path."""
    n, c_in, h, w = x.shape
    positions = out_hw[0] * out_hw[1]
    k = c_in * weight.shape[2] * weight.shape[3]
    slots = _slots(xp, n, positions, k)
    chunks = _train_chunks(n, positions, positions * k * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    pad_hw = (h + 2 * padding[0], w + 2 * padding[1])
    x_pads = [xp.zeros((c_in, *pad_hw, nb_max), x.dtype) for _ in range(slots)]
    return slots, chunks, nb_max, x_pads


def _forward_chwn(x, weight, bias, stride, padding, dilation, out_hw, relu=False):
    """Batch-innermost im2col + one GEMM per chunk, for few input channels and narrow outputs.

    Technique: each chunk of images is laid out (C, H, W, nb), so that the im2col copy
    (:func:`_im2col_k_major` with ``batch_inner``) moves runs of W_out * nb floats, not
    W_out; the GEMM (C_out, K) @ (K, H_out*W_out*nb) gives the chunk as (C_out, H_out,
    W_out, nb), which one copy (with the bias, and ReLU when ``relu``) puts into the NCHW
    output.
    """
    xp = get_xp(x)
    c_out = weight.shape[0]
    kernel = weight.shape[2:]
    positions = out_hw[0] * out_hw[1]
    slots, chunks, nb_max, x_pads = _chwn_plan(xp, x, weight, padding, out_hw)
    k = x.shape[1] * kernel[0] * kernel[1]
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    results = [xp.empty(c_out * nb_max * positions, x.dtype) for _ in range(slots)]
    out = xp.empty((x.shape[0], c_out, *out_hw), dtype=x.dtype)
    w_mat = weight.reshape(c_out, k)  # (C_out, K), K ordered (C_in, kH, kW)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        x_pad = _pad_chwn(x[ch], *padding, x_pads[slot][..., :nb])
        cols = _im2col_k_major(x_pad, kernel, stride, dilation, out_hw, bufs[slot], True)
        res = results[slot][:c_out * cols.shape[1]].reshape(c_out, cols.shape[1])
        _gemm(xp, w_mat, cols, res)  # (C_out, H_out*W_out*nb)
        res = res.reshape(c_out, *out_hw, nb).transpose(3, 0, 1, 2)
        dst = out[ch]
        if bias is None:
            xp.copyto(dst, res)
        else:
            xp.add(res, bias[:, None, None], out=dst)
        if relu:
            xp.maximum(dst, 0, out=dst)

    _parallel.run_chunks(chunk, len(chunks), slots)
    return out


def _backward_chwn(dout, x, weight, stride, padding, dilation, need_dx, has_bias, relu_out):
    """The gradients of :func:`_forward_chwn`'s layers, batch innermost, NCHW dx.

    Per chunk: dout is copied (masked by ``[y > 0]`` with ``relu_out``) to (C_out,
    H_out*W_out*nb); ``dWᵀ += cols @ doutᵀ`` on the chunk's batch-innermost im2col;
    ``dx`` by col2im: ``Wᵀ @ dout`` gives (K, H_out*W_out*nb), added back one kernel offset
    at a time into a zeroed (C_in, H + 2P, W + 2P, nb) buffer, each add running over
    W_out * nb floats. Returns ``(dx or None, dW, db or None)``.
    """
    xp = get_xp(dout)
    _, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out_hw = dout.shape[2:]
    positions = out_hw[0] * out_hw[1]
    slots, chunks, nb_max, x_pads = _chwn_plan(xp, x, weight, padding, out_hw)
    k = c_in * kh * kw
    bufs = [xp.empty(nb_max * positions * k, x.dtype) for _ in range(slots)]
    d_bufs = [xp.empty(c_out * nb_max * positions, x.dtype) for _ in range(slots)]
    if relu_out is not None:
        masks = [xp.empty(c_out * nb_max * positions, bool) for _ in range(slots)]
    dx_pads = [xp.empty_like(x_pads[0]) for _ in range(slots)] if need_dx else None
    db_parts = xp.empty((len(chunks), c_out), x.dtype) if has_bias else None
    ones = xp.ones(nb_max * positions, x.dtype) if has_bias else None
    dw_parts = xp.empty((len(chunks), k, c_out), dtype=x.dtype)  # dWᵀ per chunk
    dx = xp.empty(x.shape, x.dtype) if need_dx else None
    w_mat = weight.reshape(c_out, k)
    (sh, sw), (dh, dw_) = stride, dilation
    oh, ow = out_hw
    rows = [slice(p * dh, p * dh + sh * (oh - 1) + 1, sh) for p in range(kh)]
    cols_at = [slice(q * dw_, q * dw_ + sw * (ow - 1) + 1, sw) for q in range(kw)]

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        x_pad = _pad_chwn(x[ch], *padding, x_pads[slot][..., :nb])
        cols = _im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot], True)
        size = c_out * cols.shape[1]
        d = d_bufs[slot][:size].reshape(c_out, oh, ow, nb)
        if relu_out is None:
            xp.copyto(d, dout[ch].transpose(1, 2, 3, 0))
        else:
            _relu_masked(dout[ch].transpose(1, 2, 3, 0), relu_out[ch].transpose(1, 2, 3, 0),
                         masks[slot][:size].reshape(d.shape), d)
        d_mat = d.reshape(c_out, cols.shape[1])  # (C_out, H_out*W_out*nb)
        if has_bias:  # db[co] = Σ dout[., co, ., .], as a GEMV
            xp.matmul(ones[:cols.shape[1]], d_mat.T, out=db_parts[i])
        _gemm(xp, cols, d_mat.T, dw_parts[i], inner=True)  # dWᵀ part, (K, C_out)
        if not need_dx:
            return
        dcols = _gemm(xp, w_mat.T, d_mat, cols)  # (K, H_out*W_out*nb), over cols
        dcols = dcols.reshape(c_in, kh, kw, oh, ow, nb)
        dx_pad = dx_pads[slot][..., :nb]
        dx_pad.fill(0)
        for p in range(kh):  # dx_pad[c, i*S + p*D, j*S + q*D, n] += dcols[c, p, q, i, j, n]
            for q in range(kw):
                dx_pad[:, rows[p], cols_at[q]] += dcols[:, p, q]
        xp.copyto(dx[ch], dx_pad[:, padding[0]:padding[0] + h,
                                 padding[1]:padding[1] + w].transpose(3, 0, 1, 2))

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw = sum_parts(xp, dw_parts).T.reshape(c_out, c_in, kh, kw)
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db


def _backward_fast(dout, x, weight, stride, padding, dilation, need_dx=True, has_bias=False,
                   relu_out=None):
    """The fast conv backward: Winograd for the layers ``_winograd.applies`` admits, where
    ``_winograd.select`` finds it faster than :func:`_backward_gemm` (timed per layer as in
    the forward); else :func:`_backward_gemm`. Returns ``(dx or None, dW, db or None)``."""
    args = (dout, x, weight, stride, padding, dilation, need_dx, has_bias, relu_out)
    if get_xp(dout) is not np or not _winograd.applies(weight.shape, stride, dilation,
                                                       x.shape[0], dout.shape[2:]):
        return _backward_gemm(*args)
    key = ("backward", x.shape, weight.shape, padding, x.dtype.str, need_dx, has_bias,
           relu_out is None, _parallel.threads())
    return _winograd.select(key, lambda: _winograd.backward(dout, x, weight, padding, need_dx,
                                                            has_bias, relu_out),
                            lambda: _backward_gemm(*args))


def _backward_gemm(dout, x, weight, stride, padding, dilation, need_dx=True, has_bias=False,
                   relu_out=None):
    """dW: im2col + GEMM; dx: conv of dout with the flipped kernel, or col2im; db: row sums.

    ``dout`` is read as (N*H_out*W_out, C_out) rows: a view when it is channels-last (as
    the fast kernels produce it), else one copy per chunk; with ``relu_out`` (the output of
    :func:`conv2d_relu_forward`) each chunk of dout is first multiplied by its mask
    ``[y > 0]``. ``dx`` is returned channels-last from 8 input channels on. The chunks run
    on the kernels' thread pool where :func:`_slots` says so; each thread has its own
    buffers (allocated once per call); each chunk's dW and db parts are summed in chunk
    order afterwards. Returns ``(dx or None, dW, db or None)``.
    """
    xp = get_xp(dout)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out_hw = dout.shape[2:]
    if (_rows_apply(weight.shape, stride, out_hw, need_dx)
            and min(_flipped_padding(weight, padding, dilation)) >= 0):
        return _backward_rows(dout, x, weight, padding, dilation, need_dx, has_bias, relu_out)
    if c_in < K_MAJOR_CHANNELS and out_hw[1] <= CHWN_MAX_WIDTH and n > 1:
        return _backward_chwn(dout, x, weight, stride, padding, dilation, need_dx, has_bias,
                              relu_out)
    positions = out_hw[0] * out_hw[1]
    k = kh * kw * c_in
    # stride 1: convolving dout beats col2im unless its im2col is much the larger
    transposed = need_dx and stride == (1, 1) and h * w * c_out <= 2 * positions * c_in
    per_image = max(positions * k, h * w * kh * kw * c_out if transposed else positions * k)
    slots = _slots(xp, n, positions, k)
    nchw = c_in < K_MAJOR_CHANNELS
    chunks = _train_chunks(n, positions, per_image * x.itemsize, slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = _pad_buffers(xp, x, padding, nb_max, slots, nchw)
    bufs = [xp.empty(nb_max * per_image, x.dtype) for _ in range(slots)]
    dout_nhwc = dout.transpose(0, 2, 3, 1)
    d_bufs = None  # channels-last dout is read in place
    if relu_out is not None:  # NHWC scratch: the masked dout and the mask
        d_bufs = [xp.empty((nb_max, *out_hw, c_out), x.dtype) for _ in range(slots)]
        masks = [xp.empty((nb_max, *out_hw, c_out), bool) for _ in range(slots)]
        y_nhwc = relu_out.transpose(0, 2, 3, 1)
    elif not dout_nhwc.flags.c_contiguous:  # NCHW dout: copied to (C_out, nb*P) per chunk
        d_bufs = [xp.empty((c_out, nb_max, positions), x.dtype) for _ in range(slots)]
    # each chunk writes its own dWᵀ and db part, summed in chunk order at the end: the
    # result does not depend on which thread ran which chunk (bitwise reproducible)
    db_parts = xp.empty((len(chunks), c_out), x.dtype) if has_bias else None
    ones = xp.ones(nb_max * positions, x.dtype) if has_bias else None
    dw_parts = xp.empty((len(chunks), k, c_out), dtype=x.dtype)  # dWᵀ per chunk
    dx = _empty_4d(xp, x.shape, x.dtype, c_in >= K_MAJOR_CHANNELS) if need_dx else None
    if transposed:
        dx_conv = _TransposedConv(xp, weight, padding, dilation, out_hw, (h, w), nb_max, slots)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        if nchw:  # cols (K, nb*P), K ordered (C_in, kH, kW)
            x_pad = _pad_nchw(x[ch], *padding, x_pads[slot][:nb])
            cols = _im2col_k_major(x_pad, (kh, kw), stride, dilation, out_hw, bufs[slot])
        else:  # cols (nb*P, K), K ordered (kH, kW, C_in)
            x_nhwc = _pad_nhwc(x[ch].transpose(0, 2, 3, 1), *padding, x_pads[slot][:nb])
            cols = _im2col(x_nhwc, (kh, kw), stride, dilation, out_hw, bufs[slot]).T
        if relu_out is not None:
            d_nhwc = _relu_masked(dout_nhwc[ch], y_nhwc[ch], masks[slot][:nb], d_bufs[slot][:nb])
            d_rows = d_nhwc.reshape(nb * positions, c_out)
        elif d_bufs is None:  # channels-last dout: its rows are a view
            d_nhwc = dout_nhwc[ch]
            d_rows = d_nhwc.reshape(nb * positions, c_out)  # (nb*P, C_out)
        else:  # NCHW dout: one copy to (C_out, nb*P), runs of H_out*W_out
            d_t = d_bufs[slot][:, :nb]
            xp.copyto(d_t, dout[ch].reshape(nb, c_out, positions).transpose(1, 0, 2))
            d_rows = d_t.reshape(c_out, nb * positions).T
            d_nhwc = d_t.reshape(c_out, nb, *out_hw).transpose(1, 2, 3, 0)
        if has_bias:  # db[co] = Σ_{n,i,j} dout[n, co, i, j], as a GEMV (8× a column sum)
            xp.matmul(ones[:nb * positions], d_rows, out=db_parts[i])
        # dWᵀ = cols @ d_rows, (K, nb*P) @ (nb*P, C_out): with few output channels, the other
        # orientation (M = C_out, long inner dimension) makes 2-thread OpenBLAS synchronise
        # per K block and stall for seconds under load
        _gemm(xp, cols, d_rows, dw_parts[i], inner=True)
        if not need_dx:
            return
        if transposed:
            dx_conv(d_nhwc, dx[ch], bufs[slot], slot)
        else:
            dx_pad = _dx_col2im(d_rows.T, weight, (nb, c_in, h, w), padding, stride, dilation,
                                out_hw)  # (nb, H + 2P, W + 2P, C_in)
            xp.copyto(dx[ch], dx_pad[:, padding[0]:padding[0] + h,
                                     padding[1]:padding[1] + w].transpose(0, 3, 1, 2))

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw_mat = sum_parts(xp, dw_parts)
    if nchw:
        dw = dw_mat.T.reshape(c_out, c_in, kh, kw)
    else:
        dw = dw_mat.reshape(kh, kw, c_in, c_out).transpose(3, 2, 0, 1)
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db


def _flipped_padding(weight, padding, dilation):
    """Padding of dout for the stride-1 input gradient as a convolution with the flipped
    kernel: ``D*(K-1) - P`` per axis (negative where dout's border must be cropped)."""
    return tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in (0, 1))


def _backward_rows(dout, x, weight, padding, dilation, need_dx, has_bias, relu_out):
    """Stride-1 gradients by kernel rows, the width windows of :func:`_forward_rows`.

    ``dW[:, :, p, :] = Σ_n Q_p[n]ᵀ @ dout[n]`` with ``Q_p[n]`` the rows of image n's width
    windows for kernel row p (a view), one batched GEMM per p; ``dx`` is dout padded by
    ``D*(K-1) - P`` (≥ 0 here) convolved with the flipped kernel by the same row products;
    ``db`` a GEMV with ones. dout is read as channels-last rows (a view, or one copy per
    chunk; masked by ``[y > 0]`` with ``relu_out``). The chunks run on the kernels' thread
    pool; each chunk's dW and db parts are summed in chunk order. Returns
    ``(dx or None, dW, db or None)``, dx channels-last.
    """
    xp = get_xp(dout)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    oh, ow = dout.shape[2:]
    positions = oh * ow
    k_row = kw * c_in
    pad_d = _flipped_padding(weight, padding, dilation)
    per_image = (h + 2 * padding[0]) * ow * k_row  # x's width windows, then dout's
    if need_dx:
        per_image = max(per_image, (oh + 2 * pad_d[0]) * w * kw * c_out)
    slots = _slots(xp, n, positions, kh * k_row)
    chunks = _chunks(n, per_image * x.itemsize, parts=slots)
    nb_max = chunks[0].stop - chunks[0].start
    x_pads = _pad_buffers(xp, x, padding, nb_max, slots, nchw=False)
    bufs = [xp.empty(nb_max * per_image, x.dtype) for _ in range(slots)]
    dout_nhwc = dout.transpose(0, 2, 3, 1)
    d_bufs = None  # channels-last dout is read in place
    if relu_out is not None or not dout_nhwc.flags.c_contiguous:
        d_bufs = [xp.empty((nb_max, oh, ow, c_out), x.dtype) for _ in range(slots)]
    if relu_out is not None:
        masks = [xp.empty((nb_max, oh, ow, c_out), bool) for _ in range(slots)]
        y_nhwc = relu_out.transpose(0, 2, 3, 1)
    db_parts = xp.empty((len(chunks), c_out), x.dtype) if has_bias else None
    ones = xp.ones(nb_max * positions, x.dtype) if has_bias else None
    dw_parts = xp.empty((len(chunks), kh, k_row, c_out), x.dtype)
    dw_images = [xp.empty((nb_max, k_row, c_out), x.dtype) for _ in range(slots)]
    dx = None
    if need_dx:
        dx = _empty_4d(xp, x.shape, x.dtype, True)
        d_pads = [xp.zeros((nb_max, oh + 2 * pad_d[0], ow + 2 * pad_d[1], c_out), x.dtype)
                  for _ in range(slots)]
        dx_tmps = [xp.empty((nb_max, h * w, c_in), x.dtype) for _ in range(slots)]
        # flipped kernel rows (kH, kW*C_out, C_in): row p holds w[:, :, kH-1-p, kW-1-q]
        w_flip = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh, kw * c_out, c_in)

    def chunk(i, slot):
        ch = chunks[i]
        nb = ch.stop - ch.start
        q = _padded_width_windows(x[ch].transpose(0, 2, 3, 1), padding, kw, dilation[1], ow,
                                  x_pads[slot][:nb], bufs[slot])
        d_nhwc = dout_nhwc[ch]
        if relu_out is not None:
            d_nhwc = _relu_masked(d_nhwc, y_nhwc[ch], masks[slot][:nb], d_bufs[slot][:nb])
        elif d_bufs is not None:  # NCHW dout: one copy to channels-last
            d_nhwc = d_bufs[slot][:nb]
            xp.copyto(d_nhwc, dout_nhwc[ch])
        d = d_nhwc.reshape(nb, positions, c_out)
        if has_bias:  # db[co] = Σ_{n,i,j} dout[n, co, i, j]
            xp.matmul(ones[:nb * positions], d.reshape(nb * positions, c_out),
                      out=db_parts[i])
        for p in range(kh):  # dW_p = Σ_n Q_p[n]ᵀ @ d[n], (K_row, P) @ (P, C_out) per image
            rows = _kernel_row(q, p, dilation[0], oh)
            xp.matmul(rows.transpose(0, 2, 1), d, out=dw_images[slot][:nb])
            xp.sum(dw_images[slot][:nb], axis=0, out=dw_parts[i, p])
        if need_dx:
            q_d = _padded_width_windows(d_nhwc, pad_d, kw, dilation[1], w, d_pads[slot][:nb],
                                        bufs[slot])
            dst = dx[ch].transpose(0, 2, 3, 1).reshape(nb, h * w, c_in)
            _row_products(q_d, w_flip, dilation[0], h, dst, dx_tmps[slot][:nb])

    _parallel.run_chunks(chunk, len(chunks), slots)
    dw = sum_parts(xp, dw_parts).reshape(kh, kw, c_in, c_out).transpose(3, 2, 0, 1)
    db = sum_parts(xp, db_parts) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db


def _slots(xp, n, positions, k):
    """Threads for a conv layer's batch chunks: the pool's count, or 1 where it does not pay.

    Measured per layer shape (VGG-ish, LeNet, ThreeLayerConvNet and AlexNet layers, batch
    50-128): two threads with one BLAS thread each beat one thread with two BLAS threads
    by 1.0-1.7× on every layer large enough (``PARALLEL_MIN_ELEMENTS``), and they are not
    hit by 2-thread OpenBLAS's stalls on a loaded machine.
    """
    if xp is not np or n < 2 or n * positions * k < PARALLEL_MIN_ELEMENTS:
        return 1
    return min(n, _parallel.threads())


class _TransposedConv:
    """Stride-1 input gradient: dout, padded by D*(K-1) - P, convolved with the flipped kernel.

    ``dx[n,ci,h,w] = sum_{co,p,q} w[co,ci,kH-1-p,kW-1-q] * dout_pad[n,co,h+p*D,w+q*D]``;
    where ``P > D*(K-1)`` the border of dout (windows wholly in the padding) is cropped
    instead. Holds per-thread buffers for chunks of up to ``nb_max`` images.
    """

    def __init__(self, xp, weight, padding, dilation, out_hw, in_hw, nb_max, slots):
        c_out, c_in, kh, kw = weight.shape
        full = _flipped_padding(weight, padding, dilation)
        self.crop = [max(0, -f) for f in full]
        self.pad = [max(0, f) for f in full]
        pad_hw = [out_hw[a] - 2 * self.crop[a] + 2 * self.pad[a] for a in (0, 1)]
        self.xp, self.dilation, self.in_hw = xp, dilation, tuple(in_hw)
        self.kernel = (kh, kw)
        self.d_pads = [xp.zeros((nb_max, *pad_hw, c_out), weight.dtype) for _ in range(slots)]
        # (kH*kW*C_out, C_in), rows ordered (p, q, co) like the channels-last im2col
        self.w_flip = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * c_out, c_in)

    def __call__(self, d_nhwc, dx, buf, slot):
        """Write the input gradient of a chunk, dout as NHWC (nb, H_out, W_out, C_out), into
        ``dx`` (nb, C_in, H, W): in place when it is channels-last, else by one copy."""
        xp, (c0, c1), (h, w) = self.xp, self.crop, self.in_hw
        nb = d_nhwc.shape[0]
        d_crop = d_nhwc[:, c0:d_nhwc.shape[1] - c0, c1:d_nhwc.shape[2] - c1]
        d_pad = _pad_nhwc(d_crop, *self.pad, self.d_pads[slot][:nb])
        cols = _im2col(d_pad, self.kernel, (1, 1), self.dilation, self.in_hw, buf)
        dx_nhwc = dx.transpose(0, 2, 3, 1)
        if dx_nhwc.flags.c_contiguous:
            xp.matmul(cols, self.w_flip, out=dx_nhwc.reshape(nb * h * w, -1))
        else:
            xp.copyto(dx_nhwc, (cols @ self.w_flip).reshape(dx_nhwc.shape))


def _dx_col2im(d_t, weight, x_shape, padding, stride, dilation, out_hw):
    """Input gradient by col2im: one strided add per kernel offset (p, q) into padded dx.

    Channels-last adds run over C_in; with few input channels (< 8) NCHW adds, which run
    along output rows, are faster. ``d_t`` is dout as (C_out, N*H_out*W_out).
    Returns the padded dx as (N, H + 2P, W + 2P, C_in), possibly a transposed view.
    """
    xp = get_xp(d_t)
    c_out, c_in, kh, kw = weight.shape
    nb, _, h, w = x_shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = out_hw
    pad_hw = (h + 2 * padding[0], w + 2 * padding[1])
    rows = [slice(p * dh, p * dh + sh * (oh - 1) + 1, sh) for p in range(kh)]
    cols = [slice(q * dw, q * dw + sw * (ow - 1) + 1, sw) for q in range(kw)]
    if c_in < 8:
        dcols = (weight.reshape(c_out, -1).T @ d_t).reshape(c_in, kh, kw, nb, oh, ow)
        dx_pad = xp.zeros((c_in, nb, *pad_hw), dtype=d_t.dtype)
        for p in range(kh):
            for q in range(kw):
                dx_pad[:, :, rows[p], cols[q]] += dcols[:, p, q]
        return dx_pad.transpose(1, 2, 3, 0)
    w_mat = weight.transpose(0, 2, 3, 1).reshape(c_out, -1)  # (C_out, K), K ordered (kH, kW, C_in)
    dcols = (d_t.T @ w_mat).reshape(nb, oh, ow, kh, kw, c_in)
    dx_pad = xp.zeros((nb, *pad_hw, c_in), dtype=d_t.dtype)
    for p in range(kh):
        for q in range(kw):
            dx_pad[:, rows[p], cols[q]] += dcols[:, :, :, p, q]
    return dx_pad
