"""Negative precipitation passed silently (reviewer-118: the radar file has 17 cells of -0.1
kg m-2 next to NaN pixels, one at 21:10; only values <= -1 were refused). A log1p variable's
negative values now get one warning per split with their count, the lowest, the fields (times)
and what training does with them."""

from __future__ import annotations

import warnings
from pathlib import Path

from flexdownscale.config import DataConfig
from flexdownscale.data.datasets import from_config
from flexdownscale.errors import FlexDownscaleWarning

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"
VAR = "precipitation"


def _messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, FlexDownscaleWarning)]


def _config(shared_data: Path, start: str, stop: str) -> DataConfig:
    return DataConfig(
        paths=(str(shared_data / RADAR),),
        variables=(VAR,),
        crop_size=32,
        train=(start, stop),
        nan_fields="drop",
    )


def test_negative_precipitation_is_warned_about_once_with_where_and_what_training_does(
    shared_data,
):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        from_config(_config(shared_data, "2020-10-31T21:00", "2020-10-31T21:50"))
    (text,) = [m for m in _messages(record) if "negative" in m]
    assert text == (
        "the train split: variable 'precipitation', normalized with log1p as a non-negative "
        "(precipitation-like) variable, has 1 negative value (down to -0.1) in 1 field, at "
        "time=2020-10-31 21:10:00. They are used as they are: log1p takes them (to values below "
        "0, the variable's lower bound, where generated fields are clipped), so the model "
        "learns from fields that dip below 0 there. If they are artefacts (radar and regridded "
        "fields often have a few), clip them first: ds['precipitation'].clip(min=0)"
    )


def test_negative_values_in_fields_left_out_for_nan_or_in_a_clean_hour_are_not_warned(
    shared_data,
):
    """16:00-16:50: the five -0.1 cells at 16:40 lie in a field with NaN, dropped
    (``nan_fields = "drop"``); 20:00-20:50 has none (and two fields with NaN)."""
    dropped = {}
    for hour in ("16", "20"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            train = from_config(
                _config(shared_data, f"2020-10-31T{hour}:00", f"2020-10-31T{hour}:50")
            )
        assert not [m for m in _messages(record) if "negative" in m]
        dropped[hour] = [str(field["time"])[:16] for field in train.dropped_fields]
    assert dropped == {"16": ["2020-10-31T16:40"], "20": ["2020-10-31T20:10", "2020-10-31T20:40"]}
