"""A forecast model's card and ``flexdownscale info`` give its task (past frames, lead, time step
with units), not the super-resolution settings it does not have: the card said "factor: 4,
degradation: area_mean, upsampling: bilinear" for a model of factor 1, and info printed
"degradation None, upsampling None, factor None"."""

from __future__ import annotations

from train_runs import tiny_forecast_config

from flexdownscale.cli import _grid_line, main
from flexdownscale.hub import _forecast_settings, load_model_folder
from flexdownscale.train import Trainer


def test_forecast_settings_in_words():
    hourly = {"past_frames": 2, "lead": 1, "time_step": {"value": 3600.0, "units": "s"}}
    assert _forecast_settings(hourly) == (
        "past frames 2, lead 1 (one model step = 1 step of the training frames), "
        "time step 1 hour (3600 s)"
    )
    six_hourly = {"past_frames": 1, "lead": 3, "time_step": {"value": 21600, "units": "s"}}
    assert _forecast_settings(six_hourly).endswith(
        "lead 3 (one model step = 3 steps of the training frames), time step 6 hours (21600 s)"
    )
    assert _forecast_settings({**hourly, "time_step": {"value": 90.5, "units": "s"}}).endswith(
        "time step 90.5 s"
    )
    unitless = {**hourly, "time_step": {"value": 0.5, "units": "1"}}
    assert _forecast_settings(unitless).endswith("time step 0.5 (the time coordinate has no units)")
    assert _forecast_settings({**hourly, "time_step": {"value": 2, "units": "days"}}).endswith(
        "time step 2 days"
    )
    assert "time step not recorded" in _forecast_settings({**hourly, "time_step": None})
    # a super-resolution record has no past frames
    assert _forecast_settings({"factor": 4, "degradation": "area_mean"}) is None


def test_info_grid_line_has_no_none():
    spec = {"kind": "projected", "nx": 8, "ny": 8, "dx": 1.0, "dy": 1.0, "x0": 0.0, "y0": 0.0}
    spec.update(x="x", y="y")
    superres = {"grid": spec, "degradation": "area_mean", "upsample": "bilinear", "factor": 4}
    assert _grid_line(superres).endswith("; degradation area_mean, upsampling bilinear, factor 4")
    partial = {"grid": spec, "factor": 4}
    assert _grid_line(partial).endswith("from (0, 0); factor 4")
    forecast = {
        "grid": spec,
        "past_frames": 2,
        "lead": 1,
        "time_step": {"value": 0.5, "units": "1"},
    }
    line = _grid_line(forecast)
    assert "None" not in line
    assert line.endswith("; forecast: " + _forecast_settings(forecast))


def test_a_forecast_models_card_and_info_give_its_task(tmp_path, shared_data, capsys):
    """A two-frame forecast on the hourly ERA5 file: the card's Data section says past frames
    2, lead 1 and the time step of one hour, and no factor; info says the same."""
    folder = Trainer(tiny_forecast_config(tmp_path, shared_data)).export()
    card = load_model_folder(folder).card
    words = (
        "- forecast: past frames 2, lead 1 (one model step = 1 step of the training frames), "
        "time step 1 hour (3600 s)"
    )
    assert words in card
    assert "factor" not in card
    assert "upsampling" not in card
    capsys.readouterr()
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    grid = next(line for line in out.splitlines() if line.strip().startswith("grid:"))
    assert grid.endswith("; forecast: " + words[len("- forecast: ") :])
    assert "None" not in grid
