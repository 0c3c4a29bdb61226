"""Key mapping between checkpoints and models: prefixes, renames, a report of what matches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glasscnn.nn.module import Module, Parameter

Shape = tuple[int, ...]


def remap_keys(
    state_dict: Mapping[str, Any],
    strip_prefix: str | None = None,
    add_prefix: str | None = None,
    rename: Mapping[str, str] | Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Rename the keys of a state_dict: strip a prefix, rename, then add a prefix.

    Args:
        state_dict: ``{key: array}``; values are passed through (not copied).
        strip_prefix: removed from every key that starts with it (e.g. ``"module."`` of
            ``DataParallel`` checkpoints); other keys are kept as they are.
        add_prefix: prepended to every key after stripping and renaming.
        rename: exact old -> new key mapping (applied after stripping; keys not in it are
            kept), or a function of the key.

    Returns:
        A new dict in the same order.

    Raises:
        ValueError: two keys would end up with the same name (both are named).
    """
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = key
        if strip_prefix and new.startswith(strip_prefix):
            new = new[len(strip_prefix):]
        if callable(rename):
            new = rename(new)
        elif rename is not None:
            new = rename.get(new, new)
        if add_prefix:
            new = add_prefix + new
        if new in out:
            raise ValueError(f"remap_keys: {origin[new]!r} and {key!r} both become {new!r}")
        out[new] = value
        origin[new] = key
    return out


def shapes_of(model_or_sd: Module | Mapping[str, Any]) -> dict[str, Shape]:
    """``{key: shape}`` of a Module's parameters and buffers (no copy) or of a state_dict."""
    if isinstance(model_or_sd, Module):
        items: list[tuple[str, Any]] = [
            (k, p.data) for k, p in model_or_sd.named_parameters()
        ] + list(model_or_sd.named_buffers())
    else:
        items = list(model_or_sd.items())
    return {
        key: tuple(np.shape(value.data if isinstance(value, Parameter) else value))
        for key, value in items
    }


@dataclass
class MatchReport:
    """How the keys of a checkpoint line up with a model's.

    Attributes:
        matched: keys present on both sides with the same shape.
        missing: ``(key, model shape)`` the model has and the checkpoint lacks.
        unexpected: ``(key, file shape)`` the checkpoint has and the model lacks.
        mismatched: ``(key, model shape, file shape)`` on both sides, shapes differ.
    """

    matched: list[str] = field(default_factory=list)
    missing: list[tuple[str, Shape]] = field(default_factory=list)
    unexpected: list[tuple[str, Shape]] = field(default_factory=list)
    mismatched: list[tuple[str, Shape, Shape]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key matches in name and shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def hint(self) -> str:
        """A remap suggestion when all unexpected keys carry one extra or one missing prefix."""
        if not self.unexpected or not self.missing:
            return ""
        model_keys = {k for k, _ in self.missing}
        file_keys = [k for k, _ in self.unexpected]
        head = file_keys[0].split(".", 1)[0] + "."
        if all(k.startswith(head) and k[len(head):] in model_keys for k in file_keys):
            return f"try strip_prefix={head!r}"
        head = next(iter(model_keys)).split(".", 1)[0] + "."
        if all(head + k in model_keys for k in file_keys):
            return f"try add_prefix={head!r}"
        return ""

    def __str__(self) -> str:
        lines = [f"{len(self.matched)} keys match"]
        if self.missing:
            lines.append(f"missing from the checkpoint ({len(self.missing)}, model shape):")
            lines += [f"  {k} {s}" for k, s in self.missing]
        if self.unexpected:
            lines.append(f"unexpected in the checkpoint ({len(self.unexpected)}, file shape):")
            lines += [f"  {k} {s}" for k, s in self.unexpected]
        if self.mismatched:
            lines.append(f"shape mismatch ({len(self.mismatched)}):")
            lines += [f"  {k}: model {m}, file {f}" for k, m, f in self.mismatched]
        hint = self.hint()
        if hint:
            lines.append(hint)
        return "\n".join(lines)


def match_report(model_or_sd: Module | Mapping[str, Any], state_dict: Mapping[str, Any]
                 ) -> MatchReport:
    """Compare a checkpoint's keys and shapes with a model's (or a reference state_dict).

    Args:
        model_or_sd: a glasscnn ``Module`` or a reference ``{key: array}``.
        state_dict: the checkpoint's ``{key: array}``.

    Returns:
        A ``MatchReport``; ``print(report)`` lists every unmatched key with its shape.
    """
    want = shapes_of(model_or_sd)
    have = shapes_of(state_dict)
    report = MatchReport()
    for key, shape in want.items():
        if key not in have:
            report.missing.append((key, shape))
        elif have[key] != shape:
            report.mismatched.append((key, shape, have[key]))
        else:
            report.matched.append(key)
    report.unexpected = [(k, s) for k, s in have.items() if k not in want]
    return report
