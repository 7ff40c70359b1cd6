"""The cosine log-SNR schedule against its formula, and the x0 / eps / v conversions."""

from __future__ import annotations

import math

import pytest
import torch

from flexdownscale.diffusion import (
    CosineSchedule,
    eps_from_v,
    eps_from_x0,
    v_from_eps,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from flexdownscale.errors import ConfigError

F64 = torch.float64


@pytest.mark.parametrize(
    ("lo", "hi", "shift"), [(-20.0, 20.0, 1.0), (-15.0, 10.0, 2.0), (-20, 20, 0.5)]
)
def test_logsnr_matches_the_reference_formula(lo: float, hi: float, shift: float) -> None:
    schedule = CosineSchedule(lo, hi, shift)
    b = math.atan(math.exp(-hi / 2))
    a = math.atan(math.exp(-lo / 2)) - b
    for t in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0):
        expected = -2 * math.log(math.tan(a * t + b) * shift)
        got = schedule.logsnr(torch.tensor(t, dtype=F64)).item()
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # end points (shift moves the whole curve by -2 log(shift))
    ends = schedule.logsnr(torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(ends, torch.tensor([hi, lo], dtype=F64) - 2 * math.log(shift))


def test_alpha_sigma_variance_preserving_and_monotone() -> None:
    schedule = CosineSchedule()
    t = torch.linspace(0, 1, 101, dtype=F64)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), schedule.logsnr(t))
    assert torch.all(alpha.diff() < 0)
    assert torch.all(sigma.diff() > 0)
    # alpha = cos(phi), sigma = sin(phi)
    phi = schedule.angle(t)
    torch.testing.assert_close(torch.cos(phi), alpha)
    torch.testing.assert_close(torch.sin(phi), sigma)


def test_t_from_logsnr_inverts_logsnr() -> None:
    schedule = CosineSchedule(-18.0, 12.0, 1.7)
    t = torch.linspace(0, 1, 57, dtype=F64)
    torch.testing.assert_close(schedule.t_from_logsnr(schedule.logsnr(t)), t)


def test_invalid_schedule_raises() -> None:
    with pytest.raises(ConfigError, match="logsnr_min"):
        CosineSchedule(20.0, -20.0)
    with pytest.raises(ConfigError, match="shift"):
        CosineSchedule(shift=0.0)


def test_conversions_invert_each_other() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    eps = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    t = torch.rand(5, 1, 1, 1, generator=g, dtype=F64) * 0.98 + 0.01
    alpha, sigma = CosineSchedule().alpha_sigma(t)
    z = alpha * x0 + sigma * eps
    v = v_from_x0_eps(x0, eps, alpha, sigma)
    torch.testing.assert_close(x0_from_v(z, v, alpha, sigma), x0)
    torch.testing.assert_close(eps_from_v(z, v, alpha, sigma), eps)
    torch.testing.assert_close(v_from_x0(z, x0, alpha, sigma), v)
    torch.testing.assert_close(v_from_eps(z, eps, alpha, sigma), v)
    torch.testing.assert_close(x0_from_eps(z, eps, alpha, sigma), x0)
    torch.testing.assert_close(eps_from_x0(z, x0, alpha, sigma), eps)
    # round trips through v from arbitrary (not mutually consistent) predictions
    v_any = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    torch.testing.assert_close(v_from_x0(z, x0_from_v(z, v_any, alpha, sigma), alpha, sigma), v_any)
    torch.testing.assert_close(
        v_from_eps(z, eps_from_v(z, v_any, alpha, sigma), alpha, sigma), v_any
    )
