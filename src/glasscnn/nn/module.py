"""``Parameter`` and ``Module``: the PyTorch-shaped base of every layer."""

from __future__ import annotations

import functools
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from glasscnn.nn.hooks import GLOBAL_HOOKS, GLOBAL_PRE_HOOKS, Hook, RemovableHandle


class Parameter:
    """A trainable array and its accumulated gradient.

    Attributes:
        data: the values, e.g. a conv weight of shape (C_out, C_in, kH, kW).
        grad: the gradient of the loss with respect to ``data``, same shape and dtype;
            ``backward`` adds to it, ``zero_grad`` clears it.
    """

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self._grad = np.zeros_like(data)
        self._grad_is_zero = False  # zeroing owed: done on first read, skipped by accumulate

    @property
    def grad(self) -> np.ndarray:
        """The accumulated gradient (the same array from step to step, zeroed in place)."""
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        self._grad = value
        self._grad_is_zero = False

    def zero_grad(self) -> None:
        """Set ``grad`` to zero, in place (lazily: the first ``accumulate`` overwrites it)."""
        self._grad_is_zero = True

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """dtype of ``data``."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of axes of ``data``."""
        return self.data.ndim

    def numel(self) -> int:
        """Number of values, as ``torch.Tensor.numel()`` (NumPy's ``data.size``)."""
        return int(self.data.size)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """The shape, or the length of axis ``dim``, as ``torch.Tensor.size()``.

        A method, as in PyTorch, so ``p.size()`` is the shape; for the number of values
        use ``numel()`` (NumPy's ``.size`` attribute is ``p.data.size``).

        Args:
            dim: an axis (negative counts from the end), or None for the whole shape.
        """
        if dim is None:
            return tuple(self.data.shape)
        if not -self.data.ndim <= dim < self.data.ndim:
            raise ValueError(f"Parameter.size: dim must be in [{-self.data.ndim}, "
                             f"{self.data.ndim}), got {dim}")
        return int(self.data.shape[dim])

    def accumulate(self, grad: np.ndarray) -> None:
        """Add ``grad`` to ``self.grad`` (in place, as PyTorch accumulates).

        Right after ``zero_grad`` this is one copy instead of a fill and an add, and no copy
        at all when ``grad`` is the array :meth:`fresh_grad_buffer` handed out.
        """
        if self._grad_is_zero:
            if grad is not self._grad:
                self._grad[...] = grad
            self._grad_is_zero = False
        else:
            self._grad += grad

    def fresh_grad_buffer(self) -> np.ndarray | None:
        """The gradient array itself while a zeroing is owed (right after ``zero_grad``),
        for a kernel to write this step's gradient into, then passed to :meth:`accumulate`;
        ``None`` when a gradient is already there to be added to."""
        return self._grad if self._grad_is_zero else None

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class BackwardOrderError(RuntimeError):
    """``backward`` without a ``forward`` before it, or twice after one ``forward``.

    The message names the layer: its dotted path from the module ``backward`` was called on
    (``layer 'features.3' (ReLU)``) when it was reached through its containers.
    """

    def __init__(self, module: Module, twice: bool) -> None:
        super().__init__()
        self.module = module
        self.twice = twice
        self.path: list[str] = []
        self._top: Module | None = module

    def passing_through(self, parent: Module) -> None:
        """Prefix the path with the name ``parent`` gives the module the path starts from."""
        if self._top is None:
            return
        name = parent._child_name(self._top)
        self._top = parent if name is not None else None
        if name is not None:
            self.path.insert(0, name)

    def __str__(self) -> str:
        kind = type(self.module).__name__
        where = f"layer {'.'.join(self.path)!r} ({kind})" if self.path else kind
        if self.twice:
            return (f"{where}: backward called twice after one forward (its gradients would "
                    "be added twice); run forward again before each backward, and use each "
                    "layer once per forward: it keeps only its last call's cache")
        return (f"{where}: backward called before forward; backward uses what the last "
                "forward kept, so call the module (or forward) first")


def _float_input(module: Module, x: Any) -> Any:
    """``x`` itself if it is not an integer or bool array, else ``x`` cast to the module's
    floating dtype (that of its first parameter; float32 without one).

    Raises:
        ValueError: an array of complex numbers, objects or text (naming the layer).
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind == "f":
        return x
    if x.dtype.kind in "biu":
        for _, p in module.named_parameters():
            if p.data.dtype.kind == "f":
                return x.astype(p.data.dtype)
        return x.astype(np.float32)
    raise ValueError(
        f"{type(module).__name__}: expected an array of real numbers, got dtype {x.dtype}"
    )


def _checked_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's forward: compute in floating point, arm the backward check."""

    @functools.wraps(fn)
    def forward(self: Module, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_forward"):  # a subclass's forward calling super().forward
            return fn(self, *args, **kwargs)
        args = tuple(_float_input(self, a) for a in args)
        for pre_hook in list(GLOBAL_PRE_HOOKS.values()):
            pre_hook(self, args)
        object.__setattr__(self, "_in_forward", True)
        try:
            out = fn(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_in_forward", False)
        object.__setattr__(self, "_pass", "forward")
        for hook in [*GLOBAL_HOOKS.values(), *self.__dict__.get("_forward_hooks", {}).values()]:
            replaced = hook(self, args, out)
            if replaced is not None:
                out = replaced
        return out

    forward._glasscnn_checked = True  # type: ignore[attr-defined]
    return forward


def _checked_backward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's backward: refuse it before a forward or a second time after one."""

    @functools.wraps(fn)
    def backward(self: Module, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_backward"):  # a subclass's backward calling super()
            return fn(self, *args, **kwargs)
        state = self.__dict__.get("_pass")
        if state != "forward":
            raise BackwardOrderError(self, twice=state == "backward")
        object.__setattr__(self, "_in_backward", True)
        try:
            grads = fn(self, *args, **kwargs)
        except BackwardOrderError as err:
            err.passing_through(self)
            raise
        finally:
            object.__setattr__(self, "_in_backward", False)
        object.__setattr__(self, "_pass", "backward")
        return grads

    backward._glasscnn_checked = True  # type: ignore[attr-defined]
    return backward


class Module:
    """Base class of layers and networks: forward, backward, parameters, state_dict.

    Subclasses set parameters and sub-modules as attributes (they are registered by
    name, in order), buffers with ``register_buffer``, and implement ``forward(x)``,
    ``backward(dout) -> dx`` and ``output_shape(input_shape)``.

    Attributes:
        training: training mode (batch statistics, active dropout) or evaluation.
        name: a name for reports and charts (zoo models carry theirs), or None.
        input_shape: one sample's shape, e.g. (3, 32, 32), when known (zoo models set it):
            ``analyze`` and the notebook display use it.

    Every subclass's ``forward`` (and ``forward_*`` variants such as
    ``Conv2d.forward_relu``) and ``backward`` are wrapped once, here, when the class is
    defined:

    - modules compute in floating point: integer and bool arrays passed to ``forward`` are
      cast to the module's dtype (its first parameter's; float32 without parameters), so a
      uint8 batch gives what the same batch in float gives; complex, object or text arrays
      are refused with a ``ValueError`` naming the layer;
    - ``backward`` before any ``forward``, or a second ``backward`` after one ``forward``,
      raises ``BackwardOrderError`` (a ``RuntimeError``) naming the layer, instead of
      using a stale cache or adding the gradients twice.
    """

    name: str | None = None
    input_shape: tuple[int, ...] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, fn in list(vars(cls).items()):
            if not isinstance(fn, types.FunctionType) or getattr(fn, "_glasscnn_checked", False):
                continue
            if name == "forward" or name.startswith("forward_"):
                setattr(cls, name, _checked_forward(fn))
            elif name == "backward":
                setattr(cls, name, _checked_backward(fn))

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "input_grad", True)
        object.__setattr__(self, "_pass", None)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def _forward_done(self) -> None:
        """Arm ``backward`` as a forward does (for a layer whose forward another carried out,
        as ``Conv2d.forward_relu`` does for the ReLU after it)."""
        object.__setattr__(self, "_pass", "forward")

    def _child_name(self, module: Module) -> str | None:
        """The name under which this module holds ``module``: a registered child's name, or
        an attribute's (``name.i`` inside a list or tuple attribute), or None."""
        for name, child in self._modules.items():
            if child is module:
                return name
        for name, value in vars(self).items():
            if value is module:
                return name
            if isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    if item is module:
                        return f"{name}.{i}"
        return None

    def register_forward_hook(self, hook: Hook) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after each forward of this module.

        As PyTorch's: a return value other than ``None`` replaces the output. See
        ``glasscnn.nn.hooks`` for hooks on every module.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return RemovableHandle(self._forward_hooks, hook)

    def _observed(self) -> bool:
        """Whether a hook watches this module's forward (then nothing may fuse it away)."""
        return bool(GLOBAL_PRE_HOOKS or GLOBAL_HOOKS or self.__dict__.get("_forward_hooks"))

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-trainable array saved in the state_dict (e.g. ``running_mean``)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and keep what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Given dL/d(output), accumulate parameter gradients and return dL/d(input)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output for an input of ``input_shape`` (batch axis included)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no shape rule (output_shape is not implemented)"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def children(self) -> Iterator[Module]:
        """Direct sub-modules, in registration order."""
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for each direct sub-module."""
        yield from self._modules.items()

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, depth first (as ``named_modules``)."""
        for _, module in self.named_modules():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, with dotted names (``""`` for the root)."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, Parameter)`` for every parameter, as PyTorch names them."""
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> list[Parameter]:
        """Every parameter of this module and its descendants."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted name, array)`` for every buffer."""
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of all parameters and buffers under PyTorch's keys.

        Order: for each module in registration order, its parameters then its buffers,
        which is PyTorch's order (``conv1.weight``, ``conv1.bias``, ``bn1.weight``, ...).
        """
        sd: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, mod in self.named_modules():
            dot = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                sd[dot + name] = p.data.copy()
            for name, b in mod._buffers.items():
                sd[dot + name] = np.array(b, copy=True)
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> list[str]:
        """Copy arrays into the parameters and buffers, cast to their dtype, in place.

        Args:
            state_dict: mapping from PyTorch-style keys to arrays (NumPy or array-like).
            strict: if true, missing or unexpected keys raise ``KeyError``.

        Returns:
            The keys of this module that were not found (empty when ``strict``).

        Raises:
            KeyError: strict and a key is missing or unexpected (all are listed).
            ValueError: an array is not of real numbers (object, complex, text: refused
                before anything is copied), or a shape differs (every mismatch is listed
                with both shapes).
        """
        targets: dict[str, tuple[Module, str, bool]] = {}
        for mod_name, mod in self.named_modules():
            dot = f"{mod_name}." if mod_name else ""
            for name in mod._parameters:
                targets[dot + name] = (mod, name, True)
            for name in mod._buffers:
                targets[dot + name] = (mod, name, False)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        values, mismatched, not_real = {}, [], []
        for key, (mod, name, _) in targets.items():
            if key in state_dict:
                values[key] = value = np.asarray(state_dict[key])
                if value.dtype.kind not in "biuf":
                    not_real.append(f"{key}: dtype {value.dtype}")
                have = np.shape(getattr(mod, name) if name in mod._buffers
                                else mod._parameters[name].data)
                if tuple(have) != value.shape:
                    mismatched.append(f"{key}: expected {tuple(have)}, got {value.shape}")
        if not_real:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: only real numbers (bool, integer, "
                "float) can be loaded: " + "; ".join(not_real)
            )
        if mismatched:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: shape mismatch: " + "; ".join(mismatched)
            )
        for key, (mod, name, is_param) in targets.items():
            if key not in state_dict:
                continue
            value = values[key]
            if is_param:
                p = mod._parameters[name]
                np.copyto(p.data, value, casting="unsafe")
            else:
                buf = mod._buffers[name]
                np.copyto(buf, value, casting="unsafe")
        return missing

    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch statistics, active dropout) on this module and below."""
        for _, mod in self.named_modules():
            object.__setattr__(mod, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (running statistics, no dropout)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero."""
        for p in self.parameters():
            p.zero_grad()

    def requires_input_grad_(self, flag: bool = True) -> Module:
        """Say whether ``backward`` must return dL/d(input); ``False`` lets layers skip it.

        Set ``False`` on a network whose input is data (as in training, where PyTorch's
        input tensor has no gradient): its first conv or fc layer then computes only its
        parameter gradients and ``backward`` returns ``None``.
        """
        object.__setattr__(self, "input_grad", bool(flag))
        return self

    def extra_repr(self) -> str:
        """The arguments shown between the parentheses of this module's repr."""
        return ""

    def _repr_html_(self) -> str:
        """The layers as an HTML table (what a notebook shows): arguments, output shapes
        when ``input_shape`` is set, parameter counts."""
        from glasscnn.nn.display import module_html

        return module_html(self)

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


Module.forward = _checked_forward(Module.forward)  # type: ignore[method-assign]
Module.backward = _checked_backward(Module.backward)  # type: ignore[method-assign]
