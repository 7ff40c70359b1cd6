"""Checks of the engine that a mutation audit found missing (helper-181).

Each test pins one number the other tests let change silently: the law of the training times,
the loss's reduction and ``loss_scale``, DDIM's stochastic (``eta > 0``) update, and the seeds
derived for time steps and forecast leads. The references are written independently of the
package (DDIM in the ``alpha_bar`` notation of Song et al., the losses from the network's
recorded inputs).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from flexdownscale.diffusion import (
    IDFF,
    CosineSchedule,
    FlowMatching,
    VPDiffusion,
    sample_ddim,
)
from flexdownscale.diffusion.residual import lead_seed
from flexdownscale.diffusion.samplers import derived_seed

F64 = torch.float64


def _field(x_t: Tensor, t: Tensor) -> Tensor:
    """A fixed nonlinear "network" output, elementwise in ``x_t`` and depending on ``t``."""
    tb = t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
    return torch.sin(x_t) * (0.5 + tb) + 0.1 * x_t - 0.2


class _Recorder:
    """A denoiser returning :func:`_field`, recording the states and times it is called with."""

    def __init__(self) -> None:
        self.states: list[Tensor] = []
        self.times: list[Tensor] = []

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self.states.append(x_t.detach().clone())
        self.times.append(torch.as_tensor(t).detach().clone())
        return _field(x_t, torch.as_tensor(t).expand(x_t.shape[0]))

    def encode_task(self, cond):
        return ()


@pytest.mark.parametrize(
    ("objective", "low", "high"),
    [
        (VPDiffusion(), 0.0, 1.0),
        (FlowMatching(t_min=0.2, t_max=0.7), 0.2, 0.7),
        (IDFF(t_min=0.1, t_max=0.6), 0.1, 0.6),
    ],
    ids=["vp", "flow", "idff"],
)
def test_training_times_are_uniform_over_the_whole_range(objective, low, high) -> None:
    """Without ``t`` the loss draws its times uniformly on [0, 1) (VP) or [t_min, t_max]."""
    net = _Recorder()
    n = 4096
    target = torch.zeros(n, 1, 2, 2, dtype=F64)
    objective.loss(net, target, generator=torch.Generator().manual_seed(0))
    t = net.times[0]
    assert t.shape == (n,)
    assert low <= t.min()
    assert t.max() <= high
    width = high - low
    assert t.min() < low + 0.01 * width
    assert t.max() > high - 0.01 * width
    # Kolmogorov-Smirnov distance to the uniform law (0.1 % critical value: about 0.03)
    u = ((t - low) / width).sort().values
    grid = torch.arange(1, n + 1, dtype=F64) / n
    assert float((u - grid).abs().max()) < 0.03


_SCALED = [
    ("vp-v", lambda s: VPDiffusion(loss_scale=s)),
    ("vp-eps-l2", lambda s: VPDiffusion(target="eps", loss="l2", loss_scale=s)),
    ("flow", lambda s: FlowMatching(loss_scale=s)),
    ("flow-cpn-l1", lambda s: FlowMatching(base="coarse_plus_noise", loss="l1", loss_scale=s)),
    ("idff", lambda s: IDFF(loss_scale=s)),
    ("idff-l1", lambda s: IDFF(loss="l1", loss_scale=s)),
]


@pytest.mark.parametrize(("name", "make"), _SCALED, ids=[c[0] for c in _SCALED])
def test_loss_scale_multiplies_the_whole_loss(name, make) -> None:
    """``loss_scale`` scales every term (IDFF: the data and the noise terms alike)."""
    g = torch.Generator().manual_seed(1)
    target = torch.randn(8, 1, 4, 4, generator=g, dtype=F64)
    x_lo = torch.randn(8, 1, 4, 4, generator=g, dtype=F64)
    t = torch.linspace(0.05, 0.95, 8, dtype=F64)
    losses = [
        make(scale).loss(
            _Recorder(), target, x_lo=x_lo, t=t, generator=torch.Generator().manual_seed(2)
        )
        for scale in (1.0, 2.5)
    ]
    assert bool((losses[0] > 0).all())
    torch.testing.assert_close(losses[1], 2.5 * losses[0], rtol=1e-12, atol=0)


def _per_pixel_mean(diff: Tensor, kind: str) -> Tensor:
    values = diff.abs() if kind == "l1" else diff**2
    return values.flatten(1).mean(dim=1)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_vp_loss_is_the_per_pixel_mean_of_the_x0_error(kind) -> None:
    """VP with ``target="x"``: the mean over C, H, W of ``|x0_hat - x|`` (or its square),
    ``x0_hat = alpha z - sigma v_hat`` read from the state the network was given."""
    g = torch.Generator().manual_seed(3)
    target = torch.randn(6, 2, 4, 8, generator=g, dtype=F64)
    t = torch.linspace(0.1, 0.9, 6, dtype=F64)
    net = _Recorder()
    loss = VPDiffusion(target="x", loss=kind).loss(net, target, t=t, generator=g)
    z = net.states[0]
    logsnr = CosineSchedule().logsnr(t).reshape(-1, 1, 1, 1)
    alpha, sigma = torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
    x0_hat = alpha * z - sigma * _field(z, t)
    torch.testing.assert_close(loss, _per_pixel_mean(x0_hat - target, kind))


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_flow_loss_is_the_per_pixel_mean_of_the_velocity_error(kind) -> None:
    """Flow matching: the mean over C, H, W of ``|v_hat - (x1 - x0)|`` (or its square), the base
    draw ``x0 = (x_t - t x1) / (1 - t)`` read from the state the network was given."""
    g = torch.Generator().manual_seed(4)
    target = torch.randn(6, 3, 4, 4, generator=g, dtype=F64)
    t = torch.linspace(0.1, 0.9, 6, dtype=F64)
    net = _Recorder()
    loss = FlowMatching(loss=kind).loss(net, target, t=t, generator=g)
    x_t, tb = net.states[0], t.reshape(-1, 1, 1, 1)
    x0 = (x_t - tb * target) / (1 - tb)
    torch.testing.assert_close(loss, _per_pixel_mean(_field(x_t, t) - (target - x0), kind))


def _ddim_reference(x_init: Tensor, steps: int, eta: float, seed: int) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) in the ``alpha_bar`` notation, on the grid 1 -> 0."""
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=F64)
    abar = torch.sigmoid(CosineSchedule().logsnr(times))  # alpha^2
    g = torch.Generator().manual_seed(seed)
    z = x_init.clone()
    for i in range(steps):
        a_t, a_prev = abar[i], abar[i + 1]
        v = _field(z, times[i].expand(z.shape[0]))
        x0 = a_t.sqrt() * z - (1 - a_t).sqrt() * v
        eps = (1 - a_t).sqrt() * z + a_t.sqrt() * v
        if i == steps - 1:
            return x0
        spread = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        noise = torch.randn(z.shape, generator=g, dtype=F64)
        z = a_prev.sqrt() * x0 + math.sqrt(1 - a_prev - spread**2) * eps + spread * noise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ddim_with_eta_is_the_reference_update_path_by_path(eta) -> None:
    """Each DDIM step, with its ``eta`` noise drawn from the given generator, is Song et al.'s."""
    x_init = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    result = sample_ddim(
        _Recorder(),
        x_init,
        objective=VPDiffusion(),
        steps=5,
        eta=eta,
        generator=torch.Generator().manual_seed(6),
        model_dtype=F64,
    )
    expected = _ddim_reference(x_init, 5, eta, seed=6)
    torch.testing.assert_close(result.sample, expected, rtol=1e-10, atol=1e-10)


def test_derived_seeds_stay_the_same_across_versions() -> None:
    """A seed recorded with an output reproduces it: the seeds of time step ``(seed, i)`` and of
    forecast lead ``(seed, field, lead)`` are fixed numbers (numpy's SeedSequence is stable),
    and ``lead_seed`` hashes field before lead."""
    assert derived_seed(0) == 1763788586465679335
    assert derived_seed(7, 3) == 2831913344510609724
    assert derived_seed(2**63 - 1, 0, 1) == 740829754357841931
    assert lead_seed(7, 1, 2) == 3725288599296678794
    assert lead_seed(7, 2, 1) == 2276887994119216821
