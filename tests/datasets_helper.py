"""Real data sets in tests: load one, or skip naming the command that fetches it.

Under ``GLASSCNN_REQUIRE_DATA=1`` (CI) an absent data set fails the test instead.
"""

from __future__ import annotations

import os

import pytest

from glasscnn.data import Dataset, load

REQUIRE_DATA = os.environ.get("GLASSCNN_REQUIRE_DATA") == "1"


def load_or_skip(name: str, split: str) -> Dataset:
    """``glasscnn.data.load(name, split=split)``, or skip (fail in CI) when it is absent."""
    try:
        return load(name, split=split)
    except FileNotFoundError as err:
        message = f"{name} ({split}) is not available: {err}"
        if REQUIRE_DATA:
            pytest.fail(f"{message} [GLASSCNN_REQUIRE_DATA=1]")
        pytest.skip(message)
