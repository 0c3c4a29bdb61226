"""Naive-vs-fast gradient comparison shared by the kernel tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_grads_match(grads_naive: Any, grads_fast: Any, refs: Any, dtype: Any,
                       **tol: float) -> None:
    """Each naive gradient equals the fast one, with the shape of its argument in ``refs``
    and ``dtype``; where the argument is ``None`` (no bias, no affine) both are ``None``."""
    for g_n, g_f, ref in zip(grads_naive, grads_fast, refs, strict=True):
        if ref is None:
            assert g_n is None and g_f is None
            continue
        assert g_n.shape == g_f.shape == ref.shape
        assert g_n.dtype == g_f.dtype == dtype
        np.testing.assert_allclose(g_n, g_f, **tol)
