"""Training on data with NaN (``data.nan_fields``) and the settings checked when the
configuration loads: ``seed``, ``model.physical_condition`` against ``data.condition``,
``time_limit_minutes``, ``data.condition_scale`` and the ``[model]`` / ``[diffusion]`` values.

The runs are in-process with the tiny preset, 32 x 32 crops and one or two optimiser steps on the
real radar (NaNs near the edges of 16 of its 144 times), ERA5 and Kolmogorov files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_runs import kolmogorov_data, refused_on_one_line, tiny_run_values

from flexdownscale import errors
from flexdownscale.config import TrainConfig, apply_overrides, from_dict
from flexdownscale.train import Trainer, dump_toml, main

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"


def _radar_values(tmp_path: Path, shared_data: Path, **top: Any) -> dict[str, Any]:
    """The audit's radar run, made tiny: 18 hours to train, 6 to validate (centre crops)."""
    data = {
        "paths": [str(shared_data / RADAR)],
        "variables": ["precipitation"],
        "factor": 4,
        "crop_size": 32,
        "split_dim": "time",
        "train": ["2020-10-31T00:00", "2020-10-31T17:50"],
        "validation": ["2020-10-31T18:00", "2020-10-31T23:50"],
    }
    values = tiny_run_values(tmp_path, shared_data, eval_every=0, checkpoint_every=0, **top)
    values["data"] = {**data, **top.get("data", {})}
    return values


def _kolmogorov_values(tmp_path: Path, shared_data: Path, **top: Any) -> dict[str, Any]:
    values = tiny_run_values(tmp_path, shared_data, eval_every=0, **top)
    values["data"] = {**kolmogorov_data(shared_data), **top.get("data", {})}
    return values


def _toml(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    return path


# ---------------------------------------------------------------------------------------------
# data.nan_fields


def test_nan_in_the_training_data_is_refused_before_any_step(tmp_path, shared_data, capsys):
    """The audit's run trained 56 of 200 steps, until a random crop met a NaN, and stopped with
    nothing saved and a fix (ds.isel, ds.fillna) a TOML user cannot apply. Now the run is
    refused when the split opens, before any step and without touching run_dir, with the
    variable, the split, how many times and the TOML fix."""
    path = _toml(tmp_path, _radar_values(tmp_path, shared_data, steps=200))
    err = refused_on_one_line(path, [], capsys, tmp_path / "run")
    assert err.startswith(
        "flexdownscale.train: error: the train split holds NaN in 10 of its 108 fields "
        "(samples): variable 'precipitation' in 10 fields (43 NaN values) at "
        "time=2020-10-31 00:40:00, "
    )
    assert 'data.nan_fields = "drop"' in err


def test_nan_fields_drop_trains_and_reports_what_it_left_out(tmp_path, shared_data, capsys):
    values = _radar_values(tmp_path, shared_data, steps=2)
    path = _toml(tmp_path, values)
    assert main(["--config", str(path), "data.nan_fields=drop"]) == 0
    out = capsys.readouterr().out
    assert (
        'flexdownscale.train: data.nan_fields = "drop": left out 10 of the 108 fields of the '
        "train split, which hold NaN: time=2020-10-31 00:40:00, "
    ) in out
    run = tmp_path / "run"
    (launch,) = [json.loads(line) for line in (run / "launches.jsonl").read_text().splitlines()]
    assert launch["nan_fields_dropped"] == {"train": 10, "validation": 0}
    assert launch["stopped"] == "done"
    assert json.loads((run / "config.json").read_text())["data"]["nan_fields"] == "drop"
    # a resume sees the same 98 training items
    assert main(["--config", str(path), "data.nan_fields=drop", "--resume", "steps=3"]) == 0


def test_forecast_run_records_the_windows_it_left_out(tmp_path, shared_data, capsys):
    """``nan_fields_dropped`` counts NaN frames; a forecast trains on windows of past frames
    plus the target, and one NaN frame spoils every window that reads it: launches.jsonl now
    says how many windows (items) each split lost, as the printed summary does."""
    import xarray as xr

    values = _radar_values(
        tmp_path,
        shared_data,
        steps=1,
        model={"preset": "tiny", "task": "forecast", "past_frames": 2},
        data={"past_frames": 2, "nan_fields": "drop"},
    )
    Trainer(from_dict(TrainConfig, values)).fit()
    # by hand: the windows of 3 consecutive frames (2 past + the target, lead 1) of the train
    # split that hold a frame with a NaN anywhere (random crops reach every cell)
    with xr.open_dataset(shared_data / RADAR) as ds:
        start, stop = values["data"]["train"]
        bad = ds["precipitation"].sel(time=slice(start, stop)).isnull().any(("y", "x")).values
    expected = int(np.lib.stride_tricks.sliding_window_view(bad, 3).any(axis=1).sum())
    assert expected > 10  # more windows than NaN frames are lost
    (launch,) = [
        json.loads(line) for line in (tmp_path / "run" / "launches.jsonl").read_text().splitlines()
    ]
    # validation crops are centred: the radar's NaNs near the edges lie outside them
    assert launch["nan_windows_dropped"] == {"train": expected, "validation": 0}
    assert launch["nan_fields_dropped"] == {"train": 10, "validation": 0}
    assert f"left out {expected} of the 106 windows" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# settings refused on the command line before the data load, naming the key


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("seed=-1", "seed = -1 is out of range; expected an integer in [0, 4294967295]"),
        ("seed=4294967296", "seed = 4294967296 is out of range"),
        ("time_limit_minutes=nan", "time_limit_minutes = nan is out of range"),
        ("time_limit_minutes=inf", "time_limit_minutes = inf is out of range"),
        ("data.condition_scale=0", "data.condition_scale = 0.0 is out of range"),
        ("model.dropout=1.5", "model.dropout = 1.5 is out of range"),
        ("diffusion.shift=0", "diffusion.shift = 0.0 is out of range"),
    ],
)
def test_bad_settings_exit_2_on_one_line_before_the_data_load(
    tmp_path, shared_data, capsys, override, key
):
    """``seed = -1`` gave set_seed's ValueError traceback (exit 1); ``time_limit_minutes = nan``
    meant no limit; the others were refused with bare names once the data had loaded."""
    path = _toml(tmp_path, tiny_run_values(tmp_path, shared_data))
    err = refused_on_one_line(path, [override], capsys, tmp_path / "run")
    assert err.startswith(f"flexdownscale.train: error: {key}")


def test_the_largest_seed_trains(tmp_path, shared_data):
    config = from_dict(TrainConfig, tiny_run_values(tmp_path, shared_data, eval_every=0))
    Trainer(apply_overrides(config, ["seed=4294967295"])).fit()
    assert (tmp_path / "run" / "model").is_dir()


# ---------------------------------------------------------------------------------------------
# model.physical_condition follows data.condition


def test_physical_condition_follows_the_condition_and_false_against_it_is_refused(
    tmp_path, shared_data
):
    """``model.physical_condition = false`` with ``data.condition`` set was switched to true
    silently; it is refused, naming both keys. Left out, it follows ``data.condition``."""
    values = _kolmogorov_values(tmp_path, shared_data)
    with pytest.raises(
        errors.ConfigError,
        match=r"model\.physical_condition = false but data\.condition = 'reynolds_number'",
    ):
        from_dict(TrainConfig, {**values, "model": {"preset": "tiny", "physical_condition": False}})
    config = from_dict(TrainConfig, values)
    assert config.model.physical_condition is None
    trainer = Trainer(config)
    assert trainer._model_config().physical_condition is True
    del trainer
    era5 = from_dict(TrainConfig, tiny_run_values(tmp_path / "era5", shared_data))
    assert Trainer(era5)._model_config().physical_condition is False


def test_a_run_saved_with_false_next_to_a_condition_resumes(tmp_path, shared_data):
    """Runs saved before ``physical_condition`` defaulted to "follow the data" hold ``false``
    next to a condition in their config.json (their models took the condition): they resume,
    and no change of the key is reported."""
    values = _kolmogorov_values(tmp_path, shared_data)
    Trainer(from_dict(TrainConfig, values)).fit()
    saved = tmp_path / "run" / "config.json"
    old = json.loads(saved.read_text())
    old["model"]["physical_condition"] = False  # as earlier versions wrote it
    saved.write_text(json.dumps(old))
    resumed = Trainer(from_dict(TrainConfig, {**values, "steps": 2}), resume=True)
    assert "model.physical_condition" not in resumed.changed_settings
    resumed.fit()
    folder = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert folder["model"]["physical_condition"] is True


# ---------------------------------------------------------------------------------------------
# a training split smaller than one micro-batch


@pytest.mark.parametrize(("hours", "said"), [(1, "1 sample,"), (3, "3 samples,")])
def test_a_split_smaller_than_a_micro_batch_is_refused_with_its_size(
    tmp_path, shared_data, capsys, hours, said
):
    """With ``drop_last`` the loader of a split smaller than one micro-batch has no batch: the
    run would end before its first step. Refused on one line, naming the split's size (in the
    singular for one sample) and the micro-batch, before the run folder is made."""
    values = tiny_run_values(
        tmp_path,
        shared_data,
        batch_size=4,
        data={"train": ["2019-03-01T00", f"2019-03-01T{hours - 1:02d}"]},
    )
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    err = refused_on_one_line(path, [], capsys, tmp_path / "run")
    assert f"the training split has {said} fewer than one micro-batch (4)" in err
    assert "lower batch_size, raise data.crops_per_field (now 1: crops of each field" in err


def test_forecast_validation_at_another_time_step_is_refused(tmp_path, shared_data, capsys):
    """Each split was checked for one time step, not against the other: an hourly training
    split validated on 2-hourly frames scored two-hour forecasts of a one-hour model."""
    import xarray as xr

    with xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc") as ds:
        ds.sel(time=slice("2019-03-01", "2019-03-02")).to_netcdf(tmp_path / "hourly.nc")
        ds.sel(time=slice("2019-03-18", "2019-03-19")).isel(time=slice(None, None, 2)).to_netcdf(
            tmp_path / "two_hourly.nc"
        )
    values = tiny_run_values(
        tmp_path,
        shared_data,
        steps=1,
        eval_every=1,
        model={"preset": "tiny", "task": "forecast", "past_frames": 2},
    )
    values["data"] = {
        "paths": [str(tmp_path / "hourly.nc"), str(tmp_path / "two_hourly.nc")],
        "variables": ["t2m"],
        "factor": 4,
        "crop_size": 16,
        "past_frames": 2,
        "train": ["2019-03-01", "2019-03-02T23"],
        "validation": ["2019-03-18", "2019-03-19T23"],
    }
    err = refused_on_one_line(_toml(tmp_path, values), [], capsys, tmp_path / "run")
    assert err.strip() == (
        "flexdownscale.train: error: the validation split's frames step every 2 hours but the "
        "train split's every 1 hour (the most common spacing of their times); a forecast model "
        "learns one time step, and scoring it at another measures a forecast it was not trained "
        "to make: give both splits frames of one step (resample one, e.g. every k-th time: "
        "ds.isel(time=slice(None, None, k)))"
    )
    # the same files at one step train
    values["data"]["paths"] = [str(tmp_path / "hourly.nc")]
    values["data"]["validation"] = ["2019-03-02T12", "2019-03-02T23"]
    values["data"]["train"] = ["2019-03-01", "2019-03-02T11"]
    assert main(["--config", str(_toml(tmp_path, values))]) == 0


def test_exported_card_names_the_condition_and_the_transforms(tmp_path, shared_data):
    """The card written at export named neither the model's condition (name, scale, range
    trained on) nor a variable's log1p transform; ``hub.model_card_lines`` gives both lines."""
    from flexdownscale.hub import model_card_lines

    Trainer(from_dict(TrainConfig, _kolmogorov_values(tmp_path / "k", shared_data))).fit()
    card = (tmp_path / "k" / "run" / "model" / "README.md").read_text()
    folder = json.loads((tmp_path / "k" / "run" / "model" / "config.json").read_text())
    (condition_line,) = model_card_lines(folder["condition"], {})
    assert condition_line.startswith("- physical condition: `reynolds_number`")
    assert f"{condition_line}\n" in card.split("## Training")[0]  # in the Data section
    values = _radar_values(tmp_path / "r", shared_data, steps=1, data={"nan_fields": "drop"})
    Trainer(from_dict(TrainConfig, values)).fit()
    card = (tmp_path / "r" / "run" / "model" / "README.md").read_text()
    assert "- normalization transform: `precipitation` log1p" in card
    assert "physical condition" not in card
