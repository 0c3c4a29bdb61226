"""Gradient checks: analytic gradients against centered finite differences, with a verdict.

``check_module(module, x)`` and ``check_gradients(f, {...})`` return a ``GradcheckResult``
(``.passed``, ``.max_error``, ``.tolerance``, one error per gradient). The error of one
gradient is

    max over elements of |a − n| / max(|a| + |n|, atol / rtol)

with ``a`` the analytic and ``n`` the numerical gradient. Where the gradients are large this
is the relative error courses use (``|a − n| / (|a| + |n|)``); where they are smaller than
``atol / rtol`` the difference is judged against ``atol``, the rounding noise of the finite
differences, so that a gradient that is truly zero (a conv bias followed by batch norm)
passes instead of scoring a relative error near 1. A gradient passes when its error is at
most ``rtol``: every element then satisfies |a − n| <= max(rtol·(|a| + |n|), atol).

``atol`` defaults to ``ε · S / h``: ε = 2.2e-16 (float64), S = the largest Σ|f(x)·dout|
over the evaluations, h the step. It bounds the rounding error of the difference quotient
(L(x + h) − L(x − h)) / 2h when each term of L = Σ f·dout carries one rounding.

Finite differences need float64: in float32 the rounding error of f(x + h) − f(x − h) is
larger than the derivative's digits, so float32 arrays, parameters or outputs are refused
with a ``ValueError`` rather than given meaningless errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)


def rel_error(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Maximum relative error ``|a - b| / max(eps, |a| + |b|)`` over all elements.

    The course's measure. Near zero it is meaningless (two tiny, noisy values differ by
    100%); ``gradient_error`` and the ``check_*`` functions handle that case.

    Args:
        a, b: arrays of the same shape.
        eps: floor of the denominator, so that two zeros compare as equal.

    Returns:
        The largest elementwise relative error, a Python float.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(eps, np.abs(a) + np.abs(b))))


def gradient_error(analytic: np.ndarray, numeric: np.ndarray, atol: float,
                   rtol: float) -> float:
    """The error of one gradient: ``max |a − n| / max(|a| + |n|, atol / rtol)``.

    Args:
        analytic, numeric: arrays of the same shape.
        atol: the absolute difference that counts as noise (> 0).
        rtol: the tolerance on the relative error (> 0).

    Returns:
        A float; the gradient passes when it is at most ``rtol``.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient_error: shapes differ, got {a.shape} and {n.shape}")
    if atol <= 0 or rtol <= 0:
        raise ValueError(f"gradient_error: atol and rtol must be > 0, got {atol}, {rtol}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), atol / rtol)))


def _check_float64(what: str, dtype: np.dtype) -> None:
    if dtype.kind != "f" or dtype.itemsize < 8:
        raise ValueError(
            f"gradcheck: {what} has dtype {dtype}; finite differences need float64 (in "
            f"{dtype} the rounding error of f(x + h) - f(x - h) swamps the derivative): "
            "use x.astype(np.float64) and build layers with dtype=np.float64"
        )


def _numerical(f: Callable[[], Any], x: np.ndarray, dout: Any, h: float
               ) -> tuple[np.ndarray, float]:
    """(gradient of sum(f() * dout) w.r.t. ``x``, largest Σ|f()·dout| seen)."""
    _check_float64("the array differentiated", np.asarray(x).dtype)
    grad = np.zeros_like(x, dtype=np.float64)
    scale = 0.0

    def loss() -> float:
        nonlocal scale
        out = np.asarray(f())
        _check_float64("the function's output", out.dtype)
        terms = out * dout
        scale = max(scale, float(np.sum(np.abs(terms))))
        return float(np.sum(terms))

    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = loss()
        x[i] = old - h
        minus = loss()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
        it.iternext()
    return grad, scale


def numerical_gradient(
    f: Callable[[], Any], x: np.ndarray, dout: np.ndarray | float = 1.0, h: float = 1e-6
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x``, by centered differences.

    ``x`` is perturbed in place, one element at a time, and restored.

    Formula: ``dL/dx[i] = (L(x + h e_i) - L(x - h e_i)) / (2h)`` with ``L = sum(f() * dout)``.

    Args:
        f: a function of no arguments whose output depends on ``x``.
        x: the float64 array to differentiate with respect to.
        dout: the upstream gradient, shaped like ``f()``'s output, or a scalar.
        h: the step.

    Returns:
        A float64 array shaped like ``x``.

    Raises:
        ValueError: ``x`` or ``f()``'s output is not float64.
    """
    return _numerical(f, x, dout, h)[0]


@dataclass(eq=False, repr=False)
class GradcheckResult(Mapping):
    """The verdict of a gradient check: one error per gradient, and whether all pass.

    It reads as a mapping ``{name: error}`` (``result["input"]``, ``result.values()``), and
    as a bool that is ``passed`` (``assert check_module(layer, x)``).

    Attributes:
        errors: ``{name: error}``, each ``max |a − n| / max(|a| + |n|, atol / rtol)``.
        tolerance: ``rtol``; a gradient passes when its error is at most this.
        atol: the absolute difference taken as finite-difference noise.
        h: the finite-difference step.
        max_abs_diff: ``{name: max |a − n|}``.
    """

    errors: dict[str, float]
    tolerance: float
    atol: float
    h: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every gradient's error is at most ``tolerance``."""
        return all(e <= self.tolerance for e in self.errors.values())

    @property
    def max_error(self) -> float:
        """The largest error (0 when nothing was checked)."""
        return max(self.errors.values(), default=0.0)

    @property
    def failed(self) -> list[str]:
        """Names of the gradients whose error exceeds ``tolerance``."""
        return [k for k, e in self.errors.items() if e > self.tolerance]

    def __getitem__(self, name: str) -> float:
        return self.errors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        sign = "<=" if self.passed else ">"
        lines = [f"gradcheck {verdict}: max error {self.max_error:.2e} {sign} tolerance "
                 f"{self.tolerance:.0e} (h {self.h:.0e}, atol {self.atol:.2e})"]
        width = max([len(k) for k in self.errors] + [8])
        lines.append(f"  {'gradient':<{width}}  {'error':>9}  {'max |a-n|':>9}")
        for name, err in self.errors.items():
            mark = "ok" if err <= self.tolerance else "FAIL"
            diff = self.max_abs_diff.get(name, float("nan"))
            lines.append(f"  {name:<{width}}  {err:9.2e}  {diff:9.2e}  {mark}")
        return "\n".join(lines)


def check_gradients(
    f: Callable[[], Any], wrt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    dout: np.ndarray | float = 1.0, h: float = 1e-6, rtol: float = 1e-5,
    atol: float | None = None,
) -> GradcheckResult:
    """Compare analytic gradients of ``sum(f() * dout)`` with centered finite differences.

    Args:
        f: a function of no arguments reading the arrays of ``wrt``.
        wrt: ``{name: (array, analytic gradient)}``; each array (float64) is perturbed in
            place, one element at a time, and restored.
        dout: the upstream gradient, shaped like ``f()``'s output, or a scalar.
        h: the finite-difference step.
        rtol: the tolerance on each gradient's error.
        atol: the absolute difference taken as noise; default ``ε · max Σ|f()·dout| / h``.

    Returns:
        A ``GradcheckResult``.

    Raises:
        ValueError: an array or ``f()``'s output is not float64, or a gradient's shape
            differs from its array's.
    """
    numeric, scale = {}, 0.0
    for name, (array, analytic) in wrt.items():
        if np.shape(analytic) != np.shape(array):
            raise ValueError(f"gradcheck: the gradient of {name!r} has shape "
                             f"{np.shape(analytic)}, its array {np.shape(array)}")
        numeric[name], s = _numerical(f, array, dout, h)
        scale = max(scale, s)
    atol = EPS * max(scale, TINY) / h if atol is None else float(atol)
    errors, diffs = {}, {}
    for name, (_, analytic) in wrt.items():
        errors[name] = gradient_error(analytic, numeric[name], atol, rtol)
        diff = np.abs(np.asarray(analytic, np.float64) - numeric[name])
        diffs[name] = float(diff.max()) if diff.size else 0.0
    return GradcheckResult(errors, float(rtol), atol, float(h), diffs)


def check_module(
    module: Any, x: np.ndarray, dout: np.ndarray | None = None, h: float = 1e-6,
    seed: int = 0, rtol: float = 1e-5, atol: float | None = None,
) -> GradcheckResult:
    """Check a module's backward: its input and parameter gradients against finite differences.

    The scalar checked is ``sum(module(x) * dout)``; ``dout`` is random when not given.
    Modules with randomness (dropout) must be put in a deterministic state first. Buffers
    (batch-norm running statistics) are restored afterwards.

    Args:
        module: a ``glasscnn.nn.Module`` with float64 parameters.
        x: float64 input.
        dout: upstream gradient shaped like the output; random normal when ``None``.
        h: finite-difference step.
        seed: seed for the random ``dout``.
        rtol, atol: as for ``check_gradients``.

    Returns:
        A ``GradcheckResult`` with the errors of ``"input"`` (unless the module returns no
        input gradient) and of every parameter by its dotted name.

    Raises:
        ValueError: ``x`` or a parameter is not float64 (the names are listed).
    """
    x = np.asarray(x)
    _check_float64("the input x", x.dtype)
    not64 = [f"{name} ({p.data.dtype})" for name, p in module.named_parameters()
             if p.data.dtype != np.float64]
    if not64:
        raise ValueError(
            f"gradcheck: parameters {', '.join(not64)} are not float64; finite differences "
            "need float64: build the module with dtype=np.float64"
        )
    buffers = [(mod, k, np.array(b, copy=True)) for _, mod in module.named_modules()
               for k, b in mod._buffers.items()]
    try:
        out = module(x)
        if dout is None:
            dout = np.random.default_rng(seed).standard_normal(np.shape(out))
        module.zero_grad()
        dx = module.backward(np.asarray(dout, dtype=np.asarray(out).dtype))
        wrt = {} if dx is None else {"input": (x, dx)}
        wrt.update({name: (p.data, p.grad.copy()) for name, p in module.named_parameters()})
        return check_gradients(lambda: module(x), wrt, dout, h, rtol, atol)
    finally:
        for mod, k, value in buffers:
            np.copyto(mod._buffers[k], value)
