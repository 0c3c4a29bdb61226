"""Forward hooks, as in PyTorch: functions called around every module's forward.

``module.register_forward_hook(hook)`` watches one module; ``register_module_forward_hook``
and ``register_module_forward_pre_hook`` watch every module (the analysis records a forward
pass with them). Each returns a ``RemovableHandle``; ``handle.remove()`` (or leaving a
``with handle:`` block) unregisters the hook.

Hook signatures: ``pre_hook(module, args)`` before ``forward``; ``hook(module, args, output)``
after it, where a hook returning something other than ``None`` replaces the output. While
any hook is registered on a layer, or any global hook exists, ``Sequential`` runs every
layer on its own (no fused conv + ReLU), so hooks see each layer's own call.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

Hook = Callable[..., Any]

GLOBAL_PRE_HOOKS: dict[int, Hook] = {}
GLOBAL_HOOKS: dict[int, Hook] = {}
_ids = itertools.count()


class RemovableHandle:
    """Unregisters one hook with ``remove()``; also a context manager that removes on exit."""

    def __init__(self, registry: dict[int, Hook], hook: Hook) -> None:
        self.id = next(_ids)
        self._registry = registry
        registry[self.id] = hook

    def remove(self) -> None:
        """Unregister the hook (a second call does nothing)."""
        self._registry.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def register_module_forward_pre_hook(hook: Hook) -> RemovableHandle:
    """Call ``hook(module, args)`` before the forward of every module.

    Args:
        hook: a function of the module and the tuple of its positional inputs.

    Returns:
        A handle whose ``remove()`` unregisters the hook.
    """
    return RemovableHandle(GLOBAL_PRE_HOOKS, hook)


def register_module_forward_hook(hook: Hook) -> RemovableHandle:
    """Call ``hook(module, args, output)`` after the forward of every module.

    Args:
        hook: a function of the module, its positional inputs and its output; a return
            value other than ``None`` replaces the output.

    Returns:
        A handle whose ``remove()`` unregisters the hook.
    """
    return RemovableHandle(GLOBAL_HOOKS, hook)
