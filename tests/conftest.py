"""Shared fixtures: the optional torch import, seeded generators."""

from __future__ import annotations

import os

import numpy as np
import pytest

REQUIRE_TORCH = os.environ.get("GLASSCNN_REQUIRE_TORCH") == "1"


def _import_torch():
    try:
        import torch
    except ImportError:
        if REQUIRE_TORCH:
            raise
        return None
    torch.set_num_threads(1)
    return torch


_TORCH = _import_torch()


@pytest.fixture(scope="session")
def torch():
    """The torch module; skips (or fails under GLASSCNN_REQUIRE_TORCH=1) when absent."""
    if _TORCH is None:
        pytest.skip("torch is not installed: pip install -e '.[torch]'")
    return _TORCH


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for each test."""
    return np.random.default_rng(1234)
