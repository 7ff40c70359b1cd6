"""The engine used from plain PyTorch (reviewer-177): sampling without autograd, on meta,
training under DistributedDataParallel."""

from __future__ import annotations

import pathlib

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
    assert out.is_meta
    assert out.shape == (2, 3, 1, 16, 32)
    out = ResidualModel(backbone).sample(obj, base, members=2, steps=2, generator=0)
    assert out.is_meta
    assert out.shape == (2, 2, 1, 16, 32)
    forecast = ResidualModel(Scaled().to("meta"), task="forecast", past_frames=2)
    frames = torch.empty(1, 2, 8, 8, device="meta")
    leads = rollout(forecast, obj, frames, lead_steps=2, members=2, steps=2, generator=0)
    assert leads.is_meta
    assert leads.shape == (1, 2, 2, 1, 8, 8)


class Conv(nn.Module):
    """A one-layer network of ``cat(x_t, cond)``, enough for gradients that depend on the data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

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
        return self.conv(torch.cat([x_t, feature], dim=1))

    def encode_task(self, cond: Tensor) -> tuple[Tensor, ...]:
        return (cond,)


def _ddp_worker(rank: int, folder: str) -> None:
    """One process of two: a DDP-wrapped ResidualModel's gradients on this rank's own data,
    through ``loss(..., network=ddp)`` and through the bare ``loss``, saved to ``folder``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = ResidualModel(Conv())
        ddp = DistributedDataParallel(model)
        data = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
        fine = torch.randn(2, 1, 8, 8, generator=data)
        base = torch.randn(2, 1, 8, 8, generator=data)
        grads = {}
        for how, network in (("wrapper", ddp), ("bare", None)):
            ddp.zero_grad()
            generator = torch.Generator().manual_seed(rank)
            loss = model.loss(VPDiffusion(), fine, base, generator=generator, network=network)
            loss.mean().backward()
            grads[how] = torch.cat([p.grad.flatten() for p in model.parameters()])
        torch.save(grads, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes importing the package: about 8 s here
def test_residual_loss_through_ddp_averages_gradients(tmp_path: pathlib.Path) -> None:
    """``model.loss(..., network=ddp)`` runs DDP's forward, so two gloo ranks with different
    data end with the same (averaged) gradients; the bare ``model.loss`` leaves each rank its
    own (the reviewer measured a difference of 0.051 with a tiny FLEX)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path),), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    torch.testing.assert_close(first["wrapper"], second["wrapper"], rtol=0, atol=1e-7)
    assert (first["bare"] - second["bare"]).abs().max() > 1e-3
    # the averaged gradient is the mean of the two ranks' own
    mean = (first["bare"] + second["bare"]) / 2
    torch.testing.assert_close(first["wrapper"], mean, rtol=1e-5, atol=1e-6)
