"""Helpers for the backbone tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from flexdownscale.config import ModelConfig
from flexdownscale.models import build_model

BACKBONE_NAMES = ("flex", "unet", "uvit", "dit")


def _perturb(model: nn.Module, *, seed: int = 0, scale: float = 0.02) -> nn.Module:
    """Add seeded noise to every parameter, so zero-initialised layers become non-zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def _make(backbone: str = "flex", **kwargs) -> nn.Module:
    """Build a tiny model (seeded) with ``kwargs`` overriding ModelConfig fields."""
    torch.manual_seed(0)
    return build_model(
        ModelConfig(backbone=backbone, preset=kwargs.pop("preset", "tiny"), **kwargs)
    )


@pytest.fixture
def perturb() -> Callable[..., nn.Module]:
    return _perturb


@pytest.fixture
def make() -> Callable[..., nn.Module]:
    return _make
