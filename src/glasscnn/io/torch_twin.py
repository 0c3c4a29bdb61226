"""Build the PyTorch twin of a glasscnn module: same layers, same state_dict keys, same weights.

torch is never imported by glasscnn itself: pass the module in, or let ``to_torch`` import
it when called.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

import glasscnn.nn as gnn


def to_torch(module: gnn.Module, torch: Any = None, weights: bool = True) -> Any:
    """Return a ``torch.nn.Module`` mirroring ``module``.

    Every glasscnn layer maps to the torch layer of the same arguments; ``Sequential`` keeps
    its child names, so the state_dict keys agree; ``ResidualBlock`` (and a block with
    ``residual_parts()``, such as torchvision's ResNet blocks) becomes a small torch module
    with the same children and forward.

    Args:
        module: a glasscnn module built from the layers of ``glasscnn.nn``.
        torch: the ``torch`` module (imported here when ``None``).
        weights: copy parameters and buffers (and the dtype) from ``module``; otherwise the
            twin keeps torch's own initialisation in float32.

    Returns:
        The torch module, in the same train/eval mode as ``module``.

    Raises:
        ValueError: a layer has no torch counterpart (named in the message).
    """
    if torch is None:
        import torch
    twin = _twin(module, torch)
    if weights:
        dtypes = {p.data.dtype for p in module.parameters()}
        if dtypes == {np.dtype(np.float64)}:
            twin = twin.to(torch.float64)
        state = {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
        twin.load_state_dict(state, strict=True)
    return twin.train(module.training)


def _twin(module: gnn.Module, torch: Any) -> Any:
    nn = torch.nn
    if isinstance(module, gnn.Sequential):
        return nn.Sequential(OrderedDict(
            (name, _twin(child, torch)) for name, child in module.named_children()
        ))
    if isinstance(module, gnn.ResidualBlock):
        main = [name for name, m in module.named_children() if m in module.main_path()]
        shortcut = "shortcut" if "shortcut" in module._modules else None
        return _residual_twin(module, main, shortcut, "relu2", torch)
    if hasattr(module, "residual_parts"):
        parts = module.residual_parts()
        if parts is None:  # this instance has no shortcut: its children in order
            return _residual_twin(module, list(module._modules), None, None, torch, add=False)
        main, shortcut, act = parts
        return _residual_twin(module, [n for n, _ in main], shortcut and shortcut[0],
                              act and act[0], torch)
    if hasattr(module, "concat_parts"):
        return _concat_parts_twin(module, torch)
    if isinstance(module, gnn.Conv2d):
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation, module.groups,
                         bias=module.bias is not None)
    if isinstance(module, gnn.Conv1d):
        return nn.Conv1d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation, module.groups,
                         bias=module.bias is not None)
    if isinstance(module, gnn.ConvTranspose2d):
        return nn.ConvTranspose2d(module.in_channels, module.out_channels, module.kernel_size,
                                  module.stride, module.padding, module.output_padding,
                                  module.groups, module.bias is not None, module.dilation)
    if isinstance(module, gnn.Linear):
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, gnn.MaxPool2d):
        return nn.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                            module.return_indices, module.ceil_mode)
    if isinstance(module, gnn.AvgPool2d):
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                            count_include_pad=module.count_include_pad,
                            divisor_override=module.divisor_override)
    if isinstance(module, gnn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, gnn.BatchNorm2d):
        return nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine)
    if isinstance(module, gnn.BatchNorm1d):
        return nn.BatchNorm1d(module.num_features, module.eps, module.momentum, module.affine)
    if isinstance(module, gnn.Dropout):
        return nn.Dropout(module.p)
    if isinstance(module, gnn.Flatten):
        return nn.Flatten(module.start_dim)
    simple = {gnn.ReLU: nn.ReLU, gnn.Sigmoid: nn.Sigmoid, gnn.Tanh: nn.Tanh, gnn.ReLU6: nn.ReLU6,
              gnn.Hardswish: nn.Hardswish, gnn.SiLU: nn.SiLU, gnn.GELU: nn.GELU,
              gnn.Identity: nn.Identity}
    if type(module) in simple:
        return simple[type(module)]()
    twin = _twin_more(module, torch)
    if twin is not None:
        return twin
    raise ValueError(f"to_torch: no PyTorch counterpart for layer {type(module).__name__}")


def _twin_more(module: gnn.Module, torch: Any) -> Any:
    """The twins of the layers with arguments beyond the course networks, else ``None``."""
    nn = torch.nn
    if isinstance(module, gnn.LeakyReLU):
        return nn.LeakyReLU(module.negative_slope)
    if isinstance(module, gnn.Softmax | gnn.LogSoftmax):
        return getattr(nn, type(module).__name__)(module.dim)
    if isinstance(module, gnn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool2d(module.output_size, module.return_indices)
    if isinstance(module, gnn.MaxPool1d):
        return nn.MaxPool1d(module.kernel_size, module.stride, module.padding, module.dilation,
                            module.return_indices, module.ceil_mode)
    if isinstance(module, gnn.AvgPool1d):
        return nn.AvgPool1d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                            module.count_include_pad)
    if isinstance(module, gnn.GroupNorm):
        return nn.GroupNorm(module.num_groups, module.num_channels, module.eps, module.affine,
                            bias=module.bias is not None)
    if isinstance(module, gnn.LayerNorm):
        return nn.LayerNorm(module.normalized_shape, module.eps, module.elementwise_affine,
                            bias=module.bias is not None)
    if isinstance(module, gnn.Concat):
        return _concat_twin(module, torch)
    return None


def _concat_twin(block: gnn.Concat, torch: Any) -> Any:
    class Concat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, child in block.named_children():
                self.add_module(name, _twin(child, torch))

        def forward(self, x: Any) -> Any:
            return torch.cat([branch(x) for branch in self.children()], block.dim)

    return Concat()


def _residual_twin(block: gnn.Module, main: list[str], shortcut: str | None, act: str | None,
                   torch: Any, add: bool = True) -> Any:
    """A torch module with ``block``'s children: act(main path (x) + shortcut(x)) (no act
    when ``act`` is None; the main path alone when not ``add``)."""

    class ResidualBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, child in block.named_children():
                setattr(self, name, _twin(child, torch))

        def forward(self, x: Any) -> Any:
            h = x
            for name in main:
                h = getattr(self, name)(h)
            if not add:
                return h
            s = getattr(self, shortcut)(x) if shortcut else x
            return getattr(self, act)(h + s) if act else h + s

    return ResidualBlock()


def _concat_parts_twin(block: gnn.Module, torch: Any) -> Any:
    """A torch module with ``block``'s children running its ``concat_parts()``: the head,
    each branch on its channels, the concatenation and the channel shuffle."""
    head, branches, groups = block.concat_parts()
    head_names = [n for n, _ in head]
    paths = [(channels, [n for n, _ in layers]) for channels, layers in branches]

    class ConcatBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, child in block.named_children():
                setattr(self, name, _twin(child, torch))

        def forward(self, x: Any) -> Any:
            for name in head_names:
                x = getattr(self, name)(x)
            outs = []
            for channels, names in paths:
                h = x if channels is None else x[:, channels[0]:channels[1]]
                for name in names:
                    h = getattr(self, name)(h)
                outs.append(h)
            y = torch.cat(outs, 1)
            if groups:
                n, c, hh, ww = y.shape
                y = y.view(n, groups, c // groups, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
            return y

    return ConcatBlock()
