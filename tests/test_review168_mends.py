"""Mends of reviewer-168's review: a file given as a model is refused without waiting, the
permissions of atomically written files and model folders follow the umask, and downscale's
check of an earlier output finds a time dim that only ``--dims`` names."""

from __future__ import annotations

import os
import threading

import pytest


def test_a_file_given_as_a_model_is_no_folder_without_a_pause(tmp_path, monkeypatch):
    from flexdownscale import hub

    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds} s for a file")

    monkeypatch.setattr(hub.time, "sleep", no_sleep)
    model = tmp_path / "model.nc"
    model.write_bytes(b"not a folder")
    assert hub._is_folder(model) is False
    (tmp_path / "folder").mkdir()
    assert hub._is_folder(tmp_path / "folder") is True
    assert hub._is_folder(tmp_path / "missing") is False  # no save under way: no pause either


def test_a_missing_folder_being_saved_is_looked_at_again(tmp_path, monkeypatch):
    from flexdownscale import hub

    path = tmp_path / "model"
    (tmp_path / f"{hub._previous_prefix(path)}abc123").mkdir()  # a save is replacing it
    pauses = []

    def appears(seconds):
        pauses.append(seconds)
        path.mkdir(exist_ok=True)

    monkeypatch.setattr(hub.time, "sleep", appears)
    assert hub._is_folder(path) is True
    assert len(pauses) == 1


@pytest.fixture
def umask_spy(monkeypatch, tmp_path):
    """Records, each time something sets the process's umask, the permissions that a file
    another thread creates at that moment gets; returns that list."""
    real = os.umask
    made = []

    def spy(mask):
        before = real(mask)
        probe = tmp_path / f"probe{len(made)}"

        def create():
            probe.touch()
            made.append(probe.stat().st_mode & 0o777)
            probe.unlink()

        worker = threading.Thread(target=create)
        worker.start()
        worker.join()
        return before

    monkeypatch.setattr(os, "umask", spy)
    return made


def _probe_mode(folder):
    probe = folder / "probe"
    probe.touch()
    try:
        return probe.stat().st_mode & 0o777
    finally:
        probe.unlink()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_an_atomic_write_keeps_the_umask_and_gives_a_new_files_permissions(
    tmp_path, umask_spy, mask
):
    from flexdownscale._output import write_atomically, write_text_atomically

    old = os.umask(mask)  # the spy records what a file made by another thread gets
    umask_spy.clear()
    try:
        write_text_atomically(tmp_path / "report.md", "text\n")
        write_atomically(tmp_path / "data.bin", lambda tmp: tmp.write_bytes(b"\0"))
        other_thread = _probe_mode(tmp_path)
        during = list(umask_spy)
    finally:
        os.umask(old)
    assert all(mode == 0o666 & ~mask for mode in during), [oct(m) for m in during]
    assert other_thread == 0o666 & ~mask
    for name in ("report.md", "data.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "report.md"]


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
def test_a_saved_model_folder_keeps_the_umask_and_has_the_usual_permissions(
    tmp_path, umask_spy, mask
):
    import torch

    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer, VariableStats
    from flexdownscale.hub import save_model_folder

    def save(path, overwrite=False):
        return save_model_folder(
            path,
            overwrite=overwrite,
            state_dict={"a.weight": torch.ones(3, 4)},
            model=ModelConfig(preset="tiny"),
            diffusion=DiffusionConfig(objective="flow"),
            sampler=SamplerConfig(sampler="euler", steps=4),
            variables=["t2m"],
            units={"t2m": "K"},
            factor=4,
            normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
            grid={"spacing": [0.25, 0.25]},
            card="# test model\n",
        )

    old = os.umask(mask)
    umask_spy.clear()
    try:
        path = save(tmp_path / "model")
        save(path, overwrite=True)  # replacing a folder
        during = list(umask_spy)
    finally:
        os.umask(old)
    assert all(mode == 0o666 & ~mask for mode in during), [oct(m) for m in during]
    assert path.stat().st_mode & 0o777 == 0o777 & ~mask
    files = sorted(path.iterdir())
    assert len(files) == 5
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in files)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no hidden folder left


def _rec_file(path, first, earlier_output=False):
    """A file whose time dim is ``rec`` (found only through ``--dims time=rec``), two steps
    from ``first``."""
    import numpy as np
    import xarray as xr

    ds = xr.Dataset(
        {"t2m": (("rec", "latitude", "longitude"), np.full((2, 8, 8), 280.0, "float32"))},
        coords={
            "rec": np.array([first, first + 1]),
            "latitude": ("latitude", np.arange(50.0, 52.0, 0.25), {"units": "degrees_north"}),
            "longitude": ("longitude", np.arange(0.0, 2.0, 0.25), {"units": "degrees_east"}),
        },
    )
    ds["t2m"].attrs["units"] = "K"
    if earlier_output:
        ds.attrs["flexdownscale_version"] = "test"
    ds.to_netcdf(path)


def test_an_earlier_output_of_other_times_is_found_with_the_time_dim_of_dims(
    tmp_path, monkeypatch, capsys
):
    """downscale's check of an earlier output of other times finds a time dim that only
    ``--dims time=...`` names (the check was skipped and the output replaced)."""
    from flexdownscale import cli, pipeline

    monkeypatch.chdir(tmp_path)
    runs = []

    def downscaler_for(model, names, **kwargs):
        def run(ds, **options):
            runs.append(options)
            return ds.assign_attrs(flexdownscale_version="test")

        return run

    monkeypatch.setattr(pipeline, "downscaler_for", downscaler_for)
    _rec_file("in.nc", 0)
    _rec_file("out.nc", 100, earlier_output=True)
    before = (tmp_path / "out.nc").read_bytes()
    argv = ["downscale", "in.nc", "out.nc", "--dims", "time=rec", "--quiet"]
    assert cli._run(argv, command_line=True) == 2
    assert capsys.readouterr().err == (
        "flexdownscale downscale: error: the output 'out.nc' exists and is an earlier output "
        "of flexdownscale for other times (2 times from 100 to 101) than the input's (2 times "
        "from 0 to 1), not this input's (an unquoted pattern such as coarse_*.nc that matches "
        "two files puts the second in OUTPUT's place), so writing the output would replace it: "
        "give another output path, or add --overwrite to replace it\n"
    )
    assert (tmp_path / "out.nc").read_bytes() == before
    assert not runs
    _rec_file("again.nc", 100)  # the earlier output's times: a re-run replaces it
    assert cli._run(["downscale", "again.nc", *argv[2:]], command_line=True) == 0
    assert len(runs) == 1
