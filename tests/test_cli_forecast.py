"""``flexdownscale forecast``: a forecast model run from the shell (it needed Python before:
``flexdownscale downscale --model <forecast folder>`` exited 2 with "use ds.flex.forecast").

A tiny two-past-frame forecast model exported once for the module, on eight hours of the hourly
ERA5 file: the command's file equals ``ds.flex.forecast`` bit for bit, ``--start`` with two
starts equals the docs' ``concat_outputs`` of two Python forecasts and ``flexdownscale evaluate``
scores it per lead (checked against the closed form of the area-weighted RMSE), and wrong starts
or models exit 2 with one line that says what to do.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings

import cftime
import numpy as np
import pytest
import xarray as xr
from train_runs import ERA5, tiny_forecast_config

import flexdownscale  # noqa: F401  (registers ds.flex)
from flexdownscale.cli import _inputs_up_to_starts, build_parser, console_main, main
from flexdownscale.errors import ConfigError, DataError
from flexdownscale.pipeline import Downscaler
from flexdownscale.provenance import concat_outputs
from flexdownscale.train import Trainer

STARTS = ["2019-03-01T05:00", "2019-03-01T03:00"]  # out of order: the file is in time order


@pytest.fixture(scope="module")
def forecast_folder(tmp_path_factory, shared_data):
    return Trainer(tiny_forecast_config(tmp_path_factory.mktemp("fc"), shared_data)).export()


@pytest.fixture(scope="module")
def hours(tmp_path_factory, shared_data):
    """The first eight hours of the ERA5 file, as a file of their own."""
    path = tmp_path_factory.mktemp("in") / "in8.nc"
    with xr.open_dataset(shared_data / ERA5) as ds:
        ds.isel(time=slice(0, 8)).to_netcdf(path)
    return path


def _same_history(written: xr.Dataset, expected: xr.Dataset) -> xr.Dataset:
    """``written`` with ``expected``'s CF history line, once they differ only by its time stamp
    (the time of the run)."""
    stamp, _, line = written.attrs["history"].partition(": ")
    assert line == expected.attrs["history"].partition(": ")[2]
    assert stamp.endswith("Z")
    return written.assign_attrs(history=expected.attrs["history"])


def _refused(args: list[str], capsys) -> str:
    """Run the command and check that it exits 2 with one error line; returns that line."""
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_forecast_command_equals_the_python_forecast(
    forecast_folder, hours, tmp_path, capsys, suffix
):
    out = tmp_path / f"fc{suffix}"
    words = ["forecast", str(hours), str(out), "--model", str(forecast_folder)]
    assert main([*words, "--lead-steps", "3", "--members", "2", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == (f"wrote {out} (lead: 3, member: 2, latitude: 33, longitude: 49)")
    with xr.open_dataset(hours) as ds:
        expected = ds.flex.forecast(forecast_folder, lead_steps=3, members=2, seed=7)
    with xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out) as written:
        written = written.load()
    xr.testing.assert_identical(_same_history(written, expected), expected)
    # bit for bit, and a forecast from the input's last time (09:00 is two hours on from 07:00
    # and one model step, so lead 1 is valid at 08:00)
    assert written["t2m"].dtype == np.float32
    assert np.array_equal(written["t2m"].values, expected["t2m"].values)
    assert written["forecast_reference_time"].values == np.datetime64("2019-03-01T07:00")
    assert written["valid_time"].values[0] == np.datetime64("2019-03-01T08:00")


def test_two_starts_equal_the_docs_concat_and_evaluate_scores_them_per_lead(
    forecast_folder, hours, shared_data, tmp_path, capsys
):
    out = tmp_path / "forecasts.nc"
    args = ["forecast", str(hours), str(out), "--model", str(forecast_folder), "--quiet"]
    assert main([*args, "--lead-steps", "3", "--members", "2", "--start", *STARTS]) == 0
    assert capsys.readouterr().out == ""
    # docs/inference.md's Python: one forecast per start, the input up to it, the same seed
    with xr.open_dataset(hours) as ds:
        forecasts = [
            ds.sel(time=slice(None, start)).flex.forecast(
                forecast_folder, lead_steps=3, members=2, seed=0
            )
            for start in sorted(STARTS)
        ]
    expected = concat_outputs(forecasts, "forecast_reference_time", coords=["valid_time"])
    with xr.open_dataset(out) as written:
        written = written.load()
    xr.testing.assert_equal(written, expected)
    # the attributes too, but the history lines' time stamps (written a moment apart)
    stamp = r"^\S+ \S+ "
    assert {k: v for k, v in written.attrs.items() if k != "history"} == {
        k: v for k, v in expected.attrs.items() if k != "history"
    }
    for got, want in zip(
        written.attrs["history"].splitlines(), expected.attrs["history"].splitlines(), strict=True
    ):
        assert re.sub(stamp, "", got) == re.sub(stamp, "", want)
    assert np.array_equal(written["t2m"].values, expected["t2m"].values)
    assert written["valid_time"].dims == ("forecast_reference_time", "lead")
    assert list(written["forecast_reference_time"].values) == [
        np.datetime64("2019-03-01T03:00"),
        np.datetime64("2019-03-01T05:00"),
    ]

    truth_path = shared_data / ERA5
    report = tmp_path / "report"
    assert main(["evaluate", str(out), str(truth_path), "--out", str(report)]) == 0
    rows = json.loads((report / "metrics_by_lead.json").read_text())
    assert [(row["lead"], row["starts"]) for row in rows] == [(1, 2), (2, 2), (3, 2)]
    # the RMSE of the ensemble mean per lead, over both starts, weighted by cos(latitude)
    with xr.open_dataset(truth_path) as truth:
        truth = truth["t2m"].load()
    mean = written["t2m"].mean("member")  # float32, as evaluate takes it
    weights = np.cos(np.deg2rad(mean["latitude"].values))[None, :, None]
    for row in rows:
        field = mean.sel(lead=row["lead"])
        valid = written["valid_time"].sel(lead=row["lead"]).values
        at = truth.sel(time=valid, latitude=field["latitude"], longitude=field["longitude"])
        err = field.values.astype(np.float64) - at.values
        w = np.broadcast_to(weights, err.shape)
        rmse = np.sqrt((w * err**2).sum() / w.sum())
        assert row["RMSE (ens. mean)"] == pytest.approx(rmse, rel=1e-6)
    assert rows[0]["RMSE (ens. mean)"] > 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            ["--start", "2019-03-01T03:30"],
            "--start 2019-03-01T03:30 is not one of the input's times; the nearest are "
            "2019-03-01T03:00:00 and 2019-03-01T04:00:00 (the input's 'time' holds 8 times "
            "from 2019-03-01T00:00:00 to 2019-03-01T07:00:00): give one of the input's times",
        ),
        (
            ["--start", "2019-03-01T00:00"],
            "give at least the 2 time steps up to the forecast start (--start 2019-03-01T00:00 "
            "has 1 time step of the input up to and including it): give a --start from "
            "2019-03-01T01:00:00 on",
        ),
        (["--start", "noon"], "--start 'noon' is not a time of the input's kind; give ISO"),
        (
            ["--start", "2019-03-01T03", "2019-03-01T03:00"],
            "--start names the time 2019-03-01T03:00:00 twice",
        ),
        (["--lead-steps", "0"], "--lead-steps 0 must be a positive integer"),
    ],
)
def test_wrong_starts_exit_2_with_one_line(forecast_folder, hours, tmp_path, capsys, extra, says):
    out = tmp_path / "fc.nc"
    args = ["forecast", str(hours), str(out), "--model", str(forecast_folder), "--quiet"]
    line = _refused([*args, "--lead-steps", "2", *extra], capsys)
    assert line.startswith("flexdownscale forecast: error: ")
    assert says in line
    assert not out.exists()


def test_a_super_resolution_model_or_no_model_is_refused(hours, tmp_path, capsys):
    out = tmp_path / "fc.nc"
    words = ["forecast", str(hours), str(out), "--lead-steps", "2"]
    line = _refused([*words, "--model", "era5-t2m-x4"], capsys)
    assert line == (
        "flexdownscale forecast: error: model 'era5-t2m-x4' is a 'superres' model; flexdownscale "
        "forecast needs a forecast model; run a super-resolution model with flexdownscale "
        "downscale IN OUT --model M"
    )
    line = _refused(words, capsys)
    assert line.startswith("flexdownscale forecast: error: --model is required: no forecast ")
    assert "--model run/model" in line
    assert not out.exists()


def test_usage_shows_model_as_required_and_the_check_keeps_its_words(capsys):
    """``--model`` is checked by the command (with the fix), not by argparse, but the usage and
    ``--help`` show it unbracketed, as required; other commands keep theirs optional."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    forecast = commands.choices["forecast"]
    assert " --model MODEL --lead-steps N" in forecast.format_usage()
    assert "[--model MODEL]" not in forecast.format_help()
    assert "[--model MODEL]" in commands.choices["downscale"].format_usage()
    # the flag is not required while parsing: the command's own message still answers
    args = forecast.parse_args(["in.nc", "out.nc", "--lead-steps", "2"])
    assert args.model is None
    with pytest.raises(SystemExit):
        forecast.parse_args(["in.nc"])
    err = capsys.readouterr().err
    assert "required: output, --lead-steps" in err
    assert "--model" not in err.splitlines()[-1]


def test_downscale_of_a_forecast_model_names_the_forecast_command(
    forecast_folder, hours, tmp_path, capsys
):
    out = tmp_path / "fine.nc"
    line = _refused(["downscale", str(hours), str(out), "--model", str(forecast_folder)], capsys)
    assert line.endswith(
        "is a 'forecast' model; flexdownscale downscale needs a super-resolution model; run a "
        "forecast model with flexdownscale forecast IN OUT --model M --lead-steps N"
    )
    assert "ds.flex" not in line
    # Python keeps its own words
    with pytest.raises(ConfigError, match=r"use ds\.flex\.forecast for forecast models"):
        Downscaler.from_pretrained(forecast_folder)


def test_starts_on_numeric_and_cftime_axes():
    """Numbers on a numeric axis (the Kolmogorov files' step count 15, 15.5, ...) and ISO
    dates on a cftime one (a 360-day calendar's 30 February) name the input's times."""
    field = np.zeros((6, 2, 2), np.float32)
    numeric = xr.Dataset(
        {"v": (("time", "y", "x"), field)}, coords={"time": 15.0 + 0.5 * np.arange(6)}
    )
    (first, up_to_first), (second, up_to_second) = _inputs_up_to_starts(
        numeric, ["17", "15.5"], {}, 2
    )
    assert first == ("15.5", "15.5", 2)
    assert list(up_to_first["time"].values) == [15.0, 15.5]
    assert second == ("17", "15.5", 5)
    assert up_to_second["time"].values[-1] == 17.0
    with pytest.raises(DataError, match=r"the nearest are 16\.5 and 17\.0 \(the input's 'time'"):
        _inputs_up_to_starts(numeric, ["16.75"], {}, 2)

    days = [cftime.Datetime360Day(2000, 2, d, 6) for d in (28, 29, 30)]
    dates = xr.Dataset({"v": (("time", "y", "x"), field[:3])}, coords={"time": days})
    ((start, up_to),) = _inputs_up_to_starts(dates, ["2000-02-30T06:00"], {}, 2)
    assert start == ("2000-02-30T06:00", "2000-02-29T06:00:00", 3)
    assert up_to["time"].values[-1] == days[-1]
    with pytest.raises(DataError, match="the nearest is 2000-02-30T06:00:00"):
        _inputs_up_to_starts(dates, ["2000-03-01"], {}, 2)
    # a time dim without a coordinate has positions, not times
    with pytest.raises(DataError, match="has no coordinate"):
        _inputs_up_to_starts(numeric.drop_vars("time"), ["15"], {}, 2)


def _python_words(line: str) -> list[str]:
    """The Python expressions a shell user could not type, found in ``line``."""
    return [w for w in ("ds.", "np.", "dims={", "=...") if w in line]


def test_forecast_errors_and_warnings_are_in_command_line_words(
    forecast_folder, hours, tmp_path, capsys, monkeypatch
):
    """The forecaster's fixes were spelled in xarray on the command line ("mask them with
    ds.where(np.isfinite(ds))", "dims={'time': NAME}", "select it: ds.sel(latitude=...)")."""
    run = ["--model", str(forecast_folder), "--lead-steps", "1"]
    with xr.open_dataset(hours) as ds:
        ds = ds.load()
    gappy = tmp_path / "gappy.nc"
    ds.where(ds["t2m"] < ds["t2m"].max()).to_netcdf(gappy)  # one NaN in a past frame
    line = _refused(["forecast", str(gappy), str(tmp_path / "a.nc"), *run], capsys)
    assert "fill them in the input file first (infinite values too)" in line
    single = tmp_path / "single.nc"
    ds.isel(time=-1, drop=True).to_netcdf(single)
    line = _refused(["forecast", str(single), str(tmp_path / "b.nc"), *run], capsys)
    assert "--dims time=NAME" in line
    assert not _python_words(line), line
    # a region beyond the training domain: the warning names the file to give, not ds.sel
    moved = tmp_path / "moved.nc"
    ds.assign_coords(longitude=ds["longitude"] + 40.0).to_netcdf(moved)
    argv = ["flexdownscale", "forecast", str(moved), str(tmp_path / "c.nc"), *run, "--quiet"]
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert console_main() == 0  # the command's own warning printer
    err = capsys.readouterr().err
    assert err.startswith("flexdownscale forecast: warning: model ")
    assert "(an input file holding that region only)" in err
    assert not _python_words(err), err


@pytest.fixture(scope="module")
def half_hours(tmp_path_factory, shared_data):
    """Eight hourly ERA5 fields relabelled 30 minutes apart: an input twice as fine in time as
    the model's one-hour step."""
    path = tmp_path_factory.mktemp("half") / "half.nc"
    with xr.open_dataset(shared_data / ERA5) as ds:
        part = ds.isel(time=slice(0, 8)).load()
    times = np.datetime64("2019-03-01T00:00") + np.arange(8) * np.timedelta64(30, "m")
    part.assign_coords(time=times).to_netcdf(path)
    return path


def test_an_input_finer_in_time_is_read_at_the_models_step(
    forecast_folder, half_hours, tmp_path, capsys
):
    """A file twice as fine in time as the model was refused with a Python-only fix
    (``ds.isel(time=slice(-3, None, 2))``); the command takes every second time step, ending at
    the last (or at each --start), says so, and gives what the Python call gives on those
    frames."""
    out = tmp_path / "fc.nc"
    words = ["forecast", str(half_hours), str(out), "--model", str(forecast_folder)]
    assert main([*words, "--lead-steps", "2", "--members", "2", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == (
        f"the input steps by 30 minutes and model {str(forecast_folder)!r} by 1 hour: its past "
        "frames are one time step of the input in 2, ending at the input's last time"
    )
    with xr.open_dataset(half_hours) as ds:
        expected = ds.isel(time=slice(1, None, 2)).flex.forecast(
            forecast_folder, lead_steps=2, members=2, seed=3
        )
    with xr.open_dataset(out) as written:
        written = _same_history(written.load(), expected)
    xr.testing.assert_identical(written, expected)
    assert str(written["valid_time"].values[-1]).startswith("2019-03-01T05:30")

    # --start: frames one hour apart ending at the start
    out2 = tmp_path / "fc2.nc"
    again = ["forecast", str(half_hours), str(out2), "--model", str(forecast_folder)]
    start = ["--start", "2019-03-01T02:30", "--lead-steps", "1", "--members", "2", "--seed", "3"]
    assert main([*again, *start]) == 0
    assert "ending at each --start" in capsys.readouterr().out
    with xr.open_dataset(half_hours) as ds:
        expected = ds.isel(time=[3, 5]).flex.forecast(
            forecast_folder, lead_steps=1, members=2, seed=3
        )
    with xr.open_dataset(out2) as written:
        values = written["t2m"].load()
    np.testing.assert_array_equal(values.values, expected["t2m"].values)

    # too early a start for two frames an hour apart: names the first start that has them
    said = _refused([*words, "--lead-steps", "1", "--start", "2019-03-01T00:30"], capsys)
    assert "give a --start from 2019-03-01T01:00:00 on" in said
