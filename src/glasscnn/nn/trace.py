"""Record a forward pass: every module call, in call order, with its name, inputs and output.

Works for any module, including one with a hand-written ``forward``: the calls are seen by
global forward hooks (``glasscnn.nn.hooks``), not guessed from the container types. The
analysis counts the leaf calls; the notebook display of a module reads the output shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glasscnn.nn.hooks import register_module_forward_hook, register_module_forward_pre_hook
from glasscnn.nn.module import Module


@dataclass(eq=False)
class Call:
    """One module call during a recorded forward pass.

    Attributes:
        name: dotted path from the recorded model, as ``named_modules`` names it
            (``"features.3"``; ``""`` for the model itself). A module its parent holds
            without registering it (``ResidualBlock``'s ``add``) is named by the attribute.
        module: the module called.
        depth: 0 for the model, 1 for its children, ...
        args: the positional inputs (kept alive while the record is).
        output: what ``forward`` returned (None while it runs).
        nested: the number of module calls made directly inside this one.
    """

    name: str
    module: Module
    depth: int
    args: tuple[Any, ...]
    output: Any = None
    nested: int = 0
    parent: Call | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of the first input, when it is an array."""
        first = self.args[0] if self.args else None
        return tuple(np.shape(first)) if isinstance(first, np.ndarray) else None

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Shape of the output, when it is an array."""
        return tuple(self.output.shape) if isinstance(self.output, np.ndarray) else None


class Recorder:
    """While open (``with Recorder(model) as rec: model(x)``), record every module call.

    Args:
        root: the model whose pass is recorded; calls outside it are ignored.
        on_enter: called with each ``Call`` before its forward runs (it may raise to stop
            the pass, e.g. to refuse a layer).
        preserve: evaluation mode during the pass, and every module's attributes (caches,
            modes, the backward check) restored afterwards, so that recording leaves the
            model as it was (buffers do not change in evaluation mode).

    Attributes:
        calls: every call, in the order they started.
        stack: the calls started and not finished; after an exception, the innermost is
            the one that raised.
    """

    def __init__(self, root: Module, on_enter: Callable[[Call], None] | None = None,
                 preserve: bool = True) -> None:
        self.root = root
        self.on_enter = on_enter
        self.preserve = preserve
        self.calls: list[Call] = []
        self.stack: list[Call] = []
        self._saved: dict[int, tuple[Module, dict[str, Any]]] = {}
        self._handles: list[Any] = []

    def _save(self, module: Module) -> None:
        if self.preserve and id(module) not in self._saved:
            self._saved[id(module)] = (module, dict(vars(module)))

    def _enter(self, module: Module, args: tuple[Any, ...]) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is None and module is not self.root:
            return
        if parent is None:
            name = ""
        else:
            child = parent.module._child_name(module) or type(module).__name__.lower()
            name = f"{parent.name}.{child}" if parent.name else child
            parent.nested += 1
        call = Call(name, module, 0 if parent is None else parent.depth + 1, args,
                    parent=parent)
        self._save(module)
        self.calls.append(call)
        self.stack.append(call)
        if self.on_enter is not None:
            self.on_enter(call)

    def _exit(self, module: Module, args: tuple[Any, ...], output: Any) -> None:
        if self.stack and self.stack[-1].module is module:
            self.stack.pop().output = output

    def __enter__(self) -> Recorder:
        if self.preserve:
            for module in self.root.modules():
                self._save(module)
            self.root.eval()
        self._handles = [register_module_forward_pre_hook(self._enter),
                         register_module_forward_hook(self._exit)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        for module, attributes in self._saved.values():
            module.__dict__.clear()
            module.__dict__.update(attributes)


def record(model: Module, *inputs: Any, on_enter: Callable[[Call], None] | None = None
           ) -> tuple[Any, list[Call]]:
    """Run ``model(*inputs)`` in evaluation mode and return its output and every call.

    The model is left as it was (see ``Recorder``).

    Args:
        model: any module.
        *inputs: its inputs, e.g. ``np.zeros((1, 3, 32, 32), np.float32)``.
        on_enter: called with each ``Call`` before its forward runs.

    Returns:
        (output, calls in the order they started).
    """
    with Recorder(model, on_enter) as rec:
        out = model(*inputs)
    return out, rec.calls
