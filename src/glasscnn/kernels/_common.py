"""Helpers shared by every kernel family: argument normalisation, checks, array namespace."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

IMPLS = ("naive", "fast")


def get_xp(*arrays: Any) -> ModuleType:
    """Return the array namespace (``numpy`` today, ``cupy`` later) of the given arrays.

    Args:
        *arrays: arrays or ``None``; the first array decides.

    Returns:
        The module whose functions operate on these arrays.
    """
    for a in arrays:
        if a is None:
            continue
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
        return np
    return np


# channels-last arrays are added to or scaled by a per-channel vector in runs of about this
# many floats, the vector repeated to match: NumPy's loops over runs of C floats are slow for
# few channels (a conv bias on 16 channels measured 2x slower)
RUN_FLOATS = 256


def channels_last(x: Any) -> bool:
    """Whether a 4-D array (N, C, H, W) is stored channels-last (NHWC memory order).

    The fast conv kernels return such arrays: the GEMM writes (N*H*W, C) rows, and the
    array is that buffer transposed, a view; NumPy's elementwise ops keep the layout, and
    the next conv (or batch norm) reads it without a layout copy. The values are those of
    any NCHW array.
    """
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous


def run_repeats(length: int, channels: int) -> int:
    """How many pixels of ``channels`` values make one run of about ``RUN_FLOATS`` floats.

    A channels-last array of ``length`` pixels is then seen as (length / r, r * channels)
    runs, and a per-channel vector repeated r times broadcasts against it; r divides
    ``length``, so r = gcd(length, RUN_FLOATS // channels) (at least 1).
    """
    return math.gcd(length, max(1, RUN_FLOATS // channels))


def pair(value: int | tuple[int, int] | list[int], name: str, op: str) -> tuple[int, int]:
    """Normalise an int or a pair to a ``(h, w)`` tuple of ints.

    Args:
        value: an int, or a sequence of two ints.
        name: the argument's name, for the error message.
        op: the operator's name, for the error message.

    Returns:
        ``(value, value)`` for an int, else the pair as a tuple.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def check_positive(value: tuple[int, int], name: str, op: str) -> None:
    """Raise ``ValueError`` unless both entries of ``value`` are > 0."""
    if min(value) <= 0:
        raise ValueError(f"{op}: {name} must be > 0, got {value}")


def check_non_negative(value: tuple[int, int], name: str, op: str) -> None:
    """Raise ``ValueError`` unless both entries of ``value`` are >= 0."""
    if min(value) < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value}")


def check_ndim(x: Any, ndims: int | tuple[int, ...], op: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``x.ndim`` is one of ``ndims``.

    Args:
        x: the array to check.
        ndims: allowed number of dimensions.
        op: the operator's name, for the error message.
        layout: the expected layout, e.g. ``"(N, C, H, W)"``, for the message.
    """
    allowed = (ndims,) if isinstance(ndims, int) else ndims
    if getattr(x, "ndim", None) not in allowed:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{op}: expected input of shape {layout}, got shape {shape}")


def check_impl(impl: str, op: str) -> None:
    """Raise ``ValueError`` unless ``impl`` is ``"naive"`` or ``"fast"``."""
    if impl not in IMPLS:
        raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length along one spatial axis of a convolution or pooling window.

    Formula: ``floor((I + 2P - D*(K-1) - 1) / S) + 1``, which is
    ``floor((I + 2P - K) / S) + 1`` for dilation 1.

    Args:
        size: input length I.
        kernel: kernel length K.
        stride: stride S.
        padding: padding P on each side.
        dilation: dilation D.

    Returns:
        The output length (may be <= 0 when the window does not fit; callers check).
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def as_float_array(x: Any, op: str) -> Any:
    """Return ``x`` as an array of a floating dtype: float arrays unchanged, others as float32.

    Args:
        x: an array or array-like of real numbers (bool, integer or float).
        op: the operator's name, for the error message.

    Returns:
        ``x`` itself when it is already a float array, else a float32 copy.
    """
    xp = get_xp(x)
    x = xp.asarray(x)
    if x.dtype.kind == "f":
        return x
    if x.dtype.kind in "biu":
        return x.astype(np.float32)
    raise ValueError(f"{op}: expected an array of real numbers, got dtype {x.dtype}")


def check_dout(dout: Any, shape: tuple[int, ...], op: str) -> Any:
    """Return ``dout`` as an array after checking that it has the forward output's shape.

    Args:
        dout: the upstream gradient.
        shape: the shape of the forward output.
        op: the backward operator's name, for the error message.

    Returns:
        ``dout`` as an array (no copy when it already is one).
    """
    dout = get_xp(dout).asarray(dout)
    if dout.shape != tuple(shape):
        raise ValueError(
            f"{op}: dout must have the output's shape {tuple(shape)}, got shape {dout.shape}"
        )
    return dout


def sum_parts(xp: ModuleType, parts: Any) -> Any:
    """Sum per-chunk parts (their first axis) in chunk order, into the first part.

    Args:
        xp: the array namespace of ``parts``.
        parts: (chunks, ...) array of partial sums, one per batch chunk.

    Returns:
        ``parts[0]``, now the total: the same bits whichever thread computed which chunk.
    """
    total = parts[0]
    for part in parts[1:]:
        xp.add(total, part, out=total)
    return total
