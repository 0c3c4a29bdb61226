"""Flatten nested training state (dicts, lists, arrays, numbers) into JSON plus named arrays.

Checkpoints hold arrays in an ``.npz`` and everything else in JSON; ``flatten`` splits a
nested structure into the two and ``unflatten`` puts it back, arrays bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def flatten(obj: Any, arrays: dict[str, np.ndarray], prefix: str = "") -> Any:
    """Return a JSON-able copy of ``obj`` whose arrays are moved into ``arrays``.

    Each array is stored under its path (``state/0/exp_avg``) and replaced in the tree by
    ``{"__array__": path}``. NumPy scalars become Python numbers.

    Args:
        obj: nested dicts (string keys), lists/tuples, arrays, numbers, strings, None.
        arrays: receives the arrays.
        prefix: the path of ``obj``.

    Returns:
        The JSON-able tree.
    """
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {str(k): flatten(v, arrays, f"{prefix}/{k}" if prefix else str(k))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [flatten(v, arrays, f"{prefix}/{i}" if prefix else str(i))
                for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def unflatten(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of ``flatten``: put the arrays back into the JSON tree.

    Integer-like dict keys come back as strings; callers that need int keys convert.
    """
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: unflatten(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten(v, arrays) for v in tree]
    return tree
