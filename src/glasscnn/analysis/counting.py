"""Per-layer counting rules: parameters, MACs, FLOPs, memory and traffic, from shapes alone.

Every leaf layer type has one rule in ``RULES`` (keyed by the exact type); containers are
walked by the functions in ``CONTAINERS``. A layer type with neither raises
``UnsupportedLayerError`` naming it: nothing is ever counted as a silent zero. The policy
(what FLOPs include besides 2 × MACs) is a ``CountingOptions``; see docs/analysis.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from glasscnn.kernels import conv_output_size
from glasscnn.models.lenet5 import Tanh
from glasscnn.models.resnet import BasicBlock, Bottleneck, ResNet
from glasscnn.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    ResidualBlock,
    Sequential,
    Sigmoid,
)

KINDS = ("conv", "fc", "pool", "norm", "act", "add", "other")


class UnsupportedLayerError(ValueError):
    """A layer type has no counting rule (register one with ``register_rule``)."""


@dataclass(frozen=True)
class CountingOptions:
    """What FLOPs count besides 2 × MACs, and which absent biases are counted as present.

    Attributes:
        bias: +1 FLOP per output value of a layer with a bias (conv, fc).
        activations: ReLU 1 FLOP per value; Sigmoid 4 (negate, exp, add, divide).
        pooling: max/avg pooling counted as one op per window element, per output value
            (seed-facts §1); adaptive pooling as one op per element of its bin.
        norm: batch norm at inference, 2 FLOPs per value (folded scale and shift).
        add: the residual add of a ``ResidualBlock``, 1 FLOP per value.
        softmax: add a ``softmax`` row on the logits: 5n − 2 FLOPs per sample of n logits
            (max, subtract, exp, sum, divide).
        assume_bias: layer kinds (``"conv"``, ``"fc"``) whose missing bias is counted as if
            present: in ``params``/``biases``/``weight_bytes``, and in FLOPs when ``bias``.
    """

    bias: bool = True
    activations: bool = True
    pooling: bool = True
    norm: bool = True
    add: bool = True
    softmax: bool = False
    assume_bias: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line naming what FLOPs include, e.g. ``2×MACs + bias + relu/sigmoid + ...``."""
        parts = ["2×MACs"]
        labels = {"bias": "bias adds", "activations": "activations", "pooling": "pooling",
                  "norm": "batch norm", "add": "residual adds", "softmax": "softmax"}
        parts += [label for key, label in labels.items() if getattr(self, key)]
        text = "FLOPs = " + " + ".join(parts)
        if self.assume_bias:
            text += f"; absent {'/'.join(self.assume_bias)} biases counted as present"
        return text


PRESETS: dict[str, CountingOptions] = {
    "default": CountingOptions(),
    "seed": CountingOptions(bias=False, activations=False, pooling=True, norm=False,
                            add=False, softmax=False, assume_bias=("fc",)),
    "macs": CountingOptions(bias=False, activations=False, pooling=False, norm=False,
                            add=False, softmax=False),
}


def counting_options(spec: str | CountingOptions | None = None, **overrides: Any
                     ) -> CountingOptions:
    """Build the counting policy from a preset and overrides.

    Args:
        spec: a ``CountingOptions``, a preset name (``"default"``, ``"seed"``: the policy of
            seed-facts §1's report, ``"macs"``: FLOPs = 2 × MACs only), or a preset followed
            by comma-separated ``key=value`` overrides (``"seed,bias=1"``,
            ``"activations=0,assume_bias=conv+fc"``). None means ``"default"``.
        **overrides: fields of ``CountingOptions``.

    Returns:
        The options.
    """
    if isinstance(spec, CountingOptions):
        base = spec
    else:
        base, text_overrides = _parse_spec(spec or "default")
        overrides = {**text_overrides, **overrides}
    names = {f.name for f in fields(CountingOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"counting options: unknown option(s) {unknown}; known: {sorted(names)}")
    if "assume_bias" in overrides:
        kinds = overrides["assume_bias"]
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        bad = [k for k in kinds if k not in ("conv", "fc")]
        if bad:
            raise ValueError(f"counting options: assume_bias takes conv and/or fc, got {bad}")
        overrides["assume_bias"] = kinds
    for key, value in overrides.items():
        if key != "assume_bias" and not isinstance(value, bool | np.bool_):
            raise ValueError(f"counting options: {key} must be true or false, got {value!r}")
    return replace(base, **overrides)


def _parse_spec(spec: str) -> tuple[CountingOptions, dict[str, Any]]:
    """``"seed,bias=1"`` → (PRESETS["seed"], {"bias": True})."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    base = PRESETS["default"]
    if parts and "=" not in parts[0]:
        if parts[0] not in PRESETS:
            raise ValueError(f"counting options: unknown preset {parts[0]!r}; presets: "
                             f"{', '.join(PRESETS)}")
        base = PRESETS[parts.pop(0)]
    overrides: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"counting options: expected key=value, got {part!r} in {spec!r}")
        key, value = key.strip(), value.strip().lower()
        if key == "assume_bias":
            overrides[key] = tuple(v for v in value.split("+") if v and v != "none")
        elif value in ("1", "true", "yes", "on"):
            overrides[key] = True
        elif value in ("0", "false", "no", "off"):
            overrides[key] = False
        else:
            raise ValueError(f"counting options: {key} must be 0/1 or true/false, got {value!r}")
    return base, overrides


@dataclass
class LayerCount:
    """What one rule returns for one layer and one input shape (batch included).

    Attributes:
        kind: conv, fc, pool, norm, act, add or other.
        macs: multiply-accumulates of weights, padded zeros counted.
        macs_effective: the same without multiplications by padded zeros.
        extra_flops: FLOPs besides 2 × MACs, under the policy.
        assumed_biases: absent bias values counted as present (``assume_bias``).
        view: the output aliases the input (no new activation, no traffic).
        saves: which tensors backward needs: ``"input"`` and/or ``"output"``.
        saved_own: values of new arrays kept for backward (masks, normalised input).
        reads: activation values read besides the input (the residual add's second operand).
    """

    kind: str
    macs: int = 0
    macs_effective: int = 0
    extra_flops: int = 0
    assumed_biases: int = 0
    view: bool = False
    saves: tuple[str, ...] = ()
    saved_own: int = 0
    reads: int = 0


Rule = Callable[[Module, tuple[int, ...], tuple[int, ...], CountingOptions], LayerCount]
RULES: dict[type, Rule] = {}


def register_rule(layer_type: type) -> Callable[[Rule], Rule]:
    """Decorator registering ``rule(layer, in_shape, out_shape, options) -> LayerCount``.

    Args:
        layer_type: the exact ``Module`` subclass the rule is for (subclasses need their own).
    """
    def decorate(rule: Rule) -> Rule:
        RULES[layer_type] = rule
        return rule
    return decorate


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def valid_taps(size: int, kernel: int, stride: int, padding: int, dilation: int,
               out_size: int) -> int:
    """Taps landing inside the input, summed over the output positions of one axis.

    Tap k of output position o reads input index ``o·S − P + k·D``; it counts when
    ``0 <= o·S − P + k·D < size``. Over two axes the per-position count is the product of
    the per-axis counts, so the 2-D total is the product of the two per-axis sums.

    Args:
        size: input length I; kernel, stride, padding, dilation: K, S, P, D.
        out_size: number of output positions.

    Returns:
        The sum over output positions of the in-bounds taps.
    """
    start = np.arange(out_size)[:, None] * stride - padding  # (out, 1)
    idx = start + np.arange(kernel)[None, :] * dilation  # (out, K)
    return int(np.count_nonzero((idx >= 0) & (idx < size)))


def _bias_values(layer: Module, kind: str, channels: int, opts: CountingOptions) -> int:
    """Bias values counted: the real bias, or ``channels`` when assumed present."""
    if getattr(layer, "bias", None) is not None:
        return channels
    return channels if kind in opts.assume_bias else 0


@register_rule(Conv2d)
def _conv2d(layer: Conv2d, ins: tuple[int, ...], outs: tuple[int, ...],
            opts: CountingOptions) -> LayerCount:
    n, c_in, h, w = ins
    _, c_out, ho, wo = outs
    kh, kw = layer.kernel_size
    macs = n * c_out * ho * wo * c_in * kh * kw
    taps_h = valid_taps(h, kh, layer.stride[0], layer.padding[0], layer.dilation[0], ho)
    taps_w = valid_taps(w, kw, layer.stride[1], layer.padding[1], layer.dilation[1], wo)
    biases = _bias_values(layer, "conv", c_out, opts)
    return LayerCount(
        kind="conv", macs=macs, macs_effective=n * c_out * c_in * taps_h * taps_w,
        extra_flops=n * c_out * ho * wo if (opts.bias and biases) else 0,
        assumed_biases=biases if layer.bias is None else 0, saves=("input",),
    )


@register_rule(Linear)
def _linear(layer: Linear, ins: tuple[int, ...], outs: tuple[int, ...],
            opts: CountingOptions) -> LayerCount:
    n = ins[0]
    macs = n * layer.in_features * layer.out_features
    biases = _bias_values(layer, "fc", layer.out_features, opts)
    return LayerCount(
        kind="fc", macs=macs, macs_effective=macs,
        extra_flops=n * layer.out_features if (opts.bias and biases) else 0,
        assumed_biases=biases if layer.bias is None else 0, saves=("input",),
    )


def _window_flops(outs: tuple[int, ...], kernel: tuple[int, int], opts: CountingOptions) -> int:
    return _numel(outs) * kernel[0] * kernel[1] if opts.pooling else 0


@register_rule(MaxPool2d)
def _max_pool(layer: MaxPool2d, ins: tuple[int, ...], outs: tuple[int, ...],
              opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="pool", extra_flops=_window_flops(outs, layer.kernel_size, opts),
                      saves=("input",))


@register_rule(AvgPool2d)
def _avg_pool(layer: AvgPool2d, ins: tuple[int, ...], outs: tuple[int, ...],
              opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="pool", extra_flops=_window_flops(outs, layer.kernel_size, opts))


def _bin_total(size: int, n_out: int) -> int:
    """Sum of PyTorch's adaptive bin lengths along one axis: bin i = [⌊iH/n⌋, ⌈(i+1)H/n⌉)."""
    return sum(-(-(i + 1) * size // n_out) - (i * size // n_out) for i in range(n_out))


@register_rule(AdaptiveAvgPool2d)
def _adaptive_avg_pool(layer: AdaptiveAvgPool2d, ins: tuple[int, ...], outs: tuple[int, ...],
                       opts: CountingOptions) -> LayerCount:
    n, c, h, w = ins
    per_channel = _bin_total(h, outs[2]) * _bin_total(w, outs[3])
    return LayerCount(kind="pool", extra_flops=n * c * per_channel if opts.pooling else 0)


@register_rule(ReLU)
def _relu(layer: ReLU, ins: tuple[int, ...], outs: tuple[int, ...],
          opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="act", extra_flops=_numel(outs) if opts.activations else 0,
                      saves=("output",))


@register_rule(Sigmoid)
def _sigmoid(layer: Sigmoid, ins: tuple[int, ...], outs: tuple[int, ...],
             opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="act", extra_flops=4 * _numel(outs) if opts.activations else 0,
                      saves=("output",))


register_rule(Tanh)(_sigmoid)  # tanh: like the sigmoid, 4 FLOPs per value


@register_rule(Dropout)
def _dropout(layer: Dropout, ins: tuple[int, ...], outs: tuple[int, ...],
             opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="other", view=True, saved_own=_numel(ins) if layer.p > 0 else 0)


@register_rule(Flatten)
def _flatten(layer: Flatten, ins: tuple[int, ...], outs: tuple[int, ...],
             opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="other", view=True)


def _batch_norm(layer: Module, ins: tuple[int, ...], outs: tuple[int, ...],
                opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="norm", extra_flops=2 * _numel(outs) if opts.norm else 0,
                      saved_own=_numel(ins) + ins[1])


register_rule(BatchNorm1d)(_batch_norm)
register_rule(BatchNorm2d)(_batch_norm)


@dataclass
class _Tensor:
    """An activation during the walk: its shape and an identity shared by views."""

    shape: tuple[int, ...]
    ident: int


@dataclass
class Walk:
    """State of one walk over a model: the rows so far and what is live or saved."""

    opts: CountingOptions
    itemsize: int
    input_shape: tuple[int, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0
    saved: set[int] = field(default_factory=set)
    next_ident: int = 0

    def new_tensor(self, shape: tuple[int, ...]) -> _Tensor:
        """A fresh activation of ``shape``."""
        self.next_ident += 1
        return _Tensor(tuple(shape), self.next_ident)

    def visit(self, name: str, module: Module, x: _Tensor) -> _Tensor:
        """Add the rows of ``module`` (a leaf or a container) for input ``x``; return its output."""
        walker = CONTAINERS.get(type(module))
        if walker is not None:
            return walker(self, name, module, x)
        rule = RULES.get(type(module))
        if rule is None:
            if module._modules:
                raise UnsupportedLayerError(
                    f"analyze: container {name or '<root>'!r} of type {type(module).__name__} "
                    "has no walking rule (only Sequential and ResidualBlock are known); "
                    "register one in glasscnn.analysis.counting.CONTAINERS"
                )
            raise UnsupportedLayerError(
                f"analyze: layer {name!r} of type {type(module).__name__} has no counting rule; "
                "register one with glasscnn.analysis.register_rule"
            )
        out_shape = _output_shape(name, module, x.shape, self.input_shape)
        count = rule(module, x.shape, out_shape, self.opts)
        out = _Tensor(out_shape, x.ident) if count.view else self.new_tensor(out_shape)
        self.add_row(name, module, x, out, count)
        return out

    def add_row(self, name: str, module: Module | None, x: _Tensor, out: _Tensor,
                count: LayerCount, type_name: str | None = None) -> None:
        """Append the row of one layer (``module`` None for a virtual layer such as an add)."""
        params = dict(module._parameters) if module is not None else {}
        buffers = dict(module._buffers) if module is not None else {}
        biases = sum(p.data.size for k, p in params.items() if k == "bias" and p is not None)
        weights = sum(p.data.size for k, p in params.items() if k != "bias" and p is not None)
        biases += count.assumed_biases
        buffer_values = sum(int(np.size(b)) for b in buffers.values())
        weight_bytes = (sum(p.data.nbytes for p in params.values() if p is not None)
                        + count.assumed_biases * self.itemsize
                        + sum(np.asarray(b).nbytes for b in buffers.values()))
        in_values, out_values = _numel(x.shape), _numel(out.shape)
        act_bytes = 0 if count.view else out_values * self.itemsize
        moved = 0 if count.view else in_values + count.reads + weights + out_values
        flops = 2 * count.macs + count.extra_flops
        saved = count.saved_own * self.itemsize
        for tensor, tag in ((x, "input"), (out, "output")):
            if tag in count.saves and tensor.ident not in self.saved:
                self.saved.add(tensor.ident)
                saved += _numel(tensor.shape) * self.itemsize
        live = self.held + in_values * self.itemsize + count.reads * self.itemsize + act_bytes
        self.rows.append({
            "name": name, "type": type_name or type(module).__name__, "kind": count.kind,
            "input_shape": x.shape, "output_shape": out.shape,
            "params": weights + biases, "weights": weights, "biases": biases,
            "buffers": buffer_values, "trainable": weights + biases > 0,
            "macs": count.macs, "macs_effective": count.macs_effective, "flops": flops,
            "activation_bytes": act_bytes, "weight_bytes": weight_bytes,
            "values_moved": moved,
            "intensity": count.macs / moved if moved else 0.0,
            "flops_per_byte": flops / (moved * self.itemsize) if moved else 0.0,
            "live_bytes": live, "saved_bytes": saved,
        })


def _output_shape(name: str, module: Module, shape: tuple[int, ...],
                  model_input: tuple[int, ...]) -> tuple[int, ...]:
    """``module.output_shape(shape)``, with errors that name the layer and where it collapses."""
    kind = type(module).__name__
    kernel = getattr(module, "kernel_size", None)
    if kernel is not None and len(shape) == 4:
        stride, padding = module.stride, module.padding
        dilation = getattr(module, "dilation", (1, 1))
        out = [conv_output_size(shape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
               for a in (0, 1)]
        if min(out) <= 0:
            raise ValueError(
                f"analyze: input {'x'.join(map(str, model_input[1:]))} is too small: it "
                f"collapses at layer {name!r} ({kind}, "
                f"kernel {kernel[0]}x{kernel[1]}, stride {stride[0]}x{stride[1]}, padding "
                f"{padding[0]}x{padding[1]}), which receives "
                f"{'x'.join(map(str, shape[1:]))} and would output {out[0]}x{out[1]}"
            )
    try:
        return tuple(int(d) for d in module.output_shape(tuple(shape)))
    except NotImplementedError:
        raise UnsupportedLayerError(
            f"analyze: layer {name!r} of type {kind} has no shape rule (output_shape)"
        ) from None
    except ValueError as err:
        raise ValueError(f"analyze: layer {name!r} ({kind}) rejects input shape "
                         f"{tuple(shape)}: {err}") from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _walk_sequential(walk: Walk, name: str, module: Sequential, x: _Tensor) -> _Tensor:
    for child_name, child in module.named_children():
        x = walk.visit(_join(name, child_name), child, x)
    return x


def _walk_residual(walk: Walk, name: str, block: ResidualBlock, x: _Tensor) -> _Tensor:
    """A ``ResidualBlock``: its main path, ``shortcut`` and ``relu2`` as residual parts."""
    main = [(n, m) for n, m in block._modules.items() if n not in ("shortcut", "relu2")]
    shortcut = ("shortcut", block.shortcut) if "shortcut" in block._modules else None
    return _walk_parts(walk, name, (main, shortcut, ("relu2", block.relu2)), x)


def _walk_block(walk: Walk, name: str, block: Module, x: _Tensor) -> _Tensor:
    """A block that names its parts itself (``residual_parts()``: torchvision's ResNet)."""
    return _walk_parts(walk, name, block.residual_parts(), x)


def _walk_parts(walk: Walk, name: str, parts: tuple[Any, Any, Any], x: _Tensor) -> _Tensor:
    """Residual ``parts`` (main path, shortcut or None, activation after the add, as
    (name, module) pairs): main path (x held for the shortcut), shortcut (main output
    held), add, activation."""
    main, shortcut, (act_name, act) = parts
    x_bytes = _numel(x.shape) * walk.itemsize
    walk.held += x_bytes
    h = x
    for child_name, child in main:
        h = walk.visit(_join(name, child_name), child, h)
    walk.held -= x_bytes
    s = x
    if shortcut is not None:
        h_bytes = _numel(h.shape) * walk.itemsize
        walk.held += h_bytes
        s = walk.visit(_join(name, shortcut[0]), shortcut[1], x)
        walk.held -= h_bytes
    if s.shape != h.shape:
        raise ValueError(f"analyze: residual block {name!r}: main path gives {h.shape} but "
                         f"the shortcut gives {s.shape}")
    y = walk.new_tensor(h.shape)
    add = LayerCount(kind="add", extra_flops=_numel(h.shape) if walk.opts.add else 0,
                     reads=_numel(s.shape))
    walk.add_row(_join(name, "add"), None, h, y, add, type_name="Add")
    return walk.visit(_join(name, act_name), act, y)


CONTAINERS: dict[type, Callable[[Walk, str, Any, _Tensor], _Tensor]] = {
    Sequential: _walk_sequential,
    ResNet: _walk_sequential,
    ResidualBlock: _walk_residual,
    BasicBlock: _walk_block,
    Bottleneck: _walk_block,
}


def count_model(model: Module, input_shape: tuple[int, ...], opts: CountingOptions,
                itemsize: int) -> tuple[list[dict[str, Any]], int]:
    """Walk ``model`` for an input of ``input_shape`` (batch axis included).

    Args:
        model: a ``Module`` built from layers with rules and known containers.
        input_shape: e.g. (N, C, H, W).
        opts: the counting policy.
        itemsize: bytes per activation and per assumed bias value.

    Returns:
        (rows, peak live bytes during inference): one dict per leaf layer (plus ``add`` rows
        of residual blocks and the optional ``softmax`` row).
    """
    walk = Walk(opts, itemsize, tuple(input_shape))
    x = walk.new_tensor(tuple(input_shape))
    root = "" if type(model) in CONTAINERS or model._modules else type(model).__name__.lower()
    out = walk.visit(root, model, x)
    if opts.softmax:
        n = out.shape[0]
        classes = _numel(out.shape) // n
        soft = LayerCount(kind="act", extra_flops=n * (5 * classes - 2), saves=("output",))
        walk.add_row("softmax", None, out, walk.new_tensor(out.shape), soft,
                     type_name="Softmax")
    peak = max([_numel(input_shape) * itemsize] + [r["live_bytes"] for r in walk.rows])
    return walk.rows, peak
