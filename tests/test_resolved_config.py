"""The run folder's config.toml / config.json record the model section as the model was built
(channels, past frames and condition as the data decide them), and a resume compares what the
model takes: the true values, left out or given, resume; a run saved by an earlier version (the
unset values recorded) resumes with the same settings; a changed data.condition is named as
such, not as the model.physical_condition it switches.

In-process runs with the tiny preset and no optimiser step (a state saved at step 0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flexdownscale import errors
from flexdownscale.config import TrainConfig, from_dict, from_toml
from flexdownscale.train import Trainer

KOLMOGOROV = Path("kolmogorov") / "kf_re1000.nc"


def _run(tmp_path: Path, shared_data: Path, *, model: Any = None, data: Any = None) -> TrainConfig:
    """A tiny two-frame forecast run on one Kolmogorov file; ``model`` / ``data`` add keys."""
    return from_dict(
        TrainConfig,
        {
            "run_dir": str(tmp_path / "run"),
            "batch_size": 2,
            "eval_every": 0,
            "logger": "none",
            "model": {"preset": "tiny", "task": "forecast", **(model or {})},
            "data": {
                "paths": [str(shared_data / KOLMOGOROV)],
                "variables": ["vorticity"],
                "crop_size": 32,
                "split_dim": "trajectory",
                "train": [0, 2],
                "past_frames": 2,
                **(data or {}),
            },
        },
    )


def _saved_model(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "run" / "config.json").read_text())["model"]


def test_the_run_config_records_the_past_frames_the_model_takes(tmp_path, shared_data):
    """data.past_frames = 2, model.past_frames left out: the run's config.json and config.toml
    record 2 (they recorded 1); a resume with the true model.past_frames=2 continues (it was
    refused "model.past_frames 1 -> 2"), and so does one from the saved config.toml itself."""
    config = _run(tmp_path, shared_data)
    Trainer(config).save_state()
    saved = _saved_model(tmp_path)
    assert (saved["past_frames"], saved["in_channels"], saved["physical_condition"]) == (
        2,
        1,
        False,
    )
    toml_model = from_toml(TrainConfig, tmp_path / "run" / "config.toml").model
    assert toml_model.past_frames == 2
    given = _run(tmp_path, shared_data, model={"past_frames": 2})
    assert Trainer(given, resume=True).changed_settings == {}
    own = from_toml(TrainConfig, tmp_path / "run" / "config.toml")
    assert Trainer(own, resume=True).changed_settings == {}
    # a value the data cannot give is still refused, with the run's value to resume with
    with pytest.raises(errors.CheckpointError, match=r"model\.past_frames 2 -> 3.*past_frames=2\)"):
        Trainer(_run(tmp_path, shared_data, model={"past_frames": 3}), resume=True)


def test_a_run_started_with_the_matching_past_frames_resumes_without_it(tmp_path, shared_data):
    """model.past_frames = 2 next to data.past_frames = 2 (allowed), then left out on resume as
    the docs say: continues (it was refused "model.past_frames 2 -> 1")."""
    Trainer(_run(tmp_path, shared_data, model={"past_frames": 2})).save_state()
    assert _saved_model(tmp_path)["past_frames"] == 2
    assert Trainer(_run(tmp_path, shared_data), resume=True).changed_settings == {}


def _winds(tmp_path: Path, shared_data: Path, variables: list[str], **model: Any) -> TrainConfig:
    return from_dict(
        TrainConfig,
        {
            "run_dir": str(tmp_path / "run"),
            "batch_size": 1,
            "eval_every": 0,
            "logger": "none",
            "model": {"preset": "tiny", **model},
            "data": {
                "paths": [str(shared_data / "era_interim" / "eraint_uv_monthly.nc")],
                "variables": variables,
                "factor": 4,
                "crop_size": 32,
                "split_dim": "month",
                "train": [1],
            },
        },
    )


def test_a_two_variable_run_records_and_resumes_with_two_channels(tmp_path, shared_data):
    """data.variables = [u, v]: the run's config records model.in_channels = 2 (it recorded 1),
    and a resume with model.in_channels=2 continues (it was refused "1 -> 2"), as does one that
    leaves it out. With data.variables empty (every variable of the file) the count is only known
    once the data are open: recorded as loaded, and the same configuration resumes."""
    Trainer(_winds(tmp_path, shared_data, ["u", "v"])).save_state()
    assert _saved_model(tmp_path)["in_channels"] == 2
    given = _winds(tmp_path, shared_data, ["u", "v"], in_channels=2)
    assert Trainer(given, resume=True).changed_settings == {}
    assert Trainer(_winds(tmp_path, shared_data, ["u", "v"]), resume=True).changed_settings == {}

    every = _winds(tmp_path / "every", shared_data, [])
    trainer = Trainer(every)
    trainer.save_state()
    channels = len(trainer.train_set.variables)
    assert channels > 1
    assert _saved_model(tmp_path / "every")["in_channels"] == channels
    assert Trainer(every, resume=True).changed_settings == {}


def test_a_run_saved_by_an_earlier_version_resumes_with_the_same_settings(tmp_path, shared_data):
    """An earlier version's config.json holds the unset values (model.past_frames = 1,
    physical_condition null): the run resumes with the settings it was started with, and with
    the values the model was built with."""
    config = _run(tmp_path, shared_data)
    Trainer(config).save_state()
    saved = tmp_path / "run" / "config.json"
    values = json.loads(saved.read_text())
    values["model"].update(past_frames=1, in_channels=1, physical_condition=None)
    saved.write_text(json.dumps(values))
    assert Trainer(config, resume=True).changed_settings == {}
    saved.write_text(json.dumps(values))  # the resume above recorded the resolved values
    given = _run(tmp_path, shared_data, model={"past_frames": 2})
    assert Trainer(given, resume=True).changed_settings == {}


def test_a_resume_with_the_condition_removed_names_data_condition(tmp_path, shared_data):
    """data.condition = none on a conditioned run: refused naming data.condition with the value
    to restore (it named model.physical_condition True -> False and suggested
    model.physical_condition=true, which is refused without a condition)."""
    condition = {"condition": "reynolds_number", "condition_scale": 40000.0}
    Trainer(_run(tmp_path, shared_data, data=condition)).save_state()
    assert _saved_model(tmp_path)["physical_condition"] is True
    with pytest.raises(errors.CheckpointError) as refused:
        Trainer(_run(tmp_path, shared_data, data={**condition, "condition": None}), resume=True)
    message = str(refused.value)
    assert "the [data] section differs" in message
    assert "data.condition 'reynolds_number' -> none" in message
    assert 'Resume with them (data.condition="reynolds_number")' in message
    assert "physical_condition" not in message


def test_the_card_writes_an_unset_setting_changed_on_resume_as_none():
    """The card's resume history wrote Python's ``None`` (``data.condition None -> ...``) where
    the resume message and the command line write ``none``."""
    from flexdownscale.train import _settings_history

    history = _settings_history(
        [
            {"from_step": 0, "changed": {"steps": [1, 2]}},
            {"from_step": 2, "changed": {"data.condition": [None, "reynolds_number"]}},
        ]
    )
    assert history == (
        "- settings changed on resume (the lines above give the last launch's values):\n"
        "  - from step 0: steps 1 -> 2\n"
        "  - from step 2: data.condition none -> 'reynolds_number'\n"
    )
    assert _settings_history([]) == ""
