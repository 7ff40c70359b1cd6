"""``evaluate`` in a user's session (reviewers 137 and 138): it leaves the user's pyplot figures
and backend alone, its warnings point at the user's line and give fixes that ``evaluate`` has,
and a ``--rename`` given the wrong way round is answered with the right one."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import normalize_grid
from flexdownscale.errors import MissingVariableError, UndefinedMetricWarning
from flexdownscale.evaluation import evaluate

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory):
    """A 2-member prediction of a 2 x 16 x 16 ERA5 corner whose second member is missing (NaN)
    on 10 cells of the first time, and the truth, as files."""
    folder = tmp_path_factory.mktemp("session")
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = normalize_grid(ds[["t2m"]].isel(time=slice(430, 432)))
        truth = truth.isel(latitude=slice(0, 16), longitude=slice(0, 16)).load()
    members = np.stack([truth["t2m"].values + 0.3, truth["t2m"].values - 0.3]).astype("float64")
    members[1, 0, 0, :10] = np.nan
    pred = xr.Dataset(
        {"t2m": (("member", *truth["t2m"].dims), members, dict(truth["t2m"].attrs))},
        coords=truth.coords,
    )
    truth.to_netcdf(folder / "truth.nc")
    pred.to_netcdf(folder / "pred.nc")
    pred.rename(t2m="tas").to_netcdf(folder / "tas.nc")
    return folder


def test_the_users_figures_and_backend_are_left_alone(pair, tmp_path):
    """evaluate set the Agg backend and closed every pyplot figure: a notebook's open figures
    were gone after it."""
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    try:
        matplotlib.use("pdf")
        mine = plt.figure()
        plt.plot([1, 2, 3])
        evaluate(pair / "pred.nc", pair / "truth.nc", out=tmp_path / "r")
        assert plt.fignum_exists(mine.number)
        assert matplotlib.get_backend() == "pdf"
        assert (tmp_path / "r" / "spectra_t2m.png").stat().st_size > 0
        assert (tmp_path / "r" / "rank_histogram_t2m.png").stat().st_size > 0
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_the_one_member_warning_points_at_the_caller_with_evaluates_words(pair, tmp_path):
    with pytest.warns(UndefinedMetricWarning) as record:
        evaluate(pair / "pred.nc", pair / "truth.nc", out=tmp_path / "r")
    (warning,) = [w for w in record if "only one ensemble member" in str(w.message)]
    text = str(warning.message)
    assert "(10 point(s))" in text
    assert "fair=False" not in text  # no option of evaluate
    assert "the report's CRPS leaves those points out" in text
    assert warning.filename == __file__


def test_a_rename_the_wrong_way_round_is_answered_with_the_right_one(pair, tmp_path):
    """The message ended ``e.g. --rename tas=t2m`` whatever was given: the very pair refused."""
    with pytest.raises(MissingVariableError, match=r"here --rename t2m=tas \(the names the other"):
        evaluate(pair / "tas.nc", pair / "truth.nc", out=tmp_path / "r", rename={"tas": "t2m"})
    with pytest.raises(MissingVariableError, match=r"e\.g\. --rename t2m=tas$"):
        evaluate(pair / "tas.nc", pair / "truth.nc", out=tmp_path / "r", rename={"u": "v"})
