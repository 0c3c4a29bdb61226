"""Blocks whose paths branch and join: run several paths on one input, concatenate their
outputs along the channels (SqueezeNet's Fire, GoogLeNet's Inception, DenseNet's dense
layer, ShuffleNetV2's unit).

The join is a copy, so it has no layer of its own (the analysis counts the layers on each
path; the concatenation and the channel shuffle add no multiply-accumulates). The three
array helpers used by the blocks are here: ``join_channels``, ``split_channels`` and
``channel_shuffle``.
"""

from __future__ import annotations

import numpy as np

from glasscnn.nn import Module

Layers = list[tuple[str, Module]]
# a path: (the input channels [start, stop) it reads, or None for all; its layers, in
# order; no layers: the input itself)
Branch = tuple[tuple[int, int] | None, Layers]


def join_channels(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate (N, C_i, H, W) arrays along the channels.

    Returns:
        (N, ΣC_i, H, W).
    """
    return np.concatenate(parts, axis=1)


def split_channels(x: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    """Cut (N, ΣC_i, H, W) into views (N, C_i, H, W), the inverse of ``join_channels``."""
    return np.split(x, np.cumsum(widths)[:-1], axis=1)


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """ShuffleNet's channel shuffle: channel g·(C/G) + j moves to j·G + g.

    Seen as a (G, C/G) grid of channels, the grid is transposed, so each group of the next
    grouped layer receives channels from every group of this one. Its inverse (the
    gradient) is the shuffle with C/G groups.

    Args:
        x: (N, C, H, W), C divisible by ``groups``.
        groups: G.

    Returns:
        (N, C, H, W), a new array.
    """
    n, c, h, w = x.shape
    grid = x.reshape(n, groups, c // groups, h, w)
    return np.ascontiguousarray(grid.transpose(0, 2, 1, 3, 4)).reshape(n, c, h, w)


def _run(layers: Layers, x: np.ndarray) -> np.ndarray:
    for _, layer in layers:
        x = layer(x)
    return x


def _run_back(layers: Layers, dout: np.ndarray) -> np.ndarray | None:
    for _, layer in reversed(layers):
        dout = layer.backward(dout)
    return dout


class ConcatBlock(Module):
    """Run ``head`` on the input, then every branch on what it gives; join the branches'
    outputs along the channels, and shuffle the channels when ``concat_parts`` asks for it.

    Subclasses register their layers in torchvision's order and describe the paths with
    ``concat_parts`` (which the ONNX export and the PyTorch twin read too).

    Shapes: (N, C_in, H, W) → (N, ΣC_branch, H', W'), every branch giving the same H', W'.
    """

    def __init__(self) -> None:
        super().__init__()
        # the last forward's (head output shape, each branch's output channels)
        self._joined: tuple[tuple[int, ...], list[int]] | None = None

    def concat_parts(self) -> tuple[Layers, list[Branch], int]:
        """``(head, branches, shuffle groups)``: the layers run first, the paths joined
        after them (see ``Branch``), and the channel shuffle's groups (0: none)."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) → (N, ΣC_branch, H', W')."""
        head, branches, groups = self.concat_parts()
        h = _run(head, x)
        outs = []
        for channels, layers in branches:
            part = h if channels is None else h[:, channels[0]:channels[1]]
            outs.append(_run(layers, part))
        self._joined = (h.shape, [o.shape[1] for o in outs])
        y = join_channels(outs)
        return channel_shuffle(y, groups) if groups else y

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Split the gradient among the branches, back through each; their input gradients
        add up (a branch reading some channels adds to those only), then through the head."""
        head, branches, groups = self.concat_parts()
        h_shape, widths = self._joined
        if groups:
            dout = channel_shuffle(dout, dout.shape[1] // groups)
        dh = None if not head and not self.input_grad else np.zeros(h_shape, dout.dtype)
        for (channels, layers), d in zip(branches, split_channels(dout, widths), strict=True):
            d = _run_back(layers, d)
            if dh is None or d is None:
                continue
            if channels is None:
                dh += d
            else:
                dh[:, channels[0]:channels[1]] += d
        return _run_back(head, dh) if head else dh

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); passed to the first layers."""
        super().requires_input_grad_(flag)
        head, branches, _ = self.concat_parts()
        firsts = [head[0][1]] if head else [layers[0][1] for _, layers in branches if layers]
        for layer in firsts:
            layer.requires_input_grad_(flag)
        return self

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Chain each path's shape rules; the channels add up."""
        head, branches, _ = self.concat_parts()
        shape = tuple(input_shape)
        for _, layer in head:
            shape = layer.output_shape(shape)
        outs = []
        for channels, layers in branches:
            part = shape if channels is None else (shape[0], channels[1] - channels[0],
                                                   *shape[2:])
            for _, layer in layers:
                part = layer.output_shape(part)
            outs.append(part)
        return (outs[0][0], sum(o[1] for o in outs), *outs[0][2:])


def children(block: Module, *names: str) -> Layers:
    """``(name, child)`` pairs of ``block`` for ``names``."""
    return [(name, block._modules[name]) for name in names]

