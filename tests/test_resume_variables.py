"""A resume whose files gained a variable (``data.variables`` empty reads every one).

The state of a one-variable run failed to load against the two-channel model the grown file
gave, with "it is damaged ... Remove it to fall back to the previous state (none)": the advice
threw away everything trained. The state's marker now records the variables; the resume is
refused before anything loads, naming them and ``data.variables=[...]`` to resume with.
"""

from __future__ import annotations

import json

import pytest
import xarray as xr
from train_runs import ERA5, tiny_run_values

from flexdownscale import errors
from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.train import STATE_MARKER, Trainer, list_states


@pytest.fixture
def grown_run(tmp_path, shared_data):
    """A one-step run on a file holding t2m only, whose file then gains ``t2m_b``."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        t2m = ds[["t2m"]].load()
    path = tmp_path / "fields.nc"
    t2m.to_netcdf(path)
    values = tiny_run_values(tmp_path, shared_data, eval_every=0)
    values["data"] = {**values["data"], "paths": [str(path)], "variables": []}
    Trainer(from_dict(TrainConfig, values)).save_state()
    path.unlink()
    t2m.assign(t2m_b=t2m.t2m + 1.0).to_netcdf(path)
    return values


def test_the_state_records_its_variables(grown_run, tmp_path):
    marker = json.loads((list_states(tmp_path / "run")[-1] / STATE_MARKER).read_text())
    assert marker["variables"] == ["t2m"]


def test_a_grown_file_is_refused_before_loading_and_the_named_fix_resumes(grown_run, tmp_path):
    with pytest.raises(errors.CheckpointError) as info:
        Trainer(from_dict(TrainConfig, {**grown_run, "steps": 2}), resume=True)
    message = str(info.value)
    assert 'the variables ["t2m"] but the data now give ["t2m", "t2m_b"]' in message
    assert "data.variables is empty" in message
    assert 'Resume with data.variables=["t2m"]' in message
    assert "Remove it" not in message
    assert [s.name for s in list_states(tmp_path / "run")] == ["step_00000000"]
    # the fix it names: data.variables set to what the empty list read is no change of [data]
    fixed = {**grown_run, "steps": 2, "data": {**grown_run["data"], "variables": ["t2m"]}}
    trainer = Trainer(from_dict(TrainConfig, fixed), resume=True)
    assert trainer.changed_settings == {"steps": (1, 2)}
    assert trainer.load_latest_state().name == "step_00000000"


def test_another_list_of_variables_is_still_a_changed_data_section(grown_run):
    other = {**grown_run, "data": {**grown_run["data"], "variables": ["t2m_b"]}}
    with pytest.raises(errors.CheckpointError, match=r"data.variables \[\] -> \['t2m_b'\]"):
        Trainer(from_dict(TrainConfig, other), resume=True)


def test_a_state_without_the_record_is_called_another_shape_not_damaged(grown_run, tmp_path):
    """States written before the marker held the variables: the load's message says the model's
    shape differs and that the state is kept; it no longer says to remove it."""
    marker_path = list_states(tmp_path / "run")[-1] / STATE_MARKER
    marker = json.loads(marker_path.read_text())
    del marker["variables"]
    marker_path.write_text(json.dumps(marker))
    trainer = Trainer(from_dict(TrainConfig, {**grown_run, "steps": 2}), resume=True)
    with pytest.raises(errors.CheckpointError) as info:
        trainer.load_latest_state()
    message = str(info.value)
    assert "holds a model of another shape than this configuration builds" in message
    assert "the state is kept" in message
    assert "Remove it" not in message
    assert marker_path.is_file()


def test_a_file_that_lost_a_variable_is_told_to_restore_it(tmp_path, shared_data):
    """The named fix for a grown file (``data.variables=[...]`` of the state) would fail on a
    file that lost one of them; the refusal names the lost variable, and restoring it resumes.
    """
    with xr.open_dataset(shared_data / ERA5) as ds:
        both = ds[["t2m"]].load().assign(t2m_b=lambda d: d.t2m + 1.0)
    path = tmp_path / "fields.nc"
    both.to_netcdf(path)
    values = tiny_run_values(tmp_path, shared_data, eval_every=0)
    values["data"] = {**values["data"], "paths": [str(path)], "variables": []}
    Trainer(from_dict(TrainConfig, values)).save_state()
    path.unlink()
    both[["t2m"]].to_netcdf(path)
    resumed = {**values, "steps": 2}
    with pytest.raises(errors.CheckpointError) as info:
        Trainer(from_dict(TrainConfig, resumed), resume=True)
    message = str(info.value)
    assert 'the variables ["t2m", "t2m_b"] but the data now give ["t2m"]' in message
    assert 'The files no longer hold ["t2m_b"]: restore that variable in the files' in message
    assert "Resume with data.variables" not in message
    assert [s.name for s in list_states(tmp_path / "run")] == ["step_00000000"]
    path.unlink()
    both.to_netcdf(path)  # the fix it names
    assert Trainer(from_dict(TrainConfig, resumed), resume=True).load_latest_state().name == (
        "step_00000000"
    )
