"""A resume keeps the run's normalization and says when the data changed (reviewer-154, 7).

A run resumed on a replaced file (``t2m + 15``) refitted the statistics without a word: the
exported ``normalization.json`` moved from 280.30 to 295.30 and the state recorded neither
the statistics nor anything of the data. The state's marker now records the normalization
the weights are trained for and a fingerprint of the data (the fitted statistics, each
split's fields and the grid); a resume normalizes with the recorded statistics, exports
them, and warns, naming what changed. States of earlier versions still resume, with a line
saying that the data could not be checked.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from train_runs import started_run

from flexdownscale import errors
from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.data.normalize import Normalizer
from flexdownscale.train import STATE_MARKER, Trainer, list_states


@pytest.fixture
def started(tmp_path, shared_data):
    """A run on a copy of the ERA5 file with one state (step 0); returns its values, the
    copy's path and the t2m it was written from."""
    return started_run(tmp_path, shared_data)


def _replace(path, data: xr.Dataset) -> None:
    path.unlink()
    data.to_netcdf(path)


def _marker(tmp_path) -> dict:
    return json.loads((list_states(tmp_path / "run")[-1] / STATE_MARKER).read_text())


def _resume(values, **top) -> tuple[Trainer, list[str]]:
    """A resume to step 2 (``top`` replaces entries); returns it and the package's warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(from_dict(TrainConfig, {**values, "steps": 2, **top}), resume=True)
    return trainer, [
        str(w.message) for w in caught if issubclass(w.category, errors.FlexDownscaleWarning)
    ]


def test_the_state_records_its_normalization_and_data_and_an_unchanged_resume_is_quiet(
    started, tmp_path
):
    values, _, _ = started
    marker = _marker(tmp_path)
    fitted = Normalizer.from_dict(marker["normalization"])
    assert fitted.stats["t2m"].mean == pytest.approx(280.30, abs=0.01)
    data = marker["data"]
    assert data["fitted"] == marker["normalization"]
    assert data["train"]["fields"] == 408
    assert data["train"]["first"]["time"].startswith("2019-03-01T00")
    assert data["train"]["last"]["time"].startswith("2019-03-17T23")
    assert len(data["train"]["sha256"]) == 64
    assert data["validation"]["fields"] == 4
    assert data["grid"]["nx"] == 49
    trainer, warned = _resume(values)
    assert warned == []
    assert trainer.data_changes == []


def test_a_replaced_file_is_named_and_the_run_keeps_and_exports_its_statistics(started, tmp_path):
    values, path, t2m = started
    _replace(path, t2m + 15.0)
    trainer, warned = _resume(values)
    (message,) = [w for w in warned if "differ from those its state" in w]
    assert "step_00000000" in message
    assert "(t2m mean 280.303 -> 295.303 K)" in message  # the std did not change
    assert "The run keeps the normalization it started with ((t2m [K] - 280.303)" in message
    assert "restore them and resume again" in message
    assert "new run_dir" in message
    # both splits normalize with the recorded statistics, not the refit
    for data in (trainer.train_set, trainer.val_set):
        assert data.normalizer.stats["t2m"].mean == pytest.approx(280.30, abs=0.01)
    folder = trainer.fit()
    exported = Normalizer.from_json(folder / "normalization.json")
    assert exported.stats["t2m"].mean == pytest.approx(280.30, abs=0.01)
    # the new state carries the run's statistics on, with this launch's data
    marker = _marker(tmp_path)
    assert marker["step"] == 2
    assert marker["normalization"]["variables"][0]["mean"] == pytest.approx(280.30, abs=0.01)
    assert marker["data"]["fitted"]["variables"][0]["mean"] == pytest.approx(295.30, abs=0.01)
    launch = json.loads((tmp_path / "run" / "launches.jsonl").read_text().splitlines()[-1])
    assert any("t2m mean 280.303 -> 295.303" in line for line in launch["data_changed"])
    # a further resume on the same (changed) data: nothing new to say
    assert _resume(values, steps=3)[1] == []


def test_another_region_of_the_same_shape_is_named_by_its_grid(started):
    values, path, t2m = started
    _replace(path, t2m.assign_coords(longitude=t2m.longitude + 5.0))
    _, warned = _resume(values)
    (message,) = [w for w in warned if "differ from those its state" in w]
    assert "the grid (x0 -10.0 -> -5.0)" in message
    assert "statistics" not in message


def test_other_labels_between_the_same_first_and_last_field_are_named(started):
    values, path, t2m = started
    times = pd.DatetimeIndex(t2m.time.values).to_numpy().copy()
    times[100] += np.timedelta64(30, "m")  # still sorted, same count and ends
    _replace(path, t2m.assign_coords(time=times))
    _, warned = _resume(values)
    (message,) = [w for w in warned if "differ from those its state" in w]
    assert "the training split's field labels (408 fields, time 2019-03-01T00" in message
    assert "but other labels in between" in message


def test_a_state_of_an_earlier_version_resumes_with_a_note(started, tmp_path, capsys):
    values, path, t2m = started
    marker_path = list_states(tmp_path / "run")[-1] / STATE_MARKER
    marker = json.loads(marker_path.read_text())
    del marker["normalization"], marker["data"]
    marker_path.write_text(json.dumps(marker))
    _replace(path, t2m + 15.0)
    trainer, warned = _resume(values)
    assert warned == []
    out = capsys.readouterr().out
    assert "records neither the normalization its weights were trained with" in out
    assert "whether the data changed since cannot be checked" in out
    assert "(t2m [K] - 295.303) / 2.28" in out
    assert trainer.train_set.normalizer.stats["t2m"].mean == pytest.approx(295.30, abs=0.01)
    assert trainer.load_latest_state().name == "step_00000000"


def test_unreadable_recorded_statistics_are_a_damaged_state(started, tmp_path):
    values, _, _ = started
    marker_path = list_states(tmp_path / "run")[-1] / STATE_MARKER
    marker = json.loads(marker_path.read_text())
    marker["normalization"] = {"format_version": 1, "variables": [{"name": "t2m"}]}
    marker_path.write_text(json.dumps(marker))
    with pytest.raises(errors.CheckpointError, match="records normalization statistics that"):
        _resume(values)
