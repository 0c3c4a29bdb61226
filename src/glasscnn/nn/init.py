"""Weight initialisation as PyTorch's defaults, drawn from a seedable NumPy generator."""

from __future__ import annotations

import math

import numpy as np

_default_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator used by layers built without an explicit ``rng``."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The module-wide generator (see ``manual_seed``)."""
    return _default_rng


def kaiming_uniform(
    shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: np.dtype
) -> np.ndarray:
    """PyTorch's default weight init for Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    This is ``kaiming_uniform_(a=sqrt(5))``: gain sqrt(2 / (1 + 5)), bound
    gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).

    Args:
        shape: the weight's shape, e.g. (C_out, C_in, kH, kW).
        fan_in: inputs per output (C_in * kH * kW, or in_features).
        rng: the generator.
        dtype: the array's dtype.

    Returns:
        A new array of ``shape``.
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class ZeroGenerator(np.random.Generator):
    """A generator whose every draw is zeros: builds a network's layers and shapes without
    the cost of drawing its weights, for counting (``glasscnn models``, ``analyze``)."""

    def __init__(self) -> None:
        super().__init__(np.random.PCG64(0))

    def uniform(self, low: object = 0.0, high: object = 1.0, size: object = None) -> np.ndarray:
        """Zeros of ``size``."""
        return np.zeros(() if size is None else size)

    def normal(self, loc: object = 0.0, scale: object = 1.0, size: object = None) -> np.ndarray:
        """Zeros of ``size``."""
        return np.zeros(() if size is None else size)

    def standard_normal(self, size: object = None, dtype: object = np.float64,
                        out: np.ndarray | None = None) -> np.ndarray:
        """Zeros of ``size`` (or ``out`` zeroed)."""
        if out is not None:
            out[...] = 0
            return out
        return np.zeros(() if size is None else size, dtype)
