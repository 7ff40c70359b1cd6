"""The generative engine: schedules, objectives, samplers and the residual wrapper.

Torch only; knows no backbone (a network is anything implementing :class:`Denoiser`).
See ``docs/diffusion.md`` for the formulation and its derivations.
"""

from __future__ import annotations

from .objectives import (
    IDFF,
    Denoiser,
    FlowMatching,
    Objective,
    TaskFeatures,
    VPDiffusion,
    build_objective,
    repeat_features,
    select_features,
)
from .residual import ResidualModel, rollout
from .samplers import (
    SAMPLER_OPTIONS,
    SAMPLERS,
    SampleResult,
    member_generators,
    resolve_sampler_options,
    sample,
    sample_ddim,
    sample_ensemble,
    sample_euler,
    sample_heun,
    sample_idff,
    sample_sde,
)
from .schedules import (
    CosineSchedule,
    eps_from_v,
    eps_from_x0,
    v_from_eps,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

__all__ = [
    "IDFF",
    "SAMPLERS",
    "SAMPLER_OPTIONS",
    "CosineSchedule",
    "Denoiser",
    "FlowMatching",
    "Objective",
    "ResidualModel",
    "SampleResult",
    "TaskFeatures",
    "VPDiffusion",
    "build_objective",
    "eps_from_v",
    "eps_from_x0",
    "member_generators",
    "repeat_features",
    "resolve_sampler_options",
    "rollout",
    "sample",
    "sample_ddim",
    "sample_ensemble",
    "sample_euler",
    "sample_heun",
    "sample_idff",
    "sample_sde",
    "select_features",
    "v_from_eps",
    "v_from_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]
