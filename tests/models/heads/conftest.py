"""Shared pieces of the head tests: a tiny learnable batch, and training steps through the engine's own loss."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from keyhead.config import ModelConfig, RunConfig
from keyhead.engine.module import KeypointModule
from keyhead.models.model import KeypointModel


def blob_batch(n: int = 8, k: int = 3, size: int = 64, channels: int = 1, seed: int = 0):
    """``n`` images (n, C, size, size) in [0, 1] with one Gaussian blob per keypoint (brightness k-dependent)
    over weak noise, and the blob centres (n, k, 2) in input pixels (x, y)."""
    g = torch.Generator().manual_seed(seed)
    xy = 8 + torch.rand(n, k, 2, generator=g) * (size - 16)
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    img = 0.05 * torch.rand(n, 1, size, size, generator=g)
    for j in range(k):
        d2 = (xs - xy[:, j, 0, None, None]) ** 2 + (ys - xy[:, j, 1, None, None]) ** 2
        img = img + (0.4 + 0.6 * j / max(k - 1, 1)) * torch.exp(-d2 / 8.0)[:, None]
    return img.clamp(0, 1).expand(n, channels, size, size).contiguous(), xy


def run_steps(model: KeypointModel, loss: str, x: torch.Tensor, xy: torch.Tensor, steps: int, lr: float) -> list[float]:
    """Adam steps on one batch with the engine's loss (KeypointModule.compute_loss); the loss per step."""
    module = KeypointModule(model, RunConfig(model=ModelConfig(loss=loss)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        value = module.compute_loss(model(x), xy)
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    return losses


def check_gradients(model: KeypointModel, loss: str, x: torch.Tensor, xy: torch.Tensor) -> None:
    """One backward pass reaches every parameter of the model with a finite, non-zero gradient."""
    module = KeypointModule(model, RunConfig(model=ModelConfig(loss=loss)))
    model.train()
    model.zero_grad()
    module.compute_loss(model(x), xy).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    assert not dead, f"no or non-finite gradient: {dead[:5]}"
    assert not zero, f"zero gradient: {zero[:5]}"


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is as fast, and immune to other jobs on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batch() -> Callable:
    return blob_batch


@pytest.fixture
def steps() -> Callable:
    return run_steps


@pytest.fixture
def gradients() -> Callable:
    return check_gradients
