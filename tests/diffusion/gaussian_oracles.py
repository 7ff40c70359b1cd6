"""Exact optimal "networks" for Gaussian data, written from first principles for the tests.

Data ``x1 ~ N(mu, s^2)`` independently per pixel (shape ``(C, H, W)`` of ``mu`` and ``s``); the
flow/IDFF base is ``x0 ~ N(m0, s0^2)``. Every path below is jointly Gaussian in (x0, x1, noise),
so every posterior mean is linear in the state: ``E[a | x] = E[a] + Cov(a, x) / Var(x) (x - E[x])``.
Each oracle also gives the path's marginal mean ``m(t)`` and variance ``V(t)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flexdownscale.diffusion import CosineSchedule

F64 = torch.float64


def _col(t: Tensor, x: Tensor) -> Tensor:
    t = t.to(F64)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


class _Counting:
    """Counts forward and task-encoder calls; checks the task features are passed through."""

    def __init__(self) -> None:
        self.forward_calls = 0
        self.encode_calls = 0
        self.rows_seen = 0

    def encode_task(self, cond: Tensor) -> tuple[Tensor, ...]:
        self.encode_calls += 1
        return (cond * 1.0,)

    def _count(self, x: Tensor, cond: Tensor | None, task_features) -> None:
        self.forward_calls += 1
        self.rows_seen += x.shape[0]
        if cond is not None:
            assert task_features is not None, "the engine must pass cached task features"
            assert task_features[0].shape[0] == x.shape[0]
            torch.testing.assert_close(task_features[0], cond * 1.0)


class VPOracle(_Counting):
    """E[v | z] for z = alpha x + sigma eps: ``sigma (alpha (1 - s^2) z - mu) / V``."""

    def __init__(self, mu: Tensor, s: Tensor, schedule: CosineSchedule | None = None) -> None:
        super().__init__()
        self.mu, self.s = mu.to(F64), s.to(F64)
        self.schedule = schedule or CosineSchedule()

    def moments(self, t: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.schedule.alpha_sigma(t.to(F64))
        return alpha * self.mu, alpha**2 * self.s**2 + sigma**2

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self._count(x_t, cond, task_features)
        z = x_t.to(F64)
        alpha, sigma = self.schedule.alpha_sigma(_col(t, z))
        var = alpha**2 * self.s**2 + sigma**2
        # E[v] = -sigma mu, Cov(v, z) = alpha sigma (1 - s^2)
        v = -sigma * self.mu + alpha * sigma * (1 - self.s**2) * (z - alpha * self.mu) / var
        return v.to(x_t.dtype)


class FlowOracle(_Counting):
    """E[x1 - x0 | x_t] for x_t = (1 - t) x0 + t x1."""

    def __init__(self, mu: Tensor, s: Tensor, m0: Tensor | float = 0.0, s0: float = 1.0) -> None:
        super().__init__()
        self.mu, self.s = mu.to(F64), s.to(F64)
        self.m0 = torch.as_tensor(m0, dtype=F64)
        self.s0 = float(s0)

    def moments(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.to(F64)
        return (1 - t) * self.m0 + t * self.mu, (1 - t) ** 2 * self.s0**2 + t**2 * self.s**2

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self._count(x_t, cond, task_features)
        x = x_t.to(F64)
        t = _col(t, x)
        m, var = self.moments(t)
        cov = t * self.s**2 - (1 - t) * self.s0**2
        return ((self.mu - self.m0) + cov * (x - m) / var).to(x_t.dtype)


class IDFFOracle(_Counting):
    """(E[x1 | x_t], grad log p_t(x_t)) for x_t = (1 - t) x0 + t x1 + sigma sqrt(t (1 - t)) eps.

    The score of the Gaussian marginal is -(x - m) / V; it equals -E[eps | x_t] / s_t.
    """

    def __init__(
        self, mu: Tensor, s: Tensor, sigma: float, m0: Tensor | float = 0.0, s0: float = 1.0
    ) -> None:
        super().__init__()
        self.mu, self.s = mu.to(F64), s.to(F64)
        self.m0 = torch.as_tensor(m0, dtype=F64)
        self.s0, self.sigma = float(s0), float(sigma)

    def moments(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.to(F64)
        var = (1 - t) ** 2 * self.s0**2 + t**2 * self.s**2 + self.sigma**2 * t * (1 - t)
        return (1 - t) * self.m0 + t * self.mu, var

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self._count(x_t, cond, task_features)
        channels = self.mu.shape[0]
        assert x_t.shape[1] == 2 * channels, "IDFF networks take cat([x_t, 0])"
        assert torch.all(x_t[:, channels:] == 0)
        x = x_t[:, :channels].to(F64)
        t = _col(t, x)
        m, var = self.moments(t)
        x1_hat = self.mu + t * self.s**2 * (x - m) / var
        score = -(x - m) / var
        return torch.cat([x1_hat, score], dim=1).to(x_t.dtype)
