"""Counting rules of grouped, "same"-padded, transposed and 1-d convolutions: effective
MACs equal the kernel run on ones, MACs and parameters by formula, shapes as the forward's."""

from __future__ import annotations

import numpy as np
import pytest

import glasscnn.nn as nn
from glasscnn import kernels as K
from glasscnn.analysis import analyze

# (module, input shape without the batch, kernel on ones -> output, MACs per output value)
CASES = [
    ("conv_groups", lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
     (4, 7, 6), lambda x: K.conv2d_forward(x, np.ones((6, 2, 3, 3)), None, 2, 1, 1, 2)[0],
     2 * 9),
    ("conv_depthwise_same_even", lambda: nn.Conv2d(3, 6, (4, 2), padding="same", groups=3),
     (3, 5, 7), lambda x: K.conv2d_forward(x, np.ones((6, 1, 4, 2)), None, 1, "same", 1,
                                           3)[0], 8),
    ("conv_transpose", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1,
                                                  output_padding=1, groups=2),
     (4, 5, 4), lambda x: K.conv_transpose2d_forward(x, np.ones((4, 3, 3, 3)), None, 2, 1, 1,
                                                     2)[0], None),
    ("conv1d_same", lambda: nn.Conv1d(2, 4, 4, padding="same", dilation=2),
     (2, 9), lambda x: K.conv2d_forward(x[:, :, None], np.ones((4, 2, 1, 4)), None, 1,
                                        "same", (1, 2))[0][:, :, 0], 2 * 4),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_effective_macs_equal_the_kernel_on_ones(case):
    """Effective MACs = products with an in-bounds input = Σ kernel(ones, ones); MACs of a
    convolution = output values × C_in/groups × kernel taps; parameters = weight + bias."""
    _, build, shape, on_ones, macs_per_output = case
    layer = build()
    rep = analyze(layer, shape, batch_size=2)
    out = on_ones(np.ones((2, *shape)))
    assert rep.rows[0]["output_shape"] == out.shape == layer.output_shape((2, *shape))
    assert rep.totals["macs_effective"] == int(out.sum())
    if macs_per_output is None:  # transposed: input values × C_out/groups × taps
        macs = 2 * int(np.prod(shape)) * layer.weight.data[0].size
    else:
        macs = out.size * macs_per_output
    assert rep.totals["macs"] == macs
    assert rep.totals["params"] == layer.weight.data.size + layer.bias.data.size
