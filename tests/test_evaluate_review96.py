"""Review 96 of ``flexdownscale evaluate``: the report did not say a prediction was made with
the coarse-cell constraint (``conserve``), though it changes the scores (bias -1.8e-06 against
-0.025 on one window); ``metrics.json`` held ``null`` alike for an infinite LSD (a prediction
with power where the truth has none), an undefined spread/skill (0 / 0) and a score left out;
and a prediction without an ensemble got "RMSE (ens. mean)" headings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_evaluate_provenance import ERA5

from flexdownscale.cli import main
from flexdownscale.data import degrade, normalize_grid


@pytest.fixture(scope="module")
def root(shared_data, tmp_path_factory) -> Path:
    """A folder with truth.nc (two ERA5 hours, 32 x 48), its shipped-model predictions
    pred.nc (2 members, DDIM 2 steps) and conserved.nc (the same with conserve="additive")."""
    root = tmp_path_factory.mktemp("review96")
    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=[0, 1]))
    fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    coarse.to_netcdf(root / "coarse.nc")
    fine.to_netcdf(root / "truth.nc")
    base = ["downscale", str(root / "coarse.nc")]
    opts = ["--model", "era5-t2m-x4", "--steps", "2", "--members", "2", "--seed", "1", "--quiet"]
    assert main([*base, str(root / "pred.nc"), *opts]) == 0
    assert main([*base, str(root / "conserved.nc"), *opts, "--conserve", "additive"]) == 0
    return root


def _evaluate(root: Path, pred: str, truth: str, out: str, capsys) -> tuple[str, list[dict]]:
    """(metrics.md text, metrics.json rows) of one evaluation."""
    argv = ["evaluate", str(root / pred), str(root / truth), "--out", str(root / out)]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    text = (root / out / "metrics.md").read_text(encoding="utf-8")
    return text, json.loads((root / out / "metrics.json").read_text(encoding="utf-8"))


def test_the_report_says_the_prediction_was_constrained(root, capsys):
    text, (row,) = _evaluate(root, "conserved.nc", "truth.nc", "c", capsys)
    assert "seed 1, coarse-cell constraint additive, on cpu" in text
    assert row["prediction"]["conserve"] == "additive"
    plain, (row,) = _evaluate(root, "pred.nc", "truth.nc", "p", capsys)
    assert "constraint" not in plain
    assert "conserve" not in row["prediction"]


def test_infinite_undefined_and_left_out_scores_are_told_apart(root, capsys):
    """An all-zero truth: LSD inf (the prediction has power where the truth has none); a
    prediction equal to the truth in every member: spread/skill nan (0 / 0); a truth with a
    gap: no LSD (not computed). metrics.json: null for each, ``non_finite`` naming inf and nan;
    metrics.md: a line saying what each spelling means."""
    with xr.open_dataset(root / "truth.nc") as truth:
        truth = truth.load()
    dry = truth.copy()
    dry["t2m"] = (truth["t2m"] * 0).assign_attrs(truth["t2m"].attrs)
    dry.to_netcdf(root / "dry.nc")
    text, (row,) = _evaluate(root, "pred.nc", "dry.nc", "dry", capsys)
    assert row["LSD (dB)"] is None
    assert row["non_finite"] == {"LSD (dB)": "inf"}
    assert "`inf`: infinite" in text
    assert "`nan`" not in text
    assert "`n/a`" not in text

    same = truth.expand_dims(member=[0, 1])
    same["t2m"].attrs.update(truth["t2m"].attrs)
    same.to_netcdf(root / "same.nc")
    text, (row,) = _evaluate(root, "same.nc", "truth.nc", "same", capsys)
    assert row["spread/skill"] is None
    assert row["non_finite"] == {"spread/skill": "nan"}
    assert row["RMSE (ens. mean)"] == 0.0
    assert "`nan`: undefined (0 / 0" in text

    gap = truth.copy(deep=True)
    gap["t2m"][:, 3, 4] = np.nan  # in every time step: no gap-free one for the spectra
    gap.to_netcdf(root / "gap.nc")
    text, (row,) = _evaluate(root, "pred.nc", "gap.nc", "gap", capsys)
    assert row["LSD (dB)"] is None
    assert "non_finite" not in row
    assert "`n/a`: not computed" in text
    assert "`inf`" not in text

    _, (row,) = _evaluate(root, "pred.nc", "truth.nc", "finite", capsys)
    assert "non_finite" not in row  # nothing to say: no entry


def test_a_prediction_without_an_ensemble_is_not_called_an_ensemble_mean(root, capsys):
    with xr.open_dataset(root / "pred.nc") as pred:
        pred.isel(member=0).to_netcdf(root / "one.nc")
    text, (row,) = _evaluate(root, "one.nc", "truth.nc", "one", capsys)
    assert "| variable | units | RMSE | MAE | truth mean | bias | LSD (dB) |" in text
    assert "ens. mean" not in text
    assert row["RMSE (ens. mean)"] > 0  # metrics.json keeps its keys
    text, _ = _evaluate(root, "pred.nc", "truth.nc", "two", capsys)
    assert "| variable | units | RMSE (ens. mean) | MAE (ens. mean) | truth mean | bias |" in text
