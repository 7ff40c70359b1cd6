"""Log-SNR schedules of the variance-preserving process and the x0 / eps / v conversions.

Variance-preserving (VP) diffusion corrupts a clean field ``x`` (here: a residual) as

.. math:: z_t = \\alpha_t x + \\sigma_t \\epsilon, \\qquad \\alpha_t^2 + \\sigma_t^2 = 1,

with ``t = 0`` the data and ``t = 1`` (almost) pure noise. The schedule is given by the log
signal-to-noise ratio ``logsnr(t) = log(alpha^2 / sigma^2)``, so ``alpha^2 = sigmoid(logsnr)`` and
``sigma^2 = sigmoid(-logsnr)``. The network predicts the velocity ``v = alpha eps - sigma x``.

All functions are torch only, work on any shape and keep the dtype of their inputs (use float64
for sampling state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import _vp_schedule_problem
from ..errors import ConfigError

__all__ = [
    "CosineSchedule",
    "eps_from_v",
    "eps_from_x0",
    "v_from_eps",
    "v_from_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine log-SNR schedule of the reference, optionally shifted.

    .. math::

        \\mathrm{logsnr}(t) = -2 \\log\\left(\\tan(a t + b)\\, \\mathrm{shift}\\right),\\quad
        b = \\arctan e^{-\\mathrm{logsnr_{max}}/2},\\quad
        a = \\arctan e^{-\\mathrm{logsnr_{min}}/2} - b.

    With ``shift = 1`` the log-SNR runs from ``logsnr_max`` at ``t = 0`` to ``logsnr_min`` at
    ``t = 1``; ``shift`` moves the whole curve by ``-2 log(shift)`` (``shift > 1`` spends more
    time at low SNR, the usual choice for large fields). The samplers' grid is uniform in
    ``t``, so a shift needs about ``shift`` times the steps for the same accuracy (with the exact
    network of a spread of 0.1, 500 DDIM steps kept 0.98 of it unshifted, 0.90 with
    ``shift = 8`` and 0.43 with 64; ``docs/diffusion.md``).

    Parameters
    ----------
    logsnr_min, logsnr_max : float, default -20.0 and 20.0
        Log-SNR at ``t = 1`` and ``t = 0`` before the shift (the reference uses -20 and 20).
    shift : float, default 1.0
        Positive multiplicative shift of ``tan``.

    Raises
    ------
    ConfigError
        For a value that is not finite, ``logsnr_min >= logsnr_max``, ``logsnr_min < -1400``
        (the schedule overflows), or a ``shift`` outside ``(exp(logsnr_min / 2),
        exp(logsnr_max / 2))``, where the shifted log-SNR no longer runs from data (> 0) to
        noise (< 0).

    Examples
    --------
    >>> import torch
    >>> schedule = CosineSchedule()
    >>> schedule.logsnr(torch.tensor([0.0, 1.0], dtype=torch.float64))
    tensor([ 20.0000, -20.0000], dtype=torch.float64)
    >>> schedule.alpha_sigma(torch.tensor(0.5, dtype=torch.float64))
    (tensor(0.7071, dtype=torch.float64), tensor(0.7071, dtype=torch.float64))
    """

    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    shift: float = 1.0

    def __post_init__(self) -> None:
        # finite, ordered, no overflow, and a shifted log-SNR that still runs from data to noise
        # (inf or 1e-300 passed "> 0" and trained or sampled garbage silently)
        problem = _vp_schedule_problem(self.logsnr_min, self.logsnr_max, self.shift)
        if problem:
            raise ConfigError(problem)

    @property
    def _b(self) -> float:
        return math.atan(math.exp(-0.5 * self.logsnr_max))

    @property
    def _a(self) -> float:
        return math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b

    def logsnr(self, t: Tensor) -> Tensor:
        """Log signal-to-noise ratio at time ``t`` in [0, 1] (any shape, dtype kept).

        Parameters
        ----------
        t : Tensor
            Times in [0, 1], any shape (``0`` the data end, ``1`` the noise end).

        Returns
        -------
        Tensor
            ``logsnr(t) = log(alpha^2 / sigma^2)``, same shape and dtype as ``t``; decreasing in
            ``t``, from ``logsnr_max - 2 log(shift)`` at ``t = 0`` to ``logsnr_min - 2 log(shift)``
            at ``t = 1``.
        """
        return -2.0 * torch.log(torch.tan(self._a * t + self._b) * self.shift)

    def t_from_logsnr(self, logsnr: Tensor) -> Tensor:
        """Inverse of :meth:`logsnr`.

        Parameters
        ----------
        logsnr : Tensor
            Log signal-to-noise ratios, any shape, within the schedule's (shifted) range.

        Returns
        -------
        Tensor
            The times ``t`` in [0, 1] with ``self.logsnr(t) == logsnr``, same shape and dtype.
        """
        return (torch.atan(torch.exp(-0.5 * logsnr) / self.shift) - self._b) / self._a

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, sigma)`` at time ``t``: ``alpha^2 = sigmoid(logsnr)``, ``sigma^2 = sigmoid(-logsnr)``.

        Parameters
        ----------
        t : Tensor
            Times in [0, 1], any shape.

        Returns
        -------
        alpha, sigma : tuple of Tensor
            Signal and noise scales of ``z_t = alpha x + sigma eps``, each of ``t``'s shape and
            dtype, in [0, 1] with ``alpha^2 + sigma^2 = 1``.
        """
        logsnr = self.logsnr(t)
        return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()

    def angle(self, t: Tensor) -> Tensor:
        """``phi = atan2(sigma, alpha)`` in [0, pi/2]: ``alpha = cos phi``, ``sigma = sin phi``.

        The probability-flow ODE of the VP process is ``dz / dphi = E[v | z]``.

        Parameters
        ----------
        t : Tensor
            Times in [0, 1], any shape.

        Returns
        -------
        Tensor
            The angle ``phi`` in radians, same shape and dtype as ``t``; increasing in ``t``.
        """
        # tan(phi) = sigma / alpha = exp(-logsnr / 2) = tan(a t + b) * shift
        return torch.atan(torch.tan(self._a * t + self._b) * self.shift)


def x0_from_v(z: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Clean field from the velocity: ``x0 = alpha z - sigma v``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    v : Tensor
        Velocity, e.g. the network's ``v`` prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Clean-field (``x0``) estimate, the broadcast shape of the inputs.

    Examples
    --------
    The clean field is recovered exactly from a noisy state and its true velocity:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, v_from_x0_eps
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> v = v_from_x0_eps(x0, eps, alpha, sigma)
    >>> torch.allclose(x0_from_v(z, v, alpha, sigma), x0)
    True
    """
    return alpha * z - sigma * v


def eps_from_v(z: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Noise from the velocity: ``eps = sigma z + alpha v``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    v : Tensor
        Velocity, e.g. the network's ``v`` prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Noise (``eps``) estimate, the broadcast shape of the inputs.

    Examples
    --------
    The noise is recovered exactly from a noisy state and its true velocity, and
    :func:`v_from_eps` undoes the conversion:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, v_from_eps, v_from_x0_eps
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> v = v_from_x0_eps(x0, eps, alpha, sigma)
    >>> torch.allclose(eps_from_v(z, v, alpha, sigma), eps)
    True
    >>> torch.allclose(v_from_eps(z, eps_from_v(z, v, alpha, sigma), alpha, sigma), v)
    True
    """
    return sigma * z + alpha * v


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Velocity from clean field and noise: ``v = alpha eps - sigma x0``.

    Parameters
    ----------
    x0 : Tensor
        Clean field (data), any shape, e.g. ``(B, C, H, W)``.
    eps : Tensor
        Standard normal noise, shape of ``x0``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Velocity ``v``, the broadcast shape of the inputs.

    Examples
    --------
    Half way along the schedule ``alpha = sigma = sqrt(1/2)``, so ``v = (eps - x0) / sqrt(2)``:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule
    >>> alpha, sigma = CosineSchedule().alpha_sigma(torch.tensor(0.5, dtype=torch.float64))
    >>> x0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    >>> eps = torch.tensor([3.0, 2.0], dtype=torch.float64)
    >>> v_from_x0_eps(x0, eps, alpha, sigma)
    tensor([1.4142, 1.4142], dtype=torch.float64)

    With ``alpha = cos(phi)`` and ``sigma = sin(phi)``, ``v`` is the derivative of
    ``z = alpha x0 + sigma eps`` along the angle ``phi``:

    >>> phi, h = torch.tensor(0.4, dtype=torch.float64), 1e-6
    >>> def z_at(angle):
    ...     return torch.cos(angle) * x0 + torch.sin(angle) * eps
    >>> dz = (z_at(phi + h) - z_at(phi - h)) / (2 * h)
    >>> torch.allclose(v_from_x0_eps(x0, eps, torch.cos(phi), torch.sin(phi)), dz)
    True
    """
    return alpha * eps - sigma * x0


def v_from_x0(z: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Velocity from the noisy state and a clean-field prediction: ``v = (alpha z - x0) / sigma``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    x0 : Tensor
        Clean-field (data) prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Velocity ``v``, the broadcast shape of the inputs.

    Examples
    --------
    A perfect clean-field prediction gives the true velocity:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, v_from_x0_eps
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> torch.allclose(v_from_x0(z, x0, alpha, sigma), v_from_x0_eps(x0, eps, alpha, sigma))
    True
    """
    return (alpha * z - x0) / sigma


def v_from_eps(z: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Velocity from the noisy state and a noise prediction: ``v = (eps - sigma z) / alpha``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    eps : Tensor
        Noise prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Velocity ``v``, the broadcast shape of the inputs.

    Examples
    --------
    A perfect noise prediction gives the true velocity (near the noise end, where ``alpha``
    is small, an error in ``eps`` is amplified by ``1 / alpha``):

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, v_from_x0_eps
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> torch.allclose(v_from_eps(z, eps, alpha, sigma), v_from_x0_eps(x0, eps, alpha, sigma))
    True
    """
    return (eps - sigma * z) / alpha


def x0_from_eps(z: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Clean field from a noise prediction: ``x0 = (z - sigma eps) / alpha``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    eps : Tensor
        Noise prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Clean-field (``x0``) estimate, the broadcast shape of the inputs.

    Examples
    --------
    A perfect noise prediction gives the clean field, and :func:`eps_from_x0` goes back:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, eps_from_x0
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> torch.allclose(x0_from_eps(z, eps, alpha, sigma), x0)
    True
    >>> torch.allclose(eps_from_x0(z, x0_from_eps(z, eps, alpha, sigma), alpha, sigma), eps)
    True
    """
    return (z - sigma * eps) / alpha


def eps_from_x0(z: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Noise from a clean-field prediction: ``eps = (z - alpha x0) / sigma``.

    Parameters
    ----------
    z : Tensor
        Noisy state ``z = alpha x0 + sigma eps``, any shape, e.g. ``(B, C, H, W)``.
    x0 : Tensor
        Clean-field (data) prediction, shape of ``z``.
    alpha, sigma : Tensor
        Signal and noise scales at the state's time (see :meth:`CosineSchedule.alpha_sigma`),
        broadcastable against the fields, e.g. ``(B, 1, 1, 1)`` per sample or scalars.

    Returns
    -------
    Tensor
        Noise (``eps``) estimate, the broadcast shape of the inputs.

    Examples
    --------
    A perfect clean-field prediction gives the noise, and :func:`x0_from_eps` goes back:

    >>> import torch
    >>> from flexdownscale.diffusion import CosineSchedule, x0_from_eps
    >>> g = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> eps = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    >>> t = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(2, 1, 1, 1)  # one per sample
    >>> alpha, sigma = CosineSchedule().alpha_sigma(t)
    >>> z = alpha * x0 + sigma * eps
    >>> torch.allclose(eps_from_x0(z, x0, alpha, sigma), eps)
    True
    >>> torch.allclose(x0_from_eps(z, eps_from_x0(z, x0, alpha, sigma), alpha, sigma), x0)
    True
    """
    return (z - alpha * x0) / sigma
