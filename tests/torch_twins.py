"""Build the PyTorch twin of a glasscnn module: same layers, same state_dict keys.

Used by the parity tests. Each glasscnn layer maps to the torch layer of the same
arguments; ``ResidualBlock`` maps to a small torch module with the same children.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

import glasscnn.nn as gnn


def to_torch(module: gnn.Module, torch):
    """Return a torch.nn.Module mirroring ``module`` (weights not copied; see ``copy_weights``)."""
    nn = torch.nn
    if isinstance(module, gnn.Sequential):
        return nn.Sequential(OrderedDict(
            (name, to_torch(child, torch)) for name, child in module.named_children()
        ))
    if isinstance(module, gnn.ResidualBlock):
        return _torch_residual(module, torch)
    if isinstance(module, gnn.Conv2d):
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation,
                         bias=module.bias is not None)
    if isinstance(module, gnn.Linear):
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, gnn.MaxPool2d):
        return nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, gnn.AvgPool2d):
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                            count_include_pad=module.count_include_pad)
    if isinstance(module, gnn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, gnn.BatchNorm2d):
        return nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine)
    if isinstance(module, gnn.BatchNorm1d):
        return nn.BatchNorm1d(module.num_features, module.eps, module.momentum, module.affine)
    simple = {gnn.ReLU: nn.ReLU, gnn.Sigmoid: nn.Sigmoid, gnn.Flatten: nn.Flatten}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, gnn.Dropout):
        return nn.Dropout(module.p)
    raise TypeError(f"no torch twin for {type(module).__name__}")


def _torch_residual(block: gnn.ResidualBlock, torch):
    nn = torch.nn

    class TorchResidual(nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in block.named_children():
                setattr(self, name, to_torch(child, torch))

        def forward(self, x):
            h = x
            for name, child in self.named_children():
                if name not in ("shortcut", "relu2"):
                    h = child(h)
            s = self.shortcut(x) if hasattr(self, "shortcut") else x
            return self.relu2(h + s)

    return TorchResidual()


def copy_weights(src: gnn.Module, dst, torch) -> None:
    """Load ``src``'s state_dict into the torch module ``dst`` (keys must agree)."""
    sd = {k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}
    dst.load_state_dict(sd, strict=True)
