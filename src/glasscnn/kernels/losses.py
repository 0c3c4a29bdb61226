"""Softmax cross-entropy over class logits, averaged over the batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_impl, check_ndim, get_xp

_OP = "softmax_cross_entropy"


def _check_labels(labels: Any, logits: Any) -> Any:
    """Return ``labels`` as an integer array of shape (N,) with values in [0, K), or raise."""
    xp = get_xp(logits)
    labels = xp.asarray(labels)
    n, k = logits.shape
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{_OP}: labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"{_OP}: labels must have shape ({n},) for logits of shape {logits.shape}, "
            f"got shape {labels.shape}"
        )
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        values = sorted({int(v) for v in labels[bad][:10]})
        raise ValueError(
            f"{_OP}: labels must be in [0, {k}) for {k} classes, got {int(bad.sum())} out of "
            f"range, e.g. {values}"
        )
    return labels


def softmax_cross_entropy_forward(
    logits: Any, labels: Any, impl: str = "fast"
) -> tuple[Any, dict]:
    """Mean cross-entropy of the softmax of ``logits`` against integer ``labels``.

    Formula: ``loss = (1/N) Σ_i [log Σ_k exp(z_ik − max_k z_ik) − (z_{i,y_i} − max_k z_ik)]``
    (log-sum-exp with the row maximum subtracted, finite for any finite logits); equals
    ``torch.nn.functional.cross_entropy(logits, labels)``.

    Args:
        logits: scores of shape (N, K), finite.
        labels: integer class indices of shape (N,), each in [0, K).
        impl: ``"naive"`` (a loop over rows and classes) or ``"fast"`` (row-wise
            vectorised log-sum-exp).

    Returns:
        ``(loss, cache)``: ``loss`` a 0-d array in ``logits``' dtype.
    """
    check_impl(impl, _OP)
    logits = as_float_array(logits, _OP)
    check_ndim(logits, 2, _OP, "(N, K)")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"{_OP}: logits must be non-empty, got shape {logits.shape}")
    labels = _check_labels(labels, logits)
    xp = get_xp(logits)
    finite = xp.isfinite(logits)
    if not finite.all():
        raise ValueError(
            f"{_OP}: logits must be finite, got {int((~finite).sum())} NaN or inf values in "
            f"logits of shape {logits.shape}"
        )
    n, k = logits.shape
    if impl == "naive":
        probs = np.empty_like(logits)
        total = 0.0
        for i in range(n):
            row_max = max(float(logits[i, j]) for j in range(k))
            sum_exp = 0.0
            for j in range(k):
                sum_exp += math.exp(float(logits[i, j]) - row_max)
            for j in range(k):
                probs[i, j] = math.exp(float(logits[i, j]) - row_max) / sum_exp  # softmax
            # loss_i = log Σ_k exp(z_ik − m_i) − (z_{i,y_i} − m_i)
            total += math.log(sum_exp) - (float(logits[i, labels[i]]) - row_max)
        loss = np.asarray(total / n, dtype=logits.dtype)
    else:
        # log-sum-exp with the row maximum subtracted, exp in place on one (N, K) buffer
        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K), every entry <= 0
        picked = shifted[xp.arange(n), labels]  # (N,), z_{i,y_i} − m_i
        probs = xp.exp(shifted, out=shifted)
        sum_exp = probs.sum(axis=1)  # (N,), >= 1
        probs /= sum_exp[:, None]
        loss = xp.asarray(xp.mean(xp.log(sum_exp) - picked), dtype=logits.dtype)
    return loss, {"impl": impl, "probs": probs, "labels": labels}


def softmax_cross_entropy_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of the mean cross-entropy: ``dlogits = dout · (softmax − onehot) / N``.

    Args:
        dout: the upstream gradient of the scalar loss (usually 1.0), a number or 0-d array.
        cache: the cache from ``softmax_cross_entropy_forward``.

    Returns:
        ``(dlogits,)`` of shape (N, K) in the logits' dtype.
    """
    if np.ndim(dout) != 0:
        raise ValueError(
            f"softmax_cross_entropy_backward: dout must be a scalar, got shape {np.shape(dout)}"
        )
    probs, labels = cache["probs"], cache["labels"]
    n, k = probs.shape
    scale = float(dout) / n
    if cache["impl"] == "naive":
        dlogits = np.empty_like(probs)
        for i in range(n):
            for j in range(k):
                onehot = 1.0 if j == labels[i] else 0.0
                dlogits[i, j] = scale * (float(probs[i, j]) - onehot)  # dout · (p − 1[y]) / N
        return (dlogits,)
    xp = get_xp(probs)
    dlogits = probs.copy()  # softmax minus one-hot, scaled in place
    dlogits[xp.arange(n), labels] -= 1
    dlogits *= scale
    return (dlogits,)
