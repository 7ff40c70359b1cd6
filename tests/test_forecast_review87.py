"""Forecast findings of reviewer-87 (the ``flexdownscale forecast`` command and its docs).

- ``members=0`` / ``-1`` divided by zero or made a negative tensor in the rollout (a raw
  ``ZeroDivisionError`` / ``RuntimeError``, a traceback on the command line): a ConfigError.
- The warning for a window of a periodic box told a forecast to use ``bbox=``, which forecasts do
  not have: it tells it to forecast the whole field.
- A condition variable along time was read over the whole input, so a run at Re = 1000 and then
  4000 was refused for a forecast from the last frames (both at 4000); the refusal listed
  "8 values (1000, 1000, 1000, 1000, ...)" and said "ds.isel along 'time'" on the command line.
- An option of another command (``forecast --tile``) got the top-level usage line.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_forecast_fixes import N, box, box_grid, tiny_forecaster

from flexdownscale.cli import cli_spelling, main
from flexdownscale.errors import ConfigError, DataError, SkillWarning

CONDITION = {"name": "reynolds_number", "scale": 4000.0, "range": [1000.0, 4000.0]}


@pytest.mark.parametrize("members", [0, -1])
def test_forecast_members_below_one_are_a_config_error(members):
    model = tiny_forecaster(box_grid())
    with pytest.raises(ConfigError, match=rf"members = {members} must be a positive integer"):
        model(box(), lead_steps=1, members=members)


def test_forecast_members_zero_on_the_command_line_is_one_line(tmp_path, capsys):
    model = tiny_forecaster(box_grid())
    folder = model.save_pretrained(tmp_path / "model")
    box().to_netcdf(tmp_path / "in.nc")
    words = ["forecast", str(tmp_path / "in.nc"), str(tmp_path / "out.nc"), "--model", str(folder)]
    capsys.readouterr()
    assert main([*words, "--lead-steps", "1", "--members", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "flexdownscale forecast: error: --members 0 must be a positive integer, or leave "
        "--members out"
    ]
    assert not (tmp_path / "out.nc").exists()


def test_window_of_a_periodic_box_is_told_to_forecast_the_whole_field():
    model = tiny_forecaster(box_grid())
    window = box().isel(x=slice(0, N // 2))  # keeps periodic = "true"
    with pytest.warns(SkillWarning) as record:
        model(window, lead_steps=1)
    (text,) = [str(w.message) for w in record if "periodic" in str(w.message)]
    assert "forecast the whole periodic field (and cut the window from the forecast)" in text
    assert "bbox" not in text


def _conditioned_run(values: list[float]) -> xr.Dataset:
    ds = box(times=len(values))
    return ds.assign(reynolds_number=("time", np.asarray(values), {"units": "1"}))


def test_a_condition_along_time_is_read_at_the_past_frames():
    model = tiny_forecaster(box_grid(), condition=CONDITION)
    run = _conditioned_run([1000.0] * 6 + [4000.0] * 2)
    got = model(run, lead_steps=1, seed=3)
    assert got.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    at_4000 = model(run.drop_vars("reynolds_number"), lead_steps=1, seed=3, condition=4000.0)
    np.testing.assert_array_equal(got["vorticity"].values, at_4000["vorticity"].values)
    # past frames in another order along time: still the latest two by time
    shuffled = run.isel(time=[7, 0, 1, 2, 6, 3, 4, 5])
    assert (
        model(shuffled, lead_steps=1, seed=3).attrs["flexdownscale_condition_reynolds_number"]
        == 4000.0
    )


def test_past_frames_at_two_conditions_are_refused_with_the_distinct_values():
    model = tiny_forecaster(box_grid(), condition=CONDITION)
    run = _conditioned_run([1000.0] * 7 + [4000.0])  # the two past frames: 1000 and 4000
    with pytest.raises(DataError) as err:
        model(run, lead_steps=1)
    text = str(err.value)
    assert "the past frames' 'reynolds_number' holds 2 different values (1000, 4000)" in text
    assert "Forecast from a start whose past frames share one reynolds_number" in text
    assert "--condition <value>" in cli_spelling(text, "forecast")


def test_the_downscalers_condition_fix_is_a_file_on_the_command_line():
    text = (
        "model 'm' is conditioned on 'reynolds_number' (divided by 40000), and the input's "
        "'reynolds_number' holds 2 different values (1000, 4000) along 'time', but one call "
        "runs one value (passing condition=<value> would run every field at it). Select the "
        "fields of one reynolds_number per call (ds.isel along 'time') and pass that value as "
        "condition=<value>"
    )
    said = cli_spelling(text, "downscale")
    assert "(an input file holding those fields only)" in said
    assert "ds." not in said


def test_an_option_of_another_command_is_told_by_the_command_given(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["forecast", "a.nc", "b.nc", "--model", "m", "--lead-steps", "1", "--tile", "64"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: flexdownscale forecast ")
    assert err.strip().endswith(
        "flexdownscale forecast: error: unrecognized arguments: --tile 64 (--tile is an option "
        "of flexdownscale downscale, not of forecast)"
    )
    with pytest.raises(SystemExit):
        main(["downscale", "a.nc", "b.nc", "--lead-steps=2", "--nothing"])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "unrecognized arguments: --lead-steps=2 --nothing (--lead-steps is an option of "
            "flexdownscale forecast, not of downscale)"
        )
    )
