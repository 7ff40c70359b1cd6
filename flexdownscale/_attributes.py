"""Readings of netCDF / CF attributes shared by the data layer and the metrics (which may not
import each other)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

import numpy as np

#: Values of a coordinate's ``periodic`` attribute that say it wraps around (case and
#: surrounding blanks ignored).
PERIODIC_TRUE = frozenset({"true", "yes", "1", "t", "y"})


def says_periodic(attrs: Mapping[Any, Any]) -> bool:
    """Whether a coordinate's ``attrs`` hold ``periodic = "true"`` (or True, 1, ``"yes"``).

    >>> says_periodic({"periodic": " TRUE "}), says_periodic({"periodic": "false"}), says_periodic({})
    (True, False, False)
    """
    value = attrs.get("periodic")
    if value is None:
        return False
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return str(value).strip().lower() in PERIODIC_TRUE


#: cfgrib's ``GRIB_*`` variable attributes that describe the grid a GRIB message was on (its
#: size, spacing, corners and scanning order): false on any other grid
GRIB_GRID_ATTR = re.compile(
    r"GRIB_(N|Nx|Ny|numberOfPoints|gridType|gridDefinitionDescription|D[xy]InMetres"
    r"|[ij]DirectionIncrement\w*|\w*(First|Last)GridPoint\w*|[ij]Scans\w+|jPointsAreConsecutive)"
)

#: words about a grid as a whole (CMIP's ``nominal_resolution`` and ``grid``), which no
#: spacing ratio turns into the words about another grid
_GRID_DESCRIPTIONS = ("nominal_resolution", "grid")

#: the ACDD resolution attribute of each axis: y (latitude) first, then x (longitude)
_RESOLUTIONS = ("geospatial_lat_resolution", "geospatial_lon_resolution")

_RESOLUTION_NUMBER = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(.*)", re.DOTALL)

#: the spacing of one axis before and after a change of grid, ``(old, new)`` (in one unit;
#: only their ratio is used), or ``None`` where the new grid's spacing is not regular or known
Spacing = tuple[float, float] | None

#: the ACDD extent attributes, in the order of an :data:`Extent`
_EXTENTS = ("geospatial_lon_min", "geospatial_lon_max", "geospatial_lat_min", "geospatial_lat_max")

#: the ACDD polygon of the extent (WKT) and the reference systems said only of it
_BOUNDS_WKT = ("geospatial_bounds", "geospatial_bounds_crs", "geospatial_bounds_vertical_crs")

#: the geographic extent of a grid's cells, ``(west, east, south, north)`` in degrees
#: (:func:`cell_extent`), or ``None`` where it is not known
Extent = tuple[float, float, float, float] | None


def cell_extent(lat: Any, lon: Any, dlat: float, dlon: float) -> Extent:
    """The extent of the cells of a regular latitude / longitude grid: ``(west, east, south,
    north)``, the outer edges of its outermost cells, in degrees.

    The cells are centred at the 1-D latitudes ``lat`` and longitudes ``lon`` (in the grid's own
    order and longitude convention), ``dlat`` and ``dlon`` apart; each edge lies half a spacing
    beyond the outermost centre, latitudes clipped to [-90, 90]. West is the western edge of the
    first cell eastwards, east the eastern edge of the last, in the convention of ``lon``: a grid
    across the antimeridian (or across 0 in a 0..360 convention) has ``west > east``, as ACDD's
    ``geospatial_lon_min`` / ``geospatial_lon_max`` have there. ``None`` where ``lon`` does not
    step by ``dlon`` eastwards or westwards (modulo 360), or either axis is empty.

    >>> cell_extent([40.125, 40.375], [0.125, 0.375, 0.625], 0.25, 0.25)
    (0.0, 0.75, 40.0, 40.5)
    >>> cell_extent([89.0, 90.0], [359.0, 0.0, 1.0], 1.0, 1.0)  # across 0, to the pole
    (358.5, 1.5, 88.5, 90.0)
    >>> cell_extent([0.0], [0.0, 1.0, 3.0], 1.0, 1.0) is None  # not regular
    True
    """
    ys = np.asarray(lat, dtype=np.float64).ravel()
    xs = np.asarray(lon, dtype=np.float64).ravel()
    if ys.size == 0 or xs.size == 0:
        return None
    first, last = xs[0], xs[-1]
    if xs.size > 1:
        steps = np.diff(xs) % 360.0
        tolerance = 1e-3 * dlon  # float32 coordinates step by dlon to their round-off
        if np.allclose(steps, 360.0 - dlon, rtol=0.0, atol=tolerance):  # stored east to west
            first, last = last, first
        elif not np.allclose(steps, dlon, rtol=0.0, atol=tolerance):
            return None
    south = max(float(ys.min()) - dlat / 2, -90.0)
    north = min(float(ys.max()) + dlat / 2, 90.0)
    return (float(first) - dlon / 2, float(last) + dlon / 2, south, north)


def regridded_attrs(
    attrs: Mapping[Any, Any], spacings: tuple[Spacing, Spacing], extent: Extent = None
) -> dict[Any, Any]:
    """The attributes ``attrs`` (a variable's or a Dataset's) of an object put on another grid,
    for the object on that grid.

    Left out: cfgrib's ``GRIB_*`` attributes of the old grid (:data:`GRIB_GRID_ATTR`: its size,
    spacing, corners, scanning order), and ``nominal_resolution`` and ``grid`` (descriptions of
    the old grid). The ACDD ``geospatial_lat_resolution`` / ``geospatial_lon_resolution`` (a
    number, or a number followed by its units such as ``"0.25 degree"``) are scaled by the
    ratio of the new to the old spacing of the y / x axis, and left out where that axis has no
    ``spacings`` entry (an irregular new grid) or the value is not one of those. The ACDD
    extent, ``geospatial_lat_min`` / ``geospatial_lat_max`` / ``geospatial_lon_min`` /
    ``geospatial_lon_max``, is that of the new grid's cells, ``extent`` (the outer edges of its
    outermost cells, :func:`cell_extent`), where ``attrs`` hold it; it is left out where
    ``extent`` is ``None`` (not known: a grid that is not on latitude / longitude axes). The
    ACDD polygon ``geospatial_bounds`` (with ``geospatial_bounds_crs`` and
    ``geospatial_bounds_vertical_crs``) is kept only where ``attrs`` hold all four extent
    attributes and ``extent`` equals them (to 1e-6 degree): it is written in the producer's
    axis order, which is not rewritten here. Other attributes are kept as they are; ``attrs``
    is not changed.

    Parameters
    ----------
    attrs : Mapping
        The attributes the object had on its old grid.
    spacings : tuple of (float, float) or None
        ``((old_dy, new_dy), (old_dx, new_dx))``: each axis's spacing before and after, in one
        unit (a refinement by 4 is ``(4, 1)``, a coarsening by 4 ``(1, 4)``), or ``None``.
    extent : tuple of 4 float, optional
        ``(west, east, south, north)`` of the new grid's cells in degrees
        (:func:`cell_extent`); default None: not known.

    Returns
    -------
    dict
        The attributes for the new grid.

    Examples
    --------
    >>> attrs = {"GRIB_Nx": 49, "GRIB_units": "K", "geospatial_lat_resolution": "0.25 degree",
    ...          "geospatial_lon_resolution": 0.25, "grid": "0.25 degree lat-lon"}
    >>> regridded_attrs(attrs, ((1, 4), (1, 4)))
    {'GRIB_units': 'K', 'geospatial_lat_resolution': '1 degree', 'geospatial_lon_resolution': 1.0}
    >>> regridded_attrs(attrs, ((4, 1), None))
    {'GRIB_units': 'K', 'geospatial_lat_resolution': '0.0625 degree'}
    >>> bounds = {"geospatial_lat_min": 30.0, "geospatial_lat_max": 50.0, "title": "t2m"}
    >>> regridded_attrs(bounds, (None, None), extent=(0.0, 10.0, 40.0, 45.0))
    {'geospatial_lat_min': 40.0, 'geospatial_lat_max': 45.0, 'title': 't2m'}
    >>> regridded_attrs(bounds, (None, None))
    {'title': 't2m'}
    """
    same_extent = extent is not None and all(k in attrs for k in _EXTENTS)
    if same_extent:
        try:
            said = [float(attrs[k]) for k in _EXTENTS]
        except (TypeError, ValueError):  # not numbers: nothing to compare with
            same_extent = False
        else:
            same_extent = bool(np.allclose(said, extent, rtol=0.0, atol=1e-6))
    out = {
        k: v
        for k, v in attrs.items()
        if k not in _GRID_DESCRIPTIONS
        and not GRIB_GRID_ATTR.fullmatch(str(k))
        and (extent is not None or k not in _EXTENTS)
        and (same_extent or k not in _BOUNDS_WKT)
    }
    if extent is not None:  # in place, the order of the attributes kept
        out.update({k: v for k, v in zip(_EXTENTS, extent, strict=True) if k in out})
    for key, spacing in zip(_RESOLUTIONS, spacings, strict=True):
        if key not in out:
            continue
        value = out.pop(key)
        if spacing is None:
            continue
        old, new = spacing
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            out[key] = float(value) * new / old
        elif isinstance(value, str) and (found := _RESOLUTION_NUMBER.fullmatch(value)):
            out[key] = f"{float(found.group(1)) * new / old:g}{found.group(2)}"
    return out


def without_dangling_references(attrs: Mapping[Any, Any], have: Set[str]) -> dict[Any, Any]:
    """A variable's ``attrs`` without the entries of its CF ``ancillary_variables`` and
    ``cell_measures`` that name variables not among ``have`` (the names its object holds); an
    attribute left with no entry is left out. ``attrs`` is not changed.

    >>> without_dangling_references(
    ...     {"cell_measures": "area: a volume: v", "ancillary_variables": "q"}, {"a"})
    {'cell_measures': 'area: a'}
    """
    out = dict(attrs)
    listed = out.get("ancillary_variables")
    if isinstance(listed, str):
        kept = [n for n in listed.split() if n in have]
        out.pop("ancillary_variables")
        if kept:
            out["ancillary_variables"] = " ".join(kept)
    measures = out.get("cell_measures")
    if isinstance(measures, str):  # "area: cell_area volume: cell_volume"
        words = measures.replace(":", ": ").split()
        pairs = [(m, n) for m, n in zip(words[::2], words[1::2]) if m.endswith(":")]
        kept = [f"{m} {n}" for m, n in pairs if n in have]
        out.pop("cell_measures")
        if kept:
            out["cell_measures"] = " ".join(kept)
    return out


def _refers(attrs: Mapping[Any, Any]) -> bool:
    """Whether ``attrs`` hold a CF reference to other variables that may dangle."""
    return "ancillary_variables" in attrs or "cell_measures" in attrs


def drop_dangling_references(obj: Any) -> Any:
    """``obj`` (a Dataset's data variables, or a DataArray itself) without the CF
    ``ancillary_variables`` / ``cell_measures`` entries that name variables ``obj`` lacks (those
    of an input's grid that did not come along to the output's: :func:`without_dangling_references`
    on each); ``obj`` itself when nothing refers, else a shallow copy."""
    if not hasattr(obj, "data_vars"):  # a DataArray: its coordinates and itself
        if not _refers(obj.attrs):
            return obj
        out = obj.copy(deep=False)
        out.attrs = without_dangling_references(obj.attrs, {*map(str, obj.coords), str(obj.name)})
        return out
    names = [n for n, v in obj.data_vars.items() if _refers(v.attrs)]
    if not names:
        return obj
    obj = obj.copy(deep=False)
    have = set(map(str, obj.variables))
    for name in names:
        obj[name].attrs = without_dangling_references(obj[name].attrs, have)
    return obj
