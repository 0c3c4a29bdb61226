"""Element-by-element operators shared by several families: the float-input check and ``add``."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.kernels._common import as_float_array, check_dout, check_impl, get_xp


def add_forward(a: Any, b: Any, impl: str = "fast") -> tuple[Any, dict]:
    """Sum of two arrays of the same shape, the join of a residual connection.

    Args:
        a: array of any shape.
        b: array of the same shape as ``a``.
        impl: ``"naive"`` (a loop over elements) or ``"fast"`` (one ufunc call).

    Returns:
        ``(out, cache)`` with ``out = a + b`` of the common shape, in the dtype NumPy
        promotes the two to (``a``'s dtype when both agree).
    """
    check_impl(impl, "add")
    a = as_float_array(a, "add")
    b = as_float_array(b, "add")
    if a.shape != b.shape:
        raise ValueError(f"add: a and b must have the same shape, got {a.shape} and {b.shape}")
    if impl == "naive":
        out = np.empty(a.shape, dtype=np.result_type(a, b))
        for idx in np.ndindex(a.shape):
            out[idx] = a[idx] + b[idx]  # out = a + b
    else:
        xp = get_xp(a)
        out = xp.add(a, b)  # one vectorised ufunc call
    cache = {"impl": impl, "shape": a.shape, "a_dtype": a.dtype, "b_dtype": b.dtype}
    return out, cache


def add_backward(dout: Any, cache: dict) -> tuple[Any, Any]:
    """Gradients of ``add``: the upstream gradient passes unchanged to both inputs.

    Args:
        dout: upstream gradient, shaped like the output.
        cache: the cache from ``add_forward``.

    Returns:
        ``(da, db)``, each ``dout`` in its input's dtype. When the dtypes agree both are
        ``dout`` itself (no copy): callers must not modify them in place.
    """
    dout = check_dout(dout, cache["shape"], "add_backward")
    if cache["impl"] == "naive":
        da = np.empty(dout.shape, dtype=cache["a_dtype"])
        db = np.empty(dout.shape, dtype=cache["b_dtype"])
        for idx in np.ndindex(dout.shape):
            da[idx] = dout[idx]  # dL/da = dL/dout
            db[idx] = dout[idx]  # dL/db = dL/dout
        return da, db
    return dout.astype(cache["a_dtype"], copy=False), dout.astype(cache["b_dtype"], copy=False)
