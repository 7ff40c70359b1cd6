"""Validation windows that are almost all dry while their fields are not get a warning at the
start (reviewer-118: with ``eval_fields = 4`` on the radar's 10:00-10:50, 20-25 % of the domain
wet, the 32 x 32 centre windows were 1.7 %, 0.4 %, 0 % and 0 % wet, so ``val/rmse_base`` was
0.0106 and the model card's validation table measured almost nothing, without a word)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.errors import FlexDownscaleWarning
from flexdownscale.train import Trainer

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"


def _radar_run(tmp_path: Path, shared_data: Path, **data: Any) -> TrainConfig:
    """The reviewer's run.toml (tiny model, x4, 32 x 32 crops, NaN fields dropped)."""
    return from_dict(
        TrainConfig,
        {
            "run_dir": str(tmp_path / "run"),
            "steps": 1,
            "batch_size": 4,
            "eval_every": 20,
            "eval_fields": 4,
            "logger": "none",
            "model": {"preset": "tiny"},
            "data": {
                "paths": [str(shared_data / RADAR)],
                "variables": ["precipitation"],
                "factor": 4,
                "crop_size": 32,
                "train": ["2020-10-31T00:00", "2020-10-31T09:50"],
                "validation": ["2020-10-31T10:00", "2020-10-31T10:50"],
                "nan_fields": "drop",
                **data,
            },
        },
    )


def _dry_warnings(config: TrainConfig) -> list[str]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Trainer(config)
    return [
        str(w.message)
        for w in record
        if issubclass(w.category, FlexDownscaleWarning) and "validation scores" in str(w.message)
    ]


def test_dry_centre_windows_of_wet_fields_are_warned_about_with_the_settings_that_move_them(
    tmp_path, shared_data
):
    (text,) = _dry_warnings(_radar_run(tmp_path, shared_data))
    assert text == (
        "validation scores the centre 32 x 32 window of each of 4 validation fields "
        "(eval_fields = 4, data.crops_per_field = 1), and their truth is 99.5 % at "
        "precipitation's lower bound 0 (dry: only 0.5 % of the cells above it; per window "
        "1.7 %, 0.4 %, 0.0 %, 0.0 %) while the fields they are cut from are 21.0 % above it: "
        "the sampled validation scores (val/rmse, val/rmse_base, val/crps, ...) and the model "
        "card's table would measure almost nothing. Score wetter windows: data.crops_per_field "
        "= n validates on n windows of each field drawn from the run's seed instead of the "
        "centre one (eval_fields then counts windows), a larger data.crop_size covers more of "
        "each field, and eval_fields or data.validation choose other fields"
    )


def test_windows_drawn_from_the_seed_that_meet_the_rain_are_not_warned_about(tmp_path, shared_data):
    """``data.crops_per_field = 4``: the four windows scored are 100 %, 100 %, 0 % and 0 % wet."""
    assert _dry_warnings(_radar_run(tmp_path, shared_data, crops_per_field=4)) == []


def test_a_run_that_scores_no_validation_reads_no_fields_for_it(tmp_path, shared_data):
    assert _dry_warnings(replace(_radar_run(tmp_path, shared_data), eval_every=0)) == []
