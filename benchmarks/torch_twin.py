"""PyTorch twins of glasscnn recipes, for benchmarks/accuracy.py.

The model twin is ``glasscnn.io.to_torch`` (same layers, keys and weights, so both
frameworks start from identical parameters); the optimizer is
``glasscnn.train.recipes.make_optimizer(recipe, params, torch.optim)``; ``torch_schedule``
mirrors ``make_schedule``.
"""

from __future__ import annotations

from typing import Any

from glasscnn.train.recipes import Recipe


def weights(module: Any) -> list[Any]:
    """The weight tensors (ndim ≥ 2) that the recipes' L2 term covers."""
    return [p for p in module.parameters() if p.ndim >= 2]


def torch_schedule(recipe: Recipe, optimizer: Any, steps_per_epoch: int, torch: Any
                   ) -> tuple[Any, str]:
    """``torch.optim.lr_scheduler`` twin of ``make_schedule``: (schedule or None, interval)."""
    s = torch.optim.lr_scheduler
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "none":
        return None, "epoch"
    if recipe.schedule == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=total), "step"
    if recipe.schedule == "step":
        return s.StepLR(optimizer, step_size=max(1, -(-recipe.epochs // 3))), "epoch"
    if recipe.schedule == "onecycle":
        return s.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total), "step"
    warm = s.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=steps_per_epoch)
    cosine = s.CosineAnnealingLR(optimizer, T_max=max(1, total - steps_per_epoch))
    return s.SequentialLR(optimizer, [warm, cosine], milestones=[steps_per_epoch]), "step"
