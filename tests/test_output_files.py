"""Results written from Python (``to_netcdf`` / ``to_zarr`` of a Downscaler's or Forecaster's
output) carry no ``_FillValue`` on coordinates and bounds, as the command line's files (CF;
review 65)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from test_keyword_errors import box, tiny_forecaster

from flexdownscale.data import degrade
from flexdownscale.pipeline import Downscaler

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


def written_attrs(ds: xr.Dataset, path) -> dict[str, dict]:
    ds.to_netcdf(path)
    with xr.open_dataset(path, decode_cf=False) as raw:
        return {str(name): dict(raw[name].attrs) for name in raw.variables}


def test_downscaled_coordinates_and_bounds_are_written_without_fill_value(shared_data, tmp_path):
    fine = xr.open_dataset(shared_data / ERA5)[["t2m"]].isel(
        time=[0, 1], latitude=slice(0, 64), longitude=slice(0, 64)
    )
    coarse = degrade(fine, 4, method="area_mean", boundary="trim").load()
    before = {name: dict(coarse[name].encoding) for name in coarse.variables}
    out = Downscaler.from_pretrained("era5-t2m-x4")(coarse, members=2)
    attrs = written_attrs(out, tmp_path / "fine.nc")
    for name in ("latitude", "longitude", "latitude_bnds", "longitude_bnds"):
        assert "_FillValue" not in attrs[name], name
    assert np.isnan(attrs["t2m"]["_FillValue"])  # the data keep theirs
    # the input's encoding is untouched
    assert {name: dict(coarse[name].encoding) for name in coarse.variables} == before


def test_forecast_coordinates_are_written_without_fill_value(tmp_path):
    out = tiny_forecaster()(box(), lead_steps=2, members=2, steps=1)
    attrs = written_attrs(out, tmp_path / "forecast.nc")
    floating = [name for name in out.coords if out[name].dtype.kind == "f"]
    assert {"x", "y", "x_bnds", "y_bnds"} <= set(floating)
    for name in floating:
        assert "_FillValue" not in attrs[name], name
