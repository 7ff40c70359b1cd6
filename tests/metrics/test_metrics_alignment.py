"""Inputs whose index coordinates hold the same points in another order or up to round-off.

The metrics put ``obs`` (and the weights) on the forecast's coordinates when that is exact:
the same labels in another order are reordered by label, values within round-off of each
other take the forecast's values. Anything else is a :class:`ShapeError` whose hint depends on
how far apart the coordinates are.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from metrics_helpers import grid_field, raising_scheduler

from flexdownscale.errors import ShapeError
from flexdownscale.metrics import (
    bias,
    crps_ensemble,
    mae,
    rank_histogram,
    rmse,
    spread_skill_ratio,
)
from flexdownscale.metrics._utils import align_exact

# lat 30, 35, ..., 60 (spacing 5); lon -10 .. 20 in 9 points (spacing 3.75)
FC = grid_field((4, 7, 9), ("time", "lat", "lon"), seed=1)
OBS = grid_field((4, 7, 9), ("time", "lat", "lon"), seed=2)
ENS = FC.expand_dims(member=3).copy() + xr.DataArray([0.0, 1.5, -1.0], dims="member")
W = np.cos(np.deg2rad(FC.lat))

SCORES = {
    "rmse": lambda f, o, e, w: rmse(f, o, weights=w),
    "mae": lambda f, o, e, w: mae(f, o, preserve_dims="lat"),
    "bias": lambda f, o, e, w: bias(f, o, preserve_dims=["lat", "lon"]),
    "crps": lambda f, o, e, w: crps_ensemble(e, o, weights=w),
    "crps per lat": lambda f, o, e, w: crps_ensemble(e, o, preserve_dims="lat"),
    "spread/skill": lambda f, o, e, w: spread_skill_ratio(e, o, weights=w),
    "rank histogram": lambda f, o, e, w: rank_histogram(e, o),
}


def _reverse(obj, *dims):
    return obj.isel({d: slice(None, None, -1) for d in dims})


@pytest.mark.parametrize("name", list(SCORES))
def test_reversed_latitude_obs_scores_exactly_like_the_sorted_obs(name):
    score = SCORES[name]
    expected = score(FC, OBS, ENS, W)
    got = score(FC, _reverse(OBS, "lat"), ENS, _reverse(W, "lat"))
    xr.testing.assert_identical(got, expected)


@pytest.mark.parametrize("name", list(SCORES))
def test_permuted_obs_on_both_axes_scores_exactly_like_the_sorted_obs(name):
    rng = np.random.default_rng(0)
    obs = OBS.isel(lat=rng.permutation(7), lon=rng.permutation(9), time=[2, 0, 3, 1])
    xr.testing.assert_identical(SCORES[name](FC, obs, ENS, W), SCORES[name](FC, OBS, ENS, W))


def test_descending_forecast_keeps_its_own_order():
    fcst, obs = _reverse(FC, "lat"), OBS  # ERA5 style: forecast latitude descending
    per_lat = rmse(fcst, obs, preserve_dims="lat")
    np.testing.assert_array_equal(per_lat["lat"].values, [60.0, 55, 50, 45, 40, 35, 30])
    expected = np.sqrt(((FC - OBS) ** 2).mean(["time", "lon"])).values[::-1]
    np.testing.assert_allclose(per_lat.values, expected, rtol=1e-14)


def test_reordering_is_lazy_on_dask_input():
    obs = _reverse(OBS, "lat").chunk(lat=3)
    ens = ENS.chunk(time=2)
    with dask.config.set(scheduler=raising_scheduler):
        lazy = crps_ensemble(ens, obs, preserve_dims="lat")
    assert lazy.chunks is not None
    expected = crps_ensemble(ENS, OBS, preserve_dims="lat")
    xr.testing.assert_allclose(lazy.compute(scheduler="sync"), expected, rtol=1e-14)


def test_reversed_datetime_coordinate_is_reordered():
    times = pd.date_range("2019-03-01", periods=4, freq="h")
    fcst, obs = FC.assign_coords(time=times), OBS.assign_coords(time=times)
    got = rmse(fcst, _reverse(obs, "time"), preserve_dims="time")
    xr.testing.assert_identical(got, rmse(fcst, obs, preserve_dims="time"))


def _zero_based(values: np.ndarray, lat: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": np.arange(3.0)})


def test_round_off_coordinates_take_the_forecast_values():
    rng = np.random.default_rng(3)
    lat = np.arange(5) * 0.25  # starts at 0.0
    noisy = lat + np.array([2.4e-17, 0.0, -5.5e-17, 1e-16, 0.0])
    fcst = _zero_based(rng.normal(size=(5, 3)), lat)
    obs = _zero_based(rng.normal(size=(5, 3)), lat)
    got = rmse(fcst, obs.assign_coords(lat=noisy), preserve_dims="lat")
    xr.testing.assert_identical(got, rmse(fcst, obs, preserve_dims="lat"))
    np.testing.assert_array_equal(got["lat"].values, lat)  # bit for bit the forecast's values
    # round-off and reversed order at once
    flipped = _reverse(obs.assign_coords(lat=noisy), "lat")
    xr.testing.assert_identical(rmse(fcst, flipped, preserve_dims="lat"), got)


def test_round_off_tolerance_is_a_millionth_of_the_spacing():
    inside = OBS.assign_coords(lat=OBS.lat + 0.9e-6 * 5.0)
    xr.testing.assert_identical(rmse(FC, inside), rmse(FC, OBS))
    with pytest.raises(ShapeError, match="different 'lat' coordinates"):
        rmse(FC, OBS.assign_coords(lat=OBS.lat + 1.1e-6 * 5.0))


def test_obs_keeps_its_data_and_coordinate_attrs_after_round_off():
    obs = OBS.assign_coords(lat=OBS.lat + 1e-12)
    obs["lat"].attrs = {"units": "degrees_north", "long_name": "latitude of obs"}
    fcst, aligned = align_exact(FC, obs, names=("fcst", "obs"))
    assert fcst is FC
    np.testing.assert_array_equal(aligned["lat"].values, FC["lat"].values)
    assert aligned["lat"].attrs == obs["lat"].attrs
    np.testing.assert_array_equal(aligned.values, obs.values)


def test_inputs_that_agree_are_returned_as_they_are():
    out = align_exact(FC, OBS, None, names=("fcst", "obs", "weights"))
    assert out[0] is FC
    assert out[1] is OBS
    assert out[2] is None


def test_small_shift_suggests_assign_coords():
    shifted = OBS.assign_coords(lat=OBS.lat + 1e-3)  # 0.02 % of the 5-degree spacing
    with pytest.raises(ShapeError) as info:
        rmse(FC, shifted)
    msg = str(info.value)
    assert "fcst has [30, 35, 40, ..., 60]" in msg
    assert "obs has [30.001, 35.001, 40.001, ..., 60.001]" in msg
    assert "differ by up to 0.001, 0.02% of the grid spacing 5" in msg
    assert "`obs = obs.assign_coords(lat=fcst['lat'])`" in msg
    # following the hint gives the score of the unshifted obs
    fixed = shifted.assign_coords(lat=FC["lat"])
    xr.testing.assert_identical(rmse(FC, fixed), rmse(FC, OBS))


def test_small_shift_in_reversed_order_does_not_suggest_assign_coords():
    shifted = _reverse(OBS, "lat").assign_coords(lat=lambda o: o.lat + 1e-3)
    with pytest.raises(ShapeError) as info:
        rmse(FC, shifted)
    msg = str(info.value)
    assert "obs.assign_coords(" not in msg  # it would flip the field
    hint = "`obs = obs.reindex(lat=fcst['lat'], method='nearest', tolerance=0.05)`"
    assert hint in msg
    fixed = shifted.reindex(lat=FC["lat"], method="nearest", tolerance=0.05)
    xr.testing.assert_identical(rmse(FC, fixed), rmse(FC, OBS))


@pytest.mark.parametrize("offset", [0.1, 2.5])
def test_different_points_suggest_regridding_not_relabelling(offset):
    with pytest.raises(ShapeError) as info:
        rmse(FC, OBS.assign_coords(lat=OBS.lat + offset))
    msg = str(info.value)
    assert "assign_coords" not in msg
    assert "these are different points" in msg
    assert "obs.interp(lat=fcst['lat'])" in msg
    assert "xr.align(fcst, obs, join='inner')" in msg


def test_different_times_suggest_selecting_shared_labels():
    times = pd.date_range("2019-03-01", periods=4, freq="h")
    fcst = FC.assign_coords(time=times)
    obs = OBS.assign_coords(time=times + pd.Timedelta("1h"))
    with pytest.raises(ShapeError) as info:
        rmse(fcst, obs)
    msg = str(info.value)
    assert "different 'time' coordinates" in msg
    assert "`fcst, obs = xr.align(fcst, obs, join='inner')`" in msg


def test_weights_are_reordered_too():
    got = rmse(FC, OBS, weights=_reverse(W, "lat"))
    xr.testing.assert_identical(got, rmse(FC, OBS, weights=W))


def test_float32_coordinates_of_the_same_grid_are_the_same_points():
    """A 0.1 degree grid computed in float64 and read back as float32 (netCDF) differs by
    1.5e-5 of its spacing: the same points, not a ShapeError; a real shift still is one."""
    from flexdownscale.metrics import power_spectrum, rmse

    lat64 = np.arange(50.0, 58.25, 0.1)
    lat32 = lat64.astype(np.float32)
    rng = np.random.default_rng(0)
    f = xr.DataArray(rng.normal(size=lat64.size), dims="lat", coords={"lat": lat64})
    o = xr.DataArray(rng.normal(size=lat64.size), dims="lat", coords={"lat": lat32})
    expected = float(np.sqrt(np.mean((f.values - o.values) ** 2)))
    assert float(rmse(f, o)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ShapeError):
        rmse(f, o.assign_coords(lat=lat32 + np.float32(0.01)))
    # a fine float32 grid far from zero is regular (its steps vary by float32 rounding)
    fine = {
        "lat": (50.0 + 0.0025 * np.arange(64)).astype(np.float32),
        "lon": (350.0 + 0.0025 * np.arange(64)).astype(np.float32),
    }
    field = xr.DataArray(rng.normal(size=(64, 64)), dims=("lat", "lon"), coords=fine)
    assert np.isfinite(power_spectrum(field).values).all()


def test_skill_summary_takes_round_off_coordinates_like_the_metrics():
    """``downscaling_skill`` divided the two spectra and took the deterministic MAE with plain
    xarray arithmetic: truth coordinates read back as float32 emptied the intersection, so the
    summary raised IndexError (ensemble) or gave crps = NaN (deterministic)."""
    from flexdownscale.metrics import downscaling_skill

    fine = grid_field((2, 16, 16), ("time", "lat", "lon"), seed=4)
    fine = fine.assign_coords(lat=fine.lat + 0.1, lon=fine.lon + 0.1)  # not exact in float32
    truth = fine.assign_coords(lat=fine.lat.astype("float32"), lon=fine.lon.astype("float32"))
    shifted = fine.assign_coords(lon=fine.lon + 1e-9)
    assert not np.array_equal(truth.lon.values, fine.lon.values)
    ens = fine.expand_dims(member=3).copy() + xr.DataArray([0.0, 0.5, -0.3], dims="member")
    det = fine + 0.25
    for reference in (truth, shifted):
        exact = downscaling_skill(ens, fine)
        # the spectra's spacing comes from each side's coordinates: LSD 1e-7 dB, not 0
        np.testing.assert_allclose(
            list(downscaling_skill(ens, reference).values()), list(exact.values()), atol=1e-6
        )
        skill = downscaling_skill(det, reference)
        np.testing.assert_allclose(skill["crps"], 0.25)
        np.testing.assert_allclose(skill["crps"], float(mae(det, fine)))
        assert np.isfinite(skill["spectral_ratio_small"])


def test_skill_summary_errors_name_its_own_arguments():
    """Grid errors inside ``downscaling_skill`` named the metric functions' arguments ("fcst
    and obs have different 'lat' coordinates ... obs.interp(lat=fcst['lat'])") where the
    caller passed ``pred`` and ``truth``: the summary aligns them itself, under its names."""
    from flexdownscale.errors import ShapeError
    from flexdownscale.metrics import downscaling_skill

    fine = grid_field((2, 16, 16), ("time", "lat", "lon"), seed=4)
    ens = fine.expand_dims(member=3).copy() + xr.DataArray([0.0, 0.5, -0.3], dims="member")
    with pytest.raises(ShapeError) as err:
        downscaling_skill(ens, fine.assign_coords(lat=fine.lat + 0.3))
    message = str(err.value)
    assert message.startswith("pred and truth have different 'lat' coordinates")
    assert "truth.interp(lat=pred['lat'])" in message
    assert "fcst" not in message
    assert "obs" not in message
    weights = xr.ones_like(fine.lat).assign_coords(lat=fine.lat - 0.3)
    with pytest.raises(ShapeError, match=r"^pred and weights have different 'lat' coord"):
        downscaling_skill(ens, fine, weights=weights)


def test_a_scalar_coordinate_with_another_value_is_refused():
    """A prediction valid at 00 UTC scored against the truth at 01 UTC gave rmse 0.243 without
    a word: xarray drops the conflicting scalar ``time`` (reviewer-49). Now a ShapeError naming
    both values; round-off in a float level and coordinates only one side has are fine."""
    from flexdownscale.errors import ShapeError
    from flexdownscale.metrics import crps_ensemble, downscaling_skill, rmse

    rng = np.random.default_rng(0)
    y = np.arange(16.0)
    field = xr.DataArray(
        rng.normal(size=(2, 16, 16)),
        dims=("time", "y", "x"),
        coords={"time": np.array(["2019-03-01T00", "2019-03-01T01"], "M8[ns]"), "y": y, "x": y},
    )
    pred, truth = field.isel(time=0), field.isel(time=1)
    with pytest.raises(ShapeError) as err:
        rmse(pred, truth)
    assert str(err.value) == (
        "fcst has time = 2019-03-01T00:00:00.000000000 but obs has time = "
        "2019-03-01T01:00:00.000000000: the scores would compare fields of another 'time' "
        "(xarray drops the conflicting coordinate silently); select fields with the same "
        "'time', or drop the coordinate where it does not matter (.drop_vars('time'))"
    )
    with pytest.raises(ShapeError, match=r"^pred has time = 2019-03-01T00.* but truth has"):
        downscaling_skill(pred, truth)
    members = pred.expand_dims(member=3) + xr.DataArray(np.arange(3.0), dims="member")
    with pytest.raises(ShapeError, match="fcst has time"):
        crps_ensemble(members, truth)
    # the same time, a level in float32 against float64, or a coordinate of one side only
    same = truth.assign_coords(time=pred.time)
    assert float(rmse(pred, same)) == pytest.approx(float(np.sqrt(((pred - same) ** 2).mean())))
    level = pred.assign_coords(level=np.float32(0.1))
    assert float(rmse(level, same.assign_coords(level=0.1))) > 0
    assert float(rmse(pred, truth.drop_vars("time"))) > 0


def test_skill_summary_of_masked_fields_says_why_the_spectral_scores_are_nan():
    """A masked field (NaN over land) gave lsd = NaN with only numpy's "Mean of empty slice"
    (reviewer-49): now an UndefinedMetricWarning that names the gaps; the other scores are
    those of the valid points."""
    import warnings

    from flexdownscale.errors import UndefinedMetricWarning
    from flexdownscale.metrics import crps_ensemble, downscaling_skill, rmse

    rng = np.random.default_rng(2)
    axis = np.arange(32.0)
    truth = xr.DataArray(rng.normal(size=(32, 32)), dims=("y", "x"), coords={"y": axis, "x": axis})
    ens = truth + xr.DataArray(rng.normal(size=(3, 32, 32)), dims=("member", "y", "x"))
    land = truth.x < 8
    masked, ens_masked = truth.where(~land), ens.where(~land)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skill = downscaling_skill(ens_masked, masked)
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            UndefinedMetricWarning,
            "lsd and spectral_ratio_small are NaN: spectra need gap-free fields, and pred has "
            "768 missing values and truth has 256 missing values; the other scores are over the "
            "valid points (fill the gaps, or crop them out, for the spectral scores)",
        )
    ]
    assert caught[0].filename == __file__
    assert np.isnan(skill["lsd"])
    assert np.isnan(skill["spectral_ratio_small"])
    assert skill["rmse"] == pytest.approx(float(rmse(ens_masked.mean("member"), masked)))
    assert skill["crps"] == pytest.approx(float(crps_ensemble(ens_masked, masked)))


def test_time_in_other_calendars_is_refused_with_the_conversion():
    """A noleap forecast against a datetime64 truth raised ShapeError showing dates that look
    the same and suggested xr.align(join='inner'), which leaves no time (then rmse = NaN
    without a word; reviewer-50). The error names both calendars and the conversion, and
    following it gives the score of the same fields."""
    import pandas as pd

    from flexdownscale.errors import ShapeError
    from flexdownscale.metrics import rmse

    times = pd.date_range("2019-03-01", periods=4, freq="6h")
    field = grid_field((4, 6, 8), ("time", "lat", "lon"), seed=2).assign_coords(time=times)
    obs = field + 0.5
    noleap = field.convert_calendar("noleap")
    with pytest.raises(ShapeError) as err:
        rmse(noleap, obs)
    assert str(err.value) == (
        "fcst's 'time' is in the noleap calendar (cftime) and obs's in the proleptic_gregorian "
        "calendar (numpy datetime64): the same dates in two calendars are different labels, "
        "so no time would match. Convert one to the other's calendar first, e.g. obs = "
        "obs.convert_calendar('noleap')"
    )
    with pytest.raises(
        ShapeError,
        match=r"e\.g\. obs = obs\.convert_calendar\("
        r"'proleptic_gregorian', use_cftime=False\)$",
    ):
        rmse(field, noleap + 0.5)
    with pytest.raises(ShapeError, match=r"noleap calendar .* 360_day calendar"):
        rmse(noleap, field.convert_calendar("360_day", align_on="year"))
    expected = float(rmse(field, obs))
    assert expected == pytest.approx(0.5)
    assert float(rmse(noleap, obs.convert_calendar("noleap"))) == expected
    back = (noleap + 0.5).convert_calendar("proleptic_gregorian", use_cftime=False)
    assert float(rmse(field, back)) == expected


def test_the_share_of_the_spacing_is_written_readably():
    # "differ by up to 5, 1e+02% of the grid spacing 5" where 100% was meant
    with pytest.raises(ShapeError, match=r"differ by up to 5, 100% of the grid spacing 5\)"):
        rmse(FC, OBS.assign_coords(lat=OBS.lat + 5.0))
    with pytest.raises(ShapeError, match=r"differ by up to 2\.5, 50% of the grid spacing 5\)"):
        rmse(FC, OBS.assign_coords(lat=OBS.lat + 2.5))
    with pytest.raises(ShapeError, match=r"differ by up to 1000, 200 times the grid spacing 5"):
        rmse(FC, OBS.assign_coords(lat=OBS.lat + 1000.0))


@pytest.mark.parametrize("reference_signed", [True, False])
def test_longitudes_in_the_other_convention_get_the_conversion(reference_signed):
    """A truth in 0..360 longitudes against a prediction in -180..180 printed "1.4e+05% of the
    grid spacing" and suggested regridding; the same points in two conventions."""
    lon = np.arange(-10.0, 2.0, 0.25)
    lat = np.arange(50.0, 52.0, 0.25)
    rng = np.random.default_rng(7)

    def on(longitudes):
        return xr.DataArray(
            rng.normal(size=(lat.size, lon.size)),
            dims=("lat", "lon"),
            coords={"lat": lat, "lon": ("lon", longitudes, {"units": "degrees_east"})},
        )

    signed, positive = on(lon), on(lon % 360)
    fcst, obs = (signed, positive) if reference_signed else (positive, signed)
    with pytest.raises(ShapeError) as info:
        rmse(fcst, obs)
    msg = str(info.value)
    assert "the same 'lon' points in two longitude conventions" in msg
    assert "grid spacing" not in msg
    assert "regrid" not in msg
    code = msg.split("`obs = ")[1].rstrip("`")
    assert code.endswith(".sortby('lon')")
    converted = eval(code, {"obs": obs})  # the conversion the message gives
    # by hand: each forecast column against the obs column at the same longitude
    columns = [list(obs.lon.values % 360).index(x) for x in fcst.lon.values % 360]
    expected = float(np.sqrt(np.mean((fcst.values - obs.values[:, columns]) ** 2)))
    assert float(rmse(fcst, converted)) == pytest.approx(expected, rel=1e-12)


def test_float32_coordinates_far_from_zero_are_the_same_points():
    """The round-off allowed is the larger of 1e-6 of the spacing and 8 float32 ulp at the
    coordinates' magnitude (docs/metrics.md): a 0.1 degree grid near 200 stored as float32
    differs from its float64 copy by ~6e-6, 6e-5 of the spacing."""
    lon64 = np.round(np.arange(200.0, 208.0, 0.1), 10)
    lon32 = lon64.astype(np.float32)
    assert 1e-6 * 0.1 < np.abs(lon32 - lon64).max() < 8 * np.finfo(np.float32).eps * 208
    rng = np.random.default_rng(1)
    f = xr.DataArray(rng.normal(size=lon64.size), dims="lon", coords={"lon": lon64})
    o = xr.DataArray(rng.normal(size=lon64.size), dims="lon", coords={"lon": lon32})
    expected = float(np.sqrt(np.mean((f.values - o.values) ** 2)))
    assert float(rmse(f, o)) == pytest.approx(expected, rel=1e-12)
