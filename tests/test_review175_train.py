"""Training review (helper-175): a resume opens its validation split with the state's
statistics; one detection of the launcher; the data-change statistics through the Normalizer.

Before, a resume opened the validation split with the statistics refitted on the data of this
launch, and only then gave it the recorded ones: its fill-value screen judged the validation
fields by the refit. A file rewritten with a wider training split hid a ``-999`` in the
validation split (20 standard deviations of the refit away, not of the run's), which the
validation then scored with the run's statistics.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import xarray as xr
from train_runs import started_run

from flexdownscale import errors, train
from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.data.normalize import Normalizer
from flexdownscale.train import STATE_MARKER, Trainer, list_states

VALIDATION = slice("2019-03-24T00", "2019-03-24T03")


@pytest.fixture
def started(tmp_path, shared_data):
    """A run on a copy of the ERA5 t2m with one state (step 0): its values, the copy's path
    and the t2m it was written from."""
    return started_run(tmp_path, shared_data)


def _rewritten(path, t2m: xr.Dataset, *, widen: float, fill: float | None) -> None:
    """Rewrite the file: the training times' anomalies ``widen`` times larger (a refit's std
    grows by as much), ``fill`` in one cell of the first validation field."""
    mean = float(t2m["t2m"].mean())
    data = t2m.copy(deep=True)
    train_times = data.time <= np.datetime64("2019-03-17T23")
    data["t2m"] = xr.where(train_times, mean + (data["t2m"] - mean) * widen, data["t2m"])
    data["t2m"].attrs = t2m["t2m"].attrs
    if fill is not None:
        first = int(np.flatnonzero(data.time.values >= np.datetime64("2019-03-24T00"))[0])
        data["t2m"][first, 5, 5] = fill
    path.unlink()
    data.to_netcdf(path)


def _resume(values: dict) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.FlexDownscaleWarning)
        return Trainer(from_dict(TrainConfig, {**values, "steps": 2}), resume=True)


def _recorded(tmp_path) -> Normalizer:
    marker = json.loads((list_states(tmp_path / "run")[-1] / STATE_MARKER).read_text())
    return Normalizer.from_dict(marker["normalization"])


def test_a_resume_screens_the_validation_split_with_the_states_statistics(started, tmp_path):
    values, path, t2m = started
    recorded = _recorded(tmp_path).stats["t2m"]
    # a refit std about 30 times the run's: -999 lies within 20 refit stds of the mean
    _rewritten(path, t2m, widen=30.0, fill=-999.0)
    with pytest.raises(errors.DataError) as info:
        _resume(values)
    message = str(info.value)
    assert "the validation split: variable 't2m' holds -999" in message
    assert f"(t2m [K] - {recorded.mean:.6g}) / {recorded.std:.6g}" in message  # the run's


def test_a_resume_validates_on_the_states_statistics(started, tmp_path):
    values, path, t2m = started
    recorded = _recorded(tmp_path)
    _rewritten(path, t2m, widen=30.0, fill=None)
    trainer = _resume(values)
    refit = trainer._fitted.stats["t2m"]
    assert refit.std > 20 * recorded.stats["t2m"].std  # the refit differs: it is not used
    assert trainer.val_set.normalizer == recorded
    assert trainer.train_set.normalizer == recorded
    item = trainer.val_set[0]
    target = item["fine"]
    fields = t2m["t2m"].sel(time=VALIDATION)
    s = recorded.stats["t2m"]
    lowest, highest = (float((f - s.mean) / s.std) for f in (fields.min(), fields.max()))
    assert lowest - 1e-4 <= float(target.min())
    assert float(target.max()) <= highest + 1e-4
    (change,) = trainer.data_changes  # the refit, in words
    assert f"std {recorded.stats['t2m'].std:.6g} -> {refit.std:.6g} K" in change


def test_statistics_changes_in_words():
    def record(mean: float, std: float, transform: str = "none") -> dict:
        stats = {"name": "t2m", "mean": mean, "std": std, "transform": transform, "units": "K"}
        return {"format_version": 1, "variables": [stats]}

    assert train._statistics_changes(record(280.0, 5.0), record(280.0, 5.0)) == []
    assert train._statistics_changes(record(280.0, 5.0), record(281.0, 6.0)) == [
        "t2m mean 280 -> 281 K, std 5 -> 6 K"
    ]
    assert train._statistics_changes(record(0.1, 0.2), record(0.1, 0.2, "log1p")) == [
        "t2m transform none -> log1p"
    ]
    # another variable, an unreadable record or none: nothing to compare
    other = {"format_version": 1, "variables": [{"name": "tp", "mean": 1.0, "std": 1.0}]}
    assert train._statistics_changes(other, record(281.0, 6.0)) == []
    assert train._statistics_changes({"variables": [{"name": "t2m"}]}, record(1.0, 1.0)) == []
    assert train._statistics_changes(None, record(1.0, 1.0)) == []


def test_one_launcher_detection():
    accelerate = {"ACCELERATE_MIXED_PRECISION": "no"}
    agent = {"TORCHELASTIC_RUN_ID": "none"}
    assert train._launcher({}) == train._Launch(None, False)
    assert train._launcher(accelerate) == train._Launch("accelerate launch", False)
    assert train._launcher({**accelerate, **agent}) == train._Launch("accelerate launch", True)
    assert train._launcher(agent) == train._Launch("torchrun", True)
    assert train._launcher({"SLURM_JOB_ID": "1", "ACCELERATE_LOG_LEVEL": "info"}).name is None


def test_the_resume_command_names_torchrun(monkeypatch):
    """Under torchrun the command said ``accelerate launch [the same launch options]``."""
    for key in [k for k in os.environ if k.startswith("ACCELERATE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert train._resume_command(["--config", "a.toml"], None) == (
        "torchrun [the same launch options] -m flexdownscale.train --config a.toml --resume"
    )
