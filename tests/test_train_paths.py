"""Training run folders and paths: ``~`` in ``run_dir``, ``data.paths`` and the export target, a
run folder inside the data glob, a relative ``run_dir`` resumed from elsewhere, and the spelling
of ``--resume`` from Python.

The runs are in-process with the tiny preset, 32 x 32 crops and one or two optimiser steps on the
real ERA5 file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_runs import ERA5, tiny_run_values

from flexdownscale import errors
from flexdownscale.config import TrainConfig, from_dict


def _home(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch home folder (``HOME``) holding a link to the ERA5 file as ``era5.nc``, and a
    scratch working directory ``tmp_path / "cwd"`` to run from; returns the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "era5.nc").symlink_to(shared_data / ERA5)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


def _values(tmp_path: Path, shared_data: Path, **top: object) -> dict[str, object]:
    """A one-step run without validation (no validation split needed)."""
    values = tiny_run_values(tmp_path, shared_data, eval_every=0, **top)
    values["data"] = {k: v for k, v in values["data"].items() if k != "validation"}
    values["data"]["train"] = ["2019-03-01", "2019-03-01T23"]
    return values


# ---------------------------------------------------------------------------------------------
# 1. "~" is the home folder in run_dir, data.paths and the export target


def test_tilde_in_run_dir_data_paths_and_export_is_the_home_folder(
    tmp_path, shared_data, monkeypatch, capsys
):
    from flexdownscale.train import Trainer

    home = _home(tmp_path, shared_data, monkeypatch)
    values = _values(tmp_path, shared_data, run_dir="~/runs/x")
    values["data"]["paths"] = ["~/era5.nc"]
    trainer = Trainer(from_dict(TrainConfig, values))
    assert trainer.run_dir == home / "runs" / "x"
    folder = trainer.fit()
    assert folder == home / "runs" / "x" / "model"
    assert (folder / "model.safetensors").is_file()
    assert f"exported the EMA model to {home / 'runs' / 'x' / 'model'}" in capsys.readouterr().out
    assert not (tmp_path / "cwd" / "~").exists()  # no literal "~" folder in the working directory
    # the run's configuration keeps the paths as written (the same run on resume)
    saved = json.loads((home / "runs" / "x" / "config.json").read_text())
    assert saved["run_dir"] == "~/runs/x"
    assert saved["data"]["paths"] == ["~/era5.nc"]
    # the launch record holds the files the paths resolved to
    (launch,) = (home / "runs" / "x" / "launches.jsonl").read_text().splitlines()
    assert json.loads(launch)["data_files"] == [str(home / "era5.nc")]
    # the export target and a glob in data.paths too
    assert trainer.export("~/exported") == home / "exported"
    assert (home / "exported" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "cwd").iterdir()) == []


def test_tilde_in_a_data_glob_is_the_home_folder(tmp_path, shared_data, monkeypatch):
    from flexdownscale.train import Trainer

    home = _home(tmp_path, shared_data, monkeypatch)
    (home / "era5b.nc").symlink_to(shared_data / ERA5)
    values = _values(tmp_path, shared_data, run_dir="~/runs/y")
    values["data"]["paths"] = ["~/era5*.nc"]
    trainer = Trainer(from_dict(TrainConfig, values))
    # both files, read from the home folder (the train split's day of each: 2 x 24 fields)
    assert [s.label for s in trainer.train_set.sources] == ["era5", "era5b"]
    single = _values(tmp_path, shared_data, run_dir=str(tmp_path / "single"))
    assert len(trainer.train_set) == 2 * len(Trainer(from_dict(TrainConfig, single)).train_set)


# ---------------------------------------------------------------------------------------------
# 2. a data glob never matches the run folder


@pytest.mark.slow  # three launches: start, resume, export-only (2-6 s)
def test_run_folder_inside_the_data_glob_resumes_and_exports(
    tmp_path, shared_data, monkeypatch, capsys
):
    """``data.paths = ["data/*"]`` with ``run_dir = "data/run"``: the first start does not see
    the run folder (it is made after the data are opened); the resume used to open it as a
    dataset (``DataError could not open 'data/run' with xarray``), and narrowing the glob was
    refused as a changed ``[data]`` section, so the run could never continue."""
    from flexdownscale.train import Trainer, dump_toml, main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "era5.nc").symlink_to(shared_data / ERA5)
    monkeypatch.chdir(tmp_path)
    values = _values(tmp_path, shared_data, run_dir="data/run", checkpoint_every=0)
    values["data"]["paths"] = ["data/*"]
    assert Trainer(from_dict(TrainConfig, values)).fit() == Path("data/run/model")
    capsys.readouterr()
    values["steps"] = 2
    resumed = Trainer(from_dict(TrainConfig, values), resume=True)
    assert "data.paths 'data/*' also matches the run folder 'data/run'" in capsys.readouterr().out
    assert [s.label for s in resumed.train_set.sources] == ["era5"]
    resumed.fit()
    assert resumed.progress.step == 2
    toml = tmp_path / "run.toml"
    toml.write_text(dump_toml(values))
    assert main(["--config", str(toml), "--export-only"]) == 0
    assert "exported the EMA model to data/run/model" in capsys.readouterr().out
    # every launch read the data file only (resolved, absolute), never the run folder
    launches = (tmp_path / "data" / "run" / "launches.jsonl").read_text().splitlines()
    assert [json.loads(line)["data_files"] for line in launches] == [
        [str(tmp_path / "data" / "era5.nc")]
    ] * 2
    # a glob that matches nothing but the run folder is refused, naming both
    values["run_dir"] = "data/zz"
    (tmp_path / "data" / "zz").mkdir()
    values["data"]["paths"] = ["data/z*"]
    with pytest.raises(errors.DataError, match=r"'data/z\*' matches only the run folder"):
        Trainer(from_dict(TrainConfig, values))


# ---------------------------------------------------------------------------------------------
# 4. --resume on the command line, resume=True from Python


def _fake_state(run_dir: Path) -> None:
    """A run folder holding one (empty) complete state: enough for the run-folder checks, which
    come before the data are opened."""
    from flexdownscale.train import STATE_MARKER

    state = run_dir / "checkpoints" / "step_00000001"
    state.mkdir(parents=True)
    (state / STATE_MARKER).write_text(json.dumps({"step": 1}))


def test_messages_name_resume_as_the_user_gives_it(tmp_path, shared_data, capsys):
    """From Python the refusals said "pass --resume to continue it"; the argument is
    ``resume=True`` there (``--resume`` on the command line)."""
    from flexdownscale.train import Trainer, dump_toml, main

    values = _values(tmp_path, shared_data)
    _fake_state(tmp_path / "run")
    toml = tmp_path / "run.toml"
    toml.write_text(dump_toml(values))
    with pytest.raises(errors.CheckpointError, match="; pass resume=True to continue it or"):
        Trainer(from_dict(TrainConfig, values))
    assert main(["--config", str(toml)]) == 2
    assert "; pass --resume to continue it or" in capsys.readouterr().err
    # nothing to resume or export: the option named as given, and how to drop it
    values["run_dir"] = str(tmp_path / "empty")
    toml.write_text(dump_toml(values))
    for python, command_line in (
        ({"resume": True}, "--resume"),
        ({"export_only": True}, "--export-only"),
    ):
        (spelling,) = (f"{k}=True" for k in python)
        with pytest.raises(
            errors.CheckpointError, match=rf"^{spelling} given but .*drop {spelling}"
        ):
            Trainer(from_dict(TrainConfig, values), **python)
        assert main(["--config", str(toml), command_line]) == 2
        err = capsys.readouterr().err
        assert f"error: {command_line} given but" in err
        assert f"drop {command_line}" in err


# ---------------------------------------------------------------------------------------------
# 3. a relative run_dir resumed from another working directory


def test_relative_run_dir_resumed_elsewhere_names_where_it_looked(
    tmp_path, shared_data, monkeypatch
):
    """``--resume`` with ``run_dir = "data/run"`` from another directory said "'data/run' holds
    no complete training state; drop --resume to start a new run", and following that started a
    new run there. The message names the folder looked in, the working directory and the ways to
    reach the run; nothing is written."""
    from flexdownscale.train import Trainer, dump_toml, main

    _fake_state(tmp_path / "started" / "data" / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    values = _values(tmp_path, shared_data, run_dir="data/run")
    looked = repr(str(elsewhere / "data" / "run"))
    with pytest.raises(errors.CheckpointError) as err:
        Trainer(from_dict(TrainConfig, values), resume=True)
    assert str(err.value) == (
        f"resume=True given but run_dir 'data/run' holds no complete training state (looked for "
        f"in {looked}, no such folder: a relative run_dir is read from the current working "
        f"directory, {str(elsewhere)!r}); to continue a run started in another directory, run "
        "from that directory or give run_dir as an absolute path (without resume=True a new run "
        f"starts in {looked})"
    )
    (tmp_path / "run.toml").write_text(dump_toml(values))
    assert main(["--config", str(tmp_path / "run.toml"), "--export-only"]) == 2
    assert list(elsewhere.iterdir()) == []
    # from the directory it was started in, or with run_dir absolute, the state is found (the
    # fake state, without config.json or a recorded sample order, is refused after that)
    for where, run_dir in (
        (tmp_path / "started", "data/run"),
        (elsewhere, str(tmp_path / "started" / "data" / "run")),
    ):
        monkeypatch.chdir(where)
        found = from_dict(TrainConfig, {**values, "run_dir": run_dir})
        with pytest.raises(errors.CheckpointError, match="its state step_00000001 records no"):
            Trainer(found, resume=True)
