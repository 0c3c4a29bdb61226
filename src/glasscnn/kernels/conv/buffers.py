"""What the fast conv strategies share: batch chunks, per-thread buffers, padded copies,
window copies (im2col) and the GEMM entry point."""

from __future__ import annotations

import math

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp, run_repeats

# bound on one chunk's im2col buffer: chunks that stay in the 2 MiB L2 cache between the
# im2col copy and the GEMM were measured fastest (1-2 MiB against 8 MiB: 1.15× on a vgg step)
CHUNK_BYTES = 2 * 2**20
# ... unless a GEMM would get fewer rows (N*H_out*W_out) than this: too thin to run fast
MIN_ROWS = 512
# fewer input channels than this: NCHW (K-major) im2col; channels-last copies of 3-channel
# pixels are slow (measured 1.75× on a vgg step's first layer)
K_MAJOR_CHANNELS = 8
# a layer's im2col must have at least this many elements for its chunks to go to the thread
# pool: below it, handing chunks to a second thread costs more than it saves (measured)
PARALLEL_MIN_ELEMENTS = 2**18


def batch_chunks(n, bytes_per_image, parts=1, min_images=1):
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


def train_chunks(n, positions, bytes_per_image, slots):
    """Batch chunks of the training-size path: about CHUNK_BYTES of im2col and at least
    MIN_ROWS GEMM rows, but never over 4 × CHUNK_BYTES (more than one image)."""
    min_images = min(-(-MIN_ROWS // positions), 4 * CHUNK_BYTES // max(1, bytes_per_image))
    return batch_chunks(n, bytes_per_image, parts=slots, min_images=min_images)


def thread_slots(xp, n, positions, k):
    """Threads for a conv layer's batch chunks: the pool's count, or 1 where it does not pay.

    Measured per layer shape (VGG-ish, LeNet, ThreeLayerConvNet and AlexNet layers, batch
    50-128): two threads with one BLAS thread each beat one thread with two BLAS threads
    by 1.0-1.7× on every layer large enough (``PARALLEL_MIN_ELEMENTS``), and they are not
    hit by 2-thread OpenBLAS's stalls on a loaded machine.
    """
    if xp is not np or n < 2 or n * positions * k < PARALLEL_MIN_ELEMENTS:
        return 1
    return min(n, _parallel.threads())


def pad_buffers(xp, x, padding, nb_max, slots, nchw):
    """One zeroed padded-input buffer per thread, NCHW or NHWC, for chunks of ``nb_max``."""
    _, c, h, w = x.shape
    hw = (h + 2 * padding[0], w + 2 * padding[1])
    shape = (nb_max, c, *hw) if nchw else (nb_max, *hw, c)
    return [xp.zeros(shape, x.dtype) for _ in range(slots)]


def pad_nhwc(x_nhwc, pad_h, pad_w, out):
    """Copy an NHWC array or view (N, H, W, C) into the interior of ``out``.

    ``out`` is (N, H + 2*pad_h, W + 2*pad_w, C) with a zero border (the caller zeroes it
    once and reuses it for every chunk). Returns ``out``.
    """
    h, w = x_nhwc.shape[1:3]
    get_xp(out).copyto(out[:, pad_h:pad_h + h, pad_w:pad_w + w], x_nhwc)
    return out


def pad_nchw(x, pad_h, pad_w, out=None):
    """Zero-padded contiguous (N, C, H + 2*pad_h, W + 2*pad_w) copy of an NCHW array.

    Written into the interior of ``out`` when given (its border zeroed by the caller, as
    for :func:`pad_nhwc`); else a new array, or ``x`` itself when there is no padding and
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


def im2col_nhwc(x_nhwc, kernel, stride, dilation, out_hw, buf):
    """Copy every window of padded NHWC ``x_nhwc`` into ``buf``; return (N*H_out*W_out, K).

    One ``copyto`` from an ``as_strided`` window view (N, H_out, W_out, kH, kW, C), so K is
    ordered (kH, kW, C).
    """
    n, _, _, c = x_nhwc.shape
    s_n, s_h, s_w, s_c = x_nhwc.strides
    cols = copy_windows(
        x_nhwc, (n, *out_hw, *kernel, c),
        (s_n, stride[0] * s_h, stride[1] * s_w, dilation[0] * s_h, dilation[1] * s_w, s_c), buf)
    return cols.reshape(n * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * c)


def copy_windows(x, shape, strides, buf):
    """Copy the ``as_strided`` view of ``x`` with this shape and these byte strides (the
    windows of an im2col) into the front of ``buf``; return the copy, shaped ``shape``."""
    xp = get_xp(x)
    cols = buf[:math.prod(shape)].reshape(shape)
    xp.copyto(cols, xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides))
    return cols


def flipped_padding(weight, padding, dilation):
    """Padding of dout for the stride-1 input gradient as a convolution with the flipped
    kernel: ``D*(K-1) - P`` per axis (negative where dout's border must be cropped)."""
    return tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in (0, 1))


def gemm(xp, a, b, out, inner=False):
    """``a @ b`` into ``out``: NumPy's in the blocks that OpenBLAS's small-matrix kernels
    take (``_parallel.matmul_small``; ``matmul_small_sum`` splits a long inner dimension)."""
    if xp is not np:
        return xp.matmul(a, b, out=out)
    return (_parallel.matmul_small_sum if inner else _parallel.matmul_small)(a, b, out)


def empty_4d(xp, shape, dtype, cl):
    """An uninitialised (N, C, H, W) array, stored channels-last when ``cl``."""
    if not cl:
        return xp.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def add_bias_rows(rows, bias):
    """``rows += bias`` for contiguous channels-last rows (R, C_out), the bias repeated to
    runs of about ``RUN_FLOATS`` floats (``_common.run_repeats``), so that NumPy's add
    loops over long runs."""
    r, c = rows.shape
    rep = run_repeats(r, c)
    runs = rows.reshape(r // rep, rep * c)
    get_xp(rows).add(runs, get_xp(bias).tile(bias, rep), out=runs)


def relu_masked(dout, y, mask, out):
    """ReLU's backward on a chunk of a fused conv + ReLU: ``out = dout · [y > 0]``, with
    ``mask`` as bool scratch; all four of one shape. Returns ``out``."""
    xp = get_xp(dout)
    xp.greater(y, 0, out=mask)
    return xp.multiply(dout, mask, out=out)
