"""Backbone registry: names, size presets, model construction and parameter counts.

``PRESETS[backbone][preset]`` holds the architecture keywords of each backbone class;
:func:`build_model` turns a :class:`~flexdownscale.config.ModelConfig` into a model and
:func:`parameter_table` lists the super-resolution parameter counts cheaply (on the meta device).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .devices import available_devices, device_unavailable
from .dit import DiT
from .flex import FLEX
from .layers import GRID_MULTIPLE, Backbone, FourierTimeEmbedding
from .unet import UNet
from .uvit import UViT

__all__ = [
    "BACKBONES",
    "PRESETS",
    "REFERENCE_PARAMETERS",
    "build_model",
    "count_parameters",
    "export_state_dict",
    "format_parameter_count",
    "parameter_table",
]

BACKBONES: dict[str, type[Backbone]] = {"flex": FLEX, "unet": UNet, "uvit": UViT, "dit": DiT}
"""Backbone name -> class."""

_TINY_TASK = (32, 32, 64, 64)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "flex": {
        "tiny": dict(channels=(32, 32, 64, 64), blocks=(1, 1, 1, 1), depth=3, heads=2),
        "small": dict(channels=(64, 128, 128, 256), blocks=(2, 3, 3, 3), depth=13, heads=4),
        "medium": dict(channels=(64, 128, 256, 512), blocks=(2, 3, 3, 4), depth=13, heads=8),
        "big": dict(channels=(128, 256, 512, 1152), blocks=(2, 3, 3, 3), depth=21, heads=16),
    },
    "unet": {
        "tiny": dict(channels=(32, 32, 64, 64), blocks=(1, 1, 1, 1), head_channels=32),
        "small": dict(channels=(64, 128, 256, 256), blocks=(2, 2, 2, 3)),
        "medium": dict(channels=(128, 256, 384, 512), blocks=(2, 3, 3, 3)),
        "big": dict(channels=(256, 512, 768, 1024), blocks=(2, 3, 4, 4)),
    },
    "uvit": {
        "tiny": dict(dim=128, depth=9, heads=4, task_channels=_TINY_TASK, task_blocks=(1, 1, 1, 1)),
        "small": dict(dim=512, depth=13, heads=8),
        "medium": dict(dim=768, depth=25, heads=12),
        "big": dict(dim=1152, depth=55, heads=16),
    },
    "dit": {
        "tiny": dict(dim=128, depth=7, heads=4, task_channels=_TINY_TASK, task_blocks=(1, 1, 1, 1)),
        "small": dict(dim=512, depth=10, heads=8),
        "medium": dict(dim=768, depth=18, heads=12),
        "big": dict(dim=1152, depth=39, heads=16),
    },
}
"""``PRESETS[backbone][preset]``: keyword arguments of the backbone class. FLEX's small, medium
and big are the reference's; tiny is ours (CPU tests, < 5 M parameters). The baselines are
sized to roughly match FLEX's super-resolution parameter count per preset.
"""

REFERENCE_PARAMETERS: dict[str, int] = {
    "small": 49_670_000,
    "medium": 199_070_000,
    "big": 949_580_000,
}
"""Parameter counts of the reference FLEX super-resolution models (shared encoder + SR task
encoder + decoder, one channel, 128 x 128).
"""


def _check_config(config: ModelConfig) -> None:
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build_model expects a ModelConfig, got {type(config).__name__}")
    # field types and options are checked when a ModelConfig is built (config._Section)
    if config.backbone not in BACKBONES:
        raise ConfigError(
            f"unknown backbone {config.backbone!r}; expected one of {', '.join(BACKBONES)}"
        )
    if config.preset not in PRESETS[config.backbone]:
        raise ConfigError(
            f"unknown preset {config.preset!r} for {config.backbone}; expected one of "
            f"{', '.join(PRESETS[config.backbone])}"
        )
    if config.task not in ("superres", "forecast"):
        raise ConfigError(f"task must be 'superres' or 'forecast', got {config.task!r}")
    if config.conditioning not in ("weak+strong", "strong"):
        raise ConfigError(
            f"conditioning must be 'weak+strong' or 'strong', got {config.conditioning!r}"
        )
    for name in ("in_channels", "past_frames"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    out = config.out_channels
    if out is not None and (isinstance(out, bool) or not isinstance(out, int) or out < 1):
        raise ConfigError(f"out_channels must be a positive integer or None, got {out!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {config.dropout!r}")
    size = tuple(config.image_size)
    if len(size) != 2 or any(s < GRID_MULTIPLE or s % GRID_MULTIPLE for s in size):
        raise ConfigError(
            f"image_size must be (H, W) with H and W positive multiples of {GRID_MULTIPLE}, "
            f"got {config.image_size!r}"
        )


def build_model(config: ModelConfig, *, device: torch.device | str | None = None) -> Backbone:
    """Build the backbone described by ``config``.

    Parameters
    ----------
    config
        Backbone name, preset, channels, task, conditioning, ...
    device
        Device to build on: ``"cpu"``, ``"cuda"`` (``"cuda:1"``, ...) or ``"mps"`` where this
        machine has it, a ``torch.device``, or ``"meta"``, which builds without allocating
        memory (for counting). ``None`` builds on torch's default device.

    Returns
    -------
    Backbone
        The model (an ``nn.Module`` following the backbone contract), with ``model.config``.

    Raises
    ------
    ConfigError
        For an unknown backbone or preset, invalid values, or a device torch does not know
        (``"gpu"``) or this machine does not have (``"cuda"`` on a CPU-only machine).

    Examples
    --------
    >>> from flexdownscale.config import ModelConfig
    >>> model = build_model(ModelConfig(backbone="flex", preset="small"), device="meta")
    >>> format_parameter_count(count_parameters(model))
    '49.26 M'
    """
    _check_config(config)
    cls = BACKBONES[config.backbone]
    kwargs = PRESETS[config.backbone][config.preset]
    if device is None:
        return cls(config, **kwargs)
    with torch.device(_check_device(device)):
        return cls(config, **kwargs)


def _check_device(device: torch.device | str | int) -> torch.device:
    """``device`` as a ``torch.device`` this machine has (``meta`` included: a model built there
    has shapes and no values), or a :class:`~flexdownscale.errors.ConfigError` that names it
    and what is available here, by the package's one rule (``devices.device_unavailable``;
    torch itself raised an ``AssertionError`` for ``"cuda"`` on a CPU-only build and a bare
    ``RuntimeError`` for a name it does not know, such as ``"gpu"``)."""
    here = ", ".join(f"'{d}'" for d in [*available_devices(), "meta"])
    fix = f"available here: {here}; pass device='cpu' (or leave device out) to build on the CPU"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device = {device!r} is not a device torch knows; {fix}") from err
    why = None if resolved.type in ("cpu", "meta") else device_unavailable(resolved)
    if why is not None:
        raise ConfigError(f"device = {device!r} is not available: {why}; {fix}")
    return resolved


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (works on the meta device).

    Parameters
    ----------
    model : nn.Module
        Any module.
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        Total number of scalar weights (the sum of ``numel()`` over the parameters).

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(3, 2)  # 3 x 2 weights and 2 biases
    >>> count_parameters(layer)
    8
    >>> _ = layer.bias.requires_grad_(False)
    >>> count_parameters(layer, trainable_only=True)
    6
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


#: The dtypes a model folder's weights may be stored in, by name (``torch.<name>``).
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def _storage_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The floating dtype a model folder's weights are stored in, from a dtype or its name.

    Parameters
    ----------
    dtype : torch.dtype or str
        ``torch.float16``, ``torch.bfloat16``, ``torch.float32`` or ``torch.float64``, or its
        name (``"bfloat16"``, also ``"torch.bfloat16"`` as ``config.json`` records it).

    Returns
    -------
    torch.dtype
        The dtype.

    Raises
    ------
    ConfigError
        For any other dtype or name: an integer dtype would round the weights to whole numbers
        and a float8 folder could not be loaded again, so nothing is written with them.

    Examples
    --------
    >>> _storage_dtype("bfloat16")
    torch.bfloat16
    """
    if isinstance(dtype, str):
        found = _STORAGE_DTYPES.get(dtype.strip().removeprefix("torch."))
    elif isinstance(dtype, torch.dtype):
        found = dtype if dtype in _STORAGE_DTYPES.values() else None
    else:
        found = None
    if found is not None:
        return found
    why = ""
    if isinstance(dtype, torch.dtype):
        if dtype.is_complex:
            why = " (complex numbers)"
        elif dtype.is_floating_point:
            why = " (too few bits: such a folder could not be loaded again)"
        else:
            why = " (it would round the weights to whole numbers)"
    elif isinstance(dtype, str):
        why = " (not the name of a float dtype)"
    names = ", ".join(f"torch.{name}" for name in _STORAGE_DTYPES)
    raise ConfigError(
        f"dtype={dtype!r} cannot store a model's weights{why}; give one of {names}, or its name "
        "as a string (e.g. dtype='bfloat16' to halve the folder)"
    )


def export_state_dict(
    model: nn.Module, dtype: torch.dtype | str | None = None
) -> dict[str, torch.Tensor]:
    """``model``'s state dict for a model folder, floating weights cast to ``dtype``.

    The time embeddings' fixed frequencies (:class:`~flexdownscale.models.layers.
    FourierTimeEmbedding`) stay float32: in bfloat16 they would be off by up to 0.1 and the
    reloaded model would sample with other time features than it was trained with.

    Parameters
    ----------
    model
        A backbone (any module).
    dtype
        ``torch.float16``, ``torch.bfloat16`` (halves the folder), ``torch.float32`` or
        ``torch.float64``, or its name (``"bfloat16"``); ``None`` keeps every tensor's dtype.

    Returns
    -------
    dict
        Name -> detached tensor.

    Raises
    ------
    ConfigError
        For another ``dtype`` (see ``_storage_dtype``): an integer dtype would round the
        weights silently.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.config import ModelConfig
    >>> model = build_model(ModelConfig(backbone="flex", preset="tiny"))
    >>> state = export_state_dict(model, "bfloat16")
    >>> {w.dtype for name, w in state.items() if not name.endswith(".freqs")}
    {torch.bfloat16}
    >>> sorted(name for name, w in state.items() if w.dtype == torch.float32)
    ['dec_time.freqs', 'enc_time.freqs']
    >>> torch.equal(state["enc_time.freqs"], model.state_dict()["enc_time.freqs"])
    True
    """
    if dtype is not None:
        dtype = _storage_dtype(dtype)
    exact = {
        f"{name}.freqs" if name else "freqs"
        for name, module in model.named_modules()
        if isinstance(module, FourierTimeEmbedding)
    }
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point() and name not in exact:
            tensor = tensor.to(dtype)
        state[name] = tensor
    return state


def format_parameter_count(count: int) -> str:
    """``49255937 -> '49.26 M'``.

    Parameters
    ----------
    count : int
        A number of parameters (e.g. from :func:`count_parameters`).

    Returns
    -------
    str
        The count in millions with two decimals and the unit ``" M"``.

    Examples
    --------
    >>> import torch
    >>> format_parameter_count(count_parameters(torch.nn.Linear(1000, 1000)))  # 1,001,000
    '1.00 M'
    >>> format_parameter_count(49_255_937)
    '49.26 M'
    """
    return f"{count / 1e6:.2f} M"


def parameter_table(
    *,
    backbones: Iterable[str] | None = None,
    presets: Iterable[str] | None = None,
    config: ModelConfig | None = None,
) -> list[tuple[str, str, int]]:
    """Parameter counts of every backbone and preset, built on the meta device (cheap).

    Parameters
    ----------
    backbones, presets
        Restrict the table (default: all, in registry order).
    config
        Base configuration (default: super-resolution, one channel, no physical condition);
        ``backbone`` and ``preset`` are replaced row by row.

    Returns
    -------
    list of (str, str, int)
        ``[(backbone, preset, count), ...]``; print a row as
        ``f"{b:<5} {p:<6} {format_parameter_count(n)}"`` (``flex  small  49.26 M``).

    Examples
    --------
    The baselines are sized to match FLEX per preset:

    >>> for b, p, n in parameter_table(presets=["small"]):
    ...     print(f"{b:<5} {p:<6} {format_parameter_count(n)}")
    flex  small  49.26 M
    unet  small  52.15 M
    uvit  small  49.38 M
    dit   small  50.06 M
    """
    base = config or ModelConfig()
    rows = []
    for backbone in backbones or BACKBONES:
        for preset in presets or PRESETS.get(backbone, {}):
            cfg = dataclasses.replace(base, backbone=backbone, preset=preset)
            model = build_model(cfg, device="meta")
            rows.append((backbone, preset, count_parameters(model)))
    return rows


def module_with_weights(
    build: Callable[..., nn.Module],
    weights: Mapping[str, torch.Tensor],
    *,
    empty: nn.Module | None = None,
) -> nn.Module:
    """``build(device=...)``'s module holding ``weights``, built without touching torch's
    global random state.

    The module is built on the meta device (shapes only: no random initialization, which drew
    from torch's global generator, so that ``torch.manual_seed(0)`` followed by loading a
    model drew other numbers afterwards than without the load) and takes the tensors of
    ``weights`` as its own (``load_state_dict(..., assign=True)``). A module left with a
    tensor that the weights do not hold (a buffer computed when it is built and not saved) is
    built again on the CPU, under a forked random state, and loaded by copying.

    Parameters
    ----------
    build
        Builds the module on the device given as ``device`` (``"meta"`` or ``"cpu"``).
    weights
        Its state dict (every entry, of the shapes the module has).
    empty
        The module already built on the meta device (default: built here); it is filled.

    Returns
    -------
    nn.Module
        The module, its parameters and buffers the tensors of ``weights`` (shared, not copied;
        their dtypes kept).
    """
    module = build(device="meta") if empty is None else empty
    module.load_state_dict(dict(weights), assign=True)
    if not meta_tensor_names(module):
        return module
    with torch.random.fork_rng(devices=[]):  # a CPU build draws from the CPU generator only
        module = build(device="cpu")
    module.load_state_dict(dict(weights))
    return module


def meta_tensor_names(module: nn.Module) -> list[str]:
    """Names of ``module``'s tensors that hold no values (on the meta device): parameters,
    buffers (saved or not) and plain tensor attributes of its submodules."""
    names = [n for n, t in module.named_parameters(remove_duplicate=False) if t.is_meta]
    names += [n for n, t in module.named_buffers(remove_duplicate=False) if t.is_meta]
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for key, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and value.is_meta:
                names.append(f"{prefix}.{key}" if prefix else key)
    return names
