"""``evaluate`` computes its scores with ``np.errstate(all="ignore")``, but that state is the
calling thread's (a context variable under numpy 2): the dask tasks run in a pool's threads,
which dask before 2026.1 (the dask floor, 2024.6) and a pool the user gives dask start without
it. A prediction whose ensemble mean equals the truth (spread/skill 1 / 0) then printed numpy's
"divide by zero encountered in scalar divide" and "invalid value encountered in divide" to the
user's stderr from ``flexdownscale evaluate``, exit 0."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import xarray as xr

from flexdownscale.evaluation import evaluate


def _pair(folder):
    """(prediction, truth) files of a 2-member ensemble whose mean is the truth exactly."""
    rng = np.random.default_rng(0)
    coords = {
        "time": np.datetime64("2020-01-01", "ns") + np.arange(2) * np.timedelta64(6, "h"),
        "lat": np.linspace(50.0, 55.0, 16),
        "lon": np.linspace(0.0, 5.0, 16),
    }
    truth = xr.DataArray(
        280.0 + rng.normal(size=(2, 16, 16)),
        dims=("time", "lat", "lon"),
        coords=coords,
        attrs={"units": "K"},
    )
    pred = (truth + xr.DataArray([-0.5, 0.5], dims="member")).assign_attrs(units="K")
    xr.Dataset({"t2m": pred}).to_netcdf(folder / "pred.nc")
    xr.Dataset({"t2m": truth}).to_netcdf(folder / "truth.nc")
    return folder / "pred.nc", folder / "truth.nc"


def test_floating_point_warnings_stay_off_in_the_pool_threads(tmp_path):
    pred, truth = _pair(tmp_path)
    with (
        ThreadPoolExecutor(2) as pool,  # a plain pool: its threads do not copy the context
        dask.config.set(scheduler="threads", pool=pool),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        evaluate(pred, truth, out=tmp_path / "report")
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert (tmp_path / "report" / "metrics.json").exists()


def test_the_filter_is_taken_off_after_the_compute(tmp_path):
    """The filter is the process's: it holds only while evaluate computes."""
    pred, truth = _pair(tmp_path)
    evaluate(pred, truth, out=tmp_path / "report")
    left = [f for f in warnings.filters if f[2] is RuntimeWarning and f[0] == "ignore"]
    assert [f for f in left if f[1] is not None and "divide by zero" in f[1].pattern] == []
