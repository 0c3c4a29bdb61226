"""Grouped and depthwise conv2d and "same"/"valid" padding: naive vs fast, finite
differences, PyTorch parity, random configurations, the depthwise path, bad input."""

from __future__ import annotations

import re
import warnings

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
from glasscnn.kernels.conv import buffers, depthwise

IMPLS = ["naive", "fast"]

# (x shape, weight shape, stride, padding, dilation, groups, bias): groups 1, 2, a few and
# C_in (depthwise, channel multiplier 1 and 2), strides 1-3, "same" with odd and even
# kernels and dilation, "valid", odd and non-square sizes, batch 1
CONFIGS = [
    ((2, 4, 7, 6), (4, 1, 3, 3), 1, 1, 1, 4, True),  # depthwise
    ((2, 4, 7, 6), (8, 1, 3, 3), 1, 1, 1, 4, False),  # depthwise, multiplier 2
    ((1, 3, 8, 5), (3, 1, 3, 2), 2, (1, 0), 1, 3, True),  # depthwise, batch 1, stride 2
    ((2, 16, 9, 9), (16, 1, 5, 5), 2, 2, 1, 16, True),  # depthwise 5x5, channels-last
    ((2, 9, 8, 9), (9, 1, 4, 4), 1, "same", 2, 9, False),  # depthwise, even kernel, dilated
    ((3, 8, 7, 7), (8, 1, 3, 3), (3, 2), 0, (2, 1), 8, True),  # depthwise, pairs
    ((2, 3, 5, 6), (3, 1, 2, 2), 1, 2, 1, 3, True),  # depthwise, P > D*(K-1): dx scattered
    ((2, 6, 7, 6), (4, 3, 3, 2), 2, 1, 1, 2, True),  # two groups
    ((1, 6, 8, 9), (6, 2, 2, 2), 1, "same", 1, 3, False),  # three groups, even kernel
    ((3, 12, 10, 10), (24, 3, 3, 3), 1, 0, 1, 4, True),  # four groups, channels-last output
    ((2, 8, 6, 7), (16, 4, 3, 3), 1, 1, 1, 2, True),  # two groups of 8 outputs
    ((2, 3, 5, 6), (6, 3, 2, 3), 1, "same", 1, 1, True),  # groups 1, "same", even kH
    ((2, 3, 7, 5), (4, 3, 4, 2), 1, "same", (1, 2), 1, False),  # "same", even kernel dilated
    ((1, 2, 6, 7), (5, 2, 3, 3), 1, "same", 1, 1, True),  # "same", odd kernel: symmetric
    ((2, 3, 5, 5), (6, 3, 2, 2), 1, "valid", 1, 1, True),  # "valid"
    ((2, 4, 6, 5), (4, 2, 3, 3), 3, "valid", 1, 2, True),  # "valid", two groups, stride 3
]
IDS = [f"x{'x'.join(map(str, c[0]))}-w{'x'.join(map(str, c[1]))}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}"
       for c in CONFIGS]


def _inputs(rng, config, dtype=np.float64):
    x_shape, w_shape, *_, has_bias = config
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if has_bias else None
    return x, w, b


def _args(config):
    """(stride, padding, dilation, groups) of a configuration."""
    return config[2:6]


def _torch_conv(torch, x, w, b, stride, padding, dilation, groups, dout, relu=False):
    """PyTorch's output and (dx, dw, db) for upstream gradient ``dout``, as NumPy arrays."""
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    with warnings.catch_warnings():  # "same" with an even kernel: a padded copy, it warns
        warnings.simplefilter("ignore", UserWarning)
        out = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    if relu:
        out = torch.relu(out)
    out.backward(torch.from_numpy(dout))
    db = None if bt is None else bt.grad.numpy()
    return out.detach().numpy(), (xt.grad.numpy(), wt.grad.numpy(), db)


def _assert_grads_close(ours, ref, rtol, atol):
    for got, want in zip(ours, ref, strict=True):
        if want is None:
            assert got is None
        else:
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("forward", "backward"), [(conv2d_forward, conv2d_backward),
                                                   (conv2d_relu_forward, conv2d_relu_backward)],
                         ids=["conv2d", "conv2d_relu"])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_naive_matches_fast(config, forward, backward, rng):
    x, w, b = _inputs(rng, config)
    out_n, cache_n = forward(x, w, b, *_args(config), impl="naive")
    out_f, cache_f = forward(x, w, b, *_args(config), impl="fast")
    np.testing.assert_allclose(out_f, out_n, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(out_n.shape)
    for need_dx in (True, False):
        grads_n = backward(dout, cache_n, need_dx=need_dx)
        grads_f = backward(dout, cache_f, need_dx=need_dx)
        _assert_grads_close(grads_f, grads_n, rtol=1e-10, atol=1e-10)
        assert (grads_f[0] is None) == (not need_dx)


# small enough for finite differences through the loop nest
GRADCHECK_CONFIGS = [
    ((1, 2, 5, 4), (4, 1, 3, 2), 1, 1, 1, 2, True),  # depthwise, multiplier 2
    ((1, 3, 5, 5), (3, 1, 2, 2), 1, "same", 2, 3, True),  # depthwise, even kernel, dilated
    ((2, 4, 5, 4), (2, 2, 3, 2), 2, 1, 1, 2, True),  # two groups, stride 2
    ((1, 2, 4, 5), (2, 2, 4, 3), 1, "same", 1, 1, False),  # "same", even kH
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_gradients_match_finite_differences(config, impl, rng):
    x, w, b = _inputs(rng, config)
    args = _args(config)
    out, cache = conv2d_forward(x, w, b, *args, impl=impl)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    def f():
        return conv2d_forward(x, w, b, *args, impl=impl)[0]

    assert rel_error(dx, numerical_gradient(f, x, dout, h=1e-3)) < 1e-8
    assert rel_error(dw, numerical_gradient(f, w, dout, h=1e-3)) < 1e-8
    if b is not None:
        assert rel_error(db, numerical_gradient(f, b, dout, h=1e-3)) < 1e-8


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_torch(config, impl, dtype, relu, torch, rng):
    x, w, b = _inputs(rng, config, dtype)
    forward, backward = ((conv2d_relu_forward, conv2d_relu_backward) if relu
                         else (conv2d_forward, conv2d_backward))
    out, cache = forward(x, w, b, *_args(config), impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    out_t, grads_t = _torch_conv(torch, x, w, b, *_args(config), dout, relu)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert out.shape == out_t.shape and out.dtype == dtype
    np.testing.assert_allclose(out, out_t, rtol=tol, atol=tol)
    _assert_grads_close(backward(dout, cache), grads_t, rtol=tol, atol=tol)


@st.composite
def grouped_configs(draw):
    """A random valid grouped configuration, "same" padding included."""
    groups = draw(st.integers(1, 4))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    same = draw(st.booleans())
    kernel, stride, padding, dilation, size = [], [], [], [], []
    for _ in range(2):
        k, d = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        p = 0 if same else draw(st.integers(0, 2))
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        size.append(draw(st.integers(smallest, smallest + 5)))
        kernel.append(k)
        stride.append(1 if same else draw(st.integers(1, 3)))
        padding.append(p)
        dilation.append(d)
    return {
        "x_shape": (n, c_in, *size), "w_shape": (c_out, c_in // groups, *kernel),
        "args": (tuple(stride), "same" if same else tuple(padding), tuple(dilation), groups),
        "bias": draw(st.booleans()), "impl": draw(st.sampled_from(IMPLS)),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=30, deadline=None)
@given(cfg=grouped_configs())
def test_random_configurations_match_torch(cfg, torch):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][0]) if cfg["bias"] else None
    out, cache = conv2d_forward(x, w, b, *cfg["args"], impl=cfg["impl"])
    dout = rng.standard_normal(out.shape)
    out_t, grads_t = _torch_conv(torch, x, w, b, *cfg["args"], dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    _assert_grads_close(conv2d_backward(dout, cache), grads_t, rtol=1e-10, atol=1e-10)


def test_same_padding_keeps_the_size_and_pads_even_kernels_bottom_right():
    """An even kernel's odd padding row/column goes to the bottom/right (as PyTorch)."""
    x = np.zeros((1, 1, 4, 5))
    x[0, 0, 0, 0] = 1.0  # top-left pixel
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 0] = 1.0  # top-left tap: out[i, j] = x[i, j] with zero rows below/right
    for impl in IMPLS:
        out, _ = conv2d_forward(x, w, padding="same", impl=impl)
        assert out.shape == x.shape
        np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[1], CONFIGS[3]],
                         ids=[IDS[0], IDS[1], IDS[3]])
def test_depthwise_layers_take_the_depthwise_path(config, monkeypatch, rng):
    calls = []
    for name in ("forward", "backward"):
        real = getattr(depthwise, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(depthwise, name, spy)
    x, w, b = _inputs(rng, config)
    out, cache = conv2d_forward(x, w, b, *_args(config))
    conv2d_backward(rng.standard_normal(out.shape), cache)
    assert calls == ["forward", "backward"]


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[1], CONFIGS[5], CONFIGS[6], CONFIGS[9]],
                         ids=[IDS[0], IDS[1], IDS[5], IDS[6], IDS[9]])
def test_chunks_blocks_and_threads_give_the_same_result(config, monkeypatch, rng):
    """One image per chunk, one row per block and both threads: bitwise the defaults'."""
    x, w, b = _inputs(rng, config)
    out, cache = conv2d_relu_forward(x, w, b, *_args(config))
    dout = rng.standard_normal(out.shape)
    grads = conv2d_relu_backward(dout, cache)
    monkeypatch.setattr(buffers, "CHUNK_BYTES", 1)
    monkeypatch.setattr(buffers, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(depthwise, "BLOCK_BYTES", 1)
    out_s, cache_s = conv2d_relu_forward(x, w, b, *_args(config))
    np.testing.assert_allclose(out_s, out, rtol=1e-13, atol=1e-13)
    _assert_grads_close(conv2d_relu_backward(dout, cache_s), grads, rtol=1e-12, atol=1e-12)


def test_any_dout_layout(rng):
    x, w, b = _inputs(rng, CONFIGS[3])
    out, cache = conv2d_forward(x, w, b, *_args(CONFIGS[3]))
    dout = rng.standard_normal(out.shape)
    cl = np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    _assert_grads_close(conv2d_backward(cl, cache), conv2d_backward(dout, cache),
                        rtol=1e-13, atol=1e-13)


def test_float32_stays_float32(rng):
    x, w, b = _inputs(rng, CONFIGS[0], np.float32)
    out, cache = conv2d_forward(x, w, b, *_args(CONFIGS[0]))
    grads = conv2d_backward(rng.standard_normal(out.shape).astype(np.float32), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


X = np.zeros((1, 6, 5, 5))
BAD_INPUTS = [
    ("c_in_not_divisible", dict(weight=np.zeros((4, 1, 3, 3)), groups=4), r"groups=4.*\(6\)"),
    ("c_out_not_divisible", dict(weight=np.zeros((3, 3, 3, 3)), groups=2), r"groups=2.*\(3\)"),
    ("weight_channels", dict(weight=np.zeros((6, 2, 3, 3)), groups=2),
     r"6 channels.*\(6, 2, 3, 3\).*groups=2 expects 4"),
    ("groups_zero", dict(groups=0), r"groups must be a positive int, got 0"),
    ("groups_float", dict(groups=1.5), r"groups must be a positive int, got 1\.5"),
    ("groups_bool", dict(groups=True), r"groups must be a positive int, got True"),
    ("same_strided", dict(padding="same", stride=2), r"'same' needs stride 1.*\(2, 2\)"),
    ("padding_word", dict(padding="full"), r"'full'"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("forward", [conv2d_forward, conv2d_relu_forward])
def test_bad_input_raises_value_error(bad, forward):
    _, override, echo = bad
    kwargs = dict(x=X, weight=np.zeros((6, 6, 3, 3)), bias=None, stride=1, padding=0,
                  dilation=1, groups=1, impl="fast")
    kwargs.update(override)
    with pytest.raises(ValueError, match=r"^conv2d: ") as info:
        forward(**kwargs)
    assert re.search(echo, str(info.value)), str(info.value)
