"""Loss kernels (softmax_cross_entropy with PyTorch's options, nll_loss, mse_loss,
binary_cross_entropy_with_logits): naive vs fast, finite differences, PyTorch parity,
extreme logits, seed-facts §3, errors."""

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
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}
SHAPES = [(1, 1), (1, 3), (5, 4), (7, 10)]  # (N, K)


def _args(rng, shape, dtype, scale=3.0):
    n, k = shape
    return (rng.standard_normal(shape) * scale).astype(dtype), rng.integers(0, k, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_naive_matches_fast(shape, dtype, rng):
    logits, labels = _args(rng, shape, dtype)
    loss_n, cache_n = K.softmax_cross_entropy_forward(logits, labels, impl="naive")
    loss_f, cache_f = K.softmax_cross_entropy_forward(logits, labels, impl="fast")
    assert loss_n.shape == loss_f.shape == ()
    assert loss_n.dtype == loss_f.dtype == dtype
    np.testing.assert_allclose(loss_n, loss_f, **TOL[dtype])
    dout = rng.uniform(0.2, 3.0)
    (d_n,), (d_f,) = (K.softmax_cross_entropy_backward(dout, c) for c in (cache_n, cache_f))
    assert d_n.shape == d_f.shape == shape and d_n.dtype == d_f.dtype == dtype
    np.testing.assert_allclose(d_n, d_f, **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_matches_finite_differences(impl, rng):
    logits, labels = _args(rng, (4, 5), np.float64, scale=1.0)
    dout = 0.7
    _, cache = K.softmax_cross_entropy_forward(logits, labels, impl=impl)
    (dlogits,) = K.softmax_cross_entropy_backward(dout, cache)
    num = numerical_gradient(
        lambda: K.softmax_cross_entropy_forward(logits, labels, impl=impl)[0], logits, dout,
        h=1e-5,
    )
    assert rel_error(dlogits, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(1, 3), (6, 10)], ids=str)
def test_matches_torch(shape, impl, dtype, torch, rng):
    logits, labels = _args(rng, shape, dtype)
    loss, cache = K.softmax_cross_entropy_forward(logits, labels, impl=impl)
    dout = rng.uniform(0.2, 3.0)
    (dlogits,) = K.softmax_cross_entropy_backward(np.asarray(dout, dtype), cache)
    lt = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    loss_t.backward(torch.tensor(dout, dtype=lt.dtype))
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[dtype])
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), **TOL[dtype])
    assert dlogits.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_extreme_logits_are_finite_and_match_torch(impl, dtype, torch):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4],
                       [0.0, 1e4, 5.0]], dtype=dtype)
    labels = np.array([1, 2, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, cache = K.softmax_cross_entropy_forward(logits, labels, impl=impl)
        (dlogits,) = K.softmax_cross_entropy_backward(1.5, cache)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    lt = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    loss_t.backward(torch.tensor(1.5, dtype=lt.dtype))
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-6)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
def test_seed_facts_3_mean_cross_entropy(impl, torch, rng):
    # seed-facts §3: mean cross-entropy over logits against PyTorch, float64 MSE ~1e-15
    logits, labels = _args(rng, (16, 10), np.float64)
    loss, _ = K.softmax_cross_entropy_forward(logits, labels, impl=impl)
    by_hand = np.mean(
        np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(16), labels]
    )
    np.testing.assert_allclose(loss, by_hand, rtol=1e-13)
    loss_t = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    assert (float(loss) - loss_t.item()) ** 2 < 1e-15


@pytest.mark.parametrize("impl", IMPLS)
def test_uniform_logits_give_log_k_and_any_integer_label_dtype(impl):
    for labels in (np.array([0, 3, 1], np.int32), np.array([0, 3, 1], np.uint8), [0, 3, 1]):
        loss, _ = K.softmax_cross_entropy_forward(np.zeros((3, 4), np.float32), labels, impl=impl)
        np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)


@pytest.mark.parametrize("labels", [[0, -1, 2], [3, 0, 7]])
def test_labels_out_of_range_raise_and_echo_values(labels):
    bad = [v for v in labels if not 0 <= v < 3]
    pattern = r"^softmax_cross_entropy: labels .*\[0, 3\).*" + ", ".join(map(str, bad))
    with pytest.raises(ValueError, match=pattern):
        K.softmax_cross_entropy_forward(np.zeros((3, 3)), np.array(labels))


@pytest.mark.parametrize(
    "logits, labels, pattern",
    [
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), r"integers, got dtype float64"),
        (np.zeros((3, 4)), np.array([True, False, True]), r"integers, got dtype bool"),
        (np.zeros((3, 4)), np.array([0, 1]), r"labels .*\(3,\).*\(3, 4\).*\(2,\)"),
        (np.zeros((3, 4)), np.zeros((3, 1), int), r"labels .*got shape \(3, 1\)"),
        (np.zeros(4), np.array([0]), r"\(N, C\) or \(N, C, d1, ...\), got shape \(4,\)"),
        (np.zeros((2, 3, 4)), np.array([0, 1]), r"\(2, 4\) for input of shape \(2, 3, 4\), got "
                                                 r"shape \(2,\)"),
        (np.zeros((0, 4)), np.array([], int), r"non-empty, got shape \(0, 4\)"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([0, 1]), r"finite, got 1 NaN or inf"),
        (np.array([[0.0, np.inf], [-np.inf, 2.0]]), np.array([0, 1]), r"finite, got 2 NaN"),
    ],
)
def test_bad_inputs_raise(logits, labels, pattern):
    for impl in IMPLS:
        with pytest.raises(ValueError, match=r"^softmax_cross_entropy: .*" + pattern):
            K.softmax_cross_entropy_forward(logits, labels, impl=impl)


def test_bad_impl_and_dout_raise():
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: impl"):
        K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 1]), impl="x")
    _, cache = K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy_backward: .*\(2,\)"):
        K.softmax_cross_entropy_backward(np.ones(2), cache)


# --- options: weight, ignore_index, reduction, label_smoothing, (N, C, d1, ...) ---------------

CLASS_SHAPES = [(5, 4), (1, 3), (2, 3, 4), (2, 3, 2, 3)]
REDUCTIONS = ["mean", "sum", "none"]


def _class_case(rng, shape, weighted, ignore, dtype=np.float64):
    """Logits, labels (every third ignored when ``ignore``), class weights or None."""
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    labels = rng.integers(0, shape[1], (shape[0], *shape[2:]))
    if ignore:
        labels.flat[::3] = -100
    weight = rng.uniform(0.5, 2.0, shape[1]).astype(dtype) if weighted else None
    return x, labels, weight


def _torch_class_loss(torch, name, x, labels, weight, reduction, eps, dout):
    """Loss and input gradient of torch's cross_entropy / nll_loss."""
    F = torch.nn.functional
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = None if weight is None else torch.from_numpy(weight)
    yt = torch.from_numpy(labels)
    if name == "softmax_cross_entropy":
        lt = F.cross_entropy(xt, yt, weight=wt, reduction=reduction, label_smoothing=eps)
    else:
        lt = F.nll_loss(xt, yt, weight=wt, reduction=reduction)
    lt.backward(torch.from_numpy(np.asarray(dout, dtype=x.dtype)))
    return lt.detach().numpy(), xt.grad.numpy()


CLASS_OPS = {
    "softmax_cross_entropy": (K.softmax_cross_entropy_forward, K.softmax_cross_entropy_backward),
    "nll_loss": (K.nll_loss_forward, K.nll_loss_backward),
}


def _class_kwargs(name, weight, reduction, eps):
    kwargs = {"weight": weight, "reduction": reduction}
    if name == "softmax_cross_entropy":
        kwargs["label_smoothing"] = eps
    return kwargs


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,ignore", [(False, False), (True, False), (True, True),
                                             (False, True)])
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=str)
@pytest.mark.parametrize("name,eps", [("softmax_cross_entropy", 0.0),
                                      ("softmax_cross_entropy", 0.25), ("nll_loss", 0.0)])
def test_class_losses_naive_fast_and_torch(name, eps, shape, weighted, ignore, reduction,
                                          torch, rng):
    forward, backward = CLASS_OPS[name]
    x, labels, weight = _class_case(rng, shape, weighted, ignore)
    kwargs = _class_kwargs(name, weight, reduction, eps)
    loss_n, cache_n = forward(x, labels, **kwargs, impl="naive")
    loss_f, cache_f = forward(x, labels, **kwargs, impl="fast")
    np.testing.assert_allclose(loss_n, loss_f, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(np.shape(loss_f))
    (d_n,), (d_f,) = backward(dout, cache_n), backward(dout, cache_f)
    assert d_n.shape == d_f.shape == x.shape
    np.testing.assert_allclose(d_n, d_f, rtol=1e-12, atol=1e-14)
    loss_t, d_t = _torch_class_loss(torch, name, x, labels, weight, reduction, eps, dout)
    assert np.shape(loss_f) == loss_t.shape
    np.testing.assert_allclose(loss_f, loss_t, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_f, d_t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(CLASS_OPS))
def test_class_losses_finite_differences(name, reduction, impl, rng):
    forward, backward = CLASS_OPS[name]
    x, labels, weight = _class_case(rng, (3, 4, 2), True, True)
    kwargs = _class_kwargs(name, weight, reduction, 0.2)
    loss, cache = forward(x, labels, **kwargs, impl=impl)
    dout = rng.standard_normal(np.shape(loss))
    (dx,) = backward(dout, cache)
    num = numerical_gradient(lambda: forward(x, labels, **kwargs, impl=impl)[0], x, dout, h=1e-5)
    assert rel_error(dx, num) < 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_options_match_torch(dtype, torch, rng):
    x, labels, weight = _class_case(rng, (4, 5, 3), True, True, dtype)
    loss, cache = K.softmax_cross_entropy_forward(x, labels, weight, label_smoothing=0.1)
    (dx,) = K.softmax_cross_entropy_backward(np.asarray(0.7, dtype), cache)
    loss_t, d_t = _torch_class_loss(torch, "softmax_cross_entropy", x, labels, weight, "mean",
                                    0.1, 0.7)
    assert loss.dtype == dx.dtype == dtype
    np.testing.assert_allclose(loss, loss_t, **TOL[dtype])
    np.testing.assert_allclose(dx, d_t, **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
def test_every_target_ignored_gives_nan_and_zero_gradient_as_torch(impl):
    x = np.ones((3, 4))
    loss, cache = K.softmax_cross_entropy_forward(x, np.full(3, -100), impl=impl)
    assert np.isnan(loss)
    np.testing.assert_array_equal(K.softmax_cross_entropy_backward(1.0, cache)[0], 0)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(CLASS_OPS)),
    impl=st.sampled_from(IMPLS),
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
    weighted=st.booleans(),
    ignore_index=st.sampled_from([-100, 0, 2]),
    reduction=st.sampled_from(REDUCTIONS),
    eps=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_class_losses_random_configurations_match_torch(name, impl, shape, weighted,
                                                        ignore_index, reduction, eps, seed,
                                                        torch):
    rng = np.random.default_rng(seed)
    forward, backward = CLASS_OPS[name]
    x, labels, weight = _class_case(rng, shape, weighted, False)
    if name == "nll_loss":
        eps = 0.0
    kwargs = _class_kwargs(name, weight, reduction, eps)
    loss, cache = forward(x, labels, **kwargs, ignore_index=ignore_index, impl=impl)
    dout = rng.standard_normal(np.shape(loss))
    (dx,) = backward(dout, cache)
    F = torch.nn.functional
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = None if weight is None else torch.from_numpy(weight)
    if name == "nll_loss":
        lt = F.nll_loss(xt, torch.from_numpy(labels), weight=wt, ignore_index=ignore_index,
                        reduction=reduction)
    else:
        lt = F.cross_entropy(xt, torch.from_numpy(labels), weight=wt, ignore_index=ignore_index,
                             reduction=reduction, label_smoothing=eps)
    lt.backward(torch.from_numpy(np.asarray(dout)))
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-13)


# --- mse_loss and binary_cross_entropy_with_logits ------------------------------------------

def _bce_args(rng, shape, weighted, pos_weighted):
    weight = rng.uniform(0.5, 2.0, shape[-1:]) if weighted else None
    pos_weight = rng.uniform(0.5, 3.0, shape[-1:]) if pos_weighted else None
    return {"weight": weight, "pos_weight": pos_weight}


POINT_OPS = {
    "mse_loss": (K.mse_loss_forward, K.mse_loss_backward),
    "binary_cross_entropy_with_logits": (K.binary_cross_entropy_with_logits_forward,
                                         K.binary_cross_entropy_with_logits_backward),
}


def _torch_point_loss(torch, name, x, t, kwargs, reduction, dout):
    F = torch.nn.functional
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    tt = torch.from_numpy(t.copy()).requires_grad_(True)
    if name == "mse_loss":
        lt = F.mse_loss(xt, tt, reduction=reduction)
    else:
        extra = {k: None if v is None else torch.from_numpy(v) for k, v in kwargs.items()}
        lt = F.binary_cross_entropy_with_logits(xt, tt, reduction=reduction, **extra)
    lt.backward(torch.from_numpy(np.asarray(dout)))
    return lt.detach().numpy(), xt.grad.numpy(), tt.grad.numpy()


POINT_CASES = [("mse_loss", False, False), ("binary_cross_entropy_with_logits", False, False),
               ("binary_cross_entropy_with_logits", True, False),
               ("binary_cross_entropy_with_logits", True, True),
               ("binary_cross_entropy_with_logits", False, True)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("name,weighted,pos_weighted", POINT_CASES)
def test_pointwise_losses_naive_fast_and_torch(name, weighted, pos_weighted, shape, reduction,
                                               torch, rng):
    forward, backward = POINT_OPS[name]
    x = rng.standard_normal(shape) * 4
    t = rng.uniform(0, 1, shape) if name != "mse_loss" else rng.standard_normal(shape)
    kwargs = _bce_args(rng, shape, weighted, pos_weighted) if name != "mse_loss" else {}
    loss_n, cache_n = forward(x, t, reduction=reduction, **kwargs, impl="naive")
    loss_f, cache_f = forward(x, t, reduction=reduction, **kwargs, impl="fast")
    np.testing.assert_allclose(loss_n, loss_f, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(np.shape(loss_f))
    grads_n, grads_f = backward(dout, cache_n), backward(dout, cache_f)
    loss_t, dx_t, dt_t = _torch_point_loss(torch, name, x, t, kwargs, reduction, dout)
    np.testing.assert_allclose(loss_f, loss_t, rtol=1e-12, atol=1e-14)
    for g_n, g_f, g_t in zip(grads_n, grads_f, (dx_t, dt_t), strict=True):
        assert g_n.shape == g_f.shape == shape
        np.testing.assert_allclose(g_n, g_f, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g_f, g_t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,weighted,pos_weighted", POINT_CASES)
def test_pointwise_losses_finite_differences(name, weighted, pos_weighted, impl, rng):
    forward, backward = POINT_OPS[name]
    x, t = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    kwargs = _bce_args(rng, x.shape, weighted, pos_weighted) if name != "mse_loss" else {}
    loss, cache = forward(x, t, reduction="none", **kwargs, impl=impl)
    dout = rng.standard_normal(loss.shape)
    dx, dt = backward(dout, cache)
    f = lambda: forward(x, t, reduction="none", **kwargs, impl=impl)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(f, x, dout, h=1e-5)) < 1e-7
    assert rel_error(dt, numerical_gradient(f, t, dout, h=1e-5)) < 1e-7


@pytest.mark.parametrize("impl", IMPLS)
def test_bce_with_logits_extreme_logits_are_finite(impl, torch):
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32)
    t = np.array([1.0, 0.0, 0.5, 1.0, 0.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, cache = K.binary_cross_entropy_with_logits_forward(x, t, reduction="none",
                                                                 impl=impl)
        dx, _ = K.binary_cross_entropy_with_logits_backward(np.ones(5, np.float32), cache)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(x), torch.from_numpy(t), reduction="none").numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(dx, [-1, 0, 0, 0, 1], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(POINT_OPS)),
    impl=st.sampled_from(IMPLS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    reduction=st.sampled_from(REDUCTIONS),
    weighted=st.booleans(),
    pos_weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pointwise_losses_random_configurations_match_torch(name, impl, shape, reduction,
                                                            weighted, pos_weighted, seed, torch):
    rng = np.random.default_rng(seed)
    forward, backward = POINT_OPS[name]
    x, t = rng.standard_normal(shape) * 5, rng.uniform(0, 1, shape)
    kwargs = _bce_args(rng, shape, weighted, pos_weighted) if name != "mse_loss" else {}
    loss, cache = forward(x, t, reduction=reduction, **kwargs, impl=impl)
    dout = rng.standard_normal(np.shape(loss))
    dx, dt = backward(dout, cache)
    loss_t, dx_t, dt_t = _torch_point_loss(torch, name, x, t, kwargs, reduction, dout)
    np.testing.assert_allclose(loss, loss_t, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dt, dt_t, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), [0, 1], reduction="avg"),
         r"^softmax_cross_entropy: reduction .*'avg'"),
        (lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), [0, 1], weight=np.ones(4)),
         r"^softmax_cross_entropy: weight .*\(3,\).*\(4,\)"),
        (lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), [0, 1], label_smoothing=1.5),
         r"^softmax_cross_entropy: label_smoothing .*1.5"),
        (lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), [0, 1], ignore_index=0.5),
         r"^softmax_cross_entropy: ignore_index .*0.5"),
        (lambda: K.nll_loss_forward(np.zeros((2, 3, 2)), np.array([[0, 5], [1, 1]])),
         r"^nll_loss: labels .*\[0, 3\).*-100.*\[5\]"),
        (lambda: K.mse_loss_forward(np.zeros((2, 3)), np.zeros((3, 2))),
         r"^mse_loss: target .*\(2, 3\).*\(3, 2\)"),
        (lambda: K.binary_cross_entropy_with_logits_forward(np.zeros((2, 3)), np.zeros((2, 3)),
                                                            pos_weight=np.ones(2)),
         r"^binary_cross_entropy_with_logits: pos_weight .*\(2,\).*\(2, 3\)"),
    ],
)
def test_option_errors_name_the_op_and_echo_the_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("name", sorted(POINT_OPS) + sorted(CLASS_OPS))
def test_backward_dout_shape_for_none_and_scalar(name):
    forward, backward = {**POINT_OPS, **CLASS_OPS}[name]
    second = np.array([0, 1]) if name in CLASS_OPS else np.zeros((2, 3))
    _, cache = forward(np.zeros((2, 3)), second, reduction="none")
    with pytest.raises(ValueError, match=rf"^{name}_backward: dout .*\(2,\)|\(2, 3\)"):
        backward(1.0, cache)
    _, cache = forward(np.zeros((2, 3)), second)
    with pytest.raises(ValueError, match=rf"^{name}_backward: dout must be a scalar"):
        backward(np.ones(2), cache)
