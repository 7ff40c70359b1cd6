"""Regridding: xarray-regrid backend, the xesmf adapter (with a fake module) and missing backends.

ESMPy (needed by xesmf) is only on conda-forge and cannot be installed here, so the xesmf adapter
is tested against a fake ``xesmf`` module injected in ``sys.modules`` that records the arguments.
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import xarray as xr
from data_helpers import cf_bounds_file, latlon_da, no_compute, projected_da

from flexdownscale.data.degrade import degrade
from flexdownscale.data.grid import coarsen_grid, grid_spec
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
        # both are conservative on the sphere; xarray-regrid weights rows by cos(lat) at the centre
        np.testing.assert_allclose(out.values, ours.values, rtol=2e-6)


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
