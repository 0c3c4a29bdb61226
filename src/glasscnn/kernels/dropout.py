"""Inverted dropout: zero values at random in training, scale the survivors by 1 / (1 − p)."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_dout, check_impl, get_xp


def dropout_forward(
    x: Any, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None,
    impl: str = "fast",
) -> tuple[Any, dict]:
    """Inverted dropout, as ``torch.nn.functional.dropout``.

    Formula: ``y = x · keep / (1 − p)`` with ``keep = (u >= p)``, ``u ~ U[0, 1)`` drawn
    as ``rng.random(x.shape)``, so both impls give the same output for the same generator
    state. Identity (``x`` itself, nothing drawn) when ``training`` is false or ``p == 0``;
    zeros (nothing drawn) when ``p == 1``.

    Args:
        x: array of any shape.
        p: probability of zeroing each value, in [0, 1].
        training: drop (``True``) or pass through unchanged (``False``).
        rng: the generator the mask is drawn from; a fresh ``numpy.random.default_rng()``
            when ``None``.
        impl: ``"naive"`` (a loop over elements applying the mask) or ``"fast"`` (one
            multiply by a pre-scaled mask).

    Returns:
        ``(out, cache)`` with ``out`` of ``x``'s shape and dtype.
    """
    check_impl(impl, "dropout")
    x = as_float_array(x, "dropout")
    if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a number in [0, 1], got {p!r}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"dropout: rng must be a numpy.random.Generator or None, got {type(rng).__name__}"
        )
    cache = {"impl": impl, "shape": x.shape, "dtype": x.dtype, "mask": None}
    if not training or p == 0:
        return x, cache
    if p == 1:
        keep = np.zeros(x.shape, dtype=bool)
        scale = x.dtype.type(0)
    else:
        rng = np.random.default_rng() if rng is None else rng
        keep = rng.random(x.shape) >= p  # each value kept with probability 1 − p
        scale = x.dtype.type(1 / (1 - p))
    if impl == "naive":
        zero = x.dtype.type(0)
        mask = np.empty_like(x)
        out = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            mask[idx] = scale if keep[idx] else zero  # m = keep / (1 − p)
            out[idx] = x[idx] * mask[idx]  # y = x · m
    else:
        xp = get_xp(x)
        mask = xp.multiply(xp.asarray(keep), scale, dtype=x.dtype)  # pre-scaled mask, one multiply
        out = xp.multiply(x, mask)
    cache["mask"] = mask
    return out, cache


def dropout_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of dropout: ``dout`` through the same mask and scale (identity if none).

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``dropout_forward``.

    Returns:
        ``(dx,)`` shaped and typed like the input.
    """
    dout = check_dout(dout, cache["shape"], "dropout_backward")
    mask = cache["mask"]
    if mask is None:
        return (dout.astype(cache["dtype"], copy=False),)
    if cache["impl"] == "naive":
        dx = np.empty_like(mask)
        for idx in np.ndindex(mask.shape):
            dx[idx] = dout[idx] * mask[idx]  # dx = dout · m
        return (dx,)
    return (get_xp(mask).multiply(dout, mask, dtype=mask.dtype),)
