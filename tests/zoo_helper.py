"""What the parity tests of the classic networks share: counting, twins' batch norms, one
training step against the twin, a few steps that must lower the loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from glasscnn import models
from glasscnn.io import to_torch
from glasscnn.nn import CrossEntropyLoss, Module
from glasscnn.optim import Adam


def param_count(model: Module) -> int:
    """The number of trainable values of ``model``."""
    return sum(p.numel() for p in model.parameters())


def randomize_batch_norm(torch: Any, twin: Any) -> None:
    """Non-trivial γ, β and running statistics in every BatchNorm2d of ``twin``."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(7)


def check_training_step(torch: Any, name: str, shape: tuple[int, ...], loss_rel: float,
                        grad_rel: float, check_dx: bool) -> None:
    """One float64 training step (batch statistics, no dropout) of zoo model ``name`` on
    grey pictures of ``shape`` against ``to_torch``'s twin: the loss, every parameter
    gradient (within ``grad_rel`` of the largest, plus 1e-9 of the largest of all: a batch
    norm's β before another batch norm has a zero gradient up to rounding), the input
    gradient when ``check_dx``, and the updated running statistics."""
    model = models.get(name, in_channels=1, num_classes=10, dtype=np.float64,
                       rng=np.random.default_rng(3))
    for _, m in model.named_modules():  # no dropout: the masks would differ
        if hasattr(m, "p"):
            m.p = 0.0
    twin = to_torch(model, torch).train()
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    y = rng.integers(0, 10, shape[0])
    criterion = CrossEntropyLoss()
    loss = criterion(model(x), y)
    dx = model.backward(criterion.backward())
    tx = torch.from_numpy(x).requires_grad_(check_dx)
    t_loss = torch.nn.functional.cross_entropy(twin(tx), torch.from_numpy(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=loss_rel)
    if check_dx:
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6,
                                   atol=1e-7 * np.abs(tx.grad.numpy()).max())
    grads = {k: p.grad.numpy() for k, p in twin.named_parameters()}
    scale = max(np.abs(g).max() for g in grads.values())
    for key, p in model.named_parameters():
        ref = grads[key]
        assert np.abs(p.grad - ref).max() <= grad_rel * np.abs(ref).max() + 1e-9 * scale, key
    buffers = dict(twin.named_buffers())
    for key, b in model.named_buffers():
        np.testing.assert_allclose(b, buffers[key].numpy(), rtol=1e-7, atol=1e-10)


def losses_of_a_few_steps(model: Module, steps: int) -> list[float]:
    """The loss of each of ``steps`` Adam steps (lr 1e-3) on one seeded batch of four 1×28×28
    grey pictures (the Fashion-MNIST shape); ``model`` needs no input gradient."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    opt = Adam(model.parameters(), lr=1e-3)
    criterion = CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        losses.append(float(criterion(model(x), y)))
        assert model.backward(criterion.backward()) is None
        opt.step()
    return losses
