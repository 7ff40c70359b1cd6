"""Builders of small synthetic grids and lazy-reading probes for the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import dask
import numpy as np
import xarray as xr
from xarray.core import indexing


def latlon_da(
    ny: int = 16,
    nx: int = 24,
    *,
    lat0: float = -30.0,
    dlat: float = 1.0,
    lon0: float = 0.0,
    dlon: float = 1.0,
    descending: bool = False,
    name: str = "t2m",
    func: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ntime: int | None = None,
    dtype: Any = np.float64,
) -> xr.DataArray:
    """A lat/lon DataArray with CF attributes; ``func(lat2d, lon2d)`` gives the values."""
    lat = lat0 + dlat * np.arange(ny)
    lon = lon0 + dlon * np.arange(nx)
    if descending:
        lat = lat[::-1]
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    values = (
        func(la, lo) if func is not None else np.cos(np.radians(la)) * np.sin(np.radians(2 * lo))
    )
    dims: tuple[str, ...] = ("lat", "lon")
    coords: dict[str, Any] = {
        "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    if ntime is not None:
        values = values[None] * (1.0 + 0.1 * np.arange(ntime))[:, None, None]
        dims = ("time", *dims)
        coords["time"] = ("time", np.arange(ntime).astype("datetime64[D]").astype("datetime64[ns]"))
    return xr.DataArray(
        values.astype(dtype), dims=dims, coords=coords, name=name, attrs={"units": "K"}
    )


def projected_da(
    ny: int = 16,
    nx: int = 16,
    *,
    dx: float = 0.5,
    units: str | None = "km",
    periodic: bool = False,
    name: str = "field",
    seed: int = 0,
    ntime: int | None = None,
) -> xr.DataArray:
    """A projected (x, y) DataArray of random values."""
    rng = np.random.default_rng(seed)
    shape = (ny, nx) if ntime is None else (ntime, ny, nx)
    attrs = {} if units is None else {"units": units}
    if periodic:
        attrs["periodic"] = "true"
    coords: dict[str, Any] = {
        "y": ("y", dx * np.arange(ny), dict(attrs)),
        "x": ("x", dx * np.arange(nx), dict(attrs)),
    }
    dims: tuple[str, ...] = ("y", "x")
    if ntime is not None:
        dims = ("time", *dims)
        coords["time"] = ("time", np.arange(ntime, dtype=np.float64))
    return xr.DataArray(rng.normal(size=shape), dims=dims, coords=coords, name=name)


def _raise_if_computed(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a dask graph was computed where the operation should stay lazy")


@contextmanager
def no_compute():
    """Context in which any dask computation fails the test."""
    with dask.config.set(scheduler=_raise_if_computed):
        yield


def assert_unchanged(before: xr.Dataset | xr.DataArray, after: xr.Dataset | xr.DataArray) -> None:
    """``after`` (the object passed to a function) equals the deep copy taken ``before``."""
    xr.testing.assert_identical(before, after)  # values, coordinates and every attrs dict
    variables = before.variables if isinstance(before, xr.Dataset) else before.coords
    for name in variables:
        assert repr(before[name].attrs) == repr(after[name].attrs), name
        assert before[name].dtype == after[name].dtype, name


class CountingArray(xr.backends.BackendArray):
    """A lazily indexed backend array that records how many elements each read returns."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[int] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._raw
        )

    def _raw(self, key: tuple) -> np.ndarray:
        out = self.data[key]
        self.reads.append(int(np.size(out)))
        return out


def counting_dataset(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, CountingArray]]:
    """Copy of ``ds`` whose data variables are lazily read through :class:`CountingArray`."""
    counters: dict[str, CountingArray] = {}
    data_vars = {}
    for name, var in ds.data_vars.items():
        counter = CountingArray(np.asarray(var.values))
        counters[str(name)] = counter
        data_vars[name] = xr.Variable(
            var.dims, indexing.LazilyIndexedArray(counter), attrs=dict(var.attrs)
        )
    out = xr.Dataset(data_vars, coords=ds.coords, attrs=dict(ds.attrs))
    return out, counters


def cf_bounds_file(path: Any, *, ny: int = 8, nx: int = 12, dlat: float = 2.5) -> xr.Dataset:
    """A CMIP-like netCDF file written then reopened plainly: ``lat_bnds`` / ``lon_bnds`` are
    data variables (named by the coordinates' ``bounds`` attributes), next to ``tas``."""
    lat = -10.0 + dlat * (np.arange(ny) + 0.5)
    lon = 100.0 + dlat * (np.arange(nx) + 0.5)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    tas = 280.0 + 0.5 * la - 0.25 * lo
    half = 0.5 * dlat
    ds = xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), np.stack([tas, tas + 1.0]), {"units": "K"}),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - half, lat + half], axis=1)),
            "lon_bnds": (("lon", "bnds"), np.stack([lon - half, lon + half], axis=1)),
        },
        coords={
            "time": ("time", [0.0, 1.0], {"units": "days since 2000-01-01"}),
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"}),
        },
    )
    ds.to_netcdf(path)
    return xr.load_dataset(path)  # open_dataset, read into memory, file closed
