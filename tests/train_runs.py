"""Configurations of the tiny in-process training runs of the training tests.

Tiny preset, 32 x 32 crops, one optimiser step by default, on the real ERA5 file (a 33 x 49
grid): 1-17 March to train, four hours of 24 March to validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flexdownscale.config import TrainConfig, from_dict

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


def tiny_run_values(tmp_path: Path, shared_data: Path, **top: Any) -> dict[str, Any]:
    """The run's configuration as a dict; ``top`` replaces entries (tables are merged)."""
    values: dict[str, Any] = {
        "run_dir": str(tmp_path / "run"),
        "steps": 1,
        "batch_size": 2,
        "eval_every": 1,
        "checkpoint_every": 1,
        "total_limit": 1,
        "plot_every": 0,
        "logger": "none",
        "eval_fields": 1,
        "eval_members": 2,
        "model": {"preset": "tiny"},
        "sampler": {"steps": 1},
        "data": {
            "paths": [str(shared_data / ERA5)],
            "variables": ["t2m"],
            "factor": 4,
            "crop_size": 32,
            "train": ["2019-03-01", "2019-03-17T23"],
            "validation": ["2019-03-24T00", "2019-03-24T03"],
        },
        "optim": {"warmup_steps": 1},
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def kolmogorov_data(shared_data: Path) -> dict[str, Any]:
    """``[data]`` of a tiny Kolmogorov run: both Reynolds numbers, x8, 32 x 32 crops,
    trajectories 0-2 to train and 3 to validate, conditioned on Re / 40000."""
    kolmogorov = shared_data / "kolmogorov"
    return {
        "paths": [str(kolmogorov / "kf_re1000.nc"), str(kolmogorov / "kf_re4000.nc")],
        "variables": ["vorticity"],
        "factor": 8,
        "crop_size": 32,
        "split_dim": "trajectory",
        "train": [0, 2],
        "validation": [3],
        "condition": "reynolds_number",
        "condition_scale": 40000.0,
    }


def tiny_run_config(tmp_path: Path, shared_data: Path, **top: Any) -> TrainConfig:
    """:func:`tiny_run_values` as a checked :class:`TrainConfig`."""
    return from_dict(TrainConfig, tiny_run_values(tmp_path, shared_data, **top))


def tiny_forecast_config(tmp_path: Path, shared_data: Path) -> TrainConfig:
    """A two-past-frame forecast on the hourly ERA5 file, no validation (quick to export)."""
    return tiny_run_config(
        tmp_path,
        shared_data,
        eval_every=0,
        model={"preset": "tiny", "task": "forecast"},
        data={"past_frames": 2, "validation": []},
    )


def refused_on_one_line(path: Path, overrides: list[str], capsys: Any, run_dir: Path) -> str:
    """Run ``flexdownscale.train --config path *overrides`` and check that it is refused: exit
    status 2, one line on stderr, no ``run_dir`` made. Returns that line."""
    from flexdownscale.train import main

    assert main(["--config", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()
    return err


def era5_corner(folder: Path, shared_data: Path) -> Path:
    """The south-east 32 x 32 corner of the ERA5 file over 18-24 March (days the shipped
    ``era5-t2m-x4`` did not train on), written as ``folder/t2m_corner.nc``."""
    import xarray as xr

    with xr.open_dataset(shared_data / ERA5) as ds:
        cut = ds.isel(latitude=slice(1, 33), longitude=slice(17, 49)).sel(
            time=slice("2019-03-18", None)
        )
        path = folder / "t2m_corner.nc"
        cut.load().to_netcdf(path)
    return path


def fine_tuning_config(tmp_path: Path, shared_data: Path, corner: Path, **top: Any) -> TrainConfig:
    """A fine-tuning run of ``era5-t2m-x4`` on the ``corner`` file (:func:`era5_corner`), no
    validation; ``top`` replaces entries (tables are merged)."""
    values: dict[str, Any] = {
        "init_from": "era5-t2m-x4",
        "eval_every": 0,
        "data": {
            "paths": [str(corner)],
            "variables": [],  # taken from the folder
            "train": ["2019-03-18", "2019-03-23T23"],
            "validation": [],
        },
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return tiny_run_config(tmp_path, shared_data, **values)


def started_run(tmp_path: Path, shared_data: Path) -> tuple[dict[str, Any], Path, Any]:
    """A run on a copy of the ERA5 t2m with one state (step 0): its values, the copy's path
    and the t2m it was written from (to change the data between start and resume)."""
    import xarray as xr

    from flexdownscale.train import Trainer

    with xr.open_dataset(shared_data / ERA5) as ds:
        t2m = ds[["t2m"]].load()
    path = tmp_path / "fields.nc"
    t2m.to_netcdf(path)
    values = tiny_run_values(tmp_path, shared_data, eval_every=0)
    values["data"] = {**values["data"], "paths": [str(path)]}
    Trainer(from_dict(TrainConfig, values)).save_state()
    return values, path, t2m
