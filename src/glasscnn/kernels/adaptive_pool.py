"""Adaptive pooling over NCHW input to a fixed output size, average and max, with PyTorch's
bins: bin i along an axis of input length I and output length O spans cells
``floor(i·I / O)`` to ``ceil((i + 1)·I / O)`` (exclusive); bins may overlap, and O may
exceed I."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels._common import check_impl, check_ndim, check_positive, get_xp, pair
from glasscnn.kernels.pool import IntPair, _as_float, _check_dout

# adaptive average pooling: up to this many entries in kron(A_h, A_w), one GEMM beats two
# products
_KRON_MAX = 1 << 14


def _adaptive_args(op: str, x: Any, output_size: IntPair, impl: str) -> tuple[Any, tuple[int, int]]:
    """Validate an adaptive op's arguments; return ``(x, (H_out, W_out))``."""
    check_impl(impl, op)
    check_ndim(x, 4, op, "(N, C, H, W)")
    x = _as_float(x)
    out_hw = pair(output_size, "output_size", op)
    check_positive(out_hw, "output_size", op)
    if min(x.shape[2:]) <= 0:
        raise ValueError(f"{op}: input has an empty spatial axis, got shape {x.shape}")
    return x, out_hw


def adaptive_avg_pool2d_forward(
    x: Any, output_size: IntPair, impl: str = "fast"
) -> tuple[Any, dict[str, Any]]:
    """Average pooling to a fixed output size, with PyTorch's bins (see the module).

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        output_size: (H_out, W_out), or an int for both.
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out).

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype.
    """
    x, out_hw = _adaptive_args("adaptive_avg_pool2d", x, output_size, impl)
    cache = {"impl": impl, "shape": x.shape, "output_size": out_hw, "dtype": x.dtype}
    if impl == "naive":
        return _adaptive_naive(x, out_hw), cache
    xp = get_xp(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    a_h, a_w = _bin_matrix(xp, h, oh, x.dtype), _bin_matrix(xp, w, ow, x.dtype)
    if oh * ow == 1 or h * w * oh * ow <= _KRON_MAX:
        # technique: one GEMM, (N·C, H·W) · kron(A_h, A_w)ᵀ with the bin-averaging matrices
        out = (x.reshape(n * c, h * w) @ xp.kron(a_h, a_w).T).reshape(n, c, oh, ow)
    else:
        # technique: two matrix products with the bin-averaging matrices, out = A_h · x · A_wᵀ
        out = xp.matmul(xp.matmul(a_h, x), a_w.T)  # (N, C, H_out, W) → (N, C, H_out, W_out)
    return out, cache


def adaptive_avg_pool2d_backward(dout: Any, cache: dict[str, Any]) -> tuple[Any]:
    """Gradient of adaptive average pooling: dout / bin size spread over each bin.

    Args:
        dout: upstream gradient, shape (N, C, H_out, W_out).
        cache: from ``adaptive_avg_pool2d_forward``.

    Returns:
        ``(dx,)`` with dx shaped (N, C, H, W), in the input's dtype.
    """
    n, c, h, w = cache["shape"]
    oh, ow = cache["output_size"]
    dout = _check_dout("adaptive_avg_pool2d_backward", dout, (n, c, oh, ow), cache["dtype"])
    if cache["impl"] == "naive":
        return (_adaptive_naive_backward(dout, cache["shape"]),)
    xp = get_xp(dout)
    if oh * ow == 1:
        # technique: one broadcast division of each dout over its whole plane
        dx = xp.empty((n, c, h, w), dtype=dout.dtype)
        xp.divide(dout, h * w, out=dx)
        return (dx,)
    a_h, a_w = _bin_matrix(xp, h, oh, dout.dtype), _bin_matrix(xp, w, ow, dout.dtype)
    if h * w * oh * ow <= _KRON_MAX:
        # technique: one GEMM with the transposed matrix, (N·C, H_out·W_out) · kron(A_h, A_w)
        dx = (dout.reshape(n * c, oh * ow) @ xp.kron(a_h, a_w)).reshape(n, c, h, w)
        return (dx,)
    # technique: the transposed matrix products, dx = A_hᵀ · dout · A_w
    return (xp.matmul(xp.matmul(a_h.T, dout), a_w),)


def _bin_bounds(size: int, n_out: int, i: int) -> tuple[int, int]:
    """PyTorch's adaptive bin i: ``[floor(i·size / n_out), ceil((i + 1)·size / n_out))``."""
    return (i * size) // n_out, -(-(i + 1) * size // n_out)


def _bin_matrix(xp: Any, size: int, n_out: int, dtype: Any) -> Any:
    """(n_out, size) matrix whose row i averages the cells of adaptive bin i."""
    matrix = np.zeros((n_out, size))
    for i in range(n_out):
        start, end = _bin_bounds(size, n_out, i)
        matrix[i, start:end] = 1.0 / (end - start)
    return xp.asarray(matrix, dtype=dtype)


def _adaptive_naive(x: Any, out_hw: tuple[int, int]) -> Any:
    """Loop nest over output positions, averaging each bin."""
    n_, c_, h, w = x.shape
    out = get_xp(x).empty((n_, c_, *out_hw), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for i in range(out_hw[0]):
                for j in range(out_hw[1]):
                    # out[n, c, i, j] = mean of x[n, c, floor(i·H/H_out) : ceil((i+1)·H/H_out),
                    #                             floor(j·W/W_out) : ceil((j+1)·W/W_out)]
                    h0, h1 = _bin_bounds(h, out_hw[0], i)
                    w0, w1 = _bin_bounds(w, out_hw[1], j)
                    out[n, c, i, j] = x[n, c, h0:h1, w0:w1].sum() / ((h1 - h0) * (w1 - w0))
    return out


def _adaptive_naive_backward(dout: Any, shape: tuple[int, ...]) -> Any:
    """Loop nest: add dout[n, c, i, j] / bin size to every cell of its bin."""
    dx = get_xp(dout).zeros(shape, dtype=dout.dtype)
    n_, c_, oh, ow = dout.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    h0, h1 = _bin_bounds(shape[2], oh, i)
                    w0, w1 = _bin_bounds(shape[3], ow, j)
                    dx[n, c, h0:h1, w0:w1] += dout[n, c, i, j] / ((h1 - h0) * (w1 - w0))
    return dx


def adaptive_max_pool2d_forward(
    x: Any, output_size: IntPair, impl: str = "fast"
) -> tuple[Any, dict[str, Any]]:
    """Max pooling to a fixed output size, with PyTorch's bins (see the module).

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        output_size: (H_out, W_out), or an int for both.
        impl: ``"fast"`` (one gather of every bin, padded to the longest by repeating its
            last cell, then a max) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out).

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype. The cache holds each output's
        argmax (:func:`adaptive_max_pool2d_indices`).
    """
    x, out_hw = _adaptive_args("adaptive_max_pool2d", x, output_size, impl)
    n, c, h, w = x.shape
    if impl == "naive":
        out = np.empty((n, c, *out_hw), dtype=x.dtype)
        idx = np.empty((n, c, *out_hw), dtype=np.int64)
        for b, ch, i, j in np.ndindex(out.shape):
            # out[n, c, i, j] = max of the bin x[n, c, floor(i·H/H_out) : ceil((i+1)·H/H_out),
            #                                     floor(j·W/W_out) : ceil((j+1)·W/W_out)]
            h0, h1 = _bin_bounds(h, out_hw[0], i)
            w0, w1 = _bin_bounds(w, out_hw[1], j)
            best = (h0, w0)
            for r in range(h0, h1):
                for q in range(w0, w1):
                    if x[b, ch, r, q] > x[b, ch, best[0], best[1]]:  # ties: the first stays
                        best = (r, q)
            out[b, ch, i, j] = x[b, ch, best[0], best[1]]
            idx[b, ch, i, j] = best[0] * w + best[1]
    else:
        xp = get_xp(x)
        rows, cols = _bin_cells(h, out_hw[0]), _bin_cells(w, out_hw[1])  # (O, L) each
        lh, lw = rows.shape[1], cols.shape[1]
        bins = x[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (N, C, Oh, Lh, Ow, Lw)
        bins = bins.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, *out_hw, lh * lw)
        best = bins.argmax(axis=-1)  # the first maximum in row-major bin order
        out = xp.take_along_axis(bins, best[..., None], axis=-1)[..., 0]
        flat = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(*out_hw, lh * lw)
        idx = xp.take_along_axis(xp.broadcast_to(flat, bins.shape), best[..., None], axis=-1)
        idx = idx[..., 0].astype(np.int64)
    return out, {"impl": impl, "shape": x.shape, "indices": idx, "dtype": x.dtype}


def adaptive_max_pool2d_backward(dout: Any, cache: dict[str, Any]) -> tuple[Any]:
    """Gradient of adaptive max pooling: each output's gradient goes to its bin's argmax
    (bins may overlap: the gradients add).

    Args:
        dout: upstream gradient, shape (N, C, H_out, W_out).
        cache: from ``adaptive_max_pool2d_forward``.

    Returns:
        ``(dx,)`` with dx shaped (N, C, H, W), in the input's dtype.
    """
    n, c, h, w = cache["shape"]
    idx = cache["indices"]
    dout = _check_dout("adaptive_max_pool2d_backward", dout, idx.shape, cache["dtype"])
    if cache["impl"] == "naive":
        dx = np.zeros((n, c, h * w), dtype=dout.dtype)
        for b, ch, i, j in np.ndindex(dout.shape):
            dx[b, ch, idx[b, ch, i, j]] += dout[b, ch, i, j]  # dx at the bin's argmax
        return (dx.reshape(n, c, h, w),)
    # technique: one bincount over the flat indices of every (n, c) plane
    xp = get_xp(dout)
    planes = (xp.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
    dx = xp.bincount((idx + planes).ravel(), weights=dout.ravel().astype(np.float64),
                     minlength=n * c * h * w)
    return (dx.astype(dout.dtype).reshape(n, c, h, w),)


def adaptive_max_pool2d_indices(cache: dict[str, Any]) -> Any:
    """PyTorch's ``return_indices`` of an adaptive max pooling: each output's argmax as a
    flat index ``h·W + w`` into its (n, c) plane (the first maximum on ties).

    Args:
        cache: from ``adaptive_max_pool2d_forward`` (both kernels record the indices).

    Returns:
        int64 array of shape (N, C, H_out, W_out).
    """
    return cache["indices"]


def _bin_cells(size: int, n_out: int) -> np.ndarray:
    """(n_out, L) cell indices of each adaptive bin, L the longest bin; shorter bins repeat
    their last cell (which changes neither their max nor which cell is first to reach it)."""
    bounds = [_bin_bounds(size, n_out, i) for i in range(n_out)]
    longest = max(end - start for start, end in bounds)
    return np.array([[min(start + t, end - 1) for t in range(longest)] for start, end in bounds])
