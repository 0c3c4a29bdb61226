"""Kernel add and the shared input helpers: naive vs fast, finite differences, PyTorch parity,
errors."""

from __future__ import annotations

import numpy as np
import pytest

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.kernels.elementwise import as_float_array, check_dout

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (3, 5), (2, 3, 4), (1, 2, 3, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_naive_matches_fast(shape, dtype, rng):
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    out_n, cache_n = K.add_forward(a, b, impl="naive")
    out_f, cache_f = K.add_forward(a, b, impl="fast")
    assert out_n.dtype == out_f.dtype == dtype and out_n.shape == shape
    np.testing.assert_array_equal(out_n, out_f)
    dout = rng.standard_normal(shape).astype(dtype)
    for grads in (K.add_backward(dout, cache_n), K.add_backward(dout, cache_f)):
        assert len(grads) == 2
        for g in grads:
            assert g.dtype == dtype
            np.testing.assert_array_equal(g, dout)


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_matches_finite_differences(impl, rng):
    a, b = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 2))
    dout = rng.standard_normal(a.shape)
    _, cache = K.add_forward(a, b, impl=impl)
    grads = K.add_backward(dout, cache)
    for grad, arr in zip(grads, (a, b), strict=True):
        num = numerical_gradient(lambda: K.add_forward(a, b, impl=impl)[0], arr, dout)
        assert rel_error(grad, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_torch(impl, dtype, torch, rng):
    a, b = (rng.standard_normal((2, 3, 4, 4)).astype(dtype) for _ in range(2))
    out, cache = K.add_forward(a, b, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    da, db = K.add_backward(dout, cache)
    at, bt = (torch.from_numpy(v.copy()).requires_grad_(True) for v in (a, b))
    out_t = at + bt
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(da, at.grad.numpy())
    np.testing.assert_array_equal(db, bt.grad.numpy())


@pytest.mark.parametrize("impl", IMPLS)
def test_mixed_dtypes_promote_and_gradients_keep_each_dtype(impl, rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 3))
    out, cache = K.add_forward(a, b, impl=impl)
    assert out.dtype == np.float64
    da, db = K.add_backward(rng.standard_normal((2, 3)), cache)
    assert da.dtype == np.float32 and db.dtype == np.float64


def test_as_float_array_keeps_floats_and_casts_the_rest():
    x = np.zeros(3, np.float64)
    assert as_float_array(x, "op") is x
    assert as_float_array(np.zeros(2, np.float32), "op").dtype == np.float32
    for value in (np.arange(3), np.array([True, False]), np.arange(3, dtype=np.uint8), [1, 2]):
        assert as_float_array(value, "op").dtype == np.float32
    with pytest.raises(ValueError, match=r"^op: .*dtype complex128"):
        as_float_array(np.zeros(2, complex), "op")
    with pytest.raises(ValueError, match=r"^op: .*dtype <U1"):
        as_float_array(np.array(["a"]), "op")


def test_check_dout():
    dout = np.zeros((2, 3))
    assert check_dout(dout, (2, 3), "op_backward") is dout
    with pytest.raises(ValueError, match=r"^op_backward: .*\(2, 3\), got shape \(3,\)"):
        check_dout(np.zeros(3), (2, 3), "op_backward")


@pytest.mark.parametrize("impl", IMPLS)
def test_shape_mismatch_raises(impl):
    with pytest.raises(ValueError, match=r"^add: .*same shape, got \(2, 3\) and \(2, 1\)"):
        K.add_forward(np.zeros((2, 3)), np.zeros((2, 1)), impl=impl)


def test_bad_impl_and_dout_raise():
    with pytest.raises(ValueError, match=r"^add: impl .*'slow'"):
        K.add_forward(np.zeros(2), np.zeros(2), impl="slow")
    _, cache = K.add_forward(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^add_backward: .*\(2, 2\).*\(4,\)"):
        K.add_backward(np.zeros(4), cache)
