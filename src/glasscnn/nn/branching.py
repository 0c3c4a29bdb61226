"""Branching networks: ``Concat`` runs branches side by side on one input and joins their
outputs (an Inception block, a DenseNet layer); ``Identity`` passes its input through.

The backward stays explicit: ``Concat.backward`` splits the output gradient into the
branches' pieces (``cat_backward``), runs each branch's backward, and adds their input
gradients, because the input fanned out to every branch. A block whose forward does
more than that (SqueezeNet's Fire block, with its own state_dict names) is a ``Module``
subclass whose backward calls its parts' backwards in reverse (docs/branching.md).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from glasscnn import kernels as K
from glasscnn.nn.module import Module


class Identity(Module):
    """Returns its input unchanged (PyTorch's ``nn.Identity``); any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape → the same array."""
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """The upstream gradient, unchanged."""
        return dout

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape."""
        return tuple(input_shape)


class Concat(Module):
    """Run every branch on the same input and concatenate their outputs along ``dim``.

    ``Concat(a, b)`` names the branches ``"0"``, ``"1"`` (keys ``0.weight``, ...);
    ``Concat(OrderedDict(branch1=a, branch2=b))`` uses the given names, so that a state_dict
    matches a PyTorch block whose branches have those names.

    Args:
        *branches: modules whose outputs agree on every axis but ``dim``.
        dim: the axis to join along (1, the channels of NCHW maps, by default).
        impl: ``"fast"`` or ``"naive"`` for the concatenation kernel.

    Shapes: (N, C_in, H, W) → (N, C_1 + … + C_k, H', W') for branches giving (N, C_i, H', W').
    """

    def __init__(self, *branches: Module | OrderedDict[str, Module], dim: int = 1,
                 impl: str = "fast") -> None:
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], OrderedDict):
            items = list(branches[0].items())
        else:
            items = [(str(i), branch) for i, branch in enumerate(branches)]
        if not items:
            raise ValueError("Concat: expected at least one branch, got none")
        for name, branch in items:
            if not isinstance(branch, Module):
                raise ValueError(
                    f"Concat: branch {name!r} is not a Module, got {type(branch).__name__}"
                )
            setattr(self, name, branch)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"Concat: dim must be an int, got {dim!r}")
        self.dim = dim
        self.impl = impl
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Each branch on ``x``, outputs joined along ``dim``."""
        outs = [branch(x) for branch in self._modules.values()]
        out, self._cache = K.cat_forward(outs, self.dim, impl=self.impl)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Split ``dout`` into the branches' pieces, run each branch's backward (last branch
        first), and return the sum of their input gradients (``None`` when not needed)."""
        pieces = K.cat_backward(dout, self._cache)
        dx = None
        for branch, piece in reversed(list(zip(self._modules.values(), pieces, strict=True))):
            d = branch.backward(piece)
            if self.input_grad:
                dx = d if dx is None else dx + d
        return dx

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); passed on to every branch."""
        super().requires_input_grad_(flag)
        for branch in self._modules.values():
            branch.requires_input_grad_(flag)
        return self

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Each branch's shape rule; their sizes along ``dim`` add up."""
        shapes = [tuple(branch.output_shape(input_shape)) for branch in self._modules.values()]
        axis = self.dim % len(shapes[0])
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(rest) != 1 or any(len(s) != len(shapes[0]) for s in shapes):
            raise ValueError(f"Concat: branch outputs must agree on every axis but dim "
                             f"{self.dim}, got shapes {shapes} for input {tuple(input_shape)}")
        return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
