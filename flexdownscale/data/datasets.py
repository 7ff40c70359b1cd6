"""Torch datasets over xarray (netCDF, zarr, in-memory) and HDF5 fields, read lazily.

Two datasets share one reader:

:class:`SuperResolutionDataset`
    Items are dicts of float32 tensors::

        fine    (C, H, W)            the fine field (normalized)
        base    (C, H, W)            up(normalize(degrade(fine))): the coarse field upsampled
        cond    (C, H, W)            the task input: the same tensor as ``base``
        coarse  (C, H / f, W / f)    normalize(degrade(fine))
        phys    ()                   the scalar condition (only when ``condition`` is set)
        index   int                  the item index

    ``C`` is the number of variables (channels, in the order of ``variables``), ``H = W =
    crop_size`` (or the whole field trimmed to a multiple of ``factor`` with ``crop="full"``).
    The degradation runs on physical values, then the coarse field is normalized and upsampled in
    normalized space, as the inference pipeline does with a user's coarse field. Crops start on
    multiples of ``factor``; the coarse and base fields are computed on the crop plus a halo (of
    wrapped cells on periodic axes), so they equal crops of the whole-field computation.

:class:`ForecastDataset`
    Items::

        fine    (C, H, W)                   the frame ``lead`` steps after the current one
        base    (C, H, W)                   the current frame
        cond    (past_frames * C, H, W)     the past frames, oldest first, the current one last
        phys    ()                          optional scalar condition
        index   int

Sources are netCDF / zarr files (opened with xarray, never loaded: each item reads only its
window), in-memory ``xr.Dataset`` objects, or HDF5 files in the reference layouts: a dataset
``fields`` or ``w`` of shape (T, H, W) or (T, C, H, W) (channels named ``fields`` or
``fields_0``, ``fields_1``, ...; the sample dimension is ``time``; a scalar condition can be a
file or dataset attribute). File handles are opened per process, so the datasets are safe with
``DataLoader(num_workers > 0)``.

Splits select labels along ``split_dim`` (a dimension such as ``time`` or ``trajectory``, or
``"file"``): two entries are an inclusive range of labels (``["2019-03-01", "2019-03-17"]``), any
other number of entries is a list of labels (``[3]``; positions when the dimension has no
coordinate). An empty ``train`` selection means everything not in validation or test. Splits that
overlap raise :class:`~flexdownscale.errors.DataError`. For forecasting along a split time axis,
every frame of a window lies in the split.

NaNs never reach the training tensors silently. When a split opens, one pass over its
variables (dask reductions, in the same pass as the normalizer fit when the statistics are
fitted on this split) finds the fields (samples: one time, of one trajectory or level, ...)
that hold NaN where the items read: ``nan_fields="error"`` (default) raises
:class:`~flexdownscale.errors.DataError` naming the variable, the split, how many fields and
the first few (when every field holds NaN, the same pass tells a fixed mask, NaN in the same
cells of each, from NaNs that move, and gives fixes that work for each: cut the grid to the
unmasked region, or fill); ``nan_fields="drop"`` leaves them out of the split
(``dropped_fields`` lists them, :meth:`SuperResolutionDataset.dropped_summary` says it in words; a forecast window is left
out when any of its frames is, and ``ForecastDataset.dropped_windows`` counts those windows);
``nan_fields=None`` skips the pass (building the dataset reads no data but the few fields the
periodic-edge check below reads). The same pass refuses
values a log1p transform cannot take (<= -1). As a last guard, an item whose window (crop plus
halo, or the frames of a forecast window) holds NaN, or values <= -1 under log1p, raises
:class:`~flexdownscale.errors.DataError` naming the variable, the field's labels (e.g. the
time) and the count.

Crops are reproducible: the crop of item ``i`` at epoch ``e`` comes from
``numpy.random.default_rng([seed, e, i])``; call :meth:`SuperResolutionDataset.set_epoch` (or
the forecast dataset's) at every epoch. ``crop="fixed"`` draws the windows the same way at
epoch 0 and keeps them at every epoch (validation with several crops per field: the same
windows at every evaluation). On a periodic axis (a global longitude, the doubly
periodic Kolmogorov box) random crops start anywhere, the window wrapping around the seam, so
every cell is sampled as often; on other axes they stay inside the field. An axis that says it is
periodic (``periodic = "true"``) but whose opposite edges are not neighbours (a window cut from a
periodic field keeps the attribute; checked on up to four fields of each file) is trained as
non-periodic, with a warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import glob
import itertools
import math
import os
import shlex
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import dask
import numpy as np
import pandas as pd
import torch
import xarray as xr

from .._duck import dataset_of
from .._input_files import check_input_file
from .._inputs import is_store, netcdf_lock, one_line, open_netcdf
from .._keywords import keyword_hints
from .._links import DOCS_INFERENCE
from .._packing import PACKING_ATTRS
from .._stack import user_stacklevel
from ..config import DataConfig, crop_multiple, crop_size_problem
from ..errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    GridError,
    MissingVariableError,
    ShapeError,
    UnitsError,
    UnsupportedFactorError,
)
from ..units import compare_units
from .degrade import Degradation, Upsampling, degrade_array, grid_row_weights, upsample_array
from .grid import (
    GridSpec,
    _circles_the_globe,
    _duration,
    _time_steps,
    check_decoded,
    grid_spec,
    normalize_grid,
)
from .io import group_advice, require_zarr, store_groups, zarr_consolidated
from .normalize import (
    Normalizer,
    Transform,
    _fill_advice,
    _FitPlan,
    _inf_advice,
    _no_log1p_hint,
    auto_transform,
    far_fills,
)

__all__ = [
    "ForecastDataset",
    "SuperResolutionDataset",
    "from_config",
    "split_positions",
]

Split = Literal["train", "validation", "test"]
Task = Literal["superres", "forecast"]
Crop = Literal["random", "center", "fixed", "full"]
Format = Literal["auto", "xarray", "hdf5"]
NanFields = Literal["error", "drop"]

#: How many field labels a NaN message or report lists before "and N more".
_SHOWN = 5

_H5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5"}
_H5_LAYOUTS = ("fields", "w")


#: Set while :func:`from_config` builds a dataset from a training configuration's ``[data]``:
#: messages then name the TOML keys (``data.variables``) instead of the keyword arguments.
_FROM_CONFIG: contextvars.ContextVar[bool] = contextvars.ContextVar("_FROM_CONFIG", default=False)


def _setting(key: str, argument: str) -> str:
    """How a message names a setting: the ``[data]`` key ``data.<key>`` (with the
    :class:`DataConfig` attribute) for a dataset built by :func:`from_config`, else the
    keyword ``argument`` the caller passed."""
    if _FROM_CONFIG.get():
        return f"data.{key} (DataConfig.{key})"
    return argument


def _crop_fit_fix(side: int, factor: int | None) -> str:
    """How to choose a training crop for a field whose usable part spans ``side`` cells: the
    largest crop that fits and is a multiple of what crops must be (of 16 and of ``factor`` for
    a super-resolution dataset of :func:`from_config`, of ``factor`` otherwise; of 16 for a
    forecast dataset, ``factor=None``, of :func:`from_config`, any size otherwise), or, when
    none fits, why not and what to change."""
    in_config = _FROM_CONFIG.get()
    key = _setting("crop_size", "crop_size")
    if factor is None:  # forecast: whole fine fields, no coarse cells
        if not in_config:
            return f"expected {key} <= {side}, or crop_size=None for whole fields"
        multiple, rule = 16, "a multiple of 16"
    else:
        multiple = crop_multiple(factor) if in_config else factor
        rule = (
            f"a multiple of 16 and of factor = {factor}"
            if in_config and multiple != 16
            else ("a multiple of 16" if in_config else f"a multiple of factor = {factor}")
        )
    largest = side // multiple * multiple
    if largest >= multiple:
        return f"expected {key} <= {largest} (the largest crop that fits and is {rule})"
    if factor is None:
        return (
            f"no crop fits: a crop must be {rule} ({multiple} at least) and this grid gives at "
            f"most {side}; use data on a larger grid"
        )
    other = (
        "a factor whose crops are multiples of 16 (2, 4, 8 or 16)"
        if in_config
        else "a smaller factor"
    )
    return (
        f"no crop fits: a crop must be {rule} ({multiple} at least) and whole coarse cells of "
        f"this grid give at most {side}; use {other}, or data on a larger grid"
    )


def _check_option(name: str, value: Any, options: Any) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in allowed)}"
        )


class _Entry(NamedTuple):
    """The fields one source gives a split: its sample grid (positions per sample dim), the
    flat indices into it that are kept (``None``: every one) and the time dim of forecasts."""

    k: int
    grid: list[np.ndarray]
    keep: np.ndarray | None = None
    tdim: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod([g.size for g in self.grid])) if self.keep is None else self.keep.size


def _runs(idx: np.ndarray) -> list[tuple[int, slice]]:
    """Split an index array into runs of consecutive indices: (output offset, source slice)."""
    if idx.size == 0:
        return []
    breaks = np.nonzero(np.diff(idx) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [idx.size]])
    return [(int(a), slice(int(idx[a]), int(idx[b - 1]) + 1)) for a, b in zip(starts, stops)]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


class _Source:
    """A file (or in-memory dataset) seen as channels x sample dims x (y, x)."""

    label: str
    channels: tuple[str, ...]
    sample_dims: tuple[str, ...]
    sample_sizes: tuple[int, ...]
    ny: int
    nx: int
    periodic: tuple[bool, bool]
    row_weights: np.ndarray | None
    spec: GridSpec | None
    time_dim: str | None
    #: Each channel's ``units`` attribute ("" without one); empty for HDF5 files.
    units: Mapping[str, str] = {}
    _path: str | None = None

    @property
    def where(self) -> str:
        """The file's path as given, or the label of an in-memory dataset, for messages."""
        return self._path or self.label

    def labels(self, dim: str) -> np.ndarray | None:
        raise NotImplementedError

    def _read_block(self, index: Mapping[str, int], rows: slice, cols: slice) -> np.ndarray:
        raise NotImplementedError

    def condition(self, name: str, index: Mapping[str, int]) -> float:
        raise NotImplementedError

    def condition_values(self, name: str, grid: Sequence[np.ndarray]) -> np.ndarray:
        """The condition of every field on the sample ``grid`` (positions per sample dim)."""
        return np.array(
            [
                self.condition(name, {d: int(i) for d, i in zip(self.sample_dims, combo)})
                for combo in itertools.product(*grid)
            ]
        )

    def condition_grid(self, name: str, grid: Sequence[np.ndarray]) -> np.ndarray:
        """The condition of every field of the sample ``grid``, shaped like the grid."""
        shape = [len(g) for g in grid]
        values = self.condition_values(name, grid)
        if values.size == 1:
            return np.broadcast_to(values.reshape(()), shape)
        return values.reshape(shape)

    def lazy_channels(self, selection: Mapping[str, np.ndarray]) -> Any:
        raise NotImplementedError

    @property
    def grid_dims(self) -> tuple[str, str]:
        """Names of the (y, x) dims of :meth:`lazy_channels`."""
        return ("y", "x") if self.spec is None else (self.spec.y, self.spec.x)

    def read(self, index: Mapping[str, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(C, len(rows), len(cols)) float64 window; rows / cols may wrap (runs are sliced)."""
        out = np.empty((len(self.channels), rows.size, cols.size), dtype=np.float64)
        for ro, rs in _runs(rows):
            for co, cs in _runs(cols):
                block = self._read_block(index, rs, cs)
                out[:, ro : ro + (rs.stop - rs.start), co : co + (cs.stop - cs.start)] = block
        return out


class _XarraySource(_Source):
    def __init__(
        self,
        data: xr.Dataset | str | Path,
        *,
        variables: Sequence[str] | None,
        dims: Mapping[str, str] | None,
        label: str,
    ) -> None:
        self.label = label
        self._dims = dict(dims) if dims else None
        if isinstance(data, xr.Dataset):
            self._path: str | None = None
            self._given: xr.Dataset | None = data
        else:
            self._path = str(data)
            self._given = None
        self._ds: xr.Dataset | None = None
        self._pid: int | None = None
        raw = self._raw(chunks=None)
        try:
            self.spec = grid_spec(raw, dims=self._dims)
        except GridError as err:
            grids = _grids_of(raw, variables)
            if len(grids) > 1:  # naming the dims would leave the other grid's variables out
                raise GridError(_two_grids_message(label, grids)) from err
            if not _FROM_CONFIG.get() or "dims=" not in str(err):
                raise
            # a training run names the dims in its [data] table, not with dims=
            raise GridError(
                f'{err} (in a training configuration: data.dims = {{x = "lon", y = "lat"}}, '
                "the keys the axes and the values the dimension names of the files; "
                "DataConfig.dims)"
            ) from err
        ds = self.ds
        names = list(variables) if variables else _grid_variables(ds, self.spec)
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            path = self._path
            groups = store_groups(path) if path is not None else []
            inside = f"; {group_advice(path, groups, form='both')}" if path and groups else ""
            raise MissingVariableError(
                f"variables {missing} are not in {self.where!r}; it has "
                f"{sorted(map(str, ds.data_vars))}; fix "
                f"{_setting('variables', 'the variables argument')}{inside}"
            )
        if not names:
            raise DataError(f"{label!r} has no variable on the ({self.spec.y}, {self.spec.x}) grid")
        first = ds[names[0]]
        sample = [str(d) for d in first.dims if d not in (self.spec.x, self.spec.y)]
        for name in names:
            v = ds[name]
            if self.spec.x not in v.dims or self.spec.y not in v.dims:
                grids = _grids_of(ds, names)
                advice = (
                    f". {_two_grids_message(label, grids)}"
                    if len(grids) > 1
                    else "; leave it out of the variables"
                )
                raise DataError(
                    f"variable {name!r} of {label!r} has dims {v.dims}; expected the grid dims "
                    f"({self.spec.y!r}, {self.spec.x!r}){advice}"
                )
            other = [str(d) for d in v.dims if d not in (self.spec.x, self.spec.y)]
            if set(other) != set(sample):
                raise DataError(
                    f"variables {names[0]!r} and {name!r} of {label!r} have different non-grid "
                    f"dims ({sample} vs {other}); expected channels that share their dims. "
                    + _dims_fix(ds, {names[0]: sample, name: other}, self.spec.time)
                )
            if v.dtype.kind not in "iuf":
                raise DataError(not_real_message(name, label, v.dtype))
        check_decoded(ds, names)
        self.channels = tuple(names)
        self.units = {name: str(ds[name].attrs.get("units", "")) for name in names}
        self.sample_dims = tuple(sample)
        self.sample_sizes = tuple(int(ds.sizes[d]) for d in sample)
        self.ny, self.nx = self.spec.ny, self.spec.nx
        self.periodic = (self.spec.periodic_y, self.spec.periodic_x)
        self.row_weights = grid_row_weights(self.spec, np.asarray(ds[self.spec.y].values))
        self.time_dim = self.spec.time

    def _raw(self, chunks: Any) -> xr.Dataset:
        if self._given is not None:
            return self._given
        assert self._path is not None
        if is_store(self._path):
            require_zarr(self._path, "read")
        check_input_file(self._path)
        try:
            if is_store(self._path):
                ds = xr.open_zarr(
                    self._path, chunks=chunks, consolidated=zarr_consolidated(self._path)
                )
            else:
                # held by one lock with the file's later reads: netCDF / HDF5 are not
                # thread-safe (a training in a thread beside other opens)
                ds = open_netcdf(self._path, chunks=chunks, cache=False)
        except (OSError, ValueError) as err:
            raise DataError(f"could not open {self._path!r} with xarray: {one_line(err)}") from err
        if not ds.data_vars:  # an empty root: the variables may be in a netCDF-4 or zarr group
            with netcdf_lock():  # h5py reads the groups: HDF5 again
                groups = store_groups(self._path)
            if groups:
                ds.close()
                raise DataError(
                    f"{self._path!r} has no variable at its root; "
                    + group_advice(self._path, groups, form="both")
                )
        return ds

    @property
    def ds(self) -> xr.Dataset:
        if self._ds is None or (self._path is not None and self._pid != os.getpid()):
            # integers are converted on read: converting here would load lazy variables
            self._ds = normalize_grid(
                self._raw(chunks=None), dims=self._dims, convert_integers=False
            )
            self._pid = os.getpid()
        return self._ds

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._path is not None:
            state["_ds"] = None
            state["_pid"] = None
        return state

    def labels(self, dim: str) -> np.ndarray | None:
        ds = self.ds
        return np.asarray(ds[dim].values) if dim in ds.coords else None

    def _read_block(self, index: Mapping[str, int], rows: slice, cols: slice) -> np.ndarray:
        ds = self.ds
        y, x = self.spec.y, self.spec.x  # type: ignore[union-attr]
        out = []
        for name in self.channels:
            v = ds[name].isel({**index, y: rows, x: cols}).transpose(y, x)
            out.append(np.asarray(v.values, dtype=np.float64))
        return np.stack(out)

    def condition_values(self, name: str, grid: Sequence[np.ndarray]) -> np.ndarray:
        if any(len(g) == 0 for g in grid):
            return np.empty(0)
        if name not in self.ds.variables:  # an attribute: one value for the whole file
            return np.array([self.condition(name, {})])
        first = {d: int(g[0]) for d, g in zip(self.sample_dims, grid)}
        self.condition(name, first)  # the dims check and its message
        v = self.ds[name]
        picked = v.isel({d: g for d, g in zip(self.sample_dims, grid) if d in v.dims})
        return np.asarray(picked.values, dtype=np.float64).ravel()

    def condition_grid(self, name: str, grid: Sequence[np.ndarray]) -> np.ndarray:
        shape = [len(g) for g in grid]
        if name not in self.ds.variables or any(n == 0 for n in shape):
            return super().condition_grid(name, grid)
        self.condition(name, {d: int(g[0]) for d, g in zip(self.sample_dims, grid)})
        v = self.ds[name]
        picked = v.isel({d: g for d, g in zip(self.sample_dims, grid) if d in v.dims})
        picked = picked.transpose(*[d for d in self.sample_dims if d in v.dims])
        kept = [n if d in v.dims else 1 for d, n in zip(self.sample_dims, shape)]
        values = np.asarray(picked.values, dtype=np.float64).reshape(kept)
        return np.broadcast_to(values, shape)

    def condition(self, name: str, index: Mapping[str, int]) -> float:
        ds = self.ds
        if name in ds.variables:
            v = ds[name]
            extra = [d for d in v.dims if d not in index]
            if extra:
                raise DataError(
                    f"condition variable {name!r} has dims {v.dims}; expected only sample dims "
                    f"{self.sample_dims} (one scalar per field)"
                )
            return float(v.isel({d: index[d] for d in v.dims}).values)
        if name in ds.attrs:
            return float(ds.attrs[name])
        # last, the variables' own attribute (a DataArray's, kept by to_dataset), as inference
        on_vars = {c: ds[c].attrs[name] for c in self.channels if name in ds[c].attrs}
        if on_vars:
            if len({float(x) for x in on_vars.values()}) > 1:
                edit = (
                    f" (ncatted -a {name},global,o,d,<value> {shlex.quote(self._path)})"
                    if self._path is not None
                    else ""
                )
                raise DataError(
                    f"the variables of {self.label!r} disagree on the condition {name!r}: "
                    f"{on_vars}; set the global attribute {name!r}{edit} or a scalar variable "
                    f"{name!r} to the value of these fields"
                )
            return float(next(iter(on_vars.values())))
        raise MissingVariableError(
            f"condition {name!r} is neither a variable nor an attribute (global, or of the "
            f"variables {list(self.channels)}) of {self.label!r}; global attributes: "
            f"{sorted(ds.attrs)}"
        )

    def lazy_channels(self, selection: Mapping[str, np.ndarray]) -> xr.Dataset:
        ds = normalize_grid(self._raw(chunks={}), dims=self._dims)
        return ds[list(self.channels)].isel(dict(selection))


def _grids_of(ds: xr.Dataset, variables: Sequence[str] | None) -> dict[tuple[str, ...], list[str]]:
    """The variables of ``ds`` (``variables``, else every one of two dims or more) grouped by
    their last two dims (the grid they lie on)."""
    names = list(variables) if variables else [str(n) for n in ds.data_vars]
    grids: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        if name in ds.data_vars and ds[name].ndim >= 2:
            grids.setdefault(tuple(map(str, ds[name].dims[-2:])), []).append(name)
    return grids


def _two_grids_message(label: str, grids: Mapping[tuple[str, ...], Sequence[str]]) -> str:
    """Why a Dataset whose variables lie on several grids cannot be trained on, and the fix."""
    shown = "; ".join(f"{', '.join(map(repr, v))} on {d}" for d, v in grids.items())
    (first, _), (dims, moved) = list(grids.items())[:2]
    y, x = first
    oy, ox = dims
    return (
        f"The variables of {label!r} lie on different grids ({shown}): one dataset trains on "
        f"one grid, and naming its dims (dims=, data.dims) does not help: the variables of "
        f"the other grid are refused then. Regrid them onto one grid first, e.g. "
        f"ds[{moved[0]!r}] = ds[{moved[0]!r}].interp({oy}=ds[{y!r}], {ox}=ds[{x!r}])"
        f".drop_vars([{oy!r}, {ox!r}]) (bilinear; cells outside its grid become NaN), or "
        f"write each grid's variables to a file of its own and train on them separately"
    )


def _dims_fix(ds: xr.Dataset, dims: Mapping[str, Sequence[str]], time: str | None) -> str:
    """How to give two variables the same non-grid dims (``dims``: each one's): a variable
    lacking the time dim is a static field; one with an extra dim (levels) is split into a
    variable per level."""
    (a, da), (b, db) = dims.items()
    for name, own, others in ((a, da, db), (b, db, da)):
        lacking = [d for d in others if d not in own]
        if time is not None and time in lacking and set(own) <= set(others):
            return (
                f"{name!r} has no {time!r} dim: a static field (a land mask, orography). "
                "Static fields cannot be conditions today (the model is conditioned on the "
                "coarse fields of the variables it generates and on a scalar condition only): "
                f"leave {name!r} out of the variables. Broadcasting it over time "
                f"(ds[{name!r}] = ds[{name!r}].broadcast_like(ds[{(b if name == a else a)!r}])) "
                "would make it a channel the model generates, and one that downscaling then "
                "needs as input"
            )
    for name, own, others in ((a, da, db), (b, db, da)):
        extra = [d for d in own if d not in others]
        if extra:
            dim = extra[0]
            values = np.asarray(ds[dim].values) if dim in ds.coords else np.arange(ds.sizes[dim])
            first = _shown_label(values[0])
            return (
                f"{name!r} has the dim {dim!r} ({ds.sizes[dim]} of them) that the other lacks: "
                f"make one variable per {dim} and list each, e.g. ds['{name}_{first}'] = "
                f"ds[{name!r}].sel({dim}={first}, drop=True) for each of {_shown_labels(values[:4])}"
                f"{' ...' if values.size > 4 else ''} (see Channels and levels in docs/data.md), "
                f"or train {name!r} on its own (its {dim}s are then samples)"
            )
    return "Give the variables the same dims, or train them separately"


def _grid_variables(ds: xr.Dataset, spec: GridSpec) -> list[str]:
    """The variables on the grid that hold numbers (complex ones included: the dtype check
    refuses them with its message); all on the grid when none does (refused there, too)."""
    on_grid = [str(k) for k, v in ds.data_vars.items() if spec.x in v.dims and spec.y in v.dims]
    numbers = [k for k in on_grid if ds[k].dtype.kind in "iufc"]
    return numbers or on_grid


def not_real_message(name: str, label: str | None, dtype: np.dtype) -> str:
    """Why the variable ``name`` (of the source ``label``, when given) of ``dtype`` cannot be a
    channel: the one wording of training's and inference's refusals."""
    what = {
        "b": "booleans",
        "c": "complex numbers (the imaginary part would be dropped)",
        "M": "dates",
        "m": "time intervals",
    }.get(dtype.kind, "text or objects")
    fix = "(for complex values, choose the part: ds[...].real)"
    if dtype.names is not None and set(dtype.names) == {"r", "i"}:
        what = "complex numbers stored as (r, i) records (the imaginary part would be dropped)"
        fix = "(open the file with engine='h5netcdf' to read them as complex, then ds[...].real)"
    source = f" of {label!r}" if label is not None else ""
    return (
        f"variable {name!r}{source} holds {what} (dtype {dtype}); the model needs real "
        f"numbers: convert them first, e.g. ds[{name!r}] = ds[{name!r}].astype('float32') {fix}"
    )


def _h5_packing(
    path: str, name: str, attrs: Mapping[str, Any]
) -> tuple[float, float, tuple[float, ...]] | None:
    """The CF packing of an HDF5 dataset from its own attributes: (scale_factor, add_offset,
    fill values), or ``None`` without any.

    Applied as xarray decodes a netCDF variable: cells holding ``_FillValue`` or one of the
    ``missing_value`` numbers become NaN, the others ``raw * scale_factor + add_offset``.
    Attributes that are not real numbers (or several numbers where one is meant) raise
    :class:`DataError`.
    """
    found = {k: attrs[k] for k in PACKING_ATTRS if k in attrs}
    if not found:
        return None
    numbers: dict[str, np.ndarray] = {}
    for key, value in found.items():
        arr = np.asarray(value).reshape(-1)
        one = key in ("scale_factor", "add_offset", "_FillValue")
        if arr.dtype.kind not in "iuf" or arr.size == 0 or (one and arr.size != 1):
            raise DataError(
                f"dataset {name!r} of {path!r} has the CF packing attribute {key} = {value!r} "
                f"(dtype {arr.dtype}, {arr.size} value(s)); expected "
                f"{'one real number' if one else 'real numbers'}. Unpack the data yourself "
                f"(with h5py: raw = f[{name!r}][...]; values = raw * scale_factor + "
                "add_offset, NaN where raw is a fill value) into a float32 dataset without "
                f"these attributes, or fix the attribute (f[{name!r}].attrs[{key!r}] = ...)"
            )
        if key in ("scale_factor", "add_offset") and not np.all(np.isfinite(arr)):
            raise DataError(
                f"dataset {name!r} of {path!r} has {key} = {value!r}; expected a finite number "
                f"(fix it: f[{name!r}].attrs[{key!r}] = ..., or delete it)"
            )
        numbers[key] = arr
    scale = float(numbers["scale_factor"][0]) if "scale_factor" in numbers else 1.0
    offset = float(numbers["add_offset"][0]) if "add_offset" in numbers else 0.0
    fills = [
        float(x)
        for key in ("_FillValue", "missing_value")
        for x in numbers.get(key, ())
        if not np.isnan(x)  # a NaN fill is NaN already
    ]
    return scale, offset, tuple(dict.fromkeys(fills))


def _h5_sign_view(path: str, name: str, attrs: Mapping[str, Any], dtype: Any) -> np.dtype | None:
    """The integer type to view an HDF5 dataset's raw values as, from netCDF's ``_Unsigned``
    attribute (``"true"``: unsigned bytes or shorts stored in a signed type; ``"false"``: the
    reverse), or ``None`` when the values are read as stored.

    As xarray decodes a netCDF variable: the attribute on a non-integer dataset is ignored with
    a warning; a value other than true/false raises :class:`DataError`.
    """
    if "_Unsigned" not in attrs:
        return None
    given = attrs["_Unsigned"]
    text = (given.decode() if isinstance(given, bytes) else str(given)).strip().lower()
    if text not in ("true", "false"):
        raise DataError(
            f"dataset {name!r} of {path!r} has _Unsigned = {given!r}; expected 'true' or 'false' "
            f"(fix it: f[{name!r}].attrs['_Unsigned'] = 'true', or delete it)"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        warnings.warn(
            f"dataset {name!r} of {path!r} has _Unsigned = {given!r} but holds {dtype} values, "
            "not integers: the attribute is ignored",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
        return None
    kind = "u" if text == "true" else "i"
    return None if dtype.kind == kind else np.dtype(f"{kind}{dtype.itemsize}")


def _fills_viewed(fills: tuple[float, ...], stored: Any, fill_value: Any) -> tuple[float, ...]:
    """``fills`` with ``_FillValue`` (``fill_value``) given in the stored integer type as the
    number of the other sign's type (``-1`` stored as int8 under ``_Unsigned = "true"`` is 255),
    as xarray decodes it; ``missing_value`` numbers are compared as given, as xarray does (a
    signed ``-2`` then matches no unsigned byte)."""
    stored = np.dtype(stored)
    other = np.dtype(f"{'u' if stored.kind == 'i' else 'i'}{stored.itemsize}")
    given = np.asarray(fill_value).reshape(-1) if fill_value is not None else np.empty(0)
    out = []
    for fill in fills:
        if (
            given.size == 1
            and float(fill) == float(given[0])
            and float(fill).is_integer()
            and np.can_cast(np.min_scalar_type(int(fill)), stored)
        ):
            fill = float(np.asarray(int(fill), dtype=stored).view(other))
        out.append(fill)
    return tuple(dict.fromkeys(out))


class _H5Source(_Source):
    def __init__(self, path: str, *, variables: Sequence[str] | None, label: str) -> None:
        import h5py

        self.label = label
        self._path = path
        self._file: Any = None
        self._pid: int | None = None
        check_input_file(path)
        try:
            with h5py.File(path, "r") as f:
                found = [k for k in _H5_LAYOUTS if k in f]
                if not found:
                    raise DataError(
                        f"HDF5 file {path!r} has datasets {sorted(f.keys())}; expected one named "
                        f"'fields' or 'w' of shape (T, H, W) or (T, C, H, W). A netCDF-4 file "
                        "(HDF5 inside) with another suffix is read by xarray: "
                        + (
                            'set data.format = "xarray"'
                            if _FROM_CONFIG.get()
                            else 'pass format="xarray"'
                        )
                    )
                self._name = found[0]
                dset = f[self._name]
                shape = tuple(dset.shape)
                self.attrs = {**dict(f.attrs), **dict(dset.attrs)}
                self._packing = _h5_packing(path, self._name, dict(dset.attrs))
                self._sign_view = _h5_sign_view(path, self._name, dict(dset.attrs), dset.dtype)
                if self._sign_view is not None and self._packing is not None:
                    scale, offset, fills = self._packing
                    given = dset.attrs.get("_FillValue")
                    self._packing = (scale, offset, _fills_viewed(fills, dset.dtype, given))
                # where a fix removes the periodic attribute (the dataset's wins, as above)
                self.periodic_holder = f"f[{self._name!r}]" if "periodic" in dset.attrs else "f"
        except OSError as err:
            raise DataError(f"could not open {path!r} with h5py: {err}") from err
        if len(shape) not in (3, 4):
            raise ShapeError(
                f"dataset {self._name!r} of {path!r} has shape {shape}; expected (T, H, W) or "
                f"(T, C, H, W)"
            )
        self._has_channels = len(shape) == 4
        n_chan = shape[1] if self._has_channels else 1
        names = [f"{self._name}_{c}" for c in range(n_chan)] if self._has_channels else [self._name]
        wanted = list(variables) if variables else names
        missing = [v for v in wanted if v not in names]
        if missing:
            raise MissingVariableError(
                f"variables {missing} are not in {path!r}; its channels are {names}"
            )
        self._chan_index = [names.index(v) for v in wanted]
        self.channels = tuple(wanted)
        self.sample_dims = ("time",)
        self.sample_sizes = (int(shape[0]),)
        self.ny, self.nx = int(shape[-2]), int(shape[-1])
        periodic = str(self.attrs.get("periodic", "false")).strip().lower() in ("true", "1", "yes")
        self.periodic = (periodic, periodic)
        self.row_weights = None
        self.spec = None
        self.time_dim = "time"

    def _handle(self) -> Any:
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self._path, "r")
            self._pid = os.getpid()
        return self._file[self._name]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def labels(self, dim: str) -> np.ndarray | None:
        return None

    def _signed(self, raw: Any) -> Any:
        """``raw`` (numpy or dask) read with the sign ``_Unsigned`` says (a view, no copy)."""
        return raw if self._sign_view is None else raw.view(self._sign_view)

    def _unpack(self, raw: Any) -> Any:
        """``raw`` (numpy or dask) as float64 physical values: ``_Unsigned`` and the CF packing
        applied."""
        raw = self._signed(raw)
        values = raw.astype(np.float64)
        if self._packing is None:
            return values
        scale, offset, fills = self._packing
        values = values * scale + offset
        if fills:
            missing = raw == fills[0]
            for fill in fills[1:]:
                missing = missing | (raw == fill)
            values = np.where(missing, np.nan, values)  # dask arrays dispatch to dask
        return values

    def _read_block(self, index: Mapping[str, int], rows: slice, cols: slice) -> np.ndarray:
        dset = self._handle()
        t = int(index["time"])
        if self._has_channels:
            block = self._unpack(np.asarray(dset[t, :, rows, cols]))
            return block[self._chan_index]
        return self._unpack(np.asarray(dset[t, rows, cols]))[None]

    def condition_values(self, name: str, grid: Sequence[np.ndarray]) -> np.ndarray:
        # the condition is a file attribute: one value for every field
        return np.array([self.condition(name, {})]) if all(len(g) for g in grid) else np.empty(0)

    def condition(self, name: str, index: Mapping[str, int]) -> float:
        if name in self.attrs:
            return float(np.asarray(self.attrs[name]).reshape(-1)[0])
        raise MissingVariableError(
            f"condition {name!r} is not an attribute of {self._path!r}; attributes: "
            f"{sorted(self.attrs)}"
        )

    def lazy_channels(self, selection: Mapping[str, np.ndarray]) -> xr.Dataset:
        import dask.array as dsa

        dset = self._handle()
        chunks = (1, *dset.shape[1:])
        arr = dsa.from_array(dset, chunks=chunks, lock=True)
        times = selection.get("time")
        if times is not None:
            arr = arr[np.asarray(times)]
        out = {}
        for name, c in zip(self.channels, self._chan_index):
            a = arr[:, c] if self._has_channels else arr
            a = self._signed(a) if self._packing is None else self._unpack(a)
            out[name] = (("time", "y", "x"), a)
        return xr.Dataset(out)


def expand_paths(paths: Sequence[str | Path]) -> list[str]:
    """The files the datasets open for ``paths``: a leading ``~`` expanded, each glob's matches
    sorted, other paths as given.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Files, zarr stores or glob patterns (``*``, ``?``, ``[``).

    Returns
    -------
    list of str
        The paths in the order they are opened.

    Raises
    ------
    DataError
        When a path does not exist or a glob matches nothing.
    """
    out: list[str] = []
    for p in paths:
        text = os.path.expanduser(str(p))  # "~/era5.nc": no shell expands it in a config
        matches = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
        if not matches or not all(os.path.exists(m) for m in matches):
            where = (
                ""
                if os.path.isabs(text)
                else f" (looked for in {os.path.join(os.getcwd(), text)!r}: a relative path is "
                f"read from the current working directory, {os.getcwd()!r}; run from the folder "
                "it is relative to or give it as an absolute path)"
            )
            raise DataError(
                f"no file matches {text!r}; expected existing netCDF, zarr or HDF5 paths{where}"
            )
        out.extend(matches)
    return out


def _open_sources(
    data: Any,
    *,
    variables: Sequence[str] | None,
    format: Format,
    dims: Mapping[str, str] | None,
) -> list[_Source]:
    _check_option("format", format, Format)
    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        raise DataError("no data given; expected paths or xarray Datasets")
    # each item with its files (globs matched once), so that the messages know whether there
    # are several files
    opened = [
        (i, item, None if isinstance(item, xr.Dataset | xr.DataArray) else expand_paths([item]))
        for i, item in enumerate(items)
    ]
    several = sum(1 if paths is None else len(paths) for _, _, paths in opened) > 1
    sources: list[_Source] = []
    with _merge_hint(several):
        for i, item, paths in opened:
            if isinstance(item, xr.Dataset):
                source = _XarraySource(item, variables=variables, dims=dims, label=f"dataset{i}")
                sources.append(source)
                continue
            if isinstance(item, xr.DataArray):
                ds = dataset_of(item, item.name or "field")
                source = _XarraySource(ds, variables=variables, dims=dims, label=f"dataset{i}")
                sources.append(source)
                continue
            for path in paths or ():
                fmt = format
                if fmt == "auto":
                    fmt = "hdf5" if Path(path).suffix.lower() in _H5_SUFFIXES else "xarray"
                label = Path(path.rstrip("/")).stem
                if fmt == "hdf5":
                    sources.append(_H5Source(path, variables=variables, label=label))
                else:
                    sources.append(_XarraySource(path, variables=variables, dims=dims, label=label))
    channels = sources[0].channels
    for s in sources[1:]:
        if s.channels != channels:
            raise DataError(
                f"sources have different channels: {sources[0].label!r} has {channels}, "
                f"{s.label!r} has {s.channels}; pass the same variables for every file"
            )
    _check_sources_agree(sources)
    for src in sources:
        _check_periodic_edges(src)
    return sources


#: A declared-periodic axis whose opposite edges differ, in mean square over the fields read,
#: by more than this many times its neighbouring cells do is taken for a window of a periodic
#: field (measured on the shared data: 0.2 to 1.3 for the whole Kolmogorov boxes and the global
#: ERA-Interim longitudes; 16 to 200 for windows cut from the boxes, 32 for the UK ERA5 domain).
SEAM_RATIO_MAX = 8.0

#: Fields of a file read (evenly spaced over its samples) for the edge check.
SEAM_FIELDS = 4


def _declared_periodic(src: _Source) -> tuple[bool, bool]:
    """Which (y, x) axes of ``src`` are periodic by their ``periodic`` attribute only (a
    latitude/longitude axis spanning 360 degrees is periodic by its extent: nothing to check)."""
    spec = src.spec
    if spec is None:  # an HDF5 file: periodic only by its attribute
        return src.periodic
    return (
        spec.periodic_y,
        spec.periodic_x and not _circles_the_globe(spec.kind, spec.nx, spec.dx),
    )


def _seam_ratio(fields: np.ndarray, axis: int) -> float:
    """Mean square difference across the seam of ``axis`` (last cell to first) over that of
    neighbouring cells along it; ``fields`` (..., H, W). ``nan`` when the field is constant."""
    n = fields.shape[axis]
    seam = np.take(fields, 0, axis) - np.take(fields, n - 1, axis)
    inner = np.nanmean(np.diff(fields, axis=axis) ** 2)
    if not np.isfinite(inner) or inner == 0:
        return math.nan
    return float(np.nanmean(seam**2) / inner)


#: The warnings about files already given in this process (the train and validation splits
#: open the same files, which warned twice, word for word: Python's own once-per-line rule does
#: not hold once any code enters ``warnings.catch_warnings``), by their keys (:func:`_warn_once`).
_WARNED: set[tuple[Any, ...]] = set()


def _warn_once(key: tuple[Any, ...] | None, message: str) -> None:
    """Warn ``message`` (a :class:`FlexDownscaleWarning` at the user's line) unless a warning
    of ``key`` was given in this process; ``key`` None warns every time."""
    if key is not None:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(message, FlexDownscaleWarning, stacklevel=user_stacklevel())


def _warn_condition_disagreement(src: _Source, name: str) -> None:
    """Warn when a file holds the condition ``name`` both as a variable (or coordinate), which
    training reads, and as a global attribute of another value: ``xr.concat`` of two files keeps
    the first file's attributes, so after joining Re = 1000 and Re = 4000 the attribute says
    1000 for every field. Inference reads the same way (the variable first) and warns alike."""
    ds = getattr(src, "ds", None)
    if ds is None or name not in ds.variables or name not in ds.attrs:
        return
    try:
        attribute = float(ds.attrs[name])
    except (TypeError, ValueError):
        return
    values = np.unique(np.asarray(ds[name].values, dtype=np.float64).ravel())
    if np.allclose(values, attribute, rtol=1e-6, atol=0.0):
        return
    shown = ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if values.size > 4 else "")
    _warn_once(
        # the variable's distinct values, as many as tell two disagreements apart
        ("condition", src.where, name, attribute, tuple(values[:8].tolist())),
        f"{src.where!r} disagrees on the condition {name!r}: its variable {name!r} holds "
        f"{shown}, but its global attribute {name} = {attribute:g}. Training reads the variable "
        "(as inference does); the attribute is probably left over from joining files "
        f"(xr.concat keeps the first file's attributes). Drop it (ds.attrs.pop({name!r})) or "
        "correct it so the file says one thing",
    )


def _warn_period_not_divisible(src: _Source, factor: int) -> None:
    """Warn when a periodic axis of ``src`` has a number of cells that ``factor`` does not
    divide: no coarse field of whole cells then spans the period (``degrade`` trims the last
    cells), so the model never runs periodic at inference; it downscales windows only."""
    names = ("y", "x") if src.spec is None else (str(src.spec.y), str(src.spec.x))
    axes = [
        (name, n)
        for periodic, n, name in zip(src.periodic, (src.ny, src.nx), names, strict=True)
        if periodic and n % factor
    ]
    if not axes:
        return
    sizes = sorted({n for _, n in axes})
    fits = [k for k in (2, 3, 4, 5, 6, 7, 8, 16) if all(n % k == 0 for n in sizes)]
    which = " and ".join(f"{name!r} ({n} cells)" for name, n in axes)
    trimmed = ", ".join(f"{n} to {n - n % factor}" for n in sizes)
    other = f"a factor that divides {' and '.join(map(str, sizes))}" + (
        f" ({', '.join(map(str, fits))})" if fits else ""
    )
    _warn_once(
        ("period", src.where, tuple(axes), factor),
        f"{src.where!r} is periodic along {which}, which factor = {factor} does not divide: no "
        f"coarse field of whole cells spans the period (degrade(..., boundary='trim') cuts "
        f"{trimmed} fine cells), so the model can never run periodic at inference; it "
        f"downscales windows only, as non-periodic fields (with a SkillWarning). Use {other} "
        "to downscale whole periodic fields",
    )


#: Edge checks of files already made in this process: (path, modification time, size, axes
#: declared periodic) -> the (y, x) axes to train as non-periodic. The train and validation
#: splits open the same files: they are read and warned about once.
_EDGE_CHECKS: dict[tuple[Any, ...], tuple[bool, bool]] = {}


def _check_periodic_edges(src: _Source) -> None:
    """Train an axis that says it is periodic as not periodic, with a warning, when its
    opposite edges are not neighbours (a window cut from a periodic field keeps the attribute;
    random crops would wrap across the cut and join unrelated cells, and the model folder would
    record a period the model does not have). Reads up to :data:`SEAM_FIELDS` fields."""
    declared = _declared_periodic(src)
    if not any(declared):
        return
    key = None
    if src._path is not None:
        stat = os.stat(src._path)
        key = (os.path.abspath(src._path), stat.st_mtime_ns, stat.st_size, declared)
    cut_axes = _EDGE_CHECKS.get(key) if key is not None else None
    if cut_axes is None:
        cut_axes = _edges_not_neighbours(src, declared)
        if key is not None:
            _EDGE_CHECKS[key] = cut_axes
    periodic = [p and not c for p, c in zip(src.periodic, cut_axes, strict=True)]
    src.periodic = (periodic[0], periodic[1])
    if src.spec is not None and any(cut_axes):
        src.spec = dataclasses.replace(src.spec, periodic_y=periodic[0], periodic_x=periodic[1])


def _edges_not_neighbours(src: _Source, declared: tuple[bool, bool]) -> tuple[bool, bool]:
    """The declared-periodic (y, x) axes of ``src`` whose opposite edges are not neighbours,
    with the warning of :func:`_check_periodic_edges`; a ``DataError`` when an edge repeats the
    other (a cyclic point)."""
    total = math.prod(src.sample_sizes)
    picks = np.unique(np.linspace(0, total - 1, min(SEAM_FIELDS, total)).round().astype(int))
    fields = np.stack(
        [
            src._read_block(
                dict(zip(src.sample_dims, np.unravel_index(k, src.sample_sizes), strict=True)),
                slice(0, src.ny),
                slice(0, src.nx),
            )
            for k in picks
        ]
    ).astype(np.float64)
    dims = src.grid_dims
    cut = []
    for axis, (is_declared, dim, n) in enumerate(zip(declared, dims, (src.ny, src.nx))):
        if not is_declared or n < 3:
            continue
        ratio = _seam_ratio(fields, -2 + axis)
        if ratio == 0.0:
            if src.spec is None:  # an HDF5 file: no coordinates, no ds to isel
                index = "[..., :-1, :]" if axis == 0 else "[..., :-1]"
                drop = (
                    f"write the file again without it (h5py: the dataset's values{index}; "
                    "keep its attributes)"
                )
            else:
                drop = f"ds.isel({dim}=slice(None, -1))"
            raise DataError(
                f'{src.where!r} says it is periodic along {dim!r} (periodic = "true"), and its '
                f"last {'row' if axis == 0 else 'column'} along {dim!r} repeats its first (a "
                "cyclic point, as add_cyclic_point or node-based solvers write it): the period "
                f"would count that cell twice and crops would wrap with it doubled. Drop it: "
                f"{drop}"
            )
        if ratio > SEAM_RATIO_MAX:
            cut.append((axis, dim, ratio))
    if not cut:
        return (False, False)
    found = " and ".join(f"{ratio:.0f} times as much along {dim!r}" for _, dim, ratio in cut)
    names = " and ".join(repr(dim) for _, dim, _ in cut)
    if src.spec is None:  # an HDF5 file: one attribute, on the file or its dataset
        holder = src.periodic_holder  # type: ignore[attr-defined]
        recorded = (
            "; an HDF5 file's model folder records no grid, so at inference give inputs "
            'without periodic = "true" on these axes'
        )
        pops = f'h5py: with h5py.File({src._path!r}, "r+") as f: del {holder}.attrs["periodic"]'
    else:
        recorded = " and the model folder records them so"
        pops = "; ".join(f'ds[{dim!r}].attrs.pop("periodic")' for _, dim, _ in cut)
    warnings.warn(
        f'{src.where!r} says it is periodic along {names} (periodic = "true"), but its '
        f"opposite edges are not neighbours: across the edge its values differ (mean square) "
        f"{found} as between neighbouring cells ({len(picks)} of its fields read). A window cut "
        "from a periodic field keeps the attribute (xarray copies attributes), and random crops "
        "would wrap across the cut, joining unrelated cells; it is trained as non-periodic "
        f"along these axes{recorded}. To fix: train on the whole "
        f"periodic field, or drop the attribute ({pops}) before saving the window",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )
    axes = {axis for axis, _, _ in cut}
    return (0 in axes, 1 in axes)


@contextlib.contextmanager
def _merge_hint(several: bool) -> Iterator[None]:
    """Add to a missing variable of one of several files that each must hold every variable."""
    try:
        yield
    except MissingVariableError as err:
        if not several:
            raise
        raise MissingVariableError(
            f"{err}; the files are pooled field by field, so each must hold every variable: "
            "merge files that hold different variables first, e.g. "
            "xr.merge([xr.open_dataset(a), xr.open_dataset(b)]).to_netcdf(c)"
        ) from None


def _unit(spec: GridSpec) -> str:
    return "degrees" if spec.kind in ("latlon", "rotated") else spec.x_units


def _check_sources_agree(sources: Sequence[_Source]) -> None:
    """Files pooled into one dataset hold each variable in the same units (a ``UnitsError``
    with the conversion otherwise) and lie on grids of one kind and spacing (a ``GridError``:
    a factor would mean another resolution in each). Grids of one spacing that cover other
    cells (another region, a shifted lattice, another size) are kept with a warning: the
    model folder records the first file's grid, which inference compares its input with."""
    first = sources[0]
    for src in sources[1:]:
        for name in first.channels:
            a, b = first.units.get(name), src.units.get(name)
            if a is None or b is None or a == b:
                continue
            found = compare_units(b, a)
            if found.outcome == "same":
                continue
            how = (
                f"convert it ({found.rule}) or set its units attribute"
                if found.outcome == "convertible"
                else "set the units attribute that is wrong, or convert the values"
            )
            path = src._path
            water = found.water_hint(  # NCO for a netCDF file, Python for a dataset given
                name,
                form="python" if path is None else "words" if is_store(path) else "command",
                file=src.where,
                target="ds" if path is None else f"{name!r} in {path!r}",
            )
            if water is not None:  # mm against kg m-2: the same for liquid water, not assumed
                how = f"{water}. Otherwise set the units attribute that is wrong"
            raise UnitsError(
                f"{name!r} is in {b!r} in {src.where!r} but in {a!r} in {first.where!r}; the "
                f"files are pooled into one training set, so every file must hold {name!r} in "
                f"the same units: {how}"
            )
        if first.spec is None or src.spec is None:
            continue
        g, h = first.spec, src.spec
        shown, against = (
            f"{s.where!r} ({spec.ny} x {spec.nx} {spec.kind} cells of {spec.dy:g} x "
            f"{spec.dx:g} {_unit(spec)})"
            for s, spec in ((src, h), (first, g))
        )
        spacing = math.isclose(g.dx, h.dx, rel_tol=1e-3) and math.isclose(g.dy, h.dy, rel_tol=1e-3)
        if g.kind != h.kind or g.x_units != h.x_units or not spacing:
            raise GridError(
                f"{shown} is not on the grid of {against}; the files are pooled into one "
                "training set, whose factor must mean one resolution: regrid it to that grid "
                "(flexdownscale.data.regrid) or leave it out"
            )
        moved = [
            f"{axis} from {getattr(h, axis + '0'):g} (not {getattr(g, axis + '0'):g})"
            for axis in ("y", "x")
            if not math.isclose(getattr(g, axis + "0"), getattr(h, axis + "0"), abs_tol=1e-3 * g.dx)
        ]
        if moved or (g.ny, g.nx) != (h.ny, h.nx):
            warnings.warn(
                f"{shown} covers other cells than {against}: "
                + (", ".join(moved) or "another size")
                + "; training uses both, but the model folder's grid.json records the first "
                "file's grid, so inference compares its input with that domain and lattice only "
                "(put the file of the domain to record first, or regrid the files to one grid)",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
    _warn_repeated_fields(sources)


def _warn_repeated_fields(sources: Sequence[_Source]) -> None:
    """Warn when two files share time labels and hold the same field at the first of them
    (overlapping extracts of one record: its fields are trained on twice, and with
    ``split_dim = "file"`` a validation file repeats training fields). Files sharing times with
    other fields (another run, another Reynolds number) are what they should be.

    Each warning about two files is given once per process: a trainer opens the same files for
    its training and validation splits, which printed it twice, word for word (Python's own
    once-per-line rule does not hold once any code enters ``warnings.catch_warnings``). In-memory
    datasets are warned about every time (their labels, ``dataset 0``, name no file).
    """
    parts = [
        (k, labels)
        for k, src in enumerate(sources)
        if src.time_dim and (labels := src.labels(src.time_dim)) is not None
    ]
    if len(parts) < 2:
        return
    values = pd.Index(parts[0][1]).append([pd.Index(labels) for _, labels in parts[1:]])
    owner = np.concatenate([np.full(len(labels), k) for k, labels in parts])
    position = np.concatenate([np.arange(len(labels)) for _, labels in parts])
    codes, _ = pd.factorize(values)
    _, first = np.unique(codes, return_index=True)
    origin = first[codes]  # where each label occurs first (its own index when it is new)
    shared = np.flatnonzero(owner[origin] != owner)
    pair = owner[origin[shared]] * len(sources) + owner[shared]
    found, first_of_pair = np.unique(pair, return_index=True)
    for p in found[np.argsort(first_of_pair)]:  # pairs in the order they are met
        entries = shared[pair == p]
        a, b = sources[int(owner[origin[entries[0]]])], sources[int(owner[entries[0]])]
        pj, pk = int(position[origin[entries[0]]]), int(position[entries[0]])

        def field(src: _Source, pos: int) -> np.ndarray:
            index = {d: 0 for d in src.sample_dims} | {str(src.time_dim): pos}
            return src._read_block(index, slice(0, src.ny), slice(0, src.nx))

        if not np.array_equal(field(a, pj), field(b, pk), equal_nan=True):
            continue
        count, first_time, last_time = len(entries), values[entries[0]], values[entries[-1]]
        message = (
            f"{b.where!r} repeats {count} time{'s' if count != 1 else ''} of "
            f"{a.where!r} ({_shown_label(first_time)} to {_shown_label(last_time)}) with the same "
            'fields: they are trained on twice (and with split_dim = "file" held-out fields '
            "may be training fields); leave the repeated times out of one of the files"
        )
        in_files = a._path is not None and b._path is not None
        _warn_once(("repeats", message) if in_files else None, message)


def _warn_repeated_labels(
    src: _Source, sel: Mapping[str, np.ndarray], split_dim: str, split: str = "train"
) -> None:
    """Warn when the fields ``sel`` selects from ``src`` for ``split`` repeat labels of
    ``split_dim`` (its time dim for ``split_dim = "file"``) with the same field at the first
    repeat (one record written twice into the file: in the train split its fields are trained
    on twice, as with two files that overlap, :func:`_warn_repeated_fields`; in another split
    they are scored twice)."""
    dim = split_dim if split_dim in src.sample_dims else src.time_dim
    labels = src.labels(dim) if dim in src.sample_dims else None
    if labels is None:
        return
    positions = np.asarray(sel.get(dim, np.arange(len(labels))))
    chosen = pd.Index(labels[positions])
    repeats = chosen.duplicated()
    if not repeats.any():
        return
    first = chosen[repeats][0]
    pj, pk = (int(p) for p in positions[np.flatnonzero(chosen == first)[:2]])

    def field(pos: int) -> np.ndarray:
        index = {d: 0 for d in src.sample_dims} | {dim: pos}
        return src._read_block(index, slice(0, src.ny), slice(0, src.nx))

    if not np.array_equal(field(pj), field(pk), equal_nan=True):
        return
    count = int(repeats.sum())
    effect = (
        "each repeated field is trained on (and counted in the statistics) twice"
        if split == "train"
        else f"each repeated field counts twice in what the {split} split measures"
    )
    warnings.warn(
        f"{src.where!r} repeats {count} {dim!r} label{'s' if count != 1 else ''} among the "
        f"fields selected for the {split} split (the first, {_shown_label(first)}, at "
        f"positions {pj} and {pk} with the same field): {effect}. Drop the repeats first: "
        f"ds.drop_duplicates({dim!r}) (for a file, write it that way: "
        f"xr.open_dataset(path).drop_duplicates({dim!r}).to_netcdf(new_path))",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def _label_positions(
    labels: np.ndarray | None, size: int, sel: Sequence[Any], where: str, dim: str = "time"
) -> tuple[np.ndarray, list[Any]]:
    """Positions that ``sel`` (a ``[start, stop]`` range or a list of labels) selects in one
    source (labels along ``dim``), and the listed labels it does not hold (a range leaves none
    missing). Selecting nothing is not an error here: the labels may be in another source."""
    missing: list[Any] = []
    index = pd.Index(labels) if labels is not None else pd.RangeIndex(size)
    # a TOML date (``2019-03-17`` unquoted) selects like the string: a whole day as a stop
    values = [
        v.isoformat()
        if isinstance(v, datetime.date) and not isinstance(v, datetime.datetime)
        else v
        for v in sel
    ]
    if len(values) == 2:
        if not index.is_monotonic_increasing:
            after = int(np.flatnonzero(np.asarray(index[1:] < index[:-1]))[0])
            raise DataError(
                f"{where}: a [start, stop] range needs increasing labels, but the {dim!r} labels "
                f"decrease ({_shown_label(index[after])} is followed by "
                f"{_shown_label(index[after + 1])}); sort the data along {dim!r} first: "
                f"ds.sortby({dim!r}) (for a file, write it sorted: "
                f"xr.open_dataset(path).sortby({dim!r}).to_netcdf(sorted_path)), or list the "
                "labels to select instead of a range"
            )
        try:  # inclusive; a date string as stop includes that whole day (pandas partial strings)
            positions = np.arange(size)[index.slice_indexer(values[0], values[1])]
        except (TypeError, KeyError, ValueError) as err:
            raise DataError(
                f"{where}: cannot select the range {_shown_labels(sel)} ({err}); give the "
                "start and stop as labels of the data's kind (ISO dates or times for a time "
                "axis, numbers for a numbered one)"
            ) from err
    else:
        if isinstance(index, pd.DatetimeIndex):
            return _time_list_positions(index, values, sel, where, dim)
        positions = _exact_positions(index, values, where, dim)
        missing = [v for v, p in zip(sel, positions) if p < 0]
        positions = positions[positions >= 0]
    return np.unique(positions), missing


def _exact_positions(index: pd.Index, values: Sequence[Any], where: str, dim: str) -> np.ndarray:
    """The position of each label of ``values`` in ``index`` (-1 where it has none). Labels
    of ``index`` may repeat (a record written twice): a label listed that names two fields is
    refused, as the list cannot tell which one it means; the others select as usual."""
    if index.is_unique:
        return np.asarray(index.get_indexer(values))
    positions = np.full(len(values), -1)
    for i, value in enumerate(values):
        try:
            found = index.get_loc(value)
        except (KeyError, TypeError):  # not a label here, or not one of the labels' kind
            continue
        if isinstance(found, int | np.integer):
            positions[i] = int(found)
            continue
        hits = np.arange(len(index))[found]  # a slice or a mask: the label repeats
        if hits.size == 1:
            positions[i] = int(hits[0])
            continue
        shown = ", ".join(str(int(h)) for h in hits[:4]) + (", ..." if hits.size > 4 else "")
        raise DataError(
            f"{where}: the {dim!r} label {_shown_label(index[hits[0]])} is there "
            f"{hits.size} times (at positions {shown}), so the list cannot tell which field it "
            f"names. Drop the repeats first: ds.sortby({dim!r}).drop_duplicates({dim!r}) (for "
            f"a file, write it that way: xr.open_dataset(path).sortby({dim!r})"
            f".drop_duplicates({dim!r}).to_netcdf(new_path))"
        )
    return positions


def _time_list_positions(
    index: pd.DatetimeIndex,
    values: Sequence[Any],
    sel: Sequence[Any],
    where: str,
    dim: str = "time",
) -> tuple[np.ndarray, list[Any]]:
    """Positions of a list of times in ``index``, and the entries that match none. An entry
    without a time of day (a date ``2019-03-18``, a month ``2019-03``, a year) selects every
    time within that day, month or year, as ``ds.sel(time="2019-03")`` does, repeated labels
    included (as a range does); an entry with one (``2019-03-18T06``) selects that time
    exactly, and is refused when that time is there twice (:func:`_exact_positions`)."""
    found: list[np.ndarray] = []
    missing: list[Any] = []
    for value, given in zip(values, sel):
        try:
            period = pd.Period(value) if isinstance(value, str) else None
            stamp = pd.Timestamp(value) if isinstance(value, str | np.datetime64) else value
        except ValueError as err:  # pandas' DateParseError is a ValueError
            raise DataError(
                f"{where}: cannot read {_shown_labels(sel)} as times ({err}); write them "
                "as ISO dates or times, e.g. 2019-03-18 or 2019-03-18T06"
            ) from err
        if period is not None and period.end_time - period.start_time >= pd.Timedelta(hours=23):
            try:  # a whole day, month or year
                inside = (index >= period.start_time) & (index <= period.end_time)
            except TypeError:  # a time zone on the labels: compare as a label
                inside = None
            if inside is not None:
                hits = np.flatnonzero(np.asarray(inside))
                found.append(hits)
                if not hits.size:
                    missing.append(given)
                continue
        position = int(_exact_positions(index, [stamp], where, dim)[0])
        if position < 0:
            missing.append(given)
        else:
            found.append(np.array([position]))
    positions = np.concatenate(found) if found else np.array([], int)
    return np.unique(positions.astype(int)), missing


@keyword_hints
def split_positions(
    sources: Sequence[_Source],
    split_dim: str,
    splits: Mapping[str, Sequence[Any]],
) -> dict[str, list[dict[str, np.ndarray] | None]]:
    """Resolve split selections to positions per source, checking that splits are disjoint.

    Parameters
    ----------
    sources : sequence of sources
        The opened data sources (one per file or dataset), in order.
    split_dim : str
        The dimension the splits select along, or ``"file"`` (splits list file stems).
    splits : mapping of str to sequence
        Split name -> selection (labels, slices of labels, or file stems); an empty
        selection leaves the split empty.

    Returns
    -------
    dict
        For each split name, one entry per source: ``None`` (source not in the split) or a
        mapping ``{dim: positions}`` (empty mapping: the whole source).

    Raises
    ------
    DataError
        When a selection is invalid, selects nothing, or two splits overlap.

    Examples
    --------
    The sources of a dataset of three daily fields; the last day held out for validation,
    the empty train selection takes the rest (positions along ``time``, one entry per
    source), and splits that share a day are refused:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"t2m": (("time", "y", "x"), np.zeros((3, 8, 8)), {"units": "K"})},
    ...     coords={"time": pd.date_range("2020-01-01", periods=3, freq="D"),
    ...             "y": ("y", np.arange(8.0), {"units": "km"}),
    ...             "x": ("x", np.arange(8.0), {"units": "km"})})
    >>> sources = SuperResolutionDataset(ds, factor=4, crop_size=8).sources
    >>> split_positions(sources, "time", {"train": [], "validation": ["2020-01-03"]})
    {'train': [{'time': array([0, 1])}], 'validation': [{'time': array([2])}]}
    >>> split_positions(sources, "time", {"train": ["2020-01-01", "2020-01-03"],
    ...                                   "validation": ["2020-01-03"]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.DataError: the train and validation splits overlap along 'time' ...
    """
    names = [n for n, sel in splits.items() if sel]
    out: dict[str, list[dict[str, np.ndarray] | None]] = {n: [] for n in splits}
    if split_dim == "file":
        file_labels = [s.label for s in sources]
        owner: dict[int, str] = {}
        for name in names:
            chosen = set()
            for entry in splits[name]:
                if isinstance(entry, int | np.integer) and not isinstance(entry, bool):
                    if not 0 <= int(entry) < len(sources):
                        raise DataError(
                            f"{name}: file index {entry} out of range 0..{len(sources) - 1}"
                        )
                    chosen.add(int(entry))
                elif str(entry) in file_labels:
                    chosen.add(file_labels.index(str(entry)))
                else:
                    matches = [i for i, s in enumerate(sources) if str(entry) in s.label]
                    if len(matches) != 1:
                        raise DataError(
                            f"{name}: file {entry!r} not found (or ambiguous); files are {file_labels}"
                        )
                    chosen.add(matches[0])
            for i in chosen:
                if i in owner:
                    raise DataError(
                        f"splits {owner[i]!r} and {name!r} both contain file {file_labels[i]!r}; "
                        f"expected disjoint train/validation/test splits"
                    )
                owner[i] = name
        for name in splits:
            if name in names:
                out[name] = [{} if owner.get(i) == name else None for i in range(len(sources))]
            elif name == "train":
                out[name] = [None if i in owner else {} for i in range(len(sources))]
            else:
                out[name] = [None] * len(sources)
        return out
    found = dict.fromkeys(names, 0)  # positions selected over all sources
    not_found: dict[str, list[Any] | None] = dict.fromkeys(names)  # labels in no source
    extents: list[str] = []  # each source's first and last label, for the errors
    for src in sources:
        if split_dim not in src.sample_dims:
            raise DataError(
                f"split_dim {split_dim!r} is not a dimension of {src.label!r} (sample dims "
                f"{src.sample_dims}); expected one of them or 'file'"
            )
        size = src.sample_sizes[src.sample_dims.index(split_dim)]
        labels = src.labels(split_dim)
        index = labels if labels is not None else np.arange(size)
        if len(index):
            extents.append(f"{_shown_label(index[0])} to {_shown_label(index[-1])} in {src.label}")
        resolved = {}
        for n in names:
            resolved[n], missing = _label_positions(
                labels,
                size,
                splits[n],
                f"{_setting(n, f'splits[{n!r}]')}, in {src.label!r}",
                split_dim,
            )
            found[n] += resolved[n].size
            not_found[n] = (
                missing if not_found[n] is None else [v for v in not_found[n] if v in missing]
            )
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                common = np.intersect1d(resolved[a], resolved[b])
                if common.size:
                    shown = labels[common[:3]] if labels is not None else common[:3]
                    raise DataError(
                        f"the {a} and {b} splits overlap along {split_dim!r} in {src.label!r} "
                        f"({common.size} positions, e.g. {_shown_labels(list(shown))}): "
                        f"{_setting(a, f'splits[{a!r}]')} and {_setting(b, f'splits[{b!r}]')} "
                        "must select disjoint labels; change one so that they do not share any"
                    )
        taken = (
            np.unique(np.concatenate([resolved[n] for n in names])) if names else np.array([], int)
        )
        for name in splits:
            if name in resolved:
                # a source the selection does not reach is not in the split (one file per month)
                out[name].append({split_dim: resolved[name]} if resolved[name].size else None)
            elif name == "train":
                rest = np.setdiff1d(np.arange(size), taken)
                out[name].append({split_dim: rest} if rest.size else None)
            else:
                out[name].append(None)
    for name in names:
        ranges = "; ".join(extents)
        setting = _setting(name, f"splits[{name!r}]")
        if not_found[name]:
            raise DataError(
                f"the {name} split: {setting} lists {_shown_labels(not_found[name])}, which are "
                f"not {split_dim!r} labels of any source (they run {ranges}); list labels the "
                f"data hold, or give a [start, stop] range{_no_validation_hint(name)}"
            )
        if found[name] == 0:
            selection = list(splits[name])
            reversed_range = ""
            if len(selection) == 2:
                try:
                    start, stop = (pd.Timestamp(str(v)) for v in selection)
                except (TypeError, ValueError):
                    start = stop = None
                if start is not None and start > stop:
                    reversed_range = " (its start is after its stop)"
            raise DataError(
                f"the {name} split: {setting} = {_shown_labels(selection)}{reversed_range} "
                f"selects nothing along {split_dim!r} in any source (the labels run {ranges}); "
                f"give a [start, stop] range or labels within that{_no_validation_hint(name)}"
            )
    return out


def _shown_label(value: Any) -> str:
    """A label as a user writes it: ``2019-03-01T00:00`` for times, ``2019-03-01`` for a date."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, np.datetime64 | datetime.datetime):  # pd.Timestamp is a datetime
        return pd.Timestamp(value).isoformat(timespec="minutes")
    if hasattr(value, "calendar") and hasattr(value, "isoformat"):  # a cftime date
        return str(value.isoformat(timespec="minutes"))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _shown_labels(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_shown_label(v) for v in values) + "]"


class _Spacing(NamedTuple):
    """How the frames of one source step along its time dim (see :func:`_frame_spacing`)."""

    even: np.ndarray  # (size - 1,): consecutive positions one step of the data apart
    steps: np.ndarray  # (size - 1,): their spacings (empty without time labels)
    step: tuple[float, str] | None  # the data's step and its units; None: none known
    timed: bool  # whether the labels are times (or numbers); False: positions only


def _frame_spacing(src: _Source, tdim: str) -> _Spacing:
    """Check that the ``tdim`` labels of ``src`` strictly increase, and find the data's step:
    the most common spacing of consecutive labels (to 0.1%; seconds for times, the
    coordinate's own units for numbers). ``even`` marks the consecutive pairs of positions that
    lie that step apart (to 0.1%). Sources without time labels (HDF5 files without coordinates,
    a dimension without a coordinate, labels that are neither times nor numbers) keep the
    positional rule: every pair of consecutive positions counts as one step.

    Raises
    ------
    DataError
        When two consecutive labels repeat or decrease (an unsorted or duplicated time axis):
        forecast windows would pair frames out of time order.
    """
    size = src.sample_sizes[src.sample_dims.index(tdim)]
    labels = src.labels(tdim)
    positional = _Spacing(np.ones(max(size - 1, 0), bool), np.zeros(0), None, False)
    if labels is None:
        return positional
    ds = getattr(src, "ds", None)
    attrs = ds[tdim].attrs if ds is not None and tdim in ds.coords else {}
    try:
        steps, units = _time_steps(labels, attrs)
    except (TypeError, AttributeError):  # labels that do not subtract (names): positions
        return positional
    if steps.size == 0:
        return _Spacing(np.ones(0, bool), steps, None, True)
    wrong = np.flatnonzero(~(steps > 0))
    if wrong.size:
        i = int(wrong[0])
        first, then = _shown_label(labels[i]), _shown_label(labels[i + 1])
        what = "repeats" if steps[i] == 0 else "goes back in time"
        raise DataError(
            f"the {tdim!r} labels of {src.label!r} are not strictly increasing: {first} is "
            f"followed by {then} (the {tdim!r} axis {what} at positions {i} and {i + 1}); a "
            f"forecast window pairs each frame with the one {tdim!r} steps after it, so the "
            f"frames must be in time order, each time once. Sort and deduplicate the data: "
            f"ds.sortby({tdim!r}).drop_duplicates({tdim!r}) (for a file, write it that way: "
            f"xr.open_dataset(path).sortby({tdim!r}).drop_duplicates({tdim!r})"
            ".to_netcdf(sorted_path))"
        )
    # the most common spacing, binned to 0.1%; a tie goes to the shorter spacing
    bins = np.round(np.log(steps) / 1e-3)
    values, counts = np.unique(bins, return_counts=True)
    step = float(np.median(steps[bins == values[np.argmax(counts)]]))
    return _Spacing(np.isclose(steps, step, rtol=1e-3, atol=0.0), steps, (step, units), True)


def _no_validation_hint(split: str) -> str:
    """The way out of a validation split that selects nothing, in a training config."""
    if split == "validation" and _FROM_CONFIG.get():
        return "; or train without validation: eval_every = 0 with data.validation = []"
    return ""


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class _FieldDataset(torch.utils.data.Dataset):
    """Shared reader: sources, split selection, normalization, seeded crops."""

    def __init__(
        self,
        data: Any,
        *,
        variables: Sequence[str] | None,
        split: Split,
        split_dim: str,
        splits: Mapping[str, Sequence[Any]] | None,
        normalizer: Normalizer | Literal["fit"] | None,
        transforms: Mapping[str, Transform] | Literal["auto"],
        condition: str | None,
        condition_scale: float,
        crop: Crop,
        crops_per_field: int,
        seed: int,
        format: Format,
        dims: Mapping[str, str] | None,
        nan_fields: NanFields | None,
    ) -> None:
        _check_option("split", split, Split)
        _check_option("crop", crop, Crop)
        if nan_fields is not None:
            _check_option("nan_fields", nan_fields, NanFields)
        if crops_per_field < 1:
            raise ConfigError(f"crops_per_field={crops_per_field}; expected a positive integer")
        if not (condition_scale != 0 and math.isfinite(condition_scale)):
            raise ConfigError(
                f"condition_scale={condition_scale}; expected a finite non-zero number"
            )
        self.sources = _open_sources(
            data, variables=list(variables) if variables else None, format=format, dims=dims
        )
        self.variables: tuple[str, ...] = self.sources[0].channels
        self.split = split
        self._from_config = _FROM_CONFIG.get()  # item-time messages name data.* keys
        self.split_dim = split_dim
        self.crop = crop
        self.crops_per_field = int(crops_per_field)
        self.seed = int(seed)
        # the epoch lives in shared memory: DataLoader workers kept from one epoch to the next
        # (persistent_workers) hold a copy of the dataset made at their start, and read the
        # epoch set_epoch gives in the main process from there
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.condition = condition
        self.condition_scale = float(condition_scale)
        self.nan_fields: NanFields | None = nan_fields
        #: The fields left out for holding NaN (``nan_fields="drop"``): one dict per field with
        #: its ``source`` and its label along every sample dim, as :meth:`locate` gives them.
        self.dropped_fields: list[dict[str, Any]] = []
        self._split_fields = 0  # fields of the split before any was dropped
        self._nan_fix = ""  # how the split's NaNs lie and their fix (_judge)
        if splits is not None:
            for key in splits:
                if key not in get_args(Split):
                    raise ConfigError(f"unknown split {key!r}; expected train, validation, test")
            full = {n: tuple(splits.get(n, ())) for n in get_args(Split)}
            self._positions = split_positions(self.sources, split_dim, full)
            self._selection = self._positions[split]
            self._splits: dict[str, tuple[Any, ...]] | None = full
        else:
            self._splits = None
            self._positions = None
            self._selection = [{} for _ in self.sources]
        # fitted when the split opens (_open_split), in the same pass as the NaN check
        self._fit_transforms = transforms if normalizer == "fit" else None
        self.normalizer: Normalizer | None = None
        if normalizer != "fit":
            self._use_normalizer(normalizer)
        if condition is not None:
            for src, sel in zip(self.sources, self._selection):
                if sel is not None:
                    src.condition(condition, {d: 0 for d in src.sample_dims})
                    _warn_condition_disagreement(src, condition)

    # -- helpers ------------------------------------------------------------------------------

    def _use_normalizer(self, normalizer: Any) -> None:
        if normalizer is not None:
            if not isinstance(normalizer, Normalizer):
                raise ConfigError(
                    f"normalizer={normalizer!r}; expected a Normalizer, 'fit' or None"
                )
            missing = [v for v in self.variables if v not in normalizer.stats]
            if missing:
                raise MissingVariableError(
                    f"the normalizer has no statistics for {missing}; it knows "
                    f"{list(normalizer.stats)}"
                )
        self.normalizer = normalizer

    def _open_split(
        self,
        entries: Sequence[tuple[int, list[np.ndarray]]],
        regions: Sequence[tuple[Any, Any]],
        used: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray | None]:
        """Fit the normalizer (when asked) and check the split's fields, in one pass.

        ``entries`` are the (source, sample grid) of the split, ``regions`` the (rows, cols)
        of each source that items read, ``used`` (optional) a mask over each grid of the fields
        items read. Returns, per entry, the mask of the fields holding NaN (``None`` when the
        check is off); raises for NaN under ``nan_fields="error"`` and for values <= -1 under
        log1p, and records the fields to drop under ``nan_fields="drop"``.
        """
        plan = None
        lazy: dict[tuple[int, int], Any] = {}

        def channels(k: int, sel: dict[str, np.ndarray]) -> Any:
            # one lazy dataset per (source, selection): the fit and the check share its reads
            key = (k, id(sel))
            if key not in lazy:
                lazy[key] = self.sources[k].lazy_channels(sel)
            return lazy[key]

        if self._fit_transforms is not None:
            train = self._positions["train"] if self._positions is not None else self._selection
            parts = [channels(k, sel) for k, sel in enumerate(train) if sel is not None]
            if not parts:
                raise DataError(self._empty_train_message())
            plan = _FitPlan(
                parts,
                variables=list(self.variables),
                transforms=self._fit_transforms,
                in_config=_FROM_CONFIG.get(),  # messages name data.transforms
                grids=[self.sources[k].grid_dims for k, sel in enumerate(train) if sel is not None],
                scope=" in the train split" if self._positions is not None else "",
            )
            transforms = plan.transforms
        elif self.normalizer is not None:
            transforms = {v: self.normalizer.stats[v].transform for v in self.variables}
        else:
            transforms = {}
        checks = []
        axes: list[tuple[np.ndarray | None, np.ndarray | None]] = []
        # precipitation-like variables (their NaNs can be filled with 0), for the messages
        precip = {name for name, t in transforms.items() if t == "log1p"}
        if self.nan_fields is not None:
            for i, ((k, _), (rows, cols)) in enumerate(zip(entries, regions)):
                src = self.sources[k]
                ydim, xdim = src.grid_dims
                data = channels(k, self._selection[k])
                ys, xs = (
                    np.asarray(data[d].values)[r] if d in data.coords else None
                    for d, r in ((ydim, rows), (xdim, cols))
                )
                axes.append((ys, xs))
                use = None if used is None else xr.DataArray(used[i], dims=src.sample_dims)
                per = {}
                for name in self.variables:
                    if auto_transform(data[name]) == "log1p":
                        precip.add(name)
                    a = data[name].isel({ydim: rows, xdim: cols})
                    if a.chunks is None:  # read once for the reductions below (dask shares)
                        a = a.compute()
                    null = a.isnull()
                    nan = null.sum((ydim, xdim))
                    # per cell, the (read) fields where it is NaN: in the same reads, this tells
                    # a fixed mask (every field with NaN has them in the same cells) apart
                    sample = [d for d in null.dims if d not in (ydim, xdim)]
                    hits = null if use is None else null & use
                    cells = (hits.sum(sample) if sample else hits.astype(int)).transpose(ydim, xdim)
                    # lowest and highest per field: infinite values and fill values
                    ends = (a.min((ydim, xdim), skipna=True), a.max((ydim, xdim), skipna=True))
                    low = (
                        (
                            (a <= -1).sum((ydim, xdim)),
                            ends[0],
                            (a < 0).sum((ydim, xdim)),  # negative: warned about
                        )
                        if transforms.get(name) == "log1p"
                        else None
                    )
                    per[name] = (nan, low, cells, ends)
                checks.append(per)
        fitted, computed = dask.compute(plan.lazy if plan is not None else None, checks)
        if self.nan_fields is not None:
            self._refuse_unusable(entries, computed, used, None)
        if plan is not None:
            self._use_normalizer(Normalizer(plan.finish(fitted)))
        if self.nan_fields is not None and self.normalizer is not None:
            self._refuse_unusable(entries, computed, used, self.normalizer)
        self._split_fields = sum(
            int(np.prod([g.size for g in grid])) if use is None else int(use.sum())
            for (_, grid), use in zip(entries, used or [None] * len(entries))
        )
        if self.nan_fields is None:
            return [None] * len(entries)
        return self._judge(entries, computed, used, precip, axes)

    def _refuse_unusable(
        self,
        entries: Sequence[tuple[int, list[np.ndarray]]],
        computed: Sequence[Mapping[str, Any]],
        used: Sequence[np.ndarray] | None,
        normalizer: Normalizer | None,
    ) -> None:
        """Refuse the split's fields (where items read) that hold infinite values; with a
        ``normalizer``, those whose lowest or highest value is a fill value (a number of
        :data:`~flexdownscale.data.normalize.FILL_NUMBERS` or one of at least 1e20) far
        from the statistics (the train split's, for a validation split: its scores would be
        NaN or meaningless)."""
        several = len({k for k, _ in entries}) > 1
        # per variable: fields, the lowest and highest offending value, the first fields
        found: dict[str, list[Any]] = {}
        for i, ((k, grid), per) in enumerate(zip(entries, computed)):
            src = self.sources[k]
            shape = [g.size for g in grid]
            use = np.ones(shape, bool) if used is None else np.asarray(used[i], bool)
            use = use.ravel()
            for name in self.variables:
                lo, hi = (_per_field(v, src, shape).ravel().astype(float) for v in per[name][3])
                if normalizer is None:
                    hit = (np.isinf(lo) | np.isinf(hi)) & use
                    bad = np.concatenate([lo[hit & np.isinf(lo)], hi[hit & np.isinf(hi)]])
                else:
                    s = normalizer.stats[name]
                    bad_lo, bad_hi = (far_fills(v, s) for v in (lo, hi))
                    hit = (bad_lo | bad_hi) & use
                    bad = np.concatenate([lo[hit & bad_lo], hi[hit & bad_hi]])
                j = np.flatnonzero(hit)
                if not j.size:
                    continue
                entry = found.setdefault(name, [0, math.inf, -math.inf, []])
                entry[0] += j.size
                entry[1] = min(entry[1], float(bad.min()))
                entry[2] = max(entry[2], float(bad.max()))
                entry[3] += [
                    self._field_text(src, grid, int(f), several)
                    for f in j[: _SHOWN - len(entry[3])]
                ]
        if not found:
            return
        name, (n, low, high, shown) = next(iter(found.items()))
        fields = f"{n} field{'s' if n != 1 else ''}"
        if normalizer is None:
            signs = " and ".join(
                sign for sign, there in (("-inf", low < 0), ("+inf", high > 0)) if there
            )
            raise DataError(
                f"the {self.split} split holds infinite values: variable {name!r} has {signs} "
                f"in {fields} at {_listing(shown, n)}. They cannot be normalized (a train "
                "split's mean and std would be infinite or NaN, a validation split's scores "
                f"all NaN): {_inf_advice(name)}"
            )
        s = normalizer.stats[name]
        value = f"{low:g}" if low == high else f"values from {low:g} to {high:g}"
        raise DataError(
            f"the {self.split} split: variable {name!r} holds {value} in {fields} at "
            f"{_listing(shown, n)}, far from the statistics it is normalized with ({s.describe(name)}"
            f"). That looks like a fill value the file does not declare (no _FillValue "
            "attribute); in a validation split it would leave every score NaN or meaningless. "
            f"{_fill_advice(name, low, high)}"
        )

    def _judge(
        self,
        entries: Sequence[tuple[int, list[np.ndarray]]],
        computed: Sequence[Mapping[str, Any]],
        used: Sequence[np.ndarray] | None,
        precip: set[str] | None = None,
        axes: Sequence[tuple[np.ndarray | None, np.ndarray | None]] | None = None,
    ) -> list[np.ndarray | None]:
        """Masks of the fields with NaN from the computed counts; refuse or record them.

        Also tells how the NaNs lie (:attr:`_nan_fix`): a fixed mask (every field with NaN of a
        source has them in the same cells: each cell is NaN in none or in all of those fields),
        or cells that change between fields; and whether they are in every field.
        """

        grid_array = _per_field
        several = len({k for k, _ in entries}) > 1
        masks: list[np.ndarray | None] = []
        # per variable: fields with NaN, NaN values, labels of the first fields
        nans: dict[str, list[Any]] = {name: [0, 0, []] for name in self.variables}
        # per variable: values <= -1 under log1p, the lowest, fields holding them, their labels
        domain: dict[str, list[Any]] = {name: [0, math.inf, 0, []] for name in self.variables}
        # the same for the negative values under log1p (those above -1 are warned about)
        negative: dict[str, list[Any]] = {name: [0, math.inf, 0, []] for name in self.variables}
        # per variable: cells NaN in every field with NaN (of each source), cells of the grid
        masked: dict[str, list[int]] = {name: [0, 0] for name in self.variables}
        fixed = True
        # per entry: the cells masked in some variable (None: the entry has no NaN)
        cut: list[np.ndarray | None] = []
        for i, ((k, grid), per) in enumerate(zip(entries, computed)):
            src = self.sources[k]
            shape = [g.size for g in grid]
            use = np.ones(shape, bool) if used is None else np.asarray(used[i], bool)
            bad = np.zeros(shape, bool)
            union = None
            for name in self.variables:
                count = grid_array(per[name][0], src, shape) * use
                bad |= count > 0
                hit = np.flatnonzero(count.ravel())
                if hit.size:
                    cells = np.asarray(per[name][2])
                    fixed = fixed and bool(np.all((cells == 0) | (cells == hit.size)))
                    here = cells == hit.size
                    masked[name][0] += int(here.sum())
                    masked[name][1] += here.size
                    union = here if union is None else union | here
                nans[name][0] += hit.size
                nans[name][1] += int(count.sum())
                nans[name][2] += [
                    self._field_text(src, grid, j, several)
                    for j in hit[: _SHOWN - len(nans[name][2])]
                ]
            for name in self.variables:
                if per[name][1] is None:
                    continue
                lowest = grid_array(per[name][1][1], src, shape).ravel()
                for found, counts in ((domain, per[name][1][0]), (negative, per[name][1][2])):
                    below = grid_array(counts, src, shape) * use * ~bad
                    hit = np.flatnonzero(below.ravel())
                    if hit.size:
                        found[name][0] += int(below.sum())
                        found[name][1] = min(found[name][1], float(np.nanmin(lowest[hit])))
                        found[name][2] += hit.size
                        found[name][3] += [
                            self._field_text(src, grid, j, several)
                            for j in hit[: _SHOWN - len(found[name][3])]
                        ]
            masks.append(bad)
            cut.append(union)
            if self.nan_fields == "drop":
                for j in np.flatnonzero(bad.ravel()):
                    self.dropped_fields.append(self._field_labels(src, grid, int(j)))
        with_nan = {name: v for name, v in nans.items() if v[0]}
        fields = sum(int(m.sum()) for m in masks if m is not None)
        everywhere = bool(with_nan) and fields >= self._split_fields
        self._nan_fix = self._nan_remedy(
            with_nan, masked if fixed else None, precip or set(), entries, cut, axes
        )
        if with_nan and self.nan_fields == "error":
            parts = [
                f"variable {name!r} in {n} field{'s' if n != 1 else ''} ({values} NaN "
                f"value{'s' if values != 1 else ''}) at {_listing(shown, n)}"
                for name, (n, values, shown) in with_nan.items()
            ]
            if not everywhere:
                raise DataError(
                    f"the {self.split} split holds NaN in {fields} of its "
                    f"{self._split_fields} fields (samples): {'; '.join(parts)}. NaNs would "
                    f"reach the training tensors (the first crop that meets one would stop the "
                    f'run). Leave those fields out with data.nan_fields = "drop" in the run\'s '
                    f'TOML (nan_fields="drop" in Python; they are reported), or fill the NaNs '
                    f"first (e.g. ds.fillna(0.0) for precipitation)"
                )
            raise DataError(
                f"the {self.split} split holds NaN in every one of its {self._split_fields} "
                f"fields (samples): {'; '.join(parts)}. NaNs would reach the training tensors, "
                f'and leaving the fields with NaN out (data.nan_fields = "drop") would leave '
                f"none. {self._nan_fix}"
            )
        bad_domain = {name: v for name, v in domain.items() if v[0]}
        if bad_domain:
            parts = [
                f"variable {name!r} has {n} value{'s' if n != 1 else ''} <= -1 (down to "
                f"{low:g}) at {_listing(shown, fields)}"
                for name, (n, low, fields, shown) in bad_domain.items()
            ]
            name = next(iter(bad_domain))
            raise DataError(
                f"the {self.split} split: {'; '.join(parts)}. The normalizer's log1p transform "
                "needs values > -1; these would be NaN in the tensors. Clean the data first "
                f"(precipitation is not negative: e.g. ds[{name!r}].clip(min=0)), or normalize "
                "without log1p: "
                f"{_no_log1p_hint(name, _FROM_CONFIG.get())}"
            )
        self._warn_negative({name: v for name, v in negative.items() if v[0]})
        return masks

    def _warn_negative(self, negative: Mapping[str, Sequence[Any]]) -> None:
        """Warn once for the split's negative values of variables normalized with log1p
        (precipitation-like, non-negative: values > -1 pass the transform), per variable:
        ``(count, lowest, fields, first fields' labels)``."""
        for name, (n, low, fields, shown) in negative.items():
            clip = f"ds[{name!r}].clip(min=0)"
            warnings.warn(
                f"the {self.split} split: variable {name!r}, normalized with log1p as a "
                f"non-negative (precipitation-like) variable, has {n} negative "
                f"value{'s' if n != 1 else ''} (down to {low:g}) in {fields} "
                f"field{'s' if fields != 1 else ''}, at {_listing(shown, fields)}. They are "
                "used as they are: log1p takes them (to values below 0, the variable's lower "
                "bound, where generated fields are clipped), so the model learns from fields "
                f"that dip below 0 there. If they are artefacts (radar and regridded fields "
                f"often have a few), clip them first: {clip}",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )

    def _nan_remedy(
        self,
        with_nan: Mapping[str, Any],
        masked: Mapping[str, list[int]] | None,
        precip: set[str],
        entries: Sequence[tuple[int, list[np.ndarray]]],
        cut: Sequence[np.ndarray | None],
        axes: Sequence[tuple[np.ndarray | None, np.ndarray | None]] | None,
    ) -> str:
        """How the split's NaNs lie and what fixes them when leaving fields out cannot.

        ``masked`` (``None`` when the NaN cells change between fields): per variable, the cells
        NaN in every field holding NaN, and the cells of the grid; ``precip``: the
        precipitation-like variables (log1p), whose NaNs can be filled with 0. ``cut``: per entry, the
        cells masked in some variable; ``axes``: per entry, the (y, x) coordinate values of
        the cells read (``None`` without a coordinate).
        """
        if not with_nan:
            return (
                "fill the NaNs first (e.g. ds.fillna(0.0) for precipitation) or select other fields"
            )
        k0 = next(k for (k, _), c in zip(entries, cut) if c is not None)
        ydim, xdim = self.sources[k0].grid_dims
        fills = []
        for name in with_nan:
            if name in precip:
                fills.append(f"ds[{name!r}] = ds[{name!r}].fillna(0.0)")
            else:
                fills.append(
                    f"ds[{name!r}] = ds[{name!r}].interpolate_na(dim={xdim!r}, "
                    f'fill_value="extrapolate")'
                )
        only_precip = all(name in precip for name in with_nan)
        fill = "; ".join(fills) + (
            "" if only_precip else ", or a climatological value; fillna(0.0) only for precipitation"
        )
        if masked is None:
            return (
                "The NaNs are not in the same cells of every field: fill them first (e.g. "
                f"{fill}; the model learns the filled values as data), or select fields or a "
                "region free of NaN"
            )
        parts = []
        for name in with_nan:
            n, size = masked[name]
            parts.append(f"variable {name!r} at {n} of the {size} grid cells, {n / size:.0%}")
        region = ""
        shown = [(i, c) for i, c in enumerate(cut) if c is not None]
        i, first = shown[0]
        if all(c.shape == first.shape and np.array_equal(c, first) for _, c in shown):
            region = self._unmasked_rectangle(first, (ydim, xdim), axes[i] if axes else None)
        return (
            "The NaNs sit in the same cells of every field that holds them ("
            + "; ".join(parts)
            + "): a fixed mask (land or sea, a radar's coverage). Cut the grid to a region "
            f"without the mask{region}, or fill the masked cells first (e.g. {fill}): the "
            "model learns the filled values as data, so mask its output again (see Masked "
            f"fields in {DOCS_INFERENCE})"
        )

    def _unmasked_rectangle(
        self,
        mask: np.ndarray,
        dims: tuple[str, str],
        axes: tuple[np.ndarray | None, np.ndarray | None] | None,
    ) -> str:
        """Words for the rectangle the unmasked cells fill, when they fill one ("" if not)."""
        free = ~mask
        if not free.any():
            return " (every cell is masked)"
        rows = np.flatnonzero(free.any(axis=1))
        cols = np.flatnonzero(free.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if mask[r0:r1, c0:c1].any():
            return ""
        size = f"{r1 - r0} x {c1 - c0} cells"
        crop = getattr(self, "crop_size", None)
        if crop is not None and min(r1 - r0, c1 - c0) < crop:
            size += f", smaller than crop_size={crop}"
        if axes is None or axes[0] is None or axes[1] is None:
            return (
                f" (the unmasked cells fill the rectangle of rows {r0} to {r1 - 1} and columns "
                f"{c0} to {c1 - 1}, {size})"
            )
        conds, words = [], []
        for dim, values, a, b in ((dims[0], axes[0], r0, r1), (dims[1], axes[1], c0, c1)):
            values = np.asarray(values, dtype=float)
            half = abs(float(np.median(np.diff(values)))) / 2 if values.size > 1 else 0.0
            lo, hi = float(values[a:b].min()) - half, float(values[a:b].max()) + half
            conds.append(f"(ds.{dim} > {lo:g}) & (ds.{dim} < {hi:g})")
            words.append(f"{dim} {lo:g} to {hi:g}")
        return (
            f" (the unmasked cells fill the rectangle {', '.join(words)}, {size}: e.g. "
            f"ds.where({' & '.join(conds)}, drop=True))"
        )

    def _field_labels(
        self,
        src: _Source,
        grid: Sequence[np.ndarray],
        flat: int,
        labels: Sequence[np.ndarray | None] | None = None,
    ) -> dict[str, Any]:
        """The labels of field ``flat`` of ``src``'s sample ``grid``; ``labels``: those of
        ``src.labels`` for each sample dim, when the caller already has them."""
        local = np.unravel_index(flat, [g.size for g in grid]) if grid else ()
        if labels is None:
            labels = [src.labels(dim) for dim in src.sample_dims]
        out: dict[str, Any] = {"source": src.label}
        for dim, of_dim, g, i in zip(src.sample_dims, labels, grid, local):
            pos = int(g[i])
            out[dim] = of_dim[pos] if of_dim is not None else pos
        return out

    def field_labels(self) -> Iterator[dict[str, Any]]:
        """The labels of every field, in item order: what :meth:`locate` gives for the
        field's first item, less the crop.

        Yields
        ------
        dict
            ``source`` (file stem or ``datasetN``) and one entry per sample dimension with its
            label (or position when the dimension has no coordinate).
        """
        for entry in self._fields:
            src = self.sources[entry.k]
            labels = [src.labels(dim) for dim in src.sample_dims]  # once per source
            every = range(int(np.prod([g.size for g in entry.grid])))
            for flat in every if entry.keep is None else entry.keep:
                yield self._field_labels(src, entry.grid, int(flat), labels)

    def _field_text(
        self, src: _Source, grid: Sequence[np.ndarray], flat: int, with_source: bool
    ) -> str:
        return _field_words(self._field_labels(src, grid, flat), with_source)

    def _dropped_listing(self) -> str:
        """The first fields of :attr:`dropped_fields` in words, with how many there are."""
        several = len({f["source"] for f in self.dropped_fields}) > 1
        shown = [_field_words(field, several) for field in self.dropped_fields[:_SHOWN]]
        return _listing(shown, len(self.dropped_fields))

    def dropped_summary(self) -> str | None:
        """The fields left out for holding NaN, in words (``None`` when none was).

        Returns
        -------
        str or None
            How many fields of the split were left out and the first of them, e.g. for a log
            line; ``None`` when none was.
        """
        if not self.dropped_fields:
            return None
        return (
            f'nan_fields = "drop": left out {len(self.dropped_fields)} of the '
            f"{self._split_fields} fields of the {self.split} split, which hold NaN: "
            f"{self._dropped_listing()}"
        )

    def _empty_train_message(self) -> str:
        """Why the normalizer cannot be fitted on an empty training split: which selection
        made it (the train split's, or everything the other splits left) and the labels the
        sources hold along the split dim, with the fixes."""
        splits = self._splits or {}
        train = list(splits.get("train", ()))
        others = {n: list(v) for n, v in splits.items() if n != "train" and v}
        taken = ", ".join(
            f"{_setting(n, f'splits[{n!r}]')} = {_shown_labels(v)}" for n, v in others.items()
        )
        if train:
            setting = _setting("train", "splits['train']")
            made = f"{setting} = {_shown_labels(train)} selects nothing along {self.split_dim!r}"
        else:
            made = (
                "no train selection is given, so the train split is what the other splits "
                f"leave along {self.split_dim!r}, and {taken or 'they'} take all of it"
            )
        if self.split_dim == "file":
            held = f"the files are {[src.label for src in self.sources]}"
        else:
            extents = []
            for src in self.sources:
                if self.split_dim not in src.sample_dims:
                    continue
                labels = src.labels(self.split_dim)
                size = src.sample_sizes[src.sample_dims.index(self.split_dim)]
                index = labels if labels is not None else np.arange(size)
                if len(index):
                    first, last = _shown_label(index[0]), _shown_label(index[-1])
                    extents.append(f"{first} to {last} in {src.label}")
            held = f"the labels run {'; '.join(extents) or 'nowhere'}"
        return (
            f"the training split is empty, so no normalization statistics can be fitted: "
            f"{made} ({held}). Give the train split labels of its own (a [start, stop] range "
            "within those) or leave some labels out of the other splits"
            + (
                ""
                if self._from_config
                else ", or pass a fitted normalizer (normalizer=Normalizer.fit(...) or one read "
                "from a model folder) instead of normalizer='fit'"
            )
        )

    def _fit(
        self,
        selection: Sequence[dict[str, np.ndarray] | None],
        transforms: Mapping[str, Transform] | Literal["auto"],
    ) -> Normalizer:
        parts = [
            src.lazy_channels(sel) for src, sel in zip(self.sources, selection) if sel is not None
        ]
        if not parts:
            raise DataError(self._empty_train_message())
        return Normalizer.fit(parts, variables=list(self.variables), transforms=transforms)

    def fit_normalizer(
        self, *, transforms: Mapping[str, Transform] | Literal["auto"] = "auto"
    ) -> Normalizer:
        """Fit a :class:`Normalizer` on this dataset's selection (dask reductions).

        Parameters
        ----------
        transforms : mapping of str to {"none", "log1p"} or "auto", default "auto"
            Transform per variable; ``"auto"``: ``log1p`` for precipitation-like variables.

        Returns
        -------
        Normalizer
            Statistics of the dataset's variables over its split.
        """
        return self._fit(self._selection, transforms)

    @property
    def epoch(self) -> int:
        """The epoch that keys the crop generator (see :meth:`set_epoch`); 0 at the start."""
        return int(self._epoch.item())

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(int(value))

    def _crop_epoch(self) -> int:
        """The epoch that keys the crop generator: 0 for ``crop="fixed"`` (the same windows at
        every epoch), else :attr:`epoch`."""
        return 0 if self.crop == "fixed" else self.epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that keys the crop generator (call once per epoch).

        Parameters
        ----------
        epoch : int
            The epoch number; items of one ``(seed, epoch, index)`` are always the same crop.
            DataLoader workers started before the call (``persistent_workers=True``) see it too:
            the epoch is held in shared memory.
        """
        self.epoch = int(epoch)

    def _sample_grid(self, src: _Source, sel: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [
            np.asarray(sel[d]) if d in sel else np.arange(n)
            for d, n in zip(src.sample_dims, src.sample_sizes)
        ]

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        if self.normalizer is None:
            return x
        return self.normalizer.transform_array(x, variables=list(self.variables), channel_axis=0)

    def _check_nan(self, block: np.ndarray, src: _Source, sample: Mapping[str, int]) -> None:
        """Refuse a (C, h, w) block read for an item when it holds NaN or infinite values
        (one pass over it), or values <= -1 in a channel normalized with log1p (the last
        guard: the split's check when it opened finds them first)."""
        if self.normalizer is not None:
            for c, name in enumerate(self.variables):
                if self.normalizer.stats[name].transform != "log1p":
                    continue
                low = block[c].min(initial=math.inf)  # NaN when the block holds NaN
                if low <= -1:
                    n = int((block[c] <= -1).sum())
                    where = ", ".join(
                        f"{dim}={_label_text(src.labels(dim), pos)}" for dim, pos in sample.items()
                    )
                    raise DataError(
                        f"variable {name!r} has {n} value(s) <= -1 (down to {low:g}) at "
                        f"{where or 'its only field'} of {src.label!r} (in the window this item "
                        "reads); its log1p normalization needs values > -1 and would give NaN. "
                        f"Clean the data (precipitation is not negative: e.g. "
                        f"ds[{name!r}].clip(min=0)), or normalize without log1p: "
                        f"{_no_log1p_hint(name, self._from_config)}"
                    )
        if not np.issubdtype(block.dtype, np.floating):
            return
        if np.isfinite(block.max(initial=0.0)) and np.isfinite(block.min(initial=0.0)):
            return
        where = ", ".join(
            f"{dim}={_label_text(src.labels(dim), pos)}" for dim, pos in sample.items()
        )
        counts = np.isnan(block).reshape(block.shape[0], -1).sum(axis=1)
        if not counts.any():  # no NaN: infinite values
            infs = np.isinf(block).reshape(block.shape[0], -1).sum(axis=1)
            name = self.variables[int(np.flatnonzero(infs)[0])]
            raise DataError(
                f"variable {name!r} has {int(infs[self.variables.index(name)])} infinite value(s) at "
                f"{where or 'its only field'} of {src.label!r} (in the window this item reads); "
                f"they cannot be normalized: {_inf_advice(name)}"
            )
        channel = int(np.flatnonzero(counts)[0])
        name = self.variables[channel]
        if len(sample) == 1 and src.spec is not None:
            (dim,) = sample
            select = (
                f"ds.isel({dim}=ds[{name!r}].notnull().all(({src.spec.y!r}, "
                f"{src.spec.x!r})).values)"
            )
        else:
            select = "keep only the fields where the variable is not null"
        raise DataError(
            f"variable {name!r} has {int(counts[channel])} NaN value(s) at "
            f"{where or 'its only field'} of {src.label!r} (in the window this item reads); "
            f"NaNs would reach the training tensors. Leave the fields with NaN out "
            f'(nan_fields="drop"; data.nan_fields = "drop" in a run\'s TOML), select them out '
            f"({select}) or fill them first (e.g. ds.fillna(0.0) for precipitation)"
        )

    def condition_range(self) -> tuple[float, float] | None:
        """(smallest, largest) value of the physical condition over the fields items take it
        from, in the condition's own units (before ``condition_scale``); ``None`` without a
        condition. The fields of the split, less those dropped for NaN; for forecasting the
        current frames of the valid windows (a time no window starts from is never a
        condition).

        Returns
        -------
        (float, float) or None
            ``(smallest, largest)``; ``None`` without a condition or without fields.
        """
        if self.condition is None:
            return None
        values = []
        for entry in self._fields:
            every = self.sources[entry.k].condition_grid(self.condition, entry.grid).ravel()
            values.append(every if entry.keep is None else every[entry.keep])
        every = np.concatenate(values) if values else np.array([])
        if every.size == 0:
            return None
        return float(every.min()), float(every.max())

    def _count(self) -> None:
        """Item offsets of the entries (after ``self._fields`` is set)."""
        self._cum = np.cumsum([0, *(entry.size for entry in self._fields)])

    def __len__(self) -> int:
        return int(self._cum[-1]) * self.crops_per_field

    def _entry_of(self, field: int) -> tuple[_Entry, _Source, dict[str, int]]:
        j = int(np.searchsorted(self._cum, field, side="right")) - 1
        entry = self._fields[j]
        src = self.sources[entry.k]
        flat = field - int(self._cum[j])
        if entry.keep is not None:
            flat = int(entry.keep[flat])
        local = np.unravel_index(flat, [g.size for g in entry.grid])
        return entry, src, {d: int(g[i]) for d, g, i in zip(src.sample_dims, entry.grid, local)}

    def _phys(self, src: _Source, index: Mapping[str, int]) -> dict[str, torch.Tensor]:
        if self.condition is None:
            return {}
        value = src.condition(self.condition, index) / self.condition_scale
        return {"phys": torch.tensor(value, dtype=torch.float32)}

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"dataset indices are integers, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        return int(index) % len(self)

    def _plan(self, index: int) -> tuple[_Source, dict[str, int], int, int, int, int]:
        raise NotImplementedError

    def locate(self, index: int) -> dict[str, Any]:
        """Where item ``index`` comes from (at the current epoch).

        Parameters
        ----------
        index : int
            Item index (negative counts from the end).

        Returns
        -------
        dict
            ``source`` (file stem or ``datasetN``), one entry per sample dimension with its label
            (or position when the dimension has no coordinate), and the crop ``y0``, ``x0``,
            ``height``, ``width`` in cells of the normalized (ascending) grid. On a periodic
            axis a random crop may run past the end and wrap around (rows ``y0`` to
            ``y0 + height - 1`` modulo the size). For forecasting the time entry is the current
            frame.
        """
        src, sample, y0, x0, h, w = self._plan(self._check_index(index))
        out: dict[str, Any] = {"source": src.label}
        for dim, pos in sample.items():
            labels = src.labels(dim)
            out[dim] = labels[pos] if labels is not None else pos
        out.update(y0=y0, x0=x0, height=h, width=w)
        return out

    def _target_values(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The physical values (not normalized) of item ``index``'s target, ``fine``.

        Parameters
        ----------
        index : int
            Item index (at the current epoch; negative counts from the end).

        Returns
        -------
        field : numpy.ndarray
            ``(C, ny, nx)`` float64: the whole field the item's window is cut from (a
            forecast's target frame, ``lead`` steps after the current one).
        window : numpy.ndarray
            ``(C, height, width)``: the item's window of it, the cells of ``fine`` (wrapping
            around on a periodic axis).
        """
        index = self._check_index(index)
        src, sample, y0, x0, h, w = self._plan(index)
        field = src.read(self._target_sample(index, sample), np.arange(src.ny), np.arange(src.nx))
        rows = np.arange(y0, y0 + h) % src.ny
        cols = np.arange(x0, x0 + w) % src.nx
        return field, field[:, rows][:, :, cols]

    def _target_sample(self, index: int, sample: dict[str, int]) -> dict[str, int]:
        """The sample (positions) of item ``index``'s target: the item's own field."""
        return sample

    def _origin(
        self, n: int, size: int, step: int, rng: np.random.Generator, periodic: bool = False
    ) -> int:
        slots = (n - size) // step + 1
        if self.crop in ("random", "fixed"):
            if periodic:
                # no edges: any origin, the window wrapping around (every cell as often)
                slots = n // step
            return int(rng.integers(0, slots)) * step
        if self.crop == "center":
            return (slots // 2) * step
        return 0


def _per_field(value: Any, src: _Source, shape: list[int]) -> np.ndarray:
    """A reduction per field of ``src`` (a DataArray over its sample dims) as an array of
    ``shape``."""
    if isinstance(value, xr.DataArray):
        value = value.transpose(*src.sample_dims).values
    return np.asarray(value).reshape(shape)


def _sentence(text: str) -> str:
    """``text`` with a capital first letter (a fix that starts a sentence)."""
    return text[:1].upper() + text[1:]


def _listing(shown: Sequence[str], total: int) -> str:
    """``"a, b, c"`` or ``"a, b, c and 4 more"`` (``total`` counts what was not shown too)."""
    more = total - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _label_text(labels: np.ndarray | None, pos: int) -> str:
    """Readable label of position ``pos`` (dates without nanoseconds; the position if no label)."""
    if labels is None:
        return str(pos)
    value = labels[pos]
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return str(value)


def _field_words(labels: Mapping[str, Any], with_source: bool) -> str:
    """A field's labels (as :meth:`_FieldDataset._field_labels` gives them) in words:
    ``time=2019-03-01 00:00:00, level=500`` (and ``of 'dataset0'`` with ``with_source``)."""
    text = ", ".join(
        f"{k}={_label_text(np.asarray([v]), 0)}" for k, v in labels.items() if k != "source"
    )
    text = text or "its only field"
    return f"{text} of {labels['source']!r}" if with_source else text


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class SuperResolutionDataset(_FieldDataset):
    """Pairs (coarse upsampled, fine) with random crops, read lazily (see the module docstring).

    Parameters
    ----------
    data
        Path, glob pattern, ``xr.Dataset`` or a list of them (netCDF, zarr, HDF5).
    variables
        Channels, in order (default: every numeric variable on the grid / every HDF5 channel).
    factor
        Super-resolution factor.
    crop_size
        Side of the square crops in fine cells (divisible by ``factor``); ``None`` uses the whole
        field (``crop="full"``).
    degradation
        ``"area_mean"``, ``"strided"`` or ``"gaussian"`` (:mod:`flexdownscale.data.degrade`).
    upsample
        ``"bilinear"``, ``"bicubic"``, ``"conservative"`` or ``"nearest"``.
    sigma
        Gaussian degradation width in fine cells (default ``factor / 2``).
    crop
        ``"random"`` (seeded, new windows at every epoch), ``"center"``, ``"fixed"`` (seeded
        windows drawn once, the same at every epoch) or ``"full"``.
    crops_per_field
        Items per field and epoch (different ``"random"`` or ``"fixed"`` crops; with
        ``"center"`` or ``"full"`` the same window repeated).
    split, split_dim, splits
        Which split this dataset serves, the dimension (or ``"file"``) the splits select on, and
        the selections ``{"train": ..., "validation": ..., "test": ...}`` (``None``: no split).
    normalizer
        A fitted :class:`Normalizer`, ``"fit"`` (fit on the train split) or ``None``.
    transforms
        Transforms used when fitting (``"auto"``: log1p for precipitation-like variables).
    condition, condition_scale
        Name of a scalar variable or attribute giving ``phys = value / condition_scale``.
    seed
        Seed of the crop generator.
    format
        ``"auto"`` (from the suffix), ``"xarray"`` or ``"hdf5"``.
    dims
        Dimension-name override for xarray sources.
    nan_fields
        Fields (samples) that hold NaN where the items read, found in one pass when the split
        opens (with the normalizer fit when it is fitted here): ``"error"`` (default) raises
        :class:`~flexdownscale.errors.DataError` naming the variable, the split and the first
        fields; ``"drop"`` leaves them out (:attr:`dropped_fields`, :meth:`dropped_summary`);
        ``None`` skips the pass (building the dataset reads no data but up to four fields of a
        file declared periodic, whose edges are checked; an item whose window holds NaN still
        raises when it is read).

    Raises
    ------
    UnsupportedFactorError
        When ``crop_size`` is not divisible by ``factor``.
    ShapeError
        When the crop does not fit in a field.
    MissingVariableError
        When a variable or the condition is missing.
    DataError
        For overlapping or empty splits, unreadable files, fields with NaN
        (``nan_fields="error"``) and values <= -1 of a variable normalized with log1p.

    Examples
    --------
    Three 16 x 16 fields in memory, 8 x 8 random crops, a factor 4 and statistics fitted on
    them: one item per field; with the area mean of a projected grid the coarse field is the
    4 x 4 block mean of the fine one:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> km = {"units": "km"}
    >>> values = 280 + np.random.default_rng(0).normal(size=(3, 16, 16))
    >>> ds = xr.Dataset(
    ...     {"t2m": (("time", "y", "x"), values, {"units": "K"})},
    ...     coords={"time": pd.date_range("2020-01-01", periods=3, freq="D"),
    ...             "y": ("y", np.arange(16.0), km), "x": ("x", np.arange(16.0), km)})
    >>> data = SuperResolutionDataset(ds, factor=4, crop_size=8, normalizer="fit", seed=0)
    >>> len(data), data.variables
    (3, ('t2m',))
    >>> item = data[0]
    >>> {k: tuple(v.shape) for k, v in item.items() if k != "index"}
    {'fine': (1, 8, 8), 'base': (1, 8, 8), 'cond': (1, 8, 8), 'coarse': (1, 2, 2)}
    >>> blocks = item["fine"].reshape(1, 2, 4, 2, 4).mean((2, 4))
    >>> bool(abs(blocks - item["coarse"]).max() < 1e-6)
    True
    """

    def __init__(
        self,
        data: Any,
        *,
        variables: Sequence[str] | None = None,
        factor: int = 4,
        crop_size: int | None = 64,
        degradation: Degradation = "area_mean",
        upsample: Upsampling = "bilinear",
        sigma: float | None = None,
        crop: Crop = "random",
        crops_per_field: int = 1,
        split: Split = "train",
        split_dim: str = "time",
        splits: Mapping[str, Sequence[Any]] | None = None,
        normalizer: Normalizer | Literal["fit"] | None = None,
        transforms: Mapping[str, Transform] | Literal["auto"] = "auto",
        condition: str | None = None,
        condition_scale: float = 1.0,
        seed: int = 0,
        format: Format = "auto",
        dims: Mapping[str, str] | None = None,
        nan_fields: NanFields | None = "error",
    ) -> None:
        _check_option("degradation", degradation, Degradation)
        _check_option("upsample", upsample, Upsampling)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise UnsupportedFactorError(f"factor={factor!r}; expected a positive integer")
        if crop_size is None:
            crop = "full"
        elif crop_size % factor:
            raise UnsupportedFactorError(
                f"crop_size={crop_size} is not divisible by factor={factor}; expected a crop made "
                f"of whole coarse cells (e.g. crop_size={max(factor, crop_size // factor * factor)})"
            )
        super().__init__(
            data,
            variables=variables,
            split=split,
            split_dim=split_dim,
            splits=splits,
            normalizer=normalizer,
            transforms=transforms,
            condition=condition,
            condition_scale=condition_scale,
            crop=crop,
            crops_per_field=crops_per_field,
            seed=seed,
            format=format,
            dims=dims,
            nan_fields=nan_fields,
        )
        self.factor = factor
        self.crop_size = crop_size
        self.degradation = degradation
        self.upsample = upsample
        self.sigma = sigma
        halo = 0 if upsample == "nearest" else (2 if upsample == "bicubic" else 1)
        if degradation == "gaussian":
            s = 0.5 * factor if sigma is None else float(sigma)
            halo += math.ceil((3 * s + 0.5 * factor) / factor) + 1
        self._halo = halo * factor
        entries: list[_Entry] = []
        for k, (src, sel) in enumerate(zip(self.sources, self._selection)):
            if sel is None:
                continue
            ny, nx = src.ny - src.ny % factor, src.nx - src.nx % factor
            if crop_size is not None and (crop_size > ny or crop_size > nx):
                raise ShapeError(
                    f"crop_size={crop_size} does not fit in the {(src.ny, src.nx)} field of "
                    f"{src.label!r}; {_crop_fit_fix(min(ny, nx), factor)}"
                )
            if ny < factor or nx < factor:
                raise ShapeError(f"field {(src.ny, src.nx)} is smaller than the factor {factor}")
            _warn_period_not_divisible(src, factor)
            _warn_repeated_labels(src, sel, split_dim, split)
            entries.append(_Entry(k, self._sample_grid(src, sel)))
        bad = self._open_split(
            [(e.k, e.grid) for e in entries], [self._region(self.sources[e.k]) for e in entries]
        )
        self._fields = [
            e if m is None or not m.any() else e._replace(keep=np.flatnonzero(~m.ravel()))
            for e, m in zip(entries, bad)
        ]
        self._count()
        if self._cum[-1] == 0:
            if self.dropped_fields:
                raise DataError(
                    f"every field of the {split} split holds NaN ({self.dropped_summary()}); "
                    f"nothing is left. {_sentence(self._nan_fix)}"
                )
            raise DataError(self._empty_split_message(split, split_dim))

    @staticmethod
    def _empty_split_message(split: str, split_dim: str) -> str:
        """Why ``split`` holds no field, naming the setting as the caller wrote it."""
        selection = _setting(split, f"splits[{split!r}]")
        text = (
            f"the {split} split is empty: {selection} selects no field along {split_dim!r}; "
            f"set it to a [start, stop] range or a list of {split_dim!r} labels the data hold"
        )
        if split == "validation" and _FROM_CONFIG.get():
            # docs/training.md: with eval_every = 0 no validation split is needed
            text += (
                "; or train without validation: eval_every = 0 with data.validation = [] "
                "needs no validation split"
            )
        return text

    def _periodic(self, src: _Source) -> tuple[bool, bool]:
        """Whether the (y, x) axes wrap: periodic, and whole coarse cells around the seam."""
        f = self.factor
        return src.periodic[0] and src.ny % f == 0, src.periodic[1] and src.nx % f == 0

    def _region(self, src: _Source) -> tuple[Any, Any]:
        """The (rows, cols) of ``src`` that items read: the window of a centre crop, else the
        whole field trimmed to whole coarse cells (random crops reach every cell)."""
        f = self.factor
        ny, nx = src.ny - src.ny % f, src.nx - src.nx % f
        if self.crop != "center" or self.crop_size is None:
            return slice(0, ny), slice(0, nx)
        py, px = self._periodic(src)
        y0 = self._origin(ny, self.crop_size, f, np.random.default_rng(0))
        x0 = self._origin(nx, self.crop_size, f, np.random.default_rng(0))
        rows = np.unique(self._window(ny, y0, self.crop_size, py)[0])
        cols = np.unique(self._window(nx, x0, self.crop_size, px)[0])
        return rows, cols

    def _window(self, n: int, start: int, size: int, periodic: bool) -> tuple[np.ndarray, int]:
        """Indices of the crop plus halo (wrapped on periodic axes) and the crop offset."""
        if periodic:
            return np.arange(start - self._halo, start + size + self._halo) % n, self._halo
        lo = max(0, start - self._halo)
        hi = min(n, start + size + self._halo)
        return np.arange(lo, hi), start - lo

    def _plan(self, index: int) -> tuple[_Source, dict[str, int], int, int, int, int]:
        _, src, sample = self._entry_of(index // self.crops_per_field)
        f = self.factor
        ny, nx = src.ny - src.ny % f, src.nx - src.nx % f
        ch, cw = (ny, nx) if self.crop_size is None else (self.crop_size, self.crop_size)
        py, px = self._periodic(src)
        rng = np.random.default_rng([self.seed, self._crop_epoch(), index])
        y0 = self._origin(ny, ch, f, rng, py)
        x0 = self._origin(nx, cw, f, rng, px)
        return src, sample, y0, x0, ch, cw

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        src, sample, y0, x0, ch, cw = self._plan(index)
        f = self.factor
        ny, nx = src.ny - src.ny % f, src.nx - src.nx % f
        py, px = self._periodic(src)
        rows, oy = self._window(ny, y0, ch, py)
        cols, ox = self._window(nx, x0, cw, px)
        region = src.read(sample, rows, cols)
        self._check_nan(region, src, sample)
        weights = src.row_weights[rows] if src.row_weights is not None else None
        coarse = degrade_array(
            region,
            f,
            method=self.degradation,
            row_weights=weights if self.degradation == "area_mean" else None,
            sigma=self.sigma,
        )
        coarse = self._normalize(coarse)
        base = upsample_array(coarse, f, method=self.upsample, row_weights=weights)
        fine = self._normalize(region[:, oy : oy + ch, ox : ox + cw])
        base = base[:, oy : oy + ch, ox : ox + cw]
        coarse = coarse[:, oy // f : (oy + ch) // f, ox // f : (ox + cw) // f]
        base_t = _tensor(base)
        return {
            "fine": _tensor(fine),
            "base": base_t,
            "cond": base_t,
            "coarse": _tensor(coarse),
            **self._phys(src, sample),
            "index": index,
        }

    def grid_metadata(self) -> dict[str, Any]:
        """What a model folder's ``grid.json`` records about the training data.

        Returns
        -------
        dict
            JSON-friendly: the fine grid description (``GridSpec.to_dict()``, or ``None`` for
            HDF5 sources without coordinates), the degradation, its ``sigma``, the upsampling,
            the factor and ``crop_size`` (the side of the training crops in fine cells; ``None``
            for whole fields), which inference compares with its tile size.
        """
        spec = self.sources[0].spec
        sigma = self.sigma
        if self.degradation == "gaussian" and sigma is None:
            sigma = 0.5 * self.factor
        return {
            "grid": None if spec is None else spec.to_dict(),
            "degradation": self.degradation,
            "sigma": sigma,
            "upsample": self.upsample,
            "factor": self.factor,
            "crop_size": self.crop_size,
        }


class ForecastDataset(_FieldDataset):
    """Past frames -> next frame samples, read lazily (see the module docstring).

    Parameters
    ----------
    data, variables
        As in :class:`SuperResolutionDataset`.
    past_frames
        Number of past frames (the current one included) stacked on the channels of ``cond``,
        ``lead`` steps apart (the frames at ``t - j * lead`` for ``j = past_frames - 1, ...,
        0``): the spacing a rollout feeds its samples back at.
    lead
        Steps between the current frame and the target frame (at ``t + lead``). A window
        needs ``(past_frames - 1) * lead + lead + 1`` consecutive times of the split.
    time_dim
        The dimension frames step along (default: the detected time dimension, else ``"time"``).
        Its labels must strictly increase (else :class:`~flexdownscale.errors.DataError`:
        ``ds.sortby("time").drop_duplicates("time")``). A step is the data's step: the most
        common spacing of consecutive times, which every file of the split must share; a window
        whose frames (with the times between them) are not evenly spaced at that step, because
        it crosses a gap or a change of spacing, is left out with a
        :class:`~flexdownscale.errors.FlexDownscaleWarning` (``gapped_windows`` counts them).
        Frames without time labels (HDF5 files without coordinates, a dimension without a
        coordinate) step by position.
    crop_size
        Side of the square crops (``None``: whole field).
    crop, crops_per_field, split, split_dim, splits, normalizer, transforms
        As in :class:`SuperResolutionDataset`.
    condition, condition_scale, seed, format, dims
        As in :class:`SuperResolutionDataset`.
    nan_fields
        As in :class:`SuperResolutionDataset`; a window is left out (``"drop"``) when any of its
        frames holds NaN (``dropped_fields`` lists those frames, ``dropped_windows`` counts the
        windows left out of ``split_windows``).

    Examples
    --------
    Six 6-hourly frames whose value is their index: with two past frames and a lead of one
    step a window takes three consecutive frames, so there are four; the first item stacks
    frames 0 and 1 as the condition, frame 1 is the current one and frame 2 the target:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> km = {"units": "km"}
    >>> ds = xr.Dataset(
    ...     {"t2m": (("time", "y", "x"), np.arange(6.0)[:, None, None] * np.ones((6, 8, 8)))},
    ...     coords={"time": pd.date_range("2020-01-01", periods=6, freq="6h"),
    ...             "y": ("y", np.arange(8.0), km), "x": ("x", np.arange(8.0), km)})
    >>> data = ForecastDataset(ds, past_frames=2, lead=1, crop_size=None)
    >>> len(data)
    4
    >>> item = data[0]
    >>> tuple(item["cond"].shape), item["cond"][:, 0, 0].tolist()
    ((2, 8, 8), [0.0, 1.0])
    >>> float(item["base"][0, 0, 0]), float(item["fine"][0, 0, 0])
    (1.0, 2.0)
    """

    def __init__(
        self,
        data: Any,
        *,
        variables: Sequence[str] | None = None,
        past_frames: int = 1,
        lead: int = 1,
        time_dim: str | None = None,
        crop_size: int | None = 64,
        crop: Crop = "random",
        crops_per_field: int = 1,
        split: Split = "train",
        split_dim: str = "time",
        splits: Mapping[str, Sequence[Any]] | None = None,
        normalizer: Normalizer | Literal["fit"] | None = None,
        transforms: Mapping[str, Transform] | Literal["auto"] = "auto",
        condition: str | None = None,
        condition_scale: float = 1.0,
        seed: int = 0,
        format: Format = "auto",
        dims: Mapping[str, str] | None = None,
        nan_fields: NanFields | None = "error",
    ) -> None:
        for name, value in (("past_frames", past_frames), ("lead", lead)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}; expected a positive integer")
        if crop_size is None:
            crop = "full"
        super().__init__(
            data,
            variables=variables,
            split=split,
            split_dim=split_dim,
            splits=splits,
            normalizer=normalizer,
            transforms=transforms,
            condition=condition,
            condition_scale=condition_scale,
            crop=crop,
            crops_per_field=crops_per_field,
            seed=seed,
            format=format,
            dims=dims,
            nan_fields=nan_fields,
        )
        self.past_frames = past_frames
        self.lead = lead
        self.crop_size = crop_size
        # the frames of a window, as offsets from its current frame along the time positions:
        # the past frames ``lead`` steps apart (the spacing a rollout feeds back), oldest first,
        # then the target ``lead`` steps after the current one
        frames = [*(-j * lead for j in range(past_frames - 1, -1, -1)), lead]
        entries: list[_Entry] = []  # the split's fields, every time
        windows: list[_Entry] = []  # the valid window times
        steps: list[tuple[float, str, str]] = []  # each timed source's step, units and label
        positional = False  # a source of the split without time labels
        found: list[str] = []  # the time steps of each source, for the message of no window
        gapped = 0  # windows left out because their frames are not evenly spaced
        first_gap: str | None = None
        for k, (src, sel) in enumerate(zip(self.sources, self._selection)):
            if sel is None:
                continue
            tdim = time_dim or src.time_dim or "time"
            if tdim not in src.sample_dims:
                raise DataError(
                    f"time dimension {tdim!r} is not a dimension of {src.label!r} (sample dims "
                    f"{src.sample_dims}); pass time_dim=..."
                )
            if crop_size is not None and (crop_size > src.ny or crop_size > src.nx):
                raise ShapeError(
                    f"crop_size={crop_size} does not fit in the {(src.ny, src.nx)} field of "
                    f"{src.label!r}; {_crop_fit_fix(min(src.ny, src.nx), None)}"
                )
            spacing = _frame_spacing(src, tdim)
            if spacing.step is not None:
                steps.append((*spacing.step, src.label))
            positional |= not spacing.timed
            grid = self._sample_grid(src, sel)
            t_axis = src.sample_dims.index(tdim)
            times = np.asarray(grid[t_axis], dtype=np.int64)
            size = src.sample_sizes[t_axis]
            found.append(f"{times.size} time step{'s' if times.size != 1 else ''} in {src.label}")
            in_split = np.zeros(size, bool)
            in_split[times] = True
            fits = np.ones(times.size, bool)  # every frame of the window is in the split
            for offset in frames:
                at = times + offset
                inside = (at >= 0) & (at < size)
                fits &= inside & in_split[np.clip(at, 0, size - 1)]
            # and every consecutive pair of times from the oldest frame to the target is one
            # step of the data apart (windows crossing a gap or a change of step are left out)
            uneven = np.concatenate([[0], np.cumsum(~spacing.even)])
            oldest = np.clip(times + frames[0], 0, size - 1)
            target = np.clip(times + lead, 0, size - 1)
            evenly = uneven[target] == uneven[oldest]
            crossing = fits & ~evenly
            if crossing.any():
                gapped += int(crossing.sum()) * int(np.prod([g.size for g in grid])) // times.size
                if first_gap is None and spacing.step is not None:
                    w = int(np.flatnonzero(crossing)[0])
                    i = int(oldest[w] + np.argmax(~spacing.even[oldest[w] : target[w]]))
                    labels = src.labels(tdim)
                    assert labels is not None  # timed: the steps came from the labels
                    first_gap = (
                        f"{_shown_label(labels[i])} then {_shown_label(labels[i + 1])}, "
                        f"{_duration(spacing.steps[i], spacing.step[1])} apart, in {src.label}"
                    )
            window_grid = list(grid)
            window_grid[t_axis] = times[fits & evenly]
            entries.append(_Entry(k, grid, tdim=tdim))
            windows.append(_Entry(k, window_grid, tdim=tdim))
        self._step: tuple[float, str] | None = None
        if steps:
            value, units, label = steps[0]
            for other, other_units, other_label in steps[1:]:
                if other_units != units or not math.isclose(other, value, rel_tol=1e-3):
                    raise DataError(
                        f"the {split} split's files step differently in time: {label!r} every "
                        f"{_duration(value, units)}, {other_label!r} every "
                        f"{_duration(other, other_units)} (the most common spacing of their "
                        "times); a forecast model learns one time step, so give it files of "
                        "one step: resample one of them (e.g. every k-th time: "
                        "ds.isel(time=slice(None, None, k))) or train on one kind"
                    )
            if not positional:
                self._step = (value, units)
        if gapped:
            total = gapped + sum(w.size for w in windows)
            every = "" if self._step is None else f" of {_duration(*self._step)}"
            warnings.warn(
                f"{gapped} of the {total} windows ({past_frames} past frame"
                f"{'s' if past_frames != 1 else ''}, lead {lead}) of the {split} split are left "
                f"out: their frames are not evenly spaced at the data's step{every}, the "
                "times having gaps or another spacing there"
                + (f" (the first: {first_gap})" if first_gap else "")
                + (
                    "; the model learns only from evenly spaced frames. Fill the missing times "
                    "to train on those windows"
                    if split == "train"
                    else f"; the {split} split scores only evenly spaced windows, as the model "
                    "was trained on. Fill the missing times to score those windows"
                ),
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
        self.gapped_windows = gapped
        # the frames of every window: which fields items read, and which windows a field spoils
        used, reads = [], []
        for e, w in zip(entries, windows):
            t_axis = self.sources[e.k].sample_dims.index(e.tdim)
            # per frame offset: the position along the time grid each window reads
            at_times = [np.searchsorted(e.grid[t_axis], w.grid[t_axis] + o) for o in frames]
            reads.append((t_axis, at_times))
            mask = np.zeros([g.size for g in e.grid], bool)
            for at_time in at_times:
                at: list[Any] = [slice(None)] * len(e.grid)
                at[t_axis] = at_time
                mask[tuple(at)] = True
            used.append(mask)
        bad = self._open_split(
            [(e.k, e.grid) for e in entries],
            [self._region(self.sources[e.k]) for e in entries],
            used,
        )
        self._fields = []
        #: windows of the split before any was dropped, and those left out for holding NaN
        self.split_windows = sum(w.size for w in windows)
        self.dropped_windows = 0
        for w, m, (t_axis, at_times) in zip(windows, bad, reads):
            if m is None or not m.any():
                self._fields.append(w)
                continue
            spoilt = np.zeros([g.size for g in w.grid], bool)
            for at_time in at_times:
                spoilt |= np.take(m, at_time, axis=t_axis)
            self.dropped_windows += int(spoilt.sum())
            self._fields.append(w._replace(keep=np.flatnonzero(~spoilt.ravel())))
        self._count()
        if self._cum[-1] == 0:
            if self.dropped_fields:
                raise DataError(
                    f"no window of {past_frames} past frames and lead {lead} in the {split} "
                    f"split is free of NaN ({self.dropped_summary()}). "
                    f"{_sentence(self._nan_fix)}"
                )
            need = (past_frames - 1) * lead + lead + 1
            frames_text = f"{past_frames} past frame{'s' if past_frames != 1 else ''}"
            lead_text = f"{lead} step{'s' if lead != 1 else ''}"
            raise DataError(
                f"no window of {frames_text} and lead {lead} fits in the {split} split: a window "
                f"needs {need} consecutive, evenly spaced times ((past_frames - 1) * lead + lead "
                f"+ 1: the past frames {lead_text} apart, then the target {lead_text} after the "
                f"current one), and the split has {'; '.join(found) or 'no time step'}"
                + (f" ({gapped} windows left out for crossing gaps in the times)" if gapped else "")
                + f"; select more times in {_setting(split, f'splits[{split!r}]')}, or lower "
                f"{_setting('past_frames', 'past_frames')} or {_setting('lead', 'lead')}"
            )

    def dropped_summary(self) -> str | None:
        """The windows left out for reading a field that holds NaN, and those fields, in words
        (``None`` when none was). :attr:`dropped_fields` lists the fields (frames), and
        :attr:`dropped_windows` counts the windows (items before crops) left out.

        Returns
        -------
        str or None
            How many windows of the split were left out and the fields that made them, e.g. for
            a log line; ``None`` when none was.
        """
        if not self.dropped_fields:
            return None
        n = len(self.dropped_fields)
        return (
            f'nan_fields = "drop": left out {self.dropped_windows} of the {self.split_windows} '
            f"windows ({self.past_frames} past frame{'s' if self.past_frames != 1 else ''}, "
            f"lead {self.lead}) of the {self.split} split, which read a field holding NaN "
            f"({n} field{'s' if n != 1 else ''}: {self._dropped_listing()})"
        )

    def _region(self, src: _Source) -> tuple[Any, Any]:
        """The (rows, cols) of ``src`` that items read: a centre crop's, else every cell."""
        if self.crop != "center" or self.crop_size is None:
            return slice(0, src.ny), slice(0, src.nx)
        y0 = self._origin(src.ny, self.crop_size, 1, np.random.default_rng(0))
        x0 = self._origin(src.nx, self.crop_size, 1, np.random.default_rng(0))
        return np.arange(y0, y0 + self.crop_size), np.arange(x0, x0 + self.crop_size)

    def _plan(self, index: int) -> tuple[_Source, dict[str, int], int, int, int, int]:
        _, src, sample = self._entry_of(index // self.crops_per_field)
        ch, cw = (src.ny, src.nx) if self.crop_size is None else (self.crop_size, self.crop_size)
        rng = np.random.default_rng([self.seed, self._crop_epoch(), index])
        y0 = self._origin(src.ny, ch, 1, rng, src.periodic[0])
        x0 = self._origin(src.nx, cw, 1, rng, src.periodic[1])
        return src, sample, y0, x0, ch, cw

    def grid_metadata(self) -> dict[str, Any]:
        """What a forecast model folder's ``grid.json`` records about the training data.

        Returns
        -------
        dict
            A JSON-friendly dict with the grid description (``GridSpec.to_dict()``, or
            ``None`` for HDF5 sources without coordinates), ``past_frames``, ``lead`` and the time
            dimension the frames step along, ``time_step`` (one step of the model, ``lead`` times
            the data's step, the most common spacing of the frames, as ``{"value": ...,
            "units": ...}``: seconds for dates, the time coordinate's units otherwise; ``None``
            when the frames have no time coordinate) and ``crop_size`` (the side of the
            training crops in cells; ``None`` for whole fields). A forecast model works on its
            input grid (no degradation, no upsampling), so there is no ``factor``.
        """
        spec = self.sources[0].spec
        return {
            "grid": None if spec is None else spec.to_dict(),
            "past_frames": self.past_frames,
            "lead": self.lead,
            "time_dim": self._fields[0].tdim if self._fields else None,
            "time_step": self._time_step(),
            "crop_size": self.crop_size,
        }

    def check_same_step(self, other: ForecastDataset) -> None:
        """Refuse another split (the validation split) whose frames step differently in time.

        Parameters
        ----------
        other : ForecastDataset
            The other split of the run.

        Raises
        ------
        DataError
            When both splits have time labels and their steps (the most common spacing of their
            frames) differ: the model learns one step, and validating it at another scores a
            forecast it was not trained to make.
        """
        if self._step is None or other._step is None:
            return
        (value, units), (found, found_units) = self._step, other._step
        if units == found_units and math.isclose(found, value, rel_tol=1e-3):
            return
        raise DataError(
            f"the {other.split} split's frames step every {_duration(found, found_units)} but "
            f"the {self.split} split's every {_duration(value, units)} (the most common spacing "
            "of their times); a forecast model learns one time step, and scoring it at another "
            "measures a forecast it was not trained to make: give both splits frames of one "
            "step (resample one, e.g. every k-th time: ds.isel(time=slice(None, None, k)))"
        )

    def _time_step(self) -> dict[str, Any] | None:
        """One model step (``lead`` steps of the data) in time: the most common spacing of the
        frames' times, which every file of the split shares (checked when the split opens);
        ``None`` when the frames have no time labels or the split has one time per file."""
        if self._step is None or not self._fields:
            return None
        value, units = self._step
        return {"value": value * self.lead, "units": units}

    def _target_sample(self, index: int, sample: dict[str, int]) -> dict[str, int]:
        """The frame ``lead`` steps after item ``index``'s current one."""
        tdim = self._entry_of(index // self.crops_per_field)[0].tdim
        assert tdim is not None
        return {**sample, tdim: sample[tdim] + self.lead}

    def _read_checked(
        self, src: _Source, sample: dict[str, int], rows: np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        block = src.read(sample, rows, cols)
        self._check_nan(block, src, sample)
        return block

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        src, sample, y0, x0, ch, cw = self._plan(index)
        entry, _, _ = self._entry_of(index // self.crops_per_field)
        tdim = entry.tdim
        assert tdim is not None
        # a crop on a periodic axis may wrap around the seam
        rows = np.arange(y0, y0 + ch) % src.ny if src.periodic[0] else np.arange(y0, y0 + ch)
        cols = np.arange(x0, x0 + cw) % src.nx if src.periodic[1] else np.arange(x0, x0 + cw)
        t = sample[tdim]
        frames = [  # the past frames ``lead`` steps apart, oldest first
            self._normalize(
                self._read_checked(src, {**sample, tdim: t - p * self.lead}, rows, cols)
            )
            for p in range(self.past_frames - 1, -1, -1)
        ]
        target = self._normalize(
            self._read_checked(src, {**sample, tdim: t + self.lead}, rows, cols)
        )
        return {
            "fine": _tensor(target),
            "base": _tensor(frames[-1]),
            "cond": _tensor(np.concatenate(frames, axis=0)),
            **self._phys(src, sample),
            "index": index,
        }


@keyword_hints
def from_config(
    config: DataConfig,
    split: Split = "train",
    *,
    task: Task = "superres",
    normalizer: Normalizer | Literal["fit"] | None = "fit",
    transforms: Mapping[str, Transform] | Literal["auto"] | None = None,
    seed: int = 0,
    crop: Crop | None = None,
    crops_per_field: int | None = None,
) -> SuperResolutionDataset | ForecastDataset:
    """Build the dataset of one split from a :class:`~flexdownscale.config.DataConfig`.

    Parameters
    ----------
    config
        Paths, format, variables, degradation, upsample, factor, crop_size (divisible by 16 and
        by ``factor``), split_dim, train / validation / test selections, condition,
        condition_scale, past_frames, lead, nan_fields, transforms, dims.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    task
        ``"superres"`` (:class:`SuperResolutionDataset`) or ``"forecast"``
        (:class:`ForecastDataset`).
    normalizer
        ``"fit"`` (default: statistics of the train split, the same for every split), a fitted
        :class:`Normalizer` or ``None``.
    transforms
        Transforms used when fitting (``"auto"`` or a mapping variable -> ``"none"`` /
        ``"log1p"``); default None: ``config.transforms`` (the run's ``data.transforms``).
    seed
        Crop seed.
    crop
        Default ``"random"`` for train; for the other splits ``"center"`` with one crop per
        field, ``"fixed"`` with several (seeded windows, the same at every evaluation).
    crops_per_field
        Items per field and epoch; default None: ``config.crops_per_field`` (the run's
        ``data.crops_per_field``).

    Returns
    -------
    SuperResolutionDataset or ForecastDataset
        The dataset of ``split``, by ``task``.

    Raises
    ------
    ConfigError
        When ``config.paths`` is empty or an option is invalid.
    ShapeError
        When ``crop_size`` is not divisible by 16 (and, for super-resolution, by ``factor``); the
        message suggests the nearest crop that is.

    Examples
    --------
    The ERA5 sample that ships with the package (four 6-hourly fields), its first three
    times for training and the last for validation: the train split draws random crops, the
    validation split takes the centre one, and both are normalized with the statistics of
    the train split:

    >>> from importlib import resources
    >>> from flexdownscale.config import DataConfig
    >>> path = resources.files("flexdownscale") / "_data" / "samples" / "era5_t2m_uk_sample.nc"
    >>> config = DataConfig(paths=(str(path),), variables=("t2m",), factor=4, crop_size=32,
    ...                     train=("2019-03-20T00", "2019-03-20T12"),
    ...                     validation=("2019-03-20T18",))
    >>> train = from_config(config, "train")
    >>> validation = from_config(config, "validation")
    >>> len(train), len(validation), train.crop, validation.crop
    (3, 1, 'random', 'center')
    >>> validation.normalizer.stats == train.normalizer.stats
    True
    >>> tuple(validation[0]["fine"].shape), tuple(validation[0]["coarse"].shape)
    ((1, 32, 32), (1, 8, 8))
    """
    _check_option("task", task, Task)
    _check_option("split", split, Split)
    if not isinstance(config, DataConfig):
        raise ConfigError(f"config is {type(config).__name__}; expected a DataConfig")
    if not config.paths:
        raise ConfigError("data.paths is empty; expected files or glob patterns (DataConfig.paths)")
    problem = crop_size_problem(config.crop_size, config.factor, task, "data")
    if problem:
        raise ShapeError(problem)
    splits = {"train": config.train, "validation": config.validation, "test": config.test}
    if crops_per_field is None:
        crops_per_field = config.crops_per_field
    if crop is None:  # other splits: one centre window, or several drawn by the seed, kept
        held = "center" if crops_per_field == 1 else "fixed"
        crop = "random" if split == "train" else held
    common: dict[str, Any] = {
        "variables": config.variables or None,
        "crop_size": config.crop_size,
        "crop": crop,
        "crops_per_field": crops_per_field,
        "split": split,
        "split_dim": config.split_dim,
        "splits": splits,
        "normalizer": normalizer,
        "transforms": config.transforms if transforms is None else transforms,
        "condition": config.condition,
        "condition_scale": config.condition_scale,
        "seed": seed,
        "format": config.format,
        "nan_fields": config.nan_fields,
        "dims": dict(config.dims) if config.dims else None,
    }
    token = _FROM_CONFIG.set(True)  # messages name the [data] keys
    try:
        if task == "forecast":
            return ForecastDataset(
                list(config.paths), past_frames=config.past_frames, lead=config.lead, **common
            )
        return SuperResolutionDataset(
            list(config.paths),
            factor=config.factor,
            degradation=config.degradation,
            upsample=config.upsample,
            **common,
        )
    finally:
        _FROM_CONFIG.reset(token)
