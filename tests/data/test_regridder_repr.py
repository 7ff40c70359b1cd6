"""A :class:`~flexdownscale.data.regrid.Regridder`'s repr says, in one line, the source and
target grids (kind and size), the method and the backend."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data.grid import grid_spec
from flexdownscale.data.regrid import Regridder

pytest.importorskip("xarray_regrid")


def _latlon(ny: int, nx: int, step: float) -> xr.Dataset:
    lat = ("lat", 40.0 + step * np.arange(ny), {"units": "degrees_north"})
    lon = ("lon", step * np.arange(nx), {"units": "degrees_east"})
    return xr.Dataset(
        {"t2m": (("lat", "lon"), np.zeros((ny, nx)))}, coords={"lat": lat, "lon": lon}
    )


def test_repr_names_grids_method_and_backend() -> None:
    source, target = _latlon(10, 12, 1.0), _latlon(4, 6, 2.0)
    regridder = Regridder(source, target)
    assert repr(regridder) == (
        "Regridder(latlon 10 x 12 -> latlon 4 x 6, method='linear', backend='xarray-regrid')"
    )
    conservative = Regridder(source, grid_spec(target), method="conservative", skipna=True)
    assert repr(conservative) == (
        "Regridder(latlon 10 x 12 -> latlon 4 x 6, method='conservative', "
        "backend='xarray-regrid', skipna=True)"
    )
    assert "\n" not in repr(conservative)


def test_repr_of_a_projected_grid() -> None:
    def box(n: int, step: float) -> xr.Dataset:
        axis = {"units": "km"}
        return xr.Dataset(
            coords={
                "y": ("y", step * np.arange(n), axis),
                "x": ("x", step * np.arange(n + 1), axis),
            }
        )

    assert repr(Regridder(box(8, 1.0), box(4, 2.0), method="nearest")) == (
        "Regridder(projected 8 x 9 -> projected 4 x 5, method='nearest', backend='xarray-regrid')"
    )
