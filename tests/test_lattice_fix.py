"""A coarse grid off the model's cell lattice: the error names every offset axis and gives the
lattice within the input's extent as a target grid that ``regrid`` takes (reviewer-102)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flexdownscale import Downscaler
from flexdownscale.data import regrid
from flexdownscale.errors import GridError

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


def test_whole_degree_grid_gets_both_axes_and_a_target_that_works(shared_data):
    """Every 4th point of the 0.25-degree file: a 1-degree grid centred on whole degrees, as a
    1-degree download is. The shipped x4 model's lattice is centred at -9.625 + k and
    50.375 + k; the error said only "along x" (y is offset as well) and "regrid onto that
    lattice" with no target. Both axes are named now, with the target grid; regridding onto
    it (the message's own numbers) gives an input the model takes."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        coarse = ds.isel(time=[0], latitude=slice(None, None, 4), longitude=slice(None, None, 4))
        coarse = coarse.load()
    model = Downscaler.from_pretrained("era5-t2m-x4")
    with pytest.raises(GridError) as info:
        model(coarse, members=2, steps=2, seed=0)
    text = str(info.value)
    assert "along x are offset by -0.375 degrees_east (-1.5 fine cells)" in text
    assert "and along y by -0.375 degrees_north (-1.5 fine cells)" in text
    assert "To fix: regrid the input onto that lattice (flexdownscale.data.regrid)" in text
    ranges = dict(
        (name, (float(a), float(b), float(c)))
        for name, a, b, c in re.findall(
            r"'(\w+)': np\.arange\(([-\d.]+), ([-\d.]+), ([\d.]+)\)", text
        )
    )
    assert ranges == {"longitude": (-9.625, 1.875, 1.0), "latitude": (50.375, 57.875, 1.0)}
    target = xr.Dataset(coords={name: np.arange(*r) for name, r in ranges.items()})
    out = model(regrid(coarse, target), members=2, steps=2, seed=0)
    assert dict(out["t2m"].sizes) == {"member": 2, "time": 1, "latitude": 32, "longitude": 48}
    assert bool(np.isfinite(out["t2m"]).all())
