"""Kernel cat: naive vs fast, finite differences, PyTorch parity of the output and every
gradient (random upstream gradient), dtype promotion, hypothesis, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glasscnn.kernels as K
from glasscnn.gradcheck import numerical_gradient, rel_error

IMPLS = ["naive", "fast"]
# (shapes, dim): channels of NCHW maps, negative dim, 1-D, one array, a zero-size piece
CASES = [
    ([(2, 3, 4, 5), (2, 1, 4, 5), (2, 6, 4, 5)], 1),
    ([(2, 3, 4), (2, 3, 2)], -1),
    ([(3,), (5,)], 0),
    ([(1, 2, 3)], 0),
    ([(2, 0, 3), (2, 4, 3)], 1),
    ([(1, 2), (3, 2), (1, 2)], -2),
]


def _arrays(rng, shapes, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("shapes, dim", CASES)
def test_naive_matches_fast_and_torch(shapes, dim, torch, rng):
    arrays = _arrays(rng, shapes)
    out_n, cache_n = K.cat_forward(arrays, dim, impl="naive")
    out_f, cache_f = K.cat_forward(arrays, dim, impl="fast")
    ts = [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
    out_t = torch.cat(ts, dim)
    np.testing.assert_array_equal(out_n, out_f)
    np.testing.assert_array_equal(out_f, out_t.detach().numpy())
    dout = rng.standard_normal(out_f.shape)
    out_t.backward(torch.from_numpy(dout))
    for g_n, g_f, t in zip(K.cat_backward(dout, cache_n), K.cat_backward(dout, cache_f), ts,
                           strict=True):
        np.testing.assert_array_equal(g_n, g_f)
        np.testing.assert_array_equal(g_f, t.grad.numpy())


@pytest.mark.parametrize("impl", IMPLS)
def test_finite_differences(impl, rng):
    a, b = _arrays(rng, [(2, 3, 2), (2, 1, 2)])
    out, cache = K.cat_forward([a, b], 1, impl=impl)
    dout = rng.standard_normal(out.shape)
    da, db = K.cat_backward(dout, cache)
    f = lambda: K.cat_forward([a, b], 1, impl=impl)[0]  # noqa: E731
    assert rel_error(da, numerical_gradient(f, a, dout, h=1e-5)) < 1e-8
    assert rel_error(db, numerical_gradient(f, b, dout, h=1e-5)) < 1e-8


@pytest.mark.parametrize("impl", IMPLS)
def test_dtype_promotion_as_torch(impl, torch, rng):
    a = rng.standard_normal((2, 2)).astype(np.float32)
    b = rng.standard_normal((2, 3))
    out, cache = K.cat_forward((a, b), 1, impl=impl)
    assert out.dtype == torch.cat([torch.from_numpy(a), torch.from_numpy(b)], 1).numpy().dtype
    da, db = K.cat_backward(np.ones(out.shape), cache)
    assert da.dtype == np.float32 and db.dtype == np.float64


@settings(max_examples=40, deadline=None)
@given(
    impl=st.sampled_from(IMPLS),
    base=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    sizes=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    data=st.data(),
)
def test_random_shapes_match_torch(impl, base, sizes, data, torch):
    dim = data.draw(st.integers(-len(base), len(base) - 1), label="dim")
    axis = dim % len(base)
    shapes = [tuple([*base[:axis], s, *base[axis + 1:]]) for s in sizes]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    arrays = _arrays(rng, shapes)
    out, cache = K.cat_forward(arrays, dim, impl=impl)
    ts = [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
    out_t = torch.cat(ts, dim)
    dout = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    for g, t in zip(K.cat_backward(dout, cache), ts, strict=True):
        np.testing.assert_array_equal(g, t.grad.numpy())


@pytest.mark.parametrize(
    "args, match",
    [
        (([],), r"non-empty list or tuple of arrays, got list"),
        ((np.zeros((2, 3)),), r"non-empty list or tuple of arrays, got ndarray"),
        (([np.zeros((2, 3)), np.zeros(3)],), r"same number of axes .*\[\(2, 3\), \(3,\)\]"),
        (([np.zeros((2, 3)), np.zeros((3, 3))], 1), r"agree on every axis but dim 1, got shapes "
                                                   r"\[\(2, 3\), \(3, 3\)\]"),
        (([np.zeros((2, 3))], 2), r"dim must be an int in \[-2, 2\) .*\(2, 3\), got 2"),
        (([np.zeros(())],), r"at least 1"),
    ],
)
def test_errors_name_the_op_and_echo_the_input(args, match):
    with pytest.raises(ValueError, match=rf"^cat: .*{match}"):
        K.cat_forward(*args)


def test_backward_rejects_wrong_dout_shape():
    _, cache = K.cat_forward([np.zeros((2, 3)), np.zeros((2, 1))], 1)
    with pytest.raises(ValueError, match=r"^cat_backward: .*\(2, 4\).*\(2, 3\)"):
        K.cat_backward(np.zeros((2, 3)), cache)
