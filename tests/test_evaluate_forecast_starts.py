"""``flexdownscale evaluate`` on forecasts from several start times.

Forecasts concatenated along ``forecast_reference_time`` (dims ``forecast_reference_time``,
``member``, ``lead``, y, x and a 2-D ``valid_time``) were not taken for a forecast: evaluate
refused them ("the prediction has dims ['forecast_reference_time', 'lead'] that are neither
its grid nor 'member'; ... pass --dims time=forecast_reference_time"), and that hint led to a
second refusal. Each (start, lead) field is now scored against the truth at its own valid
time (overlapping forecasts share valid times), the table pools all of them and the per-lead
table pools each lead over the starts.

The forecasts here are the truth plus a known error: lead ``k`` is the truth at its valid time
plus ``k``, its two members that plus and minus ``D``. So each lead's ensemble-mean RMSE, MAE
and bias are ``k``, its fair CRPS ``k - D``, and the pooled RMSE over leads 1, 2, 3 is
``sqrt(14 / 3)``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

from flexdownscale import metrics
from flexdownscale.cli import main

N = 16  # cells per side
D = 0.25  # members at the lead's offset plus and minus D
STEP = np.timedelta64(6, "h")
TIMES = np.datetime64("2020-01-01T00") + STEP * np.arange(6)  # the truth's times
AXIS = {"units": "m"}
GRID = {"y": ("y", np.arange(N) * 1e3, AXIS), "x": ("x", np.arange(N) * 1e3, AXIS)}


def _truth(time_dim: str = "time") -> xr.Dataset:
    """Six random fields at 6-hourly times."""
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"w": ((time_dim, "y", "x"), rng.normal(size=(TIMES.size, N, N)), {"units": "m s-1"})},
        coords={time_dim: (time_dim, TIMES), **GRID},
    )


def _forecast(truth: xr.Dataset, start: int, leads: int = 3) -> xr.Dataset:
    """One forecast as the Forecaster writes it (member, lead, y, x; valid_time along lead;
    scalar forecast_reference_time), from the truth's ``start``-th time: lead ``k`` is the truth
    at its valid time plus ``k``, its members that plus and minus ``D``."""
    lead = np.arange(1, leads + 1)
    fields = truth["w"].values[start + 1 : start + 1 + leads] + lead[:, None, None]
    members = np.stack([fields - D, fields + D])
    return xr.Dataset(
        {"w": (("member", "lead", "y", "x"), members, {"units": "m s-1"})},
        coords={
            "member": np.arange(2),
            "lead": ("lead", lead, {"units": "1"}),
            "valid_time": ("lead", TIMES[start] + STEP * lead),
            "forecast_reference_time": ((), TIMES[start]),
            **GRID,
        },
    )


def _several(truth: xr.Dataset, starts: tuple[int, ...] = (0, 1, 2)) -> xr.Dataset:
    """Forecasts from several starts, concatenated as the docs say (their valid times overlap:
    starts 6 h apart, 3 leads of 6 h)."""
    forecasts = [_forecast(truth, s) for s in starts]
    return xr.concat(forecasts, dim="forecast_reference_time", coords=["valid_time"])


def _evaluate(tmp_path, pred: xr.Dataset, truth: xr.Dataset, out: str, capsys, *extra: str):
    """(exit status, stderr, report folder) of evaluate on the two datasets, written to files."""
    pred.to_netcdf(tmp_path / f"{out}_pred.nc")
    truth.to_netcdf(tmp_path / f"{out}_truth.nc")
    folder = tmp_path / out
    argv = [str(tmp_path / f"{out}_pred.nc"), str(tmp_path / f"{out}_truth.nc")]
    code = main(["evaluate", *argv, "--out", str(folder), *extra])
    return code, capsys.readouterr().err.strip(), folder


def _report(folder) -> tuple[list[dict], list[dict]]:
    """The rows of metrics.json and metrics_by_lead.json."""
    rows = json.loads((folder / "metrics.json").read_text())
    return rows, json.loads((folder / "metrics_by_lead.json").read_text())


def test_several_starts_score_each_field_at_its_own_valid_time(tmp_path, capsys):
    truth = _truth()
    fc = _several(truth)
    assert fc["w"].dims == ("forecast_reference_time", "member", "lead", "y", "x")
    assert fc["valid_time"].dims == ("forecast_reference_time", "lead")
    code, err, folder = _evaluate(tmp_path, fc, truth, "r", capsys)
    assert code == 0, err
    # the same files as for one forecast
    assert sorted(p.name for p in folder.iterdir()) == [
        "metrics.json",
        "metrics.md",
        "metrics_by_lead.json",
        "rank_histogram_w.png",
        "spectra_w.png",
        "spread_skill_spectrum_w.png",
    ]
    (row,), by_lead = _report(folder)
    # pooled over the 9 (start, lead) fields: leads 1, 2, 3 three times each
    assert row["RMSE (ens. mean)"] == pytest.approx(math.sqrt(14 / 3), rel=1e-12)
    assert row["MAE (ens. mean)"] == pytest.approx(2.0, rel=1e-12)
    assert row["bias"] == pytest.approx(2.0, rel=1e-12)
    assert row["CRPS"] == pytest.approx(2.0 - D, rel=1e-12)
    # per lead over the 3 starts: exactly k
    assert [(r["variable"], r["lead"], r["starts"]) for r in by_lead] == [
        ("w", 1, 3),
        ("w", 2, 3),
        ("w", 3, 3),
    ]
    for k, r in enumerate(by_lead, start=1):
        assert r["RMSE (ens. mean)"] == pytest.approx(k, rel=1e-12)
        assert r["MAE (ens. mean)"] == pytest.approx(k, rel=1e-12)
        assert r["bias"] == pytest.approx(k, rel=1e-12)
        assert r["CRPS"] == pytest.approx(k - D, rel=1e-12)
    # the per-lead table has the pooled table's scores, with the count of starts
    columns = [c for c in row if c not in ("variable", "units")]
    assert list(by_lead[0]) == ["variable", "lead", "starts", *columns]
    # each lead's row: the library's scores of that lead's fields from the 3 starts, each
    # against the truth at its valid time
    for k, r in enumerate(by_lead, start=1):
        p = fc["w"].sel(lead=k, drop=True).drop_vars("valid_time")
        t = truth["w"].sel(time=fc["valid_time"].sel(lead=k).values)
        t = t.rename(time="forecast_reference_time").assign_coords(
            forecast_reference_time=p["forecast_reference_time"]
        )
        ratio = metrics.spread_skill_ratio(p, t, member_dim="member")
        assert r["spread/skill"] == pytest.approx(float(ratio), rel=1e-9)
        spectra = {"method": "dct"}  # the box is not periodic
        lsd = metrics.log_spectral_distance(
            *(metrics.mean_spectrum(f, dims=["y", "x"], spectrum_kwargs=spectra) for f in (p, t))
        )
        assert r["LSD (dB)"] == pytest.approx(float(lsd), rel=1e-9)
    report = (folder / "metrics.md").read_text()
    assert (
        "By lead (the forecasts' 3 leads, each over the 3 starts: every field against the "
        "truth at its own valid_time; the table above pools them all):"
    ) in report
    assert "| variable | lead | starts | RMSE (ens. mean) |" in report


def test_one_forecast_and_the_same_with_a_start_dim_give_the_same_report(tmp_path, capsys):
    truth = _truth()
    one = _forecast(truth, 1)
    code, err, folder = _evaluate(tmp_path, one, truth, "one", capsys)
    assert code == 0, err
    expected = _report(folder)
    assert [r["valid_time"] for r in expected[1]] == [
        "2020-01-01T12:00:00.000000000",
        "2020-01-01T18:00:00.000000000",
        "2020-01-02T00:00:00.000000000",
    ]
    kept = {  # the start dim of one value, valid_time along it (concat) or not (expand_dims)
        ("forecast_reference_time", "lead"): _several(truth, (1,)),
        ("lead",): one.expand_dims("forecast_reference_time"),
    }
    for i, (how, fc) in enumerate(kept.items()):
        assert fc.sizes["forecast_reference_time"] == 1
        assert fc["valid_time"].dims == how
        code, err, folder = _evaluate(tmp_path, fc, truth, f"kept{i}", capsys)
        assert code == 0, (how, err)
        assert _report(folder) == expected, how


def test_deterministic_forecasts_from_several_starts(tmp_path, capsys):
    """One field per point (no member dim): no CRPS or spread/skill, as for one forecast."""
    truth = _truth()
    fc = _several(truth, (0, 2)).isel(member=0, drop=True) + D  # the offset k exactly
    fc["w"].attrs["units"] = "m s-1"
    code, err, folder = _evaluate(tmp_path, fc, truth, "det", capsys)
    assert code == 0, err
    (row,), by_lead = _report(folder)
    assert "CRPS" not in row
    assert "spread/skill" not in row
    assert row["RMSE (ens. mean)"] == pytest.approx(math.sqrt(14 / 3), rel=1e-12)
    assert [(r["lead"], r["starts"]) for r in by_lead] == [(1, 2), (2, 2), (3, 2)]
    assert [r["RMSE (ens. mean)"] for r in by_lead] == pytest.approx([1, 2, 3], rel=1e-12)
    assert "CRPS" not in by_lead[0]
    assert not (folder / "rank_histogram_w.png").exists()
    # a gap in the truth: scores over the valid points, no LSD (as in the pooled table)
    code, err, folder = _evaluate(tmp_path, fc, truth.where(truth.x > 0), "gaps", capsys)
    assert code == 0, err
    (row,), by_lead = _report(folder)
    assert row["LSD (dB)"] is None
    assert [r["LSD (dB)"] for r in by_lead] == [None, None, None]
    assert [r["MAE (ens. mean)"] for r in by_lead] == pytest.approx([1, 2, 3], rel=1e-12)


def test_a_truth_time_missing_for_any_start_is_named(tmp_path, capsys):
    truth = _truth()
    fc = _several(truth)  # valid times 06:00 .. 2020-01-02T06:00 (5 distinct, 9 fields)
    code, err, _ = _evaluate(tmp_path, fc, truth.isel(time=slice(0, 5)), "short", capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the truth lacks 1 of the prediction's 5 valid_time "
        "values (2020-01-02 06:00:00); give truth for every predicted time"
    )
    # a time missing in the middle, shared by three of the forecasts
    code, err, _ = _evaluate(tmp_path, fc, truth.drop_isel(time=3), "gap", capsys)
    assert code == 2
    assert "the truth lacks 1 of the prediction's 5 valid_time values (2020-01-01 18:00:00)" in err


def test_a_truth_time_dim_of_another_name(tmp_path, capsys):
    """``--dims time=NAME`` for the truth's time dim, as for one forecast (the starts, a CF
    time axis, are not taken for the prediction's own time dim)."""
    truth = _truth()
    fc = _several(truth)
    code, err, folder = _evaluate(tmp_path, fc, truth, "time", capsys)
    assert code == 0, err
    expected = _report(folder)
    code, err, folder = _evaluate(
        tmp_path, fc, _truth("step"), "step", capsys, "--dims", "time=step"
    )
    assert code == 0, err
    assert _report(folder) == expected
    # the old error's hint, --dims time=forecast_reference_time, gives the same report
    argv = ("--dims", "time=forecast_reference_time")
    code, err, folder = _evaluate(tmp_path, fc, truth, "hint", capsys, *argv)
    assert code == 0, err
    assert _report(folder) == expected


def test_several_starts_with_one_valid_time_for_all_are_refused(tmp_path, capsys):
    """xarray's concat with coords='minimal' (its coming default) keeps the first forecast's
    valid times for every start: scored so, the later starts would meet the wrong truth."""
    truth = _truth()
    forecasts = [_forecast(truth, s) for s in (0, 1)]
    fc = xr.concat(forecasts, dim="forecast_reference_time", coords="minimal", compat="override")
    assert fc["valid_time"].dims == ("lead",)
    code, err, folder = _evaluate(tmp_path, fc, truth, "first", capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the forecast has 2 'forecast_reference_time' values but "
        "one valid_time along lead for all of them (xarray's concat kept the first forecast's): "
        "concatenate the forecasts with their valid times, xr.concat(forecasts, "
        "dim='forecast_reference_time', coords=['valid_time'])"
    )
    assert not folder.exists()


def test_forecasts_with_different_numbers_of_leads_are_refused(tmp_path, capsys):
    """Concatenated, a forecast of 2 leads beside ones of 3 gets a NaN field and no valid time
    at lead 3; that was refused as a truth time missing, "nan" (helper-60); it now says what
    happened and how to concatenate the common leads."""
    truth = _truth()
    forecasts = [_forecast(truth, 0), _forecast(truth, 1, leads=2), _forecast(truth, 2)]
    # join="outer": xarray's default today (it will refuse unequal leads with join="exact")
    fc = xr.concat(forecasts, dim="forecast_reference_time", coords=["valid_time"], join="outer")
    code, err, folder = _evaluate(tmp_path, fc, truth, "ragged", capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the forecasts from the 3 'forecast_reference_time' "
        "values have different numbers of leads (2 to 3): concatenating them filled the missing "
        "leads with NaN fields and no valid_time. Give every forecast the same leads, e.g. "
        "xr.concat([f.isel(lead=slice(0, 2)) for f in forecasts], "
        "dim='forecast_reference_time', coords=['valid_time'])"
    )
    assert not folder.exists()
    common = [f.isel(lead=slice(0, 2)) for f in forecasts]  # the fix, as the message gives it
    fixed = xr.concat(common, dim="forecast_reference_time", coords=["valid_time"])
    code, err, folder = _evaluate(tmp_path, fixed, truth, "common", capsys)
    assert code == 0, err
