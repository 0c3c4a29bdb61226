"""Kernel adaptive_max_pool2d: naive vs fast, finite differences, PyTorch parity of output,
gradient and indices (overlapping bins, output larger than input, ties), errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.kernels import (
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
    adaptive_max_pool2d_indices,
)

IMPLS = ["naive", "fast"]
# (output_size, input shape): 1x1 (global), even and uneven bins, overlapping bins,
# output larger than the input, batch 1, non-square
CASES = [
    (1, (2, 3, 5, 4)),
    (2, (1, 2, 4, 4)),
    (3, (2, 2, 7, 5)),
    ((4, 3), (1, 2, 6, 9)),
    ((5, 7), (1, 1, 3, 4)),
    ((2, 5), (2, 1, 1, 6)),
]


def _distinct(rng, shape):
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape) / size - 0.5


def _torch_run(torch, x, output_size, dout):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, idx = torch.nn.functional.adaptive_max_pool2d(xt, output_size, return_indices=True)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), idx.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("output_size, shape", CASES)
def test_naive_matches_fast(output_size, shape, rng):
    x = _distinct(rng, shape).astype(np.float32)
    out_n, cache_n = adaptive_max_pool2d_forward(x, output_size, impl="naive")
    out_f, cache_f = adaptive_max_pool2d_forward(x, output_size, impl="fast")
    assert out_n.dtype == out_f.dtype == np.float32
    np.testing.assert_array_equal(out_n, out_f)
    np.testing.assert_array_equal(adaptive_max_pool2d_indices(cache_n),
                                  adaptive_max_pool2d_indices(cache_f))
    dout = rng.standard_normal(out_n.shape).astype(np.float32)
    (dx_n,), (dx_f,) = adaptive_max_pool2d_backward(dout, cache_n), adaptive_max_pool2d_backward(
        dout, cache_f)
    assert dx_n.dtype == dx_f.dtype == np.float32 and dx_n.shape == shape
    np.testing.assert_allclose(dx_n, dx_f, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("output_size, shape", CASES)
def test_finite_differences(output_size, shape, impl, rng):
    x = _distinct(rng, shape)
    out, cache = adaptive_max_pool2d_forward(x, output_size, impl=impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = adaptive_max_pool2d_backward(dout, cache)
    num = numerical_gradient(lambda: adaptive_max_pool2d_forward(x, output_size, impl=impl)[0],
                             x, dout, h=1e-6)
    assert rel_error(dx, num) < 1e-8


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("output_size, shape", CASES)
def test_matches_torch_with_indices(output_size, shape, impl, torch, rng):
    x = _distinct(rng, shape)
    x[0, 0, 0, :] = 0.25  # a tied row
    out, cache = adaptive_max_pool2d_forward(x, output_size, impl=impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = adaptive_max_pool2d_backward(dout, cache)
    out_t, idx_t, dx_t = _torch_run(torch, x, output_size, dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(adaptive_max_pool2d_indices(cache), idx_t)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-12, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(impl=st.sampled_from(IMPLS), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 10), ow=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_random_sizes_match_torch(impl, h, w, oh, ow, seed, torch):
    rng = np.random.default_rng(seed)
    x = _distinct(rng, (2, 2, h, w))
    out, cache = adaptive_max_pool2d_forward(x, (oh, ow), impl=impl)
    dout = rng.standard_normal(out.shape)
    out_t, idx_t, dx_t = _torch_run(torch, x, (oh, ow), dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(adaptive_max_pool2d_indices(cache), idx_t)
    np.testing.assert_allclose(adaptive_max_pool2d_backward(dout, cache)[0], dx_t,
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((1, 1, 4, 4)), 0), r"output_size must be > 0, got \(0, 0\)"),
        ((np.zeros((1, 4, 4)), 2), r"expected input of shape \(N, C, H, W\), got shape "
                                   r"\(1, 4, 4\)"),
        ((np.zeros((1, 1, 0, 4)), 2), r"input has an empty spatial axis, got shape \(1, 1, 0, 4\)"),
        ((np.zeros((1, 1, 4, 4)), 2.5), r"output_size must be an int or a pair of ints, got 2.5"),
    ],
)
def test_errors_name_the_op(args, match):
    with pytest.raises(ValueError, match=rf"^adaptive_max_pool2d: {match}"):
        adaptive_max_pool2d_forward(*args)


def test_backward_rejects_wrong_dout_shape():
    _, cache = adaptive_max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"^adaptive_max_pool2d_backward: .*\(1, 1, 2, 2\)"):
        adaptive_max_pool2d_backward(np.zeros((1, 1, 3, 3)), cache)
