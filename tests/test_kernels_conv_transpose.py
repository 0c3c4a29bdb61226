"""Transposed conv2d: naive vs fast, finite differences, PyTorch parity, random
configurations, its relation to conv2d's input gradient, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glasscnn.gradcheck import numerical_gradient, rel_error
from glasscnn.kernels import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    transposed_output_size,
)

IMPLS = ["naive", "fast"]

# (x shape, weight shape (C_in, C_out/G, kH, kW), stride, padding, output_padding, groups,
# dilation, bias): strides 1-3 (col2im; stride 1: a convolution with the flipped kernel,
# or col2im where P > D*(K-1)), output_padding (also >= stride with dilation), groups 1, 3
# and depthwise, odd and non-square sizes, batch 1, channels-last sizes
CONFIGS = [
    ((2, 4, 5, 4), (4, 3, 3, 3), 2, 1, 1, 1, 1, True),  # the usual 2x upsampling
    ((2, 4, 5, 4), (4, 3, 3, 3), 1, 1, 0, 1, 1, False),  # stride 1: flipped-kernel conv
    ((1, 6, 4, 5), (6, 2, 3, 2), 2, 0, 1, 3, 1, True),  # batch 1, three groups
    ((2, 8, 5, 5), (8, 1, 3, 3), 2, 1, 1, 8, 1, True),  # depthwise, stride 2
    ((2, 8, 5, 5), (8, 2, 3, 3), 1, 1, 0, 8, 1, False),  # depthwise, multiplier 2
    ((2, 6, 5, 4), (6, 1, 3, 3), 1, 1, 0, 6, 1, False),  # depthwise, stride 1: gathered
    ((2, 3, 4, 4), (3, 5, 2, 2), 1, 0, 1, 1, 2, True),  # output_padding 1 >= stride 1
    ((2, 3, 4, 4), (3, 5, 3, 3), 3, 2, 2, 1, 1, True),  # stride 3, output_padding 2
    ((2, 3, 6, 6), (3, 5, 3, 3), 1, 3, 0, 1, 1, False),  # P > D*(K-1): col2im
    ((3, 16, 6, 6), (16, 8, 4, 4), 2, 1, 0, 1, 1, True),  # DCGAN-like, channels-last
    ((2, 9, 5, 6), (9, 2, 3, 3), (2, 1), (1, 0), (1, 0), 3, (1, 2), True),  # pairs
    ((1, 2, 3, 7), (2, 4, 1, 1), 2, 0, 0, 1, 1, True),  # 1x1, stride 2
]
IDS = [f"x{'x'.join(map(str, c[0]))}-w{'x'.join(map(str, c[1]))}-s{c[2]}-p{c[3]}-op{c[4]}"
       f"-g{c[5]}-d{c[6]}" for c in CONFIGS]


def _inputs(rng, config, dtype=np.float64):
    x_shape, w_shape, *_, groups, _, has_bias = config
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * groups).astype(dtype) if has_bias else None
    return x, w, b


def _args(config):
    """(stride, padding, output_padding, groups, dilation) of a configuration."""
    return config[2:7]


def _torch_conv_t(torch, x, w, b, args, dout):
    """PyTorch's output and (dx, dw, db) for upstream gradient ``dout``, as NumPy arrays."""
    xt, wt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    out = torch.nn.functional.conv_transpose2d(xt, wt, bt, *args)
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


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_naive_matches_fast(config, rng):
    x, w, b = _inputs(rng, config)
    out_n, cache_n = conv_transpose2d_forward(x, w, b, *_args(config), impl="naive")
    out_f, cache_f = conv_transpose2d_forward(x, w, b, *_args(config), impl="fast")
    assert out_f.shape == out_n.shape
    np.testing.assert_allclose(out_f, out_n, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(out_n.shape)
    for need_dx in (True, False):
        grads_n = conv_transpose2d_backward(dout, cache_n, need_dx=need_dx)
        grads_f = conv_transpose2d_backward(dout, cache_f, need_dx=need_dx)
        _assert_grads_close(grads_f, grads_n, rtol=1e-10, atol=1e-10)


GRADCHECK_CONFIGS = [
    ((1, 2, 3, 4), (2, 2, 3, 2), 2, 1, 1, 1, 1, True),
    ((2, 4, 3, 3), (4, 1, 2, 3), 1, 0, 1, 2, 2, True),  # groups, output_padding via dilation
    ((1, 3, 4, 3), (3, 1, 3, 3), 2, 1, 0, 3, 1, False),  # depthwise
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_gradients_match_finite_differences(config, impl, rng):
    x, w, b = _inputs(rng, config)
    args = _args(config)
    out, cache = conv_transpose2d_forward(x, w, b, *args, impl=impl)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_transpose2d_backward(dout, cache)

    def f():
        return conv_transpose2d_forward(x, w, b, *args, impl=impl)[0]

    assert rel_error(dx, numerical_gradient(f, x, dout, h=1e-3)) < 1e-8
    assert rel_error(dw, numerical_gradient(f, w, dout, h=1e-3)) < 1e-8
    if b is not None:
        assert rel_error(db, numerical_gradient(f, b, dout, h=1e-3)) < 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_torch(config, impl, dtype, torch, rng):
    x, w, b = _inputs(rng, config, dtype)
    out, cache = conv_transpose2d_forward(x, w, b, *_args(config), impl=impl)
    dout = rng.standard_normal(out.shape).astype(dtype)
    out_t, grads_t = _torch_conv_t(torch, x, w, b, _args(config), dout)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert out.shape == out_t.shape and out.dtype == dtype
    np.testing.assert_allclose(out, out_t, rtol=tol, atol=tol)
    _assert_grads_close(conv_transpose2d_backward(dout, cache), grads_t, rtol=tol, atol=tol)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_is_conv2d_input_gradient(config, rng):
    """conv_transpose2d(g, w) is dL/dz of y = conv2d(z, w) for upstream gradient g, z of
    the transposed conv's output shape (the relation its docstring states)."""
    x, w, _ = _inputs(rng, config)
    stride, padding, output_padding, groups, dilation = _args(config)
    out, _ = conv_transpose2d_forward(x, w, None, stride, padding, output_padding, groups,
                                      dilation)
    z = rng.standard_normal(out.shape)
    y, cache = conv2d_forward(z, w, None, stride, padding, dilation, groups)
    g = np.zeros(y.shape)  # conv2d may reach rows past H where output_padding >= stride
    g[:, :, :x.shape[2], :x.shape[3]] = x
    np.testing.assert_allclose(out, conv2d_backward(g, cache)[0], rtol=1e-10, atol=1e-10)


@st.composite
def transposed_configs(draw):
    """A random valid configuration."""
    groups = draw(st.integers(1, 3))
    c_in, c_out_g = groups * draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel, stride, padding, out_pad, dilation, size = [], [], [], [], [], []
    for _ in range(2):
        k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        i = draw(st.integers(1, 5))
        span = (i - 1) * s + d * (k - 1) + 1
        p = draw(st.integers(0, min(3, (span - 1) // 2)))
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        size.append(i)
        padding.append(p)
        out_pad.append(draw(st.integers(0, max(s, d) - 1)))
    return {
        "x_shape": (draw(st.integers(1, 2)), c_in, *size), "w_shape": (c_in, c_out_g, *kernel),
        "args": (tuple(stride), tuple(padding), tuple(out_pad), groups, tuple(dilation)),
        "bias": draw(st.booleans()), "impl": draw(st.sampled_from(IMPLS)),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=30, deadline=None)
@given(cfg=transposed_configs())
def test_random_configurations_match_torch(cfg, torch):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    groups = cfg["args"][3]
    b = rng.standard_normal(cfg["w_shape"][1] * groups) if cfg["bias"] else None
    out, cache = conv_transpose2d_forward(x, w, b, *cfg["args"], impl=cfg["impl"])
    dout = rng.standard_normal(out.shape)
    out_t, grads_t = _torch_conv_t(torch, x, w, b, cfg["args"], dout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    _assert_grads_close(conv_transpose2d_backward(dout, cache), grads_t, rtol=1e-10, atol=1e-10)


def test_output_size_formula():
    assert transposed_output_size(4, 3, stride=2, padding=1, output_padding=1) == 8
    assert transposed_output_size(7, 4, stride=1, padding=0, dilation=2) == 13


@pytest.mark.parametrize("impl", IMPLS)
def test_uint8_input_is_computed_in_float32(impl, rng):
    x = rng.integers(0, 256, size=(1, 2, 3, 3)).astype(np.uint8)
    w = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    out, _ = conv_transpose2d_forward(x, w, None, 2, impl=impl)
    want, _ = conv_transpose2d_forward(x.astype(np.float32), w, None, 2, impl=impl)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)


X = np.zeros((1, 4, 3, 3))
W = np.zeros((4, 2, 3, 3))
BAD_INPUTS = [
    ("x_3d", dict(x=np.zeros((4, 3, 3))), r"\(4, 3, 3\)"),
    ("weight_3d", dict(weight=np.zeros((4, 2, 3))), r"\(4, 2, 3\)"),
    ("channels", dict(weight=np.zeros((3, 2, 3, 3))), r"4 channels.*\(3, 2, 3, 3\)"),
    ("groups", dict(groups=3), r"groups=3 must divide .*\(4\)"),
    ("bias", dict(bias=np.zeros(3)), r"bias must have shape \(2,\)"),
    ("output_padding", dict(stride=2, output_padding=2), r"output_padding \(2, 2\) .*\(2, 2\)"),
    ("stride_0", dict(stride=0), r"stride.*\(0, 0\)"),
    ("padding_neg", dict(padding=-1), r"padding.*\(-1, -1\)"),
    ("too_small", dict(padding=3), r"output size \(-1, -1\) is not positive"),
    ("impl", dict(impl="blas"), r"'blas'"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error(bad):
    _, override, echo = bad
    kwargs = dict(x=X, weight=W, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                  dilation=1, impl="fast")
    kwargs.update(override)
    with pytest.raises(ValueError, match=r"^conv_transpose2d: ") as info:
        conv_transpose2d_forward(**kwargs)
    assert re.search(echo, str(info.value)), str(info.value)


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_rejects_wrong_dout_shape(impl):
    _, cache = conv_transpose2d_forward(X, W, impl=impl)
    with pytest.raises(ValueError, match=r"^conv_transpose2d: .*\(1, 2, 5, 5\).*\(1, 2, 5, 4\)"):
        conv_transpose2d_backward(np.zeros((1, 2, 5, 4)), cache)
