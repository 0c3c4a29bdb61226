"""Winograd F(2×2, r×r) conv forward: transforms, naive vs fast, PyTorch parity, when it applies."""

from __future__ import annotations

import time

import numpy as np
import pytest
from grads_helper import assert_grads_match

from glasscnn.kernels import (
    _winograd,
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from glasscnn.kernels._common import channels_last

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
    whatever it measures; counts the calls of ``_winograd.conv``."""
    calls = []
    real = _winograd.conv

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_winograd, "MIN_TILES", 1)
    monkeypatch.setattr(_winograd, "mode", "on")
    monkeypatch.setattr(_winograd, "conv", counted)
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
    assert always == [w.shape]
    np.testing.assert_allclose(out_f, out_n, rtol=1e-10, atol=1e-10)
    assert channels_last(out_f)
    dout = rng.standard_normal(out_n.shape)
    assert_grads_match(backward(dout, cache_n), backward(dout, cache_f),
                       (x, w, b), np.float64, rtol=1e-10, atol=1e-10)


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


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_batch_of_one(config, rng):
    x, w, b, padding = _inputs(rng, config)
    x = x[:1]
    want = conv2d_forward(x, w, b, 1, padding, impl="naive")[0]
    pads = (padding, padding) if isinstance(padding, int) else padding
    out = _winograd.conv(x, w, b, pads, want.shape[2:], relu=True)
    np.testing.assert_allclose(out, np.maximum(want, 0), rtol=1e-10, atol=1e-10)


def test_thread_chunks_give_the_same_result(monkeypatch, rng):
    x, w, b, padding = _inputs(rng, CONFIGS[2])
    x = np.concatenate([x] * 3)  # 9 images
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_winograd, "MIN_TILES", 1)
    monkeypatch.setattr(_winograd, "mode", "on")
    out = conv2d_forward(x, w, b, 1, padding)[0]
    monkeypatch.setattr(_winograd, "CHUNK_BYTES", 1)  # one image per chunk
    np.testing.assert_array_equal(conv2d_forward(x, w, b, 1, padding)[0], out)


@pytest.mark.parametrize(("weight", "stride", "dilation", "n", "out_hw", "expected"), [
    ((384, 256, 3, 3), (1, 1), (1, 1), 64, (6, 6), True),  # alexnet_cifar33 conv3, batch 64
    ((256, 96, 5, 5), (1, 1), (1, 1), 64, (13, 13), True),  # its conv2
    ((384, 256, 3, 3), (1, 1), (1, 1), 1, (6, 6), False),  # batch 1: 9 tiles
    ((64, 64, 3, 3), (2, 2), (1, 1), 128, (8, 8), False),  # stride 2
    ((64, 64, 3, 3), (1, 1), (2, 2), 128, (8, 8), False),  # dilation 2
    ((32, 32, 3, 3), (1, 1), (1, 1), 128, (16, 16), False),  # 32 channels
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
def test_auto_measures_once_then_runs_the_faster(seconds, winner, monkeypatch):
    monkeypatch.setattr(_winograd, "mode", "auto")
    monkeypatch.setattr(_winograd, "_timings", {})
    calls, winograd, im2col = _timed_kernels(seconds)
    assert _winograd.select("layer", winograd, im2col) == winner
    assert calls == ["winograd", "im2col"] * 2  # alternated, twice each
    calls.clear()
    assert _winograd.select("layer", winograd, im2col) == winner
    assert calls == [winner]
    best = _winograd.timings()["layer"]
    assert (best[0] < best[1]) == (winner == "winograd")


@pytest.mark.parametrize(("mode", "winner"), [("on", "winograd"), ("off", "im2col")])
def test_on_and_off_measure_nothing(mode, winner, monkeypatch):
    monkeypatch.setattr(_winograd, "mode", mode)
    monkeypatch.setattr(_winograd, "_timings", {})
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
