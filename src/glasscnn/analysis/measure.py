"""Per-layer timing: every leaf layer's forward and backward, inside real training steps."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from glasscnn.analysis.rows import label, record_leaves
from glasscnn.nn import Module


def _timed(fn: Callable[..., Any], name: str, store: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        store[name] += time.perf_counter() - start
        return out
    return timed


def _snapshot(model: Module) -> dict[str, Any]:
    """Everything a measured step changes: modes, buffers, gradients, dropout generators."""
    mods = list(model.named_modules())
    return {
        "training": [(m, m.training) for _, m in mods],
        "buffers": [(m, k, np.array(b, copy=True)) for _, m in mods for k, b in m._buffers.items()],
        "grads": [(p, p.grad.copy()) for p in model.parameters()],
        "rngs": [(m.rng, m.rng.bit_generator.state) for _, m in mods
                 if isinstance(getattr(m, "rng", None), np.random.Generator)],
    }


def _restore(snap: dict[str, Any]) -> None:
    for m, mode in snap["training"]:
        object.__setattr__(m, "training", mode)
    for m, k, value in snap["buffers"]:
        np.copyto(m._buffers[k], value)
    for p, grad in snap["grads"]:
        p.grad[...] = grad
    for rng, state in snap["rngs"]:
        rng.bit_generator.state = state


def time_layers(
    model: Module, input_shape: tuple[int, ...], repeat: int = 3, warmup: int = 1,
    train: bool = True, dtype: Any = np.float32, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Time each leaf layer's forward and backward over ``repeat`` steps (fastest per layer).

    The model runs its own kernels on random input of ``input_shape`` and a random upstream
    gradient. The layers timed are those ``analyze`` counts (found by recording a pass),
    named as its rows (``layer2.0.conv1``, ``layer2.0.add``). The model's modes, buffers,
    gradients and dropout generators are restored afterwards.

    Args:
        model: the network.
        input_shape: (N, C, H, W) or whatever the model takes, batch axis included.
        repeat: timed steps; warmup: untimed steps before them.
        train: time training steps (batch statistics, active dropout); False: eval mode.
        dtype: input dtype (the model's parameter dtype).
        seed: seeds the input and the upstream gradient.

    Returns:
        ``{layer name: {"forward": seconds, "backward": seconds}}``.
    """
    if repeat <= 0:
        raise ValueError(f"time_layers: repeat must be positive, got {repeat}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape).astype(dtype)
    timed_modules: list[tuple[str, Module]] = []
    for call in record_leaves(model, (1, *input_shape[1:]), dtype)[1]:
        if all(m is not call.module for _, m in timed_modules):
            timed_modules.append((label(call), call.module))
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    snap = _snapshot(model)
    runs: list[dict[str, dict[str, float]]] = []
    try:
        for name, m in timed_modules:
            object.__setattr__(m, "forward", _timed(m.forward, name, fwd))
            object.__setattr__(m, "backward", _timed(m.backward, name, bwd))
        model.train(train)
        dout = None
        for step in range(warmup + repeat):
            fwd.clear()
            bwd.clear()
            out = model(x)
            if dout is None:
                dout = rng.standard_normal(out.shape).astype(out.dtype)
            model.backward(dout)
            if step >= warmup:
                runs.append({n: {"forward": fwd[n], "backward": bwd[n]}
                             for n, _ in timed_modules})
    finally:
        for _, m in timed_modules:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("backward", None)
        _restore(snap)
    return {n: {k: min(r[n][k] for r in runs) for k in ("forward", "backward")}
            for n, _ in timed_modules}
