"""2-D convolution and its transpose: a loop nest and the fast strategies, one file each.

- conv2d.py: the public kernels (``conv2d_forward`` and friends), argument checks, caches.
- naive.py: the loop nest (the reference).
- choice.py: which fast strategy runs a layer, and the measured thresholds that decide it.
- im2col.py: im2col + GEMM (channels-last or K-major), col2im.
- kernel_rows.py: stride-1 layers by kernel rows (width-only im2col, a GEMM per row).
- batch_inner.py: batch-innermost im2col and col2im (few channels, narrow outputs).
- depthwise.py: depthwise layers (groups = C_in) by a multiply-accumulate per kernel tap.
- pointwise.py: 1×1 stride-1 unpadded layers' forward by one GEMM, no im2col.
- transpose.py: the transposed convolution (conv2d's input gradient run forward).
- winograd.py: Winograd F(2×2, r×r) for 3×3 and 5×5 stride-1 layers.
- buffers.py: what the strategies share (batch chunks, per-thread buffers, window copies).
"""

from glasscnn.kernels.conv.conv2d import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
    conv_padding,
)
from glasscnn.kernels.conv.transpose import (
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    transposed_output_size,
)

__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "conv_padding",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "transposed_output_size",
]
