"""The tiny FLEX learns a synthetic super-resolution problem with every objective (slow, CPU).

Known statistics: each 4 x 4 cell of a 16 x 16 fine field is ``a * bump + 0.1 * white noise``
with ``a ~ N(0, 1)`` per cell and a fixed bump of cell-mean 1; the coarse field is the 4 x 4 area
mean and the base is its bilinear upsampling. Bilinear upsampling has an RMSE of about 0.72;
the best possible predictor (``a * bump`` from the coarse value) about 0.1. After 80 Adam steps of
batch 8 the ensemble mean must clearly beat bilinear and the ensemble must have spread.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import ResidualModel, build_objective
from flexdownscale.models import build_model

FACTOR, SIZE = 4, 16


def _bump() -> torch.Tensor:
    i = torch.arange(FACTOR) - (FACTOR - 1) / 2
    bump = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 2.0)
    return bump / bump.mean()


def _fields(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    cells = torch.randn(n, 1, SIZE // FACTOR, SIZE // FACTOR, generator=generator)
    fine = torch.kron(cells, _bump()) + 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=generator)
    coarse = F.avg_pool2d(fine, FACTOR)
    base = F.interpolate(coarse, scale_factor=FACTOR, mode="bilinear", align_corners=False)
    return fine, base


CASES = {
    "vp": (DiffusionConfig(objective="vp"), {}),
    "flow-gaussian": (DiffusionConfig(objective="flow", loss="l2"), {"steps": 8}),
    "flow-coarse-plus-noise": (
        DiffusionConfig(objective="flow", loss="l2", base="coarse_plus_noise", base_sigma=0.1),
        {"steps": 8},
    ),
    "idff": (DiffusionConfig(objective="idff", loss="l2"), {"steps": 8}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_tiny_flex_beats_bilinear_with_spread(name: str) -> None:
    config, sampling = CASES[name]
    torch.manual_seed(0)
    objective = build_objective(config)
    backbone = build_model(
        ModelConfig(
            backbone="flex",
            preset="tiny",
            in_channels=1,
            out_channels=objective.channel_factor,
            image_size=(SIZE, SIZE),
            dropout=0.0,
        )
    )
    model = ResidualModel(backbone)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(80):
        fine, base = _fields(8, g)
        loss = model.loss(objective, fine, base, generator=g).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    fine, base = _fields(8, torch.Generator().manual_seed(2))
    ensemble = model.sample(objective, base, members=8, generator=0, **sampling)
    assert ensemble.shape == (8, 8, 1, SIZE, SIZE)
    rmse_bilinear = (base - fine).square().mean().sqrt().item()
    rmse_mean = (ensemble.mean(1) - fine).square().mean().sqrt().item()
    rmse_member = (ensemble[:, 0] - fine).square().mean().sqrt().item()
    spread = ensemble.std(1).mean().item()
    assert 0.6 < rmse_bilinear < 0.85
    assert rmse_mean < 0.6 * rmse_bilinear, (rmse_mean, rmse_bilinear)
    assert rmse_member < rmse_bilinear, (rmse_member, rmse_bilinear)
    assert 0.01 < spread < 0.5, spread
