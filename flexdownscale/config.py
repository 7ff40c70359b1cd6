"""Frozen configuration dataclasses, read from TOML files or plain dicts.

Every configuration object is a frozen dataclass. :func:`from_dict` builds one from a
(possibly nested) mapping, checks every value against the field's type (``Literal`` options
included) and rejects unknown keys with a close-match hint::

    >>> from flexdownscale.config import ModelConfig, from_dict
    >>> from_dict(ModelConfig, {"backbone": "flex", "preest": "small"})
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: unknown key 'preest' in [model] (ModelConfig); did you mean 'preset'? ...

:func:`apply_overrides` applies command-line style ``key.sub=value`` overrides, parsing each
value by the type of the field it replaces.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import functools
import math
import numbers
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from ._numbers import finite_real
from .errors import ConfigError

__all__ = [
    "DataConfig",
    "DiffusionConfig",
    "ModelConfig",
    "OptimConfig",
    "SamplerConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "from_toml",
    "to_dict",
]

Backbone = Literal["flex", "unet", "uvit", "dit"]
Preset = Literal["tiny", "small", "medium", "big"]
Task = Literal["superres", "forecast"]
Conditioning = Literal["weak+strong", "strong"]


class _Section:
    """Base of the configuration dataclasses: a section built in Python gets the checks of one
    read from TOML. Every field is checked against its type (``Literal`` options included) and
    normalised as :func:`from_dict` does (lists become tuples, integers of a float field floats,
    numpy numbers Python numbers), so ``TrainConfig(steps="abc")`` is the
    :class:`~flexdownscale.errors.ConfigError` that ``steps = "abc"`` in a file is."""

    def __post_init__(self) -> None:
        cls = type(self)
        hints = _type_hints(cls)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            converted = _convert(value, hints[f.name], f"{cls.__name__}.{f.name}")
            if converted is not value:
                object.__setattr__(self, f.name, converted)  # frozen: set once, while built


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Backbone architecture.

    Attributes
    ----------
    backbone : {"flex", "unet", "uvit", "dit"}, default "flex"
        ``"flex"`` (the FLEX hybrid U-Net/ViT) or a baseline: ``"unet"``, ``"uvit"``, ``"dit"``.
    preset : {"tiny", "small", "medium", "big"}, default "tiny"
        Size preset, see :mod:`flexdownscale.models.registry`.
    in_channels : int, default 1
        Number of input channels: one per variable of ``data.variables`` (training sets them
        from the variables the data load). Levels are not channels: a non-grid dimension such as
        ``level`` is a sample dimension, so the levels of a variable are separate samples
        sharing its channel and one set of normalization statistics (pooled over the levels).
        For one channel per level, split the variable into one variable per level before
        training (``u200``, ``u500``; see the data page).
    out_channels : int or None, default None
        Number of output channels; ``None``: ``in_channels``.
    task : {"superres", "forecast"}, default "superres"
        ``"superres"`` (task encoder sees the upsampled coarse field) or ``"forecast"``
        (task encoder sees ``past_frames`` stacked past frames).
    past_frames : int, default 1
        Number of past frames for the forecasting task encoder.
    conditioning : {"weak+strong", "strong"}, default "weak+strong"
        ``"weak+strong"`` (FLEX default) or ``"strong"`` only (baselines).
    physical_condition : bool or None, default None
        Whether the model takes a scalar physical parameter (e.g. Re / 40000). ``None``
        (default): training follows ``data.condition`` (true when it is set); a model built
        directly takes none. ``false`` with ``data.condition`` set is refused.
    patch_size : int or None, default None
        Patch size (pixels) of the UViT and DiT baselines, a divisor of 16 (ignored by FLEX and
        U-Net). ``None`` picks the preset's default.
    dropout : float, default 0.1
        Dropout rate inside ResBlocks, in [0, 1).
    gradient_checkpointing : bool, default False
        Trade compute for memory during training.
    image_size : tuple of (int, int), default (128, 128)
        Reference (H, W) in pixels, each a multiple of 16; only checked (no weight depends on
        it: the positional embeddings are computed for each input's grid), so any size
        divisible by 16 runs.

    Examples
    --------
    >>> from flexdownscale.models import build_model, count_parameters
    >>> config = ModelConfig(backbone="unet", preset="tiny", image_size=[64, 96])
    >>> config.image_size, config.out_channels  # lists become tuples; None: in_channels
    ((64, 96), None)
    >>> count_parameters(build_model(config, device="meta"))
    2338273
    >>> ModelConfig(backbone="resnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: model.backbone = 'resnet' is not a valid option; ...
    """

    backbone: Backbone = "flex"
    preset: Preset = "tiny"
    in_channels: int = 1
    out_channels: int | None = None
    task: Task = "superres"
    past_frames: int = 1
    conditioning: Conditioning = "weak+strong"
    physical_condition: bool | None = None
    patch_size: int | None = None
    dropout: float = 0.1
    gradient_checkpointing: bool = False
    image_size: tuple[int, int] = (128, 128)


@dataclass(frozen=True)
class DiffusionConfig(_Section):
    """Generative objective.

    Attributes
    ----------
    objective : {"vp", "flow", "idff"}, default "vp"
        ``"vp"`` (variance-preserving diffusion), ``"flow"`` (flow matching) or ``"idff"``.
    target : {"v", "eps", "x"}, default "v"
        VP parameterisation of the loss: ``"v"``, ``"eps"`` or ``"x"`` (network output is v).
    loss : {"l1", "l2"} or None, default None
        ``"l1"`` or ``"l2"``; ``None`` (default): the objective's own, L1 for ``vp`` (as FLEX
        trains) and L2 for ``flow`` and ``idff``, whose velocity and score are conditional
        means (an L1 fit gives conditional medians).
    logsnr_min : float, default -20.0
        Smallest log-SNR of the cosine schedule (``vp``; the noise end): finite, below
        ``logsnr_max`` and ``>= -1400`` (the schedule overflows below about -1419).
    logsnr_max : float, default 20.0
        Largest log-SNR of the cosine schedule (``vp``; the data end), finite.
    shift : float, default 1.0
        Shift of the cosine schedule (``vp``): moves the whole log-SNR curve by
        ``-2 log(shift)`` (1: no shift); finite, between ``exp(logsnr_min / 2)`` and
        ``exp(logsnr_max / 2)``, so that the shifted curve still runs from data (> 0) to noise
        (< 0). The samplers' grid is uniform in ``t``: a shift needs about ``shift`` times the
        steps for the same accuracy (``docs/diffusion.md``).
    base : {"gaussian", "coarse_plus_noise"}, default "gaussian"
        Flow-matching (and IDFF) base distribution: ``"gaussian"`` or ``"coarse_plus_noise"``.
    base_sigma : float, default 0.1
        Noise level ``s`` of the coarse-plus-noise base (normalised units), in [1e-6, 1e6].
    t_min : float, default 1e-4
        Start of the time interval for flow-matching and IDFF training and sampling (the
        noise end), with ``0 <= t_min < t_max <= 1`` (IDFF: ``0 < t_min``).
    t_max : float, default 1 - 1e-4
        End of that interval (the data end; IDFF: ``t_max < 1``).
    loss_scale : float, default 1.0
        Multiplies the per-sample loss, finite and > 0 (the MHD trainer uses 100).
    idff_sigma : float, default 0.2
        Bridge noise level ``sigma`` of IDFF (``sigma_t = sigma sqrt(t (1 - t))``), in
        [1e-6, 1e6].
    idff_c : float, default 0.01
        Regulariser ``c`` of IDFF's ``1 / (1 - t + c)`` weighting, finite and > 0.

    Examples
    --------
    ``loss=None`` takes each objective's own loss:

    >>> from flexdownscale.diffusion import build_objective
    >>> [build_objective(DiffusionConfig(objective=o)).loss_kind for o in ("vp", "flow", "idff")]
    ['l1', 'l2', 'l2']
    >>> build_objective(DiffusionConfig(objective="flow", base="coarse_plus_noise")).summary
    'flow (base coarse_plus_noise, base_sigma 0.1)'
    """

    objective: Literal["vp", "flow", "idff"] = "vp"
    target: Literal["v", "eps", "x"] = "v"
    loss: Literal["l1", "l2"] | None = None
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    shift: float = 1.0
    base: Literal["gaussian", "coarse_plus_noise"] = "gaussian"
    base_sigma: float = 0.1
    t_min: float = 1e-4
    t_max: float = 1.0 - 1e-4
    loss_scale: float = 1.0
    idff_sigma: float = 0.2
    idff_c: float = 0.01


@dataclass(frozen=True)
class SamplerConfig(_Section):
    """Sampling defaults stored with a model.

    The ranges are checked where the values are used, as for the other sections: by
    :class:`TrainConfig`, :func:`check_model_ranges` (a model folder's ``config.json`` when it
    is saved or loaded) and the samplers, not when a ``SamplerConfig`` is built (a run folder
    saved before a check existed must still load, to be fixed).

    Attributes
    ----------
    sampler : {"ddim", "euler", "heun", "sde", "idff"}, default "ddim"
        ``"ddim"``, ``"euler"``, ``"heun"``, ``"sde"`` or ``"idff"``.
    steps : int, default 2
        Number of reverse steps (network evaluations for first-order samplers), >= 1.
    eta : float, default 0.0
        DDIM stochasticity in [0, 1] (0 is deterministic DDIM, 1 ancestral).
    delta : float, default 0.0
        SDE Langevin strength in units of the path's noise variance, >= 0; 0 reduces to the
        probability-flow ODE. Accurate for ``delta * step <= 0.5`` (the sampler warns above;
        unstable from 2).
    g1 : float, default 0.0
        IDFF Langevin knob gamma1 (noise and score term added to the bridge's
        probability-flow ODE), >= 0; ``g1 = g2 = 0`` is Euler on the bridge ODE.
    g2 : float, default 0.0
        IDFF momentum knob gamma2 (weight of the second-order Taylor term of a step), >= 0;
        the sampler warns above 1.5.

    Examples
    --------
    >>> config = SamplerConfig(sampler="sde", steps=10, delta=1)
    >>> config.delta  # an integer of a float field becomes a float
    1.0
    >>> SamplerConfig(steps="abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: sampler.steps must be an integer, got 'abc' ...
    """

    sampler: Literal["ddim", "euler", "heun", "sde", "idff"] = "ddim"
    steps: int = 2
    eta: float = 0.0
    delta: float = 0.0
    g1: float = 0.0
    g2: float = 0.0


@dataclass(frozen=True)
class DataConfig(_Section):
    """Training data.

    Attributes
    ----------
    paths : tuple of str, default ()
        Files or glob patterns (netCDF, zarr, HDF5); a ``pathlib.Path`` is taken and stored
        as its string, and a single string or path as a list of one.
    format : {"auto", "xarray", "hdf5"}, default "auto"
        ``"auto"`` (from the suffix), ``"xarray"`` or ``"hdf5"``.
    variables : tuple of str, default ()
        Variables used as channels (in order); a single name is a list of one
        (``variables = "t2m"``, as inference's ``variables="t2m"``).
    degradation : {"area_mean", "strided", "gaussian"}, default "area_mean"
        Fine -> coarse operator: ``"area_mean"``, ``"strided"`` or ``"gaussian"``.
    upsample : {"bilinear", "bicubic", "conservative", "nearest"}, default "bilinear"
        Coarse -> fine base field: ``"bilinear"``, ``"bicubic"``, ``"conservative"`` or
        ``"nearest"`` (each coarse value repeated over its fine cells), the upsamplings of
        :func:`flexdownscale.data.upsample_array`; the exported model upsamples with it too.
    factor : int, default 4
        Super-resolution factor (fine cells per coarse cell along each axis), >= 1.
    crop_size : int, default 64
        Side of the random square crops in fine pixels (divisible by 16 and by ``factor``).
    crops_per_field : int, default 1
        Crops of each field per epoch (>= 1): training draws that many random windows of
        ``crop_size`` from every field (the split then has fields x ``crops_per_field``
        samples); validation scores that many windows of each field, the centre one when 1,
        else windows drawn once from the seed and kept at every evaluation. Raise it when a few
        large fields (a global grid, levels or months as the samples) make a small split.
    split_dim : str, default "time"
        Dimension along which the data are split (``"time"``, ``"trajectory"``, ...).
    train : tuple of labels or indices, default ()
        Selection of the training split along ``split_dim``: ``[start, stop]`` (inclusive
        labels, e.g. dates) or a list of indices/labels.
    validation : tuple of labels or indices, default ()
        Selection of the validation split, as ``train``.
    test : tuple of labels or indices, default ()
        Selection of the test split, as ``train``.
    condition : str or None, default None
        Name of a scalar attribute or variable used as physical condition, or ``None``. Read
        from a variable or coordinate of that name, else the file's global attribute, else the
        variables' own attribute (as inference reads it).
    condition_scale : float, default 1.0
        The condition is divided by this (e.g. 40000 for Re); finite and non-zero.
    past_frames : int, default 1
        Forecasting: number of past frames (the current one included), >= 1; they lie
        ``lead`` steps apart, as a rollout feeds its samples back.
    lead : int, default 1
        Forecasting: lead in steps of the data's time coordinate (its most common spacing),
        >= 1; also the spacing of the past frames.
    nan_fields : {"error", "drop"}, default "error"
        What to do with the fields (one sample: a time, of one trajectory or level, ...) of a
        split that hold NaN where the items read, found in one pass when the split opens:
        ``"error"`` (default) refuses the split, naming the variable and the fields;
        ``"drop"`` leaves those fields out of the split and reports them.
    transforms : "auto" or mapping of str to {"none", "log1p"}, default "auto"
        Transform of each variable before its normalization statistics are fitted:
        ``"auto"`` applies ``log1p`` to precipitation-like variables (by name, standard or long
        name); a table ``{variable = "log1p" | "none"}`` chooses (unlisted variables get
        ``"none"``; a name not among ``variables`` is refused). In TOML a ``[data.transforms]``
        table or ``transforms = {tp = "none"}``; on the command line
        ``data.transforms.tp=log1p``. ``log1p`` expects amounts in mm (kg m-2) or rates in mm/h
        or mm/day, not m or kg m-2 s-1 (on those it is nearly the identity, and the fit warns).
    dims : mapping of str to str or None, default None
        The data's dimension names of the grid axes and of time, a table with keys among
        ``"x"``, ``"y"``, ``"time"`` (as inference's ``dims=`` and ``--dims``): for files whose
        axes neither CF attributes nor the usual names (lat/latitude/y, lon/longitude/x) tell.
        In TOML ``dims = {x = "i", y = "j"}`` or a ``[data.dims]`` table; on the command line
        ``data.dims.x=i``. ``None`` (default): found from CF attributes and names.

    Examples
    --------
    >>> from pathlib import Path
    >>> config = DataConfig(paths=[Path("era5.nc")], variables=["t2m", "tp"], factor=4)
    >>> config.paths, config.variables
    (('era5.nc',), ('t2m', 'tp'))

    A transform for a variable that is not among ``variables`` would be ignored, so it is
    refused:

    >>> DataConfig(variables=["tp"], transforms={"TP": "none"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: data.transforms names 'TP', not among data.variables ...

    Files whose grid dims have names no convention tells (``i``, ``j``) name them:

    >>> DataConfig(dims={"x": "i", "y": "j"}).dims
    {'x': 'i', 'y': 'j'}
    >>> DataConfig(dims={"lon": "i"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: data.dims has the key 'lon'; expected keys among 'x', ...
    """

    paths: tuple[str, ...] = ()
    format: Literal["auto", "xarray", "hdf5"] = "auto"
    variables: tuple[str, ...] = ()
    degradation: Literal["area_mean", "strided", "gaussian"] = "area_mean"
    upsample: Literal["bilinear", "bicubic", "conservative", "nearest"] = "bilinear"
    factor: int = 4
    crop_size: int = 64
    crops_per_field: int = 1
    split_dim: str = "time"
    train: tuple[Any, ...] = ()
    validation: tuple[Any, ...] = ()
    test: tuple[Any, ...] = ()
    condition: str | None = None
    condition_scale: float = 1.0
    past_frames: int = 1
    lead: int = 1
    nan_fields: Literal["error", "drop"] = "error"
    transforms: Literal["auto"] | Mapping[str, Literal["none", "log1p"]] = "auto"
    dims: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_data_dims(self.dims)
        transforms = self.transforms
        if isinstance(transforms, Mapping):
            if not transforms:
                raise ConfigError(
                    'data.transforms is an empty table; write "auto" (log1p for '
                    'precipitation-like variables) or name the variables ({tp = "none"}) '
                    "(DataConfig.transforms)"
                )
            unknown = [k for k in transforms if k not in self.variables]
            if self.variables and unknown:
                lower = {v.lower(): v for v in self.variables}
                near = difflib.get_close_matches(unknown[0].lower(), list(lower), n=1)
                hint = f" (did you mean {lower[near[0]]!r}?)" if near else ""
                raise ConfigError(
                    f"data.transforms names {', '.join(map(repr, unknown))}, not among "
                    f"data.variables ({', '.join(map(repr, self.variables))}), so the transform "
                    f"would be ignored{hint}; name the variables as data.variables does "
                    f"(DataConfig.transforms)"
                )


#: The keys of ``data.dims`` (and of inference's ``dims=``): the axes a dimension name is given for
_DIMS_KEYS = ("x", "y", "time")


def _check_data_dims(dims: Mapping[str, str] | None) -> None:
    """``data.dims``: keys among ``x``, ``y``, ``time`` (a close one named), non-empty names,
    not one dimension for two axes."""
    if dims is None:
        return
    example = 'data.dims = {x = "lon", y = "lat"} (DataConfig.dims)'
    for key, name in dims.items():
        if key not in _DIMS_KEYS:
            near = difflib.get_close_matches(key.lower(), _DIMS_KEYS, n=1, cutoff=0.5)
            axis = {"lon": "x", "longitude": "x", "lat": "y", "latitude": "y", "t": "time"}
            guess = near[0] if near else axis.get(key.lower())
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise ConfigError(
                f"data.dims has the key {key!r}; expected keys among 'x', 'y', 'time'{hint}: "
                f"the keys are the axes, the values the data's dimension names, e.g. {example}"
            )
        if not name.strip():
            raise ConfigError(
                f"data.dims.{key} is empty; expected the data's dimension name, e.g. {example}"
            )
    named = [name for key, name in dims.items() if key in ("x", "y")]
    if len(named) == 2 and named[0] == named[1]:
        raise ConfigError(
            f"data.dims gives x and y the same dimension {named[0]!r}; expected two, e.g. {example}"
        )


@dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimiser and learning-rate schedule.

    Attributes
    ----------
    optimizer : {"adamw", "adam", "lion"}, default "adamw"
        ``"adamw"``, ``"adam"`` or ``"lion"``.
    lr : float, default 2e-4
        Peak learning rate (> 0).
    betas : tuple of (float, float), default (0.9, 0.999)
        Momentum coefficients, each in [0, 1).
    weight_decay : float, default 0.0
        Decoupled (adamw, lion) or L2 (adam) weight decay, >= 0, on the parameters of two or
        more dimensions (weights); 1-D parameters (biases, normalization gains) are not decayed.
    warmup_steps : int, default 100
        Linear warm-up steps (>= 0).
    schedule : {"cosine", "constant"}, default "cosine"
        ``"cosine"`` (decay to 0 at ``steps``) or ``"constant"`` after the warm-up.
    grad_clip : float, default 1.0
        Largest global gradient norm; 0 turns clipping off (negative values are refused).
    ema_decay : float, default 0.999
        Decay of the exponential moving average of the weights, in [0, 1).

    Examples
    --------
    >>> config = OptimConfig(lr=1e-4, betas=[0.9, 0.95])
    >>> config.lr, config.betas, config.schedule
    (0.0001, (0.9, 0.95), 'cosine')
    >>> OptimConfig(optimizer="sgd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: optim.optimizer = 'sgd' is not a valid option; ...
    """

    optimizer: Literal["adamw", "adam", "lion"] = "adamw"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = 1.0
    ema_decay: float = 0.999


@dataclass(frozen=True)
class TrainConfig(_Section):
    """A whole training run: what ``flexdownscale.train`` reads from ``run.toml``.

    Ranges are checked when the configuration is built (a :class:`ConfigError` names the key):
    ``steps``, ``batch_size``, ``micro_batch_size`` (``None``: batch_size / processes),
    ``total_limit``, ``eval_fields``, ``eval_members``, ``sampler.steps`` and
    ``data.crops_per_field`` are positive;
    ``eval_every``, ``plot_every`` and ``checkpoint_every`` may be 0 (off; without periodic states
    one is still saved at the end of each launch); ``data.crop_size`` is a multiple of 16 and, for
    super-resolution, of ``data.factor``; ``model.physical_condition = true`` needs
    ``data.condition`` and ``false`` contradicts it (leave it out: it follows
    ``data.condition``); ``data.condition_scale`` is finite and non-zero; ``seed`` is in
    [0, 2**32 - 1]; ``time_limit_minutes`` is finite and >= 0 (0: no limit);
    ``optim.lr`` > 0, ``optim.betas`` in [0, 1), ``optim.weight_decay`` and ``optim.grad_clip``
    >= 0 (0: no clipping), ``optim.ema_decay`` in [0, 1); ``sampler.eta`` in [0, 1],
    ``sampler.delta``, ``sampler.g1`` and ``sampler.g2`` >= 0; the ``[model]`` and
    ``[diffusion]`` values the model and the objective check when they are built
    (``model.dropout`` in [0, 1), ``diffusion.shift`` > 0, ...).
    ``eval_members = 1`` reports the plain (not fair) CRPS and no spread-skill ratio (``null`` in
    the JSON records).

    Attributes
    ----------
    model : ModelConfig
        The ``[model]`` section: the backbone (default ``ModelConfig()``).
    diffusion : DiffusionConfig
        The ``[diffusion]`` section: the generative objective (default ``DiffusionConfig()``).
    sampler : SamplerConfig
        The ``[sampler]`` section (default ``SamplerConfig()``): what validation samples with
        and the exported model stores, resolved for the objective first
        (:func:`flexdownscale.train.resolve_sampler`).
    data : DataConfig
        The ``[data]`` section: files, variables, factor, crops and splits (default
        ``DataConfig()``, which names no files: a run sets ``data.paths`` and
        ``data.variables``).
    optim : OptimConfig
        The ``[optim]`` section: optimiser, learning-rate schedule, clipping and EMA (default
        ``OptimConfig()``).
    run_dir : str, default "runs/run"
        The run folder: configuration, training states, logs, figures and the exported model
        (layout in :mod:`flexdownscale.train`); a ``pathlib.Path`` is taken and stored as its
        string.
    steps : int, default 1000
        Optimiser steps of the whole run (a resume continues up to it).
    batch_size : int, default 32
        Samples per optimiser step over every process: micro-batch x processes x gradient
        accumulation steps.
    micro_batch_size : int or None, default None
        Samples per process and forward pass; the accumulation is worked out from it and
        ``batch_size`` (which must be a multiple of it times the processes). Default None:
        ``batch_size`` / processes.
    precision : {"auto", "fp32", "bf16", "fp16"}, default "auto"
        Autocast precision; ``"auto"``: bf16 on GPUs that support it, else fp32.
    eval_every : int, default 250
        Validation every so many optimiser steps (0: none).
    plot_every : int, default 4
        Panel and spectrum figures every so many evaluations (0: none).
    checkpoint_every : int, default 250
        A training state every so many optimiser steps (0: only the state saved at the end of
        each launch).
    total_limit : int, default 3
        Training states kept; older ones are removed when a new one is complete.
    seed : int, default 0
        Seed of the initial weights, the training noise and the sample order, 0 to 2**32 - 1.
    logger : {"tensorboard", "wandb", "none"}, default "tensorboard"
        Where the training and validation metrics are logged (wandb is imported only when
        chosen).
    num_workers : int, default 0
        ``DataLoader`` worker processes per training process (0: the samples are read in the
        training process; the samples and their order do not depend on it).
    eval_fields : int, default 4
        Validation fields sampled at each evaluation, spread evenly over the validation split
        (:func:`flexdownscale.train.validation_indices`).
    eval_members : int, default 4
        Ensemble members per validation field.
    time_limit_minutes : float, default 0.0
        Stop a launch cleanly before this many minutes, counted from the start-up: the state is
        saved and the EMA model exported, the final validation skipped; continue with
        ``--resume`` (0: no limit).
    init_from : str or None, default None
        Fine-tune: start from the weights of this model, a shipped model's name
        (``"era5-t2m-x4"``), a model folder's path or a Hub id (resolved as
        :func:`flexdownscale.hub.resolve_model_path` does); ``None`` (default): random
        weights. The ``[model]`` and ``[diffusion]`` settings that decide the weights' shapes or
        meaning, the super-resolution settings and the variables are taken from the folder when
        left at their defaults and must agree with it when set (see
        :class:`flexdownscale.train.Trainer`); a ``pathlib.Path`` is taken and stored as its
        string.
    init_normalization : {"source", "refit"}, default "source"
        With ``init_from``: ``"source"`` normalizes the data with the folder's statistics (the
        scales its network was trained on), ``"refit"`` fits them on this run's train split
        (with the folder's transforms). Without ``init_from`` only ``"source"`` (unused) is
        accepted.

    Examples
    --------
    >>> config = TrainConfig(model=ModelConfig(preset="small"), steps=2000)
    >>> config.model.preset, config.steps, config.optim.lr
    ('small', 2000, 0.0002)

    Ranges are checked at once, with the value to use:

    >>> TrainConfig(data=DataConfig(factor=3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: data.crop_size = 64 is not a positive multiple of 48: ...
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run_dir: str = "runs/run"
    steps: int = 1000
    batch_size: int = 32
    micro_batch_size: int | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_every: int = 250
    plot_every: int = 4
    checkpoint_every: int = 250
    total_limit: int = 3
    seed: int = 0
    logger: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    num_workers: int = 0
    eval_fields: int = 4
    eval_members: int = 4
    time_limit_minutes: float = 0.0
    init_from: str | None = None
    init_normalization: Literal["source", "refit"] = "source"

    def __post_init__(self) -> None:
        super().__post_init__()
        if _CHECK_RANGES.get():
            _check_train_config(self)


#: Off while a run's saved configuration is read back (:func:`from_dict` with ``_check=False``):
#: a run folder written before a range check existed must still resume once its setting is fixed.
_CHECK_RANGES: contextvars.ContextVar[bool] = contextvars.ContextVar("_CHECK_RANGES", default=True)


def crop_multiple(factor: int, task: str = "superres") -> int:
    """What a training crop side must be a multiple of: 16 (the backbones' downsampling) and, for
    super-resolution, the factor (whole coarse cells)."""
    return math.lcm(16, factor) if task == "superres" and factor >= 1 else 16


def suggest_crop_size(crop_size: int, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``crop_size`` (at least ``multiple``; ties round
    up, so the crop does not shrink)."""
    below = max(multiple, crop_size // multiple * multiple)
    above = max(multiple, -(-crop_size // multiple) * multiple)
    return below if crop_size - below < above - crop_size else above


def crop_size_problem(crop_size: int, factor: int, task: str, section: str) -> str | None:
    """Why ``crop_size`` cannot be a training crop (``None`` when it can), with the nearest one
    that can; ``section`` names where the keys live (``"data"``, ``"DataConfig"``)."""
    multiple = crop_multiple(factor, task)
    if crop_size >= 1 and crop_size % multiple == 0:
        return None
    also = "" if multiple == 16 else f" and by {section}.factor = {factor} (whole coarse cells)"
    return (
        f"{section}.crop_size = {crop_size} is not a positive multiple of {multiple}: crops must "
        f"be divisible by 16 (the backbones need it){also}; set e.g. {section}.crop_size="
        f"{suggest_crop_size(max(crop_size, 1), multiple)}"
    )


def _check_train_config(config: TrainConfig) -> None:
    """Range and consistency checks of a training configuration, done when it is built so that a
    run does not fail at its first evaluation or inside accelerate."""

    def at_least(key: str, value: int | float | None, low: int, meaning: str = "") -> None:
        if value is not None and value < low:
            allowed = "a positive integer" if low == 1 else f">= {low}"
            raise ConfigError(f"{key} = {value!r} is out of range; expected {allowed}{meaning}")

    at_least("steps", config.steps, 1)
    at_least("batch_size", config.batch_size, 1)
    at_least(
        "micro_batch_size",
        config.micro_batch_size,
        1,
        " (leave it out for the automatic choice, batch_size / processes)",
    )
    at_least("eval_every", config.eval_every, 0, " (0 turns validation off)")
    at_least("plot_every", config.plot_every, 0, " (0 turns the validation plots off)")
    at_least(
        "checkpoint_every",
        config.checkpoint_every,
        0,
        " (0 saves a state only at the end of each launch)",
    )
    at_least("total_limit", config.total_limit, 1, " (the number of training states kept)")
    at_least("num_workers", config.num_workers, 0)
    at_least("eval_fields", config.eval_fields, 1, " (validation fields sampled)")
    at_least("eval_members", config.eval_members, 1, " (members per validation field)")
    if not (math.isfinite(config.time_limit_minutes) and config.time_limit_minutes >= 0):
        # NaN passed every comparison and meant "no limit" silently; inf is spelled 0
        raise _out_of_range(
            "time_limit_minutes", config.time_limit_minutes, "a finite number >= 0 (0: no limit)"
        )
    if not 0 <= config.seed <= _SEED_MAX:
        raise _out_of_range(
            "seed",
            config.seed,
            f"an integer in [0, {_SEED_MAX}] (2**32 - 1: the run seeds numpy's global generator "
            "with it, which takes no other)",
        )
    _check_sampler(config.sampler)
    at_least("optim.warmup_steps", config.optim.warmup_steps, 0)
    _check_optim(config.optim)
    data = config.data
    at_least("data.factor", data.factor, 1)
    at_least("data.past_frames", data.past_frames, 1)
    at_least("data.lead", data.lead, 1)
    at_least("data.crops_per_field", data.crops_per_field, 1)
    problem = crop_size_problem(data.crop_size, data.factor, config.model.task, "data")
    if problem:
        raise ConfigError(problem)
    if config.model.physical_condition and data.condition is None:
        raise ConfigError(
            "model.physical_condition = true but data.condition is not set, so the model would "
            "get no condition value; set data.condition to the scalar variable or attribute "
            '(e.g. data.condition="reynolds_number") or leave model.physical_condition out'
        )
    if config.model.physical_condition is False and data.condition is not None:
        raise ConfigError(
            f"model.physical_condition = false but data.condition = {data.condition!r}: the "
            "data give every sample a condition value, which a model without a physical "
            "condition cannot take (it used to be switched on silently); leave "
            "model.physical_condition out (it follows data.condition), or unset the condition "
            "(data.condition=none) to train without one"
        )
    if not (math.isfinite(data.condition_scale) and data.condition_scale != 0):
        raise _out_of_range(
            "data.condition_scale",
            data.condition_scale,
            "a finite non-zero number (the condition is divided by it; e.g. 40000 for Re)",
        )
    if config.init_from is not None and not config.init_from.strip():
        raise ConfigError(
            "init_from = '' names no model; give a shipped model (e.g. \"era5-t2m-x4\"), a model "
            "folder's path or a Hub id, or leave init_from out to start from random weights"
        )
    if config.init_normalization != "source" and config.init_from is None:
        raise ConfigError(
            f"init_normalization = {config.init_normalization!r} but init_from is not set: it "
            "chooses the normalization of a fine-tuning run (a run from random weights always "
            "fits it on its train split); set init_from to the model to start from, or leave "
            "init_normalization out"
        )
    _check_model(config.model)
    _check_diffusion(config.diffusion)


def _out_of_range(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r} is out of range; expected {expected}")


#: The largest ``seed``: numpy's legacy seeding (used by accelerate's ``set_seed``) takes
#: [0, 2**32 - 1].
_SEED_MAX = 2**32 - 1

#: What every crop side and model image size must be a multiple of (the backbones downsample by
#: 16; ``flexdownscale.models`` checks the same).
_GRID_MULTIPLE = 16


def _check_model(model: ModelConfig) -> None:
    """``[model]`` values the model builder refuses (with bare names, after the data had loaded):
    checked when the configuration is built, naming ``model.<key>``. The same ranges as
    :func:`flexdownscale.models.build_model`."""
    for key in ("in_channels", "past_frames"):
        value = getattr(model, key)
        if value < 1:
            raise _out_of_range(f"model.{key}", value, "a positive integer")
    if model.out_channels is not None and model.out_channels < 1:
        raise _out_of_range(
            "model.out_channels", model.out_channels, "a positive integer (or leave it out)"
        )
    if not 0.0 <= model.dropout < 1.0:
        raise _out_of_range("model.dropout", model.dropout, "[0, 1) (0: no dropout)")
    if any(s < _GRID_MULTIPLE or s % _GRID_MULTIPLE for s in model.image_size):
        raise _out_of_range(
            "model.image_size",
            list(model.image_size),
            f"[H, W], each a positive multiple of {_GRID_MULTIPLE} (e.g. [128, 128])",
        )
    patch = model.patch_size
    if (
        model.backbone in ("uvit", "dit")
        and patch is not None
        and (patch < 1 or _GRID_MULTIPLE % patch)
    ):
        raise _out_of_range(
            "model.patch_size",
            patch,
            f"1, 2, 4, 8 or 16 for the {model.backbone} backbone (a divisor of 16), or "
            "leave it out for the preset's default",
        )


#: The smallest ``logsnr_min`` of the cosine schedule: it takes ``exp(-logsnr_min / 2)``, which
#: overflows below about -1419 (an untyped ``OverflowError`` at the first sample).
_LOGSNR_FLOOR = -1400.0

#: The range of the noise levels ``base_sigma`` and ``idff_sigma`` (normalised units, in which the
#: data have a scale of about 1): the scores divide by their squares, which under- or overflow far
#: outside it (``base_sigma = inf`` gave NaN losses, 1e-300 infinite scores).
_NOISE_LEVEL_RANGE = (1e-6, 1e6)


def _finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (:func:`flexdownscale._numbers.finite_real`: a
    Python or numpy number or a 0-d real array or tensor, never a bool)."""
    return finite_real(value) is not None


def _vp_schedule_problem(
    logsnr_min: float, logsnr_max: float, shift: float, prefix: str = ""
) -> str | None:
    """What is wrong with the settings of a cosine log-SNR schedule, or ``None``.

    Every value must be finite (``shift = inf`` trained a network on pure noise whose DDIM samples
    were NaN), ``logsnr_min < logsnr_max``, ``logsnr_min >= _LOGSNR_FLOOR`` (else the schedule
    overflows), ``shift > 0``, and the shifted log-SNR, ``logsnr - 2 log(shift)``, must still run
    from data (``> 0`` at ``t = 0``) to noise (``< 0`` at ``t = 1``), which bounds ``shift`` to
    ``(exp(logsnr_min / 2), exp(logsnr_max / 2))``: ``shift = 1e-300`` left no noise to sample
    from.

    Parameters
    ----------
    logsnr_min, logsnr_max, shift : float
        The schedule's settings (:class:`DiffusionConfig`).
    prefix : str, default ""
        Put before each name in the message (``"diffusion."`` for a configuration).

    Returns
    -------
    str or None
        The message of the first problem (what was found and the range expected), or ``None``.

    Examples
    --------
    >>> _vp_schedule_problem(-20.0, 20.0, 1.0) is None
    True
    >>> _vp_schedule_problem(-20.0, 20.0, float("inf"))
    'shift = inf is out of range; expected a finite number > 0 (1: no shift)'
    """
    values = {"logsnr_min": logsnr_min, "logsnr_max": logsnr_max, "shift": shift}
    for key, value in values.items():
        if not _finite_number(value):
            expected = (
                "a finite number > 0 (1: no shift)"
                if key == "shift"
                else "a finite number (the defaults are -20 and 20)"
            )
            return f"{prefix}{key} = {value!r} is out of range; expected {expected}"
    if not logsnr_min < logsnr_max:
        return (
            f"{prefix}logsnr_min = {logsnr_min!r} must be below {prefix}logsnr_max = "
            f"{logsnr_max!r} (the defaults are -20 and 20)"
        )
    if logsnr_min < _LOGSNR_FLOOR:
        return (
            f"{prefix}logsnr_min = {logsnr_min!r} is out of range; expected >= {_LOGSNR_FLOOR:g} "
            "(the schedule takes exp(-logsnr_min / 2), which overflows below about -1419; -20, "
            "the default, already leaves no signal at t = 1)"
        )
    if not shift > 0:
        return f"{prefix}shift = {shift!r} is out of range; expected a number > 0 (1: no shift)"
    low, high = math.exp(0.5 * logsnr_min), math.exp(0.5 * logsnr_max)
    if not low < shift < high:
        return (
            f"{prefix}shift = {shift!r} is out of range for {prefix}logsnr_min = {logsnr_min!r} "
            f"and {prefix}logsnr_max = {logsnr_max!r}; expected a number between "
            f"exp(logsnr_min / 2) = {low:.3g} and exp(logsnr_max / 2) = {high:.3g}, where the "
            "shifted log-SNR, logsnr - 2 log(shift), still runs from data (> 0 at t = 0) to "
            "noise (< 0 at t = 1)"
        )
    b = math.atan(math.exp(-0.5 * logsnr_max))
    if not math.atan(math.exp(-0.5 * logsnr_min)) - b > 0:
        return (
            f"{prefix}logsnr_min = {logsnr_min!r} and {prefix}logsnr_max = {logsnr_max!r} give "
            "the same schedule angle in float64 (both far below -70); expected a wider range, "
            "e.g. the defaults -20 and 20"
        )
    return None


def _noise_level_problem(key: str, value: Any, default: float) -> str | None:
    """What is wrong with a noise level (``base_sigma``, ``idff_sigma``), or ``None``: it must be
    a finite number in :data:`_NOISE_LEVEL_RANGE` (``key`` names it in the message).

    >>> _noise_level_problem("base_sigma", float("inf"), 0.1)[:60]
    'base_sigma = inf is out of range; expected a finite number i'
    """
    low, high = _NOISE_LEVEL_RANGE
    number = finite_real(value)
    if number is not None and low <= number <= high:
        return None
    return (
        f"{key} = {value!r} is out of range; expected a finite number in [{low:g}, {high:g}] "
        f"(normalised units, in which the data have a scale of about 1; the default is "
        f"{default:g})"
    )


def _positive_finite_problem(key: str, value: Any, meaning: str) -> str | None:
    """What is wrong with a setting that must be a finite number > 0 (``loss_scale``,
    ``idff_c``), or ``None``; ``meaning`` ends the message (what the setting does)."""
    number = finite_real(value)
    if number is not None and number > 0:
        return None
    return f"{key} = {value!r} is out of range; expected a finite number > 0 ({meaning})"


def _check_diffusion(diffusion: DiffusionConfig) -> None:
    """``[diffusion]`` values the objective refuses when it is built (with bare names, after the
    data had loaded): checked when the configuration is built, naming ``diffusion.<key>``. Only
    the values the chosen objective uses, with the ranges of
    :func:`flexdownscale.diffusion.build_objective` (finite: ``inf`` used to pass ``> 0`` and
    train or sample garbage silently)."""
    problem = _positive_finite_problem(
        "diffusion.loss_scale",
        diffusion.loss_scale,
        "it multiplies the loss; 1 leaves it as it is",
    )
    if problem:
        raise ConfigError(problem)
    if diffusion.objective == "vp":
        problem = _vp_schedule_problem(
            diffusion.logsnr_min, diffusion.logsnr_max, diffusion.shift, "diffusion."
        )
        if problem:
            raise ConfigError(problem)
        return
    t_min, t_max = diffusion.t_min, diffusion.t_max
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ConfigError(
            f"diffusion.t_min = {t_min!r}, diffusion.t_max = {t_max!r} must satisfy "
            "0 <= t_min < t_max <= 1 (the defaults are 1e-4 and 1 - 1e-4)"
        )
    if diffusion.base == "coarse_plus_noise":
        problem = _noise_level_problem("diffusion.base_sigma", diffusion.base_sigma, 0.1)
        if problem:
            raise ConfigError(f'{problem}; it is read with base = "coarse_plus_noise"')
    if diffusion.objective == "idff":
        problem = _noise_level_problem("diffusion.idff_sigma", diffusion.idff_sigma, 0.2) or (
            _positive_finite_problem(
                "diffusion.idff_c",
                diffusion.idff_c,
                "the regulariser of the 1 / (1 - t + c) data weight; the default is 0.01",
            )
        )
        if problem:
            raise ConfigError(problem)
        if t_min <= 0.0 or t_max >= 1.0:
            raise ConfigError(
                f"diffusion.t_min = {t_min!r}, diffusion.t_max = {t_max!r}: the idff objective "
                "needs 0 < t_min and t_max < 1 (its drift divides by sqrt(t (1 - t)))"
            )


def _check_optim(optim: OptimConfig) -> None:
    """``[optim]`` values torch (or Lion) would refuse with a traceback at the first step, or
    accept and misbehave with: checked when the configuration is built, naming the key."""
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise _out_of_range("optim.lr", optim.lr, "a finite number > 0")
    for i, beta in enumerate(optim.betas):
        if not 0.0 <= beta < 1.0:
            raise _out_of_range(
                f"optim.betas[{i}]",
                beta,
                "[0, 1) (the momentum coefficients; e.g. optim.betas=[0.9, 0.999] for adamw, "
                "[0.9, 0.99] for lion)",
            )
    if not (math.isfinite(optim.weight_decay) and optim.weight_decay >= 0):
        raise _out_of_range("optim.weight_decay", optim.weight_decay, ">= 0 (0: no weight decay)")
    if not (math.isfinite(optim.grad_clip) and optim.grad_clip >= 0):
        raise _out_of_range(
            "optim.grad_clip",
            optim.grad_clip,
            ">= 0 (the largest gradient norm; 0 turns clipping off)",
        )
    if not 0.0 <= optim.ema_decay < 1.0:
        raise _out_of_range("optim.ema_decay", optim.ema_decay, "[0, 1)")


#: Ranges of the sampler options (as the samplers check them when they run).
_SAMPLER_RANGES = {
    "eta": (1.0, "[0, 1] (0: deterministic DDIM, 1: ancestral)"),
    "delta": (math.inf, ">= 0 (0: the probability-flow ODE)"),
    "g1": (math.inf, ">= 0 (g1 = g2 = 0: the bridge ODE)"),
    "g2": (math.inf, ">= 0 (g1 = g2 = 0: the bridge ODE)"),
}


def _check_sampler(sampler: SamplerConfig) -> None:
    """``[sampler]`` steps and options out of their range: refused when the configuration is
    built rather than at the first validation (which used to stop the run there). Every option is
    checked, also those of another sampler than the chosen one."""
    if sampler.steps < 1:
        raise _out_of_range(
            "sampler.steps", sampler.steps, "a positive integer (reverse steps of the sampler)"
        )
    for key, (high, expected) in _SAMPLER_RANGES.items():
        value = getattr(sampler, key)
        if not (math.isfinite(value) and 0.0 <= value <= high):
            raise _out_of_range(f"sampler.{key}", value, expected)


def check_model_ranges(
    model: ModelConfig, diffusion: DiffusionConfig, sampler: SamplerConfig
) -> None:
    """The range checks :class:`TrainConfig` runs on its ``model``, ``diffusion`` and ``sampler``
    sections, for those sections on their own (as a model folder's ``config.json`` stores them).

    Parameters
    ----------
    model : ModelConfig
        Network architecture.
    diffusion : DiffusionConfig
        Generative objective.
    sampler : SamplerConfig
        Sampling defaults.

    Raises
    ------
    ConfigError
        For the first value out of its range, naming it as ``section.key = value`` with the
        range expected (e.g. ``sampler.steps = 0 is out of range; expected a positive
        integer ...``).
    """
    _check_model(model)
    _check_diffusion(diffusion)
    _check_sampler(sampler)


C = TypeVar("C")


def _close_match_hint(key: str, options: Sequence[str]) -> str:
    matches = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    hint = f"did you mean {matches[0]!r}? " if matches else ""
    return f"{hint}known keys: {', '.join(sorted(options))}"


def _keys_elsewhere(key: str, table: str) -> list[str]:
    """The dotted keys of a training run file named ``key`` outside ``table`` (``""`` for
    the top level, ``"data"`` for ``[data]``): ``crop_size`` at the top level ->
    ``["data.crop_size"]``, ``data.steps`` -> ``["steps"]``."""
    found = []
    for name, annotation in typing.get_type_hints(TrainConfig).items():
        if dataclasses.is_dataclass(annotation):
            if name != table and key in {f.name for f in dataclasses.fields(annotation)}:
                found.append(f"{name}.{key}")
        elif table and name == key:
            found.insert(0, key)
    return found


def _unknown_key_hint(key: str, table: str | None, options: Sequence[str], *, file: bool) -> str:
    """The advice of an unknown-key message: where the key belongs when another table of a
    run file has it (``data.crop_size=64``; in a file, "move it under [data]"), else the close
    match and the table's known keys."""
    elsewhere = _keys_elsewhere(key, table) if table is not None else []
    if not elsewhere:
        return _close_match_hint(key, options)
    if file:
        places = " or ".join(
            f"under [{k.rpartition('.')[0]}]"
            if "." in k
            else "at the top level (before any [table])"
            for k in elsewhere
        )
        return f"{key!r} belongs {places}: move it there"
    return f"did you mean {' or '.join(repr(k) for k in elsewhere)}? ({key!r} is not a key here)"


#: The TOML table each configuration class is read from: a TrainConfig is the whole file, the
#: others its sections (``[data]`` holds a DataConfig). Messages name the keys as the file
#: (and the training command's ``key=value`` overrides) writes them.
_TOML_SECTIONS = {
    "TrainConfig": "",
    "ModelConfig": "model",
    "DiffusionConfig": "diffusion",
    "SamplerConfig": "sampler",
    "DataConfig": "data",
    "OptimConfig": "optim",
}


def _toml_key(where: str) -> str | None:
    """The TOML key of ``where``, a Python path from the class given to :func:`from_dict`
    (``TrainConfig.data.factor`` -> ``data.factor``, ``DataConfig.factor`` -> ``data.factor``,
    ``TrainConfig`` -> ``""``); ``None`` for a class that is no configuration section."""
    root, _, rest = where.partition(".")
    if root not in _TOML_SECTIONS:
        return None
    return ".".join(part for part in (_TOML_SECTIONS[root], rest) if part)


def _problem(where: str, text: str) -> ConfigError:
    """``"<toml key> <text> (<Python path>)"``: the key as a TOML file writes it, then the
    attribute for those who built the configuration in Python (``steps must be an integer, got
    'abc' (TrainConfig.steps)``)."""
    key = _toml_key(where)
    if not key:
        return ConfigError(f"{where} {text}")
    return ConfigError(f"{key} {text} ({where})")


def _table(where: str) -> str:
    """Where an unknown key was found: ``"[data] (TrainConfig.data)"``, ``"the top level
    (TrainConfig)"``."""
    key = _toml_key(where)
    if key is None:
        return where
    return f"[{key}] ({where})" if key else f"the top level ({where})"


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation`` and convert lists to tuples and ints to floats.

    ``where`` is the Python path of the value (``TrainConfig.data.factor``); messages name its
    TOML key first (:func:`_problem`).
    """
    origin = get_origin(annotation)
    if annotation is Any:
        return _freeze(value)
    if origin is Literal:
        options = get_args(annotation)
        if value not in options:
            raise _problem(
                where,
                f"= {value!r} is not a valid option; expected one of "
                f"{', '.join(repr(o) for o in options)}",
            )
        return value
    if origin in (types.UnionType, typing.Union):
        args = get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors: list[ConfigError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(err)
        words = [a for a in args if get_origin(a) is Literal]
        tables = [
            i
            for i, a in enumerate(a for a in args if a is not type(None))
            if get_origin(a) is Mapping
        ]
        if words and tables:
            # a word or a table (data.transforms): a table's own problem, else both named
            if isinstance(value, Mapping):
                raise errors[tables[0]]
            options = ", ".join(repr(o) for w in words for o in get_args(w))
            raise _problem(
                where, f"= {value!r} is not a valid option; expected {options} or a table"
            )
        raise ConfigError("; ".join(map(str, errors)))
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise _problem(where, f"must be a table, got {type(value).__name__} {value!r}")
        key_type, value_type = get_args(annotation)
        out = {}
        for key, item in value.items():
            if not isinstance(key, key_type):
                raise _problem(where, f"has a key {key!r}; expected {key_type.__name__} keys")
            out[key] = _convert(item, value_type, f"{where}.{key}")
        return out
    if origin is tuple:
        args = get_args(annotation)
        if args == (str, Ellipsis) and _one_of_a_list(value, where):
            value = [value]  # variables = "t2m", paths = "era5.nc": a list of one, as inference
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise _problem(where, f"must be a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _problem(where, f"must have {len(args)} entries, got {len(value)}: {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise _problem(where, f"must be a table of keys, got {value!r}")
        return from_dict(annotation, value, _where=where)
    if annotation is bool:
        if not isinstance(value, bool):
            raise _problem(where, f"must be true or false, got {value!r}")
        return value
    if annotation is int:  # numpy integers too (a value computed in Python), never a bool
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _problem(where, f"must be an integer, got {value!r}")
        return value if type(value) is int else int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _problem(where, f"must be a number, got {value!r}")
        return value if type(value) is float else float(value)
    if annotation is str:
        if isinstance(value, os.PathLike) and _is_path_field(where):
            return os.fspath(value)  # a pathlib.Path for a file or folder: its string
        if not isinstance(value, str):
            raise _problem(where, f"must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {annotation!r}")  # pragma: no cover


def _one_of_a_list(value: Any, where: str) -> bool:
    """Whether ``value``, given for a list of strings at ``where``, is read as a list of one:
    a string (``variables = "t2m"``, ``paths = "era5.nc"``; a ``pathlib.Path`` for a path
    list). A name list's string holding a comma (``data.variables=t2m,u`` on a command line)
    is refused with the list spelling: a variable name holds no comma, so it was meant as two.
    """
    if isinstance(value, os.PathLike):
        return _is_path_field(where)
    if not isinstance(value, str):
        return False
    if "," in value and not _is_path_field(where):
        names = [part.strip() for part in value.split(",")]
        key = _toml_key(where) or where
        quoted = ", ".join(f'"{name}"' for name in names)
        raise _problem(
            where,
            f"must be a list, got the string {value!r}; write a list of names: "
            f"{key} = [{quoted}] in TOML, {key}=[{','.join(names)}] on a command line",
        )
    return True


def _is_path_field(where: str) -> bool:
    """Whether the value at ``where`` (``TrainConfig.data.paths[0]``) names a file or folder
    (``data.paths``, ``run_dir``), which may then be given as a ``pathlib.Path``."""
    return re.sub(r"\[\d+\]$", "", where).rsplit(".", 1)[-1] in ("paths", "run_dir", "init_from")


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def from_dict(
    cls: type[C], values: Mapping[str, Any], *, _where: str | None = None, _check: bool = True
) -> C:
    """Build the frozen dataclass ``cls`` from a (nested) mapping.

    Parameters
    ----------
    cls
        One of the configuration dataclasses.
    values
        Keys are field names; nested tables build nested configurations.

    Returns
    -------
    C
        An instance of ``cls``.

    Raises
    ------
    ConfigError
        For an unknown key (with a close-match hint), an invalid ``Literal`` option or a value of
        the wrong type; for a :class:`TrainConfig`, a value out of range (not with
        ``_check=False``, which reads a run's saved configuration: keys and types are checked,
        ranges are not).

    Examples
    --------
    Nested tables build the sections; keys left out keep their defaults:

    >>> config = from_dict(TrainConfig, {"steps": 500, "model": {"backbone": "dit"}})
    >>> config.steps, config.model.backbone, config.model.preset
    (500, 'dit', 'tiny')
    >>> from_dict(SamplerConfig, {"sampler": "heun", "step": 10})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: unknown key 'step' in [sampler] ...; did you mean 'steps'? ...
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(
            f"from_dict builds a configuration class, got {type(cls).__name__} "
            f"{repr(cls)[:60]} as cls; call "
            "from_dict(TrainConfig, values) (the class first, then the mapping)"
        )
    where = _where or cls.__name__
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{_table(where)} must be a mapping of keys to values (a TOML table or a dict), "
            f"got {type(values).__name__} {repr(values)[:60]}; pass a dict, e.g. "
            f"from_dict({cls.__name__}, {{...}}) with the keys of {cls.__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            table = _toml_key(where) if where.partition(".")[0] in _TOML_SECTIONS else None
            raise ConfigError(
                f"unknown key {key!r} in {_table(where)}; "
                f"{_unknown_key_hint(key, table, names, file=True)}"
            )
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    if _check:
        built = cls(**kwargs)
    else:
        token = _CHECK_RANGES.set(False)
        try:
            built = cls(**kwargs)
        finally:
            _CHECK_RANGES.reset(token)
    if _where is None:  # the mapping the caller gave: which keys it set, defaults or not
        _set_given_keys(built, _dotted_keys(cls, values))
    return built


#: The attribute (not a field: it is neither compared, written nor shown) of a configuration
#: built by :func:`from_dict`, :func:`from_toml` or :func:`apply_overrides` holding the dotted
#: keys its mapping, file or overrides gave.
_GIVEN_KEYS = "_given_keys"


def _dotted_keys(cls: type, values: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys ``values`` sets for ``cls`` (``{"model.preset", "steps"}``): a table of
    a section is descended into, a table-valued setting (``data.transforms``) is one key."""
    hints = _type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    keys: set[str] = set()
    for key, value in values.items():
        hint = hints.get(key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(hint):
            keys |= _dotted_keys(hint, value, f"{prefix}{key}.")  # type: ignore[arg-type]
        else:
            keys.add(f"{prefix}{key}")
    return keys


def _set_given_keys(config: Any, keys: set[str] | frozenset[str] | None) -> None:
    """Record ``keys`` (``None``: not known) as the keys that built ``config``."""
    object.__setattr__(config, _GIVEN_KEYS, None if keys is None else frozenset(keys))


def _given_keys(config: Any) -> frozenset[str] | None:
    """The dotted keys the file, mapping or overrides that built ``config`` gave, at their
    default value or not (``frozenset({"model.preset", "data.factor"})``); ``None`` for a
    configuration built in Python (its constructor or ``dataclasses.replace``), where a key at
    its default value cannot be told from one left out."""
    return getattr(config, _GIVEN_KEYS, None)


def from_toml(cls: type[C], path: str | Path) -> C:
    """Read ``cls`` from a TOML file (see :func:`from_dict`).

    Parameters
    ----------
    cls : type
        One of the configuration dataclasses (:class:`TrainConfig` for a ``run.toml``).
    path : str or pathlib.Path
        The TOML file; its tables build the nested sections.

    Returns
    -------
    C
        An instance of ``cls``.

    Raises
    ------
    ConfigError
        When the file does not exist or is not valid TOML, and for the problems
        :func:`from_dict` refuses (the message starts with the file's path).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "run.toml"
    >>> text = ["steps = 200", "[model]", 'preset = "small"', "[data]", 'variables = ["t2m"]']
    >>> _ = path.write_text("\\n".join(text))
    >>> config = from_toml(TrainConfig, path)
    >>> config.steps, config.model.preset, config.data.variables
    (200, 'small', ('t2m',))
    >>> tmp.cleanup()
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from err
    except IsADirectoryError as err:
        raise ConfigError(
            f"configuration file {str(path)!r} is a folder; pass the TOML file in it, e.g. "
            f"{str(path / 'run.toml')!r}"
        ) from err
    except UnicodeDecodeError as err:
        raise ConfigError(_not_utf8_message(path, err)) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{str(path)!r} is not valid TOML: {err}") from err
    try:
        return from_dict(cls, values)
    except ConfigError as err:  # the keys as the file writes them, and which file
        raise ConfigError(f"{path}: {err}") from err


def _not_utf8_message(path: Path, err: UnicodeDecodeError) -> str:
    """What :func:`from_toml` says of a file that is not UTF-8 (TOML files must be): the byte
    that fails, its line, and how to convert the file."""
    data = err.object if isinstance(err.object, bytes) else b""
    line = data.count(b"\n", 0, err.start) + 1
    byte = data[err.start : err.start + 1]
    shown = f" (byte {byte.hex()!r}" + f", line {line})" if byte else ""
    return (
        f"{str(path)!r} is not UTF-8 text: the byte at position {err.start}{shown} is not "
        "valid UTF-8, and TOML files must be UTF-8. Save the file as UTF-8 (e.g. "
        f"iconv -f latin1 -t utf-8 {path.name} > fixed.toml), or write the character as ASCII "
        "(e.g. 'degC' for a degree sign)"
    )


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a configuration (tuples become lists; ``None`` values dropped for TOML).

    Parameters
    ----------
    config : dataclass instance
        A configuration (:class:`TrainConfig` or one of its sections).

    Returns
    -------
    dict
        ``{field name: value}``, a nested configuration as a nested dict; :func:`from_dict`
        builds ``config`` back from it.

    Examples
    --------
    >>> config = TrainConfig(model=ModelConfig(preset="small"))
    >>> values = to_dict(config)
    >>> values["model"]["preset"], values["model"]["image_size"], "micro_batch_size" in values
    ('small', [128, 128], False)
    >>> from_dict(TrainConfig, values) == config
    True
    """

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {
                f.name: plain(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None
            }
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def _parse_override(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as a TOML value, falling back to a string.

    A bracketed list that is not valid TOML (the shell removes the quotes of
    ``data.variables=["u","v"]``, leaving ``[u,v]``) is split on commas: items that parse as TOML
    numbers or booleans keep that type, every other item is a string
    (``[2019-03-01,2019-03-17T23]`` gives two strings).
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if text.startswith("[") and text.endswith("]") and "[" not in text[1:-1]:
        inner = text[1:-1].strip()
        items = [item.strip() for item in inner.split(",")] if inner else []
        if items and items[-1] == "":  # a trailing comma
            items.pop()
        return [_parse_bare_item(item) for item in items]
    return text


def _parse_bare_item(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, bool | int | float) else text


def _takes_table(hint: Any) -> bool:
    """Whether a setting of type ``hint`` may be a table of free keys (``data.transforms``)."""
    return any(get_origin(a) is Mapping for a in (hint, *get_args(hint)))


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the keys of ``update`` put in, nested tables merged the same way."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """Return ``config`` with ``key.sub=value`` overrides applied.

    Values are parsed as TOML (``lr=3e-4``, ``data.variables=["t2m"]``, ``model.preset=small``);
    bare words are strings, and so are the bare words of a list that is not valid TOML
    (``data.variables=[u,v]``, what a shell leaves of an unquoted ``["u","v"]``). An inline
    table changes only the keys it names (``optim={lr=1e-4,warmup_steps=10}`` keeps the rest of
    ``[optim]``). The bare word ``none`` (or ``null``) unsets a key that may be unset
    (``micro_batch_size=none``, ``data.condition=none``); elsewhere it is the string "none".
    A setting that is a table of free keys (``data.transforms``) takes one entry at a time
    (``data.transforms.tp=log1p`` adds or changes that entry) or a whole inline table
    (``data.transforms={tp="none"}`` replaces it).

    Parameters
    ----------
    config : dataclass instance
        A configuration (:class:`TrainConfig` or one of its sections); it is not changed.
    overrides : sequence of str
        ``key=value`` items, applied in order (a key given twice takes the last value); dotted
        keys reach into the sections (``optim.lr=3e-4``).

    Returns
    -------
    C
        A new configuration of the type of ``config``, built by :func:`from_dict` (so with its
        checks).

    Raises
    ------
    ConfigError
        For a malformed override or an unknown key (with a close-match hint).

    Examples
    --------
    >>> config = apply_overrides(
    ...     TrainConfig(), ["optim.lr=3e-4", "model.preset=small", "data.variables=[u,v]"]
    ... )
    >>> config.optim.lr, config.model.preset, config.data.variables
    (0.0003, 'small', ('u', 'v'))
    >>> config = apply_overrides(config, ["optim={warmup_steps=10}"])  # the rest of [optim] kept
    >>> config.optim.lr, config.optim.warmup_steps
    (0.0003, 10)
    >>> apply_overrides(config, ["lr=1e-3"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ConfigError: unknown key 'lr' in override ...; did you mean 'optim.lr'? ...
    """
    values = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=3e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        target = values
        cls: Any = type(config)
        for depth, part in enumerate(parts):
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                path = f"under {'.'.join(parts[:depth])}" if depth else "a top-level key"
                table = ".".join(parts[:depth]) if isinstance(config, TrainConfig) else None
                raise ConfigError(
                    f"unknown key {part!r} in override {item!r} ({path}); "
                    f"{_unknown_key_hint(part, table, names, file=False)}"
                )
            if depth == len(parts) - 1:
                hint = typing.get_type_hints(cls)[part]
                if text.strip() in ("none", "null") and type(None) in typing.get_args(hint):
                    target[part] = None  # back to "not set" (TOML has no null)
                    continue
                value = _parse_override(text.strip())
                if isinstance(value, dict) and dataclasses.is_dataclass(hint):
                    # an inline table changes the keys it names, not the whole section
                    value = _merged(target.get(part) or {}, value)
                target[part] = value
            else:
                hint = typing.get_type_hints(cls)[part]
                if depth == len(parts) - 2 and _takes_table(hint):
                    # data.transforms.tp=log1p: one entry of a table-valued setting (a word
                    # such as "auto" there is replaced by the table)
                    table = target.get(part)
                    table = dict(table) if isinstance(table, Mapping) else {}
                    table[parts[-1]] = _parse_override(text.strip())
                    target[part] = table
                    break
                cls = hint
                if not dataclasses.is_dataclass(cls):
                    raise ConfigError(f"override {item!r}: {part!r} is not a table")
                target = target.setdefault(part, {})
    result = from_dict(type(config), values)
    given = _given_keys(config)
    if given is not None:  # what built config, and the keys the overrides name
        _set_given_keys(result, given | _override_keys(type(config), overrides))
    else:  # built in Python: to_dict wrote every key, so which were given is not known
        _set_given_keys(result, None)
    return result


def _override_keys(cls: type, overrides: Sequence[str]) -> set[str]:
    """The dotted keys ``key=value`` overrides set: ``optim={lr=1e-4}`` sets ``optim.lr``,
    ``data.transforms.tp=log1p`` sets ``data.transforms``."""
    keys: set[str] = set()
    for item in overrides:
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        owner: Any = cls
        for depth, part in enumerate(parts):
            hint = _type_hints(owner).get(part) if dataclasses.is_dataclass(owner) else None
            name = ".".join(parts[: depth + 1])
            if not dataclasses.is_dataclass(hint):  # a setting: the key ends here
                keys.add(name)
                break
            if depth == len(parts) - 1:  # a whole section as an inline table
                value = _parse_override(text.strip())
                if isinstance(value, Mapping):
                    keys |= _dotted_keys(hint, value, f"{name}.")  # type: ignore[arg-type]
                break
            owner = hint
    return keys
