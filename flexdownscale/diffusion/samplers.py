"""Samplers: pure functions with one shared signature, float64 state, seeded noise.

Every sampler is called as::

    result = sample_xxx(model, x_init, cond, *, objective, steps, generator=None,
                        phys=None, task_features=None, x_lo=None, model_dtype=None,
                        return_trajectory=False, **sampler_options)

and returns a :class:`SampleResult`. ``x_init`` is a draw from the objective's base distribution
(``objective.initial_state(noise)``); the state is kept in float64 and cast to the network's
dtype only for the network call. The task encoder runs once per call (``task_features`` are
computed from ``cond`` when not given) and the features are reused at every step.

=================== ================ ====================================================
sampler             objectives       network evaluations (NFE)
=================== ================ ====================================================
:func:`sample_ddim`  vp               ``steps`` (deterministic for ``eta = 0``)
:func:`sample_euler` vp, flow, idff   ``steps``
:func:`sample_heun`  vp, flow, idff   ``2 steps - 1``
:func:`sample_sde`   vp, flow, idff   ``steps``
:func:`sample_idff`  idff             ``steps`` (``2 steps`` with ``g2 > 0``: one JVP each)
=================== ================ ====================================================

:func:`sample_ensemble` draws ensemble members for a batch of fields in an order that does not
depend on the batch size.

Sampling is not differentiable: every sampler runs under :func:`torch.no_grad`, so its sample
(and trajectory) never requires grad, even when ``x_init``, ``cond`` or the network's
parameters do. Gradient-based guidance through the sampler steps needs a loop of one's own
around the objective's ``velocity`` / ``score`` / ``denoise``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._numbers import finite_real
from .._stack import user_stacklevel
from ..errors import ConfigError, DataError, FlexDownscaleWarning, ShapeError, SkillWarning
from .objectives import (
    IDFF,
    Denoiser,
    Generators,
    Objective,
    TaskFeatures,
    VPDiffusion,
    call_network,
    check_fields,
    randn,
    select_features,
)

__all__ = [
    "SAMPLERS",
    "SAMPLER_OPTIONS",
    "SampleResult",
    "SamplerName",
    "member_generators",
    "resolve_sampler_options",
    "sample",
    "sample_ddim",
    "sample_ensemble",
    "sample_euler",
    "sample_heun",
    "sample_idff",
    "sample_sde",
]

SamplerName = Literal["ddim", "euler", "heun", "sde", "idff"]


@dataclass(frozen=True)
class SampleResult:
    """Output of a sampler.

    Attributes
    ----------
    sample : torch.Tensor
        The sample, shape of ``x_init``, in ``x_init``'s dtype.
    times : torch.Tensor
        Network times of the grid, ``(steps + 1,)`` float64, from the noise end to the data end.
    trajectory : tuple of torch.Tensor or None
        ``None``, or the float64 states at each grid time (``steps + 1`` tensors, the first being
        ``x_init``; for DDIM the last one is the final ``x0`` prediction).
    nfe : int
        Number of network evaluations used.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching, sample_euler
    >>> still = lambda x_t, t, cond=None, **kwargs: torch.zeros_like(x_t)  # a stand-in network
    >>> x_init = torch.zeros(1, 1, 4, 4)
    >>> result = sample_euler(
    ...     still, x_init, objective=FlowMatching(), steps=3, return_trajectory=True
    ... )
    >>> result.nfe, result.times.shape, len(result.trajectory)
    (3, torch.Size([4]), 4)
    >>> result.trajectory[0].dtype, result.sample.dtype  # float64 state, x_init's dtype out
    (torch.float64, torch.float32)
    """

    sample: Tensor
    times: Tensor
    trajectory: tuple[Tensor, ...] | None
    nfe: int


#: set while a sampling call runs: the calls it makes (chunks, leads, the sampler under
#: sample_ensemble) do not check the training mode again
_IN_SAMPLING_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flexdownscale_in_sampling_call", default=False
)

TRAIN_MODE_WARNING = (
    "the network is in training mode: dropout makes samples differ between calls with one "
    "seed; call model.eval() before sampling"
)


def _runs_dropout(model: Any) -> bool:
    """Whether ``model`` (a torch module) has a dropout layer with ``p > 0`` in training mode."""
    if not isinstance(model, torch.nn.Module):
        return False
    return any(
        isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training and m.p > 0
        for m in model.modules()
    )


def warns_in_train_mode(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a sampling entry point whose first argument is the model: one
    :class:`~flexdownscale.errors.FlexDownscaleWarning` per outermost call when the model runs
    dropout (a module left in training mode), none from the calls nested in it."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _IN_SAMPLING_CALL.get():
            return func(*args, **kwargs)
        model = args[0] if args else kwargs.get("model")
        if _runs_dropout(model):
            warnings.warn(TRAIN_MODE_WARNING, FlexDownscaleWarning, stacklevel=user_stacklevel())
        token = _IN_SAMPLING_CALL.set(True)
        try:
            return func(*args, **kwargs)
        finally:
            _IN_SAMPLING_CALL.reset(token)

    return wrapper


def _model_dtype(model: Any, model_dtype: torch.dtype | None) -> torch.dtype:
    if model_dtype is not None:
        return model_dtype
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.float32


def _step_generator(generator: Generators | int) -> Generators:
    """The noise source of a sampler call: an integer seed becomes a new CPU generator seeded
    with it (once per call, so that every step draws fresh noise); anything else as it is."""
    if isinstance(generator, int | np.integer) and not isinstance(generator, bool):
        return _as_generator(generator)
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if not isinstance(generator, Sequence) or isinstance(generator, str | bytes):
        raise ConfigError(
            f"generator = {generator!r} must be a torch.Generator, an integer seed, one "
            "torch.Generator per row of x_init, or None"
        )
    return generator


def _noise_like(x: Tensor, generator: Generators) -> Tensor:
    """Standard normal float64 noise shaped like ``x``; one generator per row when a sequence."""
    if (
        generator is not None
        and not isinstance(generator, torch.Generator)
        and len(generator) != x.shape[0]
    ):
        raise ShapeError(
            f"got {len(generator)} generators for a batch of {x.shape[0]} states; pass one "
            "torch.Generator, or one per row"
        )
    return randn(x.shape, generator, device=x.device, dtype=torch.float64)


class _Net:
    """The network with its conditioning bound: ``net(x, t) -> float64 output``."""

    def __init__(
        self,
        model: Denoiser,
        objective: Objective,
        cond: Tensor | None,
        phys: Tensor | None,
        task_features: TaskFeatures | None,
        model_dtype: torch.dtype | None,
        batch: int,
    ) -> None:
        self.model = model
        self.objective = objective
        self.dtype = _model_dtype(model, model_dtype)
        self.cond = cond.to(self.dtype) if cond is not None and cond.is_floating_point() else cond
        phys = _phys_per_field(phys, batch)
        self.phys = phys.to(self.dtype) if phys is not None else None
        if task_features is None and self.cond is not None:
            task_features = model.encode_task(self.cond)
        self.task_features = task_features
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        # times stay at least float32: bfloat16 cannot tell t = 1 - 1e-4 from 1
        t_dtype = torch.promote_types(self.dtype, torch.float32)
        t_net = self.objective.network_time(t).to(t_dtype).expand(x.shape[0])
        channels = self.objective.channel_factor * x.shape[1]
        x_net = self.objective.network_input(x.to(self.dtype))
        out = call_network(
            self.model, x_net, t_net, self.cond, self.phys, self.task_features, channels
        )
        return out.to(torch.float64)


def _check_objective(objective: Any) -> None:
    if not isinstance(objective, Objective):
        raise ConfigError(
            f"objective must be a flexdownscale.diffusion Objective, got {type(objective).__name__}; "
            "build one with build_objective(DiffusionConfig(...))"
        )


def _require_objective(name: str, objective: Objective, kind: type[Objective]) -> None:
    """Refuse ``objective`` for sampler ``name`` unless it is a ``kind``: a subclass that lists
    ``name`` in its ``samplers`` without being one (a user's objective) would otherwise be
    integrated with the wrong update (an ``assert`` here vanished under ``python -O``)."""
    if isinstance(objective, kind):
        return
    usable = [s for s in objective.samplers if s not in ("ddim", "idff")]
    cls = type(objective).__name__
    raise ConfigError(
        f"sampler {name!r} works only with {kind.__name__} objectives, but {cls} (objective "
        f"{objective.name!r}) is not one, though its samplers list {tuple(objective.samplers)} "
        f"names {name!r}; use one of {', '.join(repr(s) for s in usable)}, or derive {cls} from "
        f"{kind.__name__} (or remove {name!r} from {cls}.samplers)"
    )


def _phys_per_field(phys: Tensor | float | None, batch: int) -> Tensor | None:
    """``phys`` as a (batch,) tensor: one value per field, or one scalar for all of them."""
    if phys is None:
        return None
    if isinstance(phys, bool) or not isinstance(phys, Tensor | float | int):
        raise ConfigError(f"phys must be a number or a tensor, got {type(phys).__name__}")
    value = torch.as_tensor(phys)
    if not value.is_floating_point():
        value = value.float()
    if value.ndim == 0:
        return value.expand(batch)
    if tuple(value.shape) != (batch,):
        raise ShapeError(
            f"phys has shape {tuple(value.shape)}; expected one value per field, ({batch},), or a "
            "scalar for all of them"
        )
    return value


def _check_x_lo(x_lo: Tensor | None, shape: tuple[int, ...], *, per_field: bool = False) -> None:
    """``x_lo`` must broadcast to ``shape`` (with its own batch of ``shape[0]`` when
    ``per_field``: the ensemble entry points pick its rows per field)."""
    if x_lo is None:
        return
    try:
        fits = torch.broadcast_shapes(tuple(x_lo.shape), shape) == torch.Size(shape)
    except RuntimeError:
        fits = False
    if per_field and (x_lo.ndim != len(shape) or x_lo.shape[0] != shape[0]):
        fits = False
    if not fits:
        raise ShapeError(
            f"x_lo has shape {tuple(x_lo.shape)}; expected {shape}, the base field of each "
            "sample (the upsampled coarse field, in the space the objective samples)"
        )


def _check_steps(steps: Any) -> int:
    """``steps`` as a Python int: a positive integer (a numpy integer too, not a bool)."""
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ConfigError(f"steps = {steps!r} must be a positive integer")
    return int(steps)


def _check_common(
    name: str,
    objective: Objective,
    x_init: Tensor,
    steps: int,
    cond: Tensor | None,
    x_lo: Tensor | None = None,
) -> None:
    _check_objective(objective)
    if name not in objective.samplers:
        raise ConfigError(
            f"sampler {name!r} does not apply to the {objective.name!r} objective; "
            f"use one of {', '.join(repr(s) for s in objective.samplers)}"
        )
    _check_steps(steps)
    check_fields(x_init=x_init)
    if x_init.ndim < 2:
        raise ShapeError(f"x_init must have shape (B, C, ...), got {tuple(x_init.shape)}")
    if cond is not None and cond.shape[0] != x_init.shape[0]:
        raise ShapeError(
            f"cond has batch {cond.shape[0]} but x_init has batch {x_init.shape[0]}; repeat the "
            "conditioning per member (or use sample_ensemble, which does it for you)"
        )
    _check_x_lo(x_lo, tuple(x_init.shape))


def _check_finite(
    x: Tensor, x_init: Tensor, cond: Tensor | None, what: str, fix: str | None
) -> None:
    """Refuse a sample with NaN or infinite values (one ``isfinite`` reduction per call): a
    diverged sampler returned them silently (``delta = 1e3``: all 12,288 values of an ERA5
    window NaN). :class:`~flexdownscale.errors.DataError` when ``x_init`` or ``cond`` carried
    them in; otherwise :class:`~flexdownscale.errors.ConfigError` naming the sampler's
    settings (``what``) and ``fix``, the stability check's advice (``None``: the settings were
    in the stable range, so the network's output was not finite). A sample on the meta device
    holds no values (shape inference): nothing to check."""
    if x.is_meta or bool(torch.isfinite(x).all()):
        return
    bad = f"{int((~torch.isfinite(x)).sum())} of {x.numel()} values of the sample"
    for name, given in (("x_init", x_init), ("cond", cond)):
        if given is not None and given.is_floating_point() and not bool(given.isfinite().all()):
            raise DataError(
                f"{what} returned {bad} NaN or infinite because {name} holds "
                f"{int((~given.isfinite()).sum())} NaN or infinite values; give finite values "
                "(fill missing ones first)"
            )
    if fix is None:
        fix = (
            "the settings are within the sampler's stable range, so the network returned "
            "non-finite values: check the model's weights, cond and model_dtype (float16 "
            "overflows beyond 65504)"
        )
    raise ConfigError(f"{what} diverged: {bad} are NaN or infinite; {fix}")


def _finish(
    x: Tensor,
    x_init: Tensor,
    times: Tensor,
    trajectory: list[Tensor] | None,
    nfe: int,
    *,
    cond: Tensor | None,
    what: str,
    fix: str | None = None,
) -> SampleResult:
    """The result of a sampler call, after :func:`_check_finite`."""
    _check_finite(x, x_init, cond, what, fix)
    return SampleResult(
        sample=x.to(x_init.dtype),
        times=times,
        trajectory=tuple(trajectory) if trajectory is not None else None,
        nfe=nfe,
    )


@warns_in_train_mode
@torch.no_grad()
def sample_ddim(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    steps: int = 2,
    generator: Generators | int = None,
    phys: Tensor | float | None = None,
    task_features: TaskFeatures | None = None,
    x_lo: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
    eta: float = 0.0,
) -> SampleResult:
    """DDIM for the VP objective (network output read as ``v``), on a uniform grid from 1 to 0.

    At each grid time ``t`` with next time ``s``: ``x0_hat = alpha_t z - sigma_t v_hat``,
    ``eps_hat = sigma_t z + alpha_t v_hat`` and::

        z <- alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c xi,
        c = eta (sigma_s / sigma_t) sqrt(1 - alpha_t^2 / alpha_s^2),   xi ~ N(0, I).

    The last step returns ``x0_hat``. With 2 steps the network is evaluated at ``t = 1`` and
    ``t = 0.5``. For every ``eta`` in [0, 1] the update keeps ``q(z_s | x0) = N(alpha_s x0,
    sigma_s^2)`` (Song et al. 2021); ``eta = 1`` is ancestral sampling.

    Parameters
    ----------
    model : Denoiser
        The network (any :class:`~flexdownscale.diffusion.Denoiser`).
    x_init : Tensor
        Initial state ``(B, C, ...)``: standard normal noise (the VP base).
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)`` (batch of ``x_init``), or ``None`` for an unconditional
        model; cast to the network's dtype.
    objective : Objective
        The objective the model was trained with; it says how the network output is read.
    steps : int, default 2
        Number of steps of the uniform time grid (:meth:`Objective.time_grid`).
    generator : torch.Generator, int, sequence of torch.Generator, or None, default None
        One ``torch.Generator`` or one per row of ``x_init``; only used when ``eta > 0``
        (``None``: torch's global generator; an int: a new CPU generator seeded with it).
    phys : Tensor, float or None, default None
        Scalar physical condition ``(B,)``, or one number for all rows, for models built with
        one.
    task_features : TaskFeatures or None, default None
        ``model.encode_task(cond)`` for the rows of ``x_init``; computed from ``cond`` once per
        call when ``None``.
    x_lo : Tensor or None, default None
        Checked to broadcast to ``x_init``; unused (the VP objective has no base mean).
    model_dtype : torch.dtype or None, default None
        Dtype of the network's inputs (default: the dtype of the model's first floating
        parameter, float32 for a model without one). The state stays float64.
    return_trajectory : bool, default False
        Also return the state at every grid time.
    eta : float, default 0.0
        Stochasticity in [0, 1]; 0 (default) is deterministic DDIM.

    Returns
    -------
    SampleResult
        ``sample`` (shape and dtype of ``x_init``), the grid ``times`` ``(steps + 1,)``
        float64, the ``trajectory`` (``None`` unless asked for) and ``nfe``, the number of
        network evaluations: ``steps``.

    Examples
    --------
    For data that are all 2 the exact network output is ``E[v | z] = alpha (z - 2 alpha) /
    sigma - 2 sigma``; with it every DDIM step predicts ``x0 = 2`` and the noise ends there:

    >>> import torch
    >>> from flexdownscale.diffusion import VPDiffusion
    >>> objective = VPDiffusion()
    >>> def oracle(z, t, cond=None, **kwargs):
    ...     alpha, sigma = objective.alpha_sigma(t.reshape(-1, 1, 1, 1))
    ...     return alpha * (z - 2.0 * alpha) / sigma - 2.0 * sigma
    >>> noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> result = sample_ddim(oracle, noise, objective=objective, steps=2)
    >>> result.times.tolist(), result.nfe
    ([1.0, 0.5, 0.0], 2)
    >>> torch.allclose(result.sample, torch.full_like(noise, 2.0))
    True
    """
    _check_common("ddim", objective, x_init, steps, cond, x_lo)
    _require_objective("ddim", objective, VPDiffusion)
    number = finite_real(eta)
    if number is None or not 0.0 <= number <= 1.0:  # a text gave a bare TypeError
        raise ConfigError(f"eta = {eta!r} must lie in [0, 1] (0: deterministic DDIM, 1: ancestral)")
    eta = number
    generator = _step_generator(generator)
    net = _Net(model, objective, cond, phys, task_features, model_dtype, x_init.shape[0])
    times = objective.time_grid(steps, device=x_init.device)
    alphas, sigmas = objective.schedule.alpha_sigma(times)
    z = x_init.to(torch.float64)
    trajectory = [z] if return_trajectory else None
    for i in range(steps):
        v_hat = net(z, times[i])
        x0_hat = alphas[i] * z - sigmas[i] * v_hat
        if i == steps - 1:
            z = x0_hat
        else:
            eps_hat = sigmas[i] * z + alphas[i] * v_hat
            a_s, s_s = alphas[i + 1], sigmas[i + 1]
            ratio = (alphas[i] / a_s).clamp(max=1.0)
            c = eta * (s_s / sigmas[i]) * torch.sqrt(1.0 - ratio**2)
            z = a_s * x0_hat + torch.sqrt((s_s**2 - c**2).clamp(min=0.0)) * eps_hat
            if eta > 0:
                z = z + c * _noise_like(z, generator)
        if trajectory is not None:
            trajectory.append(z)
    what = f"sample_ddim ({steps} steps, eta = {eta:g})"
    return _finish(z, x_init, times, trajectory, net.nfe, cond=cond, what=what)


def _ode_setup(
    name: str,
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None,
    objective: Objective,
    steps: int,
    phys: Tensor | None,
    task_features: TaskFeatures | None,
    model_dtype: torch.dtype | None,
    x_lo: Tensor | None,
) -> tuple[_Net, Tensor, Tensor]:
    _check_common(name, objective, x_init, steps, cond, x_lo)
    net = _Net(model, objective, cond, phys, task_features, model_dtype, x_init.shape[0])
    times = objective.time_grid(steps, device=x_init.device)
    return net, times, objective.ode_time(times)


@warns_in_train_mode
@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    steps: int = 50,
    generator: Generators | int = None,
    phys: Tensor | float | None = None,
    task_features: TaskFeatures | None = None,
    x_lo: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Euler integration of the probability-flow ODE ``dx / dtau = objective.velocity``.

    Flow matching and IDFF integrate in ``t`` from ``t_min`` to ``t_max``; VP integrates in
    ``tau = -phi(t)`` (``phi = atan2(sigma, alpha)``) on a uniform grid in ``t`` from 1 to 0, where
    the ODE is ``dz / dtau = -v``. Deterministic: ``generator`` is accepted and unused.

    Parameters
    ----------
    model : Denoiser
        The network (any :class:`~flexdownscale.diffusion.Denoiser`).
    x_init : Tensor
        Initial state ``(B, C, ...)``, a draw from the objective's base distribution
        (``objective.initial_state(noise)``), in normalised units.
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)`` (batch of ``x_init``), or ``None`` for an unconditional
        model; cast to the network's dtype.
    objective : Objective
        The objective the model was trained with; it says how the network output is read.
    steps : int, default 50
        Number of steps of the uniform time grid (:meth:`Objective.time_grid`).
    generator : torch.Generator, int, sequence of torch.Generator, or None, default None
        Accepted for the shared signature and unused: the sampler is deterministic.
    phys : Tensor, float or None, default None
        Scalar physical condition ``(B,)``, or one number for all rows, for models built with
        one.
    task_features : TaskFeatures or None, default None
        ``model.encode_task(cond)`` for the rows of ``x_init``; computed from ``cond`` once per
        call when ``None``.
    x_lo : Tensor or None, default None
        Mean of the coarse-plus-noise base (flow matching and IDFF with
        ``base="coarse_plus_noise"``), broadcastable to ``x_init``; ``None`` is zero, the
        residual-space value. Ignored otherwise.
    model_dtype : torch.dtype or None, default None
        Dtype of the network's inputs (default: the dtype of the model's first floating
        parameter, float32 for a model without one). The state stays float64.
    return_trajectory : bool, default False
        Also return the state at every grid time.

    Returns
    -------
    SampleResult
        ``sample`` (shape and dtype of ``x_init``), the grid ``times`` ``(steps + 1,)``
        float64, the ``trajectory`` (``None`` unless asked for) and ``nfe``, the number of
        network evaluations: ``steps``.

    Examples
    --------
    Flow matching towards data that are all 2, with the network replaced by the exact
    velocity ``(2 - x_t) / (1 - t)``: Euler steps follow this ODE exactly, and the draws stop
    short of 2 by the fraction ``1 - t_max = 1e-4`` of their initial distance to it:

    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching
    >>> objective = FlowMatching()
    >>> def to_two(x_t, t, cond=None, **kwargs):  # the exact velocity for data that are all 2
    ...     return (2.0 - x_t) / (1 - t.reshape(-1, 1, 1, 1))
    >>> noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> result = sample_euler(to_two, objective.initial_state(noise), objective=objective, steps=4)
    >>> result.sample.shape, result.nfe
    (torch.Size([2, 1, 8, 8]), 4)
    >>> torch.allclose(result.sample, torch.full_like(noise, 2.0), atol=1e-3)
    True
    """
    net, times, taus = _ode_setup(
        "euler", model, x_init, cond, objective, steps, phys, task_features, model_dtype, x_lo
    )
    x = x_init.to(torch.float64)
    trajectory = [x] if return_trajectory else None
    for i in range(steps):
        t = times[i]
        f = objective.velocity(net(x, t), x, t, x_lo=x_lo)
        x = x + (taus[i + 1] - taus[i]) * f
        if trajectory is not None:
            trajectory.append(x)
    what = f"sample_euler ({objective.name} objective, {steps} steps)"
    return _finish(x, x_init, times, trajectory, net.nfe, cond=cond, what=what)


@warns_in_train_mode
@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    steps: int = 25,
    generator: Generators | int = None,
    phys: Tensor | float | None = None,
    task_features: TaskFeatures | None = None,
    x_lo: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Heun's (explicit trapezoidal) method for the probability-flow ODE: ``2 steps - 1`` NFE.

    Same ODE and grid as :func:`sample_euler`; second-order accurate. The last step is a plain
    Euler step (as in Karras et al. 2022): its corrector would read the network at the data end
    of the grid (VP: ``t = 0``, where the ``v`` target is the unidentifiable noise ``eps``; flow:
    ``t_max``, where it is the unidentifiable base draw), and a trained network's error there
    lands undamped in the output as small-scale noise (measured on the shipped ERA5 model: 10
    steps with the corrector at the end gave a log-spectral distance of 6.1 dB and a spread-skill
    ratio inflated to 0.97; without it 1.1 dB and 0.41). One Euler step keeps the global error
    second order.

    Parameters
    ----------
    model : Denoiser
        The network (any :class:`~flexdownscale.diffusion.Denoiser`).
    x_init : Tensor
        Initial state ``(B, C, ...)``, a draw from the objective's base distribution
        (``objective.initial_state(noise)``), in normalised units.
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)`` (batch of ``x_init``), or ``None`` for an unconditional
        model; cast to the network's dtype.
    objective : Objective
        The objective the model was trained with; it says how the network output is read.
    steps : int, default 25
        Number of steps of the uniform time grid (:meth:`Objective.time_grid`).
    generator : torch.Generator, int, sequence of torch.Generator, or None, default None
        Accepted for the shared signature and unused: the sampler is deterministic.
    phys : Tensor, float or None, default None
        Scalar physical condition ``(B,)``, or one number for all rows, for models built with
        one.
    task_features : TaskFeatures or None, default None
        ``model.encode_task(cond)`` for the rows of ``x_init``; computed from ``cond`` once per
        call when ``None``.
    x_lo : Tensor or None, default None
        Mean of the coarse-plus-noise base (flow matching and IDFF with
        ``base="coarse_plus_noise"``), broadcastable to ``x_init``; ``None`` is zero, the
        residual-space value. Ignored otherwise.
    model_dtype : torch.dtype or None, default None
        Dtype of the network's inputs (default: the dtype of the model's first floating
        parameter, float32 for a model without one). The state stays float64.
    return_trajectory : bool, default False
        Also return the state at every grid time.

    Returns
    -------
    SampleResult
        ``sample`` (shape and dtype of ``x_init``), the grid ``times`` ``(steps + 1,)``
        float64, the ``trajectory`` (``None`` unless asked for) and ``nfe``, the number of
        network evaluations: ``2 steps - 1``.

    Examples
    --------
    The setting of :func:`sample_euler`'s example, at ``2 steps - 1`` network evaluations:

    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching
    >>> objective = FlowMatching()
    >>> def to_two(x_t, t, cond=None, **kwargs):  # the exact velocity for data that are all 2
    ...     return (2.0 - x_t) / (1 - t.reshape(-1, 1, 1, 1))
    >>> noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> result = sample_heun(to_two, objective.initial_state(noise), objective=objective, steps=4)
    >>> result.nfe
    7
    >>> torch.allclose(result.sample, torch.full_like(noise, 2.0), atol=1e-3)
    True
    """
    net, times, taus = _ode_setup(
        "heun", model, x_init, cond, objective, steps, phys, task_features, model_dtype, x_lo
    )
    x = x_init.to(torch.float64)
    trajectory = [x] if return_trajectory else None
    for i in range(steps):
        h = taus[i + 1] - taus[i]
        f0 = objective.velocity(net(x, times[i]), x, times[i], x_lo=x_lo)
        if i == steps - 1:
            x = x + h * f0  # no corrector at the data end (see the docstring)
        else:
            x_pred = x + h * f0
            f1 = objective.velocity(net(x_pred, times[i + 1]), x_pred, times[i + 1], x_lo=x_lo)
            x = x + 0.5 * h * (f0 + f1)
        if trajectory is not None:
            trajectory.append(x)
    what = f"sample_heun ({objective.name} objective, {steps} steps)"
    return _finish(x, x_init, times, trajectory, net.nfe, cond=cond, what=what)


def _finite_nonnegative(value: Any) -> bool:
    """Whether ``value`` is a finite real number (:func:`flexdownscale._numbers.finite_real`: a
    Python or numpy number or a 0-d real array or tensor, never a bool or a text) >= 0."""
    number = finite_real(value)
    return number is not None and number >= 0


#: The Langevin stiffness per step above which :func:`sample_sde` (``delta h``) and
#: :func:`sample_idff` (``g1 h s_t^2 / n_t^2``) warn. With exact networks for Gaussian data
#: (``docs/diffusion.md``) the ensembles' spread stayed within about 12 % of the truth up to
#: 0.5 wherever the ODE's (``delta = 0``) was within 25 %, and was up to 1.7 times the truth at 1
#: and about 4 times at 1.5 (10 to 20 steps); 2 is where the explicit steps become unstable.
_LANGEVIN_STEP_LIMIT = 0.5

#: The ``g2`` of :func:`sample_idff` above which it warns: the momentum term's stiffness at the
#: last step, ``h / (1 - t)``, is about 1 whatever the steps, so more steps do not help. With
#: exact networks for Gaussian data (10 to 50 steps) the spread was off by up to 11 % at 1.5,
#: 20 % at 2 and 60 % at 4 (``docs/diffusion.md``).
_MOMENTUM_LIMIT = 1.5

#: Steps beyond which the warnings advise lowering the knob instead of more steps.
_MOST_STEPS = 2**20


def _langevin_step(taus: Tensor) -> float:
    """The largest step in ``tau`` of the grid that has a Langevin term (every step but the
    last); 0 for a grid of one step."""
    return float((taus[1:-1] - taus[:-2]).abs().max()) if len(taus) > 2 else 0.0


def _fewest_steps(stiffness: Callable[[int], float], steps: int) -> int | None:
    """The fewest steps above ``steps`` whose grid has ``stiffness(n) <= _LANGEVIN_STEP_LIMIT``
    (``steps`` does not), checked on the grid itself, so that following the advice does not warn
    again (a shifted VP grid is not uniform in ``tau``); ``None`` beyond :data:`_MOST_STEPS`."""
    low, high = steps, max(2 * steps, steps + 1)
    while stiffness(high) > _LANGEVIN_STEP_LIMIT:
        if high >= _MOST_STEPS:
            return None
        low, high = high, min(2 * high, _MOST_STEPS)
    while high - low > 1:  # stiffness(low) > limit >= stiffness(high)
        middle = (low + high) // 2
        if stiffness(middle) > _LANGEVIN_STEP_LIMIT:
            low = middle
        else:
            high = middle
    return high


def _below(value: float) -> str:
    """``value`` rounded down to 3 significant digits, as text (advice to take a knob below
    it stays right when the rounded number is used)."""
    if not value > 0:
        return f"{value:g}"
    unit = 10.0 ** (math.floor(math.log10(value)) - 2)
    return f"{math.floor(value / unit) * unit:.3g}"


def _more_steps(knob: str, largest: float, fewest: int | None) -> str:
    """The advice of a stiffness warning: a smaller knob or more steps."""
    if fewest is None:
        return f"take {knob} < {_below(largest)} (more than {_MOST_STEPS} steps would be needed)"
    return f"take {knob} < {_below(largest)} or at least {fewest} steps"


def _check_delta(
    delta: Any, objective: Objective, taus: Tensor, steps: int
) -> tuple[float, str | None]:
    """``delta`` of :func:`sample_sde` as a float: a finite number >= 0 (infinity gave NaN
    samples). A :class:`~flexdownscale.errors.SkillWarning` where a Langevin step has
    ``delta h > _LANGEVIN_STEP_LIMIT``, with the largest ``delta`` below it and the fewest steps
    that bring ``delta h`` under it; returns that advice too (for the divergence error)."""
    if taus.is_meta:  # shape inference on the meta device: the grid's values, from the CPU
        taus = objective.ode_time(objective.time_grid(steps))
    if not _finite_nonnegative(delta):
        h = float((taus[1:] - taus[:-1]).abs().max())
        raise ConfigError(
            f"delta = {delta!r} must be >= 0 and finite (0 is the probability-flow ODE; the "
            f"Langevin steps stay stable while delta < 2 / h = {2 / h:.3g} for these "
            f"{steps} steps, h = {h:.3g} being the largest step of the grid it integrates on)"
        )
    delta = float(delta)
    h = _langevin_step(taus)
    if delta * h <= _LANGEVIN_STEP_LIMIT:
        return delta, None

    def stiffness(n: int) -> float:
        return delta * _langevin_step(objective.ode_time(objective.time_grid(n)))

    advice = _more_steps("delta", _LANGEVIN_STEP_LIMIT / h, _fewest_steps(stiffness, steps))
    unstable = (
        ", and from 2 on the steps are unstable: the samples can grow without bound"
        if delta * h >= 2
        else ""
    )
    warnings.warn(
        f"sample_sde: delta = {delta:g} with {steps} steps gives delta h = "
        f"{_beyond(delta * h, _LANGEVIN_STEP_LIMIT)} "
        f"(h = {h:.3g}, the largest Langevin step in tau), above {_LANGEVIN_STEP_LIMIT:g}, where "
        "Euler-Maruyama's Langevin steps widen the ensemble (with exact networks for Gaussian "
        "data: up to 1.7 times the true spread at delta h = 1, 4 times at 1.5"
        f"{unstable}); {advice}",
        SkillWarning,
        stacklevel=user_stacklevel(),
    )
    return delta, advice


def _beyond(value: float, limit: float) -> str:
    """``value`` (above ``limit``) with 3 significant digits, or more where 3 would print the
    limit itself (``delta h = 0.50004`` is not shown as ``0.5 ... above 0.5``)."""
    for digits in range(3, 10):
        shown = f"{value:.{digits}g}"
        if float(shown) != limit:
            return shown
    return repr(value)


def _check_idff_knobs(
    g1: Any, g2: Any, objective: IDFF, times: Tensor, steps: int
) -> tuple[float, float, str | None]:
    """``g1`` and ``g2`` of :func:`sample_idff` as floats (finite, >= 0), with a
    :class:`~flexdownscale.errors.SkillWarning` where they make the steps inaccurate: ``g1``'s
    Langevin stiffness ``g1 h s_t^2 / n_t^2`` (its term is ``delta n_t^2`` of
    :func:`sample_sde` with ``delta = g1 s_t^2 / n_t^2 <= g1``) above
    :data:`_LANGEVIN_STEP_LIMIT`, or ``g2`` above :data:`_MOMENTUM_LIMIT`. Returns the advice too
    (for the divergence error)."""
    if not (_finite_nonnegative(g1) and _finite_nonnegative(g2)):
        # inf passed a ">= 0" check and gave NaN samples
        raise ConfigError(
            f"g1 = {g1!r} and g2 = {g2!r} must be >= 0 and finite (0, 0 is the bridge ODE)"
        )
    g1, g2 = float(g1), float(g2)
    advice = []
    if times.is_meta:  # shape inference on the meta device: the grid's values, from the CPU
        times = objective.time_grid(steps)

    def stiffness(n: int, grid: Tensor | None = None) -> float:
        t = objective.time_grid(n) if grid is None else grid
        if n < 2:
            return 0.0
        ratio = objective.bridge_std(t[:-2]) ** 2 / objective.noise_variance(t[:-2])
        return g1 * float(((t[1:-1] - t[:-2]) * ratio).max())

    k = stiffness(steps, times) if g1 > 0 else 0.0
    if k > _LANGEVIN_STEP_LIMIT:
        largest = g1 * _LANGEVIN_STEP_LIMIT / k
        advice.append(_more_steps("g1", largest, _fewest_steps(stiffness, steps)))
        warnings.warn(
            f"sample_idff: g1 = {g1:g} with {steps} steps gives a Langevin stiffness "
            f"g1 h s_t^2 / n_t^2 = {_beyond(k, _LANGEVIN_STEP_LIMIT)} per step, above {_LANGEVIN_STEP_LIMIT:g}, where the "
            "Langevin steps widen the ensemble (with exact networks for Gaussian data: 1.2 to "
            "1.6 times the true spread at 1; unstable from 2); " + advice[-1],
            SkillWarning,
            stacklevel=user_stacklevel(),
        )
    if g2 > _MOMENTUM_LIMIT:
        advice.append("take g2 <= 1 (the full second-order Taylor step)")
        warnings.warn(
            f"sample_idff: g2 = {g2:g} is above {_MOMENTUM_LIMIT:g}: the momentum term "
            "over-corrects the last step, where h / (1 - t) is about 1 whatever the steps, so "
            "more steps do not help (with exact networks for Gaussian data the spread was off by "
            "up to 20 % at g2 = 2 and 60 % at 4); " + advice[-1],
            SkillWarning,
            stacklevel=user_stacklevel(),
        )
    return g1, g2, "; ".join(advice) or None


@warns_in_train_mode
@torch.no_grad()
def sample_sde(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    steps: int = 50,
    generator: Generators | int = None,
    phys: Tensor | float | None = None,
    task_features: TaskFeatures | None = None,
    x_lo: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
    delta: float = 0.0,
) -> SampleResult:
    """Euler-Maruyama for ``dx = [u + lambda_t s] dtau + sqrt(2 lambda_t) dW``.

    ``u`` is the probability-flow drift (:meth:`Objective.velocity`), ``s`` the score derived
    from the same network output (:meth:`Objective.score`) and ``lambda_t = delta n_t^2`` the
    Langevin strength, with ``n_t^2`` the noise variance of the path
    (:meth:`Objective.noise_variance`: VP ``sigma_t^2``, flow matching ``((1 - t) b)^2``). For
    any ``lambda_t >= 0`` this SDE has the same marginals as the ODE (the added drift and
    diffusion cancel in the Fokker-Planck equation); ``delta = 0`` is :func:`sample_euler`.

    Why ``n_t^2``: near the data end the marginal is only about ``n_t`` wide in the directions
    the data pin down, and an explicit Langevin step of size ``lambda h`` is unstable once
    ``lambda h`` exceeds about ``2 n_t^2``. A constant strength blew up on a trained
    coarse-plus-noise model (RMSE 1327 K on ERA5, 10 steps, ``delta = 0.2``); measured in
    ``n_t^2`` the step is ``delta h`` whatever ``t``. It is stable for ``delta h < 2`` but
    accurate only well below: with exact networks for Gaussian data the ensembles' spread stayed
    within about 12 % of the truth up to ``delta h = 0.5`` and was up to 1.7 times it at 1 and
    about 4 times at 1.5 (10 to 20 steps; the table is in ``docs/diffusion.md``), so a
    ``SkillWarning`` comes above 0.5. The last step is a plain Euler step of the ODE: noise
    injected there would never be removed. Flow matching with a coarse-plus-noise base needs
    ``x_lo`` (``None`` is zero, the residual-space value).

    Parameters
    ----------
    model : Denoiser
        The network (any :class:`~flexdownscale.diffusion.Denoiser`).
    x_init : Tensor
        Initial state ``(B, C, ...)``, a draw from the objective's base distribution
        (``objective.initial_state(noise)``), in normalised units.
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)`` (batch of ``x_init``), or ``None`` for an unconditional
        model; cast to the network's dtype.
    objective : Objective
        The objective the model was trained with; it says how the network output is read.
    steps : int, default 50
        Number of steps of the uniform time grid (:meth:`Objective.time_grid`).
    generator : torch.Generator, int, sequence of torch.Generator, or None, default None
        Source of the step noise: one generator, or one per row of ``x_init``
        (``None``: torch's global generator; an int: a new CPU generator seeded with it).
    phys : Tensor, float or None, default None
        Scalar physical condition ``(B,)``, or one number for all rows, for models built with
        one.
    task_features : TaskFeatures or None, default None
        ``model.encode_task(cond)`` for the rows of ``x_init``; computed from ``cond`` once per
        call when ``None``.
    x_lo : Tensor or None, default None
        Mean of the coarse-plus-noise base (flow matching and IDFF with
        ``base="coarse_plus_noise"``), broadcastable to ``x_init``; ``None`` is zero, the
        residual-space value. Ignored otherwise.
    model_dtype : torch.dtype or None, default None
        Dtype of the network's inputs (default: the dtype of the model's first floating
        parameter, float32 for a model without one). The state stays float64.
    return_trajectory : bool, default False
        Also return the state at every grid time.
    delta : float, default 0.0
        Langevin strength in units of the path's noise variance: a finite number ``>= 0``
        (``ConfigError`` otherwise). With ``h`` the largest Langevin step in ``tau`` (VP:
        ``(pi / 2) / steps`` unshifted, more with ``shift > 1``; flow matching and IDFF:
        ``(t_max - t_min) / steps``), a ``SkillWarning`` comes above ``delta h = 0.5``, where
        the ensembles grow too wide, with the largest ``delta`` under it and the fewest steps
        that would do; from 2 on the steps are unstable.

    Returns
    -------
    SampleResult
        ``sample`` (shape and dtype of ``x_init``), the grid ``times`` ``(steps + 1,)``
        float64, the ``trajectory`` (``None`` unless asked for) and ``nfe``, the number of
        network evaluations: ``steps``.

    Raises
    ------
    ConfigError
        For a ``delta`` that is not a finite number ``>= 0``, and when the sample is not
        finite (the sampler diverged), naming the settings and the fix.

    Examples
    --------
    The setting of :func:`sample_euler`'s example with Langevin noise (``delta h = 0.1``,
    stable): the noise moves the draws along the way but not where they end:

    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching
    >>> objective = FlowMatching()
    >>> def to_two(x_t, t, cond=None, **kwargs):  # the exact velocity for data that are all 2
    ...     return (2.0 - x_t) / (1 - t.reshape(-1, 1, 1, 1))
    >>> noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> x_init = objective.initial_state(noise)
    >>> result = sample_sde(to_two, x_init, objective=objective, steps=10, delta=1.0, generator=0)
    >>> result.nfe, torch.allclose(result.sample, torch.full_like(noise, 2.0), atol=1e-3)
    (10, True)
    """
    net, times, taus = _ode_setup(
        "sde", model, x_init, cond, objective, steps, phys, task_features, model_dtype, x_lo
    )
    delta, fix = _check_delta(delta, objective, taus, steps)
    generator = _step_generator(generator)
    x = x_init.to(torch.float64)
    trajectory = [x] if return_trajectory else None
    for i in range(steps):
        t = times[i]
        h = taus[i + 1] - taus[i]
        out = net(x, t)
        drift = objective.velocity(out, x, t, x_lo=x_lo)
        langevin = delta > 0 and i < steps - 1  # the last step is noise-free (docstring)
        if langevin:
            strength = delta * objective.noise_variance(t)
            drift = drift + strength * objective.score(out, x, t, x_lo=x_lo)
        x = x + h * drift
        if langevin:
            x = x + torch.sqrt(2 * strength * h) * _noise_like(x, generator)
        if trajectory is not None:
            trajectory.append(x)
    what = f"sample_sde ({objective.name} objective, {steps} steps, delta = {delta:g})"
    return _finish(x, x_init, times, trajectory, net.nfe, cond=cond, what=what, fix=fix)


@warns_in_train_mode
@torch.no_grad()
def sample_idff(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    steps: int = 10,
    generator: Generators | int = None,
    phys: Tensor | float | None = None,
    task_features: TaskFeatures | None = None,
    x_lo: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
    g1: float = 0.0,
    g2: float = 0.0,
) -> SampleResult:
    """IDFF sampler: bridge SDE with a Langevin knob ``g1`` and a momentum knob ``g2``.

    Integrates, from ``t_min`` to ``t_max`` on a uniform grid,

    .. math::

        dx = \\left[\\frac{\\hat x_1 - x}{1 - t} + \\left(g_1 s_t^2 - \\frac{\\sigma^2}{2}\\right)
             \\hat s\\right] dt + \\sqrt{2 g_1}\\, s_t\\, dW,
        \\qquad s_t = \\sigma\\sqrt{t (1 - t)},

    where ``hat x_1`` and ``hat s`` (the score) are the network's two heads. Its marginals are
    the bridge's for every ``g1 >= 0`` (``docs/diffusion.md``); ``g1 = 0`` is the bridge's
    probability-flow ODE. ``g2`` weights the momentum (acceleration) term of a
    second-order Taylor step, ``x += h f + g2 h^2 / 2 df/dt`` with ``df/dt = d_t f + (grad f) f``
    computed exactly by one forward-mode JVP through the network (``g2 = 1`` is the full
    second-order Taylor step; ``g2 = g1 = 0`` is Euler on the bridge ODE). As in
    :func:`sample_sde`, the last step is noise-free (neither the ``g1`` noise nor its score term):
    noise added there would not be removed by any later step and would widen the samples.

    Parameters
    ----------
    model : Denoiser
        The network (any :class:`~flexdownscale.diffusion.Denoiser`).
    x_init : Tensor
        Initial state ``(B, C, ...)``, a draw from the objective's base distribution
        (``objective.initial_state(noise)``), in normalised units.
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)`` (batch of ``x_init``), or ``None`` for an unconditional
        model; cast to the network's dtype.
    objective : Objective
        The objective the model was trained with; it says how the network output is read.
    steps : int, default 10
        Number of steps of the uniform time grid (:meth:`Objective.time_grid`).
    generator : torch.Generator, int, sequence of torch.Generator, or None, default None
        Source of the step noise (used when ``g1 > 0``): one generator, or one per row of ``x_init``
        (``None``: torch's global generator; an int: a new CPU generator seeded with it).
    phys : Tensor, float or None, default None
        Scalar physical condition ``(B,)``, or one number for all rows, for models built with
        one.
    task_features : TaskFeatures or None, default None
        ``model.encode_task(cond)`` for the rows of ``x_init``; computed from ``cond`` once per
        call when ``None``.
    x_lo : Tensor or None, default None
        Mean of the coarse-plus-noise base (flow matching and IDFF with
        ``base="coarse_plus_noise"``), broadcastable to ``x_init``; ``None`` is zero, the
        residual-space value. Ignored otherwise.
    model_dtype : torch.dtype or None, default None
        Dtype of the network's inputs (default: the dtype of the model's first floating
        parameter, float32 for a model without one). The state stays float64.
    return_trajectory : bool, default False
        Also return the state at every grid time.
    g1 : float, default 0.0
        Langevin strength, a finite number ``>= 0``. Its term is :func:`sample_sde`'s with
        ``delta = g1 s_t^2 / n_t^2``: a ``SkillWarning`` comes where a Langevin step has
        ``g1 h s_t^2 / n_t^2 > 0.5`` (the ensembles grow too wide), with the largest ``g1``
        under it and the fewest steps that would do.
    g2 : float, default 0.0
        Weight of the second-order (momentum) term, a finite number ``>= 0``; costs one JVP
        per step. 1 is the full second-order Taylor step; a ``SkillWarning`` comes above 1.5
        (more steps do not help: the last step's ``h / (1 - t)`` is about 1 whatever the
        steps).

    Returns
    -------
    SampleResult
        ``sample`` (shape and dtype of ``x_init``), the grid ``times`` ``(steps + 1,)``
        float64, the ``trajectory`` (``None`` unless asked for) and ``nfe``, the number of
        network evaluations: ``steps`` (``2 steps`` with ``g2 > 0``: each JVP counts
        as one).

    Examples
    --------
    For data that are all 2 the exact heads are ``x1_hat = 2`` and the score of the bridge
    marginal ``N(2 t, (1 - t)^2 + s_t^2)``; ten steps carry standard normal noise to within
    0.1 of 2 (where ``1 - t < sigma^2`` the bridge ODE closes in only as ``sqrt(1 - t)``, so
    its steps converge slowly):

    >>> import torch
    >>> from flexdownscale.diffusion import IDFF
    >>> objective = IDFF()
    >>> def oracle(x_in, t, cond=None, **kwargs):
    ...     x, t = x_in[:, : x_in.shape[1] // 2], t.reshape(-1, 1, 1, 1)
    ...     score = -(x - 2.0 * t) / ((1 - t) ** 2 + objective.bridge_std(t) ** 2)
    ...     return torch.cat([torch.full_like(x, 2.0), score], dim=1)
    >>> noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> result = sample_idff(oracle, noise, objective=objective, steps=10)
    >>> result.nfe, bool((result.sample - 2.0).abs().max() < 0.1)
    (10, True)
    """
    _check_common("idff", objective, x_init, steps, cond, x_lo)
    _require_objective("idff", objective, IDFF)
    times = objective.time_grid(steps, device=x_init.device)
    g1, g2, fix = _check_idff_knobs(g1, g2, objective, times, steps)
    generator = _step_generator(generator)
    net = _Net(model, objective, cond, phys, task_features, model_dtype, x_init.shape[0])

    def drift(x: Tensor, t: Tensor, langevin: bool) -> Tensor:
        out = net(x, t)
        f = objective.velocity(out, x, t, x_lo=x_lo)
        if langevin:
            f = f + g1 * objective.bridge_std(t) ** 2 * objective.score(out, x, t, x_lo=x_lo)
        return f

    x = x_init.to(torch.float64)
    trajectory = [x] if return_trajectory else None
    for i in range(steps):
        t = times[i]
        h = times[i + 1] - t
        langevin = g1 > 0 and i < steps - 1  # the last step is noise-free (docstring)
        f = drift(x, t, langevin)
        x_next = x + h * f
        if g2 > 0:
            # forward-mode AD has no fused attention kernel: the JVP runs the math one
            with sdpa_kernel(SDPBackend.MATH):
                _, f_dot = torch.func.jvp(
                    functools.partial(drift, langevin=langevin), (x, t), (f, torch.ones_like(t))
                )
            x_next = x_next + g2 * 0.5 * h**2 * f_dot
        if langevin:
            std = math.sqrt(2 * g1) * objective.bridge_std(t) * torch.sqrt(h)
            x_next = x_next + std * _noise_like(x, generator)
        x = x_next
        if trajectory is not None:
            trajectory.append(x)
    what = f"sample_idff ({steps} steps, g1 = {g1:g}, g2 = {g2:g})"
    return _finish(x, x_init, times, trajectory, net.nfe, cond=cond, what=what, fix=fix)


SAMPLERS: dict[str, Callable[..., SampleResult]] = {
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "sde": sample_sde,
    "idff": sample_idff,
}
"""The samplers by name (the ``name`` of :func:`sample`, ``SamplerConfig.name``)."""

SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "ddim": ("eta",),
    "euler": (),
    "heun": (),
    "sde": ("delta",),
    "idff": ("g1", "g2"),
}
"""The options each sampler takes (the other fields of :class:`~flexdownscale.config.SamplerConfig`),
read from a ``SamplerConfig`` per sampler."""

_ALL_OPTIONS = frozenset(o for options in SAMPLER_OPTIONS.values() for o in options)


def resolve_sampler_options(
    name: str, given: Mapping[str, Any] | None, defaults: Any, *, argument: str = "options"
) -> dict[str, float]:
    """The options of sampler ``name``: ``defaults``' values (a
    :class:`~flexdownscale.config.SamplerConfig`) updated by ``given``.

    Parameters
    ----------
    name : str
        Sampler name, a key of :data:`SAMPLER_OPTIONS`.
    given : mapping of str to number, or None
        Options passed by the caller (``None``: none).
    defaults : SamplerConfig
        Supplies the value of every option of the sampler not in ``given``.
    argument : str, default "options"
        The caller's name for ``given``, used in error messages.

    Returns
    -------
    dict of str to float
        One entry per option the sampler takes (``SAMPLER_OPTIONS[name]``, possibly none).

    Raises
    ------
    ConfigError
        For an option the sampler does not take, or a value that is not a finite number; the
        message names ``argument`` (the caller's name for ``given``).

    Examples
    --------
    >>> from flexdownscale.config import SamplerConfig
    >>> resolve_sampler_options("ddim", {"eta": 1}, SamplerConfig())
    {'eta': 1.0}
    >>> resolve_sampler_options("idff", None, SamplerConfig(g1=0.5))
    {'g1': 0.5, 'g2': 0.0}
    >>> resolve_sampler_options("euler", {"eta": 0.5}, SamplerConfig())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: options ['eta'] do not apply to sampler 'euler'; it takes ...
    """
    allowed = SAMPLER_OPTIONS[name]
    if given is not None and not isinstance(given, Mapping):
        raise ConfigError(_options_not_mapping(given, argument, allowed))
    given = dict(given or {})
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(_options_not_taken(name, unknown, argument))
    options = {key: float(getattr(defaults, key)) for key in allowed}
    for key, value in given.items():
        number = finite_real(value)
        if number is None:
            raise ConfigError(f"{argument}[{key!r}] = {value!r}; expected a finite number")
        options[key] = number
    return options


def _options_not_taken(name: str, unknown: Sequence[str], argument: str) -> str:
    """The message for sampler options ``unknown`` (sorted) that sampler ``name`` does not
    take, given in the caller's argument ``argument``."""
    allowed = SAMPLER_OPTIONS[name]
    takes = f"it takes {list(allowed)}" if allowed else "it takes none"
    return (
        f"{argument} {list(unknown)} do not apply to sampler {name!r}; {takes} "
        "(eta: ddim, delta: sde, g1/g2: idff)"
    )


def _options_not_mapping(given: Any, argument: str, allowed: Sequence[str]) -> str:
    """The message for sampler options given as something else than a mapping (``"eta=1"``, a
    list of pairs): what was found and the mapping to pass (the string's ``key=value`` pairs
    as a dict when it holds some)."""
    example = None
    if isinstance(given, str):
        pairs = [p.partition("=") for p in given.replace(",", " ").split()]
        if pairs and all(sep and key for key, sep, _ in pairs):
            example = "{" + ", ".join(f"{k.strip()!r}: {v.strip()}" for k, _, v in pairs) + "}"
    elif isinstance(given, list | tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 for p in given
    ):
        example = repr(dict(given))
    if example is None:
        key = allowed[0] if allowed else "delta"
        example = f"{{{key!r}: 0.5}}"
    return (
        f"{argument} = {given!r} is a {type(given).__name__}; expected a mapping of option "
        f"names to numbers, e.g. {argument}={example}"
    )


def _resolve(objective: Objective, sampler: str | None, steps: int | None) -> tuple[str, int]:
    """Sampler name and steps: the objective's defaults, or the sampler's own default steps."""
    _check_objective(objective)
    defaults = objective.sampler_defaults
    name = sampler if sampler is not None else defaults.sampler
    if name not in get_args(SamplerName):
        raise ConfigError(
            f"sampler = {name!r} is not a valid option; expected one of "
            f"{', '.join(repr(s) for s in get_args(SamplerName))}"
        )
    if steps is None:
        if name == defaults.sampler:
            steps = defaults.steps
        else:
            steps = inspect.signature(SAMPLERS[name]).parameters["steps"].default
    return name, _check_steps(steps)


@warns_in_train_mode
def sample(
    model: Denoiser,
    x_init: Tensor,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    sampler: SamplerName | None = None,
    steps: int | None = None,
    **kwargs: Any,
) -> SampleResult:
    """Dispatch to a sampler by name.

    ``sampler=None`` picks the objective's default sampler (``objective.sampler_defaults``);
    ``steps=None`` its default steps, or the chosen sampler's own default when the sampler is
    not the objective's default. Other keywords go to the sampler.

    Parameters
    ----------
    model : Denoiser
        The network.
    x_init : Tensor
        Initial state ``(B, C, ...)``, a draw from the objective's base distribution.
    cond : Tensor or None, default None
        Task input ``(B, C_cond, ...)``, or ``None`` for an unconditional model.
    objective : Objective
        The objective the model was trained with.
    sampler : {"ddim", "euler", "heun", "sde", "idff"} or None, default None
        Sampler name (``None``: the objective's default).
    steps : int or None, default None
        Number of steps (``None``: see above).
    **kwargs
        Passed to the sampler: ``generator``, ``phys``, ``task_features``, ``x_lo``,
        ``model_dtype``, ``return_trajectory`` and its options (see :func:`sample_euler`,
        :func:`sample_ddim`, :func:`sample_sde`, :func:`sample_idff`).

    Returns
    -------
    SampleResult
        The chosen sampler's result.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching, VPDiffusion
    >>> still = lambda x_t, t, cond=None, **kwargs: torch.zeros_like(x_t)  # a stand-in network
    >>> x_init = torch.zeros(1, 1, 4, 4)
    >>> sample(still, x_init, objective=VPDiffusion()).nfe  # its default: 2 DDIM steps
    2
    >>> sample(still, x_init, objective=FlowMatching()).nfe  # its default: 50 Euler steps
    50
    >>> sample(still, x_init, objective=FlowMatching(), sampler="heun").nfe  # Heun's 25 steps
    49
    """
    name, steps = _resolve(objective, sampler, steps)
    others = sorted(k for k in kwargs if k in _ALL_OPTIONS and k not in SAMPLER_OPTIONS[name])
    if others:  # as sample_ensemble says it (a bare TypeError before)
        raise ConfigError(_options_not_taken(name, others, "options"))
    return SAMPLERS[name](model, x_init, cond, objective=objective, steps=steps, **kwargs)


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as a Python int, checked: an integer in ``[0, 2**63)``.

    Every seed in that range gives its own random streams; a negative seed or one of 2**63 or
    more would alias another (torch and the hashing of :func:`derived_seed` reduce them modulo
    a power of two), so they are refused with a :class:`~flexdownscale.errors.ConfigError`.
    A string of decimal digits is taken as its integer: outputs record a seed above 2**31 - 1
    as text (netCDF-3 attributes have 32 bits), and passing it back reproduces the call.
    """
    if isinstance(seed, str) and seed.strip().isdecimal() and seed.strip().isascii():
        return check_seed(int(seed.strip()), name)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(
            f"{name} = {seed!r} must be an integer (or a torch.Generator, which gives one)"
        )
    if not 0 <= int(seed) < 2**63:
        raise ConfigError(
            f"{name} = {seed!r} must be in [0, 2**63) (a non-negative 63-bit integer)"
        )
    return int(seed)


def seed_of(generator: torch.Generator | int | None, name: str = "generator") -> int:
    """The integer seed of a call: an int ``generator`` itself (checked by :func:`check_seed`),
    one seed drawn from a ``torch.Generator``, or one from torch's global generator for
    ``None``; always in ``[0, 2**63)``."""
    if isinstance(generator, torch.Generator):
        return int(
            torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item()
        )
    if generator is None:
        return int(torch.randint(0, 2**62, (1,)).item())
    return check_seed(generator, name)


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """``generator`` itself, or a new CPU generator seeded with the int (checked) or, for
    ``None``, with a seed from torch's global generator."""
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(seed_of(generator))


#: Fine cells per backbone call on a CPU: larger calls leave the caches and run slower per cell
#: (shipped x8 model on a 2-core CPU, benchmarks/results/cpu_batch.md: tiles of 64^2 fastest at
#: 8 per call, 128^2 at 2 to 4, the 288^2 of a 256^2 periodic field at 1, where 8 per call took
#: 2.2x as long). The Downscaler's tiles per call and a rollout's member rows per call follow it.
CPU_CELLS_PER_CALL = 32768


def cpu_items_per_call(cells_per_item: int) -> int:
    """How many items of ``cells_per_item`` fine cells one network call on a CPU takes: as many
    as keep the call under :data:`CPU_CELLS_PER_CALL` cells, one at least.

    Parameters
    ----------
    cells_per_item : int
        Fine cells of one item (a tile; a field's members), >= 1.

    Returns
    -------
    int
        Items per call, >= 1.
    """
    return max(1, CPU_CELLS_PER_CALL // max(1, int(cells_per_item)))


#: Member seeds are drawn from [0, _SEED_RANGE), one ``randint`` value per member.
_SEED_RANGE = 2**62


def derived_seed(seed: int, *labels: int) -> int:
    """A seed in ``[0, 2**62)`` derived from ``seed`` and integer ``labels`` by hashing
    (``numpy.random.SeedSequence``): distinct labels give unrelated streams. Used for the seed
    of a downscaled time step ``(seed, i)`` and of a forecast lead ``(seed, field, lead)``."""
    words = [check_seed(seed), *(int(label) for label in labels)]
    state = np.random.SeedSequence(words).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & (_SEED_RANGE - 1)


def member_generators(generator: torch.Generator | int | None, count: int) -> list[torch.Generator]:
    """``count`` private generators seeded from ``generator`` in a fixed order.

    One ``torch.randint`` call draws the seeds, so generator ``i`` is the same whatever
    ``count`` is: member ``i`` of an ensemble does not depend on how many others are drawn.
    The generators live on ``generator``'s device.

    Parameters
    ----------
    generator : torch.Generator, int or None
        The source of the seeds: a generator, an integer seed in ``[0, 2**63)`` (a new CPU
        generator seeded with it), or ``None`` (a seed from torch's global generator).
    count : int
        Number of generators.

    Returns
    -------
    list of torch.Generator
        ``count`` generators, each seeded with a value in ``[0, 2**62)``.

    Examples
    --------
    >>> import torch
    >>> two = member_generators(0, 2)
    >>> five = member_generators(0, 5)
    >>> len(five), torch.equal(torch.randn(3, generator=two[1]), torch.randn(3, generator=five[1]))
    (5, True)
    """
    generator = _as_generator(generator)
    seeds = torch.randint(0, _SEED_RANGE, (count,), generator=generator, device=generator.device)
    return [torch.Generator(device=generator.device).manual_seed(int(s)) for s in seeds.tolist()]


@warns_in_train_mode
def sample_ensemble(
    model: Denoiser,
    cond: Tensor | None = None,
    *,
    objective: Objective,
    members: int = 1,
    shape: tuple[int, ...] | None = None,
    sampler: SamplerName | None = None,
    steps: int | None = None,
    generator: torch.Generator | int | Sequence[torch.Generator] | None = None,
    noise: Tensor | None = None,
    phys: Tensor | None = None,
    x_lo: Tensor | None = None,
    batch_size: int | None = None,
    model_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **options: Any,
) -> Tensor:
    """Draw ``members`` samples for each of ``B`` fields.

    Randomness comes in a fixed order from ``generator``, before any batching: one seed per
    member row (row ``b * members + m``, see :func:`member_generators`) for a private generator
    that draws that member's initial noise (float32, shape ``(C, ...)``) and then its noise at
    every step of a stochastic sampler. A member's random numbers therefore depend only on the
    seed and its row, not on ``batch_size`` (its float32 values depend on the network's rounding
    for the batch shape, last bits only; ``batch_size=1`` is bit-invariant for a given ``B``),
    and the first fields' members draw the same random numbers whatever ``B`` is (their values
    agree to float32 rounding: the task encoder runs on all ``B`` fields at once). The task
    encoder runs once per field, its features are shared by the field's members and reused at
    every step.

    Parameters
    ----------
    model
        The network (:class:`~flexdownscale.diffusion.objectives.Denoiser`).
    cond
        Task input, ``(B, C_cond, ...)``, or ``None`` for an unconditional model.
    objective
        The objective the model was trained with.
    members
        Ensemble size ``M``.
    shape
        Shape of one batch of samples, ``(B, C, ...)``; needed when ``noise`` is not given.
    sampler, steps
        Sampler name and steps; ``None`` takes the objective's defaults
        (``objective.sampler_defaults``; for another sampler, that sampler's default steps).
        Sampler options (``eta``, ``delta``, ``g1``, ``g2``) not passed in ``options`` come
        from ``objective.sampler_defaults``.
    generator
        ``torch.Generator``, integer seed in ``[0, 2**63)``, or ``None`` (a seed from torch's
        global generator). Noise is drawn on the generator's device, so a CPU generator gives
        the same samples on any device. Or a sequence of ``B * M`` generators, one per member
        row (row ``b * members + m``), used as they are instead of the rows' private generators
        (to sample the members of several ensembles, each with its own streams, in one call;
        :func:`~flexdownscale.diffusion.rollout` does).
    noise
        Initial standard normal noise ``(B, M, C, ...)``, e.g. drawn by the caller for a whole
        fine field before tiling. Replaces the members' initial draws; step noise of stochastic
        samplers still comes from the member generators.
    phys
        Scalar physical condition ``(B,)``.
    x_lo
        Base mean of the coarse-plus-noise flow base, ``(B, C, ...)`` (``None``: zero, the
        residual-space value).
    batch_size
        Number of member rows per network call (``None``: all ``B * M`` at once).
    model_dtype
        Dtype of the network input (default: the model's parameter dtype).
    device
        Device of the samples (default: ``cond``'s, else the noise's, else the CPU).

    Other Parameters
    ----------------
    **options
        Sampler options (``eta``, ``delta``, ``g1``, ``g2``, ``return_trajectory`` is not allowed).

    Returns
    -------
    Tensor
        Shape ``(B, M, C, ...)``, in ``cond``'s dtype (float32 without ``cond``); it does not
        require grad (sampling runs under :func:`torch.no_grad`).

    Examples
    --------
    With a stand-in network that never moves the state every member is its initial noise, so
    the draws show directly: the first field's members draw the same noise for any number of
    fields and rows per call, and each member its own:

    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching
    >>> still = lambda x_t, t, cond=None, **kwargs: torch.zeros_like(x_t)
    >>> objective = FlowMatching()
    >>> one = sample_ensemble(
    ...     still, objective=objective, members=4, shape=(1, 1, 8, 8), generator=0
    ... )
    >>> three = sample_ensemble(
    ...     still, objective=objective, members=4, shape=(3, 1, 8, 8), generator=0, batch_size=5
    ... )
    >>> three.shape
    torch.Size([3, 4, 1, 8, 8])
    >>> torch.equal(three[:1], one), torch.equal(one[0, 0], one[0, 1])
    (True, False)
    """
    _check_objective(objective)
    defaults = objective.sampler_defaults
    name, steps = _resolve(objective, sampler, steps)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ConfigError(f"members = {members!r} must be a positive integer")
    if "return_trajectory" in options:
        raise ConfigError("sample_ensemble does not return trajectories; call a sampler directly")
    options = resolve_sampler_options(name, options, defaults)

    if device is None:
        device = cond.device if cond is not None else (noise.device if noise is not None else "cpu")
    if noise is None:
        if shape is None:
            raise ShapeError("pass shape=(B, C, ...) or noise=(B, M, C, ...) to sample_ensemble")
        batch, event = shape[0], tuple(shape[1:])
    elif noise.ndim < 3 or noise.shape[1] != members:
        raise ShapeError(
            f"noise has shape {tuple(noise.shape)}; expected (B, members={members}, C, ...)"
        )
    else:
        batch, event = noise.shape[0], tuple(noise.shape[2:])
    check_fields(noise=noise)
    if cond is not None and cond.shape[0] != batch:
        raise ShapeError(f"cond has batch {cond.shape[0]} but the samples have batch {batch}")
    phys = _phys_per_field(phys, batch)
    _check_x_lo(x_lo, (batch, *event), per_field=True)
    rows = batch * members
    if isinstance(generator, Sequence) and not isinstance(generator, str | bytes):
        generators = list(generator)
        if len(generators) != rows or not all(isinstance(g, torch.Generator) for g in generators):
            raise ShapeError(
                f"got a sequence of {len(generators)} items as generator for {batch} fields of "
                f"{members} members; pass one torch.Generator (or seed), or {rows} generators, "
                "one per member row"
            )
    else:
        generators = member_generators(generator, rows)
    if noise is None:
        noise = torch.stack(
            [randn(event, g, device=device, dtype=torch.float32) for g in generators]
        )
    if batch_size is None:
        batch_size = rows
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size!r} must be a positive integer")

    dtype = _model_dtype(model, model_dtype)
    features: TaskFeatures | None = None
    if cond is not None:
        cond = cond.to(device)
        with torch.no_grad():
            features = model.encode_task(cond.to(dtype) if cond.is_floating_point() else cond)

    flat_noise = noise.reshape(rows, *event)
    chunks = []
    for start in range(0, rows, batch_size):
        stop = min(start + batch_size, rows)
        field = torch.arange(start, stop, device=device) // members
        x_init = objective.initial_state(
            flat_noise[start:stop].to(device=device, dtype=torch.float64),
            x_lo=x_lo.to(device, torch.float64).index_select(0, field)
            if x_lo is not None
            else None,
        )
        result = SAMPLERS[name](
            model,
            x_init,
            cond.index_select(0, field) if cond is not None else None,
            objective=objective,
            steps=steps,
            generator=generators[start:stop],
            phys=phys.to(device).index_select(0, field) if phys is not None else None,
            task_features=select_features(features, field) if features is not None else None,
            x_lo=x_lo.to(device, torch.float64).index_select(0, field)
            if x_lo is not None
            else None,
            model_dtype=dtype,
            **options,
        )
        chunks.append(result.sample)
    out_dtype = cond.dtype if cond is not None and cond.is_floating_point() else torch.float32
    return torch.cat(chunks).reshape(batch, members, *event).to(out_dtype)
