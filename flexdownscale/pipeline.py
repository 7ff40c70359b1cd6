"""Inference: the :class:`Downscaler` turns a coarse ``xr.Dataset`` into an ensemble on the fine grid.

Order of operations (the mirror of :class:`~flexdownscale.data.SuperResolutionDataset`): the
user's coarse field is normalized with the model's statistics, upsampled to the fine grid with the
model's upsampling (``base = up(normalize(coarse))``), padded to a multiple of the backbone's
``grid_multiple`` (16 for the built-in backbones), sampled as ``base + residual`` with the model's
sampler, cropped back and de-normalized.

Fields larger than a tile are sampled with per-step MultiDiffusion fusion: :class:`TiledDenoiser`
wraps the backbone into a network over the *whole* fine field (it splits the state into
overlapping tiles, runs the backbone on them in batches and blends the outputs with positive
windows at every network call), so the samplers run unchanged and the noise is drawn for the
whole fine field.

Randomness: time step ``i`` of the input (its position along the time dimension) is sampled
with a generator seeded from ``(seed, i)``, so the random numbers do not depend on the batch
size, on the time chunks of dask input, or on eager vs lazy execution. Consecutive time steps
share a sampler call when their members leave room in it (steps ``i`` with one ``i // k``,
``k = rows // members``), each with the member streams it has alone; dask blocks run whole such
groups, so eager and lazy outputs are the same bit for bit.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import math
import os
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor, nn

from . import _torch_fork  # noqa: F401  (a forked child runs torch on one thread)
from ._attributes import Extent, cell_extent, drop_dangling_references, regridded_attrs
from ._duck import dataset_of, plain_arrays
from ._keywords import keyword_hints
from ._links import DOCS_INFERENCE
from ._packing import check_decoded
from ._stack import user_stacklevel
from .config import DiffusionConfig, SamplerConfig
from .data.degrade import degrade_array, grid_row_weights, upsample_array
from .data.grid import (
    GridSpec,
    _duration,
    _geographic_to_rotated_pole,
    _grid_mapping_names,
    _is_periodic_attr,
    _rotated_frame,
    _seconds_per_time_unit,
    _time_steps,
    _trim_stale_coordinates,
    _with_geographic_coordinates,
    add_bounds,
    coordinate_encoding,
    grid_spec,
    normalize_grid,
    refine_grid,
    rotated_pole_to_geographic,
)
from .data.normalize import Normalizer
from .data.tiling import Blend, TileAccumulator, TileLayout, tile_layout
from .diffusion import ResidualModel, build_objective, resolve_sampler_options
from .diffusion.objectives import Objective, TaskFeatures
from .diffusion.samplers import (
    SAMPLERS,
    check_seed,
    cpu_items_per_call,
    derived_seed,
    member_generators,
    seed_of,
)
from .errors import (
    ConfigError,
    DataError,
    FlexDownscaleError,
    FlexDownscaleWarning,
    GridError,
    MissingVariableError,
    ModelFolderError,
    NotXarrayError,
    ShapeError,
    SkillWarning,
    UnitsError,
    UnsupportedFactorError,
    WeightsMismatchError,
    not_xarray_message,
)
from .models.devices import available_devices, device_unavailable
from .provenance import integer_attr
from .units import (
    WATER_DENSITY,
    UnitComparison,
    compare_units,
    conversion_code,
    conversion_rule,
)

__all__ = [
    "Downscaler",
    "Forecaster",
    "TiledDenoiser",
    "clear_model_cache",
    "downscaler_for",
    "resolve_downscaler",
    "time_step_seed",
]

SamplerName = Literal["ddim", "euler", "heun", "sde", "idff"]

#: Relative tolerance of the grid-spacing check (input spacing vs the model's coarse spacing).
SPACING_RTOL = 1e-3
#: Largest accepted offset of the input's coarse cells from the training lattice, in fine cells.
LATTICE_TOL_FINE_CELLS = 0.05
#: Default tile side in fine cells; fields up to this size run as one tile.
DEFAULT_TILE = 256
_MULTIPLE = 16

# --------------------------------------------------------------------------------------------
# Tiled network
# --------------------------------------------------------------------------------------------


class TiledDenoiser(nn.Module):
    """A backbone run on overlapping tiles, fused at every call (MultiDiffusion).

    The wrapper is a :class:`~flexdownscale.diffusion.objectives.Denoiser` over the whole
    (H, W) field of ``layout``: ``encode_task(cond)`` encodes every tile of ``cond`` once (the
    features are reused at every step and by every member), and ``forward(x_t, t, ...)`` splits
    ``x_t`` into tiles, calls the backbone on at most ``tile_batch`` tiles at a time and blends
    the tile outputs with the layout's window (``sum_k w_k out_k / sum_k w_k``).

    Parameters
    ----------
    backbone
        The network (tile sides divisible by 16 for the package's backbones).
    layout
        Tile positions and blend window over the (H, W) field.
    tile_batch
        Number of tiles per backbone call.
    wrap
        Periodic halos ``((top, bottom), (left, right))`` in cells. Along a dimension with a
        halo the field is periodic: the input is extended by its own wrapped-around cells before
        tiling and the fused output is cropped back, so ``layout`` covers ``(H + top + bottom,
        W + left + right)`` while inputs and outputs stay ``(H, W)``, and the cells at the
        periodic seam are estimated with context from both sides (no seam in the result).

    Examples
    --------
    A toy backbone without spatial context (``x_t + cond`` at every cell) run on the eight
    overlapping 16 x 16 tiles of a 24 x 40 field: blending the tiles gives exactly what the
    backbone gives on the whole field:

    >>> import torch
    >>> from torch import nn
    >>> from flexdownscale.data import tile_layout
    >>> class Pointwise(nn.Module):
    ...     def encode_task(self, cond):
    ...         return (cond,)
    ...     def forward(self, x_t, t, *, phys=None, task_features):
    ...         return x_t + task_features[0]
    >>> layout = tile_layout((24, 40), 16, overlap=8)
    >>> denoiser = TiledDenoiser(Pointwise(), layout, tile_batch=4)
    >>> x_t = torch.randn(2, 1, 24, 40, generator=torch.Generator().manual_seed(0))
    >>> cond = torch.randn(2, 1, 24, 40, generator=torch.Generator().manual_seed(1))
    >>> out = denoiser(x_t, torch.tensor(0.5), cond)
    >>> len(layout), tuple(out.shape), bool(torch.equal(out, x_t + cond))
    (8, (2, 1, 24, 40), True)
    """

    def __init__(
        self,
        backbone: nn.Module,
        layout: TileLayout,
        *,
        tile_batch: int = 8,
        wrap: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
    ) -> None:
        super().__init__()
        (tile_batch,) = _python_ints(tile_batch)
        if isinstance(tile_batch, bool) or not isinstance(tile_batch, int) or tile_batch < 1:
            raise ConfigError(f"batch_size = {tile_batch!r} must be a positive integer")
        self.backbone = backbone
        self.layout = layout
        self.tile_batch = tile_batch
        self.wrap = tuple(tuple(int(n) for n in pair) for pair in wrap)

    def _extend(self, x: Tensor) -> Tensor:
        """(b, C, H, W) -> the periodic extension over the layout's field."""
        for axis, (lo, hi) in zip((-2, -1), self.wrap, strict=True):
            if lo or hi:
                n = x.shape[axis]
                index = torch.arange(-lo, n + hi, device=x.device) % n
                x = x.index_select(axis, index)
        return x

    def _crop(self, x: Tensor) -> Tensor:
        (top, bottom), (left, right) = self.wrap
        return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]

    def _tiles(self, x: Tensor) -> Tensor:
        """(b, C, H, W) -> (b * T, C, th, tw), field-major."""
        x = self._extend(x)
        if tuple(x.shape[-2:]) != tuple(self.layout.shape):
            raise ShapeError(
                f"field of {tuple(x.shape[-2:])} cells (with periodic halos {self.wrap}) does "
                f"not match the tile layout's {tuple(self.layout.shape)}"
            )
        tiles = torch.stack(self.layout.split(x), dim=1)
        return tiles.reshape(-1, *tiles.shape[2:])

    def encode_task(self, cond: Tensor) -> TaskFeatures:
        """Task features of every tile: each tensor has shape (b, T, ...).

        Parameters
        ----------
        cond : torch.Tensor
            Condition over the whole field, shape (b, C_cond, H, W).

        Returns
        -------
        tuple of torch.Tensor
            The backbone's task features of each of the ``T`` tiles, shape (b, T, ...) each.
        """
        b, count = cond.shape[0], len(self.layout)
        tiles = self._tiles(cond)
        parts = [
            self.backbone.encode_task(tiles[i : i + self.tile_batch])
            for i in range(0, tiles.shape[0], self.tile_batch)
        ]
        return tuple(
            torch.cat([p[j] for p in parts]).reshape(b, count, *parts[0][j].shape[1:])
            for j in range(len(parts[0]))
        )

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        phys: Tensor | None = None,
        task_features: TaskFeatures | None = None,
    ) -> Tensor:
        """Fused backbone output over the whole field, (b, C_out, H, W).

        Parameters
        ----------
        x_t : torch.Tensor
            Noisy state over the whole field, shape (b, C, H, W).
        t : torch.Tensor
            Diffusion time, a scalar or one per sample (b,).
        cond : torch.Tensor, optional
            Condition over the whole field (b, C_cond, H, W); needed when ``task_features``
            is None.
        phys : torch.Tensor, optional
            Physical condition per sample (b,), repeated for every tile.
        task_features : tuple of torch.Tensor, optional
            Features from :meth:`encode_task` (computed from ``cond`` when None).

        Returns
        -------
        torch.Tensor
            The tiles' outputs blended with the layout's weights, shape (b, C_out, H, W).
        """
        b, count = x_t.shape[0], len(self.layout)
        if task_features is None:
            if cond is None:
                raise ShapeError("TiledDenoiser needs cond or task_features")
            task_features = self.encode_task(cond)
        flat = tuple(f.reshape(b * count, *f.shape[2:]) for f in task_features)
        tiles = self._tiles(x_t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        t_tiles = t.repeat_interleave(count)
        phys_tiles = phys.repeat_interleave(count) if phys is not None else None
        outs = []
        for i in range(0, tiles.shape[0], self.tile_batch):
            j = min(i + self.tile_batch, tiles.shape[0])
            outs.append(
                self.backbone(
                    tiles[i:j],
                    t_tiles[i:j],
                    phys=phys_tiles[i:j] if phys_tiles is not None else None,
                    task_features=tuple(f[i:j] for f in flat),
                )
            )
        out = torch.cat(outs).reshape(b, count, *outs[0].shape[1:])
        acc = TileAccumulator(self.layout)
        for k in range(count):
            acc.add(k, out[:, k])
        return self._crop(acc.result())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_factor(factor: Any) -> None:
    """``factor`` is ``None`` or a positive integer (a string or float is a ConfigError)."""
    if factor is None:
        return
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise ConfigError(f"factor = {factor!r} must be a positive integer (e.g. factor=4)")


#: Attributes of the ``member`` coordinate (CF standard name of an ensemble member number).
_MEMBER_ATTRS = {"standard_name": "realization", "long_name": "ensemble member"}


def _member_attrs(coords: Mapping[Hashable, Any]) -> dict[str, str]:
    """The ``member`` coordinate's attrs in an output with ``coords``: :data:`_MEMBER_ATTRS`,
    or, when a kept coordinate of the input is CF's ``realization`` already (a CMIP run's
    ``realization = 1``), no second ``standard_name`` (cf-xarray's ``out.cf["realization"]``
    would find two and raise) and a ``long_name`` telling the two apart."""
    taken = [
        str(name)
        for name, coord in coords.items()
        if name != "member" and getattr(coord, "attrs", {}).get("standard_name") == "realization"
    ]
    if not taken:
        return dict(_MEMBER_ATTRS)
    return {
        "long_name": f"ensemble member of the downscaling ({taken[0]!r} is the input's realization)"
    }


def _check_no_extra_dims(
    sel: xr.Dataset, variables: Sequence[str], spec: GridSpec, *, forecast: bool = False
) -> None:
    """Raise :class:`DataError` when a variable has dims beyond (time, y, x).

    A downscaling call is told to select or stack them (stacked with time, every field is one
    more time step); a forecast to select one value and forecast each in turn (stacked frames
    of several members are no trajectory).
    """
    y, x, tdim = spec.y, spec.x, spec.time
    stacked = sel.indexes.get(tdim) if tdim is not None else None
    if forecast and isinstance(stacked, pd.MultiIndex):
        levels = [str(n) for n in stacked.names]
        other = next((n for n in levels if n != "time"), levels[0])
        raise DataError(
            f"the time dim {str(tdim)!r} is stacked from {levels}: a forecast runs one "
            f"trajectory, from frames in time order; unstack it and select one value of the "
            f"others (e.g. ds.unstack({str(tdim)!r}).isel({other}=0)), and forecast each in turn"
        )
    for v in variables:
        extra = set(sel[v].dims) - {y, x, tdim}
        if extra and forecast:
            first = sorted(map(str, extra))[0]
            raise DataError(
                f"variable {v!r} has dims {sel[v].dims}; expected ({tdim or 'time'}, {y}, {x}) "
                f"— a forecast runs one trajectory: select one value of "
                f"{sorted(map(str, extra))} (e.g. ds.isel({first}=0)) and forecast each in "
                f"turn{_expver_hint(sel, extra)}"
            )
        if extra:
            only = str(next(iter(extra)))
            hint = (
                _one_field_hint(only, sel.sizes[only]) if tdim is None and len(extra) == 1 else ""
            )
            raise DataError(
                f"variable {v!r} has dims {sel[v].dims}; expected ({tdim or 'time'}, {y}, {x}) "
                f"— select or stack the extra dims {sorted(map(str, extra))} first{hint}"
                f"{_expver_hint(sel, extra)}"
            )


def _one_field_hint(name: str, size: int) -> str:
    """The end of :func:`_check_no_extra_dims`'s message for the one extra dim ``name``.

    A single value is selected (``squeeze``); several are run as the time dim, under another
    name when the dim is called ``member``, the name of the output's ensemble dim.
    """
    if size == 1:
        return (
            f", or drop it, as it holds a single value: ds.squeeze({name!r}) (or ds.isel({name}=0))"
        )
    if name == "member":
        return (
            f", or downscale each of its {size} fields on its own under another name "
            f"('member' is the output's ensemble dim): "
            f"ds.rename(member='driving_member'), then pass dims={{'time': 'driving_member'}}"
        )
    return (
        f", or downscale each of its {size} fields on its own (as training takes each "
        f"{name!r} as a sample): pass dims={{'time': {name!r}}}, which runs {name!r} as the "
        f"time dim and keeps its name in the output"
    )


def _check_time_not_member(spec: GridSpec, *, forecast: bool = False) -> None:
    """Raise :class:`DataError` when the input's time dim is named ``member``.

    For a downscaling call, the output's ensemble dim has that name: run as time, the input's
    members collided with it (the first field alone came back with ``members=None``, a doubled
    ``member`` dim with ``members=2``, xarray's "conflicting sizes" otherwise). For a forecast
    (``forecast=True``), the members were taken as the past frames of one trajectory, in
    position order, and the forecast ran from the last of them as if they were times.
    """
    if spec.time != "member":
        return
    if forecast:
        raise DataError(
            "the input's time dim is named 'member' (dims={'time': 'member'}): a forecast "
            "starts from past frames in time order, and ensemble members are no time sequence; "
            "forecast from each member's own time steps in turn (e.g. ds.isel(member=0, drop=True), "
            "with its 'time' dim), or pass members=N to sample an ensemble from one trajectory"
        )
    raise DataError(
        "the input's time dim is named 'member' (dims={'time': 'member'}), the name of the "
        "output's ensemble dim, so the two would collide; rename it first, e.g. "
        "ds.rename(member='driving_member'), then pass dims={'time': 'driving_member'}: "
        "each input member gives its own output field"
    )


def _check_output_names(sel: xr.Dataset, taken: set[str]) -> None:
    """Raise :class:`DataError` when an input coordinate is named like a dim of the output.

    Coordinates travel to the output, where one named like a dim it gets (``member``, ``bnds``)
    would clash after the sampling: a scalar one (what ``ens.sel(member=1)`` leaves) was lost or
    raised xarray's error, and a level of a stacked dim (``stack(sample=("member", "time"))``)
    raised xarray's "cannot drop or update coordinate(s) 'member'".
    """
    for name in sel.coords:
        if name not in taken or name in sel.dims:
            continue
        coord = sel[name]
        if coord.ndim == 0:
            raise DataError(
                f"the input has a scalar coordinate {str(name)!r} (what .sel({name}=...) leaves), "
                f"but the output has a {str(name)!r} dim; drop it first "
                f"(ds.drop_vars({str(name)!r})) or keep it under another name "
                f"(ds.rename({name}='input_{name}'))"
            )
        stacked = coord.dims[0] if coord.ndim == 1 else None
        level = stacked is not None and isinstance(sel.indexes.get(stacked), pd.MultiIndex)
        if level:
            raise DataError(
                f"the input has a coordinate {str(name)!r} (a level of the stacked dim "
                f"{stacked!r}), but the output has a {str(name)!r} dim; rename it before "
                f"stacking, e.g. ds.rename({name}='input_{name}').stack({stacked}=...)"
            )
        raise DataError(
            f"the input has a coordinate {str(name)!r} along {coord.dims}, but the output has a "
            f"{str(name)!r} dim; rename it (ds.rename({name}='input_{name}')) or drop it "
            f"(ds.drop_vars({str(name)!r}))"
        )


def _one_value(values: xr.DataArray) -> bool:
    """Whether every element of ``values`` is the same number (a condition held along time at
    one value is that value, as training reads it field by field)."""
    flat = np.asarray(values.values).ravel()
    if flat.size == 0 or not np.issubdtype(flat.dtype, np.number):
        return False
    return bool(np.all(flat == flat[0]))


def _expver_hint(sel: xr.Dataset, extra: set[Hashable]) -> str:
    """The fix for an ERA5 file of the CDS's older layout that mixes final ERA5 with the
    preliminary ERA5T along an ``expver`` dimension (each time valid in one of them, NaN in the
    other): the two are combined, not selected; ``""`` without such a dim."""
    if "expver" not in extra or sel.sizes["expver"] < 2:
        return ""
    values = [v.item() for v in np.asarray(sel["expver"].values)] if "expver" in sel.coords else []
    first, second = (repr(v) for v in values[:2]) if len(values) >= 2 else ("0", "1")
    by = "sel" if values else "isel"
    return (
        f". An 'expver' dimension (size {sel.sizes['expver']}) is how the CDS delivered ERA5 "
        "mixed with the preliminary ERA5T: each time holds values in one experiment and NaN in "
        "the other, so selecting one leaves NaN times. Combine them instead: "
        f"ds = ds.{by}(expver={first}).combine_first(ds.{by}(expver={second}))"
    )


def _time_units(time: xr.DataArray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CF ``units`` and ``calendar`` of a time coordinate: ``(attrs, encoding)`` to give
    times derived from it (attributes for a numeric axis, encoding for a decoded one)."""
    keys = ("units", "calendar")
    if time.dtype.kind in "iuf":
        return {k: time.attrs[k] for k in keys if k in time.attrs}, {}
    return {}, {k: time.encoding[k] for k in keys if k in time.encoding}


_GRID_WORDS = {"latlon": "latitude/longitude", "rotated": "rotated-pole", "projected": "projected"}


def _training_grid(metadata: Mapping[str, Any]) -> GridSpec | None:
    """The training grid a model folder's ``grid.json`` records (``None``: none recorded)."""
    fine = metadata.get("grid")
    return GridSpec.from_dict(fine) if fine else None


def _check_model_grid(spec: GridSpec, fine: GridSpec, factor: int, name: str) -> None:
    """Raise :class:`GridError` unless the input grid ``spec`` is the kind of grid, with the axis
    units and the spacing, that a model trained on ``fine`` takes.

    ``factor`` is the model's super-resolution factor (the input is ``fine`` coarsened by it);
    ``0`` for a forecast model, which takes ``fine`` itself.
    """
    if spec.kind != fine.kind:
        raise GridError(
            f"the input is on a {_GRID_WORDS[spec.kind]} grid (x in {spec.x_units!r}) but model "
            f"{name!r} was trained on a {_GRID_WORDS[fine.kind]} grid (x in {fine.x_units!r}); "
            "regrid the input onto the model's kind of grid (flexdownscale.data.regrid) or use "
            "a model trained on yours"
        )
    if spec.kind == "projected":
        for axis, found, expected in (
            ("x", spec.x_units, fine.x_units),
            ("y", spec.y_units, fine.y_units),
        ):
            if found.strip() != expected.strip():
                raise GridError(
                    f"the input's {axis} coordinate is in {found!r} but model {name!r} was "
                    f"trained with {axis} in {expected!r}; convert it (values and "
                    f"attrs['units']) to {expected!r} first"
                )
    f = max(factor, 1)
    for axis, found, trained, units in (
        ("x", spec.dx, fine.dx, spec.x_units),
        ("y", spec.dy, fine.dy, spec.y_units),
    ):
        expected = trained * f
        if abs(found - expected) <= SPACING_RTOL * expected:
            continue
        if factor:
            what = (
                f"the model downscales a {expected:g} {units} grid (its {trained:g} {units} "
                f"training grid coarsened x{factor}); regrid the input to that spacing first, "
                "e.g. with flexdownscale.data.regrid or coarsen_grid"
            )
        else:
            what = (
                f"forecast model {name!r} steps fields on its {expected:g} {units} training "
                f"grid ({fine.ny} x {fine.nx} cells); regrid the input to that spacing first "
                "(flexdownscale.data.regrid), or use a model trained on your grid"
            )
        raise GridError(f"input grid spacing along {axis} is {found:g} {units} but {what}")


class _AxisAgainstTraining(NamedTuple):
    """One axis of the input's grid next to the same axis of the model's training grid."""

    axis: str  # "x" or "y"
    dim: str  # the input's dimension
    trained: bool  # periodic in training
    found: bool  # periodic in the input (attribute, or a global longitude)
    n: int  # the input's cells
    step: float  # the input's spacing
    units: str  # the input's coordinate units, "" / "1" when none
    period: float  # the training grid's extent (cells times spacing)
    fine_step: float  # the training grid's spacing

    @property
    def unit(self) -> str:
        """`` units`` for a message, ``""`` without one."""
        return f" {self.units}" if self.units not in ("", "1") else ""


def _axes_against_training(spec: GridSpec, fine: GridSpec) -> dict[str, _AxisAgainstTraining]:
    """The input's x and y axes (``spec``) beside the training grid's (``fine``), by name."""
    return {
        "x": _AxisAgainstTraining(
            "x", spec.x, fine.periodic_x, spec.periodic_x, spec.nx, spec.dx, spec.x_units,
            fine.nx * fine.dx, fine.dx,
        ),
        "y": _AxisAgainstTraining(
            "y", spec.y, fine.periodic_y, spec.periodic_y, spec.ny, spec.dy, spec.y_units,
            fine.ny * fine.dy, fine.dy,
        ),
    }  # fmt: skip


def _warn_periodic_attribute(spec: GridSpec, fine: GridSpec, factor: int, name: str) -> None:
    """Warn (once) when the model trained on periodic axes and the input spans such a whole
    period but lacks the ``periodic = "true"`` attribute there (so it runs non-periodic)."""
    f = max(factor, 1)
    missing = []
    for ax in _axes_against_training(spec, fine).values():
        if not ax.trained or ax.found or abs(ax.n * ax.step - ax.period) > 0.5 * ax.fine_step * f:
            continue
        missing.append((ax.axis, ax.dim, f"{ax.period:g}{ax.unit}"))
    if not missing:
        return
    dims = " and ".join(repr(dim) for _, dim, _ in missing)
    spans = ", ".join(f"{dim!r} over {span}" for _, dim, span in missing)
    fix = "; ".join(f'ds[{dim!r}].attrs["periodic"] = "true"' for _, dim, _ in missing)
    warnings.warn(
        f"model {name!r} was trained on a field periodic along "
        f"{' and '.join(axis for axis, _, _ in missing)} (its grid.json), and the input spans "
        f"that whole period ({spans}), but {dims} {'has' if len(missing) == 1 else 'have'} no "
        'periodic = "true" attribute: the field runs as non-periodic, with reflected padding '
        "instead of wrapped-around cells at its edges, and loses skill near them. If the "
        f"field is periodic, set {fix} (this warning then goes away); if it is not, ignore "
        "the warning",
        SkillWarning,
        stacklevel=user_stacklevel(),
    )


def _refuse_cyclic_point(sel: xr.Dataset, spec: GridSpec, fine: GridSpec, factor: int) -> None:
    """Raise :class:`DataError` when an axis the input says is periodic (``periodic = "true"``)
    and the model trained periodic spans one cell more than the model's period: its last
    coordinate is its first one period later, a cyclic point (as ``add_cyclic_point`` or
    node-based solvers write it). Run as periodic, that cell would be counted twice and the
    field would wrap as a longer domain. ``factor`` as for :func:`_warn_periodic_attribute`
    (``0`` for a forecast model); global longitudes are checked by the grid layer."""
    f = max(factor, 1)
    axes = _axes_against_training(spec, fine)
    for ax in (axes["y"], axes["x"]):
        if not ax.trained or not ax.found or ax.n < 3 or not _is_periodic_attr(sel[ax.dim].attrs):
            continue
        if abs((ax.n - 1) * ax.step - ax.period) > 0.5 * ax.fine_step * f:
            continue
        dim, values, unit = ax.dim, np.asarray(sel[ax.dim].values), ax.unit
        line = "row" if ax.axis == "y" else "column"
        raise DataError(
            f'the input says it is periodic along {dim!r} (periodic = "true") and spans {ax.n} '
            f"cells of {ax.step:g}{unit}: its last {line}, {dim} = {values[-1]:g}, is its first, "
            f"{dim} = {values[0]:g}, one period ({ax.period:g}{unit}, the model's period) later — "
            "a cyclic point, as add_cyclic_point or node-based solvers write it. Run as "
            "periodic, that cell would be counted twice and the field would wrap as a longer "
            f"domain. Drop it: ds.isel({dim}=slice(None, -1))"
        )


def _ignore_foreign_period(
    sel: xr.Dataset,
    spec: GridSpec,
    fine: GridSpec,
    factor: int,
    name: str,
    dims: Mapping[str, str] | None,
) -> tuple[xr.Dataset, GridSpec]:
    """Run an axis as not periodic (with a warning) when the input says it is periodic but its
    extent is shorter than the period the model trained on (a window cut from a periodic box
    keeps the attribute: wrapping it would join its opposite edges, which are not neighbours).
    A periodic axis longer than that period is a larger periodic domain and wraps.

    ``factor`` as for :func:`_warn_periodic_attribute` (``0`` for a forecast model). Returns
    ``sel`` without the ``periodic`` attribute on such axes (the input is not modified) and its
    grid spec; ``(sel, spec)`` unchanged when there is none.
    """
    f = max(factor, 1)
    foreign = []
    for ax in _axes_against_training(spec, fine).values():
        # a window is shorter than the period; a longer periodic domain (a 4 pi box for a
        # model of the 2 pi box) is periodic in its own right and keeps wrapping
        if not ax.trained or not ax.found or ax.n * ax.step >= ax.period - 0.5 * ax.fine_step * f:
            continue
        if not _is_periodic_attr(sel[ax.dim].attrs):  # periodic by its extent (360 degrees)
            continue
        n, d, unit = ax.n, ax.step, ax.unit
        extent = f"{n} cells of {d:g}{unit} = {n * d:g}{unit}"
        foreign.append((ax.dim, extent, f"{ax.period:g}{unit}"))
    if not foreign:
        return sel, spec
    found_words = "; ".join(
        f"{dim!r} spans {extent}, the model's period {period}" for dim, extent, period in foreign
    )
    dims_words = " and ".join(repr(dim) for dim, _, _ in foreign)
    pops = "; ".join(f'ds[{dim!r}].attrs.pop("periodic")' for dim, _, _ in foreign)
    whole = (
        "forecast the whole periodic field (and cut the window from the forecast)"
        if factor == 0  # a forecast has no bbox
        else "give the whole periodic field and select the window with bbox= (it reads the "
        "window with context from its neighbours)"
    )
    warnings.warn(
        f'the input says it is periodic along {dims_words} (periodic = "true"), but it does '
        f"not span the period of the field model {name!r} was trained on: {found_words} (its "
        "grid.json). A window cut from a periodic field keeps the attribute (xarray copies "
        "attributes), and wrapping it would join its opposite edges, which are not neighbours; "
        "the attribute is ignored and the field runs as non-periodic (reflected padding at its "
        f"edges). To fix: {whole}, or drop the attribute ({pops}) to silence this warning",
        SkillWarning,
        stacklevel=user_stacklevel(),
    )
    coords = {}
    for dim, _, _ in foreign:
        coord = sel[dim].variable.copy(deep=False)
        coord.attrs = {k: v for k, v in coord.attrs.items() if k != "periodic"}
        coords[dim] = coord
    sel = sel.assign_coords(coords)
    return sel, grid_spec(sel, dims=dims)


#: A regional model warns when fewer than this share of the input's cells lie in its training
#: domain (an input twice the domain's size along each axis, centred on it, has a quarter).
DOMAIN_SHARE_MIN = 0.25


def _warn_outside_domain(
    fine: GridSpec,
    ys: np.ndarray,
    xs: np.ndarray,
    units: tuple[str, str],
    name: str,
    fix: str = "downscale the training region only (bbox=...)",
    crs: Mapping[str, Any] | None = None,
) -> None:
    """Warn when a regional model (latitude/longitude or rotated-pole training grid bounded
    along an axis) runs on cells (centres ``ys``, ``xs``) mostly outside its training domain:
    fewer than :data:`DOMAIN_SHARE_MIN` of them inside it (longitudes compared modulo 360).
    ``fix`` says how to keep to the domain. ``crs`` is the input's grid mapping: on a rotated
    grid whose pole is not the training grid's, the cells are first moved into the training
    grid's rotated frame (the same numbers are other places under another pole)."""
    if fine.kind not in ("latlon", "rotated") or (fine.periodic_x and fine.periodic_y):
        return
    ys, xs = np.asarray(ys, dtype=np.float64), np.asarray(xs, dtype=np.float64)
    if ys.size == 0 or xs.size == 0:
        return
    frame = ""
    if fine.kind == "rotated" and _other_rotated_pole(crs, fine.crs):
        every = max(1, math.ceil(math.sqrt(ys.size * xs.size / 1e6)))  # a share: 1e6 cells do
        ys, xs = ys[::every], xs[::every]
        lat, lon = rotated_pole_to_geographic(ys[:, None], xs[None, :], crs)  # type: ignore[arg-type]
        ys, xs = _geographic_to_rotated_pole(lat, lon, fine.crs)  # type: ignore[arg-type]
        frame = " (in the training grid's rotated frame: the input's rotated pole is another)"
        # a bbox is read in the input's frame: regridding is the way onto the training cells
        fix = "regrid the input onto the model's rotated grid (flexdownscale.data.regrid)"
    spans, inside = [], []
    for values, first, step, count, periodic, wraps in (
        (ys, fine.y0, fine.dy, fine.ny, fine.periodic_y, False),
        (xs, fine.x0, fine.dx, fine.nx, fine.periodic_x, True),
    ):
        low, high = first - 0.5 * step, first + (count - 0.5) * step
        spans.append((low, high))
        offset = values - low
        if wraps:
            offset = np.mod(offset, 360.0)
        inside.append(periodic | ((offset >= 0) & (offset <= high - low)))
    if ys.ndim == 1:  # the cells are the product of the two axes
        share = float(np.mean(inside[0])) * float(np.mean(inside[1]))
    else:
        share = float(np.mean(inside[0] & inside[1]))
    if share >= DOMAIN_SHARE_MIN:
        return
    (ylo, yhi), (xlo, xhi) = spans
    warnings.warn(
        f"model {name!r} was trained on a regional domain (x {xlo:g}..{xhi:g} {units[1]}, "
        f"y {ylo:g}..{yhi:g} {units[0]}) but the input spans x {float(np.min(xs)):g}.."
        f"{float(np.max(xs)):g}, y {float(np.min(ys)):g}..{float(np.max(ys)):g}{frame}: only "
        f"{_percent(share)} of its cells lie in the training domain (this warns below "
        f"{100 * DOMAIN_SHARE_MIN:.0f}%). Outside it the model extrapolates to climates it "
        f"never saw; {fix} or use a model trained on yours",
        SkillWarning,
        stacklevel=user_stacklevel(),
    )


def _percent(share: float) -> str:
    """``share`` (0..1) as a percentage that a small share does not round to 0: whole percents
    from 1%, two significant digits below ("0.15%"), "0%" only for none."""
    percent = 100.0 * share
    if percent == 0 or percent >= 1:
        return f"{percent:.0f}%"
    return f"{percent:.2g}%"


def _input_grid_mapping(sel: xr.Dataset, ds: xr.Dataset) -> dict[str, Any] | None:
    """The CF grid-mapping attributes of the selected variables ``sel``, looked up in the input
    ``ds`` (selecting the model's variables leaves the grid-mapping variable behind)."""
    for var in sel.data_vars.values():
        names = _grid_mapping_names(
            var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        )
        if names and names[0] in ds.variables:
            return dict(ds[names[0]].attrs)
    return None


def _other_rotated_pole(crs: Mapping[str, Any] | None, trained: Mapping[str, Any] | None) -> bool:
    """Whether two rotated-pole grid mappings both give their pole and the poles differ (then
    rotated coordinates of one are other places in the other)."""
    try:
        frames = [_rotated_frame(gm) for gm in (crs, trained)]  # type: ignore[arg-type]
    except (GridError, TypeError):  # a mapping without a (numeric) pole: nothing to compare
        return False
    return not all(np.allclose(a, b, rtol=0.0, atol=1e-9) for a, b in zip(*frames))


def _physical_values(normalizer: Normalizer, z: np.ndarray, variables: list[str]) -> np.ndarray:
    """Samples ``z`` (..., C, H, W) in physical values: the normalizer's inverse, clipped at
    each variable's lower bound (:meth:`Normalizer.lower_bounds`: 0 for the ``log1p``,
    precipitation-like variables, whose inverse ``expm1`` reaches down to -1)."""
    fine = normalizer.inverse_transform_array(z, variables=variables)
    return np.maximum(fine, normalizer.lower_bounds(variables)[:, None, None])


def _leadwise_physical(normalizer: Normalizer, z: Tensor, variables: list[str]) -> list[np.ndarray]:
    """A forecast's samples ``z`` (M, lead_steps, C, H, W), on any device, in physical float32
    values: one (M, lead_steps, H, W) array per variable, as :func:`_physical_values` gives
    them (in float64, then rounded), bit for bit, but made a lead and a variable at a time, so
    that the float64 values and their temporaries take a fraction of the output's memory (the
    whole output in float64 took about 6x the float32 output at its peak)."""
    members, leads = z.shape[:2]
    fields = [np.empty((members, leads, *z.shape[-2:]), dtype=np.float32) for _ in variables]
    for k, name in enumerate(variables):
        for lead in range(leads):
            chunk = z[:, lead, k : k + 1].to("cpu", torch.float64).numpy()
            fields[k][:, lead] = _physical_values(normalizer, chunk, [name])[:, 0]
    return fields


#: The values of ``conserve`` (:meth:`Downscaler.__call__`), ``None`` aside.
_CONSERVE_MODES = ("additive", "multiplicative")


def _conserve_mode(value: Any, where: str) -> str | None:
    """One ``conserve`` value checked: ``None`` or one of ``_CONSERVE_MODES``."""
    if value is None or (isinstance(value, str) and value in _CONSERVE_MODES):
        return value
    raise ConfigError(
        f"{where} = {value!r} is not a valid option; expected None, 'additive' or "
        "'multiplicative' (or, for conserve, a mapping {variable: one of those})"
    )


def _conserve_modes(
    conserve: Any, variables: Sequence[str], grid: Mapping[str, Any], name: str
) -> tuple[str | None, ...] | None:
    """The coarse-cell constraint of each of the model's ``variables`` (channel order) from a
    call's ``conserve`` (one mode for all, or a mapping ``{variable: mode}`` in which the
    variables left out are not constrained); ``None`` when no variable is constrained.

    Raises :class:`~flexdownscale.errors.ConfigError` for an unknown mode or variable, and for
    a model whose degradation (``grid["degradation"]``) is not an area mean: the constraint
    ``degrade(out) == coarse`` is then not one of whole coarse cells."""
    if isinstance(conserve, Mapping):
        unknown = [str(k) for k in conserve if k not in variables]
        if unknown:
            raise ConfigError(
                f"conserve={dict(conserve)!r} names {', '.join(map(repr, unknown))}, which model "
                f"{name!r} does not "
                f"output; its variables are {', '.join(map(repr, variables))} (the model's "
                "names, as in the output)"
            )
        modes = tuple(_conserve_mode(conserve.get(v), f"conserve[{v!r}]") for v in variables)
    else:
        modes = (_conserve_mode(conserve, "conserve"),) * len(variables)
    if all(m is None for m in modes):
        return None
    degradation = grid.get("degradation")
    if degradation != "area_mean":
        why = {
            "gaussian": "its coarse value of a cell is a Gaussian-weighted mean that reaches "
            "into the neighbouring cells, so no correction of each cell's own fine values "
            "makes the fine field degrade to the input",
            "strided": "its coarse value of a cell is the value of one fine cell (the first of "
            "the block), not a mean of the cell's fine values",
            None: "the model records no degradation (grid.json has no 'degradation')",
        }.get(degradation, "it is not an area mean")
        raise ConfigError(
            f"conserve={conserve!r} needs a model trained with degradation 'area_mean' (the "
            f"fine field's area mean over each coarse cell is then made the input's value); "
            f"model {name!r} was trained with degradation {degradation!r}: {why}. Leave "
            "conserve unset for this model"
        )
    return modes


def _conserve_attrs(modes: Sequence[str | None] | None, variables: Sequence[str]) -> dict[str, str]:
    """``{"flexdownscale_conserve": ...}`` of a constrained call (none without constraint):
    the mode, or ``"name: mode, ..."`` when the variables' modes differ."""
    if modes is None:
        return {}
    if len(set(modes)) == 1:
        return {"flexdownscale_conserve": str(modes[0])}
    words = [f"{v}: {m}" for v, m in zip(variables, modes, strict=True) if m is not None]
    return {"flexdownscale_conserve": ", ".join(words)}


def _conserve_coarse_cells(
    fine: np.ndarray,
    coarse: np.ndarray,
    factor: int,
    modes: Sequence[str | None],
    row_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``fine`` (..., C, H, W) corrected so that its area mean over each block of ``factor`` x
    ``factor`` cells (:func:`~flexdownscale.data.degrade_array`, ``"area_mean"`` with
    ``row_weights``) is ``coarse`` (C, H / factor, W / factor), channel by channel, each leading
    index (ensemble member) on its own.

    ``modes[c]`` is ``None`` (channel ``c`` unchanged), ``"additive"`` (each block's fine values
    get ``coarse - D(fine)`` added: exact for the linear ``D``, the spread within the block
    kept) or ``"multiplicative"``, a scaling of non-negative values only: a block whose fine
    values are all ``>= 0`` is scaled by ``coarse / D(fine)`` (a block whose coarse value is 0
    becomes 0, so dry cells stay dry and non-negative fields non-negative; a fine value can
    become up to ``factor**2`` times the coarse value, when the rest of its block is 0). A
    block that has a negative fine value or a negative coarse value, whose scaling would
    magnify or flip its values, and one whose fine values are all 0 under a coarse value
    ``> 0``, get the additive correction instead (the latter: the coarse value spread evenly).
    Computed in float64.

    Returns
    -------
    out : numpy.ndarray
        The corrected values, a new array.
    signed : numpy.ndarray
        Per channel (C,), the number of blocks (over the leading indices) of a multiplicative
        channel that got the additive correction for a negative fine or coarse value.
    """
    f = factor
    out = np.array(fine, dtype=np.float64)
    target = np.asarray(coarse, dtype=np.float64)
    signed_blocks = np.zeros(len(modes), dtype=np.int64)

    def blocks(a: np.ndarray) -> np.ndarray:  # each coarse value over its fine block
        return upsample_array(a, f, method="nearest")

    for c, mode in enumerate(modes):
        if mode is None:
            continue
        x = out[..., c, :, :]
        want = target[c]
        have = degrade_array(x, f, method="area_mean", row_weights=row_weights)
        if mode == "additive":
            out[..., c, :, :] = x + blocks(want - have)
            continue
        rows, cols = x.shape[-2] // f, x.shape[-1] // f
        lowest = x.reshape(*x.shape[:-2], rows, f, cols, f).min(axis=(-3, -1))
        signed = (lowest < 0) | (want < 0)  # no scaling: the additive correction
        signed_blocks[c] = int(signed.sum())
        scaled = ~signed & (have > 0) & (want > 0)
        dry = ~signed & (want == 0)
        ratio = np.where(scaled, want / np.where(scaled, have, 1.0), 1.0)
        shift = np.where(scaled | dry, 0.0, want - have)
        ratio = np.where(dry, 0.0, ratio)
        out[..., c, :, :] = x * blocks(ratio) + blocks(shift)
    return out, signed_blocks


#: How far (in the model's standard deviations, after its transform) an input value may lie
#: from its training mean before the call warns: a Gaussian field reaches 8 sigma in one cell
#: of 10**15; what lies beyond is a fill value not decoded, a field scaled or shifted, or
#: another regime than the model saw (its output there is unreliable)
FAR_FROM_TRAINING = 8.0


def _warn_far_from_training(
    z: np.ndarray,
    values: np.ndarray,
    normalizer: Any,
    variables: Sequence[str],
    position: Callable[[np.ndarray], str],
    token: list[bool] | None,
) -> None:
    """One :class:`SkillWarning` for the normalized input ``z`` (channels on axis 1, as
    ``values``, the physical values) holding values more than :data:`FAR_FROM_TRAINING`
    standard deviations from the model's training mean, per call: ``token`` (``[True]``
    until a block takes it; ``None``: warn) is shared by a lazy call's blocks. Not checked,
    being heavy-tailed: variables normalized through a transform (``log1p``), and a block's
    values of a variable that are all ``>= 0`` where its training mean lies within 2 standard
    deviations of 0 (an intermittent field such as rain normalized without a transform: a
    downpour lies tens of standard deviations above the mean)."""
    far = np.zeros(z.shape, dtype=bool)
    for k, name in enumerate(variables):
        stats = normalizer.stats[name]
        if stats.transform != "none":
            continue
        if stats.mean < 2 * stats.std and bool(np.all(values[:, k] >= 0)):
            continue
        far[:, k] = np.abs(z[:, k]) > FAR_FROM_TRAINING
    if not far.any():
        return
    if token is not None:
        try:
            token.pop()
        except IndexError:
            return
    parts = []
    for k, name in enumerate(variables):
        count = int(far[:, k].sum())
        if not count:
            continue
        stats = normalizer.stats[name]
        units = f" {stats.units}" if stats.units not in (None, "", "1") else ""
        worst = np.unravel_index(
            int(np.argmax(np.where(far[:, k], np.abs(z[:, k]), 0.0))), z[:, k].shape
        )
        index = np.array([worst[0], k, worst[1], worst[2]])
        parts.append(
            f"{name!r}: {count} of {far[:, k].size} values (the farthest "
            f"{values[tuple(index)]:g}{units}, {z[tuple(index)]:+.0f} sigma, at "
            f"{position(index)}; trained on {stats.mean:.4g} +- {stats.std:.3g}{units})"
        )
    warnings.warn(
        "the input lies more than "
        f"{FAR_FROM_TRAINING:g} standard deviations from the model's training mean: "
        + "; ".join(parts)
        + ". The model never saw such values and its output there is unreliable. An undecoded "
        "fill value (mask it: ds.where(ds != fill), then fill it like a NaN), a field in other "
        "units or scaled, or another regime than the model was trained on?"
        + ("" if token is None else " (counted in the first block of this lazy call to hold them)"),
        SkillWarning,
        stacklevel=user_stacklevel(),
    )


def _warn_signed_blocks(
    signed: np.ndarray,
    total: int,
    variables: Sequence[str],
    modes: Sequence[str | None],
    within: str | None = None,
) -> None:
    """Warn (:class:`~flexdownscale.errors.FlexDownscaleWarning`) when ``conserve=
    "multiplicative"`` shifted rather than scaled some coarse cells of a variable, ``signed``
    (per channel) of the ``total`` blocks of each channel (members x time steps x cells): their
    sampled or coarse values were negative, and the variable takes both signs. ``within`` says
    which part of the call the counts are of (a lazy call's block), ``None``: all of it."""
    counts = [(v, int(n)) for v, n in zip(variables, signed, strict=True) if n]
    if not counts:
        return
    which = ", ".join(f"{n} of the {total} coarse cells of {v!r}" for v, n in counts)
    both = [v for v, _ in counts]
    fix = {v: ("additive" if v in both else m) for v, m in zip(variables, modes, strict=True)}
    fix = {v: m for v, m in fix.items() if m is not None}
    keyword = "conserve='additive'" if len(set(fix.values())) == 1 else f"conserve={fix!r}"
    warnings.warn(
        "conserve='multiplicative' scales a coarse cell's fine values by coarse / mean, which "
        f"suits values >= 0 only: {which} (members and time steps together"
        + (f", of {within}" if within else "")
        + ") had a negative "
        "sampled or coarse value and were shifted instead, the additive correction, as scaling "
        "would magnify them (a small positive mean of values of both signs gives ratios in "
        "the hundreds); the coarse means hold. A variable that takes both signs is "
        f"constrained with {keyword}",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


def _training_crop(metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    """The (rows, cols) of the crops a model trained on, from ``grid.json``'s ``crop_size``
    (``None`` when not recorded, or when the model trained on whole fields)."""
    size = metadata.get("crop_size")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    return None


def _even_spacing(steps: np.ndarray) -> float | None:
    """The common spacing of successive time ``steps`` (to 1e-3 relative), ``None`` when they
    are uneven, not positive or absent."""
    spacing = float(steps[-1]) if steps.size else math.nan
    if steps.size and spacing > 0 and np.allclose(steps, spacing, rtol=1e-3, atol=0.0):
        return spacing
    return None


def _whole_stride(steps: np.ndarray, value: float) -> int | None:
    """``k > 1`` when the time ``steps`` are evenly a whole fraction ``1 / k`` of a model's
    step ``value`` (its frames are every k-th), else ``None``."""
    spacing = _even_spacing(steps)
    if spacing is None:
        return None
    ratio = value / spacing
    k = round(ratio)
    return k if ratio > 1 and k > 1 and abs(ratio - k) <= 1e-3 * ratio else None


def _training_time_step(metadata: Mapping[str, Any]) -> tuple[float, str] | None:
    """``(value, units)`` of one step of a forecast model, from ``grid.json``'s ``time_step``
    (seconds for dates; ``None`` when not recorded: folders written before it was, or training
    frames without evenly spaced time coordinates)."""
    step = metadata.get("time_step")
    if not isinstance(step, Mapping):
        return None
    value, units = step.get("value"), step.get("units")
    if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(units, str):
        return None
    return (float(value), units) if math.isfinite(value) and value > 0 else None


def _step_like(value: float, times: np.ndarray, attrs: Mapping[str, Any]) -> Any:
    """A step of ``value`` (:func:`_time_steps`' units: seconds for times) in the terms of the
    time coordinate ``times``: a ``timedelta64`` for datetime64, a ``timedelta`` for cftime, a
    number in the coordinate's own units otherwise."""
    import datetime

    if times.dtype.kind == "M":
        return np.timedelta64(round(value * 1e9), "ns")
    if times.dtype.kind == "O":
        return datetime.timedelta(seconds=value)
    return value / (_seconds_per_time_unit(attrs) or 1.0)  # a step count: its own units


def _lead_long_name(model_step: float | None, times: np.ndarray | None, time: xr.DataArray) -> str:
    """The ``long_name`` of a forecast's ``lead``: a count of the model's time steps (not of
    the input's, which may be thinned to the model's), with one step in words when known:
    ``model_step`` (``grid.json``, in :func:`_time_steps`' units) or, not recorded, the last
    step of the input's sorted ``times`` (``None`` for an input without time coordinate);
    ``time`` is the input's coordinate (its ``attrs`` give the units of numeric times)."""
    words = "lead in time steps of the model"
    if times is None or (model_step is None and times.size < 2):
        return words
    steps, units = _time_steps(times[-2:] if model_step is None else times[:0], time.attrs)
    value = float(steps[-1]) if model_step is None else model_step
    if units == "s":
        return f"{words} (one step: {_duration(value, units)})"
    if units == "1":  # a step count, as the Kolmogorov file's time
        return f"{words} (one step: {value:g} in {str(time.name)!r})"
    return f"{words} (one step: {value:g} {units})"


def _tiling(
    shape: tuple[int, int],
    factor: int,
    periodic: tuple[bool, bool],
    tile: int,
    overlap: int,
    blend: Blend = "cosine",
    multiple: int = _MULTIPLE,
) -> tuple[tuple[tuple[int, int], tuple[int, int]], tuple[int, int], TileLayout]:
    """How a fine field of ``shape`` (H, W) is cut into tiles: ``(wrap, end_pad, layout)``.

    Non-periodic dims are reflect-padded at the end (``end_pad``) to a multiple of
    ``lcm(multiple, factor)`` (``multiple``: the backbone's ``grid_multiple``, 16 for the
    built-in ones); periodic dims get wrapped-around halos (``wrap``, TiledDenoiser's)
    instead. A dim whose padded field fits in ``tile`` runs as one tile, its halos included
    (whether ``tile`` was given or is the default, so the recorded tile reproduces the run); the
    overlap applies along the dims cut into several tiles only (tiles start every
    ``tile - overlap`` cells, a multiple of the factor, and the last one ends at the padded
    field's end, also on the lattice).
    """
    (h, w), (py, px) = shape, periodic
    wrap = (
        _periodic_halo(h, factor, multiple) if py else (0, 0),
        _periodic_halo(w, factor, multiple) if px else (0, 0),
    )
    end_pad = (
        0 if py else _round_up(h, _lattice(factor, multiple)) - h,
        0 if px else _round_up(w, _lattice(factor, multiple)) - w,
    )
    hp = h + end_pad[0] + sum(wrap[0])
    wp = w + end_pad[1] + sum(wrap[1])
    th = hp if h + end_pad[0] <= tile else tile
    tw = wp if w + end_pad[1] <= tile else tile
    used = (overlap if th < hp else 0, overlap if tw < wp else 0)
    return wrap, end_pad, tile_layout((hp, wp), (th, tw), overlap=used, blend=blend)


def _check_flag(name: str, value: Any) -> None:
    """An on/off option is ``True`` or ``False`` (a string such as ``"no"`` would be true)."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} = {value!r} must be True or False")


#: variable attributes that describe the input's values, not the model's: readers that apply
#: ``valid_min`` / ``valid_max`` / ``valid_range`` (netCDF4-python does) would mask samples
#: outside the input's range, and ``actual_range`` would state a false range
_VALUE_ATTRS = ("valid_min", "valid_max", "valid_range", "actual_range", "actual_min", "actual_max")


def _output_attrs(
    attrs: Mapping[Hashable, Any],
    transform: str = "none",
    *,
    factor: int | None = None,
    extent: Extent = None,
) -> dict[Hashable, Any]:
    """An input variable's attributes for the model's output of it: without value ranges, with
    the model's normalization ``transform`` of it as ``flexdownscale_transform`` (left out for
    ``"none"``; an input's own such attribute, from an earlier output, is not kept). On an
    output downscaled ``factor`` times, the attributes that describe the input's grid are
    those of the fine grid (:func:`~flexdownscale._attributes.regridded_attrs`: cfgrib's
    ``GRIB_*`` attributes of the input's grid left out, for one; the ACDD extent is
    ``extent``, that of the output's cells)."""
    from .hub import TRANSFORM_ATTR

    if factor is not None:
        attrs = regridded_attrs(attrs, ((factor, 1), (factor, 1)), extent)
    out = {k: v for k, v in attrs.items() if k not in _VALUE_ATTRS and k != TRANSFORM_ATTR}
    if transform != "none":
        out[TRANSFORM_ATTR] = transform
    return out


def _python_ints(*values: Any) -> tuple[Any, ...]:
    """``values`` with numpy integers (e.g. from an array of settings) as Python ints, so that
    the integer checks of the samplers and the tiler take them; other values unchanged."""
    return tuple(int(v) if isinstance(v, np.integer) else v for v in values)


def _member_count(members: Any) -> int:
    """The ensemble size of a call: ``members`` (``None``: 1) checked as a positive integer."""
    count = 1 if members is None else members
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"members = {members!r} must be a positive integer or None")
    return count


def _resolve_seed(seed: Any) -> int:
    """The integer seed of a call: ``seed`` itself (checked), or for a ``torch.Generator`` one
    integer drawn from it, so successive calls with one generator get their own noise and each
    output records the integer that reproduces it."""
    if isinstance(seed, torch.Generator):
        return seed_of(seed)
    return check_seed(seed)


def time_step_seed(seed: int, index: int) -> int:
    """The seed of time step ``index`` for a call with ``seed`` (independent of chunking).

    Parameters
    ----------
    seed : int
        The call's integer seed.
    index : int
        Position of the time step in the call's input (0-based).

    Returns
    -------
    int
        The seed of that time step's random generator.

    Examples
    --------
    Every time step of a call with ``seed=0`` gets its own seed, derived from the call's
    seed and the step's position only, so a step can be drawn again on its own:

    >>> time_step_seed(0, 0)
    1763788586465679335
    >>> len({time_step_seed(0, i) for i in range(1000)})  # no two steps alike
    1000
    >>> time_step_seed(0, 2) != time_step_seed(1, 2)  # nor two calls' seeds
    True
    """
    return derived_seed(seed, index)


#: ``grid_mapping_name`` of the CF grid mappings that are not projections, by grid kind.
_UNPROJECTED_MAPPINGS = {"latitude_longitude": "latlon", "rotated_latitude_longitude": "rotated"}


def _model_grid_mapping(trained: GridSpec | None, spec: GridSpec) -> tuple[str, dict] | None:
    """``(name, attrs)`` of the grid mapping a model folder's ``grid.json`` records, when it
    fits the input grid ``spec`` (a grid the model's grid checks took): a latitude/longitude
    mapping for a latitude/longitude grid, a rotated pole for a rotated one, a projection for a
    projected one; ``None`` when the folder records no grid, no named mapping or another kind.
    Lists of numbers (``standard_parallel``) come back as arrays, as netCDF readers give them."""
    crs = None if trained is None else trained.crs
    if not crs or not isinstance(crs.get("name"), str) or not crs.get("grid_mapping_name"):
        return None
    kind = _UNPROJECTED_MAPPINGS.get(str(crs["grid_mapping_name"]), "projected")
    if kind != spec.kind:
        return None
    attrs: dict[str, Any] = {}
    for key, value in crs.items():
        if key == "name":
            continue
        numbers = isinstance(value, list) and value
        if numbers and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            value = np.asarray(value)
        attrs[key] = value
    return crs["name"], attrs


def _grid_mapping_without(attr: str, names: Sequence[str]) -> str:
    """A CF ``grid_mapping`` attribute (``"crs"`` or ``"crs: x y crs2: lat lon"``) without the
    entries of the variables ``names``; ``""`` when none is left."""
    if ":" not in attr:
        return " ".join(w for w in attr.split() if w not in names)
    words = attr.replace(":", " : ").split()
    entries: list[tuple[str, list[str]]] = []
    for i, word in enumerate(words):
        if word == ":":
            continue
        if i + 1 < len(words) and words[i + 1] == ":":
            entries.append((word, []))
        elif entries:
            entries[-1][1].append(word)
    return " ".join(f"{gm}: {' '.join(axes)}" for gm, axes in entries if gm not in names)


def _warn_dropped_grid_mapping(
    var: Hashable,
    attr: str,
    missing: Sequence[str],
    model_mapping: tuple[str, dict] | None,
    name: str,
) -> None:
    """Warn that the grid mappings ``missing`` of output variable ``var`` (its input's
    ``grid_mapping = attr``) are left out: neither the input nor model ``name``'s folder
    (whose fitting mapping is ``model_mapping``) holds them."""
    names = ", ".join(repr(gm) for gm in missing)
    if model_mapping is None:
        model_words = f"model {name!r} records no grid mapping that fits this grid"
    else:
        model_words = f"model {name!r} records its grid mapping as {model_mapping[0]!r}"
    warnings.warn(
        f"{var!r} names the grid mapping {names} (grid_mapping = {attr!r}), but the input "
        f"holds no variable {names} and {model_words} (its grid.json): the output leaves "
        f"{names} out of its grid_mapping rather than refer to a variable it lacks, so its "
        "coordinate reference system is not recorded. To keep it, pass the input with "
        f"{names} (the whole Dataset, or ds[[..., {missing[0]!r}]], not one DataArray), or "
        "open the file with decode_coords='all', which makes it a coordinate of the variable",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


def _keep_grid_mapping(
    out: xr.Dataset,
    source: xr.Dataset,
    inputs: xr.Dataset,
    trained: GridSpec | None,
    spec: GridSpec,
    name: str,
) -> xr.Dataset:
    """Give ``out``'s variables the CF grid mapping of the ``inputs`` variables they come from,
    and drop from ``coordinates`` attributes the variables ``out`` does not have (2-D lat/lon
    that could not be recomputed on the fine grid: a projected grid without pyproj, for one).

    The ``grid_mapping`` reference stays where the input keeps it: in ``attrs`` (a file opened
    as is) or in ``encoding`` (``xr.open_dataset(..., decode_coords="all")``, which makes the
    mapping variable a coordinate); ``to_netcdf`` writes either as the attribute. The mapping
    variable comes from ``out`` itself (a scalar coordinate carried over), else from ``source``
    (the whole input), else from the grid mapping of that name that the model folder records
    (``trained``, its ``grid.json``) when it fits the input's grid ``spec`` (a DataArray, or a
    selection of variables, leaves the input's behind). A name none of them holds is left out
    of the reference, with a warning: never a reference to a variable the output lacks.
    ``name`` is the model's, for the warning.
    """
    out = out.copy()
    model_mapping = _model_grid_mapping(trained, spec)
    for var in list(out.data_vars):
        where, attr = "attrs", out[var].attrs.get("grid_mapping")
        if not attr and var in inputs.variables:  # decode_coords="all": in the encoding
            where, attr = "encoding", inputs[var].encoding.get("grid_mapping")
        if not attr:
            continue
        missing = []
        for gm in _grid_mapping_names(attr):
            if gm in out.variables:
                continue
            if gm in source.variables and source[gm].ndim == 0:
                out = out.assign_coords({gm: source[gm].variable.copy()})
            elif model_mapping is not None and model_mapping[0] == gm:
                rebuilt = xr.Variable((), np.int32(0), attrs=copy.deepcopy(model_mapping[1]))
                out = out.assign_coords({gm: rebuilt})
            else:
                missing.append(gm)
        holder = getattr(out.variables[var], where)  # (assign_coords made new variables)
        holder.pop("grid_mapping", None)
        kept = _grid_mapping_without(str(attr), missing) if missing else attr
        if kept:
            holder["grid_mapping"] = kept
        if missing:
            _warn_dropped_grid_mapping(var, str(attr), missing, model_mapping, name)
    return _trim_stale_coordinates(out)


def _drop_dangling_references(out: xr.Dataset) -> xr.Dataset:
    """``out`` without the CF ``ancillary_variables`` and ``cell_measures`` entries of its
    data variables that name variables ``out`` lacks (as ``grid_mapping`` and ``coordinates``:
    never a dangling reference); an attribute left with no entry is dropped
    (:func:`~flexdownscale._attributes.drop_dangling_references`, as degrade and regrid)."""
    return drop_dangling_references(out)


def _refined_global_attrs(
    attrs: Mapping[Hashable, Any], factor: int, extent: Extent = None
) -> dict[Hashable, Any]:
    """An input's global attributes for its output downscaled ``factor`` times: those that
    describe the input's grid made those of the fine grid
    (:func:`~flexdownscale._attributes.regridded_attrs`: the ACDD
    ``geospatial_lat_resolution`` / ``geospatial_lon_resolution`` divided by ``factor``,
    ``geospatial_lat_min`` ... ``geospatial_lon_max`` the output cells' ``extent`` (left out
    where ``None``), ``nominal_resolution`` and ``grid`` left out)."""
    return regridded_attrs(attrs, ((factor, 1), (factor, 1)), extent)


def _keep_time_bounds(out: xr.Dataset, source: xr.Dataset, tdim: Hashable | None) -> xr.Dataset:
    """Carry the time bounds named by ``time:bounds`` over from ``source`` (the output has the
    input's times; a single field's scalar time keeps its pair), and drop every ``bounds``
    attribute whose variable the output lacks (no dangling CF reference)."""
    out = out.copy()
    name = out[tdim].attrs.get("bounds") if tdim is not None and tdim in out.coords else None
    if name is not None and name not in out and name in source.variables:
        bounds = source[name]
        if tdim in bounds.dims and bounds.ndim == 2:
            if tdim in source.indexes and tdim in out.indexes:
                bounds = bounds.sel({tdim: out[tdim].values})  # the output's order of times
            if all(out.sizes.get(d, n) == n for d, n in bounds.sizes.items()):
                out = out.assign_coords({name: bounds.variable.copy()})
    for coord in [c for c in out.coords if out[c].ndim == 0]:
        name = out[coord].attrs.get("bounds")
        if name is not None and name not in out and name in source.variables:
            pair = source[name]
            if pair.ndim == 1 and pair.size == 2:  # a single field's (start, end)
                out = out.assign_coords({name: pair.variable.copy()})
    for coord in out.coords:
        if "bounds" in out[coord].attrs and out[coord].attrs["bounds"] not in out.variables:
            out[coord].attrs = {k: v for k, v in out[coord].attrs.items() if k != "bounds"}
    return out


def _provenance_attrs(
    original: Mapping[Hashable, Any],
    *,
    action: str,
    model: str,
    objective: str,
    sampler: str,
    options: Mapping[str, float],
    steps: int,
    members: int | None,
    seed: int,
    batch_size: int | None,
    device: torch.device,
    extra: Mapping[str, Any],
    details: Sequence[str] = (),
) -> dict[Hashable, Any]:
    """The input's attributes plus provenance: a CF ``history`` line (prepended to any there)
    and ``flexdownscale_*`` attributes (version, model, its generative objective as
    :attr:`~flexdownscale.diffusion.objectives.Objective.summary` words, sampler, its options,
    steps, members, seed, the run's settings that round the output differently, and ``extra``).

    ``members`` is the call's argument: ``None`` (one sample, no ``member`` dimension) is
    recorded as ``flexdownscale_members = 1`` and ``flexdownscale_member_dim = 0``, and as
    "1 sample, no member dim" in the history line; ``members=1`` as 1, 1 and "1 member".
    ``batch_size`` is the call's (``"auto"`` for ``None``), ``device`` the one the network runs
    on, and the thread count torch uses now is recorded with them (values of ``batch_size``,
    thread count and, on a GPU, device change the float32 rounding unless ``batch_invariant``).
    ``details`` are settings appended to the history line's (e.g. ``"bbox (-5, 50, 0, 54)"``).
    Every value is a string, an integer of 32 bits or (a condition) a float: valid attributes
    of every netCDF format and of zarr; a seed above 2**31 - 1 is its decimal text
    (:func:`~flexdownscale.provenance.integer_attr`).
    """
    from ._version import __version__

    count = 1 if members is None else members
    if members is None:
        ensemble = "1 sample, no member dim"
    else:
        ensemble = f"{count} member{'s' if count > 1 else ''}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    settings = "".join(f" {k}={v:g}" for k, v in sorted(options.items()))
    more = "".join(f", {d}" for d in details)
    line = (
        f"{stamp}: flexdownscale {__version__} {action} with model {model!r} ({sampler}"
        f"{settings}, {steps} step{'s' if steps != 1 else ''}, {ensemble}, seed {seed}{more})"
    )
    attrs = dict(original)
    history = attrs.get("history")
    attrs["history"] = f"{line}\n{history}" if history else line
    attrs.update(
        {
            "flexdownscale_version": __version__,
            "flexdownscale_model": model,
            "flexdownscale_objective": objective,
            "flexdownscale_sampler": sampler,
            "flexdownscale_steps": steps,
            "flexdownscale_seed": integer_attr(seed),
            "flexdownscale_members": count,
            "flexdownscale_member_dim": int(members is not None),
            "flexdownscale_batch_size": "auto" if batch_size is None else int(batch_size),
            "flexdownscale_device": _device_label(device),
            "flexdownscale_torch_threads": int(torch.get_num_threads()),
            **extra,
        }
    )
    if options:
        attrs["flexdownscale_sampler_options"] = ", ".join(
            f"{k}={v:g}" for k, v in sorted(options.items())
        )
    return attrs


def _device_label(device: torch.device) -> str:
    """``device`` as provenance records it: ``"cpu"``, ``"mps"``, ``"cuda:0"`` (a CUDA device
    given without an index is the current one), which ``device=`` takes back."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _number_text(value: float) -> str:
    """``value`` in the fewest digits that read back to it (``-5.0`` as ``-5``, ``0.1`` as
    ``0.1``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _bbox_longitudes(x_min: float, x_max: float, xs: np.ndarray) -> tuple[float, float]:
    """Shift a longitude range by a multiple of 360 degrees to overlap the grid's longitudes
    ``xs`` most (the input may be in the other convention than its normalized grid)."""

    def overlap(shift: float) -> float:
        return min(x_max + shift, float(xs[-1])) - max(x_min + shift, float(xs[0]))

    best = max((-360.0, 0.0, 360.0), key=lambda k: (overlap(k), k == 0.0))
    return x_min + best, x_max + best


def _bbox_axis(
    values: np.ndarray, low: float, high: float, step: float, periodic: bool, halo: int
) -> tuple[np.ndarray, np.ndarray, slice | np.ndarray, bool] | None:
    """Cells of one axis a bbox reads: (indices into the axis, their coordinates, the cells of
    them inside ``[low, high]`` (a slice, or indices), whether they are the whole axis) with
    ``halo`` cells on each side; ``None`` when no centre is inside.

    A non-periodic axis is clipped at its ends. A periodic one (``n`` cells of ``step``) wraps:
    the range is moved by whole periods next to the axis, read across the seam, and given
    coordinates that continue the axis in the range's own convention (a bbox from -5 to 5 on
    a 0..360 axis reads 355 ... 359.x, 0 ... 5 as -5 ... 5; the refined grid then puts
    longitudes into the standard convention in which they are contiguous). A range of a whole
    period or more is the whole axis. A shorter range whose halos would meet round the axis
    runs on the whole axis too (periodic), and its cells are then an array of indices into it
    that may wrap across the seam (:func:`_contiguous_crop` gives them continuing coordinates).
    """
    n = values.size
    if not periodic:
        inside = np.flatnonzero((values >= low) & (values <= high))
        if inside.size == 0:
            return None
        lo, hi = max(0, inside[0] - halo), min(n, inside[-1] + 1 + halo)
        index = np.arange(lo, hi)
        inner = slice(int(inside[0] - lo), int(inside[-1] + 1 - lo))
        return index, values[index], inner, inside.size == n
    period = n * step
    if high - low >= period - 1e-9 * period:
        return np.arange(n), values, slice(0, n), True
    shift = math.floor((low - values[0]) / period) * period
    # the axis continued one period before and two after: the range (moved next to the axis)
    # starts in the second period and ends before the third's end; halos add at most n a side
    unrolled = values[0] + np.arange(-n, 3 * n) * step
    inside = np.flatnonzero((unrolled >= low - shift) & (unrolled <= high - shift))
    if inside.size == 0:
        return None
    halo = min(halo, n)
    if inside.size + 2 * halo >= n:  # the halos would meet round the axis: run it whole
        return np.arange(n), values, (inside - n) % n, True
    lo, hi = inside[0] - halo, inside[-1] + 1 + halo
    positions = np.arange(lo, hi)
    coords = unrolled[positions] + shift
    inner = slice(int(inside[0] - lo), int(inside[-1] + 1 - lo))
    return (positions - n) % n, coords, inner, False


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _fine_cells(inner: slice | np.ndarray, factor: int) -> slice | np.ndarray:
    """The fine cells of the coarse cells ``inner`` (a slice, or indices that may wrap)."""
    if isinstance(inner, slice):
        return slice(inner.start * factor, inner.stop * factor)
    return (np.asarray(inner)[:, None] * factor + np.arange(factor)).ravel()


def _cell_count(cells: slice | np.ndarray) -> int:
    return cells.stop - cells.start if isinstance(cells, slice) else len(cells)


def _contiguous_crop(
    grid: xr.Dataset, dim: Hashable, cells: np.ndarray, period: float, low: float
) -> xr.Dataset:
    """``grid`` at the fine ``cells`` of a periodic ``dim`` (indices that may wrap across its
    seam), with coordinates (and bounds) that continue across the seam from about ``low``:
    a band of longitudes from 171 to 150 degrees reads 171 ... 509.25."""
    out = grid.isel({dim: cells})
    values = np.asarray(out[dim].values, dtype=np.float64)
    turns = np.concatenate([[0.0], np.cumsum(np.diff(values) < 0)]) * period
    turns += np.round((low - values[0]) / period) * period
    names = [dim, *(c for c in out.coords if c != dim and out[c].dims[:1] == (dim,))]
    return out.assign_coords(
        {
            c: out[c].copy(
                data=np.asarray(out[c].values, dtype=np.float64)
                + turns.reshape(-1, *[1] * (out[c].ndim - 1))
            )
            for c in names
        }
    )


def _full_grid_coordinates(
    region_grid: xr.Dataset,
    full_grid: xr.Dataset,
    picks: Mapping[Hashable, tuple[np.ndarray, float]],
    factor: int,
) -> xr.Dataset:
    """``region_grid`` (the refined grid of the coarse cells a bbox reads) under the fine
    centres and bounds of ``full_grid`` (the refined grid of the whole input) at the same cells.

    Refining the cut coarse centres gave values a few ulps off the full run's, so that a bbox
    run's cells did not align with the full run's in xarray arithmetic (cells dropped, ``sel``
    failing). ``picks`` maps each dim to the coarse indices read (into the whole axis, wrapping
    on a periodic one) and the axis's period: a cell read in another period (a bbox across the
    seam, in its own longitude convention) gets the full value moved by whole periods. An axis
    whose values are not the full ones up to whole periods and round-off keeps its own.
    """
    out = region_grid
    for dim, (index, period) in picks.items():
        cells = (np.asarray(index)[:, None] * factor + np.arange(factor)).ravel()
        mine = np.asarray(region_grid[dim].values, dtype=np.float64)
        full = np.asarray(full_grid[dim].values, dtype=np.float64)[cells]
        step = abs(float(full[1] - full[0])) if full.size > 1 else 1.0
        turns = np.round((mine - full) / period) if period > 0 else np.zeros_like(mine)
        shift = turns * period
        if mine.shape != full.shape or np.abs(mine - full - shift).max() > 1e-6 * step:
            continue
        names = [
            c
            for c in region_grid.coords
            if region_grid[c].dims[:1] == (dim,) and not set(region_grid[c].dims[1:]) & set(picks)
        ]
        new = {}
        for c in names:
            values = np.asarray(full_grid[c].values)[cells]
            if turns.any():
                moved = shift.reshape(-1, *[1] * (values.ndim - 1))
                values = (values.astype(np.float64) + moved).astype(values.dtype)
            new[c] = region_grid[c].copy(data=values)
        out = out.assign_coords(new)
    return out


#: Periodic halo in fine cells on each side of a periodic dimension (see TiledDenoiser's wrap).
PERIODIC_HALO = 16


def _lattice(factor: int, multiple: int = _MULTIPLE) -> int:
    """Tiles and padded fields are multiples of this: of the backbone's grid multiple (16 for
    the built-in backbones, ``Backbone.grid_multiple``) and of ``factor``, so that every tile
    starts on a coarse-cell boundary (the alignment the model trained on)."""
    return math.lcm(multiple, factor)


def _periodic_halo(n: int, factor: int = 1, multiple: int = _MULTIPLE) -> tuple[int, int]:
    """(before, after) halo of a periodic dimension of ``n`` fine cells: at least PERIODIC_HALO on
    each side, ``before`` a multiple of ``factor`` and the total a multiple of
    :func:`_lattice`."""
    before = _round_up(PERIODIC_HALO, factor)
    return before, _round_up(n + before + PERIODIC_HALO, _lattice(factor, multiple)) - n - before


def _tile_overlap(tile: int, overlap: Any, factor: int) -> int:
    """The overlap of tiles of ``tile`` fine cells: ``tile // 4`` by default, rounded up so that
    the stride ``tile - overlap`` is a multiple of ``factor``; a given one must already be so.

    Raises
    ------
    ConfigError
        For an overlap outside ``[0, tile)`` or one that would start tiles inside coarse cells.
    """
    if overlap is None:
        return tile - max(factor, (tile - tile // 4) // factor * factor)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise ConfigError(f"overlap = {overlap!r} must be an integer in [0, tile = {tile})")
    if (tile - overlap) % factor:
        stride = tile - overlap
        options = sorted(
            {tile - k * factor for k in (stride // factor, -(-stride // factor))} & set(range(tile))
        )
        raise ConfigError(
            f"overlap = {overlap} with tile = {tile} gives a stride of {stride} fine cells, not a "
            f"multiple of the factor {factor}: the tiles after the first would start inside "
            f"coarse cells, off the alignment the model was trained on. Use overlap = "
            + " or ".join(str(o) for o in options)
        )
    return overlap


def _resolve_device(device: torch.device | str | None) -> torch.device:
    """The torch device for ``device`` (``None``: CUDA when available, else the CPU).

    Raises
    ------
    ConfigError
        For a device string torch does not know, or a device this machine does not have
        (:func:`device_unavailable`: a CUDA index beyond the count, ``mps`` without Apple's
        backend, ``cpu:1``, ``meta``, ...).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = ", ".join(available_devices())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device = {device!r} is not a device torch knows; available here: {available} "
            "(or device=None: CUDA when available, else the CPU)"
        ) from err
    why = device_unavailable(resolved)
    if why is not None:
        raise ConfigError(
            f"device = {device!r} is not available ({why}); available here: {available} "
            "(or device=None: CUDA when available, else the CPU)"
        )
    return resolved


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:<current>`` are the same device."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current
        )
    return a.index == b.index or a.index is None or b.index is None


_DEVICE_COPIES_LOCK = threading.Lock()


class _PhysicalCondition:
    """The scalar physical condition of a conditioned model (e.g. the Reynolds number): its
    metadata, checked once, and the value of a call (argument, attribute or scalar variable)."""

    condition: dict[str, Any] | None
    name: str

    def _set_condition(self, condition: Mapping[str, Any] | None, model: nn.Module) -> None:
        self.condition = dict(condition) if condition is not None else None
        if self.condition is not None:
            scale = self.condition.get("scale", 1.0)
            if not self.condition.get("name") or not (
                isinstance(scale, int | float) and math.isfinite(scale) and scale != 0
            ):
                raise ConfigError(
                    f"condition = {condition!r}; expected {{'name': str, 'scale': non-zero number}}"
                )
            seen = self.condition.get("range")
            if seen is not None and not (
                isinstance(seen, list | tuple)
                and len(seen) == 2
                and all(isinstance(v, int | float) and math.isfinite(v) for v in seen)
                and seen[0] <= seen[1]
            ):
                raise ConfigError(
                    f"condition range = {seen!r}; expected [low, high], the values seen in training"
                )
        needs = bool(getattr(getattr(model, "config", None), "physical_condition", False))
        if needs and self.condition is None:
            raise ConfigError(
                "the network takes a physical condition but no condition metadata was given; "
                "pass condition={'name': ..., 'scale': ...}"
            )

    def _record_condition(
        self, attrs: dict[Hashable, Any], value: float | None, out: xr.Dataset
    ) -> xr.Dataset:
        """Provenance of the condition used; the input's own attribute, scalar coordinate or
        variables' attribute of that name, when ``condition=`` overrode it, becomes the value
        used (so the output never contradicts itself). Returns ``out`` so updated."""
        if value is None or self.condition is None:
            return out
        name = str(self.condition["name"])
        attrs[f"flexdownscale_condition_{name}"] = value
        if name in attrs:
            attrs[name] = value
        scalar = name in out.coords and out[name].ndim == 0 and out[name].dtype.kind in "iuf"
        if scalar and float(out[name]) != value:
            out = out.assign_coords({name: out[name].copy(data=np.asarray(float(value)))})
        for v in out.data_vars:
            if name in out[v].attrs:
                out[v].attrs = {**out[v].attrs, name: value}
        return out

    def _several_conditions(self, values: xr.DataArray, name: str, attribute: Any = None) -> str:
        """The message for an input whose condition variable ``values`` holds several values
        (e.g. a dimension coordinate of fields at several Reynolds numbers): a call runs one.
        ``attribute``: the input's global attribute of that name, if any (the first file's,
        kept by ``xr.concat``), which the message says to drop."""
        distinct = list(dict.fromkeys(values.values.ravel().tolist()))  # in order of appearance
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in distinct[:4])
        more = f", ... ({len(distinct)} in all)" if len(distinct) > 4 else ""
        scale = (self.condition or {}).get("scale", 1.0)
        along = ", ".join(map(repr, values.dims))
        where = "the past frames' " if self._task == "forecast" else "the input's "
        intro = (
            f"model {self.name!r} is conditioned on {name!r} (divided by {scale:g}), and "
            f"{where}{name!r} holds {len(distinct)} different values ({shown}{more}) along "
            f"{along}, but one call runs one value (passing condition=<value> would run every "
            "field at it)"
        )
        if values.dims == (name,):
            first = values.values.ravel()[0].item()
            stale = (
                ""
                if attribute is None
                else f"; the global attribute {name!r} = {_number_words(attribute)}, which "
                "xr.concat kept from the first dataset, does not follow the selection: "
                f"drop it (ds.attrs.pop({name!r}))"
            )
            return (
                f"{intro}. Select one value per call, e.g. ds.sel({name}={first!r}) (its value is "
                f"then read from the coordinate), one call per value{stale}"
            )
        if self._task == "forecast":
            return (
                f"{intro}. Forecast from a start whose past frames share one {name}, or pass "
                "the value to run them at as condition=<value>"
            )
        return (
            f"{intro}. Select the fields of one {name} per call (ds.isel along {along}) and "
            "pass that value as condition=<value>"
        )

    def _condition_from_input(
        self, ds: xr.Dataset, name: str, *, warn: bool = True
    ) -> tuple[Any, str, str]:
        """The condition ``name`` read from the input ``ds`` (no ``condition=`` given), the
        words for where it was found, and the Python object holding it when an attribute
        (``"ds.attrs"``, ``"ds['t2m'].attrs"``; ``""`` for a variable or coordinate).

        The most specific source wins, as in training (``_XarraySource.condition``): the scalar
        variable or coordinate ``name`` (what ``ds.sel(name=value)`` leaves), else the global
        attribute, else the data variables' attribute (a DataArray's own). Another of these that
        holds a different value (the first file's attribute that ``xr.concat`` keeps) is named,
        with the fix, in a :class:`~flexdownscale.errors.FlexDownscaleWarning` (not with
        ``warn=False``: no ``warnings.catch_warnings()``, which would make every once-only
        warning of the process show again).
        """
        # (where it was found, its value, the Python object holding it when an attribute)
        found: list[tuple[str, Any, str]] = []
        if name in ds.variables and ds[name].size == 1:
            kind = "scalar coordinate" if name in ds.coords else "scalar variable"
            found.append((f"{kind} {name!r}", ds[name].values.reshape(()).item(), ""))
        elif name in ds.variables and _one_value(ds[name]):  # e.g. the same Re at every time
            kind = "coordinate" if name in ds.coords else "variable"
            dims = ", ".join(map(repr, ds[name].dims))
            value = ds[name].values.ravel()[0].item()
            found.append((f"{kind} {name!r} (one value along {dims})", value, ""))
        if name in ds.attrs:
            found.append((f"global attribute {name!r}", ds.attrs[name], "ds.attrs"))
        on_vars = {str(v): ds[v].attrs[name] for v in ds.data_vars if name in ds[v].attrs}
        if not found and len({repr(x) for x in on_vars.values()}) > 1:
            raise ConfigError(
                f"the input's variables disagree on {name!r}: {on_vars}; pass condition=<value>"
            )
        for v, x in on_vars.items():  # e.g. a DataArray's own attribute (to_dataset keeps it)
            found.append((f"variable {v!r}'s attribute {name!r}", x, f"ds[{v!r}].attrs"))
        if not found:
            scale = (self.condition or {}).get("scale", 1.0)
            fix = _near_condition_hint(ds, name) or (
                f"; pass condition=<value> or set ds.attrs[{name!r}] = <value> (or "
                f"da.attrs[{name!r}] for a DataArray)"
            )
            raise MissingVariableError(
                f"model {self.name!r} is conditioned on {name!r} (divided by {scale:g}) but the "
                f"input has no attribute or scalar variable of that name{fix}"
            )
        where, value, holder = found[0]
        stale = [f for f in found[1:] if not _same_number(f[1], value)]
        if stale and warn:
            shown = _number_words(value)
            others = ", ".join(f"its {w} = {_number_words(x)}" for w, x, _ in stale)
            fixes = " or ".join(
                f"{holder}.pop({name!r}) (or {holder}[{name!r}] = {shown})"
                for _, _, holder in stale
            )
            warnings.warn(
                f"the input disagrees on {name!r}: its {where} = {shown}, but {others} "
                "(xr.concat keeps the first dataset's attributes, which .sel does not update). "
                f"Model {self.name!r} runs at {name} = {shown}, from the {where}, which training "
                f"reads first. If that is the right value, drop or update the other: {fixes}; "
                "if not, pass condition=<value>",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
        return value, f"the input's {where}", holder

    def _warn_condition_overrides_input(self, ds: xr.Dataset, name: str, value: Any) -> None:
        """Warn (:class:`~flexdownscale.errors.FlexDownscaleWarning`) when ``condition=``
        ``value`` differs from the value the input itself holds (read as without it): the call
        runs at ``value`` as asked, but a mistyped or stale ``condition=`` (Re = 1000 passed for
        a file at Re = 4000) would otherwise give fields of another flow without a word. An
        input that holds no value, or whose sources disagree, is not compared."""
        try:
            float(value)
        except (TypeError, ValueError):
            return  # the caller's ConfigError says what is wrong with it
        try:  # the input's own disagreements are not this call's
            held, where, holder = self._condition_from_input(ds, name, warn=False)
        except (ConfigError, MissingVariableError):
            return
        if _same_number(held, value):
            return
        warnings.warn(
            f"condition = {_number_words(value)} given, but {where} = {_number_words(held)}; "
            f"model {self.name!r} runs at {name} = {_number_words(value)} as asked (and the "
            "output records it). If the input's value is the right one, drop condition= (the "
            "input's value is then read); for a deliberate other value, leave the input's out "
            "of the call ("
            + (f"{holder}.pop({name!r})" if holder else f"ds = ds.drop_vars({name!r})")
            + ")",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    def _condition_value(self, ds: xr.Dataset, value: Any) -> float | None:
        """The physical condition of this call (``None`` for an unconditioned model).

        Without ``condition=`` the value is read, as training reads it, from the input's scalar
        variable or coordinate of the condition's name, else from its global attribute, else
        from its variables' attribute; sources that disagree with the one used are named in a
        :class:`~flexdownscale.errors.FlexDownscaleWarning`. An input holding several values
        of the condition (along a dimension) raises ``DataError`` first, whatever else it holds.
        A value of one element (``[4000.0]``, a DataArray along time holding one value), given
        or read, is that value, as the input's own variable holding one value along time is.
        """
        if self.condition is None:
            if value is not None:
                raise ConfigError(
                    f"condition = {value!r} given but model {self.name!r} takes no physical "
                    "condition; drop it"
                )
            return None
        name = str(self.condition["name"])
        source = "the condition= argument"
        if isinstance(value, str | bytes | bool | np.bool_):  # like steps= and seed=
            raise ConfigError(
                f"condition = {value!r} must be a number (the model's {name!r}), not a "
                f"{type(value).__name__}; pass condition=<value> as a float"
            )
        held = ds[name] if name in ds.variables else None
        if held is not None and held.size > 1 and not _one_value(held):
            # fields at several values (a dimension of the condition, e.g. two files joined by
            # xr.concat): one call runs one value, whatever a global attribute says (xr.concat
            # keeps the first file's) and, along the condition's own dimension, whatever
            # condition= says (the fields of every value would run at it)
            along_own_dim = held.dims == (name,) and any(name in ds[v].dims for v in ds.data_vars)
            if value is None or along_own_dim:
                raise DataError(self._several_conditions(held, name, ds.attrs.get(name)))
        given = value is not None
        if value is None:
            value, source, _ = self._condition_from_input(ds, name)
        # checked before it is compared with the input's (a NaN is refused, not run "as asked")
        number = _condition_number(value, source)
        if given:
            self._warn_condition_overrides_input(ds, name, number)
        seen = self.condition.get("range")
        if seen is not None:
            low, high = float(seen[0]), float(seen[1])
            slack = 1e-9 * max(abs(low), abs(high), 1.0)
            if not low - slack <= number <= high + slack:
                trained = f"{low:g}" if low == high else f"{low:g} to {high:g}"
                warnings.warn(
                    f"{name} = {number:g} (from {source}) is outside what model {self.name!r} was "
                    f"trained on ({trained}); the model extrapolates and its skill there is "
                    "unknown",
                    SkillWarning,
                    stacklevel=user_stacklevel(),
                )
        return number


def _same_number(a: Any, b: Any) -> bool:
    """Whether two condition values read from an input are the same number (or, not numbers,
    the same value)."""
    try:
        return float(_one_element(a)) == float(_one_element(b))
    except (TypeError, ValueError):
        return repr(a) == repr(b)


def _near_condition_hint(ds: xr.Dataset, name: str) -> str:
    """``"; it has ..."`` naming the input's number held under a name near the condition's
    ``name`` (``Reynolds_number``, ``Re`` for ``reynolds_number``: the same but for case, a
    close spelling, or a start of it of two letters or more), with the fix; ``""`` when none.
    Global attributes, then coordinates and variables of one value, then variables' attributes.
    """
    wanted = name.lower()

    def near(candidate: Hashable) -> bool:
        other = str(candidate).lower()
        return (
            other == wanted
            or (len(other) >= 2 and wanted.startswith(other))
            or bool(difflib.get_close_matches(other, [wanted], n=1, cutoff=0.8))
        )

    def number(value: Any) -> float | None:
        if isinstance(value, bool | np.bool_ | bytes):
            return None
        try:
            out = float(_one_element(value))
        except (TypeError, ValueError):
            return None
        return out if math.isfinite(out) else None

    # (where it is, its value, how to put it under the model's name)
    found: list[tuple[str, float, str]] = []
    for key, value in ds.attrs.items():
        if near(key) and number(value) is not None:
            fix = f"ds.attrs[{name!r}] = ds.attrs.pop({key!r})"
            found.append((f"the global attribute {key!r}", number(value), fix))
    for key in ds.variables:
        var = ds[key]
        if near(key) and (var.size == 1 or _one_value(var)) and number(var) is not None:
            kind = "coordinate" if key in ds.coords else "variable"
            fix = f"ds = ds.rename({{{str(key)!r}: {name!r}}})"
            found.append((f"the {kind} {str(key)!r}", number(var), fix))
    for v in ds.data_vars:
        for key, value in ds[v].attrs.items():
            if near(key) and number(value) is not None:
                fix = f"ds[{str(v)!r}].attrs[{name!r}] = ds[{str(v)!r}].attrs.pop({key!r})"
                found.append((f"variable {str(v)!r}'s attribute {key!r}", number(value), fix))
    if not found:
        return ""
    where, value, fix = found[0]
    return (
        f"; it has {where} = {value!r}: if that is the model's {name!r}, put it under that "
        f"name ({fix}) or pass condition={value!r}"
    )


def _one_element(value: Any) -> Any:
    """``value``, or the one value an array-like holds (a list, tuple, numpy array or
    DataArray of one element, or of several equal ones: a condition along time held at one
    value, as :func:`_one_value` reads the input's); other array-likes unchanged."""
    if not isinstance(value, xr.DataArray | np.ndarray | list | tuple):
        return value
    try:
        flat = np.asarray(value.values if isinstance(value, xr.DataArray) else value).ravel()
    except ValueError:  # ragged nesting
        return value
    if flat.size and np.issubdtype(flat.dtype, np.number) and np.all(flat == flat[0]):
        return flat[0].item()
    return value


def _condition_number(value: Any, source: str) -> float:
    """The condition ``value`` (from ``source``, in the messages' words) as a finite float: a
    number, a 0-d value or one of one element (:func:`_one_element`).

    Raises
    ------
    ConfigError
        For anything else, saying what was found: an array-like of several values (a call runs
        one), of no number, or empty; a text; NaN or an infinite value.
    """
    value = _one_element(value)
    if isinstance(value, xr.DataArray | np.ndarray | list | tuple):
        kind = type(value).__name__
        try:
            flat = np.asarray(value.values if isinstance(value, xr.DataArray) else value).ravel()
        except ValueError:
            flat = np.asarray([], dtype=object)
        along = (
            f" along {', '.join(map(repr, value.dims))}"
            if isinstance(value, xr.DataArray) and value.dims
            else ""
        )
        if flat.size and np.issubdtype(flat.dtype, np.number):
            distinct = np.unique(flat)
            shown = ", ".join(f"{v:g}" for v in distinct[:4].tolist())
            more = f", ... ({distinct.size} in all)" if distinct.size > 4 else ""
            found = f"holds {distinct.size} different values ({shown}{more}){along}"
        elif flat.size:
            found = f"holds {flat.size} values of type {flat.dtype}, not numbers"
        else:
            found = "is empty"
        raise ConfigError(
            f"{source} is a {kind} that {found}; one call runs at one condition: pass a number "
            "(a 0-d value or one of one element is taken too)"
        )
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{source} = {value!r} ({type(value).__name__}) is not a number; pass a number"
        ) from err
    if not math.isfinite(number):
        raise ConfigError(f"{source} = {value!r}; expected a finite number")
    return number


def _number_words(value: Any) -> str:
    """A condition value as a message shows it: ``4000.0`` for a number, its repr otherwise."""
    try:
        return repr(float(_one_element(value)))
    except (TypeError, ValueError):
        return repr(value)


def _sampler_problem(name: Any, objective: Objective) -> str:
    """The message for a ``sampler=`` the model cannot use: a name that is no sampler (with the
    nearest one that applies, ``'DDIM'`` -> ``'ddim'``), or a sampler of another objective."""
    applies = ", ".join(repr(s) for s in objective.samplers)
    if isinstance(name, str) and name in SAMPLERS:
        return (
            f"sampler = {name!r} does not apply to the model's {objective.name!r} objective; "
            f"use one of {applies}"
        )
    listing = f"the model's {objective.name!r} objective takes {applies}"
    if not isinstance(name, str):
        return f"sampler = {name!r} is not a sampler name (a string); {listing}"
    lower = {s.lower(): s for s in objective.samplers}
    near = difflib.get_close_matches(name.strip().lower(), list(lower), n=1, cutoff=0.6)
    hint = f"; did you mean {lower[near[0]]!r}?" if near else ""
    return f"sampler = {name!r} is not a sampler name{hint} ({listing})"


class _BackboneOnDevice:
    """Runs ``self.backbone`` on a requested device without moving it.

    The backbone stays where it was built; a call on another device uses a copy made on the first
    such call and kept (one per device). So one model object (the per-path cache of
    ``from_pretrained`` hands the same one to every caller) can serve threads that ask for
    different devices, and asking for a device never changes what the next caller gets. The copies
    follow the backbone object, not in-place edits of its weights: after editing the weights, call
    :meth:`clear_device_copies`.
    """

    backbone: nn.Module

    @property
    def _grid_multiple(self) -> int:
        """What the backbone's H and W must be multiples of: ``Backbone.grid_multiple`` (16 for
        the built-in backbones; 16 for a module that does not say)."""
        multiple = getattr(self.backbone, "grid_multiple", _MULTIPLE)
        return multiple if isinstance(multiple, int) and multiple >= 1 else _MULTIPLE

    def _sampler_settings(
        self, sampler: str | None, steps: int | None, options: Mapping[str, float] | None
    ) -> tuple[str, int, dict[str, float]]:
        """(sampler name, steps, options) of a call: the arguments checked, or the model's
        stored settings (``self.sampler``) where they are ``None``."""
        name = self.sampler.sampler if sampler is None else sampler
        if name not in self.objective.samplers:
            raise ConfigError(_sampler_problem(name, self.objective))
        if steps is None:
            steps = self.sampler.steps
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ConfigError(f"steps = {steps!r} must be a positive integer")
        for key, value in (options or {}).items() if isinstance(options, Mapping) else ():
            if isinstance(value, str | bytes | bool | np.bool_):  # like steps= and condition=
                raise ConfigError(
                    f"sampler_options[{key!r}] = {value!r} must be a number, not a "
                    f"{type(value).__name__}; pass it as a float"
                )
        chosen = resolve_sampler_options(name, options, self.sampler, argument="sampler_options")
        if name == "sde" and chosen.get("delta") == 0.0 and int(steps) > 1:
            given = isinstance(options, Mapping) and "delta" in options
            source = (
                "sampler_options={'delta': 0}"
                if given
                else "the Langevin strength stored in the model (delta: 0)"
            )
            warnings.warn(
                f"sampler 'sde' with {source} is the deterministic probability-flow ODE (the "
                f"same samples as sampler='euler', steps={int(steps)}): no Langevin noise, so "
                "the ensemble is no better calibrated than the model's default sampler's. Give "
                "the strength, e.g. sampler_options={'delta': 0.5} (0.5 to 1 calibrated the "
                f"shipped models; {DOCS_INFERENCE}), or store one when training (the run "
                "file's [sampler] delta)",
                SkillWarning,
                stacklevel=user_stacklevel(),
            )
        return name, int(steps), chosen

    def _backbone_on(self, device: torch.device) -> nn.Module:
        home = next(self.backbone.parameters()).device
        if _same_device(home, device):
            return self.backbone
        with _DEVICE_COPIES_LOCK:
            copies = self.__dict__.setdefault("_device_copies", {})
            source, moved = copies.get(str(device), (None, None))
            if source is not self.backbone:
                moved = copy.deepcopy(self.backbone).to(device).eval()
                copies[str(device)] = (self.backbone, moved)
            return moved

    def clear_device_copies(self) -> None:
        """Drop the copies of the backbone kept for other devices (frees their memory)."""
        with _DEVICE_COPIES_LOCK:
            self.__dict__.pop("_device_copies", None)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_device_copies"}


def _weights_fingerprint(module: nn.Module) -> str:
    """A digest of ``module``'s state: every entry's name, dtype, shape and values.

    Two modules with the same fingerprint hold the same weights bit for bit (on any device):
    a model loaded from a folder compares it with the one taken at load time to tell whether its
    weights were edited since. About 1 s per GB of weights on a CPU core.
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        values = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{values.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(values.view(torch.uint8).numpy())
    return digest.hexdigest()


def _auto_batch(device: torch.device, tile_shape: tuple[int, int], channels: int) -> int:
    """Tiles per backbone call: on a CPU about
    :data:`~flexdownscale.diffusion.samplers.CPU_CELLS_PER_CALL` fine cells (1 to 32
    tiles); on CUDA a share of the free memory."""
    if device.type != "cuda":
        return min(32, cpu_items_per_call(tile_shape[0] * tile_shape[1]))
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:  # pragma: no cover - driver without mem_get_info
        return 8
    # ~ 3000 float32 activations per cell and channel covers the presets up to "big" with room
    per_tile = tile_shape[0] * tile_shape[1] * max(channels, 1) * 4 * 3000
    return int(max(1, min(256, (0.5 * free) // per_tile)))


def _steps_per_call(tiles_per_call: int, tiles: int, members: int, batch_invariant: bool) -> int:
    """Time steps the Downscaler samples in one sampler call: as many as fill its member rows.

    A call takes ``max(1, tiles_per_call // tiles)`` member rows (``tiles``: tiles per field),
    so ``rows // members`` whole time steps, one at least (``members=None`` on a small field: up
    to 32 steps per call on a CPU). With ``batch_invariant`` one step at a time, as the network
    then sees one tile per call anyway.

    Parameters
    ----------
    tiles_per_call : int
        The call's ``batch_size`` (given, or chosen by :func:`_auto_batch`).
    tiles : int
        Tiles per field (``len(layout)``).
    members : int
        Members per time step.
    batch_invariant : bool
        The call's ``batch_invariant``.

    Returns
    -------
    int
        Time steps per call, >= 1.
    """
    if batch_invariant:
        return 1
    return max(1, max(1, tiles_per_call // max(1, tiles)) // max(1, members))


def _step_groups(start: int, count: int, group: int) -> list[tuple[int, int]]:
    """The ``(lo, hi)`` ranges (within a block of ``count`` steps starting at time index
    ``start``) of the steps sampled together: steps ``i`` of the call with one ``i // group``,
    so a block that starts and ends at multiples of ``group`` (or at the input's end) has the
    groups of an eager run, whatever the time chunks."""
    ranges = []
    lo = 0
    while lo < count:
        hi = min(count, ((start + lo) // group + 1) * group - start)
        ranges.append((lo, hi))
        lo = hi
    return ranges


def _group_aligned_chunks(chunks: Sequence[int], group: int) -> tuple[int, ...]:
    """Time chunks of a lazy call moved onto multiples of ``group`` (steps per sampler call),
    so that every block holds whole groups of :func:`_step_groups`: each inner chunk edge goes
    to the nearest multiple (halves up); edges that land on the start or the end, or twice on
    one multiple, are dropped. ``group = 1`` (or aligned edges) returns ``chunks`` unchanged."""
    total = int(sum(chunks))
    edges = np.cumsum(np.asarray(chunks, dtype=np.int64))[:-1]
    moved = sorted({(int(e) + group // 2) // group * group for e in edges} - {0, total})
    bounds = [0, *(b for b in moved if b < total), total]
    aligned = tuple(b - a for a, b in itertools.pairwise(bounds))
    return tuple(int(c) for c in chunks) if aligned == tuple(chunks) else aligned


#: The name of a Downscaler or Forecaster built without ``name=``.
_UNNAMED = "unnamed model"

#: Most models the in-process cache of model folders holds (the accessor,
#: :func:`resolve_downscaler` and dask workers share it); the least recently used one is dropped
#: beyond it (:func:`clear_model_cache` drops them all).
MODEL_CACHE_SIZE = 8

_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], Downscaler] = {}
_CACHE_LOCK = threading.RLock()


def clear_model_cache() -> int:
    """Drop every model the accessor and :func:`resolve_downscaler` keep loaded in this process.

    A model folder (a path, a shipped name or a Hub id) is loaded once per process and kept
    for the next call, one model per folder (a folder whose files change is loaded again and
    replaces its old model) and at most ``flexdownscale.pipeline.MODEL_CACHE_SIZE`` models
    (8; set it to keep fewer or more), the least recently used dropped first. Clearing frees
    their memory once nothing else holds them (a :class:`Downscaler` of your own stays
    usable); the next call loads the folder again.

    Returns
    -------
    int
        How many models were dropped.

    Examples
    --------
    >>> from flexdownscale.pipeline import clear_model_cache
    >>> clear_model_cache() >= 0
    True
    """
    with _CACHE_LOCK:
        dropped = len(_CACHE)
        _CACHE.clear()
    return dropped


def _folder_key(path: Path) -> tuple[str, tuple[tuple[str, int, int], ...] | None]:
    """Cache key of a model folder: its absolute path and the size and modification time of its
    files (a folder replaced in place is loaded again); ``None`` in place of those when the
    folder changed while they were taken (it is being replaced)."""
    path = path.resolve()
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else []
        stats = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    except OSError:  # a file gone between the listing and its stat: a save under way
        return str(path), None
    return str(path), stats


def _cached(model: str | os.PathLike[str]) -> Downscaler:
    """One Downscaler per model folder and process (dask workers load a model once).

    ``model`` is a folder, a shipped name or a Hub id; relative paths are resolved now, so a
    later change of the working directory cannot hand out another folder's model. A folder
    whose files changed since it was loaded replaces its old entry, and beyond
    ``flexdownscale.pipeline.MODEL_CACHE_SIZE`` models the least recently used is dropped
    (:func:`clear_model_cache` drops them all).
    """
    from .hub import resolve_model_path

    key = _folder_key(resolve_model_path(model))
    with _CACHE_LOCK:  # dask threads asking for one folder load it once
        model_of_key = _CACHE.pop(key, None)
        if model_of_key is None:
            for stale in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[stale]  # the folder's former files
            ref = model if _is_reference(model) else key[0]
            model_of_key = Downscaler.from_pretrained(ref)
            if key[1] is None or _folder_key(Path(key[0])) != key:
                # the folder was replaced during the load (saved again at that moment): the
                # model loaded is whole, but of either save, so it is kept under neither key
                return model_of_key
        _CACHE[key] = model_of_key  # the most recently used last
        while len(_CACHE) > max(int(MODEL_CACHE_SIZE), 1):
            del _CACHE[next(iter(_CACHE))]
    return model_of_key


def _is_reference(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is a shipped name or a Hub id rather than a local folder."""
    return not Path(model).expanduser().exists() and isinstance(model, str)


def _model_label(ref: str | os.PathLike[str], path: Path) -> str:
    """What provenance records for a model: the shipped name, ``org/name@<commit>`` for a Hub
    model however it was written (``org/name@rev``, ``hf://org/name``, the model page's
    address), which loads that commit again, or the absolute folder path."""
    from .hub import _hub_reference, shipped_models

    path = Path(path).resolve()
    for name, folder in shipped_models().items():
        if folder.resolve() == path:
            return name
    hub_id = _hub_reference(str(ref)) if _is_reference(ref) else None
    if hub_id is not None:  # the Hub cache names a snapshot folder after its commit
        return f"{hub_id[0]}@{path.name}"
    return str(path)


def _model_reference_error(
    model: Any, task: Literal["superres", "forecast"], *, loaded: bool, argument: str = "model"
) -> ModelFolderError | None:
    """The error for a model argument that is no model reference: neither a path, a shipped
    name or a Hub id, nor (``loaded``: the accessors take one) a loaded model of ``task``;
    ``None`` when ``model`` is one. A loaded model of the other task says which call takes it.

    Parameters
    ----------
    model
        What the caller passed.
    task
        ``"superres"`` (a :class:`Downscaler` is wanted) or ``"forecast"`` (a
        :class:`Forecaster`).
    loaded
        Whether a loaded model of ``task`` is taken as well (``ds.flex.downscale``,
        ``ds.flex.forecast``), not only a reference (``from_pretrained``).
    argument
        The argument's name in the messages.

    Returns
    -------
    ModelFolderError or None
        The error to raise, or ``None`` for a string or path (or a loaded model of ``task``
        when ``loaded``).
    """
    wanted, other = (Downscaler, Forecaster) if task == "superres" else (Forecaster, Downscaler)
    if isinstance(model, str | os.PathLike) or (loaded and isinstance(model, wanted)):
        return None
    kind = "super-resolution" if task == "superres" else "forecast"
    reference = (
        "a model folder path, a shipped model name or a Hugging Face Hub id"
        if task == "superres"
        else "a forecast model folder path or a Hugging Face Hub id (no forecast model ships "
        "with this version)"
    )
    expected = f"a {wanted.__name__}, {reference}" if loaded else reference
    if isinstance(model, other):
        use = (
            "forecast with it: ds.flex.forecast(model, lead_steps) or model(ds, lead_steps=...)"
            if isinstance(model, Forecaster)
            else "downscale with it: ds.flex.downscale(model) or model(ds)"
        )
        return ModelFolderError(
            f"{argument} is a {other.__name__} ({model.name!r}), a "
            f"{'forecast' if task == 'superres' else 'super-resolution'} model, but a "
            f"{kind} model is needed here: {expected}; {use}"
        )
    if isinstance(model, wanted):  # from_pretrained given the loaded model itself
        return ModelFolderError(
            f"{argument} is a {wanted.__name__} ({model.name!r}), already loaded: use it as it "
            f"is; {wanted.__name__}.from_pretrained takes {reference}"
        )
    return ModelFolderError(f"{argument}={model!r} ({type(model).__name__}); expected {expected}")


def resolve_downscaler(
    model: Any,
    *,
    variables: tuple[str, ...] = (),
    factor: int | None = None,
    explicit_variables: bool = False,
) -> Any:
    """A :class:`~flexdownscale.pipeline.Downscaler` from a Downscaler, a path, a name or ``None``.

    ``None`` picks the shipped model whose variables are all in ``variables`` and whose factor is
    ``factor`` (any factor when ``None``).

    Parameters
    ----------
    model : Downscaler, str, os.PathLike or None
        A Downscaler (returned as it is), a model folder path, a shipped model name or a
        Hugging Face Hub id (loaded once and cached), or ``None``: the shipped choice below.
    variables : tuple of str, default ()
        The input's variable names (after renaming); used only with ``model=None``.
    factor : int, optional
        Downscaling factor the shipped model must have; default None: any. Used only with
        ``model=None``.
    explicit_variables : bool, default False
        Whether ``variables`` came from ``variables=[...]`` (the caller's names in a model's
        order): with ``model=None`` only a shipped model with exactly those names is picked.

    Returns
    -------
    Downscaler
        The model given, or the one loaded or chosen.

    Raises
    ------
    ModelFolderError
        When no shipped model matches (the message lists the shipped models and the fix).
    UnsupportedFactorError
        When shipped models take the variables, but none by ``factor``.

    Examples
    --------
    With ``model=None`` the shipped model is picked from the variables and the factor; a
    factor no shipped model has for them is refused with the factors they do have:

    >>> resolve_downscaler(None, variables=("t2m",), factor=4).name
    'era5-t2m-x4'
    >>> resolve_downscaler(None, variables=("t2m",), factor=8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.UnsupportedFactorError: factor = 8 but the shipped models for ...
    """
    from .hub import read_model_header, shipped_models

    if isinstance(model, Downscaler):
        return model
    if model is not None:
        problem = _model_reference_error(model, "superres", loaded=True)
        if problem is not None:
            raise problem
        return _cached(model)
    # only the configs: the chosen folder is checked and loaded by _cached
    shipped = {name: read_model_header(path) for name, path in shipped_models().items()}
    shipped = {name: folder for name, folder in shipped.items() if folder.task == "superres"}
    listing = (
        ", ".join(
            f"{name} ({', '.join(folder.variables)}, x{folder.factor})"
            for name, folder in shipped.items()
        )
        or "none are shipped with this version"
    )
    if explicit_variables:
        exact = [n for n, f in shipped.items() if tuple(f.variables) == tuple(variables)]
        if exact:
            shipped = {n: shipped[n] for n in exact}
        else:
            raise ModelFolderError(
                f"variables={list(variables)} are no shipped model's variables, and mapping "
                f"other names onto a model's needs the model: model=<name or folder> (shipped "
                f"models: {listing}); or "
                "rename your variables to the model's names: rename={'your_name': 'model_name'}"
            )
    by_vars = {n: f for n, f in shipped.items() if set(f.variables) <= set(variables)}
    matches = [n for n, f in by_vars.items() if factor is None or f.factor == factor]
    if matches:  # the shipped folder itself, never a local folder of the same name
        return _cached(shipped_models()[matches[0]])
    if by_vars:
        factors = sorted({f.factor for f in by_vars.values()})
        raise UnsupportedFactorError(
            f"factor = {factor!r} but the shipped models for variables {list(variables)} "
            f"downscale by {factors} only ({listing}); use factor={factors[0]} or pass "
            "model='path/to/model-folder' trained for that factor"
        )
    hint = ""
    same_count = [n for n, f in shipped.items() if len(f.variables) == len(variables)]
    if same_count:
        fits = [n for n in same_count if factor is None or shipped[n].factor == factor]
        pick = (fits or same_count)[0]
        f0 = shipped[pick]
        other = f" and factor={f0.factor}" if factor is not None and f0.factor != factor else ""
        hint = (
            f"; if your variables are the model's under other names, pass rename="
            f"{dict(zip(variables, f0.variables))}{other} (model {pick!r})"
        )
    # without factor= every factor was searched: no factor clause (it would read "None")
    scope = f" by factor {factor}" if factor is not None else " at any factor"
    raise ModelFolderError(
        f"no shipped model downscales variables {list(variables)}{scope} "
        f"(shipped models: {listing}){hint}; or pass model='path/to/model-folder' (a folder "
        "written by Downscaler.save_pretrained or the training script) or a Hugging Face Hub id"
    )


#: How a message shows each mapping argument: an example and what its keys and values are
_MAPPING_EXAMPLES = {
    "rename": "rename={'tas': 't2m'} (input name: model name)",
    "dims": "dims={'x': 'lon', 'y': 'lat'} (axis: the data's dimension name)",
}


def _check_mappings(rename: Any, dims: Any) -> None:
    """``rename`` and ``dims`` are mappings (or ``None``): a list of pairs or of names would
    otherwise fail later as a missing variable or a bare ``ValueError``.

    Raises
    ------
    ConfigError
        Naming the argument, what was found and an example.
    """
    for name, value in (("rename", rename), ("dims", dims)):
        if value is None or isinstance(value, Mapping):
            continue
        pairs = isinstance(value, list | tuple) and all(
            isinstance(p, list | tuple) and len(p) == 2 for p in value
        )
        fix = f"; for a list of pairs pass dict({name})" if pairs and value else ""
        raise ConfigError(
            f"{name} = {value!r} is a {type(value).__name__}; expected a mapping, e.g. "
            f"{_MAPPING_EXAMPLES[name]}{fix}"
        )
    wrong = {k: v for k, v in (rename or {}).items() if not isinstance(v, str)}
    if wrong:  # a model's variable names are strings: rename={'t2m': 5} found no variable '5'
        key, value = next(iter(wrong.items()))
        raise ConfigError(
            f"rename[{key!r}] = {value!r} is a {type(value).__name__}; the values of rename are "
            f"the model's variable names (strings), e.g. {_MAPPING_EXAMPLES['rename']}"
        )


def _check_variables_distinct(variables: Any) -> None:
    """``variables=`` names each input variable once: one input variable cannot play two of
    the model's (``["t2m", "t2m"]``), and no shipped model has a variable twice."""
    if variables is None or isinstance(variables, str):
        return
    if isinstance(variables, Mapping | bytes) or not isinstance(variables, Iterable):
        fix = " (for a renaming pass rename=...)" if isinstance(variables, Mapping) else ""
        raise ConfigError(
            f"variables = {variables!r} is a {type(variables).__name__}; expected the input's "
            f"variable names, one per model variable in the model's order, e.g. "
            f"variables=['tas'] or variables='tas'{fix}"
        )
    names = list(variables)
    odd = [v for v in names if not isinstance(v, Hashable)]
    if odd:
        raise ConfigError(
            f"variables = {names!r} holds {odd[0]!r}, which cannot name a variable; list the "
            "input's variable names, e.g. variables=['tas']"
        )
    twice = list(dict.fromkeys(v for v in names if names.count(v) > 1))
    if twice:
        raise ConfigError(
            f"variables={names} names {', '.join(map(repr, twice))} more than once; list "
            "each input variable once, one per model variable, in the model's order"
        )


def downscaler_for(
    model: Any,
    names: Sequence[str],
    *,
    rename: Mapping[str, str] | None = None,
    variables: str | Sequence[str] | None = None,
    factor: int | None = None,
) -> Any:
    """The Downscaler that :meth:`Downscaler.__call__` would be given for data named ``names``.

    One place for the accessor and the command line: ``rename`` maps the data's names first;
    ``variables`` (the caller's names in a model's order) replaces them and picks, with
    ``model=None``, only a shipped model with exactly those names.

    Parameters
    ----------
    model
        A Downscaler, a model folder, a shipped name, a Hub id, or ``None`` (automatic choice).
    names
        The input's data-variable names.
    rename, variables, factor
        As for :meth:`Downscaler.__call__`.

    Returns
    -------
    Downscaler
        As :func:`resolve_downscaler` returns it for the renamed (or given) variable names.

    Examples
    --------
    Data whose 2 m temperature is called ``tas``: renamed, it gets the shipped ERA5 model,
    as ``ds.flex.downscale(rename={"tas": "t2m"})`` would; without the rename no shipped
    model takes it, and the message says which rename fits:

    >>> downscaler_for(None, ["tas"], rename={"tas": "t2m"}, factor=4).name
    'era5-t2m-x4'
    >>> downscaler_for(None, ["tas"], factor=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ModelFolderError: no shipped model downscales variables ['tas'] ...
    """
    _check_factor(factor)
    _check_mappings(rename, None)
    _check_variables_distinct(variables)
    if model is None and not names:
        raise MissingVariableError(
            "the input has no named variable, so no shipped model can be chosen for it; name "
            "it after the model's variable (e.g. da.rename('t2m')) or pass model=..."
        )
    mapping = rename or {}
    chosen = tuple(mapping.get(n, n) for n in names)
    if variables is not None:
        chosen = (variables,) if isinstance(variables, str) else tuple(variables)
    return resolve_downscaler(
        model, variables=chosen, factor=factor, explicit_variables=variables is not None
    )


# --------------------------------------------------------------------------------------------
# Downscaler
# --------------------------------------------------------------------------------------------


def _select_model_variables(
    ds: xr.Dataset,
    model_variables: Sequence[str],
    variables: Sequence[str] | str | None = None,
    rename: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """The model's variables of ``ds``, renamed to the model's names, in channel order.

    Parameters
    ----------
    ds
        The input.
    model_variables
        The model's variable names in channel order.
    variables
        The input's names of the model's variables, in the model's order (a mapping by
        position), or ``None`` to find them by name.
    rename
        ``{input name: model name}`` applied first.

    Raises
    ------
    MissingVariableError
        A variable is not found; the message proposes the ``rename`` that fits when the input
        has as many other variables as are missing.
    ConfigError
        ``variables`` gives one model variable's own name for another (``["v", "u"]`` to a
        ``(u, v)`` model), which would swap them silently.
    """
    if rename:
        unknown = [k for k in rename if k not in ds.data_vars]
        if unknown:
            raise MissingVariableError(
                f"rename names {unknown}, which are not variables of the input "
                f"({list(map(str, ds.data_vars))})"
            )
        targets = list(rename.values())
        twice = sorted({str(v) for v in targets if targets.count(v) > 1})
        if twice:
            raise ConfigError(
                f"rename={dict(rename)} gives several input variables the name(s) {twice}; "
                "rename one input variable to each model variable"
            )
        taken = [str(v) for v in targets if v in ds.variables and v not in rename]
        if taken:
            raise ConfigError(
                f"rename={dict(rename)} but the input already has {taken}; drop those first "
                f"(ds.drop_vars({taken!r})), or leave rename out and pass variables=[...]: the "
                "input variables that play the model's, in the model's order"
            )
        ds = ds.rename({k: v for k, v in rename.items()})
    if variables is not None:
        _check_variables_distinct(variables)
        variables = [variables] if isinstance(variables, str) else list(variables)
        if len(variables) != len(model_variables):
            raise MissingVariableError(
                f"variables={variables} has {len(variables)} entries; the model takes "
                f"{len(model_variables)}: {list(model_variables)} (in this order)"
            )
        absent = [v for v in variables if v not in ds.data_vars]
        renamed = [v for v in absent if rename and v in rename]
        if renamed:  # variables name the input after renaming
            new_names = [rename.get(v, v) for v in variables] if rename else variables
            raise MissingVariableError(
                f"variables {renamed} were renamed by rename={dict(rename or {})}; give the "
                f"names after renaming, variables={new_names}, or leave out "
                f"rename={dict(rename or {})}: variables={variables} alone maps the input's "
                "names onto the model's"
            )
        if absent:
            found = list(map(str, ds.data_vars))
            after = f" after rename={dict(rename)}" if rename else ""
            near = {
                str(a): close[0]
                for a in absent
                if (close := difflib.get_close_matches(str(a), found, n=1, cutoff=0.6))
            }
            hint = (
                f" (did you mean {', '.join(f'{v!r} for {k!r}' for k, v in near.items())}?)"
                if near
                else ""
            )
            raise MissingVariableError(
                f"variables {absent} are not in the input{after}, whose variables are "
                f"{found}{hint}. variables= lists the input's names that play the model's "
                f"{list(model_variables)}, in that order; leave it out to take them by the "
                "model's names"
            )
        # an input name that is one model variable's own, given for another: the components of
        # a (u, v) model swapped by `variables=["v", "u"]` (both m s-1: no units check sees it)
        crossed = [
            (a, b)
            for a, b in zip(variables, model_variables, strict=True)
            if a != b
            if a in model_variables
        ]
        if crossed:
            a, b = crossed[0]
            raise ConfigError(
                f"variables={variables} would feed the input's {a!r} to the model as its {b!r}, "
                f"but {a!r} is the name of another of the model's variables (its order: "
                f"{list(model_variables)}). variables= lists, in the model's order, the input "
                "names that play each model variable, not the variables to take; leave it out to "
                "take the input's variables by their names in the model's order. To feed them "
                "crossed on purpose, rename the input's variables first (ds.rename)"
            )
        ds = ds[variables].rename({a: b for a, b in zip(variables, model_variables) if a != b})
    missing = [v for v in model_variables if v not in ds.data_vars]
    if missing:
        others = [str(v) for v in ds.data_vars if v not in model_variables]
        # the one mapping that fits, when the input has exactly as many other variables
        guess = dict(zip(others, missing)) if len(others) == len(missing) else None
        fix = (
            f"if {others} are the model's {missing} under other names, pass rename={guess}"
            if guess
            else f"pass rename={{'your_name': {missing[0]!r}}}"
        )
        raise MissingVariableError(
            f"the model needs variables {list(model_variables)} but {missing} are not in the "
            f"input (found {list(map(str, ds.data_vars))}); {fix} or variables=[...] in the "
            "model's order"
        )
    return ds[list(model_variables)]


def _backbone_from_folder(folder: Any) -> torch.nn.Module:
    """The float32 backbone of a loaded model folder (:class:`flexdownscale.hub.ModelFolder`).

    Built without random initialization (see
    :func:`flexdownscale.models.registry.module_with_weights`): loading a model
    leaves torch's global random state as it was.

    Raises
    ------
    WeightsMismatchError
        When the weights do not fit the architecture of the folder's config.json (see
        ``_check_weights_fit``).
    """
    from .models import build_model
    from .models.registry import module_with_weights

    empty = _check_weights_fit(folder)  # built on the meta device, then checked
    build = functools.partial(build_model, folder.model)
    return module_with_weights(build, folder.state_dict, empty=empty).float()


def _check_weights_fit(folder: Any, backbone: torch.nn.Module | None = None) -> torch.nn.Module:
    """``backbone`` (default: the folder's architecture built on the meta device, which holds
    no values: shapes only) after checking that the folder's weights fit it.

    Raises
    ------
    WeightsMismatchError
        When they do not: a summary of what differs (counts and the first tensor of each
        kind), the preset the weights do fit if one does, and the fix.
    """
    from .models import build_model

    if backbone is None:
        backbone = build_model(folder.model, device="meta")
    differences = _weights_differences(backbone, folder.state_dict)
    if differences:
        raise WeightsMismatchError(
            f"weights in {str(folder.path)!r} do not fit the {folder.model.backbone} "
            f"{folder.model.preset} architecture of its config.json: {differences}; "
            + _weights_fix(folder)
        )
    return backbone


def _weights_differences(backbone: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``weights`` from loading into ``backbone``, in words (``""``: nothing).

    Counts the tensors the architecture has and the weights lack, those the weights have and
    the architecture lacks, and those of other shapes, each with its first name (torch's own
    message lists every one: tens of kilobytes for a preset edited in config.json).
    """
    expected = {name: tuple(t.shape) for name, t in backbone.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [name for name in expected if name in found and found[name] != expected[name]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors of it are not in the weights (first {missing[0]!r})")
    if unexpected:
        parts.append(
            f"{len(unexpected)} tensors of the weights are not in it (first {unexpected[0]!r})"
        )
    if reshaped:
        first = reshaped[0]
        parts.append(
            f"{len(reshaped)} have another shape (first {first!r}: {list(found[first])} in the "
            f"weights, {list(expected[first])} in the architecture)"
        )
    return ", ".join(parts)


def _weights_fix(folder: Any) -> str:
    """The fix for weights that do not fit: the preset they fit, when another one does."""
    from .models import build_model
    from .models.registry import PRESETS

    for preset in PRESETS[folder.model.backbone]:
        if preset == folder.model.preset:
            continue
        candidate = replace(folder.model, preset=preset)
        if not _weights_differences(build_model(candidate, device="meta"), folder.state_dict):
            return (
                f"they fit {folder.model.backbone} {preset}. The config.json was changed after "
                f'export: set its model.preset back to "{preset}", or export the model again'
            )
    return (
        "the config.json was changed after export, or the weights are another model's: "
        "export the model again (or download it again)"
    )


def _input_names(
    model_variables: Sequence[str],
    variables: str | Sequence[str] | None,
    rename: Mapping[str, str] | None,
) -> dict[str, str]:
    """The input's own name of each model variable (``{"t2m": "sp"}`` for ``variables=["sp"]``),
    for messages about the user's data: ``rename`` maps input names first, ``variables`` names
    the (renamed) input's variables in the model's order."""
    chosen = [variables] if isinstance(variables, str) else variables
    given = list(chosen) if chosen is not None else list(model_variables)
    back = {new: old for old, new in (rename or {}).items()}
    return {m: back.get(v, v) for m, v in zip(model_variables, given, strict=False)}


def _refuse_empty_dataset(obj: Any, task: str = "downscale", example: str = "t2m") -> None:
    """Raise :class:`MissingVariableError` when ``obj`` is a Dataset without data variables
    (coordinates only, as an empty selection ``ds[[]]`` gives): there is nothing to ``task``
    (``"downscale"``, ``"forecast"``); the message selects ``example`` (a variable name).

    Checked by :meth:`Downscaler.__call__` and :meth:`Forecaster.__call__` (so by
    ``ds.flex.forecast`` too), and by the accessor's ``downscale`` before it chooses a model for
    the input's names (which would otherwise ask for a name the input cannot have).
    """
    if isinstance(obj, xr.Dataset) and not obj.data_vars:
        # the DataArray hint (da.rename) of the choice of a model would not apply
        raise MissingVariableError(
            f"the Dataset has no data variables (coordinates only): there is nothing to "
            f"{task}. Select the variables that hold the fields, e.g. ds[[{example!r}]] (an "
            "empty selection, ds[[]], gives this)"
        )


def _dataset_of(da: xr.DataArray, name: Hashable, model_variable: str) -> xr.Dataset:
    """The input DataArray ``da`` as a Dataset holding it as variable ``name``
    (:func:`~flexdownscale._duck.dataset_of`: :class:`DataError` when ``name`` is also the name
    of one of its coordinates, with the rename to the model's variable that fixes it)."""
    return dataset_of(da, name, rename_to=model_variable, hint=" (with no rename= for it)")


def _check_units(
    ds: xr.Dataset, units: Mapping[str, str], names: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`UnitsError` unless every variable of ``units`` has those units in ``ds``.

    Units are compared as units, not strings (:mod:`flexdownscale.units`): ``K``,
    ``kelvin`` and ``degK`` are the same, as are ``m s**-1``, ``m s-1`` and ``m/s``. For units
    that convert (degC to K, mm/h to m s-1) the error gives the conversion and the line that
    does it. A model variable with an empty unit is not checked. ``names`` gives the input's
    own name of a model variable (``variables=["sp"]`` for the model's ``t2m``): the messages
    name that one, and the model's in brackets.
    """
    for model_name, expected in units.items():
        if not expected:
            continue
        found = ds[model_name].attrs.get("units")
        v = (names or {}).get(model_name, model_name)  # the input's name: code for the fix
        label = repr(v) if v == model_name else f"{v!r} (the model's {model_name!r})"
        if found is None:
            raise UnitsError(
                f"variable {label} has no 'units' attribute; the model expects {expected!r}. "
                f"Set it if the values are in {expected}: ds[{v!r}].attrs['units'] = "
                f"{expected!r}"
            )
        if not isinstance(found, str):
            raise UnitsError(
                f"variable {label} has a 'units' attribute of type {type(found).__name__} "
                f"({found!r}); CF units are one string. Set it to the string the values are in, "
                f"e.g. ds[{v!r}].attrs['units'] = {expected!r}"
            )
        comparison = compare_units(found, expected)
        if comparison.outcome == "same":
            continue
        if comparison.outcome == "convertible":
            scale, offset = comparison.conversion
            rule = comparison.rule
            if scale == 1.0:  # an offset only: the degC / K case
                rule = f"a {abs(offset):.10g} offset: {rule}"
            raise UnitsError(
                f"variable {label} is in {found!r} but the model expects {expected!r} ({rule}); "
                f"convert first: {comparison.code(v)}"
            )
        raise UnitsError(_unconvertible_units(label, v, model_name, comparison))


def _unconvertible_units(
    label: str, variable: str, model_name: str, comparison: UnitComparison
) -> str:
    """The message for input units that do not convert to the model's: an empty or unknown
    units string (the attribute is wrong), or another kind of quantity (the wrong variable,
    or a wrong attribute). ``label`` names the variable in words, ``variable`` in code (the
    input's name), ``model_name`` is the model's name of it."""
    found, expected = comparison.found, comparison.expected
    fix = f"Set it if the values are in {expected}: ds[{variable!r}].attrs['units'] = {expected!r}"
    want = comparison.expected_kind
    if want is None:  # the model's own units are no unit pint knows: no advice on kinds
        return (
            f"variable {label} is in {found!r} but the model expects {expected!r}; convert the "
            f"values and set attrs['units'] = {expected!r}"
        )
    other = "; in other units, set those: the error then gives the conversion"
    if not found.strip():
        return (
            f"variable {label} has an empty 'units' attribute; the model expects {expected!r} "
            f"({want}). {fix}{other}"
        )
    if found.strip().lower() == expected.strip().lower():  # 'k' is Boltzmann's constant
        return (
            f"variable {label} is in {found!r} but the model expects {expected!r} ({want}): "
            f"units are case-sensitive, {found.strip()!r} is not {expected!r}. {fix}"
        )
    have = comparison.found_kind
    if have is None:
        return (
            f"variable {label} has units {found!r}, which is not a unit flexdownscale knows "
            f"(CF / UDUNITS spellings: 'K', 'degC', 'hPa', 'm s-1', 'kg m-2 s-1', '1', ...); the "
            f"model expects {expected!r} ({want}). {fix}{other}"
        )
    water = comparison.water_scale
    if water is not None:  # mm against kg m-2: the same for liquid water, not converted unasked
        rule = conversion_rule(found, expected, water, 0.0)
        return (
            f"variable {label} is in {found!r}, {have}, but the model expects {expected!r}, "
            f"{want}: not the same kind of quantity, but for liquid water "
            f"({WATER_DENSITY:g} kg m-3) a depth is a mass per area, {rule} (1 mm of water is "
            "1 kg m-2). If the values are liquid water (a precipitation depth, not snow), "
            "flexdownscale does not assume it; convert first: "
            f"{conversion_code(variable, water, 0.0, expected)}. If this is not the model's "
            f"variable, pass that one (variables=[...] or rename={{'yours': {model_name!r}}})"
        )
    return (
        f"variable {label} is in {found!r}, {have}, but the model expects {expected!r}, {want}: "
        "no conversion exists between them. If this is not the model's variable, pass that one "
        f"(variables=[...] or rename={{'yours': {model_name!r}}}). If it is and the attribute is "
        f"wrong, fix the attribute. {fix}"
    )


def _check_dtypes(ds: xr.Dataset, variables: Sequence[str]) -> None:
    """Raise :class:`DataError` for a model variable whose values are not real numbers, or are
    still packed (:func:`~flexdownscale.data.grid.check_decoded`).

    Integers (counts) and floats are fine; strings, booleans, complex numbers,
    dates and objects are not (they failed deep inside or lost their imaginary part).
    """
    from .data.datasets import not_real_message

    for v in variables:
        if ds[v].dtype.kind not in "iuf":
            raise DataError(not_real_message(v, None, ds[v].dtype))
    check_decoded(ds, variables)


class _ModelFolderIO:
    """What a model folder records beyond the weights, and :meth:`save_pretrained`.

    Shared by :class:`Downscaler` and :class:`Forecaster`; ``_task`` and ``_folder_factor`` say
    what the folder's ``config.json`` records for each.
    """

    _task: str
    backbone: nn.Module
    diffusion: DiffusionConfig | None
    sampler: SamplerConfig
    variables: tuple[str, ...]
    units: dict[str, str]
    normalizer: Normalizer
    grid: dict[str, Any]
    condition: dict[str, Any] | None
    name: str
    card: str

    def _init_folder_state(self, diffusion: DiffusionConfig | Objective) -> Objective:
        """Set ``diffusion`` and the loaded-folder fields; return the objective."""
        # a loaded folder's path, metadata (training steps, validation, history) and weights
        # dtype, written back by save_pretrained
        self.path: Path | None = None
        self.extra: dict[str, Any] = {}
        self.weights_dtype: torch.dtype | None = None
        if isinstance(diffusion, DiffusionConfig):
            self.diffusion = diffusion
            return build_objective(diffusion)
        if isinstance(diffusion, Objective):
            self.diffusion = None
            return diffusion
        raise ConfigError(
            f"diffusion must be a DiffusionConfig or an Objective, got {type(diffusion).__name__}"
        )

    def _check_normalizer(self) -> None:
        missing = [v for v in self.variables if v not in self.normalizer.variables]
        if missing:
            raise ConfigError(f"the normalizer has no statistics for {missing}")

    def _adopt_folder(self, folder: Any) -> None:
        """Remember the loaded folder (a ``hub.ModelFolder``): its absolute path (a worker in
        another working directory finds it), metadata, weights dtype and the fingerprint of the
        weights as loaded (edited weights then travel whole, not as the folder's path)."""
        self.path = Path(folder.path).resolve()
        self._folder_fingerprint = _weights_fingerprint(self.backbone)
        self.extra = dict(folder.extra)
        # the dtype holding most weights (the time embeddings' frequencies stay float32 in a
        # folder of any dtype: the smallest dtype made a float64 folder float32 when re-saved)
        counts: dict[torch.dtype, int] = {}
        for tensor in folder.state_dict.values():
            if tensor.is_floating_point():
                counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
        self.weights_dtype = max(counts, key=counts.__getitem__) if counts else None

    def _folder_factor(self) -> int:
        return 1

    def _default_card(self) -> str:
        """The card of a model that has none (built from its parts): its name, and its
        physical condition and normalization transforms when it has them. A model built
        without a name gets a title saying what it is and a line saying how to name it."""
        from .hub import model_card_lines

        lines = model_card_lines(self.condition, self.normalizer.to_dict())
        title = self.name
        if self.name == _UNNAMED:
            described = ", ".join(
                f"{v} [{self.units[v]}]" if self.units.get(v) else v for v in self.variables
            )
            kind = (
                "forecast"
                if self._task == "forecast"
                else f"super-resolution x{self._folder_factor()}"
            )
            title = f"Unnamed {kind} model of {described}"
            lines.insert(
                0,
                "- built in Python from its parts and saved with `save_pretrained`, without a "
                "name or a card: build it with `name=` to title this card, or pass `card=` to "
                "`save_pretrained` to write your own",
            )
        return f"# {title}\n" + ("\n" + "\n".join(lines) + "\n" if lines else "")

    @keyword_hints
    def save_pretrained(
        self,
        path: str | os.PathLike[str],
        *,
        card: str | None = None,
        overwrite: bool = False,
        dtype: torch.dtype | str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a model folder (see :func:`flexdownscale.hub.save_model_folder`).

        Parameters
        ----------
        path
            Destination folder; an existing one is refused unless ``overwrite=True`` (and even
            then only a model folder or an empty folder is replaced).
        card
            Model card (``README.md``); default: the loaded folder's, else (a model built from
            its parts) its name with its physical condition and normalization transforms
            (:func:`flexdownscale.hub.model_card_lines`).
        overwrite
            Replace an existing model folder at ``path``.
        dtype
            Dtype of the stored weights: ``torch.float16``, ``torch.bfloat16`` (halves the
            folder), ``torch.float32`` or ``torch.float64``, or its name (``"bfloat16"``);
            default: the dtype of the folder the model was loaded from (bfloat16 for the shipped
            models), else the backbone's. The time embeddings' frequencies always stay float32.
        extra
            Metadata under ``config.json["extra"]``; default: the loaded folder's (training
            steps, validation skill, history).

        Returns
        -------
        pathlib.Path
            The folder written.

        Raises
        ------
        ConfigError
            When the model was built from an ``Objective`` rather than its ``DiffusionConfig``,
            or ``dtype`` is not one of the four float dtypes above (an integer dtype would round
            the weights); nothing is written then.
        ModelFolderError
            When ``path`` exists and may not be replaced, or cannot be written (a read-only
            folder, a file in the way, a full disk: the message names ``path``, the cause and
            the fix; nothing is left behind).
        """
        from .hub import save_model_folder
        from .models import export_state_dict

        if self.diffusion is None:
            raise ConfigError(
                f"this {type(self).__name__} was built from an Objective; build it from its "
                "DiffusionConfig to save it"
            )
        return save_model_folder(
            path,
            state_dict=export_state_dict(
                self.backbone, dtype if dtype is not None else self.weights_dtype
            ),
            model=self.backbone.config,
            diffusion=self.diffusion,
            sampler=self.sampler,
            variables=self.variables,
            units=self.units,
            factor=self._folder_factor(),
            normalization=self.normalizer.to_dict(),
            grid=self.grid,
            card=card if card is not None else (self.card or self._default_card()),
            task=self._task,
            condition=self.condition,
            extra=dict(extra) if extra is not None else self.extra,
            overwrite=overwrite,
        )


class Downscaler(_ModelFolderIO, _BackboneOnDevice, _PhysicalCondition):
    """A trained super-resolution model with everything needed to apply it to a dataset.

    Build one with :meth:`from_pretrained` (a model folder, a shipped name or a Hub id) or from
    its parts (tests, freshly trained models), then call it on coarse data::

        ds_fine = Downscaler.from_pretrained("path/to/model")(ds, members=8)

    Parameters
    ----------
    model
        The backbone (an ``nn.Module`` built by :func:`flexdownscale.models.build_model`) or a
        :class:`~flexdownscale.diffusion.ResidualModel` around it.
    diffusion
        The objective's :class:`~flexdownscale.config.DiffusionConfig` (or an ``Objective``;
        then :meth:`save_pretrained` is unavailable).
    normalizer
        The training statistics, one entry per variable.
    grid
        The training grid metadata (``SuperResolutionDataset.grid_metadata()``): ``grid`` (the
        fine ``GridSpec`` dict or ``None``), ``degradation``, ``sigma``, ``upsample``, ``factor``.
    variables
        Variable names in channel order.
    units
        ``units`` of each variable at training time.
    factor
        Super-resolution factor.
    sampler
        Default sampler settings (default: the objective's).
    name
        Model name recorded in the outputs' provenance.
    card
        Model card text written by :meth:`save_pretrained`.
    condition
        Physical-condition metadata of a conditioned model, ``{"name": ..., "scale": ...}``:
        the network sees ``value / scale`` where ``value`` is the ``condition=`` argument of the
        call or the input's attribute / scalar variable ``name`` (``None``: unconditioned).
        An optional ``"range": [low, high]`` (the values seen in training) makes a call outside
        it warn that the model extrapolates.

    Examples
    --------
    The shipped ERA5 model on a coarsened copy of the sample that ships with it (two members,
    a two-step sampler; ``ds.flex.downscale`` does the same in one call):

    >>> import flexdownscale as fd
    >>> downscaler = Downscaler.from_pretrained("era5-t2m-x4")
    >>> downscaler.variables, downscaler.factor
    (('t2m',), 4)
    >>> ds = fd.demo.open_sample("era5_t2m_uk").isel(time=[0])
    >>> coarse = fd.data.degrade(ds, 4, boundary="trim")
    >>> fine = downscaler(coarse, members=2, steps=2, seed=0)
    >>> fine["t2m"].dims, fine["t2m"].shape
    (('member', 'time', 'latitude', 'longitude'), (2, 1, 32, 48))
    """

    _task = "superres"

    def __init__(
        self,
        model: nn.Module,
        diffusion: DiffusionConfig | Objective,
        *,
        normalizer: Normalizer,
        grid: Mapping[str, Any],
        variables: Sequence[str],
        units: Mapping[str, str],
        factor: int,
        sampler: SamplerConfig | None = None,
        name: str | None = None,
        card: str = "",
        condition: Mapping[str, Any] | None = None,
    ) -> None:
        (factor,) = _python_ints(factor)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise UnsupportedFactorError(f"factor = {factor!r}; expected a positive integer")
        if isinstance(model, ResidualModel):
            model = model.backbone
        self.backbone = model.eval()
        self.objective = self._init_folder_state(diffusion)
        self.normalizer = normalizer
        self.grid = dict(grid)
        self.variables = tuple(variables)
        self.units = {v: str(units.get(v, "")) for v in self.variables}
        self.factor = factor
        self.sampler = sampler if sampler is not None else self.objective.sampler_defaults
        self.name = name or _UNNAMED
        self.card = card
        self._set_condition(condition, model)
        self._check_normalizer()
        upsample = self.grid.get("upsample", "bilinear")
        if upsample not in ("bilinear", "bicubic", "conservative", "nearest"):
            raise ConfigError(f"grid metadata names an unknown upsampling {upsample!r}")

    def __repr__(self) -> str:
        return (
            f"Downscaler({self.name!r}, variables={list(self.variables)}, factor={self.factor}, "
            f"objective={self.objective!r})"
        )

    # -- model folders -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str]) -> Downscaler:
        """Load a model folder (local path, shipped model name or Hugging Face Hub id).

        The folder is checked (files present, checksums, format) by
        :func:`flexdownscale.hub.load_model_folder` before anything is built; weights are read
        with safetensors only.

        Parameters
        ----------
        name_or_path : str or os.PathLike
            Local model folder, shipped model name (e.g. ``"era5-t2m-x4"``) or Hugging Face
            Hub id of a ``"superres"`` model.

        Returns
        -------
        Downscaler
            The model, ready to call, on the CPU.

        Raises
        ------
        ModelFolderError
            Missing or modified files, unknown format; ``WeightsMismatchError`` when the weights
            do not fit the architecture; a ``name_or_path`` that is no path, name or Hub id
            (``None``, a number; a loaded :class:`Forecaster` is told to forecast).
        """
        from .hub import load_model_folder

        problem = _model_reference_error(
            name_or_path, "superres", loaded=False, argument="name_or_path"
        )
        if problem is not None:
            raise problem
        folder = load_model_folder(name_or_path)
        if folder.task != "superres":
            raise ConfigError(
                f"model {str(name_or_path)!r} is a {folder.task!r} model; Downscaler needs a "
                "super-resolution model (use ds.flex.forecast for forecast models)"
            )
        out = cls(
            _backbone_from_folder(folder),
            folder.diffusion,
            normalizer=Normalizer.from_dict(folder.normalization),
            grid=folder.grid,
            variables=folder.variables,
            units=folder.units,
            factor=folder.factor,
            sampler=folder.sampler,
            name=_model_label(name_or_path, folder.path),
            card=folder.card,
            condition=folder.condition,
        )
        out._adopt_folder(folder)
        return out

    def _folder_factor(self) -> int:
        return self.factor

    def __copy__(self) -> Downscaler:
        # shares the network, as a shallow copy does (not the process's cached one: see below)
        new = type(self).__new__(type(self))
        new.__dict__.update(super().__getstate__())
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Downscaler:
        # a network of its own: the pickling route below would hand the copy the network cached
        # for the folder in this process, which every ds.flex.downscale call of it then used
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(super().__getstate__(), memo))
        return new

    def __getstate__(self) -> dict[str, Any]:
        # the weights of a folder, unedited, travel as its path and are loaded once per
        # process; edited ones (in place, another dtype) travel whole, as does everything else
        state = super().__getstate__()
        unloaded = state.pop("_unloaded", None)
        if unloaded is not None:  # received without its weights: sent on as the folder again
            state["backbone"] = None
            state["_backbone_folder"] = unloaded[0]
            return state
        fingerprint = state.get("_folder_fingerprint")
        if self.path is not None and fingerprint == _weights_fingerprint(self.backbone):
            state["backbone"] = None
            state["_backbone_folder"] = str(self.path)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A folder that cannot give the weights here is said at the model's first use, not
        # now: an error while unpickling a task kills a process pool's worker, and the caller
        # saw a bare BrokenProcessPool instead of this typed error.
        folder = state.pop("_backbone_folder", None)
        self.__dict__.update(state)
        if folder is None:
            return
        sent = f"model {self.name!r} was sent to this process as its folder {folder}"
        try:
            loaded = _cached(folder)
        except FlexDownscaleError as err:
            problem = ModelFolderError(
                f"{sent}, which cannot be loaded here: {err}. A loaded model is sent to other "
                "processes (a process pool, dask workers) as its folder's path: keep the folder "
                "until the work is done, or load the model again from where it is now"
            )
        else:
            if loaded.__dict__.get("_folder_fingerprint") == state["_folder_fingerprint"]:
                self.backbone = loaded.backbone
                return
            problem = ModelFolderError(
                f"{sent}, but the weights there are not the ones it was loaded with (the folder "
                "was replaced since); load the model again and recompute"
            )
        del self.__dict__["backbone"]
        self.__dict__["_unloaded"] = (folder, problem)

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes not set: ``backbone`` of a model whose folder could not
        # give its weights in this process (see __setstate__)
        unloaded = self.__dict__.get("_unloaded")
        if name == "backbone" and unloaded is not None:
            raise unloaded[1].with_traceback(None)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- checks ----------------------------------------------------------------------------------

    def _check_grid(self, spec: GridSpec) -> GridSpec | None:
        """Check the input grid ``spec`` against the training grid; return that grid (``None``
        when the folder records none: then any grid is taken)."""
        fine = _training_grid(self.grid)
        if fine is None:
            return None
        _check_model_grid(spec, fine, self.factor, self.name)
        _warn_periodic_attribute(spec, fine, self.factor, self.name)
        dx, dy = fine.dx * self.factor, fine.dy * self.factor
        # The training crops start on whole coarse cells of the training grid, so the model only
        # ever saw that alignment of the coarse cells; an offset one costs most of its skill.
        # (A longitude lattice is the same modulo 360 degrees.)
        f = self.factor
        offsets, targets, starts = [], {}, []
        for axis, name, first, size, spacing, lattice0, step, units in (
            (
                "x",
                spec.x,
                spec.x0,
                spec.nx,
                spec.dx,
                fine.x0 + 0.5 * (f - 1) * fine.dx,
                dx,
                spec.x_units,
            ),
            (
                "y",
                spec.y,
                spec.y0,
                spec.ny,
                spec.dy,
                fine.y0 + 0.5 * (f - 1) * fine.dy,
                dy,
                spec.y_units,
            ),
        ):
            cells = (first - lattice0) / step
            offset = cells - round(cells)
            # the lattice's centres within the input's extent: the regrid target of the fix
            low, high = sorted((first, first + (size - 1) * spacing))
            k0 = math.ceil((low - lattice0) / step - 1e-6)
            k1 = math.floor((high - lattice0) / step + 1e-6)
            targets[name] = (lattice0 + k0 * step, lattice0 + k1 * step, step)
            if abs(offset) * f <= LATTICE_TOL_FINE_CELLS:
                continue
            fine_cells = offset * f
            offsets.append(
                f"along {axis} {'by' if offsets else 'are offset by'} {offset * step:+.6g} "
                f"{units} ({fine_cells:+.3g} fine cells)"
                + ("" if offsets else " from the cells the model was trained on")
                + f", whose centres are {lattice0:.6g} + k * {step:g} {units}"
            )
            if abs(fine_cells - round(fine_cells)) <= LATTICE_TOL_FINE_CELLS:
                fine0 = lattice0 - 0.5 * step + 0.5 * step / f  # a coarse cell's first fine centre
                starts.append(
                    f"a fine cell whose centre is {fine0:.6g} + k * {step:g} {units} along {axis}"
                )
            else:
                starts.append("")
        if not offsets:
            return fine
        fix = (
            "if the input was coarsened from data on the model's fine grid, start the coarsening "
            f"at {' and at '.join(starts)} (axis sorted ascending; flexdownscale.data.degrade); "
            "otherwise regrid"
            if all(starts)
            else "regrid"
        )
        target = ", ".join(
            f"{name!r}: np.arange({lo:.6g}, {hi + 0.5 * step:.6g}, {step:g})"
            for name, (lo, hi, step) in targets.items()
        )
        raise GridError(
            f"the input's coarse cells {', and '.join(offsets)}; the model learned that alignment "
            "and loses most of its skill on another one. That lattice within the input's extent, "
            f"as a target grid: xr.Dataset(coords={{{target}}}). To fix: {fix} the input onto "
            "that lattice (flexdownscale.data.regrid)"
        )

    @property
    def _default_tile(self) -> int:
        """The tile side (fine cells) used when ``tile`` is not given: :data:`DEFAULT_TILE`
        rounded up to a multiple of the factor and the backbone's ``grid_multiple``."""
        return _round_up(DEFAULT_TILE, _lattice(self.factor, self._grid_multiple))

    def _warn_small_bbox_halo(
        self, axes: Sequence[tuple[Any, ...]], picks: Sequence[Any], halo: int, overlap: int
    ) -> None:
        """Warn when a ``bbox`` is read with a halo smaller than the default tiles' (an overlap
        below theirs) and a larger halo would read more of the input: the region's edges then
        see less context than in a run on the whole field. ``axes`` are the (values, low, high,
        step, periodic) of :func:`_bbox_axis` per (y, x) and ``picks`` what it returned."""
        f = self.factor
        full = max(2, math.ceil(_tile_overlap(self._default_tile, None, f) / f))
        if halo >= full or any(p is None for p in picks):
            return
        wider = [_bbox_axis(*axis, full) for axis in axes]
        if all(np.size(w[0]) <= np.size(p[0]) for w, p in zip(wider, picks, strict=True)):
            return  # the input ends within the halo: there is no more context to read
        warnings.warn(
            f"with bbox= and overlap = {overlap} fine cells the region is read with a halo of "
            f"{halo} coarse cells ({halo * f} fine) on each side, less than the {full} coarse "
            f"cells ({full * f} fine) of the default overlap: the network sees the whole tile, so the cells near the bbox's "
            "edges get less context than in a run on the whole field, which costs skill "
            "(era5-t2m-x4, bbox=(-1, 50, 2, 58) over eastern England: RMSE 0.345 K with overlap 0, 0.292 K with "
            "16, 0.282 K with 32, 0.224 K with 64, as on the whole field). Leave overlap unset "
            f"(or give overlap={full * f}) with bbox=",
            SkillWarning,
            stacklevel=user_stacklevel(),
        )

    def _warn_small_tile(self, plan: TileLayout, tile: int) -> None:
        """Warn when the field is cut into tiles smaller than the model's training crops."""
        crop = _training_crop(self.grid)
        if crop is None:
            return
        small = [
            side < need and side < whole
            for side, need, whole in zip(plan.tile_shape, crop, plan.shape, strict=True)
        ]
        if not any(small):
            return
        lattice = _lattice(self.factor, self._grid_multiple)
        fix = _round_up(max(crop), lattice)
        warnings.warn(
            f"tile = {tile} fine cells is smaller than the {crop[0]} x {crop[1]} crops model "
            f"{self.name!r} was trained on: each tile sees less context than in training, "
            f"which costs skill. Use tile={fix} or larger"
            + (", or leave tile unset" if fix <= self._default_tile else ""),
            SkillWarning,
            stacklevel=user_stacklevel(),
        )

    # -- sampling ----------------------------------------------------------------------------------

    def _sample_block(
        self,
        coarse: np.ndarray,
        *,
        start: int,
        params: Mapping[str, Any],
        warn_once: list[bool] | None = None,
    ) -> np.ndarray:
        """Downscale a (T, C, h, w) block of physical values; returns (M, T, C, H, W) float32.

        ``start`` is the block's first time index in the call. The steps run in groups of
        ``params["time_group"]`` per sampler call (:func:`_step_groups`, by the time index in
        the call; ``None``: chosen here from the tiles per call), each step with the member
        streams of ``time_step_seed(seed, start + i)``; the fine base fields are made one
        group at a time, so the block holds its output and one group's working set.

        ``warn_once`` is the call's token for its conserve warning, shared by the blocks of a
        lazy call: ``[True]`` until a block takes it (``list.pop`` is atomic under dask's
        threads), so one block of the call warns, not each; ``None``: the block is the call.
        """
        f = self.factor
        members, seed = params["members"], params["seed"]
        py, px = params["periodic"]
        out_rows, out_cols = params["crop"]
        device = _resolve_device(params["device"])
        steps_total = coarse.shape[0]
        (y_first, dy), (x_first, dx) = params["origin"]

        def position(index: np.ndarray) -> str:
            t, _, row, col = index
            return (
                f"time index {start + int(t)}, first at y = {y_first + row * dy:g}, "
                f"x = {x_first + col * dx:g}"
            )

        inf = np.isinf(coarse)
        if inf.any():
            index = np.argwhere(inf)[0]
            raise DataError(
                f"the coarse input is infinite ({coarse[tuple(index)]}) at {position(index)} "
                f"({int(inf.sum())} infinite values in this block); mask them "
                "(ds.where(np.isfinite(ds))) and fill them like NaNs"
            )
        nan = np.isnan(coarse)
        if nan.any():
            per_step = nan.reshape(steps_total, -1).all(axis=1)
            where = "is entirely NaN" if per_step.any() else "contains NaN"
            halo = params["bbox_halo"]
            region = (
                f"; with bbox= the region is read with a halo of {halo} coarse cells on each "
                f"side (max(2, overlap / factor)), so NaNs that close to the bbox count too"
                if halo
                else " or select a region without them (bbox=)"
            )
            raise DataError(
                f"the coarse input {where} at {position(np.argwhere(nan)[0])} "
                f"({int(nan.sum())} NaN values in this block); a network smears NaNs over its "
                "whole tile, so fill them first (e.g. ds.fillna(...) or "
                f"ds.interpolate_na(dim=...)){region}. interpolate_na leaves the NaNs at the "
                "domain's edges unless given fill_value='extrapolate' (or followed by "
                ".ffill(dim) and .bfill(dim)). A fixed mask (land or sea): fill it, downscale, "
                "then mask the output again; the docs' 'Masked fields' (inference page) compare "
                "the fills"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            z = self.normalizer.transform_array(coarse.astype(np.float64), variables=self.variables)
        invalid = ~np.isfinite(z)
        if invalid.any():
            index = np.argwhere(invalid)[0]
            variable = self.variables[int(index[1])]
            transform = self.normalizer.stats[variable].transform
            raise DataError(
                f"{variable!r} = {coarse[tuple(index)]:g} at {position(index)} is outside what "
                f"the model's normalization accepts (transform {transform!r}"
                + (": values must be > -1" if transform == "log1p" else "")
                + f"; {int(invalid.sum())} such values in this block): is it a fill value that "
                "was not decoded? Mask it (ds.where(...)) and fill it like a NaN"
            )
        _warn_far_from_training(
            z, coarse, self.normalizer, self.variables, position, params.get("far_token")
        )
        phys_value = params.get("phys")
        conserve = params.get("conserve")
        # Non-periodic dims: the field is reflect-padded to a multiple of the backbone's
        # grid_multiple (16 built in) and the padding cropped after sampling. Periodic dims: the
        # sampler works on the exact periodic field and the network sees it extended by
        # wrapped-around halos (TiledDenoiser's wrap).
        h, w = z.shape[-2] * f, z.shape[-1] * f
        wrap, end_pad, layout = _tiling(
            (h, w),
            f,
            (py, px),
            params["tile"],
            params["overlap"],
            params["blend"],
            self._grid_multiple,
        )
        th, tw = layout.tile_shape
        batch = params["batch_size"] or _auto_batch(device, (th, tw), len(self.variables))
        # batch-invariant: the network always sees one tile, whatever the batch (bit-identical
        # results for any batch_size); batch_size still sets the members per sampler call
        tile_batch = 1 if params["batch_invariant"] else batch
        net = TiledDenoiser(self._backbone_on(device), layout, tile_batch=tile_batch, wrap=wrap)
        net = net.to(device)
        model = ResidualModel(net)
        options = dict(params["sampler_options"])
        rows = max(1, batch // len(layout))
        # consecutive time steps share a sampler call when one step's members leave room (the
        # call's steps: one i // group, so any time chunking gives the same calls, see __call__)
        group = params.get("time_group") or _steps_per_call(
            batch, len(layout), members, params["batch_invariant"]
        )
        shape = (_cell_count(out_rows), _cell_count(out_cols))
        index_rows, index_cols = (
            c if isinstance(c, slice) else torch.as_tensor(c, device=device)
            for c in (out_rows, out_cols)
        )
        out = np.empty((members, steps_total, len(self.variables), *shape), dtype=np.float32)
        bar = None
        if params["progress"]:  # a bar on a terminal, a few lines in a log file
            from ._output import progress_bar

            bar = progress_bar(steps_total, "downscaling", "step", leave=False)
        dtype = next(self.backbone.parameters()).dtype
        signed_blocks = np.zeros(len(self.variables), dtype=np.int64)
        method = self.grid.get("upsample", "bilinear")
        try:
            for lo, hi in _step_groups(start, steps_total, group):
                # base = up(normalize(coarse)) of these steps only: the whole block's fine fields
                # in float64 would take about 10x the output's memory (members=None)
                base = upsample_array(
                    z[lo:hi], f, method=method, row_weights=params["row_weights"], periodic=(py, px)
                )
                if any(end_pad):
                    pad = ((0, 0), (0, 0), (0, end_pad[0]), (0, end_pad[1]))
                    base = np.pad(base, pad, mode="reflect")
                cond = torch.from_numpy(np.ascontiguousarray(base)).to(device, dtype)
                del base
                phys = (
                    None
                    if phys_value is None
                    else torch.full((hi - lo,), float(phys_value), device=device, dtype=dtype)
                )
                # each step's member streams, as when it is sampled alone (row b * members + m)
                streams = [
                    g
                    for i in range(lo, hi)
                    for g in member_generators(time_step_seed(seed, start + i), members)
                ]
                with torch.no_grad():
                    sample = model.sample(
                        self.objective,
                        cond,
                        members=members,
                        sampler=params["sampler"],
                        steps=params["steps"],
                        generator=streams,
                        phys=phys,
                        batch_size=rows,
                        **options,
                    )
                del cond
                cropped = sample[:, :, :, index_rows][..., index_cols]
                del sample
                for j, i in enumerate(range(lo, hi)):
                    fine = cropped[j].to("cpu", torch.float64).numpy()
                    fine = _physical_values(self.normalizer, fine, self.variables)
                    if conserve is not None:  # the cells returned, on the assembled field
                        modes, weights, cells_y, cells_x = conserve
                        cells = coarse[i][:, cells_y][:, :, cells_x]
                        fine, signed = _conserve_coarse_cells(fine, cells, f, modes, weights)
                        signed_blocks += signed
                    out[:, i] = fine.astype(np.float32)
                if bar is not None:
                    bar.update(hi - lo)
        finally:  # an interrupt or an error: its line says where it stopped
            if bar is not None:
                bar.close()
        if conserve is not None and signed_blocks.any():  # one warning for the call
            if warn_once is not None:  # a block of a lazy call: the first one to meet them
                try:
                    warn_once.pop()
                except IndexError:
                    return out
            blocks = members * steps_total * int(np.prod(shape)) // f**2
            within = (
                None
                if warn_once is None
                else f"time steps {start}..{start + steps_total - 1} (the first block of this "
                "lazy call to have such cells; its other blocks are not counted)"
            )
            _warn_signed_blocks(signed_blocks, blocks, self.variables, conserve[0], within)
        return out

    # -- the call ------------------------------------------------------------------------------

    @keyword_hints
    def __call__(
        self,
        ds: xr.Dataset | xr.DataArray,
        *,
        factor: int | None = None,
        members: int | None = None,
        steps: int | None = None,
        sampler: SamplerName | None = None,
        seed: int | torch.Generator = 0,
        tile: int | None = None,
        overlap: int | None = None,
        blend: Blend | None = "cosine",
        bbox: Sequence[float] | None = None,
        variables: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
        dims: Mapping[str, str] | None = None,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        batch_invariant: bool = False,
        progress: bool | None = None,
        condition: float | None = None,
        sampler_options: Mapping[str, float] | None = None,
        conserve: Literal["additive", "multiplicative"]
        | Mapping[str, Literal["additive", "multiplicative"] | None]
        | None = None,
    ) -> xr.Dataset:
        """Downscale ``ds`` to the model's fine grid.

        Parameters
        ----------
        ds : xarray.Dataset or xarray.DataArray
            Coarse input on a regular grid whose spacing is the model's coarse spacing, with the
            model's variables (and units), dims (time, y, x) or (y, x). Dask-backed input gives a
            dask-backed output (one block per time chunk; chunked spatial dims are rechunked to
            one spatial chunk); nothing runs before ``.compute()``.
        factor : int, optional
            Must equal the model's factor; default None: the model's.
        members : int, optional
            Ensemble size; default None: one sample, and the ``member`` dim is dropped.
        steps : int, optional
            Sampler steps; default None: the model's stored setting.
        sampler : {"ddim", "euler", "heun", "sde", "idff"}, optional
            Sampler; default None: the model's stored setting (it must suit the model's
            objective).
        seed : int or torch.Generator, default 0
            Integer seed; time step ``i`` (its position in this call) uses
            :func:`time_step_seed` ``(seed, i)``, so separate calls with one seed reuse the same
            noise. A ``torch.Generator`` gives one integer seed per call (drawn from it, and
            recorded as ``flexdownscale_seed``): successive calls get their own noise.
        tile, overlap : int, optional
            Tile side in fine cells (a multiple of the backbone's ``grid_multiple``, 16 for the
            built-in backbones, and of the factor; default 256 rounded up to such a multiple:
            256 for the factors 2, 4, 8 and 16, 288 for 3 and 6, 320 for 5, 336 for 7; the
            output's ``flexdownscale_tile`` records it) and overlap in fine cells
            (default about ``tile // 4``, rounded up so that the stride ``tile - overlap`` is a
            multiple of the factor). A field runs as one tile along a dimension no longer than
            ``tile`` (periodic halos included in that tile).
        blend : {"uniform", "cosine", "gaussian"} or None, default "cosine"
            ``"uniform"``, ``"cosine"`` or ``"gaussian"`` tile windows (``None``: the default,
            ``"cosine"``).
        bbox : sequence of float, optional
            ``(x_min, y_min, x_max, y_max)`` in the grid's units (longitudes in either
            convention, -180..180 or 0..360; ``x_min > x_max`` crosses the seam eastwards):
            downscale only the coarse cells whose centres lie inside, sampled with a halo of
            neighbouring cells that is cropped off (periodic axes wrap, see the guide).
        variables : sequence of str, optional
            Input variable names playing the model's variables, in the model's order.
        rename : mapping of str to str, optional
            Mapping ``{input name: model name}``.
        dims : mapping of str to str, optional
            Dimension-name override (``{"x": ..., "y": ..., "time": ...}``); default None:
            found from CF attributes and names.
        device : torch.device or str, optional
            Device of the network; default None: CUDA when available, else the CPU.
        batch_size : int, optional
            Tiles per network call (default None: on a CPU about 32768 fine cells per call, 1 to
            32 tiles; on CUDA from free memory). A call takes ``max(1, batch_size // tiles)``
            member rows (``tiles`` per field), and as many consecutive time steps as fill them
            with their members (``members=None`` on a small field: up to 32 steps per call).
            The random numbers do not depend on it; the network's float32 kernels round
            differently for different batch shapes, so outputs for two batch sizes agree to
            float32 rounding (about 1e-6 relative), not bit for bit, unless
            ``batch_invariant``. So do a time step downscaled alone and in a longer call.
        batch_invariant : bool, default False
            Run the network on one tile (and one time step) at a time, so that the output is
            bit-identical for any ``batch_size`` (which then sets the members per sampler call
            only) and any set of time steps. Slower: the network loses its batching (measured
            in docs/inference.md, "Reproducibility").
        progress : bool, optional
            Show a tqdm progress bar (default None: when more than 8 time steps run eagerly);
            where stderr is not a terminal (a log file, a pipe), a start line, a line at each
            quarter and an end line instead of the bar's frames. Dask-backed input shows none
            (``True`` warns): use ``dask.diagnostics.ProgressBar`` around the compute.
        condition : float, optional
            Physical condition of a conditioned model (e.g. the Reynolds number), in the units
            it was trained with; default None: read from the input's scalar coordinate or
            variable named by the model (``Downscaler.condition["name"]``), else its global
            attribute of that name, as training reads it (a global attribute that disagrees with
            the coordinate, as ``xr.concat`` leaves, warns). One call runs one value: an
            input holding several (e.g. a ``reynolds_number`` dimension) is a ``DataError`` that
            says to select one per call (``ds.sel(reynolds_number=1000)``).
        sampler_options : mapping of str to float, optional
            Options of the sampler (:data:`~flexdownscale.diffusion.SAMPLER_OPTIONS`): ``eta``
            for ``"ddim"``, ``delta`` for ``"sde"`` (Langevin strength, ``>= 0``; ``delta = 0``
            is the probability-flow ODE), ``g1``/``g2`` for ``"idff"``. Options not given are the
            model folder's stored sampler settings (``self.sampler``), not 0: the shipped
            ``"era5-t2m-x4"`` stores ``delta = 1`` and ``"kolmogorov-x8"`` ``delta = 0.5``, so
            ``sampler="sde"`` without ``delta`` adds Langevin noise with those strengths; pass
            ``sampler_options={"delta": 0}`` for the ODE. Values are numbers: a string or a
            bool (``{"delta": "0.5"}``) is a ``ConfigError``, as for ``steps`` and
            ``condition``.
        conserve : {"additive", "multiplicative"} or mapping, optional
            Make each member's area mean over every coarse cell equal the input's value there,
            ``degrade(out, factor) == ds`` (to float32 rounding), with the model's own
            ``"area_mean"`` degradation (area-weighted rows on latitude-longitude grids).
            Applied per member and time after the values are de-normalized and clipped at the
            variable's lower bound, on the assembled field of the cells returned (tiles, a
            ``bbox``, periodic axes and dask blocks give the same constraint).
            ``"additive"`` adds ``coarse - D(fine)`` to each cell's fine values (keeps the
            spread within a cell; a precipitation field can then go below 0);
            ``"multiplicative"`` scales them by ``coarse / D(fine)``, for fields of values
            ``>= 0`` (precipitation): a cell whose coarse value is 0 comes out 0 (dry stays
            dry), non-negative fields stay non-negative, and one fine value can become up to
            ``factor**2`` times the coarse value (when the rest of its cell is 0). A cell with
            a negative sampled or coarse value is not scaled (a small mean of values of both
            signs would magnify them) but gets the additive correction, with a
            ``FlexDownscaleWarning``: use ``"additive"`` for fields of both signs. So does a
            cell whose fine values are all 0 under a coarse value > 0 (the coarse value is
            spread evenly). A mapping ``{variable: mode or None}`` (the model's names) sets it per
            variable; the variables left out are not constrained. Default None: no constraint.
            Recorded as ``flexdownscale_conserve``. A ``ConfigError`` for a model whose
            degradation is not ``"area_mean"`` (``"gaussian"``, ``"strided"``), for which the
            constraint is not one of whole coarse cells.

        Returns
        -------
        xarray.Dataset
            Variables with dims (member, time, y, x) (``member`` only when ``members`` is
            given; ``time`` only when the input has it), on ``refine_grid(ds, factor)`` with CF
            bounds, the input variables' attrs and CF grid mapping (rebuilt from the model's
            ``grid.json`` when the input names one it does not hold; see docs/inference.md,
            "Output"), provenance attrs and a ``history`` line.

        Raises
        ------
        MissingVariableError, UnitsError, GridError, UnsupportedFactorError, ConfigError,
        DataError
            Before anything is computed (``DataError`` for NaNs: at compute time for lazy input).

        Warns
        -----
        ~flexdownscale.errors.SkillWarning
            When the run works but loses skill: the model trained on a periodic axis the input
            spans whole without ``periodic = "true"``; an axis that says ``periodic = "true"``
            but does not span the model's period (a window cut from a periodic box: it runs as
            not periodic); ``tile`` smaller than the training crops; a regional model on cells
            fewer than :data:`DOMAIN_SHARE_MIN` of which lie in
            its training domain; a condition outside the range it was trained on (see
            docs/inference.md, "Checks before any compute").
        ~flexdownscale.errors.FlexDownscaleWarning
            ``conserve="multiplicative"`` on a variable with negative values: the cells that
            have one are shifted (the additive correction), not scaled; once per call, naming the
            variable and the count (for lazy input at compute time, from the first block with
            such cells, counting that block's time steps). A variable naming a grid mapping
            that neither the input nor the model folder holds: the name is left out of its
            ``grid_mapping`` (never a dangling reference).
        """

        members, steps, tile, overlap, batch_size = _python_ints(
            members, steps, tile, overlap, batch_size
        )
        _check_mappings(rename, dims)
        if blend is None:  # as every other option: None is the default
            blend = "cosine"
        if blend not in get_args(Blend):
            raise ConfigError(
                f"blend = {blend!r} is not a valid option; expected 'uniform', 'cosine' or "
                "'gaussian'"
            )
        _check_factor(factor)
        if factor is not None and factor != self.factor:
            raise UnsupportedFactorError(
                f"factor = {factor!r} but model {self.name!r} downscales by {self.factor} only; "
                f"use factor={self.factor} or a model trained for x{factor}"
            )
        n_members = _member_count(members)
        seed = _resolve_seed(seed)
        name, steps, options = self._sampler_settings(sampler, steps, sampler_options)
        multiple = self._grid_multiple
        lattice = _lattice(self.factor, multiple)
        tile_size = self._default_tile if tile is None else tile
        if (
            isinstance(tile_size, bool)
            or not isinstance(tile_size, int)
            or tile_size < lattice
            or tile_size % lattice
        ):
            why = "" if lattice == multiple else f" ({multiple} and the factor {self.factor})"
            raise ConfigError(f"tile = {tile!r} must be a positive multiple of {lattice}{why}")
        ov = _tile_overlap(tile_size, overlap, self.factor)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(f"batch_size = {batch_size!r} must be a positive integer or None")
        _check_flag("batch_invariant", batch_invariant)
        if progress is not None:
            _check_flag("progress", progress)
        _resolve_device(device)  # an unknown or absent device fails now, not at compute time
        modes = _conserve_modes(conserve, self.variables, self.grid, self.name)

        if isinstance(bbox, str | bytes):
            raise ConfigError(
                f"bbox = {bbox!r}; expected four numbers (x_min, y_min, x_max, y_max), not a string"
            )
        if isinstance(ds, xr.DataArray):
            if ds.name is None and len(self.variables) == 1:
                ds = ds.rename(self.variables[0])
            if ds.name is None:
                raise MissingVariableError(
                    f"the DataArray has no name; name it after the model's variable "
                    f"(da.rename({self.variables[0]!r}))"
                )
            ds = _dataset_of(ds, ds.name, self.variables[0])
        if not isinstance(ds, xr.Dataset):
            raise NotXarrayError(not_xarray_message(ds))
        _refuse_empty_dataset(ds)
        ds = plain_arrays(ds, "ds")  # pint quantities: magnitudes, units as the attribute
        original_attrs = dict(ds.attrs)
        sel = _select_model_variables(ds, self.variables, variables, rename)
        _check_units(
            sel,
            {v: self.units.get(v, "") for v in self.variables},
            _input_names(self.variables, variables, rename),
        )
        _check_dtypes(sel, self.variables)
        condition_value = self._condition_value(ds, condition)
        spec = grid_spec(sel, dims=dims)
        trained = self._check_grid(spec)
        if trained is not None:  # a window of a periodic box that says it is periodic
            _refuse_cyclic_point(sel, spec, trained, self.factor)
            sel, spec = _ignore_foreign_period(sel, spec, trained, self.factor, self.name, dims)
        y, x, tdim = spec.y, spec.x, spec.time
        _check_time_not_member(spec)
        _check_no_extra_dims(sel, self.variables, spec)
        _check_output_names(sel, {"bnds", *(["member"] if members is not None else [])})
        # the axes found once: the grid calls below are told them instead of discovering them
        # again (cf_xarray's discovery: about 0.5 ms per axis and call)
        found = {"x": x, "y": y, **({"time": tdim} if tdim is not None else {})}
        norm = normalize_grid(sel, dims=found)
        # drop CF bounds of the input grid: the output gets the refined grid's bounds
        keep = {y, x, tdim}
        norm = norm.drop_vars([c for c in norm.coords if not set(norm[c].dims) <= keep])

        ys = np.asarray(norm[y].values, dtype=np.float64)
        xs = np.asarray(norm[x].values, dtype=np.float64)
        region = norm
        iy = slice(0, ys.size)
        ix = slice(0, xs.size)
        bbox_halo = 0
        lows = (float(ys[0]), float(xs[0]))  # where a bbox starts (y, x)
        cut = (False, False)  # (y, x): is the axis cut to the bbox?
        bbox_text = None  # the bbox as given, for provenance
        if bbox is not None:
            try:
                x_min, y_min, x_max, y_max = (float(b) for b in bbox)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"bbox = {bbox!r}; expected (x_min, y_min, x_max, y_max)"
                ) from err
            if not all(math.isfinite(b) for b in (x_min, y_min, x_max, y_max)):
                raise ConfigError(f"bbox = {tuple(bbox)} must be four finite numbers")
            bbox_text = ", ".join(map(_number_text, (x_min, y_min, x_max, y_max)))
            # e.g. (355, 50, 5, 54): across the prime meridian (or the dateline in -180..180);
            # on a regional grid only a box narrower than 180 degrees so read (a wider one is
            # more likely given reversed)
            if (
                x_min > x_max
                and spec.kind == "latlon"
                and (spec.periodic_x or x_max + 360.0 - x_min <= 180.0)
            ):
                x_max += 360.0
            if x_min > x_max or y_min > y_max:
                raise ConfigError(
                    f"bbox = {tuple(bbox)}: expected (x_min, y_min, x_max, y_max) with "
                    f"x_min <= x_max and y_min <= y_max"
                )
            if spec.kind == "latlon" and not spec.periodic_x:
                # a bbox in the other longitude convention (0..360 vs -180..180)
                x_min, x_max = _bbox_longitudes(x_min, x_max, xs)
            halo = max(2, math.ceil(ov / self.factor))
            axes = (
                (ys, y_min, y_max, spec.dy, spec.periodic_y),
                (xs, x_min, x_max, spec.dx, spec.periodic_x),
            )
            picks = [_bbox_axis(*axis, halo) for axis in axes]
            self._warn_small_bbox_halo(axes, picks, halo, ov)
            if any(p is None for p in picks):
                raise GridError(
                    f"bbox (x {x_min:g}..{x_max:g}, y {y_min:g}..{y_max:g}) contains no cell "
                    f"centre of the input grid, which spans x {xs[0]:g}..{xs[-1]:g}, "
                    f"y {ys[0]:g}..{ys[-1]:g}; give a bbox inside the domain"
                )
            (index_y, coords_y, iy, whole_y), (index_x, coords_x, ix, whole_x) = picks  # type: ignore[misc]
            lows = (y_min, x_min)
            region = norm.isel({y: index_y, x: index_x})
            # a periodic axis is read across its seam, under coordinates that continue it
            region = region.assign_coords(
                {y: region[y].copy(data=coords_y), x: region[x].copy(data=coords_x)}
            )
            # an axis read whole (perhaps rotated, in the bbox's convention) stays periodic
            cut = (not whole_y, not whole_x)
            for dim, is_cut in ((y, cut[0]), (x, cut[1])):
                if is_cut and "periodic" in region[dim].attrs:  # a part of the axis is not
                    attrs = {k: v for k, v in region[dim].attrs.items() if k != "periodic"}
                    region[dim].attrs = attrs
            bbox_halo = halo
        f = self.factor
        crop = (_fine_cells(iy, f), _fine_cells(ix, f))
        # refine the region (never a single cell), then crop to the bbox's cells
        first = region[self.variables[0]]
        region_grid = refine_grid(
            first, f, dims={k: v for k, v in found.items() if v in first.dims}
        )
        if bbox is not None:  # the full run's fine coordinates, bit for bit, cut to the region
            try:
                full_grid = refine_grid(
                    norm[self.variables[0]],
                    f,
                    dims={k: v for k, v in found.items() if v in first.dims},
                )
            except GridError:  # e.g. polar rows the region leaves out: its own refinement
                full_grid = None
            if full_grid is not None:
                region_grid = _full_grid_coordinates(
                    region_grid,
                    full_grid,
                    {y: (index_y, ys.size * abs(spec.dy)), x: (index_x, xs.size * abs(spec.dx))},
                    f,
                )
        fine_grid = region_grid
        for dim, cells, n, step in ((y, crop[0], ys.size, spec.dy), (x, crop[1], xs.size, spec.dx)):
            if isinstance(cells, slice):
                fine_grid = fine_grid.isel({dim: cells})
            else:  # a periodic axis run whole, cells across its seam
                low = lows[0] if dim == y else lows[1]
                fine_grid = _contiguous_crop(fine_grid, dim, cells, n * step, low)
        fine_region = spec.refine(f)
        ry_fine = np.asarray(region_grid[y].values)
        row_weights = (
            grid_row_weights(fine_region, ry_fine)
            if self.grid.get("upsample") == "conservative"
            else None
        )
        periodic = (spec.periodic_y and not cut[0], spec.periodic_x and not cut[1])
        conserve_params = None
        if modes is not None:  # the returned cells' coarse cells (whole) and fine row areas
            areas = grid_row_weights(fine_region, ry_fine)
            conserve_params = (modes, None if areas is None else areas[crop[0]], iy, ix)

        stacked = region.to_dataarray("variable").transpose(
            *([tdim] if tdim else []), "variable", y, x
        )
        if tdim is None:
            stacked = stacked.expand_dims("__time__")
        lazy = stacked.chunks is not None
        n_time = stacked.shape[0]
        if progress is None:
            progress = (not lazy) and n_time > 8
        elif progress and lazy:  # asked for, and nothing to show before .compute()
            warnings.warn(
                "progress=True shows nothing for dask-backed input: the result is lazy and the "
                "work runs at .compute() (or a write), one block at a time. Wrap that in "
                "`with dask.diagnostics.ProgressBar():` (or watch a dask.distributed dashboard), "
                "or pass eager data to see the sampling steps",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
        params = {
            "members": n_members,
            "seed": int(seed),
            "sampler": name,
            "sampler_options": tuple(sorted(options.items())),
            "steps": steps,
            "tile": tile_size,
            "overlap": ov,
            "blend": blend,
            "batch_size": batch_size,
            "batch_invariant": bool(batch_invariant),
            "device": None if device is None else str(device),
            "periodic": periodic,
            "crop": crop,
            "row_weights": row_weights,
            "origin": (
                (float(region[y].values[0]), float(spec.dy)),
                (float(region[x].values[0]), float(spec.dx)),
            ),
            "bbox_halo": bbox_halo,
            "far_token": [True] if lazy else None,  # one warning of far values per call
            "conserve": conserve_params,
            "progress": bool(progress) and not lazy,
            "phys": (
                None
                if condition_value is None
                else condition_value / float(self.condition["scale"])  # type: ignore[index]
            ),
        }
        _, _, plan = _tiling(
            (region.sizes[y] * f, region.sizes[x] * f),
            f,
            periodic,
            tile_size,
            ov,
            multiple=self._grid_multiple,
        )
        self._warn_small_tile(plan, tile_size)
        # time steps per sampler call, fixed for the whole call so that every block of a lazy
        # call groups its steps as an eager run does; on CUDA without a batch_size the tiles
        # per call come from the free memory when a block runs, so each block chooses its own
        run_device = _resolve_device(device)
        if batch_invariant:
            params["time_group"] = 1
        elif batch_size is not None or run_device.type != "cuda":
            per_call = batch_size or _auto_batch(run_device, plan.tile_shape, len(self.variables))
            params["time_group"] = _steps_per_call(per_call, len(plan), n_members, False)
        else:
            params["time_group"] = None
        if trained is not None:
            _warn_outside_domain(  # the cells asked for (a bbox's, without its halo)
                trained,
                np.asarray(region[y].values)[iy],
                np.asarray(region[x].values)[ix],
                (spec.y_units, spec.x_units),
                self.name,
                crs=_input_grid_mapping(sel, ds),
            )
        ny_out, nx_out = _cell_count(crop[0]), _cell_count(crop[1])
        n_var = len(self.variables)
        if lazy:
            import dask.array as dsa
            from dask.base import tokenize

            data = stacked.data.rechunk({1: -1, 2: -1, 3: -1})
            chunks = data.chunks[0]
            # the blocks run whole groups of time steps per sampler call (the eager run's
            # groups, so the output is the same bit for bit for any chunking): time chunks
            # whose edges are not multiples of the group run in blocks moved onto them, and
            # the output gets the input's time chunks back
            group = params["time_group"]
            blocks = chunks if group is None else _group_aligned_chunks(chunks, group)
            if blocks != chunks:
                data = data.rechunk({0: blocks})
            result = dsa.map_blocks(
                functools.partial(_run_block, self, params=params, warn_once=[True]),
                data,
                name="flexdownscale-" + tokenize(data.name, repr(params), self.name, id(self)),
                dtype=np.float32,
                chunks=(
                    (n_members,),
                    data.chunks[0],
                    (n_var,),
                    (ny_out,),
                    (nx_out,),
                ),
                new_axis=0,
                meta=np.empty((0, 0, 0, 0, 0), dtype=np.float32),
            )
            if blocks != chunks:
                result = result.rechunk({1: chunks})
        else:
            values = np.asarray(stacked.values)
            result = self._sample_block(values, start=0, params=params)

        coords: dict[Hashable, Any] = {c: fine_grid.coords[c] for c in fine_grid.coords}
        # scalar coordinates (a single field's time, height, ...) are kept as they are
        coords |= {c: region.coords[c] for c in region.coords if region[c].ndim == 0}
        if tdim is not None and tdim in region.coords:  # (a time dim without one gets none)
            coords[tdim] = region[tdim]
        # the ACDD extent of the output's cells (a bbox's, not the input's), on latitude /
        # longitude axes only (a rotated grid's is not known: its attributes are left out)
        extent = (
            cell_extent(fine_grid[y].values, fine_grid[x].values, spec.dy / f, spec.dx / f)
            if spec.kind == "latlon"
            else None
        )
        out_vars = {}
        for k, v in enumerate(self.variables):
            arr = result[:, :, k]
            vdims: tuple[Hashable, ...] = ("member", tdim or "__time__", y, x)
            transform = self.normalizer.stats[v].transform
            da = xr.DataArray(
                arr,
                dims=vdims,
                attrs=_output_attrs(sel[v].attrs, transform, factor=f, extent=extent),
            )
            if tdim is None:
                da = da.isel(__time__=0)
            if members is None:
                da = da.isel(member=0)
            out_vars[v] = da
        out = xr.Dataset(out_vars, coords=coords)
        out = _with_geographic_coordinates(out, ds, spec)  # a rotated grid's 2-D lat/lon
        out = _keep_grid_mapping(out, ds, sel, trained, spec, self.name)
        out = _drop_dangling_references(_keep_time_bounds(out, ds, tdim))
        if members is not None:
            member_attrs = _member_attrs(out.coords)
            out = out.assign_coords(member=("member", np.arange(n_members), member_attrs))
        attrs = _provenance_attrs(
            _refined_global_attrs(original_attrs, f, extent),
            action=f"downscaled x{f}",
            model=self.name,
            objective=self.objective.summary,
            sampler=name,
            options=options,
            steps=steps,
            members=members,
            seed=int(seed),
            batch_size=batch_size,
            device=run_device,
            extra={
                "flexdownscale_factor": f,
                "flexdownscale_tile": tile_size,
                # the setting (given, or the default resolved): with the tile it reproduces the
                # run, a bbox's halo included (sized from it); flexdownscale_tiles = 1 says that
                # no tiles overlapped
                "flexdownscale_overlap": ov,
                "flexdownscale_tiles": len(plan),
                "flexdownscale_blend": blend,
                "flexdownscale_batch_invariant": int(bool(batch_invariant)),
                # as given (x_min, y_min, x_max, y_max): passed back, it reproduces the run
                **({"flexdownscale_bbox": bbox_text} if bbox_text is not None else {}),
                **_conserve_attrs(modes, self.variables),
            },
            details=[f"bbox ({bbox_text})"] if bbox_text is not None else [],
        )
        out = self._record_condition(attrs, condition_value, out)
        out.attrs = attrs
        return _without_coordinate_fill(out)


def _without_coordinate_fill(out: xr.Dataset) -> xr.Dataset:
    """``out`` with ``_FillValue: None`` in the encoding of its floating coordinates and
    bounds, so that ``to_netcdf`` / ``to_zarr`` of a result write none (CF: they have no
    missing values; xarray writes ``_FillValue = NaN`` by default). Shallow copy: the input's
    variables, which the output may share, keep their encoding."""
    out = out.copy(deep=False)
    for name in coordinate_encoding(out):
        out.variables[name].encoding = {**out.variables[name].encoding, "_FillValue": None}
    return out


def _run_block(
    downscaler: Downscaler,
    a: np.ndarray,
    block_info: Any = None,
    *,
    params: Mapping[str, Any],
    warn_once: list[bool] | None = None,
) -> np.ndarray:
    """One dask block: (T, C, h, w) coarse values -> (M, T, C, H, W) samples (``warn_once``:
    the call's conserve-warning token, see :meth:`Downscaler._sample_block`)."""
    start = int(block_info[0]["array-location"][0][0]) if block_info else 0
    return downscaler._sample_block(np.asarray(a), start=start, params=params, warn_once=warn_once)


class Forecaster(_ModelFolderIO, _BackboneOnDevice, _PhysicalCondition):
    """A trained forecast model: member-wise autoregressive ensemble rollouts of a dataset.

    Parameters
    ----------
    model
        The backbone (built with ``ModelConfig(task="forecast", past_frames=P)``).
    diffusion
        The objective's :class:`~flexdownscale.config.DiffusionConfig` (or an ``Objective``).
    normalizer
        The training statistics.
    variables, units
        Variable names in channel order and their ``units``.
    past_frames
        Number of past frames the model takes (default: ``model.config.past_frames``).
    sampler
        Default sampler settings.
    name
        Model name recorded in the outputs' provenance.
    condition
        Physical-condition metadata, as for :class:`Downscaler`.
    grid
        The training grid metadata (``ForecastDataset.grid_metadata()``), kept in the folder
        written by :meth:`save_pretrained`.
    card
        Model card text written by :meth:`save_pretrained`.

    Examples
    --------
    No forecast model ships with the package: this one is a tiny untrained network (a trained
    one comes from :meth:`from_pretrained`). From the last two of two 6-hourly frames, two
    members roll out two leads, valid 6 and 12 hours after the last frame:

    >>> import numpy as np, pandas as pd, torch, xarray as xr
    >>> from flexdownscale.config import DiffusionConfig, ModelConfig
    >>> from flexdownscale.data import Normalizer, VariableStats
    >>> from flexdownscale.models import build_model
    >>> _ = torch.manual_seed(0)
    >>> net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2))
    >>> stats = Normalizer({"t2m": VariableStats(mean=280.0, std=5.0, units="K")})
    >>> model = Forecaster(net, DiffusionConfig(), normalizer=stats, variables=["t2m"],
    ...                    units={"t2m": "K"})
    >>> km = {"units": "km"}
    >>> ds = xr.Dataset(
    ...     {"t2m": (("time", "y", "x"), np.full((2, 16, 16), 280.0), {"units": "K"})},
    ...     coords={"time": pd.date_range("2020-01-01", periods=2, freq="6h"),
    ...             "y": ("y", np.arange(16.0), km), "x": ("x", np.arange(16.0), km)})
    >>> out = model(ds, lead_steps=2, members=2, steps=1, seed=0)
    >>> out["t2m"].dims, out["t2m"].shape
    (('member', 'lead', 'y', 'x'), (2, 2, 16, 16))
    >>> out["valid_time"].dt.strftime("%Y-%m-%d %H:%M").values.tolist()
    ['2020-01-01 12:00', '2020-01-01 18:00']
    """

    _task = "forecast"

    def _past_frames_of(self, ds: xr.Dataset, time: Hashable | None) -> xr.Dataset:
        """``ds`` at the times the forecast starts from (the latest ``past_frames`` along
        ``time``, by value), for reading the physical condition: a condition variable along
        time only has to hold one value there. ``ds`` itself when it has no such times."""
        if self.condition is None or time is None or time not in ds.dims:
            return ds
        if ds.sizes[time] <= self.past_frames:
            return ds
        if time in ds.coords:
            order = np.argsort(np.asarray(ds[time].values), kind="stable")
        else:
            order = np.arange(ds.sizes[time])
        return ds.isel({time: np.sort(order[-self.past_frames :])})

    def __init__(
        self,
        model: nn.Module,
        diffusion: DiffusionConfig | Objective,
        *,
        normalizer: Normalizer,
        variables: Sequence[str],
        units: Mapping[str, str],
        past_frames: int | None = None,
        sampler: SamplerConfig | None = None,
        name: str | None = None,
        condition: Mapping[str, Any] | None = None,
        grid: Mapping[str, Any] | None = None,
        card: str = "",
    ) -> None:
        if isinstance(model, ResidualModel):
            model = model.backbone
        self.backbone = model.eval()
        self.objective = self._init_folder_state(diffusion)
        self.normalizer = normalizer
        self.variables = tuple(variables)
        self.units = {v: str(units.get(v, "")) for v in self.variables}
        config = getattr(model, "config", None)
        self.past_frames = past_frames or (config.past_frames if config is not None else 1)
        self.sampler = sampler if sampler is not None else self.objective.sampler_defaults
        self.name = name or _UNNAMED
        self.grid = dict(grid or {})
        self.card = card
        self._set_condition(condition, model)
        self._check_normalizer()

    def _spacing_fix(self, steps: np.ndarray, value: float, units: str, dim: str) -> str:
        """How to give frames ``value`` apart from an input whose successive spacings are
        ``steps``: every k-th frame (ending at the last) when the input is evenly spaced by a
        whole fraction of the model's step; otherwise that no selection can."""
        step = _duration(value, units)
        other = "use a model trained on your time step"
        spacing = _even_spacing(steps)
        if spacing is not None:
            ratio = value / spacing
            k = _whole_stride(steps, value)
            if k is not None:
                n = (self.past_frames - 1) * k + 1  # the frames k apart end at the last
                return (
                    f"the input steps by {_duration(spacing, units)}, so take one frame in {k}, "
                    f"ending at the last: ds.isel({dim}=slice(-{n}, None, {k})) (or "
                    f"ds.isel({dim}=slice((ds.sizes[{dim!r}] - 1) % {k}, None, {k})) to keep all "
                    f"the frames {step} apart); or {other}"
                )
            if ratio < 1:
                return (
                    f"the input steps by {_duration(spacing, units)}, farther apart than the "
                    f"model's {step}: no selection of its frames gives {step} apart (filling "
                    f"frames in by interpolation in time would invent them); give frames {step} "
                    f"apart, or {other}"
                )
        return f"give frames {step} apart (a whole number of the input's steps), or {other}"

    def _frame_stride(self, time: xr.DataArray) -> tuple[int, str]:
        """``(k, words)`` when the input's ``time`` coordinate steps evenly by a whole fraction
        ``1 / k`` (k > 1) of the model's recorded step: its frames ``k`` apart are the model's
        (the command line takes every k-th, ending at the last); ``(1, "")`` otherwise (the
        input already at the model's step, no step recorded, uneven or coarser spacing: the
        checks of :meth:`__call__` then apply as they are)."""
        recorded = _training_time_step(self.grid)
        if recorded is None:
            return 1, ""
        value, units = recorded
        steps, found_units = _time_steps(np.sort(np.asarray(time.values)), time.attrs)
        k = _whole_stride(steps, value) if found_units == units else None
        if k is None:
            return 1, ""
        spacing = float(steps[-1])
        return k, (
            f"the input steps by {_duration(spacing, units)} and model {self.name!r} by "
            f"{_duration(value, units)}: its past frames are one time step of the input in {k}"
        )

    def _check_time_step(self, time: xr.DataArray, stamped: bool) -> float | None:
        """The model's step (``grid.json``'s ``time_step``, in :func:`_time_steps`' units) when
        it applies to the input's sorted ``time`` coordinate; ``None`` when the folder does not
        record it or the input's time has no coordinate.

        Raises :class:`DataError` when the past frames the model sees are spaced otherwise: the
        network learned to step from frames that far apart, and ``valid_time`` would be wrong.
        """
        recorded = _training_time_step(self.grid)
        if recorded is None or not stamped:
            return None
        value, units = recorded
        steps, found_units = _time_steps(np.asarray(time.values), time.attrs)
        if found_units != units:
            warnings.warn(
                f"model {self.name!r} steps by {_duration(value, units)} (its grid.json) but the "
                f"input's {time.name!r} is in {found_units!r}, which cannot be compared: its "
                "spacing is not checked and valid_time steps by the input's last step",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
            return None
        past = steps[len(steps) - (self.past_frames - 1) :] if self.past_frames > 1 else steps[:0]
        off = past[~np.isclose(past, value, rtol=1e-3, atol=0.0)]
        if off.size:
            apart = ", ".join(_duration(float(v), units) for v in past)
            raise DataError(
                f"model {self.name!r} was trained to step {_duration(value, units)} at a time "
                f"(its grid.json), from {self.past_frames} past frames that far apart, but the "
                f"input's last {self.past_frames} {time.name!r} values are {apart} apart; "
                f"{self._spacing_fix(steps, value, units, str(time.name))}"
            )
        return value

    def __repr__(self) -> str:
        return (
            f"Forecaster({self.name!r}, variables={list(self.variables)}, "
            f"past_frames={self.past_frames}, objective={self.objective!r})"
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str]) -> Forecaster:
        """Load a forecast model folder (checked by :func:`flexdownscale.hub.load_model_folder`).

        Parameters
        ----------
        name_or_path : str or os.PathLike
            Local model folder, shipped model name or Hugging Face Hub id of a ``"forecast"``
            model.

        Returns
        -------
        Forecaster
            The model, ready to call, on the CPU.

        Raises
        ------
        ConfigError
            When the folder holds a super-resolution model (use :class:`Downscaler`).
        ModelFolderError
            When ``name_or_path`` is no path, name or Hub id (``None``, a number; a loaded
            :class:`Downscaler` is told to downscale), or the folder's files are missing,
            modified or of an unknown format.
        """
        from .hub import load_model_folder

        problem = _model_reference_error(
            name_or_path, "forecast", loaded=False, argument="name_or_path"
        )
        if problem is not None:
            raise problem
        folder = load_model_folder(name_or_path)
        if folder.task != "forecast":
            raise ConfigError(
                f"model {str(name_or_path)!r} is a {folder.task!r} model; use Downscaler or "
                "ds.flex.downscale for super-resolution models"
            )
        out = cls(
            _backbone_from_folder(folder),
            folder.diffusion,
            normalizer=Normalizer.from_dict(folder.normalization),
            variables=folder.variables,
            units=folder.units,
            past_frames=folder.model.past_frames,
            sampler=folder.sampler,
            name=_model_label(name_or_path, folder.path),
            condition=folder.condition,
            grid=folder.grid,
            card=folder.card,
        )
        out._adopt_folder(folder)
        return out

    @keyword_hints
    def __call__(
        self,
        ds: xr.Dataset | xr.DataArray,
        *,
        lead_steps: int,
        members: int | None = None,
        steps: int | None = None,
        sampler: SamplerName | None = None,
        seed: int | torch.Generator = 0,
        variables: Sequence[str] | str | None = None,
        rename: Mapping[str, str] | None = None,
        dims: Mapping[str, str] | None = None,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        batch_invariant: bool = False,
        sampler_options: Mapping[str, float] | None = None,
        condition: float | None = None,
        progress: bool | None = None,
    ) -> xr.Dataset:
        """Forecast ``lead_steps`` steps from the last ``past_frames`` time steps of ``ds``.

        ``sampler``, ``steps``, ``sampler_options``, ``variables``, ``rename`` and
        ``condition`` are as for :meth:`Downscaler.__call__` (``None``: the model's stored
        settings; the variables found by name; the condition read from the input).
        ``batch_size`` is the number of members per network call (``None``: all on a GPU; on a
        CPU as many as keep a call under
        :data:`~flexdownscale.diffusion.samplers.CPU_CELLS_PER_CALL` fine cells, one at least);
        ``batch_invariant=True`` runs the network on one member at a time, so that the output
        is bit-identical for any ``batch_size``.
        ``progress`` shows a tqdm progress bar over the leads (``None``: when
        ``lead_steps`` is more than 8), or a few plain lines where stderr is not a terminal.

        Every member feeds back its own state (:func:`flexdownscale.diffusion.rollout`).
        Lead ``l`` is sampled with a generator seeded from ``(seed, l)`` and member ``m`` draws
        from its ``m``-th stream, so member ``m`` is the same for any ``members > m`` (bit for
        bit with ``batch_invariant=True``, else to float32 rounding) and the first ``k`` leads
        do not depend on ``lead_steps``. ``seed`` is an integer (default 0) or a
        ``torch.Generator``, which gives one integer seed per call (see
        :meth:`Downscaler.__call__`).

        The input must be on the model's training grid when ``grid`` records one: the same kind
        of grid (and axis units on a projected grid) and the same spacing, else
        :class:`~flexdownscale.errors.GridError` (as for :class:`Downscaler`, without the
        factor).

        Parameters
        ----------
        ds : xarray.Dataset or xarray.DataArray
            Input on the model's grid with the model's variables (and units) and dims
            (time, y, x), at least ``past_frames`` time steps; the last ``past_frames`` are
            the initial state. A DataArray is used as the variable it is named after (the
            model's first variable when unnamed).
        lead_steps : int
            Number of steps to forecast (positive; required).
        members : int, optional
            Ensemble size; default None: one sample, and the ``member`` dim is dropped.
        steps : int, optional
            Sampler steps per lead; default None: the model's stored setting.
        sampler : {"ddim", "euler", "heun", "sde", "idff"}, optional
            Sampler; default None: the model's stored setting (it must suit the model's
            objective).
        seed : int or torch.Generator, default 0
            Seed of the call (lead ``l`` uses a generator seeded from ``(seed, l)``); a
            generator gives one integer seed per call.
        variables : str or sequence of str, optional
            Input variable names playing the model's variables, in the model's order.
        rename : mapping of str to str, optional
            ``{input name: model name}``.
        dims : mapping of str to str, optional
            Dimension-name override (``{"x": ..., "y": ..., "time": ...}``); default None:
            found from CF attributes and names.
        device : torch.device or str, optional
            Device of the network; default None: CUDA when available, else the CPU.
        batch_size : int, optional
            Members per network call; default None: all members in one call on a GPU, on a
            CPU as many as keep a call under
            :data:`~flexdownscale.diffusion.samplers.CPU_CELLS_PER_CALL` fine cells.
        batch_invariant : bool, default False
            Run the network on one member at a time (bit-identical output for any
            ``batch_size``; slower).
        sampler_options : mapping of str to float, optional
            Options of the sampler, as for :meth:`Downscaler.__call__`; options not given are
            the model folder's stored settings.
        condition : float, optional
            Physical condition of a conditioned model in its training units; default None:
            read from the input as :meth:`Downscaler.__call__` reads it (its scalar coordinate
            or variable named by the model, else its global attribute).
        progress : bool, optional
            Show a tqdm progress bar over the leads; default None: when ``lead_steps > 8``.
            Where stderr is not a terminal (a log file), a few plain lines instead.

        Warns
        -----
        ~flexdownscale.errors.SkillWarning
            As :meth:`Downscaler.__call__`: the model trained on a periodic axis the input spans
            whole without ``periodic = "true"``; an axis that says ``periodic = "true"`` but
            does not span the model's period (it runs as not periodic); a regional model on
            cells fewer than
            :data:`DOMAIN_SHARE_MIN` of which lie in its training domain; a condition outside
            its training range.
        ~flexdownscale.errors.FlexDownscaleWarning
            The input's last time steps are unequal (``valid_time`` assumes the last one); a
            grid mapping neither the input nor the model folder holds (left out, as
            :meth:`Downscaler.__call__` does).

        Returns
        -------
        xarray.Dataset
            Variables with dims (member, lead, y, x) (``member`` dropped when ``members=None``)
            on the input grid with CF bounds (and the input's grid mapping), the scalar
            ``forecast_reference_time`` (the last input time; the input is put in time order
            first), a ``valid_time`` coordinate along ``lead`` (reference time plus ``lead``
            times the model's time step, ``time_step`` in ``grid.json``; for a folder that does
            not record it, the input's last time step, and absent for a single input time),
            both with the input time's ``units`` and ``calendar`` (attributes of a
            numeric time axis, encoding of a decoded one), and provenance attrs.
        """
        from .diffusion import rollout

        if isinstance(ds, xr.DataArray):
            name = ds.name if ds.name is not None else self.variables[0]
            ds = _dataset_of(ds, name, self.variables[0])
        if not isinstance(ds, xr.Dataset):
            raise NotXarrayError(not_xarray_message(ds))
        _refuse_empty_dataset(ds, "forecast", self.variables[0])
        ds = plain_arrays(ds, "ds")  # pint quantities: magnitudes, units as the attribute
        lead_steps, members, steps, batch_size = _python_ints(
            lead_steps, members, steps, batch_size
        )
        _check_mappings(rename, dims)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(f"batch_size = {batch_size!r} must be a positive integer or None")
        seed = _resolve_seed(seed)
        _check_flag("batch_invariant", batch_invariant)
        if progress is not None:
            _check_flag("progress", progress)
        if isinstance(lead_steps, bool) or not isinstance(lead_steps, int) or lead_steps < 1:
            raise ConfigError(f"lead_steps = {lead_steps!r} must be a positive integer")
        _member_count(members)  # checked before any work (0 members divided by zero)
        name, n_steps, options = self._sampler_settings(sampler, steps, sampler_options)
        sel = _select_model_variables(ds, self.variables, variables, rename)
        _check_units(
            sel,
            {v: self.units.get(v, "") for v in self.variables},
            _input_names(self.variables, variables, rename),
        )
        _check_dtypes(sel, self.variables)
        spec = grid_spec(sel, dims=dims)
        _check_time_not_member(spec, forecast=True)
        condition_value = self._condition_value(self._past_frames_of(ds, spec.time), condition)
        trained = _training_grid(self.grid)
        if trained is not None:  # a model without grid metadata takes any grid
            _check_model_grid(spec, trained, 0, self.name)
            _warn_periodic_attribute(spec, trained, 0, self.name)
            _refuse_cyclic_point(sel, spec, trained, 0)
            sel, spec = _ignore_foreign_period(sel, spec, trained, 0, self.name, dims)
            _warn_outside_domain(
                trained,
                np.asarray(sel[spec.y].values),
                np.asarray(sel[spec.x].values),
                (spec.y_units, spec.x_units),
                self.name,
                fix=f"forecast the training region only (select it: ds.sel({spec.y}=..., "
                f"{spec.x}=...))",
                crs=_input_grid_mapping(sel, ds),
            )
        if spec.time is None or sel.sizes[spec.time] < self.past_frames:
            frames = f"{self.past_frames} past frame{'s' if self.past_frames != 1 else ''}"
            if spec.time is None:
                found = "the input has no time dimension (a single field)"
                where = " along a time dim (not named 'time': dims={'time': NAME})"
            else:
                n = sel.sizes[spec.time]
                found = f"the input's {spec.time!r} has {n} time step{'s' if n != 1 else ''}"
                where = ""
            raise DataError(
                f"model {self.name!r} forecasts from its last {frames} but {found}; give at "
                f"least the {self.past_frames} time steps up to the forecast start{where}"
            )
        _check_no_extra_dims(sel, self.variables, spec, forecast=True)
        _check_output_names(sel, {"member"} if members is not None else set())
        norm = normalize_grid(sel, dims=dims)
        times = norm[spec.time].values
        if times.size > 1:
            order = np.argsort(times, kind="stable")
            if np.unique(times).size < times.size:
                raise DataError(
                    f"the input's {spec.time!r} has repeated values; the past frames must be "
                    "distinct times (drop the duplicates first)"
                )
            norm = norm.isel({spec.time: order})  # the latest frames last, whatever the order
        # a time dim without a coordinate has positions only: no reference or valid times
        stamped = spec.time in sel.coords
        model_step = self._check_time_step(norm[spec.time], stamped)
        past = norm.isel({spec.time: slice(-self.past_frames, None)})
        values = past.to_dataarray("variable").transpose(spec.time, "variable", spec.y, spec.x)
        raw = np.asarray(values.values)
        if not np.isfinite(raw).all():
            what = "NaN" if np.isnan(raw).any() else "infinite values"
            t, k = np.argwhere(~np.isfinite(raw))[0][:2]
            raise DataError(
                f"the past frames contain {what} ({int((~np.isfinite(raw)).sum())} in all; the "
                f"first in {self.variables[int(k)]!r} at {spec.time} = "
                f"{past[spec.time].values[int(t)]}); fill them first (infinite values: mask "
                "them with ds.where(np.isfinite(ds)))"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            z = self.normalizer.transform_array(raw.astype(np.float64), variables=self.variables)
        if not np.isfinite(z).all():
            raise DataError(
                "the past frames hold values outside what the model's normalization accepts "
                "(a fill value that was not decoded?); mask them (ds.where(...)) and fill them"
            )

        def position(index: np.ndarray) -> str:
            t, _, row, col = (int(i) for i in index)
            return (
                f"{spec.time} = {past[spec.time].values[t]}, {spec.y} = "
                f"{past[spec.y].values[row]}, {spec.x} = {past[spec.x].values[col]}"
            )

        _warn_far_from_training(z, raw, self.normalizer, self.variables, position, None)
        # Per axis, as in the Downscaler: a periodic axis stays exact in the sampler and the
        # network sees it with wrapped-around halos (TiledDenoiser's wrap, rebuilt from the state
        # at every network call); a non-periodic one is reflect-padded at its end to a multiple
        # of the backbone's grid_multiple (16 built in). Those padding cells are re-imposed from the field at every lead (the sample is
        # cropped and padded again before it is fed back), so each lead's input is built as the
        # first one's and the unphysical padding cells never evolve on their own.
        h, w = z.shape[-2:]
        wrap, end_pad, layout = _tiling(
            (h, w),
            1,
            (spec.periodic_y, spec.periodic_x),
            _round_up(max(h, w), self._grid_multiple),
            0,
            "uniform",
            self._grid_multiple,
        )
        rows, cols = (
            np.pad(np.arange(n), (0, pad), mode="reflect") for n, pad in zip((h, w), end_pad)
        )
        z = z[..., rows, :][..., cols]
        dev = _resolve_device(device)
        dtype = next(self.backbone.parameters()).dtype
        frames = torch.from_numpy(np.ascontiguousarray(z.reshape(1, -1, *z.shape[-2:])))
        frames = frames.to(dev, dtype)
        n_members = _member_count(members)
        net = TiledDenoiser(
            self._backbone_on(dev),
            layout,
            tile_batch=1 if batch_invariant else max(1, batch_size or n_members),
            wrap=wrap,
        )
        model = ResidualModel(net, task="forecast", past_frames=self.past_frames)
        index_rows = torch.as_tensor(rows, device=dev)
        index_cols = torch.as_tensor(cols, device=dev)

        # a member's next input is clipped at the variables' lower bounds (normalized), as its
        # output is (:func:`_physical_values`); -inf where a variable has none
        bounds = self.normalizer.lower_bounds(self.variables)
        floor = (
            torch.from_numpy(
                self.normalizer.transform_array(bounds[:, None, None], variables=self.variables)
            ).to(dev, dtype)
            if np.isfinite(bounds).any()
            else None
        )

        def feed_back(sample: Tensor) -> Tensor:
            if floor is not None:
                sample = torch.maximum(sample, floor.to(sample.dtype))
            if any(end_pad):  # the field's own cells (rows/cols index them only), padded again
                sample = sample.index_select(-2, index_rows).index_select(-1, index_cols)
            return sample

        bar = None
        if progress or (progress is None and lead_steps > 8):
            from ._output import progress_bar  # a bar on a terminal, a few lines in a log file

            bar = progress_bar(lead_steps, "forecasting", "lead", leave=False)
        try:
            with torch.no_grad():
                out = rollout(
                    model,
                    self.objective,
                    frames,
                    lead_steps=lead_steps,
                    members=n_members,
                    sampler=name,
                    steps=n_steps,
                    generator=int(seed),
                    batch_size=1 if batch_invariant else batch_size,
                    feedback=feed_back if floor is not None or any(end_pad) else None,
                    phys=(
                        None
                        if condition_value is None or self.condition is None
                        else torch.full(
                            (1,), condition_value / float(self.condition["scale"]), device=dev
                        )
                    ),
                    on_lead=None if bar is None else lambda _lead: bar.update(),
                    **options,
                )
        finally:
            if bar is not None:
                bar.close()
        # physical float32 values a lead and a variable at a time (leadwise): the rollout's
        # output in float64 and the inverse transform's temporaries took 6x the output
        leadwise = _leadwise_physical(self.normalizer, out[0, :, :, :, :h, :w], self.variables)
        del out
        times = norm[spec.time].values
        if model_step is not None:  # the model's own step (grid.json), in the input's terms
            step = _step_like(model_step, times, sel[spec.time].attrs)
        else:  # not recorded: the input's last step
            step = times[-1] - times[-2] if times.size > 1 and stamped else None
            past_times = times[-(self.past_frames + 1) :]
            if stamped and past_times.size > 2 and np.unique(np.diff(past_times)).size > 1:
                warnings.warn(
                    f"the input's last time steps are unequal ({np.diff(past_times)}); "
                    f"valid_time assumes the last one ({step}) for every lead (model "
                    f"{self.name!r} does not record the time step it was trained on)",
                    FlexDownscaleWarning,
                    stacklevel=user_stacklevel(),
                )
        coords: dict[Hashable, Any] = {spec.y: norm[spec.y], spec.x: norm[spec.x]}
        coords["lead"] = (
            "lead",
            np.arange(1, lead_steps + 1),
            {
                "long_name": _lead_long_name(
                    model_step, times if stamped else None, sel[spec.time]
                ),
                "units": "1",
            },
        )
        # the initial time (the last input frame); valid times when the input's step is known.
        # Both are in the input's time units: a numeric time axis carries them (and its
        # calendar) in attrs, which are copied; a decoded one (datetime64, cftime) in its
        # encoding, which is copied so that a file written keeps the input's units
        cf_attrs, cf_encoding = _time_units(sel[spec.time]) if stamped else ({}, {})
        # CF standard names only for CF times: decoded ones, or numbers in "<unit> since <date>"
        # (a time in "1", as the Kolmogorov file's, is a step count, not a CF time)
        cf_time = times.dtype.kind in "MO" or " since " in str(cf_attrs.get("units", ""))
        if stamped:
            coords["forecast_reference_time"] = xr.Variable(
                (),
                times[-1],
                {**({"standard_name": "forecast_reference_time"} if cf_time else {}), **cf_attrs},
                encoding=dict(cf_encoding),
            )
        if step is not None:
            coords["valid_time"] = xr.Variable(
                "lead",
                times[-1] + step * np.arange(1, lead_steps + 1),
                {
                    **({"standard_name": "time"} if cf_time else {}),
                    "long_name": "valid time",
                    **cf_attrs,
                },
                encoding=dict(cf_encoding),
            )
        if members is not None:
            coords["member"] = ("member", np.arange(n_members), _member_attrs(coords))
        data = {}
        for k, v in enumerate(self.variables):
            da = xr.DataArray(
                leadwise[k],
                dims=("member", "lead", spec.y, spec.x),
                attrs=_output_attrs(sel[v].attrs, self.normalizer.stats[v].transform),
            )
            data[v] = da if members is not None else da.isel(member=0, drop=True)
        # CF bounds of the grid, as on a Downscaler's output
        result = add_bounds(xr.Dataset(data, coords=coords), dims={"x": spec.x, "y": spec.y})
        result = _keep_grid_mapping(result, ds, sel, trained, spec, self.name)
        result = _drop_dangling_references(result)
        result.attrs = _provenance_attrs(
            ds.attrs,
            action=f"forecast {lead_steps} steps ahead",
            model=self.name,
            objective=self.objective.summary,
            sampler=name,
            options=options,
            steps=n_steps,
            members=members,
            seed=int(seed),
            batch_size=batch_size,
            device=dev,
            extra={
                "flexdownscale_lead_steps": lead_steps,
                "flexdownscale_batch_invariant": int(bool(batch_invariant)),
            },
        )
        attrs = dict(result.attrs)
        result = self._record_condition(attrs, condition_value, result)
        result.attrs = attrs
        return _without_coordinate_fill(result)
