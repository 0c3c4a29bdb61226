"""Batch normalisation over the channel axis, with PyTorch's running statistics."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from glasscnn.kernels import _parallel
from glasscnn.kernels._common import (
    as_float_array,
    channels_last,
    check_dout,
    check_impl,
    check_ndim,
    get_xp,
    run_repeats,
)

_LAYOUT = "(N, C), (N, C, L) or (N, C, H, W)"
# fast kernels: batch chunks of about this size, each pass over a chunk in the 2 MiB L2
_CHUNK_BYTES = 1 << 19
# ... and on the kernels' thread pool from this many elements on
_PARALLEL_MIN_ELEMENTS = 1 << 18


class _Layout:
    """How the fast kernels see an input: (N, C, L) with per-channel vectors as columns,
    or, for a channels-last (N, C, H, W) input, (N, L/r, r*C) with the vectors repeated r
    times along the last axis (a view of its memory, no copy)."""

    def __init__(self, x: Any, fast: bool) -> None:
        c = x.shape[1]
        self.channels, self.shape = c, x.shape
        self.rep = 0  # 0: (N, C, L)
        if fast and channels_last(x) and not x.flags.c_contiguous:
            self.rep = run_repeats(x.shape[2] * x.shape[3], c)
        self.subscripts = "nlk" if self.rep else "ncl"

    def view(self, a: Any) -> Any:
        """``a`` (shaped like the input) as the kernels' 3-D array."""
        n, c = self.shape[:2]
        if self.rep:
            return a.transpose(0, 2, 3, 1).reshape(n, -1, self.rep * c)
        return a.reshape(n, c, -1)

    def restore(self, a3: Any) -> Any:
        """A 3-D array from :meth:`view` back to the input's shape (a view)."""
        if self.rep:
            n, c, h, w = self.shape
            return a3.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return a3.reshape(self.shape)

    def vec(self, v: Any) -> Any:
        """A per-channel vector (C,) that broadcasts against the 3-D array."""
        return get_xp(v).tile(v, self.rep) if self.rep else v[:, None]

    def width(self) -> int:
        """Length of the partial sums :meth:`total` writes."""
        return self.rep * self.channels if self.rep else self.channels

    def total(self, a: Any, b: Any | None, out: Any) -> Any:
        """Σ a (or Σ a·b) over all but the channel (or run) axis into ``out``."""
        xp, sub = get_xp(a), self.subscripts
        target = sub[2] if self.rep else sub[1]
        if b is None:
            return xp.einsum(f"{sub}->{target}", a, out=out)
        return xp.einsum(f"{sub},{sub}->{target}", a, b, out=out)

    def fold(self, sums: Any) -> Any:
        """Partial sums of :meth:`width` values as per-channel sums (C,)."""
        return sums.reshape(self.rep, self.channels).sum(axis=0) if self.rep else sums


def _check_channel_vector(v: Any, name: str, channels: int, x_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``v`` is an array of shape (C,)."""
    shape = getattr(v, "shape", None)
    if shape != (channels,):
        got = f"shape {shape}" if shape is not None else f"{type(v).__name__}"
        raise ValueError(
            f"batch_norm: {name} must be an array of shape ({channels},) for input of shape "
            f"{x_shape}, got {got}"
        )


def batch_norm_forward(
    x: Any, running_mean: Any, running_var: Any, weight: Any | None = None,
    bias: Any | None = None, training: bool = True, momentum: float = 0.1, eps: float = 1e-5,
    impl: str = "fast",
) -> tuple[Any, dict]:
    """Batch normalisation per channel, as ``torch.nn.functional.batch_norm``.

    Formula: ``y = γ · (x − μ) / √(σ² + ε) + β`` per channel. Training uses the batch's
    mean μ and biased variance σ² over every axis but the channel axis (1) and updates the
    running statistics in place: ``running = (1 − momentum) · running + momentum · stat``,
    with the unbiased variance ``σ² · m / (m − 1)`` (m values per channel). Evaluation uses
    the running statistics and changes nothing.

    Args:
        x: input of shape (N, C), (N, C, L) or (N, C, H, W).
        running_mean: shape (C,), updated in place when training.
        running_var: shape (C,), updated in place when training.
        weight: γ of shape (C,), or ``None`` for γ = 1.
        bias: β of shape (C,), or ``None`` for β = 0.
        training: batch statistics (``True``) or running statistics (``False``).
        momentum: weight of the new batch statistic in the running average, in [0, 1].
        eps: added to the variance before the square root, >= 0.
        impl: ``"naive"`` (loops over channels, then samples and positions) or ``"fast"``
            (per-channel ``einsum`` reductions and in-place passes over in-cache batch
            chunks of an (N, C, L) view, on the kernels' thread pool when large; a
            channels-last 4-D input is read in place as runs of pixels, and the output
            and dx are channels-last too).

    Returns:
        ``(out, cache)`` with ``out`` of ``x``'s shape and dtype; the fast kernel's cache
        holds ``x`` (not x̂), which must not be modified in place before the backward pass.
    """
    check_impl(impl, "batch_norm")
    x = as_float_array(x, "batch_norm")
    check_ndim(x, (2, 3, 4), "batch_norm", _LAYOUT)
    channels = x.shape[1]
    _check_channel_vector(running_mean, "running_mean", channels, x.shape)
    _check_channel_vector(running_var, "running_var", channels, x.shape)
    if weight is not None:
        weight = as_float_array(weight, "batch_norm")
        _check_channel_vector(weight, "weight", channels, x.shape)
    if bias is not None:
        bias = as_float_array(bias, "batch_norm")
        _check_channel_vector(bias, "bias", channels, x.shape)
    if not isinstance(momentum, Real) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm: momentum must be a number in [0, 1], got {momentum!r}")
    if not isinstance(eps, Real) or not eps >= 0.0:
        raise ValueError(f"batch_norm: eps must be >= 0, got {eps!r}")
    m = x.size // channels if channels else 0
    if training and m <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, got input of "
            f"shape {x.shape}"
        )
    layout = _Layout(x, impl == "fast")
    x3 = layout.view(x)  # (N, C, L), or (N, L/r, r*C) for channels-last: views
    w = None if weight is None else weight.astype(x.dtype, copy=False)
    b = None if bias is None else bias.astype(x.dtype, copy=False)
    cache = {
        "impl": impl, "training": training, "x_shape": x.shape, "w": w, "layout": layout,
        "weight_dtype": None if weight is None else weight.dtype,
        "bias_dtype": None if bias is None else bias.dtype,
    }
    if impl == "naive":
        out3, cache["xhat"], cache["inv_std"] = _forward_naive(
            x3, running_mean, running_var, w, b, training, momentum, eps
        )
    elif training:
        out3, cache["mean"], cache["inv_std"] = _forward_train_fast(
            x3, layout, running_mean, running_var, w, b, momentum, eps
        )
        cache["x3"] = x3
    else:
        out3, cache["x3"], cache["mean"], cache["inv_std"] = _forward_eval_fast(
            x3, layout, running_mean, running_var, w, b, eps
        )
    return layout.restore(out3), cache


def _forward_naive(x3, running_mean, running_var, w, b, training, momentum, eps):
    """Loop nest over channels, then samples and positions, on an (N, C, L) array."""
    n, channels, length = x3.shape
    m = n * length
    out3 = np.empty_like(x3)
    xhat3 = np.empty_like(x3)
    inv_stds = np.empty(channels, dtype=x3.dtype)
    for c in range(channels):
        if training:
            total = 0.0
            for i in range(n):
                for j in range(length):
                    total += float(x3[i, c, j])
            mean = total / m  # μ = (1/m) Σ x
            total = 0.0
            for i in range(n):
                for j in range(length):
                    total += (float(x3[i, c, j]) - mean) ** 2
            var = total / m  # σ² = (1/m) Σ (x − μ)², biased
            # running ← (1 − momentum) · running + momentum · stat, unbiased variance
            running_mean[c] = (1 - momentum) * float(running_mean[c]) + momentum * mean
            running_var[c] = (1 - momentum) * float(running_var[c]) + momentum * var * m / (m - 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        inv_std = 1.0 / math.sqrt(var + eps)
        inv_stds[c] = inv_std
        gamma = 1.0 if w is None else float(w[c])
        beta = 0.0 if b is None else float(b[c])
        for i in range(n):
            for j in range(length):
                xhat = (float(x3[i, c, j]) - mean) * inv_std  # x̂ = (x − μ) / √(σ² + ε)
                xhat3[i, c, j] = xhat
                out3[i, c, j] = gamma * xhat + beta  # y = γ x̂ + β
    return out3, xhat3, inv_stds


def _forward_train_fast(x3, layout, running_mean, running_var, w, b, momentum, eps):
    """Batch statistics from per-chunk ``einsum`` sums, then ``y = (x − μ) · γ/σ + β``.

    Technique: three passes over batch chunks (``_parallel.batch_parts``; on the thread
    pool when large): the sums Σx; ``x − μ`` into the chunk of the output buffer and its
    Σ(x − μ)² while in cache; then ``y`` from x again. The partial sums are added in chunk
    order, so the result does not depend on which thread ran which chunk. Nothing of
    the input's size is kept beyond the output: the backward pass recomputes ``x − μ``.
    ``layout``: how ``x3`` holds the channels (:class:`_Layout`). Returns
    ``(out, mean, inv_std)``.
    """
    xp = get_xp(x3)
    m = x3.size // layout.channels
    parts, slots = _parallel.batch_parts(xp, x3, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)
    sums = xp.empty((len(parts), layout.width()), x3.dtype)  # per-chunk partial sums
    out = xp.empty_like(x3)

    def total(i, _slot):
        layout.total(x3[parts[i]], None, out=sums[i])

    def centre(i, _slot):
        xc = out[parts[i]]  # x − μ, scratch in the output's chunk
        xp.subtract(x3[parts[i]], mean_v, out=xc)
        layout.total(xc, xc, out=sums[i])

    _parallel.run_chunks(total, len(parts), slots, blas=False)
    mean = layout.fold(_add_rows(sums)) / m  # (C,)
    mean_v = layout.vec(mean)
    _parallel.run_chunks(centre, len(parts), slots, blas=False)
    var = layout.fold(_add_rows(sums)) / m  # biased
    inv_std = 1 / xp.sqrt(var + eps)  # (C,)
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * m / (m - 1)) * var
    scale = layout.vec(inv_std if w is None else inv_std * w)
    shift = None if b is None else layout.vec(b)

    def affine(i, _slot):
        y = out[parts[i]]
        xp.subtract(x3[parts[i]], mean_v, out=y)
        y *= scale
        if shift is not None:
            y += shift

    _parallel.run_chunks(affine, len(parts), slots, blas=False)
    return out, mean, inv_std


def _add_rows(parts):
    """Σ over the first axis of a (chunks, C) array, row after row (a fixed order)."""
    total = parts[0].copy()
    for row in parts[1:]:
        total += row
    return total


def _forward_eval_fast(x3, layout, running_mean, running_var, w, b, eps):
    """Fixed per-channel affine map ``x · scale + shift`` folded from the running statistics,
    over batch chunks (two in-cache passes each; on the thread pool when large)."""
    xp = get_xp(x3)
    mean = running_mean.astype(x3.dtype)  # (C,), copied: the cache must not follow later updates
    inv_std = 1 / xp.sqrt(running_var.astype(x3.dtype) + eps)
    scale = inv_std if w is None else inv_std * w
    shift = layout.vec(-mean * scale if b is None else b - mean * scale)
    scale = layout.vec(scale)
    out = xp.empty_like(x3)
    parts, slots = _parallel.batch_parts(xp, x3, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)

    def affine(i, _slot):
        part = parts[i]
        xp.multiply(x3[part], scale, out=out[part])
        xp.add(out[part], shift, out=out[part])

    _parallel.run_chunks(affine, len(parts), slots, blas=False)
    return out, x3, mean, inv_std


def batch_norm_backward(dout: Any, cache: dict) -> tuple[Any, Any | None, Any | None]:
    """Gradients of batch normalisation in the mode the forward ran in.

    Training (μ, σ² depend on x), per channel with m values:
    ``dx = γ / √(σ² + ε) / m · (m · dout − Σ dout − x̂ · Σ dout · x̂)``.
    Evaluation (fixed affine map): ``dx = γ / √(σ² + ε) · dout``.
    Both: ``dγ = Σ dout · x̂``, ``dβ = Σ dout``, sums over every axis but the channel axis.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``batch_norm_forward``.

    Returns:
        ``(dx, dweight, dbias)``; ``dweight``/``dbias`` are ``None`` where the forward had
        no weight/bias.
    """
    x_shape = cache["x_shape"]
    dout = check_dout(dout, x_shape, "batch_norm_backward")
    layout = cache["layout"]
    dout3 = layout.view(dout)  # as x3: a view when dout is stored like the input
    if cache["impl"] == "naive":
        dx3, dgamma, dbeta = _backward_naive(dout3, cache)
    elif cache["training"]:
        dx3, dgamma, dbeta = _backward_train_fast(dout3, cache)
    else:
        dx3, dgamma, dbeta = _backward_eval_fast(dout3, cache)
    dw = None if cache["weight_dtype"] is None else dgamma.astype(cache["weight_dtype"], copy=False)
    db = None if cache["bias_dtype"] is None else dbeta.astype(cache["bias_dtype"], copy=False)
    return layout.restore(dx3), dw, db


def _backward_naive(dout3, cache):
    """Loop nest over channels, then samples and positions."""
    xhat3, inv_stds, w, training = cache["xhat"], cache["inv_std"], cache["w"], cache["training"]
    n, channels, length = xhat3.shape
    m = n * length
    dx3 = np.empty_like(xhat3)
    dgamma = np.empty(channels, dtype=xhat3.dtype)
    dbeta = np.empty(channels, dtype=xhat3.dtype)
    for c in range(channels):
        sum_dout = 0.0
        sum_dout_xhat = 0.0
        for i in range(n):
            for j in range(length):
                sum_dout += float(dout3[i, c, j])  # dβ = Σ dout
                sum_dout_xhat += float(dout3[i, c, j]) * float(xhat3[i, c, j])  # dγ = Σ dout x̂
        dbeta[c], dgamma[c] = sum_dout, sum_dout_xhat
        k = (1.0 if w is None else float(w[c])) * float(inv_stds[c])  # γ / √(σ² + ε)
        for i in range(n):
            for j in range(length):
                g = float(dout3[i, c, j])
                xhat = float(xhat3[i, c, j])
                if training:
                    # dx = γ/√(σ²+ε) · (dout − Σdout/m − x̂ · Σ(dout x̂)/m)
                    dx3[i, c, j] = k * (g - sum_dout / m - xhat * sum_dout_xhat / m)
                else:
                    dx3[i, c, j] = k * g  # dx = γ/√(σ²+ε) · dout
    return dx3, dgamma, dbeta


def _backward_train_fast(dout3, cache):
    """Two passes over batch chunks: the sums Σdout and Σdout·(x − μ), then dx in place.

    ``dγ = Σ dout · x̂ = Σ dout · (x − μ) / √(σ² + ε)``, and per chunk
    ``dx = γ/√(σ²+ε) · (dout − Σdout/m − (x − μ) · dγ / (m √(σ² + ε)))`` in five in-cache
    passes, ``x − μ`` recomputed from the cached input; chunks as in the forward pass,
    partial sums added in chunk order.
    """
    xp = get_xp(dout3)
    x3, mean, inv_std, w = cache["x3"], cache["mean"], cache["inv_std"], cache["w"]
    layout = cache["layout"]
    m = x3.size // layout.channels
    mean_v = layout.vec(mean)
    parts, slots = _parallel.batch_parts(xp, x3, _CHUNK_BYTES, _PARALLEL_MIN_ELEMENTS)
    sums = xp.empty((2, len(parts), layout.width()), x3.dtype)  # Σdout, Σdout·(x − μ)
    dx = xp.empty_like(x3)

    def reduce(i, _slot):
        part = parts[i]
        xc = dx[part]  # x − μ, scratch in dx's chunk
        xp.subtract(x3[part], mean_v, out=xc)
        layout.total(dout3[part], None, out=sums[0, i])
        layout.total(dout3[part], xc, out=sums[1, i])

    _parallel.run_chunks(reduce, len(parts), slots, blas=False)
    dbeta = layout.fold(_add_rows(sums[0]))  # (C,)
    dgamma = layout.fold(_add_rows(sums[1])) * inv_std  # (C,)
    centred = layout.vec((dgamma * inv_std / m).astype(x3.dtype, copy=False))
    mean_dout = layout.vec(dbeta / m)
    scale = layout.vec(inv_std if w is None else inv_std * w)

    def grad(i, _slot):
        part = parts[i]
        d = dx[part]
        xp.subtract(x3[part], mean_v, out=d)
        d *= centred
        xp.subtract(dout3[part], d, out=d)
        d -= mean_dout
        d *= scale

    _parallel.run_chunks(grad, len(parts), slots, blas=False)
    return dx, dgamma, dbeta


def _backward_eval_fast(dout3, cache):
    """Per-channel scaling of dout; x̂ rebuilt once for dγ."""
    xp = get_xp(dout3)
    x3, mean, inv_std, w = cache["x3"], cache["mean"], cache["inv_std"], cache["w"]
    layout = cache["layout"]
    scale = inv_std if w is None else inv_std * w
    dx = xp.multiply(dout3, layout.vec(scale), dtype=x3.dtype)
    dbeta = layout.fold(layout.total(dout3, None, out=None))
    dgamma = None
    if w is not None:
        centred = x3 - layout.vec(mean)
        dgamma = layout.fold(layout.total(dout3, centred, out=None)) * inv_std
    return dx, dgamma, dbeta
