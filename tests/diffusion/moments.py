"""Moment recursions of the samplers on Gaussian data, written independently of the samplers.

With an exact optimal network and per-pixel Gaussian data, every path marginal is Gaussian,
``N(m(t), V(t))``, and its probability-flow drift in the integration variable ``tau`` is affine::

    u(x) = m_tau + V_tau / (2 V) (x - m),       score(x) = -(x - m) / V.

Each sampler step is then ``x <- A x + b + sqrt(q) xi``, so mean and variance follow
``M <- A M + b`` and ``S <- A^2 S + q`` exactly. These recursions give the sampler's exact output
law at any number of steps, i.e. its discretisation error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64


def _value_and_rate(fn, t: Tensor, step: float = 1e-5) -> tuple[Tensor, Tensor]:
    """``fn(t)`` and its derivative for a scalar ``t`` (fourth-order central difference)."""
    values = [fn(t + k * step) for k in (-2, -1, 1, 2)]
    rate = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
    return fn(t), rate


def drift_coefficients(oracle, objective, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(k, c, m, V)`` with the ODE drift ``u(x) = k x + c`` in ``tau`` units at time ``t``."""
    t = t.to(F64)
    m, dm = _value_and_rate(lambda s: oracle.moments(s)[0], t)
    var, dvar = _value_and_rate(lambda s: oracle.moments(s)[1], t)
    _, dtau = _value_and_rate(objective.ode_time, t)
    k = dvar / dtau / (2 * var)
    c = dm / dtau - k * m
    return k, c, m, var


def ode_recursion(
    oracle,
    objective,
    steps: int,
    init: tuple[Tensor, Tensor],
    *,
    method: str = "euler",
    delta: float = 0.0,
    g1: float = 0.0,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``(mean, variance, gain)`` at every grid point of euler / heun / sde / idff (g1).

    ``gain`` is the product of the step slopes ``A``: for a deterministic sampler the output is
    exactly ``mean + gain (x_init - init_mean)`` path by path.
    """
    times = objective.time_grid(steps)
    taus = objective.ode_time(times)
    mean, var = (torch.as_tensor(v, dtype=F64) for v in init)
    gain = torch.ones((), dtype=F64)
    history = [(mean, var, gain)]
    for i in range(steps):
        h = taus[i + 1] - taus[i]
        k, c, m, v = drift_coefficients(oracle, objective, times[i])
        last = i == steps - 1
        if method == "heun" and not last:
            k1, c1, _, _ = drift_coefficients(oracle, objective, times[i + 1])
            a = 1 + h / 2 * (k + k1 * (1 + h * k))
            b = h / 2 * (c + k1 * h * c + c1)
            q = torch.zeros(())
        else:
            # Langevin strength: delta n_t^2 (sde) or g1 s_t^2 (idff); none at the last step
            if method == "sde" and not last:
                lam = delta * objective.noise_variance(times[i])  # sample_sde's strength
            else:
                lam = 0.0
            if method == "idff" and not last:  # sample_idff's last step is noise-free too
                t = times[i]
                lam = g1 * objective.sigma**2 * t * (1 - t)
            a = 1 + h * (k - lam / v)
            b = h * (c + lam * m / v)
            q = 2 * lam * h
        mean = a * mean + b
        var = a**2 * var + q
        gain = a * gain
        history.append((mean, var, gain))
    return history


def ddim_recursion(
    mu: Tensor, s: Tensor, schedule, steps: int, *, eta: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, variance, gain)`` of DDIM's output (last x0 prediction) started from N(0, 1)."""
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=F64)
    mean, var, gain = torch.zeros_like(mu), torch.ones_like(mu), torch.ones_like(mu)
    for i in range(steps):
        alpha, sigma = schedule.alpha_sigma(times[i])
        # x0_hat = P z + Q  (posterior mean of Gaussian data)
        p = alpha * s**2 / (alpha**2 * s**2 + sigma**2)
        q0 = mu - p * alpha * mu
        if i == steps - 1:
            return p * mean + q0, p**2 * var, p * gain
        a_s, s_s = schedule.alpha_sigma(times[i + 1])
        c = eta * (s_s / sigma) * math.sqrt(max(0.0, 1 - float(alpha / a_s) ** 2))
        r = math.sqrt(max(0.0, float(s_s**2 - c**2)))
        # eps_hat = (z - alpha x0_hat) / sigma
        a = a_s * p + r * (1 - alpha * p) / sigma
        b = a_s * q0 - r * alpha * q0 / sigma
        mean, var, gain = a * mean + b, a**2 * var + c**2, a * gain
    raise AssertionError("unreachable")
