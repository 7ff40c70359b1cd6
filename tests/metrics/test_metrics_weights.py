"""Area weights on the real global (ERA-Interim) and regional (ERA5 UK) grids, and projections."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import GridError
from flexdownscale.metrics import area_weights, cell_edges, rmse
from flexdownscale.metrics._utils import EARTH_RADIUS


def test_global_grid_real(shared_data):
    ds = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc")
    w = area_weights(ds)
    assert w.dims == ("latitude",)
    assert float(w.mean()) == pytest.approx(1.0)
    lat = ds.latitude.values.astype(float)
    inner = slice(1, -1)
    cosw = np.cos(np.deg2rad(lat[inner]))
    np.testing.assert_allclose(w.values[inner] / w.values[120], cosw / cosw[119], rtol=1e-4)
    # pole cells are half height, not zero and not a full cell
    pole = 1 - np.sin(np.deg2rad(90 - 0.375))
    next_row = np.sin(np.deg2rad(90 - 0.375)) - np.sin(np.deg2rad(90 - 1.125))
    assert w.values[0] / w.values[1] == pytest.approx(pole / next_row, rel=1e-4)
    # physical areas add up to the sphere
    areas = area_weights(ds, normalize=None)
    assert areas.attrs["units"] == "m2"
    total = float(areas.sum()) * ds.sizes["longitude"]
    assert total == pytest.approx(4 * np.pi * EARTH_RADIUS**2, rel=1e-10)


def test_regional_grid_real_edges_not_inflated(shared_data):
    ds = xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")
    w = area_weights(ds)
    lat = ds.latitude.values.astype(float)  # 58 -> 50, descending
    ratio_first = w.values[0] / w.values[1]
    ratio_last = w.values[-1] / w.values[-2]
    expected_first = np.cos(np.deg2rad(lat[0])) / np.cos(np.deg2rad(lat[1]))
    expected_last = np.cos(np.deg2rad(lat[-1])) / np.cos(np.deg2rad(lat[-2]))
    assert ratio_first == pytest.approx(expected_first, rel=1e-4)
    assert ratio_last == pytest.approx(expected_last, rel=1e-4)
    # what the "edges at the poles" mistake would give for the first row: far off
    naive_edge = 1 - np.sin(np.deg2rad(0.5 * (lat[0] + lat[1])))
    honest_edge = np.sin(np.deg2rad(lat[0] + 0.125)) - np.sin(np.deg2rad(lat[0] - 0.125))
    assert naive_edge / honest_edge > 50
    # the physical area of the box
    areas = area_weights(ds, normalize=None)
    box = (
        EARTH_RADIUS**2
        * np.deg2rad(0.25 * ds.sizes["longitude"])
        * (np.sin(np.deg2rad(58.125)) - np.sin(np.deg2rad(49.875)))
    )
    assert float(areas.sum()) * ds.sizes["longitude"] == pytest.approx(box, rel=1e-10)
    # usable as metric weights straight away
    t = ds.t2m.isel(time=slice(0, 3))
    assert np.isfinite(float(rmse(t, t.shift(time=1), weights=w)))


def test_projected_grid_with_bounds_real(shared_data):
    ds = xr.open_dataset(shared_data / "radar" / "bom_mtstapylton_prcp10min_2020-10-31.nc")
    w = area_weights(ds)
    assert w.dims == ("y", "x")
    np.testing.assert_allclose(w.values, 1.0)
    areas = area_weights(ds, normalize=None)
    np.testing.assert_allclose(areas.values, 500.0 * 500.0)  # 0.5 km cells from the CF bounds
    mf = xr.DataArray(np.full((ds.sizes["y"], ds.sizes["x"]), 2.0), dims=("y", "x"))
    np.testing.assert_allclose(area_weights(ds, normalize=None, map_factor=mf).values, 62500.0)


def test_rotated_grid_real(shared_data):
    ds = xr.open_dataset(shared_data / "grids" / "tas_rotated_grid_EUR11.nc")
    w = area_weights(ds)
    assert w.dims == ("rlat",)
    rlat = ds.rlat.values
    i = int(np.argmin(np.abs(rlat)))
    assert w.values[i] == pytest.approx(
        w.values.max(), rel=1e-4
    )  # largest near the rotated equator


def test_cell_edges_and_bad_latitudes():
    np.testing.assert_allclose(
        cell_edges(np.array([50.0, 50.5, 51.0])), [49.75, 50.25, 50.75, 51.25]
    )
    np.testing.assert_allclose(
        cell_edges(np.array([90.0, 89.0, 88.0]), lower=-90, upper=90), [90.0, 89.5, 88.5, 87.5]
    )
    bad = xr.Dataset(
        coords={"lat": ("lat", [80.0, 95.0], {"units": "degrees_north"}), "lon": [0.0, 1.0]}
    )
    with pytest.raises(GridError, match="beyond"):
        area_weights(bad)
