"""Model analysis: per-layer shapes, parameters, MACs and FLOPs, memory, compute intensity.

``analyze(model, input_shape)`` counts from each layer's shape rule without running the
model; ``measure=True`` also times every layer forward and backward. The counting policy is
documented in docs/analysis.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.analysis.counting import (
    CONTAINERS,
    PRESETS,
    RULES,
    CountingOptions,
    LayerCount,
    UnsupportedLayerError,
    count_model,
    counting_options,
    register_rule,
)
from glasscnn.analysis.report import Report, compare_rows, compare_table
from glasscnn.nn import Module


def parse_shape(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``"3x33x33"`` (or ``"3,33,33"``, or a tuple) → ``(3, 33, 33)``.

    Raises:
        ValueError: not integers, or a dimension <= 0 (the message echoes the input).
    """
    if isinstance(text, str):
        parts = text.lower().replace(",", "x").replace("×", "x").split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"analyze: input shape must look like 3x33x33, got {text!r}"
                             ) from None
    else:
        shape = tuple(int(d) for d in text)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"analyze: every input dimension must be positive, got {text!r}")
    return shape


def _model_dtype(model: Module) -> np.dtype:
    for _, p in model.named_parameters():
        return p.data.dtype
    return np.dtype(np.float32)


def _build(name: str, sample_shape: tuple[int, ...] | None) -> tuple[Module, tuple[int, ...]]:
    """Build zoo model ``name`` for ``sample_shape`` (its default when None).

    When the builder rejects the shape, the default model is walked with it so that the
    error names the layer where the input collapses.
    """
    default = models.default_input_shape(name)
    if sample_shape is None:
        return models.get(name), default
    if len(sample_shape) != 3:
        raise ValueError(f"analyze: {name} takes a C x H x W input, got {sample_shape}")
    try:
        return models.get(name, in_channels=sample_shape[0],
                          input_size=(sample_shape[1], sample_shape[2])), sample_shape
    except ValueError as err:
        model = models.get(name, in_channels=sample_shape[0])
        count_model(model, (1, *sample_shape), counting_options(), 4)
        raise err from None


def analyze(
    model: Module | str,
    input_shape: tuple[int, ...] | str | None = None,
    batch_size: int = 1,
    counting: str | CountingOptions | None = None,
    measure: bool = False,
    dtype: Any = None,
    repeat: int = 3,
    name: str | None = None,
    **counting_overrides: Any,
) -> Report:
    """Count (and optionally time) every layer of ``model`` for one input shape.

    Args:
        model: a ``Module`` or the name of a zoo model (built for ``input_shape``).
        input_shape: one sample's shape without the batch axis, e.g. (3, 33, 33) or
            ``"3x33x33"``; defaults to the zoo model's own input.
        batch_size: N; counts of activations, MACs and FLOPs scale with it.
        counting: a preset (``"default"``, ``"seed"``, ``"macs"``), a spec such as
            ``"seed,bias=1"``, or ``CountingOptions``; see ``counting_options``.
        measure: also run the model (its own kernels) and time each layer forward and
            backward over ``repeat`` steps (the fastest of them, per layer).
        dtype: dtype for bytes (default: the model's parameter dtype, float32 without any).
        repeat: timed steps when measuring.
        name: the model's name in the report (default: the zoo name or the class name).
        **counting_overrides: fields of ``CountingOptions`` (``bias=False``, ...).

    Returns:
        A ``Report`` with ``rows``, ``totals``, ``by_kind`` and ``memory``.

    Raises:
        ValueError: unknown model name (the known ones are listed), a non-positive dimension
            or batch size, an input too small (naming the layer where it collapses and the
            size it receives), a layer without a counting or shape rule.
    """
    if int(batch_size) <= 0:
        raise ValueError(f"analyze: batch_size must be positive, got {batch_size}")
    sample = None if input_shape is None else parse_shape(input_shape)
    if isinstance(model, str):
        name = name or model
        model, sample = _build(model, sample)
    elif sample is None:
        raise ValueError(f"analyze: input_shape is required for a {type(model).__name__} "
                         "that is not a zoo model name")
    opts = counting_options(counting, **counting_overrides)
    dt = np.dtype(dtype) if dtype is not None else _model_dtype(model)
    full_shape = (int(batch_size), *sample)
    rows, peak = count_model(model, full_shape, opts, dt.itemsize)
    report = Report(name or type(model).__name__, full_shape, dt.name, opts, rows)
    report.summarize(peak, dt.itemsize)
    if measure:
        from glasscnn.analysis.measure import time_layers

        report.add_timings(time_layers(model, full_shape, repeat=repeat, dtype=_model_dtype(model)))
    return report


__all__ = [
    "CONTAINERS",
    "PRESETS",
    "RULES",
    "CountingOptions",
    "LayerCount",
    "Report",
    "UnsupportedLayerError",
    "analyze",
    "compare_rows",
    "compare_table",
    "count_model",
    "counting_options",
    "parse_shape",
    "register_rule",
]
