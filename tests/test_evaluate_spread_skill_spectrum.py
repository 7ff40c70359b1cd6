"""``evaluate`` reports the spread-skill ratio per wavenumber of an ensemble: a plot per
variable and a line of metrics.md giving its lowest and highest values and where they are, the
numbers those of ``metrics.spread_skill_spectrum`` over the same (gap-free) time steps."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import normalize_grid
from flexdownscale.evaluation import evaluate
from flexdownscale.metrics import spread_skill_spectrum

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def truth(shared_data):
    """Six hours of a 24 x 24 ERA5 corner."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        fine = normalize_grid(ds[["t2m"]].isel(time=slice(200, 206)))
        return fine.isel(latitude=slice(0, 24), longitude=slice(0, 24)).load()


def _ensemble(truth: xr.Dataset, noise: np.ndarray) -> xr.Dataset:
    da = truth["t2m"]
    return xr.Dataset(
        {"t2m": (("member", *da.dims), da.values[None] + noise, dict(da.attrs))},
        coords=truth.coords,
    )


def _line(report: str) -> str:
    return next(line for line in report.splitlines() if line.startswith("- `t2m`"))


def _lowest_highest(line: str) -> tuple[float, float]:
    found = re.search(r"from ([0-9.]+) \(.*?\) to ([0-9.]+) \(", line)
    assert found, line
    return float(found.group(1)), float(found.group(2))


def test_report_gives_the_ratio_per_wavenumber(truth, tmp_path):
    rng = np.random.default_rng(0)
    pred = _ensemble(truth, rng.normal(scale=0.5, size=(4, *truth["t2m"].shape)))
    truth.to_netcdf(tmp_path / "truth.nc")
    pred.to_netcdf(tmp_path / "pred.nc")
    report = evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
    assert "Spread-skill ratio per wavenumber" in report
    line = _line(report)
    direct = spread_skill_spectrum(pred["t2m"], truth["t2m"])
    direct = direct.sel(wavenumber=slice(None, direct.attrs["complete_wavenumber"]))
    lo, hi = _lowest_highest(line)
    assert lo == pytest.approx(float(direct.min()), abs=0.005)
    assert hi == pytest.approx(float(direct.max()), abs=0.005)
    assert "km)" in line  # the scales as wavelengths on a latitude / longitude grid
    assert "spread_skill_spectrum_t2m.png" in line
    assert (tmp_path / "r" / "spread_skill_spectrum_t2m.png").stat().st_size > 0


def test_gap_free_steps_only_and_members_that_do_not_differ(truth, tmp_path):
    rng = np.random.default_rng(1)
    pred = _ensemble(truth, rng.normal(scale=0.5, size=(3, *truth["t2m"].shape)))
    holed = truth.copy(deep=True)
    holed["t2m"][2, 5, 5] = np.nan  # one missing cell at the third hour
    holed.to_netcdf(tmp_path / "truth.nc")
    pred.to_netcdf(tmp_path / "pred.nc")
    report = evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
    steps = [0, 1, 3, 4, 5]
    direct = spread_skill_spectrum(pred["t2m"].isel(time=steps), truth["t2m"].isel(time=steps))
    direct = direct.sel(wavenumber=slice(None, direct.attrs["complete_wavenumber"]))
    lo, hi = _lowest_highest(_line(report))
    assert lo == pytest.approx(float(direct.min()), abs=0.005)
    assert hi == pytest.approx(float(direct.max()), abs=0.005)

    same = _ensemble(truth, np.zeros((3, *truth["t2m"].shape)) + 0.2)
    same.to_netcdf(tmp_path / "same.nc")
    truth.to_netcdf(tmp_path / "truth_whole.nc")
    report = evaluate(tmp_path / "same.nc", tmp_path / "truth_whole.nc", out=tmp_path / "s")
    assert _line(report) == "- `t2m`: none (the members do not differ); no plot."
    assert not (tmp_path / "s" / "spread_skill_spectrum_t2m.png").exists()


def test_one_member_has_no_such_line(truth, tmp_path):
    pred = _ensemble(truth, np.zeros((1, *truth["t2m"].shape)))
    truth.to_netcdf(tmp_path / "truth.nc")
    pred.to_netcdf(tmp_path / "pred.nc")
    report = evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
    assert "Spread-skill ratio per wavenumber" not in report


def test_a_global_ensemble_gets_the_ratio_per_zonal_wavenumber(tmp_path):
    """On a global grid the line and plot are per zonal wavenumber (the latitude circles'
    periodograms, latitudes weighted by area), the numbers those of the metric."""
    rng = np.random.default_rng(5)
    lat = np.linspace(-90.0, 90.0, 37)
    lon = np.arange(72) * 5.0
    coords = {
        "time": np.arange(4).astype("datetime64[D]").astype("datetime64[ns]"),
        "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    base = 280.0 + rng.normal(size=(4, lat.size, lon.size))
    truth = xr.Dataset({"t2m": (("time", "lat", "lon"), base, {"units": "K"})}, coords=coords)
    pred = _ensemble(truth, rng.normal(scale=0.5, size=(4, *base.shape)))
    truth.to_netcdf(tmp_path / "truth.nc")
    pred.to_netcdf(tmp_path / "pred.nc")
    report = evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
    assert "Spread-skill ratio per zonal wavenumber" in report
    line = _line(report)
    direct = spread_skill_spectrum(pred["t2m"], truth["t2m"], kind="zonal")
    lo, hi = _lowest_highest(line)
    assert lo == pytest.approx(float(direct.min()), abs=0.005)
    assert hi == pytest.approx(float(direct.max()), abs=0.005)
    j = int(direct.zonal_wavenumber[direct.argmin("zonal_wavenumber")])
    equator = 2e-3 * np.pi * 6371008.8 / j
    assert f"(zonal wavenumber {j}, {equator:,.0f} km on the equator)" in line
    assert (tmp_path / "r" / "spread_skill_spectrum_t2m.png").stat().st_size > 0
