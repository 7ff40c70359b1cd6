"""``flexdownscale evaluate`` scores per level: a row per value of a dim both files share
besides the grid, time and the members (pressure levels, heights, a user's experiments).

Such a dim was pooled into one score: winds at 200, 500 and 850 hPa got one RMSE, CRPS, LSD
and spectrum, mixing levels whose magnitudes and spectra differ by large factors. Now each
value gets its row in metrics.md and metrics.json (the dim's name as a column, its value with
the coordinate's units in the markdown), its rows of the per-lead table, and its own spectrum
plot and rank histogram (``spectra_u_level500.png``); no row pools the levels. The files are
the real ERA-Interim winds (200/500/850 hPa) with predictions made from them by closed-form
perturbations: members ``truth + c(level) +- 1`` have ensemble-mean error ``c(level)``.
A variable whose CF ``standard_name`` differs between the files is warned about.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import flexdownscale.plot
from flexdownscale import evaluation
from flexdownscale.cli import main
from flexdownscale.errors import DataError, FlexDownscaleWarning
from flexdownscale.evaluation import evaluate

ERAINT = Path("era_interim") / "eraint_uv_monthly.nc"
#: The ensemble mean's error at each level: members are truth + c + 1 and truth + c - 1.
OFFSET = {200: -1.0, 500: 0.0, 850: 2.0}
SCORES = [
    "RMSE (ens. mean)",
    "MAE (ens. mean)",
    "truth mean",
    "bias",
    "CRPS",
    "spread/skill",
    "LSD (dB)",
]


@pytest.fixture(scope="module")
def winds(shared_data) -> xr.Dataset:
    """January's ERA-Interim ``u`` at 200/500/850 hPa on every 8th point (31 x 60, global)."""
    with xr.open_dataset(shared_data / ERAINT) as ds:
        return ds[["u"]].isel(month=0, latitude=slice(0, None, 8), longitude=slice(0, None, 8))


def _ensemble(truth: xr.Dataset, offset: dict[float, float], spread: float = 1.0) -> xr.Dataset:
    """Two members ``truth + offset[level] +- spread`` of every variable (float64, so the
    ensemble mean is the truth plus the offset exactly)."""
    out = {}
    for v, field in truth.data_vars.items():
        shift = xr.DataArray([offset[int(level)] for level in truth["level"].values], dims="level")
        base = field.astype("float64") + shift
        members = xr.concat([base + spread, base - spread], dim="member")
        out[v] = members.assign_attrs(field.attrs)
    return xr.Dataset(out).assign_coords(member=[0, 1])


def _write(folder: Path, pred: xr.Dataset, truth: xr.Dataset) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pred.to_netcdf(folder / "pred.nc")
    truth.to_netcdf(folder / "truth.nc")
    return folder / "pred.nc", folder / "truth.nc"


def _cli(pred: Path, truth: Path, out: Path, capsys, *extra: str) -> tuple[str, list[dict]]:
    argv = ["evaluate", str(pred), str(truth), "--out", str(out), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    rows = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return (out / "metrics.md").read_text(encoding="utf-8"), rows


@pytest.fixture
def histograms(monkeypatch) -> dict[str, np.ndarray]:
    """Title to values of every rank histogram evaluate draws."""
    seen: dict[str, np.ndarray] = {}
    original = flexdownscale.plot.plot_rank_histogram

    def spy(hist, *args, **kwargs):
        if "rank" in getattr(hist, "dims", ()):
            seen[kwargs.get("title", "")] = np.asarray(hist.values, dtype=float)
        return original(hist, *args, **kwargs)

    monkeypatch.setattr(flexdownscale.plot, "plot_rank_histogram", spy)
    return seen


def test_a_row_and_plots_per_pressure_level_with_closed_form_scores(
    tmp_path, winds, capsys, histograms
):
    pred, truth = _write(tmp_path, _ensemble(winds, OFFSET), winds)
    text, rows = _cli(pred, truth, tmp_path / "report", capsys)
    # metrics.json: a row per level (no pooled row), the level's value under the dim's name
    assert [(r["variable"], r["level"]) for r in rows] == [("u", 200), ("u", 500), ("u", 850)]
    assert list(rows[0]) == ["variable", "level", "units", *SCORES]
    for row in rows:
        c = OFFSET[row["level"]]
        assert row["RMSE (ens. mean)"] == pytest.approx(abs(c), abs=1e-9)
        assert row["MAE (ens. mean)"] == pytest.approx(abs(c), abs=1e-9)
        assert row["bias"] == pytest.approx(c, abs=1e-9)
        # fair CRPS of members y + c +- 1: (|c + 1| + |c - 1|) / 2 - |2| / 2
        assert row["CRPS"] == pytest.approx(max(abs(c), 1.0) - 1.0, abs=1e-9)
        assert row["LSD (dB)"] == pytest.approx(0.0, abs=1e-6)  # spectra of j >= 1 alike
    # spread/skill (Fortin): sqrt(2 * 3/2) / |c|; 1 / 0 at 500 hPa: null, said to be inf
    assert rows[0]["spread/skill"] == pytest.approx(np.sqrt(3.0), rel=1e-9)
    assert rows[2]["spread/skill"] == pytest.approx(np.sqrt(3.0) / 2.0, rel=1e-9)
    assert rows[1]["spread/skill"] is None
    assert rows[1]["non_finite"] == {"spread/skill": "inf"}
    # metrics.md: the level with its coordinate's units, and the line saying rows are per level
    lines = text.splitlines()
    header = "| variable | level | units | " + " | ".join(SCORES) + " |"
    assert header in lines
    assert re.match(  # RMSE, MAE, the truth's mean, bias, CRPS
        r"\| u \| 850 millibars \| m s\*\*-1 \| 2 \| 2 \| [-+.\de]+ \| 2 \| 1 \|",
        lines[lines.index(header) + 4],
    )
    assert "Rows per level: a variable along `level` gets a row for each value" in text
    assert "no row pools them, as levels differ in magnitude" in text
    # a spectrum plot and a rank histogram per level, none for the variable as a whole
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert files == {"metrics.md", "metrics.json"} | {
        f"{kind}_u_level{level}.png" for kind in ("spectra", "rank_histogram") for level in OFFSET
    }
    # each histogram is its level's: the truth below both members at 850 hPa (rank 1),
    # between them at 500, tied with the upper member at 200 (shared by ranks 2 and 3)
    expected = {200: [0.0, 0.5, 0.5], 500: [0.0, 1.0, 0.0], 850: [1.0, 0.0, 0.0]}
    assert set(histograms) == {f"u at level {k} millibars: rank histogram" for k in OFFSET}
    for level, values in expected.items():
        drawn = histograms[f"u at level {level} millibars: rank histogram"]
        np.testing.assert_allclose(drawn, values, atol=1e-12)


def test_each_levels_row_is_the_score_of_that_level_alone(tmp_path, winds, capsys):
    """The rows per level are what each level scores on its own (a prediction of one level,
    whose report keeps today's columns, without a level column)."""
    rng = np.random.default_rng(0)
    pred = _ensemble(winds, OFFSET)
    pred["u"] = pred["u"] + rng.normal(0.0, 1.5, pred["u"].shape)  # every score non-trivial
    pred["u"].attrs = dict(winds["u"].attrs)
    p, t = _write(tmp_path, pred, winds)
    _, rows = _cli(p, t, tmp_path / "all", capsys)
    for i, level in enumerate(OFFSET):
        one, _ = _write(tmp_path / f"one{level}", pred.isel(level=i), winds)
        text, alone = _cli(one, t, tmp_path / f"alone{level}", capsys)
        assert "| variable | units | RMSE (ens. mean) |" in text
        assert "Rows per level" not in text
        assert list(alone[0]) == ["variable", "units", *SCORES]  # today's row
        row = dict(rows[i])
        assert row.pop("level") == level
        assert list(row) == list(alone[0])
        for key in SCORES:
            assert row[key] == pytest.approx(alone[0][key], rel=1e-9), (level, key)
    assert rows[2]["RMSE (ens. mean)"] > 2.0 > rows[1]["RMSE (ens. mean)"]


def _series(winds: xr.Dataset, times: int) -> xr.Dataset:
    """The winds as a daily series of ``times`` fields, each 0.5 m/s above the one before."""
    stamps = np.datetime64("2020-01-01") + np.arange(times) * np.timedelta64(1, "D")
    step = xr.DataArray(0.5 * np.arange(times), dims="time", coords={"time": stamps})
    out = (winds["u"] + step).transpose("time", ...).assign_attrs(winds["u"].attrs)
    return xr.Dataset({"u": out.astype("float32")})


@pytest.mark.parametrize("starts", [1, 2])
def test_the_per_lead_table_is_per_level(tmp_path, winds, capsys, starts):
    """A forecast (leads 1 and 2, from one start or two): a row per level and lead, its
    error the level's offset plus the lead's."""
    truth = _series(winds, 4)
    by_lead = {1: 0.0, 2: 0.5}
    forecasts = []
    for s in range(starts):
        valid = truth["time"].values[1 + s : 3 + s]
        fields = truth["u"].sel(time=valid).astype("float64")
        shift = xr.DataArray(
            [[OFFSET[int(k)] + d for k in truth["level"].values] for d in by_lead.values()],
            dims=("time", "level"),
        )
        field = (fields + shift).rename(time="lead").assign_coords(lead=list(by_lead))
        forecasts.append(
            field.assign_coords(valid_time=("lead", valid)).assign_attrs(truth["u"].attrs)
        )
    if starts == 1:
        pred = xr.Dataset({"u": forecasts[0]})
    else:
        stamps = truth["time"].values[:starts]
        pred = xr.Dataset(
            {
                "u": xr.concat(forecasts, dim="forecast_reference_time", coords=["valid_time"])
                .assign_coords(forecast_reference_time=stamps)
                .assign_attrs(truth["u"].attrs)
            }
        )
    p, t = _write(tmp_path, pred, truth)
    text, rows = _cli(p, t, tmp_path / "report", capsys)
    lead_rows = json.loads((tmp_path / "report" / "metrics_by_lead.json").read_text())
    assert [(r["level"], r["lead"]) for r in lead_rows] == [
        (level, lead) for level in OFFSET for lead in by_lead
    ]
    for row in lead_rows:
        error = OFFSET[row["level"]] + by_lead[row["lead"]]
        assert row["RMSE (ens. mean)"] == pytest.approx(abs(error), abs=1e-5)
        assert row["bias"] == pytest.approx(error, abs=1e-5)
        if starts == 1:
            assert "valid_time" in row
            assert "starts" not in row
        else:
            assert row["starts"] == 2
    for row in rows:  # the pooled table: per level, over both leads
        c = OFFSET[row["level"]]
        assert row["RMSE (ens. mean)"] == pytest.approx(
            np.sqrt((c**2 + (c + 0.5) ** 2) / 2), abs=1e-5
        )
    second = "valid_time" if starts == 1 else "starts"
    assert (
        f"| variable | level | lead | {second} | RMSE | MAE | truth mean | bias | LSD (dB) |"
        in text
    )
    assert "the forecast's 2 leads" in text or "the forecasts' 2 leads" in text
    assert "| u | 850 millibars | 2 | " in text


def test_levels_are_matched_by_value_and_a_missing_one_is_refused(tmp_path, winds, capsys):
    pred = _ensemble(winds, OFFSET).isel(level=[2, 1])  # 850 and 500 hPa, in that order
    p, t = _write(tmp_path, pred, winds)
    _, rows = _cli(p, t, tmp_path / "report", capsys)
    assert [r["level"] for r in rows] == [850, 500]
    assert [r["RMSE (ens. mean)"] for r in rows] == pytest.approx([2.0, 0.0], abs=1e-9)
    # a level the truth lacks is named (it was a ShapeError about "fcst and obs")
    other = pred.assign_coords(level=[700, 500])
    p, t = _write(tmp_path / "other", other, winds)
    with pytest.raises(DataError, match=r"lacks 1 of the prediction's 2 'level' values \(700;"):
        evaluate(p, t, out=tmp_path / "r2")
    # without a coordinate: by position, the same number of values, else refused
    bare = _ensemble(winds, OFFSET).drop_vars("level")
    p, t = _write(tmp_path / "bare", bare, winds.drop_vars("level"))
    text, rows = _cli(p, t, tmp_path / "r3", capsys)
    assert [r["level"] for r in rows] == [0, 1, 2]
    assert "| u | 2 | m s**-1 | 2 |" in text
    p, t = _write(tmp_path / "fewer", bare.isel(level=[0, 1]), winds.drop_vars("level"))
    with pytest.raises(DataError, match="neither file has a 'level' coordinate to match them by"):
        evaluate(p, t, out=tmp_path / "r4")


def test_a_level_with_gaps_loses_only_its_own_lsd(tmp_path, winds, capsys):
    truth = winds.copy(deep=True)
    truth["u"][2, :3, :4] = np.nan  # 12 missing points at 850 hPa
    p, t = _write(tmp_path, _ensemble(winds, OFFSET), truth)
    text, rows = _cli(p, t, tmp_path / "report", capsys)
    assert [r["LSD (dB)"] is None for r in rows] == [False, False, True]
    assert (
        "`u` at level 850 millibars (12 missing values in the truth): no LSD or spectrum plot"
        in text
    )
    files = {p.name for p in (tmp_path / "report").glob("spectra_*.png")}
    assert files == {"spectra_u_level200.png", "spectra_u_level500.png"}


def test_two_level_dims_and_text_values(tmp_path, winds, capsys):
    """A user's ``experiment`` dim beside the levels: a row per pair, file names that say
    both, the values that are no numbers after a ``-``."""
    truth = winds.isel(level=[1, 2])
    runs = xr.DataArray(["ctrl", "warm/2K"], dims="experiment", name="experiment")
    truth = xr.concat([truth, truth + 1.0], dim=runs)
    truth["u"].attrs = dict(winds["u"].attrs)
    pred = _ensemble(truth, OFFSET)
    p, t = _write(tmp_path, pred, truth)
    text, rows = _cli(p, t, tmp_path / "report", capsys)
    assert [(r["experiment"], r["level"]) for r in rows] == [
        ("ctrl", 500),
        ("ctrl", 850),
        ("warm/2K", 500),
        ("warm/2K", 850),
    ]
    assert [r["RMSE (ens. mean)"] for r in rows] == pytest.approx([0, 2, 0, 2], abs=1e-9)
    assert "| variable | experiment | level | units |" in text
    assert "| u | warm/2K | 850 millibars | m s**-1 |" in text
    assert "a row for each value pair" in text
    names = {p.name for p in (tmp_path / "report").glob("spectra_*.png")}
    assert names == {
        "spectra_u_experiment-ctrl_level500.png",
        "spectra_u_experiment-ctrl_level850.png",
        "spectra_u_experiment-warm_2K_level500.png",
        "spectra_u_experiment-warm_2K_level850.png",
    }


def test_the_levels_are_read_with_the_rest_in_one_pass(tmp_path, winds, monkeypatch):
    """Scoring per level reads each time chunk once for every level's scores (two passes
    over each file in all: the checks, then every score), as without levels."""
    from xarray.backends.netCDF4_ import NetCDF4ArrayWrapper

    truth = _series(winds, 4)
    pred = _ensemble(truth, OFFSET).transpose("member", "time", ...)
    p, t = _write(tmp_path, pred, truth)
    reads: list[int] = []
    getitem = NetCDF4ArrayWrapper.__getitem__

    def counting(self, key):
        values = getitem(self, key)
        if self.variable_name == "u":
            reads.append(int(np.size(values)))
        return values

    monkeypatch.setattr(NetCDF4ArrayWrapper, "__getitem__", counting)
    evaluate(p, t, out=tmp_path / "report", time_chunk=1)
    assert sum(reads) == 2 * pred["u"].size + 2 * truth["u"].size
    assert max(reads) <= pred["u"].size // 4  # a time step at a time
    assert len(json.loads((tmp_path / "report" / "metrics.json").read_text())) == 3


def test_a_folder_with_a_level_plot_of_the_users_is_refused(tmp_path, winds):
    p, t = _write(tmp_path, _ensemble(winds, OFFSET), winds)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "spectra_u_level500.png").write_bytes(b"mine")
    with pytest.raises(DataError, match=r"holds spectra_u_level500\.png"):
        evaluate(p, t, out=out)
    assert (out / "spectra_u_level500.png").read_bytes() == b"mine"


def test_many_levels_are_warned_about(tmp_path, winds, monkeypatch):
    monkeypatch.setattr(evaluation, "_MANY_LEVELS", 2)
    p, t = _write(tmp_path, _ensemble(winds, OFFSET), winds)
    with pytest.warns(FlexDownscaleWarning, match=r"3 rows .*--dims time=level"):
        evaluate(p, t, out=tmp_path / "report")


def _one_level(winds: xr.Dataset, name: str, standard_name: str | None) -> xr.Dataset:
    field = winds["u"].isel(level=1)
    attrs = {k: v for k, v in field.attrs.items() if k != "standard_name"}
    if standard_name is not None:
        attrs["standard_name"] = standard_name
    return xr.Dataset({name: field.assign_attrs(attrs)})


def test_a_wrong_rename_is_warned_about_by_standard_name(tmp_path, winds):
    """Truth ``u`` (eastward_wind) scored against a prediction's ``v`` (northward_wind) by
    ``--rename u=v``: the same units, so nothing else stops it."""
    truth = _one_level(winds, "u", "eastward_wind")
    pred = _one_level(winds, "v", "northward_wind")
    p, t = _write(tmp_path, pred, truth)
    with pytest.warns(FlexDownscaleWarning) as caught:
        evaluate(p, t, out=tmp_path / "report", rename={"u": "v"})
    said = [str(w.message) for w in caught if "standard_name" in str(w.message)]
    assert len(said) == 1
    assert "the prediction's 'v' is 'northward_wind'" in said[0]
    assert "the truth's 'u' is 'eastward_wind'" in said[0]
    assert "--rename u=v" in said[0]
    # the brief's case: the same name in both files, other quantities
    truth = _one_level(winds, "u", "air_temperature")
    pred = _one_level(winds, "u", "eastward_wind")
    p, t = _write(tmp_path / "same", pred, truth)
    with pytest.warns(FlexDownscaleWarning, match="'eastward_wind'.*'air_temperature'"):
        evaluate(p, t, out=tmp_path / "r2")


@pytest.mark.parametrize(
    ("pred_name", "truth_name"),
    [
        ("eastward_wind", "eastward_wind"),
        (None, "eastward_wind"),
        ("eastward_wind", None),
        ("eastward_wind", "unknown"),  # as ERA5's converted files say
    ],
)
def test_no_warning_without_two_standard_names_that_differ(tmp_path, winds, pred_name, truth_name):
    p, t = _write(tmp_path, _one_level(winds, "u", pred_name), _one_level(winds, "u", truth_name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(p, t, out=tmp_path / "report")
    assert not [w for w in caught if "standard_name" in str(w.message)]
