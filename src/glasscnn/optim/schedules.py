"""Learning-rate schedules that set ``group["lr"]`` of an optimizer's param groups.

Each schedule computes the learning rate in closed form from its step counter
``last_epoch`` and the groups' initial learning rates, with PyTorch's formulas; PyTorch
mostly updates recursively, so values agree with ``torch.optim.lr_scheduler`` to float64
rounding (~1e-15 relative), not bitwise. Construction applies step 0 (as PyTorch does);
call ``step()`` once per epoch or once per iteration, after ``optimizer.step()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glasscnn.optim.optimizer import Optimizer


class LRSchedule:
    """Base of the schedules: a step counter and the closed-form ``lr_at(epoch)``.

    Args:
        optimizer: the optimizer whose ``param_groups[i]["lr"]`` are set.

    Attributes:
        last_epoch: the number of ``step()`` calls since construction (0 after it).
        base_lrs: each group's ``"initial_lr"`` (its ``lr`` when first scheduled).
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr: list[float] = []
        self.step()

    def lr_at(self, epoch: int) -> list[float]:
        """The learning rate of each param group after ``epoch`` steps."""
        raise NotImplementedError(f"{type(self).__name__} does not implement lr_at")

    def step(self) -> None:
        """Advance one step (epoch or iteration) and set the groups' learning rates."""
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        lrs = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the latest ``step()`` (one per param group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """``{"last_epoch": int, "base_lrs": [float, ...]}`` (plus sub-schedules' states)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the step counter and base learning rates, and set the groups' ``lr``.

        Raises:
            KeyError: a key is missing.
            ValueError: the number of base learning rates differs from the param groups.
        """
        name = f"{type(self).__name__}.load_state_dict"
        for key in ("last_epoch", "base_lrs"):
            if key not in state_dict:
                raise KeyError(f"{name}: missing key {key!r}, got keys {sorted(state_dict)}")
        base_lrs = [float(v) for v in np.ravel(state_dict["base_lrs"])]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"{name}: {len(base_lrs)} base_lrs for "
                f"{len(self.optimizer.param_groups)} param groups"
            )
        self.base_lrs = base_lrs
        self.last_epoch = int(np.asarray(state_dict["last_epoch"]))
        self._apply()


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


class StepLR(LRSchedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    lr(t) = base_lr · gamma^⌊t / step_size⌋, as ``torch.optim.lr_scheduler.StepLR``.

    Args:
        optimizer: the optimizer to schedule.
        step_size: steps between decays (positive int).
        gamma: decay factor.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """base_lr · gamma^⌊epoch / step_size⌋ for each group."""
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRSchedule):
    """Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` steps.

    lr(t) = eta_min + (base_lr − eta_min)·(1 + cos(π·t / T_max)) / 2, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (periodic past ``T_max``, like it).

    Args:
        optimizer: the optimizer to schedule.
        T_max: half period in steps (positive int).
        eta_min: the minimum learning rate.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """eta_min + (base_lr − eta_min)·(1 + cos(π·epoch / T_max)) / 2 for each group."""
        cos_out = 1 + math.cos(math.pi * epoch / self.T_max)
        return [self.eta_min + (base - self.eta_min) * cos_out / 2 for base in self.base_lrs]


class OneCycleLR(LRSchedule):
    """The one-cycle policy: warm up to ``max_lr``, then anneal far below the start.

    As ``torch.optim.lr_scheduler.OneCycleLR`` (two phases): from
    initial = max_lr / div_factor up to max_lr over the first pct_start·total_steps − 1
    steps, then down to min = initial / final_div_factor at step total_steps − 1; cosine or
    linear interpolation. With ``cycle_momentum`` the momentum (SGD, RMSprop) or β1 (Adam)
    moves inversely, from max_momentum to base_momentum and back. Step once per batch;
    stepping past ``total_steps`` raises ``ValueError``.

    Args:
        optimizer: the optimizer to schedule.
        max_lr: peak learning rate, one float or one per param group.
        total_steps: number of steps in the cycle (positive int).
        pct_start: fraction of the cycle spent increasing the learning rate, in [0, 1].
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: initial_lr = max_lr / div_factor.
        final_div_factor: min_lr = initial_lr / final_div_factor.
        cycle_momentum: cycle the momentum (needs ``momentum`` or ``betas`` in the groups).
        base_momentum, max_momentum: momentum bounds, one float or one per param group.
    """

    def __init__(
        self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int,
        pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
        final_div_factor: float = 1e4, cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
    ) -> None:
        name = "OneCycleLR"
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"{name}: expected an Optimizer, got {type(optimizer).__name__}")
        self.total_steps = _positive_int(name, "total_steps", total_steps)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        self.phase_ends = [float(pct_start * self.total_steps) - 1, float(self.total_steps - 1)]
        groups = optimizer.param_groups
        self.max_lrs = self._per_group(name, "max_lr", max_lr, len(groups))
        self.initial_lrs = [m / div_factor for m in self.max_lrs]
        self.min_lrs = [i / final_div_factor for i in self.initial_lrs]
        for group, initial in zip(groups, self.initial_lrs, strict=True):
            group["initial_lr"] = initial
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    f"{name}: cycle_momentum needs an optimizer with momentum or betas, "
                    f"got {type(optimizer).__name__}"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            self.max_momentums = self._per_group(name, "max_momentum", max_momentum, len(groups))
            self.base_momentums = self._per_group(
                name, "base_momentum", base_momentum, len(groups)
            )
        super().__init__(optimizer)

    @staticmethod
    def _per_group(owner: str, name: str, value: Any, n: int) -> list[float]:
        if isinstance(value, list | tuple | np.ndarray):
            if len(value) != n:
                raise ValueError(
                    f"{owner}: {name} has {len(value)} values for {n} param groups: {value!r}"
                )
            return [float(v) for v in value]
        return [float(value)] * n

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _phase(self, epoch: int) -> tuple[int, float]:
        """The phase (0 warm-up, 1 anneal) of step ``epoch`` and the fraction of it done."""
        start = 0.0
        for i, end in enumerate(self.phase_ends):
            if epoch <= end or i == len(self.phase_ends) - 1:
                return i, (epoch - start) / (end - start) if end != start else 1.0
            start = end
        raise AssertionError("unreachable")

    def lr_at(self, epoch: int) -> list[float]:
        """The one-cycle learning rate of each group at step ``epoch`` (≤ total_steps)."""
        if epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {epoch} times, total_steps is {self.total_steps}"
            )
        phase, pct = self._phase(epoch)
        lrs = []
        for i in range(len(self.base_lrs)):
            bounds = [self.initial_lrs[i], self.max_lrs[i], self.min_lrs[i]]
            lrs.append(self._anneal(bounds[phase], bounds[phase + 1], pct))
        return lrs

    def _apply(self) -> None:
        super()._apply()
        if not self.cycle_momentum:
            return
        phase, pct = self._phase(self.last_epoch)
        for i, group in enumerate(self.optimizer.param_groups):
            hi, lo = self.max_momentums[i], self.base_momentums[i]
            momentum = self._anneal(hi, lo, pct) if phase == 0 else self._anneal(lo, hi, pct)
            if self.use_beta1:
                group["betas"] = (momentum, *group["betas"][1:])
            else:
                group["momentum"] = momentum


class LinearWarmup(LRSchedule):
    """Linear warm-up from ``start_factor``·lr to lr over ``warmup_steps``, then ``after``.

    lr(t) = base_lr·(start_factor + (1 − start_factor)·t / warmup_steps) for t <
    warmup_steps; from then on base_lr, or ``after``'s learning rate at t − warmup_steps.
    Equals ``torch.optim.lr_scheduler.LinearLR(optimizer, start_factor, 1.0, warmup_steps)``
    alone, or ``SequentialLR([that, after], milestones=[warmup_steps])``.

    Args:
        optimizer: the optimizer to schedule.
        warmup_steps: length of the warm-up (positive int).
        start_factor: the first step's fraction of the learning rate, in (0, 1]
            (PyTorch's default 1/3).
        after: a schedule built on the same optimizer before this one, which takes over
            when the warm-up ends with its own counter starting at 0.
    """

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 1.0 / 3,
        after: LRSchedule | None = None,
    ) -> None:
        name = "LinearWarmup"
        self.warmup_steps = _positive_int(name, "warmup_steps", warmup_steps)
        if not 0 < start_factor <= 1:
            raise ValueError(f"{name}: start_factor must be in (0, 1], got {start_factor!r}")
        self.start_factor = float(start_factor)
        if after is not None and (
            not isinstance(after, LRSchedule) or after.optimizer is not optimizer
        ):
            raise ValueError(
                f"{name}: after must be a schedule of the same optimizer, got {after!r}"
            )
        self.after = after
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """The warm-up (or ``after``'s) learning rate of each group at step ``epoch``."""
        if epoch >= self.warmup_steps:
            if self.after is not None:
                return self.after.lr_at(epoch - self.warmup_steps)
            return list(self.base_lrs)
        factor = self.start_factor + (1 - self.start_factor) * epoch / self.warmup_steps
        return [base * factor for base in self.base_lrs]

    def _apply(self) -> None:
        if self.after is not None and self.last_epoch >= self.warmup_steps:
            self.after.last_epoch = self.last_epoch - self.warmup_steps
            self.after._apply()
            self._last_lr = self.after.get_last_lr()
        else:
            super()._apply()

    def state_dict(self) -> dict[str, Any]:
        """As ``LRSchedule.state_dict``, with ``"after"``: the following schedule's state."""
        state = super().state_dict()
        if self.after is not None:
            state["after"] = self.after.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore this schedule and the following one (``KeyError`` if its state is missing)."""
        if self.after is not None:
            if "after" not in state_dict:
                raise KeyError(
                    f"LinearWarmup.load_state_dict: missing key 'after', "
                    f"got keys {sorted(state_dict)}"
                )
            self.after.load_state_dict(state_dict["after"])
        super().load_state_dict(state_dict)
