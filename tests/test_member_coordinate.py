"""The ``member`` coordinate of a downscaled ensemble and CF's ``realization``."""

from __future__ import annotations

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pytest
from test_pipeline import era5_pair, make_downscaler


@pytest.fixture(scope="module")
def pair(shared_data):
    return era5_pair(shared_data)


def test_member_is_cf_realization(pair):
    """Without a realization of the input's own, ``member`` is CF's realization."""
    fine, coarse = pair
    out = make_downscaler(fine)(coarse.isel(time=[0]), members=2, seed=0, steps=2)
    assert out["member"].attrs["standard_name"] == "realization"
    assert out.cf["realization"].name == "member"


def test_input_realization_keeps_its_standard_name(pair):
    """An input with a CF ``realization`` coordinate (a CMIP run's ``realization = 1``) kept in
    the output: ``member`` takes no second ``standard_name`` (cf-xarray's
    ``out.cf["realization"]`` raised on two) and its long_name tells them apart; the input's
    coordinate and the values are unchanged."""
    fine, coarse = pair
    driving = coarse.isel(time=[0]).assign_coords(
        realization=((), np.int32(1), {"standard_name": "realization"})
    )
    before = dict(driving["realization"].attrs)
    model = make_downscaler(fine)
    out = model(driving, members=2, seed=0, steps=2)
    plain = model(coarse.isel(time=[0]), members=2, seed=0, steps=2)
    assert "standard_name" not in out["member"].attrs
    assert "'realization' is the input's realization" in out["member"].attrs["long_name"]
    assert out.cf["realization"].name == "realization"
    assert int(out["realization"]) == 1
    assert dict(driving["realization"].attrs) == before
    np.testing.assert_array_equal(out["t2m"].values, plain["t2m"].values)
