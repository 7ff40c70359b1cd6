"""zonal_spectrum on a global grid whose last longitude repeats the first (0..360 inclusive)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import flexdownscale.metrics as fm
from flexdownscale.errors import GridError


def _field(lon: np.ndarray, lat: np.ndarray) -> xr.DataArray:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((lat.size, 144))
    # the value at a longitude depends on that longitude only: 360 E repeats 0 E
    idx = np.round((lon % 360.0) / 2.5).astype(int) % 144
    da = xr.DataArray(
        base[:, idx],
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
        attrs={"units": "K"},
    )
    da["lat"].attrs["units"] = "degrees_north"
    da["lon"].attrs["units"] = "degrees_east"
    return da


@pytest.mark.parametrize(
    "lon",
    [np.linspace(0.0, 360.0, 145), np.linspace(-180.0, 180.0, 145)],
    ids=["0..360", "-180..180"],
)
def test_repeated_endpoint_names_the_fix_and_the_fix_works(lon):
    lat = np.linspace(-90.0, 90.0, 73)
    cyclic = _field(lon, lat)
    with pytest.raises(GridError) as info:
        fm.zonal_spectrum(cyclic)
    message = str(info.value)
    assert "repeats the first" in message
    assert "isel(lon=slice(None, -1))" in message
    assert "limited-area" not in message
    fixed = fm.zonal_spectrum(cyclic.isel(lon=slice(None, -1)))
    plain = fm.zonal_spectrum(_field(lon[:-1], lat))
    xr.testing.assert_allclose(fixed, plain)
    # the mean over latitudes of sum_j E_j / C is the zonal variance (closed form)
    c = 2 * np.pi * 6371008.8 * np.cos(np.deg2rad(lat[10]))
    row = plain.isel(lat=10)
    np.testing.assert_allclose(
        float(row.sum()) / c, float(cyclic.isel(lat=10, lon=slice(0, 144)).var()), rtol=1e-10
    )


def test_limited_area_keeps_its_message():
    lat = np.linspace(-90.0, 90.0, 73)
    region = _field(np.arange(0.0, 180.0, 2.5), lat)
    with pytest.raises(GridError, match="limited-area grid use power_spectrum"):
        fm.zonal_spectrum(region)


@pytest.mark.parametrize("descending", [False, True])
def test_band_mean_example_is_order_independent(descending):
    lat = np.linspace(-90.0, 90.0, 73)
    spec = fm.zonal_spectrum(_field(np.arange(0.0, 360.0, 2.5), lat))
    if descending:
        spec = spec.isel(lat=slice(None, None, -1))
    # the docstring's example, run as written there
    (example,) = [
        line.strip() for line in fm.zonal_spectrum.__doc__.splitlines() if "band = " in line
    ]
    scope = {"spec": spec}
    exec(example, scope)
    band = scope["band"]
    expected = spec.isel(lat=(spec.lat >= 30) & (spec.lat <= 60)).mean("lat")
    assert spec.lat.where((spec.lat >= 30) & (spec.lat <= 60)).count() == 13
    assert np.isfinite(band).all()
    xr.testing.assert_allclose(band, expected)
