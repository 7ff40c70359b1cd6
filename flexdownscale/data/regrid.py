"""Regridding between grids: one interface over the xarray-regrid and xesmf backends.

``xarray-regrid`` (the default, a hard dependency) handles rectilinear grids: ``"linear"``,
``"nearest"``, ``"cubic"`` and ``"conservative"`` (with the cos-latitude correction on
latitude / longitude and rotated-pole grids), lazily with dask. ``xesmf`` (optional:
``pip install flexdownscale[esmf]`` plus ``conda install -c conda-forge esmpy``, since ESMPy is
only on conda-forge) adds curvilinear sources (2-D latitude / longitude); it is used
automatically for them when it imports. This module is the only one in flexdownscale that imports
either backend.

Build a :class:`Regridder` once and call it on many objects on the same source grid (xesmf
computes its weights once); :func:`regrid` does both in one call.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np
import xarray as xr

from ..errors import BackendNotAvailableError, ConfigError, GridError
from .grid import (
    GridSpec,
    _curvilinear,
    _drop_axis_bounds,
    cell_bounds,
    find_axes,
    grid_spec,
    normalize_grid,
)

__all__ = ["Backend", "Method", "Regridder", "regrid"]

Method = Literal["linear", "nearest", "cubic", "conservative"]
Backend = Literal["auto", "xarray-regrid", "xesmf"]
XrObj = xr.Dataset | xr.DataArray

_XESMF_METHODS = {"linear": "bilinear", "nearest": "nearest_s2d", "conservative": "conservative"}
_ESMF_HINT = (
    "install it with `pip install flexdownscale[esmf]` and `conda install -c conda-forge esmpy` "
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


def _edges(centres: np.ndarray, latitude: bool) -> np.ndarray:
    b = cell_bounds(centres, latitude=latitude)
    return np.concatenate([b[:, 0], b[-1:, 1]])


class Regridder:
    """Regrid objects on one source grid to a target grid.

    Parameters
    ----------
    source
        Dataset or DataArray on the source grid (a template: only its coordinates are used).
    target
        Dataset / DataArray on the target grid, or a :class:`~flexdownscale.data.grid.GridSpec`.
    method
        ``"linear"`` (default), ``"nearest"``, ``"cubic"`` or ``"conservative"``.
    backend
        ``"auto"`` (xarray-regrid for rectilinear sources, xesmf for curvilinear ones),
        ``"xarray-regrid"`` or ``"xesmf"``.
    dims, target_dims
        Dimension-name overrides of the source and the target.
    skipna
        Conservative regridding only: average over the valid (non-NaN) part of each target cell
        instead of propagating NaN (default ``False``: NaN propagates).

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
    (float32 stays float32).
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
        if backend == "xarray-regrid":
            if curvilinear:
                raise GridError(
                    "the source grid is curvilinear (2-D latitude/longitude); xarray-regrid only "
                    "handles rectilinear grids. Use backend='xesmf' (" + _ESMF_HINT + ")"
                )
            _import_xarray_regrid()
            self.source_spec: GridSpec | None = grid_spec(source, dims=self.dims)
            self._xesmf = None
        else:
            xesmf = _import_xesmf()
            if method == "cubic":
                raise ConfigError(
                    "xesmf has no 'cubic' method; expected 'linear', 'nearest' or 'conservative' "
                    "(or use backend='xarray-regrid' for cubic on rectilinear grids)"
                )
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
            ds_out = self._xesmf_grid(self._ty, self._tx)
            self._xesmf = xesmf.Regridder(
                ds_in,
                ds_out,
                _XESMF_METHODS[method],
                periodic=False if self.source_spec is None else bool(self.source_spec.periodic_x),
                unmapped_to_nan=True,
            )
            self._curvilinear = curvilinear

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
        lat = [
            n
            for n in names
            if "lat" in n.lower() or source[n].attrs.get("standard_name") == "latitude"
        ]
        lon = [
            n
            for n in names
            if "lon" in n.lower() or source[n].attrs.get("standard_name") == "longitude"
        ]
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

    def __call__(self, obj: XrObj) -> XrObj:
        """Regrid ``obj`` (on the source grid) to the target grid.

        For rectilinear sources the result keeps the source's dimension names, with the target's
        coordinate values; for curvilinear sources it uses the target's names. Attributes are
        kept; dask-backed input stays lazy.
        """
        if self.backend == "xarray-regrid":
            return self._call_xarray_regrid(obj)
        return self._call_xesmf(obj)

    def _target_dataset(self, y: str, x: str) -> xr.Dataset:
        return xr.Dataset(
            coords={
                y: (y, self._ty, {k: v for k, v in self._tyattrs.items() if k != "bounds"}),
                x: (x, self._tx, {k: v for k, v in self._txattrs.items() if k != "bounds"}),
            }
        )

    def _backend_call(self, src: XrObj, target: xr.Dataset, latitude: str | None) -> XrObj:
        acc = src.regrid
        if self.method == "conservative":
            return acc.conservative(
                target, latitude_coord=latitude, time_dim=None, skipna=self.skipna
            )
        return getattr(acc, self.method)(target, time_dim=None)

    def _regrid_regional_lon(self, src: XrObj, spec: GridSpec, latitude: str | None) -> XrObj:
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
            piece = self._backend_call(renamed, target, latitude)
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
        _import_xarray_regrid()
        spec = self.source_spec
        assert spec is not None
        src = normalize_grid(_drop_axis_bounds(obj, (spec.x, spec.y)), dims=self.dims)
        drop = [
            c
            for c in src.coords
            if c not in (spec.x, spec.y) and (spec.x in src[c].dims or spec.y in src[c].dims)
        ]
        src = src.drop_vars(drop)
        latitude = spec.y if spec.kind in ("latlon", "rotated") else None
        if spec.kind == "latlon" and not spec.periodic_x:
            out = self._regrid_regional_lon(src, spec, latitude)
        else:
            out = self._backend_call(src, self._target_dataset(spec.y, spec.x), latitude)
        target = self._target_dataset(spec.y, spec.x)
        out = out.assign_coords(
            {
                spec.y: (spec.y, self._ty, dict(target[spec.y].attrs)),
                spec.x: (spec.x, self._tx, dict(target[spec.x].attrs)),
            }
        )
        out = _restore_dtypes(out, src)
        out.attrs.update(src.attrs)
        if isinstance(obj, xr.DataArray):
            return out.transpose(*[d for d in src.dims if d in out.dims])
        return out

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


def regrid(
    obj: XrObj,
    target: XrObj | GridSpec,
    *,
    method: Method = "linear",
    backend: Backend = "auto",
    dims: Mapping[str, str] | None = None,
    target_dims: Mapping[str, str] | None = None,
    skipna: bool = False,
) -> XrObj:
    """Regrid ``obj`` to the grid of ``target`` (see :class:`Regridder` for the options).

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
