"""``downscaling_skill`` on Datasets.

A reviewer passed the package's own output Dataset and a truth Dataset, as the ERA5 tutorial's
"on DataArrays or Datasets" suggested, and got ``ShapeError: prediction dims (..., 'bnds') ...
do not match the truth's``: the function took DataArrays only. Two Datasets are now scored field
by field (bounds variables are not fields), each entry equal to the DataArray call."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import degrade, normalize_grid
from flexdownscale.demo import open_sample
from flexdownscale.errors import MissingVariableError
from flexdownscale.metrics import SKILL_COLUMNS, downscaling_skill


def _uv(members: int | None, seed: int) -> xr.Dataset:
    """u and v on a 16 x 24 lat/lon grid over 3 times, with a bounds variable as a field."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(40.0, 55.0, 16)
    lon = np.linspace(-10.0, 13.0, 24)
    shape = (3, 16, 24) if members is None else (members, 3, 16, 24)
    dims = ("time", "lat", "lon") if members is None else ("member", "time", "lat", "lon")
    ds = xr.Dataset(
        {
            "u": (dims, rng.normal(size=shape), {"units": "m s-1"}),
            "v": (dims, 2.0 + rng.normal(size=shape), {"units": "m s-1"}),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 0.5, lat + 0.5], axis=1)),
        },
        coords={
            "time": np.arange(3),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    return ds


def test_two_datasets_are_scored_field_by_field():
    pred, truth = _uv(4, seed=1), _uv(None, seed=2)
    skill = downscaling_skill(pred, truth)
    assert list(skill) == ["u", "v"]  # lat_bnds is not a field
    for name in ("u", "v"):
        assert list(skill[name]) == list(SKILL_COLUMNS)
        assert skill[name] == downscaling_skill(pred[name], truth[name])
    # closed form for one entry: RMSE of the ensemble mean, equal weights
    mean = pred["v"].mean("member")
    expected = float(np.sqrt(((mean - truth["v"]) ** 2).mean()))
    assert skill["v"]["rmse"] == pytest.approx(expected, rel=1e-12)
    # the truth may hold more variables than the prediction
    assert downscaling_skill(pred[["u"]], truth) == {"u": skill["u"]}


def test_a_dataarray_against_a_dataset_takes_its_variable():
    pred, truth = _uv(4, seed=1), _uv(None, seed=2)
    assert downscaling_skill(pred["u"], truth) == downscaling_skill(pred["u"], truth["u"])
    assert downscaling_skill(pred, truth["v"]) == downscaling_skill(pred["v"], truth["v"])
    unnamed = pred["u"].rename(None)
    with pytest.raises(MissingVariableError, match=r"pred\['t2m'\], truth\['t2m'\]"):
        downscaling_skill(unnamed, truth)


def test_a_field_missing_from_the_truth_is_named():
    pred, truth = _uv(4, seed=1), _uv(None, seed=2)
    with pytest.raises(MissingVariableError, match=r"pred's fields \['v'\] are not in truth"):
        downscaling_skill(pred, truth[["u"]])


def test_the_package_output_dataset_against_the_truth():
    """The reviewer's case: the pipeline's output (with latitude_bnds / longitude_bnds on a
    bnds dim) against the truth Dataset gives the DataArray call's numbers."""
    truth = normalize_grid(open_sample("era5_t2m_uk")).isel(
        latitude=slice(0, 32), longitude=slice(0, 48), time=slice(0, 2)
    )
    ens = degrade(truth, 4).flex.downscale(factor=4, members=2, seed=0)
    assert "bnds" in ens.dims
    skill = downscaling_skill(ens, truth)
    assert skill == {"t2m": downscaling_skill(ens["t2m"], truth["t2m"])}
    assert 0 < skill["t2m"]["rmse"] < 2.0
