"""The generative engine at its extremes (reviewer-155).

* ``inf`` (and overflowing extremes) passed the objectives' and the configuration's checks.
* ``loss(..., t=1.5)`` gave NaN although the message said "times in [0, 1]".

The networks here are the exact ones of Gaussian data ``N(MU, SD^2)`` per value.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from flexdownscale.config import (
    DiffusionConfig,
    ModelConfig,
    SamplerConfig,
    TrainConfig,
    check_model_ranges,
)
from flexdownscale.diffusion import (
    IDFF,
    CosineSchedule,
    FlowMatching,
    VPDiffusion,
    build_objective,
)
from flexdownscale.errors import ConfigError, SkillWarning

F64 = torch.float64
MU = 1.0


class _Exact:
    """Base of the exact networks: a float64 parameter (so samplers call them in float64)."""

    def __init__(self, objective, sd: float) -> None:
        self.objective, self.sd = objective, sd
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=F64))

    def parameters(self):
        return iter([self.weight])

    def encode_task(self, cond):
        return ()


class ExactVP(_Exact):
    """``E[v | z]`` of the VP path."""

    def __call__(self, z, t, cond=None, *, phys=None, task_features=None):
        alpha, sigma = self.objective.alpha_sigma(t.to(F64).reshape(-1, 1))
        var = alpha**2 * self.sd**2 + sigma**2
        x0 = MU + alpha * self.sd**2 * (z - alpha * MU) / var
        eps = sigma * (z - alpha * MU) / var
        return alpha * eps - sigma * x0


class ExactFlow(_Exact):
    """``E[x1 - x0 | x_t]`` of flow matching from a base of mean 0 (``x_lo = 0``)."""

    def __call__(self, x, t, cond=None, *, phys=None, task_features=None):
        t = t.to(F64).reshape(-1, 1)
        b2 = self.objective._base_std() ** 2
        var = (1 - t) ** 2 * b2 + t**2 * self.sd**2
        return MU + (t * self.sd**2 - (1 - t) * b2) / var * (x - t * MU)


class ExactIDFF(_Exact):
    """The two heads ``(E[x1 | x_t], score)`` of the IDFF bridge from a base of mean 0."""

    def __call__(self, x_in, t, cond=None, *, phys=None, task_features=None):
        x = x_in[:, : x_in.shape[1] // 2]
        t = t.to(F64).reshape(-1, 1)
        b2 = self.objective._base_std() ** 2
        var = (1 - t) ** 2 * b2 + t**2 * self.sd**2 + self.objective.bridge_std(t) ** 2
        x1 = MU + t * self.sd**2 / var * (x - t * MU)
        return torch.cat([x1, -(x - t * MU) / var], dim=1)


#: objective, its exact network, and a posterior spread where delta h = 1 over-disperses
CASES = {
    "vp": (VPDiffusion(), ExactVP, 0.1),
    "flow-coarse-plus-noise": (
        FlowMatching(base="coarse_plus_noise", base_sigma=0.1),
        ExactFlow,
        0.01,
    ),
    "idff": (IDFF(), ExactIDFF, 0.1),
}


def _noise(n: int = 4000, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _langevin_h(objective, steps: int) -> float:
    """The largest step in tau of the grid's Langevin steps (all but the last)."""
    taus = objective.ode_time(objective.time_grid(steps))
    return float((taus[1:-1] - taus[:-2]).abs().max())


def _quietly(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with SkillWarning raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        return func(*args, **kwargs)


# -- 3: infinite and overflowing settings ---------------------------------------------------------


INF = math.inf


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"shift": INF}, "shift"),
        ({"shift": 1e-300}, "shift"),
        ({"shift": math.nan}, "shift"),
        ({"logsnr_max": INF}, "logsnr_max"),
        ({"logsnr_min": -INF}, "logsnr_min"),
        ({"logsnr_min": -1e9}, "logsnr_min"),
        ({"logsnr_min": -1e9, "logsnr_max": 1e9}, "logsnr_min"),
        ({"objective": "flow", "base": "coarse_plus_noise", "base_sigma": INF}, "base_sigma"),
        ({"objective": "flow", "base": "coarse_plus_noise", "base_sigma": 1e-300}, "base_sigma"),
        ({"objective": "idff", "idff_sigma": INF}, "idff_sigma"),
        ({"objective": "idff", "idff_c": INF}, "idff_c"),
    ],
)
def test_infinite_and_overflowing_diffusion_settings_are_refused(settings, key):
    """``inf`` passed ``not x > 0``: ``shift = inf`` trained on pure noise and sampled NaN,
    ``idff_c = inf`` never trained ``x1_hat``, ``base_sigma = inf`` gave NaN losses and an
    ``OverflowError``, ``logsnr_min = -1e9`` an untyped ``OverflowError`` at the first sample.
    The configuration, ``build_objective`` and the constructors now refuse them alike."""
    diffusion = DiffusionConfig(**settings)
    with pytest.raises(ConfigError, match=rf"diffusion\.{key} = .* out of range"):
        check_model_ranges(ModelConfig(), diffusion, SamplerConfig())
    with pytest.raises(ConfigError, match=rf"diffusion\.{key} = "):
        TrainConfig(diffusion=diffusion)
    with pytest.raises(ConfigError, match=rf"^{key} = "):
        build_objective(diffusion)


@pytest.mark.parametrize("scale", [-1.0, 0.0, math.nan, INF])
@pytest.mark.parametrize("cls", [VPDiffusion, FlowMatching, IDFF])
def test_the_objective_constructors_refuse_a_bad_loss_scale(cls, scale):
    """``DiffusionConfig`` refused these, the constructors did not (-1 made training climb)."""
    with pytest.raises(ConfigError, match=r"loss_scale = .* must be a positive finite number"):
        cls(loss_scale=scale)


def test_the_usual_schedules_are_still_accepted():
    for lo, hi, shift in [
        (-20.0, 20.0, 1.0),
        (-15.0, 10.0, 2.0),
        (-20.0, 20.0, 64.0),
        (-5, 5, 0.2),
    ]:
        CosineSchedule(lo, hi, shift)
        check_model_ranges(
            ModelConfig(),
            DiffusionConfig(logsnr_min=lo, logsnr_max=hi, shift=shift),
            SamplerConfig(),
        )


# -- 4: explicit training times ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("t", [1.5, -0.5, math.nan, INF, torch.tensor([0.5, 1.0 + 1e-6])])
def test_loss_refuses_times_outside_0_1(name, t):
    """``loss(..., t=1.5)`` gave NaN (VP, IDFF) or extrapolated the path (flow)."""
    objective, network, _ = CASES[name]
    target = torch.ones(2, 1, dtype=F64)
    with pytest.raises(ConfigError, match=r"t must hold times in \[0, 1\]"):
        objective.loss(network(objective, 0.1), target, t=t)


@pytest.mark.parametrize("name", list(CASES))
def test_loss_takes_the_ends_of_0_1(name):
    objective, network, _ = CASES[name]
    times = torch.tensor([0.0, 1.0], dtype=F64)
    loss = objective.loss(network(objective, 0.1), torch.ones(2, 1, dtype=F64), t=times)
    assert torch.isfinite(loss).all()
