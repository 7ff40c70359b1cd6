"""The residual wrapper: any backbone becomes a generative model of ``target - base``.

Super-resolution: ``base = up(coarse)``, the coarse field already interpolated to the fine grid
by the caller (the data layer owns the interpolation); the residual is ``fine - base`` and the
task input ``cond`` is ``base`` itself. Forecasting: ``cond`` stacks the ``past_frames`` past
frames on channels (oldest first), ``base`` is the current (last) frame and the residual is
``next - current``.

Generating returns ``base + residual sample``. In residual space the coarse-plus-noise flow base
has mean zero (``x_lo = 0``), see ``docs/diffusion.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .objectives import Denoiser, Objective, TaskFeatures, check_fields
from .samplers import (
    SamplerName,
    _phys_per_field,
    cpu_items_per_call,
    derived_seed,
    member_generators,
    sample_ensemble,
    seed_of,
    warns_in_train_mode,
)

__all__ = ["ResidualModel", "rollout"]

Task = Literal["superres", "forecast"]


class ResidualModel(nn.Module):
    """A backbone that models the residual ``target - base``.

    The wrapper is itself a :class:`~flexdownscale.diffusion.objectives.Denoiser` (it forwards
    calls and ``encode_task`` to the backbone), and adds the residual bookkeeping.

    Parameters
    ----------
    backbone : Denoiser
        Any network implementing the ``Denoiser`` protocol (an ``nn.Module`` is registered as a
        submodule, so ``.to()``, ``.parameters()`` and ``state_dict()`` include it).
    task : {"superres", "forecast"}, default "superres"
        ``"superres"`` (``base = cond``, the upsampled coarse field) or ``"forecast"``
        (``base`` = the last of the ``past_frames`` frames stacked in ``cond``).
    past_frames : int, default 1
        Number of past frames stacked in ``cond`` when forecasting.

    Examples
    --------
    >>> import torch
    >>> class Zero(torch.nn.Module):  # a "network" that always predicts 0
    ...     def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
    ...         return torch.zeros_like(x_t)
    ...     def encode_task(self, cond):
    ...         return ()
    >>> from flexdownscale.diffusion import VPDiffusion
    >>> model = ResidualModel(Zero())
    >>> base = torch.ones(2, 1, 16, 16)
    >>> model.sample(VPDiffusion(), base, members=3, generator=0).shape
    torch.Size([2, 3, 1, 16, 16])
    """

    def __init__(
        self, backbone: Denoiser, *, task: Task = "superres", past_frames: int = 1
    ) -> None:
        super().__init__()
        if task not in get_args(Task):
            raise ConfigError(
                f"task = {task!r} is not a valid option; expected 'superres' or 'forecast'"
            )
        if isinstance(past_frames, bool) or not isinstance(past_frames, int) or past_frames < 1:
            raise ConfigError(f"past_frames = {past_frames!r} must be a positive integer")
        self.backbone = backbone
        self.task = task
        self.past_frames = past_frames

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
    ) -> Tensor:
        """Call the backbone (see the ``Denoiser`` protocol).

        Parameters
        ----------
        x_t : Tensor
            Noisy residual state ``(B, C, H, W)`` in normalised units (IDFF: ``2 C`` channels).
        t : Tensor
            Network times ``(B,)`` in [0, 1].
        cond : Tensor or None, default None
            Task input ``(B, C_cond, H, W)``; not needed when ``task_features`` is given.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``, for backbones built with one.
        task_features : TaskFeatures or None, default None
            Output of :meth:`encode_task`, used in place of ``cond``.

        Returns
        -------
        Tensor
            The backbone's output, shape of ``x_t``.
        """
        return self.backbone(x_t, t, cond, phys=phys, task_features=task_features)

    def encode_task(self, cond: Tensor) -> TaskFeatures:
        """The backbone's task features of ``cond`` (computed once per field by the samplers).

        Parameters
        ----------
        cond : Tensor
            Task input ``(B, C_cond, H, W)``.

        Returns
        -------
        TaskFeatures
            Tuple of tensors with the batch first, accepted by :meth:`forward` as
            ``task_features``.
        """
        return self.backbone.encode_task(cond)

    def base_of(self, cond: Tensor) -> Tensor:
        """The base field implied by ``cond``: ``cond`` (superres) or its last frame (forecast).

        Parameters
        ----------
        cond : Tensor
            Task input ``(B, C_cond, H, W)``: the upsampled coarse field (superres) or
            ``past_frames`` frames stacked on channels, oldest first (forecast).

        Returns
        -------
        Tensor
            ``cond`` itself (superres), or its last ``C_cond / past_frames`` channels, the
            newest frame (forecast), ``(B, C, H, W)``.

        Raises
        ------
        ShapeError
            When forecasting and ``C_cond`` is not a multiple of ``past_frames``.
        """
        if self.task == "superres":
            return cond
        channels, rest = divmod(cond.shape[1], self.past_frames)
        if rest:
            raise ShapeError(
                f"cond has {cond.shape[1]} channels, not a multiple of past_frames = "
                f"{self.past_frames}; stack the past frames on the channel axis"
            )
        return cond[:, cond.shape[1] - channels :]

    def residual(self, target: Tensor, base: Tensor) -> Tensor:
        """``target - base`` (shapes must match).

        Parameters
        ----------
        target : Tensor
            Fine field (superres) or next frame (forecast), ``(B, C, H, W)``.
        base : Tensor
            The base field (:meth:`base_of`), same shape.

        Returns
        -------
        Tensor
            The residual ``target - base``, same shape.

        Raises
        ------
        ShapeError
            When the shapes differ.
        """
        if target.shape != base.shape:
            raise ShapeError(
                f"target {tuple(target.shape)} and base {tuple(base.shape)} must have the same shape"
            )
        return target - base

    def loss(
        self,
        objective: Objective,
        target: Tensor,
        cond: Tensor,
        *,
        base: Tensor | None = None,
        phys: Tensor | None = None,
        generator: torch.Generator | None = None,
        network: Callable[..., Tensor] | None = None,
    ) -> Tensor:
        """Per-sample training loss ``(B,)`` of ``objective`` on the residual ``target - base``.

        Under ``DistributedDataParallel`` (or FSDP) pass the wrapper as ``network``: the loss
        must call the wrapper's forward, or DDP never averages the gradients across processes
        (each process then trains on its own gradient, silently)::

            ddp = DistributedDataParallel(model)
            loss = model.loss(objective, target, cond, network=ddp).mean()

        Parameters
        ----------
        objective : Objective
            The objective.
        target : Tensor
            Fine field (superres) or next frame (forecast), ``(B, C, H, W)``.
        cond : Tensor
            Task input, ``(B, C_cond, H, W)``.
        base : Tensor or None, default None
            Defaults to :meth:`base_of` ``(cond)``.
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``.
        generator : torch.Generator or None, default None
            Source of the random times and noises.
        network : callable or None, default None
            What the objective calls for the network's output: a wrapper of this model whose
            forward runs it (``DistributedDataParallel(model)``, FSDP, ``torch.compile(model)``);
            ``None``: the backbone itself.

        Returns
        -------
        Tensor
            Shape ``(B,)``: :meth:`Objective.loss` of the backbone on the residual (times drawn
            from the objective's training interval).
        """
        check_fields(target=target, cond=cond, base=base)
        base = self.base_of(cond) if base is None else base
        residual = self.residual(target, base)
        net = self.backbone if network is None else network
        return objective.loss(net, residual, cond, phys=phys, generator=generator)

    def sample(
        self,
        objective: Objective,
        cond: Tensor,
        *,
        base: Tensor | None = None,
        members: int = 1,
        sampler: SamplerName | None = None,
        steps: int | None = None,
        generator: torch.Generator | int | Sequence[torch.Generator] | None = None,
        noise: Tensor | None = None,
        phys: Tensor | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> Tensor:
        """Ensemble of ``base + residual`` samples, shape ``(B, members, C, H, W)``.

        Sampling is not differentiable: it runs under :func:`torch.no_grad`, and the returned
        tensor never requires grad (not even through ``base``, ``cond`` or ``noise``).

        See :func:`~flexdownscale.diffusion.samplers.sample_ensemble` for ``members``,
        ``sampler``, ``steps``, ``generator``, ``noise``, ``batch_size`` and the sampler options.

        Parameters
        ----------
        objective : Objective
            The objective the backbone was trained with.
        cond : Tensor
            Task input ``(B, C_cond, H, W)``.
        base : Tensor or None, default None
            Base field ``(B, C, H, W)`` the residual samples are added to (default:
            :meth:`base_of` ``(cond)``).
        members : int, default 1
            Ensemble size ``M``.
        sampler : {"ddim", "euler", "heun", "sde", "idff"} or None, default None
            Sampler name (``None``: the objective's default).
        steps : int or None, default None
            Number of sampler steps (``None``: the default of the objective or sampler).
        generator : torch.Generator, int, sequence of torch.Generator or None, default None
            Seed source, as in ``sample_ensemble`` (a sequence: one generator per member row).
        noise : Tensor or None, default None
            Initial standard normal noise ``(B, M, C, H, W)`` (default: drawn per member).
        phys : Tensor or None, default None
            Scalar physical condition ``(B,)``.
        batch_size : int or None, default None
            Member rows per network call (``None``: all ``B * M`` at once).

        Other Parameters
        ----------------
        **options
            Sampler options (``eta``, ``delta``, ``g1``, ``g2``).

        Returns
        -------
        Tensor
            ``base + residual`` per member, ``(B, M, C, H, W)``, in ``cond``'s dtype (float32
            when ``cond`` is not floating); it does not require grad.
        """
        with torch.no_grad():  # a block, not the decorator: warnings keep pointing at the caller
            base = self.base_of(cond) if base is None else base
            residual = sample_ensemble(
                self.backbone,
                cond,
                objective=objective,
                members=members,
                shape=tuple(base.shape),
                sampler=sampler,
                steps=steps,
                generator=generator,
                noise=noise,
                phys=phys,
                batch_size=batch_size,
                **options,
            )
            return base.unsqueeze(1).to(residual.dtype) + residual


def lead_seed(seed: int, field: int, lead: int) -> int:
    """The seed of lead ``lead`` (1-based) of field ``field`` in a rollout seeded with ``seed``.

    Member ``m`` of that lead draws from the ``m``-th generator seeded from it
    (:func:`~flexdownscale.diffusion.samplers.member_generators`), so its noise depends on
    ``(seed, field, lead, m)`` only: not on the number of members, fields or leads.
    """
    return derived_seed(seed, field, lead)


@warns_in_train_mode
def rollout(
    model: ResidualModel,
    objective: Objective,
    frames: Tensor,
    *,
    lead_steps: int,
    members: int = 1,
    sampler: SamplerName | None = None,
    steps: int | None = None,
    generator: torch.Generator | int | None = None,
    phys: Tensor | float | None = None,
    batch_size: int | None = None,
    feedback: Callable[[Tensor], Tensor] | None = None,
    on_lead: Callable[[int], None] | None = None,
    **options: Any,
) -> Tensor:
    """Autoregressive ensemble forecast: every member feeds back its own state.

    Parameters
    ----------
    model
        A forecasting :class:`ResidualModel` (``task="forecast"``).
    objective
        The objective it was trained with.
    frames
        Past frames stacked on channels, oldest first, ``(B, past_frames * C, H, W)``.
    lead_steps
        Number of autoregressive steps.
    members
        Ensemble size ``M``. All members start from ``frames``; from then on each member's
        next input is its own past frames (never the ensemble mean).
    sampler, steps
        As in :func:`~flexdownscale.diffusion.samplers.sample_ensemble`.
    generator
        An integer seed in ``[0, 2**63)``, a ``torch.Generator`` (one seed is drawn from it) or
        ``None`` (a seed from torch's global generator). Every member has its own stream at
        every lead: lead ``l`` of field ``b`` is sampled with the generator seeded by
        ``lead_seed(seed, b, l)`` (a hash of the three), and member ``m`` draws from that
        lead's ``m``-th member generator
        (:func:`~flexdownscale.diffusion.samplers.member_generators`). So member ``m`` is the
        same for any ``members > m``, the first ``k`` leads do not depend on ``lead_steps`` (a
        longer forecast extends a shorter one), field ``b`` does not depend on the other
        fields, and the random numbers do not depend on ``batch_size`` (the network's float32
        rounding does, unless ``batch_size=1``). The noise is drawn on the CPU, so it is the
        same on any device.
    phys
        Physical condition: one number for every field, or one value per field ``(B,)``.
    batch_size
        Member rows per network call. Given, the fields are sampled one after the other at
        lead 1 and the ``B * M`` member states in calls of ``batch_size`` rows from lead 2 on
        (``batch_size=1`` is bit-identical for any ``B`` and ``M``). ``None``: every field at
        once, in calls of all ``B * M`` rows on a GPU; on a CPU of as many rows as keep a call
        under :data:`~flexdownscale.diffusion.samplers.CPU_CELLS_PER_CALL` fine cells (larger
        calls leave the caches and run slower per cell): as many fields' members as fit, or,
        where one field's do not, as many of its members as fit, one at least.
    feedback
        Applied to every lead's sample, ``(M, C, H, W)`` for one field, before it becomes the
        newest past frame of the next lead (e.g. to crop and re-impose padding cells around the
        field; ``None``: the sample as it is). The returned samples are not changed by it.
    on_lead
        Called with the lead number (1 to ``lead_steps``) when that lead of a field is sampled
        (all its members), ``B * lead_steps`` calls in all; e.g. to advance a progress bar.

    Other Parameters
    ----------------
    **options
        Sampler options, as in :func:`~flexdownscale.diffusion.samplers.sample_ensemble`.

    Returns
    -------
    Tensor
        Shape ``(B, M, lead_steps, C, H, W)``; it does not require grad (sampling runs under
        :func:`torch.no_grad`, see :meth:`ResidualModel.sample`).

    Examples
    --------
    A stand-in backbone that returns the exact flow-matching velocity towards a zero residual
    makes every lead a copy of the newest frame (a persistence forecast):

    >>> import torch
    >>> from flexdownscale.diffusion import FlowMatching
    >>> class Persistence(torch.nn.Module):
    ...     def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
    ...         return -x_t / (1 - t.reshape(-1, 1, 1, 1))
    ...     def encode_task(self, cond):
    ...         return ()
    >>> model = ResidualModel(Persistence(), task="forecast", past_frames=2)
    >>> frames = torch.randn(1, 2, 16, 16)  # one field: two past frames of one channel
    >>> out = rollout(model, FlowMatching(), frames, lead_steps=3, members=2, steps=4, generator=0)
    >>> out.shape
    torch.Size([1, 2, 3, 1, 16, 16])
    >>> torch.allclose(out, frames[:, None, None, 1:], atol=1e-3)
    True
    """
    if model.task != "forecast":
        raise ConfigError("rollout needs a ResidualModel built with task='forecast'")
    if isinstance(lead_steps, bool) or not isinstance(lead_steps, int) or lead_steps < 1:
        raise ConfigError(f"lead_steps = {lead_steps!r} must be a positive integer")
    seed = seed_of(generator)
    batch = frames.shape[0]
    phys = _phys_per_field(phys, batch)  # a scalar for every field, or one per field
    common = dict(sampler=sampler, steps=steps, batch_size=batch_size, **options)

    def streams(lead: int) -> list[torch.Generator]:
        """The member generators of one lead, field after field (row ``b * M + m``)."""
        return [
            g for b in range(batch) for g in member_generators(lead_seed(seed, b, lead), members)
        ]

    # member rows per network call: the given batch_size; without one, on a GPU all B * M, on
    # a CPU as many rows as keep a call under CPU_CELLS_PER_CALL fine cells (larger calls leave
    # the caches and run slower per cell): whole fields' members where one field's fit, else
    # part of one field's members (one row at least)
    total = batch * members
    rows = batch_size or total
    if batch_size is None and frames.device.type == "cpu":
        per_call = cpu_items_per_call(frames.shape[-2] * frames.shape[-1])
        rows = min(total, members * (per_call // members) if per_call >= members else per_call)
    # lead 1: every member of a field starts from the same frames, so one task encoding per
    # field. With a batch_size, field by field (the task encoder then sees one field, whatever
    # B is); without, all fields in one call
    if batch_size is None:
        nxt = model.sample(
            objective,
            frames,
            members=members,
            phys=phys,
            generator=streams(1),
            **{**common, "batch_size": rows},
        )
    else:
        nxt = torch.cat(
            [
                model.sample(
                    objective,
                    frames[b : b + 1],
                    members=members,
                    phys=phys[b : b + 1] if phys is not None else None,
                    generator=lead_seed(seed, b, 1),
                    **common,
                )
                for b in range(batch)
            ]
        )
    nxt = nxt.flatten(0, 1)  # (B * M, C, H, W): row b * M + m is member m of field b

    def lead_done(lead: int) -> None:
        """``on_lead(lead)`` once per field (``B * lead_steps`` calls in all)."""
        if on_lead is not None:
            for _ in range(batch):
                on_lead(lead)

    lead_done(1)
    channels = nxt.shape[1]
    # the returned tensor, (B * M, lead_steps, C, H, W) as rows, filled a lead at a time: a
    # list of leads stacked at the end would hold the output twice
    out = torch.empty((total, lead_steps, *nxt.shape[1:]), dtype=nxt.dtype, device=nxt.device)
    out[:, 0] = nxt
    states = frames.repeat_interleave(members, dim=0)  # (B * M, P * C, H, W)
    member_phys = phys.repeat_interleave(members) if phys is not None else None
    for lead in range(2, lead_steps + 1):
        if feedback is not None:  # one field's members at a time, as documented
            nxt = torch.cat([feedback(part) for part in nxt.split(members)])
        states = torch.cat([states[:, channels:], nxt.to(states.dtype)], dim=1)
        # the B * M member states as B * M fields of one member each, each row with its own
        # stream, at most batch_size rows per call (the task encoder then never sees more
        # states than the network does, so batch_size=1 is bit-identical for any B and M)
        generators = streams(lead)
        nxt = torch.empty_like(out[:, 0], memory_format=torch.contiguous_format)
        for start in range(0, total, rows):
            stop = min(start + rows, total)
            nxt[start:stop] = model.sample(
                objective,
                states[start:stop],
                members=1,
                phys=member_phys[start:stop] if member_phys is not None else None,
                generator=generators[start:stop],
                **common,
            )[:, 0]
        out[:, lead - 1] = nxt
        lead_done(lead)
    # (B * M, lead_steps, C, H, W) -> (B, M, lead_steps, C, H, W), a view
    return out.reshape(batch, members, *out.shape[1:])
