"""Kernel batch_norm: naive vs fast, finite differences, PyTorch parity (running stats too),
seed-facts §3 and §5, errors."""

from __future__ import annotations

import numpy as np
import pytest
from grads_helper import assert_grads_match

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
# (N, C), (N, C, L) and (N, C, H, W); batch 1 where more than one value per channel remains
SHAPES = [(4, 3), (7, 1), (3, 2, 5), (1, 3, 2, 2), (5, 2, 3, 1), (2, 4, 3, 5), (3, 4, 4, 6),
          (2, 5, 3, 4)]
AFFINES = ["both", "none", "weight_only"]
# how a 4-D input is stored: NCHW, or channels-last (the fast kernels then read it in
# runs of several pixels' channels, repeated per-channel vectors: 8 pixels at (3, 4, 4, 6),
# 3 at (2, 5, 3, 4), 1 at (2, 4, 3, 5))
LAYOUTS = ["nchw", "channels_last"]


def _stored(a, layout):
    """``a`` with the same values, stored channels-last when asked (4-D only)."""
    if layout == "nchw" or a.ndim != 4:
        return a
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _channels_last_only(a):
    return (a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous
            and not a.flags.c_contiguous)


def _args(rng, shape, affine, dtype):
    """Input (shifted and scaled per channel), running stats, weight and bias for a case."""
    c = shape[1]
    loc = rng.standard_normal(c)[:, None]
    x = (rng.standard_normal(shape).reshape(shape[0], c, -1) * 2 + loc).reshape(shape)
    running_mean = rng.standard_normal(c) * 0.5
    running_var = rng.uniform(0.5, 2.0, c)
    weight = rng.uniform(0.5, 1.5, c) if affine in ("both", "weight_only") else None
    bias = rng.standard_normal(c) if affine == "both" else None
    cast = [None if a is None else a.astype(dtype) for a in (x, running_mean, running_var,
                                                             weight, bias)]
    return tuple(cast)


def _to_torch(torch, a, grad):
    if a is None:
        return None
    t = torch.from_numpy(a.copy())
    return t.requires_grad_(True) if grad else t


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", AFFINES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_naive_matches_fast(shape, affine, training, dtype, layout, rng):
    x, rm, rv, w, b = _args(rng, shape, affine, dtype)
    x = _stored(x, layout)
    rm_n, rv_n, rm_f, rv_f = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    out_n, cache_n = K.batch_norm_forward(x, rm_n, rv_n, w, b, training, impl="naive")
    out_f, cache_f = K.batch_norm_forward(x, rm_f, rv_f, w, b, training, impl="fast")
    assert out_n.shape == out_f.shape == shape
    assert out_n.dtype == out_f.dtype == dtype
    np.testing.assert_allclose(out_n, out_f, **TOL[dtype])
    np.testing.assert_allclose(rm_n, rm_f, **TOL[dtype])
    np.testing.assert_allclose(rv_n, rv_f, **TOL[dtype])
    assert rm_n.dtype == rv_f.dtype == dtype
    for dout_layout in LAYOUTS:  # dout stored either way
        dout = _stored(rng.standard_normal(shape).astype(dtype), dout_layout)
        grads_n = K.batch_norm_backward(dout, cache_n)
        grads_f = K.batch_norm_backward(dout, cache_f)
        assert_grads_match(grads_n, grads_f, (x, w, b), dtype, **TOL[dtype])
    if _channels_last_only(x):  # the fast kernel keeps the layout
        assert _channels_last_only(out_f) and _channels_last_only(grads_f[0])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(5, 2), (2, 2, 3, 2), (2, 3, 2, 4)], ids=str)
def test_backward_matches_finite_differences(shape, impl, training, layout, rng):
    x, rm, rv, w, b = _args(rng, shape, "both", np.float64)
    x = _stored(x, layout)

    def f():
        return K.batch_norm_forward(x, rm.copy(), rv.copy(), w, b, training, impl=impl)[0]

    dout = rng.standard_normal(shape)
    _, cache = K.batch_norm_forward(x, rm.copy(), rv.copy(), w, b, training, impl=impl)
    grads = K.batch_norm_backward(dout, cache)
    for grad, arr in zip(grads, (x, w, b), strict=True):
        num = numerical_gradient(f, arr, dout, h=1e-5)
        assert rel_error(grad, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", AFFINES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 4, 3)], ids=str)
def test_matches_torch_over_several_steps(shape, impl, affine, training, dtype, torch, rng):
    F = torch.nn.functional
    _, rm, rv, w, b = _args(rng, shape, affine, dtype)
    rm_t, rv_t = _to_torch(torch, rm, False), _to_torch(torch, rv, False)
    momentum = 0.3
    for _ in range(3):
        x = _args(rng, shape, affine, dtype)[0]
        out, cache = K.batch_norm_forward(x, rm, rv, w, b, training, momentum, impl=impl)
        dout = rng.standard_normal(shape).astype(dtype)
        dx, dw, db = K.batch_norm_backward(dout, cache)
        xt, wt, bt = (_to_torch(torch, a, True) for a in (x, w, b))
        out_t = F.batch_norm(xt, rm_t, rv_t, wt, bt, training, momentum, 1e-5)
        out_t.backward(torch.from_numpy(dout))
        np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL[dtype])
        np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
        for grad, grad_t in ((dw, wt), (db, bt)):
            if grad_t is None:
                assert grad is None
            else:
                np.testing.assert_allclose(grad, grad_t.grad.numpy(), **TOL[dtype])
        np.testing.assert_allclose(rm, rm_t.numpy(), **TOL[dtype])
        np.testing.assert_allclose(rv, rv_t.numpy(), **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
def test_running_stats_update_in_place_with_unbiased_variance(impl, rng):
    x = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    rm_id, rv_id = id(rm), id(rv)
    K.batch_norm_forward(x, rm, rv, momentum=0.25, impl=impl)
    assert id(rm) == rm_id and id(rv) == rv_id and rm.dtype == rv.dtype == np.float32
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rm, 0.25 * x64.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rv, 0.75 + 0.25 * x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_eval_leaves_running_stats_alone(impl, rng):
    x, rm, rv, w, b = _args(rng, (3, 2, 2, 2), "both", np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    K.batch_norm_forward(x, rm, rv, w, b, training=False, impl=impl)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 3, 2)], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
def test_seed_facts_3_training_uses_batch_mean_and_biased_variance(impl, shape, torch, rng):
    # seed-facts §3: batch norm in training mode (batch mean, biased variance, eps 1e-5)
    # against PyTorch, float64 mean squared difference ~1e-15 or better
    x = rng.standard_normal(shape) * 3 + 1
    c = shape[1]
    out, _ = K.batch_norm_forward(x, np.zeros(c), np.ones(c), impl=impl)
    axes = (0, *range(2, x.ndim))
    expected = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(
        x.var(axis=axes, keepdims=True) + 1e-5
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    var = x.var(axis=axes)
    np.testing.assert_allclose(out.var(axis=axes), var / (var + 1e-5), rtol=1e-12)
    out_t = torch.nn.functional.batch_norm(
        torch.from_numpy(x), torch.zeros(c, dtype=torch.float64),
        torch.ones(c, dtype=torch.float64), training=True, eps=1e-5,
    ).numpy()
    assert np.mean((out - out_t) ** 2) < 1e-15


@pytest.mark.parametrize("impl", IMPLS)
def test_seed_facts_5_eval_result_does_not_depend_on_the_batch(impl, rng):
    x, rm, rv, w, b = _args(rng, (5, 3, 2, 2), "both", np.float64)
    full, _ = K.batch_norm_forward(x, rm, rv, w, b, training=False, impl=impl)
    alone, _ = K.batch_norm_forward(x[2:3], rm, rv, w, b, training=False, impl=impl)
    np.testing.assert_allclose(alone[0], full[2], rtol=1e-13)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1), (1, 2, 1)], ids=str)
def test_training_with_one_value_per_channel_raises(shape, impl):
    c = shape[1]
    with pytest.raises(ValueError, match=r"^batch_norm: .*more than 1 value per channel.*"
                                         + str(shape).replace("(", r"\(").replace(")", r"\)")):
        K.batch_norm_forward(np.ones(shape), np.zeros(c), np.ones(c), impl=impl)
    out, _ = K.batch_norm_forward(np.ones(shape), np.zeros(c), np.ones(c), training=False,
                                  impl=impl)
    assert out.shape == shape


def _bad_kwargs(c=3):
    z, o = np.zeros(c), np.ones(c)
    return [
        ("ndim1", {"x": np.zeros(3), "running_mean": z, "running_var": o}, r"got shape \(3,\)"),
        ("ndim5", {"x": np.zeros((2, 3, 1, 1, 1)), "running_mean": z, "running_var": o},
         r"got shape \(2, 3, 1, 1, 1\)"),
        ("mean", {"running_mean": np.zeros(4), "running_var": o},
         r"running_mean .*\(3,\).*got shape \(4,\)"),
        ("mean_list", {"running_mean": [0.0] * 3, "running_var": o}, r"running_mean .*list"),
        ("var", {"running_mean": z, "running_var": np.ones((3, 1))},
         r"running_var .*got shape \(3, 1\)"),
        ("weight", {"running_mean": z, "running_var": o, "weight": np.ones(2)},
         r"weight .*got shape \(2,\)"),
        ("bias", {"running_mean": z, "running_var": o, "bias": np.ones(5)},
         r"bias .*got shape \(5,\)"),
        ("momentum", {"running_mean": z, "running_var": o, "momentum": 1.5}, r"momentum .*1\.5"),
        ("momentum_none", {"running_mean": z, "running_var": o, "momentum": None},
         r"momentum .*None"),
        ("eps", {"running_mean": z, "running_var": o, "eps": -1e-5}, r"eps .*-1e-05"),
        ("impl", {"running_mean": z, "running_var": o, "impl": "cuda"}, r"impl .*'cuda'"),
    ]


@pytest.mark.parametrize("case", _bad_kwargs(), ids=lambda c: c[0])
def test_bad_arguments_raise(case):
    _, kwargs, pattern = case
    kwargs = {"x": np.zeros((4, 3, 2, 2)), **kwargs}
    with pytest.raises(ValueError, match=r"^batch_norm: .*" + pattern):
        K.batch_norm_forward(**kwargs)


def test_dout_shape_mismatch_raises():
    _, cache = K.batch_norm_forward(np.ones((4, 3)), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"^batch_norm_backward: .*\(4, 3\).*\(3, 4\)"):
        K.batch_norm_backward(np.ones((3, 4)), cache)
