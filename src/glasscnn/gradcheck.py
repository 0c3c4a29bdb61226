"""Numerical gradients by centered finite differences, and the relative error courses use.

Run these in float64: with float32 the rounding error of ``f(x + h) - f(x - h)`` swamps
the derivative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def rel_error(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Maximum relative error ``|a - b| / max(eps, |a| + |b|)`` over all elements.

    Args:
        a, b: arrays of the same shape.
        eps: floor of the denominator, so that two zeros compare as equal.

    Returns:
        The largest elementwise relative error, a Python float.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(eps, np.abs(a) + np.abs(b))))


def numerical_gradient(
    f: Callable[[], Any], x: np.ndarray, dout: np.ndarray | float = 1.0, h: float = 1e-6
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x``, by centered differences.

    ``x`` is perturbed in place, one element at a time, and restored.

    Formula: ``dL/dx[i] = (L(x + h e_i) - L(x - h e_i)) / (2h)`` with ``L = sum(f() * dout)``.

    Args:
        f: a function of no arguments whose output depends on ``x``.
        x: the array to differentiate with respect to (float64 recommended).
        dout: the upstream gradient, shaped like ``f()``'s output, or a scalar.
        h: the step.

    Returns:
        An array shaped like ``x``.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = float(np.sum(np.asarray(f(), dtype=np.float64) * dout))
        x[i] = old - h
        minus = float(np.sum(np.asarray(f(), dtype=np.float64) * dout))
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
        it.iternext()
    return grad


def check_module(
    module: Any, x: np.ndarray, dout: np.ndarray | None = None, h: float = 1e-6,
    seed: int = 0,
) -> dict[str, float]:
    """Compare a module's analytic gradients with numerical ones.

    The scalar checked is ``sum(module(x) * dout)``; ``dout`` is random when not given.
    Modules with randomness (dropout) must be put in a deterministic state first.

    Args:
        module: a ``glasscnn.nn.Module`` (float64 parameters recommended).
        x: input array (float64 recommended).
        dout: upstream gradient shaped like the output; random normal when ``None``.
        h: finite-difference step.
        seed: seed for the random ``dout``.

    Returns:
        ``{"input": err, "<param name>": err, ...}``: the relative error of each gradient.
    """
    out = module(x)
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    module.zero_grad()
    dx = module.backward(np.asarray(dout, dtype=np.asarray(out).dtype))
    errors = {"input": rel_error(dx, numerical_gradient(lambda: module(x), x, dout, h))}
    analytic = {name: p.grad.copy() for name, p in module.named_parameters()}
    for name, p in module.named_parameters():
        num = numerical_gradient(lambda: module(x), p.data, dout, h)
        errors[name] = rel_error(analytic[name], num)
    return errors
