"""conv2d kernels: naive vs fast, finite differences, PyTorch parity, properties, dtypes, errors."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.kernels import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from glasscnn.kernels._common import channels_last, pair
from glasscnn.kernels.conv import buffers, choice, im2col, kernel_rows

IMPLS = ["naive", "fast"]

# (x shape, weight shape, stride, padding, dilation, bias): strides 1-3, padding 0-3,
# dilation 1-2, odd and non-square inputs and kernels, batch 1, kernel equal to the input,
# and each fast path (channels-last / K-major / batch-innermost (CHWN) / kernel-rows
# forward; transposed-conv / col2im / kernel-rows dx).
CONFIGS = [
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, True),
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1, False),  # dx as a transposed convolution
    ((2, 1, 6, 6), (4, 1, 3, 3), 1, 0, 1, True),  # stride 1, many more outputs: col2im dx
    ((1, 2, 9, 6), (3, 2, 3, 2), 2, 1, 1, True),  # batch 1, non-square, stride 2
    ((2, 2, 8, 7), (3, 2, 2, 3), 3, 2, 1, True),  # stride 3, padding 2
    ((2, 3, 7, 9), (2, 3, 3, 3), 1, 1, 2, True),  # dilation 2
    ((2, 4, 5, 5), (2, 4, 3, 3), 1, 1, 2, False),  # dilation 2, transposed-conv dx
    ((1, 2, 6, 5), (3, 2, 2, 2), 1, 3, 1, False),  # padding > kernel - 1: dout border cropped
    ((2, 1, 7, 7), (2, 1, 3, 3), 3, 3, 2, True),  # stride 3, padding 3, dilation 2
    ((2, 2, 5, 6), (3, 2, 5, 6), 1, 0, 1, True),  # kernel equal to the input
    ((2, 3, 9, 8), (4, 3, 3, 2), (2, 1), (1, 0), (1, 2), True),  # per-axis pairs
    ((1, 2, 4, 3), (16, 2, 3, 3), 1, 1, 1, True),  # many filters, few positions: K-major
    ((1, 2, 5, 5), (3, 2, 1, 1), 2, 0, 1, False),  # 1x1 kernel, stride 2
    ((2, 8, 6, 5), (3, 8, 3, 2), 2, 1, 1, True),  # 8 input channels: channels-last col2im
    ((1, 8, 7, 9), (2, 8, 2, 3), (3, 2), (0, 2), 2, False),  # the same, dilated
    ((2, 8, 6, 6), (8, 8, 3, 3), 1, 1, 1, True),  # channels-last output and dx, transposed
    ((3, 3, 7, 6), (9, 3, 3, 3), 2, 1, 1, True),  # K-major im2col, channels-last output
    ((2, 10, 7, 7), (12, 10, 3, 3), 2, 0, 1, False),  # channels-last col2im dx
    ((2, 3, 5, 19), (4, 3, 3, 3), 1, 1, 1, True),  # few channels, wide: K-major, not CHWN
    ((3, 2, 6, 20), (9, 2, 3, 3), 1, 0, 1, False),  # the same, channels-last output
    ((3, 8, 7, 9), (9, 8, 3, 2), 1, (1, 0), (2, 1), True),  # kernel rows, dilated rows
    ((2, 9, 9, 8), (10, 9, 2, 3), 1, 0, 1, False),  # kernel rows, two rows, no padding
    ((2, 8, 7, 7), (8, 8, 5, 5), 1, 2, 1, True),  # kernel rows, 5x5
    ((2, 8, 6, 6), (8, 8, 2, 2), 1, 2, 1, True),  # kernel rows forward, dout border cropped
    ((1, 8, 7, 6), (8, 8, 3, 3), 1, 1, 1, True),  # batch 1: K-major forward, rows backward
    ((2, 3, 7, 9), (8, 3, 3, 3), 1, 1, 1, True),  # few input channels: rows forward, dW
    ((1, 3, 8, 11), (5, 3, 3, 2), (1, 2), 1, (2, 1), True),  # batch 1: two-copy K-major
    ((2, 4, 9, 7), (48, 4, 2, 3), 1, (0, 1), (1, 2), False),  # the same, few positions
]
IDS = [
    f"x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}-s{s}-p{p}-d{d}-{'b' if b else 'nob'}"
    for xs, ws, s, p, d, b in CONFIGS
]


def _inputs(rng, config, dtype=np.float64):
    """Random x, weight, bias (or None) for a configuration."""
    x_shape, w_shape, _, _, _, has_bias = config
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if has_bias else None
    return x, w, b


def _torch_conv(torch, x, w, b, stride, padding, dilation, dout):
    """PyTorch's output and (dx, dw, db) for upstream gradient ``dout``, as NumPy arrays."""
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    out = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation)
    out.backward(torch.from_numpy(dout))
    db = None if bt is None else bt.grad.numpy()
    return out.detach().numpy(), (xt.grad.numpy(), wt.grad.numpy(), db)


def _assert_grads_close(ours, ref, rtol, atol):
    for got, want in zip(ours, ref, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# the fast paths' switches: as set; CHWN_MAX_WIDTH 0, every layer with few input channels
# on the K-major NCHW path; huge, every such layer batch-innermost; ROW_GEMMS off, every
# kernel-rows layer on im2col
PATHS = {
    "default": {},
    "no-chwn": {"CHWN_MAX_WIDTH": 0},
    "all-chwn": {"CHWN_MAX_WIDTH": 10**6},
    "no-rows": {"ROW_GEMMS": False},
}


def _set_path(monkeypatch, path):
    for name, value in PATHS[path].items():
        monkeypatch.setattr(choice, name, value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_naive_matches_fast(config, path, monkeypatch, rng):
    _set_path(monkeypatch, path)
    x, w, b = _inputs(rng, config)
    _, _, stride, padding, dilation, _ = config
    out_n, cache_n = conv2d_forward(x, w, b, stride, padding, dilation, impl="naive")
    out_f, cache_f = conv2d_forward(x, w, b, stride, padding, dilation, impl="fast")
    np.testing.assert_allclose(out_f, out_n, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(out_n.shape)
    grads_n = conv2d_backward(dout, cache_n)
    grads_f = conv2d_backward(dout, cache_f)
    _assert_grads_close(grads_f, grads_n, rtol=1e-10, atol=1e-10)


GRADCHECK_CONFIGS = [
    ((2, 2, 5, 4), (3, 2, 3, 2), 1, 1, 1, True),
    ((1, 2, 6, 5), (2, 2, 2, 3), 2, 2, 1, True),
    ((2, 1, 6, 6), (2, 1, 2, 2), 1, 1, 2, True),
    ((1, 2, 7, 5), (2, 2, 3, 2), 3, 0, 2, True),
]


# (forward, backward, step, bar): conv is linear in each argument, so a large step adds no
# truncation error and less rounding; with the ReLU, a step small enough not to cross its
# kink at any pre-activation of the seeded data
GRADCHECK_OPS = [
    pytest.param(conv2d_forward, conv2d_backward, 1e-3, 1e-8, id="conv2d"),
    pytest.param(conv2d_relu_forward, conv2d_relu_backward, 1e-6, 1e-6, id="conv2d_relu"),
]


@pytest.mark.parametrize(("forward", "backward", "h", "bar"), GRADCHECK_OPS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_gradients_match_finite_differences(config, impl, forward, backward, h, bar, rng):
    x, w, b = _inputs(rng, config)
    _, _, stride, padding, dilation, _ = config
    out, cache = forward(x, w, b, stride, padding, dilation, impl=impl)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)

    def f():
        return forward(x, w, b, stride, padding, dilation, impl=impl)[0]

    assert rel_error(dx, numerical_gradient(f, x, dout, h=h)) < bar
    assert rel_error(dw, numerical_gradient(f, w, dout, h=h)) < bar
    assert rel_error(db, numerical_gradient(f, b, dout, h=h)) < bar


@pytest.mark.parametrize(("forward", "backward", "h", "bar"), GRADCHECK_OPS)
def test_kernel_rows_gradients_match_finite_differences(forward, backward, h, bar, rng):
    """The kernel-rows path (fast only: the naive loop nest is too slow at its sizes)."""
    config = ((2, 8, 7, 7), (8, 8, 2, 3), 1, (0, 1), 1, True)  # 6×7 outputs
    assert choice.rows_apply(config[1], (1, 1), (6, 7))
    test_gradients_match_finite_differences(config, "fast", forward, backward, h, bar, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_torch(config, impl, dtype, torch, rng):
    x, w, b = _inputs(rng, config, dtype)
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    out_t, grads_t = _torch_conv(torch, x, w, b, stride, padding, dilation, dout)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, out_t, rtol=tol, atol=tol)
    _assert_grads_close(conv2d_backward(dout, cache), grads_t, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", IMPLS)
def test_seed_facts_3_conv_3_to_6(impl, torch, rng):
    """seed-facts §3: conv 3→6, k 3, s 1, p 0, bias; float64 mean squared difference ~1e-15."""
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((6, 3, 3, 3))
    b = rng.standard_normal(6)
    out, cache = conv2d_forward(x, w, b, impl=impl)
    assert out.shape == (2, 6, 6, 6)
    dout = rng.standard_normal(out.shape)
    out_t, grads_t = _torch_conv(torch, x, w, b, 1, 0, 1, dout)
    assert np.mean((out - out_t) ** 2) < 1e-15
    for got, want in zip(conv2d_backward(dout, cache), grads_t, strict=True):
        assert np.mean((got - want) ** 2) < 1e-15


@st.composite
def conv_configs(draw):
    """A random valid configuration: sizes, kernel, stride, padding, dilation, bias, impl."""
    n, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    c_in = draw(st.sampled_from([1, 2, 3, 8]))
    kernel, stride, padding, dilation, size = [], [], [], [], []
    for _ in range(2):
        k, d, p = draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(0, 3))
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        size.append(draw(st.integers(smallest, smallest + 6)))
        kernel.append(k)
        stride.append(draw(st.integers(1, 3)))
        padding.append(p)
        dilation.append(d)
    return {
        "x_shape": (n, c_in, *size), "w_shape": (c_out, c_in, *kernel),
        "stride": tuple(stride), "padding": tuple(padding), "dilation": tuple(dilation),
        "bias": draw(st.booleans()), "impl": draw(st.sampled_from(IMPLS)),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=30, deadline=None)
@given(cfg=conv_configs())
def test_random_configurations_match_torch(cfg, torch):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][0]) if cfg["bias"] else None
    args = (cfg["stride"], cfg["padding"], cfg["dilation"])
    out, cache = conv2d_forward(x, w, b, *args, impl=cfg["impl"])
    dout = rng.standard_normal(out.shape)
    out_t, grads_t = _torch_conv(torch, x, w, b, *args, dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    _assert_grads_close(conv2d_backward(dout, cache), grads_t, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
def test_dtype_preserved(impl, dtype, rng):
    x, w, b = _inputs(rng, CONFIGS[3], dtype)
    out, cache = conv2d_forward(x, w, b, 2, 1, impl=impl)
    assert out.dtype == dtype
    dx, dw, db = conv2d_backward(rng.standard_normal(out.shape).astype(dtype), cache)
    assert dx.dtype == dw.dtype == db.dtype == dtype


def test_default_dtype_is_float32_end_to_end(rng):
    x = rng.standard_normal((2, 3, 6, 6), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    out, cache = conv2d_forward(x, w)
    dx, dw, db = conv2d_backward(rng.standard_normal(out.shape, dtype=np.float32), cache)
    assert (out.dtype, dx.dtype, dw.dtype, db) == (np.float32, np.float32, np.float32, None)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_])
@pytest.mark.parametrize(("forward", "backward"), [(conv2d_forward, conv2d_backward),
                                                   (conv2d_relu_forward, conv2d_relu_backward)])
@pytest.mark.parametrize("impl", IMPLS)
def test_non_float_input_is_computed_in_float32(impl, forward, backward, dtype, rng):
    """Integer and bool images are converted to float32 (as every kernel does), never the
    float weights cast to the input's integer dtype."""
    x = rng.integers(0, 2 if dtype == np.bool_ else 256, size=(2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out, cache = forward(x, w, b, 1, 1, impl=impl)
    want, cache_f = forward(x.astype(np.float32), w, b, 1, 1, impl=impl)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-4)
    assert np.abs(out).max() > 1  # not the zeros of a uint8 cast of the weights
    dout = rng.standard_normal(out.shape).astype(np.float32)
    _assert_grads_close(backward(dout, cache), backward(dout, cache_f), rtol=1e-6, atol=1e-4)


def test_no_bias_gives_none(rng):
    x, w, _ = _inputs(rng, CONFIGS[0])
    out, cache = conv2d_forward(x, w, None)
    assert conv2d_backward(rng.standard_normal(out.shape), cache)[2] is None


@pytest.mark.parametrize("path", ["default", "no-chwn"])
@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3], CONFIGS[20]],
                         ids=["transposed", "col2im", "rows"])
def test_batch_chunks_give_the_same_result(config, path, monkeypatch, rng):
    _set_path(monkeypatch, path)
    x, w, b = _inputs(rng, config)
    x = np.concatenate([x] * 3)  # an odd number of images: the last chunk is smaller
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation)
    dout = rng.standard_normal(out.shape)
    grads = conv2d_backward(dout, cache)
    monkeypatch.setattr(buffers, "CHUNK_BYTES", 1)  # one image per chunk
    out_c, cache_c = conv2d_forward(x, w, b, stride, padding, dilation)
    np.testing.assert_allclose(out_c, out, rtol=1e-12, atol=1e-12)
    _assert_grads_close(conv2d_backward(dout, cache_c), grads, rtol=1e-12, atol=1e-12)


# the kernel-rows configurations of CONFIGS and the paths they take: (forward, backward
# with dx, backward without dx)
ROWS_PATHS = [(CONFIGS[20], (True, True, True)), (CONFIGS[21], (True, True, True)),
              (CONFIGS[22], (True, True, True)), (CONFIGS[23], (True, False, False)),
              (CONFIGS[24], (False, True, True)), (CONFIGS[25], (True, False, True))]


@pytest.mark.parametrize(("config", "expected"), ROWS_PATHS, ids=IDS[20:26])
def test_kernel_rows_layers_take_that_path(config, expected, monkeypatch, rng):
    calls = []

    def spy(name):
        kernel = getattr(kernel_rows, name)

        def run(*args, **kwargs):
            calls.append(name)
            return kernel(*args, **kwargs)
        return run

    for name in ("forward", "backward"):
        monkeypatch.setattr(kernel_rows, name, spy(name))
    x, w, b = _inputs(rng, config)
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_relu_forward(x, w, b, stride, padding, dilation)
    taken = ["forward" in calls]
    for need_dx in (True, False):
        calls.clear()
        conv2d_relu_backward(rng.standard_normal(out.shape), cache, need_dx=need_dx)
        taken.append("backward" in calls)
    assert tuple(taken) == expected


@pytest.mark.parametrize(("weight_shape", "stride", "out_hw", "need_dx", "rows"), [
    ((16, 16, 3, 3), (1, 1), (32, 32), True, True),  # vgg's 16→16
    ((64, 32, 3, 3), (1, 1), (8, 8), True, True),
    ((64, 64, 3, 3), (1, 1), (6, 6), True, True),  # ROW_MIN_POSITIONS
    ((128, 128, 3, 3), (1, 1), (4, 4), False, False),  # too few positions
    ((96, 64, 3, 3), (1, 1), (16, 16), False, False),  # over ROW_MAX_CHANNELS
    ((64, 96, 3, 3), (1, 1), (16, 16), False, False),
    ((16, 3, 3, 3), (1, 1), (32, 32), False, True),  # a first layer: forward, dW
    ((16, 3, 3, 3), (1, 1), (32, 32), True, False),  # dx of few channels: other paths
    ((6, 3, 5, 5), (1, 1), (28, 28), False, True),  # lenet's conv1: 6 channels-last outputs
    ((4, 1, 5, 5), (1, 1), (28, 28), False, False),  # fewer output channels: NCHW
    ((16, 16, 3, 3), (2, 2), (16, 16), True, False),  # stride 2
    ((16, 16, 1, 3), (1, 1), (32, 32), True, False),  # one kernel row
])
def test_rows_apply_to_small_stride_one_layers(weight_shape, stride, out_hw, need_dx, rows):
    assert choice.rows_apply(weight_shape, stride, out_hw, need_dx) == rows


@pytest.mark.parametrize(("x_shape", "kernel", "stride_w", "dilation"), [
    ((1, 5, 9, 8), (3, 3), 1, (1, 1)),
    ((3, 2, 10, 12), (2, 3), 2, (1, 1)),
    ((2, 3, 11, 9), (3, 2), 1, (2, 3)),
    ((1, 4, 7, 16), (5, 1), 3, (1, 1)),
])
def test_k_major_im2col_in_two_copies_equals_one_copy(x_shape, kernel, stride_w, dilation,
                                                      rng):
    x_pad = rng.standard_normal(x_shape)
    n, c, h, w = x_shape
    out_hw = (h - dilation[0] * (kernel[0] - 1),
              (w - dilation[1] * (kernel[1] - 1) - 1) // stride_w + 1)
    s_n, s_c, s_h, s_w = x_pad.strides
    windows = np.lib.stride_tricks.as_strided(  # (C, kH, kW, N, H_out, W_out)
        x_pad, (c, *kernel, n, *out_hw),
        (s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, s_h, stride_w * s_w))
    expected = windows.reshape(c * kernel[0] * kernel[1], -1)
    buf = np.empty(expected.size)
    got = im2col._k_major_two_copies(x_pad, kernel, stride_w, dilation, out_hw, buf)
    np.testing.assert_array_equal(got, expected)


def test_chunks_bound_the_buffer_and_cover_the_batch():
    per_image = 32 * 32 * 144 * 4  # VGG-ish 16-channel layer, float32
    chunks = buffers.batch_chunks(1024, per_image)
    assert chunks[0].start == 0 and chunks[-1].stop == 1024
    assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))
    assert max(c.stop - c.start for c in chunks) * per_image <= buffers.CHUNK_BYTES


@pytest.mark.parametrize(("n", "min_images"), [(64, 15), (128, 1), (7, 1), (3, 2), (128, 3)])
def test_chunk_count_is_a_multiple_of_the_threads(n, min_images):
    chunks = buffers.batch_chunks(n, 36 * 2304 * 4, parts=2, min_images=min_images)
    assert chunks[0].start == 0 and chunks[-1].stop == n
    assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))
    assert len(chunks) % 2 == 0 or len(chunks) == n
    sizes = [c.stop - c.start for c in chunks]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1


def _nhwc_only(a):
    """Stored channels-last and not also NCHW-contiguous (as with one channel)."""
    return channels_last(a) and not a.flags.c_contiguous


def _channels_last_copy(a):
    """The same values as ``a`` (N, C, H, W), stored NHWC."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_fast_layouts_and_any_dout_layout(config, rng):
    """The fast kernels return channels-last arrays from 8 channels on (output: C_out, dx:
    C_in; batch > 1), and their backward gives the same gradients for either dout layout."""
    x, w, b = _inputs(rng, config)
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation)
    k_major = x.shape[0] == 1 or x.shape[0] * out[0, 0].size <= 2 * w.shape[0]  # NCHW output
    rows = choice.rows_apply(w.shape, pair(stride, "stride", "test"),
                                   out.shape[2:])  # channels-last output
    chwn = x.shape[1] < 8 and out.shape[3] <= choice.CHWN_MAX_WIDTH and not rows
    assert _nhwc_only(out) == (not k_major and (rows or (w.shape[0] >= 8 and not chwn)))
    dout = rng.standard_normal(out.shape)
    grads = conv2d_backward(np.ascontiguousarray(dout), cache)
    assert _nhwc_only(grads[0]) == (x.shape[1] >= 8)
    _assert_grads_close(conv2d_backward(_channels_last_copy(dout), cache), grads,
                        rtol=1e-12, atol=1e-12)
    out_cl, cache_cl = conv2d_forward(_channels_last_copy(x), w, b, stride, padding, dilation)
    np.testing.assert_allclose(out_cl, out, rtol=1e-12, atol=1e-12)
    _assert_grads_close(conv2d_backward(dout, cache_cl), grads, rtol=1e-12, atol=1e-12)


def _relu_reference(x, w, b, stride, padding, dilation, dout):
    """relu(conv(x)) and its gradients, from the naive conv kernels and an explicit mask."""
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, impl="naive")
    return np.maximum(out, 0), conv2d_backward(dout * (out > 0), cache)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_conv_relu_matches_conv_then_relu(config, impl, rng):
    x, w, b = _inputs(rng, config)
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_relu_forward(x, w, b, stride, padding, dilation, impl=impl)
    dout = rng.standard_normal(out.shape)
    out_ref, grads_ref = _relu_reference(x, w, b, stride, padding, dilation, dout)
    np.testing.assert_allclose(out, out_ref, rtol=1e-10, atol=1e-10)
    assert (out >= 0).all()
    _assert_grads_close(conv2d_relu_backward(dout, cache), grads_ref, rtol=1e-10, atol=1e-10)
    if impl == "fast":  # dout in the other layout, and no input gradient
        dx, dw, db = conv2d_relu_backward(_channels_last_copy(dout), cache, need_dx=False)
        assert dx is None
        _assert_grads_close((dw, db), grads_ref[1:], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", CONFIGS[::2], ids=IDS[::2])
def test_conv_relu_matches_torch(config, impl, dtype, torch, rng):
    x, w, b = _inputs(rng, config, dtype)
    _, _, stride, padding, dilation, _ = config
    out, cache = conv2d_relu_forward(x, w, b, stride, padding, dilation, impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    out_t = torch.relu(torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation))
    out_t.backward(torch.from_numpy(dout))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=tol, atol=tol)
    grads_t = (xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())
    _assert_grads_close(conv2d_relu_backward(dout, cache), grads_t, rtol=tol, atol=tol)


def test_conv_relu_backward_needs_its_own_cache(rng):
    x, w, b = _inputs(rng, CONFIGS[0])
    out, cache = conv2d_forward(x, w, b)
    with pytest.raises(ValueError, match="conv2d_relu_backward: the cache is not from"):
        conv2d_relu_backward(np.ones_like(out), cache)


def test_non_contiguous_input(torch, rng):
    x = rng.standard_normal((7, 7, 3, 2)).transpose(3, 2, 0, 1)  # (2, 3, 7, 7), a view
    w = rng.standard_normal((4, 3, 3, 3))
    out, cache = conv2d_forward(x, w, None, 1, 1)
    dout = rng.standard_normal(out.shape)
    out_t, grads_t = _torch_conv(torch, x, w, None, 1, 1, 1, dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    _assert_grads_close(conv2d_backward(dout, cache), grads_t, rtol=1e-10, atol=1e-10)


X = np.zeros((1, 2, 5, 5))
W = np.zeros((3, 2, 3, 3))
BAD_INPUTS = [
    ("x_3d", dict(x=np.zeros((2, 5, 5))), r"\(2, 5, 5\)"),
    ("x_5d", dict(x=np.zeros((1, 1, 2, 5, 5))), r"\(1, 1, 2, 5, 5\)"),
    ("weight_3d", dict(weight=np.zeros((3, 2, 3))), r"\(3, 2, 3\)"),
    ("channels", dict(weight=np.zeros((3, 4, 3, 3))), r"2 channels.*\(3, 4, 3, 3\)"),
    ("bias_len", dict(bias=np.zeros(4)), r"\(4,\)"),
    ("bias_2d", dict(bias=np.zeros((3, 1))), r"\(3, 1\)"),
    ("stride_0", dict(stride=0), r"stride.*\(0, 0\)"),
    ("stride_neg", dict(stride=(1, -2)), r"stride.*\(1, -2\)"),
    ("stride_float", dict(stride=1.5), r"stride.*1\.5"),
    ("dilation_0", dict(dilation=0), r"dilation.*\(0, 0\)"),
    ("padding_neg", dict(padding=-1), r"padding.*\(-1, -1\)"),
    ("padding_pair_neg", dict(padding=(0, -3)), r"padding.*\(0, -3\)"),
    ("kernel_too_big", dict(weight=np.zeros((3, 2, 6, 3))), r"spans 6 > padded input size 5"),
    ("dilated_too_big", dict(dilation=3), r"spans 7 > padded input size 5"),
    ("kernel_zero", dict(weight=np.zeros((3, 2, 0, 3))), r"\(3, 2, 0, 3\)"),
    ("impl", dict(impl="blas"), r"'blas'"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error(bad):
    _, override, echo = bad
    kwargs = dict(x=X, weight=W, bias=np.zeros(3), stride=1, padding=0, dilation=1, impl="fast")
    kwargs.update(override)
    with pytest.raises(ValueError, match=r"^conv2d: ") as info:
        conv2d_forward(**kwargs)
    assert re.search(echo, str(info.value)), str(info.value)


def test_padding_makes_a_big_kernel_fit():
    out, _ = conv2d_forward(X, np.zeros((3, 2, 7, 7)), padding=1)
    assert out.shape == (1, 3, 1, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_rejects_wrong_dout_shape(impl):
    _, cache = conv2d_forward(X, W, impl=impl)
    with pytest.raises(ValueError, match=r"^conv2d: .*\(1, 3, 3, 3\).*\(1, 3, 3, 4\)"):
        conv2d_backward(np.zeros((1, 3, 3, 4)), cache)


@pytest.mark.parametrize("layout", ["nchw", "channels-last", "strided"])
@pytest.mark.parametrize(("n", "bias", "relu"), [(1, True, False), (3, False, True),
                                                (2, True, True)])
def test_pointwise_layers_take_one_gemm_and_match_naive(layout, n, bias, relu, monkeypatch,
                                                        rng):
    """1×1 stride-1 unpadded layers (MobileNet's expansions and projections) run as one
    GEMM on the input where it lies: NCHW, channels-last (a depthwise layer's output), or
    neither (copied first)."""
    from glasscnn.kernels.conv import pointwise

    x = rng.standard_normal((n, 6, 5, 7))
    if layout == "channels-last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "strided":
        x = rng.standard_normal((n, 6, 5, 14))[..., ::2]
    w = rng.standard_normal((4, 6, 1, 1))
    b = rng.standard_normal(4) if bias else None
    calls, real = [], pointwise.forward
    monkeypatch.setattr(pointwise, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    forward = conv2d_relu_forward if relu else conv2d_forward
    got, cache = forward(x, w, b, impl="fast")
    want, _ = forward(x, w, b, impl="naive")
    assert calls
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(got.shape)
    backward = conv2d_relu_backward if relu else conv2d_backward
    fast = backward(dout, cache)
    naive = backward(dout, forward(x, w, b, impl="naive")[1])
    for g_fast, g_naive in zip(fast, naive, strict=True):
        if g_naive is not None:
            np.testing.assert_allclose(g_fast, g_naive, rtol=1e-10, atol=1e-10)

