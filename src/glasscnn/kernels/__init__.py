"""Stateless CNN operators, each as ``NAME_forward(...) -> (out, cache)`` and
``NAME_backward(dout, cache) -> grads``, with ``impl="naive"`` (loop nest) or ``"fast"``.

The gradients come back as a tuple, one entry per differentiable array argument in
argument order (``None`` for an absent bias).
"""

from glasscnn.kernels._common import channels_last, conv_output_size
from glasscnn.kernels.activations import (
    gelu_backward,
    gelu_forward,
    hardswish_backward,
    hardswish_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu6_backward,
    relu6_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    silu_backward,
    silu_forward,
    tanh_backward,
    tanh_forward,
)
from glasscnn.kernels.adaptive_pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
    adaptive_max_pool2d_indices,
)
from glasscnn.kernels.concat import cat_backward, cat_forward
from glasscnn.kernels.conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
    conv_padding,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    transposed_output_size,
)
from glasscnn.kernels.dropout import dropout_backward, dropout_forward
from glasscnn.kernels.elementwise import add_backward, add_forward
from glasscnn.kernels.feature_norm import (
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from glasscnn.kernels.linear import (
    flatten_backward,
    flatten_forward,
    linear_backward,
    linear_forward,
)
from glasscnn.kernels.losses import (
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_forward,
    mse_loss_backward,
    mse_loss_forward,
    nll_loss_backward,
    nll_loss_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from glasscnn.kernels.norm import batch_norm_backward, batch_norm_forward
from glasscnn.kernels.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    pool_output_size,
)
from glasscnn.kernels.softmax import (
    log_softmax_backward,
    log_softmax_forward,
    softmax_backward,
    softmax_forward,
)

__all__ = [
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "adaptive_max_pool2d_indices",
    "add_backward",
    "add_forward",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "cat_backward",
    "cat_forward",
    "channels_last",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "conv_output_size",
    "conv_padding",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "dropout_backward",
    "dropout_forward",
    "flatten_backward",
    "flatten_forward",
    "gelu_backward",
    "gelu_forward",
    "group_norm_backward",
    "group_norm_forward",
    "hardswish_backward",
    "hardswish_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "max_pool2d_indices",
    "mse_loss_backward",
    "mse_loss_forward",
    "nll_loss_backward",
    "nll_loss_forward",
    "pool_output_size",
    "relu6_backward",
    "relu6_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_backward",
    "silu_forward",
    "softmax_backward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
    "transposed_output_size",
]
