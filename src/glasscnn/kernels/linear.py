"""Fully connected layer (affine map) and flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import as_float_array, check_dout, check_impl, check_ndim, get_xp


def _matmul(xp: Any) -> Any:
    """The GEMM to use: NumPy's through the kernel thread pool (no 2-thread BLAS stalls)."""
    return _parallel.matmul if xp is np else xp.matmul


def linear_forward(
    x: Any, weight: Any, bias: Any | None = None, impl: str = "fast"
) -> tuple[Any, dict]:
    """Affine map ``x @ weight.T + bias``, as ``torch.nn.functional.linear``.

    Args:
        x: input of shape (N, in_features).
        weight: shape (out_features, in_features).
        bias: shape (out_features,), or ``None``.
        impl: ``"naive"`` (a loop nest over samples, outputs, inputs) or ``"fast"``
            (one matrix product).

    Returns:
        ``(out, cache)`` with ``out`` of shape (N, out_features) in ``x``'s dtype.
    """
    check_impl(impl, "linear")
    x = as_float_array(x, "linear")
    weight = as_float_array(weight, "linear")
    check_ndim(x, 2, "linear", "(N, in_features)")
    if weight.ndim != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"linear: weight must have shape (out_features, {x.shape[1]}) for input of shape "
            f"{x.shape}, got weight shape {weight.shape}"
        )
    n, in_features = x.shape
    out_features = weight.shape[0]
    if bias is not None:
        bias = as_float_array(bias, "linear")
        if bias.shape != (out_features,):
            raise ValueError(
                f"linear: bias must have shape ({out_features},), got shape {bias.shape}"
            )
    w = weight.astype(x.dtype, copy=False)
    b = None if bias is None else bias.astype(x.dtype, copy=False)
    if impl == "naive":
        out = np.empty((n, out_features), dtype=x.dtype)
        for i in range(n):
            for o in range(out_features):
                acc = 0.0 if b is None else b[o]
                for k in range(in_features):
                    acc += x[i, k] * w[o, k]  # y[i, o] = b[o] + Σ_k x[i, k] · W[o, k]
                out[i, o] = acc
    else:
        mm = _matmul(get_xp(x))
        out = mm(x, w.T)  # one GEMM (N, in) @ (in, out), split over the kernel threads
        if b is not None:
            out += b
    cache = {
        "impl": impl, "x": x, "w": w, "weight_dtype": weight.dtype,
        "bias_dtype": None if bias is None else bias.dtype,
    }
    return out, cache


def linear_backward(
    dout: Any, cache: dict, need_dx: bool = True, dw_out: Any | None = None
) -> tuple[Any, Any, Any | None]:
    """Gradients of the affine map.

    Formulas: ``dx = dout @ W``, ``dW = dout.T @ x``, ``db = Σ_i dout[i]``.

    Args:
        dout: upstream gradient of shape (N, out_features).
        cache: the cache from ``linear_forward``.
        need_dx: compute the input gradient; ``False`` skips it (``dx`` is ``None``).
        dw_out: optional array of shape (out_features, in_features) for the fast kernel to
            write ``dweight`` into (then returned as ``dweight``), when its dtype is the
            input's; a large weight's gradient then needs no buffer of its own.

    Returns:
        ``(dx, dweight, dbias)``: shapes (N, in_features), (out_features, in_features),
        (out_features,) in the dtypes of ``x``, ``weight``, ``bias``; ``dbias`` is ``None``
        when the forward had no bias.
    """
    x, w = cache["x"], cache["w"]
    n, in_features = x.shape
    out_features = w.shape[0]
    dout = check_dout(dout, (n, out_features), "linear_backward")
    has_bias = cache["bias_dtype"] is not None
    if cache["impl"] == "naive":
        dx = np.zeros_like(x)
        dw = np.zeros_like(w)
        db = np.zeros(out_features, dtype=x.dtype)
        for i in range(n):
            for o in range(out_features):
                g = dout[i, o]
                db[o] += g  # db[o] = Σ_i dout[i, o]
                for k in range(in_features):
                    dx[i, k] += g * w[o, k]  # dx[i, k] = Σ_o dout[i, o] · W[o, k]
                    dw[o, k] += g * x[i, k]  # dW[o, k] = Σ_i dout[i, o] · x[i, k]
    else:
        mm = _matmul(get_xp(x))
        dout = dout.astype(x.dtype, copy=False)
        dx = mm(dout, w) if need_dx else None  # two GEMMs and a column sum
        if dw_out is not None and dw_out.dtype == x.dtype and dw_out.shape == w.shape:
            dw = mm(dout.T, x, out=dw_out)
        else:
            dw = mm(dout.T, x)
        db = dout.sum(axis=0) if has_bias else None
    dw = dw.astype(cache["weight_dtype"], copy=False)
    db = db.astype(cache["bias_dtype"], copy=False) if has_bias else None
    return (dx if need_dx else None), dw, db


def flatten_forward(x: Any, start_dim: int = 1, impl: str = "fast") -> tuple[Any, dict]:
    """Merge every axis from ``start_dim`` on into one, as ``torch.flatten(x, start_dim)``.

    Output shape: ``x.shape[:start_dim] + (prod(x.shape[start_dim:]),)``, e.g.
    (N, C, H, W) → (N, C·H·W) for ``start_dim=1``.

    Args:
        x: array with at least one axis.
        start_dim: first axis to merge; negative values count from the end.
        impl: ``"naive"`` (a loop over elements computing row-major offsets) or
            ``"fast"`` (a reshape, a view when ``x`` is contiguous).

    Returns:
        ``(out, cache)``.
    """
    check_impl(impl, "flatten")
    x = as_float_array(x, "flatten")
    if x.ndim == 0:
        raise ValueError(f"flatten: expected an array with at least one axis, got shape {x.shape}")
    if isinstance(start_dim, bool) or not isinstance(start_dim, (int, np.integer)) or not (
        -x.ndim <= start_dim < x.ndim
    ):
        raise ValueError(
            f"flatten: start_dim must be an int in [{-x.ndim}, {x.ndim - 1}] for input of "
            f"shape {x.shape}, got {start_dim!r}"
        )
    start = int(start_dim) % x.ndim
    out_shape = (*x.shape[:start], int(np.prod(x.shape[start:])))
    if impl == "naive":
        out = np.empty(out_shape, dtype=x.dtype)
        for idx in np.ndindex(x.shape):
            offset = 0
            for d in range(start, x.ndim):
                offset = offset * x.shape[d] + idx[d]  # row-major offset within the merged axes
            out[(*idx[:start], offset)] = x[idx]
    else:
        out = x.reshape(out_shape)  # reshape: no copy for a contiguous input
    return out, {"impl": impl, "x_shape": x.shape, "start": start, "dtype": x.dtype}


def flatten_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of flatten: ``dout`` reshaped back to the input's shape.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``flatten_forward``.

    Returns:
        ``(dx,)`` of the input's shape.
    """
    x_shape, start = cache["x_shape"], cache["start"]
    out_shape = (*x_shape[:start], int(np.prod(x_shape[start:])))
    dout = check_dout(dout, out_shape, "flatten_backward")
    if cache["impl"] == "naive":
        dx = np.empty(x_shape, dtype=cache["dtype"])
        for idx in np.ndindex(x_shape):
            offset = 0
            for d in range(start, len(x_shape)):
                offset = offset * x_shape[d] + idx[d]
            dx[idx] = dout[(*idx[:start], offset)]  # dx[idx] = dout[idx[:s], offset(idx[s:])]
        return (dx,)
    return (dout.astype(cache["dtype"], copy=False).reshape(x_shape),)
