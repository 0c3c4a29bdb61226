"""Normalisation within each sample: layer norm (over the trailing axes) and group norm
(over groups of channels), with PyTorch's semantics (biased variance, ε inside the root).

Both see their input as rows of m values normalised together: layer norm's rows are the
trailing ``normalized_shape`` block of each leading index, group norm's the
(C/G)·spatial values of one group of one sample.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_dout, check_impl, get_xp


def _check_eps(eps: Any, op: str) -> None:
    if isinstance(eps, bool) or not isinstance(eps, Real) or not eps >= 0.0:
        raise ValueError(f"{op}: eps must be a number >= 0, got {eps!r}")


def _affine_param(v: Any, name: str, shape: tuple[int, ...], op: str, x_shape: tuple[int, ...],
                  dtype: Any) -> Any:
    """``v`` as an array of ``shape`` in ``dtype`` (``None`` stays ``None``), or raise."""
    if v is None:
        return None
    arr = as_float_array(v, op)
    if arr.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape} for input of shape {x_shape}, "
                         f"got shape {arr.shape}")
    return arr.astype(dtype, copy=False)


def _normalize_rows(rows: Any, eps: float, impl: str) -> tuple[Any, Any]:
    """x̂ of every row of ``rows`` (R, m) and each row's 1/√(σ² + ε): shapes (R, m), (R,)."""
    if impl == "naive":
        r, m = rows.shape
        xhat = np.empty_like(rows)
        inv_std = np.empty(r, dtype=rows.dtype)
        for i in range(r):
            mean = sum(float(v) for v in rows[i]) / m  # μ = (1/m) Σ x
            var = sum((float(v) - mean) ** 2 for v in rows[i]) / m  # σ² = (1/m) Σ (x − μ)²
            inv_std[i] = 1.0 / math.sqrt(var + eps)
            for j in range(m):
                xhat[i, j] = (float(rows[i, j]) - mean) * float(inv_std[i])  # (x − μ)/√(σ² + ε)
        return xhat, inv_std
    xp = get_xp(rows)
    centred = rows - rows.mean(axis=1, keepdims=True)
    inv_std = 1.0 / xp.sqrt((centred * centred).mean(axis=1) + eps)  # (R,)
    centred *= inv_std[:, None]
    return centred, inv_std.astype(rows.dtype, copy=False)


def _normalize_rows_backward(dxhat: Any, xhat: Any, inv_std: Any, impl: str) -> Any:
    """dx of every row from dL/dx̂: ``(1/σ)·(dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))``."""
    if impl == "naive":
        r, m = dxhat.shape
        dx = np.empty_like(dxhat)
        for i in range(r):
            mean_d = sum(float(v) for v in dxhat[i]) / m
            mean_dx = sum(float(a) * float(b) for a, b in zip(dxhat[i], xhat[i], strict=True)) / m
            for j in range(m):
                # dx = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
                dx[i, j] = float(inv_std[i]) * (float(dxhat[i, j]) - mean_d
                                                - float(xhat[i, j]) * mean_dx)
        return dx
    dx = dxhat - dxhat.mean(axis=1, keepdims=True)
    dx -= xhat * (dxhat * xhat).mean(axis=1, keepdims=True)
    dx *= inv_std[:, None]
    return dx


def layer_norm_forward(
    x: Any, normalized_shape: int | tuple[int, ...], weight: Any = None, bias: Any = None,
    eps: float = 1e-5, impl: str = "fast",
) -> tuple[Any, dict]:
    """Layer normalisation over the trailing axes, as ``torch.nn.functional.layer_norm``.

    Formula: for each index of the leading axes, ``y = γ ⊙ (x − μ) / √(σ² + ε) + β`` with
    μ, σ² the mean and biased variance of its trailing ``normalized_shape`` block, and γ, β
    of shape ``normalized_shape``.

    Args:
        x: input of shape (*, *normalized_shape).
        normalized_shape: the trailing shape to normalise over (an int for one axis).
        weight: γ of shape ``normalized_shape``, or ``None`` for 1.
        bias: β of shape ``normalized_shape``, or ``None`` for 0.
        eps: added to the variance before the square root, >= 0.
        impl: ``"naive"`` (loops over blocks and their values) or ``"fast"`` (row-wise
            vectorised mean and variance of an (R, m) view).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    op = "layer_norm"
    check_impl(impl, op)
    x = as_float_array(x, op)
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(
        normalized_shape)
    if (not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0
                         for d in shape) or x.shape[x.ndim - len(shape):] != shape
            or x.ndim < len(shape)):
        raise ValueError(f"{op}: normalized_shape must be positive ints matching the trailing "
                         f"axes of the input, got {normalized_shape!r} for input of shape "
                         f"{x.shape}")
    _check_eps(eps, op)
    w = _affine_param(weight, "weight", shape, op, x.shape, x.dtype)
    b = _affine_param(bias, "bias", shape, op, x.shape, x.dtype)
    m = math.prod(shape)
    xhat, inv_std = _normalize_rows(x.reshape(-1, m), float(eps), impl)
    out = xhat.reshape(x.shape)
    if w is not None or b is not None:
        out = out * (1 if w is None else w) + (0 if b is None else b)
    cache = {"impl": impl, "xhat": xhat, "inv_std": inv_std, "w": w, "has_bias": b is not None,
             "shape": x.shape, "norm_shape": shape, "m": m}
    return out.astype(x.dtype, copy=False), cache


def layer_norm_backward(dout: Any, cache: dict) -> tuple[Any, Any, Any]:
    """Gradients of layer norm.

    ``dγ = Σ_leading dout ⊙ x̂``, ``dβ = Σ_leading dout``, and per block with dx̂ = dout ⊙ γ:
    ``dx = (1/√(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``layer_norm_forward``.

    Returns:
        ``(dx, dweight, dbias)``, ``None`` for an absent weight or bias.
    """
    shape, m, w = cache["shape"], cache["m"], cache["w"]
    dout = check_dout(dout, shape, "layer_norm_backward")
    xhat = cache["xhat"]
    d_rows = dout.reshape(-1, m).astype(xhat.dtype, copy=False)
    dxhat = d_rows if w is None else d_rows * w.reshape(1, m)
    dx = _normalize_rows_backward(dxhat, xhat, cache["inv_std"], cache["impl"])
    norm_shape = cache["norm_shape"]
    dw = None if w is None else (d_rows * xhat).sum(axis=0).reshape(norm_shape)
    db = d_rows.sum(axis=0).reshape(norm_shape) if cache["has_bias"] else None
    return dx.reshape(shape), dw, db


def group_norm_forward(
    x: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5,
    impl: str = "fast",
) -> tuple[Any, dict]:
    """Group normalisation, as ``torch.nn.functional.group_norm``.

    Formula: the C channels split into G consecutive groups; per sample and group,
    ``x̂ = (x − μ) / √(σ² + ε)`` with μ, σ² the mean and biased variance of its
    (C/G)·spatial values; then ``y = γ_c · x̂ + β_c`` per channel.

    Args:
        x: input of shape (N, C, *) (any number of spatial axes, none included).
        num_groups: G, dividing C.
        weight: γ of shape (C,), or ``None`` for 1.
        bias: β of shape (C,), or ``None`` for 0.
        eps: added to the variance before the square root, >= 0.
        impl: ``"naive"`` (loops over groups and their values) or ``"fast"`` (row-wise
            vectorised mean and variance of an (N·G, m) view).

    Returns:
        ``(out, cache)``, ``out`` shaped and typed like ``x``.
    """
    op = "group_norm"
    check_impl(impl, op)
    x = as_float_array(x, op)
    if x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{op}: expected input of shape (N, C, *), got shape {x.shape}")
    c = x.shape[1]
    if (isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer))
            or num_groups <= 0 or c % num_groups):
        raise ValueError(f"{op}: num_groups must be a positive int dividing the {c} channels "
                         f"of input of shape {x.shape}, got {num_groups!r}")
    _check_eps(eps, op)
    w = _affine_param(weight, "weight", (c,), op, x.shape, x.dtype)
    b = _affine_param(bias, "bias", (c,), op, x.shape, x.dtype)
    n = x.shape[0]
    xhat, inv_std = _normalize_rows(x.reshape(n * num_groups, -1), float(eps), impl)
    out = xhat.reshape(x.shape)
    vec = (c,) + (1,) * (x.ndim - 2)  # a per-channel vector against (N, C, *)
    if w is not None or b is not None:
        out = out * (1 if w is None else w.reshape(vec)) + (0 if b is None else b.reshape(vec))
    cache = {"impl": impl, "xhat": xhat, "inv_std": inv_std, "w": w, "has_bias": b is not None,
             "shape": x.shape, "groups": int(num_groups)}
    return out.astype(x.dtype, copy=False), cache


def group_norm_backward(dout: Any, cache: dict) -> tuple[Any, Any, Any]:
    """Gradients of group norm.

    ``dγ_c = Σ_{n, spatial} dout ⊙ x̂``, ``dβ_c = Σ_{n, spatial} dout``, and per sample and
    group with dx̂ = dout · γ_c: ``dx = (1/√(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))``.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``group_norm_forward``.

    Returns:
        ``(dx, dweight, dbias)``, ``None`` for an absent weight or bias.
    """
    shape, w, g = cache["shape"], cache["w"], cache["groups"]
    dout = check_dout(dout, shape, "group_norm_backward")
    xhat = cache["xhat"]
    n, c = shape[:2]
    dout = dout.astype(xhat.dtype, copy=False)
    vec = (c,) + (1,) * (len(shape) - 2)
    dxhat = dout if w is None else dout * w.reshape(vec)
    dx = _normalize_rows_backward(dxhat.reshape(n * g, -1), xhat, cache["inv_std"],
                                  cache["impl"])
    per_channel = (n, c, -1)
    dw = None if w is None else (dout.reshape(per_channel)
                                 * xhat.reshape(per_channel)).sum(axis=(0, 2))
    db = dout.reshape(per_channel).sum(axis=(0, 2)) if cache["has_bias"] else None
    return dx.reshape(shape), dw, db
