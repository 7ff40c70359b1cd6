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
