"""Several training files pooled into one dataset must agree (review 65): units, grid spacing,
repeated fields, and variables split over files."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flexdownscale.data import Normalizer, VariableStats
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.errors import FlexDownscaleWarning, GridError, MissingVariableError, UnitsError


def field_file(
    folder,
    name: str,
    *,
    start: str = "2019-03-01",
    times: int = 4,
    lon0: float = 0.0,
    step: float = 0.25,
    ny: int = 16,
    units: str = "K",
    seed: int = 0,
    variables: tuple[str, ...] = ("t2m",),
) -> str:
    """A small lat/lon file of hourly fields; returns its path."""
    rng = np.random.default_rng(seed)
    lat = 50.0 + step * np.arange(ny)
    lon = lon0 + step * np.arange(16)
    coords = {
        "time": pd.date_range(start, periods=times, freq="h"),
        "latitude": ("latitude", lat, {"units": "degrees_north"}),
        "longitude": ("longitude", lon, {"units": "degrees_east"}),
    }
    ds = xr.Dataset(
        {
            v: (
                ("time", "latitude", "longitude"),
                280 + rng.normal(size=(times, ny, 16)),
                {"units": units},
            )
            for v in variables
        },
        coords=coords,
    )
    path = str(folder / f"{name}.nc")
    ds.to_netcdf(path)
    return path


def open_set(paths, variables=("t2m",)):
    norm = Normalizer({v: VariableStats(mean=280.0, std=1.0) for v in variables})
    return SuperResolutionDataset(
        list(paths), variables=list(variables), factor=4, crop_size=16, normalizer=norm
    )


def test_a_file_in_other_units_is_refused_with_the_conversion(tmp_path):
    a = field_file(tmp_path, "a")
    b = field_file(tmp_path, "b", units="degC", start="2019-03-02")
    with pytest.raises(UnitsError) as info:
        open_set([a, b])
    message = str(info.value)
    assert message.startswith(f"'t2m' is in 'degC' in {b!r} but in 'K' in {a!r}")
    assert "values in K = values in degC + 273.15" in message
    # two spellings of one unit are the same units
    c = field_file(tmp_path, "c", units="kelvin", start="2019-03-03")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(open_set([a, c])) == 8


def test_a_file_of_another_spacing_is_refused_and_another_region_warns(tmp_path):
    a = field_file(tmp_path, "a")
    coarse = field_file(tmp_path, "coarse", step=0.5, start="2019-03-02")
    with pytest.raises(GridError, match=r"16 x 16 latlon cells of 0.5 x 0.5 degrees\) is not on"):
        open_set([a, coarse])
    shifted = field_file(tmp_path, "shifted", lon0=1.0, start="2019-03-02")
    with pytest.warns(
        FlexDownscaleWarning, match=r"covers other cells than .*: x from 1 \(not 0\)"
    ):
        dataset = open_set([a, shifted])
    assert dataset.grid_metadata()["grid"]["x0"] == 0.0  # the first file's grid is recorded
    smaller = field_file(tmp_path, "smaller", ny=20, start="2019-03-02")
    with pytest.warns(FlexDownscaleWarning, match="20 x 16 latlon cells .* another size"):
        open_set([a, smaller])


def test_files_repeating_fields_warn_and_other_runs_at_the_same_times_do_not(tmp_path):
    a = field_file(tmp_path, "a", times=6)
    # hours 4 and 5 again (an overlapping extract of the same record), then two new hours
    extract = xr.open_dataset(a).isel(time=[4, 5]).load()
    later = xr.open_dataset(field_file(tmp_path, "later", start="2019-03-01T06", times=2)).load()
    overlap = str(tmp_path / "overlap.nc")
    xr.concat([extract, later], "time").to_netcdf(overlap)
    with pytest.warns(FlexDownscaleWarning) as record:
        open_set([a, overlap])
    assert str(record[0].message).startswith(
        f"{overlap!r} repeats 2 times of {a!r} (2019-03-01T04:00 to 2019-03-01T05:00) with the "
        "same fields: they are trained on twice"
    )
    other_run = field_file(tmp_path, "run2", times=6, seed=1)  # same times, other fields
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_set([a, other_run])


def test_variables_split_over_files_say_to_merge_them(tmp_path):
    t2m = field_file(tmp_path, "t2m_only")
    wind = field_file(tmp_path, "wind_only", variables=("u10",), units="m s-1")
    with pytest.raises(MissingVariableError) as info:
        open_set([t2m, wind], variables=("t2m", "u10"))
    message = str(info.value)
    assert message.startswith(f"variables ['u10'] are not in {t2m!r}; it has ['t2m']")
    assert "each must hold every variable: merge files that hold different variables" in message
    with pytest.raises(MissingVariableError) as info:  # one file: no merge advice
        open_set([t2m], variables=("t2m", "u10"))
    assert "merge" not in str(info.value)
