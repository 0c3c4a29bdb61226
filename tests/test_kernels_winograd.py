"""Winograd F(2×2, r×r) conv forward and backward: transforms, naive vs fast, PyTorch
parity, when it applies, how "auto" chooses."""

from __future__ import annotations

import time

import numpy as np
import pytest
from grads_helper import assert_grads_match

from glasscnn.kernels import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from glasscnn.kernels._common import channels_last
from glasscnn.kernels.conv import winograd as _winograd

# (x shape, weight shape, padding, bias): 3×3 and 5×5, padding 0-2 and per-axis pairs, odd
# and non-square outputs (a last tile half outside), one channel; batch 1 (which the conv
# kernel sends to its K-major path) in test_batch_of_one
CONFIGS = [
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, True),
    ((2, 2, 7, 5), (3, 2, 3, 3), 0, False),  # odd non-square output 5×3
    ((3, 4, 9, 8), (5, 4, 3, 3), (2, 1), True),  # per-axis padding, odd rows
    ((2, 1, 5, 5), (1, 1, 3, 3), 2, False),  # one channel, padding 2
    ((2, 3, 13, 13), (4, 3, 5, 5), 2, True),  # alexnet conv2's geometry
    ((2, 2, 8, 11), (3, 2, 5, 5), (0, 2), False),  # odd non-square output 4×11
    ((2, 5, 6, 7), (2, 5, 5, 5), 1, True),
]
IDS = [f"x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}-p{p}" for xs, ws, p, _ in CONFIGS]


@pytest.fixture
def always(monkeypatch):
    """Winograd for every 3×3 / 5×5 stride-1 layer, whatever its channels and tiles and
    whatever it measures; logs the calls of ``_winograd.conv`` and ``_winograd.backward``
    as (name, weight shape)."""
    calls = []

    def counted(name):
        real = getattr(_winograd, name)

        def run(*args, **kwargs):
            calls.append((name, args[2 if name == "backward" else 1].shape))
            return real(*args, **kwargs)
        return run

    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_winograd, "MIN_TILES", 1)
    monkeypatch.setattr(_winograd, "mode", "on")
    for name in ("conv", "backward"):
        monkeypatch.setattr(_winograd, name, counted(name))
    return calls


def _inputs(rng, config, dtype=np.float64):
    x_shape, w_shape, padding, has_bias = config
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if has_bias else None
    return x, w, b, padding


@pytest.mark.parametrize("r", sorted(_winograd.KRON))
def test_transforms_compute_the_correlation(r):
    at, g, bt = _winograd.transforms(r, _winograd.POINTS[r])
    rng = np.random.default_rng(r)
    d = rng.standard_normal((50, r + 1))
    f = rng.standard_normal((50, r))
    y = ((f @ g.T) * (d @ bt.T)) @ at.T  # Aᵀ[(G g) ⊙ (Bᵀ d)] per row
    want = np.stack([(d[:, i:i + r] * f).sum(axis=1) for i in range(2)], axis=1)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("forward", "backward"), [
    pytest.param(conv2d_forward, conv2d_backward, id="conv2d"),
    pytest.param(conv2d_relu_forward, conv2d_relu_backward, id="conv2d_relu"),
])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_naive_forward_and_backward(config, forward, backward, always, rng):
    x, w, b, padding = _inputs(rng, config)
    out_n, cache_n = forward(x, w, b, 1, padding, impl="naive")
    out_f, cache_f = forward(x, w, b, 1, padding, impl="fast")
    np.testing.assert_allclose(out_f, out_n, rtol=1e-10, atol=1e-10)
    assert channels_last(out_f)
    dout = rng.standard_normal(out_n.shape)
    grads = backward(dout, cache_f)
    assert always == [("conv", w.shape), ("backward", w.shape)]
    assert_grads_match(backward(dout, cache_n), grads, (x, w, b), np.float64,
                       rtol=1e-10, atol=1e-10)
    assert channels_last(grads[0])
    dx, dw, db = backward(dout, cache_f, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw, grads[1], rtol=1e-12, atol=1e-12)
    assert (db is None) == (b is None)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("config", CONFIGS[::3], ids=IDS[::3])
def test_float32_matches_torch(config, layout, always, torch, rng):
    x, w, b, padding = _inputs(rng, config, np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out, _ = conv2d_forward(x, w, b, 1, padding)
    assert always
    want = torch.nn.functional.conv2d(
        torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(w),
        None if b is None else torch.from_numpy(b), 1, padding).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("config", CONFIGS[::3], ids=IDS[::3])
def test_float32_gradients_match_torch(config, always, torch, rng):
    x, w, b, padding = _inputs(rng, config, np.float32)
    out, cache = conv2d_relu_forward(x, w, b, 1, padding)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, dw, db = conv2d_relu_backward(dout, cache)
    assert ("backward", w.shape) in always
    tx, tw = (torch.from_numpy(a).requires_grad_() for a in (x, w))
    tb = None if b is None else torch.from_numpy(b).requires_grad_()
    torch.relu(torch.nn.functional.conv2d(tx, tw, tb, 1, padding)).backward(
        torch.from_numpy(dout))
    for got, want in ((dx, tx.grad), (dw, tw.grad)) + (((db, tb.grad),) if b is not None else ()):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_batch_of_one(config, rng):
    x, w, b, padding = _inputs(rng, config)
    x = x[:1]
    want, cache = conv2d_relu_forward(x, w, b, 1, padding, impl="naive")
    pads = (padding, padding) if isinstance(padding, int) else padding
    out = _winograd.conv(x, w, b, pads, want.shape[2:], relu=True)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(want.shape)
    grads = _winograd.backward(dout, x, w, pads, True, b is not None, out)
    assert_grads_match(conv2d_relu_backward(dout, cache), grads, (x, w, b), np.float64,
                       rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("relu", [False, True])
def test_thread_chunks_give_the_same_result(relu, monkeypatch, rng):
    x, w, b, padding = _inputs(rng, CONFIGS[2])
    x = np.concatenate([x] * 3)  # 9 images
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_winograd, "MIN_TILES", 1)
    monkeypatch.setattr(_winograd, "mode", "on")
    forward, backward = ((conv2d_relu_forward, conv2d_relu_backward) if relu
                         else (conv2d_forward, conv2d_backward))
    out, cache = forward(x, w, b, 1, padding)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    monkeypatch.setattr(_winograd, "CHUNK_BYTES", 1)  # one image per chunk
    out_1, cache_1 = forward(x, w, b, 1, padding)
    np.testing.assert_array_equal(out_1, out)
    grads_1 = backward(dout, cache_1)
    np.testing.assert_array_equal(grads_1[0], grads[0])  # dx: per image, the same sums
    for got, want in zip(grads_1[1:], grads[1:], strict=True):  # dW, db: summed by chunk
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("weight", "stride", "dilation", "n", "out_hw", "expected"), [
    ((384, 256, 3, 3), (1, 1), (1, 1), 64, (6, 6), True),  # alexnet_cifar33 conv3, batch 64
    ((256, 96, 5, 5), (1, 1), (1, 1), 64, (13, 13), True),  # its conv2
    ((384, 256, 3, 3), (1, 1), (1, 1), 1, (6, 6), False),  # batch 1: 9 tiles
    ((64, 64, 3, 3), (2, 2), (1, 1), 128, (8, 8), False),  # stride 2
    ((64, 64, 3, 3), (1, 1), (2, 2), 128, (8, 8), False),  # dilation 2
    ((32, 32, 3, 3), (1, 1), (1, 1), 128, (16, 16), True),  # 32 channels
    ((32, 16, 3, 3), (1, 1), (1, 1), 128, (16, 16), False),  # 16 input channels
    ((96, 3, 7, 7), (1, 1), (1, 1), 64, (27, 27), False),  # 7×7
    ((64, 64, 3, 5), (1, 1), (1, 1), 128, (8, 8), False),  # not square
])
def test_applies_where_it_was_measured_to_pay(weight, stride, dilation, n, out_hw, expected):
    assert _winograd.applies(weight, stride, dilation, n, out_hw) is expected


def _timed_kernels(seconds):
    """Two stand-in kernels that sleep for the given times and log their calls."""
    calls = []

    def kernel(name, delay):
        def run():
            calls.append(name)
            time.sleep(delay)
            return name
        return run

    return calls, kernel("winograd", seconds[0]), kernel("im2col", seconds[1])


@pytest.mark.parametrize(("seconds", "winner"), [((0.0, 0.02), "winograd"),
                                                 ((0.02, 0.0), "im2col")])
def test_auto_times_calls_in_turn_then_runs_the_faster(seconds, winner, monkeypatch):
    monkeypatch.setattr(_winograd, "mode", "auto")
    monkeypatch.setattr(_winograd, "_trials", {})
    calls, winograd, im2col = _timed_kernels(seconds)
    trials = 2 * _winograd.TRIALS
    outs = [_winograd.select("layer", winograd, im2col) for _ in range(trials)]
    assert calls == outs == ["winograd", "im2col"] * _winograd.TRIALS  # one kernel a call
    calls.clear()
    assert _winograd.select("layer", winograd, im2col) == winner
    assert calls == [winner]
    best = _winograd.timings()["layer"]
    assert (best[0] < best[1]) == (winner == "winograd")


def test_auto_keeps_layers_apart(monkeypatch):
    monkeypatch.setattr(_winograd, "mode", "auto")
    monkeypatch.setattr(_winograd, "_trials", {})
    _, winograd, im2col = _timed_kernels((0.0, 0.0))
    assert _winograd.select("a", winograd, im2col) == "winograd"
    assert _winograd.timings() == {}  # no GEMM timing yet
    assert _winograd.select("b", winograd, im2col) == "winograd"
    assert _winograd.select("a", winograd, im2col) == "im2col"
    assert set(_winograd.timings()) == {"a"}


@pytest.mark.parametrize(("mode", "winner"), [("on", "winograd"), ("off", "im2col")])
def test_on_and_off_measure_nothing(mode, winner, monkeypatch):
    monkeypatch.setattr(_winograd, "mode", mode)
    monkeypatch.setattr(_winograd, "_trials", {})
    calls, winograd, im2col = _timed_kernels((0.0, 0.0))
    assert _winograd.select("layer", winograd, im2col) == winner
    assert calls == [winner]
    assert _winograd.timings() == {}


def test_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(_winograd.MODE_ENV, "OFF")
    assert _winograd._mode_from_env() == "off"
    monkeypatch.delenv(_winograd.MODE_ENV)
    assert _winograd._mode_from_env() == "auto"
    monkeypatch.setenv(_winograd.MODE_ENV, "fast")
    with pytest.raises(ValueError, match="GLASSCNN_WINOGRAD must be one of"):
        _winograd._mode_from_env()
