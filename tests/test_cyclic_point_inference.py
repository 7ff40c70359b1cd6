"""A periodic box stored with its cyclic point (the first column repeated one period later, as
``add_cyclic_point`` or node-based solvers write it) is refused at inference, as in training:
run as periodic it wrapped as a longer domain (reviewer-71: RMSE of the first 16 fine columns
1.649 with the plain box, 1.838 with the cyclic point)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
from test_forecast_fixes import box, tiny_forecaster

from flexdownscale.data import degrade, grid_spec
from flexdownscale.demo import open_sample
from flexdownscale.errors import DataError
from flexdownscale.pipeline import Downscaler


def _with_cyclic_point(ds: xr.Dataset, dim: str) -> xr.Dataset:
    """``ds`` with its first cell along ``dim`` appended again one period later."""
    period = ds.sizes[dim] * float(ds[dim][1] - ds[dim][0])
    first = ds.isel({dim: [0]})
    first = first.assign_coords({dim: first[dim] + period})
    out = xr.concat([ds, first], dim, data_vars="minimal", coords="minimal", compat="override")
    out[dim].attrs = dict(ds[dim].attrs)
    return out


@pytest.fixture(scope="module")
def coarse() -> xr.Dataset:
    """The Kolmogorov sample at Re = 4000 coarsened x8: 32 x 32 cells, doubly periodic."""
    kf = open_sample("kolmogorov").isel(reynolds_number=1)
    return degrade(kf, 8).drop_vars(["reynolds_number", "x_bnds", "y_bnds"], errors="ignore")


@pytest.fixture(scope="module")
def kolmogorov() -> Downscaler:
    return Downscaler.from_pretrained("kolmogorov-x8")


@pytest.mark.parametrize(("dim", "line"), [("x", "column"), ("y", "row")])
def test_downscaler_refuses_a_periodic_box_with_its_cyclic_point(coarse, kolmogorov, dim, line):
    cyclic = _with_cyclic_point(coarse, dim)
    assert cyclic.sizes[dim] == 33
    assert grid_spec(cyclic).periodic_x
    assert grid_spec(cyclic).periodic_y
    kw: dict[str, Any] = {"condition": 4000.0, "members": None, "steps": 1, "seed": 0}
    with pytest.raises(DataError, match="cyclic point") as caught:
        kolmogorov(cyclic, **kw)
    text = str(caught.value)
    assert f"last {line}, {dim} = " in text
    assert "one period (6.28319, the model's period) later" in text
    assert f"ds.isel({dim}=slice(None, -1))" in text
    # the fix it names runs, and gives the plain box's result
    fixed = kolmogorov(cyclic.isel({dim: slice(None, -1)}), **kw)
    plain = kolmogorov(coarse, **kw)
    np.testing.assert_array_equal(fixed["vorticity"].values, plain["vorticity"].values)


def test_one_cell_more_without_the_attribute_is_not_refused(coarse, kolmogorov):
    """Without ``periodic = "true"`` the 33 columns are a plain (non-periodic) domain."""
    cyclic = _with_cyclic_point(coarse, "x")
    cyclic["x"].attrs = {k: v for k, v in cyclic["x"].attrs.items() if k != "periodic"}
    out = kolmogorov(cyclic, condition=4000.0, members=None, steps=1, seed=0)
    assert out.sizes["x"] == 33 * 8


def test_forecaster_refuses_a_periodic_box_with_its_cyclic_point():
    grid = {"grid": grid_spec(box()).to_dict(), "past_frames": 2, "lead": 1, "time_dim": "time"}
    model = tiny_forecaster(grid)
    with pytest.raises(DataError, match=r"cyclic point.*ds.isel\(y=slice\(None, -1\)\)"):
        model(_with_cyclic_point(box(), "y"), lead_steps=1, seed=1)
    model(box(), lead_steps=1, seed=1)  # the whole box runs
