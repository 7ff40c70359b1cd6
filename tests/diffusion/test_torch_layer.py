"""The engine used from plain PyTorch (reviewer-177): sampling without autograd, on meta."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from flexdownscale.diffusion import (
    IDFF,
    FlowMatching,
    ResidualModel,
    VPDiffusion,
    rollout,
    sample,
    sample_ddim,
    sample_ensemble,
    sample_euler,
    sample_heun,
    sample_idff,
    sample_sde,
)


class Scaled(nn.Module):
    """A network with one weight (``-w x_t`` plus a tenth of the mean of ``cond``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.3))

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        (feature,) = task_features if task_features is not None else self.encode_task(cond)
        return -self.weight * x_t + 0.1 * feature.mean(1, keepdim=True).expand_as(x_t)

    def encode_task(self, cond: Tensor) -> tuple[Tensor, ...]:
        return (cond,)


# a few calls take stiff settings on purpose (their warnings' advice runs on meta too)
pytestmark = pytest.mark.filterwarnings("ignore::flexdownscale.errors.SkillWarning")

OBJECTIVES = {"vp": VPDiffusion(), "flow": FlowMatching(), "idff": IDFF()}
SAMPLER_CALLS = [
    ("vp", sample_ddim, {}),
    ("vp", sample_ddim, {"eta": 1.0}),
    ("flow", sample_euler, {}),
    ("flow", sample_heun, {}),
    ("flow", sample_sde, {}),
    ("idff", sample_idff, {}),
    ("idff", sample_idff, {"g1": 0.5, "g2": 1.0}),
    ("idff", sample, {}),
    ("vp", sample_sde, {"delta": 1.0}),
]


@pytest.mark.parametrize(("objective", "sampler", "options"), SAMPLER_CALLS)
def test_samplers_return_no_grad(objective: str, sampler, options: dict) -> None:
    """Every sampler's sample and trajectory carry no gradient, whatever requires grad."""
    obj = OBJECTIVES[objective]
    channels = obj.channel_factor
    x_init = torch.randn(2, channels, 8, 8).requires_grad_()
    cond = torch.randn(2, 1, 8, 8).requires_grad_()
    result = sampler(
        Scaled(),
        x_init,
        cond,
        objective=obj,
        steps=3,
        generator=0,
        return_trajectory=True,
        **options,
    )
    assert not result.sample.requires_grad
    assert not any(state.requires_grad for state in result.trajectory)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_ensemble_and_residual_sampling_return_no_grad(objective: str) -> None:
    """sample_ensemble, ResidualModel.sample and rollout return tensors without grad, even
    with a base, cond and noise that require grad (the base's addition gave a gradient of
    members x pixels before, and nothing through the network)."""
    obj = OBJECTIVES[objective]
    net = Scaled()
    base = torch.randn(2, 1, 8, 8).requires_grad_()
    noise = torch.randn(2, 3, obj.channel_factor, 8, 8).requires_grad_()
    out = sample_ensemble(net, base, objective=obj, members=3, noise=noise, steps=2)
    assert not out.requires_grad
    model = ResidualModel(net)
    assert not model.sample(obj, base, members=3, steps=2, generator=0).requires_grad
    assert not model.sample(obj, base, base=base * 2, members=2, steps=2).requires_grad
    forecast = ResidualModel(net, task="forecast", past_frames=2)
    frames = torch.randn(1, 2, 8, 8).requires_grad_()
    leads = rollout(forecast, obj, frames, lead_steps=2, members=2, steps=2, generator=0)
    assert leads.shape == (1, 2, 2, 1, 8, 8)
    assert not leads.requires_grad


@pytest.mark.parametrize(("objective", "sampler", "options"), SAMPLER_CALLS)
def test_samplers_on_meta_return_the_shape(objective: str, sampler, options: dict) -> None:
    """Shape inference on the meta device runs to the end (the finite check read values)."""
    obj = OBJECTIVES[objective]
    x_init = torch.empty(2, obj.channel_factor, 8, 8, device="meta")
    cond = torch.empty(2, 1, 8, 8, device="meta")
    result = sampler(Scaled().to("meta"), x_init, cond, objective=obj, steps=3, **options)
    assert result.sample.is_meta
    assert result.sample.shape == x_init.shape


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_ensembles_on_meta_return_the_shape(objective: str) -> None:
    """sample_ensemble, ResidualModel.sample and rollout of a built backbone on meta."""
    from flexdownscale.config import ModelConfig
    from flexdownscale.models import build_model

    obj = OBJECTIVES[objective]
    config = ModelConfig(backbone="flex", preset="tiny", out_channels=obj.channel_factor)
    backbone = build_model(config, device="meta").eval()
    base = torch.empty(2, 1, 16, 32, device="meta")
    out = sample_ensemble(backbone, base, objective=obj, members=3, shape=(2, 1, 16, 32))
    assert out.is_meta and out.shape == (2, 3, 1, 16, 32)
    out = ResidualModel(backbone).sample(obj, base, members=2, steps=2, generator=0)
    assert out.is_meta and out.shape == (2, 2, 1, 16, 32)
    forecast = ResidualModel(Scaled().to("meta"), task="forecast", past_frames=2)
    frames = torch.empty(1, 2, 8, 8, device="meta")
    leads = rollout(forecast, obj, frames, lead_steps=2, members=2, steps=2, generator=0)
    assert leads.is_meta and leads.shape == (1, 2, 2, 1, 8, 8)
