"""Kernel softmax_cross_entropy: naive vs fast, finite differences, PyTorch parity,
extreme logits, seed-facts §3, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

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
        (np.zeros(4), np.array([0]), r"\(N, K\), got shape \(4,\)"),
        (np.zeros((2, 3, 4)), np.array([0, 1]), r"got shape \(2, 3, 4\)"),
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
