"""The ACDD extent attributes (``geospatial_lat_min`` ... ``geospatial_lon_max``) of an output
on another grid state that grid's extent, the outer edges of its outermost cells: after a
trimming degrade, a regrid and a downscale to a ``bbox=`` (they were copied from the input),
and unchanged where the cells cover the input's (an exact degrade, ``up``, a whole downscale).
A grid off latitude / longitude axes has them left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

from flexdownscale._attributes import cell_extent, regridded_attrs
from flexdownscale.data.degrade import degrade, up
from flexdownscale.data.regrid import Regridder

KEYS = ("geospatial_lon_min", "geospatial_lon_max", "geospatial_lat_min", "geospatial_lat_max")


def _extent(obj: xr.Dataset | xr.DataArray) -> tuple[float, ...]:
    return tuple(float(obj.attrs[k]) for k in KEYS)


def _field(*, projected: bool = False) -> xr.Dataset:
    """10 x 14 cells of 0.25 degree whose global and variable attributes state their extent
    (west 0, east 3.5, south 40, north 42.5); ``projected``: on y / x axes in km instead."""
    y, x, y_units, x_units = (
        ("y", "x", "km", "km") if projected else ("lat", "lon", "degrees_north", "degrees_east")
    )
    lat = (y, 40.125 + 0.25 * np.arange(10), {"units": y_units})
    lon = (x, 0.125 + 0.25 * np.arange(14), {"units": x_units})
    attrs = dict(zip(KEYS, (0.0, 3.5, 40.0, 42.5), strict=True))
    values = np.random.default_rng(0).normal(size=(10, 14))
    return xr.Dataset(
        {"t2m": ((y, x), values, {"units": "K", **attrs})},
        coords={y: lat, x: lon},
        attrs={"title": "a field", **attrs},
    )


def test_cell_extent() -> None:
    assert cell_extent([40.125, 40.375], [0.125, 0.375, 0.625], 0.25, 0.25) == (
        0.0,
        0.75,
        40.0,
        40.5,
    )
    # stored north to south and east to west: the same cells
    assert cell_extent([40.375, 40.125], [0.625, 0.375, 0.125], 0.25, 0.25) == (
        0.0,
        0.75,
        40.0,
        40.5,
    )
    # across the antimeridian: west > east, as ACDD has it; latitudes clipped at the pole
    assert cell_extent([-90.0, -89.0], [179.0, -180.0, -179.0], 1.0, 1.0) == (
        178.5,
        -178.5,
        -90.0,
        -88.5,
    )
    assert cell_extent([0.0], [5.0], 2.0, 2.0) == (4.0, 6.0, -1.0, 1.0)
    assert cell_extent([0.0], [0.0, 1.0, 3.0], 1.0, 1.0) is None
    assert cell_extent([], [0.0], 1.0, 1.0) is None


def test_regridded_attrs_set_or_leave_out_the_extent() -> None:
    attrs = {"geospatial_lat_min": 30.0, "title": "t", "geospatial_lon_max": 20.0}
    out = regridded_attrs(attrs, (None, None), (1.0, 2.0, 3.0, 4.0))
    assert list(out.items()) == [
        ("geospatial_lat_min", 3.0),
        ("title", "t"),
        ("geospatial_lon_max", 2.0),
    ]
    assert regridded_attrs(attrs, (None, None)) == {"title": "t"}
    assert attrs["geospatial_lat_min"] == 30.0  # not changed


def test_degrade_and_up() -> None:
    ds = _field()
    trimmed = degrade(ds, 4, boundary="trim")  # 8 x 12 of the 10 x 14 cells: 2 x 3 blocks
    assert _extent(trimmed) == _extent(trimmed["t2m"]) == (0.0, 3.0, 40.0, 42.0)
    assert trimmed.attrs["title"] == "a field"
    exact = degrade(ds, 2)
    assert _extent(exact) == _extent(exact["t2m"]) == _extent(ds) == (0.0, 3.5, 40.0, 42.5)
    assert _extent(degrade(ds["t2m"], 4, boundary="trim")) == (0.0, 3.0, 40.0, 42.0)
    refined = up(ds, 2)  # finer cells cover the same area
    assert _extent(refined) == _extent(refined["t2m"]) == (0.0, 3.5, 40.0, 42.5)


def test_off_latitude_longitude_the_extent_is_left_out() -> None:
    ds = _field(projected=True)
    for out in (degrade(ds, 2), up(ds, 2)):
        assert not set(KEYS) & set(out.attrs)
        assert not set(KEYS) & set(out["t2m"].attrs)
        assert out.attrs["title"] == "a field"


def test_regrid() -> None:
    pytest.importorskip("xarray_regrid")
    ds = _field()
    target = xr.Dataset(
        coords={
            "lat": ("lat", [41.0, 41.5], {"units": "degrees_north"}),
            "lon": ("lon", [1.0, 1.5, 2.0], {"units": "degrees_east"}),
        }
    )
    out = Regridder(ds, target)(ds)
    assert _extent(out) == _extent(out["t2m"]) == (0.75, 2.25, 40.75, 41.75)


def test_downscale_to_a_bbox(shared_data: Path) -> None:
    fine, coarse = era5_pair(shared_data, times=1, ny=16, nx=24)
    lat, lon = coarse["latitude"].values, coarse["longitude"].values
    dlat, dlon = abs(float(lat[1] - lat[0])), abs(float(lon[1] - lon[0]))
    whole = cell_extent(lat, lon, dlat, dlon)
    assert whole is not None
    coarse.attrs.update(dict(zip(KEYS, whole, strict=True)))
    down = make_downscaler(fine)
    kw = dict(seed=0, steps=2)
    out = down(coarse, **kw)
    assert _extent(out) == pytest.approx(whole)  # the fine cells cover the coarse ones
    bbox = (lon[1] - 0.1, min(lat[1], lat[3]) - 0.1, lon[3] + 0.1, max(lat[1], lat[3]) + 0.1)
    part = down(coarse, bbox=bbox, **kw)
    expected = (
        lon[1] - dlon / 2,
        lon[3] + dlon / 2,
        min(lat[1], lat[3]) - dlat / 2,
        max(lat[1], lat[3]) + dlat / 2,
    )
    assert _extent(part) == pytest.approx(expected)
    assert (
        part.attrs["geospatial_lat_max"] < whole[3] or part.attrs["geospatial_lat_min"] > whole[2]
    )


def test_the_wkt_polygon_is_kept_only_for_the_same_extent() -> None:
    """``geospatial_bounds`` (a WKT polygon in the producer's axis order) and its CRS
    attributes stayed after a trim or a bbox, stating the input's extent: now they are kept
    where the cells cover the extent the attributes state, and left out otherwise."""
    wkt = "POLYGON ((40 0, 42.5 0, 42.5 3.5, 40 3.5, 40 0))"
    polygon = {
        "geospatial_bounds": wkt,
        "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_bounds_vertical_crs": "EPSG:5829",
    }
    ds = _field()
    ds.attrs.update(polygon)
    ds["t2m"].attrs.update(polygon)
    for same in (degrade(ds, 2), up(ds, 2)):
        assert {k: same.attrs[k] for k in polygon} == polygon
        assert {k: same["t2m"].attrs[k] for k in polygon} == polygon
    trimmed = degrade(ds, 4, boundary="trim")
    assert not set(polygon) & (set(trimmed.attrs) | set(trimmed["t2m"].attrs))
    assert trimmed.attrs["title"] == "a field"
    # no extent attributes to compare with, or ones that are not numbers: left out too
    alone = {"geospatial_bounds": wkt, "title": "t"}
    assert regridded_attrs(alone, (None, None), (0.0, 3.5, 40.0, 42.5)) == {"title": "t"}
    words = dict(zip(KEYS, ("0", "3.5", "40", "forty-two"), strict=True))
    assert "geospatial_bounds" not in regridded_attrs(
        {**words, "geospatial_bounds": wkt}, (None, None), (0.0, 3.5, 40.0, 42.5)
    )
    assert regridded_attrs({**polygon, "title": "t"}, (None, None)) == {"title": "t"}
    assert ds.attrs["geospatial_bounds"] == wkt  # the input is not changed
