"""Pointwise (1×1, stride 1, unpadded) convolution forward: one GEMM, no im2col.

Technique: a 1×1 kernel sees one pixel, so the input already is the im2col matrix. A
channels-last input (as the depthwise layers of MobileNet leave it) is the (N·H·W, C_in)
matrix: ``out_rows = x_rows @ W^T`` gives the channels-last output. An NCHW input is, per
image, the (C_in, H·W) matrix: ``out[n] = W @ x[n]`` gives the NCHW output. Either way the
GEMM reads the input where it lies. Each GEMM is split over the kernels' thread pool with
one OpenBLAS thread per block (``_parallel.matmul``): on a loaded 2-core machine 2-thread
OpenBLAS stalled for milliseconds on each of MobileNetV2's many small products.
"""

from __future__ import annotations

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import get_xp


def applies(weight_shape, stride, padding, dilation):
    """Whether a (non-grouped) layer is pointwise: a 1×1 kernel, stride 1, no padding."""
    return (tuple(weight_shape[2:]) == (1, 1) and tuple(stride) == (1, 1)
            and tuple(padding) == (0, 0))


def forward(x, weight, bias, relu=False):
    """Pointwise forward: (N, C_in, H, W) → (N, C_out, H, W), channels-last when ``x`` is
    (``out[n, co, i, j] = b[co] + Σ_ci w[co, ci] · x[n, ci, i, j]``)."""
    xp = get_xp(x)
    matmul = _parallel.matmul if xp is np else xp.matmul
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    w_mat = weight.reshape(c_out, c_in)
    x_cl = x.transpose(0, 2, 3, 1)
    if x_cl.flags.c_contiguous:
        rows = matmul(x_cl.reshape(n * h * w, c_in), w_mat.T)  # (N·H·W, C_out)
        if bias is not None:
            xp.add(rows, bias, out=rows)
        out = rows.reshape(n, h, w, c_out).transpose(0, 3, 1, 2)
    else:
        x = xp.ascontiguousarray(x).reshape(n, c_in, h * w)
        out = xp.empty((n, c_out, h * w), dtype=x.dtype)
        for i in range(n):
            matmul(w_mat, x[i], out=out[i])  # (C_out, C_in) @ (C_in, H·W)
        if bias is not None:
            xp.add(out, bias[:, None], out=out)
        out = out.reshape(n, c_out, h, w)
    if relu:
        xp.maximum(out, 0, out=out)
    return out
