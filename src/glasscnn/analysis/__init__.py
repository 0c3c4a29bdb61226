"""Model analysis: per-layer shapes, parameters, MACs and FLOPs, memory, compute intensity.

``analyze(model, input_shape)`` records one forward pass of any module on a zero sample and
counts each layer from its shapes with the rules of ``glasscnn.analysis.counting``;
``measure=True`` also times every layer forward and backward. The counting policy is
documented in docs/analysis.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn import models
from glasscnn.analysis.counting import (
    PRESETS,
    RULES,
    CountingOptions,
    LayerCount,
    UnsupportedLayerError,
    counting_options,
    register_rule,
)
from glasscnn.analysis.report import Report, compare_rows, compare_table
from glasscnn.analysis.rows import count_model, model_dtype
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


def _build(name: str, shape: tuple[int, ...] | None) -> tuple[Module, tuple[int, ...]]:
    """Build zoo model ``name`` for ``shape`` (C x H x W, or N x C x H x W; its default
    when None); return it and ``shape``.

    When the builder rejects the shape, the default model is run with it so that the
    error names the layer where the input collapses.
    """
    if shape is None:
        model = models.get(name)
        return model, tuple(model.input_shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"analyze: {name} takes a C x H x W input, got {shape}")
    c, h, w = shape[-3:]
    try:
        return models.get(name, in_channels=c, input_size=(h, w)), shape
    except ValueError as err:
        count_model(models.get(name, in_channels=c), (1, c, h, w), counting_options(), 4)
        raise err from None


def _full_shapes(model: Module, shape: tuple[int, ...], batch_size: int | None
                 ) -> list[tuple[int, ...]]:
    """The readings of ``shape`` to try, batch axis included: as one sample, or as a batch.

    A model that knows its ``input_shape`` decides by the number of axes; otherwise the
    sample reading comes first and the batch reading is tried if the model refuses it.
    """
    as_sample = (1 if batch_size is None else int(batch_size), *shape)
    known = getattr(model, "input_shape", None)
    if known is not None and len(shape) == len(known) + 1:
        return [shape]
    if known is not None and len(shape) == len(known):
        return [as_sample]
    return [as_sample, shape] if len(shape) > 1 else [as_sample]


def _count(model: Module, shape: tuple[int, ...], batch_size: int | None,
           opts: CountingOptions, itemsize: int
           ) -> tuple[tuple[int, ...], list[dict[str, Any]], int]:
    """``count_model`` with the first reading of ``shape`` the model accepts; return that
    reading (batch axis included), the rows and the peak."""
    first_error: ValueError | None = None
    for full in _full_shapes(model, shape, batch_size):
        try:
            rows, peak = count_model(model, full, opts, itemsize)
        except ValueError as err:
            first_error = first_error or err
            continue
        if full == shape and batch_size is not None and batch_size != shape[0]:
            raise ValueError(f"analyze: the input shape {shape} has batch axis {shape[0]} "
                             f"but batch_size={batch_size}")
        return full, rows, peak
    raise first_error


def analyze(
    model: Module | str,
    input_shape: tuple[int, ...] | str | None = None,
    batch_size: int | None = None,
    counting: str | CountingOptions | None = None,
    measure: bool = False,
    dtype: Any = None,
    repeat: int = 3,
    name: str | None = None,
    **counting_overrides: Any,
) -> Report:
    """Count (and optionally time) every layer of ``model`` for one input shape.

    Any ``Module`` works, a user's own subclass with a hand-written ``forward`` included:
    the model runs once, in evaluation mode, on a zero sample (and is left as it was), and
    every layer it calls is a row. Work done outside layers (``a + b`` in a hand-written
    forward) is not seen; use ``nn.Add`` and friends to have it counted.

    Args:
        model: a ``Module`` or the name of a zoo model (built for ``input_shape``).
        input_shape: one sample's shape, e.g. (3, 33, 33) or ``"3x33x33"``, or the shape
            with its batch axis, (N, 3, 33, 33); defaults to the model's ``input_shape``
            (zoo models know theirs). A shape the model refuses as one sample is read as a
            batch.
        batch_size: N; counts of activations, MACs and FLOPs scale with it (default: the
            batch axis of ``input_shape``, else 1).
        counting: a preset (``"default"``, ``"seed"``, ``"macs"``), a spec such as
            ``"seed,bias=1"``, or ``CountingOptions``; see ``counting_options``.
        measure: also run the model (its own kernels) and time each layer forward and
            backward over ``repeat`` steps (the fastest of them, per layer).
        dtype: dtype for bytes (default: the model's parameter dtype, float32 without any).
        repeat: timed steps when measuring.
        name: the model's name in the report (default: the model's ``name``, which zoo
            models carry, else its class name).
        **counting_overrides: fields of ``CountingOptions`` (``bias=False``, ...).

    Returns:
        A ``Report`` with ``rows``, ``totals``, ``by_kind`` and ``memory``.

    Raises:
        ValueError: unknown model name (the known ones are listed), a non-positive dimension
            or batch size, an input too small (naming the layer where it collapses and the
            size it receives), a layer refusing its input (naming it).
        UnsupportedLayerError: a layer without a counting rule or without a forward.
    """
    if batch_size is not None and int(batch_size) <= 0:
        raise ValueError(f"analyze: batch_size must be positive, got {batch_size}")
    shape = None if input_shape is None else parse_shape(input_shape)
    if isinstance(model, str):
        name = name or model
        model, shape = _build(model, shape)
    elif shape is None:
        if getattr(model, "input_shape", None) is None:
            raise ValueError(f"analyze: input_shape is required for a {type(model).__name__} "
                             "that does not know its input shape")
        shape = tuple(model.input_shape)
    opts = counting_options(counting, **counting_overrides)
    dt = np.dtype(dtype) if dtype is not None else model_dtype(model)
    full_shape, rows, peak = _count(model, shape, batch_size, opts, dt.itemsize)
    report = Report(name or getattr(model, "name", None) or type(model).__name__, full_shape,
                    dt.name, opts, rows)
    report.summarize(peak, dt.itemsize)
    if measure:
        from glasscnn.analysis.measure import time_layers

        report.add_timings(time_layers(model, full_shape, repeat=repeat, dtype=model_dtype(model)))
    return report


__all__ = [
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
