"""Training objectives: VP diffusion, flow matching and IDFF.

Each objective defines a probability path between a simple base distribution and the data (in
this package the data are residuals, see :mod:`flexdownscale.diffusion.residual`) and

* a training loss, :meth:`Objective.loss`, returning one value per sample, shape ``(B,)``;
  reduction over the batch and any weighting are the caller's;
* what the network output means while sampling: :meth:`Objective.velocity` (the
  probability-flow ODE drift), :meth:`Objective.score` (the gradient of the log density of the
  path's marginal), :meth:`Objective.denoise` (the prediction of the data endpoint);
* the time grid its samplers walk from noise to data, and its sampler defaults.

Time conventions (``t`` is what the network receives, always in [0, 1]):

======== ===================================== ========================= =====================
name     path                                  noise end -> data end      ODE variable ``tau``
======== ===================================== ========================= =====================
``vp``   ``z = alpha_t x + sigma_t eps``       ``t = 1 -> 0``             ``-phi(t)``
``flow`` ``x_t = (1 - t) x0 + t x1``           ``t_min -> t_max``         ``t``
``idff`` ``x_t = (1 - t) x0 + t x1 + s_t eps`` ``t_min -> t_max``         ``t``
======== ===================================== ========================= =====================

with ``phi = atan2(sigma, alpha)`` and ``s_t = sigma sqrt(t (1 - t))``. Samplers integrate in
``tau``, which always increases from noise to data. The derivations are in ``docs/diffusion.md``.

Everything here is torch only and knows no backbone: a network is anything implementing
:class:`Denoiser`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

import torch
from torch import Tensor

from ..config import (
    DiffusionConfig,
    SamplerConfig,
    _noise_level_problem,
    _positive_finite_problem,
)
from ..errors import ConfigError, DataError, ShapeError
from .schedules import CosineSchedule

__all__ = [
    "IDFF",
    "Denoiser",
    "FlowMatching",
    "Objective",
    "TaskFeatures",
    "VPDiffusion",
    "build_objective",
    "repeat_features",
    "select_features",
]

TaskFeatures = tuple[Tensor, ...]
"""Features computed once per field by a network's ``encode_task``: a tuple of tensors, batch
first (the models' ``TaskFeatures``)."""
LossKind = Literal["l1", "l2"]
VPTarget = Literal["v", "eps", "x"]
Base = Literal["gaussian", "coarse_plus_noise"]


@runtime_checkable
class Denoiser(Protocol):
    """What the engine needs from a network (every backbone of :mod:`flexdownscale.models`).

    ``model(x_t, t, cond, phys=..., task_features=...)`` maps a state ``x_t`` of shape
    ``(B, C, ...)`` and times ``t`` of shape ``(B,)`` to an output of the same shape. IDFF
    networks have ``2 C`` channels in and out: the engine feeds ``cat([x_t, 0])`` (see
    :meth:`Objective.network_input`), so any backbone built with ``out_channels = 2 C`` serves. ``encode_task(cond)`` returns the task
    features, a tuple of tensors with the batch first, that the forward pass accepts in place of
    ``cond`` so that the task encoder runs once per field.

    Examples
    --------
    Any object with such a call and an ``encode_task`` method is a ``Denoiser``, e.g. a
    stand-in network that always predicts zero (the package's backbones are ones too):

    >>> import torch
    >>> class Zero(torch.nn.Module):
    ...     def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
    ...         return torch.zeros_like(x_t)
    ...     def encode_task(self, cond):
    ...         return ()
    >>> isinstance(Zero(), Denoiser)
    True
    >>> isinstance(torch.nn.Linear(2, 2), Denoiser)  # no encode_task
    False
    """

    def __call__(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
    ) -> Tensor:
        """Evaluate the network at states ``x_t`` and times ``t``.

        Parameters
        ----------
        x_t : Tensor
            Network input ``(B, C, ...)``: the noisy state in normalised units (IDFF: ``2 C``
            channels, the state padded with zeros, see :meth:`Objective.network_input`).
        t : Tensor
            Network times ``(B,)`` in [0, 1] (:meth:`Objective.network_time`).
        cond : Tensor or None, default None
            Task input ``(B, C_cond, ...)``; not needed when ``task_features`` is given.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``, for networks built with one.
        task_features : TaskFeatures or None, default None
            Output of :meth:`encode_task` for the same rows; used in place of ``cond``.

        Returns
        -------
        Tensor
            Network output of the shape of ``x_t``, read by the objective (e.g. ``v`` for
            :class:`VPDiffusion`, ``x1 - x0`` for :class:`FlowMatching`).
        """

    def encode_task(self, cond: Tensor) -> TaskFeatures:
        """Task features of ``cond``, computed once and reused at every sampler step.

        Parameters
        ----------
        cond : Tensor
            Task input ``(B, C_cond, ...)``.

        Returns
        -------
        TaskFeatures
            Tuple of tensors with the batch first (``B`` rows), accepted as ``task_features``.
        """


def repeat_features(features: TaskFeatures, repeats: int) -> TaskFeatures:
    """Repeat every tensor of ``features`` ``repeats`` times along the batch (``repeat_interleave``).

    Features of ``B`` fields become features of ``B * repeats`` ensemble members, member-fastest
    (row ``b * repeats + m`` is member ``m`` of field ``b``).

    Parameters
    ----------
    features : TaskFeatures
        Task features of ``B`` fields (a tuple of tensors, batch first), e.g. from
        ``model.encode_task(cond)``.
    repeats : int
        Number of members per field.

    Returns
    -------
    TaskFeatures
        The same tensors with ``B * repeats`` rows each.

    Raises
    ------
    ConfigError
        If ``repeats`` is not a positive integer (as
        :func:`flexdownscale.models.repeat_task_features`).

    Examples
    --------
    >>> import torch
    >>> features = (torch.tensor([[0.0], [1.0]]), torch.zeros(2, 3, 4))  # two fields
    >>> repeated = repeat_features(features, 3)
    >>> [tuple(f.shape) for f in repeated]
    [(6, 1), (6, 3, 4)]
    >>> repeated[0].flatten().tolist()  # member-fastest: field 0's three members first
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    return tuple(f.repeat_interleave(repeats, dim=0) for f in features)


def select_features(features: TaskFeatures, index: Tensor) -> TaskFeatures:
    """Rows ``index`` (1-D integer tensor) of every tensor of ``features``.

    Parameters
    ----------
    features : TaskFeatures
        Task features (a tuple of tensors, batch first).
    index : Tensor
        1-D integer tensor of row numbers; moved to each feature's device.

    Returns
    -------
    TaskFeatures
        Tuple of tensors with ``len(index)`` rows each, in the order of ``index``.

    Examples
    --------
    >>> import torch
    >>> features = (torch.tensor([[0.0], [1.0], [2.0]]), torch.zeros(3, 5))
    >>> picked = select_features(features, torch.tensor([2, 0, 2]))
    >>> picked[0].flatten().tolist(), tuple(picked[1].shape)
    ([2.0, 0.0, 2.0], (3, 5))
    """
    return tuple(f.index_select(0, index.to(f.device)) for f in features)


def _check_option(name: str, value: object, options: tuple[object, ...]) -> None:
    if value not in options:
        raise ConfigError(
            f"{name} = {value!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in options)}"
        )


def check_fields(**fields: Tensor | None) -> None:
    """Refuse integer, boolean and complex fields (``name=tensor`` keywords; ``None`` skipped).

    The states the objectives and samplers work on (data, initial noise) are real
    floating-point fields in normalized units. As torch's own layers do, an integer tensor (raw
    counts, a ``uint8`` image) is refused with a :class:`~flexdownscale.errors.DataError` rather
    than cast: a cast would hide that it was never normalized, and a sampler returns its sample
    in ``x_init``'s dtype, so an integer ``x_init`` gave samples truncated to integers. ``cond``
    is not checked here: it goes to the network as it is (a custom
    :class:`Denoiser` may take integer conditioning; the package's backbones refuse it).
    """
    for name, x in fields.items():
        if x is not None and isinstance(x, Tensor) and not x.is_floating_point():
            if name in ("x_init", "noise"):
                fix = "draw it in floating point, e.g. objective.initial_state(torch.randn(shape))"
            else:
                fix = (
                    f"convert it with {name}.float() (after normalizing it, if it holds raw values)"
                )
            raise DataError(
                f"{name} has dtype {str(x.dtype).removeprefix('torch.')}; the objectives, "
                f"samplers and backbones take floating-point fields (normalized values): {fix}"
            )


def _given_times(t: Tensor | float, target: Tensor) -> Tensor:
    """Training times ``t`` given by the caller as a ``(B,)`` tensor in ``target``'s dtype: a
    number or a 0-d tensor is one time for every sample."""
    if isinstance(t, bool) or not isinstance(t, Tensor | float | int):
        raise ConfigError(
            f"t must be a number or a tensor of times in [0, 1], got {type(t).__name__}"
        )
    value = torch.as_tensor(t, device=target.device)
    if value.is_complex() or not bool(((value >= 0) & (value <= 1)).all()):
        # 1.5, -0.5, NaN and inf gave NaN losses (VP, IDFF) or an extrapolated path (flow)
        outside = value if value.ndim == 0 else value[~((value >= 0) & (value <= 1))][0]
        raise ConfigError(
            f"t must hold times in [0, 1] (0 and 1 included), got {outside.item()!r}; leave t "
            "out to draw them from the objective's interval"
        )
    value = value.to(target.dtype)
    if value.ndim == 0:
        return value.expand(target.shape[0])
    if tuple(value.shape) != (target.shape[0],):
        raise ShapeError(
            f"t has shape {tuple(value.shape)}; expected one time per sample, "
            f"({target.shape[0]},), or a scalar for all of them"
        )
    return value


def _checked_loss_scale(loss_scale: float) -> float:
    """``loss_scale`` as a float: a finite number > 0 (``-1`` made training climb the loss,
    ``nan`` and ``inf`` poisoned it; :func:`build_objective` refused them, the constructors
    did not)."""
    if _positive_finite_problem("loss_scale", loss_scale, ""):
        raise ConfigError(
            f"loss_scale = {loss_scale!r} must be a positive finite number (it multiplies the "
            "loss; 1 leaves it as it is)"
        )
    return float(loss_scale)


def per_sample(a: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample tensor ``a`` of shape ``(B,)`` to broadcast against ``x`` (B, ...)."""
    return a.reshape(a.shape[0], *([1] * (x.ndim - 1)))


#: A noise source: one generator, one generator per row of the batch, or None (torch's global
#: generator).
Generators = torch.Generator | Sequence[torch.Generator] | None


def _per_row(
    draw: Callable[..., Tensor],
    shape: tuple[int, ...] | torch.Size,
    generator: Generators,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """``draw(shape, generator=..., device=..., dtype=...)`` from ``generator`` (on its device),
    moved to ``device``; a sequence of generators draws row ``i`` of the leading dim from its
    ``i``-th (each row drawn as a batch of one: the numbers one generator gives one sample)."""
    shape = tuple(shape)
    if generator is None:
        return draw(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        return draw(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    if not shape or len(generator) != shape[0]:
        raise ShapeError(
            f"got {len(generator)} generators for a draw of shape {shape}; pass one "
            "torch.Generator, or one per row"
        )
    rows = [
        draw((1, *shape[1:]), generator=g, device=g.device, dtype=dtype).to(device)
        for g in generator
    ]
    return torch.cat(rows)


def randn(
    shape: tuple[int, ...] | torch.Size,
    generator: Generators,
    *,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """Standard normal draw from ``generator`` (on the generator's device; one generator per
    row of ``shape[0]`` when a sequence), moved to ``device``."""
    return _per_row(torch.randn, shape, generator, device, dtype)


def rand(
    shape: tuple[int, ...],
    generator: Generators,
    *,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """Uniform [0, 1) draw from ``generator`` (on the generator's device; one generator per
    row of ``shape[0]`` when a sequence), moved to ``device``."""
    return _per_row(torch.rand, shape, generator, device, dtype)


def _reduce(diff: Tensor, kind: LossKind) -> Tensor:
    """Mean over all but the batch dimension of ``|diff|`` (l1) or ``diff^2`` (l2): shape (B,)."""
    per_element = diff.abs() if kind == "l1" else diff.square()
    return per_element.reshape(per_element.shape[0], -1).mean(dim=1)


def call_network(
    model: Denoiser,
    x_t: Tensor,
    t: Tensor,
    cond: Tensor | None,
    phys: Tensor | None,
    task_features: TaskFeatures | None,
    expected_channels: int,
) -> Tensor:
    try:
        out = model(x_t, t, cond, phys=phys, task_features=task_features)
    except ShapeError as err:
        # only the state's channel count is about the objective; a cond error has its own fix
        if not (str(err).startswith("x_t has") and "channels" in str(err)):
            raise
        raise ShapeError(
            f"{err} (the state here has {x_t.shape[1]} channels: the network must take and "
            "return C channels, as many as the data has, for diffusion and flow matching, and "
            "2 C for IDFF: build its backbone with in_channels = C (the data and cond "
            "channels) and out_channels = C, or out_channels = 2 C for IDFF)"
        ) from err
    if (
        out.shape[0] != x_t.shape[0]
        or out.shape[2:] != x_t.shape[2:]
        or out.shape[1] != expected_channels
    ):
        raise ShapeError(
            f"the network returned shape {tuple(out.shape)} for a state of shape "
            f"{tuple(x_t.shape)}; expected {(x_t.shape[0], expected_channels, *x_t.shape[2:])}. "
            "The network must return as many channels as its state input; IDFF networks take "
            "and return a 2 C-channel state (build the backbone with in_channels = C and "
            "out_channels = 2 C)"
        )
    return out


class Objective(ABC):
    """A generative objective: its training loss and the meaning of the network output.

    Subclasses: :class:`VPDiffusion`, :class:`FlowMatching`, :class:`IDFF`. Build one from a
    :class:`~flexdownscale.config.DiffusionConfig` with :func:`build_objective`.

    Examples
    --------
    The three objectives, their default samplers and their time grids, which run from the
    noise end to the data end and increase in the integration variable ``tau``:

    >>> from flexdownscale.config import DiffusionConfig
    >>> from flexdownscale.diffusion import build_objective
    >>> objectives = [build_objective(DiffusionConfig(objective=n)) for n in ("vp", "flow", "idff")]
    >>> [o.summary for o in objectives]
    ['vp (target v)', 'flow (base gaussian)', 'idff (sigma 0.2, base gaussian)']
    >>> [o.sampler_defaults.sampler for o in objectives]
    ['ddim', 'euler', 'idff']
    >>> [o.time_grid(2).tolist() for o in objectives]
    [[1.0, 0.5, 0.0], [0.0001, 0.5, 0.9999], [0.0001, 0.5, 0.9999]]
    >>> all(bool(o.ode_time(o.time_grid(8)).diff().gt(0).all()) for o in objectives)
    True
    """

    #: ``"vp"``, ``"flow"`` or ``"idff"``
    name: str
    #: network output channels per data channel (2 for IDFF)
    channel_factor: int = 1
    #: per-sample loss multiplier
    loss_scale: float = 1.0
    #: samplers this objective works with
    samplers: tuple[str, ...] = ("euler", "heun", "sde")

    @property
    def summary(self) -> str:
        """The objective and the settings that tell its models apart, in a few words, e.g.
        ``"vp (target v)"`` or ``"flow (base coarse_plus_noise, base_sigma 0.1)"``: what a
        prediction's ``flexdownscale_objective`` attribute and ``flexdownscale evaluate``'s
        report say made it."""
        return self.name

    # -- training -------------------------------------------------------------------------
    @abstractmethod
    def loss(
        self,
        model: Denoiser,
        target: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
        x_lo: Tensor | None = None,
        t: Tensor | float | None = None,
        generator: Generators = None,
    ) -> Tensor:
        """Per-sample training loss.

        Parameters
        ----------
        model
            The network (:class:`Denoiser`).
        target
            Clean data, shape ``(B, C, ...)``: in this package the residual
            ``fine - up(coarse)`` (super-resolution) or ``next - current`` (forecasting).
        cond
            Task input passed to the network, ``(B, C_cond, ...)``, or ``None``.
        phys
            Optional scalar physical condition, ``(B,)``.
        task_features
            Precomputed ``model.encode_task(cond)``; passed through to the network.
        x_lo
            Mean of the coarse-plus-noise base (flow matching and IDFF with
            ``base="coarse_plus_noise"``), same shape as ``target``. ``None`` means zero, the
            right value in residual space (see ``docs/diffusion.md``). Ignored otherwise.
        t
            Times ``(B,)``, or one number for all samples; drawn uniformly from the
            objective's training interval when ``None``.
        generator
            Source of the random times and noises: one generator, or one per sample (each
            sample's draws from its own, as if it were drawn alone). Draw order: ``t`` (unless
            given), then the noises in the order documented by each objective.

        Returns
        -------
        Tensor
            Shape ``(B,)``: ``loss_scale`` times the mean over channels and pixels.
        """

    # -- sampling -------------------------------------------------------------------------
    @abstractmethod
    def time_grid(self, steps: int, *, device: torch.device | str | None = None) -> Tensor:
        """Network times ``(steps + 1,)`` (float64) from the noise end to the data end.

        Uniform in ``t``: VP from 1 to 0; flow matching and IDFF from ``t_min`` to ``t_max``.

        Parameters
        ----------
        steps : int
            Number of sampler steps (intervals of the grid).
        device : torch.device, str or None, default None
            Device of the returned grid (``None``: torch's default device).

        Returns
        -------
        Tensor
            The ``steps + 1`` grid times, float64.
        """

    @abstractmethod
    def ode_time(self, t: Tensor) -> Tensor:
        """The integration variable ``tau(t)``, increasing from noise to data.

        VP: ``tau = -phi(t)`` with ``phi = atan2(sigma, alpha)``; flow matching and IDFF:
        ``tau = t``.

        Parameters
        ----------
        t : Tensor
            Network times in [0, 1], any shape.

        Returns
        -------
        Tensor
            ``tau(t)``, same shape and dtype as ``t``.
        """

    @abstractmethod
    def initial_state(self, noise: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Map a standard normal draw to a sample of the base distribution.

        Parameters
        ----------
        noise : Tensor
            Standard normal draw ``(B, C, ...)``.
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base (flow matching and IDFF with
            ``base="coarse_plus_noise"``), broadcastable to ``noise``; ``None`` is zero.
            Ignored otherwise.

        Returns
        -------
        Tensor
            The initial sampler state, shape of ``noise``: ``noise`` itself for VP and the
            gaussian base, ``x_lo + base_sigma * noise`` for the coarse-plus-noise base.
        """

    @abstractmethod
    def velocity(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Probability-flow ODE drift ``dx / dtau`` from the network output ``out`` at ``(x, t)``.

        ``t`` is a per-sample tensor broadcastable to ``x`` (shape ``(B, 1, ...)``).

        Parameters
        ----------
        out : Tensor
            Network output at ``(x, t)``, ``(B, C, ...)`` (IDFF: ``(B, 2 C, ...)``).
        x : Tensor
            Current state ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``x``; ``None`` is zero.

        Returns
        -------
        Tensor
            ``dx / dtau``, shape of ``x``.
        """

    @abstractmethod
    def score(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """``grad_x log p_t(x)`` of the path's marginal, derived from the network output.

        Parameters
        ----------
        out : Tensor
            Network output at ``(x, t)``, ``(B, C, ...)`` (IDFF: ``(B, 2 C, ...)``).
        x : Tensor
            Current state ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``x``; ``None`` is zero.

        Returns
        -------
        Tensor
            The score, shape of ``x`` (used by :func:`~flexdownscale.diffusion.sample_sde`).
        """

    @abstractmethod
    def denoise(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Prediction of the data end of the path from ``(x, t)`` (posterior mean).

        Parameters
        ----------
        out : Tensor
            Network output at ``(x, t)``, ``(B, C, ...)`` (IDFF: ``(B, 2 C, ...)``).
        x : Tensor
            Current state ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``x``; ``None`` is zero.

        Returns
        -------
        Tensor
            The data-end estimate (VP: ``x0_hat``; flow matching and IDFF: ``x1_hat``), shape of
            ``x``.
        """

    @abstractmethod
    def noise_variance(self, t: Tensor) -> Tensor:
        """Variance of the noise the path carries at ``t`` (VP: ``sigma_t^2``; flow matching:
        ``((1 - t) b)^2`` with ``b`` the base's standard deviation; IDFF adds ``s_t^2``).

        The scale of the marginal's narrowest directions: :func:`~flexdownscale.diffusion.
        sample_sde` measures its Langevin strength in it.

        Parameters
        ----------
        t : Tensor
            Network time(s) in [0, 1], any shape.

        Returns
        -------
        Tensor
            The variance, shape of ``t``.
        """

    @property
    @abstractmethod
    def sampler_defaults(self) -> SamplerConfig:
        """Default sampler settings for models trained with this objective."""

    def network_time(self, t: Tensor) -> Tensor:
        """Time passed to the network (identity: every objective feeds its own ``t``).

        Parameters
        ----------
        t : Tensor
            Grid time(s) in [0, 1].

        Returns
        -------
        Tensor
            ``t`` itself.
        """
        return t

    def network_input(self, x: Tensor) -> Tensor:
        """State passed to the network: ``x`` itself (IDFF: ``x`` padded with zeros to ``2 C``).

        Parameters
        ----------
        x : Tensor
            Sampler state ``(B, C, ...)``.

        Returns
        -------
        Tensor
            The network input, ``(B, channel_factor * C, ...)``.
        """
        return x


class VPDiffusion(Objective):
    """Variance-preserving diffusion with the cosine log-SNR schedule; the network predicts ``v``.

    ``z_t = alpha_t x + sigma_t eps`` with ``t ~ U(0, 1)`` (``t = 0`` data, ``t = 1`` noise) and
    ``v = alpha eps - sigma x``. The ``target`` option only changes the loss: ``"v"`` compares
    ``v_hat`` with ``v``; ``"eps"`` compares ``eps_hat = alpha v_hat + sigma z`` with ``eps``
    (a ``v`` loss weighted by ``alpha`` (l1) or ``alpha^2`` (l2)); ``"x"`` compares
    ``x0_hat = alpha z - sigma v_hat`` with ``x`` (weighted by ``sigma`` or ``sigma^2``).
    Samplers always read the output as ``v``. Noise draw order: ``t``, then ``eps``.

    Parameters
    ----------
    schedule : CosineSchedule or None, default None
        The log-SNR schedule (``None``: ``CosineSchedule()``).
    target : {"v", "eps", "x"}, default "v"
        ``"v"``, ``"eps"`` or ``"x"``.
    loss : {"l1", "l2"}, default "l1"
        ``"l1"`` (reference default) or ``"l2"``. With l1 the network learns conditional
        medians; every sampler reads them as means (they coincide for symmetric posteriors).
    loss_scale : float, default 1.0
        Multiplies the per-sample loss.

    Examples
    --------
    The network's output is read as ``v``: the true ``v`` of a noisy state gives back its
    clean field and its score ``-eps / sigma``:

    >>> import torch
    >>> objective = VPDiffusion()
    >>> t = torch.tensor(0.3, dtype=torch.float64)
    >>> alpha, sigma = objective.alpha_sigma(t)
    >>> x = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> eps = torch.tensor([0.3, 2.0], dtype=torch.float64)
    >>> z, v = alpha * x + sigma * eps, alpha * eps - sigma * x
    >>> torch.allclose(objective.denoise(v, z, t), x)
    True
    >>> torch.allclose(objective.score(v, z, t), -eps / sigma)
    True

    A network that knows the data are all 2 (it returns the exact ``E[v | z]``) has zero
    loss, one value per sample:

    >>> def oracle(z, t, cond=None, **kwargs):
    ...     alpha, sigma = objective.alpha_sigma(t.reshape(-1, 1, 1, 1))
    ...     return alpha * (z - 2.0 * alpha) / sigma - 2.0 * sigma
    >>> g = torch.Generator().manual_seed(0)
    >>> loss = objective.loss(oracle, torch.full((3, 1, 8, 8), 2.0), t=0.5, generator=g)
    >>> loss.shape, bool(loss.max() < 1e-5)
    (torch.Size([3]), True)
    """

    name = "vp"
    samplers = ("ddim", "euler", "heun", "sde")

    def __init__(
        self,
        schedule: CosineSchedule | None = None,
        *,
        target: VPTarget = "v",
        loss: LossKind = "l1",
        loss_scale: float = 1.0,
    ) -> None:
        _check_option("target", target, get_args(VPTarget))
        _check_option("loss", loss, get_args(LossKind))
        self.schedule = schedule if schedule is not None else CosineSchedule()
        self.target = target
        self.loss_kind = loss
        self.loss_scale = _checked_loss_scale(loss_scale)

    @property
    def summary(self) -> str:
        """``"vp (target v)"`` (or ``eps``, ``x``): the objective and its target."""
        return f"vp (target {self.target})"

    def __repr__(self) -> str:
        return (
            f"VPDiffusion({self.schedule!r}, target={self.target!r}, loss={self.loss_kind!r}, "
            f"loss_scale={self.loss_scale})"
        )

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, sigma)`` at ``t`` computed in float64 and returned in ``t``'s dtype.

        Parameters
        ----------
        t : Tensor
            Times in [0, 1], any shape (``0`` the data end, ``1`` the noise end).

        Returns
        -------
        alpha, sigma : tuple of Tensor
            Signal and noise scales of ``z_t = alpha x + sigma eps``, each of ``t``'s shape and
            dtype (see :meth:`CosineSchedule.alpha_sigma`).
        """
        alpha, sigma = self.schedule.alpha_sigma(t.to(torch.float64))
        return alpha.to(t.dtype), sigma.to(t.dtype)

    def loss(
        self,
        model: Denoiser,
        target: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
        x_lo: Tensor | None = None,
        t: Tensor | float | None = None,
        generator: Generators = None,
    ) -> Tensor:
        """Per-sample VP loss at ``z = alpha_t x + sigma_t eps``, the output read as ``v_hat``.

        ``target = "v"``: ``|v_hat - v|^p`` with ``v = alpha_t eps - sigma_t x``; ``"eps"``:
        ``|alpha_t v_hat + sigma_t z - eps|^p``; ``"x"``: ``|alpha_t z - sigma_t v_hat - x|^p``
        (``p`` = 1 for l1, 2 for l2), averaged over channels and pixels.

        Parameters
        ----------
        model : Denoiser
            The network; it receives ``(z, t, cond, phys=..., task_features=...)``.
        target : Tensor
            Clean data ``x`` ``(B, C, ...)`` (in this package the residual).
        cond : Tensor or None, default None
            Task input passed to the network, ``(B, C_cond, ...)``.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``, passed to the network.
        task_features : TaskFeatures or None, default None
            Precomputed ``model.encode_task(cond)``, passed to the network.
        x_lo : Tensor or None, default None
            Unused (VP has no coarse-plus-noise base).
        t : Tensor, float or None, default None
            Times ``(B,)``, or one number for all samples; ``None`` draws them from ``U(0, 1)``.
        generator : torch.Generator or None, default None
            Source of the random draws, in the order ``t`` (unless given), then ``eps``.

        Returns
        -------
        Tensor
            Shape ``(B,)``: ``loss_scale`` times the mean over channels and pixels.
        """
        check_fields(target=target)
        batch = target.shape[0]
        if t is None:
            t = rand((batch,), generator, device=target.device, dtype=target.dtype)
        else:
            t = _given_times(t, target)
        eps = randn(target.shape, generator, device=target.device, dtype=target.dtype)
        alpha, sigma = self.alpha_sigma(t.to(target.dtype))
        alpha, sigma = per_sample(alpha, target), per_sample(sigma, target)
        z = alpha * target + sigma * eps
        v_hat = call_network(model, z, t, cond, phys, task_features, target.shape[1])
        if self.target == "v":
            diff = v_hat - (alpha * eps - sigma * target)
        elif self.target == "eps":
            diff = (alpha * v_hat + sigma * z) - eps
        else:
            diff = (alpha * z - sigma * v_hat) - target
        return self.loss_scale * _reduce(diff, self.loss_kind)

    def time_grid(self, steps: int, *, device: torch.device | str | None = None) -> Tensor:
        """Uniform network times from ``t = 1`` (noise) to ``t = 0`` (data), float64.

        Parameters
        ----------
        steps : int
            Number of sampler steps (intervals of the grid).
        device : torch.device, str or None, default None
            Device of the returned grid (``None``: torch's default device).

        Returns
        -------
        Tensor
            ``linspace(1, 0, steps + 1)``, shape ``(steps + 1,)``.
        """
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)

    def ode_time(self, t: Tensor) -> Tensor:
        """``tau = -phi(t)`` with ``phi = atan2(sigma_t, alpha_t)`` (:meth:`CosineSchedule.angle`).

        ``tau`` runs from ``-pi/2`` (noise) towards 0 (data), increasing as ``t`` decreases.

        Parameters
        ----------
        t : Tensor
            Network times in [0, 1], any shape.

        Returns
        -------
        Tensor
            ``tau(t)``, same shape and dtype as ``t``.
        """
        return -self.schedule.angle(t)

    def initial_state(self, noise: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """The VP base is ``N(0, I)``: the initial state ``z_1`` is ``noise`` itself.

        Parameters
        ----------
        noise : Tensor
            Standard normal draw ``(B, C, ...)``.
        x_lo : Tensor or None, default None
            Unused (VP has no coarse-plus-noise base).

        Returns
        -------
        Tensor
            ``noise`` (the same tensor).
        """
        return noise

    def velocity(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Probability-flow drift ``dz / dtau = -v_hat`` (``tau = -phi``).

        With ``alpha = cos phi`` and ``sigma = sin phi`` (``alpha^2 + sigma^2 = 1``) the path
        ``z = cos(phi) x + sin(phi) eps`` has ``dz / dphi = v``, so ``E[v | z] = v_hat``
        transports the marginals; the drift does not depend on ``x`` or ``t``.

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``z`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (VP has no coarse-plus-noise base).

        Returns
        -------
        Tensor
            ``-out``, shape of ``x``.
        """
        # z(phi) = cos(phi) x + sin(phi) eps, so dz/dphi = v and dz/dtau = -v (tau = -phi).
        return -out

    def score(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """``grad log p_t(z) = -eps_hat / sigma_t = -(sigma_t z + alpha_t v_hat) / sigma_t``.

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``z`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (VP has no coarse-plus-noise base).

        Returns
        -------
        Tensor
            The score, shape of ``x``; it divides by ``sigma_t`` (infinite at ``t = 0``).
        """
        alpha, sigma = self.alpha_sigma(t)
        return -(sigma * x + alpha * out) / sigma

    def noise_variance(self, t: Tensor) -> Tensor:
        """``sigma_t^2`` of the schedule (``1 - alpha_t^2``): the variance of the path's noise.

        Parameters
        ----------
        t : Tensor
            Network time(s) in [0, 1], any shape.

        Returns
        -------
        Tensor
            ``sigma_t^2``, shape and dtype of ``t``.
        """
        return self.alpha_sigma(t)[1] ** 2

    def denoise(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Data-end estimate ``x0_hat = alpha_t z - sigma_t v_hat`` (the DDIM prediction).

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``z`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (VP has no coarse-plus-noise base).

        Returns
        -------
        Tensor
            ``x0_hat``, shape of ``x``.
        """
        alpha, sigma = self.alpha_sigma(t)
        return alpha * x - sigma * out

    @property
    def sampler_defaults(self) -> SamplerConfig:
        """``SamplerConfig(sampler="ddim", steps=2)``: two deterministic DDIM steps, as FLEX."""
        return SamplerConfig(sampler="ddim", steps=2)


class _BridgeBase(Objective):
    """Shared parts of flow matching and IDFF: base distribution and time interval."""

    def __init__(
        self,
        *,
        base: Base = "gaussian",
        base_sigma: float = 0.1,
        t_min: float = 1e-4,
        t_max: float = 1.0 - 1e-4,
        loss: LossKind = "l2",
        loss_scale: float = 1.0,
    ) -> None:
        _check_option("base", base, get_args(Base))
        _check_option("loss", loss, get_args(LossKind))
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ConfigError(
                f"t_min = {t_min}, t_max = {t_max} must satisfy 0 <= t_min < t_max <= 1 "
                "(the MHD trainer uses 1e-4 and 1 - 1e-4)"
            )
        if base == "coarse_plus_noise":
            # inf gave NaN losses and an OverflowError in sample_euler; 1e-300 infinite scores
            problem = _noise_level_problem("base_sigma", base_sigma, 0.1)
            if problem:
                raise ConfigError(f"{problem}; it is the coarse_plus_noise base's noise level")
        self.base = base
        self.base_sigma = float(base_sigma)
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.loss_kind = loss
        self.loss_scale = _checked_loss_scale(loss_scale)

    def _base_std(self) -> float:
        return 1.0 if self.base == "gaussian" else self.base_sigma

    def _base_words(self) -> str:
        if self.base == "gaussian":
            return "base gaussian"
        return f"base {self.base}, base_sigma {self.base_sigma:g}"

    @property
    def summary(self) -> str:
        """``"flow (base gaussian)"`` or ``"flow (base coarse_plus_noise, base_sigma 0.1)"``:
        the objective and its base distribution."""
        return f"{self.name} ({self._base_words()})"

    def noise_variance(self, t: Tensor) -> Tensor:
        """``((1 - t) b)^2``, ``b`` the base's standard deviation (1 gaussian, ``base_sigma``).

        The base noise ``x0`` enters ``x_t`` with weight ``1 - t`` (IDFF adds ``s_t^2``).

        Parameters
        ----------
        t : Tensor
            Network time(s) in [0, 1], any shape.

        Returns
        -------
        Tensor
            The variance, shape of ``t``; 0 at ``t = 1``.
        """
        return ((1 - t) * self._base_std()) ** 2

    def _base_mean(self, x: Tensor, x_lo: Tensor | None) -> Tensor | float:
        if self.base == "gaussian" or x_lo is None:
            return 0.0
        return x_lo

    def initial_state(self, noise: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """``x0 = noise`` (gaussian) or ``x0 = x_lo + base_sigma * noise`` (coarse_plus_noise).

        Parameters
        ----------
        noise : Tensor
            Standard normal draw ``(B, C, ...)``.
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``noise``; ``None`` is zero
            (the residual-space value). Ignored for the gaussian base.

        Returns
        -------
        Tensor
            The base draw ``x0``, shape of ``noise``.
        """
        return self._base_mean(noise, x_lo) + self._base_std() * noise

    def _draw(
        self,
        target: Tensor,
        t: Tensor | float | None,
        x_lo: Tensor | None,
        generator: Generators,
    ) -> tuple[Tensor, Tensor]:
        if t is None:
            u = rand((target.shape[0],), generator, device=target.device, dtype=target.dtype)
            t = self.t_min + (self.t_max - self.t_min) * u
        else:
            t = _given_times(t, target)
        noise = randn(target.shape, generator, device=target.device, dtype=target.dtype)
        return t.to(target.dtype), self.initial_state(noise, x_lo=x_lo)

    def time_grid(self, steps: int, *, device: torch.device | str | None = None) -> Tensor:
        """Uniform network times from ``t_min`` (the base) to ``t_max`` (the data), float64.

        Parameters
        ----------
        steps : int
            Number of sampler steps (intervals of the grid).
        device : torch.device, str or None, default None
            Device of the returned grid (``None``: torch's default device).

        Returns
        -------
        Tensor
            ``linspace(t_min, t_max, steps + 1)``, shape ``(steps + 1,)``.
        """
        return torch.linspace(self.t_min, self.t_max, steps + 1, dtype=torch.float64, device=device)

    def ode_time(self, t: Tensor) -> Tensor:
        """``tau = t``: the bridge is integrated in its own time, which increases to the data.

        Parameters
        ----------
        t : Tensor
            Network times in [0, 1], any shape.

        Returns
        -------
        Tensor
            ``t`` itself.
        """
        return t


class FlowMatching(_BridgeBase):
    """Flow matching on the straight path ``x_t = (1 - t) x0 + t x1``; the network predicts ``x1 - x0``.

    ``x0`` is drawn from the base: ``"gaussian"`` (``N(0, I)``) or ``"coarse_plus_noise"``
    (``x_lo + base_sigma N(0, I)``); ``x1`` is the data; ``t ~ U(t_min, t_max)`` for training, and
    samplers walk ``t_min -> t_max``. Noise draw order: ``t``, then the base noise.

    In residual space ``x_lo`` is zero: the absolute-space coarse-plus-noise base
    ``up(coarse) + s N(0, I)`` minus the residual's base ``up(coarse)``. The coarse-plus-noise base
    is then a narrow Gaussian around "no correction" and the two formulations are the same path
    shifted by the constant ``up(coarse)`` (see ``docs/diffusion.md``).

    Scores used by the SDE sampler (derived in ``docs/diffusion.md``):
    gaussian ``s = -(x - t v) / (1 - t)``, coarse_plus_noise
    ``s = -(x - t v - x_lo) / ((1 - t) base_sigma^2)``.

    Parameters
    ----------
    base : {"gaussian", "coarse_plus_noise"}, default "gaussian"
        The base distribution ``x0`` is drawn from: ``N(0, I)``, or ``x_lo + base_sigma N(0, I)``
        around the coarse field.
    base_sigma : float, default 0.1
        Standard deviation of the coarse-plus-noise base (positive there; unused by the gaussian
        base).
    t_min : float, default 1e-4
        Start of the time interval (``0 <= t_min < t_max``): training draws
        ``t ~ U(t_min, t_max)`` and the samplers walk from ``t_min`` to ``t_max``.
    t_max : float, default 1 - 1e-4
        End of the time interval (``t_max <= 1``).
    loss : {"l1", "l2"}, default "l2"
        The per-sample loss ``|v_hat - (x1 - x0)|^p`` with ``p = 1`` or ``2``.
    loss_scale : float, default 1.0
        Multiplies the per-sample loss.

    Raises
    ------
    ConfigError
        For an unknown ``base`` or ``loss``, a time interval outside the rule above, or
        ``base_sigma <= 0`` with the coarse-plus-noise base.

    Examples
    --------
    On the straight path the true output ``x1 - x0`` carries ``x_t`` to the data ``x1``:

    >>> import torch
    >>> objective = FlowMatching()
    >>> x0, x1 = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 2.0])
    >>> t = torch.tensor(0.25)
    >>> x_t = (1 - t) * x0 + t * x1
    >>> objective.denoise(x1 - x0, x_t, t)
    tensor([2., 2.])

    A network that knows the data are all 2 (it returns the exact velocity
    ``(2 - x_t) / (1 - t)``) has zero loss, one value per sample:

    >>> def oracle(x_t, t, cond=None, **kwargs):
    ...     return (2.0 - x_t) / (1 - t.reshape(-1, 1, 1, 1))
    >>> g = torch.Generator().manual_seed(0)
    >>> loss = objective.loss(oracle, torch.full((3, 1, 8, 8), 2.0), generator=g)
    >>> loss.shape, bool(loss.max() < 1e-10)
    (torch.Size([3]), True)

    The coarse-plus-noise base is a narrow Gaussian around ``x_lo``:

    >>> narrow = FlowMatching(base="coarse_plus_noise", base_sigma=0.1)
    >>> narrow.initial_state(torch.ones(2), x_lo=torch.tensor([3.0, -3.0]))
    tensor([ 3.1000, -2.9000])
    """

    name = "flow"

    def __repr__(self) -> str:
        return (
            f"FlowMatching(base={self.base!r}, base_sigma={self.base_sigma}, t_min={self.t_min}, "
            f"t_max={self.t_max}, loss={self.loss_kind!r}, loss_scale={self.loss_scale})"
        )

    def loss(
        self,
        model: Denoiser,
        target: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
        x_lo: Tensor | None = None,
        t: Tensor | float | None = None,
        generator: Generators = None,
    ) -> Tensor:
        """Per-sample flow-matching loss ``|v_hat - (x1 - x0)|^p`` at ``x_t = (1 - t) x0 + t x1``.

        ``x0`` is a draw of the base, ``x1 = target`` and ``p`` is 1 (l1) or 2 (l2); the mean is
        over channels and pixels.

        Parameters
        ----------
        model : Denoiser
            The network; it receives ``(x_t, t, cond, phys=..., task_features=...)``.
        target : Tensor
            Clean data ``x1`` ``(B, C, ...)`` (in this package the residual).
        cond : Tensor or None, default None
            Task input passed to the network, ``(B, C_cond, ...)``.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``, passed to the network.
        task_features : TaskFeatures or None, default None
            Precomputed ``model.encode_task(cond)``, passed to the network.
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``target``; ``None`` is zero
            (the residual-space value). Ignored for the gaussian base.
        t : Tensor, float or None, default None
            Times ``(B,)``, or one number for all samples; ``None`` draws them from ``U(t_min, t_max)``.
        generator : torch.Generator or None, default None
            Source of the random draws, in the order ``t`` (unless given), then the base noise.

        Returns
        -------
        Tensor
            Shape ``(B,)``: ``loss_scale`` times the mean over channels and pixels.
        """
        check_fields(target=target)
        t, x0 = self._draw(target, t, x_lo, generator)
        tb = per_sample(t, target)
        x_t = (1 - tb) * x0 + tb * target
        v_hat = call_network(model, x_t, t, cond, phys, task_features, target.shape[1])
        return self.loss_scale * _reduce(v_hat - (target - x0), self.loss_kind)

    def velocity(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Probability-flow drift ``dx / dt = v_hat``: the network output itself (``tau = t``).

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` (the predicted ``x1 - x0``) at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (the velocity does not depend on the base).

        Returns
        -------
        Tensor
            ``out``, shape of ``x``.
        """
        return out

    def score(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Score of the path's marginal from ``E[x0 | x_t] = x_t - t v_hat``.

        Gaussian base: ``-(x - t v_hat) / (1 - t)``; coarse-plus-noise base:
        ``-(x - t v_hat - x_lo) / ((1 - t) base_sigma^2)`` (derived in ``docs/diffusion.md``).

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` (the predicted ``x1 - x0``) at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``x``; ``None`` is zero.
            Ignored for the gaussian base.

        Returns
        -------
        Tensor
            The score, shape of ``x``; it divides by ``1 - t`` (infinite at ``t = 1``).
        """
        # E[x0 | x_t] = x_t - t v_hat; x_t | x0-noise is Gaussian around (1 - t) mean0 + t x1.
        x0_hat = x - t * out
        std = self._base_std()
        return -(x0_hat - self._base_mean(x, x_lo)) / ((1 - t) * std**2)

    def denoise(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Data-end estimate ``x1_hat = x_t + (1 - t) v_hat`` (one Euler step to ``t = 1``).

        Parameters
        ----------
        out : Tensor
            Network output ``v_hat`` (the predicted ``x1 - x0``) at ``(x, t)``, ``(B, C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (the estimate does not depend on the base).

        Returns
        -------
        Tensor
            ``x1_hat``, shape of ``x``.
        """
        return x + (1 - t) * out

    @property
    def sampler_defaults(self) -> SamplerConfig:
        """``SamplerConfig(sampler="euler", steps=50)``: 50 Euler steps of the flow ODE."""
        return SamplerConfig(sampler="euler", steps=50)


class IDFF(_BridgeBase):
    """IDFF-style stochastic bridge with a data-endpoint head and a score head.

    Path: ``x_t = (1 - t) x0 + t x1 + s_t eps`` with ``s_t = sigma sqrt(t (1 - t))``, ``x0`` from
    the base (as in :class:`FlowMatching`), ``x1`` the data, ``t ~ U(t_min, t_max)``.

    The network has ``2 C`` channels in and out, so that any backbone built with
    ``out_channels = 2 C`` serves unchanged: it receives ``cat([x_t, 0])`` (the last ``C`` input
    channels are zeros) and returns ``x1_hat`` (data-endpoint prediction, first ``C`` channels)
    and ``s_hat``, the score ``grad log p_t(x)`` of the bridge marginal (last ``C``). The score
    head is trained through the noise it implies, ``eps_hat = -s_t s_hat`` (denoising score
    matching with the usual ``s_t^2`` weighting, so no ``1 / s_t`` blows up near the ends).
    Loss per sample::

        loss_scale * [ mean |x1_hat - x1|^p / (1 - t + c) + mean |s_t s_hat + eps|^p ]

    Probability-flow drift (derived in ``docs/diffusion.md``; exact for any base)::

        dx/dt = (x1_hat - x) / (1 - t) - sigma^2 / 2 * s_hat

    Noise draw order: ``t``, then the base noise, then ``eps``.

    Parameters
    ----------
    sigma : float, default 0.2
        Bridge noise level ``sigma``, positive.
    c : float, default 0.01
        Regulariser of the ``1 / (1 - t + c)`` weighting of the data-endpoint loss, positive.
    base, base_sigma, t_min, t_max, loss, loss_scale
        As in :class:`FlowMatching` (same defaults); IDFF needs ``0 < t_min`` and ``t_max < 1``.

    Examples
    --------
    The bridge noise ``s_t = sigma sqrt(t (1 - t))`` vanishes at both ends; the network sees
    and returns ``2 C`` channels:

    >>> import torch
    >>> objective = IDFF()
    >>> objective.bridge_std(torch.tensor([0.0, 0.5, 1.0]))
    tensor([0.0000, 0.1000, 0.0000])
    >>> objective.network_input(torch.ones(2, 3, 16, 16)).shape
    torch.Size([2, 6, 16, 16])
    >>> x1_hat, s_hat = objective.split(torch.arange(4.0).reshape(1, 4, 1, 1))
    >>> x1_hat.flatten().tolist(), s_hat.flatten().tolist()
    ([0.0, 1.0], [2.0, 3.0])
    >>> objective.channel_factor, objective.sampler_defaults.sampler
    (2, 'idff')
    """

    name = "idff"
    channel_factor = 2
    samplers = ("idff", "euler", "heun", "sde")

    def __init__(
        self,
        *,
        sigma: float = 0.2,
        c: float = 0.01,
        base: Base = "gaussian",
        base_sigma: float = 0.1,
        t_min: float = 1e-4,
        t_max: float = 1.0 - 1e-4,
        loss: LossKind = "l2",
        loss_scale: float = 1.0,
    ) -> None:
        super().__init__(
            base=base,
            base_sigma=base_sigma,
            t_min=t_min,
            t_max=t_max,
            loss=loss,
            loss_scale=loss_scale,
        )
        # inf passed "> 0": sigma = inf gave NaN losses, c = inf a data term of weight 0
        problem = _noise_level_problem("idff_sigma", sigma, 0.2) or _positive_finite_problem(
            "idff_c", c, "the regulariser of the 1 / (1 - t + c) data weight; the default is 0.01"
        )
        if problem:
            raise ConfigError(problem)
        if t_min <= 0.0 or t_max >= 1.0:
            raise ConfigError(
                f"IDFF needs 0 < t_min and t_max < 1 (its drift divides by sqrt(t (1 - t))); "
                f"got t_min = {t_min}, t_max = {t_max}"
            )
        self.sigma = float(sigma)
        self.c = float(c)

    @property
    def summary(self) -> str:
        """``"idff (sigma 0.2, base gaussian)"``: the objective, its bridge noise and base."""
        return f"idff (sigma {self.sigma:g}, {self._base_words()})"

    def __repr__(self) -> str:
        return (
            f"IDFF(sigma={self.sigma}, c={self.c}, base={self.base!r}, base_sigma={self.base_sigma}, "
            f"t_min={self.t_min}, t_max={self.t_max}, loss={self.loss_kind!r}, "
            f"loss_scale={self.loss_scale})"
        )

    def bridge_std(self, t: Tensor) -> Tensor:
        """``s_t = sigma sqrt(t (1 - t))``.

        Parameters
        ----------
        t : Tensor
            Times in [0, 1], any shape.

        Returns
        -------
        Tensor
            Standard deviation ``s_t`` of the bridge noise, shape of ``t``; 0 at both ends.
        """
        return self.sigma * torch.sqrt(t * (1 - t))

    def noise_variance(self, t: Tensor) -> Tensor:
        """``((1 - t) b)^2 + s_t^2``: the base noise (standard deviation ``b``) and the bridge's.

        Parameters
        ----------
        t : Tensor
            Network time(s) in [0, 1], any shape.

        Returns
        -------
        Tensor
            The variance, shape of ``t``; ``b^2`` at ``t = 0`` and 0 at ``t = 1``.
        """
        return ((1 - t) * self._base_std()) ** 2 + self.bridge_std(t) ** 2

    def network_input(self, x: Tensor) -> Tensor:
        """``cat([x, zeros_like(x)])`` along channels: the network's ``2 C``-channel input.

        Parameters
        ----------
        x : Tensor
            Sampler state ``(B, C, ...)``.

        Returns
        -------
        Tensor
            ``(B, 2 C, ...)``, the last ``C`` channels zero.
        """
        return torch.cat([x, torch.zeros_like(x)], dim=1)

    @staticmethod
    def split(out: Tensor) -> tuple[Tensor, Tensor]:
        """Split a ``2 C``-channel output into ``(x1_hat, s_hat)``.

        Parameters
        ----------
        out : Tensor
            Network output ``(B, 2 C, ...)``.

        Returns
        -------
        x1_hat, s_hat : tuple of Tensor
            The first ``C`` channels (data-endpoint prediction) and the last ``C`` (score of
            the bridge marginal), each ``(B, C, ...)``.
        """
        channels = out.shape[1] // 2
        return out[:, :channels], out[:, channels:]

    def loss(
        self,
        model: Denoiser,
        target: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
        x_lo: Tensor | None = None,
        t: Tensor | float | None = None,
        generator: Generators = None,
    ) -> Tensor:
        """Per-sample IDFF loss at ``x_t = (1 - t) x0 + t x1 + s_t eps``.

        ``mean |x1_hat - x1|^p / (1 - t + c) + mean |s_t s_hat + eps|^p`` with ``(x1_hat, s_hat)``
        the two halves of the network output at ``cat([x_t, 0])`` and ``p`` 1 (l1) or 2 (l2).

        Parameters
        ----------
        model : Denoiser
            The network; it receives ``(cat([x_t, 0]), t, cond, phys=..., task_features=...)``.
        target : Tensor
            Clean data ``x1`` ``(B, C, ...)`` (in this package the residual).
        cond : Tensor or None, default None
            Task input passed to the network, ``(B, C_cond, ...)``.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``, passed to the network.
        task_features : TaskFeatures or None, default None
            Precomputed ``model.encode_task(cond)``, passed to the network.
        x_lo : Tensor or None, default None
            Mean of the coarse-plus-noise base, broadcastable to ``target``; ``None`` is zero
            (the residual-space value). Ignored for the gaussian base.
        t : Tensor, float or None, default None
            Times ``(B,)``, or one number for all samples; ``None`` draws them from ``U(t_min, t_max)``.
        generator : torch.Generator or None, default None
            Source of the random draws, in the order ``t`` (unless given), the base noise,
            then ``eps``.

        Returns
        -------
        Tensor
            Shape ``(B,)``: ``loss_scale`` times the sum of the data and the score terms.
        """
        check_fields(target=target)
        t, x0 = self._draw(target, t, x_lo, generator)
        eps = randn(target.shape, generator, device=target.device, dtype=target.dtype)
        tb = per_sample(t, target)
        x_t = (1 - tb) * x0 + tb * target + self.bridge_std(tb) * eps
        out = call_network(
            model,
            self.network_input(x_t),
            t,
            cond,
            phys,
            task_features,
            self.channel_factor * target.shape[1],
        )
        x1_hat, score = self.split(out)
        weight = 1.0 / (1.0 - t + self.c)
        data_term = weight * _reduce(x1_hat - target, self.loss_kind)
        noise_term = _reduce(self.bridge_std(tb) * score + eps, self.loss_kind)
        return self.loss_scale * (data_term + noise_term)

    def velocity(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """Probability-flow drift ``dx / dt = (x1_hat - x) / (1 - t) - sigma^2 / 2 * s_hat``.

        Exact for any base (derived in ``docs/diffusion.md``); ``tau = t``.

        Parameters
        ----------
        out : Tensor
            Network output ``cat([x1_hat, s_hat])`` at ``(x, t)``, ``(B, 2 C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused (the drift does not depend on the base's mean).

        Returns
        -------
        Tensor
            The drift, ``(B, C, ...)``; it divides by ``1 - t`` (``t_max < 1``).
        """
        x1_hat, score = self.split(out)
        return (x1_hat - x) / (1 - t) - 0.5 * self.sigma**2 * score

    def score(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """The score head ``s_hat``: the last ``C`` channels of the output.

        Parameters
        ----------
        out : Tensor
            Network output ``cat([x1_hat, s_hat])`` at ``(x, t)``, ``(B, 2 C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused.

        Returns
        -------
        Tensor
            ``s_hat``, an estimate of ``grad log p_t(x)`` of the bridge marginal, ``(B, C, ...)``.
        """
        return self.split(out)[1]

    def denoise(self, out: Tensor, x: Tensor, t: Tensor, *, x_lo: Tensor | None = None) -> Tensor:
        """The data-endpoint head ``x1_hat``: the first ``C`` channels of the output.

        Parameters
        ----------
        out : Tensor
            Network output ``cat([x1_hat, s_hat])`` at ``(x, t)``, ``(B, 2 C, ...)``.
        x : Tensor
            Current state ``x_t`` ``(B, C, ...)``.
        t : Tensor
            Network time(s) in [0, 1], broadcastable to ``x`` (a scalar or ``(B, 1, ...)``).
        x_lo : Tensor or None, default None
            Unused.

        Returns
        -------
        Tensor
            ``x1_hat``, ``(B, C, ...)``.
        """
        return self.split(out)[0]

    @property
    def sampler_defaults(self) -> SamplerConfig:
        """``SamplerConfig(sampler="idff", steps=10)``: 10 bridge-ODE steps (``g1 = g2 = 0``)."""
        return SamplerConfig(sampler="idff", steps=10)


#: The ``DiffusionConfig`` settings each objective reads (:func:`build_objective`); the others
#: are ignored by it (``target`` under ``objective = "flow"``), which the Trainer warns about.
_READ_BY: dict[str, tuple[str, ...]] = {
    "target": ("vp",),
    "logsnr_min": ("vp",),
    "logsnr_max": ("vp",),
    "shift": ("vp",),
    "base": ("flow", "idff"),
    "base_sigma": ("flow", "idff"),
    "t_min": ("flow", "idff"),
    "t_max": ("flow", "idff"),
    "idff_sigma": ("idff",),
    "idff_c": ("idff",),
}


def _ignored_settings(config: DiffusionConfig) -> dict[str, tuple[object, str]]:
    """The settings of ``config`` set away from their defaults that the objective it builds
    does not read: ``{name: (value, what reads it)}``, e.g. ``{"target": ("eps",
    "objective = 'vp'")}`` for a flow objective (``base_sigma`` also under the gaussian base,
    which only the coarse-plus-noise base reads).

    >>> from flexdownscale.config import DiffusionConfig
    >>> _ignored_settings(DiffusionConfig(objective="flow", target="eps", shift=2.0))
    {'target': ('eps', "objective = 'vp'"), 'shift': (2.0, "objective = 'vp'")}
    """
    default = DiffusionConfig()
    ignored: dict[str, tuple[object, str]] = {}
    for name, readers in _READ_BY.items():
        value = getattr(config, name)
        if value == getattr(default, name):
            continue
        if config.objective not in readers:
            wanted = " or ".join(repr(r) for r in readers)
            ignored[name] = (value, f"objective = {wanted}")
        elif name == "base_sigma" and config.base == "gaussian":
            ignored[name] = (value, "base = 'coarse_plus_noise'")
    return ignored


def build_objective(config: DiffusionConfig) -> Objective:
    """The objective described by a :class:`~flexdownscale.config.DiffusionConfig`.

    Parameters
    ----------
    config : DiffusionConfig
        ``objective`` picks the class (``"vp"``, ``"flow"`` or ``"idff"``); the schedule, base,
        time interval, IDFF and loss fields are passed on. ``loss = None`` takes the
        objective's own (``"l1"`` for vp, ``"l2"`` for flow and idff).

    Returns
    -------
    Objective
        A :class:`VPDiffusion`, :class:`FlowMatching` or :class:`IDFF`.

    Raises
    ------
    ConfigError
        For an unknown objective or a ``loss_scale`` that is not a positive finite number.

    Examples
    --------
    >>> from flexdownscale.config import DiffusionConfig
    >>> build_objective(DiffusionConfig(objective="flow", base="coarse_plus_noise")).base
    'coarse_plus_noise'
    """
    _check_option("objective", config.objective, ("vp", "flow", "idff"))
    scale = _checked_loss_scale(config.loss_scale)
    # the objective's own loss unless one is asked for: L1 for vp, L2 for flow and idff
    loss = config.loss or ("l1" if config.objective == "vp" else "l2")
    if config.objective == "vp":
        schedule = CosineSchedule(config.logsnr_min, config.logsnr_max, config.shift)
        return VPDiffusion(schedule, target=config.target, loss=loss, loss_scale=scale)
    common = dict(
        base=config.base,
        base_sigma=config.base_sigma,
        t_min=config.t_min,
        t_max=config.t_max,
        loss=loss,
        loss_scale=scale,
    )
    if config.objective == "flow":
        return FlowMatching(**common)
    return IDFF(sigma=config.idff_sigma, c=config.idff_c, **common)
