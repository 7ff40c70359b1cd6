"""Closed-form checks that pin numerics a mutation audit found untested (helper-180).

Each test names the small code change ("mutant") it fails on: a wrong sign in the float32
variance correction, a rank histogram that scores a point with a NaN member, Errico's
detrending slope off by one cell, the CF bounds of a descending latitude axis ignored, the
polar cells not clipped at the poles, the Earth's radius not squared, a weighted fair CRPS of
one effective member scored without its warning. The grids here are synthetic, so the checks
hold where the real data folder is absent (its tests skip there).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import UndefinedMetricWarning
from flexdownscale.metrics import (
    area_weights,
    crps_ensemble,
    ensemble_spread,
    power_spectrum,
    rank_histogram,
)


def test_float32_spread_of_members_one_ulp_apart_is_exact():
    """Two float32 members one ulp apart: their float64 mean falls between two float32 values,
    so the spread (``ddof=1``) needs the rounding of the working-dtype mean taken back out
    (``sum (x - m)^2 = sum (x - c)^2 - n (m - c)^2``). With the sign of that correction flipped
    the variance came out three times too large."""
    base = np.float32(280.0)
    members = np.array([base, base + np.spacing(base)], dtype=np.float32)
    fcst = xr.DataArray(
        np.repeat(members[:, None], 3, axis=1), dims=("member", "x"), attrs={"units": "K"}
    )
    expected = np.std(members.astype(np.float64), ddof=1)  # ulp / sqrt(2)
    out = ensemble_spread(fcst)
    np.testing.assert_allclose(out.values, expected, rtol=1e-6)  # rounded to float32


def test_rank_histogram_leaves_out_a_point_with_one_nan_member():
    """A point with a NaN member has no rank (the docstring): left out with ``skipna``, NaN
    without. Only a point whose every member is NaN was left out when ``any`` became ``all``:
    the NaN member was read as "not below", so the point took rank 2 here."""
    fcst = xr.DataArray(
        [[1.0, 1.0, 1.0], [2.0, np.nan, 2.0]], dims=("member", "x"), attrs={"units": "K"}
    )
    obs = xr.DataArray([0.0, 5.0, 5.0], dims="x", attrs={"units": "K"})
    np.testing.assert_allclose(rank_histogram(fcst, obs).values, [0.5, 0.0, 0.5])
    per_point = rank_histogram(fcst, obs, preserve_dims="x", skipna=False)
    assert np.isnan(per_point.isel(x=1).values).all()
    np.testing.assert_array_equal(per_point.isel(x=0).values, [1.0, 0.0, 0.0])


def _ramp_free(ny: int, nx: int) -> np.ndarray:
    """A field whose first and last samples agree along every row and column (Errico leaves it
    as it is)."""
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    return np.sin(2 * np.pi * 3 * x / (nx - 1)) * np.cos(2 * np.pi * 2 * y / (ny - 1))


def test_errico_detrend_takes_out_a_ramp_exactly():
    """Errico (1985) subtracts ``(last - first) / (n - 1)`` per cell along each axis, which
    removes a linear ramp exactly: a ramp alone has no power left, and a ramp added to a field
    whose end points already agree changes nothing. Dividing by ``n`` left ``1/n`` of the ramp."""
    ny, nx = 16, 24
    y = np.arange(ny)[:, None] * 1000.0
    x = np.arange(nx)[None, :] * 1000.0
    coords = {"y": ("y", y[:, 0], {"units": "m"}), "x": ("x", x[0], {"units": "m"})}
    ramp = 3e-3 * x + 2e-3 * y
    spec = power_spectrum(
        xr.DataArray(ramp, dims=("y", "x"), coords=coords, attrs={"units": "K"}),
        method="fft",
        detrend="errico",
    )
    assert float(abs(spec).max()) < 1e-20
    base = _ramp_free(ny, nx)
    plain = power_spectrum(
        xr.DataArray(base, dims=("y", "x"), coords=coords, attrs={"units": "K"}),
        method="fft",
        detrend="errico",
    )
    tilted = power_spectrum(
        xr.DataArray(base + ramp, dims=("y", "x"), coords=coords, attrs={"units": "K"}),
        method="fft",
        detrend="errico",
    )
    assert float(plain.max()) > 1e3  # the field's own power is there
    np.testing.assert_allclose(tilted.values, plain.values, rtol=1e-9, atol=1e-9)


def _grid_with_bounds(lat: np.ndarray, bounds: np.ndarray) -> xr.Dataset:
    lat_attrs = {"units": "degrees_north", "bounds": "lat_bnds"}
    return xr.Dataset(
        coords={
            "lat": ("lat", lat, lat_attrs),
            "lon": ("lon", np.arange(0.0, 4.0), {"units": "degrees_east"}),
            "lat_bnds": (("lat", "nv"), bounds),
        }
    )


def test_area_weights_read_the_cf_bounds_of_a_descending_latitude_axis():
    """Bounds that are not the midpoints between centres (as on a Gaussian grid) decide the
    row areas, ``|sin(upper) - sin(lower)|``, on a descending axis as on an ascending one.
    Without ordering each bounds pair like the centres, a descending axis failed the
    contiguity check and fell back to midpoints silently."""
    edges = np.array([70.0, 55.0, 42.0, 30.0])
    band = np.abs(np.diff(np.sin(np.deg2rad(edges))))
    expected = band / band.mean()
    lat = np.array([60.0, 50.0, 40.0])
    bounds = np.stack([edges[:-1], edges[1:]], axis=1)  # pairs as (north, south)
    down = area_weights(_grid_with_bounds(lat, bounds))
    np.testing.assert_allclose(down.values, expected, rtol=1e-12)
    up = area_weights(_grid_with_bounds(lat[::-1], bounds[::-1, ::-1]))
    np.testing.assert_allclose(up.values, expected[::-1], rtol=1e-12)


def test_physical_areas_of_a_global_grid_with_polar_points_add_up_to_the_sphere():
    """Rows 30 degrees apart from pole to pole, cells 30 degrees wide: the polar rows end at
    the poles (half height) and the cells tile the sphere, ``4 pi R^2`` in all, each row
    ``R^2 dlon (sin(upper) - sin(lower))``. Unclipped polar edges (-105, 105) lost the polar
    rows' area; an unsquared radius was off by a factor R."""
    lat = np.arange(-90.0, 91.0, 30.0)
    lon = np.arange(0.0, 360.0, 30.0)
    grid = xr.Dataset(
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        }
    )
    radius = 6371008.8
    areas = area_weights(grid, normalize=None)
    edges = np.array([-90.0, -75.0, -45.0, -15.0, 15.0, 45.0, 75.0, 90.0])
    expected = radius**2 * np.deg2rad(30.0) * np.diff(np.sin(np.deg2rad(edges)))
    np.testing.assert_allclose(areas.values, expected, rtol=1e-12)
    np.testing.assert_allclose(float(areas.sum()) * lon.size, 4 * np.pi * radius**2, rtol=1e-12)
    assert areas.attrs["units"] == "m2"


def test_weighted_fair_crps_of_one_weighted_member_warns_and_is_nan():
    """All the member weight on one member leaves the fair CRPS undefined (``1 - sum w^2`` is
    0), as for one valid member: NaN with an :class:`UndefinedMetricWarning`. With the test for
    a vanishing denominator turned into ``< 0`` the NaN came from ``0 / 0`` with no warning."""
    fcst = xr.DataArray([[1.0], [2.0], [3.0]], dims=("member", "x"), attrs={"units": "K"})
    obs = xr.DataArray([0.0], dims="x", attrs={"units": "K"})
    with pytest.warns(UndefinedMetricWarning):
        out = crps_ensemble(fcst, obs, fair=True, member_weights=[0.0, 1.0, 0.0])
    assert np.isnan(float(out))
    ecdf = crps_ensemble(fcst, obs, fair=False, member_weights=[0.0, 1.0, 0.0])
    assert float(ecdf) == pytest.approx(2.0)  # the ecdf CRPS of one member: |x - y|


def test_physical_areas_of_a_km_grid_with_a_map_factor():
    """Cells 2.5 km square, coordinates in km: ``dx dy`` in m^2 (the km factor applied to each
    width) divided by the square of the map factor (a conformal projection stretches lengths by
    ``m``, areas by ``m^2``). Dropping the unit factor or the square went unseen without the
    real data."""
    y = np.arange(3) * 2.5
    x = np.arange(4) * 2.5
    coords = {"y": ("y", y, {"units": "km"}), "x": ("x", x, {"units": "km"})}
    grid = xr.Dataset(coords=coords)
    factor = xr.DataArray(
        np.linspace(0.9, 1.3, 12).reshape(3, 4), dims=("y", "x"), coords=grid.coords
    )
    areas = area_weights(grid, normalize=None, map_factor=factor)
    np.testing.assert_allclose(areas.values, 2500.0**2 / factor.values**2, rtol=1e-12)
    plain = area_weights(grid, normalize=None)
    np.testing.assert_allclose(plain.values, np.full((3, 4), 2500.0**2), rtol=1e-12)
