"""Every metric gives the same numbers under xarray's strict arithmetic option.

``xr.set_options(arithmetic_broadcast=False)`` (a strictness switch some users set globally)
made ``area_weights``, ``pearson_r``, ``ensemble_spread``, ``spread_skill_ratio`` and
``downscaling_skill`` fail with xarray's raw "Broadcasting is necessary" ValueError from inside
the package (reviewer-86): they broadcast explicitly now.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from flexdownscale import metrics as fm

LAT = np.linspace(50.0, 58.0, 16)
LON = np.linspace(-10.0, 2.0, 16)


def _field(rng, dims, offset=0.0, lon=LON, units="K"):
    coords = {"latitude": LAT, "longitude": lon, "time": np.arange(4)}
    shape = [3 if d == "member" else len(coords[d]) for d in dims]
    return xr.DataArray(
        rng.normal(size=shape) + 280.0 + offset,
        dims=dims,
        coords={d: coords[d] for d in dims if d != "member"},
        name="t2m",
        attrs={"units": units},
    )


def _calls():
    rng = np.random.default_rng(0)
    grid = ("time", "latitude", "longitude")
    truth = _field(rng, grid)
    ens = _field(rng, ("member", *grid), 0.1)
    pred = ens.mean("member")
    w = fm.area_weights(truth)
    u = _field(rng, grid, units="m s-1")
    whole = _field(rng, grid, lon=np.arange(0.0, 360.0, 22.5))
    return {
        "area_weights": lambda: fm.area_weights(truth),
        "area_weights_sum": lambda: fm.area_weights(truth, normalize="sum"),
        "bias": lambda: fm.bias(pred, truth, weights=w),
        "mae": lambda: fm.mae(pred, truth, weights=w),
        "mse": lambda: fm.mse(pred, truth, weights=w),
        "rmse": lambda: fm.rmse(pred, truth, weights=w),
        "pearson_r": lambda: fm.pearson_r(pred, truth, weights=w),
        "rfne": lambda: fm.rfne(pred, truth),
        "psnr": lambda: fm.psnr(pred, truth, data_range=10.0),
        "ssim": lambda: fm.ssim(pred, truth, data_range=10.0, win_size=7),
        "crps_ensemble": lambda: fm.crps_ensemble(ens, truth, weights=w),
        "ensemble_mean": lambda: fm.ensemble_mean(ens),
        "ensemble_spread": lambda: fm.ensemble_spread(ens),
        "spread_skill_ratio": lambda: fm.spread_skill_ratio(ens, truth, weights=w),
        "spread_skill_parts": lambda: fm.spread_skill_ratio(ens, truth, include_components=True),
        "rank_histogram": lambda: fm.rank_histogram(ens, truth),
        "power_spectrum": lambda: fm.power_spectrum(truth),
        "mean_spectrum": lambda: fm.mean_spectrum(truth),
        "zonal_spectrum": lambda: fm.zonal_spectrum(whole),
        "kinetic_energy_spectrum": lambda: fm.kinetic_energy_spectrum(u, 0.5 * u),
        "log_spectral_distance": lambda: fm.log_spectral_distance(
            fm.power_spectrum(pred), fm.power_spectrum(truth)
        ),
        "downscaling_skill": lambda: fm.downscaling_skill(ens, truth, weights=w),
        "downscaling_skill_datasets": lambda: fm.downscaling_skill(
            ens.to_dataset(), truth.to_dataset()
        )["t2m"],
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_metrics_under_arithmetic_broadcast_false(name):
    call = _calls()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = call()
        with xr.set_options(arithmetic_broadcast=False):
            got = call()
    if isinstance(expected, dict):
        assert got == pytest.approx(expected, nan_ok=True)
    else:
        xr.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
