"""Area weights on the real global (ERA-Interim) and regional (ERA5 UK) grids, and projections."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import GridError, ShapeError
from flexdownscale.metrics import area_weights, cell_edges, rmse, spread_skill_ratio
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
    # the rotation keeps areas: the true cell areas are cos(rlat), as on a latitude grid
    cos = np.cos(np.deg2rad(rlat))
    np.testing.assert_allclose(w.values, cos / cos.mean(), atol=2e-5)


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


@pytest.mark.parametrize(
    ("lat_units", "lon_units"),
    [
        ("degrees_north", "degrees_east"),
        ("degrees north", "degrees east"),
        ("\u00b0N", "\u00b0E"),
        ("degN", "degE"),
        ("Degrees_North", "Degrees_East"),
    ],
)
def test_every_spelling_of_degrees_gives_area_weights_and_metre_spectra(lat_units, lon_units):
    """'°N' or 'degrees north' fell through to unitless: uniform weights, index spectra."""
    from flexdownscale.metrics import power_spectrum

    lat = xr.DataArray(np.arange(30.0, 61.0), dims="lat", attrs={"units": lat_units})
    lon = xr.DataArray(np.arange(0.0, 31.0), dims="lon", attrs={"units": lon_units})
    field = xr.DataArray(
        np.random.default_rng(0).normal(size=(31, 31)),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
    )
    w = area_weights(field)
    ratio = float(w.sel(lat=30.0).mean() / w.sel(lat=60.0).mean())
    np.testing.assert_allclose(ratio, np.cos(np.radians(30)) / np.cos(np.radians(60)), rtol=1e-3)
    assert power_spectrum(field)["wavenumber"].attrs["units"] == "m-1"


def test_a_latitude_in_other_units_is_an_error_not_unitless():
    field = xr.DataArray(
        np.zeros((4, 4)),
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", np.arange(4.0), {"units": "radians", "standard_name": "latitude"}),
            "lon": ("lon", np.arange(4.0), {"units": "degrees_east"}),
        },
    )
    with pytest.raises(GridError, match=r"'lat' is a latitude but its units 'radians'"):
        area_weights(field)


def test_skill_summary_takes_the_weights_evaluate_uses(shared_data):
    """``downscaling_skill`` had no ``weights=``: its means were unweighted while ``flexdownscale
    evaluate`` weights latitude grids by area. With ``weights=area_weights(truth)`` its RMSE,
    CRPS and spread/skill are the hand-weighted numbers; without, the unweighted ones; the
    per-field norms and spectra do not change."""
    from flexdownscale.metrics import downscaling_skill

    ds = xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")
    truth = ds["t2m"].isel(time=slice(0, 3)).astype(np.float64).load()
    rng = np.random.default_rng(3)
    # errors growing northwards (latitude runs 58 -> 50), so that weighting by cell area
    # changes every mean: the noisy northern rows are the smaller cells
    scale = np.linspace(2.0, 0.2, truth.sizes["latitude"])[:, None]
    noise = rng.normal(size=(4, *truth.shape)) * scale
    pred = (xr.DataArray(noise, dims=("member", *truth.dims)) + truth).assign_attrs(truth.attrs)
    assert pred.dims == ("member", *truth.dims)
    w = area_weights(truth)
    plain = downscaling_skill(pred, truth)
    weighted = downscaling_skill(pred, truth, weights=w)
    cell = np.broadcast_to(w.values[:, None], truth.shape[1:])
    wsum = cell.sum() * truth.sizes["time"]
    err = (pred.mean("member") - truth).values
    assert weighted["rmse"] == pytest.approx(np.sqrt((err**2 * cell).sum() / wsum), rel=1e-10)
    assert plain["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-10)
    assert weighted["rmse"] < plain["rmse"]
    p, t = pred.values, truth.values[None]
    m = p.shape[0]
    pair = np.abs(p[:, None] - p[None, :]).sum((0, 1)) / (2 * m * (m - 1))
    crps_fair = np.abs(p - t).mean(0) - pair
    assert weighted["crps"] == pytest.approx((crps_fair * cell).sum() / wsum, rel=1e-10)
    assert plain["crps"] == pytest.approx(crps_fair.mean(), rel=1e-10)
    ratio = spread_skill_ratio(pred, truth, member_dim="member", correction="fortin", weights=w)
    assert weighted["spread_skill"] == pytest.approx(float(ratio), rel=1e-12)
    assert weighted["spread_skill"] != pytest.approx(plain["spread_skill"], rel=1e-5)
    for key in ("rfne", "lsd", "spectral_ratio_small"):
        assert weighted[key] == plain[key]
    # a deterministic prediction: the weighted MAE
    det = downscaling_skill(pred.isel(member=0), truth, weights=w)
    mae_hand = (np.abs(p[0] - t[0]) * cell).sum() / wsum
    assert det["crps"] == pytest.approx(mae_hand, rel=1e-10)


def test_weights_without_coordinates_on_inputs_in_different_orders_are_refused():
    """Coordinate-less weights pair by position with the first input's order (the second is
    reordered by label): built from a truth with descending latitude and given with a prediction
    of ascending latitude first, they were applied upside down (reviewer-82: RMSE 1.7652 against
    1.8501). Which order they follow cannot be told, so it is refused with both fixes."""
    rng = np.random.default_rng(5)
    lat = np.linspace(58.0, 50.0, 9)  # descending, as ERA5
    truth = xr.DataArray(
        rng.normal(size=(4, 9, 6)), dims=("time", "lat", "lon"), coords={"lat": lat}
    )
    noise = rng.normal(size=truth.shape) * np.linspace(0.2, 3.0, 9)[:, None]
    pred = (truth + noise).sortby("lat")  # ascending, as the package writes
    cos = np.cos(np.deg2rad(lat))
    positional = xr.DataArray(cos, dims=["lat"])  # built from the truth, no coordinate
    labelled = positional.assign_coords(lat=truth["lat"])
    err2 = ((pred - truth) ** 2).mean(["time", "lon"])  # by hand, on labels
    by_hand = float(np.sqrt((err2 * labelled).sum() / labelled.sum()))
    for args in ((pred, truth), (truth, pred)):
        with pytest.raises(ShapeError) as info:
            rmse(*args, weights=positional)
        message = str(info.value)
        assert "weights has no 'lat' coordinate" in message
        assert "in different orders (fcst from " in message
        assert "weights.assign_coords(lat=fcst['lat']) if built from fcst, " in message
        assert "weights.assign_coords(lat=obs['lat']) if from obs" in message
        assert float(rmse(*args, weights=labelled)) == pytest.approx(by_hand, rel=1e-12)
    # the fix it names, weights built from the truth given the truth's latitude
    fixed = positional.assign_coords(lat=truth["lat"])
    assert float(rmse(pred, truth, weights=fixed)) == pytest.approx(by_hand, rel=1e-12)
    # inputs in one order still pair coordinate-less weights by position
    same = float(rmse(pred.sortby("lat", ascending=False), truth, weights=positional))
    assert same == pytest.approx(by_hand, rel=1e-12)


def test_weights_not_a_dataarray_are_told_the_labelled_way():
    """The refusal of a numpy array of weights suggested coordinate-less weights, which pair by
    position and are refused when the inputs' orders differ: it gives ``area_weights`` and the
    labelled spelling now, and that spelling scores as the area weights do."""
    from flexdownscale.errors import WeightsError

    lat = np.linspace(60.0, 40.0, 5)  # descending, as ERA5
    truth = xr.DataArray(
        np.arange(20.0).reshape(5, 4),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": np.arange(4.0)},
        attrs={"units": "K"},
    )
    pred = (truth + np.linspace(0.0, 2.0, 20).reshape(5, 4)).sortby("lat")
    w = np.cos(np.deg2rad(lat))
    with pytest.raises(WeightsError, match=r"area_weights\(truth\), or xr\.DataArray") as err:
        rmse(pred, truth, weights=w)
    assert "coords={'lat': truth['lat']}" in str(err.value)
    labelled = xr.DataArray(w, dims=["lat"], coords={"lat": truth["lat"]})
    assert float(rmse(pred, truth, weights=labelled)) == pytest.approx(
        float(rmse(pred, truth, weights=area_weights(truth))), rel=1e-3
    )


def test_contiguous_cf_bounds_are_used_and_gapped_ones_give_midpoints():
    """Latitude weights from CF bounds when they tile the axis (uneven cells: each its own
    sin(upper) - sin(lower)); a subsampled grid's bounds leave gaps, and each point then stands
    for the band up to the midpoints (the documented contract of area_weights)."""
    lat = np.array([10.0, 12.0, 16.0, 22.0])
    tiled = np.array([[9.0, 11.0], [11.0, 14.0], [14.0, 19.0], [19.0, 25.0]])  # not midpoints
    lon = np.arange(0.0, 4.0)

    def grid(bounds: np.ndarray) -> xr.Dataset:
        ds = xr.Dataset(
            {"lat_bnds": (("lat", "nv"), bounds)},
            coords={"lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"})},
        )
        return ds.assign_coords(lon=("lon", lon, {"units": "degrees_east"}))

    rad = np.deg2rad
    expected = np.sin(rad(tiled[:, 1])) - np.sin(rad(tiled[:, 0]))
    np.testing.assert_allclose(
        area_weights(grid(tiled), normalize="sum").values, expected / expected.sum(), rtol=1e-12
    )
    # every other 1-degree source cell kept with its bounds: gaps between neighbours
    gapped = np.stack([lat - 0.5, lat + 0.5], axis=1)
    edges = cell_edges(lat, lower=-90.0, upper=90.0)
    midpoints = np.diff(np.sin(rad(edges)))
    np.testing.assert_allclose(
        area_weights(grid(gapped), normalize="sum").values,
        midpoints / midpoints.sum(),
        rtol=1e-12,
    )
    plain = grid(gapped).drop_vars("lat_bnds")
    plain["lat"].attrs.pop("bounds")
    np.testing.assert_array_equal(area_weights(grid(gapped)).values, area_weights(plain).values)
