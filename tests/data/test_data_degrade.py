"""Degradation operators (fine -> coarse) and the base field ``up`` (coarse -> fine)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from data_helpers import (
    assert_unchanged,
    cf_bounds_file,
    latlon_da,
    no_compute,
    projected_da,
)

from flexdownscale.data.degrade import (
    DEGRADATIONS,
    UPSAMPLINGS,
    degrade,
    degrade_array,
    up,
    upsample_array,
)
from flexdownscale.data.grid import cell_bounds, coarsen_grid, normalize_grid, row_area_weights
from flexdownscale.errors import ConfigError, GridError, ShapeError, UnsupportedFactorError


def area_mean_of(da: xr.DataArray, lat_bounds: np.ndarray) -> xr.DataArray:
    w = xr.DataArray(row_area_weights(lat_bounds), dims="latitude")
    return (da * w).sum(("latitude", "longitude")) / (w.sum() * da.sizes["longitude"])


def test_registries_name_the_operators():
    assert set(DEGRADATIONS) == {"area_mean", "strided", "gaussian"}
    assert set(UPSAMPLINGS) == {"bilinear", "bicubic", "conservative", "nearest"}


def test_area_mean_preserves_the_area_weighted_mean_on_the_real_global_grid(shared_data):
    with xr.open_dataset(shared_data / "era_interim/eraint_uv_monthly.nc") as ds:
        fine = normalize_grid(ds.astype(np.float64)).isel(latitude=slice(0, 240))
        coarse = degrade(fine, 4)
        fine_b = cell_bounds(fine.latitude.values, latitude=True)
        before = area_mean_of(fine.u, fine_b)
        after = area_mean_of(coarse.u, coarse.latitude_bnds.values)
        np.testing.assert_allclose(after.values, before.values, rtol=0, atol=1e-10)
        # and over every block of 2 x 2 coarse cells (a region made of whole blocks)
        sub = coarse.u.isel(latitude=slice(10, 12), longitude=slice(40, 42))
        fsub = fine.u.isel(latitude=slice(40, 48), longitude=slice(160, 168))
        np.testing.assert_allclose(
            area_mean_of(sub, coarse.latitude_bnds.values[10:12]).values,
            area_mean_of(fsub, fine_b[40:48]).values,
            atol=1e-10,
        )


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_area_mean_matches_a_direct_weighted_block_mean(factor):
    rng = np.random.default_rng(factor)
    x = rng.normal(size=(2, 6 * factor, 5 * factor))
    w = rng.uniform(0.1, 1.0, size=6 * factor)
    expected = (x * w[:, None]).reshape(2, 6, factor, 5, factor).sum(axis=(2, 4)) / (
        w.reshape(6, factor).sum(axis=1)[:, None] * factor
    )
    np.testing.assert_allclose(degrade_array(x, factor, row_weights=w), expected, rtol=1e-13)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_strided_is_the_reference_decimation(factor):
    x = np.random.default_rng(1).normal(size=(3, 32, 40))
    np.testing.assert_array_equal(
        degrade_array(x, factor, method="strided"), x[..., ::factor, ::factor]
    )
    t = torch.from_numpy(x).float()
    assert torch.equal(degrade_array(t, factor, method="strided"), t[..., ::factor, ::factor])
    da = projected_da(32, 40)
    out = degrade(da, factor, method="strided")
    np.testing.assert_array_equal(out.values, da.values[::factor, ::factor])
    # every method is labelled on the same coarse grid (block centres)
    np.testing.assert_allclose(out.x.values, degrade(da, factor).x.values)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upsampling_matches_torch_interpolate(method, factor):
    x = np.random.default_rng(2).normal(size=(2, 3, 7, 9))
    kwargs = {} if method == "nearest" else {"align_corners": False}
    expected = F.interpolate(torch.from_numpy(x), scale_factor=factor, mode=method, **kwargs)
    np.testing.assert_allclose(
        upsample_array(x, factor, method=method), expected.numpy(), atol=1e-13
    )
    t = torch.from_numpy(x).float()
    got = upsample_array(t, factor, method=method)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected.float(), atol=2e-6, rtol=0)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bicubic_reproduces_quadratics_in_the_interior(factor):
    """Keys' a = -1/2 cubic convolution is exact on quadratics (torch's a = -0.75 is not)."""
    n = 12
    yc, xc = np.meshgrid(np.arange(n, dtype=float), np.arange(n + 3, dtype=float), indexing="ij")

    def quad(y, x):
        return 0.3 * y**2 - 0.2 * x * y + 0.1 * x**2 + y - 2.0

    coarse = quad(yc, xc)
    fine_pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    yf, xf = np.meshgrid(
        fine_pos, (np.arange((n + 3) * factor) + 0.5) / factor - 0.5, indexing="ij"
    )
    got = upsample_array(coarse, factor, method="bicubic")
    inner = (slice(2 * factor, -2 * factor), slice(2 * factor, -2 * factor))
    np.testing.assert_allclose(got[inner], quad(yf, xf)[inner], atol=1e-11)
    torch_cubic = F.interpolate(
        torch.from_numpy(coarse)[None, None], scale_factor=factor, mode="bicubic"
    )
    assert np.abs(torch_cubic[0, 0].numpy()[inner] - quad(yf, xf)[inner]).max() > 1e-3


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "conservative"])
def test_up_of_degrade_converges_on_a_smooth_field(method):
    """Reconstruction error of a smooth field shrinks (about 4x per doubling) with resolution."""

    def field(lat, lon):
        return np.cos(np.radians(2 * lat)) * np.sin(np.radians(3 * lon)) + 0.01 * lat

    errors = []
    for d in (1.0, 0.5, 0.25):
        n_lat, n_lon = round(40 / d), round(80 / d)
        da = latlon_da(n_lat, n_lon, lat0=-20 + d / 2, dlat=d, lon0=d / 2, dlon=d, func=field)
        base = up(degrade(da, 4), 4, method=method)
        interior = (slice(8, -8), slice(8, -8))
        errors.append(float(np.abs(base.values - da.values)[interior].max()))
    assert errors[0] < 0.05
    assert errors[1] < errors[0] / 3
    assert errors[2] < errors[1] / 3


def test_conservative_up_has_exactly_the_coarse_means():
    coarse = latlon_da(10, 12, lat0=-67.5, dlat=15.0, lon0=15.0, dlon=30.0)
    fine = up(coarse, 5, method="conservative")
    np.testing.assert_allclose(degrade(fine, 5).values, coarse.values, atol=1e-14)
    # bilinear alone does not have this property on the sphere
    assert np.abs(degrade(up(coarse, 5), 5).values - coarse.values).max() > 1e-3


def test_gaussian_is_translation_equivariant_on_periodic_axes(shared_data):
    with xr.open_dataset(shared_data / "kolmogorov/kf_re1000.nc") as ds:
        w = ds.vorticity.isel(trajectory=0, time=0).transpose("y", "x").values.astype(np.float64)
    coarse = degrade_array(w, 4, method="gaussian", periodic=True)
    shifted = degrade_array(np.roll(w, (8, -12), axis=(0, 1)), 4, method="gaussian", periodic=True)
    np.testing.assert_allclose(shifted, np.roll(coarse, (2, -3), axis=(0, 1)), atol=1e-12)
    # without wrap-around the borders differ
    open_ = degrade_array(w, 4, method="gaussian", periodic=False)
    assert np.abs(open_[0] - coarse[0]).max() > 1e-3
    np.testing.assert_allclose(open_[16:-16, 16:-16], coarse[16:-16, 16:-16], atol=1e-12)
    # constants are preserved and the field is smoothed more than by the block mean
    np.testing.assert_allclose(degrade_array(np.full((16, 16), 3.0), 4, method="gaussian"), 3.0)
    assert coarse.std() < degrade_array(w, 4).std()


def test_nan_is_propagated_never_filled():
    da = latlon_da(8, 8)
    mask = np.zeros((8, 8), bool)
    mask[2, 5] = True  # one land cell
    masked = da.where(~mask)
    coarse = degrade(masked, 4)
    assert int(coarse.isnull().sum()) == 1
    assert bool(coarse.isnull()[0, 1])
    assert np.isfinite(coarse.values[~coarse.isnull().values]).all()
    strided = degrade(masked, 2, method="strided")
    assert int(strided.isnull().sum()) == 0  # (2, 5) is not sampled
    fine = up(coarse, 4)
    assert fine.isnull().any()
    assert not fine.isnull().all()


def test_xarray_level_keeps_attrs_is_lazy_and_does_not_mutate(shared_data):
    with xr.open_dataset(shared_data / "radar/bom_mtstapylton_prcp10min_2020-10-31.nc") as raw:
        ds = raw.isel(time=slice(0, 4)).chunk({"time": 2, "y": 128})
        before = ds.copy(deep=True)
        with no_compute():
            coarse = degrade(ds, 8)
            fine = up(coarse, 8, method="bicubic")
        assert coarse.precipitation.chunks is not None
        assert coarse.precipitation.attrs == ds.precipitation.attrs
        assert coarse.proj.attrs == ds.proj.attrs  # grid mapping passes through
        lone = degrade(ds.assign_coords(station=66), 8)
        assert int(lone.station) == 66  # a coordinate no variable carries is kept
        assert coarse.sizes["y"] == 64
        assert fine.sizes["x"] == 512
        assert coarse.y.attrs["units"] == "km"
        assert coarse.y.attrs["bounds"] == "y_bnds"
        np.testing.assert_array_equal(coarse.y.values, coarsen_grid(ds, 8).y.values)
        expected = np.asarray(ds.precipitation.isel(time=0).values, np.float64)[::-1]
        expected = expected.reshape(64, 8, 64, 8).mean(axis=(1, 3))
        np.testing.assert_allclose(coarse.precipitation.isel(time=0).values, expected, rtol=1e-6)
        assert_unchanged(before, ds)


def test_era5_degrade_uses_area_weights_and_ascending_latitude(shared_data):
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as ds:
        da = ds.t2m.isel(time=0, latitude=slice(1, 33), longitude=slice(0, 48)).astype(np.float64)
        coarse = degrade(da, 4)
        lat = da.latitude.values[::-1]
        w = row_area_weights(cell_bounds(lat, latitude=True))
        vals = da.values[::-1]
        expected = (vals * w[:, None]).reshape(8, 4, 12, 4).sum(axis=(1, 3)) / (
            w.reshape(8, 4).sum(axis=1)[:, None] * 4
        )
        np.testing.assert_allclose(coarse.values, expected, rtol=1e-13)
        assert coarse.latitude.values[0] < coarse.latitude.values[-1]
        assert coarse.dims == da.dims


def test_dimension_order_is_kept_for_x_before_y(shared_data):
    with xr.open_dataset(shared_data / "kolmogorov/kf_re1000.nc") as ds:
        da = ds.vorticity.isel(trajectory=0, time=slice(0, 2))
        coarse = degrade(da, 4)
        assert coarse.dims == ("time", "x", "y")
        np.testing.assert_allclose(
            coarse.values,
            da.values.reshape(2, 64, 4, 64, 4).mean(axis=(2, 4)),
            rtol=1e-5,
        )


def test_trim_hint_names_the_cells_it_drops_by_value():
    """A descending latitude of 9 rows (58 -> 50) at factor 4: trim drops the northernmost row,
    the file's first as stored; the message said "the trailing cells" (reviewer-103: the +90
    row of a global file). It names the cells by value now, and trim drops exactly those."""
    lat = np.arange(58.0, 49.5, -1.0)
    da = xr.DataArray(
        np.zeros((lat.size, 8)),
        dims=("latitude", "longitude"),
        coords={"latitude": lat, "longitude": np.arange(8.0)},
    )
    with pytest.raises(UnsupportedFactorError, match=r"1 along latitude \(latitude = 58\)$"):
        degrade(da, 4)
    kept = degrade(da, 4, boundary="trim")["latitude"].values
    assert kept.max() < 57.0  # the coarse centres of 50..53 and 54..57
    assert kept.min() == pytest.approx(51.5)


def test_factor_and_option_errors():
    da = projected_da(10, 12)
    with pytest.raises(UnsupportedFactorError, match="boundary='trim'"):
        degrade(da, 4)
    assert degrade(da, 4, boundary="trim").shape == (2, 3)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(UnsupportedFactorError):
            degrade(da, bad)
    with pytest.raises(UnsupportedFactorError):
        degrade_array(np.zeros((10, 12)), 4)
    with pytest.raises(ConfigError):
        degrade(da, 2, method="bilinear")
    with pytest.raises(ConfigError):
        up(da, 2, method="area_mean")
    with pytest.raises(ShapeError):
        degrade_array(np.zeros(8), 2)
    with pytest.raises(ShapeError):
        degrade_array(np.zeros((4, 4)), 2, row_weights=np.ones(3))
    ds = da.to_dataset().assign(profile=("y", np.arange(10.0)))
    with pytest.raises(GridError, match="only one of the grid dimensions"):
        degrade(ds, 2)


def test_torch_and_numpy_agree_and_device_dtype_are_kept():
    x = np.random.default_rng(3).normal(size=(2, 16, 24))
    w = np.linspace(0.5, 1.0, 16)
    for method in DEGRADATIONS:
        a = degrade_array(x, 4, method=method, row_weights=w if method == "area_mean" else None)
        b = degrade_array(
            torch.from_numpy(x), 4, method=method, row_weights=w if method == "area_mean" else None
        )
        assert isinstance(b, torch.Tensor)
        assert b.dtype == torch.float64
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-14)
    ints = degrade_array(np.arange(16).reshape(4, 4), 2)
    assert ints.dtype == np.float64


@pytest.mark.gpu
def test_operators_and_fusion_stay_on_the_gpu():
    """Run by ``benchmarks/gpu/run.sh check``; ``FLEXDOWNSCALE_TEST_DEVICE=cpu`` rehearses it on
    a CPU (as the tests of ``tests/test_devices.py``)."""
    from flexdownscale.data.tiling import tile

    device = torch.device(os.environ.get("FLEXDOWNSCALE_TEST_DEVICE", "cuda"))
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    w = np.linspace(0.5, 1.0, 64)
    gpu = x.to(device)
    for method in ("area_mean", "gaussian", "strided"):
        c = degrade_array(gpu, 4, method=method, row_weights=w if method == "area_mean" else None)
        assert c.device.type == device.type
        ref = degrade_array(x, 4, method=method, row_weights=w if method == "area_mean" else None)
        torch.testing.assert_close(c.cpu(), ref)
    b = upsample_array(gpu[..., ::4, ::4], 4, method="conservative", row_weights=w, periodic=True)
    assert b.device.type == device.type
    tiles, layout = tile(gpu, 32, overlap=8)
    assert torch.equal(layout.fuse(tiles), gpu)


def test_cf_bounds_data_variables_are_replaced_by_the_new_grid(tmp_path):
    ds = cf_bounds_file(tmp_path / "cmip_like.nc", ny=8, nx=12, dlat=2.5)
    assert {"lat_bnds", "lon_bnds"} <= set(ds.data_vars)
    bare = ds.drop_vars(["lat_bnds", "lon_bnds"])
    coarse = degrade(ds, 2)
    assert list(coarse.data_vars) == ["tas"]
    xr.testing.assert_identical(coarse, degrade(bare, 2))
    # the coarse bounds are those of the 5-degree blocks: -10, -5, ... and 100, 105, ...
    np.testing.assert_array_equal(coarse.lat_bnds.values[:, 0], -10.0 + 5.0 * np.arange(4))
    np.testing.assert_array_equal(coarse.lon_bnds.values[:, 1], 105.0 + 5.0 * np.arange(6))
    fine = up(ds, 2, method="nearest")
    assert list(fine.data_vars) == ["tas"]
    xr.testing.assert_identical(fine, up(bare, 2, method="nearest"))
    np.testing.assert_array_equal(fine.tas.values[:, ::2, ::2], ds.tas.values)
    np.testing.assert_array_equal(fine.lat_bnds.values[:2], [[-10.0, -8.75], [-8.75, -7.5]])
    assert set(ds.data_vars) == {"tas", "lat_bnds", "lon_bnds"}  # the input is untouched


def test_auxiliary_coordinates_leave_the_coordinates_attribute_with_them():
    """2-D lat/lon on a rotated grid are dropped by degrade/up; the CF ``coordinates`` attribute
    then names only what is left, and the input keeps its own."""
    rlat = np.arange(-4.0, 4.0, 0.5) + 0.25
    rlon = np.arange(-6.0, 6.0, 0.5) + 0.25
    lat2d, lon2d = np.meshgrid(rlat + 50.0, rlon + 10.0, indexing="ij")
    ds = xr.Dataset(
        {
            "tas": (
                ("rlat", "rlon"),
                np.ones((rlat.size, rlon.size)),
                {"coordinates": "lat lon height"},
            )
        },
        coords={
            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
            "lat": (("rlat", "rlon"), lat2d, {"units": "degrees_north"}),
            "lon": (("rlat", "rlon"), lon2d, {"units": "degrees_east"}),
            "height": ((), 2.0, {"units": "m"}),
        },
    )
    out = degrade(ds, 2)
    assert "lat" not in out.coords
    assert float(out["height"]) == 2.0
    assert out["tas"].attrs["coordinates"] == "height"
    assert ds["tas"].attrs["coordinates"] == "lat lon height"
    back = up(out, 2)
    assert back["tas"].attrs["coordinates"] == "height"


@pytest.mark.parametrize("first_lon", [-180.0, 0.0])
def test_a_global_grid_with_a_cell_on_the_seam_refines_and_coarsens_back(shared_data, first_lon):
    """ERA-Interim's first centre is -180 (a 0..360 grid's is 0): its refined first column lies
    half a fine cell outside the convention. It was wrapped to the other end, so every block of
    the refined field mixed two coarse cells (area_mean(up(x)) - x up to 0.6 m/s)."""
    from flexdownscale.data.grid import grid_spec

    u = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc")["u"]
    u = u.isel(month=0, level=0, latitude=slice(1, -1)).astype("float64").load()
    if first_lon == 0.0:
        u = u.assign_coords(longitude=u["longitude"] % 360).sortby("longitude")
    assert float(u["longitude"][0]) == first_lon
    fine = up(u, 2, method="conservative")
    assert float(fine["longitude"][0]) == first_lon - 0.1875  # the coarse cell's first half
    assert grid_spec(fine).x0 == grid_spec(u).refine(2).x0
    back = degrade(fine, 2)
    np.testing.assert_array_equal(back["longitude"].values, normalize_grid(u)["longitude"].values)
    np.testing.assert_allclose(back.values, normalize_grid(u).values, rtol=0, atol=1e-12)


def test_half_precision_input_is_computed_in_float32(shared_data):
    """float16 input was summed in float16: 0.31 K (area mean), 0.29 K (gaussian) and 0.45 K
    (bilinear up) off the exact result at 280 K (reviewer-50), where rounding the exact result
    to float16 costs 0.125 K at most. The taps are summed in float32 and the result is given
    back in float16 (torch float16 and bfloat16 alike)."""
    from flexdownscale.data.degrade import degrade_array, upsample_array

    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as raw:
        t = raw.t2m.isel(time=slice(0, 4), latitude=slice(0, 32), longitude=slice(0, 48)).values
    half = t.astype(np.float16)
    exact_input = half.astype(np.float64)
    for method in ("area_mean", "gaussian"):
        got = degrade_array(half, 4, method=method)
        assert got.dtype == np.float16
        exact = degrade_array(exact_input, 4, method=method)
        # within the rounding of the exact result to float16 (half a step of 0.25 K at 280 K)
        assert np.abs(got.astype(np.float64) - exact).max() <= 0.125
    coarse = degrade_array(exact_input, 4).astype(np.float16)
    got = upsample_array(coarse, 4, method="bilinear")
    exact = upsample_array(coarse.astype(np.float64), 4, method="bilinear")
    assert got.dtype == np.float16
    assert np.abs(got.astype(np.float64) - exact).max() <= 0.125
    for dtype, step in ((torch.float16, 0.25), (torch.bfloat16, 2.0)):
        x = torch.from_numpy(t).to(dtype)
        got = degrade_array(x, 4)
        assert got.dtype == dtype
        exact = degrade_array(x.double(), 4)
        assert float((got.double() - exact).abs().max()) <= step / 2
