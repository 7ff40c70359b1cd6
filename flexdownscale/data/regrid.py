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

import dataclasses
import importlib
from collections.abc import Hashable, Mapping
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import BackendNotAvailableError, ConfigError, GridError
from .grid import (
    GridSpec,
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
    (float32 stays float32).

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
        # the target's own labels and order (it may be descending, or in the other longitude
        # convention than its normalized form): the output is put back on them
        self._target_labels: tuple[np.ndarray, np.ndarray] | None = None
        if not isinstance(target, GridSpec):
            ty = np.asarray(target[self.target_spec.y].values, dtype=np.float64)
            tx = np.asarray(target[self.target_spec.x].values, dtype=np.float64)
            if not (np.array_equal(ty, self._ty) and np.array_equal(tx, self._tx)):
                self._target_labels = (ty, tx)
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

    def __call__(self, obj: XrObj) -> XrObj:
        """Regrid ``obj`` (on the source grid) to the target grid.

        For rectilinear sources the result keeps the source's dimension names, with the target's
        coordinate values; for curvilinear sources it uses the target's names. Attributes are
        kept; dask-backed input stays lazy. Data variables of a Dataset without the grid's
        dims (a time series, a scalar) are passed through unchanged.
        """
        passed: dict[Hashable, xr.DataArray] = {}
        spec = self.source_spec
        if isinstance(obj, xr.Dataset) and spec is not None:
            obj = _drop_axis_bounds(obj, (spec.x, spec.y))
            for name, var in obj.data_vars.items():
                if not _on_grid(name, var, spec.y, spec.x):
                    passed[name] = var
            if passed:
                obj = obj.drop_vars(list(passed))
        if self.backend == "xarray-regrid":
            out = self._call_xarray_regrid(obj)
        else:
            out = self._call_xesmf(obj)
        out = self._on_target_labels(out)
        if spec is not None:
            # a rotated-pole source's 2-D lat/lon, recomputed on the target cells; other
            # auxiliary coordinates of the source grid are gone, so no attribute names them
            out = _with_geographic_coordinates(out, obj, spec)
            out = _trim_stale_coordinates(out)
        return out.assign(passed) if passed else out

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

    def _pad_source(self, src: XrObj, spec: GridSpec) -> tuple[XrObj, dict[str, np.ndarray]]:
        """Pad the normalized source by one cell at both ends of its axes (see the Notes).

        xarray-regrid masks the target cells whose centre lies outside the range of the source
        *centres*; the padding moves that range half a cell beyond the source's cell bounds, and
        :meth:`_mask_outside` then masks what lies outside those bounds. A periodic axis (other
        than a latitude / longitude grid's longitude, which the backend wraps itself) is padded
        with the cells of its other end, for every method. A non-periodic one is padded by
        replicating its edge cells for ``"nearest"`` and with NaN for ``"conservative"``
        (renormalized by :meth:`_backend_call`), and not at all for ``"linear"`` / ``"cubic"``.

        Returns
        -------
        (padded source, indicators)
            ``indicators`` maps each axis padded with NaN to a 1-D array over its padded
            centres: 1 on the source's own cells, 0 on the padding.
        """
        inside: dict[str, np.ndarray] = {}
        axes = ((spec.y, spec.dy, spec.periodic_y), (spec.x, spec.dx, spec.periodic_x))
        for dim, step, periodic in axes:
            if periodic and spec.kind == "latlon" and dim == spec.x:
                continue
            if periodic:
                mode = "wrap"
            elif self.method == "nearest":
                mode = "edge"
            elif self.method == "conservative":
                mode = "constant"
            else:
                continue
            centres = np.asarray(src[dim].values, dtype=np.float64)
            padded = np.concatenate([[centres[0] - step], centres, [centres[-1] + step]])
            attrs = dict(src[dim].attrs)
            src = src.pad({dim: (1, 1)}, mode=mode, keep_attrs=True)
            src = src.assign_coords({dim: (dim, padded, attrs)})
            if mode == "constant":
                inside[dim] = np.concatenate([[0.0], np.ones(centres.size), [0.0]])
        return src, inside

    def _mask_outside(self, out: XrObj, spec: GridSpec) -> XrObj:
        """NaN where the target centre lies outside the source's cell-bounds extent.

        Only for ``"nearest"`` and ``"conservative"``, whose source is padded (the backend already
        leaves NaN outside the range of the source centres for ``"linear"`` / ``"cubic"``), and
        only along non-periodic axes; a regional longitude is masked by
        :meth:`_regrid_regional_lon` already.
        """
        if self.method not in ("nearest", "conservative"):
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

    def _backend_call(
        self,
        src: XrObj,
        target: xr.Dataset,
        latitude: str | None,
        inside: Mapping[str, np.ndarray] | None = None,
    ) -> XrObj:
        """Call xarray-regrid on the (padded) source.

        For ``"conservative"``, ``inside`` gives the axes padded with NaN (see
        :meth:`_pad_source`). With ``skipna=True`` the backend already averages over the valid
        part of each target cell, which leaves the padding out; with ``skipna=False`` it counts
        the padding as zeros, so each axis is renormalized by the fraction of each target cell
        that the source's own cells cover (computed with the backend's own weights, on the
        indicator of the source's cells).
        """
        acc = src.regrid
        if self.method != "conservative":
            return getattr(acc, self.method)(target, time_dim=None)
        out = acc.conservative(target, latitude_coord=latitude, time_dim=None, skipna=self.skipna)
        if self.skipna:
            return out
        out = self._propagate_nan(src, out, target, latitude, inside)
        if not inside:
            return out
        covers: dict[str, np.ndarray] = {}
        for dim, flags in inside.items():
            indicator = xr.DataArray(flags, dims=dim, coords={dim: src[dim].variable})
            cover = indicator.regrid.conservative(
                xr.Dataset(coords={dim: target[dim]}),
                latitude_coord=latitude if dim == latitude else None,
                time_dim=None,
                skipna=False,
            )
            values = np.asarray(cover.values, dtype=np.float64)
            covers[dim] = np.where(values > 0, values, np.nan)

        def renormalize(da: xr.DataArray) -> xr.DataArray:
            if not np.issubdtype(da.dtype, np.floating):
                return da
            attrs = dict(da.attrs)
            for dim, cover in covers.items():
                if dim in da.dims:
                    da = da / xr.Variable(dim, cover.astype(da.dtype))
            da.attrs = attrs
            return da

        return _per_variable(out, renormalize)

    def _propagate_nan(
        self,
        src: XrObj,
        out: XrObj,
        target: xr.Dataset,
        latitude: str | None,
        inside: Mapping[str, np.ndarray] | None,
    ) -> XrObj:
        """``skipna=False``: NaN in every target cell that overlaps a NaN of the source's data.

        xarray-regrid's conservative method counts NaNs as zeros when ``skipna=False``; the
        indicator of the source's own NaNs (not of the NaN padding) is regridded with the same
        weights, and target cells where it is positive become NaN. Lazy input stays lazy.
        """

        def indicator(da: xr.DataArray) -> xr.DataArray:
            if not np.issubdtype(da.dtype, np.floating):
                return xr.zeros_like(da, dtype=np.float64)
            flags = da.isnull()
            for dim, keep in (inside or {}).items():
                if dim in da.dims:
                    flags = flags & xr.Variable(dim, np.asarray(keep, dtype=bool))
            return flags.astype(np.float64)

        touched = _per_variable(src, indicator).regrid.conservative(
            target, latitude_coord=latitude, time_dim=None, skipna=False
        )

        def apply(da: xr.DataArray, hit: xr.DataArray) -> xr.DataArray:
            if not np.issubdtype(da.dtype, np.floating):
                return da
            attrs = dict(da.attrs)
            da = da.where(~(hit > 0))
            da.attrs = attrs
            return da

        if isinstance(out, xr.DataArray):
            return apply(out, touched)
        return out.assign({name: apply(var, touched[name]) for name, var in out.data_vars.items()})

    def _regrid_regional_lon(
        self,
        src: XrObj,
        spec: GridSpec,
        latitude: str | None,
        inside: Mapping[str, np.ndarray] | None = None,
    ) -> XrObj:
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
        inside = {tmp if dim == spec.x else dim: flags for dim, flags in (inside or {}).items()}
        pieces = []
        for index, values in runs:
            target = xr.Dataset(
                coords={
                    spec.y: (spec.y, self._ty, {}),
                    tmp: (tmp, values),
                }
            )
            piece = self._backend_call(renamed, target, latitude, inside)
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
        names = _backend_axis_names(src, spec)
        if names:  # the backend wraps the longitude and pads the poles only under these names
            src = src.rename(names)
            spec = dataclasses.replace(spec, y=names[spec.y], x=names[spec.x])
        latitude = spec.y if spec.kind in ("latlon", "rotated") else None
        padded, inside = self._pad_source(src, spec)
        if spec.kind == "latlon" and not spec.periodic_x:
            out = self._regrid_regional_lon(padded, spec, latitude, inside)
        else:
            target = self._target_dataset(spec.y, spec.x)
            out = self._backend_call(padded, target, latitude, inside)
        target = self._target_dataset(spec.y, spec.x)
        out = out.assign_coords(
            {
                spec.y: (spec.y, self._ty, dict(target[spec.y].attrs)),
                spec.x: (spec.x, self._tx, dict(target[spec.x].attrs)),
            }
        )
        out = self._mask_outside(out, spec)
        if names:
            back = {new: old for old, new in names.items()}
            out, src = out.rename(back), src.rename(back)
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
