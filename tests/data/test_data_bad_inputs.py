"""The table of bad inputs: each raises its typed error or is handled (and checked) correctly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xarray as xr
from data_helpers import assert_unchanged, latlon_da, projected_da

from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.data.degrade import degrade
from flexdownscale.data.grid import grid_spec, normalize_grid
from flexdownscale.data.normalize import Normalizer, VariableStats
from flexdownscale.data.regrid import regrid
from flexdownscale.errors import (
    BackendNotAvailableError,
    GridError,
    MissingVariableError,
    UnitsError,
    UnsupportedFactorError,
)


def with_coord(da: xr.DataArray, name: str, values: Any, **attrs: Any) -> xr.DataArray:
    return da.assign_coords({name: (name, np.asarray(values), {**da[name].attrs, **attrs})})


def curvilinear() -> xr.Dataset:
    y, x = np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij")
    return xr.Dataset(
        {"tas": (("y", "x"), np.ones((4, 5)))},
        coords={
            "lat": (("y", "x"), 40 + y + 0.1 * x, {"units": "degrees_north"}),
            "lon": (("y", "x"), x - 0.1 * y, {"units": "degrees_east"}),
        },
    )


def no_xesmf_regrid() -> Any:
    saved = sys.modules.get("xesmf", "absent")
    sys.modules["xesmf"] = None  # type: ignore[assignment]
    try:
        return regrid(curvilinear(), latlon_da(4, 4, lat0=40))
    finally:
        if saved == "absent":
            del sys.modules["xesmf"]
        else:
            sys.modules["xesmf"] = saved


def check_descending(out: xr.DataArray) -> None:
    src = latlon_da(6, 8, descending=True)
    assert np.all(np.diff(out.lat.values) > 0)
    np.testing.assert_array_equal(out.values, src.values[::-1])


def check_lon_180(out: xr.DataArray) -> None:
    src = latlon_da(4, 36, lon0=0.0, dlon=10.0)
    assert out.lon.values[0] == -180.0
    assert out.lon.values[-1] == 170.0
    np.testing.assert_array_equal(out.sel(lon=-170.0).values, src.sel(lon=190.0).values)


def check_lon_auto(out: xr.DataArray) -> None:
    np.testing.assert_array_equal(out.lon.values, np.arange(-180.0, 180.0, 10.0))


def check_nan_mask(out: xr.DataArray) -> None:
    assert int(out.isnull().sum()) == 1
    assert np.isnan(out.values[1, 0])
    assert int(np.isfinite(out.values).sum()) == out.size - 1  # nothing else touched


def check_int(out: xr.DataArray) -> None:
    assert out.dtype == np.float64
    assert out.lat.dtype == np.float64
    np.testing.assert_array_equal(out.values, np.arange(16).reshape(4, 4))


def int_grid() -> xr.DataArray:
    return xr.DataArray(
        np.arange(16, dtype=np.int64).reshape(4, 4),
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", np.arange(4), {"units": "degrees_north"}),
            "lon": ("lon", np.arange(4), {"units": "degrees_east"}),
        },
    )


def masked() -> xr.DataArray:
    da = latlon_da(8, 12)
    return da.where(~((da.lat == da.lat[5]) & (da.lon == da.lon[2])))


TABLE: list[tuple[str, Callable[[], Any], type[Exception] | Callable[[Any], None]]] = [
    ("no X/Y found", lambda: grid_spec(xr.DataArray(np.zeros((2, 2)), dims=("a", "b"))), GridError),
    ("2-D curvilinear coordinates", lambda: grid_spec(curvilinear()), GridError),
    ("curvilinear regrid without xesmf", no_xesmf_regrid, BackendNotAvailableError),
    (
        "descending latitude",
        lambda: normalize_grid(latlon_da(6, 8, descending=True)),
        check_descending,
    ),
    (
        "longitudes 0..360 asked as -180..180",
        lambda: normalize_grid(latlon_da(4, 36, lon0=0.0, dlon=10.0), lon_convention="180"),
        check_lon_180,
    ),
    (
        "longitudes -180..180 kept",
        lambda: normalize_grid(latlon_da(4, 36, lon0=-180.0, dlon=10.0)),
        check_lon_auto,
    ),
    (
        "irregular spacing",
        lambda: grid_spec(with_coord(latlon_da(4, 5), "lon", [0.0, 1, 2, 3.5, 4])),
        GridError,
    ),
    (
        "duplicated coordinate values",
        lambda: grid_spec(with_coord(latlon_da(4, 5), "lon", [0.0, 1, 1, 2, 3])),
        GridError,
    ),
    (
        "non-monotonic latitude",
        lambda: grid_spec(with_coord(latlon_da(4, 5), "lat", [0.0, 2, 1, 3])),
        GridError,
    ),
    (
        "latitude beyond the pole",
        lambda: grid_spec(with_coord(latlon_da(4, 5), "lat", [80.0, 90, 100, 110])),
        GridError,
    ),
    (
        "NaN coordinate",
        lambda: grid_spec(with_coord(latlon_da(4, 5), "lat", [0.0, np.nan, 2, 3])),
        GridError,
    ),
    ("single-point axis", lambda: grid_spec(latlon_da(1, 5)), GridError),
    (
        "latitude in radians",
        lambda: grid_spec(
            with_coord(latlon_da(4, 5), "lat", [0.0, 0.1, 0.2, 0.3], units="radians")
        ),
        UnitsError,
    ),
    ("projected axes without units", lambda: grid_spec(projected_da(4, 4, units=None)), UnitsError),
    ("NaN land mask", lambda: degrade(masked(), 4), check_nan_mask),
    ("integer dtypes", lambda: normalize_grid(int_grid()), check_int),
    (
        "factor not dividing the grid",
        lambda: degrade(projected_da(10, 10), 4),
        UnsupportedFactorError,
    ),
    (
        "factor not dividing the crop size",
        lambda: SuperResolutionDataset(
            projected_da(32, 32, ntime=2).to_dataset(), factor=3, crop_size=16
        ),
        UnsupportedFactorError,
    ),
    (
        "variable missing from the dataset",
        lambda: SuperResolutionDataset(
            projected_da(32, 32, ntime=2).to_dataset(), variables=["t2m"], crop_size=16
        ),
        MissingVariableError,
    ),
    (
        "variable missing for the normalizer",
        lambda: Normalizer({"t2m": VariableStats(mean=0.0, std=1.0)}).transform(
            projected_da().to_dataset()
        ),
        MissingVariableError,
    ),
]


@pytest.mark.parametrize(("build", "expected"), [pytest.param(b, e, id=i) for i, b, e in TABLE])
def test_bad_input(build, expected):
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected) as info:
            build()
        message = str(info.value)
        assert len(message) > 40  # says what was found, what was expected, how to fix it
    else:
        expected(build())


def test_messages_say_how_to_fix():
    with pytest.raises(GridError, match=r"dims=\{'x': 'lon', 'y': 'lat'\}"):
        grid_spec(xr.DataArray(np.zeros((2, 2)), dims=("a", "b")))
    with pytest.raises(BackendNotAvailableError, match=r"pip install 'flexdownscale\[esmf\]'"):
        no_xesmf_regrid()
    with pytest.raises(UnitsError, match="attrs\\['units'\\]"):
        grid_spec(projected_da(4, 4, units=None))


def test_inputs_are_never_mutated():
    for build in (
        lambda: latlon_da(6, 8, descending=True),
        lambda: latlon_da(4, 36, lon0=0.0, dlon=10.0),
        int_grid,
    ):
        da = build()
        before = da.copy(deep=True)
        normalize_grid(da, lon_convention="180")
        degrade(da, 2, boundary="trim")
        assert_unchanged(before, da)
    ds = projected_da(32, 32, ntime=3).to_dataset()
    before = ds.copy(deep=True)
    SuperResolutionDataset(ds, factor=4, crop_size=16, normalizer="fit")[0]
    assert_unchanged(before, ds)


def test_a_one_cell_axis_is_refused_with_how_to_keep_two():
    one_row = latlon_da(8, 8).isel(lat=slice(0, 1))
    with pytest.raises(GridError, match=r"'lat' has 1 point.*Select at least 2 cells along 'lat'"):
        grid_spec(one_row)
