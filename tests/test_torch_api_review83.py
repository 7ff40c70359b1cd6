"""Fixes from reviewer-83's look at the torch layer used as a library (samplers, objectives,
backbones)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import ResidualModel, build_objective
from flexdownscale.errors import ShapeError
from flexdownscale.models import build_model


def _fields(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    fine = torch.randn(batch, 1, size, size, generator=gen)
    base = F.interpolate(F.avg_pool2d(fine, 4), scale_factor=4, mode="bilinear")
    return fine, base


# -- 1: the IDFF channel advice ---------------------------------------------------------------


def test_idff_state_channel_error_gives_the_working_fix() -> None:
    """A C-channel backbone under IDFF: the advice says in_channels = C, out_channels = 2 C,
    and following it works."""
    torch.manual_seed(0)
    obj = build_objective(DiffusionConfig(objective="idff"))
    fine, base = _fields()
    model = ResidualModel(build_model(ModelConfig(in_channels=1)))
    with pytest.raises(ShapeError, match=r"x_t has 2 channels") as info:
        model.loss(obj, fine, base)
    assert "in_channels = C" in str(info.value)
    assert "out_channels = 2 C for IDFF" in str(info.value)
    assert "in_channels and out_channels = 2 C" not in str(info.value)
    fixed = ResidualModel(build_model(ModelConfig(in_channels=1, out_channels=2)))
    assert fixed.loss(obj, fine, base).shape == (2,)


def test_cond_channel_error_carries_no_objective_advice() -> None:
    """The cond error (in_channels = 2 for one-channel data) keeps its own message only."""
    torch.manual_seed(0)
    obj = build_objective(DiffusionConfig(objective="idff"))
    fine, base = _fields()
    model = ResidualModel(build_model(ModelConfig(in_channels=2, out_channels=2)))
    with pytest.raises(ShapeError, match=r"^cond has 1 channels, expected 2") as info:
        model.loss(obj, fine, base)
    assert "the state here" not in str(info.value)
    assert "2 C" not in str(info.value)
