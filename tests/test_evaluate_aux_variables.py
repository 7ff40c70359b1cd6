"""``flexdownscale evaluate`` on files that carry non-field data variables.

CDO and CORDEX files keep their grid mapping (``crs``, ``rotated_pole``) and ``time_bnds`` as
data variables. Both files holding one, ``evaluate`` took it for a field: a character ``crs``
crashed with a traceback (``ufunc 'isfinite' not supported``), an integer one or ``time_bnds``
was refused for weights "that the data lack", and one stored first made the grid unfindable
(reviewer-82). Only variables on the (y, x) grid are scored now.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from flexdownscale.cli import main

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def pair(shared_data):
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = ds.isel(time=slice(0, 3), latitude=slice(0, 16), longitude=slice(0, 24)).load()
    rng = np.random.default_rng(0)
    noise = xr.DataArray(rng.normal(size=(3, *truth.t2m.shape)), dims=("member", *truth.t2m.dims))
    pred = truth.assign(t2m=(truth.t2m + noise).assign_attrs(truth.t2m.attrs))
    return pred, truth


def _crs_first(ds: xr.Dataset) -> xr.Dataset:
    crs = xr.DataArray(np.bytes_(b""), attrs={"grid_mapping_name": "latitude_longitude"})
    return xr.Dataset({"crs": crs, **ds.data_vars}, coords=ds.coords, attrs=ds.attrs)


AUXILIARY = {
    "crs_integer": lambda d: d.assign(
        crs=xr.DataArray(np.int32(0), attrs={"grid_mapping_name": "latitude_longitude"})
    ),
    "crs_character_first": _crs_first,
    "time_bnds": lambda d: d.assign(
        time_bnds=(
            ("time", "bnds"),
            np.stack([d.time.values, d.time.values + np.timedelta64(1, "h")], axis=1),
        )
    ),
}


def _scores(tmp_path, pred, truth, name, capsys):
    pred.to_netcdf(tmp_path / f"pred_{name}.nc")
    truth.to_netcdf(tmp_path / f"truth_{name}.nc")
    out = tmp_path / f"report_{name}"
    argv = ["evaluate", str(tmp_path / f"pred_{name}.nc"), str(tmp_path / f"truth_{name}.nc")]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", sorted(AUXILIARY))
def test_auxiliary_variables_are_not_scored_and_the_field_is(tmp_path, pair, kind, capsys):
    pred, truth = pair
    plain = _scores(tmp_path, pred, truth, "plain", capsys)
    add = AUXILIARY[kind]
    rows = _scores(tmp_path, add(pred), add(truth), kind, capsys)
    assert [row["variable"] for row in rows] == ["t2m"]
    assert rows == plain
