"""Softmax and log-softmax along one axis, with the maximum subtracted (finite for any
finite input)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_dout, check_impl, get_xp


def normalize_dim(dim: int, ndim: int, op: str, shape: tuple[int, ...]) -> int:
    """``dim`` as an axis in [0, ndim) (negative counts from the end), or ``ValueError``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim must be an int in [{-ndim}, {ndim}) for input of shape "
                         f"{shape}, got {dim!r}")
    return int(dim) % ndim


def _lines(x: Any, axis: int) -> list[tuple]:
    """Index tuples of every 1-D line of ``x`` along ``axis`` (a ``slice`` at ``axis``)."""
    rest = x.shape[:axis] + x.shape[axis + 1:]
    return [(*idx[:axis], slice(None), *idx[axis:]) for idx in np.ndindex(rest)]


def _prepare(op: str, x: Any, dim: int, impl: str) -> tuple[Any, int]:
    check_impl(impl, op)
    x = as_float_array(x, op)
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an input with at least one axis, got shape ()")
    return x, normalize_dim(dim, x.ndim, op, x.shape)


def softmax_forward(x: Any, dim: int, impl: str = "fast") -> tuple[Any, dict]:
    """Softmax along ``dim``: ``y_i = exp(x_i − m) / Σ_j exp(x_j − m)``, m the line's maximum.

    Args:
        x: array of any shape with at least one axis (float32 or float64).
        dim: the axis to normalise along (negative counts from the end).
        impl: ``"naive"`` (a loop over lines and their entries) or ``"fast"`` (vectorised
            over all lines: max, exp in place, sum, divide).

    Returns:
        ``(out, cache)``; ``out`` shaped and typed like ``x``, each line summing to 1. The
        cache holds ``out``, which must not be modified in place before the backward pass.
    """
    x, axis = _prepare("softmax", x, dim, impl)
    if impl == "naive":
        out = np.empty_like(x)
        for line in _lines(x, axis):
            v = [float(t) for t in x[line]]
            m = max(v)
            total = sum(math.exp(t - m) for t in v)
            out[line] = [math.exp(t - m) / total for t in v]  # y_i = e^{x_i − m} / Σ_j e^{x_j − m}
    else:
        xp = get_xp(x)
        out = x - x.max(axis=axis, keepdims=True)
        xp.exp(out, out=out)
        out /= out.sum(axis=axis, keepdims=True)
    return out, {"impl": impl, "out": out, "axis": axis}


def softmax_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of softmax: ``dx = y · (dout − Σ_j dout_j · y_j)`` along the axis.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``softmax_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    out, axis = cache["out"], cache["axis"]
    dout = check_dout(dout, out.shape, "softmax_backward")
    if cache["impl"] == "naive":
        dx = np.empty_like(out)
        for line in _lines(out, axis):
            y, g = out[line], dout[line]
            dot = sum(float(a) * float(b) for a, b in zip(y, g, strict=True))
            dx[line] = [float(a) * (float(b) - dot) for a, b in zip(y, g, strict=True)]
        return (dx,)
    dx = (dout * out).astype(out.dtype, copy=False)
    dx -= out * dx.sum(axis=axis, keepdims=True)
    return (dx,)


def log_softmax_forward(x: Any, dim: int, impl: str = "fast") -> tuple[Any, dict]:
    """Log-softmax along ``dim``: ``y_i = x_i − m − log Σ_j exp(x_j − m)``, m the line's maximum.

    Args:
        x: array of any shape with at least one axis (float32 or float64).
        dim: the axis to normalise along (negative counts from the end).
        impl: ``"naive"`` (a loop over lines and their entries) or ``"fast"`` (vectorised
            log-sum-exp over all lines).

    Returns:
        ``(out, cache)``; ``out`` shaped and typed like ``x``, every entry ≤ 0.
    """
    x, axis = _prepare("log_softmax", x, dim, impl)
    if impl == "naive":
        out = np.empty_like(x)
        for line in _lines(x, axis):
            v = [float(t) for t in x[line]]
            m = max(v)
            lse = m + math.log(sum(math.exp(t - m) for t in v))
            out[line] = [t - lse for t in v]  # y_i = x_i − (m + log Σ_j e^{x_j − m})
    else:
        xp = get_xp(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return out, {"impl": impl, "out": out, "axis": axis}


def log_softmax_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of log-softmax: ``dx = dout − exp(y) · Σ_j dout_j`` along the axis.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``log_softmax_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    out, axis = cache["out"], cache["axis"]
    dout = check_dout(dout, out.shape, "log_softmax_backward")
    if cache["impl"] == "naive":
        dx = np.empty_like(out)
        for line in _lines(out, axis):
            total = sum(float(g) for g in dout[line])
            dx[line] = [float(g) - math.exp(float(y)) * total
                        for y, g in zip(out[line], dout[line], strict=True)]
        return (dx,)
    xp = get_xp(out)
    dx = xp.exp(out)
    dx *= -dout.sum(axis=axis, keepdims=True)
    dx += dout
    return (dx,)
