"""The functions that give back the input's type say so in their annotations.

``XrObj = Dataset | DataArray`` as the return annotation made a type checker read every result
as the union, so ``coarse: xr.Dataset = degrade(ds, 4)`` failed (mypy: incompatible types in
assignment). They take and return one ``TypeVar`` bound to the union instead: a Dataset in, a
Dataset out (a union in, the union out). ``add_bounds`` stays honest: a Dataset for either.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import (
    Normalizer,
    Regridder,
    add_bounds,
    degrade,
    normalize_grid,
    regrid,
    up,
)

SAME_TYPE = {
    "degrade": degrade,
    "up": up,
    "regrid": regrid,
    "normalize_grid": normalize_grid,
    "Normalizer.transform": Normalizer.transform,
    "Normalizer.inverse_transform": Normalizer.inverse_transform,
    "Regridder.__call__": Regridder.__call__,
}


@pytest.mark.parametrize("func", SAME_TYPE.values(), ids=SAME_TYPE.keys())
def test_the_result_is_annotated_as_the_inputs_type(func):
    hints = typing.get_type_hints(func)
    first = next(n for n in hints if n not in ("self", "return"))
    var = hints[first]
    assert isinstance(var, typing.TypeVar), f"{first}: {var}"
    assert hints["return"] is var
    assert set(typing.get_args(var.__bound__)) == {xr.Dataset, xr.DataArray}


def test_add_bounds_is_annotated_as_the_dataset_it_returns():
    assert typing.get_type_hints(add_bounds)["return"] is xr.Dataset


@pytest.fixture
def field() -> xr.DataArray:
    lat = xr.DataArray(np.arange(50.0, 54.0, 0.5), dims="lat", attrs={"units": "degrees_north"})
    lon = xr.DataArray(np.arange(0.0, 4.0, 0.5), dims="lon", attrs={"units": "degrees_east"})
    values = np.arange(64.0).reshape(8, 8)
    return xr.DataArray(values, coords={"lat": lat, "lon": lon}, name="t2m", attrs={"units": "K"})


@pytest.mark.parametrize("as_dataset", [False, True], ids=["DataArray", "Dataset"])
def test_the_annotated_functions_return_the_inputs_type(field, as_dataset):
    obj = field.to_dataset() if as_dataset else field
    kind = type(obj)
    coarse = degrade(obj, 2)
    assert type(coarse) is kind
    assert type(up(coarse, 2)) is kind
    assert type(regrid(obj, coarse)) is kind
    assert type(Regridder(obj, coarse)(obj)) is kind
    assert type(normalize_grid(obj)) is kind
    normalizer = Normalizer.fit(field.to_dataset())
    z = normalizer.transform(obj)
    assert type(z) is kind
    assert type(normalizer.inverse_transform(z)) is kind
    assert type(add_bounds(obj)) is xr.Dataset
