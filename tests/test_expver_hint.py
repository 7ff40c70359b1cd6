"""ERA5 as the CDS's older layout delivered it when final ERA5 and preliminary ERA5T were mixed:
an ``expver`` dimension of size 2, each time valid in one experiment and NaN in the other. The
message said "select or stack", which leaves NaN times; it now gives ``combine_first``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import degrade
from flexdownscale.demo import open_sample
from flexdownscale.errors import DataError
from flexdownscale.pipeline import Downscaler


@pytest.fixture(scope="module")
def coarse() -> xr.Dataset:
    return degrade(open_sample("era5_t2m_uk"), 4, boundary="trim")


def _mixed(coarse: xr.Dataset, labels: list) -> xr.Dataset:
    """``coarse`` split along ``expver``: the first two times in the first experiment, the
    others in the second (NaN elsewhere), as the CDS wrote ERA5 + ERA5T."""
    early = coarse.time < coarse.time[2]
    parts = [coarse.where(early), coarse.where(~early)]
    mixed = xr.concat(parts, xr.DataArray(labels, dims="expver", name="expver"))
    mixed["t2m"].attrs = dict(coarse["t2m"].attrs)
    return mixed


@pytest.mark.parametrize("labels", [["0001", "0005"], [1, 5]])
def test_expver_dimension_is_told_to_combine_first(coarse, labels):
    model = Downscaler.from_pretrained("era5-t2m-x4")
    mixed = _mixed(coarse, labels)
    with pytest.raises(DataError, match=r"select or stack the extra dims \['expver'\]") as caught:
        model(mixed, members=None, steps=1)
    text = str(caught.value)
    assert "NaN" in text
    fix = re.search(r"ds = (ds\.sel\(expver=.*\)\.combine_first\(ds\.sel\(expver=.*\)\))", text)
    assert fix is not None, text
    a, b = (repr(v) for v in labels)
    assert fix.group(1) == f"ds.sel(expver={a}).combine_first(ds.sel(expver={b}))"
    # the fix it gives restores the plain field and runs to the same result
    fixed = eval(fix.group(1), {"ds": mixed})  # the message's own line
    np.testing.assert_array_equal(fixed["t2m"].values, coarse["t2m"].values)
    out = model(fixed, members=None, steps=1, seed=0)
    ref = model(coarse, members=None, steps=1, seed=0)
    np.testing.assert_array_equal(out["t2m"].values, ref["t2m"].values)


def test_other_extra_dims_get_no_expver_words(coarse):
    levels = xr.concat([coarse, coarse], xr.DataArray([850, 500], dims="level", name="level"))
    with pytest.raises(DataError, match=r"extra dims \['level'\]") as caught:
        Downscaler.from_pretrained("era5-t2m-x4")(levels, members=None, steps=1)
    assert "combine_first" not in str(caught.value)
