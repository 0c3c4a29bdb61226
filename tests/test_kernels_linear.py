"""Kernels linear and flatten: naive vs fast, finite differences, PyTorch parity, errors."""

from __future__ import annotations

import numpy as np
import pytest
from grads_helper import assert_grads_match

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
# (N, in_features, out_features): batch 1, odd sizes
LINEAR_SHAPES = [(1, 1, 1), (1, 4, 3), (3, 5, 4), (7, 3, 2)]
# (input shape, start_dim)
FLATTEN_CASES = [
    ((2, 3, 4, 5), 1), ((1, 3, 2, 2), 1), ((2, 3, 4, 5), 2), ((2, 3, 4), -1), ((3, 2, 2), 0),
    ((5, 3), 1),
]


def _linear_args(rng, n, fin, fout, bias, dtype):
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    b = rng.standard_normal(fout).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_naive_matches_fast(shape, bias, dtype, rng):
    n, fin, fout = shape
    x, w, b = _linear_args(rng, n, fin, fout, bias, dtype)
    out_n, cache_n = K.linear_forward(x, w, b, impl="naive")
    out_f, cache_f = K.linear_forward(x, w, b, impl="fast")
    assert out_n.shape == out_f.shape == (n, fout)
    assert out_n.dtype == out_f.dtype == dtype
    np.testing.assert_allclose(out_n, out_f, **TOL[dtype])
    dout = rng.standard_normal((n, fout)).astype(dtype)
    grads_n = K.linear_backward(dout, cache_n)
    grads_f = K.linear_backward(dout, cache_f)
    assert_grads_match(grads_n, grads_f, (x, w, b), dtype, **TOL[dtype])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_backward_matches_finite_differences(impl, bias, rng):
    x, w, b = _linear_args(rng, 3, 4, 2, bias, np.float64)
    dout = rng.standard_normal((3, 2))
    _, cache = K.linear_forward(x, w, b, impl=impl)
    grads = K.linear_backward(dout, cache)
    for grad, arr in zip(grads, (x, w, b), strict=True):
        if arr is None:
            assert grad is None
            continue
        num = numerical_gradient(lambda: K.linear_forward(x, w, b, impl=impl)[0], arr, dout)
        assert rel_error(grad, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_matches_torch(impl, bias, dtype, torch, rng):
    x, w, b = _linear_args(rng, 5, 6, 3, bias, dtype)
    out, cache = K.linear_forward(x, w, b, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = K.linear_backward(dout, cache)
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    bt = torch.from_numpy(b.copy()).requires_grad_(True) if bias else None
    out_t = torch.nn.functional.linear(xt, wt, bt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dw, wt.grad.numpy(), **TOL[dtype])
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), **TOL[dtype])
    else:
        assert db is None


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_dtypes_follow_each_argument(impl, rng):
    x = rng.standard_normal((2, 3))
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = np.zeros(4, dtype=np.float32)
    out, cache = K.linear_forward(x, w, b, impl=impl)
    dx, dw, db = K.linear_backward(rng.standard_normal((2, 4)), cache)
    assert out.dtype == dx.dtype == np.float64
    assert dw.dtype == db.dtype == np.float32


def test_linear_backward_writes_dweight_into_dw_out(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    dout = rng.standard_normal((5, 3)).astype(np.float32)
    _, cache = K.linear_forward(x, w, None)
    want = K.linear_backward(dout, cache)[1]
    buffer = np.full(w.shape, np.nan, np.float32)
    got = K.linear_backward(dout, cache, dw_out=buffer)[1]
    assert got is buffer
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    other = np.full(w.shape, np.nan, np.float64)  # another dtype: not used
    got = K.linear_backward(dout, cache, dw_out=other)[1]
    assert got is not other and np.isnan(other).all()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, pattern",
    [
        ((5,), (3, 5), None, r"shape \(N, in_features\), got shape \(5,\)"),
        ((2, 3, 5), (3, 5), None, r"got shape \(2, 3, 5\)"),
        ((2, 5), (3, 4), None, r"weight .*\(out_features, 5\).*\(2, 5\).*\(3, 4\)"),
        ((2, 5), (15,), None, r"weight .*\(15,\)"),
        ((2, 5), (3, 5), (4,), r"bias .*\(3,\).*\(4,\)"),
    ],
)
def test_linear_bad_shapes_raise(x_shape, w_shape, b_shape, pattern):
    b = None if b_shape is None else np.zeros(b_shape, np.float32)
    with pytest.raises(ValueError, match=r"^linear: .*" + pattern):
        K.linear_forward(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), b)


def test_linear_bad_impl_and_dout_raise():
    with pytest.raises(ValueError, match=r"^linear: impl"):
        K.linear_forward(np.zeros((2, 3)), np.zeros((4, 3)), impl="blas")
    _, cache = K.linear_forward(np.zeros((2, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"^linear_backward: .*\(2, 4\).*\(4, 2\)"):
        K.linear_backward(np.zeros((4, 2)), cache)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FLATTEN_CASES, ids=str)
def test_flatten_naive_matches_fast_and_torch(case, dtype, torch, rng):
    shape, start_dim = case
    x = rng.standard_normal(shape).astype(dtype)
    expected = torch.flatten(torch.from_numpy(x), start_dim).numpy()
    dout = rng.standard_normal(expected.shape).astype(dtype)
    for impl in IMPLS:
        out, cache = K.flatten_forward(x, start_dim=start_dim, impl=impl)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, expected)
        (dx,) = K.flatten_backward(dout, cache)
        assert dx.shape == shape and dx.dtype == dtype
        np.testing.assert_array_equal(dx, dout.reshape(shape))


@pytest.mark.parametrize("impl", IMPLS)
def test_flatten_backward_matches_finite_differences(impl, rng):
    x = rng.standard_normal((2, 3, 2))
    out, cache = K.flatten_forward(x, impl=impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = K.flatten_backward(dout, cache)
    num = numerical_gradient(lambda: K.flatten_forward(x, impl=impl)[0], x, dout)
    assert rel_error(dx, num) < 1e-6


def test_flatten_fast_is_a_view_of_a_contiguous_input(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out, _ = K.flatten_forward(x)
    assert out.shape == (2, 60) and np.shares_memory(out, x)


@pytest.mark.parametrize(
    "shape, start_dim, pattern",
    [
        ((2, 3), 2, r"start_dim .*\[-2, 1\].*\(2, 3\), got 2"),
        ((2, 3), -3, r"start_dim .*got -3"),
        ((2, 3), 1.0, r"start_dim .*got 1\.0"),
        ((), 0, r".*at least one axis, got shape \(\)"),
    ],
)
def test_flatten_bad_arguments_raise(shape, start_dim, pattern):
    with pytest.raises(ValueError, match=r"^flatten: " + pattern):
        K.flatten_forward(np.zeros(shape, np.float32), start_dim=start_dim)


def test_flatten_dout_shape_mismatch_raises():
    _, cache = K.flatten_forward(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"^flatten_backward: .*\(2, 12\).*\(2, 3, 4\)"):
        K.flatten_backward(np.zeros((2, 3, 4)), cache)
