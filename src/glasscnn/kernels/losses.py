"""Class-index losses: softmax cross-entropy and negative log-likelihood, with PyTorch's
options (class weights, ``ignore_index``, reductions, label smoothing, (N, C, d1, …) input).

Both see their input as rows: (N, C) as it is, (N, C, d1, …) as (N·d1·…, C) with the
class axis last; the targets then have shape (N,) or (N, d1, …).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_impl, get_xp

_OP = "softmax_cross_entropy"
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str, op: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _rows(x: Any, op: str, name: str) -> Any:
    """``x`` (N, C) or (N, C, d1, …) as (M, C) rows, class axis last (a copy for ≥ 3-D)."""
    if x.ndim < 2:
        raise ValueError(f"{op}: {name} must have shape (N, C) or (N, C, d1, ...), "
                         f"got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{op}: {name} must be non-empty, got shape {x.shape}")
    if x.ndim == 2:
        return x
    return get_xp(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(rows: Any, shape: tuple[int, ...]) -> Any:
    """Inverse of :func:`_rows`: (M, C) back to ``shape`` (N, C, d1, …), C-contiguous."""
    if len(shape) == 2:
        return rows
    xp = get_xp(rows)
    n, c, *spatial = shape
    return xp.ascontiguousarray(xp.moveaxis(rows.reshape(n, *spatial, c), -1, 1))


def _check_labels(labels: Any, shape: tuple[int, ...], ignore_index: int, op: str) -> Any:
    """``labels`` as an integer array of shape (M,) with values in [0, C) or ``ignore_index``."""
    xp = get_xp(labels)
    labels = xp.asarray(labels)
    want = (shape[0], *shape[2:])
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{op}: labels must be integers, got dtype {labels.dtype}")
    if labels.shape != want:
        raise ValueError(f"{op}: labels must have shape {want} for input of shape {shape}, "
                         f"got shape {labels.shape}")
    k = shape[1]
    bad = ((labels < 0) | (labels >= k)) & (labels != ignore_index)
    if bad.any():
        values = sorted({int(v) for v in labels[bad][:10]})
        raise ValueError(
            f"{op}: labels must be in [0, {k}) for {k} classes (or ignore_index "
            f"{ignore_index}), got {int(bad.sum())} out of range, e.g. {values}"
        )
    return labels.reshape(-1)


def _check_options(op: str, weight: Any, k: int, dtype: Any, reduction: str,
                   ignore_index: Any) -> Any:
    """Check the shared options; return ``weight`` as a (C,) array of ``dtype`` or ``None``."""
    check_reduction(reduction, op)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if weight is None:
        return None
    weight = np.asarray(weight)
    if weight.shape != (k,) or weight.dtype.kind not in "biuf":
        raise ValueError(f"{op}: weight must be a real array of shape ({k},) (one per class), "
                         f"got shape {weight.shape} and dtype {weight.dtype}")
    return weight.astype(dtype)


def _target_weights(labels: Any, weight: Any, ignore_index: int, dtype: Any) -> Any:
    """Per-row weight w[y_i] of each target, 0 where ignored: shape (M,)."""
    valid = labels != ignore_index
    if weight is None:
        return valid.astype(dtype)
    return np.where(valid, weight[np.where(valid, labels, 0)], 0).astype(dtype)


def _reduce(per_row: Any, w_rows: Any, reduction: str, label_shape: tuple[int, ...]) -> Any:
    """Apply the reduction: the (N, d1, …) losses, their sum, or their sum / Σ w[y_i]."""
    if reduction == "none":
        return per_row.reshape(label_shape)
    total = per_row.sum()
    if reduction == "sum":
        return np.asarray(total, dtype=per_row.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: NaN
        return np.asarray(total / w_rows.sum(), dtype=per_row.dtype)


def _row_scale(dout: Any, cache: dict, op: str) -> Any:
    """The upstream gradient of each row's loss, before its weight, 0 for ignored rows: (M,)."""
    reduction, w_rows = cache["reduction"], cache["w_rows"]
    if reduction == "none":
        dout = np.asarray(dout)
        if dout.shape != cache["label_shape"]:
            raise ValueError(f"{op}: dout must have the loss's shape {cache['label_shape']}, "
                             f"got shape {dout.shape}")
        return np.where(cache["valid"], dout.reshape(-1), 0).astype(w_rows.dtype)
    if np.ndim(dout) != 0:
        raise ValueError(f"{op}: dout must be a scalar, got shape {np.shape(dout)}")
    scale = np.float64(dout)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: NaN
            scale = scale / np.float64(w_rows.sum())
    return np.where(cache["valid"], scale, 0).astype(w_rows.dtype)


def softmax_cross_entropy_forward(
    logits: Any, labels: Any, weight: Any = None, ignore_index: int = -100,
    reduction: str = "mean", label_smoothing: float = 0.0, impl: str = "fast",
) -> tuple[Any, dict]:
    """Cross-entropy of the softmax of ``logits`` against class indices, as
    ``torch.nn.functional.cross_entropy``.

    Per target i (a row of the logits z, label y, classes c, ε = label_smoothing,
    w the class weights, all 1 when ``weight`` is None):
    ``l_i = (1 − ε) · w_y · (−log p_iy) + (ε / C) · Σ_c w_c · (−log p_ic)`` with
    ``log p_ic = z_ic − m_i − log Σ_k exp(z_ik − m_i)`` (m_i the row maximum, so finite for
    finite logits); ``l_i = 0`` where ``y_i == ignore_index``. ``"mean"`` divides the sum
    by ``Σ_i w_{y_i}`` over the targets not ignored (NaN when all are); ``"sum"`` sums;
    ``"none"`` returns every ``l_i``.

    Args:
        logits: scores of shape (N, C) or (N, C, d1, …), finite.
        labels: integer class indices of shape (N,) or (N, d1, …), each in [0, C) or
            equal to ``ignore_index``.
        weight: optional per-class weights, shape (C,).
        ignore_index: a label value whose targets count nowhere (PyTorch's −100).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1].
        impl: ``"naive"`` (a loop over rows and classes) or ``"fast"`` (row-wise vectorised
            log-sum-exp).

    Returns:
        ``(loss, cache)``: ``loss`` a 0-d array (``"mean"``, ``"sum"``) or shaped like
        ``labels`` (``"none"``), in the logits' dtype.
    """
    check_impl(impl, _OP)
    logits = as_float_array(logits, _OP)
    rows = _rows(logits, _OP, "logits")
    m, k = rows.shape
    weight = _check_options(_OP, weight, k, logits.dtype, reduction, ignore_index)
    if isinstance(label_smoothing, bool) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{_OP}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    labels = _check_labels(labels, logits.shape, ignore_index, _OP)
    xp = get_xp(logits)
    finite = xp.isfinite(logits)
    if not finite.all():
        raise ValueError(
            f"{_OP}: logits must be finite, got {int((~finite).sum())} NaN or inf values in "
            f"logits of shape {logits.shape}"
        )
    eps = float(label_smoothing)
    valid = labels != ignore_index
    w_rows = _target_weights(labels, weight, ignore_index, logits.dtype)
    if impl == "naive":
        probs, per_row = _cross_entropy_naive(rows, labels, weight, valid, eps)
    else:
        # log-sum-exp with the row maximum subtracted, exp in place on one (M, C) buffer
        shifted = rows - rows.max(axis=1, keepdims=True)  # (M, C), every entry <= 0
        picked = shifted[xp.arange(m), xp.where(valid, labels, 0)]  # z_iy − m_i
        probs = xp.exp(shifted)
        sum_exp = probs.sum(axis=1)  # (M,), >= 1
        probs /= sum_exp[:, None]
        lse = xp.log(sum_exp)  # (M,)
        per_row = w_rows * (lse - picked)  # w_y · (−log p_iy)
        if eps > 0:
            shifted -= lse[:, None]  # log p, in place
            w_all = 1 if weight is None else weight
            smooth = -(shifted * w_all).sum(axis=1) * valid
            per_row = (1 - eps) * per_row + (eps / k) * smooth
    label_shape = (logits.shape[0], *logits.shape[2:])
    loss = _reduce(per_row.astype(logits.dtype), w_rows, reduction, label_shape)
    cache = {"impl": impl, "probs": probs, "labels": labels, "valid": valid, "weight": weight,
             "w_rows": w_rows, "eps": eps, "reduction": reduction, "shape": logits.shape,
             "label_shape": label_shape}
    return loss, cache


def _cross_entropy_naive(rows: Any, labels: Any, weight: Any, valid: Any,
                         eps: float) -> tuple[Any, Any]:
    """Loop over rows and classes: the softmax and each row's loss l_i (before reduction)."""
    m, k = rows.shape
    probs = np.empty_like(rows)
    per_row = np.zeros(m, dtype=rows.dtype)
    for i in range(m):
        row_max = max(float(v) for v in rows[i])
        sum_exp = sum(math.exp(float(v) - row_max) for v in rows[i])
        log_p = [float(v) - row_max - math.log(sum_exp) for v in rows[i]]
        for c in range(k):
            probs[i, c] = math.exp(log_p[c])
        if not valid[i]:
            continue  # an ignored target: l_i = 0
        w = [1.0] * k if weight is None else [float(v) for v in weight]
        # l_i = (1 − ε)·w_y·(−log p_iy) + (ε/C)·Σ_c w_c·(−log p_ic)
        per_row[i] = ((1 - eps) * w[labels[i]] * -log_p[labels[i]]
                      + eps / k * sum(w[c] * -log_p[c] for c in range(k)))
    return probs, per_row


def softmax_cross_entropy_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of the cross-entropy with respect to the logits.

    Per row i with upstream g_i (``dout``, over ``Σ w_{y_i}`` for ``"mean"``):
    ``dz_ik = g_i · [p_ik · ((1 − ε)·w_y + (ε/C)·Σ_c w_c) − (1 − ε)·w_y·[k = y] − (ε/C)·w_k]``,
    which is ``g_i · (p_ik − [k = y])`` without weights or smoothing; 0 for ignored rows.

    Args:
        dout: the upstream gradient: a scalar for ``"mean"`` and ``"sum"``, else an array
            shaped like the loss.
        cache: the cache from ``softmax_cross_entropy_forward``.

    Returns:
        ``(dlogits,)`` shaped like the logits, in their dtype.
    """
    g = _row_scale(dout, cache, "softmax_cross_entropy_backward")
    probs, labels, weight, eps = cache["probs"], cache["labels"], cache["weight"], cache["eps"]
    valid, w_y = cache["valid"], cache["w_rows"]
    m, k = probs.shape
    w = np.ones(k, dtype=probs.dtype) if weight is None else weight
    if cache["impl"] == "naive":
        d = np.zeros_like(probs)
        w_sum = float(w.sum())
        for i in range(m):
            if not valid[i]:
                continue
            coef = (1 - eps) * float(w_y[i]) + eps / k * w_sum
            for c in range(k):
                onehot = 1.0 if c == labels[i] else 0.0
                # dz_ic = g_i·[p_ic·coef − (1 − ε)·w_y·[c = y] − (ε/C)·w_c]
                d[i, c] = float(g[i]) * (float(probs[i, c]) * coef
                                         - (1 - eps) * float(w_y[i]) * onehot
                                         - eps / k * float(w[c]))
        return (_unrows(d, cache["shape"]),)
    xp = get_xp(probs)
    coef = (1 - eps) * w_y + (eps / k) * w.sum()  # (M,)
    d = probs * (g * coef)[:, None]  # p_ik · coef_i · g_i, then the one-hot and smoothing terms
    d[xp.arange(m), xp.where(valid, labels, 0)] -= (1 - eps) * w_y * g
    if eps > 0:
        d -= (eps / k) * g[:, None] * w[None, :]
    return (_unrows(d.astype(probs.dtype, copy=False), cache["shape"]),)


def nll_loss_forward(
    log_probs: Any, labels: Any, weight: Any = None, ignore_index: int = -100,
    reduction: str = "mean", impl: str = "fast",
) -> tuple[Any, dict]:
    """Negative log-likelihood of class indices given log-probabilities, as
    ``torch.nn.functional.nll_loss``.

    Per target i: ``l_i = −w_{y_i} · x_{i, y_i}`` (0 where ``y_i == ignore_index``);
    ``"mean"`` divides the sum by ``Σ_i w_{y_i}`` over the targets not ignored.

    Args:
        log_probs: x, shape (N, C) or (N, C, d1, …) (usually a log-softmax).
        labels: integer class indices of shape (N,) or (N, d1, …), each in [0, C) or
            equal to ``ignore_index``.
        weight: optional per-class weights, shape (C,).
        ignore_index: a label value whose targets count nowhere.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        impl: ``"naive"`` (a loop over rows) or ``"fast"`` (one fancy-indexed gather).

    Returns:
        ``(loss, cache)``: ``loss`` a 0-d array or shaped like ``labels`` (``"none"``).
    """
    op = "nll_loss"
    check_impl(impl, op)
    x = as_float_array(log_probs, op)
    rows = _rows(x, op, "log_probs")
    m, k = rows.shape
    weight = _check_options(op, weight, k, x.dtype, reduction, ignore_index)
    labels = _check_labels(labels, x.shape, ignore_index, op)
    w_rows = _target_weights(labels, weight, ignore_index, x.dtype)
    valid = labels != ignore_index
    safe = np.where(valid, labels, 0)  # ignored rows read class 0, with weight 0
    if impl == "naive":
        per_row = np.zeros(m, dtype=x.dtype)
        for i in range(m):
            per_row[i] = -float(w_rows[i]) * float(rows[i, safe[i]])  # l_i = −w_y · x_iy
    else:
        per_row = -w_rows * rows[np.arange(m), safe]
    label_shape = (x.shape[0], *x.shape[2:])
    loss = _reduce(per_row, w_rows, reduction, label_shape)
    cache = {"impl": impl, "labels": safe, "valid": valid, "w_rows": w_rows, "reduction": reduction,
             "shape": x.shape, "label_shape": label_shape, "dtype": x.dtype, "k": k}
    return loss, cache


def nll_loss_backward(dout: Any, cache: dict) -> tuple[Any]:
    """Gradient of the NLL loss: ``dx_{i, y_i} = −g_i · w_{y_i}``, 0 elsewhere.

    Args:
        dout: a scalar for ``"mean"`` and ``"sum"``, else an array shaped like the loss.
        cache: the cache from ``nll_loss_forward``.

    Returns:
        ``(dlog_probs,)`` shaped like the input.
    """
    g = _row_scale(dout, cache, "nll_loss_backward")
    labels, w_rows = cache["labels"], cache["w_rows"]
    m = labels.shape[0]
    d = np.zeros((m, cache["k"]), dtype=cache["dtype"])
    if cache["impl"] == "naive":
        for i in range(m):
            d[i, labels[i]] = -float(g[i]) * float(w_rows[i])  # dx_iy = −g_i · w_y
    else:
        d[np.arange(m), labels] = -g * w_rows
    return (_unrows(d, cache["shape"]),)


def _pointwise_args(op: str, x: Any, target: Any, reduction: str, impl: str) -> tuple[Any, Any]:
    """Check an elementwise loss's input and target (same shape, real); cast to a float."""
    check_impl(impl, op)
    check_reduction(reduction, op)
    x = as_float_array(x, op)
    target = get_xp(target).asarray(target)
    if target.dtype.kind not in "biuf":
        raise ValueError(f"{op}: target must be real, got dtype {target.dtype}")
    if target.shape != x.shape:
        raise ValueError(f"{op}: target must have the input's shape {x.shape}, "
                         f"got shape {target.shape}")
    return x, target.astype(x.dtype, copy=False)


def _reduce_all(per: Any, reduction: str) -> Any:
    """``per`` itself, its sum or its mean (a 0-d array)."""
    if reduction == "none":
        return per
    return np.asarray(per.sum() if reduction == "sum" else per.mean(), dtype=per.dtype)


def _elementwise_scale(dout: Any, cache: dict, op: str) -> Any:
    """The upstream gradient of each element's loss: ``dout``, or the scalar (/ numel)."""
    shape, dtype = cache["shape"], cache["dtype"]
    if cache["reduction"] == "none":
        dout = np.asarray(dout)
        if dout.shape != shape:
            raise ValueError(f"{op}: dout must have the loss's shape {shape}, "
                             f"got shape {dout.shape}")
        return dout.astype(dtype, copy=False)
    if np.ndim(dout) != 0:
        raise ValueError(f"{op}: dout must be a scalar, got shape {np.shape(dout)}")
    size = max(1, math.prod(shape)) if cache["reduction"] == "mean" else 1
    return np.asarray(float(dout) / size, dtype=dtype)


def mse_loss_forward(x: Any, target: Any, reduction: str = "mean", impl: str = "fast"
                     ) -> tuple[Any, dict]:
    """Squared error ``(x − t)²`` per element, then the reduction, as
    ``torch.nn.functional.mse_loss``.

    Args:
        x: input of any shape.
        target: t, same shape.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one vectorised difference).

    Returns:
        ``(loss, cache)``: a 0-d array, or shaped like ``x`` for ``"none"``.
    """
    op = "mse_loss"
    x, t = _pointwise_args(op, x, target, reduction, impl)
    if impl == "naive":
        per = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            per[idx] = (float(x[idx]) - float(t[idx])) ** 2  # l = (x − t)²
        diff = x - t
    else:
        diff = x - t
        per = diff * diff
    cache = {"impl": impl, "diff": diff, "reduction": reduction, "shape": x.shape,
             "dtype": x.dtype}
    return _reduce_all(per, reduction), cache


def mse_loss_backward(dout: Any, cache: dict) -> tuple[Any, Any]:
    """Gradient of the squared error: ``dx = 2 · g · (x − t)``, ``dt = −dx``.

    Args:
        dout: a scalar for ``"mean"`` and ``"sum"``, else an array shaped like the loss.
        cache: the cache from ``mse_loss_forward``.

    Returns:
        ``(dx, dtarget)`` shaped like the input.
    """
    g = _elementwise_scale(dout, cache, "mse_loss_backward")
    diff = cache["diff"]
    if cache["impl"] == "naive":
        dx = np.empty_like(diff)
        gb = np.broadcast_to(g, diff.shape)
        for idx in np.ndindex(diff.shape):
            dx[idx] = 2 * float(gb[idx]) * float(diff[idx])  # dl/dx = 2(x − t)
    else:
        dx = 2 * g * diff
    return dx, -dx


def _broadcast_weight(op: str, name: str, w: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``w`` broadcast to ``shape`` in ``dtype`` (``None`` stays ``None``), or ``ValueError``."""
    if w is None:
        return None
    w = np.asarray(w)
    try:
        return np.broadcast_to(w.astype(dtype), shape)
    except ValueError:
        raise ValueError(f"{op}: {name} of shape {w.shape} does not broadcast to the input's "
                         f"shape {shape}") from None


def binary_cross_entropy_with_logits_forward(
    x: Any, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None,
    impl: str = "fast",
) -> tuple[Any, dict]:
    """Binary cross-entropy of ``sigmoid(x)`` against targets in [0, 1], as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element, with w the weight and q the positive-class weight (1 when absent):
    ``l = −w · [q · t · log σ(x) + (1 − t) · log(1 − σ(x))]``, computed stably as
    ``w · [(1 − t) · x + (1 + (q − 1) · t) · softplus(−x)]`` with
    ``softplus(−x) = log(1 + exp(−|x|)) + max(−x, 0)``.

    Args:
        x: logits of any shape.
        target: t, same shape, usually in [0, 1].
        weight: optional rescaling weight, broadcast to ``x``'s shape.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        pos_weight: optional weight q of the positive targets, broadcast to ``x``'s shape
            (shape (C,) weighs the classes of the last axis).
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (vectorised softplus).

    Returns:
        ``(loss, cache)``: a 0-d array, or shaped like ``x`` for ``"none"``.
    """
    op = "binary_cross_entropy_with_logits"
    x, t = _pointwise_args(op, x, target, reduction, impl)
    w = _broadcast_weight(op, "weight", weight, x.shape, x.dtype)
    q = _broadcast_weight(op, "pos_weight", pos_weight, x.shape, x.dtype)
    if impl == "naive":
        per = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            v, tv = float(x[idx]), float(t[idx])
            qv = 1.0 if q is None else float(q[idx])
            softplus = math.log1p(math.exp(-abs(v))) + max(-v, 0.0)  # −log σ(x)
            # l = w·[(1 − t)·x + (1 + (q − 1)·t)·softplus(−x)]
            per[idx] = (1.0 if w is None else float(w[idx])) * (
                (1 - tv) * v + (1 + (qv - 1) * tv) * softplus)
    else:
        softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
        per = (1 - t) * x + (softplus if q is None else (1 + (q - 1) * t) * softplus)
        if w is not None:
            per *= w
    cache = {"impl": impl, "x": x, "t": t, "w": w, "q": q, "reduction": reduction,
             "shape": x.shape, "dtype": x.dtype}
    return _reduce_all(per, reduction), cache


def binary_cross_entropy_with_logits_backward(dout: Any, cache: dict) -> tuple[Any, Any]:
    """Gradient of the binary cross-entropy with logits.

    ``dx = g · w · [(1 − t) − (1 + (q − 1)·t) · σ(−x)]`` (``g · w · (σ(x) − t)`` when q = 1)
    and ``dt = g · w · [−x + (q − 1) · softplus(−x)]``.

    Args:
        dout: a scalar for ``"mean"`` and ``"sum"``, else an array shaped like the loss.
        cache: the cache from ``binary_cross_entropy_with_logits_forward``.

    Returns:
        ``(dx, dtarget)`` shaped like the input.
    """
    g = _elementwise_scale(dout, cache, "binary_cross_entropy_with_logits_backward")
    x, t, w, q = cache["x"], cache["t"], cache["w"], cache["q"]
    if cache["impl"] == "naive":
        dx, dt = np.empty_like(x), np.empty_like(x)
        gb = np.broadcast_to(g, x.shape)
        for idx in np.ndindex(x.shape):
            v, tv = float(x[idx]), float(t[idx])
            qv = 1.0 if q is None else float(q[idx])
            scale = float(gb[idx]) * (1.0 if w is None else float(w[idx]))
            sig_neg = _sigmoid(-v)
            softplus = math.log1p(math.exp(-abs(v))) + max(-v, 0.0)
            dx[idx] = scale * ((1 - tv) - (1 + (qv - 1) * tv) * sig_neg)  # dl/dx
            dt[idx] = scale * (-v + (qv - 1) * softplus)  # dl/dt
        return dx, dt
    with np.errstate(over="ignore"):
        sig_neg = 1 / (1 + np.exp(x))  # σ(−x); exp overflowing to inf gives the limit 0
    scale = g if w is None else g * w
    if q is None:
        return (scale * ((1 - t) - sig_neg)).astype(x.dtype), (scale * -x).astype(x.dtype)
    softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
    dx = scale * ((1 - t) - (1 + (q - 1) * t) * sig_neg)
    dt = scale * (-x + (q - 1) * softplus)
    return dx.astype(x.dtype), dt.astype(x.dtype)


def _sigmoid(v: float) -> float:
    """σ(v) by the two-branch stable formula."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)
