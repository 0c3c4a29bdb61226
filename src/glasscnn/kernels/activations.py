"""Activation functions applied element by element: ReLU and the logistic sigmoid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import as_float_array, check_dout, check_impl, get_xp

# fast ReLU: batch chunks of about this size, on the kernels' thread pool from this many
# elements on (a memory-bound pass gains from the second core)
_CHUNK_BYTES = 1 << 19
_PARALLEL_MIN_ELEMENTS = 1 << 18


def relu_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """Rectified linear unit ``max(x, 0)``, any shape.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one ufunc call per batch
            chunk, on the kernels' thread pool when large).

    Returns:
        ``(out, cache)``: ``out`` has ``x``'s shape and dtype; the cache holds ``out``,
        which must not be modified in place before the backward pass.
    """
    check_impl(impl, "relu")
    x = as_float_array(x, "relu")
    if impl == "naive":
        out = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            v = x[idx]
            out[idx] = 0 if v <= 0 else v  # y = max(x, 0); NaN passes through
    else:
        xp = get_xp(x)
        out = xp.empty_like(x)  # in x's memory layout
        if x.ndim == 0:
            xp.maximum(x, 0, out=out)
        else:  # ufunc maximum over batch chunks, on the thread pool when large
            parts, slots = _parallel.batch_parts(xp, x, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)
            _parallel.run_chunks(lambda i, _slot: xp.maximum(x[parts[i]], 0, out=out[parts[i]]),
                                 len(parts), slots, blas=False)
    return out, {"impl": impl, "out": out}


def relu_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of ReLU: ``dout`` where the input was positive, else 0.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``relu_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    out = cache["out"]
    dout = check_dout(dout, out.shape, "relu_backward")
    if cache["impl"] == "naive":
        dx = np.empty_like(out)
        for idx in np.ndindex(out.shape):
            dx[idx] = dout[idx] if out[idx] > 0 else 0  # dx = dout · [x > 0]
        return (dx,)
    xp = get_xp(out)
    dx = xp.empty_like(out)
    if out.ndim == 0:
        return (xp.multiply(dout, out > 0, out=dx),)

    def masked(i, _slot):  # dout times the 0/1 mask, per batch chunk
        part = parts[i]
        xp.multiply(dout[part], out[part] > 0, out=dx[part])

    parts, slots = _parallel.batch_parts(xp, out, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)
    _parallel.run_chunks(masked, len(parts), slots, blas=False)
    return (dx,)


def sigmoid_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, any shape, finite for any finite input.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements, with the two-branch stable formula) or
            ``"fast"`` (in-place ufuncs on one buffer).

    Returns:
        ``(out, cache)``: ``out`` in (0, 1) (0 and 1 after rounding for large ``|x|``),
        ``x``'s shape and dtype; the cache holds ``out``, which must not be modified in
        place before the backward pass.
    """
    check_impl(impl, "sigmoid")
    x = as_float_array(x, "sigmoid")
    if impl == "naive":
        out = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            v = float(x[idx])
            if v >= 0:
                out[idx] = 1.0 / (1.0 + math.exp(-v))  # σ(x) = 1 / (1 + e^{-x}) for x ≥ 0
            else:
                e = math.exp(v)
                out[idx] = e / (1.0 + e)  # σ(x) = e^{x} / (1 + e^{x}) for x < 0
    else:
        xp = get_xp(x)
        # 1 / (1 + e^{-x}) in place on one buffer; e^{-x} overflows to inf for x below about
        # -88 (float32) or -709 (float64), where 1 / (1 + inf) = 0 is the exact limit.
        with np.errstate(over="ignore"):
            out = xp.negative(x)
            xp.exp(out, out=out)
            out += 1
            xp.reciprocal(out, out=out)
    return out, {"impl": impl, "out": out}


def sigmoid_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of the sigmoid: ``dout · σ(x) · (1 - σ(x))``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``sigmoid_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    out = cache["out"]
    dout = check_dout(dout, out.shape, "sigmoid_backward")
    if cache["impl"] == "naive":
        dx = np.empty_like(out)
        for idx in np.ndindex(out.shape):
            s = out[idx]
            dx[idx] = dout[idx] * s * (1 - s)  # dx = dout · σ · (1 − σ)
        return (dx,)
    xp = get_xp(out)
    dx = xp.subtract(1, out)  # in-place products on one buffer
    dx *= out
    dx *= dout
    return (dx,)
