"""Shared builders for the metrics tests (random fields with NaNs, grids, a raising scheduler)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def raising_scheduler(*args, **kwargs):
    """A dask scheduler that fails the test if anything is computed."""
    raise AssertionError("dask computed something before .compute() was called")


def grid_field(
    shape: tuple[int, ...],
    dims: tuple[str, ...],
    *,
    seed: int = 0,
    nan_frac: float = 0.0,
    units: str | None = "K",
    offset: float = 0.0,
) -> xr.DataArray:
    """Random normal field with lat/lon-like coords for dims named lat/lon, NaNs sprinkled."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) + offset
    if nan_frac:
        values[rng.random(shape) < nan_frac] = np.nan
    coords = {}
    for d, n in zip(dims, shape):
        if d == "lat":
            coords[d] = xr.DataArray(
                np.linspace(30.0, 60.0, n), dims=d, attrs={"units": "degrees_north"}
            )
        elif d == "lon":
            coords[d] = xr.DataArray(
                np.linspace(-10.0, 20.0, n), dims=d, attrs={"units": "degrees_east"}
            )
        elif d == "time":
            coords[d] = np.arange(n)
    da = xr.DataArray(values, dims=dims, coords=coords)
    if units:
        da.attrs["units"] = units
    return da


def gaussian_random_field(n: int, slope: float, seed: int) -> np.ndarray:
    """Periodic n x n field whose isotropic (annulus-sum) spectrum goes as k**slope."""
    rng = np.random.default_rng(seed)
    kx = np.fft.fftfreq(n)
    ky = np.fft.rfftfreq(n)
    k = np.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)
    k[0, 0] = np.inf
    amplitude = k ** ((slope - 1.0) / 2.0)  # modal power k**(slope-1); annulus adds one power
    z = (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) * amplitude
    return np.fft.irfft2(z, s=(n, n))


def metric_grid(values: np.ndarray, step: float = 1000.0, units: str = "m") -> xr.DataArray:
    """(..., y, x) array on a projected grid with coordinates in ``units``."""
    ny, nx = values.shape[-2:]
    dims = (*tuple(f"s{i}" for i in range(values.ndim - 2)), "y", "x")
    da = xr.DataArray(
        values,
        dims=dims,
        coords={"y": np.arange(ny) * step, "x": np.arange(nx) * step},
        attrs={"units": "K"},
    )
    da["x"].attrs["units"] = units
    da["y"].attrs["units"] = units
    return da


def fitted_slope(spec: xr.DataArray, kmin: float, kmax: float) -> float:
    """Least-squares slope of log E against log k over [kmin, kmax]."""
    k = spec["wavenumber"].values
    keep = (k >= kmin) & (k <= kmax)
    return float(np.polyfit(np.log(k[keep]), np.log(spec.values[keep]), 1)[0])
