"""Pooling over NCHW input: max, average and adaptive average, with PyTorch's semantics.

Every window op maps (N, C, H, W) to (N, C, H_out, W_out) with, per spatial axis,
``out = floor((I + 2P - K) / S) + 1``; the stride defaults to the kernel size, the padding
may be at most half the kernel (as PyTorch), and ``ceil_mode`` is not supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import (
    check_impl,
    check_ndim,
    check_non_negative,
    check_positive,
    conv_output_size,
    get_xp,
    pair,
)

IntPair = int | tuple[int, int]

# batch chunk of the max-pool backward: measured 1.3× faster for 3×3 s2 than one pass
_CHUNK_BYTES = 1 << 19
# max pooling: inputs of at least this many elements go to the kernels' thread pool
_PARALLEL_MIN_ELEMENTS = 1 << 18
# adaptive pooling: up to this many entries in kron(A_h, A_w), one GEMM beats two products
_KRON_MAX = 1 << 14


def _as_float(x: Any) -> Any:
    """``x`` as an array; non-floating input becomes float32."""
    xp = get_xp(x)
    x = xp.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(xp.float32)


def _window_args(
    op: str, x: Any, kernel_size: IntPair, stride: IntPair | None, padding: IntPair, impl: str
) -> tuple[Any, tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate a window op's arguments; return ``(x, kernel, stride, padding, (H_out, W_out))``."""
    check_impl(impl, op)
    check_ndim(x, 4, op, "(N, C, H, W)")
    x = _as_float(x)
    k = pair(kernel_size, "kernel_size", op)
    check_positive(k, "kernel_size", op)
    s = k if stride is None else pair(stride, "stride", op)
    check_positive(s, "stride", op)
    p = pair(padding, "padding", op)
    check_non_negative(p, "padding", op)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: padding must be at most half the kernel size, got padding {p} "
            f"for kernel_size {k}"
        )
    h, w = x.shape[2:]
    oh, ow = conv_output_size(h, k[0], s[0], p[0]), conv_output_size(w, k[1], s[1], p[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"{op}: kernel_size {k} is larger than the padded input "
            f"{h + 2 * p[0]}x{w + 2 * p[1]} (input shape {x.shape}, padding {p})"
        )
    return x, k, s, p, (oh, ow)


def _check_dout(op: str, dout: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``dout`` as an array of ``dtype``; ``ValueError`` unless shaped like the forward output."""
    xp = get_xp(dout)
    dout = xp.asarray(dout, dtype=dtype)
    if dout.shape != tuple(shape):
        raise ValueError(f"{op}: expected dout of shape {tuple(shape)}, got shape {dout.shape}")
    return dout


def _win(offset: int, stride: int, count: int) -> slice:
    """The cells at ``offset`` inside each of ``count`` windows spaced ``stride`` apart."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _pad(x: Any, padding: tuple[int, int], value: float) -> Any:
    """``x`` (N, C, H, W) padded with ``value`` to (N, C, H + 2P_h, W + 2P_w); ``x`` if P = 0."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_xp(x)
    n, c, h, w = x.shape
    out = xp.full_like(x, value, shape=(n, c, h + 2 * ph, w + 2 * pw))  # x's memory layout
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def _unpad(dxp: Any, padding: tuple[int, int], shape: tuple[int, ...]) -> Any:
    """The centre of a padded gradient, shaped like the unpadded input."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return dxp
    return dxp[:, :, ph : ph + shape[2], pw : pw + shape[3]].copy(order="K")  # same layout


def _separable_reduce(
    ufunc: Any, xpad: Any, k: tuple[int, int], s: tuple[int, int], out_hw: tuple[int, int],
    out: Any = None,
) -> Any:
    """Reduce every window with ``ufunc`` along the rows, then along the columns.

    Shapes: ``xpad`` (N, C, Hp, Wp) → rows (N, C, H_out, Wp) → output (N, C, H_out, W_out),
    written into ``out`` when given.
    """
    oh, ow = out_hw
    rows = [xpad[:, :, _win(d, s[0], oh), :] for d in range(k[0])]
    r = ufunc(rows[0], rows[1]) if k[0] > 1 else rows[0]  # (N, C, H_out, Wp)
    for v in rows[2:]:
        ufunc(r, v, out=r)
    cols = [r[:, :, :, _win(d, s[1], ow)] for d in range(k[1])]
    if k[1] > 1:
        out = ufunc(cols[0], cols[1], out=out)  # (N, C, H_out, W_out)
    elif out is None:
        out = cols[0].copy()
    else:
        get_xp(out).copyto(out, cols[0])
    for v in cols[2:]:
        ufunc(out, v, out=out)
    return out


def _batch_parts(xp: Any, xpad: Any) -> tuple[list[slice], int]:
    """Batch slices of about ``_CHUNK_BYTES`` of ``xpad`` each, so that a window op's passes
    stay in cache, and the threads to run them on (:func:`_parallel.batch_parts`)."""
    return _parallel.batch_parts(xp, xpad, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)


def _max_pool_fast(x: Any, xpad: Any, k: tuple[int, int], s: tuple[int, int],
                   out_hw: tuple[int, int]) -> Any:
    """Separable strided max over batch chunks, on the kernels' thread pool when large."""
    xp = get_xp(x)
    parts, slots = _batch_parts(xp, xpad)
    if len(parts) == 1:
        return _separable_reduce(xp.maximum, xpad, k, s, out_hw)
    out = xp.empty_like(x, shape=(*x.shape[:2], *out_hw))  # the layout of x (K order)

    def chunk(i: int, slot: int) -> None:
        _separable_reduce(xp.maximum, xpad[parts[i]], k, s, out_hw, out=out[parts[i]])

    _parallel.run_chunks(chunk, len(parts), slots, blas=False)
    return out


def max_pool2d_forward(
    x: Any, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Max pooling; the padding is -inf, so padded cells never win.

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        kernel_size: K, an int or (K_h, K_w).
        stride: S, an int or a pair; defaults to ``kernel_size``.
        padding: P, an int or a pair, at most K // 2 per axis.
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out) with H_out = floor((H + 2P_h − K_h) / S_h) + 1
    and W_out = floor((W + 2P_w − K_w) / S_w) + 1.

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype. The cache holds references to ``x``
        and ``out``, which must not be modified in place before the backward pass.
    """
    op = "max_pool2d"
    x, k, s, p, out_hw = _window_args(op, x, kernel_size, stride, padding, impl)
    cache = {"impl": impl, "kernel": k, "stride": s, "padding": p, "shape": x.shape}
    if impl == "naive":
        out = _max_pool_naive(x, k, s, p, out_hw)
        cache["x"] = x
    else:
        # technique: separable strided max, rows then columns (beats both reshape+max and
        # the max of K_h·K_w strided slices, for 2×2 s2 as for overlapping 3×3 s2)
        xpad = _pad(x, p, -np.inf)
        out = _max_pool_fast(x, xpad, k, s, out_hw)
        cache["xpad"] = xpad
    cache["out"] = out
    return out, cache


def max_pool2d_backward(dout: Any, cache: dict[str, Any]) -> tuple[Any]:
    """Gradient of max pooling: each output's gradient goes to its window's maximum.

    Ties go to the first maximum in row-major window order, as PyTorch; overlapping windows
    accumulate. A window whose maximum is NaN passes no gradient in the fast kernel.

    Args:
        dout: upstream gradient, shape (N, C, H_out, W_out).
        cache: from ``max_pool2d_forward``.

    Returns:
        ``(dx,)`` with dx shaped (N, C, H, W), in the input's dtype.
    """
    out = cache["out"]
    dout = _check_dout("max_pool2d_backward", dout, out.shape, out.dtype)
    if cache["impl"] == "naive":
        return (_max_pool_naive_backward(dout, cache),)
    return (_max_pool_fast_backward(dout, cache),)


def _max_pool_naive(
    x: Any, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], out_hw: tuple[int, int]
) -> Any:
    """Loop nest over output positions; the window is clipped to the real cells."""
    n_, c_ = x.shape[:2]
    out = get_xp(x).empty((n_, c_, *out_hw), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for i in range(out_hw[0]):
                for j in range(out_hw[1]):
                    # out[n, c, i, j] = max of x[n, c, i·S_h − P_h + a, j·S_w − P_w + b]
                    # over 0 ≤ a < K_h, 0 ≤ b < K_w, skipping cells outside the input
                    h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                    window = x[n, c, max(h0, 0) : h0 + k[0], max(w0, 0) : w0 + k[1]]
                    out[n, c, i, j] = window.max()
    return out


def _max_pool_naive_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Loop nest: add each dout[n, c, i, j] at the first argmax of its window."""
    x, (kh, kw), (sh, sw), (ph, pw) = cache["x"], cache["kernel"], cache["stride"], cache["padding"]
    dx = get_xp(x).zeros_like(x)
    n_, c_, oh, ow = dout.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    h0, w0 = max(i * sh - ph, 0), max(j * sw - pw, 0)
                    window = x[n, c, h0 : i * sh - ph + kh, w0 : j * sw - pw + kw]
                    a, b = divmod(int(window.argmax()), window.shape[1])  # first max, row-major
                    dx[n, c, h0 + a, w0 + b] += dout[n, c, i, j]
    return dx


def _max_pool_fast_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Route the gradient a batch chunk at a time, so that the K_h·K_w passes stay in cache;
    the chunks run on the kernels' thread pool when the input is large."""
    xp = get_xp(dout)
    xpad, out, k = cache["xpad"], cache["out"], cache["kernel"]
    if dout.strides != out.strides:  # e.g. NCHW dout for a channels-last out: one small
        dout_like_out = xp.empty_like(out)  # copy, so that the passes below run in order
        xp.copyto(dout_like_out, dout)
        dout = dout_like_out
    tiled = k == cache["stride"] and xpad.shape[2:] == (out.shape[2] * k[0], out.shape[3] * k[1])
    dxp = xp.empty_like(xpad) if tiled else xp.zeros_like(xpad)  # tiled: every cell written
    parts, slots = _batch_parts(xp, xpad)

    def chunk(i: int, slot: int) -> None:
        part = parts[i]
        _route_to_max(dout[part], xpad[part], out[part], dxp[part], k, cache["stride"])

    _parallel.run_chunks(chunk, len(parts), slots, blas=False)
    return _unpad(dxp, cache["padding"], cache["shape"])


def _route_to_max(
    dout: Any, xpad: Any, out: Any, dxp: Any, k: tuple[int, int], s: tuple[int, int]
) -> None:
    """Add each dout to ``dxp`` at its window's first maximum, in place.

    Technique: a loop over the K_h·K_w window offsets; each strided slice of ``xpad`` is
    compared with the max, and outputs already routed are masked out (no ``np.add.at``).
    """
    xp = get_xp(dout)
    (kh, kw), (sh, sw) = k, s
    oh, ow = out.shape[2:]
    overlap = kh > sh or kw > sw
    hit = xp.empty_like(out, dtype=bool)  # the layout of out (NCHW or channels-last)
    remaining = xp.empty_like(out, dtype=bool)  # outputs whose gradient is not routed yet
    tmp = xp.empty_like(dout) if overlap else None
    for a in range(kh):  # row-major offsets: the first maximum wins ties
        for b in range(kw):
            win = (slice(None), slice(None), _win(a, sh, oh), _win(b, sw, ow))
            xp.equal(xpad[win], out, out=hit)
            if a == b == 0:
                xp.logical_not(hit, out=remaining)
            elif a < kh - 1 or b < kw - 1:
                xp.logical_and(hit, remaining, out=hit)
                xp.logical_xor(remaining, hit, out=remaining)
            else:  # last offset: nothing routed after it
                xp.logical_and(hit, remaining, out=hit)
            if overlap:
                xp.multiply(dout, hit, out=tmp)
                xp.add(dxp[win], tmp, out=dxp[win])
            else:
                xp.multiply(dout, hit, out=dxp[win])


def avg_pool2d_forward(
    x: Any, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    count_include_pad: bool = True, impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Average pooling with zero padding.

    The divisor is K_h·K_w when ``count_include_pad`` (PyTorch's default), else the number
    of real (non-padded) cells in the window.

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        kernel_size: K, an int or (K_h, K_w).
        stride: S, an int or a pair; defaults to ``kernel_size``.
        padding: P, an int or a pair, at most K // 2 per axis.
        count_include_pad: whether padded cells count in the divisor.
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out) with H_out = floor((H + 2P_h − K_h) / S_h) + 1
    and W_out = floor((W + 2P_w − K_w) / S_w) + 1.

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype.
    """
    op = "avg_pool2d"
    x, k, s, p, out_hw = _window_args(op, x, kernel_size, stride, padding, impl)
    cache = {"impl": impl, "kernel": k, "stride": s, "padding": p, "shape": x.shape,
             "dtype": x.dtype, "count_include_pad": bool(count_include_pad)}
    if impl == "naive":
        return _avg_pool_naive(x, k, s, p, out_hw, bool(count_include_pad)), cache
    # technique: separable strided sum, rows then columns, then one division
    xp = get_xp(x)
    divisor = _avg_divisor(xp, x.shape, k, s, p, out_hw, bool(count_include_pad), x.dtype)
    out = _separable_reduce(xp.add, _pad(x, p, 0.0), k, s, out_hw)
    xp.divide(out, divisor, out=out)
    cache["divisor"] = divisor
    return out, cache


def avg_pool2d_backward(dout: Any, cache: dict[str, Any]) -> tuple[Any]:
    """Gradient of average pooling: each output's gradient / divisor goes to every window cell.

    Args:
        dout: upstream gradient, shape (N, C, H_out, W_out).
        cache: from ``avg_pool2d_forward``.

    Returns:
        ``(dx,)`` with dx shaped (N, C, H, W), in the input's dtype.
    """
    n, c, h, w = cache["shape"]
    (kh, kw), (sh, sw), (ph, pw) = cache["kernel"], cache["stride"], cache["padding"]
    out_hw = (conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))
    dout = _check_dout("avg_pool2d_backward", dout, (n, c, *out_hw), cache["dtype"])
    if cache["impl"] == "naive":
        return (_avg_pool_naive_backward(dout, cache),)
    # technique: transpose of the separable sum, spread over the columns, then the rows
    xp = get_xp(dout)
    g = dout / cache["divisor"]  # (N, C, H_out, W_out)
    rows = xp.zeros((n, c, out_hw[0], w + 2 * pw), dtype=dout.dtype)  # (N, C, H_out, Wp)
    for b in range(kw):
        rows[:, :, :, _win(b, sw, out_hw[1])] += g
    dxp = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
    for a in range(kh):
        dxp[:, :, _win(a, sh, out_hw[0]), :] += rows
    return (_unpad(dxp, (ph, pw), cache["shape"]),)


def _avg_divisor(
    xp: Any, shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int],
    p: tuple[int, int], out_hw: tuple[int, int], count_include_pad: bool, dtype: Any,
) -> Any:
    """The divisor of every window: a 0-d array, or (H_out, W_out) real-cell counts."""
    if count_include_pad:
        return xp.asarray(k[0] * k[1], dtype=dtype)
    counts = []
    for size, kk, ss, pp, n_out in zip(shape[2:], k, s, p, out_hw, strict=True):
        start = np.arange(n_out) * ss - pp
        counts.append(np.minimum(start + kk, size) - np.maximum(start, 0))
    return xp.asarray(np.outer(counts[0], counts[1]), dtype=dtype)


def _avg_pool_naive(
    x: Any, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], out_hw: tuple[int, int],
    count_include_pad: bool,
) -> Any:
    """Loop nest over output positions; the window is clipped to the real cells."""
    n_, c_ = x.shape[:2]
    out = get_xp(x).empty((n_, c_, *out_hw), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for i in range(out_hw[0]):
                for j in range(out_hw[1]):
                    # out[n, c, i, j] = sum of x[n, c, i·S_h − P_h + a, j·S_w − P_w + b]
                    # over the real cells of the window / (K_h·K_w or the real-cell count)
                    h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                    window = x[n, c, max(h0, 0) : h0 + k[0], max(w0, 0) : w0 + k[1]]
                    divisor = k[0] * k[1] if count_include_pad else window.size
                    out[n, c, i, j] = window.sum() / divisor
    return out


def _avg_pool_naive_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Loop nest: add dout[n, c, i, j] / divisor to every real cell of its window."""
    (kh, kw), (sh, sw), (ph, pw) = cache["kernel"], cache["stride"], cache["padding"]
    dx = get_xp(dout).zeros(cache["shape"], dtype=dout.dtype)
    n_, c_, oh, ow = dout.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    h0, w0 = i * sh - ph, j * sw - pw
                    window = dx[n, c, max(h0, 0) : h0 + kh, max(w0, 0) : w0 + kw]
                    divisor = kh * kw if cache["count_include_pad"] else window.size
                    window += dout[n, c, i, j] / divisor
    return dx


def adaptive_avg_pool2d_forward(
    x: Any, output_size: IntPair, impl: str = "fast"
) -> tuple[Any, dict[str, Any]]:
    """Average pooling to a fixed output size, with PyTorch's bins.

    Bin i along an axis of input length I and output length O spans cells
    ``floor(i·I / O)`` to ``ceil((i + 1)·I / O)`` (exclusive); bins may overlap, and O may
    exceed I.

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        output_size: (H_out, W_out), or an int for both.
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out).

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype.
    """
    op = "adaptive_avg_pool2d"
    check_impl(impl, op)
    check_ndim(x, 4, op, "(N, C, H, W)")
    x = _as_float(x)
    out_hw = pair(output_size, "output_size", op)
    check_positive(out_hw, "output_size", op)
    if min(x.shape[2:]) <= 0:
        raise ValueError(f"{op}: input has an empty spatial axis, got shape {x.shape}")
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
