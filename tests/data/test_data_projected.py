"""Projected grids (Lambert conformal, polar stereographic): 2-D latitude / longitude recomputed
with PROJ from the CF grid mapping on every new grid, checked first against the source's own.

The grids are synthetic (x / y in km on the projection), their 2-D lat/lon from PROJ itself as a
model file would carry them; the oracle is an independent PROJ transform of the new grid's x / y.
"""

from __future__ import annotations

import sys

import numpy as np
import pyproj
import pytest
import xarray as xr

from flexdownscale.data import coarsen_grid, degrade, refine_grid, up
from flexdownscale.errors import FlexDownscaleWarning

LAMBERT = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [50.0, 50.0],
    "longitude_of_central_meridian": -2.0,
    "latitude_of_projection_origin": 52.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "earth_radius": 6371229.0,
}
POLAR = {
    "grid_mapping_name": "polar_stereographic",
    "straight_vertical_longitude_from_pole": -45.0,
    "latitude_of_projection_origin": 90.0,
    "standard_parallel": 70.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
}


def proj_latlon(mapping: dict, y_m: np.ndarray, x_m: np.ndarray):
    crs = pyproj.CRS.from_cf(dict(mapping))
    to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    x2, y2 = np.meshgrid(x_m, y_m)
    lon, lat = to_geo.transform(x2, y2)
    return np.asarray(lat), np.asarray(lon)


def projected(mapping: dict, *, units: str = "km", step: float = 12.0, n: int = 16, x0=-96.0):
    scale = {"km": 1000.0, "m": 1.0}[units]
    x = x0 + step * np.arange(n)
    y = -60.0 + step * np.arange(n)
    lat, lon = proj_latlon(mapping, y * scale, x * scale)
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"tas": (("y", "x"), 280 + rng.normal(size=(n, n)), {"units": "K", "grid_mapping": "crs"})},
        coords={
            "x": ("x", x, {"units": units, "standard_name": "projection_x_coordinate"}),
            "y": ("y", y, {"units": units, "standard_name": "projection_y_coordinate"}),
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "crs": ((), np.int32(0), mapping),
        },
    )


@pytest.mark.parametrize(("mapping", "units"), [(LAMBERT, "km"), (POLAR, "m")])
def test_refined_and_coarsened_grids_get_proj_positions(mapping, units):
    step = 12.0 if units == "km" else 12000.0
    x0 = -96.0 if units == "km" else -96000.0
    ds = projected(mapping, units=units, step=step, x0=x0)
    scale = 1000.0 if units == "km" else 1.0
    for grid in (refine_grid(ds, 4), coarsen_grid(ds, 4), degrade(ds, 2)):
        lat, lon = proj_latlon(mapping, grid["y"].values * scale, grid["x"].values * scale)
        assert grid["lat"].dims == ("y", "x")
        np.testing.assert_allclose(grid["lat"].values, lat, rtol=0, atol=1e-9)
        np.testing.assert_allclose(grid["lon"].values, lon, rtol=0, atol=1e-9)
        assert grid["lat"].attrs["standard_name"] == "latitude"


def test_a_mapping_that_does_not_reproduce_the_file_is_not_trusted():
    ds = projected(LAMBERT)
    wrong = ds.assign_coords(
        crs=((), np.int32(0), {**LAMBERT, "longitude_of_central_meridian": 3.0})
    )
    with pytest.warns(
        FlexDownscaleWarning, match=r"up to [\d.]+ degrees from the file's own"
    ) as caught:
        grid = refine_grid(wrong, 2)
    assert caught[0].filename == __file__  # the user's line, not one inside the package
    with pytest.warns(FlexDownscaleWarning, match="file's own") as caught:
        up(wrong, 2)
    assert caught[0].filename == __file__
    assert "lat" not in grid.coords
    assert "lon" not in grid.coords


def test_without_pyproj_the_coordinates_are_left_out_with_the_fix(monkeypatch):
    ds = projected(LAMBERT)
    monkeypatch.setitem(sys.modules, "pyproj", None)  # import pyproj raises ImportError
    with pytest.warns(
        FlexDownscaleWarning, match=r"needs pyproj: pip install 'flexdownscale\[proj\]'"
    ):
        grid = refine_grid(ds, 2)
    assert "lat" not in grid.coords
