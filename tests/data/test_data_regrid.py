"""Regridding: xarray-regrid backend, the xesmf adapter (with a fake module) and missing backends.

ESMPy (needed by xesmf) is only on conda-forge and cannot be installed here, so the xesmf adapter
is tested against a fake ``xesmf`` module injected in ``sys.modules`` that records the arguments.
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import dask.array
import numpy as np
import pytest
import xarray as xr
from data_helpers import cf_bounds_file, latlon_da, no_compute, projected_da

from flexdownscale.data.degrade import degrade
from flexdownscale.data.grid import cell_bounds, coarsen_grid, grid_spec, refine_grid
from flexdownscale.data.regrid import Regridder, regrid
from flexdownscale.errors import BackendNotAvailableError, ConfigError, GridError


def curvilinear_ds() -> xr.Dataset:
    y, x = np.meshgrid(np.arange(6.0), np.arange(8.0), indexing="ij")
    lat = 40 + 0.5 * y + 0.1 * x
    lon = -10 + 0.5 * x - 0.1 * y
    return xr.Dataset(
        {"tas": (("y", "x"), np.ones((6, 8)))},
        coords={
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )


def test_conservative_regrid_agrees_with_area_mean_degradation(shared_data):
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as ds:
        fine = ds.t2m.isel(time=slice(0, 2), latitude=slice(1, 33), longitude=slice(0, 48))
        fine = fine.astype(np.float64)
        target = coarsen_grid(fine, 4)
        out = regrid(fine, target, method="conservative")
        ours = degrade(fine, 4)
        assert out.dims == fine.dims
        np.testing.assert_allclose(out.latitude.values, ours.latitude.values)
        # both weight by the exact cell areas on the sphere
        np.testing.assert_allclose(out.values, ours.values, rtol=1e-12)


def test_linear_regrid_is_exact_on_a_linear_field_and_lazy():
    def plane(lat, lon):
        return 2.0 * lat - 0.5 * lon + 3.0

    src = latlon_da(20, 30, lat0=-10, dlat=1.0, lon0=5, dlon=1.0, func=plane, ntime=3)
    target = latlon_da(12, 20, lat0=-8.25, dlat=1.5, lon0=6.5, dlon=1.25)
    chunked = src.chunk({"time": 1})
    with no_compute():
        out = regrid(chunked, target, method="linear")
    assert out.chunks is not None
    la, lo = np.meshgrid(target.lat.values, target.lon.values, indexing="ij")
    np.testing.assert_allclose(out.isel(time=0).values, plane(la, lo), atol=1e-10)
    assert out.lat.attrs["units"] == "degrees_north"
    # a GridSpec works as a target too, and a Regridder is reusable
    spec = grid_spec(target)
    again = Regridder(src, spec, method="linear")
    np.testing.assert_allclose(again(src).values, out.values, atol=1e-10)
    np.testing.assert_allclose(again(src * 2).values, 2 * out.values, atol=1e-10)


def test_regrid_handles_descending_sources_and_target_names(shared_data):
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as ds:
        src = ds.t2m.isel(time=0)
        target = xr.Dataset(
            coords={
                "lat": ("lat", np.arange(51.0, 57.0, 0.5), {"units": "degrees_north"}),
                "lon": ("lon", np.arange(-8.0, 1.0, 0.5), {"units": "degrees_east"}),
            }
        )
        out = regrid(src, target, method="nearest")
        assert out.dims == ("latitude", "longitude")
        np.testing.assert_array_equal(out.latitude.values, target.lat.values)
        np.testing.assert_array_equal(
            out.sel(latitude=52.0, longitude=-3.0).values,
            src.sel(latitude=52.0, longitude=-3.0).values,
        )


def test_output_keeps_the_targets_own_labels_and_order(shared_data):
    """A descending target, or one in 0..360 across the prime meridian, comes back on its own
    labels in its own order (it came back normalized: ascending, relabelled -180..180)."""
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as ds:
        src = ds.t2m.isel(time=0).load()
    # ERA5's own grid (descending latitude), every other cell: the values at the target's cells
    target = src.isel(latitude=slice(None, None, 2), longitude=slice(None, None, 2))
    out = regrid(src, target, method="linear")
    np.testing.assert_array_equal(out.latitude.values, target.latitude.values)
    np.testing.assert_allclose(out.values, target.values, rtol=0, atol=1e-4)
    lon360 = np.r_[np.arange(350.5, 360.0, 1.0), 0.5, 1.5]
    wrapped = xr.Dataset(
        coords={
            "lat": ("lat", np.arange(50.5, 58.0, 1.0), {"units": "degrees_north"}),
            "lon": ("lon", lon360, {"units": "degrees_east"}),
        }
    )
    out = regrid(src, wrapped, method="nearest")
    np.testing.assert_array_equal(out.longitude.values, lon360)
    np.testing.assert_array_equal(
        out.sel(latitude=52.5, longitude=355.5).values,
        src.sel(latitude=52.5, longitude=-4.5, method="nearest").values,
    )


def test_missing_xesmf_is_a_clear_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "xesmf", None)  # import fails
    target = latlon_da(4, 4, lat0=40, lon0=-10)
    with pytest.raises(BackendNotAvailableError, match=r"flexdownscale\[esmf\].*esmpy"):
        regrid(curvilinear_ds(), target)  # auto picks xesmf for curvilinear grids
    with pytest.raises(BackendNotAvailableError, match="conda-forge"):
        regrid(latlon_da(), target, backend="xesmf")
    with pytest.raises(GridError, match="curvilinear"):
        regrid(curvilinear_ds(), target, backend="xarray-regrid")
    with pytest.raises(ImportError):  # still an ImportError for generic handlers
        regrid(curvilinear_ds(), target)


def test_cubic_with_xesmf_says_so_before_the_missing_import(monkeypatch):
    """xesmf has no cubic: without xesmf installed the error is that (a ConfigError naming
    xarray-regrid), not "install xesmf", which would not help (the package before)."""
    monkeypatch.setitem(sys.modules, "xesmf", None)
    target = latlon_da(4, 4, lat0=40, lon0=-10)
    with pytest.raises(ConfigError, match=r"xesmf has no 'cubic'.*backend='xarray-regrid'"):
        regrid(latlon_da(), target, method="cubic", backend="xesmf")


class FakeRegridder:
    calls: ClassVar[list[dict]] = []

    def __init__(self, ds_in, ds_out, method, **kwargs):
        FakeRegridder.calls.append({"ds_in": ds_in, "ds_out": ds_out, "method": method, **kwargs})
        self.ds_out = ds_out

    def __call__(self, obj, keep_attrs=False):
        # crop onto the output's sizes, enough to check the plumbing (renames, coordinates)
        FakeRegridder.calls[-1]["obj"] = obj
        ydim, xdim = obj["lat"].dims if obj["lat"].ndim == 2 else ("lat", "lon")
        out = obj.isel(
            {ydim: slice(0, self.ds_out.sizes["lat"]), xdim: slice(0, self.ds_out.sizes["lon"])}
        )
        out = out.drop_vars([c for c in out.coords if c not in out.dims])
        if (ydim, xdim) != ("lat", "lon"):
            out = out.rename({ydim: "lat", xdim: "lon"})
        return out.assign_coords(lat=self.ds_out.lat, lon=self.ds_out.lon)


@pytest.fixture
def fake_xesmf(monkeypatch):
    module = types.ModuleType("xesmf")
    module.Regridder = FakeRegridder
    FakeRegridder.calls = []
    monkeypatch.setitem(sys.modules, "xesmf", module)
    return FakeRegridder


@pytest.mark.parametrize(
    ("method", "esmf_method"),
    [("linear", "bilinear"), ("nearest", "nearest_s2d"), ("conservative", "conservative")],
)
def test_xesmf_adapter_maps_arguments(fake_xesmf, method, esmf_method):
    src = latlon_da(36, 72, lat0=-87.5, dlat=5.0, lon0=0.0, dlon=5.0, descending=True)  # global
    target = latlon_da(6, 8, lat0=-50, dlat=20, lon0=0, dlon=45)
    out = regrid(src, target, method=method, backend="xesmf")
    call = fake_xesmf.calls[0]
    assert call["method"] == esmf_method
    assert call["periodic"] is True
    assert call["unmapped_to_nan"] is True
    ds_in = call["ds_in"]
    assert np.all(np.diff(ds_in.lat.values) > 0)  # normalized: ascending
    if method == "conservative":
        assert ds_in.lat_b.size == 37
        assert ds_in.lon_b.size == 73
        assert ds_in.lat_b.values[0] == -90.0
        assert call["ds_out"].lat_b.size == 7
    else:
        assert "lat_b" not in ds_in.coords
    assert set(call["obj"].dims) == {"lat", "lon"}
    assert out.dims == ("lat", "lon")
    np.testing.assert_array_equal(out.lat.values, target.lat.values)


def test_xesmf_adapter_curvilinear_and_refusals(fake_xesmf):
    target = latlon_da(4, 5, lat0=40, lon0=-10)
    out = regrid(curvilinear_ds(), target)  # auto -> xesmf (the fake)
    call = fake_xesmf.calls[0]
    assert call["ds_in"].lat.dims == ("y", "x")
    assert call["periodic"] is False
    assert out.tas.dims == ("lat", "lon")
    with pytest.raises(GridError, match="corners"):
        regrid(curvilinear_ds(), target, method="conservative")
    with pytest.raises(ConfigError, match="cubic"):
        regrid(latlon_da(), target, method="cubic", backend="xesmf")
    with pytest.raises(GridError, match="geographic"):
        regrid(projected_da(), target, backend="xesmf")


def test_option_errors():
    with pytest.raises(ConfigError):
        regrid(latlon_da(), latlon_da(), method="bilinear")
    with pytest.raises(ConfigError):
        regrid(latlon_da(), latlon_da(), backend="esmf")


def wrapped_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes in the -180..180 convention."""
    return (np.asarray(lon) + 180.0) % 360.0 - 180.0


def longitude_field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return lon + 0.0 * lat


@pytest.mark.parametrize("method", ["linear", "nearest", "conservative"])
def test_regional_source_on_a_global_target_of_the_other_convention(method):
    # UK-like source at -19.5..19.5 (extent -20..20); global target 0.5..359.5, same cells
    src = latlon_da(10, 40, lat0=40.5, lon0=-19.5, func=longitude_field)
    target = latlon_da(10, 360, lat0=40.5, lon0=0.5)
    out = regrid(src, target, method=method)
    assert out.dims == ("lat", "lon")
    np.testing.assert_array_equal(out.lon.values, target.lon.values)
    lon = wrapped_lon(target.lon.values)
    covered = np.abs(lon) < 20.0  # 0.5..19.5 and 340.5..359.5 (two runs in the target frame)
    assert covered.sum() == 40
    values = out.values
    # covered cells coincide with source cells: the value is the source's (its longitude)
    np.testing.assert_allclose(values[:, covered], np.broadcast_to(lon[covered], (10, 40)))
    # everything else (e.g. 25.5E, Siberia at 100E, 339.5E) is NaN, not copied from the source
    assert np.isnan(values[:, ~covered]).all()


def test_regional_source_interpolates_across_the_target_seam_and_stays_lazy():
    src = latlon_da(10, 40, lat0=40.5, lon0=-19.5, func=longitude_field, ntime=2)
    target = latlon_da(10, 360, lat0=41.0, lon0=0.0)  # integer longitudes 0..359
    with no_compute():
        out = regrid(src.chunk({"time": 1}), target, method="linear")
    assert out.chunks is not None
    values = out.isel(time=0).values
    lon = wrapped_lon(target.lon.values)
    inside = np.abs(lon) <= 19.0  # between source centres: 0 lies between -0.5 and 0.5
    np.testing.assert_allclose(values[:-1, inside], np.broadcast_to(lon[inside], (9, 39)))
    assert np.isnan(values[:, np.abs(lon) > 20.0]).all()
    assert np.isnan(values[-1]).all()  # 50.0N lies beyond the last source centre 49.5N


def test_target_disjoint_from_a_regional_source_is_all_nan():
    src = latlon_da(6, 10, lat0=40.5, lon0=-9.5)
    target = latlon_da(6, 10, lat0=40.5, lon0=180.5)
    for method in ("linear", "conservative"):
        out = regrid(src, target, method=method)
        assert out.shape == (6, 10)
        assert np.isnan(out.values).all()


@pytest.mark.parametrize("method", ["linear", "cubic", "nearest", "conservative"])
def test_float32_data_stay_float32(method):
    src = latlon_da(20, 30, lat0=-10, lon0=5, dtype=np.float32)
    target = latlon_da(8, 12, lat0=-6.25, dlat=1.5, lon0=7.5, dlon=1.5)
    out = regrid(src, target, method=method)
    assert out.dtype == np.float32
    ref = regrid(src.astype(np.float64), target, method=method)
    np.testing.assert_allclose(out.values, ref.values.astype(np.float32), rtol=1e-6, atol=1e-7)
    ds_out = regrid(src.to_dataset(), target, method=method)
    assert ds_out.t2m.dtype == np.float32


@pytest.mark.parametrize("method", ["linear", "cubic", "nearest", "conservative"])
def test_boolean_masks_are_regridded_as_zero_one_numbers(method):
    """A land-sea style mask regrids like its 0 / 1 float64 twin with every method (the
    interpolating ones raised numpy's TypeError), alone or beside other variables."""
    src = latlon_da(20, 30, lat0=-10, lon0=5)
    mask = src > float(src.median())
    target = latlon_da(8, 12, lat0=-6.25, dlat=1.5, lon0=7.5, dlon=1.5)
    out = regrid(mask, target, method=method)
    assert out.dtype == np.float64
    ref = regrid(mask.astype(np.float64), target, method=method)
    np.testing.assert_array_equal(out.values, ref.values)
    if method == "nearest":
        assert set(np.unique(out.values)) == {0.0, 1.0}
    both = regrid(src.to_dataset().assign(mask=mask), target, method=method)
    np.testing.assert_array_equal(both["mask"].values, ref.values)
    assert both["t2m"].dtype == src.dtype


@pytest.mark.parametrize("method", ["linear", "nearest", "conservative"])
def test_cf_bounds_data_variables_are_dropped(tmp_path, method):
    ds = cf_bounds_file(tmp_path / "cmip_like.nc")
    assert {"lat_bnds", "lon_bnds"} <= set(ds.data_vars)
    target = coarsen_grid(ds, 2)
    out = regrid(ds, target, method=method)
    assert list(out.data_vars) == ["tas"]
    assert out.tas.dims == ("time", "lat", "lon")
    ref = regrid(ds.drop_vars(["lat_bnds", "lon_bnds"]), target, method=method)
    xr.testing.assert_identical(out, ref)
    # a target cut from such a file (bounds no longer matching its centres) is fine too
    sub = ds.isel(lat=slice(1, None, 2), lon=slice(1, None, 2))
    out = regrid(ds, sub, method="linear")
    np.testing.assert_allclose(out.tas.values, sub.tas.values)


def cell_index(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A field constant per 1-degree cell: 100 * row + column of the cell (any lat0 / lon0)."""
    return 100.0 * (lat - lat.min()) + (lon - lon.min())


@pytest.mark.parametrize("method", ["nearest", "conservative"])
@pytest.mark.parametrize("grid", ["regional", "descending", "projected"])
def test_refined_grid_takes_each_source_cell_value_up_to_the_edges(method, grid):
    if grid == "projected":
        src = projected_da(6, 8, dx=1.0, ntime=2).astype(np.float32)
    else:
        src = latlon_da(
            10,
            12,
            lat0=40.5,
            lon0=-9.5,
            func=cell_index,
            descending=grid == "descending",
            ntime=2,
            dtype=np.float32,
        )
    target = refine_grid(src, 2)
    with no_compute():
        out = regrid(src.chunk({"time": 1}), target, method=method)
    assert out.chunks is not None
    assert out.dtype == np.float32
    y, x = out.dims[1:]
    # each fine cell lies inside one source cell, the outer ring included: it takes its value
    expected = src.sel({y: out[y].values, x: out[x].values}, method="nearest").values
    assert not np.isnan(out.values).any()
    np.testing.assert_array_equal(out.values, expected)


@pytest.mark.parametrize("skipna", [False, True])
def test_conservative_target_cells_on_the_source_edge_average_their_covered_part(skipna):
    # source cells of 1 degree over 40..50N, 10W..2E; target cells of 2 degrees centred on the
    # even degrees, so the outer ones (centred on the edges) are half covered
    src = latlon_da(10, 12, lat0=40.5, lon0=-9.5, func=cell_index)
    target = latlon_da(6, 7, lat0=40.0, dlat=2.0, lon0=-10.0, dlon=2.0)
    out = regrid(src, target, method="conservative", skipna=skipna).values
    # columns: the corner cells cover one source column, the others two of equal widths
    columns = np.array([0.0, 1.5, 3.5, 5.5, 7.5, 9.5, 11.0])
    np.testing.assert_allclose(out[0], columns, rtol=1e-12)  # covered part: the row 40..41N
    np.testing.assert_allclose(out[-1], 900.0 + columns, rtol=1e-12)  # the row 49..50N
    assert not np.isnan(out).any()
    # a target whose cells are centred half a degree further out: the outer ring is NaN
    shifted = latlon_da(6, 7, lat0=39.5, dlat=2.0, lon0=-10.5, dlon=2.0)
    out = regrid(src, shifted, method="conservative", skipna=skipna).values
    assert np.isnan(out[0]).all()
    assert np.isnan(out[:, 0]).all()
    assert not np.isnan(out[1:, 1:]).any()


@pytest.mark.parametrize("method", ["linear", "cubic", "nearest", "conservative"])
@pytest.mark.parametrize("grid", ["regional", "projected"])
def test_target_beyond_the_source_is_nan_exactly_outside(method, grid):
    if grid == "projected":
        # 10 x 12 cells of 1 km centred on 0..9, 0..11 km: extent -0.5..9.5, -0.5..11.5 km
        src = projected_da(10, 12, dx=1.0)
        ys, xs = -4.25 + 0.5 * np.arange(28), -4.25 + 0.5 * np.arange(32)
        units = {"units": "km"}
        target = xr.Dataset(coords={"y": ("y", ys, units), "x": ("x", xs, units)})
        bounds = ((-0.5, 9.5), (-0.5, 11.5))
        centres = ((0.0, 9.0), (0.0, 11.0))
    else:
        # source cells over 40..50N and 10W..2E; target cells of 0.5 degree from 35 to 55N and
        # 15W to 7E
        src = latlon_da(10, 12, lat0=40.5, lon0=-9.5, func=cell_index)
        target = latlon_da(40, 44, lat0=35.25, dlat=0.5, lon0=-14.75, dlon=0.5)
        ys, xs = np.asarray(target.lat.values), np.asarray(target.lon.values)
        bounds = ((40.0, 50.0), (-10.0, 2.0))
        centres = ((40.5, 49.5), (-9.5, 1.5))
    out = regrid(src, target, method=method)
    # nearest / conservative: the source's cell-bounds extent; linear / cubic: no extrapolation
    # beyond the outermost source centres
    edges = bounds if method in ("nearest", "conservative") else centres
    iny = (ys >= edges[0][0]) & (ys <= edges[0][1])
    inx = (xs >= edges[1][0]) & (xs <= edges[1][1])
    inside = iny[:, None] & inx[None, :]
    assert inside.sum() < inside.size
    values = out.values
    assert np.isnan(values[~inside]).all()
    assert not np.isnan(values[inside]).any()
    if method in ("nearest", "conservative"):
        y, x = out.dims
        expected = src.sel({y: ys[iny], x: xs[inx]}, method="nearest").values
        np.testing.assert_array_equal(values[np.ix_(iny, inx)], expected)


@pytest.mark.parametrize("method", ["linear", "nearest", "conservative"])
def test_periodic_projected_domain_is_wrapped_at_its_edges(method):
    src = projected_da(6, 8, dx=1.0, periodic=True)
    out = regrid(src, refine_grid(src, 2), method=method)
    assert not np.isnan(out.values).any()
    if method != "linear":
        expected = src.sel(y=out.y.values, x=out.x.values, method="nearest").values
        np.testing.assert_array_equal(out.values, expected)
    else:  # a quarter of the way from the first x centre to the last one, across the edge
        west = 0.75 * src.isel(x=0) + 0.25 * src.isel(x=-1)
        rows = slice(1, -1)  # away from the y edges (where y wraps too)
        expected = west.interp(y=out.y.values[rows]).values
        np.testing.assert_allclose(out.isel(x=0).values[rows], expected)


def test_conservative_refinement_of_era5_averages_back_to_the_source(shared_data):
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as ds:
        src = ds.t2m.isel(time=slice(0, 2)).load()
    assert src.dtype == np.float32
    out = regrid(src, refine_grid(src, 2), method="conservative")
    assert out.dtype == np.float32
    assert not np.isnan(out.values).any()  # the outer rows and columns too
    back = degrade(out, 2)
    src = src.sortby("latitude")  # ERA5 latitudes descend; the refined grid ascends
    np.testing.assert_allclose(back.latitude.values, src.latitude.values)
    np.testing.assert_allclose(back.longitude.values, src.longitude.values)
    np.testing.assert_allclose(back.values, src.values, rtol=2e-7)


def test_conservative_without_skipna_propagates_nan_to_the_overlapping_cells():
    """skipna=False: exactly the target cells overlapping the source's NaN are NaN, the others
    equal the skipna=True result; skipna=True averages over the valid part."""
    src = latlon_da(
        8, 12, lat0=40.5, lon0=0.5, func=lambda la, lo: np.arange(la.size).reshape(la.shape)
    )
    src[3, 5] = np.nan  # the cell lat 43..44, lon 5..6
    lat, values = src["lat"].values, src.values
    target = src.isel(lat=slice(0, None, 2), lon=slice(0, None, 2))
    target = target.assign_coords(lat=target["lat"] + 0.5, lon=target["lon"] + 0.5)  # 2x2 blocks
    strict = regrid(src, target, method="conservative", skipna=False)
    lenient = regrid(src, target, method="conservative", skipna=True)
    nan = np.isnan(strict.values)
    assert nan.sum() == 1
    j, i = np.argwhere(nan)[0]
    assert strict["lat"].values[j] == 43.0
    assert strict["lon"].values[i] == 5.0
    np.testing.assert_allclose(strict.values[~nan], lenient.values[~nan], rtol=1e-12)
    block = values[2:4, 4:6]
    # skipna=True: the mean over the valid part (exact areas of the 3 valid cells on the sphere)
    upper, lower = np.deg2rad(lat[2:4] + 0.5), np.deg2rad(lat[2:4] - 0.5)
    w = (np.sin(upper) - np.sin(lower))[:, None] * np.ones((1, 2))
    ok = ~np.isnan(block)
    expected = (block[ok] * w[ok]).sum() / w[ok].sum()
    np.testing.assert_allclose(float(lenient.values[j, i]), expected, rtol=1e-12)


@pytest.mark.parametrize("method", ["linear", "conservative"])
def test_dataset_variables_without_the_grid_dims_pass_through(method):
    """A time series or a scalar beside the fields is kept as it is (conservative used to fail
    inside the backend); a variable on one grid dim only is refused with the fix."""
    lat = np.arange(40.5, 48.0, 1.0)
    lon = np.arange(0.5, 12.0, 1.0)
    time = np.arange(3)
    coords = {
        "time": time,
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    ds = xr.Dataset(
        {
            "v": (("time", "lat", "lon"), np.ones((3, lat.size, lon.size))),
            "series": ("time", np.array([1.0, 2.0, 3.0]), {"units": "hPa"}),
            "level": ((), 2.0),
        },
        coords=coords,
    )
    target = ds.isel(lat=slice(1, -1, 2), lon=slice(1, -1, 2))
    out = regrid(ds, target, method=method)
    xr.testing.assert_identical(out["series"], ds["series"])
    assert float(out["level"]) == 2.0
    np.testing.assert_allclose(out["v"].values, 1.0)
    bad = ds.assign(profile=("lat", lat))
    with pytest.raises(GridError, match="only one of the grid dimensions"):
        regrid(bad, target, method=method)


@pytest.mark.parametrize("method", ["linear", "conservative", "nearest"])
@pytest.mark.parametrize("names", [("y", "x"), ("nav_lat", "nav_lon")])
def test_global_grid_under_other_axis_names_is_wrapped_like_lat_lon(shared_data, method, names):
    """xarray-regrid wraps the seam and pads the poles only for axes named lat/lon; a global
    grid with axes ``y``/``x`` (or ``nav_lat``/``nav_lon`` with CF attributes) gets the same."""
    with xr.open_dataset(shared_data / "era_interim/eraint_uv_monthly.nc") as ds:
        u = ds["u"].sel(month=1, level=500).load()
    target = latlon_da(180, 360, lat0=-89.5, dlat=1.0, lon0=0.5, dlon=1.0)  # 0..360, 1 degree
    reference = regrid(u, target.rename(lat="latitude", lon="longitude"), method=method)
    assert not reference.isnull().any()
    y, x = names
    renamed = u.rename(latitude=y, longitude=x)
    renamed[y].attrs.update(units="degrees_north", standard_name="latitude")
    renamed[x].attrs.update(units="degrees_east", standard_name="longitude")
    out = regrid(renamed, target.rename(lat=y, lon=x), method=method)
    assert out.dims == (y, x)
    assert not out.isnull().any()  # the seam and the polar rows were NaN
    # float32 data: the same weights, summed in another order at most
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(out.values, reference.values, rtol=0, atol=1e-6 * scale)
    assert renamed.dims == (y, x)  # input untouched


def _sphere_mean(da: xr.DataArray, lat: str = "latitude") -> float:
    """Area-weighted mean of a global field from its cells' exact areas (sin of the bounds)."""
    da = da.sortby(lat)
    bounds = cell_bounds(da[lat].values.astype(np.float64), latitude=True)
    area = np.sin(np.deg2rad(bounds[:, 1])) - np.sin(np.deg2rad(bounds[:, 0]))
    rows = da.astype(np.float64).mean([d for d in da.dims if d != lat]).values
    return float((rows * area).sum() / area.sum())


def _brute_force_conservative(src: xr.DataArray, lat_edges, lon_edges) -> float:
    """One target cell's area-weighted mean, overlap by overlap (an independent loop)."""
    lat = src["latitude"].values.astype(np.float64)
    lon = src["longitude"].values.astype(np.float64)
    lat_b = cell_bounds(np.sort(lat), latitude=True)
    lon_b = cell_bounds(lon)
    total = area = 0.0
    for j, (s0, s1) in enumerate(lat_b):
        y0, y1 = max(s0, lat_edges[0]), min(s1, lat_edges[1])
        if y1 <= y0:
            continue
        wy = np.sin(np.deg2rad(y1)) - np.sin(np.deg2rad(y0))
        for i, (w0, w1) in enumerate(lon_b):
            for shift in (-360.0, 0.0, 360.0):
                x0, x1 = max(w0 + shift, lon_edges[0]), min(w1 + shift, lon_edges[1])
                if x1 > x0:
                    value = float(src.sel(latitude=np.sort(lat)[j]).values[i])
                    total += wy * (x1 - x0) * value
                    area += wy * (x1 - x0)
    return total / area


def test_conservative_keeps_the_polar_half_cells_of_a_grid_with_points_on_the_poles(shared_data):
    """ERA-Interim (90, 89.25, ..., -90): the polar half-cells count with their true area (the
    xarray-regrid 0.4 weights, cos of the centre latitude, gave them none: NaN rows at +-89.875
    and a shifted global mean); the global mean is conserved and single cells match an
    overlap-by-overlap computation."""
    with xr.open_dataset(shared_data / "era_interim/eraint_uv_monthly.nc") as ds:
        u = ds.u.isel(month=0, level=0).astype(np.float64).load()
    units = {"latitude": "degrees_north", "longitude": "degrees_east"}

    def grid(lat, lon):
        target = xr.Dataset(coords={"latitude": lat, "longitude": lon})
        for name, unit in units.items():
            target[name].attrs["units"] = unit
        return target

    fine = regrid(
        u, grid(np.arange(-89.875, 90, 0.25), np.arange(-179.875, 180, 0.25)), method="conservative"
    )
    assert not np.isnan(fine.values).any()
    # a fine cell inside a polar half-cell takes its value
    np.testing.assert_array_equal(
        fine.sel(latitude=89.875).values[::3], u.sel(latitude=90.0).values
    )
    coarse = regrid(
        u, grid(np.arange(-89.25, 90, 1.5), np.arange(0.75, 360, 1.5)), method="conservative"
    )
    assert not np.isnan(coarse.values).any()
    for out in (fine, coarse):
        np.testing.assert_allclose(_sphere_mean(out), _sphere_mean(u), rtol=1e-12)
    for lat, lon in ((-89.25, 0.75), (89.25, 179.25), (0.75, 359.25)):
        expected = _brute_force_conservative(u, (lat - 0.75, lat + 0.75), (lon - 0.75, lon + 0.75))
        got = float(coarse.sel(latitude=lat, longitude=lon).values)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # lazy input stays lazy and gives the same numbers
    lazy = regrid(u.chunk({"latitude": 60}), coarse, method="conservative")
    assert isinstance(lazy.data, dask.array.Array)
    np.testing.assert_array_equal(lazy.values, coarse.values)


@pytest.mark.parametrize("method", ["linear", "nearest", "cubic", "conservative"])
def test_a_periodic_box_relabelled_in_a_shifted_period(shared_data, method):
    """The Kolmogorov box labelled [-pi, pi) is the same periodic domain: the interpolating
    methods left 127 of 256 columns NaN (only one cell of the other end was padded)."""
    w = xr.open_dataset(shared_data / "kolmogorov" / "kf_re1000.nc")["vorticity"]
    w = w.isel(trajectory=0, time=0).load()
    target = w.assign_coords(x=(w["x"] - np.pi).assign_attrs(w["x"].attrs))
    out = regrid(w, target, method=method)
    expected = np.roll(w.transpose(*out.dims).values, 128, axis=out.dims.index("x"))
    # the labels x - pi fall on the cells up to round-off; cubic weights feel it most
    np.testing.assert_allclose(
        out.values, expected, rtol=0, atol=1e-3 if method == "cubic" else 1e-4
    )


def test_grids_in_different_frames_are_refused(shared_data):
    """A rotated-pole source with a geographic target was read as if the target's degrees were
    rotated coordinates (100 plausible temperatures from the wrong place); a projected km grid
    onto latitudes gave all NaN, silently."""
    tas = xr.open_dataset(shared_data / "grids" / "tas_rotated_grid_EUR11.nc")["tas"]
    geographic = xr.Dataset(
        coords={
            "lat": ("lat", np.arange(0.0, 10.0), {"units": "degrees_north"}),
            "lon": ("lon", np.arange(0.0, 10.0), {"units": "degrees_east"}),
        }
    )
    with pytest.raises(GridError, match=r"the source grid is 'rotated' .* target grid 'latlon'"):
        regrid(tas, geographic)
    radar = xr.open_dataset(shared_data / "radar" / "bom_mtstapylton_prcp10min_2020-10-31.nc")
    with pytest.raises(GridError, match=r"the source grid is 'projected' .* target grid 'latlon'"):
        regrid(radar["precipitation"].isel(time=0), geographic)


@pytest.mark.parametrize("method", ["linear", "conservative", "nearest"])
def test_float32_target_axes_give_float32_output_axes(shared_data, method):
    # regrid onto a float32 target (a CMIP file's grid, a degrade of a float32 field) returned
    # float64 coordinates: equal values, but `out.latitude.dtype` and the written file differed
    # from the target's; now the output's axes are the target's, in its dtype
    ds = xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")
    ds = ds.isel(time=0, latitude=slice(0, 32), longitude=slice(0, 48)).load()
    target = xr.Dataset(
        coords={
            "latitude": ("latitude", np.arange(58.3, 52.0, -0.7, dtype=np.float32)),
            "longitude": ("longitude", np.arange(-9.5, -0.5, 0.3, dtype=np.float32)),
        }
    )
    out = regrid(ds, target, method=method)
    for name in ("latitude", "longitude"):
        assert out[name].dtype == np.float32, name
        np.testing.assert_array_equal(out[name].values, target[name].values)
    # the same numbers as onto the target's values held in float64
    wide = target.assign_coords(
        {n: target[n].astype(np.float64) for n in ("latitude", "longitude")}
    )
    reference = regrid(ds, wide, method=method)
    assert reference.latitude.dtype == np.float64
    np.testing.assert_array_equal(out["t2m"].values, reference["t2m"].values)
