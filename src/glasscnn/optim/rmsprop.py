"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.nn.module import Parameter
from glasscnn.optim.optimizer import Optimizer, ParamsLike, lerp_


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop``, same operations in the same order.

    Per parameter θ with gradient g::

        g ← g + weight_decay·θ                        (if weight_decay ≠ 0)
        s ← α·s + (1 − α)·g²
        ḡ ← lerp(ḡ, g, 1 − α);  d ← √(s − ḡ²) + eps   (centered)
        d ← √s + eps                                  (otherwise)
        b ← momentum·b + g/d;  θ ← θ − lr·b           (momentum > 0)
        θ ← θ − lr·g/d                                (otherwise)

    Args:
        params: list of Parameters or of param-group dicts.
        lr: learning rate (≥ 0).
        alpha: smoothing constant of the squared-gradient average (≥ 0).
        eps: added to the denominator (≥ 0).
        weight_decay: L2 penalty added to the gradient (≥ 0).
        momentum: momentum factor (≥ 0).
        centered: normalise by the variance estimate instead of the second moment.

    State per parameter: ``"step"`` (int), ``"square_avg"``, and ``"momentum_buffer"``
    (momentum > 0) and ``"grad_avg"`` (centered), arrays like the parameter.
    """

    def __init__(
        self, params: ParamsLike, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
        weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered}
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        self._check(group, "alpha", group["alpha"] >= 0, "alpha >= 0")
        self._check(group, "eps", group["eps"] >= 0, "eps >= 0")
        self._check(group, "momentum", group["momentum"] >= 0, "momentum >= 0")
        self._check(group, "weight_decay", group["weight_decay"] >= 0, "weight_decay >= 0")

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr = float(group["lr"])
        alpha = float(group["alpha"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        momentum = float(group["momentum"])
        centered = bool(group["centered"])
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data, order="C")
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = np.zeros_like(p.data, order="C")
        if centered and "grad_avg" not in state:
            state["grad_avg"] = np.zeros_like(p.data, order="C")
        state["step"] += 1
        grad = p.grad
        if weight_decay != 0:
            decayed = self._scratch(p.data, 0)
            np.multiply(p.data, weight_decay, out=decayed)
            decayed += grad
            grad = decayed
        square_avg = state["square_avg"]
        avg = self._scratch(p.data, 1)
        square_avg *= alpha
        np.multiply(grad, 1 - alpha, out=avg)
        avg *= grad
        square_avg += avg
        if centered:
            grad_avg = state["grad_avg"]
            lerp_(grad_avg, grad, 1 - alpha, avg)
            np.negative(grad_avg, out=avg)
            avg *= grad_avg
            avg += square_avg
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += eps
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            np.divide(grad, avg, out=avg)
            buf += avg
            np.multiply(buf, -lr, out=avg)
            p.data += avg
        else:
            delta = self._scratch(p.data, 0)
            np.multiply(grad, -lr, out=delta)
            delta /= avg
            p.data += delta
