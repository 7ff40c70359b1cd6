"""The attributes that describe a grid describe the output's own grid after ``degrade``, ``up``
and ``Regridder`` (as after a downscaling): cfgrib's ``GRIB_*`` grid attributes of the input's
grid left out, the ACDD ``geospatial_*_resolution`` scaled by the ratio of the spacings (left
out for a curvilinear source), ``nominal_resolution`` / ``grid`` left out, and no
``cell_measures`` naming a variable left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import Regridder, degrade, up

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"

#: cfgrib's attributes of the ERA5 sample's 49 x 33 grid, as a GRIB file opened with it has them
GRIB_GRID = {
    "GRIB_Nx": 49,
    "GRIB_Ny": 33,
    "GRIB_numberOfPoints": 1617,
    "GRIB_gridType": "regular_ll",
    "GRIB_iDirectionIncrementInDegrees": 0.25,
    "GRIB_jDirectionIncrementInDegrees": 0.25,
    "GRIB_latitudeOfFirstGridPointInDegrees": 58.0,
    "GRIB_longitudeOfLastGridPointInDegrees": 2.0,
    "GRIB_jScansPositively": 0,
}


@pytest.fixture(scope="module")
def era5(shared_data: Path) -> xr.Dataset:
    """Two times of the ERA5 sample with cfgrib's grid attributes and ACDD resolutions."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        ds = ds.isel(time=[0, 1]).load()
    ds["t2m"].attrs.update(GRIB_GRID, GRIB_paramId=167, GRIB_units="K")
    ds.attrs.update(
        geospatial_lat_resolution="0.25 degree",
        geospatial_lon_resolution=0.25,
        nominal_resolution="25 km",
        grid="0.25 degree regular lat-lon",
        GRIB_centre="ecmf",
    )
    return ds


def _check_grid_attrs(out: xr.Dataset, resolution: float) -> None:
    attrs = out["t2m"].attrs
    assert not set(GRIB_GRID) & set(attrs)
    assert (attrs["GRIB_paramId"], attrs["GRIB_units"], attrs["units"]) == (167, "K", "K")
    assert out.attrs["geospatial_lat_resolution"] == f"{resolution:g} degree"
    assert out.attrs["geospatial_lon_resolution"] == pytest.approx(resolution)
    assert "nominal_resolution" not in out.attrs
    assert "grid" not in out.attrs
    assert out.attrs["GRIB_centre"] == "ecmf"


def test_degrade_and_up_describe_their_own_grid(era5: xr.Dataset) -> None:
    coarse = degrade(era5, 4, boundary="trim")  # 12 x 8 cells of 1 degree
    assert coarse.sizes["longitude"] == 12
    _check_grid_attrs(coarse, 1.0)
    fine = up(coarse, 2)
    _check_grid_attrs(fine, 0.5)
    assert era5["t2m"].attrs["GRIB_Nx"] == 49  # the input is not changed
    # a DataArray: its own attributes
    da = degrade(era5["t2m"], 4, boundary="trim")
    assert "GRIB_Nx" not in da.attrs
    assert da.attrs["GRIB_paramId"] == 167


def test_regridder_scales_resolution_by_the_spacings(era5: xr.Dataset) -> None:
    target = xr.Dataset(
        coords={
            "latitude": ("latitude", np.arange(51.0, 57.0, 0.5), {"units": "degrees_north"}),
            "longitude": ("longitude", np.arange(-8.0, 1.0, 0.5), {"units": "degrees_east"}),
        }
    )
    out = Regridder(era5, target)(era5)
    _check_grid_attrs(out, 0.5)
    assert out["t2m"].sizes["longitude"] == 18


def test_dangling_cell_measures_are_dropped(era5: xr.Dataset) -> None:
    area = xr.ones_like(era5["t2m"].isel(time=0, drop=True))
    da = era5["t2m"].assign_coords(cell_area=area)
    da.attrs.update(cell_measures="area: cell_area")
    out = degrade(da, 4, boundary="trim")  # the fine cells' areas are not carried over
    assert "cell_area" not in out.coords
    assert "cell_measures" not in out.attrs


def test_regridded_attrs() -> None:
    from flexdownscale._attributes import regridded_attrs

    attrs = {"geospatial_lat_resolution": "0.25 degrees_north", "geospatial_lon_resolution": 0.3}
    assert regridded_attrs(attrs, (None, (0.3, 0.1))) == {"geospatial_lon_resolution": 0.1}
    assert regridded_attrs(attrs, ((1, 4), (4, 1)))["geospatial_lat_resolution"] == (
        "1 degrees_north"
    )
    assert regridded_attrs({"geospatial_lat_resolution": True}, ((1, 2), (1, 2))) == {}
