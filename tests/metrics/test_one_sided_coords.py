"""A dim with a coordinate on one side and none on the other is refused, not paired by
position: a prediction without its ``lat`` coordinate (rows ascending) scored against a truth
whose ``lat`` descends gave a perfect prediction an RMSE of 2.98 instead of 0."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import ShapeError
from flexdownscale.metrics import crps_ensemble, downscaling_skill, rmse

LAT = np.arange(58.0, 49.9, -0.25)  # descending, as in ERA5 files
LON = np.arange(-10.0, 2.0, 0.25)
TRUTH = xr.DataArray(
    280.0 + np.linspace(0.0, 5.0, LAT.size)[:, None] + 0.0 * LON,
    dims=("lat", "lon"),
    coords={"lat": LAT, "lon": LON},
    attrs={"units": "K"},
)
ASCENDING = TRUTH.sortby("lat")
#: the perfect prediction, rows ascending, built from a numpy array without a lat coordinate
UNLABELLED = xr.DataArray(
    ASCENDING.values, dims=("lat", "lon"), coords={"lon": LON}, attrs={"units": "K"}
)


def rmse_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_a_prediction_without_the_truths_coordinate_is_refused_with_the_fixes():
    with pytest.raises(ShapeError) as err:
        rmse(UNLABELLED, TRUTH)
    msg = str(err.value)
    assert msg.startswith(
        "obs has a 'lat' coordinate (running from 58 to 50) but fcst has none on that dim"
    )
    assert "fcst.assign_coords(lat=obs['lat'])" in msg
    assert "obs.drop_vars('lat')" in msg
    # with its own latitudes the perfect prediction scores 0 (by label, after reordering)
    assert float(rmse(UNLABELLED.assign_coords(lat=ASCENDING.lat), TRUTH)) == 0.0


def test_the_truth_without_the_coordinate_is_refused_too_and_names_it():
    with pytest.raises(ShapeError, match=r"^fcst has a 'lat' coordinate .* but obs has none"):
        rmse(TRUTH, UNLABELLED)


def test_ensemble_and_summary_scores_refuse_it_under_their_own_names():
    ens = UNLABELLED.expand_dims(member=2).copy()
    with pytest.raises(ShapeError, match=r"obs has a 'lat' coordinate .* fcst has none"):
        crps_ensemble(ens, TRUTH)
    with pytest.raises(ShapeError, match=r"truth has a 'lat' coordinate .* pred has none"):
        downscaling_skill(ens, TRUTH)


def test_pairing_by_position_on_purpose_still_works():
    # both without the coordinate: by position, as asked (the rows are upside down here)
    flipped = float(rmse(UNLABELLED, TRUTH.drop_vars("lat")))
    assert flipped == pytest.approx(rmse_of(ASCENDING.values, TRUTH.values))
    assert flipped > 1.0


def test_weights_without_coordinates_are_paired_by_position():
    # weights are documented to be built as xr.DataArray(w, dims=["lat"])
    w = np.cos(np.deg2rad(LAT))
    weights = xr.DataArray(w, dims=["lat"])
    fcst = TRUTH + xr.DataArray(np.arange(LAT.size) % 3, dims="lat")
    got = float(rmse(fcst, TRUTH, weights=weights))
    expected = np.sqrt(np.sum(w * ((np.arange(LAT.size) % 3) ** 2)) / np.sum(w))
    assert got == pytest.approx(expected, rel=1e-12)
