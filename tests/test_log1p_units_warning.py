"""The log1p "values are so small ... convert first" warning fired on correct kg m-2 radar data
in a dry hour (reviewer-118: 21:00-21:50 on 2020-10-31, "largest 7.9; mean + 3 std of log1p
0.0498"): a largest value of 7.9 mm is no unit to convert. It now needs the largest value below
1 too, and never fires on units log1p expects (mm, kg m-2, mm h-1, mm/day); data in m still get
it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import xarray as xr

from flexdownscale.config import DataConfig
from flexdownscale.data import Normalizer
from flexdownscale.data.datasets import from_config
from flexdownscale.errors import FlexDownscaleWarning

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"
VAR = "precipitation"


def _hour(shared_data: Path, start: str, stop: str) -> xr.Dataset:
    with xr.open_dataset(shared_data / RADAR) as ds:
        return ds[[VAR]].sel(time=slice(start, stop)).load()


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


def test_a_dry_hour_of_correct_mm_data_gets_no_units_warning(shared_data):
    """The reviewer's training split (auto transform: log1p from the standard name): no
    warning, with the file's units ``kg m-2``, in ``mm`` or without units (largest 7.9)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train = from_config(_config(shared_data, "2020-10-31T21:00", "2020-10-31T21:50"))
    assert train.normalizer.stats[VAR].transform == "log1p"
    assert not [m for m in _messages(record) if "so small" in m]
    dry = _hour(shared_data, "2020-10-31T21:00", "2020-10-31T21:50")
    stats = Normalizer.fit(dry).stats[VAR]
    assert stats.mean + 3 * stats.std < 0.05  # what made the old check fire
    assert float(dry[VAR].max()) == pytest.approx(7.9)
    for units in ("kg m-2", "mm", "mm h-1", None):
        data = dry.copy()
        data[VAR].attrs.pop("units")
        if units is not None:
            data[VAR].attrs["units"] = units
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Normalizer.fit(data)


@pytest.mark.parametrize("units", ["m", None])
def test_the_same_hour_in_metres_still_gets_the_units_warning(shared_data, units):
    """In m (values 0.0079 at most), with its units or none, log1p is the identity: warned."""
    dry = _hour(shared_data, "2020-10-31T21:00", "2020-10-31T21:50")
    metres = dry.assign({VAR: dry[VAR] * 1e-3})
    metres[VAR].attrs = {} if units is None else {"units": units}
    with pytest.warns(FlexDownscaleWarning) as record:
        Normalizer.fit(metres)
    (text,) = _messages(record)
    shown = "in 'm'" if units else "without units"
    assert f"variable 'precipitation' ({shown}) is normalized with log1p" in text
    assert "largest 0.0079, below 1;" in text
    assert "convert first (m: ds['precipitation'] * 1000 with units 'mm'" in text
