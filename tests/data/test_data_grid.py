"""Grid discovery, validation, normalization, bounds, refinement and coarsening."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from data_helpers import assert_unchanged, latlon_da, no_compute, projected_da

from flexdownscale.data.grid import (
    GridAxes,
    GridSpec,
    add_bounds,
    cell_bounds,
    coarsen_grid,
    find_axes,
    grid_spec,
    normalize_grid,
    refine_coord,
    refine_grid,
    row_area_weights,
)
from flexdownscale.errors import ConfigError, GridError, UnsupportedFactorError

REAL = {
    "era5": ("era5/era5_t2m_uk_2019-03-01_24.nc", GridAxes("longitude", "latitude", "time")),
    "eraint": ("era_interim/eraint_uv_monthly.nc", GridAxes("longitude", "latitude", None)),
    "kolmogorov": ("kolmogorov/kf_re1000.nc", GridAxes("x", "y", "time")),
    "radar": ("radar/bom_mtstapylton_prcp10min_2020-10-31.nc", GridAxes("x", "y", "time")),
    "rotated": ("grids/tas_rotated_grid_EUR11.nc", GridAxes("rlon", "rlat", "time")),
}


def open_real(shared_data, key: str) -> xr.Dataset:
    return xr.open_dataset(shared_data / REAL[key][0])


@pytest.mark.parametrize("key", sorted(REAL))
def test_find_axes_on_real_files(shared_data, key):
    with open_real(shared_data, key) as ds:
        assert find_axes(ds) == REAL[key][1]


@pytest.mark.parametrize(
    ("key", "kind", "periodic", "spacing"),
    [
        ("era5", "latlon", (False, False), (0.25, 0.25)),
        ("eraint", "latlon", (True, False), (0.75, 0.75)),
        ("kolmogorov", "projected", (True, True), (2 * np.pi / 256, 2 * np.pi / 256)),
        ("radar", "projected", (False, False), (0.5, 0.5)),
        ("rotated", "rotated", (False, False), (0.11, 0.11)),
    ],
)
def test_grid_spec_on_real_files(shared_data, key, kind, periodic, spacing):
    with open_real(shared_data, key) as ds:
        spec = grid_spec(ds)
        assert spec.kind == kind
        assert (spec.periodic_x, spec.periodic_y) == periodic
        np.testing.assert_allclose((spec.dx, spec.dy), spacing, rtol=1e-5)
        xs = np.sort(ds[spec.x].values.astype(float))
        assert spec.x0 == pytest.approx(xs[0])
        if key == "rotated":
            assert spec.crs["grid_mapping_name"] == "rotated_latitude_longitude"
        if key == "radar":
            assert spec.crs["grid_mapping_name"] == "albers_conical_equal_area"
            assert spec.x_units == "km"
        # JSON round trip of what goes into grid.json
        assert GridSpec.from_json(spec.to_json()) == spec


def test_era5_descending_latitude_is_reversed_lazily(shared_data):
    with open_real(shared_data, "era5") as raw:
        ds = raw.isel(time=slice(0, 3)).chunk({"time": 1})
        before = ds.copy(deep=True)
        with no_compute():
            out = normalize_grid(ds)
        assert np.all(np.diff(out.latitude.values) > 0)
        assert "stored_direction" not in out.latitude.attrs
        assert out.latitude.attrs["standard_name"] == "latitude"
        # same values at the same labels
        xr.testing.assert_equal(
            out.t2m.sel(latitude=55.0, longitude=-3.0), ds.t2m.sel(latitude=55.0, longitude=-3.0)
        )
        np.testing.assert_array_equal(out.t2m.values, ds.t2m.values[:, ::-1, :])
        assert_unchanged(before, ds)
        assert ds.latitude.attrs["stored_direction"] == "decreasing"


def test_eraint_longitude_conventions(shared_data):
    with open_real(shared_data, "eraint") as ds:
        auto = normalize_grid(ds)
        np.testing.assert_array_equal(auto.longitude.values, ds.longitude.values)  # kept -180..180
        to360 = normalize_grid(ds, lon_convention="360")
        assert to360.longitude.values[0] == 0.0
        assert to360.longitude.values[-1] == 359.25
        # values follow their longitude: 190.5E == -169.5
        np.testing.assert_array_equal(
            to360.u.sel(longitude=190.5).values, auto.u.sel(longitude=-169.5).values
        )
        back = normalize_grid(to360, lon_convention="180")
        np.testing.assert_array_equal(back.u.values, auto.u.values)
        assert grid_spec(to360).periodic_x


def test_regional_grid_across_the_seam_stays_contiguous():
    lon = np.arange(170.0, 191.0)  # 170..190 in 0..360
    da = latlon_da(4, lon.size, lon0=170.0)
    wrapped = da.assign_coords(lon=("lon", np.where(lon > 180, lon - 360, lon), da.lon.attrs))
    out = normalize_grid(wrapped)  # auto: -180..180 would split the region
    np.testing.assert_array_equal(out.lon.values, lon)
    np.testing.assert_array_equal(out.values, da.values)
    with pytest.raises(GridError, match="crosses the seam"):
        normalize_grid(da, lon_convention="180")


def test_integer_coordinates_and_data_become_float():
    da = xr.DataArray(
        np.arange(12, dtype=np.int16).reshape(3, 4),
        dims=("y", "x"),
        coords={"y": ("y", np.arange(3), {"units": "m"}), "x": ("x", np.arange(4), {"units": "m"})},
        name="counts",
    )
    out = normalize_grid(da)
    assert out.dtype == np.float32
    assert out.y.dtype == np.float64
    assert out.x.dtype == np.float64
    np.testing.assert_array_equal(out.values, da.values)
    assert da.dtype == np.int16  # input untouched
    big = normalize_grid(da.astype(np.int64).to_dataset())
    assert big.counts.dtype == np.float64


def test_radar_bounds_follow_the_flipped_axis(shared_data):
    with open_real(shared_data, "radar") as ds:
        out = normalize_grid(ds.isel(time=0))
        assert np.all(np.diff(out.y.values) > 0)
        b = out.y_bounds.values
        assert np.all(b[:, 0] < b[:, 1])
        np.testing.assert_allclose(b.mean(axis=1), out.y.values)
        np.testing.assert_array_equal(b[1:, 0], b[:-1, 1])


def test_inconsistent_bounds_are_rejected():
    da = projected_da(4, 4).to_dataset()
    bad = np.stack([da.x.values, da.x.values + 0.5], axis=1)  # not centred
    da = da.assign_coords(x_bnds=(("x", "nv"), bad))
    da.x.attrs["bounds"] = "x_bnds"
    with pytest.raises(GridError, match="disagrees"):
        grid_spec(da)


def test_cell_bounds_and_row_weights_cover_the_sphere():
    lat = np.arange(-90.0, 90.1, 0.75)
    b = cell_bounds(lat, latitude=True)
    assert b[0, 0] == -90.0
    assert b[-1, 1] == 90.0
    np.testing.assert_array_equal(b[1:, 0], b[:-1, 1])
    assert row_area_weights(b).sum() == pytest.approx(2.0, abs=1e-14)


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 8])
def test_refined_cells_exactly_partition_the_coarse_cells(factor):
    coarse = np.linspace(-31.3, 17.9, 23)
    fine_c, fine_b = refine_coord(coarse, factor)
    cb = cell_bounds(coarse)
    # exact union, exact contiguity
    np.testing.assert_array_equal(fine_b[::factor, 0], cb[:, 0])
    np.testing.assert_array_equal(fine_b[factor - 1 :: factor, 1], cb[:, 1])
    np.testing.assert_array_equal(fine_b[1:, 0], fine_b[:-1, 1])
    np.testing.assert_allclose(np.diff(fine_c), np.diff(coarse)[0] / factor, rtol=1e-12)
    np.testing.assert_allclose(fine_c.reshape(-1, factor).mean(axis=1), coarse, atol=1e-12)


@pytest.mark.parametrize("key", ["era5", "radar", "kolmogorov"])
def test_refine_and_coarsen_real_grids(shared_data, key):
    with open_real(shared_data, key) as ds:
        spec = grid_spec(ds)
        fine = refine_grid(ds, 4)
        for name, which in ((spec.x, "X"), (spec.y, "Y")):
            attrs = fine[name].attrs
            assert attrs["axis"] == which
            assert attrs["bounds"] == f"{name}_bnds"
            assert attrs["units"] == ds[name].attrs["units"]
            coarse_b = add_bounds(ds)[f"{name}_bnds"].values
            fine_b = fine[f"{name}_bnds"].values
            np.testing.assert_array_equal(fine_b[::4, 0], coarse_b[:, 0])
            np.testing.assert_array_equal(fine_b[3::4, 1], coarse_b[:, 1])
        if spec.kind == "latlon":
            assert fine[spec.y].attrs["standard_name"] == "latitude"
        assert_spec_close(spec, GridSpec.from_dict(spec.refine(4).to_dict()).coarsen(4))
        # coarse grid of a fine one: bounds are the union of the blocks' fine bounds
        trimmed = ds.isel({spec.y: slice(0, spec.ny // 4 * 4), spec.x: slice(0, spec.nx // 4 * 4)})
        cg = coarsen_grid(trimmed, 4)
        fb = add_bounds(trimmed)
        for name in (spec.x, spec.y):
            np.testing.assert_array_equal(
                cg[f"{name}_bnds"].values[:, 0], fb[f"{name}_bnds"].values[::4, 0]
            )
            np.testing.assert_array_equal(
                cg[f"{name}_bnds"].values[:, 1], fb[f"{name}_bnds"].values[3::4, 1]
            )
        # refining the coarse grid gives back the fine centres
        back = refine_grid(cg, 4)
        np.testing.assert_array_equal(back[spec.y].values, fb[spec.y].values)
        np.testing.assert_array_equal(back[spec.x].values, fb[spec.x].values)


def assert_spec_close(a: GridSpec, b: GridSpec) -> None:
    da, db = a.to_dict(), b.to_dict()
    for key, value in da.items():
        if isinstance(value, float):
            assert db[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        else:
            assert db[key] == value, key


def test_colatitudes_are_refused_with_the_conversion_that_works():
    colat = xr.DataArray(
        np.arange(181.0 * 4).reshape(181, 4),
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", np.arange(181.0), {"units": "degrees_north"}),
            "lon": ("lon", np.arange(4.0), {"units": "degrees_east"}),
        },
    )
    with pytest.raises(GridError, match=r"0\.\.180; expected values within \[-90, 90\]") as info:
        normalize_grid(colat)
    line = str(info.value).split("convert them: ")[1].split(";")[0]
    scope = {"ds": colat}
    exec(line, {}, scope)
    out = normalize_grid(scope["ds"])
    np.testing.assert_array_equal(out["lat"].values, np.arange(-90.0, 91.0))
    np.testing.assert_array_equal(out.values[-1], colat.values[0])  # colatitude 0 is 90 N


def test_global_grid_with_polar_points_cannot_be_refined(shared_data):
    with open_real(shared_data, "eraint") as ds:
        # the hint names the file's latitude dim (it said lat=, which fails on this file)
        with pytest.raises(GridError, match=r"beyond the poles.*ds\.isel\(latitude=slice"):
            refine_grid(ds, 2)
        inner = refine_grid(ds.isel(latitude=slice(1, -1)), 2)
        assert inner.latitude.values.max() < 90
        assert inner.latitude.values.min() > -90
        # the coarse grid of the full global grid keeps clipped polar bounds
        cg = coarsen_grid(ds, 4, boundary="trim")
        assert cg.latitude_bnds.values[0, 0] == -90.0


def test_gridspec_coarsen_refine_and_errors():
    spec = GridSpec(x="lon", y="lat", kind="latlon", nx=8, ny=6, x0=0.5, y0=-2.5, dx=1, dy=1)
    coarse = spec.coarsen(2)
    assert (coarse.nx, coarse.ny, coarse.x0, coarse.dx) == (4, 3, 1.0, 2.0)
    assert coarse.refine(2) == spec
    assert spec.extent == (0.0, 8.0, -3.0, 3.0)
    with pytest.raises(UnsupportedFactorError):
        spec.coarsen(4)
    assert spec.coarsen(4, boundary="trim").nx == 2
    with pytest.raises(UnsupportedFactorError):
        spec.coarsen(0)
    with pytest.raises(ConfigError):
        GridSpec(x="a", y="b", kind="polar", nx=1, ny=1, x0=0, y0=0, dx=1, dy=1)
    with pytest.raises(GridError, match="unknown keys"):
        GridSpec.from_dict({**spec.to_dict(), "colour": "blue"})
    with pytest.raises(GridError, match="format_version"):
        GridSpec.from_dict({**spec.to_dict(), "format_version": 99})
    json.loads(spec.to_json())


def test_dims_override_and_ambiguity():
    da = xr.DataArray(
        np.zeros((3, 4)),
        dims=("a", "b"),
        coords={
            "a": ("a", [0.0, 1, 2], {"units": "m"}),
            "b": ("b", [0.0, 1, 2, 3], {"units": "m"}),
        },
    )
    with pytest.raises(GridError, match="could not find"):
        find_axes(da)
    assert find_axes(da, dims={"x": "b", "y": "a"}) == GridAxes("b", "a", None)
    assert grid_spec(da, dims={"x": "b", "y": "a"}).nx == 4
    with pytest.raises(GridError, match="unknown keys"):
        find_axes(da, dims={"lon": "b"})
    with pytest.raises(GridError, match="not in the data"):
        find_axes(da, dims={"x": "lon", "y": "a"})
    two = xr.DataArray(np.zeros((2, 2, 2)), dims=("lat", "y", "lon"))
    with pytest.raises(GridError, match="several candidate"):
        find_axes(two)


def test_rotated_pole_grid_is_handled_as_1d_axes(shared_data):
    with open_real(shared_data, "rotated") as ds:
        fine = refine_grid(ds, 2)
        assert fine.rlat.attrs["standard_name"] == "grid_latitude"
        assert fine.rlat.size == 2 * ds.rlat.size
        from flexdownscale.data.degrade import degrade

        coarse = degrade(ds.tas.isel(rlat=slice(0, 412), rlon=slice(0, 424)), 4)
        assert coarse.shape == (1, 1, 103, 106)


def test_degrade_then_refine_gives_back_the_kolmogorov_centres_exactly(shared_data):
    from flexdownscale.data.degrade import degrade

    dims = {"x": "x", "y": "y", "time": "time"}  # the documented form, with a time key
    with xr.open_dataset(shared_data / "kolmogorov/kf_re4000.nc") as ds:
        fine = ds.vorticity.isel(trajectory=0, time=slice(0, 2))
        assert fine.x.values[0] == 0.0
        assert fine.y.values[0] == 0.0
        coarse = degrade(fine, 8, dims=dims)
        grid = coarsen_grid(fine, 8, dims=dims)
        np.testing.assert_array_equal(grid.x.values, coarse.x.values)
        back = refine_grid(coarse, 8, dims=dims)
        np.testing.assert_array_equal(back.x.values, fine.x.values)
        np.testing.assert_array_equal(back.y.values, fine.y.values)
        assert back.x.values[0] == 0.0  # not 2.4e-17


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_refine_coord_gives_regular_decimal_centres_exactly(factor):
    fine = -10.0 + 0.25 * np.arange(24 * factor)  # ERA5-like 0.25 degree axis from -10.0
    coarse = fine.reshape(-1, factor).mean(axis=1)
    centres, bounds = refine_coord(coarse, factor)
    np.testing.assert_array_equal(centres, fine)
    assert bounds[0, 0] == -10.125
    # a coarse axis given directly (not block means) refines to the decimal grid as well
    centres, _ = refine_coord(np.arange(0.5, 10.0, 1.0), 2)
    np.testing.assert_array_equal(centres, 0.25 + 0.5 * np.arange(20))


def test_normalize_grid_returns_a_new_object_even_when_nothing_changes():
    da = latlon_da(4, 6)
    out = normalize_grid(da)
    assert out is not da
    xr.testing.assert_identical(out, da)
    out.attrs["units"] = "degC"
    out.lat.attrs["note"] = "changed"
    assert da.attrs["units"] == "K"
    assert "note" not in da.lat.attrs
    ds = da.to_dataset()
    out = normalize_grid(ds)
    assert out is not ds
    out.attrs["title"] = "changed"
    assert ds.attrs == {}


def test_normalize_grid_keeps_float32_coordinates_when_it_reorders():
    lat = np.float32([43.0, 42.0, 41.0, 40.0])  # descending, as ERA5
    lon = np.float32([0, 5, 10, 15, 340, 345, 350, 355])  # a region across Greenwich, 0..360
    values = np.arange(32.0).reshape(4, 8)
    da = xr.DataArray(
        values,
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    out = normalize_grid(da)
    assert out.lat.dtype == np.float32
    assert out.lon.dtype == np.float32
    np.testing.assert_array_equal(out.lat.values, np.float32([40.0, 41.0, 42.0, 43.0]))
    np.testing.assert_array_equal(out.lon.values, np.float32([-20, -15, -10, -5, 0, 5, 10, 15]))
    np.testing.assert_array_equal(out.values, values[::-1][:, [4, 5, 6, 7, 0, 1, 2, 3]])
    assert da.lat.values[0] == 43.0  # the input is untouched


def test_cyclic_longitude_point_gets_a_specific_message():
    da = latlon_da(5, 145, lat0=-10.0, dlat=5.0, lon0=0.0, dlon=2.5)  # 0..360 inclusive
    assert da.lon.values[-1] == 360.0
    with pytest.raises(GridError, match="cyclic point") as info:
        grid_spec(da)
    message = str(info.value)
    assert "last value 360 repeats the first one, 0, 360 degrees later" in message
    assert "ds.isel(lon=slice(None, -1))" in message
    # drop_duplicates does not help (the values differ); the suggested fix does
    assert da.drop_duplicates("lon").sizes["lon"] == 145
    spec = grid_spec(da.isel(lon=slice(None, -1)))
    assert (spec.nx, spec.periodic_x) == (144, True)
    # two longitudes 360 apart elsewhere are named too
    other = da.isel(lon=slice(0, 4)).assign_coords(lon=[-10.0, 0.0, 350.0, 20.0])
    with pytest.raises(GridError, match=r"\[-10.0, 350.0\] that are the same place"):
        grid_spec(other)


@pytest.mark.parametrize(
    ("north", "east"),
    [
        ("degrees_north", "degrees_east"),
        ("degree_N", "degree_E"),
        ("degreesN", "degreesE"),
        ("degN", "degE"),
        ("\u00b0N", "\u00b0E"),
        ("degrees north", "degrees east"),
        ("Degrees_North", "DEGREES_EAST"),
    ],
)
def test_latitude_longitude_found_from_units_in_any_spelling(north, east):
    # axes named neither lat/lon nor y/x, no standard_name: only their units say what they are
    values = np.arange(12.0).reshape(3, 4)
    da = xr.DataArray(
        values,
        dims=("row", "col"),
        coords={
            "row": ("row", [50.0, 51.0, 52.0], {"units": north}),
            "col": ("col", [0.0, 1.0, 2.0, 3.0], {"units": east}),
        },
    )
    assert find_axes(da) == GridAxes("col", "row", None)
    spec = grid_spec(da)
    assert spec.kind == "latlon"
    assert (spec.dx, spec.dy) == (1.0, 1.0)
    assert refine_grid(da, 2).sizes == {"row": 6, "col": 8, "bnds": 2}


def test_degrees_south_or_west_is_refused_with_the_fix():
    from flexdownscale.errors import UnitsError

    da = latlon_da(4, 4)
    south = da.assign_coords(lat=da["lat"].assign_attrs(units="degrees_south"))
    with pytest.raises(UnitsError, match=r"'degrees_south', which count the other way; negate"):
        grid_spec(south)
    west = da.assign_coords(lon=da["lon"].assign_attrs(units="\u00b0W"))
    with pytest.raises(UnitsError, match=r"label it degrees_east"):
        grid_spec(west)
    with pytest.raises(UnitsError, match=r"has units 'radians'; expected degrees"):
        grid_spec(da.assign_coords(lat=da["lat"].assign_attrs(units="radians")))


def test_new_grids_keep_float32_coordinates_and_degrade_up_round_trips_them(shared_data):
    # netCDF files often store latitude / longitude as float32 (ERA5 through some tools, CMIP):
    # coarsened, refined and bounded grids came back float64, so `up(degrade(ds))` no longer had
    # the input's coordinates (float32 values widened, then off by round-off from a re-read)
    from flexdownscale.data import degrade, up

    ds = xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")
    ds = ds.isel(time=slice(0, 1), latitude=slice(0, 32), longitude=slice(0, 48)).load()
    f32 = ds.assign_coords(
        latitude=ds.latitude.astype(np.float32), longitude=ds.longitude.astype(np.float32)
    )
    coarse = degrade(f32, 4)
    for grid in (coarse, add_bounds(f32), coarsen_grid(f32, 4), refine_grid(coarse, 4)):
        for name in ("latitude", "longitude", "latitude_bnds", "longitude_bnds"):
            assert grid[name].dtype == np.float32, name
    fine = up(coarse, 4)
    np.testing.assert_array_equal(fine.longitude.values, f32.longitude.values)
    np.testing.assert_array_equal(fine.latitude.values, np.sort(f32.latitude.values))
    # float64 and integer axes: float64 as before
    assert degrade(ds, 4).latitude.dtype == np.float64
    ints = latlon_da(8, 8).assign_coords(lat=np.arange(8), lon=np.arange(8))
    assert add_bounds(ints).lat.dtype == np.float64
