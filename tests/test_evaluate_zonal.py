"""Spectra of ``flexdownscale evaluate`` on global grids: zonal, along each latitude circle.

On a global latitude/longitude grid the isotropic 2-D spectrum took the mean latitude's (the
equator's) spacing for every row, so its wavenumbers were nominal away from it; evaluate now
takes ``metrics.zonal_spectrum`` there, averaged over the latitudes, and says so in the report.
Regional and Cartesian grids keep the isotropic spectrum. ``power_spectrum`` itself warns over a
longitude that spans the whole circle, and only there.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import flexdownscale.plot
from flexdownscale import metrics
from flexdownscale.cli import main
from flexdownscale.errors import FlexDownscaleWarning
from flexdownscale.metrics._utils import EARTH_RADIUS

ERAINT = Path("era_interim") / "eraint_uv_monthly.nc"
ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"
EUR11 = Path("grids") / "tas_rotated_grid_EUR11.nc"
ZONAL_LINE = "Spectra: zonal, as the grid is global (its longitude spans the whole circle)"


@pytest.fixture
def plotted(monkeypatch) -> list[tuple[str, dict]]:
    """The (title, curves) of every spectrum plot evaluate draws: the spectra it scored."""
    seen: list[tuple[str, dict]] = []
    original = flexdownscale.plot.plot_spectra

    def spy(curves, **kwargs):
        seen.append((kwargs.get("title", ""), {k: v.copy() for k, v in curves.items()}))
        return original(curves, **kwargs)

    monkeypatch.setattr(flexdownscale.plot, "plot_spectra", spy)
    return seen


def _evaluate(pred: Path, truth: Path, out: Path, capsys, *extra: str) -> tuple[str, list]:
    argv = ["evaluate", str(pred), str(truth), "--out", str(out), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    rows = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return (out / "metrics.md").read_text(encoding="utf-8"), rows


def _global_field(k: int, amplitude: xr.DataArray) -> xr.DataArray:
    """``amplitude(lat) cos(k lon)`` on a global 2.5-degree grid, two times."""
    lat = np.linspace(-90.0, 90.0, 73)
    lon = np.arange(144) * 2.5
    values = np.cos(k * np.deg2rad(lon))[None, None, :] * np.ones((2, lat.size, 1))
    da = xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={
            "time": np.array(["2001-01-01", "2001-01-02"], dtype="datetime64[ns]"),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
        attrs={"units": "K"},
    )
    return (da * amplitude).assign_attrs(units="K")


def test_one_zonal_wavenumber_puts_all_power_at_it(tmp_path, capsys, plotted):
    """A field ``cos(lat) cos(k lon)`` on every latitude circle: the zonal spectrum of a row is
    ``E_k = C P_k`` with ``C = 2 pi R cos(lat)`` and ``P_k = cos(lat)^2 / 2`` (the variance of
    the cosine) and nothing elsewhere; averaged over the latitudes, ``E_k = mean(pi R
    cos(lat)^3)``. A two-member prediction of amplitudes 1 and 1/2 has the member-averaged
    ``(1 + 1/4) / 2`` of it."""
    k = 5
    truth = _global_field(
        k, np.cos(np.deg2rad(xr.DataArray(np.linspace(-90, 90, 73), dims="latitude")))
    )
    truth.to_dataset(name="t2m").to_netcdf(tmp_path / "truth.nc")
    pred = xr.concat([truth, 0.5 * truth], dim="member").assign_attrs(units="K")
    pred.to_dataset(name="t2m").to_netcdf(tmp_path / "pred.nc")
    text, _ = _evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", tmp_path / "out", capsys)
    assert ZONAL_LINE in text
    assert "LSD: log-spectral distance of the member-averaged zonal power spectra." in text
    ((title, curves),) = plotted
    assert title == "t2m: zonal power spectra"
    lat = np.deg2rad(np.linspace(-90.0, 90.0, 73))
    circle = np.where(np.abs(lat) < np.pi / 2, 2 * np.pi * EARTH_RADIUS * np.cos(lat), 0)
    expected = np.mean(circle * np.cos(lat) ** 2 / 2)
    for name, share in (("truth", 1.0), ("prediction", (1.0 + 0.25) / 2)):
        curve = curves[name]
        assert curve.dims == ("zonal_wavenumber",)
        np.testing.assert_array_equal(curve["zonal_wavenumber"], np.arange(1, 73))
        assert float(curve.sel(zonal_wavenumber=k)) == pytest.approx(share * expected, rel=1e-12)
        others = curve.where(curve["zonal_wavenumber"] != k, drop=True)
        assert float(np.abs(others).max()) < 1e-12 * share * expected


@pytest.fixture(scope="module")
def eraint(shared_data, tmp_path_factory) -> Path:
    """truth.nc: ERA-Interim u at 500 hPa, January and July, every 4th point (3 degrees, 61 x
    120, global); smooth.nc: its 5-point running mean along each latitude circle (periodic),
    whose zonal spectrum is the truth's times ``(sin(5 pi j / N) / (5 sin(pi j / N)))^2``."""
    root = tmp_path_factory.mktemp("eraint")
    with xr.open_dataset(shared_data / ERAINT) as ds:
        truth = ds[["u"]].sel(level=500).isel(latitude=slice(None, None, 4)).load()
    truth = truth.isel(longitude=slice(None, None, 4))
    truth.to_netcdf(root / "truth.nc")
    values = truth["u"].astype("float64")  # the truth's float32 values, smoothed in float64
    smooth = sum(values.roll(longitude=m) for m in range(-2, 3)) / 5
    truth.assign(u=smooth.assign_attrs(truth["u"].attrs)).to_netcdf(root / "smooth.nc")
    return root


def test_a_global_file_is_scored_with_zonal_spectra(eraint, tmp_path, capsys, plotted):
    """The running mean's transfer function, exactly: the ratio of the spectra evaluate scored
    is ``|H(j)|^2`` at every zonal wavenumber (zero at j = N/5, 2N/5), which a zonal spectrum
    gives on every row alike; the LSD is that of the latitude-averaged zonal spectra."""
    text, (row,) = _evaluate(
        eraint / "smooth.nc", eraint / "truth.nc", tmp_path / "out", capsys, "--dims", "time=month"
    )
    assert ZONAL_LINE in text
    assert "LSD: log-spectral distance of the zonal power spectra." in text
    ((_, curves),) = plotted
    n = 120
    j = np.arange(1, n // 2 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = (np.sin(5 * np.pi * j / n) / (5 * np.sin(np.pi * j / n))) ** 2
    ratio = (curves["prediction"] / curves["truth"]).values
    np.testing.assert_allclose(ratio, gain, atol=1e-12)
    with xr.open_dataset(eraint / "smooth.nc") as p, xr.open_dataset(eraint / "truth.nc") as t:
        spectra = [metrics.sample_mean_spectrum(metrics.zonal_spectrum(f["u"])) for f in (p, t)]
    lsd = float(metrics.log_spectral_distance(*spectra))
    assert row["LSD (dB)"] == pytest.approx(lsd, rel=1e-9)


def test_a_regional_window_of_a_global_grid_keeps_the_isotropic_spectrum(
    eraint, tmp_path, capsys, plotted
):
    """A prediction over part of the circle (a --bbox crop, say) against the global truth: its
    grid is regional, so the DCT, as before, with no line on zonal spectra and no warning."""
    with xr.open_dataset(eraint / "smooth.nc") as ds:
        ds.isel(longitude=slice(0, 40)).to_netcdf(tmp_path / "window.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        text, _ = _evaluate(
            tmp_path / "window.nc",
            eraint / "truth.nc",
            tmp_path / "out",
            capsys,
            "--dims",
            "time=month",
        )
    assert "LSD: log-spectral distance of the DCT power spectra." in text
    assert "Spectra: zonal" not in text
    ((title, curves),) = plotted
    assert title == "u: power spectra"
    assert curves["truth"].dims == ("wavenumber",)


def test_the_shipped_models_regional_box_keeps_its_report(shared_data, tmp_path, capsys):
    """The ERA5 box of era5-t2m-x4 (49 x 0.25 degrees of longitude) is regional: the DCT, the
    report's scores line as before, and no warning from its spectra."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = ds.isel(time=[0, 1]).load()
    truth.to_netcdf(tmp_path / "truth.nc")
    noise = np.random.default_rng(1).normal(0.0, 0.3, (2, *truth["t2m"].shape))
    pred = (truth["t2m"].expand_dims(member=2) + noise.astype("float32")).to_dataset()
    pred["t2m"].attrs = dict(truth["t2m"].attrs)
    pred.to_netcdf(tmp_path / "pred.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        text, _ = _evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", tmp_path / "out", capsys)
    assert text.splitlines()[2] == (
        "Means weighted by cell area (cos latitude); CRPS fair, spread/skill Fortin-corrected "
        "over the 2 members; LSD: log-spectral distance of the member-averaged DCT power spectra."
    )
    assert "Spectra: zonal" not in text


def test_power_spectrum_warns_over_a_whole_circle_of_longitude_only(shared_data):
    with xr.open_dataset(shared_data / ERAINT) as ds:
        u = ds["u"].isel(month=0, level=1).load()
    with pytest.warns(FlexDownscaleWarning, match="spans the whole circle.*Use zonal_spectrum"):
        metrics.power_spectrum(u)
    with pytest.warns(FlexDownscaleWarning, match="spans the whole circle"):  # a band: too
        metrics.kinetic_energy_spectrum(
            u.sel(latitude=slice(60, 30)), u.sel(latitude=slice(60, 30))
        )
    with xr.open_dataset(shared_data / ERA5) as ds:
        era5 = ds["t2m"].isel(time=[0, 1]).load()
    with xr.open_dataset(shared_data / EUR11) as ds:
        eur11 = ds["tas"].isel(time=0, height=0).load()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        metrics.power_spectrum(u, spacing=83e3)  # the user's spacing: their choice, no warning
        metrics.power_spectrum(u.sel(latitude=slice(60, 30), longitude=slice(-60, 0)))
        metrics.power_spectrum(era5)  # the shipped era5-t2m-x4 model's box
        metrics.power_spectrum(eur11)  # rotated pole, 46.6 degrees of rlon
        metrics.zonal_spectrum(u)
