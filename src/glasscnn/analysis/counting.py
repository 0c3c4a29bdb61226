"""Per-layer counting rules: parameters, MACs, FLOPs, memory and traffic, from shapes alone.

Every layer type that computes has one rule in ``RULES`` (keyed by the exact type); a layer
without one raises ``UnsupportedLayerError`` naming it: nothing is ever counted as a silent
zero. Which layers run, in which order and on which shapes is recorded from a forward pass
(``glasscnn.analysis.rows``), so containers need no rules. The policy (what FLOPs include
besides 2 × MACs) is a ``CountingOptions``; see docs/analysis.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from glasscnn.nn import (
    GELU,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Add,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    GroupNorm,
    Hardswish,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool1d,
    MaxPool2d,
    Module,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)

KINDS = ("conv", "fc", "pool", "norm", "act", "add", "other")


class UnsupportedLayerError(ValueError):
    """A layer type has no counting rule (register one with ``register_rule``)."""


@dataclass(frozen=True)
class CountingOptions:
    """What FLOPs count besides 2 × MACs, and which absent biases are counted as present.

    Attributes:
        bias: +1 FLOP per output value of a layer with a bias (conv, fc).
        activations: ReLU 1 FLOP per value; Sigmoid 4 (negate, exp, add, divide); the
            other activations as listed in ``_ACTIVATION_FLOPS`` (ReLU6 2, Tanh 1, ...).
        pooling: max/avg pooling counted as one op per window element, per output value
            (the convention of the CIFAR AlexNet-like network's published complexity
            report); adaptive pooling as one op per element of its bin.
        norm: batch norm at inference, 2 FLOPs per value (folded scale and shift).
        add: an ``Add`` layer (the residual add of a ``ResidualBlock``), 1 FLOP per value.
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
            the CIFAR AlexNet-like network's published complexity report, ``"macs"``:
            FLOPs = 2 × MACs only), or a preset followed by comma-separated ``key=value``
            overrides (``"seed,bias=1"``, ``"activations=0,assume_bias=conv+fc"``). None
            means ``"default"``.
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
    c_in //= layer.groups  # each output channel sees its group's inputs
    macs = n * c_out * ho * wo * c_in * kh * kw
    top, left = layer.pads()[0]  # valid taps depend on the padding before the input only
    taps_h = valid_taps(h, kh, layer.stride[0], top, layer.dilation[0], ho)
    taps_w = valid_taps(w, kw, layer.stride[1], left, layer.dilation[1], wo)
    biases = _bias_values(layer, "conv", c_out, opts)
    return LayerCount(
        kind="conv", macs=macs, macs_effective=n * c_out * c_in * taps_h * taps_w,
        extra_flops=n * c_out * ho * wo if (opts.bias and biases) else 0,
        assumed_biases=biases if layer.bias is None else 0, saves=("input",),
    )


@register_rule(ConvTranspose2d)
def _conv_transpose2d(layer: ConvTranspose2d, ins: tuple[int, ...], outs: tuple[int, ...],
                      opts: CountingOptions) -> LayerCount:
    n, c_in, h, w = ins
    _, c_out, ho, wo = outs
    kh, kw = layer.kernel_size
    c_out_g = c_out // layer.groups  # each input pixel scatters into its group's outputs
    macs = n * c_in * h * w * c_out_g * kh * kw
    # input pixel o's tap k lands on output o·S − P + k·D: counted when inside the output
    taps_h = valid_taps(ho, kh, layer.stride[0], layer.padding[0], layer.dilation[0], h)
    taps_w = valid_taps(wo, kw, layer.stride[1], layer.padding[1], layer.dilation[1], w)
    biases = _bias_values(layer, "conv", c_out, opts)
    return LayerCount(
        kind="conv", macs=macs, macs_effective=n * c_in * c_out_g * taps_h * taps_w,
        extra_flops=n * c_out * ho * wo if (opts.bias and biases) else 0,
        assumed_biases=biases if layer.bias is None else 0, saves=("input",),
    )


@register_rule(Conv1d)
def _conv1d(layer: Conv1d, ins: tuple[int, ...], outs: tuple[int, ...],
            opts: CountingOptions) -> LayerCount:
    n, c_in, length = ins
    _, c_out, lo = outs
    k = layer.kernel_size[0]
    c_in //= layer.groups
    taps = valid_taps(length, k, layer.stride[0], layer.pads()[0], layer.dilation[0], lo)
    biases = _bias_values(layer, "conv", c_out, opts)
    return LayerCount(
        kind="conv", macs=n * c_out * lo * c_in * k, macs_effective=n * c_out * c_in * taps,
        extra_flops=n * c_out * lo if (opts.bias and biases) else 0,
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


@register_rule(Add)
def _add(layer: Add, ins: tuple[int, ...], outs: tuple[int, ...],
         opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="add", extra_flops=_numel(outs) if opts.add else 0,
                      reads=_numel(ins))


# FLOPs per value of the activations beyond ReLU and Sigmoid, under ``activations``: each
# elementary operation counts one (an exp, an erf, a comparison, a clamp, a multiply), as
# Sigmoid's 4 (negate, exp, add, divide).
_ACTIVATION_FLOPS: dict[type, tuple[int, str]] = {
    Tanh: (1, "output"),  # tanh
    LeakyReLU: (2, "input"),  # compare, multiply
    ReLU6: (2, "input"),  # two clamps
    Hardswish: (5, "input"),  # add 3, two clamps, multiply, divide by 6
    SiLU: (5, "input"),  # sigmoid (4), multiply
    GELU: (5, "input"),  # scale by 1/√2, erf, add 1, multiply by x, halve
    Softmax: (5, "output"),  # max, subtract, exp, sum, divide
    LogSoftmax: (5, "output"),  # max, subtract, exp, sum, log-and-subtract
}


def _activation(layer: Module, ins: tuple[int, ...], outs: tuple[int, ...],
                opts: CountingOptions) -> LayerCount:
    per_value, saves = _ACTIVATION_FLOPS[type(layer)]
    return LayerCount(kind="act", extra_flops=per_value * _numel(outs) if opts.activations else 0,
                      saves=(saves,))


for _layer_type in _ACTIVATION_FLOPS:
    register_rule(_layer_type)(_activation)


@register_rule(Identity)
def _identity(layer: Identity, ins: tuple[int, ...], outs: tuple[int, ...],
              opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="other", view=True)


@register_rule(AdaptiveMaxPool2d)
def _adaptive_max_pool(layer: AdaptiveMaxPool2d, ins: tuple[int, ...], outs: tuple[int, ...],
                       opts: CountingOptions) -> LayerCount:
    n, c, h, w = ins
    per_channel = _bin_total(h, outs[2]) * _bin_total(w, outs[3])
    return LayerCount(kind="pool", extra_flops=n * c * per_channel if opts.pooling else 0,
                      saved_own=_numel(outs))  # the argmax of every output


def _pool1d(layer: Module, ins: tuple[int, ...], outs: tuple[int, ...],
            opts: CountingOptions) -> LayerCount:
    return LayerCount(kind="pool", extra_flops=_window_flops(outs, (1, layer.kernel_size), opts),
                      saves=("input",) if isinstance(layer, MaxPool1d) else ())


register_rule(MaxPool1d)(_pool1d)
register_rule(AvgPool1d)(_pool1d)


def _feature_norm(layer: Module, ins: tuple[int, ...], outs: tuple[int, ...],
                  opts: CountingOptions) -> LayerCount:
    """Statistics computed at inference too: sum, subtract, square, sum, scale per value
    (5), plus scale and shift (2) with an affine map; x̂ and one 1/σ per row kept."""
    rows = (ins[0] * layer.num_groups if isinstance(layer, GroupNorm)
            else _numel(ins) // _numel(layer.normalized_shape))
    per_value = 5 + (2 if layer.weight is not None else 0)
    return LayerCount(kind="norm", extra_flops=per_value * _numel(outs) if opts.norm else 0,
                      saved_own=_numel(ins) + rows)


register_rule(GroupNorm)(_feature_norm)
register_rule(LayerNorm)(_feature_norm)
