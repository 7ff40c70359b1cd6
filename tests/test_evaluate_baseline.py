"""``flexdownscale evaluate --baseline``: a second prediction of the same truth (an interpolation
of the coarse input) scored the same way, and the skill of the prediction against it.

The truth is a corner of the real ERA5 file (levels: the ERA-Interim winds); the predictions are
built from it with known errors, so the expected scores follow from the metrics themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flexdownscale import metrics
from flexdownscale.cli import main
from flexdownscale.data import degrade, normalize_grid, up
from flexdownscale.evaluation import BASELINE_FOLDER, evaluate

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"
ERAINT = "era_interim/eraint_uv_monthly.nc"


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory) -> dict[str, Path]:
    """truth (4 times x 32 x 48), a 2-member ensemble near it, the bilinear interpolation of
    its x4 area mean, and a baseline holding another variable name."""
    folder = tmp_path_factory.mktemp("baseline")
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = normalize_grid(ds.isel(time=slice(430, 434)))
        truth = truth.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    rng = np.random.default_rng(0)
    noise = xr.DataArray(
        rng.normal(0.0, 0.2, (2, *truth["t2m"].shape)), dims=("member", *truth["t2m"].dims)
    )
    pred = (truth[["t2m"]].astype("float64") + noise).assign_coords(member=[0, 1])
    pred["t2m"].attrs = dict(truth["t2m"].attrs)
    coarse = degrade(truth, 4)
    coarse["t2m"].attrs = dict(truth["t2m"].attrs)
    bilinear = up(coarse, 4, method="bilinear").transpose(*truth["t2m"].dims, ...)
    paths = {
        "truth": truth,
        "pred": pred,
        "bilinear": bilinear,
        "other": bilinear.rename(t2m="tas"),
    }
    for name, ds in paths.items():
        ds.to_netcdf(folder / f"{name}.nc")
    return {name: folder / f"{name}.nc" for name in paths}


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_the_baseline_is_scored_the_same_way_and_the_skill_is_against_it(files, tmp_path):
    out = tmp_path / "report"
    report = evaluate(files["pred"], files["truth"], out=out, baseline=files["bilinear"])
    (row,) = _rows(out)
    (alone,) = _rows(out / BASELINE_FOLDER)  # the baseline's own report, as evaluate writes it
    assert alone == _rows(_evaluated(files["bilinear"], files["truth"], tmp_path / "alone"))[0]
    compared = row["baseline"]
    assert compared["file"] == str(files["bilinear"])
    assert compared["RMSE (ens. mean)"] == alone["RMSE (ens. mean)"]
    assert compared["LSD (dB)"] == alone["LSD (dB)"]
    # one field per point: its CRPS is its MAE (the CRPS of a single value), and so computed
    truth = xr.open_dataset(files["truth"])["t2m"]
    base = xr.open_dataset(files["bilinear"])["t2m"]
    weights = metrics.area_weights(truth)  # evaluate's means are area-weighted
    single = metrics.crps_ensemble(base.expand_dims(member=1), truth, fair=False, weights=weights)
    assert compared["CRPS"] == pytest.approx(float(single), rel=1e-9)
    assert compared["CRPS is its MAE"] is True
    assert compared["RMSE skill"] == pytest.approx(
        1 - row["RMSE (ens. mean)"] / alone["RMSE (ens. mean)"], rel=1e-12
    )
    assert compared["CRPS skill"] == pytest.approx(1 - row["CRPS"] / compared["CRPS"], rel=1e-12)
    assert 0 < compared["RMSE skill"] < 1  # 0.2 K noise beats interpolating a 1-degree field
    assert (out / "metrics.md").read_text(encoding="utf-8") == report
    assert f"Against the baseline {files['bilinear']}" in report
    assert "its CRPS is its MAE" in report
    line = report.strip().splitlines()[-1]
    assert line.startswith("| t2m | ")
    assert line.count("|") == 10


def test_a_prediction_against_itself_has_no_skill_and_a_perfect_baseline_none(files, tmp_path):
    evaluate(files["pred"], files["truth"], out=tmp_path / "same", baseline=files["pred"])
    (row,) = _rows(tmp_path / "same")
    assert row["baseline"]["RMSE skill"] == 0.0
    assert row["baseline"]["CRPS skill"] == 0.0
    assert "CRPS is its MAE" not in row["baseline"]  # an ensemble baseline has its own CRPS
    assert "its CRPS is its MAE" not in (tmp_path / "same" / "metrics.md").read_text()
    # the truth as its own baseline scores 0: no skill can be said (n/a, null in the JSON)
    report = evaluate(
        files["pred"], files["truth"], out=tmp_path / "perfect", baseline=files["truth"]
    )
    (row,) = _rows(tmp_path / "perfect")
    assert row["baseline"]["RMSE (ens. mean)"] == 0.0
    assert row["baseline"]["RMSE skill"] is None
    assert "| n/a |" in report.strip().splitlines()[-1]


def test_a_variable_the_baseline_lacks_is_said(files, tmp_path):
    pred = xr.open_dataset(files["pred"]).load()
    truth = xr.open_dataset(files["truth"]).load()
    pred["t2"], truth["t2"] = pred["t2m"] - 273.15, truth["t2m"] - 273.15
    pred["t2"].attrs = truth["t2"].attrs = {"units": "degC"}
    pred.to_netcdf(tmp_path / "pred2.nc")
    truth.to_netcdf(tmp_path / "truth2.nc")
    report = evaluate(
        tmp_path / "pred2.nc",
        tmp_path / "truth2.nc",
        out=tmp_path / "r",
        baseline=files["bilinear"],
    )
    rows = {row["variable"]: row for row in _rows(tmp_path / "r")}
    assert rows["t2"]["baseline"] == {"file": str(files["bilinear"]), "missing": True}
    assert rows["t2m"]["baseline"]["RMSE skill"] > 0
    assert "The baseline has no row for: `t2`." in report
    assert report.strip().splitlines()[-1].startswith("| t2 | ")


def test_levels_are_matched_row_by_row(shared_data, tmp_path):
    with xr.open_dataset(shared_data / ERAINT) as ds:
        truth = (
            ds[["u"]].isel(month=0, latitude=slice(0, None, 8), longitude=slice(0, None, 8)).load()
        )
    shift = xr.DataArray([0.5, 1.0, 2.0], dims="level", coords={"level": truth["level"]})
    pred = truth.astype("float64") + shift
    worse = truth.astype("float64") + 2 * shift
    for name, ds in (("truth", truth), ("pred", pred), ("worse", worse)):
        ds["u"].attrs = dict(truth["u"].attrs)
        ds.to_netcdf(tmp_path / f"{name}.nc")
    out = tmp_path / "levels"
    argv = ["evaluate", str(tmp_path / "pred.nc"), str(tmp_path / "truth.nc"), "--out", str(out)]
    assert main([*argv, "--baseline", str(tmp_path / "worse.nc")]) == 0
    rows = _rows(out)
    assert [row["level"] for row in rows] == [int(v) for v in truth["level"].values]
    for row in rows:  # a constant error per level: the baseline's is twice the prediction's
        assert row["baseline"]["RMSE skill"] == pytest.approx(0.5, rel=1e-9)
        assert row["baseline"]["RMSE (ens. mean)"] == pytest.approx(2 * row["RMSE (ens. mean)"])
    assert (out / BASELINE_FOLDER / "metrics.md").exists()


def _evaluated(pred: Path, truth: Path, out: Path) -> Path:
    evaluate(pred, truth, out=out)
    return out
