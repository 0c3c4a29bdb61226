"""Kernel dropout: naive vs fast (identical for one seed), statistics, PyTorch parity of the
convention, finite differences with a fixed mask, errors."""

from __future__ import annotations

import numpy as np
import pytest

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error

IMPLS = ["naive", "fast"]
DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (3, 5), (2, 3, 4), (1, 2, 3, 3)]


def _gen(seed=7):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_naive_and_fast_are_identical_for_one_seed(shape, p, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    out_n, cache_n = K.dropout_forward(x, p, rng=_gen(), impl="naive")
    out_f, cache_f = K.dropout_forward(x, p, rng=_gen(), impl="fast")
    assert out_n.dtype == out_f.dtype == dtype and out_n.shape == shape
    np.testing.assert_array_equal(out_n, out_f)
    dout = rng.standard_normal(shape).astype(dtype)
    (dx_n,), (dx_f,) = K.dropout_backward(dout, cache_n), K.dropout_backward(dout, cache_f)
    assert dx_n.dtype == dx_f.dtype == dtype
    np.testing.assert_array_equal(dx_n, dx_f)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_and_backward_apply_the_same_scaled_mask(impl, rng):
    p = 0.4
    x = rng.standard_normal((3, 4, 5)) + 5  # no zeros, so out / x recovers the mask
    out, cache = K.dropout_forward(x, p, rng=_gen(), impl=impl)
    mask = out / x
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - p), rtol=1e-14)
    np.testing.assert_array_equal(kept, _gen().random(x.shape) >= p)
    dout = rng.standard_normal(x.shape)
    (dx,) = K.dropout_backward(dout, cache)
    np.testing.assert_allclose(dx, dout * mask, rtol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_matches_finite_differences_with_a_fixed_mask(impl, rng):
    x = rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal(x.shape)
    _, cache = K.dropout_forward(x, 0.3, rng=_gen(), impl=impl)
    (dx,) = K.dropout_backward(dout, cache)
    num = numerical_gradient(lambda: K.dropout_forward(x, 0.3, rng=_gen(), impl=impl)[0], x, dout)
    assert rel_error(dx, num) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_fraction_kept_and_scaling(p, dtype):
    n = 200_000
    out, cache = K.dropout_forward(np.ones(n, dtype), p, rng=_gen(3))
    kept = out != 0
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 1) < 5 * sigma / (1 - p)  # inverted dropout keeps the mean
    (dx,) = K.dropout_backward(np.full(n, 2, dtype), cache)
    np.testing.assert_array_equal(dx, 2 * out)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True), (0.0, False), (1.0, False)])
def test_identity_in_eval_or_with_p_zero(p, training, impl, rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    gen = _gen()
    state = gen.bit_generator.state
    out, cache = K.dropout_forward(x, p, training=training, rng=gen, impl=impl)
    assert out is x
    assert gen.bit_generator.state == state  # nothing drawn
    dout = rng.standard_normal(x.shape).astype(np.float32)
    (dx,) = K.dropout_backward(dout, cache)
    np.testing.assert_array_equal(dx, dout)


@pytest.mark.parametrize("impl", IMPLS)
def test_p_one_gives_zeros(impl, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out, cache = K.dropout_forward(x, 1.0, rng=_gen(), impl=impl)
    np.testing.assert_array_equal(out, 0)
    assert out.dtype == np.float32
    (dx,) = K.dropout_backward(rng.standard_normal((3, 4)), cache)
    np.testing.assert_array_equal(dx, 0)
    assert dx.dtype == np.float32


@pytest.mark.parametrize("impl", IMPLS)
def test_determinism_for_a_seed(impl, rng):
    x = rng.standard_normal((4, 5)) + 3
    first, _ = K.dropout_forward(x, 0.5, rng=_gen(11), impl=impl)
    again, _ = K.dropout_forward(x, 0.5, rng=_gen(11), impl=impl)
    other, _ = K.dropout_forward(x, 0.5, rng=_gen(12), impl=impl)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_default_generator_when_rng_is_none():
    x = np.ones(10_000, np.float32)
    a, _ = K.dropout_forward(x, 0.5)
    b, _ = K.dropout_forward(x, 0.5)
    assert a.dtype == np.float32 and 0.45 < np.mean(a != 0) < 0.55
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_convention(dtype, torch):
    # torch draws its own mask: compare what both conventions imply, not the masks
    p, n = 0.3, 100_000
    x = np.random.default_rng(5).uniform(1, 2, n).astype(dtype)
    dout = np.random.default_rng(6).standard_normal(n).astype(dtype)
    torch.manual_seed(0)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch.nn.functional.dropout(xt, p, training=True)
    out_t.backward(torch.from_numpy(dout))
    out, cache = K.dropout_forward(x, p, rng=_gen())
    (dx,) = K.dropout_backward(dout, cache)
    sigma = np.sqrt(p * (1 - p) / n)
    for y, g in ((out, dx), (out_t.detach().numpy(), xt.grad.numpy())):
        kept = y != 0
        assert abs(kept.mean() - (1 - p)) < 5 * sigma
        np.testing.assert_allclose(y[kept] / x[kept], 1 / (1 - p), rtol=1e-6)
        np.testing.assert_allclose(g, dout * y / x, rtol=1e-5, atol=1e-6)
    xt.grad = None
    same = torch.nn.functional.dropout(xt, p, training=False)
    np.testing.assert_array_equal(same.detach().numpy(), K.dropout_forward(x, p, False)[0])


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_bad_p_raises(p):
    with pytest.raises(ValueError, match=r"^dropout: p must be .*\[0, 1\], got "):
        K.dropout_forward(np.ones(3), p)


def test_bad_rng_impl_and_dout_raise():
    with pytest.raises(ValueError, match=r"^dropout: rng .*RandomState"):
        K.dropout_forward(np.ones(3), 0.5, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"^dropout: impl .*'fastest'"):
        K.dropout_forward(np.ones(3), 0.5, impl="fastest")
    _, cache = K.dropout_forward(np.ones((2, 3)), 0.5, rng=_gen())
    with pytest.raises(ValueError, match=r"^dropout_backward: .*\(2, 3\).*\(6,\)"):
        K.dropout_backward(np.ones(6), cache)
