"""``Optimizer``: parameter groups, per-parameter state, state_dict, scratch buffers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from glasscnn.nn.module import Parameter

ParamsLike = Iterable[Parameter] | Iterable[Mapping[str, Any]]


def _plain(value: Any) -> Any:
    """A hyperparameter as a Python value: NumPy scalars and 0-d arrays to scalars, sequences
    (a saved ``betas``, possibly an array after an .npz round trip) to tuples."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else tuple(v.item() for v in value.ravel())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def lerp_(start: np.ndarray, end: np.ndarray, weight: float, tmp: np.ndarray) -> np.ndarray:
    """In place ``start += weight * (end - start)``, rounded as ``torch.Tensor.lerp_``.

    PyTorch uses ``start + w * (end - start)`` for ``|w| < 0.5`` and
    ``end + (w - 1) * (end - start)`` otherwise; so does this.

    Args:
        start: array updated in place.
        end: array of the same shape.
        weight: interpolation weight (a Python float; cast to the array dtype).
        tmp: scratch array of the same shape and dtype, overwritten.

    Returns:
        ``start``.
    """
    w = start.dtype.type(weight)
    np.subtract(end, start, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        start += tmp
    else:
        tmp *= w - 1
        np.add(end, tmp, out=start)
    return start


class Optimizer:
    """Base of the optimizers: param groups, per-parameter state, ``state_dict``.

    Args:
        params: a list of ``Parameter``s, or of param-group dicts
            ``{"params": [...], "lr": ..., ...}`` whose keys override ``defaults``.
        defaults: the hyperparameters of every group that does not set them.

    Attributes:
        param_groups: list of dicts, each with ``"params"`` (list of Parameters) and the
            hyperparameters; schedules change ``group["lr"]`` between steps.
        state: per-parameter dict (momentum buffers, moments, ``"step"`` counts).
        defaults: the constructor's hyperparameters.

    Subclasses implement ``_validate(group)`` (raise ``ValueError``) and
    ``_update(p, group, state)`` (one parameter, in place).
    """

    def __init__(self, params: ParamsLike, defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        self._workspace: dict[tuple[str, int], np.ndarray] = {}
        if isinstance(params, Parameter | np.ndarray | Mapping | str):
            raise ValueError(
                f"{name}: params must be a list of Parameters or of param-group dicts, "
                f"got a {type(params).__name__}"
            )
        items = list(params)
        if not items:
            raise ValueError(f"{name}: got an empty parameter list (params={items})")
        if all(isinstance(item, Mapping) for item in items):
            for group in items:
                self.add_param_group(group)
        else:
            self.add_param_group({"params": items})

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones from defaults).

        Args:
            group: dict with ``"params"`` (a Parameter or a list of them) and optional
                hyperparameters.

        Raises:
            ValueError: no params, a non-Parameter, a parameter already in another group, or
                an invalid hyperparameter.
        """
        name = type(self).__name__
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(f"{name}: a param group must be a dict with 'params', got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list (params={params})")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise ValueError(
                    f"{name}: params[{i}] is a {type(p).__name__}, expected a Parameter"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        seen_here: set[int] = set()
        for i, p in enumerate(params):
            if id(p) in seen or id(p) in seen_here:
                raise ValueError(f"{name}: params[{i}] ({p!r}) appears in more than one place")
            seen_here.add(id(p))
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        full["params"] = params
        self._validate(full)
        self.param_groups.append(full)

    def _validate(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` for an invalid hyperparameter of ``group``."""
        self._check(group, "lr", group["lr"] >= 0, "lr >= 0")

    def _check(self, group: dict[str, Any], key: str, ok: bool, expected: str) -> None:
        """Raise ``ValueError`` naming the optimizer and echoing ``group[key]`` unless ``ok``."""
        if not ok:
            raise ValueError(
                f"{type(self).__name__}: invalid {key}={group[key]!r} (expected {expected})"
            )

    def _scratch(self, like: np.ndarray, slot: int) -> np.ndarray:
        """A reusable scratch array shaped and typed like ``like`` (contents undefined).

        One flat buffer per (dtype, slot) is shared by all parameters and grown to the
        largest request, so a step allocates nothing after the first.
        """
        key = (like.dtype.str, slot)
        buf = self._workspace.get(key)
        if buf is None or buf.size < like.size:
            buf = np.empty_like(like, shape=(like.size,), order="C")
            self._workspace[key] = buf
        return buf[: like.size].reshape(like.shape)

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        """Update one parameter in place from ``p.grad``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def step(self) -> None:
        """Update every parameter in place from its ``.grad`` (call after backward)."""
        for group in self.param_groups:
            for p in group["params"]:
                self._update(p, group, self.state.setdefault(p, {}))

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, copied, in PyTorch's layout.

        Returns:
            ``{"state": {i: {"step": int, "exp_avg": array, ...}}, "param_groups": [{"lr":
            float, ..., "params": [i, ...]}]}``, where ``i`` numbers the parameters in group
            order. Leaves are NumPy arrays (copies), Python ints/floats/bools, or tuples of
            floats (``betas``), so the whole can be flattened into an .npz checkpoint;
            ``load_state_dict`` accepts ``str`` indices and 0-d arrays in their place.
        """
        state: dict[int, dict[str, Any]] = {}
        groups: list[dict[str, Any]] = []
        index = 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(index, index + len(group["params"])))
            groups.append(packed)
            for p in group["params"]:
                entry = self.state.get(p)
                if entry:
                    state[index] = {
                        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in entry.items()
                    }
                index += 1
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state saved by ``state_dict``.

        Arrays are copied and cast to each parameter's dtype; nothing changes unless the
        whole state_dict is valid.

        Args:
            state_dict: as returned by ``state_dict`` (possibly after a round trip through a
                checkpoint: ``str`` indices and NumPy scalars are accepted).

        Raises:
            KeyError: ``"state"`` or ``"param_groups"`` missing, or state for an unknown index.
            ValueError: a different number of groups or of parameters in a group, a shape
                mismatch, or an invalid hyperparameter.
        """
        name = f"{type(self).__name__}.load_state_dict"
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"{name}: missing key {key!r}, got keys {sorted(state_dict)}")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}: the state has {len(saved_groups)} param groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Parameter] = {}
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            indices = [int(i) for i in np.ravel(saved["params"])]
            if len(indices) != len(group["params"]):
                raise ValueError(
                    f"{name}: param group {gi} has {len(indices)} parameters in the state, "
                    f"{len(group['params'])} in this optimizer"
                )
            by_index.update(zip(indices, group["params"], strict=True))
            new = {**group, **{k: _plain(v) for k, v in saved.items() if k != "params"}}
            new["params"] = group["params"]
            self._validate(new)
            new_groups.append(new)
        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            if int(key) not in by_index:
                raise KeyError(f"{name}: state for parameter {key!r}, which no group holds")
            p = by_index[int(key)]
            restored: dict[str, Any] = {}
            for k, v in entry.items():
                if k == "step":
                    restored[k] = int(np.asarray(v))
                    continue
                arr = np.asarray(v)
                if arr.shape != p.data.shape:
                    raise ValueError(
                        f"{name}: state {k!r} of parameter {key} has shape {arr.shape}, "
                        f"the parameter has {p.data.shape}"
                    )
                restored[k] = np.array(arr, dtype=p.data.dtype, order="C", copy=True)
            new_state[p] = restored
        for group, new in zip(self.param_groups, new_groups, strict=True):
            group.clear()
            group.update(new)
        self.state = new_state

    def __repr__(self) -> str:
        groups = ", ".join(
            "{" + ", ".join(f"{k}={v!r}" for k, v in g.items() if k != "params")
            + f", params={len(g['params'])}" + "}"
            for g in self.param_groups
        )
        return f"{type(self).__name__}([{groups}])"
