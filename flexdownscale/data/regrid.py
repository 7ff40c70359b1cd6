"""Regridding between grids: one interface over the xarray-regrid and xesmf backends.

``xarray-regrid`` (the default, a hard dependency) handles rectilinear grids: ``"linear"``,
``"nearest"`` and ``"cubic"``, lazily with dask. ``"conservative"`` on rectilinear grids uses this
module's own exact weights (:func:`_overlap_weights`: cell overlaps measured in ``sin(latitude)``,
so polar half-cells keep their area, where xarray-regrid 0.4 weighs a cell by the cosine of its
centre latitude), also lazily. ``xesmf`` (optional:
``pip install 'flexdownscale[esmf]'`` plus ``conda install -c conda-forge esmpy``, since ESMPy is
only on conda-forge) adds curvilinear sources (2-D latitude / longitude); it is used
automatically for them when it imports. This module is the only one in flexdownscale that imports
either backend.

Build a :class:`Regridder` once and call it on many objects on the same source grid (xesmf
computes its weights once); :func:`regrid` does both in one call.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Hashable, Mapping
from typing import Any, Literal, cast, get_args

import numpy as np
import pandas as pd
import xarray as xr

from .._attributes import Extent, Spacing, cell_extent, drop_dangling_references, regridded_attrs
from .._duck import plain_arrays
from .._keywords import keyword_hints
from ..errors import BackendNotAvailableError, ConfigError, GridError
from .grid import (
    GridSpec,
    XrObj,
    XrT,
    _curvilinear,
    _drop_axis_bounds,
    _geographic_axis,
    _on_grid,
    _trim_stale_coordinates,
    _with_geographic_coordinates,
    _wrap,
    cell_bounds,
    find_axes,
    grid_spec,
    normalize_grid,
)

__all__ = ["Backend", "Method", "Regridder", "regrid"]

Method = Literal["linear", "nearest", "cubic", "conservative"]
Backend = Literal["auto", "xarray-regrid", "xesmf"]

_XESMF_METHODS = {"linear": "bilinear", "nearest": "nearest_s2d", "conservative": "conservative"}
_ESMF_HINT = (
    "install it with `pip install 'flexdownscale[esmf]'` and `conda install -c conda-forge esmpy` "
    "(ESMPy is only distributed on conda-forge)"
)


def _check_option(name: str, value: Any, options: Any) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in allowed)}"
        )


def _import_xesmf() -> Any:
    try:
        return importlib.import_module("xesmf")
    except ImportError as err:
        raise BackendNotAvailableError(
            f"the regridding backend 'xesmf' is not available ({err}); {_ESMF_HINT}"
        ) from err


def _import_xarray_regrid() -> Any:
    try:
        return importlib.import_module("xarray_regrid")
    except ImportError as err:  # pragma: no cover - a hard dependency
        raise BackendNotAvailableError(
            f"the regridding backend 'xarray-regrid' is not available ({err}); install it with "
            f"`pip install xarray-regrid`"
        ) from err


def _is_curvilinear(obj: XrObj, dims: Mapping[str, str] | None) -> bool:
    try:
        find_axes(obj, dims=dims)
    except GridError:
        return bool(_curvilinear(obj))
    return False


def _target_axes(
    target: XrObj | GridSpec, dims: Mapping[str, str] | None
) -> tuple[GridSpec, np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
    """Target spec, ascending y and x centres, and their attributes."""
    if isinstance(target, GridSpec):
        spec = target
        xattrs = {"units": spec.x_units, "axis": "X"}
        yattrs = {"units": spec.y_units, "axis": "Y"}
        if spec.kind == "latlon":
            xattrs["standard_name"], yattrs["standard_name"] = "longitude", "latitude"
        return spec, spec.y_centres(), spec.x_centres(), yattrs, xattrs
    axes = find_axes(target, dims=dims)
    # only the target's centres are used: its bounds (checked by nothing else) are ignored
    target = _drop_axis_bounds(target, (axes.x, axes.y))
    spec = grid_spec(target, dims=dims)
    coords = xr.Dataset(coords={spec.y: target[spec.y], spec.x: target[spec.x]})
    norm = normalize_grid(coords, dims={"x": spec.x, "y": spec.y})
    return (
        spec,
        np.asarray(norm[spec.y].values, dtype=np.float64),
        np.asarray(norm[spec.x].values, dtype=np.float64),
        dict(target[spec.y].attrs),
        dict(target[spec.x].attrs),
    )


def _regional_lon_runs(
    tx: np.ndarray, x0: float, dx: float, nx: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Target cells covered by a regional longitude source, as runs in the source's frame.

    Parameters
    ----------
    tx
        (n,) target longitude centres, any convention.
    x0, dx, nx
        First centre, spacing and size of the (normalized, non-periodic) source axis.

    Returns
    -------
    list of (indices, longitudes)
        For each run of consecutive target cells whose centre, taken modulo 360 relative to the
        source's west edge ``x0 - dx / 2``, lies within the source's extent ``[x0 - dx / 2,
        x0 + (nx - 1/2) dx]``: their indices in ``tx`` and their centres shifted by a multiple of
        360 into that extent. Empty when no target cell is covered.
    """
    origin = x0 - 0.5 * dx
    end = x0 + (nx - 0.5) * dx
    tol = 1e-9 * dx
    turns = np.floor((tx - origin + tol) / 360.0)
    shifted = tx - 360.0 * turns
    index = np.flatnonzero(shifted <= end + tol)
    if index.size == 0:
        return []
    breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(turns[index]) != 0)) + 1
    return [(part, shifted[part]) for part in np.split(index, breaks)]


def _booleans_as_fractions(obj: XrObj) -> XrObj:
    """Boolean variables of ``obj`` as float64 0 / 1 (interpolation needs numbers; the
    conservative method already gives the covered fraction in float64)."""
    if isinstance(obj, xr.DataArray):
        return obj.astype(np.float64) if obj.dtype == bool else obj
    flags = [name for name, var in obj.data_vars.items() if var.dtype == bool]
    return obj.assign({name: obj[name].astype(np.float64) for name in flags}) if flags else obj


def _restore_dtypes(out: XrObj, src: XrObj) -> XrObj:
    """Cast the floating variables of ``out`` back to their dtype in ``src`` (e.g. float32)."""

    def cast(da: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
        if np.issubdtype(like.dtype, np.floating) and da.dtype != like.dtype:
            return da.astype(like.dtype)
        return da

    if isinstance(out, xr.DataArray):
        assert isinstance(src, xr.DataArray)
        return cast(out, src)
    changed = {
        name: cast(var, src[name])
        for name, var in out.data_vars.items()
        if name in src.data_vars and var.dtype != src[name].dtype
    }
    return out.assign(changed) if changed else out


def _per_variable(out: XrObj, func: Any) -> XrObj:
    """Apply ``func`` (DataArray -> DataArray) to ``out`` or to each data variable of it."""
    if isinstance(out, xr.DataArray):
        return func(out)
    return out.assign({name: func(var) for name, var in out.data_vars.items()})


def _within(centres: np.ndarray, lo: float, hi: float, step: float) -> np.ndarray:
    """Which ``centres`` lie in ``[lo, hi]`` (with the tolerance of :func:`_regional_lon_runs`)."""
    tol = 1e-9 * step
    return (centres >= lo - tol) & (centres <= hi + tol)


def _edges(centres: np.ndarray, latitude: bool) -> np.ndarray:
    b = cell_bounds(centres, latitude=latitude)
    return np.concatenate([b[:, 0], b[-1:, 1]])


def _regular_edges(centres: np.ndarray, step: float) -> np.ndarray:
    """(n + 1,) cell edges of an ascending regular axis (:func:`_edges`; a single cell reaches
    half of ``step`` either side)."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size > 1:
        return _edges(c, latitude=False)
    return np.array([c[0] - 0.5 * abs(step), c[0] + 0.5 * abs(step)])


def _overlap_weights(
    source: np.ndarray,
    source_step: float,
    target: np.ndarray,
    target_step: float,
    *,
    sine: bool,
    period: float | None,
    periodic: bool,
) -> np.ndarray:
    """Overlaps of the target cells with the source cells along one axis.

    Parameters
    ----------
    source, target
        (m,) and (n,) ascending, regularly spaced cell centres (the cells reach half a step
        beyond the first and last centre).
    source_step, target_step
        Their spacings.
    sine
        The axis is a latitude (in degrees): edges are clipped to [-90, 90] and overlaps are
        measured in ``sin(latitude)``, so that the product of a latitude weight and a longitude
        weight (in degrees) is proportional to the area of the overlap on the sphere.
    period
        Read the target modulo ``period``: each target cell is shifted by a multiple of it so
        that its centre lies in ``[first source edge, first source edge + period)``.
    periodic
        The source repeats with ``period`` (a global longitude, a periodic domain): target cells
        also overlap its copies one period away.

    Returns
    -------
    numpy.ndarray
        (n, m) float64, non-negative. A row is zero where the target centre lies outside the
        source's extent (first edge to last edge; never on a periodic axis), so that cell gets
        NaN. Overlaps below ``1e-9`` of the target cell's own length (round-off at shared edges)
        are zero.
    """
    edges = _regular_edges(source, source_step)
    target_edges = _regular_edges(target, target_step)
    lower, upper = target_edges[:-1], target_edges[1:]
    centres = np.asarray(target, dtype=np.float64)
    tol = 1e-9 * abs(source_step)
    if period is not None:
        shift = period * np.floor((centres - edges[0] + tol) / period)
        lower, upper, centres = lower - shift, upper - shift, centres - shift
    measure = (lambda e: np.sin(np.deg2rad(np.clip(e, -90.0, 90.0)))) if sine else (lambda e: e)
    weights = np.zeros((centres.size, edges.size - 1))
    for copy in (-1.0, 0.0, 1.0) if periodic and period is not None else (0.0,):
        offset = 0.0 if period is None else copy * period
        lo = np.maximum(lower[:, None], edges[None, :-1] + offset)
        hi = np.minimum(upper[:, None], edges[None, 1:] + offset)
        weights += np.where(hi > lo, measure(hi) - measure(lo), 0.0)
    length = measure(upper) - measure(lower)
    weights[weights <= 1e-9 * length[:, None]] = 0.0
    if not periodic:
        outside = (centres < edges[0] - tol) | (centres > edges[-1] + tol)
        weights[outside] = 0.0
    return weights


def _conservative_mean(
    values: np.ndarray, *, weights_y: np.ndarray, weights_x: np.ndarray, skipna: bool
) -> np.ndarray:
    """Area-weighted means of ``values`` over the target cells.

    Parameters
    ----------
    values
        (..., ny, nx) source fields.
    weights_y, weights_x
        (Ny, ny) and (Nx, nx) overlaps from :func:`_overlap_weights`.
    skipna
        Average over the valid cells only; otherwise a target cell that overlaps a NaN is NaN.

    Returns
    -------
    numpy.ndarray
        (..., Ny, Nx), in the dtype of ``values`` when it is floating (float64 otherwise); NaN
        where no valid source cell overlaps the target cell.
    """
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
    a = np.asarray(values, dtype=np.float64)
    # rows normalized to sum 1: a target cell inside one source cell gets its value exactly
    sum_y, sum_x = weights_y.sum(axis=1), weights_x.sum(axis=1)
    norm_y = np.divide(
        weights_y, sum_y[:, None], out=np.zeros_like(weights_y), where=sum_y[:, None] > 0
    )
    norm_x = np.divide(
        weights_x, sum_x[:, None], out=np.zeros_like(weights_x), where=sum_x[:, None] > 0
    )

    def contract(b: np.ndarray) -> np.ndarray:
        return norm_y @ (b @ norm_x.T)

    missing = np.isnan(a)
    if not missing.any():
        return np.where(np.outer(sum_y > 0, sum_x > 0), contract(a), np.nan).astype(dtype)
    total = contract(np.where(missing, 0.0, a))
    cover = contract((~missing).astype(np.float64))
    out = np.where(cover > 0, total / np.where(cover > 0, cover, 1.0), np.nan)
    if not skipna:
        out = np.where(contract(missing.astype(np.float64)) > 0, np.nan, out)
    return out.astype(dtype, copy=False)


class Regridder:
    """Regrid objects on one source grid to a target grid.

    Parameters
    ----------
    source
        Dataset or DataArray on the source grid (a template: only its coordinates are used).
    target
        Dataset / DataArray on the target grid, or a :class:`~flexdownscale.data.grid.GridSpec`.
    method
        ``"linear"`` (default), ``"nearest"``, ``"cubic"`` or ``"conservative"`` (the
        area-weighted mean over the exact overlaps on the sphere; see the module docstring).
    backend
        ``"auto"`` (xarray-regrid for rectilinear sources, xesmf for curvilinear ones),
        ``"xarray-regrid"`` or ``"xesmf"``.
    dims, target_dims
        Dimension-name overrides of the source and the target.
    skipna
        Conservative regridding only: average over the valid (non-NaN) part of each target cell
        instead of propagating NaN (default ``False``: a target cell that overlaps a NaN of the
        source is NaN).

    Raises
    ------
    BackendNotAvailableError
        When the chosen backend does not import (the message names the extra to install).
    GridError
        When a grid is invalid, or the backend cannot handle it (curvilinear with
        xarray-regrid, projected without geographic coordinates with xesmf).
    ConfigError
        For an invalid option, or ``"cubic"`` with xesmf.

    Notes
    -----
    Source and target may use different longitude conventions (-180..180, 0..360). A regional
    (non-periodic) latitude / longitude source is regridded in its own frame: target cells whose
    centre, taken modulo 360, lies outside the source's extent (first centre - dx/2 to last
    centre + dx/2) are NaN, never filled from the other side of the source. CF bounds variables
    of the source's x / y (``lat_bnds`` / ``lon_bnds``, as data variables or coordinates) are
    dropped, and only the centres of the target are used. Floating-point data keep their dtype
    (float32 stays float32); other numbers and booleans come back as float64 (a boolean mask
    as 0 / 1 values, regridded as numbers: the covered fraction for ``"conservative"``, 0 or 1
    for ``"nearest"``, interpolated values for ``"linear"`` / ``"cubic"``).

    Edges (xarray-regrid backend). The source covers its cell-bounds extent, from its first
    centre - spacing/2 to its last centre + spacing/2 along each axis (latitudes clipped to
    [-90, 90]):

    - ``"conservative"``: a target cell whose centre lies in that extent gets the area-weighted
      mean of the source cells it overlaps, over the part of it that they cover (a target cell
      inside one source cell gets that cell's value, up to the edges; a cell straddling the edge
      gets the mean over its covered part). A target cell whose centre lies outside the extent is
      NaN, even where it overlaps the edge.
    - ``"nearest"``: a target centre in the extent takes the value of the nearest source cell;
      outside it, NaN.
    - ``"linear"`` and ``"cubic"`` do not extrapolate: a target centre beyond the outermost
      source centres is NaN, including in the half cell between them and the extent's edge.

    Along a periodic axis nothing is masked: a global longitude is wrapped by the backend, and a
    periodic projected axis (``periodic = "true"``) by padding it with the cells of its other end.

    Examples
    --------
    Built once for a 1 degree source and a 2.5 degree target, then applied to several fields
    on the source grid: linear interpolation reproduces a field linear in longitude (its
    value is the longitude) at the target centres, and nearest takes the closest cell:

    >>> import numpy as np, xarray as xr
    >>> lat = ("lat", np.arange(40.0, 50.0), {"units": "degrees_north"})
    >>> lon = ("lon", np.arange(0.0, 10.0), {"units": "degrees_east"})
    >>> field = xr.DataArray(np.zeros((10, 1)) + np.arange(10.0), coords={"lat": lat, "lon": lon},
    ...                      dims=("lat", "lon"))
    >>> target = xr.Dataset(coords={
    ...     "lat": ("lat", [41.5, 44.0, 46.5], {"units": "degrees_north"}),
    ...     "lon": ("lon", [1.25, 3.75, 6.25, 8.75], {"units": "degrees_east"})})
    >>> regridder = Regridder(field, target)
    >>> regridder
    Regridder(latlon 10 x 10 -> latlon 3 x 4, method='linear', backend='xarray-regrid')
    >>> regridder(field).shape, regridder(field)[0].values
    ((3, 4), array([1.25, 3.75, 6.25, 8.75]))
    >>> regridder(2 * field + 1)[0].values
    array([ 3.5,  8.5, 13.5, 18.5])
    >>> Regridder(field, target, method="nearest")(field)[0].values
    array([1., 4., 6., 9.])
    """

    def __init__(
        self,
        source: XrObj,
        target: XrObj | GridSpec,
        *,
        method: Method = "linear",
        backend: Backend = "auto",
        dims: Mapping[str, str] | None = None,
        target_dims: Mapping[str, str] | None = None,
        skipna: bool = False,
    ) -> None:
        _check_option("method", method, Method)
        # pint coordinates (pint-xarray's quantify): their magnitudes, units as attributes
        source = plain_arrays(source, "source")
        if not isinstance(target, GridSpec):
            target = plain_arrays(target, "target")
        _check_option("backend", backend, Backend)
        self.method = method
        self.dims = dict(dims) if dims else None
        self.skipna = bool(skipna)
        curvilinear = _is_curvilinear(source, self.dims)
        if backend == "auto":
            backend = "xesmf" if curvilinear else "xarray-regrid"
        self.backend: Backend = backend
        self.target_spec, self._ty, self._tx, self._tyattrs, self._txattrs = _target_axes(
            target, target_dims
        )
        # the target's own labels and order (it may be descending, or in the other longitude
        # convention than its normalized form): the output is put back on them
        self._target_labels: tuple[np.ndarray, np.ndarray] | None = None
        if not isinstance(target, GridSpec):
            ty = np.asarray(target[self.target_spec.y].values, dtype=np.float64)
            tx = np.asarray(target[self.target_spec.x].values, dtype=np.float64)
            if not (np.array_equal(ty, self._ty) and np.array_equal(tx, self._tx)):
                self._target_labels = (ty, tx)
        # a float32 target axis gives float32 output coordinates (equal to the target's)
        self._float32_axes = (
            (False, False)
            if isinstance(target, GridSpec)
            else tuple(
                target[name].dtype == np.float32
                for name in (self.target_spec.y, self.target_spec.x)
            )
        )
        if backend == "xarray-regrid":
            if curvilinear:
                raise GridError(
                    "the source grid is curvilinear (2-D latitude/longitude); xarray-regrid only "
                    "handles rectilinear grids. Use backend='xesmf' (" + _ESMF_HINT + ")"
                )
            _import_xarray_regrid()
            self.source_spec: GridSpec | None = grid_spec(source, dims=self.dims)
            self._source_shape: tuple[int, int] = self.source_spec.shape
            self._xesmf = None
            kinds = (self.source_spec.kind, self.target_spec.kind)
            if kinds[0] != kinds[1]:
                # xarray-regrid interpolates in the source's own coordinates: a target in
                # another frame would be read as if its numbers were source coordinates
                raise GridError(
                    f"the source grid is {kinds[0]!r} ({self.source_spec.x}, "
                    f"{self.source_spec.y}) and the target grid {kinds[1]!r}: xarray-regrid only "
                    "maps between grids in the same frame. Give a target in the source's "
                    "coordinates, or regrid with backend='xesmf' from 2-D latitude / longitude "
                    "coordinates of the source (" + _ESMF_HINT + ")"
                )
        else:
            if method == "cubic":  # before the import: installing xesmf would not help
                raise ConfigError(
                    "xesmf has no 'cubic' method; expected 'linear', 'nearest' or 'conservative' "
                    "(or use backend='xarray-regrid' for cubic on rectilinear grids)"
                )
            xesmf = _import_xesmf()
            self.source_spec = None if curvilinear else grid_spec(source, dims=self.dims)
            if self.source_spec is not None and self.source_spec.kind != "latlon":
                raise GridError(
                    f"xesmf needs geographic latitude/longitude; the source grid is "
                    f"{self.source_spec.kind!r}. Use backend='xarray-regrid'"
                )
            if self.target_spec.kind != "latlon":
                raise GridError(
                    f"xesmf needs a latitude/longitude target grid; got {self.target_spec.kind!r}"
                )
            ds_in = self._xesmf_source_grid(source, curvilinear)
            # the source's cells: a curvilinear grid's 2-D latitude, else its two axes
            lat = ds_in["lat"]
            self._source_shape = (
                (lat.shape[0], lat.shape[1]) if lat.ndim == 2 else (lat.size, ds_in["lon"].size)
            )
            ds_out = self._xesmf_grid(self._ty, self._tx)
            self._xesmf = xesmf.Regridder(
                ds_in,
                ds_out,
                _XESMF_METHODS[method],
                periodic=False if self.source_spec is None else bool(self.source_spec.periodic_x),
                unmapped_to_nan=True,
            )
            self._curvilinear = curvilinear

    def __repr__(self) -> str:
        """One line: the source and target grids (kind, ny x nx cells), method and backend
        (and ``skipna=True`` where set)."""
        source = "curvilinear" if self.source_spec is None else self.source_spec.kind
        target = self.target_spec
        skipna = ", skipna=True" if self.skipna else ""
        return (
            f"Regridder({source} {self._source_shape[0]} x {self._source_shape[1]} -> "
            f"{target.kind} {target.ny} x {target.nx}, method={self.method!r}, "
            f"backend={self.backend!r}{skipna})"
        )

    # -- xesmf helpers ------------------------------------------------------------------------

    def _xesmf_grid(self, ys: np.ndarray, xs: np.ndarray) -> xr.Dataset:
        coords: dict[str, Any] = {
            "lat": ("lat", ys, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", xs, {"units": "degrees_east", "standard_name": "longitude"}),
        }
        if self.method == "conservative":
            coords["lat_b"] = ("lat_b", _edges(ys, latitude=True))
            coords["lon_b"] = ("lon_b", _edges(xs, latitude=False))
        return xr.Dataset(coords=coords)

    def _curvilinear_names(self, source: XrObj) -> tuple[str, str]:
        names = _curvilinear(source)
        axes = {n: _geographic_axis(n, source[n].attrs) for n in names}
        lat = [n for n in names if axes[n] == "lat"]
        lon = [n for n in names if axes[n] == "lon"]
        if len(lat) != 1 or len(lon) != 1:
            raise GridError(
                f"could not tell the 2-D latitude and longitude apart among {names}; expected one "
                f"of each"
            )
        return lat[0], lon[0]

    def _xesmf_source_grid(self, source: XrObj, curvilinear: bool) -> xr.Dataset:
        if not curvilinear:
            assert self.source_spec is not None
            norm = normalize_grid(
                xr.Dataset(
                    coords={
                        self.source_spec.y: source[self.source_spec.y],
                        self.source_spec.x: source[self.source_spec.x],
                    }
                ),
                dims={"x": self.source_spec.x, "y": self.source_spec.y},
            )
            return self._xesmf_grid(
                np.asarray(norm[self.source_spec.y].values, dtype=np.float64),
                np.asarray(norm[self.source_spec.x].values, dtype=np.float64),
            )
        lat, lon = self._curvilinear_names(source)
        coords: dict[str, Any] = {
            "lat": (source[lat].dims, np.asarray(source[lat].values, dtype=np.float64)),
            "lon": (source[lon].dims, np.asarray(source[lon].values, dtype=np.float64)),
        }
        if self.method == "conservative":
            corners = [c for c in ("lat_b", "lon_b") if c not in source.coords]
            if corners:
                raise GridError(
                    "conservative regridding of a curvilinear grid needs cell corners as 'lat_b' "
                    "and 'lon_b' coordinates (shape (ny + 1, nx + 1)); expected them on the source"
                )
            coords["lat_b"] = source["lat_b"].variable
            coords["lon_b"] = source["lon_b"].variable
        return xr.Dataset(coords=coords)

    # -- call ---------------------------------------------------------------------------------

    def __call__(self, obj: XrT) -> XrT:
        """Regrid ``obj`` (on the source grid) to the target grid.

        For rectilinear sources the result keeps the source's dimension names, with the target's
        coordinate values; for curvilinear sources it uses the target's names. Attributes are
        kept, but those that describe the source grid describe the target one
        (:func:`~flexdownscale._attributes.regridded_attrs`: cfgrib's ``GRIB_*`` grid
        attributes left out, ``geospatial_lat_resolution`` / ``geospatial_lon_resolution``
        scaled by the ratio of the target's spacing to the source's, or left out for a
        curvilinear source; ``geospatial_lat_min`` / ``_max``, ``geospatial_lon_min`` / ``_max``
        the extent of the target's cells), and ``cell_measures`` / ``ancillary_variables`` name no variable
        left behind; dask-backed input stays lazy. Data variables of a Dataset without the grid's
        dims (a time series, a scalar) are passed through unchanged.

        Parameters
        ----------
        obj : xarray.Dataset or xarray.DataArray
            Data on the source grid (the ``source`` the regridder was built for).

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            ``obj`` on the target grid.
        """
        obj = plain_arrays(obj, "obj")  # pint quantities: magnitudes, units as the attribute
        passed: dict[Hashable, xr.DataArray] = {}
        spec = self.source_spec
        src: XrObj = obj
        if isinstance(src, xr.Dataset) and spec is not None:
            src = _drop_axis_bounds(src, (spec.x, spec.y))
            for name, var in src.data_vars.items():
                if not _on_grid(name, var, spec.y, spec.x):
                    passed[name] = var
            if passed:
                src = src.drop_vars(list(passed))
        if self.backend == "xarray-regrid":
            out = self._call_xarray_regrid(src)
        else:
            out = self._call_xesmf(src)
        out = self._on_target_labels(out)
        out = self._in_target_dtypes(out)
        if spec is not None:
            # a rotated-pole source's 2-D lat/lon, recomputed on the target cells; other
            # auxiliary coordinates of the source grid are gone, so no attribute names them
            out = _with_geographic_coordinates(out, src, spec)
            out = _trim_stale_coordinates(out)
        out = self._with_target_attrs(out)
        if passed:
            out = out.assign(passed)
        return cast(XrT, drop_dangling_references(out))  # obj's type: every step keeps it

    def _spacings(self) -> tuple[Spacing, Spacing]:
        """The (source, target) spacings of the y and x axes, for the attributes that state a
        resolution; ``None`` for a curvilinear source (no one spacing)."""
        source = self.source_spec
        if source is None:
            return (None, None)
        target = self.target_spec
        return ((source.dy, target.dy), (source.dx, target.dx))

    def _with_target_attrs(self, out: XrObj) -> XrObj:
        """``out`` (every variable on the target grid) with the attributes that describe the
        source grid made those of the target (:func:`~flexdownscale._attributes.regridded_attrs`:
        cfgrib's ``GRIB_*`` grid attributes left out, ``geospatial_*_resolution`` scaled by the
        ratio of the spacings, or left out for a curvilinear source; ``geospatial_lat_min`` ...
        ``geospatial_lon_max`` the extent of the target's cells, or left out on a target that
        is not on latitude / longitude axes)."""
        spacings = self._spacings()
        extent = self._target_extent(out)
        out = out.copy(deep=False)
        out.attrs = regridded_attrs(out.attrs, spacings, extent)
        if isinstance(out, xr.Dataset):
            for name in out.data_vars:
                out[name].attrs = regridded_attrs(out[name].attrs, spacings, extent)
        return out

    def _target_extent(self, out: XrObj) -> Extent:
        """The extent of ``out``'s cells (on a latitude / longitude target:
        :func:`~flexdownscale._attributes.cell_extent` of its axes, in the target's own labels),
        else ``None``."""
        target = self.target_spec
        if target.kind != "latlon":
            return None
        names = self.source_spec if self.source_spec is not None else target
        return cell_extent(out[names.y].values, out[names.x].values, target.dy, target.dx)

    def _in_target_dtypes(self, out: XrObj) -> XrObj:
        """``out`` with float32 x / y coordinates where the target's are float32."""
        names = self.source_spec if self.source_spec is not None else self.target_spec
        for dim, float32 in zip((names.y, names.x), self._float32_axes):
            if float32 and dim in out.coords and out[dim].dtype != np.float32:
                out = out.assign_coords({dim: out[dim].astype(np.float32)})
        return out

    def _on_target_labels(self, out: XrObj) -> XrObj:
        """``out`` (on the normalized target axes) in the target's own order and labels."""
        if self._target_labels is None:
            return out
        # rectilinear sources keep their dim names, curvilinear ones take the target's
        names = self.source_spec if self.source_spec is not None else self.target_spec
        for dim, normalized, labels, is_x in (
            (names.y, self._ty, self._target_labels[0], False),
            (names.x, self._tx, self._target_labels[1], True),
        ):
            wanted = labels
            if is_x and self.target_spec.kind == "latlon":  # into the normalized convention
                wanted = _wrap(labels, float(normalized.min()) - 1e-9)
            step = float(np.abs(np.diff(normalized)).min()) if normalized.size > 1 else 1.0
            index = pd.Index(normalized).get_indexer(
                wanted, method="nearest", tolerance=1e-6 * step
            )
            if (index < 0).any():
                continue  # not a relabelling of the same cells: keep the normalized axis
            out = out.isel({dim: index})
            out = out.assign_coords({dim: out[dim].copy(data=labels.astype(out[dim].dtype))})
        return out

    def _target_dataset(self, y: str, x: str) -> xr.Dataset:
        return xr.Dataset(
            coords={
                y: (y, self._ty, {k: v for k, v in self._tyattrs.items() if k != "bounds"}),
                x: (x, self._tx, {k: v for k, v in self._txattrs.items() if k != "bounds"}),
            }
        )

    def _pad_source(self, src: XrObj, spec: GridSpec) -> XrObj:
        """Pad the normalized source by one cell at both ends of its axes (see the Notes).

        xarray-regrid masks the target cells whose centre lies outside the range of the source
        *centres*; for ``"nearest"`` the padding (the edge cells, replicated) moves that range
        half a cell beyond the source's cell bounds, and :meth:`_mask_outside` then masks what
        lies outside those bounds. A periodic axis (other than a latitude / longitude grid's
        longitude, which the backend wraps itself) is padded with a whole period at each end, for
        every method, so that a target labelled in a shifted period ([-pi, pi) for [0, 2 pi)) is
        read too; a non-periodic one is not padded for ``"linear"`` / ``"cubic"``.
        """
        axes = ((spec.y, spec.dy, spec.periodic_y), (spec.x, spec.dx, spec.periodic_x))
        for dim, step, periodic in axes:
            if periodic and spec.kind == "latlon" and dim == spec.x:
                continue
            n = src.sizes[dim]
            if periodic:  # a whole period each side: targets labelled in a shifted period too
                mode, width = "wrap", n
            elif self.method == "nearest":
                mode, width = "edge", 1
            else:
                continue
            centres = np.asarray(src[dim].values, dtype=np.float64)
            padded = np.concatenate(
                [
                    centres[0] + step * np.arange(-width, 0),
                    centres,
                    centres[-1] + step * np.arange(1, width + 1),
                ]
            )
            attrs = dict(src[dim].attrs)
            src = src.pad({dim: (width, width)}, mode=mode, keep_attrs=True)
            src = src.assign_coords({dim: (dim, padded, attrs)})
        return src

    def _mask_outside(self, out: XrObj, spec: GridSpec) -> XrObj:
        """NaN where the target centre lies outside the source's cell-bounds extent.

        Only for ``"nearest"``, whose source is padded (the backend already leaves NaN outside
        the range of the source centres for ``"linear"`` / ``"cubic"``), and only along
        non-periodic axes; a regional longitude is masked by :meth:`_regrid_regional_lon`
        already.
        """
        if self.method != "nearest":
            return out
        xmin, xmax, ymin, ymax = spec.extent
        masks: dict[str, np.ndarray] = {}
        if not spec.periodic_y:
            masks[spec.y] = _within(self._ty, ymin, ymax, spec.dy)
        if not spec.periodic_x and spec.kind != "latlon":
            masks[spec.x] = _within(self._tx, xmin, xmax, spec.dx)
        masks = {dim: mask for dim, mask in masks.items() if not mask.all()}
        if not masks:
            return out

        def mask(da: xr.DataArray) -> xr.DataArray:
            for dim, keep in masks.items():
                if dim in da.dims:
                    da = da.where(xr.Variable(dim, keep))
            return da

        return _per_variable(out, mask)

    def _regrid_regional_lon(self, src: XrObj, spec: GridSpec) -> XrObj:
        """Regrid a regional (non-periodic) longitude source, whatever the target's convention.

        The target centres are taken modulo 360 into the source's frame (where the source is
        contiguous); the target cells whose centre lies in the source's extent form at most a few
        contiguous runs, each regridded on its own, and the other cells are NaN. The longitude is
        renamed for the backend so that it does not wrap the source itself.
        """
        tmp = "__flexdownscale_x__"
        runs = _regional_lon_runs(self._tx, spec.x0, spec.dx, spec.nx)
        if not runs:  # no target cell in the source's extent: all NaN (one dummy cell, dropped)
            runs = [(np.array([-1]), np.array([spec.x0]))]
        renamed = src.rename({spec.x: tmp})
        pieces = []
        for index, values in runs:
            target = xr.Dataset(
                coords={
                    spec.y: (spec.y, self._ty, {}),
                    tmp: (tmp, values),
                }
            )
            piece = getattr(renamed.regrid, self.method)(target, time_dim=None)
            pieces.append(piece.assign_coords({tmp: index}))
        out = pieces[0]
        if len(pieces) > 1:
            options: dict[str, Any] = {
                "coords": "minimal",
                "compat": "override",
                "join": "override",
            }
            if isinstance(out, xr.Dataset):
                options["data_vars"] = "minimal"
            out = xr.concat(pieces, dim=tmp, **options)
        out = out.reindex({tmp: np.arange(self._tx.size)})
        return out.drop_vars(tmp).rename({tmp: spec.x})

    def _call_xarray_regrid(self, obj: XrObj) -> XrObj:
        spec = self.source_spec
        assert spec is not None
        src = normalize_grid(_drop_axis_bounds(obj, (spec.x, spec.y)), dims=self.dims)
        drop = [
            c
            for c in src.coords
            if c not in (spec.x, spec.y) and (spec.x in src[c].dims or spec.y in src[c].dims)
        ]
        src = src.drop_vars(drop)
        if self.method == "conservative":
            out = self._conservative(src, spec)
        else:
            out = self._interpolate(src, spec)
        target = self._target_dataset(spec.y, spec.x)
        out = out.assign_coords({spec.y: target[spec.y], spec.x: target[spec.x]})
        out = _restore_dtypes(out, src)
        out.attrs.update(src.attrs)
        if isinstance(obj, xr.DataArray):
            return out.transpose(*[d for d in src.dims if d in out.dims])
        return out

    def _interpolate(self, src: XrObj, spec: GridSpec) -> XrObj:
        """``"linear"``, ``"nearest"`` or ``"cubic"`` of the normalized ``src`` by xarray-regrid."""
        _import_xarray_regrid()
        src = _booleans_as_fractions(src)
        names = _backend_axis_names(src, spec)
        if names:  # the backend wraps the longitude and pads the poles only under these names
            src = src.rename(names)
            spec = dataclasses.replace(spec, y=names[spec.y], x=names[spec.x])
        padded = self._pad_source(src, spec)
        if spec.kind == "latlon" and not spec.periodic_x:
            out = self._regrid_regional_lon(padded, spec)
        else:
            target = self._target_dataset(spec.y, spec.x)
            out = getattr(padded.regrid, self.method)(target, time_dim=None)
        out = out.assign_coords({spec.y: self._ty, spec.x: self._tx})
        out = self._mask_outside(out, spec)
        if names:
            out = out.rename({new: old for old, new in names.items()})
        return out

    def _conservative(self, src: XrObj, spec: GridSpec) -> XrObj:
        """``"conservative"`` of the normalized ``src`` with exact cell-overlap weights.

        The weights are separable (see :func:`_overlap_weights`): their products are the areas
        of the overlaps of target and source cells, on the sphere for latitude / longitude and
        rotated-pole grids. Each target cell gets the area-weighted mean of the valid source
        cells it overlaps; with ``skipna=False`` a target cell that overlaps a NaN is NaN. Lazy
        input stays lazy (the two grid axes are rechunked to one chunk each).
        """
        target = self.target_spec
        y_period = spec.ny * spec.dy if spec.periodic_y else None
        if spec.kind == "latlon":  # a regional longitude is also read modulo 360
            x_period: float | None = 360.0
        else:
            x_period = spec.nx * spec.dx if spec.periodic_x else None
        weights_y = _overlap_weights(
            np.asarray(src[spec.y].values, dtype=np.float64),
            spec.dy,
            self._ty,
            target.dy,
            sine=spec.kind in ("latlon", "rotated"),
            period=y_period,
            periodic=spec.periodic_y,
        )
        weights_x = _overlap_weights(
            np.asarray(src[spec.x].values, dtype=np.float64),
            spec.dx,
            self._tx,
            target.dx,
            sine=False,
            period=x_period,
            periodic=spec.periodic_x,
        )
        ty, tx = "__flexdownscale_target_y__", "__flexdownscale_target_x__"

        def one(da: xr.DataArray) -> xr.DataArray:
            dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype(np.float64)
            out = xr.apply_ufunc(
                _conservative_mean,
                da,
                kwargs={"weights_y": weights_y, "weights_x": weights_x, "skipna": self.skipna},
                input_core_dims=[[spec.y, spec.x]],
                output_core_dims=[[ty, tx]],
                dask="parallelized",
                output_dtypes=[dtype],
                dask_gufunc_kwargs={
                    "output_sizes": {ty: weights_y.shape[0], tx: weights_x.shape[0]},
                    "allow_rechunk": True,
                },
                keep_attrs=True,
            )
            return out.rename({ty: spec.y, tx: spec.x}).transpose(*da.dims)

        if isinstance(src, xr.DataArray):
            return one(src)
        return xr.Dataset({name: one(var) for name, var in src.data_vars.items()}, attrs=src.attrs)

    def _call_xesmf(self, obj: XrObj) -> XrObj:
        assert self._xesmf is not None
        if self._curvilinear:
            lat, lon = self._curvilinear_names(obj)
            src = obj.rename({lat: "lat", lon: "lon"}) if (lat, lon) != ("lat", "lon") else obj
            names = (self.target_spec.y, self.target_spec.x)
        else:
            spec = self.source_spec
            assert spec is not None
            src = normalize_grid(_drop_axis_bounds(obj, (spec.x, spec.y)), dims=self.dims)
            src = src.rename({spec.y: "lat", spec.x: "lon"})
            names = (spec.y, spec.x)
        out = self._xesmf(src, keep_attrs=True)
        out = out.rename({"lat": names[0], "lon": names[1]})
        return out.assign_coords(
            {
                names[0]: (names[0], self._ty, dict(self._tyattrs)),
                names[1]: (names[1], self._tx, dict(self._txattrs)),
            }
        )


def _backend_axis_names(obj: XrObj, spec: GridSpec) -> dict[Hashable, str]:
    """``{y: "lat", x: "lon"}`` for a latitude / longitude grid under other names, else ``{}``.

    xarray-regrid recognises a geographic grid by its coordinate names only (``lat`` /
    ``latitude``, ``lon`` / ``longitude``, any case): under those names it wraps a global
    longitude and pads the poles; under others (``x`` / ``y``, ``nav_lon``, ...) it leaves NaN
    at the seam and next to the poles. Nothing is renamed when those names are taken by other
    variables or dimensions of ``obj``.
    """
    if spec.kind != "latlon":
        return {}
    known = {"lat", "latitude", "lon", "longitude"}
    if str(spec.y).lower() in known and str(spec.x).lower() in known:
        return {}
    taken = {str(n).lower() for n in (*obj.dims, *obj.coords, *getattr(obj, "data_vars", ()))}
    taken -= {str(spec.y).lower(), str(spec.x).lower()}
    if taken & known:
        return {}
    return {spec.y: "lat", spec.x: "lon"}


@keyword_hints
def regrid(
    obj: XrT,
    target: XrObj | GridSpec,
    *,
    method: Method = "linear",
    backend: Backend = "auto",
    dims: Mapping[str, str] | None = None,
    target_dims: Mapping[str, str] | None = None,
    skipna: bool = False,
) -> XrT:
    """Regrid ``obj`` to the grid of ``target`` (see :class:`Regridder` for the options).

    Builds a :class:`Regridder` with ``obj`` as the source and applies it to ``obj``.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Data on the source grid.
    target : xarray.Dataset, xarray.DataArray or GridSpec
        Object on the target grid (only its coordinates are used), or its grid description.
    method : {"linear", "nearest", "cubic", "conservative"}, default "linear"
        Interpolation method, as for :class:`Regridder`.
    backend : {"auto", "xarray-regrid", "xesmf"}, default "auto"
        Regridding library, as for :class:`Regridder`.
    dims, target_dims : mapping of str to str, optional
        Dimension-name overrides of the source and the target; default None: found from CF
        attributes and names.
    skipna : bool, default False
        Conservative regridding only: average over the valid part of each target cell, as for
        :class:`Regridder`.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        ``obj`` on the target grid.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lat = ("lat", np.arange(-60.0, 61.0, 2.0), {"units": "degrees_north"})
    >>> lon = ("lon", np.arange(0.0, 100.0, 2.0), {"units": "degrees_east"})
    >>> da = xr.DataArray(np.ones((61, 50)), coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))
    >>> target = da.isel(lat=slice(5, -5, 2), lon=slice(5, -5, 2))
    >>> out = regrid(da, target, method="conservative")
    >>> out.shape, float(out.mean())
    ((26, 20), 1.0)
    """
    return Regridder(
        obj,
        target,
        method=method,
        backend=backend,
        dims=dims,
        target_dims=target_dims,
        skipna=skipna,
    )(obj)
