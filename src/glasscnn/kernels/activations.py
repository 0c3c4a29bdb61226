"""Activation functions applied element by element: ReLU, the logistic sigmoid, tanh, leaky
ReLU, ReLU6, hardswish, SiLU and GELU."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels import _erf, _parallel
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



def _forward(op: str, x: Any, impl: str, naive: Any, fast: Any) -> tuple[Any, dict]:
    """Shared body of the activations below: check, then apply ``naive`` (a scalar function,
    in a loop over elements) or ``fast`` (an array function); the cache holds x and out."""
    check_impl(impl, op)
    x = as_float_array(x, op)
    if impl == "naive":
        out = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            out[idx] = naive(float(x[idx]))
    else:
        out = np.asarray(fast(x), dtype=x.dtype)
    return out, {"impl": impl, "x": x, "out": out}


def _backward(op: str, dout: Any, cache: dict, naive: Any, fast: Any) -> tuple[Any]:
    """Shared backward ``dx = dout · f'(x)``: ``naive(x, y)`` is the scalar derivative (in a
    loop over elements), ``fast(x, y)`` the array one, given the input x and output y."""
    x, out = cache["x"], cache["out"]
    dout = check_dout(dout, out.shape, op)
    if cache["impl"] == "naive":
        dx = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            dx[idx] = float(dout[idx]) * naive(float(x[idx]), float(out[idx]))
        return (dx,)
    dx = np.asarray(fast(x, out), dtype=x.dtype)
    dx *= dout
    return (dx,)


def tanh_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """Hyperbolic tangent ``tanh(x)``, any shape.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (NumPy's ufunc).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``; the cache holds ``x`` and
        ``out`` (as every activation below), not to be modified before the backward pass.
    """
    return _forward("tanh", x, impl, math.tanh, np.tanh)  # y = tanh(x)


def tanh_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of tanh: ``dout · (1 − tanh(x)²)``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``tanh_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    return _backward("tanh_backward", dout, cache,
                     lambda x, y: 1.0 - y * y,  # dy/dx = 1 − tanh²(x)
                     lambda x, y: 1 - y * y)


def leaky_relu_forward(x: Any, negative_slope: float = 0.01, impl: str = "fast"
                       ) -> tuple[Any, dict]:
    """Leaky ReLU ``x if x > 0 else negative_slope · x``, any shape.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        negative_slope: the slope a for x ≤ 0 (PyTorch's default 0.01).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one ``where``).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    a = float(negative_slope)
    out, cache = _forward("leaky_relu", x, impl,
                          lambda v: v if v > 0 else a * v,  # y = x if x > 0 else a·x
                          lambda t: np.where(t > 0, t, t * t.dtype.type(a)))
    cache["negative_slope"] = a
    return out, cache


def leaky_relu_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of leaky ReLU: ``dout`` where x > 0, else ``negative_slope · dout``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``leaky_relu_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    a = cache["negative_slope"]
    return _backward("leaky_relu_backward", dout, cache,
                     lambda x, y: 1.0 if x > 0 else a,  # dy/dx = 1 if x > 0 else a
                     lambda x, y: np.where(x > 0, 1, a))


def relu6_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """ReLU6 ``min(max(x, 0), 6)`` (MobileNetV2's activation), any shape; NaN passes through.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one ``clip``).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    return _forward("relu6", x, impl,
                    lambda v: v if math.isnan(v) else min(max(v, 0.0), 6.0),  # min(max(x, 0), 6)
                    lambda t: np.clip(t, 0, 6))


def relu6_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of ReLU6: ``dout`` where 0 < x < 6, else 0 (PyTorch's choice at the kinks).

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``relu6_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    return _backward("relu6_backward", dout, cache,
                     lambda x, y: 1.0 if 0 < x < 6 else 0.0,  # dy/dx = 1 on (0, 6), else 0
                     lambda x, y: (x > 0) & (x < 6))


def hardswish_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """Hardswish ``x · min(max(x + 3, 0), 6) / 6`` (MobileNetV3's activation), any shape.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one ``clip`` and products).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    return _forward(
        "hardswish", x, impl,
        lambda v: v * (v if math.isnan(v) else min(max(v + 3, 0.0), 6.0)) / 6,  # x·relu6(x+3)/6
        lambda t: t * np.clip(t + 3, 0, 6) / 6)


def hardswish_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of hardswish: ``dout`` times 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, else 1.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``hardswish_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input (PyTorch's values at the kinks).
    """
    def naive(x: float, y: float) -> float:
        # dy/dx = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3
        return 0.0 if x <= -3 else (x / 3 + 0.5 if x < 3 else 1.0)

    return _backward("hardswish_backward", dout, cache, naive,
                     lambda x, y: np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1)))


def _sigmoid_scalar(v: float) -> float:
    """σ(v) by the two-branch stable formula."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _sigmoid_array(t: Any) -> Any:
    """σ(t) elementwise; exp(−t) overflowing to inf gives the exact limit 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-t))


def silu_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """SiLU (swish) ``x · σ(x)``, any shape.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (the sigmoid as ufuncs).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    return _forward("silu", x, impl,
                    lambda v: v * _sigmoid_scalar(v),  # y = x·σ(x)
                    lambda t: t * _sigmoid_array(t))


def silu_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of SiLU: ``dout · σ(x) · (1 + x · (1 − σ(x)))``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``silu_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    def naive(x: float, y: float) -> float:
        s = _sigmoid_scalar(x)
        return s * (1 + x * (1 - s))  # dy/dx = σ(x)·(1 + x·(1 − σ(x)))

    def fast(x: Any, y: Any) -> Any:
        s = _sigmoid_array(x)
        return s * (1 + x * (1 - s))

    return _backward("silu_backward", dout, cache, naive, fast)


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def gelu_forward(x: Any, impl: str = "fast") -> tuple[Any, dict]:
    """GELU in its exact form ``x · Φ(x) = x/2 · (1 + erf(x/√2))`` (PyTorch's
    ``approximate='none'``), any shape; the fast kernel computes in float64.

    Args:
        x: array of any shape (float32 or float64; other real dtypes become float32).
        impl: ``"naive"`` (a loop over elements with ``math.erf``) or ``"fast"`` (a vectorised
            float64 erf, ``glasscnn.kernels._erf``).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    return _forward(
        "gelu", x, impl,
        lambda v: 0.5 * v * (1 + math.erf(v * _SQRT_HALF)),  # y = x/2·(1 + erf(x/√2))
        lambda t: 0.5 * t * (1 + _erf.erf(t * _SQRT_HALF)))


def gelu_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of GELU: ``dout · (Φ(x) + x · φ(x))``, φ the standard normal density.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``gelu_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    def naive(x: float, y: float) -> float:
        # dy/dx = Φ(x) + x·φ(x) with Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(−x²/2)/√(2π)
        return 0.5 * (1 + math.erf(x * _SQRT_HALF)) + x * math.exp(-0.5 * x * x) * _INV_SQRT_2PI

    def fast(x: Any, y: Any) -> Any:
        x = x.astype(np.float64)
        return 0.5 * (1 + _erf.erf(x * _SQRT_HALF)) + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI

    return _backward("gelu_backward", dout, cache, naive, fast)
