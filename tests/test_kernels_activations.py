"""Activation kernels (relu, sigmoid, tanh, leaky_relu, relu6, hardswish, silu, gelu, softmax,
log_softmax): naive vs fast, finite differences, PyTorch parity, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- tanh, leaky_relu, relu6, hardswish, silu, gelu, softmax, log_softmax -------------------

def _torch_act(torch, name, kwargs):
    F = torch.nn.functional
    return {
        "tanh": torch.tanh,
        "leaky_relu": lambda t: F.leaky_relu(t, kwargs.get("negative_slope", 0.01)),
        "relu6": F.relu6,
        "hardswish": F.hardswish,
        "silu": F.silu,
        "gelu": F.gelu,
        "softmax": lambda t: torch.softmax(t, kwargs["dim"]),
        "log_softmax": lambda t: torch.log_softmax(t, kwargs["dim"]),
    }[name]


# name -> (forward, backward, keyword arguments, kinks to keep inputs away from)
NEW_OPS = {
    "tanh": (K.tanh_forward, K.tanh_backward, {}, ()),
    "leaky_relu": (K.leaky_relu_forward, K.leaky_relu_backward, {"negative_slope": 0.2}, (0,)),
    "relu6": (K.relu6_forward, K.relu6_backward, {}, (0, 6)),
    "hardswish": (K.hardswish_forward, K.hardswish_backward, {}, (-3, 3)),
    "silu": (K.silu_forward, K.silu_backward, {}, ()),
    "gelu": (K.gelu_forward, K.gelu_backward, {}, ()),
    "softmax": (K.softmax_forward, K.softmax_backward, {"dim": 1}, ()),
    "log_softmax": (K.log_softmax_forward, K.log_softmax_backward, {"dim": -1}, ()),
}
LINE_OPS = ("softmax", "log_softmax")


def _new_input(rng, shape, dtype, kinks=()):
    """Values spread over (−8, 8), at least 0.05 away from each kink."""
    x = rng.uniform(-8, 8, shape)
    for k in kinks:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] >= k, 0.05, -0.05)
    return x.astype(dtype)


def _kwargs_for(name, shape):
    kwargs = dict(NEW_OPS[name][2])
    if name in LINE_OPS and len(shape) < 2:
        kwargs["dim"] = 0
    return kwargs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", sorted(NEW_OPS))
def test_new_naive_matches_fast(op, shape, dtype, rng):
    forward, backward, _, kinks = NEW_OPS[op]
    kwargs = _kwargs_for(op, shape)
    x = _new_input(rng, shape, dtype, kinks)
    out_n, cache_n = forward(x, **kwargs, impl="naive")
    out_f, cache_f = forward(x, **kwargs, impl="fast")
    assert out_n.dtype == out_f.dtype == dtype and out_n.shape == out_f.shape == shape
    np.testing.assert_allclose(out_n, out_f, **TOL[dtype])
    dout = rng.standard_normal(shape).astype(dtype)
    (dx_n,), (dx_f,) = backward(dout, cache_n), backward(dout, cache_f)
    assert dx_n.dtype == dx_f.dtype == dtype
    np.testing.assert_allclose(dx_n, dx_f, **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", sorted(NEW_OPS))
def test_new_backward_matches_finite_differences(op, impl, rng):
    forward, backward, kwargs, kinks = NEW_OPS[op]
    x = _new_input(rng, (2, 3, 4), np.float64, kinks) / 2
    dout = rng.standard_normal(x.shape)
    _, cache = forward(x, **kwargs, impl=impl)
    (dx,) = backward(dout, cache)
    num = numerical_gradient(lambda: forward(x, **kwargs, impl=impl)[0], x, dout, h=1e-5)
    assert rel_error(dx, num) < 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", sorted(NEW_OPS))
def test_new_matches_torch(op, impl, dtype, torch, rng):
    forward, backward, kwargs, _ = NEW_OPS[op]
    x = rng.uniform(-8, 8, (2, 3, 4, 3)).astype(dtype)
    x[0, 0, 0, :] = [-3.0, 0.0, 6.0]  # PyTorch's gradient choices at the kinks
    x[0, 0, 1, :] = [3.0, -6.0, 1e-3]
    out, cache = forward(x, **kwargs, impl=impl)
    dout = rng.standard_normal(x.shape).astype(dtype)
    (dx,) = backward(dout, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = _torch_act(torch, op, kwargs)(xt)
    out_t.backward(torch.from_numpy(dout))
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(sorted(NEW_OPS)),
    impl=st.sampled_from(IMPLS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    scale=st.sampled_from([1e-3, 1.0, 10.0, 100.0]),
    data=st.data(),
)
def test_new_random_inputs_match_torch(op, impl, shape, scale, data, torch):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    forward, backward, kwargs, _ = NEW_OPS[op]
    kwargs = dict(kwargs)
    if op in LINE_OPS:
        kwargs["dim"] = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = rng.standard_normal(shape) * scale
    out, cache = forward(x, **kwargs, impl=impl)
    dout = rng.standard_normal(shape)
    (dx,) = backward(dout, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = _torch_act(torch, op, kwargs)(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-12)


def test_erf_is_within_one_ulp_of_the_c_library(rng):
    import math

    from glasscnn.kernels._erf import erf

    x = np.concatenate([rng.standard_normal(20000) * 3, np.linspace(-7, 7, 20001),
                        [0.0, -0.0, 1e-300, 1e-20, 0.84375, 1.25, 1 / 0.35, 6.0, -6.0]])
    expected = np.array([math.erf(v) for v in x])
    ulps = np.abs(erf(x) - expected) / np.spacing(np.abs(expected) + 1e-300)
    assert ulps.max() <= 1
    np.testing.assert_array_equal(erf(np.array([np.inf, -np.inf])), [1.0, -1.0])
    assert np.isnan(erf(np.array([np.nan]))[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_gelu_float64_agrees_with_torch_to_rounding(impl, torch, rng):
    x = np.concatenate([rng.standard_normal(2000) * 4, np.linspace(-10, 10, 401)])
    out, cache = K.gelu_forward(x, impl=impl)
    dout = rng.standard_normal(x.shape)
    (dx,) = K.gelu_backward(dout, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch.nn.functional.gelu(xt)
    out_t.backward(torch.from_numpy(dout))
    # x/2·(1 + erf(x/√2)): both round 1 + erf to float64, an error of ~1e-16 times |x|
    ulp_of_one = np.finfo(np.float64).eps
    assert np.all(np.abs(out - out_t.detach().numpy()) <= ulp_of_one * (np.abs(x) + np.abs(out)))
    assert np.all(np.abs(dx - xt.grad.numpy()) <= 2 * ulp_of_one * np.abs(dout) * (1 + x * x))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_large_logits_stay_finite(op, impl):
    forward = NEW_OPS[op][0]
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    out, _ = forward(x, dim=1, impl=impl)
    assert np.all(np.isfinite(out))
    expected = [[1, 0, 0], [1 / 3] * 3] if op == "softmax" else [[0, -1000, -2000],
                                                                 [-np.log(3)] * 3]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [2, -3, 1.0, None])
def test_softmax_bad_dim_raises(op, dim):
    with pytest.raises(ValueError, match=rf"^{op}: dim .*\(2, 3\).*{dim}"):
        NEW_OPS[op][0](np.ones((2, 3)), dim=dim)


@pytest.mark.parametrize("op", sorted(NEW_OPS))
def test_new_bad_impl_and_dout_raise(op):
    forward, backward, kwargs, _ = NEW_OPS[op]
    with pytest.raises(ValueError, match=f"^{op}: impl .*'gpu'"):
        forward(np.ones((2, 3)), **kwargs, impl="gpu")
    with pytest.raises(ValueError, match=f"^{op}: .*complex128"):
        forward(np.ones((2, 3), dtype=complex), **kwargs)
    _, cache = forward(np.ones((2, 3), np.float32), **kwargs)
    with pytest.raises(ValueError, match=rf"^{op}_backward: .*\(2, 3\).*\(3, 2\)"):
        backward(np.ones((3, 2), np.float32), cache)
