"""Search spaces: parse ``NAME=KIND(ARGS)``, default spaces per optimizer, coarse-to-fine.

A space maps recipe fields (``lr``, ``weight_decay``, ``momentum``, ``l2``, ``batch_size``
…) to distributions. Nothing here imports Ray: ``to_tune`` converts a space to Ray Tune's
sampling objects when a sweep starts.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from glasscnn.train.recipes import Recipe

KINDS = ("loguniform", "uniform", "randint", "choice")
FLOAT_FIELDS = ("lr", "weight_decay", "momentum", "l2", "clip_norm")
INT_FIELDS = ("batch_size", "seed")
CHOICE_FIELDS = ("optimizer", "schedule", "normalize", "augment")
MODEL_PREFIX = "model."
TOP_FRACTION = 0.25
MIN_LOG_PAD = 0.1
MIN_LINEAR_PAD = 0.05

_ENTRY = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter.

    Attributes:
        name: a recipe field (``lr``) or a model builder argument (``model.dropout``).
        kind: ``loguniform``, ``uniform``, ``randint`` (low inclusive, high exclusive) or
            ``choice``.
        args: ``(low, high)`` for the ranges, the values for ``choice``.
    """

    name: str
    kind: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.name}={self.kind}({','.join(_fmt(a) for a in self.args)})"

    @property
    def numeric(self) -> bool:
        """Whether the values lie on a number line (everything but ``choice``)."""
        return self.kind != "choice"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_name(name: str, text: str) -> None:
    fields = {f.name for f in dataclasses.fields(Recipe)}
    allowed = (*FLOAT_FIELDS, *INT_FIELDS, *CHOICE_FIELDS)
    if name.startswith(MODEL_PREFIX) and len(name) > len(MODEL_PREFIX):
        return
    if name not in allowed:
        why = "is fixed for a sweep" if name in fields else "is not a training option"
        raise ValueError(f"--space {text!r}: {name!r} {why}; searchable: {', '.join(allowed)} "
                         f"and model.ARG (a builder argument, e.g. model.dropout)")


def _literal(token: str, text: str) -> Any:
    try:
        return ast.literal_eval(token)
    except (ValueError, SyntaxError):
        if re.fullmatch(r"[\w.+-]+", token):
            return token
        raise ValueError(f"--space {text!r}: cannot read the value {token!r}") from None


def parse_param(text: str) -> Param:
    """Parse one ``NAME=KIND(ARGS)`` entry, e.g. ``lr=loguniform(1e-4,1e-2)``.

    Kinds: ``loguniform(low, high)`` (0 < low < high), ``uniform(low, high)`` (low <
    high), ``randint(low, high)`` (integers, low <= value < high), ``choice(a, b, ...)``
    (numbers or bare words).

    Returns:
        The ``Param``.

    Raises:
        ValueError: the entry is malformed, names an unknown option or an impossible range
            (the message echoes it).
    """
    match = _ENTRY.match(text)
    if match is None:
        raise ValueError(f"--space {text!r}: expected NAME=KIND(ARGS), e.g. "
                         f"lr=loguniform(1e-4,1e-2), with KIND one of {', '.join(KINDS)}")
    name, kind, body = match.groups()
    _check_name(name, text)
    if kind not in KINDS:
        raise ValueError(f"--space {text!r}: unknown distribution {kind!r}; "
                         f"use one of {', '.join(KINDS)}")
    tokens = [t.strip() for t in body.split(",")]
    if not all(tokens):
        raise ValueError(f"--space {text!r}: empty argument in {kind}({body})")
    values = tuple(_literal(t, text) for t in tokens)
    if kind == "choice":
        return Param(name, kind, values)
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError(f"--space {text!r}: {kind} takes two numbers (low, high), "
                         f"got {body!r}")
    low, high = values
    if kind == "randint":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise ValueError(f"--space {text!r}: randint takes two integers, got {body!r}")
    else:
        low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"--space {text!r}: low must be below high, got {body!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"--space {text!r}: loguniform needs 0 < low, got {body!r}")
    if name in INT_FIELDS and kind != "randint":
        raise ValueError(f"--space {text!r}: {name} is an integer; use randint or choice")
    return Param(name, kind, (low, high))


def parse_space(entries: Iterable[str]) -> dict[str, Param]:
    """Parse ``--space`` entries into a space (later entries override earlier ones)."""
    space: dict[str, Param] = {}
    for entry in entries:
        param = parse_param(entry)
        space[param.name] = param
    return space


def default_space(optimizer: str) -> dict[str, Param]:
    """The space searched when none is given: learning rate and weight decay, log-uniform.

    Ranges: Adam and AdamW lr 1e-4…1e-2, SGD 1e-3…1e-1, RMSprop 1e-5…1e-3; weight decay
    1e-6…1e-2 (1e-4…1e-1 for AdamW's decoupled decay).

    Args:
        optimizer: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.
    """
    lr = {"adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2), "sgd": (1e-3, 1e-1),
          "rmsprop": (1e-5, 1e-3)}
    if optimizer not in lr:
        raise ValueError(f"default_space: unknown optimizer {optimizer!r}")
    decay = (1e-4, 1e-1) if optimizer == "adamw" else (1e-6, 1e-2)
    return {"lr": Param("lr", "loguniform", lr[optimizer]),
            "weight_decay": Param("weight_decay", "loguniform", decay)}


def space_to_json(space: Mapping[str, Param]) -> list[str]:
    """The space as a list of ``NAME=KIND(ARGS)`` strings (``parse_space`` reads it back)."""
    return [_exact(p) for p in space.values()]


def _exact(param: Param) -> str:
    return f"{param.name}={param.kind}({','.join(repr(a) for a in param.args)})"


def to_tune(space: Mapping[str, Param]) -> dict[str, Any]:
    """Ray Tune's ``param_space`` for a space (imports ``ray.tune``)."""
    from ray import tune

    makers = {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}
    return {name: tune.choice(list(p.args)) if p.kind == "choice" else makers[p.kind](*p.args)
            for name, p in space.items()}


def apply(recipe: Recipe, config: Mapping[str, Any]) -> Recipe:
    """The recipe with a trial's sampled values in place (``model.X`` into ``model_kwargs``)."""
    fields: dict[str, Any] = {}
    model_kwargs = dict(recipe.model_kwargs)
    for name, value in config.items():
        if name.startswith(MODEL_PREFIX):
            model_kwargs[name[len(MODEL_PREFIX):]] = _plain(value)
        else:
            fields[name] = _plain(value)
    return dataclasses.replace(recipe, model_kwargs=model_kwargs, **fields)


def _plain(value: Any) -> Any:
    """NumPy scalars (what Tune samples) as Python numbers."""
    return value.item() if hasattr(value, "item") else value


def refine_space(space: Mapping[str, Param], rows: Sequence[Mapping[str, Any]],
                 metric: str = "best_val_accuracy") -> dict[str, Param]:
    """Narrow each range around the best trials of a finished sweep (coarse to fine).

    The rule: take the best quarter of the trials by ``metric`` (at least two, or all when
    there are fewer). For a ``loguniform`` parameter, the new range spans their values in
    log10 space, widened on each side by half that span and at least 0.1 decade, so the
    search may move past an edge of the old range when the best trials sit on it. A
    ``uniform`` or ``randint`` range does the same on a linear scale (padding at least 5 %
    of the old width) but stays inside the old range. A ``choice`` keeps the values the best
    trials used, in the old order.

    Args:
        space: the finished sweep's space.
        rows: its trials, each a mapping with every parameter and ``metric``.
        metric: larger is better; rows where it is NaN are ignored.

    Returns:
        The refined space.

    Raises:
        ValueError: fewer than one trial has a finite ``metric``.
    """
    scored = [r for r in rows if _finite(r.get(metric))]
    if not scored:
        raise ValueError(f"refine: no trial has a finite {metric}; nothing to refine around")
    scored.sort(key=lambda r: float(r[metric]), reverse=True)
    keep = min(len(scored), max(2, math.ceil(TOP_FRACTION * len(scored))))
    top = scored[:keep]
    refined: dict[str, Param] = {}
    for name, p in space.items():
        values = [r[name] for r in top if name in r]
        if not values:
            refined[name] = p
        elif p.kind == "choice":
            used = {str(v) for v in values}
            refined[name] = Param(name, p.kind, tuple(a for a in p.args if str(a) in used))
        elif p.kind == "loguniform":
            logs = [math.log10(float(v)) for v in values]
            pad = max(0.5 * (max(logs) - min(logs)), MIN_LOG_PAD)
            refined[name] = Param(name, p.kind, (10 ** (min(logs) - pad), 10 ** (max(logs) + pad)))
        else:
            low, high = p.args
            nums = [float(v) for v in values]
            pad = max(0.5 * (max(nums) - min(nums)), MIN_LINEAR_PAD * (high - low))
            new_low, new_high = max(low, min(nums) - pad), min(high, max(nums) + pad)
            if p.kind == "randint":
                new_low, new_high = math.floor(new_low), math.ceil(new_high)
                new_high = max(new_high, new_low + 1)
            refined[name] = Param(name, p.kind, (new_low, new_high))
    return refined


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
