"""Shared plumbing for the metrics: dimension bookkeeping, weights, alignment, units, grids.

Private module. Everything here works on xarray objects and is lazy on dask-backed input: no
function in this module calls ``.compute()``, ``.values`` or ``bool()`` on data (only on index
coordinates, which are always in memory).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from flexdownscale._duck import plain_arrays
from flexdownscale._keywords import keyword_hints
from flexdownscale._packing import check_decoded_variable
from flexdownscale.errors import (
    ConfigError,
    DataError,
    EnsembleError,
    GridError,
    MissingVariableError,
    NotXarrayError,
    ShapeError,
    UnitsError,
    WeightsError,
    not_xarray_message,
)
from flexdownscale.units import compare_units, degree_units, linear_conversion

XarrayLike = TypeVar("XarrayLike", xr.DataArray, xr.Dataset)
P = ParamSpec("P")
R = TypeVar("R")
Dims = str | Sequence[Hashable] | None

#: Mean Earth radius in metres (IUGG), used to turn degrees into metres.
EARTH_RADIUS = 6_371_008.8

_LENGTH_UNITS = {
    "m": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "km": 1.0e3,
    "kilometre": 1.0e3,
    "kilometres": 1.0e3,
    "kilometer": 1.0e3,
    "kilometers": 1.0e3,
}
_Y_NAMES = {"lat", "latitude", "rlat", "y", "yc", "south_north", "nav_lat"}
_X_NAMES = {"lon", "longitude", "rlon", "x", "xc", "west_east", "nav_lon"}
_Y_STANDARD = {"latitude", "grid_latitude", "projection_y_coordinate"}
_X_STANDARD = {"longitude", "grid_longitude", "projection_x_coordinate"}


# --------------------------------------------------------------------------------------------
# options and dimensions
# --------------------------------------------------------------------------------------------
def check_option(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not a valid option; expected one of {allowed!r}.")


def as_dim_tuple(dims: Dims, name: str = "dims") -> tuple[Hashable, ...] | None:
    """``None`` -> ``None``; a single name -> a 1-tuple; a sequence -> a tuple.

    Raises :class:`ConfigError` (naming the argument ``name``) for anything else, e.g.
    ``reduce_dims=5``."""
    if dims is None:
        return None
    if isinstance(dims, str):
        return (dims,)
    if isinstance(dims, Iterable) and not isinstance(dims, Mapping | bytes):
        named = tuple(dims)
        if all(isinstance(d, Hashable) for d in named):
            return named
    raise ConfigError(
        f"{name}={dims!r} is a {type(dims).__name__}; expected a dimension name or a list of "
        f"them, e.g. {name}='time' or {name}=['latitude', 'longitude'] (or {name}='all')."
    )


def check_skipna(skipna: Any) -> None:
    """Raise :class:`ConfigError` unless ``skipna`` is ``True`` or ``False``: a string such as
    ``"False"`` is true, and would silently skip the NaNs it was meant to keep."""
    if not isinstance(skipna, bool | np.bool_):
        raise ConfigError(
            f"skipna={skipna!r} is a {type(skipna).__name__}; expected True or False (a string "
            "such as 'False' would count as true): pass skipna=False to let NaN propagate"
        )


def score_keywords(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a public score: unknown keywords name the likely one
    (:func:`~flexdownscale._keywords.keyword_hints`), and the keywords the scores share are
    checked before any work (``skipna`` a bool: :func:`check_skipna`).

    Parameters
    ----------
    func : callable
        A public function of the metrics.

    Returns
    -------
    callable
        ``func``, with its signature, name and docstring.
    """
    hinted = keyword_hints(func)
    if "skipna" not in inspect.signature(func).parameters:
        return hinted

    @functools.wraps(func)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        if "skipna" in kwargs:
            check_skipna(kwargs["skipna"])
        return hinted(*args, **kwargs)

    return checked


def all_dims(*objs: xr.DataArray | xr.Dataset | None) -> tuple[Hashable, ...]:
    """Union of the dimensions of ``objs`` in first-seen order."""
    seen: dict[Hashable, None] = {}
    for obj in objs:
        if obj is None:
            continue
        for d in obj.dims:
            seen[d] = None
    return tuple(seen)


def resolve_reduce_dims(
    dims: Sequence[Hashable],
    *,
    reduce_dims: Dims,
    preserve_dims: Dims,
    excluded: Iterable[Hashable] = (),
) -> tuple[Hashable, ...]:
    """The dims to average over, from the ``reduce_dims`` xor ``preserve_dims`` convention.

    ``dims`` are the dims the score has after the score-specific dims (``excluded``, e.g. the
    member dim) were consumed. Neither given: reduce everything. ``"all"`` is accepted for both.
    """
    excluded = tuple(excluded)
    if reduce_dims is not None and preserve_dims is not None:
        raise ConfigError(
            f"got both reduce_dims={reduce_dims!r} and preserve_dims={preserve_dims!r}; "
            "pass only one of them (the other dims follow)."
        )
    dims = tuple(d for d in dims if d not in excluded)
    if reduce_dims is None and preserve_dims is None:
        return dims
    given = reduce_dims if reduce_dims is not None else preserve_dims
    name = "reduce_dims" if reduce_dims is not None else "preserve_dims"
    if isinstance(given, str) and given == "all":
        return dims if reduce_dims is not None else ()
    named = as_dim_tuple(given, name) or ()
    for d in named:
        if d in excluded:
            raise ConfigError(
                f"{name} names {d!r}, which the score consumes itself (here {excluded!r}: the "
                f"member dim or the dims of each sample); leave it out of {name}."
            )
        if d not in dims:
            raise ConfigError(
                f"{name} names {d!r}, which is not a dimension of the inputs (found {dims!r}); "
                "check the spelling or pass one of the found dims."
            )
    if reduce_dims is not None:
        return tuple(d for d in dims if d in named)
    return tuple(d for d in dims if d not in named)


# --------------------------------------------------------------------------------------------
# inputs: alignment, member dim, chunks, weights
# --------------------------------------------------------------------------------------------
def check_values_to_score(
    fcst: xr.DataArray | xr.Dataset,
    obs: xr.DataArray | xr.Dataset,
    dims: Iterable[Hashable],
    *,
    names: tuple[str, str] = ("fcst", "obs"),
) -> None:
    """Refuse a score over a dim of size 0 (an empty selection), whose mean would be a silent NaN.

    ``dims`` are the dims the score averages over or consumes (the member dim). Sizes only: lazy.
    """
    sizes = {**dict(fcst.sizes), **dict(obs.sizes)}
    empty = [d for d in dims if sizes.get(d) == 0]
    if empty:
        raise ShapeError(
            f"{names[0]} and {names[1]} have no values along {empty[0]!r} (size 0): there is "
            "nothing to score, and the mean would be NaN. An empty selection (e.g. "
            ".sel(time=slice(...)) outside the data's range) or inputs without a common "
            "coordinate value (xr.align(join='inner')) give this; select values both have."
        )


def check_xarray(obj: Any, name: str, *, decoded: bool = True, grid: bool = False) -> Any:
    """``obj`` as the metrics compute on it: an xarray object of numpy (or dask) arrays.

    Raises :class:`~flexdownscale.errors.NotXarrayError` (a ``TypeError``) unless ``obj`` is an
    xarray object. Pint quantities (pint-xarray's ``quantify()``) are taken as their magnitudes
    with their units as the ``units`` attribute (:func:`flexdownscale._duck.plain_arrays`), so
    the unit checks see them; other array types (cupy, sparse, ...) are a
    :class:`~flexdownscale.errors.DataError`. With ``decoded``, a data variable that still
    carries CF packing attributes (``scale_factor``, ``add_offset``, a non-NaN ``_FillValue``:
    a file opened with ``mask_and_scale=False``), whose values are raw counts, is a
    :class:`~flexdownscale.errors.DataError` (attributes only: lazy). A Dataset without data
    variables is a :class:`~flexdownscale.errors.DataError` (nothing to score), unless ``grid``
    (only its coordinates are read).

    Returns
    -------
    DataArray or Dataset
        ``obj`` itself, or a copy with plain arrays where it held pint quantities.
    """
    if not isinstance(obj, xr.DataArray | xr.Dataset):
        raise NotXarrayError(not_xarray_message(obj, name))
    obj = plain_arrays(obj, name)
    if isinstance(obj, xr.Dataset) and not obj.data_vars and not grid:
        raise DataError(
            f"{name} is a Dataset without data variables (coordinates only): there is nothing "
            f"to score. Pass the variables to score, e.g. {name}[['t2m']]; an empty selection "
            "(ds[[]], or a filter that kept no variable) gives this."
        )
    if not decoded:
        return obj
    if isinstance(obj, xr.Dataset):
        for var_name, var in obj.data_vars.items():
            check_decoded_variable(var_name, var.attrs)
    else:
        check_decoded_variable(name if obj.name is None else obj.name, obj.attrs)
    return obj


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------
#: The names numpy gives the half- and quarter-precision floats of ``ml_dtypes`` (bfloat16 and
#: the float8 family), whose dtype kind is "V", not "f".
_ML_FLOAT_PREFIXES = ("bfloat16", "float8", "float6", "float4")


def working_dtype(dtype: Any) -> np.dtype:
    """The floating dtype the metrics compute ``dtype``'s values in.

    Half precision (float16, and ``ml_dtypes``' bfloat16 / float8) is computed in float32:
    float16 steps by 0.25 K at 280 K and overflows at 65504 (a sum of squares of temperatures);
    integers and booleans in float64 (differences and squares wrapped around in their type);
    float32 and float64 are kept.

    Parameters
    ----------
    dtype : dtype-like
        The input's dtype.

    Returns
    -------
    numpy.dtype

    Examples
    --------
    >>> [str(working_dtype(t)) for t in ("float16", "float32", "float64", "int16", "bool")]
    ['float32', 'float32', 'float64', 'float64', 'float64']
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize < 4 else dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "V" and dtype.name.startswith(_ML_FLOAT_PREFIXES):
        return np.dtype(np.float32)
    return dtype


def as_working_float(obj: XarrayLike) -> XarrayLike:
    """``obj`` with each variable in its :func:`working_dtype` (a copy only where it changes;
    dask-backed variables stay lazy); attrs are kept.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> as_working_float(xr.DataArray(np.ones(2, dtype="float16"))).dtype
    dtype('float32')
    """

    def one(da: xr.DataArray) -> xr.DataArray:
        dtype = working_dtype(da.dtype)
        return da if dtype == da.dtype else da.astype(dtype)

    if isinstance(obj, xr.Dataset):
        return obj.map(one, keep_attrs=True)
    return one(obj)


def as_score_dtype(obj: XarrayLike) -> XarrayLike:
    """A score's result in float64: the metrics' one output dtype for scores (a float32 or
    half-precision input gives a float64 score, as the CRPS and spectra computed in float64
    always did). Scores are reduced, so the cast costs little; attrs are kept."""

    def one(da: xr.DataArray) -> xr.DataArray:
        kind = np.dtype(da.dtype).kind
        return da.astype(np.float64) if kind in "biuf" and da.dtype != np.float64 else da

    if isinstance(obj, xr.Dataset):
        return obj.map(one, keep_attrs=True)
    return one(obj)


def member_mean(
    fcst: XarrayLike, member_dim: Hashable, *, skipna: bool = True, dtype: Any = None
) -> XarrayLike:
    """Mean over ``member_dim``, summed in float64 whatever the input's dtype (a float32 mean
    of 100 members at 5e5 was off by up to 7 units in the last place), returned in ``dtype``
    (default: the input's :func:`working_dtype`; ``np.float64`` keeps the exact sum's mean).

    The float64 sum accumulates as numpy's and dask's reductions do (no float64 copy of the
    ensemble). A point without a valid member is NaN.
    """

    def one(da: xr.DataArray) -> xr.DataArray:
        out_dtype = working_dtype(da.dtype) if dtype is None else np.dtype(dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = da.mean(member_dim, skipna=skipna, dtype=np.float64)
        return mean if mean.dtype == out_dtype else mean.astype(out_dtype)

    if isinstance(fcst, xr.Dataset):
        return fcst.map(one, keep_attrs=True)
    return one(fcst)


#: Coordinates whose values differ by at most this fraction of their spacing are the same
#: points (floating round-off); :func:`align_exact` gives them the reference's values.
ROUNDOFF_RTOL = 1e-6
#: Differences up to this fraction of the spacing are reported as "rounding": the error
#: suggests ``assign_coords``; larger differences are different points (regrid or select).
ROUNDING_HINT_RTOL = 1e-2


def _roundoff(spacing: float, *coords: np.ndarray) -> float:
    """What coordinate differences count as floating round-off: :data:`ROUNDOFF_RTOL` of the
    spacing, or a few units in the last place of the coarsest float dtype among ``coords`` at
    their magnitude (the same 0.1 degree grid stored as float32 and as float64 differs by
    1.5e-5 of its spacing)."""
    floats = [c for c in coords if np.issubdtype(c.dtype, np.floating)]
    if not floats:
        return ROUNDOFF_RTOL * spacing
    eps = max(float(np.finfo(c.dtype).eps) for c in floats)
    magnitude = max(float(np.abs(c).max()) if c.size else 0.0 for c in floats)
    return max(ROUNDOFF_RTOL * spacing, 8.0 * eps * magnitude)


def _coord_spacing(values: np.ndarray) -> float:
    """Smallest gap between the sorted ``values``; ``max(|value|, 1)`` for a single point."""
    if values.size < 2:
        return max(float(np.abs(values).max()) if values.size else 0.0, 1.0)
    return float(np.diff(np.sort(values)).min())


def _rank_permutation(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Positions into ``other`` that put its k-th smallest value where ``ref`` has its own."""
    positions = np.empty(ref.size, dtype=np.intp)
    positions[np.argsort(ref, kind="stable")] = np.argsort(other, kind="stable")
    return positions


def _calendar(index: pd.Index) -> str | None:
    """The calendar of a time index and how it is stored (``None``: not a time index)."""
    if isinstance(index, pd.DatetimeIndex):
        return "proleptic_gregorian calendar (numpy datetime64)"
    calendar = getattr(index, "calendar", None)  # xarray's CFTimeIndex
    if calendar is not None and getattr(index, "date_type", None) is not None:
        return f"{calendar} calendar (cftime)"
    return None


def _check_same_calendar(
    index: pd.Index, name: str, ref_index: pd.Index, ref_name: str, dim: Hashable
) -> None:
    """ShapeError when two time indexes are in other calendars: their dates never match (a
    noleap 2019-03-01 is not a datetime64 2019-03-01), and ``xr.align`` would leave no time."""
    ours, theirs = _calendar(index), _calendar(ref_index)
    if ours is None or theirs is None or ours == theirs:
        return
    raise ShapeError(
        f"{ref_name}'s {str(dim)!r} is in the {theirs} and {name}'s in the {ours}: the same "
        f"dates in two calendars are different labels, so no time would match. Convert one to "
        f"the other's calendar first, e.g. {name} = {name}.convert_calendar("
        f"{theirs.split()[0]!r}" + (", use_cftime=False)" if "datetime64" in theirs else ")")
    )


def _same_labels(index: pd.MultiIndex, ref_index: pd.MultiIndex) -> bool:
    """Whether two stacked (MultiIndex) indexes hold the same unique tuples, under the same
    level names, in any order."""
    return (
        list(index.names) == list(ref_index.names)
        and index.is_unique
        and ref_index.is_unique
        and index.sort_values().equals(ref_index.sort_values())
    )


def _align_dim(
    obj: XarrayLike,
    name: str,
    ref: xr.DataArray | xr.Dataset,
    ref_name: str,
    dim: Hashable,
) -> XarrayLike:
    """Put ``obj`` on the ``dim`` index of ``ref`` when that is exact, else raise ShapeError."""
    ref_index = ref.indexes[dim]
    index = obj.indexes[dim]
    if index.equals(ref_index):
        return obj
    _check_same_calendar(index, name, ref_index, ref_name, dim)
    stacked = isinstance(ref_index, pd.MultiIndex), isinstance(index, pd.MultiIndex)
    if all(stacked) and _same_labels(index, ref_index):
        # a stacked dim (ds.stack(cell=("lat", "lon"))) whose tuples are the reference's in
        # another order: select them in the reference's order, as for a 1-D index
        return obj.isel({dim: index.get_indexer(ref_index)})
    simple = not any(stacked)
    unique = simple and ref_index.is_unique and index.is_unique
    if unique and index.sort_values().equals(ref_index.sort_values()):
        # the same labels in another order: select them in the reference's order (exact)
        return obj.isel({dim: index.get_indexer(ref_index)})
    ref_values = np.asarray(ref_index)
    values = np.asarray(index)
    numeric = all(
        np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)
        for v in (ref_values, values)
    )
    if not (unique and numeric):
        raise ShapeError(
            f"{ref_name} and {name} have different {dim!r} coordinates (same size "
            f"{ref.sizes[dim]}, different values: {ref_name} has {_preview(ref_values)}, {name} "
            f"has {_preview(values)}); select the labels they share, e.g. "
            f"`{ref_name}, {name} = xr.align({ref_name}, {name}, join='inner')`."
        )
    positions = _rank_permutation(ref_values, values)
    spacing = _coord_spacing(ref_values.astype(float))
    diff = float(np.abs(values[positions].astype(float) - ref_values.astype(float)).max())
    floating = any(np.issubdtype(v.dtype, np.floating) for v in (ref_values, values))
    if floating and diff <= _roundoff(spacing, ref_values, values):
        # the same points up to floating round-off: use the reference's values
        if not np.array_equal(positions, np.arange(positions.size)):
            obj = obj.isel({dim: positions})
        return obj.assign_coords({dim: (dim, ref_values, obj[dim].attrs)})
    if floating and (_is_longitude(ref, dim) or _is_longitude(obj, dim)):
        _check_longitude_convention(values, name, ref_values, ref_name, dim)
    found = (
        f"{ref_name} and {name} have different {dim!r} coordinates (same size "
        f"{ref.sizes[dim]}, different values: {ref_name} has {_preview(ref_values)}, {name} has "
        f"{_preview(values)}; after matching them up in sorted order they differ by up to "
        f"{diff:.6g}, {_share_of_spacing(diff, spacing)})"
    )
    if diff <= ROUNDING_HINT_RTOL * spacing:
        same_order = np.array_equal(positions, np.arange(positions.size))
        if same_order:
            fix = f"`{name} = {name}.assign_coords({dim}={ref_name}[{dim!r}])`"
        else:
            fix = (
                f"`{name} = {name}.reindex({dim}={ref_name}[{dim!r}], method='nearest', "
                f"tolerance={ROUNDING_HINT_RTOL * spacing:.3g})` (their order differs too, so "
                "assign_coords would mislabel the points)"
            )
        raise ShapeError(
            f"{found}; if they are the same points up to rounding, put {name} on the "
            f"{ref_name} labels: {fix}; otherwise regrid one onto the other."
        )
    raise ShapeError(
        f"{found}; these are different points, so relabelling them would be wrong: regrid one "
        f"onto the other (flexdownscale.data.regrid, or {name}.interp({dim}={ref_name}[{dim!r}])) "
        f"or select the shared points (xr.align({ref_name}, {name}, join='inner'))."
    )


def _share_of_spacing(diff: float, spacing: float) -> str:
    """``"50% of the grid spacing 0.25"``; ``"1,432 times the grid spacing 0.25"`` from 10x."""
    ratio = diff / spacing
    if ratio < 10:
        return f"{100 * ratio:.3g}% of the grid spacing {spacing:.6g}"
    return f"{ratio:,.0f} times the grid spacing {spacing:.6g}"


def _is_longitude(obj: xr.DataArray | xr.Dataset, dim: Hashable) -> bool:
    """Whether ``dim`` is a longitude in degrees (east, or a plain-degrees ``lon`` / ``x``)."""
    if coord_kind(obj, dim) != "x":
        return False
    try:
        return coord_units_kind(obj, dim)[0] == "degrees"
    except GridError:  # a longitude whose units are not degrees: not one to wrap
        return False


def _check_longitude_convention(
    values: np.ndarray, name: str, ref_values: np.ndarray, ref_name: str, dim: Hashable
) -> None:
    """ShapeError with the conversion when two longitudes are the same points in the
    -180..180 and the 0..360 conventions (350, ..., 359.75, 0, ..., 1.75 against -10..1.75)."""
    wrapped, ref_wrapped = np.sort(values % 360.0), np.sort(ref_values % 360.0)
    spacing = _coord_spacing(ref_wrapped)
    if np.abs(wrapped - ref_wrapped).max() > _roundoff(spacing, ref_values, values):
        return
    signed = bool((ref_values < 0).any())  # the reference's convention: -180..180 or 0..360
    if signed:
        convention, other = "-180..180", "0..360"
        code = f"{name}.assign_coords({dim}=({name}[{str(dim)!r}] + 180) % 360 - 180)"
    else:
        convention, other = "0..360", "-180..180"
        code = f"{name}.assign_coords({dim}={name}[{str(dim)!r}] % 360)"
    raise ShapeError(
        f"{ref_name} and {name} have the same {str(dim)!r} points in two longitude "
        f"conventions: {ref_name}'s in {convention} ({_preview(ref_values)}), {name}'s in "
        f"{other} ({_preview(values)}); put {name} in {ref_name}'s convention: "
        f"`{name} = {code}.sortby({str(dim)!r})`"
    )


def _preview(values: np.ndarray, n: int = 3) -> str:
    """``[a, b, c, ..., z]`` for error messages."""
    shown = [str(v) if not isinstance(v, float | np.floating) else f"{v:.6g}" for v in values]
    if len(shown) <= 2 * n:
        return "[" + ", ".join(shown) + "]"
    return "[" + ", ".join(shown[:n]) + ", ..., " + ", ".join(shown[-1:]) + "]"


def _same_scalar(a: Any, b: Any) -> bool:
    """Whether two scalar coordinate values are one label: equal, both NaN, or floats equal up
    to :data:`ROUNDOFF_RTOL` (a float32 and a float64 copy of one level)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fc" and b.dtype.kind in "fciu":
        return bool(np.isclose(a, b, rtol=ROUNDOFF_RTOL, atol=0.0, equal_nan=True))
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # labels that cannot be compared are not the same
        return False


def _check_scalar_coords(a: Any, a_name: str, b: Any, b_name: str) -> None:
    """Raise :class:`ShapeError` when ``a`` and ``b`` carry one scalar coordinate (``time`` of
    one field, a ``level``) with different values: xarray arithmetic drops the conflicting
    coordinate without a word, so a forecast for 00 UTC would be scored against 01 UTC."""
    for name in a.coords:
        if name in a.dims or name not in b.coords or name in b.dims:
            continue
        va, vb = a.coords[name], b.coords[name]
        if va.ndim != 0 or vb.ndim != 0 or _same_scalar(va.values, vb.values):
            continue
        raise ShapeError(
            f"{a_name} has {name} = {va.values} but {b_name} has {name} = {vb.values}: the "
            f"scores would compare fields of another {str(name)!r} (xarray drops the conflicting "
            f"coordinate silently); select fields with the same {str(name)!r}, or drop the "
            f"coordinate where it does not matter (.drop_vars({str(name)!r}))"
        )


#: inputs that may lack the data's coordinates and are then paired by position (weights built
#: as ``xr.DataArray(w, dims=["lat"])``, without the coordinate)
POSITIONAL_INPUTS = frozenset({"weights", "member_weights"})


def _check_one_sided_coords(a: Any, a_name: str, b: Any, b_name: str) -> None:
    """Raise :class:`ShapeError` for a shared dim that ``a`` labels and ``b`` does not.

    xarray pairs such a dim by position: a prediction without its ``lat`` coordinate, rows
    ascending, against a truth whose ``lat`` descends would be scored upside down.
    """
    for d in a.dims:
        if d not in b.dims or (d in a.indexes) == (d in b.indexes):
            continue
        has, has_name, lacks_name = (a, a_name, b_name) if d in a.indexes else (b, b_name, a_name)
        values = np.asarray(has.indexes[d])
        order = f"from {_preview(values[:1])[1:-1]} to {_preview(values[-1:])[1:-1]}"
        raise ShapeError(
            f"{has_name} has a {str(d)!r} coordinate (running {order}) but {lacks_name} has "
            f"none on that dim, so their values along {str(d)!r} would be paired by position, "
            f"right only if {lacks_name} comes in the same order. Give {lacks_name} the "
            f"{str(d)!r} values of its own points ({lacks_name} = {lacks_name}.assign_coords("
            f"{d}=<its {d} values>); if they are {has_name}'s, in the same order: "
            f"{lacks_name}.assign_coords({d}={has_name}[{str(d)!r}])), or, to pair by "
            f"position on purpose, drop it from {has_name}: {has_name}.drop_vars({str(d)!r})"
        )


def _ranks(values: Any) -> np.ndarray | None:
    """The rank of each label in its coordinate (the order pattern), or None when the labels
    cannot be sorted."""
    try:
        return np.argsort(np.argsort(np.asarray(values), kind="stable"), kind="stable")
    except TypeError:
        return None


def _check_positional_order(objs: Sequence[Any], names: Sequence[str]) -> None:
    """Raise :class:`ShapeError` for weights without a coordinate on a dim the data inputs hold
    in different orders.

    Such weights pair by position with the first data input's order (the others are reordered
    to it by label): built from a truth with descending latitude and passed with a prediction
    of ascending latitude first, they were applied upside down without a word.
    """
    for p, (w, wname) in enumerate(zip(objs, names)):
        if wname not in POSITIONAL_INPUTS:
            continue
        for d in w.dims:
            if d in w.indexes:
                continue
            labelled = [
                (o, n) for q, (o, n) in enumerate(zip(objs, names)) if q != p and d in o.indexes
            ]
            if len(labelled) < 2:
                continue
            (ref, ref_name), ref_ranks = labelled[0], _ranks(labelled[0][0].indexes[d])
            for other, other_name in labelled[1:]:
                ranks = _ranks(other.indexes[d])
                if ref_ranks is None or ranks is None or np.array_equal(ranks, ref_ranks):
                    continue
                runs = [
                    f"{n} from {_preview(np.asarray(o.indexes[d])[:1])[1:-1]} to "
                    f"{_preview(np.asarray(o.indexes[d])[-1:])[1:-1]}"
                    for o, n in ((ref, ref_name), (other, other_name))
                ]
                raise ShapeError(
                    f"{wname} has no {str(d)!r} coordinate, so its values pair by position, "
                    f"but {ref_name} and {other_name} hold {str(d)!r} in different orders "
                    f"({runs[0]}; {runs[1]}): which order {wname} follows cannot be told. Give "
                    f"{wname} the {str(d)!r} of the input it was built from and it pairs by "
                    f"label: {wname}.assign_coords({d}={ref_name}[{str(d)!r}]) if built from "
                    f"{ref_name}, {wname}.assign_coords({d}={other_name}[{str(d)!r}]) if from "
                    f"{other_name} (area_weights(...) of either has it)"
                )


def align_exact(*objs: Any, names: Sequence[str]) -> tuple[Any, ...]:
    """Check that shared dims agree; put every input on the first input's index coordinates.

    xarray arithmetic would otherwise silently intersect mismatched coordinates (or fail with a
    generic message when sizes differ). For each dim, the first input (in ``objs`` order) with
    an index on it is the reference; every other input with an index on that dim must hold
    the same points:

    * the same labels in another order (e.g. latitude descending in one, ascending in the
      other) are reordered to the reference's order by label, which is exact;
    * numeric labels that differ only by floating round-off, at most :data:`ROUNDOFF_RTOL`
      times the reference's smallest spacing or 8 units in the last place of the coarser float
      type at the coordinates' magnitude, whichever is larger (:func:`_roundoff`; after
      matching them up in sorted order), are the same points: the input is put in the
      reference's order and takes the reference's values;
    * longitudes that are the same points in the other convention (0..360 against
      -180..180) raise :class:`~flexdownscale.errors.ShapeError` with the conversion;
    * anything else raises :class:`~flexdownscale.errors.ShapeError`, which suggests
      ``assign_coords`` only when the difference is below :data:`ROUNDING_HINT_RTOL` of the
      spacing and the order agrees, and regridding or selecting otherwise.

    A scalar coordinate that two inputs share (the ``time`` of one field, a ``level``) must
    hold the same value in both (floats to :data:`ROUNDOFF_RTOL`), else ``ShapeError``. A
    shared dim with a coordinate in one input and none in the other is a ``ShapeError`` too
    (xarray would pair it by position), except for the inputs named in
    :data:`POSITIONAL_INPUTS` (weights, which may be built without coordinates); such weights
    on a dim that the other inputs hold in different orders are a ``ShapeError`` (which order
    they follow cannot be told).

    Reordering is lazy (``isel``) on dask-backed input.

    Parameters
    ----------
    *objs : DataArray, Dataset or None
        The inputs; ``None`` (e.g. no weights) and non-xarray entries are passed through.
    names : sequence of str
        The argument name of each input, for the error messages.

    Returns
    -------
    tuple
        The inputs, in the same order, on the reference's coordinates.

    Raises
    ------
    ShapeError
        Shared dims of different sizes, index coordinates holding different points, a dim
        with a coordinate in one input and none in the other, or a shared scalar coordinate
        with different values.
    MissingVariableError
        Datasets with different data variables.
    """
    out = list(objs)
    present = [i for i, o in enumerate(out) if isinstance(o, xr.DataArray | xr.Dataset)]
    for k, i in enumerate(present):
        a, an = out[i], names[i]
        for j in present[k + 1 :]:
            b, bn = out[j], names[j]
            for d in a.dims:
                if d in b.dims and a.sizes[d] != b.sizes[d]:
                    raise ShapeError(
                        f"{an} and {bn} disagree on the size of dim {d!r}: {a.sizes[d]} vs "
                        f"{b.sizes[d]}; select or regrid them onto the same grid first."
                    )
    for k, i in enumerate(present):  # scalar coordinates (time, level, ...) must agree too
        for j in present[k + 1 :]:
            _check_scalar_coords(out[i], names[i], out[j], names[j])
            if names[i] not in POSITIONAL_INPUTS and names[j] not in POSITIONAL_INPUTS:
                _check_one_sided_coords(out[i], names[i], out[j], names[j])
    _check_positional_order([out[i] for i in present], [names[i] for i in present])
    for k, i in enumerate(present):
        ref, ref_name = out[i], names[i]
        for d in ref.dims:
            if d not in ref.indexes:
                continue
            # the first input indexed on d is its reference; earlier ones lack that index
            if any(d in out[p].indexes for p in present[:k]):
                continue
            for j in present[k + 1 :]:
                if d in out[j].indexes:
                    out[j] = _align_dim(out[j], names[j], ref, ref_name, d)
    if len(present) > 1 and all(isinstance(out[i], xr.Dataset) for i in present):
        first, fname = out[present[0]], names[present[0]]
        for i in present[1:]:
            other, oname = out[i], names[i]
            if set(first.data_vars) != set(other.data_vars):
                raise MissingVariableError(
                    f"{fname} has variables {sorted(map(str, first.data_vars))} but {oname} has "
                    f"{sorted(map(str, other.data_vars))}; select the same variables in both."
                )
    return tuple(out)


def unit_pairs(a: Any, b: Any) -> list[tuple[Hashable | None, str, str]]:
    """``(variable, units of a, units of b)`` for each pair of variables whose units to compare.

    The DataArrays themselves (variable ``None``), a Dataset's variables of the same name, or
    each variable of a Dataset with a DataArray (which xarray scores against every one of
    them); pairs where either side has no ``units`` attribute are left out.
    """
    if not (isinstance(a, xr.DataArray | xr.Dataset) and isinstance(b, xr.DataArray | xr.Dataset)):
        return []
    if isinstance(a, xr.Dataset) and isinstance(b, xr.Dataset):
        pairs = [(v, a[v], b[v]) for v in a.data_vars if v in b.data_vars]
    elif isinstance(a, xr.Dataset):  # the DataArray is scored against every variable
        pairs = [(v, a[v], b) for v in a.data_vars]
    elif isinstance(b, xr.Dataset):
        pairs = [(v, a, b[v]) for v in b.data_vars]
    else:
        pairs = [(None, a, b)]
    out = []
    for name, va, vb in pairs:
        ua, ub = va.attrs.get("units"), vb.attrs.get("units")
        if ua is not None and ub is not None:
            out.append((name, str(ua), str(ub)))
    return out


def units_advice(
    ua: str,
    ub: str,
    names: tuple[str, str],
    *,
    lead: str = "scores of values in different units are meaningless",
    target: str | None = None,
    then: str = "",
    variable: str | None = None,
) -> str:
    """What to do about ``names[0]`` in ``ua`` against ``names[1]`` in ``ub`` (other units).

    A conversion when there is one (``convert obs first (values in K = values in degC +
    273.15) and set its attrs['units'] = 'K'``), after ``lead``; for text that is no unit,
    that it is not recognised and which attribute to set; for units of different quantities
    (``K`` and ``hPa``), that no conversion makes them comparable. ``target`` names what is
    converted (default ``names[1]``) and ``then`` is added after the conversion. For a water
    depth against a mass per area (``mm`` and ``kg m-2``) the liquid-water equivalence is
    offered (:meth:`~flexdownscale.units.UnitComparison.water_hint`), in Python when ``target``
    is a name (``obs[variable]``, or ``obs`` itself without ``variable``), else in words.
    """
    units = compare_units(ub, ua)
    if units.conversion is not None:
        return (
            f"{lead}: convert {target or names[1]} first ({units.rule}) and set its "
            f"attrs['units'] = {ua!r}{then}"
        )
    if units.outcome == "not_a_unit":
        unknown = [
            (name, unit, other_name, other)
            for name, unit, kind, other_name, other in (
                (names[0], ua, units.expected_kind, names[1], ub),
                (names[1], ub, units.found_kind, names[0], ua),
            )
            if kind is None
        ]
        said = [
            f"{name}'s 'units' attribute is empty"
            if not unit.strip()
            else f"{unit!r} ({name}'s) is not a unit flexdownscale recognises"
            for name, unit, _, _ in unknown
        ]
        whose = " and ".join(f"{name}'s" for name, _, _, _ in unknown)
        example = ""
        if len(unknown) == 1:
            _, _, other_name, other = unknown[0]
            example = f"; if they are in the units of {other_name}: attrs['units'] = {other!r}"
        return (
            f"{' and '.join(said)}, so the two cannot be compared: set {whose} 'units' "
            "attribute to the units the values are in, in a CF spelling ('K', 'degC', 'hPa', "
            f"'m s-1', 'kg m-2 s-1', '1' for a ratio){example}{then}"
        )
    whose = target or names[1]
    water = units.water_hint(
        variable,
        form="python" if whose.isidentifier() else "words",
        target=whose,
    )
    if water is not None:  # mm against kg m-2: comparable for liquid water, never assumed
        return (
            f"{ua!r} is {units.expected_kind} and {ub!r} {units.found_kind}: not the same kind "
            f"of quantity, but {water}{then}. Otherwise check that {names[0]} and {names[1]} "
            "hold the same variable"
        )
    return (
        f"{ua!r} is {units.expected_kind} and {ub!r} {units.found_kind}: not the same kind of "
        f"quantity, so no conversion makes them comparable; check that {names[0]} and "
        f"{names[1]} hold the same variable, and that each 'units' attribute says what its "
        "values are in"
    )


def check_same_units(
    a: Any,
    b: Any,
    *,
    names: tuple[str, str] = ("fcst", "obs"),
    ignore_offset: bool = False,
    lead: str = "scores of values in different units are meaningless",
) -> None:
    """Raise :class:`~flexdownscale.errors.UnitsError` when ``a`` and ``b`` are in other units.

    Compares the ``units`` attribute of each pair of variables (:func:`unit_pairs`) as units,
    not strings (:mod:`flexdownscale.units`): ``K`` and ``kelvin`` agree, ``K`` and ``degC`` do
    not, and the error gives the conversion (:func:`units_advice`; for ``K`` against ``hPa``,
    that they are different quantities). With ``ignore_offset`` units that differ by an offset
    only agree (``K`` and ``degC``: for what depends on differences alone, such as a spectrum
    with the mean removed). A variable without a ``units`` attribute on either side is not
    checked. ``lead`` says why the units must agree, before the conversion.
    """
    for name, ua, ub in unit_pairs(a, b):
        conversion = linear_conversion(ub, ua)
        if conversion == (1.0, 0.0) or (
            ignore_offset and conversion is not None and conversion[0] == 1.0
        ):
            continue
        what = f"variable {name!r}: " if name is not None else ""
        variable = str(name) if name is not None and isinstance(b, xr.Dataset) else None
        raise UnitsError(
            f"{what}{names[0]} is in {ua!r} but {names[1]} is in {ub!r}; "
            + units_advice(ua, ub, names, lead=lead, variable=variable)
        )


def check_member_dim(
    fcst: xr.DataArray | xr.Dataset,
    obs: Any,
    member_dim: Hashable,
    names: tuple[str, str] = ("fcst", "obs"),
) -> int:
    """Check the ensemble layout; return the number of members ``M``.

    ``names`` are the caller's names of the ensemble and the observations (``("ensemble",
    "truth")`` for :func:`~flexdownscale.plot.plot_panels`), used in the messages.
    """
    ens_name, obs_name = names
    if member_dim not in fcst.dims:
        raise EnsembleError(
            f"{ens_name} has no member dim {member_dim!r} (its dims are {tuple(fcst.dims)!r}); "
            f"pass member_dim=<name of the ensemble dim>, or {ens_name}.expand_dims(member=1) "
            "for a deterministic forecast."
        )
    if isinstance(fcst, xr.Dataset):
        lacking = [str(v) for v in fcst.data_vars if member_dim not in fcst[v].dims]
        if lacking:
            keep = [str(v) for v in fcst.data_vars if member_dim in fcst[v].dims]
            raise EnsembleError(
                f"{ens_name} variables {lacking} have no member dim {member_dim!r} (a static "
                f"field beside the ensemble?); score the ensemble variables only: "
                f"{ens_name}[{keep}]"
            )
    if isinstance(obs, xr.DataArray | xr.Dataset) and member_dim in obs.dims:
        raise EnsembleError(
            f"{obs_name} has the member dim {member_dim!r}; observations are one realisation: "
            f"drop the dim ({obs_name}.isel({member_dim}=0)) or pass the right member_dim."
        )
    if fcst.sizes[member_dim] == 0:
        raise EnsembleError(
            f"{ens_name} has no members: its member dim {member_dim!r} has size 0 (an empty "
            f"selection along it?); pass an ensemble with at least one member."
        )
    return int(fcst.sizes[member_dim])


def _variables(obj: xr.DataArray | xr.Dataset) -> list[xr.DataArray]:
    return [obj] if isinstance(obj, xr.DataArray) else [obj[v] for v in obj.data_vars]


def check_single_chunk(
    obj: xr.DataArray | xr.Dataset,
    dims: Iterable[Hashable],
    why: str,
    error: type[Exception] = EnsembleError,
    argument: str | None = None,
) -> None:
    """Raise ``error`` when a dask-backed variable is chunked along ``dims``; the message
    names the variable, or ``argument`` (the input's argument name) for an unnamed one."""
    dims = tuple(dims)
    for var in _variables(obj):
        if var.chunks is None:
            continue
        for d in dims:
            if d in var.dims and len(var.chunksizes[d]) > 1:
                label = repr(var.name) if var.name is not None else (argument or "the input")
                raise error(
                    f"dim {d!r} of {label} is split into "
                    f"{len(var.chunksizes[d])} dask chunks, but {why} needs it in one chunk; "
                    f"rechunk first: {argument or 'obj'}.chunk({{{d!r}: -1}})."
                )


def _weights_check_block(block: np.ndarray) -> np.ndarray:
    if np.isnan(block).any():
        raise WeightsError("weights contain NaN; replace them, e.g. weights.fillna(0).")
    if np.isinf(block).any():
        raise WeightsError("weights contain infinite values; weights must be finite and >= 0.")
    if (block < 0).any():
        raise WeightsError("weights contain negative values; weights must be >= 0.")
    return block


def check_weights(
    weights: Any, data_dims: Iterable[Hashable], *, name: str = "weights"
) -> xr.DataArray | None:
    """Validate ``weights``: a DataArray, no NaN, no negatives, only dims the data have.

    A pint-quantified DataArray is taken as its magnitudes (the units cancel in a weighted
    mean); another array type than numpy or dask is a :class:`DataError`. In-memory weights are checked at once; dask-backed weights get the check inserted into
    the graph, so it runs (and raises :class:`WeightsError`) at compute time.
    """
    if weights is None:
        return None
    if not isinstance(weights, xr.DataArray):
        raise WeightsError(
            f"{name} must be an xarray DataArray with named dims, got {type(weights).__name__}; "
            "e.g. flexdownscale.metrics.area_weights(truth), or xr.DataArray(w, dims=['lat'], "
            "coords={'lat': truth['lat']}) (with the coordinate, the weights follow the data's "
            "order)."
        )
    # a pint quantity (an area in m2): its magnitudes, as the data's; the units of weights
    # cancel in every weighted mean
    weights = plain_arrays(weights, name)
    data_dims = tuple(data_dims)
    extra = [d for d in weights.dims if d not in data_dims]
    if extra:
        raise WeightsError(
            f"{name} have dims {extra!r} that the data lack (data dims: {data_dims!r}); "
            f"{name} must be broadcastable against the data."
        )
    if not np.issubdtype(weights.dtype, np.number) or np.issubdtype(
        weights.dtype, np.complexfloating
    ):
        raise WeightsError(f"{name} must be real numbers, got dtype {weights.dtype}.")
    if weights.chunks is None:
        values = np.asarray(weights.values, dtype=float)
        if np.isnan(values).any():
            raise WeightsError(
                f"{name} contain {int(np.isnan(values).sum())} NaN value(s); weights must be "
                f"finite and >= 0 (use {name}.fillna(0) to give missing points no weight)."
            )
        if np.isinf(values).any():
            raise WeightsError(
                f"{name} contain {int(np.isinf(values).sum())} infinite value(s); weights must "
                "be finite and >= 0 (an infinite weight makes every weighted mean NaN)."
            )
        if (values < 0).any():
            raise WeightsError(
                f"{name} contain {int((values < 0).sum())} negative value(s) (min "
                f"{values.min():g}); weights must be >= 0."
            )
        return weights
    return weights.copy(data=weights.data.map_blocks(_weights_check_block, dtype=weights.dtype))


def weighted_mean(
    score: XarrayLike,
    dims: Sequence[Hashable],
    weights: xr.DataArray | None,
    *,
    skipna: bool = True,
) -> XarrayLike:
    """Weighted mean over ``dims``: ``sum(w s) / sum(w)`` over the points where ``s`` is valid.

    Follows :class:`xarray.core.weighted.Weighted` (the ``scores`` convention): with
    ``skipna=True`` NaN scores drop out of both sums; with ``skipna=False`` they propagate.
    """
    if isinstance(score, xr.Dataset) and weights is not None:
        # variable by variable, as the unweighted mean: a variable constant along a weights
        # dim it lacks gets the weights summed over that dim (the mean of it broadcast)
        return score.map(
            lambda var: weighted_mean(
                var,
                dims,
                weights.sum([d for d in weights.dims if d not in var.dims]),
                skipna=skipna,
            ),
            keep_attrs=True,
        )
    dims = [d for d in dims if d in score.dims]
    if not dims:
        return score
    if weights is None:
        return score.mean(dims, skipna=skipna)
    return score.weighted(weights).mean(dims, skipna=skipna)


# --------------------------------------------------------------------------------------------
# units and attributes
# --------------------------------------------------------------------------------------------
def pow_units(units: str | None, power: int = 2) -> str | None:
    """``"K"`` -> ``"K^2"``, ``"m s-1"`` -> ``"(m s-1)^2"``; ``None`` stays ``None``."""
    if units is None:
        return None
    units = str(units).strip()
    if units in ("", "1"):
        return "1"
    if re.fullmatch(r"[A-Za-z_]+", units):
        return f"{units}^{power}"
    return f"({units})^{power}"


def set_attrs(
    result: XarrayLike,
    source: xr.DataArray | xr.Dataset | Sequence[xr.DataArray | xr.Dataset],
    *,
    units: Any = "same",
    **attrs: Any,
) -> XarrayLike:
    """Replace the attrs of ``result`` (and of each data variable) with ``units`` and ``attrs``.

    ``source`` is an input (or a sequence of inputs, searched in order) whose ``units`` attr
    is used. ``units`` is ``"same"`` (copy the source's units), a callable applied to the
    source's units (skipped when no source has units), a string (set as is) or ``None`` (no
    units attr).
    """
    sources = list(source) if isinstance(source, list | tuple) else [source]

    def source_units(name: Hashable | None) -> str | None:
        for src in sources:
            if isinstance(src, xr.DataArray):
                var = src
            elif name is not None and name in src.data_vars:
                var = src[name]
            else:
                continue
            if "units" in var.attrs:
                return str(var.attrs["units"])
        return None

    def attrs_for(name: Hashable | None) -> dict[str, Any]:
        out = {k: v for k, v in attrs.items() if v is not None}
        if units is None:
            return out
        if isinstance(units, str) and units != "same":
            out["units"] = units
            return out
        src_units = source_units(name)
        if src_units is not None:
            out["units"] = src_units if units == "same" else units(src_units)
        return out

    if isinstance(result, xr.DataArray):
        result.attrs = attrs_for(result.name)
        return result
    result.attrs = {}
    for v in result.data_vars:
        result[v].attrs = attrs_for(v)
    return result


# --------------------------------------------------------------------------------------------
# grids
# --------------------------------------------------------------------------------------------
def coord_kind(obj: xr.DataArray | xr.Dataset, dim: Hashable) -> str | None:
    """``"y"`` / ``"x"`` / ``None`` from the coordinate's attrs, then the dim name."""
    attrs = obj[dim].attrs if dim in obj.coords else {}
    axis = str(attrs.get("axis", "")).upper()
    std = str(attrs.get("standard_name", "")).lower()
    degrees = degree_units(attrs.get("units", ""))
    if axis == "Y" or std in _Y_STANDARD or degrees == "north":
        return "y"
    if axis == "X" or std in _X_STANDARD or degrees == "east":
        return "x"
    name = str(dim).lower()
    if name in _Y_NAMES:
        return "y"
    if name in _X_NAMES:
        return "x"
    return None


def _stacked_hint(obj: xr.DataArray | xr.Dataset) -> str:
    """For a grid message: the input's stacked (MultiIndex) dims, and the unstack that gives
    their levels back as dims (``""`` when there is none)."""
    stacked = {
        d: [str(n) for n in index.names]
        for d, index in obj.indexes.items()
        if d in obj.dims and isinstance(index, pd.MultiIndex)
    }
    if not stacked:
        return ""
    (d, levels), *_ = stacked.items()
    return (
        f" {str(d)!r} is a stacked (MultiIndex) dim of {levels}: the grid needs Y and X as "
        f"dims of their own, so unstack it first, e.g. obj.unstack({str(d)!r})."
    )


def find_yx_dims(
    obj: xr.DataArray | xr.Dataset, dims: Sequence[Hashable] | None = None
) -> tuple[Hashable, Hashable]:
    """The (Y, X) dims of a 2-D grid, from CF attrs (axis, standard_name, units) or names."""
    if dims is not None:
        dims = tuple(dims)
        if len(dims) != 2:
            raise GridError(f"expected two spatial dims (Y, X), got {dims!r}.")
        for d in dims:
            if d not in obj.dims:
                raise GridError(f"dim {d!r} is not in the input (dims: {tuple(obj.dims)!r}).")
        return dims[0], dims[1]
    ys = [d for d in obj.dims if coord_kind(obj, d) == "y"]
    xs = [d for d in obj.dims if coord_kind(obj, d) == "x"]
    if len(ys) != 1 or len(xs) != 1:
        raise GridError(
            f"could not tell the Y and X dims apart from {tuple(obj.dims)!r} (Y candidates: "
            f"{ys!r}, X candidates: {xs!r}); pass dims=(y_dim, x_dim).{_stacked_hint(obj)}"
        )
    return ys[0], xs[0]


def coord_units_kind(obj: xr.DataArray | xr.Dataset, dim: Hashable) -> tuple[str, float]:
    """Classify a coordinate: ``("degrees", 1)``, ``("length", metres per unit)`` or ``("none", 1)``."""
    attrs = obj[dim].attrs if dim in obj.coords else {}
    units = str(attrs.get("units", "")).strip().lower().replace(" ", "")
    std = str(attrs.get("standard_name", "")).lower()
    geographic = std in {"latitude", "longitude", "grid_latitude", "grid_longitude"}
    # every spelling of degrees: degrees_north, degN, "degrees north", the degree sign
    if degree_units(units) is not None:
        return "degrees", 1.0
    if not units and (geographic or str(dim).lower() in {"lat", "latitude", "lon", "longitude"}):
        return "degrees", 1.0
    if units in _LENGTH_UNITS:
        return "length", _LENGTH_UNITS[units]
    if geographic:
        raise GridError(
            f"coordinate {dim!r} is a {std} but its units {attrs.get('units')!r} are not "
            "degrees; set units='degrees_north' / 'degrees_east' (or pass spacing=...)"
        )
    return "none", 1.0


def regular_step(
    obj: xr.DataArray | xr.Dataset,
    dim: Hashable,
    *,
    rtol: float = 1e-3,
    period: float | None = None,
) -> float:
    """Absolute spacing of the 1-D coordinate of ``dim`` (in its own units); checks regularity.

    ``period`` (360 for a longitude in degrees) wraps the steps, so a region across the
    dateline or the prime meridian (e.g. 350, 355, 0, 5) is regular. The spacing is the
    least-squares slope of the values against their index (in float64), so float32 rounding of
    the stored values, up to ``eps32 * |value|`` each, shifts it by far less than one step's
    rounding: a float32 and a float64 copy of one grid give the same spectral bins.
    """
    if dim not in obj.coords:
        raise GridError(
            f"dim {dim!r} has no coordinate, so its spacing is unknown; pass spacing=..."
        )
    stored = np.asarray(obj[dim].values)
    values = stored.astype(float)
    if values.ndim != 1 or values.size < 2:
        raise GridError(f"coordinate {dim!r} must be 1-D with at least 2 points to give a spacing.")
    steps = np.diff(values)
    if period is not None:
        steps = (steps + 0.5 * period) % period - 0.5 * period
    # the slope over all points, not the median step: a step between two float32 values far
    # from zero (0.01 degrees at 100 E) is off by up to 1e-3 of itself, the slope by ~1e-5
    position = np.arange(values.size) - 0.5 * (values.size - 1)
    along = np.concatenate([[0.0], np.cumsum(steps)])  # unwrapped across the period
    step = float((position * (along - along.mean())).sum() / (position**2).sum())
    # float32 coordinates (most netCDF files) round each value to eps32 * |value|: a fine
    # grid far from zero (0.0025 degrees at 350 E) has steps that vary by more than rtol
    tolerance = rtol * abs(step)
    if np.issubdtype(stored.dtype, np.floating):
        tolerance = max(tolerance, 4.0 * float(np.finfo(stored.dtype).eps) * np.abs(values).max())
    if step == 0 or np.any(np.abs(steps - step) > tolerance):
        raise GridError(
            f"coordinate {dim!r} is not regularly spaced (steps from {steps.min():g} to "
            f"{steps.max():g}); spectra need a regular grid: regrid first, or pass spacing=... "
            "if the irregularity is only rounding."
        )
    return abs(step)


def find_latitude(
    obj: xr.DataArray | xr.Dataset, exclude: Iterable[Hashable] = ()
) -> xr.DataArray | None:
    """A latitude coordinate (degrees) of ``obj``, dim or not; ``None`` when absent."""
    exclude = set(exclude)
    for name in obj.coords:
        if name in exclude:
            continue
        c = obj.coords[name]
        std = str(c.attrs.get("standard_name", "")).lower()
        units = str(c.attrs.get("units", "")).strip()
        degrees = degree_units(units)
        if std in {"latitude", "grid_latitude"} or degrees == "north":
            return c
        if str(name).lower() in {"lat", "latitude", "rlat"} and (not units or degrees is not None):
            return c
    return None


def dataset_with_dims(obj: XarrayLike, dims: Iterable[Hashable]) -> XarrayLike:
    """For a Dataset, keep the data variables that have all ``dims`` (others cannot be used)."""
    dims = tuple(dims)
    if isinstance(obj, xr.DataArray):
        return obj
    keep = [v for v in obj.data_vars if all(d in obj[v].dims for d in dims)]
    if not keep:
        raise MissingVariableError(
            f"no data variable of the Dataset has the dims {dims!r} (variables: "
            f"{ {str(v): tuple(obj[v].dims) for v in obj.data_vars} })."
        )
    return obj[keep]


def mapping_or_scalar(value: Any, dims: Sequence[Hashable], name: str) -> dict[Hashable, float]:
    """``3.0`` -> ``{d: 3.0 for d in dims}``; a mapping must name every dim."""
    if isinstance(value, Mapping):
        missing = [d for d in dims if d not in value]
        if missing:
            raise ConfigError(f"{name} has no entry for dim(s) {missing!r}; give one per dim.")
        return {d: float(value[d]) for d in dims}
    return {d: float(value) for d in dims}
