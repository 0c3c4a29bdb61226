"""Kernels relu and sigmoid: naive vs fast, finite differences, PyTorch parity, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (1, 1), (3, 5), (2, 3, 4), (2, 1, 3, 5)]
OPS = {
    "relu": (K.relu_forward, K.relu_backward),
    "sigmoid": (K.sigmoid_forward, K.sigmoid_backward),
}
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}
EXTREMES = [-1e4, -800.0, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 800.0, 1e4]


def _input(rng, shape, dtype):
    """Normal values pushed at least 0.05 away from ReLU's kink at 0."""
    x = rng.standard_normal(shape) * 3
    return (x + np.where(x >= 0, 0.05, -0.05)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", sorted(OPS))
def test_naive_matches_fast(op, shape, dtype, rng):
    forward, backward = OPS[op]
    x = _input(rng, shape, dtype)
    out_n, cache_n = forward(x, impl="naive")
    out_f, cache_f = forward(x, impl="fast")
    assert out_n.dtype == out_f.dtype == dtype
    assert out_n.shape == out_f.shape == shape
    np.testing.assert_allclose(out_n, out_f, **TOL[dtype])
    dout = rng.standard_normal(shape).astype(dtype)
    (dx_n,), (dx_f,) = backward(dout, cache_n), backward(dout, cache_f)
    assert dx_n.dtype == dx_f.dtype == dtype
    np.testing.assert_allclose(dx_n, dx_f, **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_backward_matches_finite_differences(op, impl, rng):
    forward, backward = OPS[op]
    x = _input(rng, (2, 3, 4), np.float64)
    dout = rng.standard_normal(x.shape)
    _, cache = forward(x, impl=impl)
    (dx,) = backward(dout, cache)
    num = numerical_gradient(lambda: forward(x, impl=impl)[0], x, dout, h=1e-5)
    assert rel_error(dx, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_matches_torch(op, impl, dtype, torch, rng):
    forward, backward = OPS[op]
    torch_op = {"relu": torch.relu, "sigmoid": torch.sigmoid}[op]
    x = _input(rng, (2, 3, 4, 3), dtype)
    out, cache = forward(x, impl=impl)
    dout = rng.standard_normal(x.shape).astype(dtype)
    (dx,) = backward(dout, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch_op(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_sigmoid_extremes_are_finite_and_match_torch(impl, dtype, torch):
    x = np.array(EXTREMES, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = K.sigmoid_forward(x, impl=impl)
        (dx,) = K.sigmoid_backward(np.linspace(-2, 2, x.size).astype(dtype), cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert out[0] == 0 and out[-1] == 1
    assert dx[0] == 0 and dx[-1] == 0
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch.sigmoid(xt)
    out_t.backward(torch.from_numpy(np.linspace(-2, 2, x.size).astype(dtype)))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("impl", IMPLS)
def test_sigmoid_small_values_keep_relative_precision(impl):
    x = np.array([-30.0, -60.0, -80.0], dtype=np.float32)
    out, _ = K.sigmoid_forward(x, impl=impl)
    expected = np.exp(x.astype(np.float64)) / (1 + np.exp(x.astype(np.float64)))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_sigmoid_seed_facts_3_mean_squared_difference(impl, torch, rng):
    # seed-facts §3: sigmoid compared one by one with PyTorch, float64 MSE ~1e-15 or better
    x = rng.standard_normal((4, 3, 5, 5)) * 4
    out, _ = K.sigmoid_forward(x, impl=impl)
    expected = torch.sigmoid(torch.from_numpy(x)).numpy()
    assert np.mean((out - expected) ** 2) < 1e-15


@pytest.mark.parametrize("impl", IMPLS)
def test_relu_values_and_nan(impl):
    x = np.array([-2.0, -0.0, 0.0, 3.5, np.nan], dtype=np.float32)
    out, _ = K.relu_forward(x, impl=impl)
    np.testing.assert_array_equal(out[:4], [0, 0, 0, 3.5])
    assert np.isnan(out[4])


@pytest.mark.parametrize("op", sorted(OPS))
def test_integer_input_becomes_float32(op):
    out, _ = OPS[op][0](np.arange(-2, 3))
    assert out.dtype == np.float32


@pytest.mark.parametrize("op", sorted(OPS))
def test_bad_impl_raises(op):
    with pytest.raises(ValueError, match=f"^{op}: impl .*'gpu'"):
        OPS[op][0](np.ones(3, np.float32), impl="gpu")


@pytest.mark.parametrize("op", sorted(OPS))
def test_non_real_input_raises(op):
    with pytest.raises(ValueError, match=f"^{op}: .*complex128"):
        OPS[op][0](np.ones(3, dtype=complex))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_backward_dout_shape_mismatch_raises(op, impl):
    forward, backward = OPS[op]
    _, cache = forward(np.ones((2, 3), np.float32), impl=impl)
    with pytest.raises(ValueError, match=rf"^{op}_backward: .*\(2, 3\).*\(3, 2\)"):
        backward(np.ones((3, 2), np.float32), cache)
