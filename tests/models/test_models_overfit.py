"""The tiny FLEX can fit one fixed batch: plain MSE regression of the fine field from the coarse."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from flexdownscale.config import ModelConfig
from flexdownscale.models import build_model


def _synthetic_fields(batch: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """Smooth random fields: Fourier modes with a k^-2 amplitude spectrum, unit variance."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    fields = torch.zeros(batch, 1, size, size)
    for b in range(batch):
        for k in range(1, 7):
            for m in range(1, 7):
                amplitude, phase, _ = torch.randn(3, generator=gen)
                wave = torch.sin(2 * math.pi * (k * xx + m * yy) + phase)
                fields[b, 0] += amplitude / (k * k + m * m) * wave
    return fields / fields.std()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_flex_overfits_one_batch():
    torch.manual_seed(0)
    fine = _synthetic_fields(4, 32)
    coarse = F.avg_pool2d(fine, 4)
    cond = F.interpolate(coarse, scale_factor=4, mode="bilinear", align_corners=False)
    baseline = F.mse_loss(cond, fine).item()  # error of copying the upsampled coarse field

    model = build_model(ModelConfig(backbone="flex", preset="tiny", dropout=0.0)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_t = torch.zeros_like(fine)
    t = torch.full((fine.shape[0],), 0.5)
    losses = []
    start = time.perf_counter()
    for _ in range(40):
        loss = F.mse_loss(model(x_t, t, cond), fine)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    elapsed = time.perf_counter() - start

    assert losses[0] == pytest.approx(F.mse_loss(torch.zeros_like(fine), fine).item())  # zero head
    ratio = losses[0] / losses[-1]
    print(f"overfit: {elapsed:.1f} s, loss {losses[0]:.4f} -> {losses[-1]:.5f} ({ratio:.0f}x)")
    assert ratio >= 10
    assert losses[-1] < baseline / 2  # learned more than copying the coarse field
