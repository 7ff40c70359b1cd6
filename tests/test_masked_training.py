"""Training data whose NaNs are a fixed mask (a land-only temperature, a sea surface field).

A reviewer trained on ERA5 t2m with a coastline mask (NaN in the same 37% of the cells of every
time): the split check said 'holds NaN in 408 of its 408 fields ... Leave those fields out with
data.nan_fields = "drop"', and with "drop" 'nothing is left: fill the NaNs first (e.g.
ds.fillna(0.0) for precipitation)'. Neither said the NaNs are a mask, and neither offered what
works for a temperature. The pass that counts NaN per field when a split opens now also counts,
per cell, the fields where it is NaN: a cell NaN in none or in all of the fields holding NaN
means a fixed mask."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import latlon_da

from flexdownscale.data.datasets import ForecastDataset, SuperResolutionDataset
from flexdownscale.errors import DataError


def _field(ntime: int = 6) -> xr.Dataset:
    """(time, lat, lon) = (ntime, 16, 24) smooth temperature-like field, 1 degree cells."""
    return latlon_da(16, 24, ntime=ntime, lat0=40.0, lon0=-10.0).to_dataset()


def _refused(ds: xr.Dataset, **kw) -> str:
    with pytest.raises(DataError) as info:
        SuperResolutionDataset(ds, factor=4, crop_size=16, **kw)
    return str(info.value)


def test_a_coastline_mask_in_every_field_is_named_and_drop_is_not_offered():
    ds = _field()
    lat, lon = ds["lat"], ds["lon"]
    land = lon >= -6.0 + 3.0 * np.sin(np.radians(20.0 * (lat - 40.0)))  # a wavy coast
    masked = ds.where(land)
    n_masked = int((~land).sum())
    assert 0 < n_masked < 16 * 24
    message = _refused(masked)
    assert "holds NaN in every one of its 6 fields" in message
    # no advice to leave the fields out: that leaves nothing
    assert 'Leave those fields out with data.nan_fields = "drop"' not in message
    assert "would leave none" in message
    assert (
        f"same cells of every field that holds them (variable 't2m' at {n_masked} of the 384 "
        f"grid cells, {n_masked / 384:.0%})"
    ) in message
    assert "fixed mask" in message
    assert "interpolate_na(dim='lon', fill_value=\"extrapolate\")" in message
    assert "mask its output again" in message
    assert "Masked fields" in message
    # the coast is not straight: no rectangle is offered
    assert "rectangle" not in message
    # with "drop": nothing is left, and the same diagnosis and fixes
    dropped = _refused(masked, nan_fields="drop")
    assert dropped.startswith("every field of the train split holds NaN")
    assert "nothing is left. The NaNs sit in the same cells of every field" in dropped
    assert "interpolate_na" in dropped


def test_the_fill_the_message_gives_makes_the_field_trainable():
    """Round trip: the fill named in the message, applied to the masked field, opens."""
    ds = _field()
    masked = ds.where(ds["lon"] >= -6.0 + (ds["lat"] - 40.0) / 4)
    assert "interpolate_na(dim='lon'" in _refused(masked)
    filled = masked.copy()
    filled["t2m"] = filled["t2m"].interpolate_na(dim="lon", fill_value="extrapolate")
    assert int(filled["t2m"].isnull().sum()) == 0
    assert len(SuperResolutionDataset(filled, factor=4, crop_size=16)) == 6


def test_a_rectangular_unmasked_region_is_given_as_a_cut_that_works():
    """A mask over the western columns and the northern rows leaves a rectangle: the message
    gives it in coordinates, and the ds.where(..., drop=True) it writes keeps exactly the
    unmasked cells, on a latitude axis stored north to south as ERA5 stores it."""
    ds = latlon_da(24, 24, ntime=4, lat0=40.0, lon0=-10.0, descending=True).to_dataset()
    keep = (ds["lon"] >= -6.0) & (ds["lat"] <= 58.0)  # 19 x 20 unmasked cells
    masked = ds.where(keep)
    message = _refused(masked)
    assert "rectangle lat 39.5 to 58.5, lon -6.5 to 13.5, 19 x 20 cells" in message
    code = message.split("e.g. ds.where(", 1)[1].split(", drop=True)", 1)[0]
    cut = masked.where(eval(code, {"ds": masked}), drop=True)  # the message's own expression
    assert cut.sizes["lat"] == 19
    assert cut.sizes["lon"] == 20
    assert int(cut["t2m"].isnull().sum()) == 0
    np.testing.assert_array_equal(cut["t2m"].values, ds["t2m"].where(keep, drop=True).values)
    assert len(SuperResolutionDataset(cut, factor=4, crop_size=16)) == 4
    # a rectangle smaller than the crops is said to be so
    small = ds.where((ds["lon"] >= 4.0) & (ds["lat"] <= 58.0))
    assert "19 x 10 cells, smaller than crop_size=16" in _refused(small)


def test_nan_in_every_field_but_in_other_cells_is_not_called_a_mask():
    ds = _field()
    values = ds["t2m"].values.copy()
    for t in range(6):
        values[t, t, 2 * t] = np.nan  # one NaN per field, a different cell each time
    message = _refused(ds.copy(data={"t2m": values}))
    assert "holds NaN in every one of its 6 fields" in message
    assert "not in the same cells of every field" in message
    assert "fixed mask" not in message
    assert "mask its output" not in message
    assert "interpolate_na(dim='lon'" in message


def test_nan_in_some_fields_still_offers_drop():
    """Some fields hold NaN (here the same cells in each: a mask there too): leaving them out
    keeps the others, so the message stays as it was."""
    ds = _field()
    values = ds["t2m"].values.copy()
    values[1:3, :, :3] = np.nan
    message = _refused(ds.copy(data={"t2m": values}))
    assert message.startswith("the train split holds NaN in 2 of its 6 fields (samples)")
    assert 'Leave those fields out with data.nan_fields = "drop"' in message
    ok = SuperResolutionDataset(
        ds.copy(data={"t2m": values}), factor=4, crop_size=16, nan_fields="drop"
    )
    assert len(ok) == 4


def test_precipitation_gets_fillna_zero():
    ds = _field()
    ds["t2m"] = ds["t2m"] - float(ds["t2m"].min())  # non-negative
    ds = ds.rename(t2m="tp")
    masked = ds.where(ds["lon"] >= 0.0)
    masked["tp"].attrs = {"long_name": "total precipitation", "units": "mm"}
    message = _refused(masked)
    assert "ds['tp'] = ds['tp'].fillna(0.0)" in message
    assert "interpolate_na" not in message


def test_forecast_windows_of_a_masked_field_say_it_is_a_mask():
    ds = _field(ntime=8)
    masked = ds.where(ds["lon"] >= 0.0)
    with pytest.raises(DataError) as info:
        ForecastDataset(masked, past_frames=2, lead=1, crop_size=8, nan_fields="drop")
    message = str(info.value)
    assert "is free of NaN" in message
    assert "The NaNs sit in the same cells of every field that holds them" in message
    assert "rectangle lat 39.5 to 55.5, lon -0.5 to 13.5, 16 x 14 cells" in message
