"""The three proofs of every operator at a glance: naive vs fast, fast vs PyTorch, speed-up.

``check_ops()`` runs each kernel family once at a representative size with a random
upstream gradient and returns one row per operator; ``glasscnn ops`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from glasscnn import kernels as K
from glasscnn.analysis.machine import best_seconds


@dataclass
class OpCase:
    """One operator at one size: how to run it in glasscnn and in torch.

    ``inputs(rng, dtype)`` returns the positional array arguments (the differentiable ones
    first, then e.g. labels), ``kwargs`` the options. ``torch_fn(torch, *tensors)`` is the
    PyTorch reference or ``None`` where none applies (random masks).
    """

    name: str
    size: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    inputs: Callable[[np.random.Generator, Any], list[np.ndarray]]
    n_diff: int
    kwargs: dict[str, Any]
    torch_fn: Callable[..., Any] | None


def _normal(*shape: int) -> Callable[[np.random.Generator, Any], list[np.ndarray]]:
    return lambda rng, dtype: [rng.standard_normal(shape).astype(dtype)]


def _shapes(*shapes: tuple[int, ...]) -> Callable[[np.random.Generator, Any], list[np.ndarray]]:
    return lambda rng, dtype: [rng.standard_normal(s).astype(dtype) for s in shapes]


def _conv_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [rng.standard_normal(s).astype(dtype) for s in [(2, 3, 32, 32), (32, 3, 7, 7), (32,)]]


def _conv_relu_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    shapes = [(8, 16, 32, 32), (16, 16, 3, 3), (16,)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _linear_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [rng.standard_normal(s).astype(dtype) for s in [(64, 256), (128, 256), (128,)]]


def _bn_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    x = rng.standard_normal((8, 16, 16, 16)).astype(dtype)
    gamma, beta = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    return [x, gamma, beta]


def _ce_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [rng.standard_normal((64, 10)).astype(dtype), rng.integers(0, 10, 64)]


def _bn_forward(x, gamma, beta, impl):
    c = x.shape[1]
    return K.batch_norm_forward(x, np.zeros(c, x.dtype), np.ones(c, x.dtype), gamma, beta,
                                training=True, impl=impl)


def _dropout_forward(x, impl):
    return K.dropout_forward(x, p=0.5, rng=np.random.default_rng(0), impl=impl)


def _torch_bn(torch, x, gamma, beta):
    c = x.shape[1]
    return torch.nn.functional.batch_norm(
        x, torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype), gamma, beta,
        training=True,
    )


def _class_loss_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    labels = rng.integers(0, 10, (16, 6))
    labels[0, :3] = -100
    return [rng.standard_normal((16, 10, 6)).astype(dtype), labels,
            rng.uniform(0.5, 2.0, 10).astype(dtype)]


def _pair_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [rng.standard_normal((64, 10)).astype(dtype), rng.uniform(0, 1, (64, 10)).astype(dtype)]


def _cat_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [rng.standard_normal((4, c, 16, 16)).astype(dtype) for c in (8, 16, 8)]


def _norm_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    x = rng.standard_normal((4, 16, 8, 8)).astype(dtype)
    return [x, rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)]


def _ln_inputs(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    x = rng.standard_normal((8, 16, 64)).astype(dtype)
    return [x, rng.standard_normal(64).astype(dtype), rng.standard_normal(64).astype(dtype)]


def _cat_forward(a, b, c, impl):
    return K.cat_forward([a, b, c], 1, impl=impl)


def _group_norm_forward(x, w, b, impl):
    return K.group_norm_forward(x, 4, w, b, impl=impl)


def _layer_norm_forward(x, w, b, impl):
    return K.layer_norm_forward(x, 64, w, b, impl=impl)


def _ce_options_forward(x, labels, weight, impl):
    return K.softmax_cross_entropy_forward(x, labels, weight, label_smoothing=0.1, impl=impl)


def cases() -> list[OpCase]:
    """The operators and the sizes ``glasscnn ops`` reports on."""
    return [
        OpCase("conv2d", "2x3x32x32, 32 7x7", K.conv2d_forward, K.conv2d_backward,
               _conv_inputs, 3, {}, lambda t, x, w, b: t.nn.functional.conv2d(x, w, b)),
        OpCase("conv2d_relu", "8x16x32x32 16 3x3 p1", K.conv2d_relu_forward,
               K.conv2d_relu_backward, _conv_relu_inputs, 3, {"padding": 1},
               lambda t, x, w, b: t.relu(t.nn.functional.conv2d(x, w, b, padding=1))),
        OpCase("conv2d", "2x8x16x16 3x3 g4 same", K.conv2d_forward,
               K.conv2d_backward, _shapes((2, 8, 16, 16), (16, 2, 3, 3), (16,)), 3,
               {"padding": "same", "groups": 4},
               lambda t, x, w, b: t.nn.functional.conv2d(x, w, b, padding="same", groups=4)),
        OpCase("conv2d", "2x16x16x16 3x3 g16 p1", K.conv2d_forward,
               K.conv2d_backward, _shapes((2, 16, 16, 16), (16, 1, 3, 3), (16,)), 3,
               {"padding": 1, "groups": 16},
               lambda t, x, w, b: t.nn.functional.conv2d(x, w, b, padding=1, groups=16)),
        OpCase("conv_transpose2d", "2x8x8x8 -> 4 4x4 s2", K.conv_transpose2d_forward,
               K.conv_transpose2d_backward, _shapes((2, 8, 8, 8), (8, 4, 4, 4), (4,)), 3,
               {"stride": 2, "padding": 1},
               lambda t, x, w, b: t.nn.functional.conv_transpose2d(x, w, b, 2, 1)),
        OpCase("max_pool2d", "8x16x32x32, 2x2 s2", K.max_pool2d_forward, K.max_pool2d_backward,
               _normal(8, 16, 32, 32), 1, {"kernel_size": 2},
               lambda t, x: t.nn.functional.max_pool2d(x, 2)),
        OpCase("max_pool2d", "4x16x27x27, 3x3 s2", K.max_pool2d_forward, K.max_pool2d_backward,
               _normal(4, 16, 27, 27), 1, {"kernel_size": 3, "stride": 2},
               lambda t, x: t.nn.functional.max_pool2d(x, 3, 2)),
        OpCase("avg_pool2d", "8x16x32x32, 2x2 s1", K.avg_pool2d_forward, K.avg_pool2d_backward,
               _normal(8, 16, 32, 32), 1, {"kernel_size": 2, "stride": 1},
               lambda t, x: t.nn.functional.avg_pool2d(x, 2, 1)),
        OpCase("adaptive_avg_pool2d", "8x16x7x7 -> 3x3", K.adaptive_avg_pool2d_forward,
               K.adaptive_avg_pool2d_backward, _normal(8, 16, 7, 7), 1, {"output_size": 3},
               lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, 3)),
        OpCase("relu", "8x16x32x32", K.relu_forward, K.relu_backward, _normal(8, 16, 32, 32),
               1, {}, lambda t, x: t.relu(x)),
        OpCase("sigmoid", "8x16x32x32", K.sigmoid_forward, K.sigmoid_backward,
               _normal(8, 16, 32, 32), 1, {}, lambda t, x: t.sigmoid(x)),
        OpCase("linear", "64x256 -> 128", K.linear_forward, K.linear_backward, _linear_inputs,
               3, {}, lambda t, x, w, b: t.nn.functional.linear(x, w, b)),
        OpCase("flatten", "8x16x8x8", K.flatten_forward, K.flatten_backward,
               _normal(8, 16, 8, 8), 1, {}, lambda t, x: t.flatten(x, 1)),
        OpCase("batch_norm", "8x16x16x16, train", _bn_forward, K.batch_norm_backward,
               _bn_inputs, 3, {}, _torch_bn),
        OpCase("dropout", "8x16x32x32, p=0.5", _dropout_forward, K.dropout_backward,
               _normal(8, 16, 32, 32), 1, {}, None),
        OpCase("softmax_cross_entropy", "64x10", K.softmax_cross_entropy_forward,
               K.softmax_cross_entropy_backward, _ce_inputs, 1, {},
               lambda t, x, y: t.nn.functional.cross_entropy(x, y)),
        OpCase("add", "8x16x32x32", K.add_forward, K.add_backward,
               lambda rng, dtype: [rng.standard_normal((8, 16, 32, 32)).astype(dtype)
                                   for _ in range(2)], 2, {}, lambda t, a, b: a + b),
        OpCase("max_pool2d", "4x8x17x17, 3x3 d2 ceil", K.max_pool2d_forward,
               K.max_pool2d_backward, _normal(4, 8, 17, 17), 1,
               {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True},
               lambda t, x: t.nn.functional.max_pool2d(x, 3, 2, 1, 2, ceil_mode=True)),
        OpCase("avg_pool2d", "4x8x17x17, ceil nopad", K.avg_pool2d_forward,
               K.avg_pool2d_backward, _normal(4, 8, 17, 17), 1,
               {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                "count_include_pad": False},
               lambda t, x: t.nn.functional.avg_pool2d(x, 3, 2, 1, True, False)),
        OpCase("adaptive_max_pool2d", "8x16x7x7 -> 3x3", K.adaptive_max_pool2d_forward,
               K.adaptive_max_pool2d_backward, _normal(8, 16, 7, 7), 1, {"output_size": 3},
               lambda t, x: t.nn.functional.adaptive_max_pool2d(x, 3)),
        OpCase("tanh", "4x8x16x16", K.tanh_forward, K.tanh_backward, _normal(4, 8, 16, 16), 1,
               {}, lambda t, x: t.tanh(x)),
        OpCase("leaky_relu", "4x8x16x16, slope 0.1", K.leaky_relu_forward,
               K.leaky_relu_backward, _normal(4, 8, 16, 16), 1, {"negative_slope": 0.1},
               lambda t, x: t.nn.functional.leaky_relu(x, 0.1)),
        OpCase("relu6", "4x8x16x16", K.relu6_forward, K.relu6_backward,
               lambda rng, dtype: [(rng.standard_normal((4, 8, 16, 16)) * 4).astype(dtype)], 1,
               {}, lambda t, x: t.nn.functional.relu6(x)),
        OpCase("hardswish", "4x8x16x16", K.hardswish_forward, K.hardswish_backward,
               lambda rng, dtype: [(rng.standard_normal((4, 8, 16, 16)) * 4).astype(dtype)], 1,
               {}, lambda t, x: t.nn.functional.hardswish(x)),
        OpCase("silu", "4x8x16x16", K.silu_forward, K.silu_backward, _normal(4, 8, 16, 16), 1,
               {}, lambda t, x: t.nn.functional.silu(x)),
        OpCase("gelu", "4x8x16x16", K.gelu_forward, K.gelu_backward, _normal(4, 8, 16, 16), 1,
               {}, lambda t, x: t.nn.functional.gelu(x)),
        OpCase("softmax", "64x100, dim 1", K.softmax_forward, K.softmax_backward,
               _normal(64, 100), 1, {"dim": 1}, lambda t, x: t.softmax(x, 1)),
        OpCase("log_softmax", "64x100, dim 1", K.log_softmax_forward, K.log_softmax_backward,
               _normal(64, 100), 1, {"dim": 1}, lambda t, x: t.log_softmax(x, 1)),
        OpCase("softmax_cross_entropy", "16x10x6, w+ignore+ls",
               _ce_options_forward, K.softmax_cross_entropy_backward, _class_loss_inputs, 1, {},
               lambda t, x, y, w: t.nn.functional.cross_entropy(x, y, weight=w,
                                                                label_smoothing=0.1)),
        OpCase("nll_loss", "16x10x6, w+ignore", K.nll_loss_forward, K.nll_loss_backward,
               _class_loss_inputs, 1, {},
               lambda t, x, y, w: t.nn.functional.nll_loss(x, y, weight=w)),
        OpCase("mse_loss", "64x10", K.mse_loss_forward, K.mse_loss_backward, _pair_inputs, 2,
               {}, lambda t, x, y: t.nn.functional.mse_loss(x, y)),
        OpCase("binary_cross_entropy_with_logits", "64x10",
               K.binary_cross_entropy_with_logits_forward,
               K.binary_cross_entropy_with_logits_backward, _pair_inputs, 2, {},
               lambda t, x, y: t.nn.functional.binary_cross_entropy_with_logits(x, y)),
        OpCase("cat", "4x(8|16|8)x16x16", _cat_forward, K.cat_backward, _cat_inputs, 3,
               {}, lambda t, a, b, c: t.cat([a, b, c], 1)),
        OpCase("group_norm", "4x16x8x8, 4 groups", _group_norm_forward, K.group_norm_backward,
               _norm_inputs, 3, {}, lambda t, x, w, b: t.nn.functional.group_norm(x, 4, w, b)),
        OpCase("layer_norm", "8x16x64, last axis", _layer_norm_forward, K.layer_norm_backward,
               _ln_inputs, 3, {}, lambda t, x, w, b: t.nn.functional.layer_norm(x, (64,), w, b)),
    ]


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(a, b, strict=True) if x is not None)


def _torch_results(case: OpCase, arrays: list[np.ndarray], dout: np.ndarray, torch: Any):
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    for t in tensors[: case.n_diff]:
        t.requires_grad_(True)
    out = case.torch_fn(torch, *tensors)
    out.backward(torch.from_numpy(np.asarray(dout)))
    return [out.detach().numpy()] + [t.grad.numpy() for t in tensors[: case.n_diff]]


def _run_case(case: OpCase, dtype: Any, repeat: int, torch: Any, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    arrays = case.inputs(rng, dtype)
    out, _ = case.forward(*arrays, **case.kwargs, impl="fast")
    dout = rng.standard_normal(np.shape(out)).astype(dtype)
    results, times = {}, {}
    for impl, n in (("naive", 1), ("fast", repeat)):
        out, cache = case.forward(*arrays, **case.kwargs, impl=impl)
        results[impl] = [out, *case.backward(dout, cache)[: case.n_diff]]
        times[impl] = (
            best_seconds(lambda impl=impl: case.forward(*arrays, **case.kwargs, impl=impl), n, 0),
            best_seconds(lambda cache=cache: case.backward(dout, cache), n, 0),
        )
    ref = None
    if torch is not None and case.torch_fn is not None:
        ref = _max_diff(results["fast"], _torch_results(case, arrays, dout, torch))
    return {
        "op": case.name,
        "size": case.size,
        "naive_vs_fast": _max_diff(results["naive"], results["fast"]),
        "fast_vs_torch": ref,
        "forward_speedup": times["naive"][0] / max(times["fast"][0], 1e-9),
        "backward_speedup": times["naive"][1] / max(times["fast"][1], 1e-9),
    }


def check_ops(dtype: Any = np.float32, repeat: int = 3, torch: Any = None,
              seed: int = 0) -> list[dict[str, Any]]:
    """Run every operator naive and fast (and in torch when given) with one random input.

    Args:
        dtype: float32 or float64.
        repeat: timing repeats of the fast kernels (the best is kept; naive runs once).
        torch: the torch module, or ``None`` to leave that column empty.
        seed: seed of the inputs and upstream gradients.

    Returns:
        One dict per operator: ``op``, ``size``, ``naive_vs_fast`` and ``fast_vs_torch``
        (max absolute difference over the output and every gradient; ``None`` where there
        is no reference), ``forward_speedup`` and ``backward_speedup`` (naive time / fast).
    """
    if repeat < 1:
        raise ValueError(f"check_ops: repeat must be >= 1, got {repeat}")
    return [_run_case(case, dtype, repeat, torch, seed) for case in cases()]
