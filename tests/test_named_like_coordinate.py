"""A DataArray named like one of its coordinates (``ds["latitude"]``, coordinates kept) is
refused with one typed error and message (:func:`flexdownscale._duck.dataset_of`) wherever a
DataArray is taken as a variable: the pipeline, ``Normalizer.fit``, ``add_bounds`` and the
datasets' inputs (the last two gave xarray's bare ``ValueError``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.data import Normalizer, SuperResolutionDataset, add_bounds
from flexdownscale.errors import DataError

NAMED = r"the DataArray is named 'latitude', as one of its coordinates, so it cannot be a "
UNNAMED = r"the DataArray has no name, and the name it is taken as, 'data', is a coordinate's"


def _field() -> xr.DataArray:
    lat = ("latitude", np.arange(40.0, 56.0), {"units": "degrees_north"})
    lon = ("longitude", np.arange(0.0, 16.0), {"units": "degrees_east"})
    values = np.random.default_rng(0).normal(280.0, 5.0, (3, 16, 16))
    return xr.DataArray(
        values,
        coords={"time": np.arange(3), "latitude": lat, "longitude": lon},
        dims=("time", "latitude", "longitude"),
        name="t2m",
        attrs={"units": "K"},
    )


def _on_latitude() -> xr.DataArray:
    """A field named like its latitude coordinate (as ``ds["latitude"]`` broadcast is)."""
    return _field().rename("latitude")


@pytest.mark.parametrize(
    "call",
    [
        Normalizer.fit,
        add_bounds,
        lambda da: SuperResolutionDataset(da, factor=4, crop_size=8, normalizer="fit"),
    ],
    ids=["Normalizer.fit", "add_bounds", "SuperResolutionDataset"],
)
def test_data_layer_refuses_a_name_of_a_coordinate(call: Callable[[xr.DataArray], Any]) -> None:
    with pytest.raises(DataError, match=NAMED + r".*da\.rename\('t2m'\)"):
        call(_on_latitude())


def test_unnamed_field_taken_as_a_coordinate_name() -> None:
    da = _field().rename(None).assign_coords(data=("time", [1, 2, 3]))
    with pytest.raises(DataError, match=UNNAMED):
        add_bounds(da)


def test_pipeline_gives_the_same_message(shared_data: Path) -> None:
    fine, coarse = era5_pair(shared_data, times=1)
    down = make_downscaler(fine)
    da = coarse["t2m"].rename("latitude")
    with pytest.raises(DataError, match=NAMED + r".*da\.rename\('t2m'\) \(with no rename="):
        down(da)
