"""Kernels layer_norm and group_norm: naive vs fast, finite differences, PyTorch parity of
the output and every gradient (random upstream gradients), hypothesis, errors."""

from __future__ import annotations

import numpy as np
import pytest
from grads_helper import assert_grads_match
from hypothesis import given, settings
from hypothesis import strategies as st

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
AFFINE = [(True, True), (True, False), (False, False)]

# (input shape, num_groups): one group (layer-norm-like), one channel per group
# (instance-norm-like), no spatial axes, 1-D and 3-D spatial, batch 1
GROUP_CASES = [((2, 6, 3, 4), 2), ((2, 6, 3, 4), 1), ((2, 4, 3, 2), 4), ((3, 4), 2),
               ((2, 6, 5), 3), ((1, 4, 2, 3, 2), 2)]
# (input shape, normalized_shape)
LAYER_CASES = [((2, 6, 3, 4), (3, 4)), ((2, 6, 3, 4), (4,)), ((3, 5), 5), ((7,), (7,)),
               ((2, 3, 4), (2, 3, 4))]


def _params(rng, shape, affine, dtype):
    w = rng.standard_normal(shape).astype(dtype) if affine[0] else None
    b = rng.standard_normal(shape).astype(dtype) if affine[1] else None
    return w, b


def _run(op, x, arg, w, b, impl, eps=1e-5):
    forward = K.group_norm_forward if op == "group" else K.layer_norm_forward
    return forward(x, arg, w, b, eps, impl=impl)


def _backward(op, dout, cache):
    return (K.group_norm_backward if op == "group" else K.layer_norm_backward)(dout, cache)


def _param_shape(op, x, arg):
    return (x.shape[1],) if op == "group" else ((arg,) if isinstance(arg, int) else arg)


def _torch_run(torch, op, x, arg, w, b, dout, eps=1e-5):
    F = torch.nn.functional
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = None if w is None else torch.from_numpy(w.copy()).requires_grad_(True)
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    if op == "group":
        out = F.group_norm(xt, arg, wt, bt, eps)
    else:
        out = F.layer_norm(xt, (arg,) if isinstance(arg, int) else arg, wt, bt, eps)
    out.backward(torch.from_numpy(dout))
    grads = [xt.grad.numpy(), None if wt is None else wt.grad.numpy(),
             None if bt is None else bt.grad.numpy()]
    return out.detach().numpy(), grads


CASES = [("group", s, g) for s, g in GROUP_CASES] + [("layer", s, n) for s, n in LAYER_CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("op, shape, arg", CASES)
def test_naive_matches_fast(op, shape, arg, affine, dtype, rng):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    w, b = _params(rng, _param_shape(op, x, arg), affine, dtype)
    out_n, cache_n = _run(op, x, arg, w, b, "naive")
    out_f, cache_f = _run(op, x, arg, w, b, "fast")
    assert out_n.dtype == out_f.dtype == dtype and out_n.shape == out_f.shape == shape
    np.testing.assert_allclose(out_n, out_f, **TOL[dtype])
    dout = rng.standard_normal(shape).astype(dtype)
    assert_grads_match(_backward(op, dout, cache_n), _backward(op, dout, cache_f), (x, w, b),
                       dtype, **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op, shape, arg", CASES)
def test_finite_differences(op, shape, arg, impl, rng):
    x = rng.standard_normal(shape)
    w, b = _params(rng, _param_shape(op, x, arg), (True, True), np.float64)
    dout = rng.standard_normal(shape)
    _, cache = _run(op, x, arg, w, b, impl)
    dx, dw, db = _backward(op, dout, cache)  # tiny groups: tiny gradients, so an absolute floor
    f = lambda: _run(op, x, arg, w, b, impl)[0]  # noqa: E731
    np.testing.assert_allclose(dx, numerical_gradient(f, x, dout, h=1e-5), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(dw, numerical_gradient(f, w, dout, h=1e-5), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(db, numerical_gradient(f, b, dout, h=1e-5), rtol=1e-6,
                               atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("op, shape, arg", CASES)
def test_matches_torch(op, shape, arg, affine, impl, dtype, torch, rng):
    x = (rng.standard_normal(shape) * 3 - 1).astype(dtype)
    w, b = _params(rng, _param_shape(op, x, arg), affine, dtype)
    out, cache = _run(op, x, arg, w, b, impl, eps=1e-3)
    dout = rng.standard_normal(shape).astype(dtype)
    grads = _backward(op, dout, cache)
    out_t, grads_t = _torch_run(torch, op, x, arg, w, b, dout, eps=1e-3)
    np.testing.assert_allclose(out, out_t, **TOL[dtype])
    for g, g_t in zip(grads, grads_t, strict=True):
        assert (g is None) == (g_t is None)
        if g is not None:
            assert g.dtype == dtype
            np.testing.assert_allclose(g, g_t, **TOL[dtype])


@settings(max_examples=40, deadline=None)
@given(
    impl=st.sampled_from(IMPLS),
    n=st.integers(1, 3), groups=st.integers(1, 3), per_group=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 4), max_size=2),
    trailing=st.integers(1, 3),
    affine=st.sampled_from(AFFINE),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_torch(impl, n, groups, per_group, spatial, trailing, affine, seed,
                                   torch):
    rng = np.random.default_rng(seed)
    shape = (n, groups * per_group, *spatial)
    assume_many = shape[1] * int(np.prod(spatial)) // groups > 1  # a group of one value: σ = 0
    x = rng.standard_normal(shape) * 5
    for op, arg in (("group", groups), ("layer", shape[len(shape) - min(trailing, len(shape)):])):
        if op == "group" and not assume_many:
            continue
        w, b = _params(rng, _param_shape(op, x, arg), affine, np.float64)
        out, cache = _run(op, x, arg, w, b, impl)
        dout = rng.standard_normal(shape)
        out_t, grads_t = _torch_run(torch, op, x, arg, w, b, dout)
        np.testing.assert_allclose(out, out_t, rtol=1e-9, atol=1e-10)
        for g, g_t in zip(_backward(op, dout, cache), grads_t, strict=True):
            if g is not None:
                np.testing.assert_allclose(g, g_t, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K.group_norm_forward(np.zeros((2, 6, 3)), 4),
         r"^group_norm: num_groups must be a positive int dividing the 6 channels .*\(2, 6, 3\)"
         r", got 4"),
        (lambda: K.group_norm_forward(np.zeros(6), 2), r"^group_norm: .*\(N, C, \*\), got shape"),
        (lambda: K.group_norm_forward(np.zeros((2, 4)), 2, np.ones(3)),
         r"^group_norm: weight must have shape \(4,\) .*got shape \(3,\)"),
        (lambda: K.group_norm_forward(np.zeros((2, 4)), 2, eps=-1.0),
         r"^group_norm: eps must be a number >= 0, got -1.0"),
        (lambda: K.layer_norm_forward(np.zeros((2, 4)), (3,)),
         r"^layer_norm: normalized_shape .*got \(3,\) for input of shape \(2, 4\)"),
        (lambda: K.layer_norm_forward(np.zeros((2, 4)), (2, 2, 4)),
         r"^layer_norm: normalized_shape .*\(2, 2, 4\)"),
        (lambda: K.layer_norm_forward(np.zeros((2, 4)), 4, bias=np.ones((1, 4))),
         r"^layer_norm: bias must have shape \(4,\) .*got shape \(1, 4\)"),
        (lambda: K.layer_norm_forward(np.zeros((2, 4)), 4, impl="gpu"), r"^layer_norm: impl"),
    ],
)
def test_errors_name_the_op_and_echo_the_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("op", ["group", "layer"])
def test_backward_rejects_wrong_dout_shape(op):
    _, cache = _run(op, np.ones((2, 4)), 2 if op == "group" else 4, None, None, "fast")
    with pytest.raises(ValueError, match=rf"^{op}_norm_backward: .*\(2, 4\).*\(4, 2\)"):
        _backward(op, np.ones((4, 2)), cache)
