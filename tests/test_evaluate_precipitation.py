"""``flexdownscale evaluate`` on precipitation (reviewer 118): a tiny model that rained 4.5
times the truth's amount on 56% of the cells against 3.5% got a bias of 0.0067, spread/skill
1.10 and an LSD of 6 dB, which reveal nothing. The report now gives every variable's truth mean
beside its bias, and precipitation-like variables their wet fractions, FSS and 99th
percentiles at a stated threshold. Also: a few NaN cells in one frame of the truth no longer
remove the whole file's spectra, and the note under the table says what metrics.json holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import flexdownscale.metrics as fm
from flexdownscale.cli import main
from flexdownscale.errors import ConfigError, FlexDownscaleWarning, UnitsError
from flexdownscale.evaluation import evaluate

#: 0.1 mm/h over the 10-minute time step of the files below
TEN_MINUTES = 0.1 / 6


def _grid(nt: int, ny: int, nx: int) -> dict[str, xr.DataArray]:
    """Coordinates of a projected km grid with 10-minute time steps (the radar file's)."""
    time = np.datetime64("2020-10-31T12:00", "ns") + np.arange(nt) * np.timedelta64(10, "m")
    return {
        "time": xr.DataArray(time, dims="time"),
        "y": xr.DataArray(0.5 * np.arange(ny), dims="y", attrs={"units": "km", "axis": "Y"}),
        "x": xr.DataArray(0.5 * np.arange(nx), dims="x", attrs={"units": "km", "axis": "X"}),
    }


def _rain(nt: int = 3, ny: int = 40, nx: int = 36, seed: int = 0) -> xr.DataArray:
    """Radar-like accumulations: dry but for a few cells, in steps of 0.05 kg m-2, float32."""
    rng = np.random.default_rng(seed)
    wet = rng.random((nt, ny, nx)) < 0.06
    values = np.where(wet, 0.05 * np.ceil(rng.exponential(0.1, (nt, ny, nx)) / 0.05), 0.0)
    return xr.DataArray(
        values.astype(np.float32),
        dims=("time", "y", "x"),
        coords=_grid(nt, ny, nx),
        attrs={"units": "kg m-2", "standard_name": "precipitation_amount"},
    )


def _drizzle(truth: xr.DataArray, seed: int = 1) -> xr.DataArray:
    """Three members that rain 0 to 0.04 kg m-2 everywhere on top of a shifted truth."""
    rng = np.random.default_rng(seed)
    members = [
        truth.roll(x=m, roll_coords=False) + rng.uniform(0.0, 0.04, truth.shape) for m in range(3)
    ]
    out = xr.concat(members, dim="member").astype(np.float32)
    out.attrs = dict(truth.attrs)
    return out


def _write(folder: Path, **fields: tuple[xr.DataArray, xr.DataArray]) -> Path:
    """``folder`` (made) with pred.nc and truth.nc holding the (prediction, truth) pair of each
    named field (a new folder for each pair of files: the report's files stay open)."""
    folder.mkdir(parents=True, exist_ok=True)
    xr.Dataset({name: pair[0] for name, pair in fields.items()}).to_netcdf(folder / "pred.nc")
    xr.Dataset({name: pair[1] for name, pair in fields.items()}).to_netcdf(folder / "truth.nc")
    return folder


def _report(folder: Path, name: str = "report", **options) -> tuple[str, list[dict]]:
    """(metrics.md text, metrics.json rows) of ``folder``'s files, reported in ``name``."""
    text = evaluate(folder / "pred.nc", folder / "truth.nc", out=folder / name, **options)
    rows = json.loads((folder / name / "metrics.json").read_text(encoding="utf-8"))
    return text, rows


def _header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("| variable |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _inverted_cdf(values: np.ndarray, q: float = 0.99) -> float:
    values = np.asarray(values, dtype=np.float32).ravel()
    return float(np.quantile(values[~np.isnan(values)], q, method="inverted_cdf"))


# ---------------------------------------------------------------------------------------------
# the precipitation columns
# ---------------------------------------------------------------------------------------------
def test_a_model_that_drizzles_everywhere_is_revealed(tmp_path):
    truth = _rain()
    pred = _drizzle(truth)
    _write(tmp_path, precipitation=(pred, truth))
    text, (row,) = _report(tmp_path)
    assert _header(text) == [
        "variable",
        "units",
        "RMSE (ens. mean)",
        "MAE (ens. mean)",
        "truth mean",
        "bias",
        "CRPS",
        "spread/skill",
        "LSD (dB)",
        "wet fraction (truth)",
        "wet fraction (prediction)",
        "FSS (5x5 cells)",
        "FSS (25x25 cells)",
        "q99 (truth)",
        "q99 (prediction)",
    ]
    t, p = truth.values.astype(float), pred.values.astype(float)
    assert row["truth mean"] == pytest.approx(t.mean(), rel=1e-6)
    assert row["bias"] == pytest.approx(p.mean() - t.mean(), rel=1e-5)
    assert row["threshold"] == pytest.approx(TEN_MINUTES)
    assert row["wet fraction (truth)"] == pytest.approx((t >= TEN_MINUTES).mean())
    assert row["wet fraction (prediction)"] == pytest.approx((p >= TEN_MINUTES).mean())
    assert row["wet fraction (prediction)"] > 5 * row["wet fraction (truth)"]
    for window in (5, 25):
        expected = fm.fss(pred, truth, threshold=TEN_MINUTES, window=window)
        assert row[f"FSS ({window}x{window} cells)"] == pytest.approx(float(expected), abs=1e-12)
    assert row["q99 (truth)"] == _inverted_cdf(truth.values)
    assert row["q99 (prediction)"] == _inverted_cdf(pred.values)
    assert "0.01667 kg m-2 (0.1 mm/h over the truth's 10-minute time step)" in text
    # the table shows the numbers metrics.json holds
    cells = next(line for line in text.splitlines() if line.startswith("| precipitation |"))
    assert f"| {row['truth mean']:.4g} | {row['bias']:.4g} |" in cells
    assert f"| {row['wet fraction (truth)']:.4g} | {row['wet fraction (prediction)']:.4g} |" in (
        cells
    )


def test_other_variables_keep_their_columns_and_gain_the_truth_mean(tmp_path):
    truth = _rain()
    temperature = (280.0 + truth * 10).assign_attrs(units="K", standard_name="air_temperature")
    pred_t = (temperature + 0.5).expand_dims(member=[0, 1, 2]).assign_attrs(units="K")
    _write(
        tmp_path,
        t2m=(pred_t, temperature),
        precipitation=(_drizzle(truth), truth),
    )
    text, rows = _report(tmp_path)
    t2m, rain = rows
    assert list(t2m) == [
        "variable",
        "units",
        "RMSE (ens. mean)",
        "MAE (ens. mean)",
        "truth mean",
        "bias",
        "CRPS",
        "spread/skill",
        "LSD (dB)",
    ]
    # summed in float64: the exact mean of the float32 values
    assert t2m["truth mean"] == pytest.approx(
        float(temperature.astype("float64").mean()), rel=1e-12
    )
    assert "wet fraction (truth)" in rain
    # one table: the temperature's cells of the precipitation columns are empty, not n/a
    line = next(line for line in text.splitlines() if line.startswith("| t2m |"))
    assert line.endswith("|  |  |  |  |  |  |")
    assert "n/a" not in text


def test_the_threshold_option_is_converted_into_the_variables_units(tmp_path):
    truth = _rain()
    _write(tmp_path, precipitation=(_drizzle(truth), truth))
    text, (row,) = _report(tmp_path, threshold="0.1 mm", fss_windows=[3])
    assert row["threshold"] == pytest.approx(0.1)  # 1 mm of water is 1 kg m-2
    assert "0.1 kg m-2 (--threshold '0.1 mm', as liquid water)" in text
    assert row["wet fraction (truth)"] == pytest.approx(float((truth >= 0.1).mean()))
    assert "FSS (3x3 cells)" in row
    assert "FSS (5x5 cells)" not in row
    _, (row,) = _report(tmp_path, "g", threshold="100 g m-2")
    assert row["threshold"] == pytest.approx(0.1)
    with pytest.raises(UnitsError, match=r"into the units of 'precipitation' \('kg m-2'\)"):
        _report(tmp_path, "k", threshold="0.1 K")
    for bad in ("0.1", "wet", "0.1 parsecs of rain"):
        with pytest.raises(ConfigError, match="--threshold"):
            _report(tmp_path, "x", threshold=bad)
    with pytest.raises(ConfigError, match="FSS windows"):
        _report(tmp_path, "w", fss_windows=[0])


def test_rates_take_a_rain_rate_and_a_window_larger_than_the_grid_is_na(tmp_path):
    truth = (_rain(ny=12, nx=10) / 600.0).assign_attrs(
        units="kg m-2 s-1", standard_name="precipitation_flux"
    )
    pred = (_drizzle(truth * 600.0) / 600.0).assign_attrs(truth.attrs)
    _write(tmp_path, pr=(pred, truth))
    text, (row,) = _report(tmp_path)
    assert row["threshold"] == pytest.approx(0.1 / 3600)
    assert "2.778e-05 kg m-2 s-1 (a rain rate of 0.1 mm/h)" in text
    assert row["FSS (25x25 cells)"] is None
    assert "non_finite" not in row
    assert "an FSS window larger than the grid" in text
    assert text.rstrip().endswith("metrics.json holds null for each.")


def test_the_q99_is_weighted_by_cell_area_on_latitude_grids(tmp_path):
    rng = np.random.default_rng(3)
    lat = xr.DataArray(np.linspace(40.0, 70.0, 16), dims="lat", attrs={"units": "degrees_north"})
    lon = xr.DataArray(np.linspace(0.0, 15.0, 16), dims="lon", attrs={"units": "degrees_east"})
    time = _grid(2, 1, 1)["time"]
    values = rng.exponential(1.0, (2, 16, 16)) * (rng.random((2, 16, 16)) < 0.3)
    truth = xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": time, "lat": lat, "lon": lon},
        attrs={"units": "mm", "standard_name": "precipitation_amount"},
    )
    pred = (truth * 1.5).expand_dims(member=2).assign_attrs(truth.attrs)
    _write(tmp_path, tp=(pred, truth))
    _, (row,) = _report(tmp_path)
    w = fm.area_weights(truth).broadcast_like(truth).values.ravel()
    expected = np.quantile(
        truth.values.astype(np.float32).ravel(), 0.99, weights=w, method="inverted_cdf"
    )
    assert row["q99 (truth)"] == float(expected)
    assert row["q99 (truth)"] != _inverted_cdf(truth.values)  # not the unweighted one
    assert row["wet fraction (truth)"] == pytest.approx(
        float(fm.exceedance_frequency(truth, threshold=0.1 / 6, weights=fm.area_weights(truth)))
    )


def test_a_variable_the_model_normalized_with_log1p_counts_if_the_truth_is_not_negative(
    tmp_path,
):
    truth = _rain().assign_attrs(standard_name="unknown")
    pred = _drizzle(truth)
    model = tmp_path / "model"
    model.mkdir()
    record = {
        "variables": [{"name": "rr", "transform": "log1p"}, {"name": "t", "transform": "none"}]
    }
    (model / "normalization.json").write_text(json.dumps(record))
    recorded = {"flexdownscale_model": str(model)}

    def files(folder: Path, pred: xr.DataArray, truth: xr.DataArray, attrs: dict) -> Path:
        folder.mkdir()
        xr.Dataset({"rr": pred}, attrs=attrs).to_netcdf(folder / "pred.nc")
        xr.Dataset({"rr": truth}).to_netcdf(folder / "truth.nc")
        return folder

    _, (row,) = _report(files(tmp_path / "a", pred, truth, recorded))
    assert "wet fraction (truth)" in row
    # a truth with a negative value (an anomaly, not an amount) is no precipitation
    _, (row,) = _report(files(tmp_path / "b", pred - 0.01, truth - 0.01, recorded))
    assert "wet fraction (truth)" not in row
    # without the model's record (a file of another tool) and no standard_name: none either
    _, (row,) = _report(files(tmp_path / "c", pred, truth, {}))
    assert "wet fraction (truth)" not in row


def test_the_variables_own_transform_attribute_counts_without_the_model_folder(tmp_path):
    """A prediction whose model folder was moved (or a Hub reference, or a shipped name) still
    says which variable its model normalized with log1p: each output variable records it as
    ``flexdownscale_transform`` (written by the Downscaler and the Forecaster)."""
    truth = _rain().assign_attrs(standard_name="unknown")
    pred = _drizzle(truth)
    moved = {"flexdownscale_model": str(tmp_path / "moved-away")}
    rows = {}
    # another transform, or none recorded, is no precipitation (without a standard_name)
    for transform in ("log1p", "sqrt"):
        folder = tmp_path / transform
        folder.mkdir()
        marked = pred.assign_attrs(flexdownscale_transform=transform)
        xr.Dataset({"rr": marked}, attrs=moved).to_netcdf(folder / "pred.nc")
        xr.Dataset({"rr": truth}).to_netcdf(folder / "truth.nc")
        _, (rows[transform],) = _report(folder)
    wet = float((truth >= TEN_MINUTES).mean())
    assert rows["log1p"]["wet fraction (truth)"] == pytest.approx(wet)
    assert "wet fraction (truth)" not in rows["sqrt"]


def test_the_report_says_the_device_batch_size_and_threads_and_the_bbox(tmp_path):
    """What changes a run's float32 rounding (device, batch size, threads) and the region cut
    out (bbox) are in the prediction's attributes: the report says them, metrics.json keeps
    them."""
    truth = _rain()
    recorded = {
        "flexdownscale_model": "era5-t2m-x4",
        "flexdownscale_sampler": "ddim",
        "flexdownscale_steps": 2,
        "flexdownscale_device": "cpu",
        "flexdownscale_batch_size": "auto",
        "flexdownscale_torch_threads": 2,
        "flexdownscale_bbox": "-2, 50, 1, 53",
    }
    folder = tmp_path / "a"
    folder.mkdir()
    xr.Dataset({"rr": _drizzle(truth)}, attrs=recorded).to_netcdf(folder / "pred.nc")
    xr.Dataset({"rr": truth}).to_netcdf(folder / "truth.nc")
    text, (row,) = _report(folder)
    assert "bbox -2, 50, 1, 53, on cpu (batch size auto, 2 threads)" in text
    assert row["prediction"] == {
        "model": "era5-t2m-x4",
        "sampler": "ddim",
        "steps": 2,
        "device": "cpu",
        "batch_size": "auto",
        "torch_threads": 2,
        "bbox": "-2, 50, 1, 53",
    }


def test_the_cli_options(tmp_path, capsys):
    truth = _rain()
    _write(tmp_path, precipitation=(_drizzle(truth), truth))
    base = ["evaluate", str(tmp_path / "pred.nc"), str(tmp_path / "truth.nc"), "--out"]
    argv = [*base, str(tmp_path / "c"), "--threshold", "0.2 kg m-2", "--fss-window", "3,7"]
    assert main(argv) == 0, capsys.readouterr().err
    row = json.loads((tmp_path / "c" / "metrics.json").read_text())[0]
    assert row["threshold"] == pytest.approx(0.2)
    assert [k for k in row if k.startswith("FSS")] == ["FSS (3x3 cells)", "FSS (7x7 cells)"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*base, str(tmp_path / "d"), "--fss-window", "3,x"])
    assert stop.value.code == 2
    assert "--fss-window: '3,x': give the FSS windows' sides" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "e"), "--threshold", "0.2"]) == 2
    assert "has no units" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# spectra over the time steps without gaps
# ---------------------------------------------------------------------------------------------
def test_a_few_missing_cells_leave_out_their_time_step_not_the_spectra(tmp_path):
    truth = _rain(nt=4)
    pred = _drizzle(truth)
    gappy = truth.copy(deep=True)
    gappy[2, 5:7, 3:5] = np.nan  # 4 cells of one of 4 time steps
    _write(tmp_path, precipitation=(pred, gappy))
    text, (row,) = _report(tmp_path)
    assert row["LSD (dB)"] is not None
    assert row["LSD time steps"] == {"used": 3, "left_out": 1}
    kept = [0, 1, 3]
    expected = fm.log_spectral_distance(
        fm.mean_spectrum(pred.isel(time=kept), dims=("y", "x")),
        fm.mean_spectrum(truth.isel(time=kept), dims=("y", "x")),
    )
    assert row["LSD (dB)"] == pytest.approx(float(expected), rel=1e-9)
    assert (
        "`precipitation` (4 missing values in the truth, in 1 of its 4 time steps): LSD and "
        "spectrum plot over the 3 time steps without gaps"
    ) in text
    assert (tmp_path / "report" / "spectra_precipitation.png").exists()
    assert "n/a" not in text
    # every time step with a gap: no LSD (n/a), as before
    gappy[:, 0, 0] = np.nan
    text, (row,) = _report(_write(tmp_path / "all", precipitation=(pred, gappy)))
    assert row["LSD (dB)"] is None
    assert "in each of its 4 time steps): no LSD or spectrum plot" in text
    assert not (tmp_path / "all" / "report" / "spectra_precipitation.png").exists()


def test_forecast_leads_with_gaps_lose_only_their_own_lsd(tmp_path):
    truth = _rain(nt=3, seed=4)
    pred = _drizzle(truth).rename(time="lead").assign_coords(lead=[1, 2, 3])
    pred = pred.assign_coords(valid_time=("lead", truth["time"].values))
    gappy = truth.copy(deep=True)
    gappy[1, 0, 0] = np.nan
    _write(tmp_path, precipitation=(pred, gappy))
    _report(tmp_path)
    leads = json.loads((tmp_path / "report" / "metrics_by_lead.json").read_text())
    assert [row["LSD (dB)"] is None for row in leads] == [False, True, False]
    for k, row in enumerate(leads):
        t = truth.isel(time=k).values
        assert row["wet fraction (truth)"] == pytest.approx(
            (t[~np.isnan(gappy.isel(time=k).values)] >= TEN_MINUTES).mean()
        )
        assert "FSS (5x5 cells)" in row
        assert "truth mean" in row


# ---------------------------------------------------------------------------------------------
# the note on n/a, nan and inf
# ---------------------------------------------------------------------------------------------
def test_the_note_says_what_metrics_json_holds(tmp_path):
    truth = _rain(nt=2)
    temperature = (280.0 + truth * 10).assign_attrs(units="K", standard_name="air_temperature")
    gappy = temperature.copy(deep=True)
    gappy[:, 0, 0] = np.nan  # no gap-free time step: LSD n/a, no non_finite entry
    pred = (temperature + 0.5).expand_dims(member=[0, 1]).assign_attrs(units="K")
    _write(tmp_path, t2m=(pred, gappy))
    text, (row,) = _report(tmp_path)
    assert "non_finite" not in row
    assert "`n/a`: not computed" in text
    assert "non_finite entry" not in text
    assert "metrics.json holds null for each." in text
    # n/a and nan together: the non_finite entry names nan only
    same = gappy.expand_dims(member=[0, 1]).assign_attrs(units="K")
    text, (row,) = _report(_write(tmp_path / "both", t2m=(same, gappy)))
    assert row["non_finite"] == {"spread/skill": "nan"}
    assert "with a non_finite entry naming nan (none for n/a)." in text


def test_a_threshold_without_precipitation_is_said_to_be_unused(tmp_path):
    truth = (280.0 + _rain()).assign_attrs(units="K", standard_name="air_temperature")
    pred = (truth + 0.5).expand_dims(member=[0, 1]).assign_attrs(truth.attrs)
    folder = _write(tmp_path, t2m=(pred, truth))
    with pytest.warns(FlexDownscaleWarning, match=r"--threshold '0.1 mm' is not used"):
        _, (row,) = _report(folder, threshold="0.1 mm")
    assert "threshold" not in row


@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.9, 0.99, 1.0])
def test_the_two_histograms_give_numpys_inverted_cdf_quantile(q):
    from flexdownscale.evaluation import _lazy_histogram, _quantile_bin, _quantile_value

    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            rng.normal(0.0, 50.0, 4000),  # negative and positive
            np.zeros(3000),  # ties
            np.round(rng.exponential(1.0, 2000), 1),  # quantized
            [np.inf, -np.inf, np.nan, -0.0, 1e-30, -1e30],
        ]
    )
    rng.shuffle(values)
    field = xr.DataArray(values.reshape(-1, 6), dims=("time", "x")).chunk({"time": 97})
    weights = xr.DataArray(rng.uniform(0.1, 2.0, 6), dims="x")
    for w in (None, weights):
        found = _quantile_bin(_lazy_histogram(field, w).compute(), q)
        assert found is not None
        fine = _lazy_histogram(field, w, high=found[0]).compute()
        finite = ~np.isnan(values)
        expected = np.quantile(
            values[finite].astype(np.float32),
            q,
            weights=None if w is None else np.tile(w.values, values.size // 6)[finite],
            method="inverted_cdf",
        )
        assert _quantile_value(*found, fine) == float(expected)
