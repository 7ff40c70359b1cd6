"""Rotated-pole grids: geographic coordinates from the rotated pole, and 2-D latitude /
longitude recomputed on every new grid (refined, coarsened, degraded, upsampled).

The oracle is PROJ (pyproj's ``ob_tran`` from the file's CF grid mapping); the data are the real
EURO-CORDEX EUR-11 grid in ``../shared/data/grids`` (whose 2-D lat/lon were stripped; a CORDEX
file carries them, so the tests add them as PROJ gives them).
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import xarray as xr

from flexdownscale.data import coarsen_grid, degrade, refine_grid, regrid, up
from flexdownscale.data.grid import _geographic_to_rotated_pole, rotated_pole_to_geographic
from flexdownscale.errors import GridError

EUR11 = "grids/tas_rotated_grid_EUR11.nc"


def proj_latlon(grid_mapping: dict, rlat: np.ndarray, rlon: np.ndarray):
    """(lat, lon) of the 2-D grid (rlat, rlon) from PROJ."""
    crs = pyproj.CRS.from_cf(dict(grid_mapping))
    to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    r, lam = np.meshgrid(rlat, rlon, indexing="ij")
    lon, lat = to_geo.transform(lam, r)
    return lat, lon


def lon_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.fixture(scope="module")
def cordex(shared_data) -> xr.Dataset:
    """32 x 48 cells of the EUR-11 grid with the CF 2-D lat/lon a CORDEX file carries."""
    with xr.open_dataset(shared_data / EUR11) as ds:
        ds = ds.isel(height=0, rlat=slice(200, 232), rlon=slice(200, 248)).load()
    lat, lon = proj_latlon(ds.rotated_pole.attrs, ds.rlat.values, ds.rlon.values)
    ds = ds.assign_coords(
        lat=(("rlat", "rlon"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        lon=(("rlat", "rlon"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    )
    ds["tas"].attrs["coordinates"] = "lat lon"
    return ds


def test_rotated_pole_to_geographic_agrees_with_proj(shared_data):
    with xr.open_dataset(shared_data / EUR11) as ds:
        gm = dict(ds.rotated_pole.attrs)
        rlat, rlon = ds.rlat.values, ds.rlon.values
    r, lam = np.meshgrid(rlat, rlon, indexing="ij")
    for mapping in (gm, {**gm, "north_pole_grid_longitude": 30.0}):
        lat, lon = rotated_pole_to_geographic(r, lam, mapping)
        ref_lat, ref_lon = proj_latlon(mapping, rlat, rlon)
        assert lat.shape == r.shape
        assert np.abs(lat - ref_lat).max() < 1e-9
        assert lon_diff(lon, ref_lon).max() < 1e-9
    # closed forms: the rotated origin and the rotated north pole
    lat, lon = rotated_pole_to_geographic([0.0, 90.0], [0.0, 0.0], gm)
    np.testing.assert_allclose(lat, [90.0 - 39.25, 39.25], atol=1e-12)
    np.testing.assert_allclose(lon[0], -162.0 + 180.0, atol=1e-12)
    # a pole at the geographic north pole is the identity
    lat, lon = rotated_pole_to_geographic(
        [10.0, -45.0],
        [20.0, 170.0],
        {"grid_north_pole_latitude": 90.0, "grid_north_pole_longitude": -180.0},
    )
    np.testing.assert_allclose(lat, [10.0, -45.0], atol=1e-12)
    np.testing.assert_allclose(lon, [20.0, 170.0], atol=1e-12)
    with pytest.raises(GridError, match="grid_north_pole_latitude"):
        rotated_pole_to_geographic(0.0, 0.0, {"grid_mapping_name": "rotated_latitude_longitude"})


def test_geographic_to_rotated_pole_inverts_it_and_agrees_with_proj(shared_data):
    with xr.open_dataset(shared_data / EUR11) as ds:
        gm = dict(ds.rotated_pole.attrs)
        rlat, rlon = ds.rlat.values[::7], ds.rlon.values[::7]
    r, lam = np.meshgrid(rlat, rlon, indexing="ij")
    for mapping in (gm, {**gm, "north_pole_grid_longitude": 30.0}):
        lat, lon = proj_latlon(mapping, rlat, rlon)
        back_r, back_lam = _geographic_to_rotated_pole(lat, lon, mapping)
        assert np.abs(back_r - r).max() < 1e-9
        assert lon_diff(back_lam, lam).max() < 1e-9
        # and PROJ's inverse on points all over the globe
        crs = pyproj.CRS.from_cf(mapping)
        glat, glon = np.meshgrid(
            np.linspace(-85, 85, 18), np.linspace(-179, 179, 37), indexing="ij"
        )
        ref_lam, ref_r = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
            glon, glat
        )
        got_r, got_lam = _geographic_to_rotated_pole(glat, glon, mapping)
        assert np.abs(got_r - ref_r).max() < 1e-9
        assert lon_diff(got_lam, ref_lam).max() < 1e-9


def _check_latlon(obj: xr.Dataset | xr.DataArray, gm: dict, *, dtype=np.float64) -> None:
    ref_lat, ref_lon = proj_latlon(gm, obj.rlat.values, obj.rlon.values)
    assert obj["lat"].dims == ("rlat", "rlon")
    assert obj["lat"].dtype == dtype
    assert obj["lat"].attrs["standard_name"] == "latitude"
    tol = 1e-9 if dtype == np.float64 else 1e-4
    assert np.abs(obj["lat"].values - ref_lat).max() < tol
    lon = obj["lon"].transpose("rlat", "rlon").values
    assert lon_diff(lon, ref_lon).max() < tol


def test_new_grids_carry_recomputed_latlon(cordex):
    gm = dict(cordex.rotated_pole.attrs)
    before = cordex.copy(deep=True)
    for grid in (refine_grid(cordex, 4), coarsen_grid(cordex, 4)):
        _check_latlon(grid, gm)
    coarse = degrade(cordex, 4)
    assert coarse.sizes == {"rlat": 8, "rlon": 12, "time": 1, "bnds": 2}
    _check_latlon(coarse, gm)
    assert coarse["tas"].attrs["coordinates"] == "lat lon"  # still names them
    fine = up(coarse, 4, method="bilinear")
    _check_latlon(fine, gm)
    xr.testing.assert_identical(cordex, before)  # input untouched


def test_latlon_keep_dtype_convention_and_dims_order(cordex):
    gm = dict(cordex.rotated_pole.attrs)
    east = cordex.assign_coords(
        lat=cordex["lat"].astype(np.float32),
        lon=(cordex["lon"] % 360.0).astype(np.float32).transpose("rlon", "rlat"),
    )
    coarse = degrade(east, 2)
    _check_latlon(coarse, gm, dtype=np.float32)
    assert coarse["lon"].dims == ("rlon", "rlat")
    assert float(coarse["lon"].min()) >= 0.0  # 0..360 as given
    # a DataArray whose grid mapping is a coordinate keeps them as well
    da = east["tas"].assign_coords(rotated_pole=east["rotated_pole"])
    _check_latlon(degrade(da, 2), gm, dtype=np.float32)


def test_latlon_dropped_without_a_rotated_pole_mapping(cordex):
    """Without the grid mapping the positions cannot be recomputed: they are dropped, and the
    ``coordinates`` attribute no longer names them."""
    bare = cordex.drop_vars("rotated_pole")
    coarse = degrade(bare, 4)
    assert "lat" not in coarse.coords
    assert "coordinates" not in coarse["tas"].attrs


@pytest.mark.parametrize("method", ["linear", "conservative"])
def test_regrid_on_the_rotated_frame_carries_latlon(cordex, method):
    """``regrid`` of a rotated-pole source onto a grid of its frame: the output has the 2-D
    lat/lon of the target cells, and its ``coordinates`` attribute names only what exists."""
    gm = dict(cordex.rotated_pole.attrs)
    out = regrid(cordex, refine_grid(cordex, 2), method=method)
    _check_latlon(out, gm)
    assert out["tas"].attrs["coordinates"] == "lat lon"
    bare = regrid(cordex.drop_vars("rotated_pole"), refine_grid(cordex, 2), method=method)
    assert "lat" not in bare.coords
    assert "coordinates" not in bare["tas"].attrs  # it named lat/lon, which are gone


def _rotated(rows: list[float], values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("rlat", "rlon"),
        coords={
            "rlat": ("rlat", rows, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": ("rlon", [0.0, 1.0], {"standard_name": "grid_longitude", "units": "degrees"}),
        },
        name="t",
    )


def test_rows_up_to_the_rotated_pole_are_weighted_like_latitudes():
    """The rotated frame's latitude is a latitude: its cells end at +-90 and its rows weigh
    sin(upper) - sin(lower). They were weighed unclipped, so a row at rlat = 90 weighed 0
    (helper-189): left out of its coarse cell, or 'area weights of a block sum to zero'."""
    values = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    out = degrade(_rotated([87.0, 88.0, 89.0, 90.0], values), 2)
    top = (1 - np.sin(np.deg2rad(89.5))) / (np.sin(np.deg2rad(90)) - np.sin(np.deg2rad(88.5)))
    np.testing.assert_allclose(out.values[:, 0], [0.0, top], rtol=1e-12)
    bounds = degrade(_rotated([87.0, 88.0, 89.0, 90.0], values).to_dataset(), 2)["rlat_bnds"]
    assert float(bounds.max()) == 90.0  # cells clipped at the rotated pole
    one = degrade(_rotated([0.0, 45.0, 90.0], np.ones((3, 2))), 1)
    np.testing.assert_array_equal(one.values, np.ones((3, 2)))
    with pytest.raises(GridError, match=r"values 89\.5\.\.91\.5; expected values within"):
        degrade(_rotated([89.5, 90.5, 91.5], np.ones((3, 2))), 1)
