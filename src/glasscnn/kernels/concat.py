"""Concatenation along one axis, as ``torch.cat``; its backward splits the gradient."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels._common import check_impl, get_xp
from glasscnn.kernels.softmax import normalize_dim


def cat_forward(arrays: Any, dim: int = 0, impl: str = "fast") -> tuple[Any, dict]:
    """Join arrays along axis ``dim``; every other axis must agree.

    Args:
        arrays: a sequence of one or more arrays of the same number of axes (≥ 1).
        dim: the axis to join along (negative counts from the end).
        impl: ``"naive"`` (a loop copying every element to its place) or ``"fast"``
            (``concatenate``).

    Shapes: (…, A_1, …), …, (…, A_k, …) → (…, A_1 + … + A_k, …), in the promoted dtype
    (``result_type`` of the inputs, as PyTorch's type promotion).

    Returns:
        ``(out, cache)``; the cache records each input's size along ``dim`` and dtype.
    """
    op = "cat"
    check_impl(impl, op)
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)) or not arrays:
        raise ValueError(f"{op}: arrays must be a non-empty list or tuple of arrays, got "
                         f"{type(arrays).__name__}")
    xp = get_xp(*arrays)
    arrays = [xp.asarray(a) for a in arrays]
    shapes = [a.shape for a in arrays]
    ndim = arrays[0].ndim
    if ndim == 0 or any(a.ndim != ndim for a in arrays):
        raise ValueError(f"{op}: arrays must have the same number of axes (at least 1), got "
                         f"shapes {shapes}")
    axis = normalize_dim(dim, ndim, op, shapes[0])
    rest = [s[:axis] + s[axis + 1:] for s in shapes]
    if any(r != rest[0] for r in rest):
        raise ValueError(f"{op}: arrays must agree on every axis but dim {dim}, got shapes "
                         f"{shapes}")
    dtype = xp.result_type(*arrays)
    sizes = [s[axis] for s in shapes]
    if impl == "naive":
        out_shape = (*shapes[0][:axis], sum(sizes), *shapes[0][axis + 1:])
        out = np.empty(out_shape, dtype=dtype)
        offset = 0
        for a in arrays:
            for idx in np.ndindex(a.shape):
                # out[…, offset + i, …] = a[…, i, …]
                out[(*idx[:axis], offset + idx[axis], *idx[axis + 1:])] = a[idx]
            offset += a.shape[axis]
    else:
        out = xp.concatenate(arrays, axis=axis).astype(dtype, copy=False)
    return out, {"impl": impl, "axis": axis, "sizes": sizes, "dtypes": [a.dtype for a in arrays],
                 "shape": out.shape}


def cat_backward(dout: Any, cache: dict) -> tuple[Any, ...]:
    """Gradient of concatenation: ``dout`` split back into the inputs' pieces.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``cat_forward``.

    Returns:
        A tuple with one gradient per input, each shaped like it, in its dtype (a
        floating dtype for integer inputs: the output's).
    """
    axis, sizes = cache["axis"], cache["sizes"]
    xp = get_xp(dout)
    dout = xp.asarray(dout)
    if dout.shape != cache["shape"]:
        raise ValueError(f"cat_backward: dout must have the output's shape {cache['shape']}, "
                         f"got shape {dout.shape}")
    dtypes = [t if t.kind == "f" else dout.dtype for t in cache["dtypes"]]
    if cache["impl"] == "naive":
        grads = []
        offset = 0
        for size, dtype in zip(sizes, dtypes, strict=True):
            shape = (*dout.shape[:axis], size, *dout.shape[axis + 1:])
            g = np.empty(shape, dtype=dtype)
            for idx in np.ndindex(shape):
                g[idx] = dout[(*idx[:axis], offset + idx[axis], *idx[axis + 1:])]  # the slice
            grads.append(g)
            offset += size
        return tuple(grads)
    bounds = np.cumsum(sizes)[:-1]
    return tuple(part.astype(dtype)
                 for part, dtype in zip(xp.split(dout, bounds, axis=axis), dtypes, strict=True))
