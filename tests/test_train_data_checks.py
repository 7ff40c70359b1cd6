"""Training on data with NaN (``data.nan_fields``).

The runs are in-process with the tiny preset, 32 x 32 crops and one or two optimiser steps on the
real radar file (NaNs near the edges of 16 of its 144 times)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from train_runs import tiny_run_values

from flexdownscale.train import dump_toml, main

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the runs are tiny and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(
        "flexdownscale.train: error: the train split holds NaN in 10 of its 108 fields "
        "(samples): variable 'precipitation' in 10 fields (43 NaN values) at "
        "time=2020-10-31 00:40:00, "
    )
    assert 'data.nan_fields = "drop"' in err
    assert not (tmp_path / "run").exists()


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
