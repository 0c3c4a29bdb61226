"""Per-layer rows from a recorded forward pass: which layers run, in which order, on what.

The model runs once, in evaluation mode, on a zero batch of one sample; forward hooks record
every module call (``glasscnn.nn.trace``), whatever the containers or the hand-written
``forward`` that make the calls. Each outermost call of a layer type with a counting rule is
a row; the rule counts it from its input and output shapes, scaled to the batch size. The
model is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from glasscnn.analysis.counting import (
    RULES,
    CountingOptions,
    LayerCount,
    UnsupportedLayerError,
    _numel,
)
from glasscnn.kernels import conv_output_size
from glasscnn.nn import Module
from glasscnn.nn.trace import Call, Recorder


@dataclass
class _Tensor:
    """An activation: its shape, and an identity shared by views of it."""

    shape: tuple[int, ...]
    ident: int


def label(call: Call) -> str:
    """The row name: the dotted path, or the type's name for a lone layer."""
    return call.name or type(call.module).__name__.lower()


def _counted_ancestor(call: Call) -> bool:
    parent = call.parent
    while parent is not None:
        if type(parent.module) in RULES:
            return True
        parent = parent.parent
    return False


def _holds_modules(module: Module) -> bool:
    """Whether ``module`` holds sub-modules (registered, or in attributes or lists)."""
    if module._modules:
        return True
    for value in vars(module).values():
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, Module) for v in items):
            return True
    return False


def _check_fits(name: str, module: Module, shape: tuple[int, ...],
                model_input: tuple[int, ...]) -> None:
    """Refuse, naming the layer, an input too small for a windowed layer's kernel (one
    whose own shape rule refuses the input, and whose window formula leaves nothing)."""
    kernel = getattr(module, "kernel_size", None)
    if kernel is None or len(shape) != 4:
        return
    try:
        module.output_shape(tuple(shape))
        return
    except NotImplementedError:
        return
    except ValueError:
        pass
    stride, padding = module.stride, module.padding
    dilation = getattr(module, "dilation", (1, 1))
    out = [conv_output_size(shape[2 + a], kernel[0 + a], stride[a], padding[a], dilation[a])
           for a in (0, 1)]
    if min(out) <= 0:
        raise ValueError(
            f"analyze: input {'x'.join(map(str, model_input[1:]))} is too small: it "
            f"collapses at layer {name!r} ({type(module).__name__}, "
            f"kernel {kernel[0]}x{kernel[1]}, stride {stride[0]}x{stride[1]}, padding "
            f"{padding[0]}x{padding[1]}), which receives "
            f"{'x'.join(map(str, shape[1:]))} and would output {out[0]}x{out[1]}"
        )


def record_leaves(model: Module, input_shape: tuple[int, ...], dtype: Any
                  ) -> tuple[np.ndarray, list[Call]]:
    """Run ``model`` on zeros of ``input_shape``; return the input and the calls that make rows.

    Args:
        model: any module.
        input_shape: the input, batch axis included.
        dtype: the input's dtype.

    Returns:
        (the zero input, the outermost calls of layers with a counting rule, in order).

    Raises:
        UnsupportedLayerError: a layer without a counting rule, or without a forward.
        ValueError: an input too small (naming where it collapses), or a layer refusing
            its input (naming the layer and the shape it received).
    """
    refused: list[BaseException] = []

    def enter(call: Call) -> None:
        if _counted_ancestor(call):
            return
        try:
            if type(call.module) in RULES:
                if call.input_shape is not None:
                    _check_fits(label(call), call.module, call.input_shape, input_shape)
            elif not _holds_modules(call.module):
                raise UnsupportedLayerError(
                    f"analyze: layer {label(call)!r} of type {type(call.module).__name__} has "
                    "no counting rule; register one with glasscnn.analysis.register_rule"
                )
        except ValueError as err:
            refused.append(err)
            raise

    x = np.zeros(input_shape, dtype=dtype)
    with Recorder(model, enter) as rec:
        try:
            model(x)
        except (ValueError, NotImplementedError) as err:
            if refused and err is refused[0]:
                raise
            call = rec.stack[-1] if rec.stack else None
            if call is None:
                raise
            kind = type(call.module).__name__
            if isinstance(err, NotImplementedError):
                raise UnsupportedLayerError(
                    f"analyze: layer {label(call)!r} of type {kind} does not implement "
                    "forward") from None
            raise ValueError(f"analyze: layer {label(call)!r} ({kind}) rejects input of shape "
                             f"{call.input_shape}: {err}") from None
    leaves = []
    for call in rec.calls:
        if _counted_ancestor(call):
            continue
        if type(call.module) in RULES:
            leaves.append(call)
        elif call.nested == 0:
            raise UnsupportedLayerError(
                f"analyze: layer {label(call)!r} of type {type(call.module).__name__} calls "
                "no layers and has no counting rule; register one with "
                "glasscnn.analysis.register_rule")
    return x, leaves


def _batched(shape: tuple[int, ...] | None, batch: int | None) -> tuple[int, ...]:
    """``shape`` with its first axis set to ``batch`` (unchanged when ``batch`` is None)."""
    if shape is None:
        raise UnsupportedLayerError("analyze: a layer took or returned something that is not "
                                    "an array")
    return (batch, *shape[1:]) if shape and batch is not None else tuple(shape)


def model_dtype(model: Module) -> np.dtype:
    """The dtype of the model's first parameter (float32 without parameters)."""
    for _, p in model.named_parameters():
        return p.data.dtype
    return np.dtype(np.float32)


def count_model(model: Module, input_shape: tuple[int, ...], opts: CountingOptions,
                itemsize: int) -> tuple[list[dict[str, Any]], int]:
    """Count every layer of ``model`` for an input of ``input_shape`` (batch axis included).

    The pass runs on one sample and the shapes are scaled to the batch; a model whose
    activations do not keep the batch as their first axis is run on the whole batch.

    Args:
        model: any ``Module`` whose computing layers have counting rules.
        input_shape: e.g. (N, C, H, W).
        opts: the counting policy.
        itemsize: bytes per activation and per assumed bias value.

    Returns:
        (rows, peak live bytes during inference): one dict per layer (plus the optional
        ``softmax`` row).
    """
    input_shape = tuple(int(d) for d in input_shape)
    dtype = model_dtype(model)
    x, leaves = record_leaves(model, (1, *input_shape[1:]), dtype)
    batch: int | None = input_shape[0]
    if batch != 1 and any(s is not None and s[0] != 1 for c in leaves
                          for s in (c.input_shape, c.output_shape)):
        x, leaves = record_leaves(model, input_shape, dtype)
        batch = None
    rows = _Rows(opts, itemsize)
    model_input = rows.tensor(input_shape)
    rows.remember(x, model_input)
    for call in leaves:
        arrays = [a for a in call.args if isinstance(a, np.ndarray)]
        if not arrays:
            _batched(None, batch)
        ins = [rows.known(a, batch) for a in arrays]
        out_shape = _batched(call.output_shape, batch)
        count = RULES[type(call.module)](call.module, ins[0].shape, out_shape, opts)
        out = _Tensor(out_shape, ins[0].ident) if count.view else rows.tensor(out_shape)
        rows.remember(call.output, out)
        rows.add(label(call), call.module, ins, out, count)
    if opts.softmax and rows.rows:
        last = rows.steps[-1][1]
        n_out = last.shape[0]
        classes = _numel(last.shape) // n_out
        soft = LayerCount(kind="act", extra_flops=n_out * (5 * classes - 2), saves=("output",))
        rows.add("softmax", None, [last], rows.tensor(last.shape), soft, type_name="Softmax")
    return rows.finish(model_input)


class _Rows:
    """The rows so far, the tensors seen, and what training keeps for backward."""

    def __init__(self, opts: CountingOptions, itemsize: int) -> None:
        self.opts, self.itemsize = opts, itemsize
        self.rows: list[dict[str, Any]] = []
        self.steps: list[tuple[list[_Tensor], _Tensor]] = []
        self.saved: set[int] = set()
        self.by_array: dict[int, _Tensor] = {}
        self.created: dict[int, int] = {}
        self.next_ident = 0

    def tensor(self, shape: tuple[int, ...]) -> _Tensor:
        """A fresh activation of ``shape``, created at the current step."""
        self.next_ident += 1
        self.created[self.next_ident] = len(self.steps)
        return _Tensor(tuple(shape), self.next_ident)

    def remember(self, array: Any, tensor: _Tensor) -> None:
        self.by_array[id(array)] = tensor

    def known(self, array: np.ndarray, batch: int | None) -> _Tensor:
        """The tensor an input array is: the model input, an earlier output, or a new one
        made outside any layer (``a + b`` in a hand-written forward)."""
        if id(array) not in self.by_array:
            self.remember(array, self.tensor(_batched(array.shape, batch)))
        return self.by_array[id(array)]

    def add(self, name: str, module: Module | None, ins: list[_Tensor], out: _Tensor,
            count: LayerCount, type_name: str | None = None) -> None:
        """Append the row of one layer (``module`` None for a virtual row such as softmax)."""
        x, size = ins[0], self.itemsize
        params = dict(module._parameters) if module is not None else {}
        buffers = dict(module._buffers) if module is not None else {}
        biases = sum(p.data.size for k, p in params.items() if k == "bias" and p is not None)
        weights = sum(p.data.size for k, p in params.items() if k != "bias" and p is not None)
        biases += count.assumed_biases
        buffer_values = sum(int(np.size(b)) for b in buffers.values())
        weight_bytes = (sum(p.data.nbytes for p in params.values() if p is not None)
                        + count.assumed_biases * size
                        + sum(np.asarray(b).nbytes for b in buffers.values()))
        in_values, out_values = _numel(x.shape), _numel(out.shape)
        act_bytes = 0 if count.view else out_values * size
        moved = 0 if count.view else in_values + count.reads + weights + out_values
        flops = 2 * count.macs + count.extra_flops
        saved = count.saved_own * size
        for tensor, tag in ((x, "input"), (out, "output")):
            if tag in count.saves and tensor.ident not in self.saved:
                self.saved.add(tensor.ident)
                saved += _numel(tensor.shape) * size
        self.steps.append((ins, out))
        self.rows.append({
            "name": name, "type": type_name or type(module).__name__, "kind": count.kind,
            "input_shape": x.shape, "output_shape": out.shape,
            "params": weights + biases, "weights": weights, "biases": biases,
            "buffers": buffer_values, "trainable": weights + biases > 0,
            "macs": count.macs, "macs_effective": count.macs_effective, "flops": flops,
            "activation_bytes": act_bytes, "weight_bytes": weight_bytes,
            "values_moved": moved,
            "intensity": count.macs / moved if moved else 0.0,
            "flops_per_byte": flops / (moved * size) if moved else 0.0,
            "live_bytes": 0, "saved_bytes": saved,
        })

    def finish(self, model_input: _Tensor) -> tuple[list[dict[str, Any]], int]:
        """Fill ``live_bytes``: at each step, every tensor made by then and used from then
        on (its inputs, its output, and what later steps still read); return the rows and
        the peak."""
        last_use: dict[int, int] = {}
        shapes: dict[int, tuple[int, ...]] = {model_input.ident: model_input.shape}
        for i, (ins, out) in enumerate(self.steps):
            for t in [*ins, out]:
                last_use[t.ident] = max(last_use.get(t.ident, i), i)
                shapes[t.ident] = t.shape
        for i, row in enumerate(self.rows):
            row["live_bytes"] = self.itemsize * sum(
                _numel(shapes[t]) for t, end in last_use.items()
                if self.created.get(t, 0) <= i <= end)
        peak = max([_numel(model_input.shape) * self.itemsize]
                   + [r["live_bytes"] for r in self.rows])
        return self.rows, peak
