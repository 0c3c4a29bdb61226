"""Window pooling over NCHW input, max and average, with PyTorch's semantics and options.

Every window op maps (N, C, H, W) to (N, C, H_out, W_out) with, per spatial axis,
``out = floor((I + 2P − D·(K − 1) − 1) / S) + 1`` (``ceil`` with ``ceil_mode``, then one
less if the last window would start past the input and its left padding, as PyTorch);
the stride defaults to the kernel size and the padding may be at most half the kernel.
Adaptive pooling is in ``glasscnn.kernels.adaptive_pool``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import (
    check_impl,
    check_ndim,
    check_non_negative,
    check_positive,
    get_xp,
    pair,
)

IntPair = int | tuple[int, int]

# batch chunk of the max-pool backward: measured 1.3× faster for 3×3 s2 than one pass
_CHUNK_BYTES = 1 << 19
# max pooling: inputs of at least this many elements go to the kernels' thread pool
_PARALLEL_MIN_ELEMENTS = 1 << 18


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length along one axis of a pooling window, as PyTorch.

    Formula: ``floor((I + 2P − D·(K − 1) − 1) / S) + 1``; with ``ceil_mode`` the division
    rounds up, and the count drops by one if the last window would start at or past
    ``I + P`` (so every window starts inside the input or its left padding).

    Args:
        size: input length I.
        kernel: window length K.
        stride: stride S.
        padding: padding P on each side.
        dilation: spacing D of the window's cells.
        ceil_mode: round the division up.

    Returns:
        The output length (may be <= 0 when the window does not fit; callers check).
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Window(NamedTuple):
    """A window op's geometry, per axis (h, w): kernel, stride, padding before, dilation,
    output size, and padding after (≥ padding before: ceil_mode windows may reach past)."""

    k: tuple[int, int]
    s: tuple[int, int]
    p: tuple[int, int]
    d: tuple[int, int]
    out: tuple[int, int]
    p_end: tuple[int, int]


def _as_float(x: Any) -> Any:
    """``x`` as an array; non-floating input becomes float32."""
    xp = get_xp(x)
    x = xp.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(xp.float32)


def _window_args(
    op: str, x: Any, kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
    dilation: IntPair, ceil_mode: bool, impl: str,
) -> tuple[Any, _Window]:
    """Validate a window op's arguments; return ``(x, window geometry)``."""
    check_impl(impl, op)
    check_ndim(x, 4, op, "(N, C, H, W)")
    x = _as_float(x)
    k = pair(kernel_size, "kernel_size", op)
    check_positive(k, "kernel_size", op)
    s = k if stride is None else pair(stride, "stride", op)
    check_positive(s, "stride", op)
    p = pair(padding, "padding", op)
    check_non_negative(p, "padding", op)
    d = pair(dilation, "dilation", op)
    check_positive(d, "dilation", op)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: padding must be at most half the kernel size, got padding {p} "
            f"for kernel_size {k}"
        )
    h, w = x.shape[2:]
    out = tuple(pool_output_size(n, kk, ss, pp, dd, bool(ceil_mode))
                for n, kk, ss, pp, dd in zip((h, w), k, s, p, d, strict=True))
    if min(out) <= 0:
        raise ValueError(
            f"{op}: kernel_size {k} is larger than the padded input "
            f"{h + 2 * p[0]}x{w + 2 * p[1]} (input shape {x.shape}, padding {p}, dilation {d})"
        )
    for axis, (n, kk, ss, pp, dd, o) in enumerate(zip((h, w), k, s, p, d, out, strict=True)):
        if dd == 1:  # P ≤ K/2 and the ceil_mode rule keep undilated windows non-empty
            continue
        starts = np.arange(o) * ss - pp  # window i's cells: starts[i] + a·D, 0 ≤ a < K
        first = starts + -(-np.maximum(-starts, 0) // dd) * dd  # its first cell at or after 0
        empty = (first >= n) | (first > starts + dd * (kk - 1))
        if empty.any():  # PyTorch returns -inf there
            raise ValueError(
                f"{op}: the window of output {'row' if axis == 0 else 'column'} "
                f"{int(np.argmax(empty))} covers no input cell (input shape {x.shape}, "
                f"kernel_size {k}, padding {p}, dilation {d})"
            )
    # padding after: up to the last window's last cell, and at least P
    p_end = tuple(max(pp, (o - 1) * ss + dd * (kk - 1) + 1 - n - pp)
                  for n, kk, ss, pp, dd, o in zip((h, w), k, s, p, d, out, strict=True))
    return x, _Window(k, s, p, d, out, p_end)


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


def _pad(x: Any, win: _Window, value: float) -> Any:
    """``x`` (N, C, H, W) padded with ``value`` (P before, P_end after); ``x`` if none."""
    (ph, pw), (eh, ew) = win.p, win.p_end
    if ph == pw == eh == ew == 0:
        return x
    xp = get_xp(x)
    n, c, h, w = x.shape
    out = xp.full_like(x, value, shape=(n, c, ph + h + eh, pw + w + ew))  # x's memory layout
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def _unpad(dxp: Any, win: _Window, shape: tuple[int, ...]) -> Any:
    """The centre of a padded gradient, shaped like the unpadded input."""
    if dxp.shape == tuple(shape):
        return dxp
    ph, pw = win.p
    return dxp[:, :, ph : ph + shape[2], pw : pw + shape[3]].copy(order="K")  # same layout


def _separable_reduce(ufunc: Any, xpad: Any, win: _Window, out: Any = None) -> Any:
    """Reduce every window with ``ufunc`` along the rows, then along the columns.

    Shapes: ``xpad`` (N, C, Hp, Wp) → rows (N, C, H_out, Wp) → output (N, C, H_out, W_out),
    written into ``out`` when given.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = win.k, win.s, win.d, win.out
    rows = [xpad[:, :, _win(a * dh, sh, oh), :] for a in range(kh)]
    r = ufunc(rows[0], rows[1]) if kh > 1 else rows[0]  # (N, C, H_out, Wp)
    for v in rows[2:]:
        ufunc(r, v, out=r)
    cols = [r[:, :, :, _win(b * dw, sw, ow)] for b in range(kw)]
    if kw > 1:
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


def _max_pool_fast(x: Any, xpad: Any, win: _Window) -> Any:
    """Separable strided max over batch chunks, on the kernels' thread pool when large."""
    xp = get_xp(x)
    parts, slots = _batch_parts(xp, xpad)
    if len(parts) == 1:
        return _separable_reduce(xp.maximum, xpad, win)
    out = xp.empty_like(x, shape=(*x.shape[:2], *win.out))  # the layout of x (K order)

    def chunk(i: int, slot: int) -> None:
        _separable_reduce(xp.maximum, xpad[parts[i]], win, out=out[parts[i]])

    _parallel.run_chunks(chunk, len(parts), slots, blas=False)
    return out


def max_pool2d_forward(
    x: Any, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    dilation: IntPair = 1, ceil_mode: bool = False, impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Max pooling; the padding is -inf, so padded cells never win.

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        kernel_size: K, an int or (K_h, K_w).
        stride: S, an int or a pair; defaults to ``kernel_size``.
        padding: P, an int or a pair, at most K // 2 per axis.
        dilation: D, the spacing of a window's cells, an int or a pair.
        ceil_mode: round the output size up (windows may then reach past the padding).
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out) with
    H_out = floor((H + 2P_h − D_h·(K_h − 1) − 1) / S_h) + 1, likewise W_out
    (see :func:`pool_output_size` for ``ceil_mode``).

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype. The cache holds references to ``x``
        and ``out``, which must not be modified in place before the backward pass.
        :func:`max_pool2d_indices` gives each output's argmax from the cache.
    """
    x, win = _window_args("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode,
                          impl)
    cache = {"impl": impl, "window": win, "shape": x.shape}
    if impl == "naive":
        out = _max_pool_naive(x, win)
        cache["x"] = x
    else:
        # technique: separable strided max, rows then columns (beats both reshape+max and
        # the max of K_h·K_w strided slices, for 2×2 s2 as for overlapping 3×3 s2)
        xpad = _pad(x, win, -np.inf)
        out = _max_pool_fast(x, xpad, win)
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


def max_pool2d_indices(cache: dict[str, Any]) -> Any:
    """PyTorch's ``return_indices`` of a max pooling: each output's argmax, as a flat index
    ``h·W + w`` into its (n, c) plane of the input (the first maximum on ties).

    Args:
        cache: from ``max_pool2d_forward`` (naive: a loop nest; fast: a pass per window
            offset, as the backward).

    Returns:
        int64 array of shape (N, C, H_out, W_out).
    """
    win, w = cache["window"], cache["shape"][3]
    if cache["impl"] == "naive":
        x = cache["x"]
        idx = np.empty(cache["out"].shape, dtype=np.int64)
        for n, c, i, j in np.ndindex(idx.shape):
            taps = _window_taps(x.shape, win, i, j)
            values = [x[n, c, h, v] for h, v in taps]
            h, v = taps[int(np.argmax(values))]  # the first maximum in row-major order
            idx[n, c, i, j] = h * w + v
        return idx
    xp = get_xp(cache["out"])
    xpad, out = cache["xpad"], cache["out"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = win.k, win.s, win.p, win.d, win.out
    idx = xp.zeros(out.shape, dtype=np.int64)
    done = xp.zeros(out.shape, dtype=bool)
    rows, cols = xp.arange(oh) * sh - ph, xp.arange(ow) * sw - pw  # window origins
    for a in range(kh):  # row-major offsets: the first maximum wins ties
        for b in range(kw):
            hit = xpad[:, :, _win(a * dh, sh, oh), _win(b * dw, sw, ow)] == out
            hit &= ~done
            flat = (rows[:, None] + a * dh) * w + (cols[None, :] + b * dw)  # (H_out, W_out)
            xp.copyto(idx, xp.broadcast_to(flat, idx.shape), where=hit)
            done |= hit
    return idx


def _window_taps(shape: tuple[int, ...], win: _Window, i: int, j: int) -> list[tuple[int, int]]:
    """The input cells (h, w) of output (i, j)'s window, row-major, skipping the padding."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.k, win.s, win.p, win.d
    # cell (a, b) of the window sits at (i·S_h − P_h + a·D_h, j·S_w − P_w + b·D_w)
    taps = [(i * sh - ph + a * dh, j * sw - pw + b * dw) for a in range(kh) for b in range(kw)]
    return [(h, v) for h, v in taps if 0 <= h < shape[2] and 0 <= v < shape[3]]


def _max_pool_naive(x: Any, win: _Window) -> Any:
    """Loop nest over output positions; the window's cells outside the input are skipped."""
    out = get_xp(x).empty((*x.shape[:2], *win.out), dtype=x.dtype)
    for n, c, i, j in np.ndindex(out.shape):
        # out[n, c, i, j] = max of x[n, c, i·S_h − P_h + a·D_h, j·S_w − P_w + b·D_w]
        # over 0 ≤ a < K_h, 0 ≤ b < K_w, skipping cells outside the input
        out[n, c, i, j] = max(x[n, c, h, v] for h, v in _window_taps(x.shape, win, i, j))
    return out


def _max_pool_naive_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Loop nest: add each dout[n, c, i, j] at the first argmax of its window."""
    x, win = cache["x"], cache["window"]
    dx = get_xp(x).zeros_like(x)
    for n, c, i, j in np.ndindex(dout.shape):
        taps = _window_taps(x.shape, win, i, j)
        h, v = taps[int(np.argmax([x[n, c, h, v] for h, v in taps]))]  # first max, row-major
        dx[n, c, h, v] += dout[n, c, i, j]
    return dx


def _max_pool_fast_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Route the gradient a batch chunk at a time, so that the K_h·K_w passes stay in cache;
    the chunks run on the kernels' thread pool when the input is large."""
    xp = get_xp(dout)
    xpad, out, win = cache["xpad"], cache["out"], cache["window"]
    if dout.strides != out.strides:  # e.g. NCHW dout for a channels-last out: one small
        dout_like_out = xp.empty_like(out)  # copy, so that the passes below run in order
        xp.copyto(dout_like_out, dout)
        dout = dout_like_out
    tiled = (win.k == win.s and win.d == (1, 1)
             and xpad.shape[2:] == (out.shape[2] * win.k[0], out.shape[3] * win.k[1]))
    dxp = xp.empty_like(xpad) if tiled else xp.zeros_like(xpad)  # tiled: every cell written
    parts, slots = _batch_parts(xp, xpad)

    def chunk(i: int, slot: int) -> None:
        part = parts[i]
        _route_to_max(dout[part], xpad[part], out[part], dxp[part], win)

    _parallel.run_chunks(chunk, len(parts), slots, blas=False)
    return _unpad(dxp, win, cache["shape"])


def _route_to_max(dout: Any, xpad: Any, out: Any, dxp: Any, win: _Window) -> None:
    """Add each dout to ``dxp`` at its window's first maximum, in place.

    Technique: a loop over the K_h·K_w window offsets; each strided slice of ``xpad`` is
    compared with the max, and outputs already routed are masked out (no ``np.add.at``).
    """
    xp = get_xp(dout)
    (kh, kw), (sh, sw), (dh, dw) = win.k, win.s, win.d
    oh, ow = out.shape[2:]
    overlap = (kh - 1) * dh + 1 > sh or (kw - 1) * dw + 1 > sw
    hit = xp.empty_like(out, dtype=bool)  # the layout of out (NCHW or channels-last)
    remaining = xp.empty_like(out, dtype=bool)  # outputs whose gradient is not routed yet
    tmp = xp.empty_like(dout) if overlap else None
    for a in range(kh):  # row-major offsets: the first maximum wins ties
        for b in range(kw):
            cells = (slice(None), slice(None), _win(a * dh, sh, oh), _win(b * dw, sw, ow))
            xp.equal(xpad[cells], out, out=hit)
            if a == b == 0:
                xp.logical_not(hit, out=remaining)
            elif a < kh - 1 or b < kw - 1:
                xp.logical_and(hit, remaining, out=hit)
                xp.logical_xor(remaining, hit, out=remaining)
            else:  # last offset: nothing routed after it
                xp.logical_and(hit, remaining, out=hit)
            if overlap:
                xp.multiply(dout, hit, out=tmp)
                xp.add(dxp[cells], tmp, out=dxp[cells])
            else:
                xp.multiply(dout, hit, out=dxp[cells])


def avg_pool2d_forward(
    x: Any, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
    impl: str = "fast",
) -> tuple[Any, dict[str, Any]]:
    """Average pooling with zero padding, as ``torch.nn.functional.avg_pool2d``.

    The divisor of a window is ``divisor_override`` when given; else, with
    ``count_include_pad`` (PyTorch's default), the window's cells inside the padded input
    (K_h·K_w unless a ``ceil_mode`` window reaches past the padding); else its cells inside
    the input.

    Args:
        x: input, shape (N, C, H, W), float32 or float64 (other dtypes become float32).
        kernel_size: K, an int or (K_h, K_w).
        stride: S, an int or a pair; defaults to ``kernel_size``.
        padding: P, an int or a pair, at most K // 2 per axis.
        ceil_mode: round the output size up (see :func:`pool_output_size`).
        count_include_pad: whether padded cells count in the divisor.
        divisor_override: a positive int dividing every window's sum instead.
        impl: ``"fast"`` (vectorised) or ``"naive"`` (loop nest).

    Shapes: (N, C, H, W) → (N, C, H_out, W_out) with H_out = floor((H + 2P_h − K_h) / S_h) + 1
    and W_out = floor((W + 2P_w − K_w) / S_w) + 1 (ceil with ``ceil_mode``).

    Returns:
        ``(out, cache)``; ``out`` has the input's dtype.
    """
    op = "avg_pool2d"
    x, win = _window_args(op, x, kernel_size, stride, padding, 1, ceil_mode, impl)
    if divisor_override is not None and (
            isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
            or divisor_override <= 0):
        raise ValueError(f"{op}: divisor_override must be a positive int or None, "
                         f"got {divisor_override!r}")
    counts = (bool(count_include_pad), divisor_override)
    cache = {"impl": impl, "window": win, "shape": x.shape, "dtype": x.dtype, "counts": counts}
    if impl == "naive":
        return _avg_pool_naive(x, win, counts), cache
    # technique: separable strided sum, rows then columns, then one division
    xp = get_xp(x)
    divisor = _avg_divisor(xp, x.shape, win, counts, x.dtype)
    out = _separable_reduce(xp.add, _pad(x, win, 0.0), win)
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
    win = cache["window"]
    (kh, kw), (sh, sw), (oh, ow) = win.k, win.s, win.out
    dout = _check_dout("avg_pool2d_backward", dout, (n, c, oh, ow), cache["dtype"])
    if cache["impl"] == "naive":
        return (_avg_pool_naive_backward(dout, cache),)
    # technique: transpose of the separable sum, spread over the columns, then the rows
    xp = get_xp(dout)
    hp, wp = h + win.p[0] + win.p_end[0], w + win.p[1] + win.p_end[1]
    g = dout / cache["divisor"]  # (N, C, H_out, W_out)
    rows = xp.zeros((n, c, oh, wp), dtype=dout.dtype)  # (N, C, H_out, Wp)
    for b in range(kw):
        rows[:, :, :, _win(b, sw, ow)] += g
    dxp = xp.zeros((n, c, hp, wp), dtype=dout.dtype)
    for a in range(kh):
        dxp[:, :, _win(a, sh, oh), :] += rows
    return (_unpad(dxp, win, cache["shape"]),)


def _window_extent(size: int, k: int, s: int, p: int, n_out: int, count_include_pad: bool
                   ) -> np.ndarray:
    """Per output along one axis: the window's cells inside the padded input
    (``count_include_pad``) or inside the input, as PyTorch's divisor counts them."""
    start = np.arange(n_out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _avg_divisor(xp: Any, shape: tuple[int, ...], win: _Window,
                 counts: tuple[bool, int | None], dtype: Any) -> Any:
    """The divisor of every window: a 0-d array, or (H_out, W_out) cell counts."""
    count_include_pad, override = counts
    if override is not None:
        return xp.asarray(override, dtype=dtype)
    extents = [_window_extent(size, k, s, p, o, count_include_pad)
               for size, k, s, p, o in zip(shape[2:], win.k, win.s, win.p, win.out, strict=True)]
    if count_include_pad and all((e == k).all() for e, k in zip(extents, win.k, strict=True)):
        return xp.asarray(win.k[0] * win.k[1], dtype=dtype)
    return xp.asarray(np.outer(extents[0], extents[1]), dtype=dtype)


def _naive_divisor(shape: tuple[int, ...], win: _Window, counts: tuple[bool, int | None],
                   i: int, j: int) -> int:
    """The divisor of output (i, j)'s window (see ``avg_pool2d_forward``)."""
    count_include_pad, override = counts
    if override is not None:
        return override
    h0, w0 = i * win.s[0] - win.p[0], j * win.s[1] - win.p[1]
    h1 = min(h0 + win.k[0], shape[2] + win.p[0])  # the window's end, inside the padding
    w1 = min(w0 + win.k[1], shape[3] + win.p[1])
    if count_include_pad:
        return (h1 - h0) * (w1 - w0)
    return (min(h1, shape[2]) - max(h0, 0)) * (min(w1, shape[3]) - max(w0, 0))


def _avg_pool_naive(x: Any, win: _Window, counts: tuple[bool, int | None]) -> Any:
    """Loop nest over output positions; the window is clipped to the real cells."""
    out = get_xp(x).empty((*x.shape[:2], *win.out), dtype=x.dtype)
    for n, c, i, j in np.ndindex(out.shape):
        # out[n, c, i, j] = Σ x[n, c, i·S_h − P_h + a, j·S_w − P_w + b] over the window's
        # real cells, / divisor (override, cells inside the padding, or real cells)
        total = sum(x[n, c, h, v] for h, v in _window_taps(x.shape, win, i, j))
        out[n, c, i, j] = total / _naive_divisor(x.shape, win, counts, i, j)
    return out


def _avg_pool_naive_backward(dout: Any, cache: dict[str, Any]) -> Any:
    """Loop nest: add dout[n, c, i, j] / divisor to every real cell of its window."""
    shape, win, counts = cache["shape"], cache["window"], cache["counts"]
    dx = get_xp(dout).zeros(shape, dtype=dout.dtype)
    for n, c, i, j in np.ndindex(dout.shape):
        share = dout[n, c, i, j] / _naive_divisor(shape, win, counts, i, j)
        for h, v in _window_taps(shape, win, i, j):
            dx[n, c, h, v] += share
    return dx
