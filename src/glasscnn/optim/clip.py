"""Gradient clipping by the global norm of all gradients."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from glasscnn.nn.module import Parameter


def _norm(x: np.ndarray, norm_type: float) -> np.generic:
    """The ``norm_type``-norm of ``x`` flattened, in ``x``'s dtype."""
    if x.size == 0:
        return x.dtype.type(0)
    if norm_type == math.inf:
        return np.max(np.abs(x))
    flat = x.ravel()
    if norm_type == 2:
        return np.sqrt(np.dot(flat, flat))
    if norm_type == 1:
        return np.sum(np.abs(flat))
    return np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)


def clip_grad_norm_(
    params: Iterable[Parameter] | Parameter, max_norm: float, norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: total = ‖(‖g₁‖, ‖g₂‖, …)‖ (the norm of all
    gradients seen as one vector), then every gradient is multiplied by
    min(1, max_norm / (total + 1e-6)).

    Args:
        params: Parameters (or one) whose ``.grad`` are clipped.
        max_norm: the largest allowed total norm (≥ 0).
        norm_type: p of the p-norm (> 0), or ``math.inf`` for the largest absolute value.
        error_if_nonfinite: raise if the total norm is NaN or infinite (otherwise the
            gradients are scaled by a NaN factor, as PyTorch does).

    Returns:
        The total norm before clipping, as a float (0.0 for no parameters).

    Raises:
        ValueError: a negative ``max_norm``, ``norm_type`` ≤ 0, or (with
            ``error_if_nonfinite``) a non-finite total norm.
    """
    name = "clip_grad_norm_"
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"{name}: norm_type must be > 0 or math.inf, got {norm_type!r}")
    if not max_norm >= 0:
        raise ValueError(f"{name}: max_norm must be >= 0, got {max_norm!r}")
    grads = [p.grad for p in ([params] if isinstance(params, Parameter) else params)]
    if not grads:
        return 0.0
    norms = np.array([_norm(g, norm_type) for g in grads])
    total = _norm(norms, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise ValueError(
            f"{name}: the total {norm_type}-norm of the gradients is {float(total)} "
            f"(non-finite); pass error_if_nonfinite=False to scale anyway"
        )
    coef = float(max_norm) / (total + 1e-6)  # in the gradients' dtype, as PyTorch
    if not coef >= 1:  # clamped to 1 (a no-op); a NaN factor is applied
        for g in grads:
            g *= coef
    return float(total)
