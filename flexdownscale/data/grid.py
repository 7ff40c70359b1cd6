"""Grids: CF-aware discovery, validation and normalization of the X / Y / time axes.

Every xarray object that enters flexdownscale goes through this module first. It finds the
horizontal axes (with cf-xarray: ``standard_name``, ``axis``, ``units``; then common names such as
``lat``, ``latitude``, ``rlat``, ``y``; or an explicit ``dims={"x": ..., "y": ...}`` override),
checks that they form a regular rectilinear grid, and returns a normalized copy (ascending axes,
one longitude convention, floating-point coordinates). The input is never modified.

Three kinds of grids are recognised:

``"latlon"``
    1-D latitude / longitude in degrees. Cells have areas proportional to the difference of the
    sines of their latitude bounds; latitude bounds are clipped to [-90, 90]; a grid whose
    longitudes span 360 degrees is periodic in x.
``"rotated"``
    1-D rotated-pole latitude / longitude (``grid_latitude`` / ``grid_longitude``, e.g.
    EURO-CORDEX ``rlat`` / ``rlon``). Handled like a regional latitude / longitude grid in the
    rotated frame (which is a spherical coordinate system too), without longitude wrapping.
``"projected"``
    1-D projected ``x`` / ``y`` with units (``m``, ``km``, or ``1`` for non-dimensional physics
    domains). Cells all have the same area. An axis whose coordinate carries the attribute
    ``periodic = "true"`` is periodic.

Grids described by 2-D (curvilinear) latitude / longitude arrays are not accepted here: regrid
them first with :func:`flexdownscale.data.regrid.regrid` and the xesmf backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from .._attributes import says_periodic
from .._duck import dataset_of
from .._keywords import keyword_hints
from .._packing import check_decoded as check_decoded  # re-exported: its old home
from .._stack import user_stacklevel
from ..errors import (
    ConfigError,
    FlexDownscaleWarning,
    GridError,
    NotXarrayError,
    UnitsError,
    UnsupportedFactorError,
    not_xarray_message,
)
from ..units import degree_units

__all__ = [
    "GridAxes",
    "GridSpec",
    "add_bounds",
    "cell_bounds",
    "coarsen_coord",
    "coarsen_grid",
    "coordinate_encoding",
    "find_axes",
    "grid_spec",
    "normalize_grid",
    "refine_coord",
    "refine_grid",
    "rotated_pole_to_geographic",
    "row_area_weights",
]

XrObj = xr.Dataset | xr.DataArray
# a Dataset in, a Dataset out; a DataArray in, a DataArray out
XrT = TypeVar("XrT", bound=xr.Dataset | xr.DataArray)
Kind = Literal["latlon", "rotated", "projected"]

#: the kinds whose y axis is a latitude on a sphere (the rotated frame's for "rotated"): its
#: cells end at +-90, and its rows weigh sin(upper) - sin(lower)
SPHERICAL_KINDS: tuple[Kind, ...] = ("latlon", "rotated")
LonConvention = Literal["auto", "180", "360"]
Boundary = Literal["exact", "trim"]

#: Relative tolerance on the regularity of grid spacing (fraction of the mean spacing).
DEFAULT_RTOL = 1e-3

_X_NAMES = ("lon", "longitude", "long", "rlon", "x", "xc", "easting", "grid_longitude")
_Y_NAMES = ("lat", "latitude", "rlat", "y", "yc", "northing", "grid_latitude")
_T_NAMES = ("time", "valid_time", "t", "times", "date")
_LAT_NAMES = ("lat", "latitude", "nav_lat")
_LON_NAMES = ("lon", "longitude", "long", "nav_lon")


def _check_literal(name: str, value: Any, options: Any) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in allowed)}"
        )


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridAxes:
    """Names of the horizontal (and time) dimensions of an xarray object.

    Attributes
    ----------
    x : str
        Name of the x (longitude-like) dimension.
    y : str
        Name of the y (latitude-like) dimension.
    time : str or None, default None
        Name of the time dimension, or ``None`` when there is none.

    Examples
    --------
    :func:`find_axes` reads the names from CF attributes or common names; they index the
    data's sizes and dims whatever the file calls them:

    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 3, 4)), dims=("valid_time", "latitude", "longitude"))
    >>> axes = find_axes(da)
    >>> axes
    GridAxes(x='longitude', y='latitude', time='valid_time')
    >>> da.sizes[axes.y], da.sizes[axes.x]
    (3, 4)
    """

    x: str
    y: str
    time: str | None = None


def _dim_coords(obj: XrObj, names: list[Hashable] | tuple[Hashable, ...]) -> list[str]:
    """Keep the names that are 1-D dimension coordinates of ``obj`` (order kept, no repeats)."""
    out: list[str] = []
    for name in names:
        if name in obj.dims and name in obj.coords and obj[name].ndim == 1 and name not in out:
            out.append(str(name))
    return out


def _curvilinear(obj: XrObj) -> list[str]:
    """Names of 2-D (or more) coordinates that look like latitude or longitude."""
    return [
        str(name)
        for name, coord in obj.coords.items()
        if coord.ndim >= 2 and _geographic_axis(name, coord.attrs) is not None
    ]


def _discover(obj: XrObj, axis: Literal["X", "Y", "T"]) -> str | None:
    cf_axes = obj.cf.axes
    cf_coords = obj.cf.coordinates
    key = {"X": "longitude", "Y": "latitude", "T": "time"}[axis]
    names = {"X": _X_NAMES, "Y": _Y_NAMES, "T": _T_NAMES}[axis]
    stages: list[list[str]] = [
        _dim_coords(obj, cf_axes.get(axis, [])),
        _dim_coords(obj, cf_coords.get(key, [])),
    ]
    if axis != "T":  # degrees north / east in spellings cf-xarray does not know (°N, degN)
        direction = "east" if axis == "X" else "north"
        stages.append(
            _dim_coords(
                obj,
                [
                    str(c)
                    for c in obj.coords
                    if degree_units(obj[c].attrs.get("units", "")) == direction
                ],
            )
        )
    lowered = {str(d).lower(): str(d) for d in obj.dims}
    stages.append([lowered[n] for n in names if n in lowered])
    for candidates in stages:
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise GridError(
                f"found several candidate {axis} dimensions {candidates}; expected exactly one. "
                f"Name the one to use, e.g. dims={{'{axis.lower() if axis != 'T' else 'time'}': "
                f"{candidates[0]!r}}}"
            )
    return None


@keyword_hints
def find_axes(obj: XrObj, *, dims: Mapping[str, str] | None = None) -> GridAxes:
    """Find the x, y and time dimensions of ``obj``.

    Discovery order: the ``dims`` override, then cf-xarray axes (``axis``, ``standard_name``,
    ``units``), then cf-xarray latitude / longitude / time coordinates, then common dimension
    names (``lat``, ``latitude``, ``rlat``, ``y``, ... / ``lon``, ``longitude``, ``rlon``, ``x``,
    ... / ``time``, ``valid_time``, ...).

    Parameters
    ----------
    obj
        Dataset or DataArray.
    dims
        Optional override, a mapping with keys among ``"x"``, ``"y"``, ``"time"`` giving
        dimension names, e.g. ``{"x": "lon", "y": "lat"}``.

    Returns
    -------
    GridAxes
        ``time`` is ``None`` when no time dimension is found.

    Raises
    ------
    GridError
        When x or y cannot be found, when a candidate is ambiguous, when the grid is curvilinear
        (2-D latitude / longitude) or when ``dims`` names a dimension that does not exist.
    DataError
        When ``obj`` is not a Dataset or DataArray (e.g. an ``xarray.DataTree``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 3)), dims=("latitude", "longitude"))
    >>> find_axes(da)
    GridAxes(x='longitude', y='latitude', time=None)
    """
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise NotXarrayError(not_xarray_message(obj))
    override = dict(dims or {})
    unknown = set(override) - {"x", "y", "time"}
    if unknown:
        raise GridError(
            f"dims has unknown keys {sorted(unknown)}; expected keys among 'x', 'y', 'time' "
            f"(e.g. dims={{'x': 'lon', 'y': 'lat'}})"
        )
    for key, name in override.items():
        if name not in obj.dims:
            raise GridError(
                f"dims={{{key!r}: {name!r}}} names a dimension that is not in the data; "
                f"the data has dimensions {list(map(str, obj.dims))}" + _swap_hint(obj)
            )
    x = override.get("x") or _discover(obj, "X")
    y = override.get("y") or _discover(obj, "Y")
    no_axis_values = any(v is not None and v not in obj.coords for v in (x, y))
    if x is None or y is None or no_axis_values:
        curvi = _curvilinear(obj)
        if curvi:
            raise GridError(
                f"the grid is curvilinear: latitude/longitude are 2-D coordinates {curvi} and no "
                f"1-D x/y axes were found. flexdownscale needs a rectilinear grid; regrid first, "
                f"e.g. flexdownscale.data.regrid.regrid(ds, target, backend='xesmf') "
                f"(pip install 'flexdownscale[esmf]' and conda install -c conda-forge esmpy)"
            )
    if x is None or y is None:
        missing = " and ".join(n for n, v in (("x", x), ("y", y)) if v is None)
        raise GridError(
            f"could not find the {missing} dimension among {list(map(str, obj.dims))}; expected "
            f"CF attributes (axis, standard_name, units such as degrees_north) or a common name "
            f"(lat/latitude/rlat/y, lon/longitude/rlon/x). Name them explicitly, e.g. "
            f"dims={{'x': 'lon', 'y': 'lat'}}" + _swap_hint(obj)
        )
    if x == y:
        raise GridError(
            f"x and y resolve to the same dimension {x!r}; pass dims={{'x':..., 'y':...}}"
        )
    time = override.get("time")
    if time is None:
        try:
            time = _discover(obj, "T")
        except GridError:
            time = None
        if time in (x, y):
            time = None
    return GridAxes(x=str(x), y=str(y), time=None if time is None else str(time))


# --------------------------------------------------------------------------------------------
# Kind, units, validation
# --------------------------------------------------------------------------------------------


def _attrs(obj: XrObj, name: str) -> dict[str, Any]:
    return dict(obj[name].attrs) if name in obj.coords else {}


def _grid_mapping_names(attr: Any) -> list[str]:
    """Variable names in a CF ``grid_mapping`` attribute (``"crs"`` or ``"crs: x y ..."``)."""
    if not isinstance(attr, str):
        return []
    if ":" not in attr:
        return attr.split()
    words = attr.replace(":", " : ").split()
    return [w for i, w in enumerate(words[:-1]) if words[i + 1] == ":"]


def _grid_mapping(obj: XrObj) -> dict[str, Any] | None:
    """The CF grid-mapping attributes used by the data variables, if any (JSON-friendly)."""
    variables = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    for var in variables:
        names = _grid_mapping_names(
            var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        )
        if not names:
            continue
        gm = names[0]
        holder = obj.variables if isinstance(obj, xr.Dataset) else obj.coords
        if gm in holder:
            attrs = {"name": gm, **dict(holder[gm].attrs)}
            return _jsonable(attrs)
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _kind(obj: XrObj, axes: GridAxes) -> Kind:
    xa, ya = _attrs(obj, axes.x), _attrs(obj, axes.y)
    xstd = str(xa.get("standard_name", "")).lower()
    ystd = str(ya.get("standard_name", "")).lower()
    xunits = str(xa.get("units", "")).strip()
    yunits = str(ya.get("units", "")).strip()
    xdeg, ydeg = degree_units(xunits), degree_units(yunits)
    gm = _grid_mapping(obj) or {}
    if (
        ystd == "grid_latitude"
        or xstd == "grid_longitude"
        or gm.get("grid_mapping_name") == "rotated_latitude_longitude"
    ):
        for name, units, kind in ((axes.x, xunits, xdeg), (axes.y, yunits, ydeg)):
            if units and kind not in ("degrees", "north", "east"):
                raise UnitsError(
                    f"rotated-pole coordinate {name!r} has units {units!r}; expected 'degrees'. "
                    f"Convert it or fix the attribute: ds[{name!r}].attrs['units'] = 'degrees'"
                )
        return "rotated"
    # any spelling of degrees north / east (degrees_north, degree_N, degN, °N, "degrees north")
    y_is_lat = ystd == "latitude" or ydeg == "north"
    x_is_lon = xstd == "longitude" or xdeg == "east"
    named = axes.y.lower() in _LAT_NAMES and axes.x.lower() in _LON_NAMES
    if y_is_lat or x_is_lon or named:
        for name, units, kind, want in (
            (axes.y, yunits, ydeg, "north"),
            (axes.x, xunits, xdeg, "east"),
        ):
            if kind in ("south", "west"):
                raise UnitsError(
                    f"coordinate {name!r} is in {units!r}, which count the other way; negate it "
                    f"and label it degrees_{want}: ds = ds.assign_coords({name}=-ds[{name!r}]."
                    f"assign_attrs(units='degrees_{want}'))"
                )
            if units and kind not in (want, "degrees"):
                raise UnitsError(
                    f"coordinate {name!r} looks like latitude/longitude but has units {units!r}; "
                    f"expected degrees (degrees_{want}). Convert the coordinate to degrees first"
                )
        if not (y_is_lat or axes.y.lower() in _LAT_NAMES) or not (
            x_is_lon or axes.x.lower() in _LON_NAMES
        ):
            raise GridError(
                f"y={axes.y!r} and x={axes.x!r} mix geographic and non-geographic axes; expected "
                f"latitude with longitude, or projected x with projected y"
            )
        return "latlon"
    for name, units in ((axes.x, xunits), (axes.y, yunits)):
        if not units:
            raise UnitsError(
                f"projected coordinate {name!r} has no 'units' attribute; expected a length unit "
                f"such as 'm' or 'km' (or '1' for a non-dimensional domain). Set it with "
                f"ds[{name!r}].attrs['units'] = 'km'"
            )
    return "projected"


def _eager(var: xr.DataArray | xr.Variable) -> np.ndarray:
    """Values of a (small) coordinate variable, computed on the spot if it is dask-backed.

    Coordinates are metadata and are read eagerly (with dask's synchronous scheduler); data
    variables are never computed by this module.
    """
    data = var.data
    if hasattr(data, "dask"):
        import dask

        (data,) = dask.compute(data, scheduler="synchronous")
    return np.asarray(data)


def _coordinates_along_dims(obj: XrObj) -> dict[str, str]:
    """``{dim: coordinate}`` for each dim without coordinate values along which exactly one
    1-D coordinate lies (``latitude(j)``, ``longitude(i)``: CF auxiliary coordinates)."""
    along = {}
    for dim in map(str, obj.dims):
        if dim in obj.coords:
            continue
        names = [str(n) for n, c in obj.coords.items() if c.dims == (dim,)]
        if len(names) == 1:
            along[dim] = names[0]
    return along


def _swap_hint(obj: XrObj) -> str:
    """The fix for grid coordinates stored along dims without values (``""``: none are)."""
    along = _coordinates_along_dims(obj)
    if not along:
        return ""
    coords = ", ".join(f"{c!r} along {d!r}" for d, c in along.items())
    return (
        f". The data has 1-D coordinates along dimensions without values ({coords}): make "
        f"them the dimensions first (with xarray, for example: ds = ds.swap_dims({along!r}))"
    )


def _numeric_fix(values: np.ndarray, name: str) -> str:
    """How to give coordinate ``name`` the real numbers a grid axis needs, by what it holds:
    numbers stored as text (a CSV or a string-typed netCDF variable) convert as they are;
    other labels need the cell centres' numeric values assigned."""
    shown = ", ".join(repr(v) for v in values.ravel()[:2].tolist())
    if values.dtype.kind in "USO":
        try:
            values.astype(np.float64)
        except (TypeError, ValueError):
            return (
                f"its values ({shown}, ...) are not numbers; assign the cell centres, e.g. "
                f"ds = ds.assign_coords({name}=np.arange(ds.sizes[{name!r}]) * spacing) (keep "
                f"the labels as another coordinate: ds.assign_coords(label=({name!r}, "
                f"ds[{name!r}].values)) first)"
            )
        return (
            f"its values ({shown}, ...) are numbers stored as text; convert them: "
            f"ds = ds.assign_coords({name}=ds[{name!r}].astype(float))"
        )
    if np.issubdtype(values.dtype, np.complexfloating):
        return f"take the real part: ds = ds.assign_coords({name}=ds[{name!r}].real)"
    return (
        f"assign the cell centres, e.g. ds = ds.assign_coords({name}=np.arange("
        f"ds.sizes[{name!r}]) * spacing), or name the grid's dims with dims={{'x': ..., "
        "'y': ...}} if this is not a grid axis"
    )


def _values(obj: XrObj, name: str) -> np.ndarray:
    if name not in obj.coords:
        along = _coordinates_along_dims(obj)
        if name in along:
            raise GridError(
                f"dimension {name!r} has no coordinate values, but coordinate {along[name]!r} "
                f"lies along it{_swap_hint(obj)}"
            )
        raise GridError(
            f"dimension {name!r} has no coordinate values; expected a 1-D coordinate giving the "
            f"cell centres. Assign one, e.g. ds.assign_coords({name}=np.arange(n) * spacing)"
        )
    values = _eager(obj[name])
    if values.ndim != 1:
        raise GridError(f"coordinate {name!r} is {values.ndim}-D; expected a 1-D axis")
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        raise GridError(
            f"coordinate {name!r} has dtype {values.dtype}; expected real numbers (cell "
            f"centres): {_numeric_fix(values, name)}"
        )
    values = values.astype(np.float64)
    if values.size < 2:
        raise GridError(
            f"coordinate {name!r} has {values.size} point(s); a grid axis needs at least 2 "
            f"points (its spacing is read from them). Select at least 2 cells along {name!r} "
            "(a wider .sel / .isel, or bbox= on the whole field; one cell inside a bbox is "
            "enough) and cut the result afterwards"
        )
    if not np.all(np.isfinite(values)):
        raise GridError(f"coordinate {name!r} has NaN or infinite values; expected finite centres")
    return values


def _check_unique(values: np.ndarray, name: str) -> None:
    uniq, counts = np.unique(values, return_counts=True)
    if uniq.size != values.size:
        dup = uniq[counts > 1][:5].tolist()
        raise GridError(
            f"coordinate {name!r} has duplicated values {dup}; expected unique cell centres. "
            f"Drop the duplicates, e.g. ds.drop_duplicates({name!r})"
        )


def _check_same_place(values: np.ndarray, name: str) -> None:
    """Refuse distinct longitudes that are the same place (360 degrees apart)."""
    wrapped = np.round(_wrap(values, 0.0), 9) % 360.0
    uniq, first, counts = np.unique(wrapped, return_index=True, return_counts=True)
    if uniq.size == values.size:
        return
    if abs(abs(values[-1] - values[0]) - 360.0) <= 1e-6 and counts[first == 0].sum() == 2:
        raise GridError(
            f"longitude {name!r} has a cyclic point: its last value {values[-1]:g} repeats the "
            f"first one, {values[0]:g}, 360 degrees later (as written by add_cyclic_point and "
            f"some CMIP/NCL tools); expected each longitude once. Drop it, e.g. "
            f"ds.isel({name}=slice(None, -1)) (drop_duplicates does not see it, the values "
            f"differ)"
        )
    dup = uniq[counts > 1][0]
    same = values[wrapped == dup][:2].tolist()
    raise GridError(
        f"longitude {name!r} has values {same} that are the same place (360 degrees apart); "
        f"expected each longitude once. Drop one of them, e.g. with ds.isel({name}=...)"
    )


#: Seconds per unit of a CF time ("<unit> since <date>") that is not decoded.
_SECONDS_PER = {
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "mins", "min"), 60.0),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
}


def _seconds_per_time_unit(attrs: Mapping[str, Any]) -> float | None:
    """Seconds in one unit of a numeric CF time ``"<unit> since <date>"`` (3600 for hours; the
    coordinate's ``attrs``), ``None`` for other units (a step count, say)."""
    units = str(attrs.get("units") or "")
    if " since " not in units:
        return None
    return _SECONDS_PER.get(units.split(" since ")[0].strip().lower())


def _duration(value: float, units: str) -> str:
    """A time step in words: ``6 hours`` for 21600 s, ``0.5`` for a step count in ``"1"``."""
    if units != "s":
        return f"{value:g}" if units == "1" else f"{value:g} {units}"
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if value >= size and value % size == 0:
            count = value / size
            return f"{count:g} {word}{'s' if count != 1 else ''}"
    return f"{value:g} s"


def _time_steps(values: np.ndarray, attrs: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    """``(steps, units)``: the differences of a time coordinate's ``values`` as float64, ``(n -
    1,)``: in seconds (``units = "s"``) for times (datetime64, cftime, or numbers in CF units
    of seconds to days ``since`` a date), otherwise in the coordinate's own ``units`` attribute
    (``"1"`` when it has none: a step count, as the Kolmogorov file's)."""
    values = np.asarray(values)
    units = str(attrs.get("units") or "1")
    scale = _seconds_per_time_unit(attrs)
    if values.dtype.kind in "MO" or scale is not None:
        units = "s"
    if values.size < 2:
        return np.zeros(0), units
    diffs = values[1:] - values[:-1]
    if values.dtype.kind == "M":
        return diffs / np.timedelta64(1, "s"), units
    if values.dtype.kind == "O":  # cftime: datetime.timedelta differences
        return np.array([d.total_seconds() for d in diffs], dtype=np.float64), units
    return diffs.astype(np.float64) * (scale or 1.0), units


def _check_regular(values: np.ndarray, name: str, rtol: float) -> float:
    """Check that ascending ``values`` are regular; return the spacing."""
    step = (values[-1] - values[0]) / (values.size - 1)
    if not step > 0:
        raise GridError(f"coordinate {name!r} is not increasing after normalization")
    deviation = np.abs(np.diff(values) - step)
    worst = int(np.argmax(deviation))
    if deviation[worst] > rtol * step:
        raise GridError(
            f"coordinate {name!r} is irregular: spacing {np.diff(values)[worst]:.6g} at index "
            f"{worst} differs from the mean spacing {step:.6g} by more than rtol={rtol:g}; "
            f"expected a regular grid. Regrid to a regular grid first "
            f"(flexdownscale.data.regrid.regrid)"
        )
    return float(step)


def _monotonic_direction(values: np.ndarray, name: str) -> int:
    d = np.diff(values)
    if np.all(d > 0):
        return 1
    if np.all(d < 0):
        return -1
    raise GridError(
        f"coordinate {name!r} is not monotonic; expected strictly increasing or decreasing "
        f"values. Sort it first, e.g. ds.sortby({name!r})"
    )


def _wrap(values: np.ndarray, lo: float) -> np.ndarray:
    return (values - lo) % 360.0 + lo


def _lon_order(
    values: np.ndarray, name: str, convention: LonConvention, rtol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wrap longitudes into one convention and sort; returns (order, wrapped sorted values)."""
    if np.ptp(values) > 360.0 + 1e-6:
        raise GridError(
            f"longitude {name!r} spans {np.ptp(values):.6g} degrees; expected at most 360"
        )
    _check_same_place(values, name)
    if convention == "auto" and values.size > 1 and np.all(np.diff(values) > 0):
        # ascending, regular and at most one cell outside a convention, as the refinement of a
        # global grid with a cell centred on the seam (-180.1875, ..., 179.4375): kept as it is,
        # since wrapping that column to the other end would split its coarse cell
        step = float(np.median(np.diff(values)))
        inside = values[0] >= -180.0 - step and values[-1] <= 360.0 + step
        fits_180 = values[0] >= -180.0 and values[-1] < 180.0
        fits_360 = values[0] >= 0.0 and values[-1] < 360.0
        outside = not (fits_180 or fits_360)
        if inside and outside:
            try:
                _check_regular(values, name, rtol)
            except GridError:
                pass
            else:
                return np.arange(values.size), values
    if convention == "auto":
        first = "180" if np.any(values < 0) else "360"
        order_of_try = (first, "360" if first == "180" else "180")
    else:
        order_of_try = (convention,)
    err: GridError | None = None
    for conv in order_of_try:
        wrapped = _wrap(values, -180.0 if conv == "180" else 0.0)
        order = np.argsort(wrapped, kind="stable")
        try:
            _check_regular(wrapped[order], name, rtol)
        except GridError as e:
            err = e
            continue
        return order, wrapped[order]
    if convention != "auto" and len(order_of_try) == 1:
        try:  # give a specific message when the other convention would work
            other = _wrap(values, 0.0 if convention == "180" else -180.0)
            _check_regular(np.sort(other), name, rtol)
        except GridError:
            pass
        else:
            raise GridError(
                f"longitude {name!r} crosses the seam of the requested {convention!r} convention; "
                f"in that convention the grid is not contiguous. Use lon_convention='auto' or "
                f"{'360' if convention == '180' else '180'!r}"
            )
    assert err is not None
    raise err


# --------------------------------------------------------------------------------------------
# Bounds, refinement, coarsening (coordinate arrays)
# --------------------------------------------------------------------------------------------


@keyword_hints
def cell_bounds(centres: np.ndarray, *, latitude: bool = False) -> np.ndarray:
    """Cell bounds of a regular 1-D axis.

    Parameters
    ----------
    centres
        (n,) ascending, regularly spaced cell centres.
    latitude
        Clip the bounds to [-90, 90] (polar cells of grids with points on the poles are half
        cells).

    Returns
    -------
    numpy.ndarray
        (n, 2) float64 array of (lower, upper) bounds; adjacent cells share their bound exactly.

    Examples
    --------
    Bounds half a step either side of each centre; with ``latitude=True`` the cells of the
    poles end there, half as tall as the others:

    >>> import numpy as np
    >>> cell_bounds(np.array([0.0, 10.0, 20.0]))
    array([[-5.,  5.],
           [ 5., 15.],
           [15., 25.]])
    >>> cell_bounds(np.array([-90.0, -45, 0, 45, 90]), latitude=True)[[0, -1]]
    array([[-90. , -67.5],
           [ 67.5,  90. ]])
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise GridError(f"cell_bounds needs a 1-D axis of at least 2 centres, got shape {c.shape}")
    edges = np.empty(c.size + 1)
    edges[1:-1] = 0.5 * (c[:-1] + c[1:])
    edges[0] = c[0] - 0.5 * (c[1] - c[0])
    edges[-1] = c[-1] + 0.5 * (c[-1] - c[-2])
    if latitude:
        edges = np.clip(edges, -90.0, 90.0)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def refine_coord(
    centres: np.ndarray, factor: int, *, latitude: bool = False, name: str = "lat"
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and bounds of the fine cells that subdivide each coarse cell in ``factor`` parts.

    The coarse bounds (unclipped) are split into ``factor`` equal parts; the first fine lower
    bound and the last fine upper bound of every coarse cell are the coarse bounds themselves,
    so the union of the fine cells is exactly the coarse cell. The fine centres form the regular
    axis ``x0 + i * dx`` (``dx`` the coarse spacing / ``factor``, ``x0`` half a fine cell from the
    first coarse bound), chosen among the values within round-off of it so that their block
    means are the coarse centres exactly, with ``x0`` and ``dx`` rounded to short decimals when
    they are within ``1e-9 * dx`` of one: refining a grid obtained by
    :func:`coarsen_coord` gives back the original centres exactly whenever they were regular
    (``x0 + i * dx``), e.g. ``0.0`` rather than ``2.4e-17``.

    Parameters
    ----------
    centres
        (n,) ascending regular coarse centres.
    factor
        Refinement factor (a positive integer).
    latitude
        Clip bounds to [-90, 90] and refuse fine centres beyond the poles.
    name
        The latitude dim's name, for the error's hint.

    Returns
    -------
    fine_centres, fine_bounds
        (n * factor,) centres and (n * factor, 2) bounds, float64.

    Raises
    ------
    GridError
        When ``latitude`` and a fine centre would lie beyond a pole (the coarse grid has points on
        the poles).
    """
    factor = _check_factor(factor)
    coarse = cell_bounds(centres)
    lo, hi = coarse[:, :1], coarse[:, 1:]
    k = np.arange(factor + 1, dtype=np.float64)[None, :]
    edges = lo + (hi - lo) * (k / factor)
    edges[:, 0] = lo[:, 0]
    edges[:, -1] = hi[:, 0]
    fine_bounds = np.stack([edges[:, :-1], edges[:, 1:]], axis=-1).reshape(-1, 2)
    fine_centres = _regular_fine_centres(np.asarray(centres, dtype=np.float64), factor)
    if latitude:
        if np.any(np.abs(fine_centres) > 90.0 + 1e-9):
            raise GridError(
                f"refining latitudes by {factor} puts fine cells beyond the poles (coarse centres "
                f"{centres[0]:g}..{centres[-1]:g} have cells reaching past +/-90); expected coarse "
                f"cells inside [-90, 90]. Drop the polar rows first, e.g. ds.isel({name}=slice(1, -1))"
            )
        fine_bounds = np.clip(fine_bounds, -90.0, 90.0)
    return fine_centres, fine_bounds


def _snap_decimal(value: float, scale: float) -> float:
    """``value`` rounded to the shortest decimal within ``1e-9 * scale`` of it, if one is short.

    Only decimals whose last digit is worth at least ``1e-6 * scale`` are tried, so that a value
    that is not a short decimal (``pi / 128``) is kept as it is.
    """
    for digits in range(-6, 18):
        quantum = 10.0 ** (-digits)
        if quantum < 1e-6 * scale:
            break
        rounded = round(value, digits)
        if abs(rounded - value) <= 1e-9 * scale:
            return float(rounded) + 0.0  # + 0.0 turns -0.0 into 0.0
    return float(value)


def _ulps(value: float, steps: int) -> float:
    """``value`` moved by ``steps`` units in the last place."""
    direction = np.inf if steps > 0 else -np.inf
    for _ in range(abs(steps)):
        value = float(np.nextafter(value, direction))
    return value


def _regular_fine_centres(centres: np.ndarray, factor: int) -> np.ndarray:
    """Regular fine centres ``x0 + i * dx`` whose block means are ``centres`` where possible.

    ``dx`` and ``x0`` are estimated from the coarse centres, rounded to short decimals when within
    ``1e-9 * dx`` of one, then moved by up to two units in the last place until
    ``coarsen_coord(fine, factor) == centres`` exactly; when no candidate satisfies that identity
    (the coarse centres were not block means of a regular axis), the rounded estimate is used.
    """
    n = centres.size
    coarse_dx = (centres[-1] - centres[0]) / (n - 1)
    dx = coarse_dx / factor
    x0 = centres[0] - 0.5 * coarse_dx + 0.5 * dx  # half a fine cell from the first coarse bound
    index = np.arange(n * factor, dtype=np.float64)
    snapped = (_snap_decimal(x0, dx), _snap_decimal(dx, dx))
    tried: set[tuple[float, float]] = set()
    for base_x0, base_dx in (snapped, (float(x0), float(dx))):
        for step_dx in (0, 1, -1, 2, -2):
            for step_x0 in (0, 1, -1, 2, -2):
                candidate = (_ulps(base_x0, step_x0), _ulps(base_dx, step_dx))
                if candidate in tried:
                    continue
                tried.add(candidate)
                fine = candidate[0] + candidate[1] * index
                if np.array_equal(fine.reshape(n, factor).mean(axis=1), centres):
                    return fine
    return snapped[0] + snapped[1] * index


def coarsen_coord(centres: np.ndarray, factor: int) -> np.ndarray:
    """Centres of the coarse cells made of ``factor`` consecutive fine cells (block means).

    Parameters
    ----------
    centres
        (n,) fine centres, ``n`` divisible by ``factor``.
    factor
        Coarsening factor.

    Returns
    -------
    numpy.ndarray
        (n // factor,) float64 coarse centres.
    """
    factor = _check_factor(factor)
    c = np.asarray(centres, dtype=np.float64)
    if c.size % factor:
        raise UnsupportedFactorError(
            f"an axis of {c.size} cells cannot be coarsened by {factor}; expected a size "
            f"divisible by the factor"
        )
    return c.reshape(-1, factor).mean(axis=1)


def _check_factor(factor: Any) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise UnsupportedFactorError(
            f"factor={factor!r} is not supported; expected a positive integer such as 2, 4 or 8"
        )
    return int(factor)


@keyword_hints
def row_area_weights(lat_bounds: np.ndarray) -> np.ndarray:
    """Relative areas of latitude rows: ``sin(upper) - sin(lower)`` of the (clipped) bounds.

    Parameters
    ----------
    lat_bounds
        (n, 2) latitude bounds in degrees.

    Returns
    -------
    numpy.ndarray
        (n,) non-negative float64 weights (2 summed over the whole sphere).

    Examples
    --------
    The band from the equator to 30N has the area of the band from 30N to the pole (one
    half of ``sin(90) - sin(0)``); the rows of a global grid add up to 2:

    >>> import numpy as np
    >>> row_area_weights(np.array([[0.0, 30.0], [30.0, 90.0]])).round(6)
    array([0.5, 0.5])
    >>> bounds = cell_bounds(np.arange(-90.0, 91.0, 30.0), latitude=True)
    >>> round(float(row_area_weights(bounds).sum()), 6)
    2.0
    """
    b = np.radians(np.asarray(lat_bounds, dtype=np.float64))
    return np.abs(np.sin(b[:, 1]) - np.sin(b[:, 0]))


# --------------------------------------------------------------------------------------------
# GridSpec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridSpec:
    """Description of a normalized regular grid (JSON-serialisable, stored in ``grid.json``).

    Attributes
    ----------
    x : str
        Name of the x dimension.
    y : str
        Name of the y dimension.
    kind : {"latlon", "rotated", "projected"}
        Kind of grid: geographic latitude/longitude, rotated-pole, or projected (x/y in a
        length unit, or dimensionless).
    nx : int
        Number of cells along x (>= 1).
    ny : int
        Number of cells along y (>= 1).
    x0 : float
        First (smallest) x cell centre, in ``x_units``.
    y0 : float
        First (smallest) y cell centre, in ``y_units``.
    dx : float
        Spacing along x, in ``x_units`` (> 0).
    dy : float
        Spacing along y, in ``y_units`` (> 0).
    x_units : str, default ""
        Units of x (``degrees_east``, ``degrees``, ``km``, ``1``, ...).
    y_units : str, default ""
        Units of y (``degrees_north``, ``degrees``, ``km``, ``1``, ...).
    periodic_x : bool, default False
        Whether x wraps around (global longitude, doubly periodic physics domains).
    periodic_y : bool, default False
        Whether y wraps around (doubly periodic physics domains).
    time : str or None, default None
        Name of the time dimension or ``None``.
    crs : mapping of str to Any or None, default None
        CF grid-mapping attributes (``grid_mapping_name``, ...) or ``None``.

    Examples
    --------
    The grid of a 1 degree field stored north to south (as ERA5's), its 2 x 2 blocks and its
    cells halved, and a round trip through the JSON text of ``grid.json``:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([50.0, 49, 48, 47], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([-10.0, -9, -8, -7, -6, -5], dims="lon",
    ...                    attrs={"units": "degrees_east"})
    >>> spec = grid_spec(xr.DataArray(np.zeros((4, 6)), coords={"lat": lat, "lon": lon}))
    >>> spec.kind, spec.shape, spec.y0, spec.dy
    ('latlon', (4, 6), 47.0, 1.0)
    >>> spec.extent
    (-10.5, -4.5, 46.5, 50.5)
    >>> coarse = spec.coarsen(2)
    >>> coarse.shape, coarse.x_centres()
    ((2, 3), array([-9.5, -7.5, -5.5]))
    >>> spec.refine(2).shape, spec.refine(2).dx
    ((8, 12), 0.5)
    >>> GridSpec.from_json(spec.to_json()) == spec
    True
    """

    x: str
    y: str
    kind: Kind
    nx: int
    ny: int
    x0: float
    y0: float
    dx: float
    dy: float
    x_units: str = ""
    y_units: str = ""
    periodic_x: bool = False
    periodic_y: bool = False
    time: str | None = None
    crs: Mapping[str, Any] | None = None

    format_version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_literal("kind", self.kind, Kind)
        if self.nx < 1 or self.ny < 1 or not (self.dx > 0 and self.dy > 0):
            raise GridError(
                f"GridSpec needs positive sizes and spacings, got nx={self.nx}, ny={self.ny}, "
                f"dx={self.dx}, dy={self.dy}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return (self.ny, self.nx)

    def x_centres(self) -> np.ndarray:
        """(nx,) cell centres along x.

        Returns
        -------
        numpy.ndarray
            ``x0 + dx * arange(nx)``, in the axis units.
        """
        return self.x0 + self.dx * np.arange(self.nx)

    def y_centres(self) -> np.ndarray:
        """(ny,) cell centres along y.

        Returns
        -------
        numpy.ndarray
            ``y0 + dy * arange(ny)``, in the axis units.
        """
        return self.y0 + self.dy * np.arange(self.ny)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the cell bounds (latitudes clipped to [-90, 90])."""
        xmin, xmax = self.x0 - self.dx / 2, self.x0 + (self.nx - 0.5) * self.dx
        ymin, ymax = self.y0 - self.dy / 2, self.y0 + (self.ny - 0.5) * self.dy
        if self.kind in SPHERICAL_KINDS:
            ymin, ymax = max(ymin, -90.0), min(ymax, 90.0)
        return (xmin, xmax, ymin, ymax)

    def coarsen(self, factor: int, *, boundary: Boundary = "exact") -> GridSpec:
        """The grid of ``factor`` x ``factor`` blocks of this grid.

        Parameters
        ----------
        factor : int
            Block side in cells (a positive integer).
        boundary : {"exact", "trim"}, default "exact"
            ``"exact"``: the sizes must be multiples of ``factor``; ``"trim"``: trailing cells
            that do not fill a block are dropped.

        Returns
        -------
        GridSpec
            The coarse grid (periodic only where the size divides by ``factor``).

        Raises
        ------
        UnsupportedFactorError
            When a size is not divisible by ``factor`` and ``boundary="exact"``.
        """
        factor = _check_factor(factor)
        _check_literal("boundary", boundary, Boundary)
        if boundary == "exact" and (self.nx % factor or self.ny % factor):
            # which cells trim drops, by value: the axes are ascending here whatever the file's
            # order (a descending latitude loses its first rows as stored, the northernmost)
            dropped = [
                f"{n % factor} along {name} ({name} = {start + (n - n % factor) * step:g}"
                + (f" to {start + (n - 1) * step:g}" if n % factor > 1 else "")
                + ")"
                for name, n, start, step in (
                    (self.y, self.ny, self.y0, self.dy),
                    (self.x, self.nx, self.x0, self.dx),
                )
                if n % factor
            ]
            raise UnsupportedFactorError(
                f"grid of shape (ny, nx) = {self.shape} is not divisible by factor {factor}; "
                f"expected sizes that are multiples of the factor. Use boundary='trim' to drop "
                f"the cells at the high end of each such axis that do not fill a block: "
                f"{' and '.join(dropped)}"
            )
        nx, ny = self.nx // factor, self.ny // factor
        if nx < 1 or ny < 1:
            raise UnsupportedFactorError(f"factor {factor} exceeds the grid shape {self.shape}")
        return _replace(
            self,
            nx=nx,
            ny=ny,
            x0=self.x0 + 0.5 * (factor - 1) * self.dx,
            y0=self.y0 + 0.5 * (factor - 1) * self.dy,
            dx=self.dx * factor,
            dy=self.dy * factor,
            periodic_x=self.periodic_x and self.nx % factor == 0,
            periodic_y=self.periodic_y and self.ny % factor == 0,
        )

    def refine(self, factor: int) -> GridSpec:
        """The grid whose ``factor`` x ``factor`` blocks are the cells of this grid.

        Parameters
        ----------
        factor : int
            Cells per coarse cell along each axis (a positive integer).

        Returns
        -------
        GridSpec
            The fine grid, ``factor`` times the cells along each axis.

        Raises
        ------
        GridError
            When refined latitudes would lie beyond the poles.
        """
        factor = _check_factor(factor)
        spec = _replace(
            self,
            nx=self.nx * factor,
            ny=self.ny * factor,
            x0=self.x0 - 0.5 * (factor - 1) * self.dx / factor,
            y0=self.y0 - 0.5 * (factor - 1) * self.dy / factor,
            dx=self.dx / factor,
            dy=self.dy / factor,
        )
        if self.kind in SPHERICAL_KINDS:
            ys = spec.y_centres()
            if ys[0] < -90 - 1e-9 or ys[-1] > 90 + 1e-9:
                # raises the full message
                refine_coord(self.y_centres(), factor, latitude=True, name=str(self.y))
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (with ``format_version``).

        Returns
        -------
        dict
            The fields of the grid and ``format_version``.
        """
        out: dict[str, Any] = {"format_version": self.format_version}
        for f in fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GridSpec:
        """Inverse of :meth:`to_dict`; unknown keys or a newer format are refused.

        Parameters
        ----------
        values : mapping
            A dict as :meth:`to_dict` writes it (``format_version`` may be left out).

        Returns
        -------
        GridSpec
            The grid the dict describes.

        Raises
        ------
        GridError
            For another format version, unknown keys or missing fields.
        """
        values = dict(values)
        version = values.pop("format_version", cls.format_version)
        if version != cls.format_version:
            raise GridError(
                f"grid description has format_version {version}; this flexdownscale reads "
                f"version {cls.format_version}. Upgrade flexdownscale"
            )
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise GridError(
                f"unknown keys {sorted(unknown)} in grid description; expected {sorted(names)}"
            )
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise GridError(f"the grid description lacks {missing}; expected {sorted(names)}")
        return cls(**values)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of :meth:`to_dict`; also written to ``path`` when given.

        Parameters
        ----------
        path : str or pathlib.Path, optional
            File to write the text to (UTF-8); default None: nothing is written.

        Returns
        -------
        str
            The JSON text (keys sorted).
        """
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> GridSpec:
        """Read from JSON text or from a path to a JSON file.

        Parameters
        ----------
        source : str or pathlib.Path
            JSON text (a string starting with ``{``) or the path of a file holding it.

        Returns
        -------
        GridSpec
            The grid the JSON describes (as :meth:`from_dict`).
        """
        text = str(source)
        if isinstance(source, Path) or not text.lstrip().startswith("{"):
            text = Path(source).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))


def _replace(spec: GridSpec, **changes: Any) -> GridSpec:
    values = {f.name: getattr(spec, f.name) for f in fields(spec)}
    values.update(changes)
    return GridSpec(**values)


# --------------------------------------------------------------------------------------------
# Normalization of xarray objects
# --------------------------------------------------------------------------------------------


def _circles_the_globe(kind: Kind, nx: int, dx: float, rtol: float = DEFAULT_RTOL) -> bool:
    """Whether ``nx`` longitudes ``dx`` degrees apart of a ``kind`` grid span the whole circle
    (360 degrees to ``rtol`` of a cell): periodic by their extent, whatever the attributes say."""
    return kind == "latlon" and abs(nx * dx - 360.0) <= rtol * dx


_is_periodic_attr = says_periodic  # the data layer's name for the shared reading


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)


def _bounds_name(obj: XrObj, name: str) -> str | None:
    bname = obj[name].attrs.get("bounds") if name in obj.coords else None
    if bname and isinstance(obj, xr.Dataset) and bname in obj.variables:
        return str(bname)
    if bname and bname in obj.coords:
        return str(bname)
    return None


def _drop_axis_bounds(obj: XrObj, names: tuple[str, ...]) -> XrObj:
    """``obj`` without the CF bounds variables of the axes ``names`` (data variables or coords).

    A plainly opened CF file holds ``lat_bnds`` / ``lon_bnds`` as data variables; operations that
    move data to a new grid drop them, since the new grid's own bounds replace them.
    """
    drop = []
    for name in names:
        bname = _bounds_name(obj, name)
        if bname is not None and bname not in names and bname not in drop:
            drop.append(bname)
    return obj.drop_vars(drop) if drop else obj


def _on_grid(name: Hashable, var: xr.DataArray, y: Hashable, x: Hashable) -> bool:
    """Whether the data variable ``name`` lies on the grid (has both ``y`` and ``x``).

    Raises
    ------
    GridError
        When it has only one of them (it could be neither carried along nor moved to a new grid).
    """
    has_y, has_x = y in var.dims, x in var.dims
    if has_y != has_x:
        raise GridError(
            f"variable {name!r} has only one of the grid dimensions ({var.dims}); expected "
            f"both {y!r} and {x!r} or neither. Drop it first: ds.drop_vars({name!r})"
        )
    return has_y


def _trim_coordinates_attr(
    attrs: Mapping[str, Any], present: Callable[[str], bool]
) -> dict[str, Any]:
    """``attrs`` with the CF ``coordinates`` attribute naming only coordinates that are
    ``present`` (dropped altogether when none is left)."""
    out = dict(attrs)
    listed = out.pop("coordinates", None)
    if not isinstance(listed, str):
        if listed is not None:
            out["coordinates"] = listed
        return out
    kept = [c for c in listed.split() if present(c)]
    if kept:
        out["coordinates"] = " ".join(kept)
    return out


def _trim_stale_coordinates(obj: XrObj) -> XrObj:
    """``obj`` with CF ``coordinates`` attributes naming only variables ``obj`` has."""
    have = set(map(str, obj.coords if isinstance(obj, xr.DataArray) else obj.variables))
    if isinstance(obj, xr.DataArray):
        if "coordinates" in obj.attrs:
            obj = obj.copy(deep=False)
            obj.attrs = _trim_coordinates_attr(obj.attrs, have.__contains__)
        return obj
    stale = [n for n, v in obj.data_vars.items() if "coordinates" in v.attrs]
    if not stale:
        return obj
    obj = obj.copy(deep=False)
    for name in stale:
        obj[name].attrs = _trim_coordinates_attr(obj[name].attrs, have.__contains__)
    return obj


def _normalized_axis(
    obj: XrObj,
    name: str,
    *,
    is_lon: bool,
    lon_convention: LonConvention,
    rtol: float,
) -> tuple[np.ndarray | slice | None, np.ndarray, float]:
    """Return (indexer or None, normalized centres, spacing) for one axis."""
    values = _values(obj, name)
    if is_lon:
        _check_unique(values, name)
        order, wrapped = _lon_order(values, name, lon_convention, rtol)
        step = _check_regular(wrapped, name, rtol)
        identity = np.array_equal(order, np.arange(values.size)) and np.array_equal(wrapped, values)
        return (None if identity else order), wrapped, step
    _check_unique(values, name)
    direction = _monotonic_direction(values, name)
    if direction < 0:
        values = values[::-1]
        step = _check_regular(values, name, rtol)
        return slice(None, None, -1), values, step
    step = _check_regular(values, name, rtol)
    return None, values, step


@keyword_hints
def normalize_grid(
    obj: XrT,
    *,
    dims: Mapping[str, str] | None = None,
    lon_convention: LonConvention = "auto",
    rtol: float = DEFAULT_RTOL,
    convert_integers: bool = True,
) -> XrT:
    """Return a copy of ``obj`` on a validated, normalized grid.

    Normalization: y and x ascending (a descending latitude such as ERA5's is reversed, data
    included); longitudes wrapped into one convention and sorted (``"auto"`` keeps the input's
    convention, -180..180 if any longitude is negative, else 0..360, and switches to the other one
    only when a regional grid would otherwise be split at the seam); floating coordinates keep
    their dtype (float32 stays float32), integer coordinates become float64 and integer data
    variables on the grid become float (float32 up to 16-bit integers,
    float64 above); CF bounds variables follow their axis. NaNs in the data are kept as they are.
    The result is always a new object (a shallow copy sharing the data when nothing changes, so
    that setting its attributes leaves ``obj`` alone); the input is not modified; dask-backed and
    lazily loaded data stay lazy.

    Parameters
    ----------
    obj
        Dataset or DataArray with 1-D x/y coordinates.
    dims
        Optional dimension-name override (see :func:`find_axes`).
    lon_convention
        ``"auto"``, ``"180"`` (-180..180) or ``"360"`` (0..360); only used for latitude /
        longitude grids.
    rtol
        Tolerance on the regularity of the spacing, relative to the mean spacing.
    convert_integers
        Convert integer data variables on the grid to float. Converting a lazily opened
        (not dask-backed) variable loads it, so readers that convert on read pass ``False``.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``, its grid normalized as above.

    Raises
    ------
    GridError
        Axes not found, curvilinear, not monotonic, duplicated, irregular or non-finite
        coordinates; latitudes outside [-90, 90].
    UnitsError
        Missing or non-degree units where they are required.

    Examples
    --------
    A regional grid stored north to south, its longitudes crossing 0 in the 0..360
    convention: latitudes come back ascending (the rows with them), longitudes in -180..180
    so that the region stays in one piece:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([51.0, 50.0], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([350.0, 355, 0, 5], dims="lon", attrs={"units": "degrees_east"})
    >>> da = xr.DataArray(np.arange(8.0).reshape(2, 4), coords={"lat": lat, "lon": lon})
    >>> out = normalize_grid(da)
    >>> out["lat"].values, out["lon"].values
    (array([50., 51.]), array([-10.,  -5.,   0.,   5.]))
    >>> out.values
    array([[4., 5., 6., 7.],
           [0., 1., 2., 3.]])
    """
    _check_literal("lon_convention", lon_convention, LonConvention)
    axes = find_axes(obj, dims=dims)
    kind = _kind(obj, axes)
    y_index, y_values, _ = _normalized_axis(
        obj, axes.y, is_lon=False, lon_convention=lon_convention, rtol=rtol
    )
    if kind in SPHERICAL_KINDS and (y_values[0] < -90 - 1e-9 or y_values[-1] > 90 + 1e-9):
        raise GridError(
            f"latitude {axes.y!r} has values {y_values[0]:g}..{y_values[-1]:g}; expected values "
            f"within [-90, 90]. If these are colatitudes (0 at the north pole), convert them: "
            f"ds = ds.assign_coords({axes.y}=90 - ds[{axes.y!r}]); if the axis is not a latitude "
            f"(a row index, a projected coordinate), rename it (e.g. to 'y') and give it its own "
            f"units (e.g. 'km' or '1') instead of degrees north"
        )
    x_index, x_values, _ = _normalized_axis(
        obj, axes.x, is_lon=kind == "latlon", lon_convention=lon_convention, rtol=rtol
    )
    out: XrObj = obj.copy(deep=False)  # a new object (data shared) even when nothing changes
    indexers: dict[str, Any] = {}
    if y_index is not None:
        indexers[axes.y] = y_index
    if x_index is not None:
        indexers[axes.x] = x_index
    if indexers:
        out = out.isel(indexers)
    new_coords: dict[str, xr.Variable] = {}
    for name, values, index in ((axes.y, y_values, y_index), (axes.x, x_values, x_index)):
        old = obj[name]
        attrs = dict(old.attrs)
        if index is not None:
            attrs.pop("stored_direction", None)
        if index is not None or not np.issubdtype(old.dtype, np.floating):
            # a floating coordinate keeps its dtype (float32 stays float32); integers -> float64
            dtype = old.dtype if np.issubdtype(old.dtype, np.floating) else np.float64
            new_coords[name] = xr.Variable(
                (name,), values.astype(dtype), attrs=attrs, encoding=dict(old.encoding)
            )
        bname = _bounds_name(obj, name)
        if bname is not None and index is not None:
            bvar = out[bname].variable
            bvals = np.sort(_eager(bvar).astype(np.float64), axis=-1)
            if name == axes.x and kind == "latlon":
                shift = values - np.asarray(obj[name].values, dtype=np.float64)[index]
                bvals = bvals + shift[:, None]
            if np.issubdtype(bvar.dtype, np.floating):
                bvals = bvals.astype(bvar.dtype)
            new_coords[bname] = xr.Variable(bvar.dims, bvals, attrs=dict(bvar.attrs))
    if new_coords:
        coord_updates = {k: v for k, v in new_coords.items() if k in out.coords}
        var_updates = {k: v for k, v in new_coords.items() if k not in out.coords}
        out = out.assign_coords(coord_updates)
        if var_updates and isinstance(out, xr.Dataset):
            out = out.assign(var_updates)
    if convert_integers:
        out = _floatify(out, axes)
    return cast(XrT, out)  # the type of obj: isel, assign_coords and _floatify keep it


def _floatify(obj: XrObj, axes: GridAxes) -> XrObj:
    def convert(da: xr.DataArray) -> xr.DataArray:
        if axes.x in da.dims and axes.y in da.dims and np.issubdtype(da.dtype, np.integer):
            return da.astype(_float_dtype(da.dtype))
        return da

    if isinstance(obj, xr.DataArray):
        return convert(obj)
    changed = {
        k: convert(v) for k, v in obj.data_vars.items() if np.issubdtype(v.dtype, np.integer)
    }
    return obj.assign(changed) if changed else obj


@keyword_hints
def grid_spec(
    obj: XrObj,
    *,
    dims: Mapping[str, str] | None = None,
    lon_convention: LonConvention = "auto",
    rtol: float = DEFAULT_RTOL,
) -> GridSpec:
    """Validate the grid of ``obj`` and describe its normalized form.

    Only coordinates are read (data are not loaded). The description is of the grid *after*
    :func:`normalize_grid` (ascending axes, one longitude convention).

    Parameters
    ----------
    obj
        Dataset or DataArray.
    dims, lon_convention, rtol
        As in :func:`normalize_grid`.

    Returns
    -------
    GridSpec
        The grid of ``obj``.

    Raises
    ------
    GridError, UnitsError
        As :func:`normalize_grid`; also when a CF bounds variable disagrees with the centres.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([50.0, 49.0, 48.0], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([350.0, 351.0], dims="lon", attrs={"units": "degrees_east"})
    >>> da = xr.DataArray(np.zeros((3, 2)), coords={"lat": lat, "lon": lon})
    >>> spec = grid_spec(da)
    >>> spec.kind, spec.y0, spec.dy, spec.x0
    ('latlon', 48.0, 1.0, 350.0)
    """
    axes = find_axes(obj, dims=dims)
    coords_only = xr.Dataset(coords={k: v for k, v in obj.coords.items()})
    if isinstance(obj, xr.Dataset):
        for name in (axes.x, axes.y):
            bname = _bounds_name(obj, name)
            if bname is not None and bname not in coords_only.coords:
                coords_only = coords_only.assign_coords({bname: obj[bname]})
    for name in (axes.x, axes.y):
        if name not in coords_only.coords:
            _values(obj, name)  # raises the "no coordinate values" error
    gm = _grid_mapping(obj)
    kind = _kind(obj, axes)
    norm = normalize_grid(
        _with_attrs_of(coords_only, obj, axes),
        dims={"x": axes.x, "y": axes.y},
        lon_convention=lon_convention,
        rtol=rtol,
    )
    xs = np.asarray(norm[axes.x].values, dtype=np.float64)
    ys = np.asarray(norm[axes.y].values, dtype=np.float64)
    dx = (xs[-1] - xs[0]) / (xs.size - 1)
    dy = (ys[-1] - ys[0]) / (ys.size - 1)
    for name, centres, step in ((axes.x, xs, dx), (axes.y, ys, dy)):
        bname = _bounds_name(norm, name)
        if bname is None:
            continue
        given = np.sort(_eager(norm[bname]).astype(np.float64), axis=-1)
        expected = cell_bounds(centres, latitude=kind in SPHERICAL_KINDS and name == axes.y)
        if given.shape != expected.shape or np.max(np.abs(given - expected)) > rtol * step:
            raise GridError(
                f"bounds variable {bname!r} of {name!r} disagrees with the cell centres; expected "
                f"contiguous cells centred on the coordinate values (centre +/- spacing/2)"
            )
    xa, ya = dict(obj[axes.x].attrs), dict(obj[axes.y].attrs)
    periodic_x = _is_periodic_attr(xa)
    periodic_y = _is_periodic_attr(ya)
    if _circles_the_globe(kind, xs.size, dx, rtol):
        periodic_x = True
    x_units = str(xa.get("units", "degrees_east" if kind == "latlon" else ""))
    y_units = str(ya.get("units", "degrees_north" if kind == "latlon" else ""))
    if kind == "rotated":
        x_units = x_units or "degrees"
        y_units = y_units or "degrees"
    return GridSpec(
        x=axes.x,
        y=axes.y,
        kind=kind,
        nx=int(xs.size),
        ny=int(ys.size),
        x0=float(xs[0]),
        y0=float(ys[0]),
        dx=float(dx),
        dy=float(dy),
        x_units=x_units,
        y_units=y_units,
        periodic_x=periodic_x,
        periodic_y=periodic_y,
        time=axes.time,
        crs=gm,
    )


def _with_attrs_of(coords_only: xr.Dataset, obj: XrObj, axes: GridAxes) -> xr.Dataset:
    """Carry the grid-mapping hint of ``obj`` onto a coordinates-only dataset (for kind)."""
    gm = _grid_mapping(obj)
    if gm and gm.get("grid_mapping_name") == "rotated_latitude_longitude":
        for name in (axes.x, axes.y):
            attrs = dict(coords_only[name].attrs)
            attrs.setdefault(
                "standard_name", "grid_longitude" if name == axes.x else "grid_latitude"
            )
            coords_only = coords_only.assign_coords(
                {name: xr.Variable((name,), coords_only[name].values, attrs=attrs)}
            )
    return coords_only


# --------------------------------------------------------------------------------------------
# Building grids
# --------------------------------------------------------------------------------------------

_CF_ATTRS = {
    ("latlon", "x"): {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
    ("latlon", "y"): {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
    ("rotated", "x"): {"standard_name": "grid_longitude", "units": "degrees", "axis": "X"},
    ("rotated", "y"): {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"},
    ("projected", "x"): {"axis": "X"},
    ("projected", "y"): {"axis": "Y"},
}


def _coord_attrs(template: Mapping[str, Any], kind: Kind, which: str, bounds_name: str) -> dict:
    attrs = {
        k: v
        for k, v in template.items()
        if k not in ("bounds", "stored_direction", "actual_range", "valid_min", "valid_max")
    }
    for key, value in _CF_ATTRS[(kind, which)].items():
        if key == "standard_name" and kind == "projected":
            continue
        attrs.setdefault(key, value)
    attrs["bounds"] = bounds_name
    return attrs


@keyword_hints
def rotated_pole_to_geographic(
    rlat: ArrayLike, rlon: ArrayLike, grid_mapping: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic latitude and longitude of points on a rotated-pole grid.

    The CF ``rotated_latitude_longitude`` mapping puts the rotated grid's north pole at
    geographic (``grid_north_pole_latitude``, ``grid_north_pole_longitude``); the geographic
    north pole lies at rotated longitude ``north_pole_grid_longitude`` (default 0). Each point
    is rotated as a unit vector, so the result is exact to round-off everywhere, poles included.

    Parameters
    ----------
    rlat, rlon
        Rotated latitude and longitude (degrees), any broadcastable shapes.
    grid_mapping
        The grid-mapping attributes (``grid_north_pole_latitude``, ``grid_north_pole_longitude``
        and optionally ``north_pole_grid_longitude``), e.g. ``ds.rotated_pole.attrs``.

    Returns
    -------
    (lat, lon)
        float64 arrays of the broadcast shape, degrees north and degrees east in -180..180.

    Examples
    --------
    The origin of the EURO-CORDEX grid (pole at 39.25 N, 162 W) is at 50.75 N, 18 E:

    >>> pole = {"grid_north_pole_latitude": 39.25, "grid_north_pole_longitude": -162.0}
    >>> lat, lon = rotated_pole_to_geographic(0.0, 0.0, pole)
    >>> round(float(lat), 10), round(float(lon), 10)
    (50.75, 18.0)
    """
    origin, east, pole, offset = _rotated_frame(grid_mapping)
    phi = np.radians(np.asarray(rlat, dtype=np.float64))
    lam = np.radians(np.asarray(rlon, dtype=np.float64) - offset)
    phi, lam = np.broadcast_arrays(phi, lam)
    a = np.cos(phi) * np.cos(lam)
    b = np.cos(phi) * np.sin(lam)
    c = np.sin(phi)
    x, y, z = (a * origin[i] + b * east[i] + c * pole[i] for i in range(3))
    lat = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def _geographic_to_rotated_pole(
    lat: ArrayLike, lon: ArrayLike, grid_mapping: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Rotated latitude and longitude (degrees, longitude in -180..180 plus the mapping's
    ``north_pole_grid_longitude``) of geographic points: the inverse of
    :func:`rotated_pole_to_geographic`."""
    origin, east, pole, offset = _rotated_frame(grid_mapping)
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi, lam = np.broadcast_arrays(phi, lam)
    v = (np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi))
    a, b, c = (sum(v[i] * axis[i] for i in range(3)) for axis in (origin, east, pole))
    rlat = np.degrees(np.arcsin(np.clip(c, -1.0, 1.0)))
    rlon = np.degrees(np.arctan2(b, a)) + offset
    return rlat, rlon


def _rotated_frame(
    grid_mapping: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Unit vectors (geographic x, y, z) of a rotated-pole frame: its origin O (on the pole's
    meridian, 90 degrees from it, on the far side of the geographic pole), east = P x O and
    its north pole P; and the ``north_pole_grid_longitude`` offset (degrees)."""
    try:
        pole_lat = np.radians(float(grid_mapping["grid_north_pole_latitude"]))
        pole_lon = np.radians(float(grid_mapping["grid_north_pole_longitude"]))
    except (KeyError, TypeError, ValueError) as err:
        raise GridError(
            f"a rotated_latitude_longitude grid mapping needs numeric grid_north_pole_latitude "
            f"and grid_north_pole_longitude attributes; got {dict(grid_mapping)}"
        ) from err
    offset = float(grid_mapping.get("north_pole_grid_longitude", 0.0) or 0.0)
    cp, sp = np.cos(pole_lat), np.sin(pole_lat)
    pole = np.array([cp * np.cos(pole_lon), cp * np.sin(pole_lon), sp])
    origin = np.array([-sp * np.cos(pole_lon), -sp * np.sin(pole_lon), cp])
    return origin, np.cross(pole, origin), pole, offset


def _geographic_axis(name: Hashable, attrs: Mapping[str, Any]) -> str | None:
    """``"lat"`` / ``"lon"`` when an auxiliary coordinate is a geographic latitude / longitude."""
    standard = str(attrs.get("standard_name", "")).lower()
    kind = degree_units(attrs.get("units", ""))
    if standard == "latitude" or kind == "north":
        return "lat"
    if standard == "longitude" or kind == "east":
        return "lon"
    if str(name).lower() in _LAT_NAMES:
        return "lat"
    if str(name).lower() in _LON_NAMES:
        return "lon"
    return None


def _with_geographic_coordinates(out: XrObj, source: XrObj, spec: GridSpec) -> XrObj:
    """``out`` with the source's 2-D latitude / longitude recomputed on ``out``'s grid.

    A rotated-pole or projected grid's CF file carries the geographic position of every cell as
    2-D auxiliary coordinates over (y, x); they describe the source's cells only, so a new grid
    (refined, coarsened, downscaled) gets them recomputed under the same names, dims order,
    attributes, dtype and longitude convention: from the rotated pole
    (:func:`rotated_pole_to_geographic`), or for a projected grid from its CF grid mapping with
    PROJ (pyproj, the ``proj`` extra). A projected grid's mapping is used only when it
    reproduces the source's own latitudes and longitudes (to 1e-6 degrees); otherwise, or
    without pyproj, the coordinates are left out with a warning saying why. Nothing is added
    unless ``source`` has both coordinates and a grid mapping (in ``spec`` or ``source``).
    """
    crs = spec.crs or _grid_mapping(source) or {}
    rotated = (
        spec.kind == "rotated" and crs.get("grid_mapping_name") == "rotated_latitude_longitude"
    )
    if not rotated and not (spec.kind == "projected" and crs.get("grid_mapping_name")):
        return out
    found: dict[str, tuple[Hashable, xr.DataArray]] = {}
    for name, coord in source.coords.items():
        if coord.ndim == 2 and set(coord.dims) == {spec.y, spec.x}:
            axis = _geographic_axis(name, coord.attrs)
            if axis is not None and axis not in found:
                found[axis] = (name, coord)
    if set(found) != {"lat", "lon"} or spec.y not in out.coords or spec.x not in out.coords:
        return out
    ys = np.asarray(out[spec.y].values, dtype=np.float64)
    xs = np.asarray(out[spec.x].values, dtype=np.float64)
    if rotated:
        lat, lon = rotated_pole_to_geographic(ys[:, None], xs[None, :], crs)
    else:
        to_geographic = _projection(crs, spec, source, found)
        if to_geographic is None:
            return out
        lat, lon = to_geographic(ys, xs)
    lon_name, lon_coord = found["lon"]
    if float(np.nanmin(_eager(lon_coord))) >= 0.0:  # the source's 0..360 convention
        lon = np.mod(lon, 360.0)
    new = {}
    for (name, coord), values in ((found["lat"], lat), ((lon_name, lon_coord), lon)):
        if coord.dims != (spec.y, spec.x):
            values = values.T
        dtype = coord.dtype if np.issubdtype(coord.dtype, np.floating) else np.float64
        new[name] = xr.Variable(coord.dims, values.astype(dtype), attrs=dict(coord.attrs))
    return out.assign_coords(new)


def _projection(
    crs: Mapping[str, Any],
    spec: GridSpec,
    source: XrObj,
    found: Mapping[str, tuple[Hashable, xr.DataArray]],
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """``(ys, xs) -> (lat, lon)`` on (ny, nx) for a projected grid's CF mapping, checked on the
    source's own 2-D coordinates; ``None`` (and a warning saying why) when it cannot be used."""
    import warnings

    from ..units import linear_conversion

    def give_up(why: str) -> None:
        warnings.warn(
            f"the 2-D latitude / longitude of the projected grid ({why}) are left out of the "
            "result; its x / y coordinates and grid mapping are kept",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    try:
        import pyproj
    except ImportError:
        give_up("recomputing them needs pyproj: pip install 'flexdownscale[proj]'")
        return None
    scales = []
    for units in (spec.y_units, spec.x_units):
        conversion = linear_conversion(units, "m")
        if conversion is None or conversion[1] != 0.0:
            give_up(f"x / y units {units!r} are not a length")
            return None
        scales.append(conversion[0])
    try:
        projected = pyproj.CRS.from_cf(dict(crs))
        transformer = pyproj.Transformer.from_crs(projected, projected.geodetic_crs, always_xy=True)
    except Exception as err:  # pyproj.exceptions.CRSError and friends
        give_up(f"PROJ cannot read the grid mapping {crs.get('grid_mapping_name')!r}: {err}")
        return None

    def to_geographic(ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x2, y2 = np.meshgrid(xs * scales[1], ys * scales[0])
        lon, lat = transformer.transform(x2, y2)
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    # the mapping must give the source's own positions back before it is trusted elsewhere
    src_ys = np.asarray(_eager(source[spec.y]), dtype=np.float64)
    src_xs = np.asarray(_eager(source[spec.x]), dtype=np.float64)
    lat, lon = to_geographic(src_ys, src_xs)
    (_, lat_coord), (_, lon_coord) = found["lat"], found["lon"]
    given_lat = np.asarray(_eager(lat_coord.transpose(spec.y, spec.x)), dtype=np.float64)
    given_lon = np.asarray(_eager(lon_coord.transpose(spec.y, spec.x)), dtype=np.float64)
    dlon = np.abs((lon - given_lon + 180.0) % 360.0 - 180.0)
    worst = float(np.nanmax(np.maximum(np.abs(lat - given_lat), dlon)))
    tolerance = 1e-6 if np.issubdtype(lat_coord.dtype, np.float64) else 1e-4
    if not worst <= tolerance:
        give_up(
            f"its grid mapping puts the source's cells up to {worst:.3g} degrees from the "
            "file's own latitude / longitude"
        )
        return None
    return to_geographic


def _grid_dataset(
    spec: GridSpec,
    x: tuple[np.ndarray, np.ndarray],
    y: tuple[np.ndarray, np.ndarray],
    templates: Mapping[str, Mapping[str, Any]],
    bounds_dim: str = "bnds",
    dtypes: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Coordinates-only Dataset of a grid: centres and CF bounds of y and x (computed in float64,
    stored in ``dtypes[name]``, the source axis's floating dtype: float32 stays float32)."""
    coords = {}
    for which, name, (centres, bounds) in (("y", spec.y, y), ("x", spec.x, x)):
        bname = f"{name}_bnds"
        dtype = np.dtype((dtypes or {}).get(name, np.float64))
        coords[name] = xr.Variable(
            (name,),
            np.asarray(centres).astype(dtype),
            attrs=_coord_attrs(templates.get(name, {}), spec.kind, which, bname),
        )
        coords[bname] = xr.Variable((name, bounds_dim), np.asarray(bounds).astype(dtype))
    return xr.Dataset(coords=coords)


def _axis_dtypes(obj: XrObj, spec: GridSpec) -> dict[str, np.dtype]:
    """The dtypes a new grid's x / y coordinates take from ``obj``'s: float32 stays float32,
    anything else (float64, integers, float16) is float64."""
    return {
        name: np.dtype(np.float32) if obj[name].dtype == np.float32 else np.dtype(np.float64)
        for name in (spec.x, spec.y)
    }


def coordinate_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """``to_netcdf`` / ``to_zarr`` encoding without ``_FillValue`` for floating coordinates and
    the bounds variables they name (CF: coordinates and bounds have no missing values; xarray
    writes ``_FillValue = NaN`` by default)."""
    bounds = {str(ds[c].attrs["bounds"]) for c in ds.variables if "bounds" in ds[c].attrs}
    names = set(map(str, ds.coords)) | bounds
    return {
        name: {"_FillValue": None}
        for name in names
        if name in ds.variables and ds[name].dtype.kind == "f"
    }


@keyword_hints
def add_bounds(obj: XrObj, *, dims: Mapping[str, str] | None = None) -> xr.Dataset:
    """Return ``obj`` normalized, with CF bounds coordinates ``<x>_bnds`` and ``<y>_bnds``.

    The coordinates get a ``bounds`` attribute and CF ``standard_name`` / ``units`` / ``axis``
    where they are missing. Existing bounds variables of x and y are replaced. A DataArray cannot
    hold (n, 2) bounds, so a DataArray comes back as a one-variable Dataset.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Data on a regular grid.
    dims : mapping of str to str, optional
        Dimension-name override (``{"x": ..., "y": ..., "time": ...}``); default None: found
        from CF attributes and names.

    Returns
    -------
    xarray.Dataset
        ``obj`` normalized (as :func:`normalize_grid`), with the bounds coordinates.

    Examples
    --------
    A named DataArray on a 1 degree grid comes back as a Dataset with contiguous bounds half
    a degree either side of each centre:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([48.0, 49, 50], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([0.0, 1], dims="lon", attrs={"units": "degrees_east"})
    >>> ds = add_bounds(xr.DataArray(np.zeros((3, 2)), coords={"lat": lat, "lon": lon},
    ...                              name="t2m"))
    >>> list(ds.data_vars), sorted(ds.coords)
    (['t2m'], ['lat', 'lat_bnds', 'lon', 'lon_bnds'])
    >>> ds["lat"].attrs["bounds"], ds["lat_bnds"].values.tolist()
    ('lat_bnds', [[47.5, 48.5], [48.5, 49.5], [49.5, 50.5]])
    """
    spec = grid_spec(obj, dims=dims)
    if isinstance(obj, xr.DataArray):
        obj = dataset_of(obj, obj.name if obj.name is not None else "data")
    out = normalize_grid(obj, dims=dims)
    drop = [b for b in (_bounds_name(out, spec.x), _bounds_name(out, spec.y)) if b is not None]
    if drop:
        out = out.drop_vars(drop)
    xs = np.asarray(out[spec.x].values, dtype=np.float64)
    ys = np.asarray(out[spec.y].values, dtype=np.float64)
    grid = _grid_dataset(
        spec,
        (xs, cell_bounds(xs)),
        (ys, cell_bounds(ys, latitude=spec.kind in SPHERICAL_KINDS)),
        {spec.x: out[spec.x].attrs, spec.y: out[spec.y].attrs},
        dtypes=_axis_dtypes(out, spec),
    )
    return out.assign_coords(grid.coords)


@keyword_hints
def refine_grid(obj: XrObj, factor: int, *, dims: Mapping[str, str] | None = None) -> xr.Dataset:
    """The fine grid whose ``factor`` x ``factor`` cells subdivide every cell of ``obj``'s grid.

    Parameters
    ----------
    obj
        Dataset or DataArray on the coarse grid (any orientation; the result is ascending).
    factor
        Refinement factor.
    dims
        Optional dimension-name override.

    Returns
    -------
    xarray.Dataset
        Coordinates only: x and y centres with CF attributes, and ``<x>_bnds`` / ``<y>_bnds``
        (dims (n, ``bnds``)). The union of the fine cells of a coarse cell is exactly that cell.

    Raises
    ------
    GridError
        When refined latitudes would lie beyond the poles, or the grid is invalid.

    Examples
    --------
    The half degree grid inside a 1 degree one: two fine cells per coarse cell along each
    axis, the first two sharing the first coarse cell's bounds:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([48.0, 49, 50], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([0.0, 1], dims="lon", attrs={"units": "degrees_east"})
    >>> fine = refine_grid(xr.DataArray(np.zeros((3, 2)), coords={"lat": lat, "lon": lon}), 2)
    >>> dict(fine.sizes)
    {'lat': 6, 'bnds': 2, 'lon': 4}
    >>> fine["lon"].values, fine["lon_bnds"].values[:2].tolist()
    (array([-0.25,  0.25,  0.75,  1.25]), [[-0.5, 0.0], [0.0, 0.5]])
    """
    spec = grid_spec(obj, dims=dims)
    norm = normalize_grid(
        xr.Dataset(coords={spec.x: obj[spec.x], spec.y: obj[spec.y]}),
        dims={"x": spec.x, "y": spec.y},  # a "time" key of dims names nothing here
    )
    xs = np.asarray(norm[spec.x].values, dtype=np.float64)
    ys = np.asarray(norm[spec.y].values, dtype=np.float64)
    fine = spec.refine(factor)
    grid = _grid_dataset(
        fine,
        refine_coord(xs, factor),
        refine_coord(ys, factor, latitude=spec.kind in SPHERICAL_KINDS, name=str(spec.y)),
        {spec.x: obj[spec.x].attrs, spec.y: obj[spec.y].attrs},
        dtypes=_axis_dtypes(obj, spec),
    )
    return _with_geographic_coordinates(grid, obj, spec)


@keyword_hints
def coarsen_grid(
    obj: XrObj,
    factor: int,
    *,
    dims: Mapping[str, str] | None = None,
    boundary: Boundary = "exact",
) -> xr.Dataset:
    """The coarse grid made of ``factor`` x ``factor`` blocks of ``obj``'s (normalized) grid.

    Coarse centres are the means of the fine centres of each block; coarse bounds are the
    bounds of the blocks (clipped to [-90, 90] for latitudes).

    Parameters
    ----------
    obj
        Dataset or DataArray on the fine grid.
    factor
        Coarsening factor.
    dims
        Optional dimension-name override.
    boundary
        ``"exact"`` requires sizes divisible by ``factor``; ``"trim"`` drops the trailing cells.

    Returns
    -------
    xarray.Dataset
        Coordinates only, as :func:`refine_grid`.

    Raises
    ------
    UnsupportedFactorError
        When a size is not divisible by ``factor`` and ``boundary="exact"``.

    Examples
    --------
    The 2 degree grid of 2 x 2 blocks of a 1 degree grid: each coarse centre is the mean of
    its block's centres, each coarse cell the union of its block's cells; ``"trim"`` drops
    the fifth row, which fills no block:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([46.0, 47, 48, 49, 50], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([0.0, 1, 2, 3], dims="lon", attrs={"units": "degrees_east"})
    >>> fine = xr.DataArray(np.zeros((5, 4)), coords={"lat": lat, "lon": lon})
    >>> coarse = coarsen_grid(fine, 2, boundary="trim")
    >>> coarse["lat"].values, coarse["lon"].values
    (array([46.5, 48.5]), array([0.5, 2.5]))
    >>> coarse["lat_bnds"].values.tolist()
    [[45.5, 47.5], [47.5, 49.5]]
    """
    spec = grid_spec(obj, dims=dims)
    coarse = spec.coarsen(factor, boundary=boundary)
    norm = normalize_grid(
        xr.Dataset(coords={spec.x: obj[spec.x], spec.y: obj[spec.y]}),
        dims={"x": spec.x, "y": spec.y},  # a "time" key of dims names nothing here
    )
    xs = np.asarray(norm[spec.x].values, dtype=np.float64)[: coarse.nx * factor]
    ys = np.asarray(norm[spec.y].values, dtype=np.float64)[: coarse.ny * factor]
    cx, cy = coarsen_coord(xs, factor), coarsen_coord(ys, factor)
    # coarse bounds are the outer bounds of each block of fine cells: exactly their union
    fbx = cell_bounds(np.asarray(norm[spec.x].values, dtype=np.float64))[: coarse.nx * factor]
    fby = cell_bounds(
        np.asarray(norm[spec.y].values, dtype=np.float64), latitude=spec.kind in SPHERICAL_KINDS
    )[: coarse.ny * factor]
    bx = np.stack([fbx[::factor, 0], fbx[factor - 1 :: factor, 1]], axis=1)
    by = np.stack([fby[::factor, 0], fby[factor - 1 :: factor, 1]], axis=1)
    grid = _grid_dataset(
        coarse,
        (cx, bx),
        (cy, by),
        {spec.x: obj[spec.x].attrs, spec.y: obj[spec.y].attrs},
        dtypes=_axis_dtypes(obj, spec),
    )
    return _with_geographic_coordinates(grid, obj, spec)
