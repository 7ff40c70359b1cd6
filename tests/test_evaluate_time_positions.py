"""``flexdownscale evaluate`` on files whose time dim has no coordinate (helper-132 found a
``KeyError: 'time'``): the fields are matched by position; a different number of fields is a
DataError that says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import DataError
from flexdownscale.evaluation import evaluate


def _field(nt: int, seed: int) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        (280.0 + rng.normal(size=(nt, 16, 16))).astype(np.float32),
        dims=("time", "y", "x"),
        coords={
            "y": ("y", np.arange(16.0), {"units": "km", "axis": "Y"}),
            "x": ("x", np.arange(16.0), {"units": "km", "axis": "X"}),
        },
        attrs={"units": "K"},
    )


def test_time_dims_without_values_are_matched_by_position(tmp_path):
    truth = _field(3, 0)
    pred = truth + 0.5
    xr.Dataset({"t": pred}).to_netcdf(tmp_path / "pred.nc")
    xr.Dataset({"t": truth}).to_netcdf(tmp_path / "truth.nc")
    evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
    (row,) = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert row["bias"] == pytest.approx(0.5, rel=1e-5)
    assert row["RMSE (ens. mean)"] == pytest.approx(0.5, rel=1e-5)


def test_a_different_number_of_fields_is_refused(tmp_path):
    xr.Dataset({"t": _field(2, 0)}).to_netcdf(tmp_path / "pred.nc")
    xr.Dataset({"t": _field(3, 1)}).to_netcdf(tmp_path / "truth.nc")
    with pytest.raises(DataError, match="matched by position, but the prediction has 2 and"):
        evaluate(tmp_path / "pred.nc", tmp_path / "truth.nc", out=tmp_path / "r")
