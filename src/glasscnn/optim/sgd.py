"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from typing import Any

import numpy as np

from glasscnn.nn.module import Parameter
from glasscnn.optim.optimizer import Optimizer, ParamsLike


class SGD(Optimizer):
    """SGD as ``torch.optim.SGD``, same operations in the same order.

    Per parameter θ with gradient g, step t::

        g ← g + weight_decay·θ                        (if weight_decay ≠ 0)
        b ← g (t = 1),  b ← momentum·b + (1 − dampening)·g (t > 1)   (if momentum ≠ 0)
        g ← g + momentum·b (nesterov)  or  g ← b
        θ ← θ − lr·g

    Args:
        params: list of Parameters or of param-group dicts.
        lr: learning rate (≥ 0).
        momentum: momentum factor (≥ 0).
        dampening: dampening of the momentum.
        weight_decay: L2 penalty coefficient added to the gradient (≥ 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0).

    State per parameter: ``"momentum_buffer"`` (array like the parameter) when momentum ≠ 0.
    """

    def __init__(
        self, params: ParamsLike, lr: float = 1e-3, momentum: float = 0.0,
        dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        self._check(group, "momentum", group["momentum"] >= 0, "momentum >= 0")
        self._check(group, "weight_decay", group["weight_decay"] >= 0, "weight_decay >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr = float(group["lr"])
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        weight_decay = float(group["weight_decay"])
        grad = p.grad
        if weight_decay != 0:
            decayed = self._scratch(p.data, 0)
            np.multiply(p.data, weight_decay, out=decayed)
            decayed += grad
            grad = decayed
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy(order="C")
            else:
                buf *= momentum
                if dampening == 0:
                    buf += grad
                else:
                    damped = self._scratch(p.data, 1)
                    np.multiply(grad, 1 - dampening, out=damped)
                    buf += damped
            if group["nesterov"]:
                ahead = self._scratch(p.data, 1)
                np.multiply(buf, momentum, out=ahead)
                ahead += grad
                grad = ahead
            else:
                grad = buf
        delta = self._scratch(p.data, 1)
        np.multiply(grad, -lr, out=delta)
        p.data += delta
