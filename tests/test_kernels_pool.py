"""Pooling kernels: naive vs fast, finite differences, PyTorch parity, ties, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.kernels import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    pool_output_size,
)

IMPLS = ["naive", "fast"]

# (kernel_size, stride, padding, input shape): kernels 1-3, strides 1-3, padding 0-1,
# odd and non-square inputs, batch 1, kernel equal to the input, overlapping 3×3 s2.
WINDOW_CASES = [
    (1, 1, 0, (2, 3, 5, 4)),
    (2, None, 0, (2, 3, 8, 8)),
    (2, 2, 1, (1, 2, 7, 5)),
    (2, 1, 0, (2, 2, 5, 6)),
    (3, 2, 0, (2, 2, 9, 11)),
    (3, 2, 1, (2, 2, 7, 5)),
    (3, 3, 1, (1, 3, 8, 7)),
    (3, 1, 1, (1, 2, 6, 5)),
    (2, 3, 0, (2, 2, 8, 7)),
    (1, 3, 0, (1, 1, 7, 7)),
    ((3, 2), (1, 3), (1, 0), (2, 2, 6, 9)),
    (3, 1, 0, (1, 2, 3, 3)),
    ((4, 5), 2, 0, (1, 2, 4, 5)),
]
CASE_IDS = [f"k{k}-s{s}-p{p}-{'x'.join(map(str, shape))}" for k, s, p, shape in WINDOW_CASES]

ADAPTIVE_CASES = [
    (1, (2, 3, 8, 8)),
    ((1, 1), (1, 2, 7, 5)),
    (2, (2, 2, 8, 6)),
    (3, (2, 2, 7, 5)),
    ((4, 3), (1, 2, 9, 7)),
    ((5, 7), (1, 2, 3, 4)),
    ((7, 5), (1, 1, 7, 5)),
    ((6, 4), (2, 1, 13, 13)),
    ((9, 8), (1, 1, 16, 15)),  # H·W·H_out·W_out > 2**14: the two-product path
]
ADAPTIVE_IDS = [f"out{o}-{'x'.join(map(str, shape))}" for o, shape in ADAPTIVE_CASES]


def _distinct(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """Values in [-0.5, 0.5) without ties (a shuffled ramp): max-pool gradients are defined."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(dtype)


def _max(x, k, s, p, impl, **_):
    return max_pool2d_forward(x, k, s, p, impl=impl)


def _avg(x, k, s, p, impl, count_include_pad=True):
    return avg_pool2d_forward(x, k, s, p, count_include_pad=count_include_pad, impl=impl)


OPS = {
    "max": (_max, max_pool2d_backward),
    "avg": (_avg, avg_pool2d_backward),
    "avg_nopad": (lambda *a: _avg(*a, count_include_pad=False), avg_pool2d_backward),
}


def _torch_op(torch, name, k, s, p):
    f = torch.nn.functional
    stride = k if s is None else s
    if name == "max":
        return lambda t: f.max_pool2d(t, k, stride, p)
    return lambda t: f.avg_pool2d(t, k, stride, p, count_include_pad=name == "avg")


def _torch_run(torch, fn, x, dout):
    """Output and input gradient of ``fn`` under torch, as NumPy arrays."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = fn(xt)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), xt.grad.numpy()


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(("k", "s", "p", "shape"), WINDOW_CASES, ids=CASE_IDS)
def test_naive_matches_fast(name, k, s, p, shape, rng):
    forward, backward = OPS[name]
    x = rng.standard_normal(shape)
    out_n, cache_n = forward(x, k, s, p, "naive")
    out_f, cache_f = forward(x, k, s, p, "fast")
    np.testing.assert_allclose(out_f, out_n, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(out_n.shape)
    np.testing.assert_allclose(backward(dout, cache_f)[0], backward(dout, cache_n)[0],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(("k", "s", "p", "shape"), WINDOW_CASES[2:7], ids=CASE_IDS[2:7])
def test_finite_differences(name, impl, k, s, p, shape, rng):
    forward, backward = OPS[name]
    x = _distinct(rng, shape)
    out, cache = forward(x, k, s, p, impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = backward(dout, cache)
    # pooling is piecewise linear: a step of 1e-5, far below the spacing of x, is exact
    num = numerical_gradient(lambda: forward(x, k, s, p, impl)[0], x, dout, h=1e-5)
    assert rel_error(dx, num) < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(("k", "s", "p", "shape"), WINDOW_CASES, ids=CASE_IDS)
def test_matches_torch(name, impl, dtype, k, s, p, shape, torch, rng):
    forward, backward = OPS[name]
    x = rng.standard_normal(shape).astype(dtype)
    out, cache = forward(x, k, s, p, impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    (dx,) = backward(dout, cache)
    out_t, dx_t = _torch_run(torch, _torch_op(torch, name, k, s, p), x, dout)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(out, out_t, **_tol(dtype))
    np.testing.assert_allclose(dx, dx_t, **_tol(dtype))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["max", "avg"])
def test_seed_facts_operators_match_torch(name, impl, torch, rng):
    """seed-facts §3: max pool and average pool (padding counted), k 2, s 1, p 0, float64."""
    forward, backward = OPS[name]
    x = rng.standard_normal((4, 3, 12, 12))
    out, cache = forward(x, 2, 1, 0, impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = backward(dout, cache)
    out_t, dx_t = _torch_run(torch, _torch_op(torch, name, 2, 1, 0), x, dout)
    assert out.shape == (4, 3, 11, 11)
    assert np.mean((out - out_t) ** 2) < 1e-15
    assert np.mean((dx - dx_t) ** 2) < 1e-15


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("k", "s", "p", "shape"), WINDOW_CASES, ids=CASE_IDS)
def test_max_pool_ties_match_torch(k, s, p, shape, impl, dtype, torch, rng):
    x = rng.integers(0, 3, size=shape).astype(dtype)
    out, cache = max_pool2d_forward(x, k, s, p, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    (dx,) = max_pool2d_backward(dout, cache)
    out_t, dx_t = _torch_run(torch, _torch_op(torch, "max", k, s, p), x, dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_allclose(dx, dx_t, **_tol(dtype))


@pytest.mark.parametrize("impl", IMPLS)
def test_max_pool_ties_go_to_first_maximum_and_overlaps_accumulate(impl):
    x = np.zeros((1, 1, 3, 5))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 1.0  # both windows of 3×3 s2 hold 1 at (1, 2) first
    out, cache = max_pool2d_forward(x, 3, 2, impl=impl)
    (dx,) = max_pool2d_backward(np.array([[[[0.5, -2.0]]]]), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 2] = 0.5 - 2.0
    np.testing.assert_array_equal(out, [[[[1.0, 1.0]]]])
    np.testing.assert_array_equal(dx, expected)
    _, cache = max_pool2d_forward(np.ones((1, 1, 2, 2)), 2, impl=impl)
    (dx,) = max_pool2d_backward(np.full((1, 1, 1, 1), 3.0), cache)
    np.testing.assert_array_equal(dx, [[[[3.0, 0.0], [0.0, 0.0]]]])


@pytest.mark.parametrize(("k", "s", "p"), [(3, 2, 1), (2, 2, 0)])
def test_fast_max_pool_in_batch_chunks_matches_torch(k, s, p, torch, rng):
    x = rng.integers(0, 4, size=(3, 40, 41, 41)).astype(np.float64)  # > 512 KiB per sample
    out, cache = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out.shape)
    (dx,) = max_pool2d_backward(dout, cache)
    out_t, dx_t = _torch_run(torch, _torch_op(torch, "max", k, s, p), x, dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_allclose(dx, dx_t, **_tol(np.float64))


@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1)])
def test_fast_max_pool_any_memory_layout(k, s, p, rng):
    """Channels-last input (as the fast conv returns it) and dout in either layout give the
    same values as NCHW arrays; the output keeps the input's layout."""
    x = rng.integers(0, 3, size=(4, 9, 12, 11)).astype(np.float32)  # ties included
    out, cache = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    (dx,) = max_pool2d_backward(dout, cache)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out_cl, cache_cl = max_pool2d_forward(x_cl, k, s, p)
    np.testing.assert_array_equal(out_cl, out)
    assert out_cl.transpose(0, 2, 3, 1).flags.c_contiguous
    for d in (dout, np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
        np.testing.assert_array_equal(max_pool2d_backward(d, cache_cl)[0], dx)


@pytest.mark.parametrize("impl", IMPLS)
def test_max_pool_padding_never_wins(impl):
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: a 0 pad would win
    out, cache = max_pool2d_forward(x, 2, 2, 1, impl=impl)
    np.testing.assert_array_equal(out, [[[[-1.0, -2.0], [-4.0, -5.0]]]])
    (dx,) = max_pool2d_backward(np.ones_like(out) * 2.0, cache)
    assert dx[0, 0, 0, 0] == 2.0 and dx.sum() == 8.0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("output_size", "shape"), ADAPTIVE_CASES, ids=ADAPTIVE_IDS)
def test_adaptive_naive_fast_and_finite_differences(output_size, shape, impl, rng):
    x = rng.standard_normal(shape)
    out, cache = adaptive_avg_pool2d_forward(x, output_size, impl=impl)
    ref, ref_cache = adaptive_avg_pool2d_forward(x, output_size, impl="naive")
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    dout = rng.standard_normal(out.shape)
    (dx,) = adaptive_avg_pool2d_backward(dout, cache)
    np.testing.assert_allclose(dx, adaptive_avg_pool2d_backward(dout, ref_cache)[0],
                               rtol=1e-12, atol=1e-14)
    num = numerical_gradient(lambda: adaptive_avg_pool2d_forward(x, output_size, impl=impl)[0],
                             x, dout, h=1e-5)
    assert rel_error(dx, num) < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("output_size", "shape"), ADAPTIVE_CASES, ids=ADAPTIVE_IDS)
def test_adaptive_matches_torch(output_size, shape, impl, dtype, torch, rng):
    x = rng.standard_normal(shape).astype(dtype)
    out, cache = adaptive_avg_pool2d_forward(x, output_size, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    (dx,) = adaptive_avg_pool2d_backward(dout, cache)
    fn = lambda t: torch.nn.functional.adaptive_avg_pool2d(t, output_size)  # noqa: E731
    out_t, dx_t = _torch_run(torch, fn, x, dout)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(out, out_t, **_tol(dtype))
    np.testing.assert_allclose(dx, dx_t, **_tol(dtype))


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(list(OPS)),
    impl=st.sampled_from(IMPLS),
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    data=st.data(),
)
def test_random_configurations_match_torch(name, impl, n, c, h, w, kh, kw, sh, sw, data, torch):
    ph = data.draw(st.integers(0, kh // 2), label="ph")
    pw = data.draw(st.integers(0, kw // 2), label="pw")
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = rng.standard_normal((n, c, h, w))
    forward, backward = OPS[name]
    out, cache = forward(x, (kh, kw), (sh, sw), (ph, pw), impl)
    dout = rng.standard_normal(out.shape)
    (dx,) = backward(dout, cache)
    out_t, dx_t = _torch_run(torch, _torch_op(torch, name, (kh, kw), (sh, sw), (ph, pw)), x, dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["max", "avg", "adaptive"])
def test_dtype_follows_input(name, impl, rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
        if name == "adaptive":
            out, cache = adaptive_avg_pool2d_forward(x, 4, impl=impl)
            (dx,) = adaptive_avg_pool2d_backward(rng.standard_normal(out.shape), cache)
        else:
            forward, backward = OPS[name]
            out, cache = forward(x, 3, 2, 1, impl)
            (dx,) = backward(rng.standard_normal(out.shape), cache)
        assert out.dtype == dtype and dx.dtype == dtype
    out, _ = max_pool2d_forward(np.arange(16).reshape(1, 1, 4, 4), 2, impl=impl)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[[5, 7], [13, 15]]]])


WINDOW_ERRORS = [
    ({"x": np.zeros((3, 8, 8))}, r"expected input of shape \(N, C, H, W\), got shape \(3, 8, 8\)"),
    ({"kernel_size": 0}, r"kernel_size must be > 0, got \(0, 0\)"),
    ({"kernel_size": (2, -1)}, r"kernel_size must be > 0, got \(2, -1\)"),
    ({"stride": 0}, r"stride must be > 0, got \(0, 0\)"),
    ({"padding": -1}, r"padding must be >= 0, got \(-1, -1\)"),
    ({"padding": 2}, r"padding must be at most half the kernel size, got padding \(2, 2\)"),
    ({"kernel_size": 1, "padding": 1}, r"padding must be at most half"),
    ({"kernel_size": (3, 4), "padding": (2, 2)}, r"padding must be at most half"),
    ({"kernel_size": 5, "x": np.zeros((1, 1, 3, 8))}, r"kernel_size \(5, 5\) is larger than"),
    ({"kernel_size": 2.5}, r"kernel_size must be an int or a pair of ints, got 2.5"),
    ({"impl": "cuda"}, r"impl must be one of \('naive', 'fast'\), got 'cuda'"),
]


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize(("override", "match"), WINDOW_ERRORS)
def test_window_errors_name_the_op(op, override, match):
    args = {"x": np.zeros((1, 2, 6, 6)), "kernel_size": 2, "stride": None, "padding": 0,
            "impl": "fast"} | override
    forward = max_pool2d_forward if op == "max_pool2d" else avg_pool2d_forward
    with pytest.raises(ValueError, match=f"^{op}: {match}"):
        forward(**args)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((2, 6, 6)), 2), r"expected input of shape \(N, C, H, W\), got shape \(2, 6"),
        ((np.zeros((1, 1, 6, 6)), 0), r"output_size must be > 0, got \(0, 0\)"),
        ((np.zeros((1, 1, 6, 6)), (3, -2)), r"output_size must be > 0, got \(3, -2\)"),
        ((np.zeros((1, 1, 0, 6)), 2), r"input has an empty spatial axis, got shape \(1, 1, 0, 6\)"),
        ((np.zeros((1, 1, 6, 6)), (1, 2, 3)), r"output_size must be an int or a pair"),
    ],
)
def test_adaptive_errors_name_the_op(args, match):
    with pytest.raises(ValueError, match=f"^adaptive_avg_pool2d: {match}"):
        adaptive_avg_pool2d_forward(*args)


def test_adaptive_unknown_impl():
    with pytest.raises(ValueError, match=r"^adaptive_avg_pool2d: impl must be one of .*'slow'"):
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, impl="slow")


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_rejects_wrong_dout_shape(impl):
    x = np.zeros((1, 2, 6, 6))
    cases = [
        (max_pool2d_forward(x, 2, impl=impl)[1], max_pool2d_backward, "max_pool2d_backward"),
        (avg_pool2d_forward(x, 2, impl=impl)[1], avg_pool2d_backward, "avg_pool2d_backward"),
        (adaptive_avg_pool2d_forward(x, 3, impl=impl)[1], adaptive_avg_pool2d_backward,
         "adaptive_avg_pool2d_backward"),
    ]
    for cache, backward, op in cases:
        with pytest.raises(ValueError, match=rf"^{op}: expected dout of shape \(1, 2, 3, 3\), "
                                             r"got shape \(1, 2, 3, 4\)"):
            backward(np.zeros((1, 2, 3, 4)), cache)


# --- dilation, ceil_mode, indices, divisor_override -----------------------------------------

# (kernel, stride, padding, dilation, ceil_mode, input shape): ceil windows reaching past the
# padding, the last-window rule dropping one, dilated overlapping and gapped windows
MAX_OPTION_CASES = [
    (3, 2, 0, 1, True, (2, 2, 8, 7)),
    (3, 2, 1, 1, True, (1, 2, 6, 5)),
    (2, 2, 1, 1, True, (1, 1, 5, 5)),
    (2, 3, 0, 1, True, (2, 1, 7, 8)),
    (3, 1, 1, 2, False, (1, 2, 7, 6)),
    (2, 3, 0, 2, False, (2, 2, 9, 8)),
    (3, 2, 1, 2, True, (1, 2, 9, 8)),
    ((2, 3), (1, 2), (1, 1), (3, 1), True, (2, 1, 7, 9)),
    (1, 2, 0, 3, True, (1, 1, 4, 5)),
]


def _torch_max(torch, x, k, s, p, d, ceil, dout):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, idx = torch.nn.functional.max_pool2d(xt, k, s, p, d, ceil_mode=ceil, return_indices=True)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), idx.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("k, s, p, d, ceil, shape", MAX_OPTION_CASES)
def test_max_pool_options_naive_fast_torch_and_indices(k, s, p, d, ceil, shape, torch, rng):
    x = _distinct(rng, shape)
    results = []
    for impl in IMPLS:
        out, cache = max_pool2d_forward(x, k, s, p, d, ceil, impl=impl)
        dout = np.random.default_rng(1).standard_normal(out.shape)
        results.append((out, max_pool2d_indices(cache), *max_pool2d_backward(dout, cache)))
    out_t, idx_t, dx_t = _torch_max(torch, x, k, s, p, d, ceil, dout)
    for out, idx, dx in results:
        np.testing.assert_array_equal(out, out_t)
        np.testing.assert_array_equal(idx, idx_t)
        assert idx.dtype == np.int64
        np.testing.assert_allclose(dx, dx_t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_max_pool_indices_on_ties_match_torch(impl, torch):
    x = np.zeros((1, 2, 5, 6))
    x[0, 1, 1:3, 2:5] = 1.0
    out, cache = max_pool2d_forward(x, 3, 2, 1, 1, True, impl=impl)
    _, idx_t, _ = _torch_max(torch, x, 3, 2, 1, 1, True, np.ones(out.shape))
    np.testing.assert_array_equal(max_pool2d_indices(cache), idx_t)


AVG_OPTION_CASES = [
    (3, 2, 0, True, True, None, (2, 2, 8, 7)),
    (3, 2, 1, True, True, None, (1, 2, 6, 5)),
    (3, 2, 1, True, False, None, (1, 2, 6, 5)),
    (2, 2, 1, True, True, None, (1, 1, 5, 6)),
    (2, 3, 0, True, False, None, (2, 1, 7, 8)),
    (3, 1, 1, False, True, 4, (1, 2, 5, 4)),
    (3, 2, 1, True, False, 7, (1, 2, 6, 5)),
    ((2, 3), (1, 2), (1, 1), True, True, None, (2, 1, 7, 9)),
]


@pytest.mark.parametrize("k, s, p, ceil, include, override, shape", AVG_OPTION_CASES)
def test_avg_pool_options_naive_fast_and_torch(k, s, p, ceil, include, override, shape, torch,
                                               rng):
    x = rng.standard_normal(shape)
    results = []
    for impl in IMPLS:
        out, cache = avg_pool2d_forward(x, k, s, p, ceil, include, override, impl=impl)
        dout = np.random.default_rng(1).standard_normal(out.shape)
        results.append((out, *avg_pool2d_backward(dout, cache)))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch.nn.functional.avg_pool2d(xt, k, s, p, ceil, include, override)
    out_t.backward(torch.from_numpy(dout))
    for out, dx in results:
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", range(4))
def test_pool_options_finite_differences(case, impl, rng):
    x = _distinct(rng, (1, 2, 7, 6))
    forward, backward = [
        (lambda: max_pool2d_forward(x, 3, 2, 1, 2, True, impl=impl), max_pool2d_backward),
        (lambda: max_pool2d_forward(x, (2, 3), (3, 1), 0, (2, 1), True, impl=impl),
         max_pool2d_backward),
        (lambda: avg_pool2d_forward(x, 3, 2, 1, True, False, impl=impl), avg_pool2d_backward),
        (lambda: avg_pool2d_forward(x, 2, 2, 1, True, True, 3, impl=impl), avg_pool2d_backward),
    ][case]
    out, cache = forward()
    dout = rng.standard_normal(out.shape)
    (dx,) = backward(dout, cache)
    assert rel_error(dx, numerical_gradient(lambda: forward()[0], x, dout, h=1e-6)) < 1e-8


@settings(max_examples=40, deadline=None)
@given(
    impl=st.sampled_from(IMPLS),
    h=st.integers(1, 9), w=st.integers(1, 9),
    kh=st.integers(1, 4), kw=st.integers(1, 4),
    sh=st.integers(1, 3), sw=st.integers(1, 3),
    dh=st.integers(1, 3), dw=st.integers(1, 3),
    ceil=st.booleans(), include=st.booleans(),
    override=st.sampled_from([None, 1, 5]),
    data=st.data(),
)
def test_random_pool_options_match_torch(impl, h, w, kh, kw, sh, sw, dh, dw, ceil, include,
                                         override, data, torch):
    ph = data.draw(st.integers(0, kh // 2), label="ph")
    pw = data.draw(st.integers(0, kw // 2), label="pw")
    assume(h + 2 * ph >= dh * (kh - 1) + 1 and w + 2 * pw >= dw * (kw - 1) + 1)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = _distinct(rng, (2, 2, h, w))
    k, s, p, d = (kh, kw), (sh, sw), (ph, pw), (dh, dw)
    try:
        out, cache = max_pool2d_forward(x, k, s, p, d, ceil, impl=impl)
    except ValueError as err:  # a dilated window with no input cell: PyTorch gives -inf
        assert "covers no input cell" in str(err)
        assume(False)
    dout = rng.standard_normal(out.shape)
    out_t, idx_t, dx_t = _torch_max(torch, x, k, s, p, d, ceil, dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(max_pool2d_indices(cache), idx_t)
    np.testing.assert_allclose(max_pool2d_backward(dout, cache)[0], dx_t, rtol=1e-12, atol=1e-14)
    out, cache = avg_pool2d_forward(x, k, s, p, ceil, include, override, impl=impl)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = torch.nn.functional.avg_pool2d(xt, k, s, p, ceil, include, override)
    dout = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(avg_pool2d_backward(dout, cache)[0], xt.grad.numpy(),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "size, k, s, p, d, ceil, expected",
    [(7, 3, 2, 0, 1, False, 3), (7, 3, 2, 0, 1, True, 3), (8, 3, 2, 0, 1, True, 4),
     (5, 2, 2, 1, 1, True, 3), (6, 2, 2, 1, 1, True, 4), (9, 3, 1, 1, 2, False, 7)],
)
def test_pool_output_size(size, k, s, p, d, ceil, expected):
    # (5, 2, 2, 1, ceil): ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start at
    # 3·2 = 6 ≥ 5 + 1, past the input and its left padding: 3 (PyTorch's rule)
    assert pool_output_size(size, k, s, p, d, ceil) == expected


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, dilation=0),
         r"^max_pool2d: dilation must be > 0, got \(0, 0\)"),
        (lambda: max_pool2d_forward(np.zeros((1, 1, 4, 4)), 3, dilation=2),
         r"^max_pool2d: kernel_size \(3, 3\) is larger than .*dilation \(2, 2\)"),
        (lambda: max_pool2d_forward(np.zeros((1, 1, 1, 5)), (2, 1), 1, (1, 0), (2, 1)),
         r"^max_pool2d: the window of output row 0 covers no input cell \(input shape "
         r"\(1, 1, 1, 5\), kernel_size \(2, 1\), padding \(1, 0\), dilation \(2, 1\)\)"),
        (lambda: avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, divisor_override=0),
         r"^avg_pool2d: divisor_override must be a positive int or None, got 0"),
        (lambda: avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, divisor_override=1.5),
         r"^avg_pool2d: divisor_override .*1.5"),
    ],
)
def test_option_errors_name_the_op(call, match):
    with pytest.raises(ValueError, match=match):
        call()
